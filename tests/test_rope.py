"""yarn_jax.rope against independent oracles: transformers' ROPE_INIT_FUNCTIONS (pinned
version), closed forms and the identities of METHOD.md, float64 NumPy for sin/cos."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from transformers import LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from yarn_jax import rope

HEAD_DIMS = (64, 128)
BASES = (1e4, 5e5)
FACTORS = (2.0, 4.0, 8.0, 16.0, 32.0)
ORIGINALS = (2048, 4096)


def hf_rope(rope_parameters, head_dim, seq_len, max_position_embeddings):
    """transformers' (inv_freq float32 numpy, attention_factor float) for a rope dict."""
    config = LlamaConfig(
        hidden_size=head_dim * 2,
        num_attention_heads=2,
        head_dim=head_dim,
        max_position_embeddings=max_position_embeddings,
        rope_parameters=dict(rope_parameters),
    )
    rope_type = config.rope_parameters["rope_type"]
    if rope_type == "default":
        base = config.rope_parameters["rope_theta"]
        import torch

        inv = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
        return inv.numpy(), 1.0
    inv, scale = ROPE_INIT_FUNCTIONS[rope_type](config, None, seq_len=seq_len)
    return inv.numpy(), float(scale)


def ours(cfg, head_dim, seq_len):
    inv, scale = rope.rope_params(cfg, head_dim, seq_len)
    return np.asarray(inv), np.asarray(scale)


def check(cfg, hf_params, head_dim, seq_len, max_pos):
    inv, scale = ours(cfg, head_dim, seq_len)
    hf_inv, hf_scale = hf_rope(hf_params, head_dim, seq_len, max_pos)
    assert inv.dtype == np.float32 and inv.shape == (head_dim // 2,)
    # float32 on both sides; the two differ only in the order of float32 roundings
    np.testing.assert_allclose(inv, hf_inv, rtol=1e-6, atol=0)
    assert scale.dtype == np.float32
    assert scale == np.float32(hf_scale), (scale, hf_scale)


GRID = list(itertools.product(HEAD_DIMS, BASES, FACTORS, ORIGINALS))


@pytest.mark.parametrize("head_dim,base,factor,L", GRID)
def test_parity_static_methods(head_dim, base, factor, L):
    seq_len = int(L * factor) + 17  # past the original context
    check(
        rope.RopeConfig("default", base),
        {"rope_type": "default", "rope_theta": base},
        head_dim,
        seq_len,
        L,
    )
    check(
        rope.RopeConfig("linear", base, factor),
        {"rope_type": "linear", "rope_theta": base, "factor": factor},
        head_dim,
        seq_len,
        L,
    )
    yarn_hf = {
        "rope_type": "yarn",
        "rope_theta": base,
        "factor": factor,
        "original_max_position_embeddings": L,
    }
    check(rope.RopeConfig("yarn", base, factor, L), yarn_hf, head_dim, seq_len, int(L * factor))
    llama3_hf = {
        "rope_type": "llama3",
        "rope_theta": base,
        "factor": factor,
        "original_max_position_embeddings": L,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
    }
    cfg = rope.RopeConfig.from_hf(llama3_hf)
    check(cfg, llama3_hf, head_dim, seq_len, int(L * factor))


@pytest.mark.parametrize("head_dim,base,factor,L", GRID)
def test_parity_dynamic_ntk(head_dim, base, factor, L):
    cfg = rope.RopeConfig("dynamic", base, factor, L)
    hf = {"rope_type": "dynamic", "rope_theta": base, "factor": factor}
    for seq_len in (L // 2, L, L + 1, int(1.5 * L), int(L * factor), int(L * factor * 2)):
        check(cfg, hf, head_dim, seq_len, L)
    # inside jit with a traced length: same numbers
    fn = jax.jit(lambda n: rope.rope_params(cfg, head_dim, n)[0])
    hf_inv, _ = hf_rope(hf, head_dim, 3 * L, L)
    np.testing.assert_allclose(np.asarray(fn(jnp.int32(3 * L))), hf_inv, rtol=1e-6)


YARN_OPTIONS = [
    {"truncate": False},
    {"attention_factor": 0.8},
    {"mscale": 1.0, "mscale_all_dim": 0.707},  # DeepSeek-V2-like
    {"mscale": 0.707, "mscale_all_dim": 1.0},
    {"mscale": 1.0},  # HF: mscale alone falls back to the plain rule
    {"beta_fast": 128, "beta_slow": 2},
    {"beta_fast": 16, "beta_slow": 1, "truncate": False},
]


@pytest.mark.parametrize("options", YARN_OPTIONS, ids=lambda o: ",".join(map(str, o.items())))
@pytest.mark.parametrize("head_dim,base", list(itertools.product(HEAD_DIMS, BASES)))
def test_parity_yarn_options(options, head_dim, base):
    for factor, L in itertools.product((2.0, 16.0, 32.0), ORIGINALS):
        hf = {
            "rope_type": "yarn",
            "rope_theta": base,
            "factor": factor,
            "original_max_position_embeddings": L,
            **options,
        }
        cfg = rope.RopeConfig.from_hf(hf)
        check(cfg, hf, head_dim, int(L * factor), int(L * factor))


@pytest.mark.parametrize("head_dim,base,L", list(itertools.product(HEAD_DIMS, BASES, ORIGINALS)))
def test_parity_longrope(head_dim, base, L):
    rng = np.random.default_rng(head_dim + L)
    F = head_dim // 2
    short = list(1.0 + 0.1 * rng.random(F))
    long = list(1.0 + 10.0 * rng.random(F))
    for factor, attention_factor in ((4.0, None), (32.0, None), (8.0, 1.3)):
        hf = {
            "rope_type": "longrope",
            "rope_theta": base,
            "factor": factor,
            "original_max_position_embeddings": L,
            "short_factor": short,
            "long_factor": long,
        }
        if attention_factor:
            hf["attention_factor"] = attention_factor
        cfg = rope.RopeConfig.from_hf(hf)
        for seq_len in (L // 2, L, L + 1, int(L * factor)):
            check(cfg, hf, head_dim, seq_len, int(L * factor))
        fn = jax.jit(lambda n, cfg=cfg: rope.rope_params(cfg, head_dim, n)[0])
        np.testing.assert_allclose(
            np.asarray(fn(jnp.int32(L + 1))), hf_rope(hf, head_dim, L + 1, L)[0], rtol=1e-6
        )
        np.testing.assert_allclose(
            np.asarray(fn(jnp.int32(L))), hf_rope(hf, head_dim, L, L)[0], rtol=1e-6
        )


# -- identities for the methods transformers lacks (METHOD.md) -------------------------------


def theta(base, d):
    return 1.0 / base ** (np.arange(0, d, 2, dtype=np.float64) / d)


@pytest.mark.parametrize("head_dim,base,factor,L", GRID)
def test_ntk_is_default_with_new_base(head_dim, base, factor, L):
    inv, scale = ours(rope.RopeConfig("ntk", base, factor), head_dim, 10 * L)
    new_base = base * factor ** (head_dim / (head_dim - 2))
    ref, _ = ours(rope.RopeConfig("default", new_base), head_dim, 10 * L)
    np.testing.assert_allclose(inv, ref, rtol=1e-6)
    np.testing.assert_allclose(inv, theta(new_base, head_dim), rtol=1e-6)  # closed form, float64
    assert scale == 1.0
    # NTK-aware keeps the highest frequency and interpolates the lowest by exactly s
    assert inv[0] == np.float32(1.0)
    np.testing.assert_allclose(theta(base, head_dim)[-1] / inv[-1], factor, rtol=1e-5)


@pytest.mark.parametrize("head_dim,base,factor,L", GRID)
def test_ntk_by_parts_is_yarn_without_scale(head_dim, base, factor, L):
    parts, scale = ours(rope.RopeConfig("ntk_by_parts", base, factor, L), head_dim, 0)
    yarn, yarn_scale = ours(rope.RopeConfig("yarn", base, factor, L), head_dim, 0)
    np.testing.assert_array_equal(parts, yarn)
    assert scale == 1.0
    assert yarn_scale == np.float32(0.1 * math.log(factor) + 1.0)


@pytest.mark.parametrize("head_dim,base,L", list(itertools.product(HEAD_DIMS, BASES, ORIGINALS)))
def test_dynamic_yarn_and_linear_follow_length(head_dim, base, L):
    s = 16.0
    dyn_yarn = jax.jit(
        lambda n: rope.rope_params(rope.RopeConfig("dynamic_yarn", base, s, L), head_dim, n)
    )
    dyn_parts = jax.jit(
        lambda n: rope.rope_params(rope.RopeConfig("dynamic_ntk_by_parts", base, s, L), head_dim, n)
    )
    dyn_lin = jax.jit(
        lambda n: rope.rope_params(rope.RopeConfig("dynamic_linear", base, s, L), head_dim, n)
    )
    default, _ = ours(rope.RopeConfig("default", base), head_dim, 0)
    for l in (1, L // 3, L - 1, L):  # at or below L: the original frequencies, scale 1
        for fn in (dyn_yarn, dyn_parts, dyn_lin):
            inv, scale = fn(jnp.int32(l))
            np.testing.assert_allclose(np.asarray(inv), default, rtol=1e-6)
            assert float(scale) == 1.0
    for l in (L + 1, 3 * L, int(5.5 * L), 40 * L):  # above: yarn / linear at s' = l/L
        s_now = l / L
        inv, scale = dyn_yarn(jnp.int32(l))
        ref, ref_scale = ours(rope.RopeConfig("yarn", base, s_now, L), head_dim, l)
        np.testing.assert_allclose(np.asarray(inv), ref, rtol=2e-6)
        np.testing.assert_allclose(float(scale), float(ref_scale), rtol=1e-6)
        inv, scale = dyn_parts(jnp.int32(l))
        np.testing.assert_allclose(np.asarray(inv), ref, rtol=2e-6)
        assert float(scale) == 1.0
        inv, _ = dyn_lin(jnp.int32(l))
        np.testing.assert_allclose(np.asarray(inv), theta(base, head_dim) / s_now, rtol=2e-6)


def test_dynamic_yarn_finetuned_never_below_factor():
    cfg = rope.RopeConfig("dynamic_yarn", 1e4, 16.0, 4096, finetuned=True)
    static, static_scale = ours(rope.RopeConfig("yarn", 1e4, 16.0, 4096), 128, 0)
    for l in (100, 4096, 65536):  # s' = max(s, l/L) = s
        inv, scale = ours(cfg, 128, l)
        np.testing.assert_allclose(inv, static, rtol=2e-6)
        np.testing.assert_allclose(scale, static_scale, rtol=1e-6)
    inv, _ = ours(cfg, 128, 131072)  # s' = 32
    ref, _ = ours(rope.RopeConfig("yarn", 1e4, 32.0, 4096), 128, 0)
    np.testing.assert_allclose(inv, ref, rtol=2e-6)


def test_worked_ramp_bounds_and_scales():
    # METHOD.md's worked values
    for (d, b, L), bounds in {
        (128, 1e4, 4096): (20, 46),
        (128, 1e4, 2048): (16, 41),
        (128, 5e5, 4096): (14, 32),
        (64, 1e4, 4096): (10, 23),
    }.items():
        assert rope.ramp_bounds(rope.RopeConfig("yarn", b, 16.0, L), d) == bounds
    for s, value in {
        2: 1.0693147,
        4: 1.1386294,
        8: 1.2079442,
        16: 1.2772589,
        32: 1.3465736,
    }.items():
        _, scale = ours(rope.RopeConfig("yarn", 1e4, float(s), 4096), 128, 0)
        assert abs(float(scale) - value) < 1e-7
    _, scale = ours(rope.RopeConfig("yarn", 1e4, 1.0, 4096), 128, 0)
    assert float(scale) == 1.0


def test_ramp_shape_closed_form():
    # yarn d=128, b=1e4, L=4096: pairs < 20 kept, >= 46 interpolated by s, linear in between
    s = 8.0
    inv, _ = ours(rope.RopeConfig("yarn", 1e4, s, 4096), 128, 0)
    th = theta(1e4, 128)
    i = np.arange(64)
    ramp = np.clip((i - 20) / 26, 0, 1)
    np.testing.assert_allclose(inv, th / s * ramp + th * (1 - ramp), rtol=1e-6)


def test_dynamic_methods_compile_once():
    traces = []
    longrope = {"short_factor": (1.0,) * 32, "long_factor": (2.0,) * 32}
    cfgs = [
        rope.RopeConfig(m, 1e4, 8.0, 512, **(longrope if m == "longrope" else {}))
        for m in sorted(rope.DYNAMIC_METHODS)
    ]

    @jax.jit
    def forward(x_btnh, seq_len):
        traces.append(1)
        outs = []
        for cfg in cfgs:
            inv, scale = rope.rope_params(cfg, 64, seq_len)
            sin, cos = rope.sin_cos(jnp.arange(x_btnh.shape[1]), inv, scale)
            outs.append(rope.apply_rope(x_btnh, sin, cos))
        return outs

    x = jnp.ones((1, 16, 2, 64), jnp.float32)
    results = [
        forward(x, jnp.int32(l)) for l in (10, 100, 511, 512, 513, 1000, 2048, 4097, 9000, 70000)
    ]
    assert len(traces) == 1
    # and the length really changed every method's result
    for i, cfg in enumerate(cfgs):
        short, long = np.asarray(results[0][i]), np.asarray(results[-1][i])
        assert not np.allclose(short, long), cfg.rope_type


# -- sin / cos / apply ------------------------------------------------------------------------


def test_sin_cos_against_float64():
    inv, scale = rope.rope_params(rope.RopeConfig("yarn", 1e4, 32.0, 4096), 128, 0)
    positions = np.array([0, 1, 255, 256, 257, 4095, 4096, 65535, 100000, 131071], np.int32)
    sin, cos = rope.sin_cos(jnp.asarray(positions), inv, scale)
    inv64 = np.asarray(inv, np.float64)  # the float32 frequencies, exactly
    angles = positions[:, None].astype(np.float64) * np.concatenate([inv64, inv64])
    # Tolerance: the angle is one float32 product, off by at most half an ulp of |angle|
    # (2^-24 relative); sin/cos then add ~1e-6; both are multiplied by the scale (~1.35).
    tol = float(scale) * (np.abs(angles) * 2.0**-24 + 2e-6)
    s = float(scale)
    assert np.all(np.abs(np.asarray(sin) - s * np.sin(angles)) <= tol)
    assert np.all(np.abs(np.asarray(cos) - s * np.cos(angles)) <= tol)
    assert sin.dtype == jnp.float32 and sin.shape == (10, 128)


def test_sin_cos_bf16_positions_not_rounded():
    inv, _ = rope.rope_params(rope.RopeConfig(), 64, 0)
    sin, _ = rope.sin_cos(jnp.array([256, 257], jnp.int32), inv, 1.0)
    assert not np.allclose(np.asarray(sin[0]), np.asarray(sin[1]))


def test_apply_rope_matches_hf_formula_and_complex_rotation():
    import torch
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    rng = np.random.default_rng(0)
    B, T, N, H = 2, 7, 3, 16
    x = rng.standard_normal((B, T, N, H)).astype(np.float32)
    positions = np.stack([np.arange(T), np.arange(100, 100 + T)]).astype(np.int32)
    inv, scale = rope.rope_params(rope.RopeConfig("yarn", 1e4, 4.0, 64), H, 0)
    sin, cos = rope.sin_cos(jnp.asarray(positions), inv, scale)
    y = np.asarray(rope.apply_rope(jnp.asarray(x), sin, cos))
    # HF: [B, N, T, H] layout, cos/sin [B, T, H]
    xt = torch.from_numpy(x).transpose(1, 2)
    q, _ = apply_rotary_pos_emb(
        xt, xt, torch.from_numpy(np.array(cos)), torch.from_numpy(np.array(sin))
    )
    np.testing.assert_allclose(y, q.transpose(1, 2).numpy(), rtol=1e-6, atol=1e-6)
    # independent: pair i = (x_i, x_{i+H/2}) rotated as a complex number by position * inv_freq_i
    z = x[..., : H // 2] + 1j * x[..., H // 2 :]
    ang = positions[:, :, None, None] * np.asarray(inv, np.float64)
    rz = z * np.exp(1j * ang) * float(scale)
    np.testing.assert_allclose(y, np.concatenate([rz.real, rz.imag], -1), atol=2e-5)
    # bf16 in, bf16 out
    assert rope.apply_rope(jnp.asarray(x, jnp.bfloat16), sin, cos).dtype == jnp.bfloat16


# -- configs: HF forms, round trips, errors ---------------------------------------------------


def test_from_hf_all_forms():
    v5 = {
        "model_type": "llama",
        "max_position_embeddings": 65536,
        "rope_parameters": {
            "rope_type": "yarn",
            "rope_theta": 5e5,
            "factor": 16.0,
            "original_max_position_embeddings": 4096,
        },
    }
    v4 = {
        "model_type": "llama",
        "rope_theta": 5e5,
        "max_position_embeddings": 65536,
        "rope_scaling": {"type": "yarn", "factor": 16.0, "original_max_position_embeddings": 4096},
    }
    v4b = {**v4, "rope_scaling": {**v4["rope_scaling"], "rope_type": "yarn"}}
    del v4b["rope_scaling"]["type"]
    expected = rope.RopeConfig("yarn", 5e5, 16.0, 4096)
    for form in (v5, v4, v4b):
        assert rope.RopeConfig.from_hf(form) == expected
    # the published Yarn-Llama-2 form
    published = {
        "model_type": "llama",
        "max_position_embeddings": 65536,
        "rope_scaling": {
            "type": "yarn",
            "factor": 16.0,
            "original_max_position_embeddings": 4096,
            "finetuned": True,
        },
    }
    cfg = rope.RopeConfig.from_hf(published)
    assert cfg.finetuned and cfg.rope_type == "yarn" and cfg.rope_theta == 10000.0
    # no rope settings at all
    assert rope.RopeConfig.from_hf({"model_type": "llama", "rope_theta": 1e5}) == rope.RopeConfig(
        rope_theta=1e5
    )
    # HF's dynamic reads L from max_position_embeddings
    dyn = rope.RopeConfig.from_hf(
        {"max_position_embeddings": 2048, "rope_scaling": {"type": "dynamic", "factor": 2.0}}
    )
    assert dyn.rope_type == "dynamic_ntk" and dyn.original_max_position_embeddings == 2048


def test_yarn_mistral_constants():
    config = {
        "model_type": "mistral",
        "rope_theta": 10000.0,
        "max_position_embeddings": 65536,
        "auto_map": {"AutoModelForCausalLM": "modeling_mistral_yarn.MistralForCausalLM"},
        "rope_scaling": {
            "type": "yarn",
            "factor": 8.0,
            "original_max_position_embeddings": 8192,
            "finetuned": True,
        },
    }
    cfg = rope.RopeConfig.from_hf(config)
    assert (cfg.beta_fast, cfg.beta_slow) == (128.0, 2.0)
    _, scale = ours(cfg, 128, 0)
    assert float(scale) == np.float32(0.07 * math.log(8.0) + 1.0)


@pytest.mark.parametrize(
    "cfg,head_dim",
    [
        (rope.RopeConfig("default", 1e5), 64),
        (rope.RopeConfig("linear", 1e4, 4.0), 64),
        (rope.RopeConfig("dynamic", 1e4, 4.0, 2048), 64),
        (rope.RopeConfig("yarn", 1e4, 8.0, 2048, beta_fast=16.0, truncate=False), 64),
        (rope.RopeConfig("ntk_by_parts", 1e4, 8.0, 2048), 128),
        (rope.RopeConfig("ntk", 1e4, 8.0), 128),
        (rope.RopeConfig("llama3", 5e5, 8.0, 8192, low_freq_factor=1.0, high_freq_factor=4.0), 128),
        (
            rope.RopeConfig(
                "longrope", 1e4, 16.0, 4096, short_factor=[1.0] * 32, long_factor=[3.0] * 32
            ),
            64,
        ),
    ],
    ids=lambda c: getattr(c, "rope_type", str(c)),
)
@pytest.mark.parametrize("form", ["v4", "v5"])
def test_to_hf_is_understood_by_transformers(cfg, head_dim, form):
    fragment = cfg.to_hf(form, head_dim=head_dim)
    config = {"model_type": "llama", "max_position_embeddings": 4096, **fragment}
    # transformers reads what we wrote and computes the same frequencies
    hf_config = LlamaConfig(hidden_size=head_dim * 2, num_attention_heads=2, head_dim=head_dim,
                            **{k: v for k, v in config.items() if k != "model_type"})  # fmt: skip
    params = hf_config.rope_parameters
    seq_len = 3 * (cfg.original_max_position_embeddings or 4096)
    hf_inv, hf_scale = hf_rope(params, head_dim, seq_len, hf_config.max_position_embeddings)
    inv, scale = ours(cfg, head_dim, seq_len)
    np.testing.assert_allclose(inv, hf_inv, rtol=1e-6)
    assert scale == np.float32(hf_scale)
    # and we read it back to the same numbers
    back = rope.RopeConfig.from_hf(config)
    np.testing.assert_allclose(ours(back, head_dim, seq_len)[0], inv, rtol=1e-6)


def test_to_hf_refuses_methods_without_equivalent():
    for method in ("dynamic_yarn", "dynamic_linear", "dynamic_ntk_by_parts"):
        with pytest.raises(ValueError, match="no rope_type equivalent.*Exportable methods"):
            rope.RopeConfig(method, 1e4, 4.0, 2048).to_hf()
    with pytest.raises(ValueError, match="needs head_dim"):
        rope.RopeConfig("ntk", 1e4, 4.0).to_hf()


def test_aliases():
    assert rope.RopeConfig("none").rope_type == "default"
    assert rope.RopeConfig("pi", factor=2.0).rope_type == "linear"
    assert rope.RopeConfig("dynamic", factor=2.0, original_max_position_embeddings=8).rope_type == (
        "dynamic_ntk"
    )
    assert rope.canonical_name("Dynamic-NTK") == "dynamic_ntk"


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(rope_type="yarnn"), r"Unknown RoPE method 'yarnn'. Valid methods: .*dynamic_ntk"),
        (dict(rope_type="linear", factor=0.5), r"factor must be >= 1"),
        (dict(rope_type="yarn", factor=4.0), r"needs original_max_position_embeddings"),
        (dict(rope_type="dynamic_ntk", factor=4.0), r"needs original_max_position_embeddings"),
        (
            dict(rope_type="longrope", factor=4.0, original_max_position_embeddings=8),
            r"needs short_factor and long_factor",
        ),
        (
            dict(
                rope_type="longrope",
                factor=4.0,
                original_max_position_embeddings=8,
                short_factor=[1.0] * 4,
                long_factor=[1.0] * 5,
            ),
            r"same length",
        ),
        (dict(rope_type="llama3", factor=8.0, original_max_position_embeddings=8), r"llama3"),
        (dict(rope_theta=0.5), r"rope_theta must be"),
    ],
)
def test_bad_configs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        rope.RopeConfig(**kwargs)


def test_bad_hf_configs():
    with pytest.raises(ValueError, match=r"Unknown rope config keys \['factr'\]"):
        rope.RopeConfig.from_hf({"rope_scaling": {"type": "linear", "factr": 2.0}})
    with pytest.raises(ValueError, match="Unknown RoPE method 'su'"):
        rope.RopeConfig.from_hf({"rope_scaling": {"type": "su", "factor": 2.0}})
    with pytest.raises(ValueError, match="Per-layer"):
        rope.RopeConfig.from_hf({"rope_parameters": {"full_attention": {"rope_type": "default"}}})
    with pytest.raises(
        ValueError, match="longrope short_factor/long_factor need head_dim // 2 = 32"
    ):
        cfg = rope.RopeConfig(
            "longrope", 1e4, 4.0, 64, short_factor=[1.0] * 8, long_factor=[1.0] * 8
        )
        rope.rope_params(cfg, 64, 10)


def test_describe_classifies_pairs():
    cfg = rope.RopeConfig("yarn", 1e4, 16.0, 4096)
    desc = rope.describe(cfg, 128)
    low, high = rope.ramp_bounds(cfg, 128)
    kinds = [r["treatment"].split()[0] for r in desc.rows]
    assert kinds[: low + 1] == ["extrapolated"] * (low + 1)
    assert set(kinds[low + 1 : high]) == {"blended"}
    assert kinds[high:] == ["interpolated"] * (64 - high)
    for r in desc.rows:
        np.testing.assert_allclose(r["r"], 4096 / (2 * math.pi * 1e4 ** (2 * r["pair"] / 128)))
    text = str(desc)
    assert "attention scale 1.2772589" in text and len(text.splitlines()) == 64 + 3
    # dynamic methods at a given length
    dyn = rope.describe(rope.RopeConfig("dynamic_linear", 1e4, 16.0, 4096), 64, seq_len=8192)
    assert {round(r["scale"], 4) for r in dyn.rows} == {2.0}
