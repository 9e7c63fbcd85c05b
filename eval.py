"""Evaluate RoPE context-extension methods: perplexity over context lengths, or passkey retrieval.

    python eval.py --method dynamic_ntk          # SmolLM2-135M-Instruct on the bundled documents
    python eval.py --help                        # every flag; a whole run: --config configs/...py

This file is intentionally kept short: flags -> config -> yarn_jax.evals.runner.run.
"""

import sys

from yarn_jax.evals.cli import main

if __name__ == "__main__":
    sys.exit(main())
