"""RoPE and its context-extension methods as pure functions.

Every method maps `(RopeConfig, head_dim, seq_len)` to `(inv_freq [F] float32, attention_scale
float32 scalar)`; `METHODS` is the registry. The math and every decision on ambiguity are in
shared/docs/METHOD.md; numerics follow the YaRN reference code and Hugging Face transformers'
`modeling_rope_utils.py` wherever they have the method.

Dimension key: B batch, T length, N heads, H head dim, F = H // 2 frequency pairs.

Static vs traced: ramp bounds, base frequencies and every value that depends on the config only
are Python / NumPy (float64) numbers computed at trace time. Only `seq_len` (the current length,
`1 + max position` of a real token) may be a traced JAX value, and only the dynamic methods use
it, so one compilation serves every length.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "ALIASES",
    "METHODS",
    "RopeConfig",
    "apply_rope",
    "canonical_name",
    "describe",
    "rope_params",
    "sin_cos",
]

# Names a user will type for HF / paper names.
ALIASES = {"none": "default", "pi": "linear", "dynamic": "dynamic_ntk"}

# Methods that need `original_max_position_embeddings` (the pre-training context L).
_NEEDS_ORIGINAL = {
    "dynamic_linear",
    "dynamic_ntk",
    "ntk_by_parts",
    "dynamic_ntk_by_parts",
    "yarn",
    "dynamic_yarn",
    "llama3",
    "longrope",
}

# Keys of a Hugging Face rope dict that RopeConfig understands (HF names).
_HF_ROPE_KEYS = {
    "rope_type",
    "type",
    "rope_theta",
    "factor",
    "original_max_position_embeddings",
    "beta_fast",
    "beta_slow",
    "attention_factor",
    "mscale",
    "mscale_all_dim",
    "truncate",
    "low_freq_factor",
    "high_freq_factor",
    "short_factor",
    "long_factor",
    "finetuned",
    "partial_rotary_factor",
}

# HF rope_type -> ours, for the types HF has.
_FROM_HF_TYPE = {"default": "default", "linear": "linear", "dynamic": "dynamic_ntk",
                 "yarn": "yarn", "llama3": "llama3", "longrope": "longrope"}  # fmt: skip


def canonical_name(name: str) -> str:
    """Resolve an alias (`none`, `pi`, `dynamic`) to its method name; error on unknown names."""
    key = str(name).strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in METHODS:
        valid = (
            ", ".join(sorted(METHODS))
            + "; aliases: "
            + ", ".join(f"{a} -> {m}" for a, m in sorted(ALIASES.items()))
        )
        raise ValueError(f"Unknown RoPE method {name!r}. Valid methods: {valid}.")
    return key


@dataclasses.dataclass(frozen=True)
class RopeConfig:
    """The RoPE method and its parameters, with Hugging Face key names.

    Frozen and hashable, so it can be a static argument of `jax.jit`. Validated when built.
    `factor` is `s = L'/L`; `original_max_position_embeddings` is `L`, the pre-training context.
    Optional fields left as None take the reference defaults (beta_fast 32, beta_slow 1, ...).
    """

    rope_type: str = "default"
    rope_theta: float = 10000.0
    factor: float = 1.0
    original_max_position_embeddings: int | None = None
    beta_fast: float | None = None
    beta_slow: float | None = None
    attention_factor: float | None = None
    mscale: float | None = None
    mscale_all_dim: float | None = None
    truncate: bool = True
    low_freq_factor: float | None = None
    high_freq_factor: float | None = None
    short_factor: tuple[float, ...] | None = None
    long_factor: tuple[float, ...] | None = None
    finetuned: bool = False

    def __post_init__(self):
        setattr_ = object.__setattr__
        setattr_(self, "rope_type", canonical_name(self.rope_type))
        for name in ("rope_theta", "factor"):
            value = getattr(self, name)
            if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
                setattr_(self, name, float(value))
        L = self.original_max_position_embeddings
        if isinstance(L, (float, np.number)) and float(L).is_integer():
            setattr_(self, "original_max_position_embeddings", int(L))
        for name in ("short_factor", "long_factor"):
            value = getattr(self, name)
            if value is not None:
                setattr_(self, name, tuple(float(v) for v in value))
        problems = []
        if not (isinstance(self.rope_theta, (int, float)) and self.rope_theta > 1.0):
            problems.append(f"rope_theta must be a number > 1, got {self.rope_theta!r}")
        if not isinstance(self.factor, (int, float)) or self.factor < 1.0:
            problems.append(
                f"factor must be >= 1 (it is the extension ratio L'/L), got {self.factor!r}; "
                "to shorten the context use the default method instead"
            )
        L = self.original_max_position_embeddings
        if self.rope_type in _NEEDS_ORIGINAL and L is None:
            problems.append(
                f"rope_type {self.rope_type!r} needs original_max_position_embeddings (the "
                "context length the model was pre-trained on, e.g. 4096 for LLaMA-2)"
            )
        if L is not None and (not isinstance(L, (int, np.integer)) or L <= 0):
            problems.append(f"original_max_position_embeddings must be a positive int, got {L!r}")
        if self.rope_type == "llama3":
            lo, hi = self.low_freq_factor, self.high_freq_factor
            if lo is None or hi is None:
                problems.append("rope_type 'llama3' needs low_freq_factor and high_freq_factor")
            elif hi <= lo:
                problems.append(
                    f"llama3 needs high_freq_factor > low_freq_factor, got {hi} <= {lo}"
                )
        if self.rope_type == "longrope":
            s, lf = self.short_factor, self.long_factor
            if s is None or lf is None:
                problems.append(
                    "rope_type 'longrope' needs short_factor and long_factor (one number per "
                    "frequency pair, head_dim // 2 each)"
                )
            elif len(s) != len(lf):
                problems.append(
                    f"short_factor and long_factor must have the same length (head_dim // 2), "
                    f"got {len(s)} and {len(lf)}"
                )
        if self.beta_fast is not None and self.beta_slow is not None:
            if self.beta_fast < self.beta_slow:
                problems.append(
                    f"beta_fast ({self.beta_fast}) must be >= beta_slow ({self.beta_slow})"
                )
        if problems:
            raise ValueError("Invalid RopeConfig: " + "; ".join(problems) + ".")

    # -- Hugging Face config interop ---------------------------------------------------------

    @classmethod
    def from_hf(cls, config: Mapping[str, Any]) -> RopeConfig:
        """Read the rope settings of a Hugging Face `config.json` dict.

        Accepts the v5 form (`rope_parameters` with `rope_type` and `rope_theta` inside), the v4
        form (`rope_scaling` with `type` or `rope_type`, `rope_theta` at top level), the
        published YaRN checkpoints' form (`finetuned`), or a bare rope dict. Unknown rope keys
        are an error. Yarn-Mistral checkpoints (`auto_map` naming `modeling_mistral_yarn`) get
        their training constants: beta_fast 128, beta_slow 2, scale 0.07 ln s + 1.
        """
        config = dict(config)
        is_bare = ("rope_type" in config or "type" in config) and not (
            {"rope_scaling", "rope_parameters", "model_type"} & set(config)
        )
        if is_bare:
            rope, top = config, {}
        else:
            rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
            top = config
        rope = dict(rope)
        if any(isinstance(v, Mapping) for v in rope.values()):
            raise ValueError(
                "Per-layer rope parameters (a nested rope_parameters dict, as in Gemma-style "
                "models) are not supported; give one rope config for all layers."
            )
        unknown = sorted(set(rope) - _HF_ROPE_KEYS)
        if unknown:
            raise ValueError(
                f"Unknown rope config keys {unknown}; understood keys: {sorted(_HF_ROPE_KEYS)}. "
                "Remove them or check the spelling: an unknown key is never silently dropped."
            )
        prf = rope.get("partial_rotary_factor", top.get("partial_rotary_factor", 1.0))
        if prf not in (None, 1, 1.0):
            raise ValueError(f"partial_rotary_factor={prf} is not supported (only 1.0).")

        hf_type = rope.get("rope_type", rope.get("type", "default"))
        rope_type = _FROM_HF_TYPE.get(hf_type, hf_type)
        theta = rope.get("rope_theta", top.get("rope_theta", 10000.0))
        max_pos = top.get("max_position_embeddings")
        # Where HF reads L: dynamic NTK always from max_position_embeddings; yarn, llama3 and
        # longrope from a top-level original_max_position_embeddings (Phi-3), then the rope
        # dict, then max_position_embeddings.
        L = top.get("original_max_position_embeddings") or rope.get(
            "original_max_position_embeddings"
        )
        if hf_type == "dynamic" and max_pos:
            L = max_pos
        if L is None and canonical_name(rope_type) in _NEEDS_ORIGINAL:
            L = max_pos
        factor = rope.get("factor")
        if factor is None and rope_type in ("yarn", "longrope") and max_pos and L:
            factor = max_pos / L  # HF: the implicit ratio when factor is absent
        kwargs = dict(
            rope_type=rope_type,
            rope_theta=float(theta),
            factor=float(factor) if factor is not None else 1.0,
            original_max_position_embeddings=int(L) if L is not None else None,
            beta_fast=rope.get("beta_fast") or None,  # HF: `or 32` (a 0 means the default)
            beta_slow=rope.get("beta_slow") or None,
            attention_factor=rope.get("attention_factor"),
            mscale=rope.get("mscale"),
            mscale_all_dim=rope.get("mscale_all_dim"),
            truncate=bool(rope.get("truncate", True)),
            low_freq_factor=rope.get("low_freq_factor"),
            high_freq_factor=rope.get("high_freq_factor"),
            short_factor=rope.get("short_factor"),
            long_factor=rope.get("long_factor"),
            finetuned=bool(rope.get("finetuned", False)),
        )
        auto_map = top.get("auto_map") or {}
        if any("modeling_mistral_yarn" in str(v) for v in auto_map.values()):
            # Yarn-Mistral was trained with other constants (its modeling_mistral_yarn.py).
            s = kwargs["factor"]
            kwargs["beta_fast"] = kwargs["beta_fast"] or 128.0
            kwargs["beta_slow"] = kwargs["beta_slow"] or 2.0
            if kwargs["attention_factor"] is None and rope_type in ("yarn", "dynamic_yarn"):
                if rope_type == "dynamic_yarn":
                    raise ValueError(
                        "dynamic_yarn with Yarn-Mistral's 0.07 ln s + 1 scale is not supported: "
                        "use rope_type 'yarn' (how the checkpoint was trained), or set "
                        "attention_factor explicitly"
                    )
                kwargs["attention_factor"] = 0.07 * math.log(s) + 1.0 if s > 1 else 1.0
        return cls(**kwargs)

    def to_hf(self, form: str = "v5", head_dim: int | None = None) -> dict[str, Any]:
        """The top-level `config.json` keys that describe this rope in a form transformers loads.

        `form="v5"`: `{"rope_parameters": {...}}` (rope_theta inside); `form="v4"`:
        `{"rope_theta": ..., "rope_scaling": {...} or None}`. Scaled methods also set
        `max_position_embeddings` (HF's dynamic NTK reads L from it; the others take s·L).
        Methods transformers lacks are written as their exact equivalent where one exists
        (`ntk` -> default with base b', which needs `head_dim`; `ntk_by_parts` -> yarn with
        attention_factor 1).
        """
        if form not in ("v4", "v5"):
            raise ValueError(f"form must be 'v4' or 'v5', got {form!r}")
        t, L, s = self.rope_type, self.original_max_position_embeddings, float(self.factor)
        theta = float(self.rope_theta)
        extra: dict[str, Any] = {}
        if t == "default":
            params: dict[str, Any] = {"rope_type": "default"}
        elif t == "ntk":
            if head_dim is None:
                raise ValueError(
                    "to_hf() for 'ntk' needs head_dim: its HF equivalent is the default rope "
                    "with base b' = b * s^(d/(d-2)); call cfg.to_hf(form, head_dim=...)"
                )
            params, theta = {"rope_type": "default"}, _ntk_base(theta, s, head_dim)
        elif t == "linear":
            params = {"rope_type": "linear", "factor": s}
        elif t == "dynamic_ntk":
            params = {"rope_type": "dynamic", "factor": s}
            extra["max_position_embeddings"] = L
        elif t in ("yarn", "ntk_by_parts"):
            params = {"rope_type": "yarn", "factor": s, "original_max_position_embeddings": L}
            for key in ("beta_fast", "beta_slow", "mscale", "mscale_all_dim"):
                if getattr(self, key) is not None:
                    params[key] = float(getattr(self, key))
            if not self.truncate:
                params["truncate"] = False
            if t == "ntk_by_parts":
                params["attention_factor"] = 1.0
            elif self.attention_factor is not None:
                params["attention_factor"] = float(self.attention_factor)
        elif t == "llama3":
            params = {"rope_type": "llama3", "factor": s, "original_max_position_embeddings": L,
                      "low_freq_factor": float(self.low_freq_factor),
                      "high_freq_factor": float(self.high_freq_factor)}  # fmt: skip
        elif t == "longrope":
            params = {"rope_type": "longrope", "factor": s, "original_max_position_embeddings": L,
                      "short_factor": list(self.short_factor),
                      "long_factor": list(self.long_factor)}  # fmt: skip
            if self.attention_factor is not None:
                params["attention_factor"] = float(self.attention_factor)
        else:
            raise ValueError(
                f"transformers has no rope_type equivalent to {t!r}, so it cannot be exported "
                "exactly. Exportable methods: default, linear, ntk, dynamic_ntk, ntk_by_parts, "
                "yarn, llama3, longrope. Export with the static counterpart (e.g. 'yarn' for "
                "'dynamic_yarn', 'linear' for 'dynamic_linear') or keep the model in yarn_jax."
            )
        if t in ("linear", "yarn", "ntk_by_parts", "llama3", "longrope") and L:
            extra["max_position_embeddings"] = int(round(L * s))
        if form == "v5":
            return {"rope_parameters": {**params, "rope_theta": theta}, **extra}
        scaling = None if params == {"rope_type": "default"} else params
        return {"rope_theta": theta, "rope_scaling": scaling, **extra}

    def replace(self, **changes) -> RopeConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


# -- static helpers (Python / NumPy float64, config only) -------------------------------------


def _pos_freqs(base: float, head_dim: int) -> np.ndarray:
    """b^(2i/d) in float32, rounded once, as the reference computes it (float32 exponent)."""
    if head_dim % 2:
        raise ValueError(f"head_dim must be even for RoPE, got {head_dim}")
    exponent = np.arange(0, head_dim, 2).astype(np.float32) / np.float32(head_dim)
    return (np.float64(base) ** exponent.astype(np.float64)).astype(np.float32)


def _base_inv_freq(base: float, head_dim: int) -> np.ndarray:
    """theta_i = b^(-2i/d), float32 [F].

    Static methods follow the reference's float32 operation order (transformers'
    modeling_rope_utils) so they agree to the last bit or two; llama3's smoothing cancels
    digits near its thresholds, so a one-ulp difference here would show as ~1e-6 there.
    """
    return np.float32(1.0) / _pos_freqs(base, head_dim)


def _ntk_base(base: float, s: float, head_dim: int) -> float:
    """NTK-aware base b' = b · s^(d/(d-2))."""
    return base * s ** (head_dim / (head_dim - 2))


def _correction_dim(rotations: float, head_dim: int, base: float, L: int) -> float:
    """Pair index whose wavelength makes `rotations` full turns over L tokens."""
    return head_dim * math.log(L / (rotations * 2 * math.pi)) / (2 * math.log(base))


def ramp_bounds(cfg: RopeConfig, head_dim: int) -> tuple[float, float]:
    """(low, high) pair indices of the NTK-by-parts / YaRN ramp, as the reference code has them."""
    beta_fast = cfg.beta_fast or 32.0
    beta_slow = cfg.beta_slow or 1.0
    L, base = cfg.original_max_position_embeddings, cfg.rope_theta
    low = _correction_dim(beta_fast, head_dim, base, L)
    high = _correction_dim(beta_slow, head_dim, base, L)
    if cfg.truncate:
        low, high = math.floor(low), math.ceil(high)
    return max(low, 0), min(high, head_dim - 1)


def _keep_mask(cfg: RopeConfig, head_dim: int) -> np.ndarray:
    """keep_i = 1 - ramp_i: 1 for high-frequency pairs kept as they are (extrapolated)."""
    low, high = ramp_bounds(cfg, head_dim)
    if low == high:
        high += 0.001  # the reference's guard against a zero-width ramp
    # float32 like the reference, so the ramp's breakpoints round the same way
    i = np.arange(head_dim // 2, dtype=np.float32)
    ramp = np.clip((i - np.float32(low)) / np.float32(high - low), 0, 1)
    return (np.float32(1.0) - ramp).astype(np.float32)


def _yarn_mscale(s, m: float = 1.0, log=math.log):
    """YaRN eq. (22): sqrt(1/t) = 0.1 ln s + 1 (m scales the log for DeepSeek's variant).

    s >= 1 always (factor is validated >= 1, dynamic s' = max(1, l / L)), so s = 1 gives 1.
    `log=jnp.log` for a traced s (the dynamic methods)."""
    return 0.1 * m * log(s) + 1.0


def _yarn_attention_scale(cfg: RopeConfig, s, log=math.log):
    if cfg.attention_factor is not None:
        return float(cfg.attention_factor)
    if cfg.mscale and cfg.mscale_all_dim:  # HF semantics: both needed, else the plain rule
        return _yarn_mscale(s, cfg.mscale, log) / _yarn_mscale(s, cfg.mscale_all_dim, log)
    return _yarn_mscale(s, log=log)


def _f32(x) -> jax.Array:
    return jnp.asarray(np.asarray(x, dtype=np.float32))


def _current_scale(cfg: RopeConfig, seq_len) -> jax.Array:
    """s' = max(1, l/L) (or max(s, l/L) for a fine-tuned model), traced float32."""
    floor = float(cfg.factor) if cfg.finetuned else 1.0
    l = jnp.asarray(seq_len, dtype=jnp.float32)
    return jnp.maximum(jnp.float32(floor), l / jnp.float32(cfg.original_max_position_embeddings))


# -- the methods -----------------------------------------------------------------------------
# Each: (cfg, head_dim, seq_len) -> (inv_freq [F] float32, attention_scale float32 scalar).

RopeFn = Callable[[RopeConfig, int, Any], tuple[jax.Array, jax.Array]]


def _default(cfg, head_dim, seq_len):
    return _f32(_base_inv_freq(cfg.rope_theta, head_dim)), _f32(1.0)


def _linear(cfg, head_dim, seq_len):
    return _f32(_base_inv_freq(cfg.rope_theta, head_dim) / np.float32(cfg.factor)), _f32(1.0)


def _dynamic_linear(cfg, head_dim, seq_len):
    theta = _f32(_base_inv_freq(cfg.rope_theta, head_dim))
    return theta / _current_scale(cfg, seq_len), _f32(1.0)


def _ntk(cfg, head_dim, seq_len):
    base = _ntk_base(cfg.rope_theta, cfg.factor, head_dim)
    return _f32(_base_inv_freq(base, head_dim)), _f32(1.0)


def _dynamic_ntk(cfg, head_dim, seq_len):
    # b' = b · (s·l*/L − (s − 1))^(d/(d−2)), l* = max(l, L). Written as θ_i · ratio^(−2i/(d−2))
    # so the traced part stays in float32 without raising a large base to a power.
    s, L = float(cfg.factor), cfg.original_max_position_embeddings
    l = jnp.maximum(jnp.asarray(seq_len, jnp.float32), jnp.float32(L))
    ratio = jnp.float32(s) * l / jnp.float32(L) - jnp.float32(s - 1.0)
    exponent = _f32(np.arange(0, head_dim, 2, dtype=np.float64) / (head_dim - 2))
    theta = _f32(_base_inv_freq(cfg.rope_theta, head_dim))
    return theta * jnp.exp(-exponent * jnp.log(ratio)), _f32(1.0)


def _by_parts(cfg, head_dim, s):
    """inv_freq_i = (θ_i / s)(1 − keep_i) + θ_i keep_i (s static float or traced scalar)."""
    keep = _keep_mask(cfg, head_dim)
    if isinstance(s, (int, float)):
        # the reference's float32 order: 1/(s·b^(2i/d)) and 1/b^(2i/d), then the blend
        pos = _pos_freqs(cfg.rope_theta, head_dim)
        interp = np.float32(1.0) / (np.float32(s) * pos)
        extrap = np.float32(1.0) / pos
        return _f32(interp * (np.float32(1.0) - keep) + extrap * keep)
    theta32, keep32 = _f32(_base_inv_freq(cfg.rope_theta, head_dim)), _f32(keep)
    return (theta32 / s) * (1.0 - keep32) + theta32 * keep32


def _ntk_by_parts(cfg, head_dim, seq_len):
    return _by_parts(cfg, head_dim, float(cfg.factor)), _f32(1.0)


def _dynamic_ntk_by_parts(cfg, head_dim, seq_len):
    return _by_parts(cfg, head_dim, _current_scale(cfg, seq_len)), _f32(1.0)


def _yarn(cfg, head_dim, seq_len):
    s = float(cfg.factor)
    return _by_parts(cfg, head_dim, s), _f32(_yarn_attention_scale(cfg, s))


def _dynamic_yarn(cfg, head_dim, seq_len):
    s = _current_scale(cfg, seq_len)
    scale = jnp.asarray(_yarn_attention_scale(cfg, s, log=jnp.log), jnp.float32)
    return _by_parts(cfg, head_dim, s), scale


def _llama3(cfg, head_dim, seq_len):
    # HF's llama3 rule, in float32 like HF so the wavelength thresholds compare identically.
    theta = _base_inv_freq(cfg.rope_theta, head_dim)
    s = np.float32(cfg.factor)
    L = cfg.original_max_position_embeddings
    lo, hi = cfg.low_freq_factor, cfg.high_freq_factor
    wavelen = np.float32(2 * math.pi) / theta
    out = np.where(wavelen > L / lo, theta / s, theta)
    smooth = ((np.float32(L) / wavelen - np.float32(lo)) / np.float32(hi - lo)).astype(np.float32)
    smoothed = (1 - smooth) * out / s + smooth * out
    medium = ~(wavelen < L / hi) & ~(wavelen > L / lo)
    return _f32(np.where(medium, smoothed, out)), _f32(1.0)


def _longrope(cfg, head_dim, seq_len):
    F = head_dim // 2
    if len(cfg.short_factor) != F:
        raise ValueError(
            f"longrope short_factor/long_factor need head_dim // 2 = {F} entries, "
            f"got {len(cfg.short_factor)}"
        )
    pos = _pos_freqs(cfg.rope_theta, head_dim)
    short = _f32(np.float32(1.0) / (np.asarray(cfg.short_factor, np.float32) * pos))
    long = _f32(np.float32(1.0) / (np.asarray(cfg.long_factor, np.float32) * pos))
    L, s = cfg.original_max_position_embeddings, float(cfg.factor)
    if cfg.attention_factor is not None:
        scale = float(cfg.attention_factor)
    else:  # LongRoPE / Phi-3 default
        scale = 1.0 if s <= 1 else math.sqrt(1 + math.log(s) / math.log(L))
    inv_freq = jnp.where(jnp.asarray(seq_len) > L, long, short)
    return inv_freq, _f32(scale)


METHODS: dict[str, RopeFn] = {
    "default": _default,
    "linear": _linear,
    "dynamic_linear": _dynamic_linear,
    "ntk": _ntk,
    "dynamic_ntk": _dynamic_ntk,
    "ntk_by_parts": _ntk_by_parts,
    "dynamic_ntk_by_parts": _dynamic_ntk_by_parts,
    "yarn": _yarn,
    "dynamic_yarn": _dynamic_yarn,
    "llama3": _llama3,
    "longrope": _longrope,
}

DYNAMIC_METHODS = frozenset(
    {"dynamic_linear", "dynamic_ntk", "dynamic_ntk_by_parts", "dynamic_yarn", "longrope"}
)


def rope_params(cfg: RopeConfig, head_dim: int, seq_len=None) -> tuple[jax.Array, jax.Array]:
    """Inverse frequencies and attention scale of `cfg` at the current length.

    Args:
      cfg: the method and its parameters.
      head_dim: rotary dimension H (even).
      seq_len: current length l = 1 + max position of a real token; a Python int or a traced
        integer scalar. Static methods ignore it; dynamic ones default to L when it is None.
    Returns:
      inv_freq: float32 [H // 2]; attention_scale: float32 scalar (multiplies cos and sin).
    """
    if seq_len is None:
        seq_len = cfg.original_max_position_embeddings or 0
    return METHODS[cfg.rope_type](cfg, int(head_dim), seq_len)


# -- applying it -----------------------------------------------------------------------------


def sin_cos(positions, inv_freq_f, attention_scale=1.0) -> tuple[jax.Array, jax.Array]:
    """sin and cos tables for `positions` ([T] or [B, T] ints), float32 [..., T, H].

    Angles are position · inv_freq in float32 (an elementwise product, so exact up to one
    rounding; bf16 would round position 257 to 256). The halves repeat, as in HF's layout.
    """
    angles_tf = jnp.asarray(positions).astype(jnp.float32)[..., None] * jnp.asarray(
        inv_freq_f, jnp.float32
    )
    angles_th = jnp.concatenate([angles_tf, angles_tf], axis=-1)
    scale = jnp.asarray(attention_scale, jnp.float32)
    return jnp.sin(angles_th) * scale, jnp.cos(angles_th) * scale


def _rotate_half(x):
    x1, x2 = jnp.split(x, 2, axis=-1)
    return jnp.concatenate([-x2, x1], axis=-1)


def apply_rope(x_btnh, sin_bth, cos_bth) -> jax.Array:
    """x·cos + rotate_half(x)·sin, HF / GPT-NeoX layout, for x [B, T, N, H].

    sin/cos are [T, H] or [B, T, H] from `sin_cos`. The rotation is done in float32 and cast
    back to x's dtype afterwards, so bf16 activations lose nothing to bf16 tables.
    """
    x32 = x_btnh.astype(jnp.float32)
    sin = jnp.expand_dims(sin_bth, -2)
    cos = jnp.expand_dims(cos_bth, -2)
    return (x32 * cos + _rotate_half(x32) * sin).astype(x_btnh.dtype)


# -- diagnostics -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Description:
    """Per-pair view of a rope config: see `describe`."""

    cfg: RopeConfig
    head_dim: int
    seq_len: int | None
    rows: tuple[dict[str, Any], ...]
    attention_scale: float

    def table(self) -> str:
        L = self.cfg.original_max_position_embeddings
        head = f"{'pair':>4} {'wavelength':>12} {'r = L/λ':>10} {'scale':>9}  treatment"
        lines = [
            f"RoPE {self.cfg.rope_type}: head_dim {self.head_dim}, base {self.cfg.rope_theta:g}, "
            f"factor {self.cfg.factor:g}, L {L}, length {self.seq_len}, "
            f"attention scale {self.attention_scale:.7f} (logits x {self.attention_scale**2:.6f})",
            head,
            "-" * len(head),
        ]
        for r in self.rows:
            ratio = "-" if r["r"] is None else f"{r['r']:.4g}"
            lines.append(
                f"{r['pair']:>4} {r['wavelength']:>12.5g} {ratio:>10} {r['scale']:>9.4g}  "
                f"{r['treatment']}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def describe(cfg: RopeConfig, head_dim: int, seq_len: int | None = None) -> Description:
    """Per frequency pair: wavelength λ_i (original), r = L/λ_i, effective scale θ_i/inv_freq_i,
    and whether the pair is extrapolated (scale 1), interpolated (scale = the current factor),
    or blended in between. Dynamic methods are shown at `seq_len` (default: factor · L).

    Returns a `Description`; `print(describe(cfg, 128))` prints the table.
    """
    L = cfg.original_max_position_embeddings
    if seq_len is None and L:
        seq_len = int(round(L * cfg.factor))
    inv_freq, scale = rope_params(cfg, head_dim, seq_len)
    inv_freq = np.asarray(inv_freq, np.float64)
    theta = _base_inv_freq(cfg.rope_theta, head_dim).astype(np.float64)
    eff = theta / inv_freq
    exact_theta = np.float64(cfg.rope_theta) ** (-np.arange(0, head_dim, 2) / head_dim)
    top = float(eff.max())
    rows = []
    for i in range(head_dim // 2):
        wavelength = 2 * math.pi / exact_theta[i]
        if abs(eff[i] - 1.0) < 1e-5:
            treatment = "extrapolated (unchanged)"
        elif abs(eff[i] - top) < 1e-5 * top:
            treatment = f"interpolated (x{top:.4g})"
        else:
            treatment = "blended"
        rows.append(
            {
                "pair": i,
                "wavelength": wavelength,
                "r": (L / wavelength) if L else None,
                "scale": float(eff[i]),
                "treatment": treatment,
            }
        )
    return Description(cfg, head_dim, seq_len, tuple(rows), float(scale))
