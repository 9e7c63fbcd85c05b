r"""LLaMA-2 7B extended 4k -> 8k: the paper's Table 1 ablation (PI s=2, NTK theta=20000, YaRN s=2).

Commands (one run per method; the argument after ':' selects it, default yarn):

    python train.py --config configs/llama2_7b_8k_ablation.py:pi   --workdir runs/abl8k_pi
    python train.py --config configs/llama2_7b_8k_ablation.py:ntk  --workdir runs/abl8k_ntk
    python train.py --config configs/llama2_7b_8k_ablation.py:yarn --workdir runs/abl8k_yarn
    (each with --config.model.init=/path/to/Llama-2-7b-hf --config.data.source=/path/to/pg19)

Same optimizer as §4.1 (AdamW 0.9/0.95, lr 2e-5, 20 warm-up steps, linear decay, batch 64) on
8192-token PG19 chunks for 400 steps (the step count of the main recipe; Table 1 compares the
methods at equal training). Table 1 then reports Proof-pile perplexity at 2k..10k.
"""

from yarn_jax.config_files import sibling

METHODS = {
    "pi": {"rope_type": "linear", "factor": 2.0},
    # "NTK-aware" as trained in Table 1: the base raised to 20000, no other change.
    "ntk": {"rope_type": "default", "rope_theta": 20000.0},
    "yarn": {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 4096},
}


def get_config(method: str = "yarn"):
    if method not in METHODS:
        raise ValueError(f"method {method!r}: choose one of {sorted(METHODS)}")
    c = sibling(__file__, "llama2_7b_yarn_s16")
    c.model.rope = dict(METHODS[method])
    c.data.seq_len = 8192
    c.grad_accum = 1
    c.num_steps = 400
    return c
