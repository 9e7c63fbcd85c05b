r"""Mistral-7B-v0.1 + YaRN s=8 (8k -> 64k): Table 4 "Yarn-Mistral-7b-64k".

Command:

    python train.py --config configs/mistral_7b_yarn_s8.py --workdir runs/mistral_7b_s8 \
        --config.model.init=/path/to/Mistral-7B-v0.1 --config.data.source=/path/to/pg19

Paper §4.1: 16k-token sequences, constant lr 1e-6 (after 20 warm-up steps), 1000 steps.
The released Yarn-Mistral checkpoints used different YaRN constants than LLaMA's (METHOD.md):
beta_fast 128, beta_slow 2, attention scale 0.07 ln s + 1 (= 1.14556 at s=8).
"""

import math

from yarn_jax.train_lib import base_config

MISTRAL_7B = {
    "model_type": "mistral",
    "vocab_size": 32000,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "max_position_embeddings": 32768,
    "rope_theta": 10000.0,
    "rms_norm_eps": 1e-5,
    "sliding_window": 4096,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
}


def get_config():
    c = base_config()
    c.num_steps = 1000
    c.batch_size = 64
    c.grad_accum = 4
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, -1, 1
    c.model.init = "mistralai/Mistral-7B-v0.1"
    c.model.hf_config = dict(MISTRAL_7B)
    c.model.rope = {
        "rope_type": "yarn",
        "factor": 8.0,
        "original_max_position_embeddings": 8192,
        "beta_fast": 128.0,
        "beta_slow": 2.0,
        "attention_factor": 0.07 * math.log(8.0) + 1.0,
    }
    c.model.compute_dtype = "bfloat16"
    c.model.remat = "full"
    c.data.source = "emozilla/pg19"
    c.data.tokenizer = "model"
    c.data.seq_len = 16384
    c.optim.lr = 1e-6
    c.optim.warmup_steps = 20
    c.optim.schedule = "constant"
    c.log_every = 1
    c.checkpoint_every = 100
    c.keep_checkpoints = 2
    return c
