r"""LLaMA-2 13B + YaRN s=16 (4k -> 64k): §4.1 recipe, Table 2 / Table 4 "YaRN 13B 64k".

Command:

    python train.py --config configs/llama2_13b_yarn_s16.py --workdir runs/llama2_13b_s16 \
        --config.model.init=/path/to/Llama-2-13b-hf --config.data.source=/path/to/pg19/train

Same recipe as configs/llama2_7b_yarn_s16.py (400 steps, batch 64 x 64k tokens, lr 2e-5, 20
warm-up steps then linear decay, bf16, full remat). 13B needs more shards than 8 x 80 GB at
one 64k sequence per device: use >= 16 devices (fsdp=-1) or add tensor=2.
"""

from yarn_jax.train_lib import base_config

LLAMA2_13B = {
    "model_type": "llama",
    "vocab_size": 32000,
    "hidden_size": 5120,
    "intermediate_size": 13824,
    "num_hidden_layers": 40,
    "num_attention_heads": 40,
    "num_key_value_heads": 40,
    "max_position_embeddings": 4096,
    "rope_theta": 10000.0,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
}


def get_config():
    c = base_config()
    c.num_steps = 400
    c.batch_size = 64
    c.grad_accum = 4
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, -1, 1
    c.model.init = "meta-llama/Llama-2-13b-hf"
    c.model.hf_config = dict(LLAMA2_13B)
    c.model.rope = {"rope_type": "yarn", "factor": 16.0, "original_max_position_embeddings": 4096}
    c.model.compute_dtype = "bfloat16"
    c.model.remat = "full"
    c.data.source = "emozilla/pg19"
    c.data.tokenizer = "model"
    c.data.seq_len = 65536
    c.optim.lr = 2e-5
    c.optim.warmup_steps = 20
    c.optim.schedule = "linear"
    c.log_every = 1
    c.checkpoint_every = 50
    c.keep_checkpoints = 2
    return c
