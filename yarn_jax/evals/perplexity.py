"""Sliding-window perplexity (Press et al.; shared/docs/METHOD.md, "Evaluation protocol").

Windows of the evaluated length L start every `stride` tokens; each window scores only the tokens
no earlier window scored, so every token of a document except the first is scored exactly once.
The last window is aligned to end at the document's end (so every window holds exactly L tokens
and one compilation serves a length). `truncate=True` is the paper's Proof-pile protocol: one
window, the first L tokens of each document.

The loss is computed from the final hidden states in chunks of `loss_chunk` positions, so the
[T, V] float32 logits are never materialised (SmolLM2 at 8k: 4.6 GB).

Reported: the token-weighted perplexity exp(sum NLL / tokens) per document and over all
documents, and the reference code's number (jquesnelle/yarn eval/perplexity.py, METHOD.md: every
window's mean loss, pooled over documents, averaged, then exponentiated: exp(mean of window
losses), `window_mean_loss_ppl`), labelled as such. `window_mean_ppl` (the mean over windows of
exp(window loss)) is also recorded; it is not the reference's number.

Dimension key: B batch, T length, D model dim, V vocab, C loss chunk.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Window:
    """Tokens [begin, end) are fed to the model; tokens [score_from, end) are scored."""

    begin: int
    end: int
    score_from: int

    @property
    def n_scored(self) -> int:
        return self.end - self.score_from


def sliding_windows(
    n_tokens: int, length: int, stride: int, truncate: bool = False
) -> list[Window]:
    """The windows of a document of `n_tokens` tokens at context `length`.

    Empty when the document is shorter than `length` (the caller reports it as skipped). With
    `stride == length` (no overlap) the first token of each window has no context and is not
    scored, as in the Hugging Face perplexity guide.
    """
    if length < 2:
        raise ValueError(f"length must be >= 2 tokens, got {length}")
    if not truncate and not 1 <= stride <= length:
        raise ValueError(
            f"stride must be between 1 and the length ({length}), got {stride}: a larger stride "
            "would leave tokens unscored"
        )
    if n_tokens < length:
        return []
    if truncate:
        return [Window(0, length, 1)]
    begins = list(range(0, n_tokens - length + 1, stride))
    if begins[-1] != n_tokens - length:
        begins.append(n_tokens - length)  # last window ends at the document's end
    windows, scored_until = [], 1  # token 0 has no prediction
    for b in begins:
        e = b + length
        windows.append(Window(b, e, max(scored_until, b + 1)))
        scored_until = e
    return windows


# -- the model side ------------------------------------------------------------------------------


def _token_nll(model, ids_bt, loss_chunk: int):
    """-log p(ids[t+1] | ids[<=t]) for t < T-1: float32 [B, T-1], logits chunk by chunk."""
    import jax
    import jax.numpy as jnp

    h_btd = model.hidden(ids_bt)[:, :-1]
    tgt_bt = ids_bt[:, 1:]
    B, T, D = h_btd.shape
    C = min(loss_chunk, T)
    n_chunks = -(-T // C)
    pad = n_chunks * C - T
    h_btd = jnp.pad(h_btd, ((0, 0), (0, pad), (0, 0)))
    tgt_bt = jnp.pad(tgt_bt, ((0, 0), (0, pad)))
    h_nbcd = h_btd.reshape(B, n_chunks, C, D).transpose(1, 0, 2, 3)
    tgt_nbc = tgt_bt.reshape(B, n_chunks, C).transpose(1, 0, 2)

    def one_chunk(args):
        h_bcd, t_bc = args
        logits_bcv = model.logits_from_hidden(h_bcd).astype(jnp.float32)
        lse_bc = jax.nn.logsumexp(logits_bcv, axis=-1)
        picked_bc = jnp.take_along_axis(logits_bcv, t_bc[..., None], axis=-1)[..., 0]
        return lse_bc - picked_bc

    # lax.map runs the chunks one after another: only one [B, C, V] block is alive at a time.
    nll_nbc = jax.lax.map(one_chunk, (h_nbcd, tgt_nbc))
    return nll_nbc.transpose(1, 0, 2).reshape(B, n_chunks * C)[:, :T]


def make_nll_fn(model, loss_chunk: int = 1024) -> Callable[[np.ndarray], np.ndarray]:
    """A function ids [T] int -> NLL [T-1] float32 numpy, jitted once per length T."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    graphdef, state = nnx.split(model)

    @jax.jit
    def nll(state, ids_bt):
        return _token_nll(nnx.merge(graphdef, state), ids_bt, loss_chunk)

    def fn(ids_t: np.ndarray) -> np.ndarray:
        out = nll(state, jnp.asarray(np.asarray(ids_t, np.int32)[None]))
        return np.asarray(jax.device_get(out), np.float32)[0]

    return fn


def rope_signature(rope_cfg, head_dim: int, length: int) -> tuple[bytes, float]:
    """The RoPE a window of `length` tokens sees: (inv_freq bytes, attention scale).

    Two (method, length) pairs with the same signature give the same forward pass, and a window
    is a causal prefix of a longer one whose signature matches: their losses are shared.
    """
    from yarn_jax import rope

    inv_freq, scale = rope.rope_params(rope_cfg, head_dim, length)
    return np.asarray(inv_freq, np.float32).tobytes(), float(np.asarray(scale, np.float32))


# -- the evaluation loop -------------------------------------------------------------------------


@dataclasses.dataclass
class _Forward:
    sig: tuple[bytes, float]
    begin: int
    end: int
    nll: np.ndarray  # [end - begin - 1]
    label: str  # "method@length", for the record


def _stats(nlls: Sequence[np.ndarray]) -> dict[str, Any]:
    total = float(sum(float(np.sum(x, dtype=np.float64)) for x in nlls))
    n = int(sum(x.size for x in nlls))
    window_ppl = [math.exp(float(np.mean(x, dtype=np.float64))) for x in nlls if x.size]
    window_loss = [float(np.mean(x, dtype=np.float64)) for x in nlls if x.size]
    return {
        "tokens_scored": n,
        "windows": len(nlls),
        "nll_sum": total,
        "ppl": math.exp(total / n) if n else float("nan"),
        "window_mean_ppl": float(np.mean(window_ppl)) if window_ppl else float("nan"),
        "window_mean_loss_ppl": math.exp(float(np.mean(window_loss))) if window_loss else math.nan,
    }


def evaluate_perplexity(
    nll_fns: Mapping[str, Callable[[np.ndarray], np.ndarray]],
    rope_cfgs: Mapping[str, Any],
    head_dim: int,
    documents: Sequence[Any],
    lengths: Sequence[int],
    stride: int = 256,
    truncate: bool = False,
    samples: int | None = None,
    progress: bool = True,
    signature: Callable[[Any, int, int], Any] = rope_signature,
) -> dict[str, Any]:
    """Perplexity of every method at every length on `documents` (objects with .name, .kind, .ids).

    Args:
      nll_fns: method -> ids [T] -> NLL [T-1] (see make_nll_fn).
      rope_cfgs: method -> RopeConfig, used only to share identical forward passes.
      samples: at most this many documents per length (the first long enough), None = all.
    Returns:
      {"rows": per (method, length, document), "summary": per (method, length),
       "skipped": documents too short for a length, "forwards": passes run, "shared": reused}.
    """
    from tqdm.auto import tqdm

    lengths = sorted({int(x) for x in lengths}, reverse=True)  # longest first: prefixes reuse
    skipped, plan = [], {}
    for L in lengths:
        chosen = []  # (index in `documents`, document): the index is its identity, not its name
        for i, doc in enumerate(documents):
            if len(doc.ids) < L:
                skipped.append(
                    {"length": L, "document": doc.name, "tokens": int(len(doc.ids)),
                     "reason": f"{len(doc.ids)} tokens < length {L}"}
                )  # fmt: skip
            elif samples is None or len(chosen) < samples:
                chosen.append((i, doc))
        if chosen:
            plan[L] = [(i, doc, sliding_windows(len(doc.ids), L, stride, truncate))
                       for i, doc in chosen]  # fmt: skip
    if not plan:
        longest = max((len(d.ids) for d in documents), default=0)
        raise ValueError(
            f"No document is long enough for any requested length {sorted(lengths)}: the longest "
            f"has {longest} tokens. Use shorter --lengths or longer --data."
        )

    sig_cache: dict[tuple[str, int], Any] = {}

    def sig(method, L):
        if (method, L) not in sig_cache:
            sig_cache[(method, L)] = signature(rope_cfgs[method], head_dim, L)
        return sig_cache[(method, L)]

    done: dict[int, list[_Forward]] = {}  # by document index: two documents may share a name
    rows, summary = [], []
    n_forwards = n_shared = 0
    for method, nll_fn in nll_fns.items():
        for L, docs in plan.items():
            total = sum(len(w) for _, _, w in docs)
            bar = tqdm(
                total=total, desc=f"{method} @ {L}", unit="win", disable=not progress, leave=True
            )
            t0, per_doc, all_nlls, shared_from = time.perf_counter(), [], [], set()
            for i, doc, windows in docs:
                doc_nlls = []
                for w in windows:
                    hit = None
                    for f in done.get(i, ()):
                        # f ran with RoPE f.sig; its causal prefix is the forward pass of any
                        # window with the same start and the same RoPE.
                        if f.begin == w.begin and f.end >= w.end and f.sig == sig(method, L):
                            hit = f
                            break
                    if hit is None:
                        nll = nll_fn(doc.ids[w.begin : w.end])
                        hit = _Forward(sig(method, L), w.begin, w.end, nll, f"{method}@{L}")
                        done.setdefault(i, []).append(hit)
                        n_forwards += 1
                    else:
                        n_shared += 1
                        shared_from.add(hit.label)
                    # nll[j] scores token begin + 1 + j
                    lo = w.score_from - w.begin - 1
                    doc_nlls.append(hit.nll[lo : lo + w.n_scored])
                    bar.update(1)
                stats = _stats(doc_nlls)
                rows.append(
                    {"method": method, "length": L, "document": doc.name,
                     "kind": getattr(doc, "kind", ""), **stats}
                )  # fmt: skip
                all_nlls.extend(doc_nlls)
                per_doc.append(doc.name)
            bar.close()
            summary.append(
                {"method": method, "length": L, "documents": len(per_doc), **_stats(all_nlls),
                 "seconds": round(time.perf_counter() - t0, 2),
                 "shared_from": sorted(shared_from - {f"{method}@{L}"})}
            )  # fmt: skip
    order = {L: i for i, L in enumerate(sorted(lengths))}
    methods = list(nll_fns)
    key = lambda r: (methods.index(r["method"]), order[r["length"]])  # noqa: E731
    return {
        "rows": sorted(rows, key=key),
        "summary": sorted(summary, key=key),
        "skipped": skipped,
        "forwards": n_forwards,
        "shared": n_shared,
    }
