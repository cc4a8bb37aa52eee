"""Figures of what quantization does to a network's weights and outputs.

* :func:`plot_weight_histograms`: a layer's float weights and the same weights after
  quantization (dequantized), with the grid they were rounded onto;
* :func:`plot_quantization_error`: the error per layer, of the weights and (given inputs)
  of each layer's output in the integer model, as SQNR or MSE;
* :func:`plot_channel_ranges`: each output channel's weight range against the one range
  a per-tensor scale must cover (why per-channel scales help).
"""

from __future__ import annotations

import math

import numpy as np

from .._checks import describe
from ..layers import Linear
from ..mlp import MLP
from ..quant import QParams, QuantizedMLP, dequantize, quantize
from .common import STYLE, check_ax, finish, new_ax, panel_axes, return_panels

__all__ = ["plot_weight_histograms", "plot_quantization_error", "plot_channel_ranges"]

_MAX_GRID_LINES = 33  # more grid levels than this are drawn as a rug, not full-height lines
_MAX_LABELLED_BARS = 15  # up to this many levels, each quantized bar is labelled in percent
_ZOOM_STEPS = 3  # the inset of a fine grid shows this many levels either side of its centre
_HEAD_ROOM = 1.35  # y limit / highest bar: room above the data for the legend and labels
_HEAD_ROOM_INSET = 1.75  # the same with a zoom inset: the inset sits above the data
# Where the legend (upper left, small font) and the inset (upper right) sit, in axes
# fractions (x0, x1, y0), with a margin: every bar under [x0, x1] must stay below y0.
_LEGEND_BOX = (0.0, 0.6, 0.76)
_INSET_BOX = (0.58, 1.0, 0.52)
_LABEL_HEIGHT = 0.07  # of the axes height: a percent label above a bar


def _layer_weights(model_or_weights, name: str) -> list[np.ndarray]:
    """The float64 weight matrices (in, out) of a model, or the one matrix given.

    Parameters
    ----------
    model_or_weights : MLP, QuantizedMLP or numpy.ndarray
        A float model, an integer model (its weights dequantized), or one non-empty,
        finite 2-D array.
    name : str
        The argument's name, for the error message.

    Returns
    -------
    list of numpy.ndarray

    Raises
    ------
    TypeError
        For anything else.
    ValueError
        For an array that is not 2-D, not numeric, empty or not finite.
    """
    if isinstance(model_or_weights, MLP):
        return [np.asarray(lin.W, dtype=np.float64) for lin in model_or_weights.linears]
    if isinstance(model_or_weights, QuantizedMLP):
        return [dequantize(layer.w_q, layer.w_qparams).astype(np.float64) for layer in model_or_weights.layers]
    if isinstance(model_or_weights, np.ndarray):
        if model_or_weights.ndim != 2 or model_or_weights.dtype.kind not in "iuf" or model_or_weights.size == 0:
            raise ValueError(f"{name}: expected a non-empty 2-D weight matrix (in, out), got {describe(model_or_weights)}")
        w = model_or_weights.astype(np.float64)
        if not np.all(np.isfinite(w)):
            raise ValueError(f"{name}: expected finite weights")
        return [w]
    raise TypeError(f"{name}: expected an MLP, a QuantizedMLP or a 2-D array, got {describe(model_or_weights)}")


def _pick_layers(n: int, layer) -> list[int]:
    """The layer indices to draw: all ``n``, or the one ``layer`` (negative from the end).

    Raises
    ------
    ValueError
        For a ``layer`` that is not None or an index in ``[-n, n - 1]``.
    """
    if layer is None:
        return list(range(n))
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not -n <= layer < n:
        raise ValueError(f"layer: expected None or a layer index in [{-n}, {n - 1}], got {layer!r}")
    return [int(layer) % n]


def _aligned_edges(lo: float, hi: float, origin: float, width: float) -> np.ndarray:
    """Bin edges ``origin + j * width`` for every integer j needed to cover [lo, hi]."""
    j0 = math.floor((lo - origin) / width)
    j1 = max(math.ceil((hi - origin) / width), j0 + 1)
    return origin + width * np.arange(j0, j1 + 1, dtype=np.float64)


def _density_per_step(values: np.ndarray, edges: np.ndarray, step: float) -> np.ndarray:
    """Histogram heights ``count / (n * bin width)`` times ``step``: a density per grid step.

    On bins one grid step wide a height is then the fraction of the values in that bin,
    and on any bins the heights times the bin widths in steps sum to 1.
    """
    counts, _ = np.histogram(values.ravel(), bins=edges)
    return counts / (values.size * np.diff(edges)) * step


def _draw_grid_levels(ax, levels: np.ndarray, label: str) -> None:
    """The grid levels: dotted vertical lines when few, else a light rug along the bottom."""
    color = STYLE["grid_levels"]
    if len(levels) <= _MAX_GRID_LINES:
        for i, v in enumerate(levels):
            ax.axvline(v, color=color, ls=":", lw=STYLE["thin_linewidth"], alpha=0.7,
                       label=label if i == 0 else "_nolegend_")
    else:  # 255 full-height (or dark) lines would be a solid strip
        ax.vlines(levels, 0.0, 0.03, transform=ax.get_xaxis_transform(), color=color,
                  lw=STYLE["thin_linewidth"] * 0.5, alpha=0.5, label=label)


def _label_fractions(ax, edges: np.ndarray, fractions: np.ndarray) -> None:
    """Each bar's height in percent above it (bars one grid step wide).

    There a bar's height is the fraction of the weights rounded to that level, so "79% of
    the weights became 0" reads at a glance.
    """
    for x, f in zip((edges[:-1] + edges[1:]) / 2, fractions):
        if f > 0:
            ax.annotate(f"{100 * f:.0f}%" if f >= 0.01 else "<1%", (x, f), xytext=(0, 3),
                        textcoords="offset points", ha="center", va="bottom", fontsize=9,
                        color=STYLE["after"], fontweight="bold",
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})


def _zoom_inset(ax, before: np.ndarray, after: np.ndarray, levels: np.ndarray, step: float):
    """An inset on the ``2 * _ZOOM_STEPS + 1`` levels around the weights' median.

    There the single levels of a fine grid can be told apart: the float weights on bins a
    quarter step wide, the quantized ones on bars one step wide, the levels dotted.
    Returns the inset Axes.
    """
    c = int(np.clip(np.argmin(np.abs(levels - np.median(before))), _ZOOM_STEPS, len(levels) - 1 - _ZOOM_STEPS))
    shown = levels[c - _ZOOM_STEPS: c + _ZOOM_STEPS + 1]
    lo, hi = shown[0] - step / 2, shown[-1] + step / 2
    inset = ax.inset_axes((0.7, 0.6, 0.28, 0.33))
    fine = lo + step / 4 * np.arange(4 * len(shown) + 1)
    inset.stairs(_density_per_step(before, fine, step), fine, fill=True, color=STYLE["before"], alpha=0.45)
    inset.stairs(_density_per_step(after, fine[::4], step), fine[::4], color=STYLE["after"],
                 lw=STYLE["linewidth"])
    for v in shown:
        inset.axvline(v, color=STYLE["grid_levels"], ls=":", lw=STYLE["thin_linewidth"], alpha=0.7)
    inset.set_xlim(lo, hi)
    inset.set_xticks(shown[::_ZOOM_STEPS], [f"{v:.3g}" for v in shown[::_ZOOM_STEPS]])
    inset.tick_params(labelsize=7, length=2, pad=1)
    inset.set_title(f"zoom: {len(shown)} levels", fontsize=8, pad=2)
    return inset


def _y_top(xlim: tuple, histograms: list, head_room: float, keep_out: list) -> float:
    """The y limit that leaves room above the bars and keeps them below the boxes.

    Parameters
    ----------
    xlim : tuple of float
        The x limits of the Axes.
    histograms : list of (heights, edges)
        The histograms drawn.
    head_room : float
        The limit is at least this many times the highest bar.
    keep_out : list of (x0, x1, y0)
        Boxes in axes fractions (legend, inset): every bar under ``[x0, x1]`` stays
        below height fraction ``y0``.

    Returns
    -------
    float
    """
    lo, hi = xlim
    top = 0.0
    for heights, edges in histograms:
        top = max(top, head_room * heights.max())
        left, right = (edges[:-1] - lo) / (hi - lo), (edges[1:] - lo) / (hi - lo)
        for x0, x1, y0 in keep_out:
            under = (right > x0) & (left < x1)
            if under.any():
                top = max(top, heights[under].max() / y0)
    return top


def _weight_pairs(weights: list, quantized, layer) -> tuple[list[int], list]:
    """The layers to draw and, for each, its ``(w_q, weight QParams)``.

    Raises
    ------
    TypeError
        For a ``quantized`` that is neither a QuantizedMLP nor a QParams.
    ValueError
        For a QuantizedMLP of other weight shapes, a bad ``layer``, or a QParams with
        more than one layer to draw.
    """
    if isinstance(quantized, QuantizedMLP):
        if [w.shape for w in weights] != [layer_.w_q.shape for layer_ in quantized.layers]:
            raise ValueError(
                f"quantized: expected weights of shapes {[w.shape for w in weights]}, got "
                f"{[layer_.w_q.shape for layer_ in quantized.layers]}"
            )
        pairs = [(layer_.w_q, layer_.w_qparams) for layer_ in quantized.layers]
    elif isinstance(quantized, QParams):
        pairs = None
    else:
        raise TypeError(f"quantized: expected a QuantizedMLP or a QParams, got {describe(quantized)}")
    indices = _pick_layers(len(weights), layer)
    if pairs is None:
        if len(indices) != 1:
            raise ValueError("layer: a QParams describes one weight matrix; pass one matrix or a layer index")
        pairs = [None] * len(weights)
        w = weights[indices[0]]
        # Quantized here as TensorFlow Lite rounds (half away from zero).
        pairs[indices[0]] = (quantize(w, quantized, rounding="half_away"), quantized)
    return indices, pairs


def _on_one_grid(w: np.ndarray, w_q: np.ndarray, qp: QParams) -> tuple:
    """The weights before and after, in the units in which every channel shares one grid.

    Returns
    -------
    before, after : numpy.ndarray
        float64. Per channel: ``w / s_c + z_c`` (the unrounded integer each weight is
        rounded to) and ``w_q``; per tensor: ``w`` and ``dequantize(w_q)``, real units.
    step : float
        The grid step in those units (1 per channel, ``s`` per tensor).
    levels : numpy.ndarray
        The grid levels in those units.
    xlabel : str
    """
    q_range = np.arange(qp.qmin, qp.qmax + 1, dtype=np.float64)
    if qp.per_channel:
        scale, zero_point = qp.params_for(w.shape)
        before = w / scale.astype(np.float64) + zero_point
        offset = " + z_c" if np.any(qp.zero_point != 0) else ""
        return (before, w_q.astype(np.float64), 1.0, q_range,
                f"weight / its channel's scale s_c{offset} (grid steps)")
    step = float(qp.scale)
    return (w, dequantize(w_q, qp).astype(np.float64), step, step * (q_range - int(qp.zero_point)),
            f"weight value (real units; grid step s = {step:.3g})")


def _draw_weight_histogram(a, i: int, w: np.ndarray, w_q: np.ndarray, qp: QParams, bins: int) -> None:
    """Layer ``i``'s histograms before and after, its grid, labels and head room, on ``a``."""
    before, after, step, levels, xlabel = _on_one_grid(w, w_q, qp)
    # Bin edges lie halfway between levels (origin), so no bin splits a level.
    origin = levels[0] - step / 2
    lo, hi = min(origin, before.min()), max(levels[-1] + step / 2, before.max())
    few = len(levels) <= _MAX_GRID_LINES
    if few:  # quantized: one bar per level; float: a whole number of bins per step
        after_edges = _aligned_edges(lo, hi, origin, step)
        float_edges = _aligned_edges(lo, hi, origin, step / max(1, int(bins) // len(levels)))
    else:  # both on the same bins of m whole steps
        m = math.ceil(len(levels) / int(bins))
        after_edges = float_edges = _aligned_edges(lo, hi, origin, step * m)
    h_before = _density_per_step(before, float_edges, step)
    h_after = _density_per_step(after, after_edges, step)
    a.stairs(h_before, float_edges, fill=True, color=STYLE["before"], alpha=0.45, label="float weights (before)")
    a.stairs(h_after, after_edges, color=STYLE["after"], lw=1.3 * STYLE["linewidth"], label="quantized (after)")
    _draw_grid_levels(a, levels, f"grid: {len(levels)} levels ({qp.bits}-bit)")
    labelled = few and len(levels) <= _MAX_LABELLED_BARS
    if labelled:
        _label_fractions(a, after_edges, h_after)
    if not few:
        _zoom_inset(a, before, after, levels, step)
    margin = 0.02 * (float_edges[-1] - float_edges[0])  # so the outermost bars show their edges
    xlim = (float_edges[0] - margin, float_edges[-1] + margin)
    a.set_xlim(*xlim)
    # Head room above the bars for the legend, the percent labels and the inset.
    x0, x1, y0 = _LEGEND_BOX
    keep_out = [(x0, x1, y0 - _LABEL_HEIGHT if labelled else y0)] + ([] if few else [_INSET_BOX])
    a.set_ylim(0.0, _y_top(xlim, [(h_before, float_edges), (h_after, after_edges)],
                           _HEAD_ROOM if few else _HEAD_ROOM_INSET, keep_out))
    kind = "per-channel" if qp.per_channel else "per-tensor"
    finish(a, f"Layer {i + 1} weights: int{qp.bits} {kind}", xlabel, "density (per grid step)",
           loc="upper left", fontsize="small")


def plot_weight_histograms(float_weights, quantized, ax=None, layer: int | None = None, bins: int = 80):
    """A layer's float weights before quantization and after (dequantized), with the grid.

    Draws, for each layer shown, two histograms on one density axis and the grid:

    * the float weights ``W`` filled (label "float weights (before)");
    * the quantized weights outlined over it (label "quantized (after)"), on bars whose
      edges lie halfway between grid levels, so every bar collects exactly the weights
      rounded to the level(s) it covers;
    * the grid levels ``s * (q - z)`` for every integer ``q`` in ``[qmin, qmax]`` (label
      "grid: L levels (b-bit)"): dotted vertical lines when there are at most 33 levels (5
      bits or fewer), a light rug of short ticks along the bottom otherwise.

    The y axis is a **density per grid step**, ``count / (n * bin width) * step``: both
    histograms have area 1 measured in grid steps, so they compare bar for bar. With at
    most 33 levels the quantized bars are one grid step wide, centred on the levels, so a
    bar's height is the fraction of the weights rounded to that level (printed above it in
    percent for at most 15 levels), and the float weights use ``max(1, bins // L)`` bins
    per grid step (``L`` levels), i.e. about ``bins`` bins in all, and never fewer than
    one per level. With more levels both histograms share bins of ``m`` whole grid steps
    (``m = ceil(L / bins)``), so they differ only where rounding moved a weight across a
    bin edge, and an inset zooms on the 7 levels around the median weight, where the
    float weights and the one-step bars of single levels can be told apart.

    Per-channel weights have a different grid for every output channel. To show one grid
    they are drawn **in units of their own channel's scale**, ``W[:, c] / s[c] + z[c]``
    (before) and ``w_q[:, c]`` (after): every channel's grid is then the integers
    ``qmin .. qmax``, and the x axis says so (with symmetric weights ``z[c] = 0``).
    Per-tensor weights are drawn in real units on the grid ``s * (q - z)``.

    Parameters
    ----------
    float_weights : MLP or numpy.ndarray
        A float model, or one (in, out) weight matrix.
    quantized : QuantizedMLP or QParams
        An integer model of the same layer sizes (its ``w_q`` and weight ``QParams``), or
        a weight ``QParams`` with which the float weights are quantized here (TensorFlow
        Lite's half-away rounding); a ``QParams`` needs one matrix or a ``layer``.
    ax : None, Axes or sequence of Axes, optional
        None (new figure), one Axes (one layer), or one Axes per layer.
    layer : int, optional
        Index of the layer to draw; None draws every layer of a model.
    bins : int, default 80
        About how many bins the float histogram has across the grid (>= 1).

    Returns
    -------
    matplotlib.axes.Axes or numpy.ndarray
        The Axes for a single layer; for a whole model with more than one layer, a 1-D
        array of Axes, one per layer (a new row of subplots when ``ax`` is None). Each
        Axes has head room above the data (the y limit is at least 1.35 times the highest
        bar, 1.75 with an inset, and more if a tall bar lies under them) for the legend,
        in its upper left corner, and the inset, upper right.

    Raises
    ------
    TypeError
        For models or Axes of the wrong type.
    ValueError
        For mismatched shapes, a bad ``layer`` or ``bins``, non-finite or empty weights.
    """
    weights = _layer_weights(float_weights, "float_weights")
    if not isinstance(bins, (int, np.integer)) or isinstance(bins, bool) or bins < 1:
        raise ValueError(f"bins: expected an int >= 1, got {bins!r}")
    indices, pairs = _weight_pairs(weights, quantized, layer)
    axs = panel_axes(ax, len(indices))
    for a, i in zip(axs, indices):
        w_q, qp = pairs[i]
        _draw_weight_histogram(a, i, weights[i], w_q, qp, bins)
    return return_panels(axs, len(indices) == 1)


def _sqnr_db(signal: np.ndarray, error: np.ndarray) -> float:
    """``10 log10(sum signal**2 / sum error**2)`` in dB.

    NaN when there is no error (infinitely good) or no signal, which a bar chart cannot
    show as a height.
    """
    p_signal, p_error = float(np.sum(signal * signal)), float(np.sum(error * error))
    if p_error == 0 or p_signal == 0:
        return float("nan")
    return 10.0 * np.log10(p_signal / p_error)


def _layer_output_pairs(float_model: MLP, quantized: QuantizedMLP, x) -> list[tuple]:
    """Each Linear layer's output in the float model and, dequantized, in the integer one.

    The float output is taken after the layer's activation (the tensor just before the
    next Linear layer, or the logits), the integer one from
    :meth:`~nnref.quant.convert.QuantizedMLP.forward_int` with ``trace=True``.
    """
    x_q = quantized.quantize_input(x)  # checks x: finite, (B, in_features)
    _, records = quantized.forward_int(x_q, trace=True)
    h, outputs, layers = np.asarray(x).astype(float_model.dtype), [], float_model.layers
    for k, layer_ in enumerate(layers):
        h = layer_.forward(h)
        if k + 1 == len(layers) or isinstance(layers[k + 1], Linear):
            outputs.append(h.astype(np.float64))
    return [(out, dequantize(rec["y"], layer.out_qparams).astype(np.float64))
            for out, rec, layer in zip(outputs, records, quantized.layers)]


def plot_quantization_error(float_model, quantized, x=None, ax=None, metric: str = "sqnr"):
    """Quantization error per layer, as grouped bars.

    For each Linear layer ``l``, with ``e = float - dequantized``:

    * weights: ``W_l`` against ``dequantize(w_q, s_w)``;
    * layer outputs (when ``x`` is given): the float model's output of layer ``l`` (after
      its activation; logits for the last) against the integer model's int8 output of
      that layer (:meth:`~nnref.quant.convert.QuantizedMLP.forward_int` with
      ``trace=True``), dequantized with the layer's output grid. Errors of earlier layers
      propagate, so this shows how error accumulates with depth.

    Every bar is labelled with its value.

    Parameters
    ----------
    float_model : MLP
        The float model.
    quantized : QuantizedMLP
        Its integer version (same layer sizes).
    x : array_like, optional
        Inputs (B, in_features) for the layer-output bars.
    ax : matplotlib.axes.Axes, optional
        Where to draw; None makes a new figure.
    metric : {"sqnr", "mse"}
        ``"sqnr"``: signal-to-quantization-noise ratio ``10 log10(sum v**2 / sum e**2)``
        in dB (higher is better; each bit adds about 6 dB). ``"mse"``: ``mean(e**2)``, in
        the squared units of the real values.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    TypeError
        For models or ``ax`` of the wrong type.
    ValueError
        For mismatched layer sizes, an unknown ``metric``, or a bad ``x``.
    """
    if not isinstance(float_model, MLP):
        raise TypeError(f"float_model: expected an MLP, got {describe(float_model)}")
    if not isinstance(quantized, QuantizedMLP):
        raise TypeError(f"quantized: expected a QuantizedMLP, got {describe(quantized)}")
    if list(float_model.layer_sizes) != quantized.layer_sizes:
        raise ValueError(f"quantized: expected layer sizes {float_model.layer_sizes}, got {quantized.layer_sizes}")
    if metric not in ("sqnr", "mse"):
        raise ValueError(f"metric: expected 'sqnr' or 'mse', got {metric!r}")
    check_ax(ax)

    def measure(v: np.ndarray, v_q: np.ndarray) -> float:
        """The chosen metric of the error ``v - v_q``."""
        e = v - v_q
        return _sqnr_db(v, e) if metric == "sqnr" else float(np.mean(e * e))

    groups = {"weights": [measure(lin.W.astype(np.float64), dequantize(layer.w_q, layer.w_qparams).astype(np.float64))
                          for lin, layer in zip(float_model.linears, quantized.layers)]}
    if x is not None:
        groups["layer outputs on x"] = [measure(v, v_q) for v, v_q in _layer_output_pairs(float_model, quantized, x)]
    ax = new_ax(ax)
    n = len(quantized.layers)
    pos = np.arange(1, n + 1, dtype=np.float64)
    width = 0.8 / len(groups)
    colors = [STYLE["before"], STYLE["after"]]
    for g, (label, values) in enumerate(groups.items()):
        offset = (g - (len(groups) - 1) / 2) * width
        bars = ax.bar(pos + offset, values, width=width, color=colors[g], label=label)
        ax.bar_label(bars, labels=[f"{v:.1f}" if metric == "sqnr" else f"{v:.2g}" for v in values], fontsize=8)
    ax.set_xticks(pos, [f"layer {i}" for i in range(1, n + 1)])
    what = "SQNR (dB, higher is better)" if metric == "sqnr" else "MSE (squared real units)"
    bits = quantized.weight_bits
    finish(ax, f"Quantization error per layer (int{bits} weights, int8 activations)", "Linear layer", what)
    return ax


def plot_channel_ranges(model_or_weights, ax=None, layer: int | None = None):
    """Each output channel's weight range against the single range of a per-tensor scale.

    For a weight matrix ``W`` (in, out), draws against the channel index ``c``:

    * a vertical bar from ``min_k W[k, c]`` to ``max_k W[k, c]`` (label "channel min..max");
    * markers at ``±max_k |W[k, c]|``, the symmetric range a per-channel scale covers,
      ``s_c = max|W[:, c]| / 127`` at 8 bits (label "per-channel range");
    * dashed horizontal lines at ``±max |W|``, the range a per-tensor scale must cover
      (label "per-tensor range").

    The title gives ``max|W| / median_c max|W[:, c]|``: how many times coarser the
    per-tensor grid is than the typical channel's own grid.

    Parameters
    ----------
    model_or_weights : MLP, QuantizedMLP or numpy.ndarray
        A model (a QuantizedMLP's weights dequantized) or one (in, out) array.
    ax : None, Axes or sequence of Axes, optional
        None, one Axes (one layer) or one Axes per layer.
    layer : int, optional
        Index of the layer to draw; None draws every layer.

    Returns
    -------
    matplotlib.axes.Axes or numpy.ndarray
        The Axes for one layer; a 1-D array of Axes for several.

    Raises
    ------
    TypeError
        For a model or ``ax`` of the wrong type.
    ValueError
        For a bad array or ``layer``.
    """
    weights = _layer_weights(model_or_weights, "model_or_weights")
    indices = _pick_layers(len(weights), layer)
    axs = panel_axes(ax, len(indices))
    for a, i in zip(axs, indices):
        w = weights[i]
        channels = np.arange(w.shape[1])
        a.vlines(channels, w.min(axis=0), w.max(axis=0), color=STYLE["before"], lw=STYLE["linewidth"] * 2,
                 label="channel min..max")
        amax_c = np.abs(w).max(axis=0)
        a.plot(np.concatenate([channels, channels]), np.concatenate([amax_c, -amax_c]), ls="none",
               marker="_", ms=STYLE["markersize"] * 2, mew=STYLE["linewidth"], color=STYLE["after"],
               label="per-channel range ±max|w_c|")
        amax = float(np.abs(w).max())
        a.axhline(amax, color=STYLE["per_tensor"], ls="--", lw=STYLE["linewidth"],
                  label=f"per-tensor range ±{amax:.3g}")
        a.axhline(-amax, color=STYLE["per_tensor"], ls="--", lw=STYLE["linewidth"], label="_nolegend_")
        median = float(np.median(amax_c))
        ratio = f"{amax / median:.1f}x" if median > 0 else "inf"
        finish(a, f"Layer {i + 1}: weight range per output channel\n"
                  f"per-tensor grid {ratio} coarser than the median channel's",
               "output channel", "weight value (real units)")
    return return_panels(axs, len(indices) == 1)
