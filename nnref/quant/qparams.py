"""Choosing quantization parameters: from an observed real range to a :class:`QParams`.

The rules that turn an observed real range into the scale and zero point of an integer
grid (:func:`affine_qparams`, :func:`symmetric_qparams`, and the checked
:func:`choose_qparams`), and named bundles of those rules (:class:`QScheme` and the
TensorFlow Lite presets). The grid type itself, :class:`QParams`, and :func:`qrange` are
in :mod:`nnref.quant.grid` and re-exported here; the arithmetic that uses them is in
:mod:`nnref.quant.ops`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from nnref._checks import as_float_array, describe
from nnref.quant.grid import (
    FLOAT32_MAX,
    FLOAT32_TINY,
    MAX_BITS,
    MIN_BITS,
    QParams,
    check_axis,
    check_bool,
    qrange,
    symmetric_zero_point,
)

__all__ = [
    "QParams",
    "QScheme",
    "qrange",
    "choose_qparams",
    "symmetric_zero_point",
    "get_scheme",
    "SCHEMES",
    "TFLITE_INT8_WEIGHTS",
    "TFLITE_INT8_WEIGHTS_PER_TENSOR",
    "TFLITE_INT8_ACTIVATIONS",
    "MIN_BITS",
    "MAX_BITS",
    "check_axis",
    "check_bool",
    "affine_qparams",
    "symmetric_qparams",
]

_CONVENTIONS = ("tflite", "pytorch")


def _range_arrays(min_val, max_val, axis) -> tuple[np.ndarray, np.ndarray]:
    """Check min_val/max_val (scalars, or 1-D with an axis) and return them as float64."""
    mn = as_float_array(min_val, "min_val", ndim=(0, 1), dtype=np.float64)
    mx = as_float_array(max_val, "max_val", ndim=(0, 1), dtype=np.float64)
    if mn.shape != mx.shape:
        raise ValueError(
            f"max_val: expected the shape of min_val {mn.shape}, got {mx.shape}"
        )
    if mn.ndim == 1 and axis is None:
        raise ValueError(
            f"axis: per-channel ranges (min_val of shape {mn.shape}) need the channel axis, "
            "got None"
        )
    if mn.ndim == 0 and axis is not None:
        raise ValueError(
            f"axis: scalar min_val/max_val give per-tensor parameters, which take axis=None, "
            f"got {axis}"
        )
    bad = np.flatnonzero(np.atleast_1d(mn > mx))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"min_val, max_val: expected min_val <= max_val, got min_val="
            f"{np.atleast_1d(mn)[i]!r} > max_val={np.atleast_1d(mx)[i]!r}"
            + (f" at channel {i}" if mn.ndim else "")
        )
    return mn, mx


def affine_qparams(min_val, max_val, qmin: int, qmax: int) -> tuple[np.ndarray, np.ndarray]:
    """Scale and zero point of an affine grid covering ``[min_val, max_val]`` (plain).

    Formula (TensorFlow Lite activations; PyTorch ``MinMaxObserver``, per_tensor_affine)::

        mn, mx     = min(min_val, 0), max(max_val, 0)        # real 0 exactly representable
        scale      = (mx - mn) / (qmax - qmin)                # float64, stored as float32
        zero_point = clamp(qmin - round_half_even(mn / scale), qmin, qmax)

    ``mn / scale`` uses the stored float32 scale. A scale below float32's smallest normal
    number (e.g. ``mn == mx == 0``) becomes 1.0 with zero point ``clamp(0, qmin, qmax)``
    (onnxruntime's ``compute_scale_zp``).

    Parameters
    ----------
    min_val, max_val : float or ndarray of float64
        One range, or one per channel (same shapes).
    qmin, qmax : int

    Returns
    -------
    scale : ndarray of float32
    zero_point : ndarray of int64
        Both of ``min_val``'s shape.
    """
    mn, mx = np.minimum(min_val, 0.0), np.maximum(max_val, 0.0)
    with np.errstate(over="ignore"):  # a range beyond float32 gives inf: the caller refuses it
        scale64 = (mx - mn) / (qmax - qmin)
        degenerate = scale64 < FLOAT32_TINY
        scale = np.where(degenerate, 1.0, scale64).astype(np.float32)
    zero_point = np.where(degenerate, 0, qmin - np.round(mn / scale.astype(np.float64)))
    return scale, np.clip(zero_point, qmin, qmax).astype(np.int64)


def symmetric_qparams(min_val, max_val, qmin: int, qmax: int, zero_point: int = 0,
                      convention: str = "tflite") -> tuple[np.ndarray, np.ndarray]:
    """Scale and zero point of a symmetric grid covering ``[min_val, max_val]`` (plain).

    Formula, with ``a = max(-min(min_val, 0), max(max_val, 0))``::

        "tflite":  scale = a / (qmax - zero_point)        # max|w| / 127 for int8 weights
        "pytorch": scale = a / ((qmax - qmin) / 2)        # a / 127.5 for full-range int8

    (TensorFlow Lite's weight quantization; PyTorch's symmetric observers.) The zero point
    is ``zero_point`` everywhere (0 signed, ``2**(bits-1)`` unsigned). A scale below
    float32's smallest normal number becomes 1.0.

    Parameters
    ----------
    min_val, max_val : float or ndarray of float64
    qmin, qmax : int
    zero_point : int
    convention : {"tflite", "pytorch"}

    Returns
    -------
    scale : ndarray of float32
    zero_point : ndarray of int64
    """
    amax = np.maximum(-np.minimum(min_val, 0.0), np.maximum(max_val, 0.0))
    levels = (qmax - zero_point) if convention == "tflite" else (qmax - qmin) / 2
    scale64 = amax / levels
    with np.errstate(over="ignore"):
        scale = np.where(scale64 < FLOAT32_TINY, 1.0, scale64).astype(np.float32)
    return scale, np.full(scale.shape, zero_point, dtype=np.int64)


def choose_qparams(
    min_val,
    max_val,
    bits: int = 8,
    signed: bool = True,
    symmetric: bool = False,
    narrow_range: bool = False,
    axis: int | None = None,
    symmetric_convention: str = "tflite",
) -> QParams:
    """Scale and zero point that cover the observed real range ``[min_val, max_val]``.

    ``min_val``/``max_val`` are scalars (per-tensor parameters) or 1-D arrays of length
    ``C`` (per-channel parameters; then ``axis``, the channel axis of the tensor, is
    required and is recorded in the result). Computed in float64, stored in float32.

    With ``(qmin, qmax) = qrange(bits, signed, narrow_range)``:

    1. Widen the range to contain 0, so real 0 (ReLU outputs, zero padding) is exactly
       representable: ``mn = min(min_val, 0)``, ``mx = max(max_val, 0)``
       (TensorFlow Lite, PyTorch observers, onnxruntime all do this).
    2. Affine (``symmetric=False``; TensorFlow Lite activations, PyTorch
       ``per_tensor_affine``)::

           scale      = (mx - mn) / (qmax - qmin)
           zero_point = clamp(qmin - round_half_even(mn / scale), qmin, qmax)

       ``mn / scale`` uses the float32 scale that is stored; rounding is half to even, as
       PyTorch's observers (``torch.round``). TensorFlow Lite's converter rounds half away
       from zero here, so at an exact tie (e.g. the range [-3.5/16, 251.5/16]) its zero
       point is one lower than this one. The clamp only absorbs float rounding.
    3. Symmetric (``symmetric=True``): ``zero_point = z0 = symmetric_zero_point(bits,
       signed)`` (0 signed; ``2**(bits-1)`` unsigned, i.e. 128 for uint8 as PyTorch's
       ``quint8`` symmetric observers and onnxruntime) and, with ``a = max(-mn, mx)``:

       - ``symmetric_convention="tflite"``: ``scale = a / (qmax - z0)``, i.e.
         ``max|w| / 127`` for int8 (TensorFlow Lite's weight quantization);
       - ``symmetric_convention="pytorch"``: ``scale = a / ((qmax - qmin) / 2)``, i.e.
         ``a / 127.5`` for full-range int8 (PyTorch's symmetric observers). The largest
         positive value then sits half a step beyond ``qmax`` and is clamped by up to
         ``scale / 2``.

    4. Degenerate ranges: if the scale is below float32's smallest normal number
       (``1.1754944e-38``; in particular the zero-width range ``mn == mx == 0``), use
       ``scale = 1.0`` and ``zero_point = clamp(0, qmin, qmax)`` for affine, ``z0`` for
       symmetric. This is onnxruntime's rule (``compute_scale_zp``: scale 1, zero point 0).
       It never divides by zero and keeps subnormal scales (whose reciprocal overflows)
       out. PyTorch instead clamps the scale up to float32 eps (1.19e-7) and TensorFlow
       Lite stores 0; nnref does neither.

    Returns a ``QParams`` with ``scheme`` ``"affine"`` or ``"symmetric"``. Every x in
    ``[mn, mx]`` is within ``scale / 2`` of a grid point, up to the float32 rounding of
    the scale accumulated over the grid (at most ``2**-24 * (mx - mn)``).

    Raises ``ValueError`` for ``bits`` outside [2, 16], ``min_val > max_val``, NaN/inf,
    mismatched per-channel lengths, an axis given for scalar ranges (or missing for
    arrays), an unknown ``symmetric_convention``, or a range so wide that the float32 grid
    overflows; ``TypeError`` for non-numeric or non-bool arguments.

    Parameters
    ----------
    min_val, max_val : float or array_like of float
        Scalars (per tensor) or 1-D of length C (per channel).
    bits : int
    signed : bool
    symmetric : bool
    narrow_range : bool
    axis : int or None
        The channel axis (per channel only).
    symmetric_convention : {"tflite", "pytorch"}

    Returns
    -------
    QParams
    """
    qmin, qmax = qrange(bits, signed, narrow_range)
    symmetric = check_bool(symmetric, "symmetric")
    if symmetric_convention not in _CONVENTIONS:
        raise ValueError(
            f"symmetric_convention: expected one of {_CONVENTIONS}, got {symmetric_convention!r}"
        )
    axis = check_axis(axis)
    mn, mx = _range_arrays(min_val, max_val, axis)

    if symmetric:
        z0 = symmetric_zero_point(bits, signed)
        scale, zero_point = symmetric_qparams(mn, mx, qmin, qmax, z0, symmetric_convention)
    else:
        scale, zero_point = affine_qparams(mn, mx, qmin, qmax)
    grid_end = scale.astype(np.float64) * np.maximum(qmax - zero_point, zero_point - qmin)
    if not np.all(np.isfinite(scale)) or np.any(grid_end > FLOAT32_MAX):
        raise ValueError(
            f"min_val, max_val: range too wide: the float32 scale or the grid's ends overflow "
            f"float32 (min_val down to {mn.min()!r}, max_val up to {mx.max()!r})"
        )
    return QParams(
        scale=scale,
        zero_point=zero_point,
        qmin=qmin,
        qmax=qmax,
        bits=bits,
        signed=signed,
        axis=axis,
        scheme="symmetric" if symmetric else "affine",
        narrow_range=narrow_range,
    )


@dataclass(frozen=True)
class QScheme:
    """A named bundle of ``choose_qparams`` settings: how to quantize one kind of tensor.

    Fields mirror ``choose_qparams``; ``per_channel`` with ``channel_axis`` (default -1:
    the output columns of a weight matrix of shape ``(in, out)``) asks for one scale per
    slice along that axis.
    """

    bits: int = 8
    signed: bool = True
    symmetric: bool = False
    narrow_range: bool = False
    per_channel: bool = False
    channel_axis: int = -1
    symmetric_convention: str = "tflite"

    def __post_init__(self) -> None:
        qrange(self.bits, self.signed, self.narrow_range)  # checks bits, signed, narrow_range
        check_bool(self.symmetric, "symmetric")
        check_bool(self.per_channel, "per_channel")
        check_axis(self.channel_axis, "channel_axis", allow_none=False)
        if self.symmetric_convention not in _CONVENTIONS:
            raise ValueError(
                f"symmetric_convention: expected one of {_CONVENTIONS}, "
                f"got {self.symmetric_convention!r}"
            )

    def qparams_kwargs(self) -> dict:
        """The ``choose_qparams`` keyword arguments of this scheme (without ``axis``)."""
        return dict(
            bits=self.bits,
            signed=self.signed,
            symmetric=self.symmetric,
            narrow_range=self.narrow_range,
            symmetric_convention=self.symmetric_convention,
        )

    def choose(self, min_val, max_val) -> QParams:
        """``choose_qparams(min_val, max_val, ...)`` with this scheme's settings.

        Per channel, ``min_val``/``max_val`` are 1-D (one entry per channel) and the result
        records ``axis=channel_axis``; per tensor they are scalars.

        Parameters
        ----------
        min_val, max_val : float or ndarray

        Returns
        -------
        QParams
        """
        axis = self.channel_axis if self.per_channel else None
        return choose_qparams(min_val, max_val, axis=axis, **self.qparams_kwargs())

    def for_tensor(self, x) -> QParams:
        """Parameters covering the values of ``x``: its min and max, per channel along
        ``channel_axis`` when ``per_channel`` (reducing over every other axis).

        Parameters
        ----------
        x : array_like of float
            Finite.

        Returns
        -------
        QParams

        Raises
        ------
        ValueError
            Naming ``x`` or ``channel_axis``.
        """
        x = as_float_array(x, "x")
        if not self.per_channel:
            return self.choose(x.min(), x.max())
        if not -x.ndim <= self.channel_axis < x.ndim:
            raise ValueError(
                f"channel_axis: expected an axis of x (shape {x.shape}), got {self.channel_axis}"
            )
        others = tuple(i for i in range(x.ndim) if i != self.channel_axis % x.ndim)
        return self.choose(x.min(axis=others), x.max(axis=others))

    def with_bits(self, bits: int) -> QScheme:
        """The same scheme at another bit width.

        Parameters
        ----------
        bits : int

        Returns
        -------
        QScheme
        """
        return dataclasses.replace(self, bits=bits)


TFLITE_INT8_WEIGHTS = QScheme(
    bits=8, signed=True, symmetric=True, narrow_range=True, per_channel=True,
    channel_axis=-1, symmetric_convention="tflite",
)
"""TensorFlow Lite int8 weights: symmetric, [-127, 127], one scale per output channel."""

TFLITE_INT8_WEIGHTS_PER_TENSOR = dataclasses.replace(TFLITE_INT8_WEIGHTS, per_channel=False)
"""TensorFlow Lite int8 weights with a single scale (the spec's per-tensor option)."""

TFLITE_INT8_ACTIVATIONS = QScheme(
    bits=8, signed=True, symmetric=False, narrow_range=False, per_channel=False,
)
"""TensorFlow Lite int8 activations: affine, [-128, 127], per tensor."""

SCHEMES: dict[str, QScheme] = {
    "tflite_int8_weights": TFLITE_INT8_WEIGHTS,
    "tflite_int8_weights_per_tensor": TFLITE_INT8_WEIGHTS_PER_TENSOR,
    "tflite_int8_activations": TFLITE_INT8_ACTIVATIONS,
}


def get_scheme(name_or_scheme: str | QScheme) -> QScheme:
    """A ``QScheme`` given itself or one of the preset names in ``SCHEMES``.

    Parameters
    ----------
    name_or_scheme : str or QScheme

    Returns
    -------
    QScheme

    Raises
    ------
    TypeError, ValueError
        Naming ``scheme``.
    """
    if isinstance(name_or_scheme, QScheme):
        return name_or_scheme
    if not isinstance(name_or_scheme, str):
        raise TypeError(
            f"scheme: expected a QScheme or a preset name, got {describe(name_or_scheme)}"
        )
    try:
        return SCHEMES[name_or_scheme]
    except KeyError:
        raise ValueError(
            f"scheme: expected one of {sorted(SCHEMES)}, got {name_or_scheme!r}"
        ) from None
