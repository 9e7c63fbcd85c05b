"""Public entry points: from_pretrained, save_pretrained, load_tokenizer, load_config.

model = yarn_jax.from_pretrained("SmolLM2.gguf" or "hf_folder", rope_scaling={...})
logits = model(ids)                      # [B, T] -> [B, T, V] float32
yarn_jax.save_pretrained(model, "out")   # an HF folder transformers loads unchanged
"""

from __future__ import annotations

import os
import pathlib
import shutil
import weakref
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding

from yarn_jax import rope as rope_lib
from yarn_jax.convert import hf as hf_convert
from yarn_jax.model import Llama, LlamaConfig, with_rope

__all__ = ["from_pretrained", "load_config", "load_tokenizer", "save_pretrained"]

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "chat_template.jinja",
)

# Where each loaded model came from (for save_pretrained's tokenizer files): id(model) ->
# (weak reference, path); the weak reference guards against a reused id.
_SOURCES: dict[int, tuple[weakref.ref, str]] = {}


def _is_gguf(path: pathlib.Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".gguf"


def _placer(mesh: Mesh | None):
    if mesh is None:
        return None
    from yarn_jax import sharding  # noqa: PLC0415

    def place(x: np.ndarray, names, path):
        spec = sharding.logical_to_pspec(names, x.shape, mesh)
        return jax.device_put(x, NamedSharding(mesh, spec))

    return place


def _open_config(p: pathlib.Path, **kw):
    """(LlamaConfig, the opened GGUFCheckpoint or None for an HF folder); reads no tensors."""
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder (expected an HF folder or a .gguf)")
    if _is_gguf(p):
        from yarn_jax.convert.gguf import read_gguf  # noqa: PLC0415

        ckpt = read_gguf(p)
        return LlamaConfig.from_hf(ckpt.hf_config, source=str(p), **kw), ckpt
    if p.is_dir():
        cfg = LlamaConfig.from_hf(
            hf_convert.load_hf_config(p), source=str(p / hf_convert.CONFIG_FILE), **kw
        )
        return cfg, None
    raise ValueError(f"{p}: not a model folder and not a .gguf file")


def load_config(
    path: str | os.PathLike,
    dtype: str = "float32",
    *,
    param_dtype: str | None = None,
    attention_impl: str = "auto",
) -> LlamaConfig:
    """The LlamaConfig `from_pretrained(path)` would build, without reading any weights
    (an HF folder's config.json, or a .gguf's metadata)."""
    cfg, _ = _open_config(
        pathlib.Path(path), dtype=dtype, param_dtype=param_dtype, attention_impl=attention_impl
    )
    return cfg


def from_pretrained(
    path: str | os.PathLike,
    rope_scaling: Mapping[str, Any] | rope_lib.RopeConfig | None = None,
    dtype: str = "float32",
    mesh: Mesh | None = None,
    *,
    param_dtype: str | None = None,
    attention_impl: str = "auto",
) -> Llama:
    """Load a Hugging Face folder (safetensors, sharded, .bin) or a llama.cpp .gguf file.

    Args:
      path: model folder or .gguf file.
      rope_scaling: override the checkpoint's rope: a RopeConfig or an HF rope dict
        (`{"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8192}`);
        missing rope_theta / original_max_position_embeddings come from the checkpoint.
      dtype: activation dtype ("float32", "bfloat16"); param_dtype defaults to it.
      mesh: a device mesh; each tensor is placed on its sharding (yarn_jax.sharding rules) as
        it is read.
    Returns: a Llama; `model(ids)` gives float32 logits.
    """
    p = pathlib.Path(path)
    cfg, ckpt = _open_config(p, dtype=dtype, param_dtype=param_dtype, attention_impl=attention_impl)
    place = _placer(mesh)
    if ckpt is not None:  # GGUF
        model = hf_convert.hf_to_params(cfg, ckpt.tensors(), source=str(p), place=place)
    else:
        model = hf_convert.load_params(p, cfg, place=place)
    if rope_scaling is not None:
        model = with_rope(model, rope_scaling)  # a RopeConfig or an HF rope dict
    _SOURCES[id(model)] = (weakref.ref(model), str(p))
    return model


def source_of(model: Llama) -> str | None:
    """The path `model` (or the model it was derived from by with_rope) was loaded from."""
    entry = _SOURCES.get(id(model))
    return entry[1] if entry and entry[0]() is model else None


def save_pretrained(
    model: Llama,
    out_dir: str | os.PathLike,
    tokenizer: Any = None,
    *,
    rope_form: str = "v5",
) -> pathlib.Path:
    """Export an HF folder (config.json + safetensors + tokenizer files when known).

    `tokenizer`: a transformers tokenizer, a `tokenizers.Tokenizer`, or a path to load one
    from; default: the tokenizer of the checkpoint `model` was loaded from, when known.
    `transformers.AutoModelForCausalLM.from_pretrained(out_dir)` loads the result unchanged.
    """
    out = hf_convert.export_hf(model, out_dir, rope_form=rope_form)
    if tokenizer is None:
        src = source_of(model)
        if src is not None:
            sp = pathlib.Path(src)
            if sp.is_dir():
                for name in TOKENIZER_FILES:
                    if (sp / name).is_file():
                        shutil.copyfile(sp / name, out / name)
                return out
            try:
                tokenizer = load_tokenizer(sp)
            except Exception:  # noqa: BLE001 - a model without a tokenizer still exports
                tokenizer = None
    if tokenizer is None:
        return out
    if isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = load_tokenizer(tokenizer)
    if hasattr(tokenizer, "save_pretrained"):
        tokenizer.save_pretrained(str(out))
    else:  # a bare tokenizers.Tokenizer: wrap it so transformers finds its config
        from transformers import PreTrainedTokenizerFast  # noqa: PLC0415

        cfg = model.cfg
        kw = {}
        for attr, tid in (("bos_token", cfg.bos_token_id), ("eos_token", cfg.eos_token_id)):
            if isinstance(tid, tuple):
                tid = tid[0]
            if tid is not None:
                kw[attr] = tokenizer.id_to_token(int(tid))
        PreTrainedTokenizerFast(tokenizer_object=tokenizer, **kw).save_pretrained(str(out))
    return out


def load_tokenizer(path: str | os.PathLike):
    """The checkpoint's tokenizer (an HF folder's tokenizer files, a tokenizer.json file, or a
    GGUF's embedded vocabulary, with or without the .gguf suffix) as
    `yarn_jax.convert.tokenizer.Tokenizer`: encode(str) -> list[int] without special tokens
    unless asked, decode(ids) -> str, bos/eos_token_id, save_pretrained(dir)."""
    from yarn_jax.convert import tokenizer as tokenizer_lib  # noqa: PLC0415

    p = pathlib.Path(path)
    if not p.exists():
        raise FileNotFoundError(
            f"{p}: no such file or folder (expected an HF model folder, a tokenizer.json or a "
            ".gguf file)"
        )
    if p.is_dir() and not any((p / n).is_file() for n in TOKENIZER_FILES):
        raise FileNotFoundError(f"{p}: no tokenizer files ({', '.join(TOKENIZER_FILES[:4])}, ...)")
    return tokenizer_lib.load_tokenizer(p)
