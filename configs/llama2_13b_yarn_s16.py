r"""LLaMA-2 13B + YaRN s=16 (4k -> 64k): §4.1 recipe, Table 2 / Table 4 "YaRN 13B 64k".

Command:

    python train.py --config configs/llama2_13b_yarn_s16.py --workdir runs/llama2_13b_s16 \
        --config.model.init=/path/to/Llama-2-13b-hf --config.data.source=/path/to/pg19/train

The 7B recipe (configs/llama2_7b_yarn_s16.py: 400 steps, batch 64 x 64k tokens, lr 2e-5, 20
warm-up steps then linear decay, bf16, full remat) with the 13B architecture. 13B needs more
shards than 8 x 80 GB at one 64k sequence per device: use >= 16 devices (fsdp=-1, hence
grad_accum 4) or add tensor=2.
"""

from yarn_jax.config_files import sibling

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
    c = sibling(__file__, "llama2_7b_yarn_s16")
    c.grad_accum = 4
    c.model.init = "meta-llama/Llama-2-13b-hf"
    c.model.hf_config = dict(LLAMA2_13B)
    return c
