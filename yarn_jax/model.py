"""LLaMA-family decoder (llama, mistral, qwen2) in Flax NNX.

Dimension key: B batch, T length, S key length, D model dim, N query heads, K kv heads,
H head dim, M mlp hidden, V vocab, L layers.

The rope method lives in `LlamaConfig.rope` (a `rope.RopeConfig`). sin/cos are computed once per
forward pass, in float32, from `rope.rope_params` at the current length `l = 1 + max position
of a real token` (a traced int32, so dynamic methods never recompile for a new length), and
shared by every layer; attention only sees rotated q/k.

Parameters carry logical axis names (`out_sharding` metadata, never applied eagerly):
"vocab", "embed", "q_heads", "kv_heads", "head_dim", "mlp", "norm". `yarn_jax.sharding` maps
them to mesh axes at the call site.

Compilation: `model(ids)`, `model.hidden(ids)` and `model.logits_from_hidden(h)` split the model
(graphdef, state) and call a `jax.jit`-compiled pure function with the graphdef static. One
compile per (graphdef = config incl. rope method, input shapes, which optional inputs are
given); a second call with the same shapes reuses it, whatever its positions or length values.
`with_rope` gives a new graphdef, hence one new compile per method.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from yarn_jax import rope as rope_lib
from yarn_jax.attention import IMPLS, attention

__all__ = [
    "Llama",
    "LlamaConfig",
    "init_cache",
    "with_rope",
]

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")
EMPTY_POSITION = 2**30  # position of an unfilled KV-cache slot
LOGIT_CHUNK = 256  # positions per LM-head matmul in forward_logits
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}

# config.json keys that do not change the forward math (bookkeeping, training-only, generation).
IGNORED_HF_KEYS = frozenset(
    {
        "_name_or_path", "architectures", "transformers_version", "torch_dtype", "dtype",
        "use_cache", "initializer_range", "attention_dropout", "pad_token_id",
        "pretraining_tp",  # HF v4 split matmuls into pretraining_tp slices: same math
        "output_attentions", "output_hidden_states", "return_dict", "tie_encoder_decoder",
        "is_encoder_decoder", "is_decoder", "add_cross_attention", "chunk_size_feed_forward",
        "id2label", "label2id", "problem_type", "tokenizer_class", "prefix", "task_specific_params",
        "max_length", "min_length", "do_sample", "early_stopping", "num_beams", "temperature",
        "top_k", "top_p", "repetition_penalty", "length_penalty", "no_repeat_ngram_size",
        "bad_words_ids", "num_return_sequences", "decoder_start_token_id", "sep_token_id",
        "use_bfloat16", "torchscript", "finetuning_task", "cross_attention_hidden_size",
        "tf_legacy_loss", "pruned_heads", "begin_suppress_tokens", "suppress_tokens",
        "forced_bos_token_id", "forced_eos_token_id", "remove_invalid_values",
        "exponential_decay_length_penalty", "output_scores", "return_dict_in_generate",
        "diversity_penalty", "num_beam_groups", "typical_p", "encoder_no_repeat_ngram_size",
        "use_return_dict", "model_max_length", "max_sequence_length",
        "auto_map",  # read by RopeConfig.from_hf (Yarn-Mistral constants)
        "use_mrope",  # qwen2: only meaningful for the VL models; the text model ignores it
        "max_window_layers",  # qwen2: only used when use_sliding_window is true (refused)
        "bos_token_id", "eos_token_id",  # kept, but do not change the math
    }
)  # fmt: skip
# Keys consumed by RopeConfig.from_hf.
ROPE_HF_KEYS = frozenset(
    {"rope_theta", "rope_scaling", "rope_parameters", "partial_rotary_factor",
     "original_max_position_embeddings"}
)  # fmt: skip
# Keys read into LlamaConfig fields (plus checks below).
MODEL_HF_KEYS = frozenset(
    {
        "model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
        "num_attention_heads", "num_key_value_heads", "head_dim", "rms_norm_eps",
        "max_position_embeddings", "tie_word_embeddings", "attention_bias", "mlp_bias",
        "hidden_act", "sliding_window", "use_sliding_window", "layer_types",
    }
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    """Architecture + numerics of a LLaMA-family model. Frozen, hashable (jit-static)."""

    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int = 32
    head_dim: int | None = None
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = False
    attention_bias: bool = False  # q/k/v biases (qwen2, llama with attention_bias)
    attention_out_bias: bool = False  # o_proj bias (llama with attention_bias; not qwen2)
    sliding_window: int | None = None  # mistral local attention window
    rope: rope_lib.RopeConfig = dataclasses.field(default_factory=rope_lib.RopeConfig)
    model_type: str = "llama"
    bos_token_id: int | None = 1
    eos_token_id: int | tuple[int, ...] | None = 2
    dtype: str = "float32"  # activations
    param_dtype: str = "float32"
    attention_impl: str = "auto"

    def __post_init__(self):
        if self.head_dim is None:
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_attention_heads)
        if isinstance(self.eos_token_id, list):
            object.__setattr__(self, "eos_token_id", tuple(self.eos_token_id))
        problems = []
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            problems.append(f"model_type {self.model_type!r} not in {SUPPORTED_MODEL_TYPES}")
        if self.num_attention_heads % self.num_key_value_heads:
            problems.append(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.head_dim % 2:
            problems.append(f"head_dim must be even for RoPE, got {self.head_dim}")
        for name in ("dtype", "param_dtype"):
            if getattr(self, name) not in _DTYPES:
                problems.append(
                    f"{name} must be one of {sorted(_DTYPES)}, got {getattr(self, name)!r}"
                )
        if self.attention_impl not in IMPLS:
            problems.append(f"attention_impl must be one of {IMPLS}, got {self.attention_impl!r}")
        if not isinstance(self.rope, rope_lib.RopeConfig):
            problems.append(f"rope must be a rope.RopeConfig, got {type(self.rope).__name__}")
        if problems:
            raise ValueError("Invalid LlamaConfig: " + "; ".join(problems) + ".")

    @property
    def jnp_dtype(self):
        return _DTYPES[self.dtype]

    @property
    def jnp_param_dtype(self):
        return _DTYPES[self.param_dtype]

    def replace(self, **changes) -> LlamaConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_hf(
        cls,
        config: Mapping[str, Any],
        *,
        dtype: str = "float32",
        param_dtype: str | None = None,
        attention_impl: str = "auto",
        source: str = "config",
    ) -> LlamaConfig:
        """Build from a Hugging Face `config.json` dict (llama, mistral, qwen2).

        Every key must be understood: read (MODEL_HF_KEYS, ROPE_HF_KEYS) or listed as not
        changing the math (IGNORED_HF_KEYS). Anything else, or a supported key with a value we
        do not implement (hidden_act != silu, mlp_bias, qwen2 sliding windows), is one
        ValueError listing every problem. `source` names the file in the message.
        """
        d = dict(config)
        problems = []
        model_type = d.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            problems.append(
                f"model_type {model_type!r} is not supported (supported: {SUPPORTED_MODEL_TYPES})"
            )
        unknown = sorted(set(d) - IGNORED_HF_KEYS - ROPE_HF_KEYS - MODEL_HF_KEYS)
        if unknown:
            problems.append(
                f"unknown keys that may change the model's math: {unknown} (yarn_jax would "
                "compute a different model; remove them only if you know they are harmless)"
            )
        if d.get("hidden_act", "silu") != "silu":
            problems.append(f"hidden_act {d['hidden_act']!r} is not supported (only 'silu')")
        if d.get("mlp_bias", False):
            problems.append("mlp_bias=true is not supported")
        sliding = None
        if model_type == "mistral":
            sliding = d.get("sliding_window")
        elif model_type == "qwen2":
            if d.get("use_sliding_window", False):
                problems.append(
                    "qwen2 use_sliding_window=true (per-layer windows) is not supported"
                )
        elif d.get("sliding_window") is not None:
            problems.append(f"sliding_window is not a {model_type!r} setting")
        layer_types = d.get("layer_types")
        if layer_types is not None:
            want = "sliding_attention" if sliding is not None else "full_attention"
            odd = sorted({t for t in layer_types if t != want})
            if odd:
                problems.append(f"layer_types {odd} differ from {want!r} for every layer")
        attention_bias = d.get("attention_bias", model_type == "qwen2")
        for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                    "num_attention_heads"):  # fmt: skip
            if key not in d:
                problems.append(f"missing required key {key!r}")
        rope_cfg = None
        if not problems:
            try:
                rope_cfg = rope_lib.RopeConfig.from_hf(d)
            except ValueError as e:
                problems.append(f"rope: {e}")
        if problems:
            raise ValueError(f"{source}: cannot build a LlamaConfig: " + "; ".join(problems))
        eos = d.get("eos_token_id")
        return cls(
            vocab_size=int(d["vocab_size"]),
            hidden_size=int(d["hidden_size"]),
            intermediate_size=int(d["intermediate_size"]),
            num_hidden_layers=int(d["num_hidden_layers"]),
            num_attention_heads=int(d["num_attention_heads"]),
            num_key_value_heads=int(d.get("num_key_value_heads") or d["num_attention_heads"]),
            head_dim=int(d["head_dim"]) if d.get("head_dim") else None,
            rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)),
            max_position_embeddings=int(d.get("max_position_embeddings", 4096)),
            tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
            attention_bias=bool(attention_bias),
            attention_out_bias=bool(attention_bias) and model_type == "llama",
            sliding_window=int(sliding) if sliding is not None else None,
            rope=rope_cfg,
            model_type=model_type,
            bos_token_id=d.get("bos_token_id"),
            eos_token_id=tuple(eos) if isinstance(eos, list) else eos,
            dtype=dtype,
            param_dtype=param_dtype or dtype,
            attention_impl=attention_impl,
        )

    def to_hf(self, rope_form: str = "v5") -> dict[str, Any]:
        """A `config.json` dict transformers loads as the same model (rope per RopeConfig.to_hf)."""
        arch = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                "qwen2": "Qwen2ForCausalLM"}[self.model_type]  # fmt: skip
        d: dict[str, Any] = {
            "architectures": [arch],
            "model_type": self.model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": list(self.eos_token_id)
            if isinstance(self.eos_token_id, tuple)
            else self.eos_token_id,
            "dtype": self.param_dtype,
        }
        if self.model_type == "llama":
            if self.attention_bias != self.attention_out_bias:
                raise ValueError(
                    "transformers' llama has q/k/v/o biases all or none: attention_bias="
                    f"{self.attention_bias}, attention_out_bias={self.attention_out_bias}"
                )
            d["attention_bias"] = self.attention_bias
            d["mlp_bias"] = False
        elif self.model_type == "mistral":
            d["sliding_window"] = self.sliding_window
        elif self.model_type == "qwen2":
            d["use_sliding_window"] = False
            d["sliding_window"] = None
        frag = self.rope.to_hf(form=rope_form, head_dim=self.head_dim)
        if "max_position_embeddings" in frag and frag["max_position_embeddings"]:
            frag["max_position_embeddings"] = (
                max(int(frag["max_position_embeddings"]), self.max_position_embeddings)
                if self.rope.rope_type != "dynamic_ntk"
                else int(frag["max_position_embeddings"])
            )
        d.update(frag)
        return d


# -- modules -----------------------------------------------------------------------------------


def _param(rngs, shape, names, dtype, init="normal"):
    if init == "ones":
        value = jnp.ones(shape, dtype)
    elif init == "zeros":
        value = jnp.zeros(shape, dtype)
    else:
        value = (0.02 * jax.random.normal(rngs.params(), shape, jnp.float32)).astype(dtype)
    # Logical names only; `eager_sharding=False`: sharding is decided by the caller.
    return nnx.Param(value, out_sharding=names, eager_sharding=False)


class Embed(nnx.Module):
    def __init__(self, cfg: LlamaConfig, rngs: nnx.Rngs):
        self.embedding = _param(
            rngs, (cfg.vocab_size, cfg.hidden_size), ("vocab", "embed"), cfg.jnp_param_dtype
        )

    def __call__(self, ids_bt, dtype):
        return jnp.take(self.embedding[...], ids_bt, axis=0).astype(dtype)


class RMSNorm(nnx.Module):
    def __init__(self, dim: int, eps: float, param_dtype, rngs: nnx.Rngs):
        self.scale = _param(rngs, (dim,), ("norm",), param_dtype, init="ones")
        self.eps = eps

    def __call__(self, x_btd):
        # HF LlamaRMSNorm: statistics in float32, cast back, then the weight in x's dtype.
        x32 = x_btd.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return self.scale[...].astype(x_btd.dtype) * y.astype(x_btd.dtype)


class Attention(nnx.Module):
    """GQA projections + kernel; RoPE is applied with sin/cos handed in by the model."""

    def __init__(self, cfg: LlamaConfig, rngs: nnx.Rngs):
        D, N, K, H = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        pd = cfg.jnp_param_dtype
        self.q_proj = _param(rngs, (D, N, H), ("embed", "q_heads", "head_dim"), pd)
        self.k_proj = _param(rngs, (D, K, H), ("embed", "kv_heads", "head_dim"), pd)
        self.v_proj = _param(rngs, (D, K, H), ("embed", "kv_heads", "head_dim"), pd)
        self.o_proj = _param(rngs, (N, H, D), ("q_heads", "head_dim", "embed"), pd)
        if cfg.attention_bias:
            self.q_bias = _param(rngs, (N, H), ("q_heads", "head_dim"), pd, init="zeros")
            self.k_bias = _param(rngs, (K, H), ("kv_heads", "head_dim"), pd, init="zeros")
            self.v_bias = _param(rngs, (K, H), ("kv_heads", "head_dim"), pd, init="zeros")
        if cfg.attention_out_bias:
            self.o_bias = _param(rngs, (D,), ("embed",), pd, init="zeros")
        self.has_bias = cfg.attention_bias
        self.has_out_bias = cfg.attention_out_bias
        self.sliding_window = cfg.sliding_window
        self.impl = cfg.attention_impl

    def project_qkv(self, x_btd):
        dt = x_btd.dtype
        q = jnp.einsum("btd,dnh->btnh", x_btd, self.q_proj[...].astype(dt))
        k = jnp.einsum("btd,dkh->btkh", x_btd, self.k_proj[...].astype(dt))
        v = jnp.einsum("btd,dkh->btkh", x_btd, self.v_proj[...].astype(dt))
        if self.has_bias:
            q = q + self.q_bias[...].astype(dt)
            k = k + self.k_bias[...].astype(dt)
            v = v + self.v_bias[...].astype(dt)
        return q, k, v

    def __call__(self, x_btd, ctx, layer_cache=None):
        """ctx: the per-forward context dict built by Llama (sin/cos, positions, segments)."""
        q_btnh, k_btkh, v_btkh = self.project_qkv(x_btd)
        q_btnh = rope_lib.apply_rope(q_btnh, ctx["sin_q"], ctx["cos_q"])
        new_cache = None
        if layer_cache is None:
            k_bskh = rope_lib.apply_rope(k_btkh, ctx["sin_q"], ctx["cos_q"])
            v_bskh = v_btkh
        else:
            # The cache holds keys *before* RoPE (YaRN §3.3): re-rotated at this call's length,
            # so a dynamic method gives the same logits as a full forward over the same tokens.
            idx = ctx["cache_index"]
            k_all = jax.lax.dynamic_update_slice_in_dim(layer_cache[0], k_btkh, idx, axis=1)
            v_all = jax.lax.dynamic_update_slice_in_dim(layer_cache[1], v_btkh, idx, axis=1)
            new_cache = (k_all, v_all)
            k_bskh = rope_lib.apply_rope(k_all, ctx["sin_k"], ctx["cos_k"])
            v_bskh = v_all
        o_btnh = attention(
            q_btnh, k_bskh, v_bskh,
            q_positions=ctx["q_pos"], k_positions=ctx["k_pos"],
            q_segment_ids=ctx["q_seg"], k_segment_ids=ctx["k_seg"],
            sliding_window=self.sliding_window, impl=self.impl, contiguous=ctx["contiguous"],
        )  # fmt: skip
        out = jnp.einsum("btnh,nhd->btd", o_btnh, self.o_proj[...].astype(x_btd.dtype))
        if self.has_out_bias:
            out = out + self.o_bias[...].astype(x_btd.dtype)
        return out, new_cache


class MLP(nnx.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: LlamaConfig, rngs: nnx.Rngs):
        D, M, pd = cfg.hidden_size, cfg.intermediate_size, cfg.jnp_param_dtype
        self.gate_proj = _param(rngs, (D, M), ("embed", "mlp"), pd)
        self.up_proj = _param(rngs, (D, M), ("embed", "mlp"), pd)
        self.down_proj = _param(rngs, (M, D), ("mlp", "embed"), pd)

    def __call__(self, x_btd):
        dt = x_btd.dtype
        g_btm = jnp.einsum("btd,dm->btm", x_btd, self.gate_proj[...].astype(dt))
        u_btm = jnp.einsum("btd,dm->btm", x_btd, self.up_proj[...].astype(dt))
        return jnp.einsum("btm,md->btd", jax.nn.silu(g_btm) * u_btm, self.down_proj[...].astype(dt))


class Block(nnx.Module):
    def __init__(self, cfg: LlamaConfig, rngs: nnx.Rngs):
        pd = cfg.jnp_param_dtype
        self.attn_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, pd, rngs)
        self.attn = Attention(cfg, rngs)
        self.mlp_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, pd, rngs)
        self.mlp = MLP(cfg, rngs)

    def __call__(self, x_btd, ctx, layer_cache=None):
        a, new_cache = self.attn(self.attn_norm(x_btd), ctx, layer_cache)
        x_btd = x_btd + a
        return x_btd + self.mlp(self.mlp_norm(x_btd)), new_cache


class Llama(nnx.Module):
    """Decoder-only LM. `model(ids)` -> float32 logits; see the module docstring on compiling."""

    def __init__(self, cfg: LlamaConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed = Embed(cfg, rngs)
        self.layers = nnx.List([Block(cfg, rngs) for _ in range(cfg.num_hidden_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, cfg.jnp_param_dtype, rngs)
        if not cfg.tie_word_embeddings:
            self.lm_head = _param(
                rngs, (cfg.hidden_size, cfg.vocab_size), ("embed", "vocab"), cfg.jnp_param_dtype
            )

    # -- pure forward (call these inside your own jit / grad) --------------------------------

    def _context(self, positions_bt, segment_ids_bt, cache, contiguous):
        cfg = self.cfg
        ctx: dict[str, Any] = {"q_pos": positions_bt, "q_seg": segment_ids_bt}
        if cache is None:
            ctx.update(k_pos=positions_bt, k_seg=segment_ids_bt)
            real_pos = (
                positions_bt
                if segment_ids_bt is None
                else jnp.where(segment_ids_bt != 0, positions_bt, -1)
            )
        else:
            idx = cache["index"]
            seg = jnp.ones_like(positions_bt) if segment_ids_bt is None else segment_ids_bt
            k_pos = jax.lax.dynamic_update_slice_in_dim(cache["pos"], positions_bt, idx, axis=1)
            k_seg = jax.lax.dynamic_update_slice_in_dim(cache["seg"], seg, idx, axis=1)
            ctx.update(k_pos=k_pos, k_seg=k_seg, q_seg=seg, cache_index=idx)
            real_pos = jnp.where(k_seg != 0, k_pos, -1)
        # l = 1 + max position of a real token, a traced int32: one compile for all lengths.
        seq_len = (jnp.max(real_pos) + 1).astype(jnp.int32)
        inv_freq_f, scale = rope_lib.rope_params(cfg.rope, cfg.head_dim, seq_len)
        # float32 angles at full precision (bf16 would round position 257 to 256).
        ctx["sin_q"], ctx["cos_q"] = rope_lib.sin_cos(positions_bt, inv_freq_f, scale)
        if cache is not None:
            ctx["sin_k"], ctx["cos_k"] = rope_lib.sin_cos(ctx["k_pos"], inv_freq_f, scale)
        # contiguous: the caller promises positions 0..T-1 (fused GPU/TPU kernels need it).
        ctx["contiguous"] = contiguous and cache is None and segment_ids_bt is None
        return ctx

    def forward_hidden(self, ids_bt, positions_bt=None, segment_ids_bt=None, cache=None,
                       *, contiguous=False):  # fmt: skip
        """Final-norm hidden states [B, T, D] (activation dtype); with `cache`, also the new cache.

        positions_bt default to `cache index + arange(T)`; segment ids (0 = padding) restrict
        attention to equal ids. Not jitted: call inside jit, or use `hidden()`.
        """
        B, T = ids_bt.shape
        if positions_bt is None:
            start = 0 if cache is None else cache["index"]
            positions_bt = jnp.broadcast_to(start + jnp.arange(T, dtype=jnp.int32), (B, T))
        positions_bt = jnp.asarray(positions_bt, jnp.int32)
        ctx = self._context(positions_bt, segment_ids_bt, cache, contiguous)
        x_btd = self.embed(ids_bt, self.cfg.jnp_dtype)
        new_layers = []
        for i, block in enumerate(self.layers):
            layer_cache = None if cache is None else cache["layers"][i]
            x_btd, c = block(x_btd, ctx, layer_cache)
            new_layers.append(c)
        h_btd = self.norm(x_btd)
        if cache is None:
            return h_btd
        new_cache = {
            "layers": tuple(new_layers),
            "pos": ctx["k_pos"],
            "seg": ctx["k_seg"],
            "index": cache["index"] + T,
        }
        return h_btd, new_cache

    def forward_logits(self, h_btd):
        """float32 logits [B, T, V] from hidden states (tied or separate LM head).

        Long inputs are projected LOGIT_CHUNK positions at a time into one preallocated
        [B, T, V] buffer: measured on SmolLM2 at 8k tokens, the one-shot projection inside the
        whole-model jit left a second, transient [T, V] float32 buffer (+1.6 GB peak).
        """
        if self.cfg.tie_word_embeddings:
            w_vd = self.embed.embedding[...].astype(h_btd.dtype)
            proj = lambda h: jnp.einsum(  # noqa: E731
                "btd,vd->btv", h, w_vd, preferred_element_type=jnp.float32
            )
        else:
            w_dv = self.lm_head[...].astype(h_btd.dtype)
            proj = lambda h: jnp.einsum(  # noqa: E731
                "btd,dv->btv", h, w_dv, preferred_element_type=jnp.float32
            )
        B, T, _ = h_btd.shape
        C = LOGIT_CHUNK
        if T <= C:
            return proj(h_btd)
        out_btv = jnp.zeros((B, T, self.cfg.vocab_size), jnp.float32)

        def body(i, out_btv):
            h_bcd = jax.lax.dynamic_slice_in_dim(h_btd, i * C, C, axis=1)
            return jax.lax.dynamic_update_slice_in_dim(out_btv, proj(h_bcd), i * C, axis=1)

        out_btv = jax.lax.fori_loop(0, T // C, body, out_btv)
        if T % C:
            rest = (T // C) * C
            out_btv = jax.lax.dynamic_update_slice_in_dim(out_btv, proj(h_btd[:, rest:]), rest, 1)
        return out_btv

    # -- jitted entry points ---------------------------------------------------------------

    def hidden(self, ids_bt, positions_bt=None, attention_mask_bt=None, segment_ids_bt=None):
        """Final-norm hidden states [B, T, D]: compute the loss in chunks with logits_from_hidden.

        attention_mask_bt (1 real, 0 padding; HF convention) is a shorthand for segment ids.
        """
        graphdef, state = nnx.split(self)
        segs = _segments(attention_mask_bt, segment_ids_bt)
        ids = jnp.asarray(ids_bt, jnp.int32)
        return _hidden_jit(graphdef, state, ids, positions_bt, segs, positions_bt is None)

    def logits_from_hidden(self, h_btd):
        """float32 logits [B, T, V] for hidden states from `hidden`."""
        graphdef, state = nnx.split(self)
        return _logits_jit(graphdef, state, h_btd)

    def __call__(self, ids_bt, positions_bt=None, attention_mask_bt=None, segment_ids_bt=None):
        """[B, T] int token ids -> [B, T, V] float32 logits (one compiled function)."""
        graphdef, state = nnx.split(self)
        segs = _segments(attention_mask_bt, segment_ids_bt)
        ids = jnp.asarray(ids_bt, jnp.int32)
        return _call_jit(graphdef, state, ids, positions_bt, segs, positions_bt is None)


def _segments(attention_mask_bt, segment_ids_bt):
    if attention_mask_bt is not None and segment_ids_bt is not None:
        raise ValueError("give attention_mask_bt or segment_ids_bt, not both")
    if attention_mask_bt is not None:
        return jnp.asarray(attention_mask_bt, jnp.int32)
    if segment_ids_bt is not None:
        return jnp.asarray(segment_ids_bt, jnp.int32)
    return None


@functools.partial(jax.jit, static_argnums=(0, 5))
def _hidden_jit(graphdef, state, ids, positions, segs, contiguous):
    model = nnx.merge(graphdef, state)
    return model.forward_hidden(ids, positions, segs, contiguous=contiguous)


@functools.partial(jax.jit, static_argnums=(0,))
def _logits_jit(graphdef, state, h):
    return nnx.merge(graphdef, state).forward_logits(h)


@functools.partial(jax.jit, static_argnums=(0, 5))
def _call_jit(graphdef, state, ids, positions, segs, contiguous):
    model = nnx.merge(graphdef, state)
    return model.forward_logits(model.forward_hidden(ids, positions, segs, contiguous=contiguous))


def init_cache(cfg: LlamaConfig, batch: int, max_len: int) -> dict:
    """An empty KV cache for `max_len` tokens: per layer (k before RoPE, v) [B, S, K, H]."""
    shape = (batch, max_len, cfg.num_key_value_heads, cfg.head_dim)
    dt = cfg.jnp_dtype
    layer = lambda: (jnp.zeros(shape, dt), jnp.zeros(shape, dt))  # noqa: E731
    return {
        "layers": tuple(layer() for _ in range(cfg.num_hidden_layers)),
        # Empty slots sit far in the future: causal masking (and block skipping) ignores them.
        "pos": jnp.full((batch, max_len), EMPTY_POSITION, jnp.int32),
        "seg": jnp.zeros((batch, max_len), jnp.int32),  # 0: empty slot, never attended
        "index": jnp.zeros((), jnp.int32),
    }


def with_rope(model: Llama, rope_cfg: rope_lib.RopeConfig | Mapping[str, Any]) -> Llama:
    """The same parameters (no copy, no reload) under another RoPE method.

    `rope_cfg` is a RopeConfig or an HF-style rope dict; a dict without `rope_theta` keeps the
    model's base, one without `original_max_position_embeddings` uses the model's
    `max_position_embeddings` as the pre-training context.
    """
    cfg = model.cfg
    if not isinstance(rope_cfg, rope_lib.RopeConfig):
        rope_cfg = rope_from_override(cfg, rope_cfg)
    new_cfg = cfg.replace(rope=rope_cfg)
    graphdef_new, _ = nnx.split(nnx.eval_shape(lambda: Llama(new_cfg, rngs=nnx.Rngs(0))))
    _, state = nnx.split(model)
    out = nnx.merge(graphdef_new, state)
    return out


def rope_from_override(cfg: LlamaConfig, override: Mapping[str, Any]) -> rope_lib.RopeConfig:
    """RopeConfig from an HF rope dict, filling rope_theta / L from the model when absent."""
    d = dict(override)
    if "rope_parameters" in d or "rope_scaling" in d:
        d = dict(d.get("rope_parameters") or d.get("rope_scaling") or {}) | {
            k: v for k, v in d.items() if k not in ("rope_parameters", "rope_scaling")
        }
    d.setdefault("rope_theta", cfg.rope.rope_theta)
    rt = str(d.get("rope_type", d.get("type", "default")))
    try:
        canonical = rope_lib.canonical_name(rt)
    except ValueError:  # RopeConfig.from_hf below names the problem
        canonical = rt
    if canonical != "default" and "original_max_position_embeddings" not in d:
        d["original_max_position_embeddings"] = (
            cfg.rope.original_max_position_embeddings or cfg.max_position_embeddings
        )
    d.setdefault("rope_type", rt)
    d.pop("max_position_embeddings", None)
    return rope_lib.RopeConfig.from_hf(d)
