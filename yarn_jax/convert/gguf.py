"""Read llama.cpp GGUF checkpoints as Hugging Face LlamaForCausalLM state dicts.

    ckpt = read_gguf("SmolLM2-135M-Instruct.Q4_1.gguf")
    ckpt.hf_config                      # config.json-style dict (model_type "llama" / "qwen2")
    for name, w in ckpt.tensors():      # HF state-dict name, float32 numpy array in HF shape
        ...
    tok = ckpt.tokenizer()              # tokenizers.Tokenizer built from tokenizer.ggml.* metadata

Tensors are memory-mapped (gguf.GGUFReader) and dequantized one at a time, so an import holds at
most one dequantized tensor beyond what the caller keeps. llama.cpp's `convert_hf_to_gguf.py`
permutes the rows of the LLaMA Q and K projections so that rotary pairs are adjacent (its
"normal" rope layout: pair i = rows 2i, 2i+1); HF uses rotate_half (pair i = rows i, i + H/2).
`tensors()` undoes that permutation, so the result is exactly what transformers would hold.
"""

from __future__ import annotations

import math
import os
import pathlib
import re
from collections.abc import Iterator
from typing import Any

import gguf as _gguf
import numpy as np

# GGUF tensor name (after `blk.{i}.`) -> HF LlamaForCausalLM name (after `model.layers.{i}.`).
_BLOCK_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_TOP_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_BLOCK_RE = re.compile(r"^blk\.(\d+)\.(.+)$")

# Architectures we import: GGUF `general.architecture` -> (HF model_type, HF class, q/k permuted?).
# llama.cpp permutes Q/K only for LLaMA-style models; Qwen2 already uses the NeoX (rotate_half)
# layout in llama.cpp and is stored unpermuted.
_ARCHS = {
    "llama": ("llama", "LlamaForCausalLM", True),
    "qwen2": ("qwen2", "Qwen2ForCausalLM", False),
}

# Quantization types we accept. gguf.quants.dequantize implements all of these in numpy; the
# list is explicit so that a file with an exotic type fails at open time, not mid-import.
_Q = _gguf.GGMLQuantizationType
SUPPORTED_QUANT_TYPES = frozenset(
    getattr(_Q, n)
    for n in (
        "F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K "
        "IQ2_XXS IQ2_XS IQ2_S IQ3_XXS IQ3_S IQ1_S IQ1_M IQ4_NL IQ4_XS TQ1_0 TQ2_0"
    ).split()
    if hasattr(_Q, n)
)

# `{arch}.` metadata keys that we read, or that carry no information the math needs.
_KNOWN_ARCH_KEYS = {
    "context_length",
    "embedding_length",
    "block_count",
    "feed_forward_length",
    "attention.head_count",
    "attention.head_count_kv",
    "attention.layer_norm_rms_epsilon",
    "attention.key_length",
    "attention.value_length",
    "rope.freq_base",
    "rope.dimension_count",
    "rope.scale_linear",
    "rope.scaling.type",
    "rope.scaling.factor",
    "rope.scaling.original_context_length",
    "rope.scaling.finetuned",
    "rope.scaling.yarn_beta_fast",
    "rope.scaling.yarn_beta_slow",
    "rope.scaling.attn_factor",
    "vocab_size",
    "expert_count",
    "expert_used_count",
}


def _err(path: os.PathLike | str, problem: str) -> ValueError:
    return ValueError(f"{path}: {problem}")


class GGUFCheckpoint:
    """A GGUF file opened for import. Build with `read_gguf(path)`."""

    def __init__(self, path: pathlib.Path, reader: _gguf.GGUFReader):
        self.path = path
        self._reader = reader
        self._fields = reader.fields
        arch = self.metadata("general.architecture")
        if arch not in _ARCHS:
            raise _err(
                path,
                f"GGUF architecture {arch!r} is not supported (supported: {sorted(_ARCHS)}). "
                "Convert the original Hugging Face checkpoint instead.",
            )
        self.architecture: str = arch
        self._check_tensors()
        self.hf_config: dict[str, Any] = self._build_config()

    # ---------------------------------------------------------------- metadata
    def metadata(self, key: str, default: Any = None) -> Any:
        """One metadata value (str, int, float, bool or list), or `default` if absent."""
        field = self._fields.get(key)
        if field is None:
            return default
        try:
            return field.contents()
        except Exception as e:  # a malformed field: report which one
            raise _err(self.path, f"metadata field {key!r} cannot be read ({e})") from e

    def _arch(self, key: str, default: Any = None) -> Any:
        return self.metadata(f"{self.architecture}.{key}", default)

    def _require(self, key: str) -> Any:
        value = self._arch(key)
        if value is None:
            raise _err(self.path, f"required metadata key {self.architecture}.{key} is missing")
        return value

    # ---------------------------------------------------------------- tensors
    def _check_tensors(self) -> None:
        """Every tensor has a supported type, a known name and a complete byte range."""
        problems = []
        file_size = len(self._reader.data)
        for t in self._reader.tensors:
            qtype = _Q(t.tensor_type)
            if qtype not in SUPPORTED_QUANT_TYPES:
                problems.append(f"tensor {t.name}: unsupported quantization type {qtype.name}")
                continue
            block, type_size = _gguf.GGML_QUANT_SIZES[qtype]
            expected = int(t.n_elements) // block * type_size
            if int(t.n_elements) % block or int(t.data.nbytes) != expected:
                problems.append(
                    f"tensor {t.name}: {int(t.data.nbytes)} bytes of data, expected {expected} "
                    f"for {int(t.n_elements)} {qtype.name} elements (truncated or corrupt file)"
                )
            elif int(t.data_offset) + expected > file_size:
                problems.append(f"tensor {t.name}: data runs past the end of the file (truncated)")
            if t.name.startswith("rope_"):
                problems.append(
                    f"tensor {t.name}: per-frequency RoPE factors (llama3/longrope style) are not "
                    "supported from GGUF; import the original Hugging Face folder instead"
                )
            elif self._hf_name(t.name) is None:
                problems.append(f"tensor {t.name}: no Hugging Face equivalent known")
        if not self._reader.tensors:
            problems.append("the file holds no tensors")
        if problems:
            raise _err(
                self.path,
                f"cannot import {len(problems)} problem(s):\n  " + "\n  ".join(problems),
            )

    @staticmethod
    def _hf_name(name: str) -> str | None:
        if name in _TOP_NAMES:
            return _TOP_NAMES[name]
        m = _BLOCK_RE.match(name)
        if m and m.group(2) in _BLOCK_NAMES:
            return f"model.layers.{m.group(1)}.{_BLOCK_NAMES[m.group(2)]}"
        return None

    def tensor_names(self) -> list[str]:
        """HF names of all tensors, in file order."""
        return [self._hf_name(t.name) for t in self._reader.tensors]

    def tensors(self) -> Iterator[tuple[str, np.ndarray]]:
        """Yield (HF state-dict name, float32 array in HF shape), one dequantized tensor at a time.

        Linear weights come out [out_features, in_features] (GGUF stores ne = [in, out], i.e.
        numpy shape [out, in]); q/k rows are un-permuted for LLaMA (see module docstring).
        """
        permuted = _ARCHS[self.architecture][2]
        n_heads = self.hf_config["num_attention_heads"]
        n_kv = self.hf_config["num_key_value_heads"]
        for t in self._reader.tensors:
            name = self._hf_name(t.name)
            qtype = _Q(t.tensor_type)
            try:
                w = _gguf.quants.dequantize(t.data, qtype)
            except Exception as e:
                problem = f"tensor {t.name} ({qtype.name}) cannot be decoded: {e}"
                raise _err(self.path, problem) from e
            shape = tuple(int(d) for d in reversed(t.shape.tolist()))
            # F32 comes back as a view of the read-only memory map: copy it (the caller owns the
            # result); every other type is already a fresh float32 array.
            if qtype == _Q.F32:
                w = np.array(w, dtype=np.float32)
            w = np.asarray(w, dtype=np.float32).reshape(shape)
            if permuted and ".self_attn.q_proj." in name:
                w = unpermute_qk(w, n_heads)
            elif permuted and ".self_attn.k_proj." in name:
                w = unpermute_qk(w, n_kv)
            yield name, w

    # ---------------------------------------------------------------- config
    def _build_config(self) -> dict[str, Any]:
        model_type, hf_class, _ = _ARCHS[self.architecture]
        prefix = f"{self.architecture}."
        unknown = sorted(
            k[len(prefix) :]
            for k in self._fields
            if k.startswith(prefix) and k[len(prefix) :] not in _KNOWN_ARCH_KEYS
        )
        if unknown:
            raise _err(
                self.path,
                f"metadata keys that may change the model and that this importer does not "
                f"understand: {', '.join(prefix + k for k in unknown)}",
            )
        if (self._arch("expert_count") or 0) > 0:
            raise _err(self.path, "mixture-of-experts GGUF files are not supported")

        names = {t.name: t for t in self._reader.tensors}
        hidden = int(self._require("embedding_length"))
        n_heads = int(self._require("attention.head_count"))
        n_kv = self._arch("attention.head_count_kv", n_heads)
        if isinstance(n_kv, list):  # per-layer head counts (hybrid models): not a plain LLaMA
            raise _err(self.path, "per-layer attention.head_count_kv is not supported")
        head_dim = int(self._arch("attention.key_length", hidden // n_heads))
        value_dim = int(self._arch("attention.value_length", head_dim))
        rope_dim = int(self._arch("rope.dimension_count", head_dim))
        if value_dim != head_dim or rope_dim != head_dim:
            raise _err(
                self.path,
                f"head_dim {head_dim}, value_length {value_dim}, rope.dimension_count {rope_dim}: "
                "partial rotary or unequal key/value head sizes are not supported",
            )
        tokens = self._fields.get("tokenizer.ggml.tokens")
        vocab = self._arch("vocab_size")
        if vocab is None and "token_embd.weight" in names:
            vocab = int(names["token_embd.weight"].shape[-1])
        if vocab is None and tokens is not None:
            vocab = len(tokens.data)
        cfg: dict[str, Any] = {
            "architectures": [hf_class],
            "model_type": model_type,
            "vocab_size": int(vocab),
            "hidden_size": hidden,
            "intermediate_size": int(self._require("feed_forward_length")),
            "num_hidden_layers": int(self._require("block_count")),
            "num_attention_heads": n_heads,
            "num_key_value_heads": int(n_kv),
            "head_dim": head_dim,
            "rms_norm_eps": float(self._arch("attention.layer_norm_rms_epsilon", 1e-5)),
            "rope_theta": float(self._arch("rope.freq_base", 10000.0)),
            "max_position_embeddings": int(self._arch("context_length", 2048)),
            "tie_word_embeddings": "output.weight" not in names,
            "hidden_act": "silu",
            "torch_dtype": "float32",
        }
        if model_type == "llama":
            cfg["attention_bias"] = "blk.0.attn_q.bias" in names
            cfg["mlp_bias"] = False
        for key in ("bos", "eos", "padding"):
            tid = self.metadata(f"tokenizer.ggml.{key}_token_id")
            if tid is not None:
                cfg["pad_token_id" if key == "padding" else f"{key}_token_id"] = int(tid)
        rope_scaling = self._rope_scaling()
        if rope_scaling is not None:
            cfg["rope_scaling"] = rope_scaling
        return cfg

    def _rope_scaling(self) -> dict[str, Any] | None:
        """llama.cpp's rope.scaling.* keys in HF v4 `rope_scaling` form (None: plain RoPE)."""
        kind = self._arch("rope.scaling.type")
        factor = self._arch("rope.scaling.factor")
        if kind is None and self._arch("rope.scale_linear") is not None:  # older files
            kind, factor = "linear", self._arch("rope.scale_linear")
        if kind is None or kind == "none" or (factor is not None and float(factor) == 1.0):
            return None
        # llama.cpp multiplies its YaRN mscale by attn_factor; HF has no such knob (its
        # attention_factor *replaces* the scale), so only the neutral value is accepted.
        attn_factor = self._arch("rope.scaling.attn_factor")
        if attn_factor is not None and float(attn_factor) != 1.0:
            raise _err(self.path, f"rope.scaling.attn_factor {attn_factor} is not supported")
        if kind not in ("linear", "yarn"):
            raise _err(self.path, f"rope.scaling.type {kind!r} is not supported (linear, yarn)")
        if factor is None:
            raise _err(self.path, f"rope.scaling.type {kind!r} without rope.scaling.factor")
        out: dict[str, Any] = {"rope_type": kind, "factor": float(factor)}
        original = self._arch("rope.scaling.original_context_length")
        if kind == "yarn":
            if original is None:
                raise _err(self.path, "yarn rope scaling without original_context_length")
            out["original_max_position_embeddings"] = int(original)
            for gkey, hkey in (("yarn_beta_fast", "beta_fast"), ("yarn_beta_slow", "beta_slow")):
                value = self._arch(f"rope.scaling.{gkey}")
                if value is not None:
                    out[hkey] = float(value)
            if self._arch("rope.scaling.finetuned"):
                out["finetuned"] = True
            if self._is_yarn_mistral():
                # NousResearch Yarn-Mistral was trained with other constants (its
                # modeling_mistral_yarn.py; METHOD.md). A GGUF keeps no auto_map, only the name.
                s = out["factor"]
                out.setdefault("beta_fast", 128.0)
                out.setdefault("beta_slow", 2.0)
                out["attention_factor"] = 0.07 * math.log(s) + 1.0
        return out

    def _is_yarn_mistral(self) -> bool:
        names = " ".join(
            str(self.metadata(f"general.{k}", "")) for k in ("name", "basename", "finetune")
        ).lower()
        return "yarn" in names and "mistral" in names

    # ---------------------------------------------------------------- tokenizer
    def tokenizer(self):
        """The tokenizer the tokenizer.ggml.* metadata describes: a `yarn_jax.convert.tokenizer.
        Tokenizer` (encode/decode/bos_token_id/save_pretrained; `.backend` is the bare
        `tokenizers.Tokenizer`)."""
        from yarn_jax.convert.tokenizer import tokenizer_from_gguf

        return tokenizer_from_gguf(self)

    def __repr__(self) -> str:
        c = self.hf_config
        return (
            f"GGUFCheckpoint({str(self.path)!r}, {self.architecture}, "
            f"{c['num_hidden_layers']} layers, hidden {c['hidden_size']}, "
            f"{len(self._reader.tensors)} tensors)"
        )


def unpermute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row permutation; `w` is [n_heads * H, ...] (weight or bias).

    llama.cpp (`LlamaModel.permute` in convert_hf_to_gguf.py) maps HF row h*H + c*H/2 + j to GGUF
    row h*H + 2j + c (c in {0, 1}, j < H/2). The inverse reads GGUF rows as [n_heads, H/2, 2]
    and swaps the last two axes.
    """
    rows = w.shape[0]
    if rows % (2 * n_heads):
        raise ValueError(f"cannot un-permute {rows} rows into {n_heads} heads of even size")
    half = rows // n_heads // 2
    return w.reshape(n_heads, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def read_gguf(path: str | os.PathLike) -> GGUFCheckpoint:
    """Open a GGUF checkpoint (memory-mapped). Raises FileNotFoundError or ValueError."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such GGUF file")
    try:
        reader = _gguf.GGUFReader(path, "r")
    except Exception as e:  # the reader raises ValueError/KeyError/IndexError/struct errors
        raise _err(
            path,
            f"not a readable GGUF file ({type(e).__name__}: {e}); the file is corrupt, "
            "truncated or not GGUF (re-download it)",
        ) from e
    return GGUFCheckpoint(path, reader)
