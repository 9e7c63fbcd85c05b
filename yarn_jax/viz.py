"""Plots of what the RoPE methods do to the frequencies (used by notebooks/rope_methods.ipynb).

Each function returns a matplotlib Figure; the numbers plotted come from `yarn_jax.rope`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from yarn_jax import rope


def _plt():
    # pyplot picks a headless backend by itself where there is no display (Agg), and the
    # notebook's inline backend in Jupyter.
    import matplotlib.pyplot as plt

    return plt


def frequency_scales(cfg: rope.RopeConfig, head_dim: int, seq_len: int | None = None):
    """Per pair: original wavelength [F], effective scale θ_i / inv_freq_i [F]; attention scale."""
    desc = rope.describe(cfg, head_dim, seq_len)
    wavelength = np.array([r["wavelength"] for r in desc.rows])
    scale = np.array([r["scale"] for r in desc.rows])
    return wavelength, scale, desc.attention_scale


def plot_frequency_scales(
    cfgs: Sequence[rope.RopeConfig], head_dim: int, seq_len: int | None = None
):
    """One line per method: how much each frequency pair is slowed down (θ_i / inv_freq_i),
    against the pair's original wavelength; the vertical line marks L."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for cfg in cfgs:
        wavelength, scale, attn = frequency_scales(cfg, head_dim, seq_len)
        label = f"{cfg.rope_type} (attention x{attn:.3f})"
        ax.plot(wavelength, scale, marker=".", label=label)
    L = next(
        (c.original_max_position_embeddings for c in cfgs if c.original_max_position_embeddings),
        None,
    )
    if L:
        ax.axvline(L, color="grey", linestyle="--", linewidth=1)
        ax.text(L, ax.get_ylim()[1], " L", va="top", color="grey")
    ax.set_xscale("log")
    ax.set_xlabel("original wavelength 2π/θ_i (tokens)")
    ax.set_ylabel("effective scale θ_i / inv_freq_i")
    ax.set_title(f"RoPE frequency scaling, head_dim {head_dim}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def dynamic_scale_curve(cfg: rope.RopeConfig, head_dim: int, lengths: Sequence[int]):
    """For a dynamic method: the scale of the lowest-frequency pair and the attention scale at
    each current length, as arrays [len(lengths)]."""
    low, attn = [], []
    for l in lengths:
        _, scale, a = frequency_scales(cfg, head_dim, int(l))
        low.append(scale[-1])
        attn.append(a)
    return np.array(low), np.array(attn)


def plot_dynamic(cfgs: Sequence[rope.RopeConfig], head_dim: int, lengths: Sequence[int]):
    """How dynamic methods move with the current length: lowest-pair scale and attention scale."""
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for cfg in cfgs:
        low, attn = dynamic_scale_curve(cfg, head_dim, lengths)
        ax1.plot(lengths, low, label=cfg.rope_type)
        ax2.plot(lengths, attn, label=cfg.rope_type)
    for ax, title in ((ax1, "lowest-frequency pair: scale"), (ax2, "attention scale")):
        ax.set_xlabel("current length l (tokens)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def read_metrics(path) -> list[dict]:
    """The records of a training run's metrics.jsonl (one dict per logged step)."""
    import json

    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def plot_training(path, keys: Sequence[str] = ("loss", "lr")):
    """Loss (and learning rate) against step from a training run's metrics.jsonl."""
    plt = _plt()
    records = read_metrics(path)
    keys = [k for k in keys if any(k in r for r in records)]
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.5), squeeze=False)
    for ax, key in zip(axes[0], keys):
        pts = [(r["step"], r[key]) for r in records if key in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".")
        ax.set_xlabel("step")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
