"""Per-layer measurements and plots for comparing post-training methods (tutorial 08).

- :func:`layer_output_sqnr`: per layer, the signal-to-quantization-noise ratio of an
  integer-only model's output (dequantized from its int8 trace) against the float model's;
- :func:`plot_layer_sqnr`: those ratios for several methods side by side;
- :func:`plot_equalized_ranges`: per-channel weight ranges of a layer pair before and after
  cross-layer equalization;
- :func:`plot_channel_bias`: the mean output error per output channel (what bias
  correction removes).

Each plot takes an optional ``ax``, returns the axes it drew on and never calls
``plt.show()``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from nnref._checks import as_float_array, check_int_in_range, describe
from nnref.mlp import MLP
from nnref.plots.common import check_ax
from nnref.quant import QuantizedMLP, dequantize
from nnref.quant.equalize import channel_ranges
from nnref.quant.layerwise import layer_inputs

__all__ = ["sqnr_db", "layer_output_sqnr", "plot_layer_sqnr", "plot_equalized_ranges", "plot_channel_bias"]

_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def sqnr_db(reference, approximation) -> float:
    """``10 log10(sum ref^2 / sum (ref - approx)^2)`` in dB (inf for an exact match)."""
    ref = np.asarray(reference, np.float64)
    noise = float(np.sum((ref - np.asarray(approximation, np.float64)) ** 2))
    return float("inf") if noise == 0 else 10.0 * float(np.log10(np.sum(ref * ref) / noise))


def layer_output_sqnr(model: MLP, qmodel: QuantizedMLP, x) -> list[float]:
    """Per layer ``l``, :func:`sqnr_db` of the integer model's output ``h_l`` (after the
    activation; dequantized from :meth:`QuantizedMLP.forward_int`'s trace) against the float
    model's ``h_l`` on ``x``. The error at layer ``l`` includes what earlier layers carried
    in: it is the end-to-end error at that point."""
    if not isinstance(model, MLP) or not isinstance(qmodel, QuantizedMLP):
        raise TypeError(f"model, qmodel: expected an MLP and a QuantizedMLP, got {describe(model)}, "
                        f"{describe(qmodel)}")
    x = model.check_input(x, "x")
    inputs, pre = layer_inputs(model, x)
    outputs = inputs[1:] + [pre[-1]]
    _, records = qmodel.forward_int(qmodel.quantize_input(x), trace=True)
    return [sqnr_db(ref, dequantize(rec["y"], layer.out_qparams))
            for ref, rec, layer in zip(outputs, records, qmodel.layers)]


def _axes(ax, figsize=(6.4, 4.0)):
    """``ax`` (checked), or the Axes of a new figure."""
    check_ax(ax)
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def _check_series(values: dict, name: str, allow_inf: bool = False) -> None:
    """Refuse anything but a non-empty dict of non-empty 1-D real sequences (NaN never;
    +inf only where ``allow_inf``: an exact match's SQNR)."""
    if not isinstance(values, dict) or not values:
        raise TypeError(f"{name}: expected a non-empty dict name -> 1-D sequence of numbers, got {describe(values)}")
    for key, v in values.items():
        a = as_float_array(v, f"{name}[{key!r}]", ndim=1, finite=False)
        if np.isnan(a).any() or (not allow_inf and np.isinf(a).any()) or (np.isneginf(a).any()):
            raise ValueError(f"{name}[{key!r}]: expected {'numbers or +inf' if allow_inf else 'finite numbers'}, "
                             f"got {a.tolist()[:8]}")


def _check_title(title) -> str:
    """``title`` if it is a str."""
    if not isinstance(title, str):
        raise TypeError(f"title: expected a str, got {describe(title)}")
    return title


def plot_layer_sqnr(sqnr: dict, ax=None, title: str = "Per-layer output error"):
    """Grouped bars: for each method (the dict's keys, in order) its per-layer SQNR in dB
    (the values, e.g. from :func:`layer_output_sqnr`). Higher is better.

    Raises
    ------
    TypeError, ValueError
        ``sqnr`` not a non-empty dict of 1-D sequences of numbers (NaN refused); ``ax``
        not an Axes; ``title`` not a str.
    """
    _check_series(sqnr, "sqnr", allow_inf=True)
    _check_title(title)
    ax = _axes(ax)
    names = list(sqnr)
    n_layers = max(len(v) for v in sqnr.values())
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        pos = np.arange(len(sqnr[name])) + (i - (len(names) - 1) / 2) * width
        ax.bar(pos, sqnr[name], width, label=name, color=_COLORS[i % len(_COLORS)])
    labels = [f"layer {l + 1}" for l in range(n_layers - 1)] + [f"layer {n_layers} (logits)"]
    ax.set_xticks(range(n_layers), labels)
    ax.set(ylabel="SQNR of the layer output (dB)", title=title)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    return ax


def plot_equalized_ranges(before: MLP, after: MLP, pair: int = 0, ax=None):
    """Per-channel ranges ``r1`` (output columns of layer ``pair``) and ``r2`` (input rows
    of layer ``pair + 1``) before and after equalization, channels sorted by ``r1``
    before. After equalization the two coincide.

    Raises
    ------
    TypeError, ValueError
        ``before``/``after`` not MLPs of the same layer sizes; ``pair`` not a layer pair
        index; ``ax`` not an Axes.
    """
    if not isinstance(before, MLP):
        raise TypeError(f"before: expected an nnref MLP, got {describe(before)}")
    if not isinstance(after, MLP) or after.layer_sizes != before.layer_sizes:
        raise TypeError(f"after: expected an MLP of before's layer sizes {before.layer_sizes}, got {describe(after)}")
    check_int_in_range(pair, "pair", 0, len(before.linears) - 2)
    ax = _axes(ax)
    r1, r2 = channel_ranges(before.linears[pair].W, before.linears[pair + 1].W)
    e1, e2 = channel_ranges(after.linears[pair].W, after.linears[pair + 1].W)
    order = np.argsort(r1)[::-1]
    ch = np.arange(len(order))
    ax.plot(ch, r1[order], "o", ms=4, color=_COLORS[0], label=f"layer {pair + 1} output column, before")
    ax.plot(ch, r2[order], "s", ms=4, color=_COLORS[1], label=f"layer {pair + 2} input row, before")
    ax.plot(ch, e1[order], "-", lw=2, color=_COLORS[2], label=f"layer {pair + 1}, after")
    ax.plot(ch, e2[order], "--", lw=1.5, color=_COLORS[3], label=f"layer {pair + 2}, after")
    ax.set(yscale="log", xlabel="channel (sorted by its range before)", ylabel="max |w| in the channel",
           title="Cross-layer equalization: per-channel weight ranges")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return ax


def plot_channel_bias(errors: dict, ax=None, title: str = "Mean output error per channel"):
    """For each entry (name -> per-channel mean output error, shape ``(n,)``), the errors as
    markers per output channel, with zero marked.

    Raises
    ------
    TypeError, ValueError
        ``errors`` not a non-empty dict of finite 1-D sequences; ``ax`` not an Axes;
        ``title`` not a str.
    """
    _check_series(errors, "errors")
    _check_title(title)
    ax = _axes(ax)
    for i, (name, err) in enumerate(errors.items()):
        ax.plot(np.arange(len(err)), err, "o", ms=4, color=_COLORS[i % len(_COLORS)], label=name)
    ax.axhline(0.0, color="#555555", lw=1)
    ax.set(xlabel="output channel", ylabel="mean(z_hat - z) over calibration data", title=title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return ax
