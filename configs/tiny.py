r"""Tiny random-init LLaMA on CPU: tens of seconds, logs every step, checkpoints every 4 steps.

Command (resumes when DIR already holds a checkpoint):

    python train.py --config configs/tiny.py --workdir /tmp/tiny

Reproduces no paper table: it exercises the whole recipe of §4.1 (YaRN rope, packed BOS/EOS
chunks, AdamW 0.9/0.95, linear warm-up then decay, remat, checkpoints, HF export) at toy size
on real text (the CPython standard library sources, byte-level tokens).
"""

from yarn_jax.train_lib import base_config


def get_config():
    c = base_config()
    c.seed = 0
    c.num_steps = 24
    c.batch_size = 8
    c.grad_accum = 1
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, -1, 1
    c.model.init = "random"
    c.model.hf_config = {
        "model_type": "llama",
        "vocab_size": 258,  # data.ByteTokenizer: bytes + BOS 256 + EOS 257
        "hidden_size": 64,
        "intermediate_size": 176,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
        "rope_theta": 10000.0,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False,
        "bos_token_id": 256,
        "eos_token_id": 257,
    }
    # YaRN s=2 over a 128-token "pre-training" context, trained at 256 tokens.
    c.model.rope = {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 128}
    c.model.compute_dtype = "float32"
    c.model.remat = "full"
    c.model.loss_chunk = 128
    c.data.source = "python_stdlib"
    c.data.max_documents = 40
    c.data.tokenizer = "byte"
    c.data.seq_len = 256
    c.optim.lr = 3e-3
    c.optim.warmup_steps = 2
    c.log_every = 1
    c.checkpoint_every = 4
    c.keep_checkpoints = 2
    c.peak_tflops = 0.0
    return c
