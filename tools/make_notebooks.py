"""Writes notebooks/*.ipynb from the cell lists below (outputs stripped).

    python tools/make_notebooks.py

Notebooks hold no logic of their own: every function they call lives in `yarn_jax` and is
tested there. Edit the cells here, not the .ipynb files, so the three stay consistent.
"""

from __future__ import annotations

import pathlib

import nbformat

REPO = "yarn-jax/yarn_jax"  # GitHub owner/name the Colab badge and install cell point at
ROOT = pathlib.Path(__file__).resolve().parents[1]


def badge(name: str) -> str:
    url = f"https://colab.research.google.com/github/{REPO}/blob/main/notebooks/{name}"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


INSTALL = f"""import sys

if "google.colab" in sys.modules:  # on Colab: install yarn_jax from the repository
    !pip install -q "yarn_jax @ git+https://github.com/{REPO}"
"""

NOTEBOOKS: dict[str, list[tuple[str, str]]] = {}

NOTEBOOKS["rope_methods.ipynb"] = [
    (
        "md",
        """# What each RoPE method does to the frequencies

{badge}

RoPE rotates pair `i` of every query/key by `position · θ_i`, `θ_i = b^(-2i/d)`. A context-extension
method changes the `θ_i` (and sometimes the attention-logit scale). This notebook shows, for the same
model shape, what PI, NTK-aware, NTK-by-parts, YaRN, Llama 3 and LongRoPE do to each pair, which pairs
are interpolated, blended or extrapolated, and how the dynamic methods move with the current length.
Runs in seconds on a CPU runtime.""",
    ),
    ("code", INSTALL),
    (
        "md",
        "Parameters: a LLaMA-2-like head (`d = 128`, `b = 10000`, trained on `L = 4096`) extended 16x.",
    ),
    (
        "code",
        """HEAD_DIM = 128
BASE = 10000.0
L = 4096  # original_max_position_embeddings
FACTOR = 16.0""",
    ),
    (
        "code",
        """import numpy as np

from yarn_jax import rope, viz

methods = {
    "linear": rope.RopeConfig("linear", BASE, FACTOR),
    "ntk": rope.RopeConfig("ntk", BASE, FACTOR),
    "ntk_by_parts": rope.RopeConfig("ntk_by_parts", BASE, FACTOR, L),
    "yarn": rope.RopeConfig("yarn", BASE, FACTOR, L),
    "llama3": rope.RopeConfig("llama3", BASE, FACTOR, L, low_freq_factor=1.0, high_freq_factor=4.0),
    "longrope": rope.RopeConfig(
        "longrope", BASE, FACTOR, L,
        short_factor=[1.0] * (HEAD_DIM // 2),
        long_factor=list(np.linspace(1.0, FACTOR, HEAD_DIM // 2)),
    ),
}
fig = viz.plot_frequency_scales(list(methods.values()), HEAD_DIM)""",
    ),
    (
        "md",
        """## YaRN pair by pair

`r = L/λ` is how many full turns pair `i` makes over the original context. YaRN keeps pairs with
`r > beta_fast` (32) untouched, interpolates pairs with `r < beta_slow` (1) by the full factor and
ramps linearly (in the pair index, as the reference code does) in between.""",
    ),
    ("code", "print(rope.describe(methods['yarn'], HEAD_DIM))"),
    (
        "md",
        "Choosing `beta_fast` / `beta_slow` moves the ramp: compare the default (32, 1) with Yarn-Mistral's (128, 2).",
    ),
    (
        "code",
        """for beta_fast, beta_slow in [(32, 1), (128, 2)]:
    cfg = rope.RopeConfig("yarn", BASE, FACTOR, L, beta_fast=beta_fast, beta_slow=beta_slow)
    print(f"beta_fast={beta_fast}, beta_slow={beta_slow}: ramp over pairs {rope.ramp_bounds(cfg, HEAD_DIM)}")""",
    ),
    (
        "md",
        """## The attention-logit scale

YaRN multiplies cos and sin by `0.1 ln s + 1`, so attention logits grow by its square (a lower
softmax temperature at long range).""",
    ),
    (
        "code",
        """for s in [1, 2, 4, 8, 16, 32]:
    _, scale = rope.rope_params(rope.RopeConfig("yarn", BASE, float(s), L), HEAD_DIM)
    print(f"s = {s:>2}: cos/sin x {float(scale):.7f}, logits x {float(scale) ** 2:.5f}")""",
    ),
    (
        "md",
        """## Dynamic methods

Dynamic methods compute the factor from the current length `l`: `s' = max(1, l/L)`. Below `L` they
are exactly the original RoPE; past it they extend gradually.""",
    ),
    (
        "code",
        """lengths = np.linspace(1024, FACTOR * L, 64).astype(int)
dynamic = [rope.RopeConfig(m, BASE, FACTOR, L) for m in ("dynamic_linear", "dynamic_ntk", "dynamic_yarn")]
fig = viz.plot_dynamic(dynamic, HEAD_DIM, lengths)""",
    ),
]


def build(name: str, cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "colab": {"provenance": []},
    }
    for i, (kind, text) in enumerate(cells):
        text = text.replace("{badge}", badge(name))
        new = nbformat.v4.new_markdown_cell if kind == "md" else nbformat.v4.new_code_cell
        nb.cells.append(new(text, id=f"cell-{i:02d}"))  # stable ids: clean diffs
    return nb


def main() -> None:
    out = ROOT / "notebooks"
    out.mkdir(exist_ok=True)
    for name, cells in NOTEBOOKS.items():
        nb = build(name, cells)
        nbformat.validate(nb)
        nbformat.write(nb, out / name)
        print(f"wrote {out / name}")


if __name__ == "__main__":
    main()
