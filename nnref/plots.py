"""Figures for training runs: gradient norms, loss and accuracy curves, run comparisons.

Every helper draws one idea on matplotlib Axes and hands them back, so a notebook can add
to a figure or put several helpers side by side:

* each takes an optional ``ax`` (one Axes, or one per panel); when it is ``None`` a new
  figure is made;
* it returns the Axes it drew on (``plot_training_curves`` returns an array of them);
* it labels both axes with what and in which unit ("step", "L2 norm"), titles the Axes
  and adds a legend;
* it never calls ``plt.show()`` and never closes a figure: the caller decides (tests and
  scripts run under the ``Agg`` backend and call :func:`save_figure`).

Non-finite values (a diverged run records ``inf`` or ``nan``) are left out of the lines,
which matplotlib would otherwise refuse on a log scale, and the step at which the run
diverged is marked with a vertical line, so a blow-up reads as a blow-up, not a crash.

Colours and sizes come from one module-level :data:`STYLE` dict, so every figure of the
project looks the same.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ._checks import check_positive, describe
from .train import History

if TYPE_CHECKING:  # imported for type hints only: matplotlib is loaded when a plot is made
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "STYLE",
    "figures_dir",
    "plot_grad_norms",
    "plot_training_curves",
    "plot_loss_per_step",
    "save_figure",
]

# --- shared style and helpers ---------------------------------------------------------

#: One palette and a few sizes for every figure of the project. ``cycle`` colours runs or
#: parameters that have no fixed role (colour-blind-safe "tab10" order).
STYLE: dict = {
    "before": "#1f77b4",  # a gradient before any transform
    "after": "#ff7f0e",  # the same gradient after clipping
    "clipped": "#d62728",  # steps at which clipping acted
    "threshold": "#555555",  # a clipping threshold
    "diverged": "#d62728",  # where a run stopped on a non-finite value
    "train": "#1f77b4",
    "val": "#ff7f0e",
    "cycle": ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
              "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"],
    "linewidth": 1.5,
    "thin_linewidth": 0.9,
    "markersize": 4.0,
    "grid_alpha": 0.3,
    "figsize": (6.4, 4.0),
    "panel_figsize": (11.0, 4.0),
}


def _pyplot():
    # Imported on first use: ``import nnref.plots`` must not pick a GUI backend.
    import matplotlib.pyplot as plt

    return plt


def _check_ax(ax, name: str = "ax"):
    if ax is not None and not _is_axes(ax):
        raise TypeError(f"{name}: expected a matplotlib Axes or None, got {describe(ax)}")
    return ax


def _is_axes(obj) -> bool:
    from matplotlib.axes import Axes

    return isinstance(obj, Axes)


def _new_ax(ax):
    if ax is None:
        _, ax = _pyplot().subplots(figsize=STYLE["figsize"], layout="constrained")
    return ax


def _check_history(history, name: str = "history") -> History:
    if not isinstance(history, History):
        raise TypeError(f"{name}: expected an nnref.train.History (from fit), got {describe(history)}")
    per_step = {"grad_norm": history.grad_norm, "grad_norm_after": history.grad_norm_after,
                "clipped": history.clipped}
    per_step.update({f"param_grad_norm[{k!r}]": v for k, v in history.param_grad_norm.items()})
    for what, values in per_step.items():
        if len(values) != history.n_steps:
            raise ValueError(
                f"{name}: expected {what} to hold one entry per step ({history.n_steps}, the "
                f"length of loss), got {len(values)}"
            )
    return history


def _finite_or_nan(values) -> np.ndarray:
    # inf and nan become nan: matplotlib leaves a gap there instead of failing to scale.
    v = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(v), v, np.nan)


def _divergence_step(history: History) -> int | None:
    """The 1-based step at which a run met a non-finite loss or gradient norm, or None.

    ``fit`` stops at that step, so it is the last recorded one; a non-finite *epoch* loss
    (``diverged`` with every step finite) is marked at the last step too.
    """
    loss = np.asarray(history.loss, dtype=np.float64)
    norm = np.asarray(history.grad_norm, dtype=np.float64)
    bad = ~(np.isfinite(loss) & np.isfinite(norm))
    if bad.any():
        return int(np.argmax(bad)) + 1
    if history.diverged and history.n_steps:
        return history.n_steps
    return None


def _use_log_scale(ax, values: np.ndarray) -> None:
    # A log y axis needs at least one positive finite value; otherwise stay linear rather
    # than have matplotlib warn and draw an empty axis.
    if np.any(np.isfinite(values) & (values > 0)):
        ax.set_yscale("log")


def _finish(ax, title: str, xlabel: str, ylabel: str, **legend_kw) -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=STYLE["grid_alpha"])
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**legend_kw)


# --- training and gradients -----------------------------------------------------------


def plot_grad_norms(history: History, ax: Axes | None = None, per_param: bool = False,
                    threshold: float | None = None, log_scale: bool = True) -> Axes:
    """The global gradient norm ``||g||_2 = sqrt(sum_p ||g_p||_2^2)`` at every step.

    Draws, against the step number ``1 .. history.n_steps``:

    * ``history.grad_norm``: the norm before any ``grad_transform`` (label "before
      clipping", or "global norm" for a run without a transform);
    * ``history.grad_norm_after``: the norm the optimizer actually used (only for a run
      with a transform; label "after clipping");
    * a marker on the "before" curve at each step where the transform changed the
      gradients (``history.clipped``; label "clipped (k steps)"), when there are any;
    * with ``threshold``: a horizontal line at that norm (e.g. ``max_norm`` of a
      :class:`nnref.clip.GlobalNorm`; drawn only when given, label "threshold = c");
    * with ``per_param``: one thin line per parameter, ``history.param_grad_norm[name]``
      (norms before the transform), labelled ``||g_W1||`` etc.;
    * for a diverged run: a vertical line at the first step whose loss or norm is not
      finite (label "diverged (step k)"). Non-finite values themselves are not drawn.

    ``log_scale`` (default) puts the norm on a log axis, where norms many orders of
    magnitude apart (an explosion; a clipped run next to its threshold) share one plot
    and steady geometric growth is a straight line. Returns the Axes (a new figure's when
    ``ax`` is None). Raises ``TypeError`` for a non-History or a non-Axes ``ax``,
    ``ValueError`` for a history with no steps or a ``threshold`` that is not > 0.
    """
    history = _check_history(history)
    _check_ax(ax)
    if history.n_steps == 0:
        raise ValueError("history: expected a run with at least one recorded step, got 0 steps")
    if threshold is not None:
        threshold = check_positive(threshold, "threshold")
    ax = _new_ax(ax)
    steps = np.arange(1, history.n_steps + 1)
    before = _finite_or_nan(history.grad_norm)
    has_transform = history.transform is not None
    lw = STYLE["linewidth"]

    ax.plot(steps, before, color=STYLE["before"], lw=lw,
            label="before clipping" if has_transform else "global norm")
    if has_transform:
        after = _finite_or_nan(history.grad_norm_after)
        ax.plot(steps, after, color=STYLE["after"], lw=lw, label="after clipping")
    if per_param:
        # Colours not already taken by a role on this plot.
        taken = {STYLE["before"], STYLE["after"], STYLE["clipped"], STYLE["diverged"]}
        free = [c for c in STYLE["cycle"] if c not in taken]
        for i, (name, norms) in enumerate(history.param_grad_norm.items()):
            ax.plot(steps, _finite_or_nan(norms), lw=STYLE["thin_linewidth"], ls="--",
                    color=free[i % len(free)], label=f"||g_{name}||")
    clipped = np.asarray(history.clipped, dtype=bool)
    if clipped.any():
        ax.plot(steps[clipped], before[clipped], ls="none", marker="o", ms=STYLE["markersize"],
                mfc="none", color=STYLE["clipped"], label=f"clipped ({int(clipped.sum())} steps)")
    if threshold is not None:
        ax.axhline(threshold, color=STYLE["threshold"], ls=":", lw=lw, zorder=3,
                   label=f"threshold = {threshold:g}")
    stop = _divergence_step(history)
    if stop is not None:
        ax.axvline(stop, color=STYLE["diverged"], ls="-.", lw=lw, label=f"diverged (step {stop})")

    if log_scale:
        shown = [before]
        if per_param:
            shown += [_finite_or_nan(v) for v in history.param_grad_norm.values()]
        _use_log_scale(ax, np.concatenate(shown))
    title = "Gradient norm per step"
    if has_transform:
        title += f"\n{history.transform}"
    _finish(ax, title, "step", "L2 norm of the gradient")
    return ax


def _divergence_epoch(history: History) -> int | None:
    # fit appends a non-finite epoch loss before stopping; a run stopped mid-epoch has no
    # entry for the epoch it died in, which is then len(train_loss) + 1.
    if not history.diverged:
        return None
    tl = history.train_loss
    if tl and not np.isfinite(tl[-1]):
        return len(tl)
    return len(tl) + 1


def _epoch_lines(ax, train, val, what: str, scale: float = 1.0, **kw) -> None:
    # One line for the training set and, if it was measured, one for validation.
    ax.plot(np.arange(1, len(train) + 1), scale * _finite_or_nan(train), color=STYLE["train"],
            label=f"train{what}", **kw)
    if val:
        ax.plot(np.arange(1, len(val) + 1), scale * _finite_or_nan(val), color=STYLE["val"],
                label=f"validation{what}", **kw)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers


#: The y label of a loss, by ``fit``'s ``loss`` argument (None: unknown, no unit to give).
#: Cross-entropy uses the natural log, so it is in nats; MSE is in the targets' units squared.
_LOSS_LABELS = {"cross_entropy": "cross-entropy loss (nats)", "mse": "MSE loss (squared target units)",
                None: "loss"}


def _loss_kind(history: History, loss: str | None, name: str = "history") -> str | None:
    """The ``loss`` a run was trained with: ``loss`` when given, else read off the history.

    History records no loss type, but ``fit`` records accuracy as NaN exactly for
    ``loss="mse"``: any finite accuracy means cross-entropy, a non-empty all-NaN accuracy
    record means MSE, and a run without a finished epoch (no accuracy at all) is unknown
    (None). A given ``loss`` must agree with the record.
    """
    if loss is not None and loss not in ("cross_entropy", "mse"):
        raise ValueError(f"loss: expected None, 'cross_entropy' or 'mse' (fit's loss), got {loss!r}")
    acc = np.asarray(list(history.train_acc) + list(history.val_acc), dtype=np.float64)
    recorded = None if acc.size == 0 else ("cross_entropy" if np.any(np.isfinite(acc)) else "mse")
    if loss is not None and recorded is not None and loss != recorded:
        raise ValueError(
            f"loss: expected the loss {name} was trained with, got {loss!r}, but its accuracy record "
            f"says {recorded!r} (fit records accuracy as NaN exactly for loss='mse')"
        )
    return loss if loss is not None else recorded


def plot_training_curves(history: History, ax: Axes | Sequence[Axes] | None = None,
                         log_loss: bool = False, *, axes: Axes | Sequence[Axes] | None = None,
                         loss: str | None = None) -> np.ndarray:
    """Loss and accuracy per epoch, for the training set and (if recorded) validation.

    Quantities: ``history.train_loss`` / ``history.val_loss`` (mean loss over a full pass
    after each epoch) and ``history.train_acc`` / ``history.val_acc`` in percent. A
    regression run (accuracy NaN, ``loss="mse"``) has no accuracy to draw.

    ``ax`` chooses the layout:

    * ``None``: a new figure with one panel per quantity, side by side: loss, then
      accuracy (classification) or the loss alone (regression);
    * one Axes: everything on it, the loss on the left y axis and the accuracy (dashed)
      on a twin right y axis made with ``ax.twinx()``, one legend for both;
    * a sequence of Axes: one per panel (2 for classification, 1 for regression).

    ``axes`` is the former name of ``ax``, still accepted (keyword only; passing both is a
    TypeError).

    The loss axis carries the loss's unit: "cross-entropy loss (nats)" (natural log) or
    "MSE loss (squared target units)". ``loss`` is ``fit``'s ``loss`` argument
    (``"cross_entropy"`` or ``"mse"``); None reads it off the history, whose accuracy is
    NaN exactly for MSE runs (a run that stopped before its first epoch ended is then
    labelled plain "loss"). Returns a 1-D ``np.ndarray`` of the Axes drawn on, loss first
    (with one Axes given and a classification run: ``[ax, twin]``). A run that diverged is
    marked by a vertical line at the epoch it stopped in. ``log_loss`` puts the loss on a
    log axis.
    """
    history = _check_history(history)
    name = "ax"
    if axes is not None:
        if ax is not None:
            raise TypeError("ax, axes: expected the Axes as ax only (axes is its former name), got both")
        ax, name = axes, "axes"
    loss_label = _LOSS_LABELS[_loss_kind(history, loss)]
    acc = np.asarray(history.train_acc, dtype=np.float64)
    classification = bool(np.any(np.isfinite(acc)))
    n_panels = 2 if classification else 1
    twin = _is_axes(ax) and classification
    if ax is None:
        size = STYLE["panel_figsize"] if n_panels == 2 else STYLE["figsize"]
        _, grid = _pyplot().subplots(1, n_panels, figsize=size, squeeze=False, layout="constrained")
        axs = list(grid[0])
    elif _is_axes(ax):
        axs = [ax, ax.twinx()] if twin else [ax]
    elif (isinstance(ax, (list, tuple, np.ndarray)) and len(ax) == n_panels
          and all(_is_axes(a) for a in ax)):
        axs = list(ax)
    else:
        raise TypeError(
            f"{name}: expected None, one matplotlib Axes or a sequence of {n_panels} Axes "
            f"(loss{', accuracy' if classification else ''}), got {describe(ax)}"
        )

    style = {"lw": STYLE["linewidth"], "marker": "o", "ms": STYLE["markersize"]}
    loss_ax = axs[0]
    _epoch_lines(loss_ax, history.train_loss, history.val_loss, " loss" if twin else "", **style)
    stop = _divergence_epoch(history)
    if stop is not None:
        loss_ax.axvline(stop, color=STYLE["diverged"], ls="-.", lw=STYLE["linewidth"],
                        label=f"diverged (epoch {stop})")
    if log_loss:
        _use_log_scale(loss_ax, _finite_or_nan(history.train_loss + history.val_loss))
    if not classification:
        _finish(loss_ax, "Loss per epoch", "epoch", loss_label)
        return np.array(axs, dtype=object)

    acc_ax = axs[1]
    _epoch_lines(acc_ax, history.train_acc, history.val_acc, " accuracy" if twin else "",
                 scale=100.0, ls="--" if twin else "-", **{**style, "marker": "s"})
    if twin:
        acc_ax.set_ylabel("accuracy (%)")
        # Draw the loss Axes (and so its legend) above the twin, with a see-through patch.
        loss_ax.set_zorder(acc_ax.get_zorder() + 1)
        loss_ax.patch.set_visible(False)
        _finish(loss_ax, "Loss and accuracy per epoch", "epoch", loss_label)
        handles, labels = loss_ax.get_legend_handles_labels()
        more_handles, more_labels = acc_ax.get_legend_handles_labels()
        # Falling loss and rising accuracy usually leave the middle right empty ("best"
        # would only look at the loss Axes' own lines).
        loss_ax.legend(handles + more_handles, labels + more_labels, loc="center right")
    else:
        _finish(loss_ax, "Loss per epoch", "epoch", loss_label)
        _finish(acc_ax, "Accuracy per epoch", "epoch", "accuracy (%)")
    return np.array(axs, dtype=object)


def plot_loss_per_step(histories: dict, ax: Axes | None = None, log_scale: bool = True,
                       loss: str | None = None) -> Axes:
    """Compare several runs' mini-batch losses ``history.loss`` step by step.

    ``histories`` maps a label to a :class:`~nnref.train.History`, e.g. ``{"SGD":
    h_plain, "SGD + clipping": h_clipped}``; one line per run, in the dict's order and
    the :data:`STYLE` colour cycle. A run that diverged is labelled "<label> (diverged at
    step k)" and gets a dotted vertical line of its own colour at step k (not in the
    legend). ``log_scale`` (default) suits losses that span orders of magnitude. The y
    label gives the loss and its unit as :func:`plot_training_curves` does (``loss``:
    fit's loss for every run, or None to read it off each history; a run with no finished
    epoch, whose loss cannot be read off, takes the others'); runs of different or unknown
    losses share the plain label "mini-batch loss". Returns the Axes.
    """
    if not isinstance(histories, dict) or not histories:
        raise TypeError(f"histories: expected a non-empty dict label -> History, got {describe(histories)}")
    kinds = {_loss_kind(_check_history(h, f"histories[{label!r}]"), loss, f"histories[{label!r}]")
             for label, h in histories.items()}
    _check_ax(ax)
    ax = _new_ax(ax)
    cycle = STYLE["cycle"]
    shown = []
    for i, (label, h) in enumerate(histories.items()):
        color = cycle[i % len(cycle)]
        values = _finite_or_nan(h.loss)
        shown.append(values)
        stop = _divergence_step(h)
        text = str(label) if stop is None else f"{label} (diverged at step {stop})"
        ax.plot(np.arange(1, h.n_steps + 1), values, color=color, lw=STYLE["linewidth"], label=text)
        if stop is not None:
            ax.axvline(stop, color=color, ls=":", lw=STYLE["linewidth"], label="_nolegend_")
    if log_scale and shown:
        _use_log_scale(ax, np.concatenate(shown))
    kinds.discard(None)  # a run with no finished epoch takes the others' loss
    kind = kinds.pop() if len(kinds) == 1 else None
    _finish(ax, "Training loss per step", "step", f"mini-batch {_LOSS_LABELS[kind]}")
    return ax


# --- saving ---------------------------------------------------------------------------


def save_figure(fig_or_ax: Figure | Axes | np.ndarray, path: str | os.PathLike, dpi: int = 120,
                close: bool = False) -> Path:
    """Write the figure that holds ``fig_or_ax`` to ``path``; return ``path`` as a Path.

    ``fig_or_ax`` may be a Figure, an Axes or an array/sequence of Axes (what
    :func:`plot_training_curves` returns). Missing parent folders are created; the format
    follows the file extension (``.png``, ``.pdf``, ``.svg``); ``bbox_inches="tight"``
    trims the margins. The figure stays open unless ``close`` is True.
    """
    from matplotlib.figure import Figure

    fig = fig_or_ax
    if isinstance(fig, (list, tuple, np.ndarray)) and len(fig) and _is_axes(np.ravel(fig)[0]):
        fig = np.ravel(fig)[0]
    if _is_axes(fig):
        fig = fig.get_figure()
    if not isinstance(fig, Figure):
        raise TypeError(f"fig_or_ax: expected a matplotlib Figure, Axes or array of Axes, got {describe(fig_or_ax)}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a str or os.PathLike file name, got {describe(path)}")
    dpi = int(check_positive(dpi, "dpi"))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    if close:
        _pyplot().close(fig)
    return path


def figures_dir(create: bool = True) -> Path:
    """The folder tutorials and the main command write their figures to.

    ``$NNREF_FIGURES_DIR`` when set (tests use it to write into a temporary folder);
    otherwise the ``figures/`` folder of the nnref checkout that holds the current working
    directory (found by walking up from it to a folder with both ``figures/`` and
    ``tutorials/``: this works from the repo root and from ``tutorials/`` in Jupyter);
    otherwise ``./figures``.
    """
    env = os.environ.get("NNREF_FIGURES_DIR")
    if env:
        path = Path(env)
    else:
        cwd = Path.cwd().resolve()
        path = cwd / "figures"
        for folder in (cwd, *cwd.parents):
            if (folder / "figures").is_dir() and (folder / "tutorials").is_dir():
                path = folder / "figures"
                break
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


# --- quantization ---------------------------------------------------------------------
# (Weight and activation histograms, quantization-error plots: added by the quantization
# work. Same conventions as above: optional ``ax``, return the Axes, STYLE colours.)
#
# Three figures about what int8 conversion does to a network:
#
# * plot_weight_histograms: a layer's float weights and the same weights after
#   quantization (dequantized), with the grid they were rounded onto;
# * plot_quantization_error: the error per layer, of the weights and (given inputs) of
#   each layer's output in the integer model, as SQNR or MSE;
# * plot_channel_ranges: each output channel's weight range against the one range a
#   per-tensor scale must cover (why per-channel scales help).

import math  # noqa: E402

from .layers import Linear  # noqa: E402
from .mlp import MLP  # noqa: E402
from .quant.convert import QuantizedMLP  # noqa: E402
from .quant.ops import dequantize, quantize  # noqa: E402
from .quant.qparams import QParams  # noqa: E402

__all__ += ["plot_weight_histograms", "plot_quantization_error", "plot_channel_ranges"]

STYLE.setdefault("grid_levels", "#555555")  # the points of a quantization grid
STYLE.setdefault("per_tensor", "#d62728")  # a range shared by a whole tensor
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
    """Float weight matrices (in, out): of an MLP, of a QuantizedMLP (dequantized), or one array."""
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
    if layer is None:
        return list(range(n))
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not -n <= layer < n:
        raise ValueError(f"layer: expected None or a layer index in [{-n}, {n - 1}], got {layer!r}")
    return [int(layer) % n]


def _panel_axes(ax, n: int, name: str = "ax") -> list:
    """One Axes per panel: a new row of subplots, the given Axes (n == 1), or n given Axes."""
    if ax is None:
        w, h = STYLE["figsize"]
        _, grid = _pyplot().subplots(1, n, figsize=(min(w * n, 16.0), h), squeeze=False, layout="constrained")
        return list(grid[0])
    if _is_axes(ax) and n == 1:
        return [ax]
    if isinstance(ax, (list, tuple, np.ndarray)) and len(ax) == n and all(_is_axes(a) for a in np.ravel(ax)):
        return list(np.ravel(ax))
    raise TypeError(f"{name}: expected None, {'an Axes' if n == 1 else f'a sequence of {n} Axes (one per layer)'}, "
                    f"got {describe(ax)}")


def _return_panels(axs: list, single: bool):
    return axs[0] if single else np.array(axs, dtype=object)


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
    color = STYLE["grid_levels"]
    if len(levels) <= _MAX_GRID_LINES:
        for i, v in enumerate(levels):
            ax.axvline(v, color=color, ls=":", lw=STYLE["thin_linewidth"], alpha=0.7,
                       label=label if i == 0 else "_nolegend_")
    else:  # a light rug of short ticks: 255 full-height (or dark) lines would be a solid strip
        ax.vlines(levels, 0.0, 0.03, transform=ax.get_xaxis_transform(), color=color,
                  lw=STYLE["thin_linewidth"] * 0.5, alpha=0.5, label=label)


def _label_fractions(ax, edges: np.ndarray, fractions: np.ndarray) -> None:
    # On bars one grid step wide the height is the fraction of the weights at that level:
    # say it in percent above each bar, so "79 % of the weights became 0" reads at a glance.
    for x, f in zip((edges[:-1] + edges[1:]) / 2, fractions):
        if f > 0:
            ax.annotate(f"{100 * f:.0f}%" if f >= 0.01 else "<1%", (x, f), xytext=(0, 3),
                        textcoords="offset points", ha="center", va="bottom", fontsize=9,
                        color=STYLE["after"], fontweight="bold",
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})


def _zoom_inset(ax, before: np.ndarray, after: np.ndarray, levels: np.ndarray, step: float):
    """An inset on the 2 * _ZOOM_STEPS + 1 levels around the weights' median, where the
    single levels of a fine grid can be told apart: the float weights on bins a quarter
    step wide, the quantized ones on bars one step wide, the levels dotted."""
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
    """The y limit that leaves ``head_room`` above the highest bar and keeps every bar
    below the boxes ``keep_out`` (``(x0, x1, y0)`` in axes fractions) it lies under."""
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
    one per level. With more levels both histograms share bins of ``m``
    whole grid steps (``m = ceil(L / bins)``), so they differ only where rounding moved a
    weight across a bin edge, and an inset zooms on the 7 levels around the median weight,
    where the float weights and the one-step bars of single levels can be told apart.

    Per-channel weights have a different grid for every output channel. To show one grid
    they are drawn **in units of their own channel's scale**, ``W[:, c] / s[c] + z[c]``
    (before) and ``w_q[:, c]`` (after): every channel's grid is then the integers
    ``qmin .. qmax``, and the x axis says so (with symmetric weights ``z[c] = 0``).
    Per-tensor weights are drawn in real units on the grid ``s * (q - z)``.

    Args:
        float_weights: an :class:`~nnref.mlp.MLP` or one (in, out) weight matrix.
        quantized: a :class:`~nnref.quant.convert.QuantizedMLP` of the same layer sizes
            (its ``w_q`` and weight ``QParams``), or a weight ``QParams``, with which the
            float weights are quantized here (TensorFlow Lite's half-away rounding); a
            ``QParams`` needs one matrix or a ``layer``.
        ax: None (new figure), one Axes (one layer), or a sequence with one Axes per layer.
        layer: index of the layer to draw; None draws every layer of a model.
        bins: about how many bins the float histogram has across the grid (>= 1).

    Returns:
        The Axes for a single layer; for a whole model with more than one layer, a 1-D
        ``np.ndarray`` of Axes, one per layer (a new row of subplots when ``ax`` is None).
        Each Axes has head room above the data (the y limit is at least 1.35 times the
        highest bar, 1.75 with an inset, and more if a tall bar lies under them) for the
        legend, in its upper left corner, and the inset, upper right.
    """
    weights = _layer_weights(float_weights, "float_weights")
    if not isinstance(bins, (int, np.integer)) or isinstance(bins, bool) or bins < 1:
        raise ValueError(f"bins: expected an int >= 1, got {bins!r}")
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
        pairs[indices[0]] = (quantize(w, quantized, rounding="half_away"), quantized)
    axs = _panel_axes(ax, len(indices))
    for a, i in zip(axs, indices):
        w, (w_q, qp) = weights[i], pairs[i]
        q_range = np.arange(qp.qmin, qp.qmax + 1, dtype=np.float64)
        if qp.per_channel:
            scale, zero_point = qp.params_for(w.shape)
            # x = w / s_c + z_c: the (unrounded) integer each weight is rounded to.
            before = w / scale.astype(np.float64) + zero_point
            after, step, levels = w_q.astype(np.float64), 1.0, q_range
            offset = " + z_c" if np.any(qp.zero_point != 0) else ""
            xlabel = f"weight / its channel's scale s_c{offset} (grid steps)"
        else:
            step = float(qp.scale)
            before, after = w, dequantize(w_q, qp).astype(np.float64)
            levels = step * (q_range - int(qp.zero_point))
            xlabel = f"weight value (real units; grid step s = {step:.3g})"
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
        a.stairs(h_before, float_edges, fill=True, color=STYLE["before"], alpha=0.45,
                 label="float weights (before)")
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
        _finish(a, f"Layer {i + 1} weights: int{qp.bits} {kind}", xlabel, "density (per grid step)",
                loc="upper left", fontsize="small")
    return _return_panels(axs, len(indices) == 1)


def _sqnr_db(signal: np.ndarray, error: np.ndarray) -> float:
    # 10 log10(signal power / noise power); NaN when there is no error (infinitely good) or
    # no signal, which a bar chart cannot show as a height.
    p_signal, p_error = float(np.sum(signal * signal)), float(np.sum(error * error))
    if p_error == 0 or p_signal == 0:
        return float("nan")
    return 10.0 * np.log10(p_signal / p_error)


def plot_quantization_error(float_model, quantized, x=None, ax=None, metric: str = "sqnr"):
    """Quantization error per layer, as grouped bars.

    For each Linear layer ``l``, with ``e = float - dequantized``:

    * weights: ``W_l`` against ``dequantize(w_q, s_w)``;
    * layer outputs (when ``x`` is given): the float model's output of layer ``l`` (after
      its activation; logits for the last) against the integer model's int8 output of
      that layer (:meth:`~nnref.quant.convert.QuantizedMLP.forward_int` with
      ``trace=True``), dequantized with the layer's output grid. Errors of earlier layers
      propagate, so this shows how error accumulates with depth.

    ``metric="sqnr"``: signal-to-quantization-noise ratio ``10 log10(sum v**2 / sum e**2)``
    in dB (higher is better; each bit adds about 6 dB). ``metric="mse"``: ``mean(e**2)``, in
    the squared units of the real values (weights, layer outputs).
    Every bar is labelled with its value. Returns the Axes.
    """
    if not isinstance(float_model, MLP):
        raise TypeError(f"float_model: expected an MLP, got {describe(float_model)}")
    if not isinstance(quantized, QuantizedMLP):
        raise TypeError(f"quantized: expected a QuantizedMLP, got {describe(quantized)}")
    if list(float_model.layer_sizes) != quantized.layer_sizes:
        raise ValueError(f"quantized: expected layer sizes {float_model.layer_sizes}, got {quantized.layer_sizes}")
    if metric not in ("sqnr", "mse"):
        raise ValueError(f"metric: expected 'sqnr' or 'mse', got {metric!r}")
    _check_ax(ax)

    def measure(v: np.ndarray, v_q: np.ndarray) -> float:
        e = v - v_q
        return _sqnr_db(v, e) if metric == "sqnr" else float(np.mean(e * e))

    groups = {"weights": [measure(lin.W.astype(np.float64), dequantize(layer.w_q, layer.w_qparams).astype(np.float64))
                          for lin, layer in zip(float_model.linears, quantized.layers)]}
    if x is not None:
        x_q = quantized.quantize_input(x)  # checks x: finite, (B, in_features)
        _, records = quantized.forward_int(x_q, trace=True)
        # The float model's output of each Linear layer after its activation: the tensor
        # just before the next Linear layer, or the logits.
        h, outputs, layers = np.asarray(x).astype(float_model.dtype), [], float_model.layers
        for k, layer_ in enumerate(layers):
            h = layer_.forward(h)
            if k + 1 == len(layers) or isinstance(layers[k + 1], Linear):
                outputs.append(h.astype(np.float64))
        groups["layer outputs on x"] = [
            measure(out, dequantize(rec["y"], layer.out_qparams).astype(np.float64))
            for out, rec, layer in zip(outputs, records, quantized.layers)
        ]
    ax = _new_ax(ax)
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
    _finish(ax, f"Quantization error per layer (int{bits} weights, int8 activations)", "Linear layer", what)
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

    Args:
        model_or_weights: an MLP, a QuantizedMLP (its dequantized weights) or one (in, out)
            array.
        ax: None, one Axes (one layer) or one Axes per layer.
        layer: index of the layer to draw; None draws every layer.

    Returns:
        The Axes for one layer; a 1-D ``np.ndarray`` of Axes for several.
    """
    weights = _layer_weights(model_or_weights, "model_or_weights")
    indices = _pick_layers(len(weights), layer)
    axs = _panel_axes(ax, len(indices))
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
        _finish(a, f"Layer {i + 1}: weight range per output channel\n"
                   f"per-tensor grid {ratio} coarser than the median channel's",
                "output channel", "weight value (real units)")
    return _return_panels(axs, len(indices) == 1)
