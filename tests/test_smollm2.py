"""The real model: SmolLM2-135M-Instruct (Q4_1 GGUF), our import vs transformers' own GGUF loading.

Oracle: transformers' GGUF loader (`load_gguf_checkpoint`: its own name mapping, q/k
un-permutation and config parsing) into a float32 `LlamaForCausalLM`, run in PyTorch with the same
rope config. Text: the first 512 tokens of KJV Genesis (bundled eval data). ~1 minute on 2 cores.
"""

import pathlib

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from yarn_jax.api import from_pretrained
from yarn_jax.convert.tokenizer import load_tokenizer

T = 512
GENESIS = pathlib.Path(__file__).resolve().parents[1] / "yarn_jax/evals/data/books/kjv_genesis.txt"
# float32 on both sides through 30 layers; measured max |diff| 1.2e-4 (plain), 2.0e-4 (yarn)
# on logits of magnitude ~20.
ATOL = 1e-3


@pytest.fixture(scope="module")
def ids(smollm2_gguf):
    out = load_tokenizer(smollm2_gguf).encode(GENESIS.read_text())[:T]
    assert len(out) == T
    return out


@pytest.fixture(scope="module")
def hf_weights(smollm2_transformers_gguf):
    return smollm2_transformers_gguf


def _hf_logits(hf_weights, ids, rope_parameters=None):
    cfg, tensors = hf_weights
    cfg = dict(cfg)
    if rope_parameters is not None:
        cfg["rope_parameters"] = rope_parameters
        cfg.pop("rope_theta", None)
    config = transformers.LlamaConfig(**cfg, dtype=torch.float32, attn_implementation="sdpa")
    model = transformers.LlamaForCausalLM(config).eval()
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}  # tied to the embedding
    model.tie_weights()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def _ours(path, ids, rope_scaling=None):
    model = from_pretrained(path, rope_scaling=rope_scaling, dtype="float32")
    return np.asarray(model(jnp.asarray([ids], jnp.int32)))[0]


def _report(ours, ref):
    diff = np.abs(ours - ref)
    agree = (ours.argmax(-1) == ref.argmax(-1)).mean()
    return diff.max(), diff.mean(), agree


@pytest.fixture(scope="module")
def hf_plain(hf_weights, ids):
    return _hf_logits(hf_weights, ids)


def test_smollm2_logits_match_transformers(smollm2_gguf, ids, hf_plain):
    ours = _ours(smollm2_gguf, ids)
    ref = hf_plain
    assert ours.shape == ref.shape == (T, 49152)
    max_diff, mean_diff, agree = _report(ours, ref)
    print(f"plain rope: max|diff| {max_diff:.3g} mean {mean_diff:.3g} argmax agree {agree:.4f}")
    np.testing.assert_allclose(ours, ref, atol=ATOL, rtol=0)  # float32 both sides
    assert agree == 1.0


def test_smollm2_yarn_logits_match_transformers(smollm2_gguf, ids, hf_weights, hf_plain):
    """YaRN s=2 with original context 256 so that scaling acts inside 512 tokens (CPU-sized)."""
    scaling = {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 256}
    ours = _ours(smollm2_gguf, ids, rope_scaling=scaling)
    theta = hf_weights[0]["rope_theta"]
    ref = _hf_logits(hf_weights, ids, rope_parameters={**scaling, "rope_theta": theta})
    plain = hf_plain
    max_diff, mean_diff, agree = _report(ours, ref)
    moved = np.abs(ref - plain).max()
    print(
        f"yarn: max|diff| {max_diff:.3g} mean {mean_diff:.3g} agree {agree:.4f}; moved {moved:.3g}"
    )
    assert moved > 100 * ATOL  # the rope change is visible far above the tolerance
    np.testing.assert_allclose(ours, ref, atol=ATOL, rtol=0)  # float32 both sides
    assert agree == 1.0
