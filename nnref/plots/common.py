"""What every nnref figure shares: the style, the Axes conventions, saving, the folder.

The helpers here are the conventions of :mod:`nnref.plots` written once: a plot draws on
the Axes it is given or on a new figure's (:func:`new_ax`, :func:`panel_axes`), labels
and titles them the same way (:func:`finish`), leaves non-finite values out of its lines
(:func:`finite_or_nan`) and goes to a log axis only when one can be drawn
(:func:`use_log_scale`). Importing matplotlib's pyplot does not choose a GUI backend
(that happens when the first figure is made), so this module imports it at the top.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._checks import check_positive, describe
from .._files import atomic_write

__all__ = [
    "STYLE",
    "check_ax",
    "check_flag",
    "figures_dir",
    "finish",
    "finite_or_nan",
    "is_axes",
    "new_ax",
    "panel_axes",
    "return_panels",
    "save_figure",
    "use_log_scale",
]

#: One palette and a few sizes for every figure of the project. ``cycle`` colours runs or
#: parameters that have no fixed role (colour-blind-safe "tab10" order).
STYLE: dict = {
    "before": "#1f77b4",  # a gradient (or weight) before any transform
    "after": "#ff7f0e",  # the same after clipping (or quantization)
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
    "grid_levels": "#555555",  # the points of a quantization grid
    "per_tensor": "#d62728",  # a range shared by a whole tensor
}


def is_axes(obj) -> bool:
    """Whether ``obj`` is one matplotlib Axes.

    Parameters
    ----------
    obj : object
        Anything.

    Returns
    -------
    bool
    """
    return isinstance(obj, Axes)


def check_ax(ax, name: str = "ax"):
    """Return ``ax`` if it is None or one Axes.

    Parameters
    ----------
    ax : matplotlib.axes.Axes or None
        The Axes a plot was asked to draw on.
    name : str
        The argument's name, for the error message.

    Returns
    -------
    matplotlib.axes.Axes or None

    Raises
    ------
    TypeError
        For anything else.
    """
    if ax is not None and not is_axes(ax):
        raise TypeError(f"{name}: expected a matplotlib Axes or None, got {describe(ax)}")
    return ax


def check_flag(value, name: str) -> bool:
    """Return ``value`` as a Python bool if it is ``True`` or ``False``.

    Parameters
    ----------
    value : bool
        A yes/no option of a plot.
    name : str
        The argument's name, for the error message.

    Returns
    -------
    bool

    Raises
    ------
    TypeError
        For anything but a bool (a string such as ``"no"`` would otherwise read as True).
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {describe(value)}")
    return bool(value)


def new_ax(ax):
    """``ax`` itself, or the Axes of a new figure of the default size when ``ax`` is None."""
    if ax is None:
        _, ax = plt.subplots(figsize=STYLE["figsize"], layout="constrained")
    return ax


def panel_axes(ax, n: int, name: str = "ax") -> list:
    """One Axes per panel.

    Parameters
    ----------
    ax : None, Axes or sequence of Axes
        None makes a new row of ``n`` subplots; one Axes serves one panel; a sequence
        must hold ``n`` Axes.
    n : int
        Number of panels.
    name : str
        The argument's name, for the error message.

    Returns
    -------
    list of matplotlib.axes.Axes
        ``n`` Axes.

    Raises
    ------
    TypeError
        When ``ax`` is none of the above.
    """
    if ax is None:
        w, h = STYLE["figsize"]
        _, grid = plt.subplots(1, n, figsize=(min(w * n, 16.0), h), squeeze=False, layout="constrained")
        return list(grid[0])
    if is_axes(ax) and n == 1:
        return [ax]
    if isinstance(ax, (list, tuple, np.ndarray)) and len(ax) == n and all(is_axes(a) for a in np.ravel(ax)):
        return list(np.ravel(ax))
    raise TypeError(f"{name}: expected None, {'an Axes' if n == 1 else f'a sequence of {n} Axes (one per layer)'}, "
                    f"got {describe(ax)}")


def return_panels(axs: list, single: bool):
    """The one Axes of a single panel, else a 1-D object array of the Axes."""
    return axs[0] if single else np.array(axs, dtype=object)


def finite_or_nan(values) -> np.ndarray:
    """``values`` as float64 with ``inf`` and ``nan`` both turned into ``nan``.

    matplotlib leaves a gap at a NaN, where an infinity would make it fail to scale the
    axis (or draw a line to the top of a log axis).

    Parameters
    ----------
    values : array_like
        Numbers a plot is to draw.

    Returns
    -------
    numpy.ndarray
        float64, same shape.
    """
    v = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(v), v, np.nan)


def use_log_scale(ax, values: np.ndarray) -> None:
    """Put the y axis of ``ax`` on a log scale if ``values`` holds a positive finite value.

    Otherwise the axis stays linear: a log axis with nothing positive to show makes
    matplotlib warn and draw an empty axis.
    """
    if np.any(np.isfinite(values) & (values > 0)):
        ax.set_yscale("log")


def finish(ax, title: str, xlabel: str, ylabel: str, **legend_kw) -> None:
    """Title, axis labels, a light grid and (when something is labelled) a legend.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The Axes drawn on.
    title, xlabel, ylabel : str
        What the plot shows, and each axis's quantity with its unit.
    **legend_kw
        Passed on to ``ax.legend``.
    """
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=STYLE["grid_alpha"])
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**legend_kw)


def save_figure(fig_or_ax, path, dpi: int = 120, close: bool = False) -> Path:
    """Write the figure that holds ``fig_or_ax`` to ``path``.

    Missing parent folders are created; the format follows the file extension
    (``.png``, ``.pdf``, ``.svg``); ``bbox_inches="tight"`` trims the margins. The file
    is replaced atomically (:func:`nnref._files.atomic_write`), so a failed save leaves
    any previous figure intact.

    Parameters
    ----------
    fig_or_ax : Figure, Axes or sequence of Axes
        The figure, or anything drawn on it (what the plot helpers return).
    path : str or os.PathLike
        The file to write.
    dpi : int, default 120
        Resolution, > 0.
    close : bool, default False
        Close the figure after saving (it stays open otherwise).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    TypeError
        For a ``fig_or_ax`` that is no figure or Axes, a ``path`` that is no path, a
        ``close`` that is not a bool.
    ValueError
        For a ``dpi`` that is not > 0.
    """
    fig = fig_or_ax
    if isinstance(fig, (list, tuple, np.ndarray)) and len(fig) and is_axes(np.ravel(fig)[0]):
        fig = np.ravel(fig)[0]
    if is_axes(fig):
        fig = fig.get_figure()
    if not isinstance(fig, Figure):
        raise TypeError(f"fig_or_ax: expected a matplotlib Figure, Axes or array of Axes, got {describe(fig_or_ax)}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a str or os.PathLike file name, got {describe(path)}")
    dpi = int(check_positive(dpi, "dpi"))
    close = check_flag(close, "close")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = path.suffix[1:].lower()
    if fmt:  # written atomically: a failed save leaves any previous figure intact
        atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi, bbox_inches="tight"))
    else:  # matplotlib picks the format and appends its extension
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
    if close:
        plt.close(fig)
    return path


def figures_dir(create: bool = True) -> Path:
    """The folder tutorials and the main command write their figures to.

    Parameters
    ----------
    create : bool, default True
        Create the folder if it is missing.

    Returns
    -------
    pathlib.Path
        ``$NNREF_FIGURES_DIR`` when set (tests use it to write into a temporary folder);
        otherwise the ``figures/`` folder of the nnref checkout that holds the current
        working directory (found by walking up from it to a folder with both
        ``figures/`` and ``tutorials/``: this works from the repository root and from
        ``tutorials/`` in Jupyter); otherwise ``./figures``.
    """
    create = check_flag(create, "create")
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
