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
from nnref.quant.ops import quantize  # noqa: E402
from nnref.quant.qparams import TFLITE_INT8_WEIGHTS, TFLITE_INT8_WEIGHTS_PER_TENSOR, QScheme  # noqa: E402
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


def stairs(ax, label):
    """(heights, edges) of the histogram drawn with ``label`` (a matplotlib StepPatch)."""
    heights, edges, _ = labelled(ax.patches, label).get_data()
    return np.asarray(heights, dtype=float), np.asarray(edges, dtype=float)


def area_in_steps(heights, edges, step) -> float:
    # A density per grid step integrates to 1 over x measured in grid steps.
    return float(np.sum(heights * np.diff(edges)) / step)


def assert_nothing_under(ax, box, what) -> None:
    """No bar of either histogram of ``ax`` reaches into the display box ``box``."""
    for label in ("float weights (before)", "quantized (after)"):
        heights, edges = stairs(ax, label)
        left, right = ax.transData.transform(np.c_[edges[:-1], 0 * heights])[:, 0], \
            ax.transData.transform(np.c_[edges[1:], 0 * heights])[:, 0]
        tops = ax.transData.transform(np.c_[edges[:-1], heights])[:, 1]
        under = (right > box.x0) & (left < box.x1)
        assert np.all(tops[under] < box.y0), f"{label} bars reach into the {what}"


def test_weight_histograms_of_a_whole_model_make_one_panel_per_layer(tmp_path, model, qmodel):
    axs = plots.plot_weight_histograms(model, qmodel)
    assert isinstance(axs, np.ndarray) and axs.shape == (2,)
    assert axs[0].get_figure() is axs[1].get_figure()
    for i, ax in enumerate(axs, start=1):
        assert ax.get_title() == f"Layer {i} weights: int8 per-channel"
        # Per-channel weights are drawn in units of their channel's scale: one grid step is 1.
        assert ax.get_xlabel() == "weight / its channel's scale s_c (grid steps)"
        assert ax.get_ylabel() == "density (per grid step)"
        assert legend_texts(ax) == ["float weights (before)", "quantized (after)", "grid: 255 levels (8-bit)"]
        # 255 levels: a light rug of 255 short ticks at the integers -127..127.
        rug = labelled(ax.collections, "grid: 255 levels (8-bit)")
        xs = sorted(seg[0][0] for seg in rug.get_segments())
        assert xs == list(range(-127, 128))
        assert rug.get_alpha() <= 0.5
        # Before and after are histograms on the same bins, each m = ceil(255 / 80) = 4 whole
        # grid steps wide with edges halfway between levels, and each has area 1.
        assert len(ax.patches) == 2
        h_before, edges = stairs(ax, "float weights (before)")
        h_after, after_edges = stairs(ax, "quantized (after)")
        np.testing.assert_array_equal(edges, after_edges)
        np.testing.assert_array_equal(np.diff(edges), 4.0)
        assert edges[0] == -127.5
        assert area_in_steps(h_before, edges, 1.0) == pytest.approx(1.0)
        assert area_in_steps(h_after, edges, 1.0) == pytest.approx(1.0)
        # Head room above the highest bar for the legend and the inset.
        assert ax.get_ylim()[1] >= 1.75 * max(h_before.max(), h_after.max())
        # The inset zooms on 7 single levels: bars one step wide centred on the integers.
        (inset,) = ax.child_axes
        inset_after = inset.patches[1].get_data()
        centres = (inset_after.edges[:-1] + inset_after.edges[1:]) / 2
        assert len(centres) == 7 and np.all(np.diff(centres) == 1.0) and np.all(centres == np.round(centres))
    assert_png(plots.save_figure(axs, tmp_path / "hist.png"))


def test_low_bit_weights_collapse_onto_the_drawn_grid(model, calib):
    q3 = quantize_model(model, calib, bits=3, weight_scheme="tflite_int8_weights_per_tensor")
    ax = plots.plot_weight_histograms(model, q3, layer=0)
    layer = q3.layers[0]
    s = float(layer.w_qparams.scale)
    assert ax.get_title() == "Layer 1 weights: int3 per-tensor"
    assert ax.get_xlabel() == f"weight value (real units; grid step s = {s:.3g})"
    assert ax.get_ylabel() == "density (per grid step)"
    # 3 bits narrow range: the 7 levels s * (-3 .. 3), drawn as full-height dotted lines.
    grid = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]
    np.testing.assert_allclose(sorted(ln.get_xdata()[0] for ln in grid), s * np.arange(-3, 4))
    # The quantized weights: one bar per level, one grid step wide, centred on the level.
    heights, edges = stairs(ax, "quantized (after)")
    np.testing.assert_allclose((edges[:-1] + edges[1:]) / 2, s * np.arange(-3, 4), atol=1e-9)
    np.testing.assert_allclose(np.diff(edges), s)
    # On one-step bars a density per grid step is the fraction of the weights at the level:
    # the heights sum to 1 and count the weights, h * n = number of weights with w_q = q.
    w_q = layer.w_q.ravel()
    assert heights.sum() == pytest.approx(1.0)
    for q, h in zip(range(-3, 4), heights):
        assert round(h * w_q.size) == int(np.sum(w_q == q))
    # Each used level's bar says its fraction in percent.
    expected = [f"{100 * h:.0f}%" if h >= 0.01 else "<1%" for h in heights if h > 0]
    assert [t.get_text() for t in ax.texts] == expected
    # The float histogram: 80 // 7 = 11 bins per grid step, aligned with the bars, area 1.
    h_before, fine = stairs(ax, "float weights (before)")
    np.testing.assert_allclose(np.diff(fine), s / 11)
    np.testing.assert_allclose(fine[::11], edges, atol=1e-9)
    assert area_in_steps(h_before, fine, s) == pytest.approx(1.0)
    assert ax.get_ylim()[1] >= 1.35 * max(heights.max(), h_before.max())
    assert not ax.child_axes  # no inset for a grid whose levels are drawn one by one


@pytest.mark.parametrize("figsize", [None, (8.0, 3.0)])
@pytest.mark.parametrize("bits", [2, 8])
def test_weight_histogram_legend_labels_and_inset_cover_no_data(model, calib, bits, figsize):
    # The legend (upper left), the percent labels and the inset (upper right) sit in the
    # head room: no bar reaches into them, and they do not overlap one another; also on
    # small panels (two layers in 8 x 3 inches).
    qm = quantize_model(model, calib, bits=bits)
    given = None if figsize is None else plt.subplots(1, 2, figsize=figsize, layout="constrained")[1]
    for ax in plots.plot_weight_histograms(model, qm, ax=given):
        renderer = ax.figure.canvas.get_renderer()
        ax.figure.draw(renderer)
        legend = ax.get_legend().get_window_extent(renderer)
        assert_nothing_under(ax, legend, "legend")
        for text in ax.texts:
            assert not text.get_window_extent(renderer).overlaps(legend), text.get_text()
        if bits == 8:
            (inset,) = ax.child_axes
            box = inset.get_tightbbox(renderer)
            assert_nothing_under(ax, box, "inset")
            assert not box.overlaps(legend)
        else:
            assert [t.get_text()[-1] for t in ax.texts] == ["%"] * len(ax.texts) and ax.texts


@given(seed=seeds, bits=st.integers(2, 5), per_channel=st.booleans(), symmetric=st.booleans())
def test_qparams_argument_quantizes_a_matrix_here(seed, bits, per_channel, symmetric):
    w = np.random.default_rng(seed).standard_normal((9, 4))
    if symmetric:
        scheme = (TFLITE_INT8_WEIGHTS if per_channel else TFLITE_INT8_WEIGHTS_PER_TENSOR).with_bits(bits)
    else:  # affine: a zero point moves the grid off 0
        scheme = QScheme(bits=bits, symmetric=False, per_channel=per_channel)
    qp = scheme.for_tensor(w)
    fig, ax = plt.subplots()
    assert plots.plot_weight_histograms(w, qp, ax=ax) is ax
    q = np.arange(qp.qmin, qp.qmax + 1)
    if per_channel:  # units of each channel's scale: the grid is the integers themselves
        step, levels = 1.0, q
    else:  # real units: s * (q - z)
        step, levels = float(qp.scale), float(qp.scale) * (q - int(qp.zero_point))
    grid = sorted(ln.get_xdata()[0] for ln in ax.get_lines() if ln.get_linestyle() == ":")
    np.testing.assert_allclose(grid, levels, atol=1e-9)
    # One bar per level, one step wide; heights are the fractions of weights at each level.
    heights, edges = stairs(ax, "quantized (after)")
    np.testing.assert_allclose((edges[:-1] + edges[1:]) / 2, levels, atol=1e-9)
    w_q = quantize(w, qp, rounding="half_away")  # TensorFlow Lite's rounding, as plots uses
    np.testing.assert_array_equal(np.round(heights * w.size).astype(int), [np.sum(w_q == k) for k in q])
    assert heights.sum() == pytest.approx(1.0)
    assert area_in_steps(*stairs(ax, "float weights (before)"), step) == pytest.approx(1.0)
    if symmetric:
        # The widest weight lands on the end of the grid (symmetric scale = max|w| / qmax).
        qmax = 2 ** (bits - 1) - 1
        used = (edges[:-1] + edges[1:])[heights > 0] / 2
        assert np.abs(used).max() == pytest.approx(qmax * step)
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
    assert legend_texts(ax) == ["weights"] and ax.get_ylabel() == "MSE (squared real units)"
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
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("output channel", "weight value (real units)")
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
