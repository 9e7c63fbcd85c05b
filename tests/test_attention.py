"""Attention kernels: xla against a float64 NumPy oracle, chunked against xla (same tolerances),
for causal GQA, sliding windows, padding / packing segments, offset positions, a KV cache
layout (T != S), and gradients. Chunked memory must grow linearly with length."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from yarn_jax.attention import attention, choose_impl

TOL = dict(atol=2e-6, rtol=2e-5)  # float32 kernels; both accumulate softmax in float32


def _qkv(B=2, T=50, S=None, N=6, K=2, H=16, seed=0):
    S = T if S is None else S
    r = np.random.default_rng(seed)
    q = r.normal(size=(B, T, N, H)).astype(np.float32)
    k = r.normal(size=(B, S, K, H)).astype(np.float32)
    v = r.normal(size=(B, S, K, H)).astype(np.float32)
    return q, k, v


def _oracle(q, k, v, qp, kp, qs=None, ks=None, window=None):
    """float64 NumPy attention, mask written out element by element."""
    B, T, N, H = q.shape
    K = k.shape[2]
    out = np.zeros((B, T, N, H))
    for b in range(B):
        for n in range(N):
            kh = n // (N // K)
            s = q[b, :, n].astype(np.float64) @ k[b, :, kh].astype(np.float64).T / np.sqrt(H)
            d = qp[b][:, None] - kp[b][None, :]
            ok = d >= 0
            if window is not None:
                ok &= d < window
            if qs is not None:
                ok &= qs[b][:, None] == ks[b][None, :]
            s = np.where(ok, s, -np.inf)
            m = s.max(-1, keepdims=True)
            p = np.where(ok, np.exp(s - np.where(np.isfinite(m), m, 0)), 0)
            den = p.sum(-1, keepdims=True)
            out[b, :, n] = (p / np.where(den == 0, 1, den)) @ v[b, :, kh]
    return out


def _both(q, k, v, **kw):
    a = attention(q, k, v, impl="xla", **kw)
    c = attention(q, k, v, impl="chunked", block_q=16, block_k=8, **kw)
    return np.asarray(a), np.asarray(c)


@pytest.mark.parametrize("window", [None, 7])
@pytest.mark.parametrize("N,K", [(4, 4), (6, 2), (4, 1)])
def test_causal_gqa_and_window(N, K, window):
    q, k, v = _qkv(N=N, K=K)
    pos = np.broadcast_to(np.arange(50), (2, 50))
    a, c = _both(q, k, v, q_positions=pos, k_positions=pos, sliding_window=window)
    np.testing.assert_allclose(a, _oracle(q, k, v, pos, pos, window=window), **TOL)
    np.testing.assert_allclose(c, a, **TOL)


def test_padding_segments_and_offset_positions():
    q, k, v = _qkv()
    # Row 0: left padding (segment 0) then tokens at positions 0..; row 1: two packed documents
    # starting at an offset of 1000.
    seg = np.ones((2, 50), np.int32)
    seg[0, :9] = 0
    seg[1, 30:] = 2
    pos = np.stack([np.clip(np.arange(50) - 9, 0, None), 1000 + np.arange(50)])
    pos[1, 30:] = 1000 + np.arange(20)
    kw = dict(q_positions=pos, k_positions=pos, q_segment_ids=seg, k_segment_ids=seg)
    a, c = _both(q, k, v, **kw)
    np.testing.assert_allclose(a, _oracle(q, k, v, pos, pos, seg, seg), **TOL)
    np.testing.assert_allclose(c, a, **TOL)


def test_cache_layout_queries_shorter_than_keys():
    """Decode: 3 queries against a 40-slot cache whose last slots are still empty."""
    q, k, v = _qkv(T=3, S=40)
    kp = np.broadcast_to(np.where(np.arange(40) < 30, np.arange(40), 2**30), (2, 40))
    ks = (kp < 2**30).astype(np.int32)
    qp = np.broadcast_to(np.arange(27, 30), (2, 3))
    kw = dict(q_positions=qp, k_positions=kp, q_segment_ids=np.ones((2, 3), np.int32),
              k_segment_ids=ks)  # fmt: skip
    a, c = _both(q, k, v, **kw)
    np.testing.assert_allclose(a, _oracle(q, k, v, qp, kp, np.ones((2, 3)), ks), **TOL)
    np.testing.assert_allclose(c, a, **TOL)


def test_query_without_visible_keys_returns_zeros():
    q, k, v = _qkv(T=4, S=4)
    qp = np.zeros((2, 4), np.int32)
    kp = np.full((2, 4), 5, np.int32)  # every key in the future
    a, c = _both(q, k, v, q_positions=qp, k_positions=kp)
    assert np.all(a == 0) and np.all(c == 0)


def test_chunked_gradients_equal_xla():
    q, k, v = _qkv(T=40, N=4, K=2)
    pos = np.broadcast_to(np.arange(40), (2, 40))
    w = np.random.default_rng(1).normal(size=q.shape).astype(np.float32)

    def loss(impl):
        def f(q, k, v):
            o = attention(q, k, v, q_positions=pos, k_positions=pos, sliding_window=9,
                          impl=impl, block_q=16, block_k=8)  # fmt: skip
            return jnp.sum(o * w)

        return jax.grad(f, argnums=(0, 1, 2))(q, k, v)

    for ga, gc in zip(loss("xla"), loss("chunked")):
        np.testing.assert_allclose(np.asarray(gc), np.asarray(ga), atol=2e-5, rtol=1e-4)


def test_bfloat16_inputs_agree():
    q, k, v = (jnp.asarray(x, jnp.bfloat16) for x in _qkv())
    pos = np.broadcast_to(np.arange(50), (2, 50))
    a, c = _both(q, k, v, q_positions=pos, k_positions=pos)
    assert a.dtype == c.dtype == jnp.bfloat16
    np.testing.assert_allclose(c.astype(np.float32), a.astype(np.float32), atol=2e-2)


def test_chunked_memory_is_linear_in_length():
    """XLA's own buffer plan: the chunked kernel's temporaries at 16k tokens stay far below the
    16k x 16k score matrix (1 GiB per head in float32) that the xla kernel needs."""
    T, N, K, H = 16384, 9, 3, 64

    def temp_bytes(impl):
        spec = jax.ShapeDtypeStruct
        f = jax.jit(
            lambda q, k, v: attention(
                q, k, v, q_positions=jnp.arange(T)[None], k_positions=jnp.arange(T)[None], impl=impl
            )  # fmt: skip
        )
        c = f.lower(spec((1, T, N, H), jnp.float32), spec((1, T, K, H), jnp.float32),
                    spec((1, T, K, H), jnp.float32)).compile()  # fmt: skip
        return c.memory_analysis().temp_size_in_bytes

    chunked = temp_bytes("chunked")
    assert chunked < 256 * 2**20, chunked  # vs N*T*T*4 = 9 GiB for the scores alone
    assert temp_bytes("xla") > 8 * 2**30


def test_auto_choice_and_errors():
    assert choose_impl("auto", B=1, T=128, S=128, N=8, contiguous=True, platform="cpu") == "xla"
    assert (
        choose_impl("auto", B=1, T=32768, S=32768, N=9, contiguous=True, platform="cpu")
        == "chunked"
    )
    bf16 = jnp.bfloat16
    assert (
        choose_impl("auto", B=1, T=64, S=64, N=8, contiguous=True, dtype=bf16, platform="gpu")
        == "cudnn"
    )
    assert (  # cuDNN has no float32 flash kernel
        choose_impl(
            "auto", B=1, T=64, S=64, N=8, contiguous=True, dtype=jnp.float32, platform="gpu"
        )
        == "xla"
    )
    assert choose_impl("auto", B=1, T=1, S=64, N=8, contiguous=False, platform="gpu") == "xla"
    q, k, v = _qkv(T=8)
    pos = np.broadcast_to(np.arange(8), (2, 8))
    with pytest.raises(ValueError, match="impl"):
        attention(q, k, v, q_positions=pos, k_positions=pos, impl="flash9")
    with pytest.raises(ValueError, match="contiguous"):
        attention(q, k, v, q_positions=pos, k_positions=pos, impl="cudnn")
    with pytest.raises(ValueError, match="multiple"):
        attention(q[:, :, :5], k, v, q_positions=pos, k_positions=pos)
