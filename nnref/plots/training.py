"""Figures of training runs: gradient norms, loss and accuracy curves, runs compared.

Each helper reads the :class:`~nnref.train.History` that :func:`~nnref.train.fit`
recorded. A run that diverged recorded ``inf`` or ``nan``: those values are left out of
the lines and the step (or epoch) at which the run stopped is marked with a vertical
line, so a blow-up reads as a blow-up, not a crash. A history with no recorded step has
nothing to draw and is refused.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

from .._checks import check_positive, describe
from ..train import History
from .common import STYLE, check_ax, check_flag, finish, finite_or_nan, is_axes, new_ax, use_log_scale

__all__ = ["plot_grad_norms", "plot_training_curves", "plot_loss_per_step"]

#: The y label of a loss, by ``fit``'s ``loss`` argument (None: unknown, no unit to give).
#: Cross-entropy uses the natural log, so it is in nats; MSE is in the targets' units squared.
_LOSS_LABELS = {"cross_entropy": "cross-entropy loss (nats)", "mse": "MSE loss (squared target units)",
                None: "loss"}


def _check_history(history, name: str = "history") -> History:
    """Return ``history`` after checking it is a non-empty, consistent History.

    Parameters
    ----------
    history : nnref.train.History
        A run's record.
    name : str
        How the caller calls it, for the error message.

    Returns
    -------
    nnref.train.History

    Raises
    ------
    TypeError
        For anything but a History.
    ValueError
        For a history with no recorded step (nothing to draw), or whose per-step or
        per-epoch lists differ in length (lines would not line up).
    """
    if not isinstance(history, History):
        raise TypeError(f"{name}: expected an nnref.train.History (from fit), got {describe(history)}")
    if history.n_steps == 0:
        raise ValueError(f"{name}: expected a run with at least one recorded step, got 0 steps")
    per_step = {"grad_norm": history.grad_norm, "grad_norm_after": history.grad_norm_after,
                "clipped": history.clipped}
    per_step.update({f"param_grad_norm[{k!r}]": v for k, v in history.param_grad_norm.items()})
    for what, values in per_step.items():
        if len(values) != history.n_steps:
            raise ValueError(
                f"{name}: expected {what} to hold one entry per step ({history.n_steps}, the "
                f"length of loss), got {len(values)}"
            )
    n_epochs = len(history.train_loss)
    per_epoch = {"train_acc": history.train_acc, "val_loss": history.val_loss, "val_acc": history.val_acc}
    for what, values in per_epoch.items():
        # Validation is optional (empty); when measured, it is measured every epoch.
        if len(values) != n_epochs and not (what.startswith("val") and len(values) == 0):
            raise ValueError(
                f"{name}: expected {what} to hold one entry per epoch ({n_epochs}, the length "
                f"of train_loss), got {len(values)}"
            )
    if len(history.val_loss) != len(history.val_acc):
        raise ValueError(f"{name}: expected val_loss and val_acc of the same length, got "
                         f"{len(history.val_loss)} and {len(history.val_acc)}")
    return history


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


def _divergence_epoch(history: History) -> int | None:
    """The 1-based epoch in which a diverged run stopped, or None for a finished run.

    ``fit`` appends a non-finite epoch loss before stopping; a run stopped mid-epoch has
    no entry for the epoch it died in, which is then ``len(train_loss) + 1``.
    """
    if not history.diverged:
        return None
    tl = history.train_loss
    if tl and not np.isfinite(tl[-1]):
        return len(tl)
    return len(tl) + 1


def _loss_kind(history: History, loss: str | None, name: str = "history") -> str | None:
    """The ``loss`` a run was trained with: ``loss`` when given, else read off the history.

    History records no loss type, but ``fit`` records accuracy as NaN exactly for
    ``loss="mse"``: any finite accuracy means cross-entropy, a non-empty all-NaN accuracy
    record means MSE, and a run without a finished epoch (no accuracy at all) is unknown
    (None). A given ``loss`` must agree with the record.

    Raises
    ------
    ValueError
        For a ``loss`` other than None, ``"cross_entropy"`` and ``"mse"``, or one that the
        accuracy record contradicts.
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
      :class:`nnref.clip.GlobalNorm`; label "threshold = c");
    * with ``per_param``: one thin dashed line per parameter,
      ``history.param_grad_norm[name]`` (norms before the transform), labelled
      ``||g_W1||`` etc.;
    * for a diverged run: a vertical line at the first step whose loss or norm is not
      finite (label "diverged (step k)"). Non-finite values themselves are not drawn.

    Parameters
    ----------
    history : nnref.train.History
        The run, with at least one step.
    ax : matplotlib.axes.Axes, optional
        Where to draw; None makes a new figure.
    per_param : bool, default False
        Add one line per parameter.
    threshold : float, optional
        A clipping threshold to draw, > 0.
    log_scale : bool, default True
        Norm on a log axis, where norms many orders of magnitude apart (an explosion; a
        clipped run next to its threshold) share one plot and steady geometric growth is
        a straight line.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn on.

    Raises
    ------
    TypeError
        For a non-History, a non-Axes ``ax``, a non-bool flag or a non-number threshold.
    ValueError
        For a history with no steps or inconsistent lists, or a ``threshold`` not > 0.
    """
    history = _check_history(history)
    check_ax(ax)
    per_param, log_scale = check_flag(per_param, "per_param"), check_flag(log_scale, "log_scale")
    if threshold is not None:
        threshold = check_positive(threshold, "threshold")
    ax = new_ax(ax)
    steps = np.arange(1, history.n_steps + 1)
    before = finite_or_nan(history.grad_norm)
    has_transform = history.transform is not None
    lw = STYLE["linewidth"]

    ax.plot(steps, before, color=STYLE["before"], lw=lw,
            label="before clipping" if has_transform else "global norm")
    if has_transform:
        ax.plot(steps, finite_or_nan(history.grad_norm_after), color=STYLE["after"], lw=lw,
                label="after clipping")
    if per_param:
        # Colours not already taken by a role on this plot.
        taken = {STYLE["before"], STYLE["after"], STYLE["clipped"], STYLE["diverged"]}
        free = [c for c in STYLE["cycle"] if c not in taken]
        for i, (name, norms) in enumerate(history.param_grad_norm.items()):
            ax.plot(steps, finite_or_nan(norms), lw=STYLE["thin_linewidth"], ls="--",
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
            shown += [finite_or_nan(v) for v in history.param_grad_norm.values()]
        use_log_scale(ax, np.concatenate(shown))
    title = "Gradient norm per step"
    if has_transform:
        title += f"\n{history.transform}"
    finish(ax, title, "step", "L2 norm of the gradient")
    return ax


def _epoch_lines(ax, train, val, what: str, scale: float = 1.0, **kw) -> None:
    """One line per epoch for the training set and, if it was measured, for validation.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Where to draw.
    train, val : list of float
        Per-epoch values (``val`` may be empty).
    what : str
        Appended to the labels "train" and "validation".
    scale : float
        Factor applied to the values (100 for percent).
    **kw
        Line properties.
    """
    ax.plot(np.arange(1, len(train) + 1), scale * finite_or_nan(train), color=STYLE["train"],
            label=f"train{what}", **kw)
    if val:
        ax.plot(np.arange(1, len(val) + 1), scale * finite_or_nan(val), color=STYLE["val"],
                label=f"validation{what}", **kw)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers


def _curve_axes(ax, name: str, classification: bool) -> tuple[list, bool]:
    """The Axes :func:`plot_training_curves` draws on, and whether accuracy goes on a twin.

    Returns
    -------
    axs : list of matplotlib.axes.Axes
        Loss first, then accuracy (for a classification run).
    twin : bool
        True when one Axes was given for a classification run: the accuracy goes on
        ``ax.twinx()``.

    Raises
    ------
    TypeError
        When ``ax`` is not None, one Axes or a sequence of as many Axes as panels.
    """
    n_panels = 2 if classification else 1
    twin = is_axes(ax) and classification
    if ax is None:
        size = STYLE["panel_figsize"] if n_panels == 2 else STYLE["figsize"]
        _, grid = plt.subplots(1, n_panels, figsize=size, squeeze=False, layout="constrained")
        return list(grid[0]), twin
    if is_axes(ax):
        return ([ax, ax.twinx()] if twin else [ax]), twin
    if isinstance(ax, (list, tuple, np.ndarray)) and len(ax) == n_panels and all(is_axes(a) for a in ax):
        return list(ax), twin
    raise TypeError(
        f"{name}: expected None, one matplotlib Axes or a sequence of {n_panels} Axes "
        f"(loss{', accuracy' if classification else ''}), got {describe(ax)}"
    )


def _draw_accuracy(loss_ax, acc_ax, history: History, twin: bool, style: dict, loss_label: str) -> None:
    """The accuracy lines of :func:`plot_training_curves`, and the labels of both panels."""
    _epoch_lines(acc_ax, history.train_acc, history.val_acc, " accuracy" if twin else "",
                 scale=100.0, ls="--" if twin else "-", **{**style, "marker": "s"})
    if not twin:
        finish(loss_ax, "Loss per epoch", "epoch", loss_label)
        finish(acc_ax, "Accuracy per epoch", "epoch", "accuracy (%)")
        return
    acc_ax.set_ylabel("accuracy (%)")
    # Draw the loss Axes (and so its legend) above the twin, with a see-through patch.
    loss_ax.set_zorder(acc_ax.get_zorder() + 1)
    loss_ax.patch.set_visible(False)
    finish(loss_ax, "Loss and accuracy per epoch", "epoch", loss_label)
    handles, labels = loss_ax.get_legend_handles_labels()
    more_handles, more_labels = acc_ax.get_legend_handles_labels()
    # Falling loss and rising accuracy usually leave the middle right empty ("best"
    # would only look at the loss Axes' own lines).
    loss_ax.legend(handles + more_handles, labels + more_labels, loc="center right")


def plot_training_curves(history: History, ax: Axes | Sequence[Axes] | None = None,
                         log_loss: bool = False, *, axes: Axes | Sequence[Axes] | None = None,
                         loss: str | None = None) -> np.ndarray:
    """Loss and accuracy per epoch, for the training set and (if recorded) validation.

    Quantities: ``history.train_loss`` / ``history.val_loss`` (mean loss over a full pass
    after each epoch) and ``history.train_acc`` / ``history.val_acc`` in percent. A
    regression run (accuracy NaN, ``loss="mse"``) has no accuracy to draw. A run that
    diverged is marked by a vertical line at the epoch it stopped in.

    The loss axis carries the loss's unit: "cross-entropy loss (nats)" (natural log) or
    "MSE loss (squared target units)"; a run that stopped before its first epoch ended,
    and whose ``loss`` is not given, is labelled plain "loss".

    Parameters
    ----------
    history : nnref.train.History
        The run, with at least one step.
    ax : None, Axes or sequence of Axes, optional
        None: a new figure with one panel per quantity, side by side (loss, then
        accuracy for classification; the loss alone for regression). One Axes:
        everything on it, the loss on the left y axis and the accuracy (dashed) on a twin
        right y axis made with ``ax.twinx()``, one legend for both. A sequence: one Axes
        per panel (2 for classification, 1 for regression).
    log_loss : bool, default False
        Put the loss on a log axis.
    axes : None, Axes or sequence of Axes, optional
        The former name of ``ax``, still accepted (keyword only; passing both is a
        TypeError).
    loss : {None, "cross_entropy", "mse"}
        ``fit``'s ``loss`` argument; None reads it off the history, whose accuracy is NaN
        exactly for MSE runs.

    Returns
    -------
    numpy.ndarray
        1-D array of the Axes drawn on, loss first (with one Axes given and a
        classification run: ``[ax, twin]``).

    Raises
    ------
    TypeError
        For a non-History, an unusable ``ax``/``axes`` (or both given), a non-bool
        ``log_loss``.
    ValueError
        For a history with no steps or inconsistent lists, or a ``loss`` that is unknown
        or contradicts the accuracy record.
    """
    history = _check_history(history)
    name = "ax"
    if axes is not None:
        if ax is not None:
            raise TypeError("ax, axes: expected the Axes as ax only (axes is its former name), got both")
        ax, name = axes, "axes"
    log_loss = check_flag(log_loss, "log_loss")
    loss_label = _LOSS_LABELS[_loss_kind(history, loss)]
    classification = bool(np.any(np.isfinite(np.asarray(history.train_acc, dtype=np.float64))))
    axs, twin = _curve_axes(ax, name, classification)

    style = {"lw": STYLE["linewidth"], "marker": "o", "ms": STYLE["markersize"]}
    loss_ax = axs[0]
    _epoch_lines(loss_ax, history.train_loss, history.val_loss, " loss" if twin else "", **style)
    stop = _divergence_epoch(history)
    if stop is not None:
        loss_ax.axvline(stop, color=STYLE["diverged"], ls="-.", lw=STYLE["linewidth"],
                        label=f"diverged (epoch {stop})")
    if log_loss:
        use_log_scale(loss_ax, finite_or_nan(history.train_loss + history.val_loss))
    if classification:
        _draw_accuracy(loss_ax, axs[1], history, twin, style, loss_label)
    else:
        finish(loss_ax, "Loss per epoch", "epoch", loss_label)
    return np.array(axs, dtype=object)


def plot_loss_per_step(histories: dict, ax: Axes | None = None, log_scale: bool = True,
                       loss: str | None = None) -> Axes:
    """Compare several runs' mini-batch losses ``history.loss`` step by step.

    One line per run, in the dict's order and the :data:`~nnref.plots.STYLE` colour
    cycle. A run that diverged is labelled "<label> (diverged at step k)" and gets a
    dotted vertical line of its own colour at step k (not in the legend). The y label
    gives the loss and its unit as :func:`plot_training_curves` does; runs of different
    or unknown losses share the plain label "mini-batch loss".

    Parameters
    ----------
    histories : dict
        Label -> :class:`~nnref.train.History`, e.g. ``{"SGD": h_plain, "SGD +
        clipping": h_clipped}``; at least one, each with at least one step.
    ax : matplotlib.axes.Axes, optional
        Where to draw; None makes a new figure.
    log_scale : bool, default True
        Loss on a log axis (suits losses that span orders of magnitude).
    loss : {None, "cross_entropy", "mse"}
        ``fit``'s loss for every run, or None to read it off each history (a run with no
        finished epoch, whose loss cannot be read off, takes the others').

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    TypeError
        For ``histories`` that is not a non-empty dict, an entry that is not a History,
        a non-Axes ``ax``, a non-bool ``log_scale``.
    ValueError
        For an entry with no steps or inconsistent lists, or an unknown or contradicted
        ``loss``.
    """
    if not isinstance(histories, dict) or not histories:
        raise TypeError(f"histories: expected a non-empty dict label -> History, got {describe(histories)}")
    kinds = {_loss_kind(_check_history(h, f"histories[{label!r}]"), loss, f"histories[{label!r}]")
             for label, h in histories.items()}
    check_ax(ax)
    log_scale = check_flag(log_scale, "log_scale")
    ax = new_ax(ax)
    cycle = STYLE["cycle"]
    shown = []
    for i, (label, h) in enumerate(histories.items()):
        color = cycle[i % len(cycle)]
        values = finite_or_nan(h.loss)
        shown.append(values)
        stop = _divergence_step(h)
        text = str(label) if stop is None else f"{label} (diverged at step {stop})"
        ax.plot(np.arange(1, h.n_steps + 1), values, color=color, lw=STYLE["linewidth"], label=text)
        if stop is not None:
            ax.axvline(stop, color=color, ls=":", lw=STYLE["linewidth"], label="_nolegend_")
    if log_scale:
        use_log_scale(ax, np.concatenate(shown))
    kinds.discard(None)  # a run with no finished epoch takes the others' loss
    kind = kinds.pop() if len(kinds) == 1 else None
    finish(ax, "Training loss per step", "step", f"mini-batch {_LOSS_LABELS[kind]}")
    return ax
