"""Observers (calibration): watch real tensors, then choose quantization parameters.

An observer is fed batches with ``observe(x)`` (any number of times) and summarises them as
a real range ``[min_val, max_val]``; ``qparams(...)`` turns that range into a ``QParams``
with ``choose_qparams`` (which first widens the range to contain 0). The observers differ
only in how the range is chosen:

- ``MinMaxObserver``: the running min and max of everything seen.
- ``MovingAverageMinMaxObserver``: an exponential moving average of batch min/max.
- ``PerChannelMinMaxObserver``: running min/max of every slice along one axis.
- ``PercentileObserver``: the (100-p)-th and p-th percentiles, ignoring rare outliers.
- ``MSEObserver``: the shrunk min-max range whose fake quantization has the least mean
  squared error on the observed values.

(PyTorch ``torch.ao.quantization.observer``. Wu et al. 2020, "Integer Quantization for
Deep Learning Inference", arXiv 2004.09602, compare max, percentile and entropy
calibration.)
NaN or inf in an observed batch is an error: a calibration range must never be NaN.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from nnref._checks import as_float_array, as_rng, check_int_in_range, check_positive
from nnref.quant.ops import check_rounding, fake_quantize
from nnref.quant.qparams import QParams, QScheme, check_axis, choose_qparams, get_scheme

__all__ = [
    "Observer",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "PerChannelMinMaxObserver",
    "PercentileObserver",
    "MSEObserver",
    "MSESearch",
]


class Observer:
    """Base class: ``observe(x) -> self`` any number of times, then ``qparams(...)``.

    ``min_val``/``max_val`` are the range the observer would quantize to (``None`` before
    the first ``observe``): Python floats per tensor, float64 arrays of shape ``(C,)`` per
    channel. ``count`` is the number of values observed so far.

    ``qparams(scheme=None, **kwargs)`` calls ``choose_qparams(min_val, max_val, **kwargs)``;
    instead of keyword arguments a ``QScheme`` or a preset name (``"tflite_int8_weights"``,
    ...) may be given. The observer fixes per-tensor vs per-channel and the axis, so a
    scheme must agree with it.
    """

    #: channel axis for per-channel observers, None for per-tensor ones
    axis: int | None = None

    def __init__(self) -> None:
        self.count = 0
        self._ndim: int | None = None

    # -- subclasses implement these two --
    def _update(self, x: np.ndarray) -> None:
        raise NotImplementedError

    def _range(self) -> tuple:
        raise NotImplementedError

    @property
    def min_val(self):
        """The smallest value of the range observed so far (None before any)."""
        return None if self.count == 0 else self._range()[0]

    @property
    def max_val(self):
        """The largest value of the range observed so far (None before any)."""
        return None if self.count == 0 else self._range()[1]

    def observe(self, x) -> Observer:
        """Record a batch ``x`` (a non-empty finite real array of any shape); returns self.

        Parameters
        ----------
        x : array_like of float
            Finite.

        Returns
        -------
        Observer
            ``self``.

        Raises
        ------
        TypeError, ValueError
            Naming the argument.
        """
        x = as_float_array(x, "x")
        self._update(x)
        self.count += x.size
        self._ndim = x.ndim
        return self

    def __call__(self, x) -> Observer:
        return self.observe(x)

    def _choose_kwargs(self, scheme, kwargs: dict) -> dict:
        """Resolve ``qparams``'s arguments into ``choose_qparams`` keyword arguments."""
        if self.count == 0:
            raise ValueError(
                f"{type(self).__name__}.qparams: no data observed yet; call observe(x) first"
            )
        if "axis" in kwargs:
            raise TypeError(f"axis: set by the observer, not by qparams(); got {kwargs['axis']!r}")
        if scheme is None:
            return dict(kwargs)
        if kwargs:
            raise TypeError(
                f"scheme: give either a scheme or choose_qparams keyword arguments, "
                f"got both (scheme={scheme!r}, {sorted(kwargs)})"
            )
        s = get_scheme(scheme)
        if s.per_channel != (self.axis is not None):
            want = "a per-channel" if self.axis is not None else "a per-tensor"
            raise ValueError(f"scheme: {type(self).__name__} needs {want} scheme, got {s}")
        if s.per_channel and not (
            -self._ndim <= s.channel_axis < self._ndim
            and s.channel_axis % self._ndim == self.axis % self._ndim
        ):
            raise ValueError(
                f"scheme: channel_axis {s.channel_axis} differs from the observer's axis "
                f"{self.axis} for the observed {self._ndim}-D tensors"
            )
        return s.qparams_kwargs()

    def qparams(self, scheme: str | QScheme | None = None, **kwargs) -> QParams:
        """``choose_qparams(min_val, max_val, axis=self.axis, **kwargs)`` (or the scheme's).

        Parameters
        ----------
        scheme : str or QScheme, optional
        **kwargs
            ``choose_qparams`` keyword arguments (instead of ``scheme``).

        Returns
        -------
        QParams

        Raises
        ------
        ValueError
            Nothing observed yet, or a scheme that disagrees with the observer.
        """
        kw = self._choose_kwargs(scheme, kwargs)
        return choose_qparams(self.min_val, self.max_val, axis=self.axis, **kw)

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(count={self.count}, min_val={self.min_val}, max_val={self.max_val})"


class MinMaxObserver(Observer):
    """Running min and max: ``min_val = min over all batches of min(x)``, max alike.

    PyTorch's ``MinMaxObserver``. The range contains every observed value, so nothing is
    clamped on the calibration data, and one outlier stretches the grid for everyone.
    """

    def __init__(self) -> None:
        super().__init__()
        self._min = np.inf
        self._max = -np.inf

    def _update(self, x: np.ndarray) -> None:
        self._min = min(self._min, float(x.min()))
        self._max = max(self._max, float(x.max()))

    def _range(self) -> tuple[float, float]:
        return self._min, self._max


class MovingAverageMinMaxObserver(Observer):
    """Exponential moving average of batch min/max (PyTorch's MovingAverageMinMaxObserver).

    The first batch sets ``min_val = min(x)``, ``max_val = max(x)``; every later batch
    moves them a fraction ``c = averaging_constant`` (in (0, 1], PyTorch's default 0.01)
    of the way to the batch's values::

        min_val += c * (min(x) - min_val)        max_val += c * (max(x) - max_val)

    Used for activations in quantization-aware training, where the range drifts as the
    weights learn; it need not contain every observed value.
    """

    def __init__(self, averaging_constant: float = 0.01) -> None:
        super().__init__()
        c = check_positive(averaging_constant, "averaging_constant")
        if c > 1:
            raise ValueError(f"averaging_constant: expected a number in (0, 1], got {c}")
        self.averaging_constant = c
        self._min = self._max = None

    def _update(self, x: np.ndarray) -> None:
        bmin, bmax = float(x.min()), float(x.max())
        if self._min is None:
            self._min, self._max = bmin, bmax
            return
        c = self.averaging_constant
        self._min = self._min + c * (bmin - self._min)
        self._max = self._max + c * (bmax - self._max)

    def _range(self) -> tuple[float, float]:
        return self._min, self._max


class PerChannelMinMaxObserver(Observer):
    """Running min/max of every slice ``x.take(c, axis)``: per-channel ranges.

    ``min_val[c] = min of x.take(c, axis)`` over all batches (max alike), reducing over every
    axis except ``axis`` (PyTorch's ``PerChannelMinMaxObserver``; weights of shape
    ``(in, out)`` use ``axis=-1``, one range per output channel). ``qparams`` gives
    per-channel ``QParams`` recording this ``axis``. Every batch must have the same number
    of channels.
    """

    def __init__(self, axis: int = -1) -> None:
        super().__init__()
        self.axis = check_axis(axis, allow_none=False)
        self._min: np.ndarray | None = None
        self._max: np.ndarray | None = None

    def _update(self, x: np.ndarray) -> None:
        if not -x.ndim <= self.axis < x.ndim:
            raise ValueError(
                f"axis: expected an axis of x (shape {x.shape}, in [{-x.ndim}, {x.ndim - 1}]), "
                f"got {self.axis}"
            )
        others = tuple(i for i in range(x.ndim) if i != self.axis % x.ndim)
        bmin = x.min(axis=others).astype(np.float64)
        bmax = x.max(axis=others).astype(np.float64)
        if self._min is None:
            self._min, self._max = bmin, bmax
            return
        if bmin.shape != self._min.shape:
            raise ValueError(
                f"x: expected {self._min.shape[0]} channels along axis {self.axis} (as in "
                f"earlier batches), got shape {x.shape}"
            )
        self._min = np.minimum(self._min, bmin)
        self._max = np.maximum(self._max, bmax)

    def _range(self) -> tuple[np.ndarray, np.ndarray]:
        return self._min.copy(), self._max.copy()


class _SamplingObserver(Observer):
    """Keeps (a uniform sample of) the observed values, for percentile and MSE searches.

    At most ``max_samples`` values are kept. Beyond that the kept set is a uniform random
    sample without replacement of everything observed: each value gets an independent
    uniform key from the seeded generator and the ``max_samples`` smallest keys survive
    ("bottom-k" sampling, a vectorised reservoir). Until the cap is reached every value is
    kept and the seed plays no role. The exact running min/max is tracked separately.
    """

    def __init__(self, max_samples: int, seed) -> None:
        super().__init__()
        self.max_samples = check_int_in_range(max_samples, "max_samples", 1, 2**31 - 1)
        self._rng = as_rng(seed)
        self._values = np.empty(0, dtype=np.float64)
        self._keys = np.empty(0, dtype=np.float64)
        self._min = np.inf
        self._max = -np.inf

    @property
    def samples(self) -> np.ndarray:
        """The kept values (float64, 1-D, in no particular order; a copy)."""
        return self._values.copy()

    def _update(self, x: np.ndarray) -> None:
        self._min = min(self._min, float(x.min()))
        self._max = max(self._max, float(x.max()))
        values = np.concatenate([self._values, x.ravel().astype(np.float64)])
        keys = np.concatenate([self._keys, self._rng.random(x.size)])
        if values.size > self.max_samples:
            keep = np.argpartition(keys, self.max_samples - 1)[: self.max_samples]
            values, keys = values[keep], keys[keep]
        self._values, self._keys = values, keys


class PercentileObserver(_SamplingObserver):
    """Range from percentiles: ``[P_(100-p)(v), P_p(v)]`` of the kept values ``v``.

    ``percentile`` p in [50, 100] (default 99.99): a fraction ``(100 - p) / 100`` of the
    values at each end is clamped instead of stretching the grid (percentile calibration,
    as evaluated by Wu et al. 2020). Percentiles use numpy's default linear interpolation.
    With ``p = 100`` and no subsampling the range is the min-max range. At most
    ``max_samples`` (default 2**20) values are kept, as a seeded uniform sample (see
    ``_SamplingObserver``).
    """

    def __init__(self, percentile: float = 99.99, max_samples: int = 2**20, seed=0) -> None:
        super().__init__(max_samples, seed)
        p = check_positive(percentile, "percentile")
        if not 50 <= p <= 100:
            raise ValueError(f"percentile: expected a number in [50, 100], got {p}")
        self.percentile = p

    def _range(self) -> tuple[float, float]:
        lo, hi = np.percentile(self._values, [100 - self.percentile, self.percentile])
        return float(lo), float(hi)


class MSESearch(NamedTuple):
    """The error curve of an ``MSEObserver`` search (for plotting)."""

    alphas: np.ndarray   # shrink factors, increasing, last one 1.0
    errors: np.ndarray   # mean squared fake-quantization error for each alpha
    best_alpha: float
    best_error: float


class MSEObserver(_SamplingObserver):
    """Range minimising the mean squared fake-quantization error of the observed values.

    With ``[mn, mx]`` the observed min-max range and ``v`` the kept values, try the shrunk
    ranges ``[a * mn, a * mx]`` for ``a`` in ``{1/n, 2/n, ..., 1}`` (``n = num_candidates``)
    and keep the one minimising::

        E(a) = mean((v - fake_quantize(v, choose_qparams(a * mn, a * mx, ...)))**2)

    Ties go to the largest ``a`` (less clamping of unseen data). Because ``a = 1`` (the
    min-max range) is always a candidate, the error is never above ``MinMaxObserver``'s on
    the kept values. The curve is kept in ``last_search`` (an ``MSESearch``). PyTorch's
    ``HistogramObserver`` minimises the same L2 error over a histogram instead of the
    values; TensorRT's entropy calibrator instead minimises the KL divergence between the
    histograms of the float and the quantized values (Wu et al. 2020 compare the two).

    ``min_val``/``max_val`` are the observed min-max range (the search's starting point);
    ``rounding`` is the rounding used to evaluate the error. At most ``max_samples``
    (default 2**16, so the search stays fast) values are kept as a seeded uniform sample.
    """

    def __init__(
        self,
        num_candidates: int = 100,
        max_samples: int = 2**16,
        seed=0,
        rounding: str = "half_even",
    ) -> None:
        super().__init__(max_samples, seed)
        self.num_candidates = check_int_in_range(num_candidates, "num_candidates", 1, 10**6)
        check_rounding(rounding)
        self.rounding = rounding
        self.last_search: MSESearch | None = None

    def _range(self) -> tuple[float, float]:
        return self._min, self._max

    def qparams(self, scheme: str | QScheme | None = None, **kwargs) -> QParams:
        """The ``QParams`` of the best shrunk range (see the class docstring).

        Parameters
        ----------
        scheme : str or QScheme, optional
        **kwargs
            ``choose_qparams`` keyword arguments.

        Returns
        -------
        QParams
        """
        kw = self._choose_kwargs(scheme, kwargs)
        n = self.num_candidates
        alphas = np.arange(1, n + 1, dtype=np.float64) / n  # n / n == 1.0 exactly
        candidates = [choose_qparams(a * self._min, a * self._max, **kw) for a in alphas]
        v = self._values
        errors = np.array(
            [np.mean((v - fake_quantize(v, qp, self.rounding)) ** 2) for qp in candidates]
        )
        best = n - 1 - int(np.argmin(errors[::-1]))  # the last minimum: the largest alpha
        self.last_search = MSESearch(alphas, errors, float(alphas[best]), float(errors[best]))
        return candidates[best]
