"""The plotted numbers are the methods' numbers, checked against closed forms."""

import math

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from yarn_jax import rope, viz  # noqa: E402


def test_frequency_scales_closed_forms():
    d, b, s, L = 64, 1e4, 8.0, 2048
    wavelength, scale, attn = viz.frequency_scales(rope.RopeConfig("linear", b, s), d)
    np.testing.assert_allclose(wavelength, 2 * math.pi * b ** (np.arange(0, d, 2) / d), rtol=1e-12)
    np.testing.assert_allclose(scale, s, rtol=1e-6)
    assert attn == 1.0
    # NTK-aware: pair i is slowed by s^(2i/(d-2))
    _, scale, _ = viz.frequency_scales(rope.RopeConfig("ntk", b, s), d)
    np.testing.assert_allclose(scale, s ** (np.arange(0, d, 2) / (d - 2)), rtol=1e-5)
    _, _, attn = viz.frequency_scales(rope.RopeConfig("yarn", b, s, L), d)
    np.testing.assert_allclose(attn, 0.1 * math.log(s) + 1, rtol=1e-7)


def test_plots_carry_the_numbers():
    cfgs = [rope.RopeConfig("linear", 1e4, 4.0), rope.RopeConfig("yarn", 1e4, 4.0, 2048)]
    fig = viz.plot_frequency_scales(cfgs, 64)
    lines = fig.axes[0].get_lines()
    np.testing.assert_allclose(lines[0].get_ydata(), 4.0, rtol=1e-6)
    assert lines[1].get_ydata()[0] == 1.0 and abs(lines[1].get_ydata()[-1] - 4.0) < 1e-5
    lengths = [1024, 2048, 4096, 8192]
    low, attn = viz.dynamic_scale_curve(
        rope.RopeConfig("dynamic_yarn", 1e4, 4.0, 2048), 64, lengths
    )
    np.testing.assert_allclose(low, [1.0, 1.0, 2.0, 4.0], rtol=1e-5)
    np.testing.assert_allclose(
        attn, [1.0, 1.0, 0.1 * math.log(2) + 1, 0.1 * math.log(4) + 1], rtol=1e-6
    )
    fig = viz.plot_dynamic([rope.RopeConfig("dynamic_linear", 1e4, 4.0, 2048)], 64, lengths)
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(), [1, 1, 2, 4], rtol=1e-5)


def test_plot_training_reads_jsonl(tmp_path):
    import json

    path = tmp_path / "metrics.jsonl"
    records = [{"step": s, "loss": 5.0 / s, "lr": 1e-3 * s} for s in range(1, 6)]
    records.insert(2, {"step": 99, "eval": 1.0})  # a record without the plotted keys
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    fig = viz.plot_training(path)
    loss_line = fig.axes[0].get_lines()[0]
    np.testing.assert_array_equal(loss_line.get_xdata(), [1, 2, 3, 4, 5])
    np.testing.assert_allclose(loss_line.get_ydata(), [5.0 / s for s in range(1, 6)])
    assert [ax.get_title() for ax in fig.axes] == ["loss", "lr"]
