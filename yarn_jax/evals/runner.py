"""One evaluation run: model + documents + methods -> report on the terminal and files on disk.

`run(EvalConfig(...))` is the whole of `python eval.py`; the CLI only turns flags into the config.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import pathlib
import platform
import sys
import time
from collections.abc import Sequence
from typing import Any

from yarn_jax import rope as rope_lib

# RopeConfig fields a user may set for every evaluated method (rope_type comes from --method).
ROPE_FIELDS = tuple(
    f.name for f in dataclasses.fields(rope_lib.RopeConfig) if f.name != "rope_type"
)
# Llama 3.1's values, used for `llama3` when the user gives none.
LLAMA3_DEFAULTS = {"low_freq_factor": 1.0, "high_freq_factor": 4.0}


class EvalError(ValueError):
    """A problem with the user's input, reported as one message (the CLI exits with code 2)."""


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Everything one evaluation run needs. See configs/eval_default.py for the defaults."""

    task: str = "perplexity"  # perplexity | passkey
    model: str | None = None  # HF folder, .gguf file or hub id; None = SmolLM2-135M-Instruct
    tokenizer: str | None = None  # defaults to `model`
    dtype: str = "float32"
    methods: tuple[str, ...] = ("dynamic_ntk",)
    baseline: str | None = "default"  # always evaluated alongside (None: only `methods`)
    rope: tuple[tuple[str, Any], ...] = (("factor", 4.0),)  # RopeConfig overrides (ROPE_FIELDS)
    # perplexity
    data: tuple[str, ...] = ()  # empty: the bundled documents
    documents: tuple[str, ...] = ("kjv_genesis",)  # names to keep (bundled, or files in --data)
    text_field: str = "text"
    split: str = "test"
    lengths: tuple[int, ...] = (2048, 4096, 8192, 12288)
    samples: int | None = None  # documents per length; None = all
    stride: int = 256
    truncate: bool = True
    loss_chunk: int = 1024
    # passkey
    depths: tuple[float, ...] | None = (0.1, 0.5, 0.9)  # None: uniform random depth per trial
    trials: int = 1
    max_new_tokens: int = 10
    seed: int = 0
    # output
    output_dir: str = "eval_out"
    progress: bool = True
    note: str = (  # a line printed and written into the results
        "default run, shrunk to fit 5 minutes on 2 CPU cores: one document (KJV Genesis), one "
        "window per length (its first L tokens, --truncate); the full sliding-window protocol on "
        "every bundled document: --documents all --stride 256"
    )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise EvalError(f"unknown config keys {unknown}; known: {sorted(names)}")
        d = dict(d)
        for key in ("methods", "data", "documents", "lengths"):
            if key in d and d[key] is not None:
                v = d[key]
                d[key] = tuple(v.split(",")) if isinstance(v, str) else tuple(v)
        if "lengths" in d:
            d["lengths"] = tuple(int(x) for x in d["lengths"])
        if d.get("depths") is not None:
            d["depths"] = tuple(float(x) for x in d["depths"])
        if isinstance(d.get("rope"), dict):
            d["rope"] = tuple(sorted((k, v) for k, v in d["rope"].items() if v is not None))
        return cls(**d)


# -- pieces -------------------------------------------------------------------------------------


def resolve_methods(methods: Sequence[str], baseline: str | None, rope: dict) -> list[str]:
    """Canonical method names in order, baseline first; `all` expands to every registered one."""
    names: list[str] = []
    for m in methods:
        if str(m).strip().lower() == "all":
            for name in rope_lib.METHODS:
                if name == "longrope" and not (
                    rope.get("short_factor") and rope.get("long_factor")
                ):
                    continue  # needs per-frequency factors: only with --short/long-factor
                names.append(name)
        else:
            try:
                names.append(rope_lib.canonical_name(m))
            except ValueError as e:
                raise EvalError(str(e)) from None
    if baseline:
        names.insert(0, rope_lib.canonical_name(baseline))
    return list(dict.fromkeys(names))


def method_rope(model_cfg, method: str, rope: dict) -> rope_lib.RopeConfig:
    """The RopeConfig of `method` on this model: its base theta and trained context, + overrides."""
    base = model_cfg.rope
    kwargs: dict[str, Any] = {"rope_type": method, "rope_theta": base.rope_theta}
    if method != "default":
        kwargs["original_max_position_embeddings"] = (
            base.original_max_position_embeddings or model_cfg.max_position_embeddings
        )
        if method == "llama3":
            kwargs.update(LLAMA3_DEFAULTS)
        kwargs.update({k: v for k, v in rope.items() if v is not None})
    elif "rope_theta" in rope:
        kwargs["rope_theta"] = rope["rope_theta"]
    try:
        return rope_lib.RopeConfig(**kwargs)
    except (TypeError, ValueError) as e:
        raise EvalError(f"--method {method}: {e}") from None


def _resolve_model_path(model: str | None, progress: bool) -> str:
    if model:
        p = pathlib.Path(model).expanduser()
        if p.exists():
            return str(p)
        if model.startswith((".", "/", "~")) or model.endswith((".gguf", ".safetensors")):
            raise EvalError(f"--model {model}: no such file or directory")
        return model  # a hub id: from_pretrained says if it cannot be reached
    from yarn_jax.convert.fetch import smollm2_gguf

    try:
        return str(smollm2_gguf(verbose=progress))
    except Exception as e:
        raise EvalError(
            f"could not fetch the default model (SmolLM2-135M-Instruct GGUF): {e}\n"
            "Pass --model with a local checkpoint: a Hugging Face folder or a .gguf file."
        ) from None


def load_model(path: str, dtype: str, progress: bool, tokenizer_path: str | None = None):
    """(model, tokenizer) with a progress bar; any loading failure becomes one EvalError.

    The tokenizer comes from `tokenizer_path` when given (the model's own is then not loaded,
    so a model folder without tokenizer files works), else from the model at `path`."""
    from tqdm.auto import tqdm

    import yarn_jax

    with tqdm(total=2, desc="preparing model", unit="step", disable=not progress) as bar:
        bar.set_postfix_str(f"loading {pathlib.Path(path).name}")
        try:
            model = yarn_jax.from_pretrained(path, dtype=dtype)
        except (FileNotFoundError, ValueError, OSError, KeyError) as e:
            raise EvalError(f"--model {path}: could not load the model: {e}") from None
        except Exception as e:  # corrupt files raise whatever their reader raises
            raise EvalError(
                f"--model {path}: could not load the model ({type(e).__name__}: {e}); is the file "
                "complete and a supported checkpoint (HF folder with safetensors, or .gguf)?"
            ) from None
        bar.update(1)
        bar.set_postfix_str("tokenizer")
        try:
            tokenizer = yarn_jax.load_tokenizer(tokenizer_path or path)
        except Exception as e:
            if tokenizer_path:
                raise EvalError(f"--tokenizer {tokenizer_path}: could not load it ({e})") from None
            raise EvalError(f"--model {path}: could not load its tokenizer ({e})") from None
        bar.update(1)
    return model, tokenizer


def _settings(cfg: EvalConfig, model_path: str, model_cfg, methods, ropes) -> dict[str, Any]:
    return {
        "task": cfg.task,
        "model": model_path,
        "dtype": cfg.dtype,
        "methods": methods,
        "rope": {m: dataclasses.asdict(r) for m, r in ropes.items()},
        "trained_context": int(model_cfg.max_position_embeddings),
        "lengths": list(cfg.lengths),
        "stride": cfg.stride,
        "truncate": cfg.truncate,
        "samples": cfg.samples,
        "protocol": (
            "truncate: one window per document, its first L tokens (paper's Proof-pile tables)"
            if cfg.truncate
            else f"sliding window of L tokens every {cfg.stride} tokens, each token scored once "
            "(Press et al.; last window aligned to the document end)"
        ),
        "note": cfg.note,
        "title": f"{pathlib.Path(model_path).name} ({cfg.dtype}): perplexity against length",
        "host": f"{platform.node()} {platform.machine()} cpus={os.cpu_count()}",
    }


def _check(cfg: EvalConfig) -> None:
    if cfg.task not in ("perplexity", "passkey"):
        raise EvalError(f"--task must be perplexity or passkey, got {cfg.task!r}")
    if not cfg.lengths or any(L < 2 for L in cfg.lengths):
        raise EvalError(f"--lengths must be integers >= 2, got {list(cfg.lengths)}")
    if cfg.samples is not None and cfg.samples < 1:
        raise EvalError(f"--samples must be >= 1, got {cfg.samples}")
    sliding = cfg.task == "perplexity" and not cfg.truncate
    if cfg.stride < 1 or (sliding and cfg.stride > min(cfg.lengths)):
        raise EvalError(
            f"--stride must be between 1 and the shortest length ({min(cfg.lengths)}), "
            f"got {cfg.stride}"
        )
    if cfg.trials < 1:
        raise EvalError(f"--trials must be >= 1, got {cfg.trials}")
    if cfg.depths is not None and any(not 0 <= d <= 1 for d in cfg.depths):
        raise EvalError(f"--depths must lie in [0, 1], got {list(cfg.depths)}")
    rope = dict(cfg.rope)
    unknown = sorted(set(rope) - set(ROPE_FIELDS))
    if unknown:
        raise EvalError(f"unknown rope fields {unknown}; known: {list(ROPE_FIELDS)}")
    f = rope.get("factor")
    if f is not None and (not isinstance(f, (int, float)) or not math.isfinite(f) or f < 1):
        raise EvalError(f"--factor must be >= 1 (the extension ratio L'/L), got {f}")


# -- the run -----------------------------------------------------------------------------------


def run(cfg: EvalConfig, stream=None) -> dict[str, Any]:
    """Run the evaluation `cfg` describes; print the report to `stream`; write the output dir."""
    from yarn_jax.evals import documents as docs_lib
    from yarn_jax.evals import report

    stream = stream or sys.stdout
    t_start = time.perf_counter()
    _check(cfg)
    rope = dict(cfg.rope)
    methods = resolve_methods(cfg.methods, cfg.baseline, rope)
    # Cheap input checks before the model loads.
    docs = None
    if cfg.task == "perplexity":
        docs = docs_lib.load_documents(cfg.data, cfg.documents, cfg.text_field, cfg.split)
    model_path = _resolve_model_path(cfg.model, cfg.progress)
    model, tokenizer = load_model(model_path, cfg.dtype, cfg.progress, cfg.tokenizer)
    model_cfg = model.cfg
    ropes = {m: method_rope(model_cfg, m, rope) for m in methods}
    settings = _settings(cfg, model_path, model_cfg, methods, ropes)
    from yarn_jax.model import with_rope

    models = {m: with_rope(model, r) for m, r in ropes.items()}

    with report.atomic_output(cfg.output_dir) as tmp:
        if cfg.task == "perplexity":
            result = _run_perplexity(cfg, models, ropes, model_cfg, docs, tokenizer, settings)
            text = report.perplexity_report(result)
            files = report.write_perplexity(result, tmp)
        else:
            result = _run_passkey(cfg, models, tokenizer, settings)
            text = report.passkey_report(result)
            files = report.write_passkey(result, tmp)
        result["wall_s"] = round(time.perf_counter() - t_start, 1)
        name = "results.json" if cfg.task == "perplexity" else "passkey.json"
        (tmp / name).write_text(json.dumps(result, indent=2, default=str) + "\n")
    header = (
        f"model {model_path} ({cfg.dtype}), trained context {settings['trained_context']}; "
        f"{settings['protocol'] if cfg.task == 'perplexity' else 'passkey retrieval'}"
    )
    if cfg.note and cfg.task == "perplexity":
        header += f"\n{cfg.note}"
    print(f"\n{header}\n\n{text}\n", file=stream)
    out = pathlib.Path(cfg.output_dir)
    print(f"wrote {', '.join(str(out / f) for f in files)} ({result['wall_s']} s)", file=stream)
    return result


def _run_perplexity(cfg, models, ropes, model_cfg, docs, tokenizer, settings) -> dict[str, Any]:
    from yarn_jax.evals import documents as docs_lib
    from yarn_jax.evals import perplexity

    docs = docs_lib.tokenize(docs, tokenizer, cfg.progress)
    usable = [L for L in cfg.lengths if any(len(d.ids) >= L for d in docs)]
    if not usable:
        longest = max(len(d.ids) for d in docs)
        raise EvalError(
            f"every requested length {list(cfg.lengths)} is longer than every document (the "
            f"longest has {longest} tokens): use shorter --lengths or longer --data"
        )
    nll_fns = {m: perplexity.make_nll_fn(mod, cfg.loss_chunk) for m, mod in models.items()}
    try:
        result = perplexity.evaluate_perplexity(
            nll_fns, ropes, model_cfg.head_dim, docs, cfg.lengths, cfg.stride, cfg.truncate,
            cfg.samples, cfg.progress,
        )  # fmt: skip
    except ValueError as e:
        raise EvalError(str(e)) from None
    settings["documents"] = [
        {"name": d.name, "kind": d.kind, "tokens": int(len(d.ids)), "source": d.source}
        for d in docs
    ]
    return {"settings": settings, **result}


def _run_passkey(cfg, models, tokenizer, settings) -> dict[str, Any]:
    import numpy as np

    from yarn_jax.evals import documents as docs_lib
    from yarn_jax.evals import passkey
    from yarn_jax.generation import generate

    def gen_for(model):
        def gen(ids):
            out = generate(model, np.asarray([ids], np.int32), cfg.max_new_tokens)
            return np.asarray(out).reshape(-1)

        return gen

    encode = functools.partial(docs_lib.encode_ids, tokenizer)  # each string encoded once
    result = passkey.evaluate_passkey(
        {m: gen_for(mod) for m, mod in models.items()}, encode, tokenizer.decode, cfg.lengths,
        cfg.depths, cfg.trials, cfg.seed, cfg.progress,
    )  # fmt: skip
    settings.update(depths=cfg.depths, trials=cfg.trials, max_new_tokens=cfg.max_new_tokens,
                    seed=cfg.seed)  # fmt: skip
    return {"settings": settings, **result}
