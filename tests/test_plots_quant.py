"""Tests for the quantization figures of nnref.plots: what each draws (bars, stems, grid
levels, ranges, labels), laws of the drawn values, given Axes, PNG output, bad input."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from nnref import plots  # noqa: E402
from nnref.mlp import MLP  # noqa: E402
from nnref.quant.convert import quantize_model  # noqa: E402
from nnref.quant.qparams import TFLITE_INT8_WEIGHTS, TFLITE_INT8_WEIGHTS_PER_TENSOR  # noqa: E402
from strategies import seeds  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def model():
    return MLP([12, 8, 4], seed=0)


@pytest.fixture(scope="module")
def calib():
    return np.random.default_rng(0).standard_normal((200, 12)).astype(np.float32)


@pytest.fixture(scope="module")
def qmodel(model, calib):
    return quantize_model(model, calib)


def legend_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def labelled(collections, label):
    found = [c for c in collections if c.get_label() == label]
    assert len(found) == 1, [c.get_label() for c in collections]
    return found[0]


def assert_png(path) -> None:
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == PNG_SIGNATURE


# --------------------------------------------------------------------------- weight histograms


def test_weight_histograms_of_a_whole_model_make_one_panel_per_layer(tmp_path, model, qmodel):
    axs = plots.plot_weight_histograms(model, qmodel)
    assert isinstance(axs, np.ndarray) and axs.shape == (2,)
    assert axs[0].get_figure() is axs[1].get_figure()
    for i, ax in enumerate(axs, start=1):
        assert ax.get_title() == f"Layer {i} weights: int8 per-channel"
        # Per-channel weights are drawn in units of their channel's scale.
        assert ax.get_xlabel() == "weight / its channel's scale s_c (grid steps)"
        assert ax.get_ylabel() == "density (per unit of x)"
        assert legend_texts(ax) == ["float weights (before)", "quantized (after)", "grid: 255 levels (8-bit)"]
        # 255 levels: a rug of 255 short ticks at the integers -127..127.
        rug = labelled(ax.collections, "grid: 255 levels (8-bit)")
        xs = sorted(seg[0][0] for seg in rug.get_segments())
        assert xs == list(range(-127, 128))
        # Before and after are histograms; every bar is whole grid steps wide.
        assert len(ax.patches) == 2
    assert_png(plots.save_figure(axs, tmp_path / "hist.png"))


def test_low_bit_weights_collapse_onto_the_drawn_grid(model, calib):
    q3 = quantize_model(model, calib, bits=3, weight_scheme="tflite_int8_weights_per_tensor")
    ax = plots.plot_weight_histograms(model, q3, layer=0)
    layer = q3.layers[0]
    s = float(layer.w_qparams.scale)
    assert ax.get_title() == "Layer 1 weights: int3 per-tensor" and ax.get_xlabel() == "weight value"
    # 3 bits narrow range: the 7 levels s * (-3 .. 3), drawn as full-height dotted lines.
    grid = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]
    np.testing.assert_allclose(sorted(ln.get_xdata()[0] for ln in grid), s * np.arange(-3, 4))
    stems = labelled(ax.collections, "quantized (after)")
    xs = np.array([seg[0][0] for seg in stems.get_segments()])
    heights = np.array([seg[1][1] for seg in stems.get_segments()])
    # Every stem stands on a grid level, and the stems are a density: sum(h * step) = 1.
    np.testing.assert_allclose(xs / s, np.round(xs / s), atol=1e-9)
    assert heights.sum() * s == pytest.approx(1.0)
    # They count the quantized weights: the number of weights at level q is h * n * step.
    w_q = layer.w_q.ravel()
    for x, h in zip(xs, heights):
        assert round(h * w_q.size * s) == int(np.sum(w_q == round(x / s)))


@given(seed=seeds, bits=st.integers(2, 5), per_channel=st.booleans())
def test_qparams_argument_quantizes_a_matrix_here(seed, bits, per_channel):
    w = np.random.default_rng(seed).standard_normal((9, 4))
    scheme = (TFLITE_INT8_WEIGHTS if per_channel else TFLITE_INT8_WEIGHTS_PER_TENSOR).with_bits(bits)
    qp = scheme.for_tensor(w)
    fig, ax = plt.subplots()
    assert plots.plot_weight_histograms(w, qp, ax=ax) is ax
    qmax = 2 ** (bits - 1) - 1
    step = 1.0 if per_channel else float(qp.scale)  # per channel: units of each channel's scale
    grid = sorted(ln.get_xdata()[0] for ln in ax.get_lines() if ln.get_linestyle() == ":")
    np.testing.assert_allclose(grid, step * np.arange(-qmax, qmax + 1))
    stems = labelled(ax.collections, "quantized (after)").get_segments()
    assert sum(seg[1][1] for seg in stems) * step == pytest.approx(1.0)
    # The widest weight lands on the end of the grid (symmetric scale = max|w| / qmax).
    assert max(abs(seg[0][0]) for seg in stems) == pytest.approx(qmax * step)
    plt.close(fig)


def test_weight_histograms_reject_bad_input(model, qmodel):
    w = model.linears[0].W
    with pytest.raises(TypeError, match="quantized"):
        plots.plot_weight_histograms(model, "int8")
    with pytest.raises(TypeError, match="float_weights"):
        plots.plot_weight_histograms([w], qmodel)
    with pytest.raises(ValueError, match="layer: a QParams describes one weight matrix"):
        plots.plot_weight_histograms(model, qmodel.layers[0].w_qparams)
    with pytest.raises(ValueError, match="quantized: expected weights of shapes"):
        plots.plot_weight_histograms(MLP([12, 5, 4]), qmodel)
    with pytest.raises(ValueError, match="layer"):
        plots.plot_weight_histograms(model, qmodel, layer=2)
    with pytest.raises(ValueError, match="bins"):
        plots.plot_weight_histograms(model, qmodel, bins=0)
    with pytest.raises(TypeError, match="ax"):
        plots.plot_weight_histograms(model, qmodel, ax="axes")
    fig, ax = plt.subplots()
    with pytest.raises(TypeError, match="ax: expected None, a sequence of 2 Axes"):
        plots.plot_weight_histograms(model, qmodel, ax=ax)  # two layers need two Axes


# --------------------------------------------------------------------------- quantization error


def sqnr(v, e):
    return 10 * np.log10(np.sum(v * v) / np.sum(e * e))


def test_quantization_error_bars_per_layer(tmp_path, model, qmodel, calib):
    ax = plots.plot_quantization_error(model, qmodel, calib[:50])
    assert legend_texts(ax) == ["weights", "layer outputs on x"]
    assert ax.get_ylabel() == "SQNR (dB, higher is better)" and ax.get_xlabel() == "Linear layer"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["layer 1", "layer 2"]
    heights = [p.get_height() for p in ax.patches]
    assert len(heights) == 4  # 2 groups x 2 layers
    # The weight bars are the SQNR of W against its dequantized int8 version.
    for lin, layer, h in zip(model.linears, qmodel.layers, heights[:2]):
        deq = layer.w_q * layer.w_qparams.scale.astype(np.float64)
        assert h == pytest.approx(sqnr(lin.W.astype(np.float64), lin.W - deq), rel=1e-5)
    # int8 with per-channel scales: well above 30 dB everywhere (about 6 dB per bit).
    assert min(heights) > 30
    # Every bar carries its value as a text label.
    assert len([t for t in ax.texts if t.get_text()]) == 4
    assert_png(plots.save_figure(ax, tmp_path / "err.png"))


def test_fewer_bits_mean_lower_weight_sqnr(model, calib):
    sq = {b: [p.get_height() for p in plots.plot_quantization_error(model, quantize_model(model, calib, bits=b)).patches]
          for b in (4, 8)}
    # Each bit halves the step and so quarters the noise power: about 6 dB per bit.
    for lo, hi in zip(sq[4], sq[8]):
        assert hi - lo > 18


def test_quantization_error_mse_metric_without_inputs(model, qmodel):
    ax = plots.plot_quantization_error(model, qmodel, metric="mse")
    assert legend_texts(ax) == ["weights"] and ax.get_ylabel() == "MSE (squared value units)"
    for lin, layer, p in zip(model.linears, qmodel.layers, ax.patches):
        deq = layer.w_q * layer.w_qparams.scale.astype(np.float64)
        assert p.get_height() == pytest.approx(np.mean((lin.W - deq) ** 2), rel=1e-5)


def test_quantization_error_rejects_bad_input(model, qmodel):
    with pytest.raises(TypeError, match="float_model"):
        plots.plot_quantization_error("m", qmodel)
    with pytest.raises(TypeError, match="quantized"):
        plots.plot_quantization_error(model, model)
    with pytest.raises(ValueError, match="quantized: expected layer sizes"):
        plots.plot_quantization_error(MLP([12, 4]), qmodel)
    with pytest.raises(ValueError, match="metric"):
        plots.plot_quantization_error(model, qmodel, metric="snr")
    with pytest.raises(ValueError, match="x"):
        plots.plot_quantization_error(model, qmodel, np.zeros((3, 5)))


# --------------------------------------------------------------------------- channel ranges


def test_channel_ranges_worked_example(tmp_path):
    # Columns (output channels): c0 = [1, -2] -> [-2, 1], max|w| 2;  c1 = [-0.5, 0.25] ->
    # [-0.5, 0.25], max|w| 0.5.  Per tensor: +-2.  Median channel max|w| = 1.25, so the
    # per-tensor grid is 2 / 1.25 = 1.6x coarser.
    w = np.array([[1.0, -0.5], [-2.0, 0.25]])
    ax = plots.plot_channel_ranges(w)
    extents = labelled(ax.collections, "channel min..max").get_segments()
    assert [seg.tolist() for seg in extents] == [[[0, -2], [0, 1]], [[1, -0.5], [1, 0.25]]]
    marks = [ln for ln in ax.get_lines() if ln.get_label() == "per-channel range ±max|w_c|"][0]
    assert marks.get_ydata().tolist() == [2.0, 0.5, -2.0, -0.5]
    per_tensor = [ln.get_ydata()[0] for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert sorted(per_tensor) == [-2.0, 2.0]
    assert "1.6x coarser" in ax.get_title()
    assert legend_texts(ax) == ["channel min..max", "per-channel range ±max|w_c|", "per-tensor range ±2"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("output channel", "weight value")
    assert_png(plots.save_figure(ax, tmp_path / "ranges.png"))


def test_channel_ranges_of_models(model, qmodel):
    axs = plots.plot_channel_ranges(model)
    assert isinstance(axs, np.ndarray) and len(axs) == 2
    for ax, lin in zip(axs, model.linears):
        segs = labelled(ax.collections, "channel min..max").get_segments()
        assert len(segs) == lin.W.shape[1]
        np.testing.assert_allclose([s[0][1] for s in segs], lin.W.min(axis=0), rtol=1e-6)
    # A QuantizedMLP shows its dequantized weights: every range within half a step of the float one.
    ax = plots.plot_channel_ranges(qmodel, layer=-1)
    segs = labelled(ax.collections, "channel min..max").get_segments()
    step = qmodel.layers[-1].w_qparams.scale
    np.testing.assert_array_less(np.abs([s[1][1] for s in segs] - model.linears[-1].W.max(axis=0)), step / 2 + 1e-6)
    fig, given_axes = plt.subplots(1, 2)
    assert list(plots.plot_channel_ranges(model, ax=given_axes)) == list(given_axes)


def test_channel_ranges_reject_bad_input():
    with pytest.raises(ValueError, match="model_or_weights"):
        plots.plot_channel_ranges(np.zeros(3))
    with pytest.raises(ValueError, match="model_or_weights: expected finite"):
        plots.plot_channel_ranges(np.array([[np.nan, 1.0]]))
    with pytest.raises(TypeError, match="model_or_weights"):
        plots.plot_channel_ranges("W")
    with pytest.raises(ValueError, match="layer"):
        plots.plot_channel_ranges(np.ones((2, 2)), layer=1)
