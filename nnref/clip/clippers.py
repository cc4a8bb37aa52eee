"""Clippers: callables for ``fit(..., grad_transform=...)`` that say what they did.

``clipper(grads, params)`` returns the clipped gradients, like the function it wraps.
``clipper.clip(grads, params, inplace=...)`` returns a :class:`ClipResult`: the clipped
gradients together with the L2 norms before and after, whether anything changed and, for
a global scaling, the factor. :func:`nnref.train.fit` calls ``clip``, so the norms it
records are the ones the clipper computed.
"""

from __future__ import annotations

import inspect
import math
import numbers
from dataclasses import dataclass

import numpy as np

from .._checks import check_grads, check_names, check_nonnegative, check_norm_type, describe, pack_like
from .formulas import clip_grad_by_norm, clip_grads_by_value
from .functions import (
    AGC_UNITS,
    NonFiniteNormError,
    adaptive_clip,
    check_total,
    clip_by_global_norm,
    clip_coef,
    describe_nonfinite,
    scale_grads,
    value_bounds,
)
from .norms import GradNorms, global_l2_norm, grad_norms, l2_norm

__all__ = ["ClipResult", "Clipper", "Value", "Norm", "GlobalNorm", "Adaptive", "AutoClip"]


@dataclass
class ClipResult:
    """What one call of :meth:`Clipper.clip` did.

    Attributes
    ----------
    grads : dict or list
        The clipped gradients, in the structure given (in place: the given arrays).
    norms, norms_after : list of float
        Each tensor's L2 norm before and after clipping (structure order).
    total_norm, total_norm_after : float
        The global L2 norm before and after (:func:`~nnref.clip.norms.global_l2_norm`).
    acted : bool
        Whether any entry changed.
    scale : float or None
        The one factor every tensor was multiplied by (global-norm clippers, finite
        total), else None. ``norms_after`` is then ``norms`` times it.
    """

    grads: object
    norms: list
    total_norm: float
    norms_after: list
    total_norm_after: float
    acted: bool
    scale: float | None = None


class Clipper:
    """Base class of the clippers: ``clipper(grads, params)`` or ``clipper.clip(...)``.

    Each subclass wraps one function of :mod:`nnref.clip`. Statistics of past calls:

    * ``n_calls``: calls so far; ``n_clipped``: calls where any entry changed;
    * ``last_result``: the :class:`ClipResult` of the last call (None before), and from
      it ``last_total_norm`` (the pre-clip global L2 norm) and ``last_clipped``;
    * ``threshold``: the current bound (a norm, or the value bound for :class:`Value`;
      None when there is no single bound), e.g. to draw a line on a plot of norms.

    ``params`` is used by :class:`Adaptive` only; the others accept and ignore it.
    ``reset()`` forgets the statistics. A call that changes no entry gives back the given
    arrays themselves (in a new dict or list), not copies.
    """

    def __init__(self) -> None:
        self.n_calls = 0
        self.n_clipped = 0
        self.last_result: ClipResult | None = None

    def reset(self) -> None:
        """Forget the statistics of past calls."""
        self.n_calls = 0
        self.n_clipped = 0
        self.last_result = None

    @property
    def last_total_norm(self) -> float | None:
        """The pre-clip global L2 norm of the last call (None before the first)."""
        return None if self.last_result is None else self.last_result.total_norm

    @property
    def last_clipped(self) -> bool | None:
        """Whether the last call changed any entry (None before the first)."""
        return None if self.last_result is None else self.last_result.acted

    @property
    def threshold(self) -> float | None:
        """The current bound, or None."""
        return None

    def __call__(self, grads, params=None, total_norm: float | None = None):
        """The clipped gradients (a new structure; see :meth:`clip`).

        Parameters
        ----------
        grads, params : dict or list of arrays
        total_norm : float, optional
            The gradients' global L2 norm if the caller has it. It is checked against the
            norm the clipper computes (``ValueError`` if they differ by more than 1e-4
            relative) and never used in its place.
        """
        if total_norm is not None and (isinstance(total_norm, bool) or not isinstance(total_norm, numbers.Real)):
            raise TypeError(f"total_norm: expected a number or None, got {describe(total_norm)}")
        measured = grad_norms(grads)
        if total_norm is not None and not _same_norm(float(total_norm), measured.total):
            raise ValueError(f"total_norm: expected the gradients' global L2 norm "
                             f"{measured.total!r}, got {total_norm!r}")
        return self.clip(grads, params, norms=measured).grads

    def clip(self, grads, params=None, *, inplace: bool = False, norms: GradNorms | None = None) -> ClipResult:
        """Clip ``grads`` and report what was done.

        Parameters
        ----------
        grads : dict or list of arrays
        params : dict or list of arrays, optional (:class:`Adaptive` only)
        inplace : bool
            Write the clipped values into the given arrays (they must be floating
            ndarrays), as PyTorch's ``clip_grad_norm_`` does.
        norms : GradNorms, optional
            :func:`~nnref.clip.norms.grad_norms` of these very arrays, if already
            measured (checked by identity, so a measurement of other arrays is refused).

        Returns
        -------
        ClipResult
        """
        keys, arrays = check_grads(grads, "grads")
        if inplace and any(a is not grads[k] for k, a in zip(keys, arrays)):
            raise TypeError("grads: inplace=True needs floating ndarrays to write into")
        if norms is None:
            norms = grad_norms(arrays)
        elif len(norms.arrays) != len(arrays) or any(a is not b for a, b in zip(norms.arrays, arrays)):
            raise ValueError("norms: expected grad_norms() of these very gradient arrays, got a "
                             "measurement of other arrays")
        out, acted, scale = self._apply(grads, keys, arrays, params, norms, inplace)
        if not acted:
            after = list(norms.norms)
        elif scale is not None:
            after = [n * scale for n in norms.norms]
        else:
            after = [l2_norm(g) for g in out]
        result = ClipResult(pack_like(grads, keys, out), list(norms.norms), norms.total, after,
                            global_l2_norm(after), bool(acted), scale)
        self.n_calls += 1
        self.n_clipped += result.acted
        self.last_result = result
        return result

    def _apply(self, grads, keys, arrays, params, norms, inplace):
        """``(clipped arrays, acted, scale or None)``: the subclass's rule, here applied
        through :meth:`_clip_arrays` and compared entry by entry."""
        new = self._clip_arrays(grads, keys, arrays, params, norms)
        acted = any(not np.array_equal(a, b, equal_nan=True) for a, b in zip(arrays, new))
        if not acted:
            return list(arrays), False, None
        if inplace:
            for a, b in zip(arrays, new):
                np.copyto(a, b)
            return list(arrays), True, None
        return new, True, None

    def _clip_arrays(self, grads, keys, arrays, params, norms) -> list:
        """The subclass's rule: new clipped arrays, in ``keys`` order."""
        raise NotImplementedError  # pragma: no cover - interface

    def __repr__(self) -> str:
        # The constructor's arguments that are required or differ from their default.
        sig = inspect.signature(type(self).__init__).parameters.values()
        shown = [
            f"{a.name}={getattr(self, a.name)!r}"
            for a in list(sig)[1:]
            if a.default is inspect.Parameter.empty or getattr(self, a.name) != a.default
        ]
        return f"{type(self).__name__}({', '.join(shown)})"


def _same_norm(hint: float, total: float) -> bool:
    """A caller's norm agrees with the computed one (to 1e-4 relative; NaN with NaN)."""
    if math.isnan(hint) or math.isnan(total):
        return math.isnan(hint) and math.isnan(total)
    return hint == total or math.isclose(hint, total, rel_tol=1e-4)


class Value(Clipper):
    """:func:`~nnref.clip.clip_by_value`: ``Value(v)`` clamps to ``[-v, v]``,
    ``Value(min_value=lo, max_value=hi)`` to ``[lo, hi]``; ``threshold`` is ``v`` (None
    for separate bounds)."""

    def __init__(self, clip_value: float | None = None, min_value: float | None = None,
                 max_value: float | None = None) -> None:
        self._lo, self._hi = value_bounds(clip_value, min_value, max_value)
        self.clip_value = None if clip_value is None else -self._lo
        self.min_value, self.max_value = min_value, max_value
        super().__init__()

    @property
    def threshold(self) -> float | None:
        """The symmetric bound ``v`` (None for separate bounds)."""
        return self.clip_value

    def _apply(self, grads, keys, arrays, params, norms, inplace):
        """``(clipped arrays, acted, scale or None)`` for this rule (see :meth:`Clipper._apply`)."""
        # Acted iff some entry lies outside [lo, hi] (NaN compares False: it stays NaN).
        acted = any(g.size and (np.fmin.reduce(g, axis=None) < self._lo or np.fmax.reduce(g, axis=None) > self._hi)
                    for g in arrays)
        if not acted:
            return list(arrays), False, None
        if inplace:
            return [np.clip(g, self._lo, self._hi, out=g) for g in arrays], True, None
        return clip_grads_by_value(arrays, self._lo, self._hi), True, None


class Norm(Clipper):
    """:func:`~nnref.clip.clip_by_norm` (each tensor's L2 norm) with ``max_norm``."""

    def __init__(self, max_norm: float) -> None:
        self.max_norm = check_nonnegative(max_norm, "max_norm")
        super().__init__()

    @property
    def threshold(self) -> float:
        """``max_norm``."""
        return self.max_norm

    def _clip_arrays(self, grads, keys, arrays, params, norms):
        """The rule applied to new arrays (see :meth:`Clipper._clip_arrays`)."""
        for k, g, n in zip(keys, arrays, norms.norms):
            check_total(n, self.max_norm, [k], [g], 2.0, False)
        with np.errstate(invalid="ignore"):
            return [clip_grad_by_norm(g, self.max_norm) for g in arrays]


class GlobalNorm(Clipper):
    """:func:`~nnref.clip.clip_by_global_norm` (PyTorch ``clip_grad_norm_``) with fixed
    arguments. With ``norm_type=2`` and a finite total it scales by
    ``coef = min(max_norm / (total + eps), 1)`` using the L2 norms it measured."""

    def __init__(self, max_norm: float, norm_type: float = 2.0, eps: float = 1e-6,
                 error_if_nonfinite: bool = False) -> None:
        self.max_norm = check_nonnegative(max_norm, "max_norm")
        self.norm_type = check_norm_type(norm_type)
        self.eps = check_nonnegative(eps, "eps")
        self.error_if_nonfinite = bool(error_if_nonfinite)
        super().__init__()

    @property
    def threshold(self) -> float:
        """``max_norm``."""
        return self.max_norm

    def _apply(self, grads, keys, arrays, params, norms, inplace):
        """``(clipped arrays, acted, scale or None)`` for this rule (see :meth:`Clipper._apply`)."""
        if self.norm_type != 2.0 or not math.isfinite(norms.total):
            return super()._apply(grads, keys, arrays, params, norms, inplace)
        return _scale_by(arrays, clip_coef(norms.total, self.max_norm, self.eps), inplace)

    def _clip_arrays(self, grads, keys, arrays, params, norms):
        """The rule applied to new arrays (see :meth:`Clipper._clip_arrays`)."""
        clipped, _ = clip_by_global_norm(grads, self.max_norm, self.norm_type, self.eps,
                                         self.error_if_nonfinite)
        return [clipped[k] for k in keys]


def _scale_by(arrays: list, coef: float, inplace: bool):
    """``(arrays * coef, acted, coef)``; the arrays themselves when nothing changes."""
    out, acted = scale_grads(arrays, coef, inplace)
    return (out if acted or inplace else list(arrays)), acted, coef


class Adaptive(Clipper):
    """:func:`~nnref.clip.adaptive_clip` (AGC); needs ``params``. ``threshold`` is None:
    the limits are per unit, ``clipping * max(||W_i||, eps)``, not one number."""

    def __init__(self, clipping: float = 0.01, eps: float = 1e-3, skip=(), units: str = "per_unit") -> None:
        self.clipping = check_nonnegative(clipping, "clipping")
        self.eps = check_nonnegative(eps, "eps")
        self.skip = check_names(skip)
        if units not in AGC_UNITS:
            raise ValueError(f"units: expected one of {AGC_UNITS}, got {units!r}")
        self.units = units
        super().__init__()

    def _clip_arrays(self, grads, keys, arrays, params, norms):
        """The rule applied to new arrays (see :meth:`Clipper._clip_arrays`)."""
        if params is None:
            raise ValueError("params: adaptive clipping needs the parameters (same keys as grads), got None")
        out = adaptive_clip(grads, params, self.clipping, self.eps, self.skip, self.units)
        return [out[k] for k in keys]


class AutoClip(Clipper):
    """AutoClip (Seetharaman et al. 2020, arXiv 2007.14469): a threshold from history.

    Each call appends the current global L2 norm ``n_t`` to ``history`` and clips by
    global norm (PyTorch semantics, ``eps``) at::

        threshold_t = percentile(history = [n_1, ..., n_t], percentile)

    with ``numpy.percentile``'s default linear interpolation, as in the authors' code.

    Parameters
    ----------
    percentile : float in [0, 100]
        Default 10, the authors' recommendation.
    eps : float >= 0

    Notes
    -----
    ``threshold`` is the last threshold (None before the first call); ``reset()`` also
    clears the history. A non-finite norm raises :class:`NonFiniteNormError` and is not
    recorded: in the authors' code it would enter the history and make every later
    threshold NaN.
    """

    def __init__(self, percentile: float = 10.0, eps: float = 1e-6) -> None:
        self.percentile = check_nonnegative(percentile, "percentile")
        if self.percentile > 100:
            raise ValueError(f"percentile: expected a number in [0, 100], got {self.percentile}")
        self.eps = check_nonnegative(eps, "eps")
        super().__init__()
        self.history: list[float] = []
        self._threshold: float | None = None

    def reset(self) -> None:
        """Forget the statistics and the history of norms."""
        super().reset()
        self.history = []
        self._threshold = None

    @property
    def threshold(self) -> float | None:
        """The last threshold (None before the first call)."""
        return self._threshold

    def _apply(self, grads, keys, arrays, params, norms, inplace):
        """``(clipped arrays, acted, scale or None)`` for this rule (see :meth:`Clipper._apply`)."""
        total = norms.total
        if not math.isfinite(total):
            raise NonFiniteNormError(
                f"grads: the global norm is {total}; AutoClip refuses to record it "
                f"(it would poison every later percentile); non-finite tensors: "
                f"{describe_nonfinite('grads', keys, arrays)}"
            )
        self.history.append(total)
        self._threshold = float(np.percentile(self.history, self.percentile))
        return _scale_by(arrays, clip_coef(total, self._threshold, self.eps), inplace)
