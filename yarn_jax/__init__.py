"""yarn_jax: YaRN and every RoPE context-extension method for LLaMA-family models in JAX/Flax.

Public API (see README):
    yarn_jax.rope                     RoPE methods as pure functions
    yarn_jax.from_pretrained(path)    load a Hugging Face folder or a GGUF file
    yarn_jax.save_pretrained(m, dir)  export a Hugging Face folder
    yarn_jax.load_tokenizer(path)     the checkpoint's tokenizer
    yarn_jax.generate(m, ids, n)      greedy decoding with a KV cache
"""

import importlib

from yarn_jax import rope

__version__ = "0.1.0"

# Heavier entry points are imported on first use so `import yarn_jax` stays quick.
_LAZY = {
    "from_pretrained": "yarn_jax.api",
    "save_pretrained": "yarn_jax.api",
    "load_tokenizer": "yarn_jax.api",
    "generate": "yarn_jax.generation",
    "Llama": "yarn_jax.model",
    "LlamaConfig": "yarn_jax.model",
    "with_rope": "yarn_jax.model",
}

__all__ = ["rope", "__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'yarn_jax' has no attribute {name!r}")
