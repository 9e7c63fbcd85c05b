r"""Fine-tune a LLaMA-family model with a RoPE context extension (YaRN and friends).

    python train.py --config configs/tiny.py --workdir /tmp/tiny [--config.num_steps=10 ...]

This file is intentionally kept short: flags -> config -> yarn_jax.train_lib.train.
"""

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "recipe file (configs/*.py)")
_WORKDIR = flags.DEFINE_string("workdir", None, "checkpoints, metrics.jsonl, tb/, hf_export/")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
    from yarn_jax import train_lib

    train_lib.train(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
