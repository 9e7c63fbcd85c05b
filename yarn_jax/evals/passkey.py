"""Passkey retrieval (shared/docs/METHOD.md; the YaRN reference's eval/passkey.py, itself from
landmark-attention): a key hidden at a chosen depth inside filler text, greedy decoding with the
KV cache, a trial passes when the first integer of the continuation equals the key.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

TASK = (
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize "
    "them. I will quiz you about the important information there."
)
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
QUESTION = "What is the pass key? The pass key is"
MAX_KEY = 50000


def info_line(key: int) -> str:
    return f"The pass key is {key}. Remember it. {key} is the pass key."


def prompt_text(n_garbage: int, depth: float, key: int) -> str:
    """The prompt with `n_garbage` filler characters, a fraction `depth` of them before the key."""
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be in [0, 1], got {depth}")
    repeats = n_garbage // (len(FILLER) + 1) + 2
    garbage = " ".join([FILLER] * repeats)
    n_prefix = int(round(depth * n_garbage))
    # As the reference: both pieces are cut from the start of the repeated filler.
    lines = [TASK, garbage[:n_prefix], info_line(key), garbage[: n_garbage - n_prefix], QUESTION]
    return "\n".join(lines)


def build_prompt(encode: Callable[[str], Sequence[int]], n_tokens: int, depth: float, key: int):
    """The longest prompt of at most `n_tokens` tokens: (token ids, text, n_garbage chars).

    Binary search on the filler length in characters, since tokenization is not additive.
    """
    base = len(encode(prompt_text(0, depth, key)))
    if base > n_tokens:
        raise ValueError(
            f"passkey length {n_tokens} is shorter than the prompt without filler ({base} tokens)"
        )
    lo, hi = 0, 8 * n_tokens  # filler has > 1 char per token, so hi never fits
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if len(encode(prompt_text(mid, depth, key))) <= n_tokens:
            lo = mid
        else:
            hi = mid
    text = prompt_text(lo, depth, key)
    return list(encode(text)), text, lo


def first_integer(text: str) -> int | None:
    m = re.search(r"\d+", text)
    return int(m.group()) if m else None


def passes(continuation: str, key: int) -> bool:
    """METHOD.md: a trial passes when the first integer of the continuation equals the key."""
    return first_integer(continuation) == key


def evaluate_passkey(
    generate_fns: Mapping[str, Callable[[Sequence[int]], Sequence[int]]],
    encode: Callable[[str], Sequence[int]],
    decode: Callable[[Sequence[int]], str],
    lengths: Sequence[int],
    depths: Sequence[float] | None,
    trials: int,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Accuracy per (method, length, depth).

    Args:
      generate_fns: method -> (prompt ids -> greedily generated new ids).
      depths: key depths in [0, 1]; None draws a uniform depth per trial (METHOD.md).
      trials: trials per cell, each with a fresh key uniform in 1..50000 (same keys per method).
    """
    from tqdm.auto import tqdm

    rng = random.Random(seed)
    cells = [(L, d) for L in lengths for d in (depths if depths else [None])]
    plan = []  # the same prompts for every method
    for L, d in cells:
        for t in range(trials):
            depth = rng.random() if d is None else float(d)
            key = rng.randint(1, MAX_KEY)
            ids, _, _ = build_prompt(encode, int(L), depth, key)
            plan.append({"length": int(L), "depth": d, "trial": t, "depth_used": depth,
                         "key": key, "ids": ids})  # fmt: skip
    trials_out, summary, seconds = [], [], {}
    for method, gen in generate_fns.items():
        t0 = time.perf_counter()
        for p in tqdm(plan, desc=f"passkey {method}", unit="trial", disable=not progress):
            new_ids = [int(x) for x in np.asarray(gen(p["ids"])).reshape(-1)]
            text = decode(new_ids)
            trials_out.append(
                {"method": method, "length": p["length"], "depth": p["depth"],
                 "depth_used": round(p["depth_used"], 4), "trial": p["trial"], "key": p["key"],
                 "prompt_tokens": len(p["ids"]), "answer": text,
                 "found": first_integer(text), "pass": passes(text, p["key"])}
            )  # fmt: skip
        for L, d in cells:
            mine = [r for r in trials_out if r["method"] == method and r["length"] == L
                    and r["depth"] == d]  # fmt: skip
            summary.append(
                {"method": method, "length": int(L), "depth": d, "trials": len(mine),
                 "passed": sum(r["pass"] for r in mine),
                 "accuracy": sum(r["pass"] for r in mine) / len(mine)}
            )  # fmt: skip
        seconds[method] = round(time.perf_counter() - t0, 2)
    return {"trials": trials_out, "summary": summary, "seconds": seconds}
