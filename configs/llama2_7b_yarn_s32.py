r"""LLaMA-2 7B + YaRN s=32 (-> 128k), continued from the s=16 result: Table 2 / Table 4
"YaRN 7B 128k".

Command (after configs/llama2_7b_yarn_s16.py finished and exported runs/llama2_7b_s16/hf_export):

    python train.py --config configs/llama2_7b_yarn_s32.py --workdir runs/llama2_7b_s32 \
        --config.data.source=/path/to/pg19/train

Paper §4.1: "for s = 32 we start from the finished s = 16 checkpoint and train 200 more steps"
with the same data (64k-token segments), optimizer and schedule. The rope override replaces
the s=16 rope config of the loaded folder by s=32 over the original 4k context.
"""

from yarn_jax.config_files import sibling


def get_config():
    c = sibling(__file__, "llama2_7b_yarn_s16")
    c.num_steps = 200
    c.model.init = "runs/llama2_7b_s16/hf_export"
    c.model.rope = {"rope_type": "yarn", "factor": 32.0, "original_max_position_embeddings": 4096}
    return c
