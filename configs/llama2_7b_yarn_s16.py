r"""LLaMA-2 7B + YaRN s=16 (4k -> 64k): the paper's §4.1 recipe, Table 2 / Table 4 "YaRN 7B 64k".

Command (every host of the job runs the same line; point model.init at a local HF folder):

    python train.py --config configs/llama2_7b_yarn_s16.py --workdir runs/llama2_7b_s16 \
        --config.model.init=/path/to/Llama-2-7b-hf --config.data.source=/path/to/pg19/train

400 steps, global batch 64 sequences of 65536 tokens (PG19 bookended with BOS/EOS), AdamW
(0.9, 0.95, 1e-8), no weight decay, lr 2e-5 with 20 linear warm-up steps then linear decay,
bf16 compute, full remat per block. The default mesh shards parameters and optimizer state
over every device (fsdp=-1); with 8 x 80 GB GPUs, grad_accum=8 gives one 64k sequence per
device per micro-step (memory estimate ~57 GiB/device: see tests/test_train.py). On more
devices lower grad_accum so that batch_size = devices x grad_accum.
"""

from yarn_jax.train_lib import base_config

LLAMA2_7B = {
    "model_type": "llama",
    "vocab_size": 32000,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
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
    c.grad_accum = 8
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, -1, 1
    c.model.init = "meta-llama/Llama-2-7b-hf"  # a local HF folder (no hub access assumed)
    c.model.hf_config = dict(LLAMA2_7B)  # architecture, for the memory estimate
    c.model.rope = {"rope_type": "yarn", "factor": 16.0, "original_max_position_embeddings": 4096}
    c.model.compute_dtype = "bfloat16"
    c.model.remat = "full"
    c.model.attention_impl = "auto"
    c.data.source = "emozilla/pg19"  # hub name, or local PG19 text/jsonl/parquet files
    c.data.tokenizer = "model"
    c.data.seq_len = 65536
    c.optim.lr = 2e-5
    c.optim.warmup_steps = 20
    c.optim.schedule = "linear"
    c.log_every = 1
    c.checkpoint_every = 50
    c.keep_checkpoints = 2
    return c
