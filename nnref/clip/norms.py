"""Norms of gradients that stay right at the extremes of the floating-point range.

``||x||_p = (sum_j |x_j|^p)^(1/p)`` and ``||x||_inf = max_j |x_j|``. Each norm is first
computed as that textbook sum (for the L2 norm a BLAS dot in the array's own dtype, as
PyTorch computes norms in the gradients' dtype), which is exact where the worked examples
are (``sqrt(9 + 16) == 5``). When that sum cannot be trusted (it overflowed, or it is so
small that terms may have fallen below the normal range) it is redone on ``x / max|x|``
and multiplied back, as LAPACK's ``nrm2`` scales: so ``p = 2000`` on entries below 1, or
float64 entries of 1e-200 or 1e200, give the right norm instead of 0 or inf. A norm whose
true value exceeds the float64 range is inf.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .._checks import check_grads

__all__ = ["l2_norm", "p_norm", "global_l2_norm", "GradNorms", "grad_norms"]

# A sum of squares (or p-th powers) at least n * tiny / eps has lost to underflow at most
# n terms of size < tiny each: a relative error below eps.
_SAFE_SUM = {t: float(np.finfo(t).tiny / np.finfo(t).eps) for t in ("f", "d")}


def _scaled_norm(a: np.ndarray, p: float) -> float:
    """``m * ||a / m||_p`` with ``m = max|a|`` (``a`` float64, non-negative, non-empty):
    the largest term of the sum is exactly 1, so nothing overflows or underflows."""
    m = float(np.max(a))
    if m == 0 or not math.isfinite(m):  # all zero, or an inf (norm inf) or a NaN (NaN)
        return float("nan") if np.isnan(a).any() else m
    r = a / m
    s = float(np.vdot(r, r)) if p == 2.0 else float(np.sum(r**p))
    with np.errstate(over="ignore"):  # a true norm beyond the float64 range is inf
        return float(np.float64(m) * np.float64(s ** (1.0 / p)))


def l2_norm(x: np.ndarray) -> float:
    """``||x||_2 = sqrt(sum_j x_j^2)`` over every entry, as a Python float.

    A BLAS dot in the array's own dtype (float32 or float64; ``np.vdot``, which gives the
    bits of ``np.dot`` without its floating-point warning check); redone in float64 when
    that sum is not finite (a NaN/inf entry, or float32 overflow) or so small that squares
    may have fallen below the normal range (``sum < size * tiny / eps``); redone on
    ``x / max|x|`` when even the float64 sum cannot be trusted (see the module docstring).

    Parameters
    ----------
    x : ndarray, any shape, floating or integer

    Returns
    -------
    float
        0.0 for an empty or all-zero array; NaN if any entry is NaN, else inf if any is inf.
    """
    char = x.dtype.char
    if char == "f" or char == "d":
        sq = float(np.vdot(x, x))
        if sq >= x.size * _SAFE_SUM[char] and sq != math.inf or not (sq or x.any()):
            return math.sqrt(sq)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):  # handled below
        a = np.abs(x.astype(np.float64)).ravel()
        if a.size == 0:
            return 0.0
        sq = float(np.vdot(a, a))
        if math.isfinite(sq) and (sq >= a.size * _SAFE_SUM["d"] or not a.any()):
            return math.sqrt(sq)
        return _scaled_norm(a, 2.0)


def p_norm(x: np.ndarray, p: float) -> float:
    """``||x||_p`` over every entry of ``x``, any ``p > 0`` or ``inf``, as a Python float.

    ``p = 2`` is :func:`l2_norm`; ``p = inf`` is ``max_j |x_j|``; otherwise the float64 sum
    ``(sum_j |x_j|^p)^(1/p)``, redone on ``x / max|x|`` when it cannot be trusted. 0.0 for
    an empty array; NaN if any entry is NaN.
    """
    if x.size == 0:
        return 0.0
    if p == 2.0:
        return l2_norm(x)
    a = np.abs(x.astype(np.float64)).ravel()
    if p == math.inf:
        return float(np.max(a))  # NaN if any entry is NaN
    with np.errstate(over="ignore", under="ignore"):
        s = float(np.sum(a**p))
    if math.isfinite(s) and (s >= a.size * _SAFE_SUM["d"] or not a.any()):
        return s ** (1.0 / p)
    return _scaled_norm(a, p)


def global_l2_norm(norms) -> float:
    """The global L2 norm of several tensors from their own L2 norms ``n_t``::

        ||(g_1, ..., g_T)||_2 = sqrt(sum_t n_t^2)

    summed in order, in float64 (the one summation :func:`nnref.train.fit` records and
    clipping uses, so the two are the same number); redone with scaling when the squares
    overflow or underflow. 0.0 for no tensors; NaN if any ``n_t`` is NaN.
    """
    sq = sum(n * n for n in norms)
    if math.isfinite(sq) and (sq >= len(norms) * _SAFE_SUM["d"] or not any(norms)):
        return math.sqrt(sq)
    return l2_norm(np.asarray(norms, dtype=np.float64))


@dataclass(slots=True)
class GradNorms:
    """The L2 norms of one set of gradients, as :func:`grad_norms` measured them.

    Attributes
    ----------
    norms : tuple of float
        ``||g_t||_2`` per tensor, in the structure's order.
    total : float
        The global L2 norm, :func:`global_l2_norm` of ``norms``.
    arrays : tuple of ndarray
        The measured arrays themselves: a clipper handed these norms checks that it is
        given the very same arrays (by identity), so a measurement of other gradients is
        refused rather than trusted.
    """

    norms: tuple
    total: float
    arrays: tuple = field(repr=False, compare=False)


def grad_norms(grads) -> GradNorms:
    """Per-tensor and global L2 norms of a gradient structure (dict or list of arrays).

    Parameters
    ----------
    grads : dict name -> ndarray, or list/tuple of ndarrays

    Returns
    -------
    GradNorms
    """
    _, arrays = check_grads(grads, "grads")
    norms = tuple(map(l2_norm, arrays))
    return GradNorms(norms, global_l2_norm(norms), tuple(arrays))
