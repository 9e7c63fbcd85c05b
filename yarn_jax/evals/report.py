"""Tables, CSV/JSON files and plots of evaluation results; all-or-nothing output directories."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any


@contextlib.contextmanager
def atomic_output(output_dir: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yield a temporary directory; on success move its files into `output_dir`.

    On any error the temporary directory is removed and `output_dir` is left as it was: nothing
    half-written. Files already in `output_dir` with the same names are replaced.
    """
    out = pathlib.Path(output_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise ValueError(f"--output-dir {out} exists and is not a directory")
    parent = out.parent if str(out.parent) else pathlib.Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    try:
        yield tmp
        out.mkdir(exist_ok=True)
        for f in sorted(tmp.iterdir()):
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.3f}" if x < 1000 else f"{x:.4g}"


def text_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(r):
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), sep, *map(line, cells[1:])])


# -- perplexity ----------------------------------------------------------------------------------


def _pivot(entries, value: str, methods, lengths):
    by = {(e["method"], e["length"]): e for e in entries}
    return [[m] + [_fmt(by[(m, L)][value]) if (m, L) in by else "-" for L in lengths]
            for m in methods]  # fmt: skip


def perplexity_report(result: dict[str, Any]) -> str:
    """The terminal report: token-weighted perplexity per method x length, then per document."""
    summary, rows = result["summary"], result["rows"]
    methods = list(dict.fromkeys(e["method"] for e in summary))
    lengths = sorted({e["length"] for e in summary})
    head = ["method"] + [str(L) for L in lengths]
    docs = list(dict.fromkeys(r["document"] for r in rows))
    out = [
        "Perplexity (token-weighted: exp(total NLL / tokens scored), all documents pooled)",
        text_table(head, _pivot(summary, "ppl", methods, lengths)),
        "",
        "Reference-code number (jquesnelle/yarn eval/perplexity.py: exp of the mean over all "
        "windows of each window's mean loss)",
        text_table(head, _pivot(summary, "window_mean_loss_ppl", methods, lengths)),
    ]
    if len(docs) > 1:
        for doc in docs:
            mine = [r for r in rows if r["document"] == doc]
            out += ["", f"Document {doc} (token-weighted)",
                    text_table(head, _pivot(mine, "ppl", methods, lengths))]  # fmt: skip
    if "forwards" in result:
        shared = [f"{e['method']} @ {e['length']} from {', '.join(e['shared_from'])}"
                  for e in summary if e.get("shared_from")]  # fmt: skip
        out += [
            "",
            f"Forward passes run: {result['forwards']}; window results reused: {result['shared']} "
            "(a window is the causal prefix of a longer one with the same RoPE, or another method "
            "has the same RoPE at that length: identical numbers).",
        ]
        if shared:
            out.append("  reused: " + "; ".join(shared))
    if result.get("skipped"):
        out += ["", "Skipped (document shorter than the length):"]
        out += [f"  {s['document']} @ {s['length']}: {s['reason']}" for s in result["skipped"]]
    return "\n".join(out)


def write_perplexity(result: dict[str, Any], out_dir: pathlib.Path) -> list[str]:
    """results.json, results.csv, perplexity.png (+ report.txt) in `out_dir`."""
    (out_dir / "results.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    # window_mean_loss_ppl is the reference code's number; window_mean_ppl (mean of per-window
    # perplexities) is kept for the record only.
    fields = ["method", "length", "document", "kind", "tokens_scored", "windows", "nll_sum",
              "ppl", "window_mean_loss_ppl", "window_mean_ppl"]  # fmt: skip
    with open(out_dir / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in result["rows"]:
            w.writerow(r)
        for s in result["summary"]:
            w.writerow({**s, "document": "ALL", "kind": "all"})
    (out_dir / "report.txt").write_text(perplexity_report(result) + "\n")
    _plot_perplexity(result, out_dir / "perplexity.png")
    return ["results.json", "results.csv", "report.txt", "perplexity.png"]


def _figure(**kw):
    """A matplotlib Figure that is not registered with pyplot: saving it needs no display and
    leaves the caller's backend alone (a notebook keeps its inline plots)."""
    from matplotlib.figure import Figure

    return Figure(**kw)


def _plot_perplexity(result: dict[str, Any], path: pathlib.Path) -> None:
    summary = result["summary"]
    fig = _figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for m in dict.fromkeys(e["method"] for e in summary):
        pts = sorted((e["length"], e["ppl"]) for e in summary if e["method"] == m)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=m)
    trained = result.get("settings", {}).get("trained_context")
    if trained:
        ax.axvline(trained, color="grey", linestyle="--", linewidth=1,
                   label=f"trained context ({trained})")  # fmt: skip
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("perplexity (token-weighted)")
    ax.set_yscale("log")
    ax.set_title(result.get("settings", {}).get("title", "Perplexity against context length"))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# -- passkey -------------------------------------------------------------------------------------


def passkey_report(result: dict[str, Any]) -> str:
    summary = result["summary"]
    methods = list(dict.fromkeys(e["method"] for e in summary))
    lengths = sorted({e["length"] for e in summary})
    rows = []
    for m in methods:
        row = [m]
        for L in lengths:
            cell = [e for e in summary if e["method"] == m and e["length"] == L]
            passed, n = sum(e["passed"] for e in cell), sum(e["trials"] for e in cell)
            row.append(f"{passed}/{n} ({passed / n:.0%})" if n else "-")
        rows.append(row)
    return "Passkey retrieval accuracy (all depths pooled)\n" + text_table(
        ["method"] + [str(L) for L in lengths], rows
    )


def write_passkey(result: dict[str, Any], out_dir: pathlib.Path) -> list[str]:
    (out_dir / "passkey.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    fields = ["method", "length", "depth", "trials", "passed", "accuracy"]
    with open(out_dir / "passkey.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for s in result["summary"]:
            w.writerow(s)
    (out_dir / "report.txt").write_text(passkey_report(result) + "\n")
    _plot_passkey(result, out_dir / "passkey.png")
    return ["passkey.json", "passkey.csv", "report.txt", "passkey.png"]


def _plot_passkey(result: dict[str, Any], path: pathlib.Path) -> None:
    import numpy as np

    summary = result["summary"]
    methods = list(dict.fromkeys(e["method"] for e in summary))
    lengths = sorted({e["length"] for e in summary})
    depths = list(dict.fromkeys(e["depth"] for e in summary))
    fig = _figure(figsize=(3.2 * len(methods) + 1, 3.6))
    axes = fig.subplots(1, len(methods), squeeze=False)
    for ax, m in zip(axes[0], methods):
        grid = np.full((len(depths), len(lengths)), np.nan)
        for e in summary:
            if e["method"] == m:
                grid[depths.index(e["depth"]), lengths.index(e["length"])] = e["accuracy"]
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto", origin="lower")
        ax.set_xticks(range(len(lengths)), [str(L) for L in lengths], rotation=45)
        ax.set_yticks(range(len(depths)),
                      ["random" if d is None else f"{d:.2f}" for d in depths])  # fmt: skip
        ax.set_title(m)
        ax.set_xlabel("prompt length (tokens)")
    axes[0][0].set_ylabel("key depth")
    fig.colorbar(im, ax=axes[0].tolist(), label="accuracy")
    fig.savefig(path, dpi=110, bbox_inches="tight")
