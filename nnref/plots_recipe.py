"""Figures for the rest of the recipe: per-layer sensitivity, the loss scale over training,
sparsity by layer, shared-weight centroids over the weight histogram, binary weights.

Same conventions as :mod:`nnref.plots`: each function takes an optional ``ax``, draws on
it (or on a new figure), returns the Axes, never calls ``plt.show()``, and works under
the Agg backend.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ._checks import as_float_array, check_int_in_range, check_nonnegative, check_positive, describe
from .plots.common import check_ax

__all__ = [
    "plot_sensitivity",
    "plot_loss_scale",
    "plot_sparsity_by_layer",
    "plot_centroids",
    "plot_binary_weights",
]


def _axes(ax, figsize=(6.4, 4.0)):
    """``ax`` (checked), or the Axes of a new figure."""
    check_ax(ax)
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def plot_sensitivity(sensitivity, ax=None):
    """Held-out loss increase against weight bits, one line per layer (log scale), from a
    :class:`nnref.quant.sensitivity.Sensitivity`. Increases at or below 1e-4 (noise, or an
    improvement) are drawn at 1e-4.

    Returns
    -------
    matplotlib.axes.Axes, the one drawn on
    """
    if not hasattr(sensitivity, "delta_loss"):
        raise TypeError(f"sensitivity: expected a Sensitivity, got {describe(sensitivity)}")
    ax = _axes(ax)
    bits = list(sensitivity.bits)
    for l, row in enumerate(sensitivity.delta_loss, start=1):
        ax.semilogy(bits, np.maximum(row, 1e-4), "o-", label=f"only W{l} quantized")
    ax.set_xlabel("weight bits of that layer")
    ax.set_ylabel("held-out loss increase")
    ax.set_title("Per-layer sensitivity")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return ax


def plot_loss_scale(scales, skipped, ax=None):
    """The loss scale per step (log2 axis) with the skipped (non-finite) steps marked.

    Returns
    -------
    matplotlib.axes.Axes, the one drawn on
    """
    scales = as_float_array(scales, "scales", ndim=1)
    if np.any(scales <= 0):
        raise ValueError(f"scales: expected loss scales > 0, got minimum {scales.min()}")
    skipped = np.asarray(skipped)
    if skipped.dtype != bool:
        raise TypeError(f"skipped: expected a sequence of True/False, got {describe(skipped)}")
    if skipped.shape != scales.shape:
        raise ValueError(f"scales, skipped: expected two 1-D sequences of equal length, got "
                         f"{scales.shape} and {skipped.shape}")
    ax = _axes(ax)
    steps = np.arange(scales.size)
    ax.step(steps, np.log2(scales), where="post", label="loss scale")
    ax.plot(steps[skipped], np.log2(scales[skipped]), "rx", label=f"skipped step ({skipped.sum()})")
    ax.set_xlabel("step")
    ax.set_ylabel("log2(loss scale)")
    ax.set_title("Dynamic loss scaling")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return ax


def plot_sparsity_by_layer(masks_by_label: dict, ax=None):
    """Grouped bars: the fraction of pruned weights of each layer, one group per mask set
    (``{"per layer": masks, "global": masks}``, masks dict name -> bool keep-mask).

    Returns
    -------
    matplotlib.axes.Axes, the one drawn on
    """
    if not isinstance(masks_by_label, dict) or not masks_by_label:
        raise TypeError(f"masks_by_label: expected a dict label -> masks, got {describe(masks_by_label)}")
    ax = _axes(ax)
    names = list(next(iter(masks_by_label.values())))
    width = 0.8 / len(masks_by_label)
    for label, masks in masks_by_label.items():
        if not isinstance(masks, dict) or list(masks) != names or not all(
                isinstance(m, np.ndarray) and m.dtype == bool for m in masks.values()):
            raise TypeError(f"masks_by_label[{label!r}]: expected a dict {names} -> bool masks, got {describe(masks)}")
    for i, (label, masks) in enumerate(masks_by_label.items()):
        frac = [1 - masks[n].mean() for n in names]
        ax.bar(np.arange(len(names)) + i * width, frac, width, label=label)
    ax.set_xticks(np.arange(len(names)) + width * (len(masks_by_label) - 1) / 2,
                  [f"{n} {masks_by_label[label][n].shape}" for n in names])
    ax.set_ylabel("fraction pruned")
    ax.set_ylim(0, 1)
    ax.set_title("Sparsity by layer")
    ax.legend()
    return ax


def plot_centroids(weights, centroids, ax=None, bins: int = 80):
    """Histogram of a layer's kept weights with its shared values (k-means centroids) as
    vertical lines.

    Returns
    -------
    matplotlib.axes.Axes, the one drawn on
    """
    weights = as_float_array(weights, "weights").ravel()
    centroids = as_float_array(centroids, "centroids").ravel()
    bins = check_int_in_range(bins, "bins", 1, 10**6)
    ax = _axes(ax)
    ax.hist(weights, bins=bins, color="#1f77b4", alpha=0.7, label="kept weights")
    for j, c in enumerate(centroids):
        ax.axvline(c, color="#d62728", lw=1, label="shared values" if j == 0 else None)
    ax.set_xlabel("weight")
    ax.set_ylabel("count")
    ax.set_title(f"{centroids.size} shared values over the weight histogram")
    ax.legend()
    return ax


def plot_binary_weights(latent, alpha, threshold=None, ax=None, bins: int = 60):
    """Histogram of one output channel's latent float weights, with the binary (or
    ternary) values ``+-alpha`` it is replaced by and, for ternary, the thresholds
    ``+-Delta``.

    Returns
    -------
    matplotlib.axes.Axes, the one drawn on
    """
    latent = as_float_array(latent, "latent").ravel()
    alpha = check_positive(alpha, "alpha")
    if threshold is not None:
        threshold = check_nonnegative(threshold, "threshold")
    bins = check_int_in_range(bins, "bins", 1, 10**6)
    ax = _axes(ax)
    ax.hist(latent, bins=bins, color="#1f77b4", alpha=0.7, label="latent float weights")
    for s in (-1, 1):
        ax.axvline(s * alpha, color="#d62728", lw=2, label="+-alpha" if s == 1 else None)
        if threshold is not None:
            ax.axvline(s * threshold, color="#555555", ls="--", label="+-Delta" if s == 1 else None)
    ax.set_xlabel("weight")
    ax.set_ylabel("count")
    ax.legend()
    return ax
