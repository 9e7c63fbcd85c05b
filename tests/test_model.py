"""Logit parity with Hugging Face transformers on tiny random models built here (no download).

Oracle: transformers 5.24 (PyTorch, float32, eager attention) on the same weights, saved with
`save_pretrained` and imported by yarn_jax.convert.hf. Sequences are 80 tokens, 2.5x the
original context L = 32 of the scaled rope configs, so every method's scaling is exercised.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from yarn_jax import rope
from yarn_jax.convert import hf as hf_convert
from yarn_jax.model import Llama, LlamaConfig, with_rope

V, L, T = 128, 32, 80
BASE = dict(
    vocab_size=V, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
)  # fmt: skip

ROPE_PARAMS = {
    "default": {"rope_type": "default", "rope_theta": 10000.0},
    "linear": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0},
    "dynamic": {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 4.0},
    "yarn": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
             "original_max_position_embeddings": L},
    "llama3": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 4.0,
               "original_max_position_embeddings": L, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0},
    "longrope": {"rope_type": "longrope", "rope_theta": 10000.0, "factor": 4.0,
                 "original_max_position_embeddings": L,
                 "short_factor": [1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7],
                 "long_factor": [1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0]},
}  # fmt: skip


def _hf_model(cls_name, rope_params, **overrides):
    torch.manual_seed(0)
    config_cls = getattr(transformers, cls_name.replace("ForCausalLM", "Config"))
    # HF's dynamic NTK reads L from max_position_embeddings; the others get s·L.
    max_pos = L if rope_params["rope_type"] == "dynamic" else 4 * L
    kw = dict(BASE, max_position_embeddings=max_pos, rope_parameters=dict(rope_params))
    kw.update(overrides)
    cfg = config_cls(**kw)
    cfg._attn_implementation = "eager"
    model = getattr(transformers, cls_name)(cfg).eval()
    with torch.no_grad():  # non-trivial norms and biases, so a swapped tensor shows
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith(".bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model


def _ids(B=2):
    return np.random.default_rng(0).integers(0, V, (B, T))


def _import(hf_model, tmp_path, **kw):
    hf_model.save_pretrained(tmp_path)
    return hf_convert.load_params(tmp_path, **kw)


def _hf_logits(hf_model, ids, **kw):
    with torch.no_grad():
        return hf_model(torch.tensor(ids), **kw).logits.float().numpy()


@pytest.mark.parametrize("rope_name", sorted(ROPE_PARAMS))
def test_llama_gqa_matches_transformers_for_every_hf_rope_type(rope_name, tmp_path):
    hf_model = _hf_model("LlamaForCausalLM", ROPE_PARAMS[rope_name])
    ours = _import(hf_model, tmp_path)
    ids = _ids()
    np.testing.assert_allclose(
        np.asarray(ours(jnp.asarray(ids))), _hf_logits(hf_model, ids), atol=1e-4, rtol=0
    )  # float32 both sides


@pytest.mark.parametrize(
    "cls_name,overrides",
    [
        ("LlamaForCausalLM", {"num_key_value_heads": 4}),  # MHA
        ("LlamaForCausalLM", {"num_key_value_heads": 1, "tie_word_embeddings": True}),  # MQA
        ("LlamaForCausalLM", {"attention_bias": True, "head_dim": 8}),  # head_dim != D / N
        ("MistralForCausalLM", {"sliding_window": 24}),  # window < T: local attention used
        ("Qwen2ForCausalLM", {}),  # q/k/v biases
    ],
)
def test_architectures_match_transformers(cls_name, overrides, tmp_path):
    hf_model = _hf_model(cls_name, ROPE_PARAMS["yarn"], **overrides)
    ours = _import(hf_model, tmp_path)
    ids = _ids()
    np.testing.assert_allclose(
        np.asarray(ours(jnp.asarray(ids))), _hf_logits(hf_model, ids), atol=1e-4, rtol=0
    )


def test_padding_mask_and_positions_match_transformers(tmp_path):
    """Left padding: HF attention_mask + explicit position_ids against ours."""
    hf_model = _hf_model("LlamaForCausalLM", ROPE_PARAMS["yarn"])
    ours = _import(hf_model, tmp_path)
    ids = _ids()
    mask = np.ones_like(ids)
    mask[1, :7] = 0
    pos = np.clip(np.cumsum(mask, axis=1) - 1, 0, None)
    ref = _hf_logits(
        hf_model, ids, attention_mask=torch.tensor(mask), position_ids=torch.tensor(pos)
    )
    out = np.asarray(ours(jnp.asarray(ids), positions_bt=pos, attention_mask_bt=mask))
    real = mask.astype(bool)
    np.testing.assert_allclose(out[real], ref[real], atol=1e-4, rtol=0)


def test_hidden_and_logits_from_hidden_equal_call(tmp_path):
    hf_model = _hf_model("LlamaForCausalLM", ROPE_PARAMS["default"])
    ours = _import(hf_model, tmp_path)
    ids = jnp.asarray(_ids())
    h = ours.hidden(ids)
    assert h.shape == (2, T, 64)
    chunks = [ours.logits_from_hidden(h[:, i : i + 32]) for i in range(0, T, 32)]
    np.testing.assert_allclose(
        np.concatenate([np.asarray(c) for c in chunks], 1), np.asarray(ours(ids)), atol=1e-6
    )


def test_with_rope_shares_parameters_and_matches_transformers(tmp_path):
    hf_default = _hf_model("LlamaForCausalLM", ROPE_PARAMS["default"])
    ours = _import(hf_default, tmp_path)
    yarn_cfg = rope.RopeConfig.from_hf(ROPE_PARAMS["yarn"])
    ours_yarn = with_rope(ours, yarn_cfg)
    assert ours_yarn.cfg.rope == yarn_cfg and ours.cfg.rope.rope_type == "default"
    assert ours_yarn.embed.embedding[...] is ours.embed.embedding[...]  # no copy
    hf_yarn = _hf_model("LlamaForCausalLM", ROPE_PARAMS["yarn"])  # same seed: same weights
    ids = _ids()
    np.testing.assert_allclose(
        np.asarray(ours_yarn(jnp.asarray(ids))), _hf_logits(hf_yarn, ids), atol=1e-4, rtol=0
    )


def test_bfloat16_params_and_activations_stay_close_to_float32():
    cfg = LlamaConfig(**BASE, rope=rope.RopeConfig.from_hf(ROPE_PARAMS["yarn"]))
    m32 = Llama(cfg, rngs=nnx.Rngs(0))
    bf = dataclasses.replace(cfg, dtype="bfloat16", param_dtype="bfloat16")
    m16 = hf_convert.hf_to_params(bf, hf_convert.params_to_hf(m32), source="test")
    assert m16.layers[0].attn.q_proj[...].dtype == jnp.bfloat16
    ids = jnp.asarray(_ids())
    out16 = m16(ids)
    assert out16.dtype == jnp.float32  # logits are float32 whatever the activations
    np.testing.assert_allclose(np.asarray(out16), np.asarray(m32(ids)), atol=3e-2)


def test_parameters_carry_logical_axis_names():
    cfg = LlamaConfig(**BASE, attention_bias=True)
    state = nnx.state(nnx.eval_shape(lambda: Llama(cfg, rngs=nnx.Rngs(0))))
    vocab = {"vocab", "embed", "q_heads", "kv_heads", "head_dim", "mlp", "norm"}
    for path, var in nnx.to_flat_state(state):
        names = var.get_metadata()["out_sharding"]
        assert len(names) == len(var.shape) and set(names) <= vocab, (path, names)
    flat = {"/".join(map(str, p)): v for p, v in nnx.to_flat_state(state)}
    assert flat["layers/0/attn/k_proj"].get_metadata()["out_sharding"] == (
        "embed",
        "kv_heads",
        "head_dim",
    )


def test_config_from_hf_refuses_unknown_and_unsupported_keys():
    good = _hf_model("LlamaForCausalLM", ROPE_PARAMS["yarn"]).config.to_dict()
    cfg = LlamaConfig.from_hf(good)
    assert (cfg.num_key_value_heads, cfg.rope.rope_type, cfg.rope.factor) == (2, "yarn", 4.0)
    bad = dict(good, mystery_knob=3, hidden_act="gelu", mlp_bias=True)
    with pytest.raises(ValueError) as e:
        LlamaConfig.from_hf(bad, source="my/config.json")
    msg = str(e.value)
    assert "my/config.json" in msg and "mystery_knob" in msg and "gelu" in msg and "mlp_bias" in msg
    with pytest.raises(ValueError, match="model_type"):
        LlamaConfig.from_hf(dict(good, model_type="gpt2"))
    with pytest.raises(ValueError, match="sliding"):
        LlamaConfig.from_hf(dict(good, model_type="qwen2", use_sliding_window=True))


def test_yarn_mistral_config_gets_its_training_constants():
    cfg = LlamaConfig.from_hf(
        {
            **BASE, "model_type": "mistral", "sliding_window": None,
            "max_position_embeddings": 32768, "rope_theta": 10000.0,
            "rope_scaling": {"type": "yarn", "factor": 16.0,
                             "original_max_position_embeddings": 8192, "finetuned": True},
            "auto_map": {"AutoModelForCausalLM": "modeling_mistral_yarn.MistralForCausalLM"},
        }
    )  # fmt: skip
    r = cfg.rope
    assert (r.beta_fast, r.beta_slow) == (128.0, 2.0)
    np.testing.assert_allclose(r.attention_factor, 0.07 * np.log(16.0) + 1.0, rtol=1e-12)


def test_to_hf_round_trips_through_from_hf():
    cfg = LlamaConfig(**BASE, model_type="qwen2", attention_bias=True,
                      rope=rope.RopeConfig.from_hf(ROPE_PARAMS["llama3"]))  # fmt: skip
    back = LlamaConfig.from_hf(cfg.to_hf())
    assert back == dataclasses.replace(cfg, max_position_embeddings=back.max_position_embeddings)


def test_logits_projected_in_chunks_equal_one_shot(monkeypatch, tmp_path):
    from yarn_jax import model as model_lib

    for tied in (True, False):
        cfg = LlamaConfig(**BASE, tie_word_embeddings=tied)
        m = Llama(cfg, rngs=nnx.Rngs(1))
        h = jnp.asarray(np.random.default_rng(2).normal(size=(2, T, 64)), jnp.float32)
        one_shot = np.asarray(m.forward_logits(h))
        monkeypatch.setattr(model_lib, "LOGIT_CHUNK", 32)  # 80 = 2 chunks of 32 + 16
        np.testing.assert_allclose(np.asarray(m.forward_logits(h)), one_shot, atol=1e-6)
        monkeypatch.setattr(model_lib, "LOGIT_CHUNK", 1024)


def test_forward_memory_does_not_grow_with_depth():
    """XLA's buffer plan for a whole forward: each extra layer may not keep its attention output
    alive. With `lax.map` over query blocks every layer's zero-initialised output was one shared
    constant, and XLA scheduled all the per-layer copies up front (+1 [T, N, H] buffer per
    layer: 3 MiB here for 6 layers, 0.5 GB for SmolLM2 at 8k tokens)."""
    from yarn_jax import model as model_lib

    T = 2048
    one_output = T * 4 * 16 * 4  # [T, N, H] float32

    def temp_bytes(layers):
        cfg = LlamaConfig(**{**BASE, "num_hidden_layers": layers}, attention_impl="chunked")
        graphdef, state = nnx.split(Llama(cfg, rngs=nnx.Rngs(0)))
        ids = jax.ShapeDtypeStruct((1, T), jnp.int32)
        compiled = model_lib._call_jit.lower(graphdef, state, ids, None, None, True).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    assert temp_bytes(8) - temp_bytes(2) < 2 * one_output


def test_public_names_are_the_functions():
    import yarn_jax
    import yarn_jax.generation  # noqa: F401  (importing the module must not shadow the function)

    assert callable(yarn_jax.generate) and yarn_jax.generate.__name__ == "generate"
    assert yarn_jax.from_pretrained.__module__ == "yarn_jax.api"
