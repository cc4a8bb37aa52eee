"""Figures for training runs: gradient norms, loss and accuracy curves, run comparisons.

Every helper draws one idea on matplotlib Axes and hands them back, so a notebook can add
to a figure or put several helpers side by side:

* each takes an optional ``ax`` (or ``axes``); when it is ``None`` a new figure is made;
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


def _finish(ax, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=STYLE["grid_alpha"])
    if ax.get_legend_handles_labels()[0]:
        ax.legend()


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


def plot_training_curves(history: History, axes: Axes | Sequence[Axes] | None = None,
                         log_loss: bool = False) -> np.ndarray:
    """Loss and accuracy per epoch, for the training set and (if recorded) validation.

    Quantities: ``history.train_loss`` / ``history.val_loss`` (mean loss over a full pass
    after each epoch) and ``history.train_acc`` / ``history.val_acc`` in percent. A
    regression run (accuracy NaN, ``loss="mse"``) has no accuracy to draw.

    ``axes`` chooses the layout:

    * ``None``: a new figure with one panel per quantity, side by side: loss, then
      accuracy (classification) or the loss alone (regression);
    * one Axes: everything on it, the loss on the left y axis and the accuracy (dashed)
      on a twin right y axis made with ``ax.twinx()``, one legend for both;
    * a sequence of Axes: one per panel (2 for classification, 1 for regression).

    Returns a 1-D ``np.ndarray`` of the Axes drawn on, loss first (with one Axes given and
    a classification run: ``[ax, twin]``). A run that diverged is marked by a vertical
    line at the epoch it stopped in. ``log_loss`` puts the loss on a log axis.
    """
    history = _check_history(history)
    acc = np.asarray(history.train_acc, dtype=np.float64)
    classification = bool(np.any(np.isfinite(acc)))
    n_panels = 2 if classification else 1
    twin = _is_axes(axes) and classification
    if axes is None:
        size = STYLE["panel_figsize"] if n_panels == 2 else STYLE["figsize"]
        _, grid = _pyplot().subplots(1, n_panels, figsize=size, squeeze=False, layout="constrained")
        axs = list(grid[0])
    elif _is_axes(axes):
        axs = [axes, axes.twinx()] if twin else [axes]
    elif (isinstance(axes, (list, tuple, np.ndarray)) and len(axes) == n_panels
          and all(_is_axes(a) for a in axes)):
        axs = list(axes)
    else:
        raise TypeError(
            f"axes: expected None, one matplotlib Axes or a sequence of {n_panels} Axes "
            f"(loss{', accuracy' if classification else ''}), got {describe(axes)}"
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
        _finish(loss_ax, "Loss per epoch", "epoch", "loss")
        return np.array(axs, dtype=object)

    acc_ax = axs[1]
    _epoch_lines(acc_ax, history.train_acc, history.val_acc, " accuracy" if twin else "",
                 scale=100.0, ls="--" if twin else "-", **{**style, "marker": "s"})
    if twin:
        acc_ax.set_ylabel("accuracy (%)")
        # Draw the loss Axes (and so its legend) above the twin, with a see-through patch.
        loss_ax.set_zorder(acc_ax.get_zorder() + 1)
        loss_ax.patch.set_visible(False)
        _finish(loss_ax, "Loss and accuracy per epoch", "epoch", "loss")
        handles, labels = loss_ax.get_legend_handles_labels()
        more_handles, more_labels = acc_ax.get_legend_handles_labels()
        # Falling loss and rising accuracy usually leave the middle right empty ("best"
        # would only look at the loss Axes' own lines).
        loss_ax.legend(handles + more_handles, labels + more_labels, loc="center right")
    else:
        _finish(loss_ax, "Loss per epoch", "epoch", "loss")
        _finish(acc_ax, "Accuracy per epoch", "epoch", "accuracy (%)")
    return np.array(axs, dtype=object)


def plot_loss_per_step(histories: dict, ax: Axes | None = None, log_scale: bool = True) -> Axes:
    """Compare several runs' mini-batch losses ``history.loss`` step by step.

    ``histories`` maps a label to a :class:`~nnref.train.History`, e.g. ``{"SGD":
    h_plain, "SGD + clipping": h_clipped}``; one line per run, in the dict's order and
    the :data:`STYLE` colour cycle. A run that diverged is labelled "<label> (diverged at
    step k)" and gets a dotted vertical line of its own colour at step k (not in the
    legend). ``log_scale`` (default) suits losses that span orders of magnitude. Returns
    the Axes.
    """
    if not isinstance(histories, dict) or not histories:
        raise TypeError(f"histories: expected a non-empty dict label -> History, got {describe(histories)}")
    for label, h in histories.items():
        _check_history(h, f"histories[{label!r}]")
    _check_ax(ax)
    ax = _new_ax(ax)
    cycle = STYLE["cycle"]
    shown = []
    for i, (label, h) in enumerate(histories.items()):
        color = cycle[i % len(cycle)]
        loss = _finite_or_nan(h.loss)
        shown.append(loss)
        stop = _divergence_step(h)
        text = str(label) if stop is None else f"{label} (diverged at step {stop})"
        ax.plot(np.arange(1, h.n_steps + 1), loss, color=color, lw=STYLE["linewidth"], label=text)
        if stop is not None:
            ax.axvline(stop, color=color, ls=":", lw=STYLE["linewidth"], label="_nolegend_")
    if log_scale and shown:
        _use_log_scale(ax, np.concatenate(shown))
    _finish(ax, "Training loss per step", "step", "mini-batch loss")
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
