"""Quantization parameters: the integer grid a real tensor is mapped onto.

An affine quantizer (Jacob et al. 2018, arXiv 1712.05877, eq. 1) represents a real value
by an integer ``q`` in ``[qmin, qmax]``::

    real = scale * (q - zero_point)

``scale`` (a positive float32, as every engine stores it) is the step between neighbouring
grid points, ``zero_point`` (an integer in ``[qmin, qmax]``) is the integer that stands for
real 0. Per-tensor parameters hold one scale and one zero point; per-channel parameters hold
one of each for every slice of the tensor along ``axis``.

This module holds the parameters (``QParams``), the integer range of a bit width
(``qrange``), the rules that turn an observed real range into parameters
(``choose_qparams``) and named bundles of those rules (``QScheme`` and the TensorFlow Lite
presets). The arithmetic that uses them is in ``nnref.quant.ops``.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass

import numpy as np

from nnref._checks import as_float_array, check_int_in_range, describe

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

MIN_BITS = 2
MAX_BITS = 16

_SCHEMES = ("affine", "symmetric")
_CONVENTIONS = ("tflite", "pytorch")
# Smallest positive normal float32 (1.1754944e-38). A scale below it is replaced by 1.0,
# as onnxruntime's quantization tools do (see choose_qparams).
_FLOAT32_TINY = float(np.finfo(np.float32).tiny)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_bool(value, name: str) -> bool:
    """Return ``value`` as a bool if it is one, else raise ``TypeError`` naming ``name``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {describe(value)}")
    return bool(value)


def check_axis(axis, name: str = "axis", allow_none: bool = True) -> int | None:
    """An axis is an int (negative counts from the end), or None where allowed."""
    if axis is None and allow_none:
        return None
    if isinstance(axis, bool) or not isinstance(axis, (numbers.Integral, np.integer)):
        want = "an int or None" if allow_none else "an int"
        raise TypeError(f"{name}: expected {want}, got {describe(axis)}")
    return int(axis)


def qrange(bits: int, signed: bool = True, narrow_range: bool = False) -> tuple[int, int]:
    """The integer range ``(qmin, qmax)`` of a ``bits``-bit quantized value.

    - signed:   ``[-2**(bits-1), 2**(bits-1) - 1]``, e.g. ``[-128, 127]`` for 8 bits;
    - unsigned: ``[0, 2**bits - 1]``, e.g. ``[0, 255]``.

    ``narrow_range`` drops the lowest value: ``[-127, 127]`` (TensorFlow Lite's int8
    weights, which makes the range symmetric about 0) and ``[1, 255]`` for unsigned
    (TensorFlow's ``FakeQuantWithMinMaxVars(narrow_range=True)``; TensorFlow Lite itself
    uses narrow range for signed weights only).

    ``bits`` must be an int in [2, 16]: the storage dtypes are 8- and 16-bit integers
    (see ``QParams.dtype``).
    """
    bits = check_int_in_range(bits, "bits", MIN_BITS, MAX_BITS)
    signed = check_bool(signed, "signed")
    narrow_range = check_bool(narrow_range, "narrow_range")
    if signed:
        qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    else:
        qmin, qmax = 0, 2**bits - 1
    return (qmin + 1 if narrow_range else qmin), qmax


def symmetric_zero_point(bits: int, signed: bool) -> int:
    """The zero point of symmetric quantization: 0 if signed, ``2**(bits-1)`` if unsigned.

    An unsigned symmetric grid is the signed one shifted up by ``2**(bits-1)`` (128 for
    uint8), as PyTorch's observers (``quint8`` symmetric: zero point 128) and onnxruntime's
    ``compute_scale_zp`` (``round((qmin + qmax) / 2)``) both choose.
    """
    bits = check_int_in_range(bits, "bits", MIN_BITS, MAX_BITS)
    return 0 if check_bool(signed, "signed") else 2 ** (bits - 1)


def _check_grid(qp) -> tuple[int, bool, bool, int, int]:
    """A QParams' ``bits, signed, narrow_range, qmin, qmax``, checked against each other."""
    bits = check_int_in_range(qp.bits, "bits", MIN_BITS, MAX_BITS)
    signed = check_bool(qp.signed, "signed")
    narrow = check_bool(qp.narrow_range, "narrow_range")
    qmin = check_int_in_range(qp.qmin, "qmin", -(2**31), 2**31 - 1)
    qmax = check_int_in_range(qp.qmax, "qmax", -(2**31), 2**31 - 1)
    if qmin >= qmax:
        raise ValueError(f"qmin, qmax: expected qmin < qmax, got qmin={qmin}, qmax={qmax}")
    expected = qrange(bits, signed, narrow)
    if (qmin, qmax) != expected:
        raise ValueError(
            f"qmin, qmax: expected {expected} for bits={bits}, signed={signed}, "
            f"narrow_range={narrow}, got ({qmin}, {qmax})"
        )
    return bits, signed, narrow, qmin, qmax


def _check_scale(value) -> np.ndarray:
    """A scale as a float32 copy: finite and > 0 in float64, and still so in float32."""
    scale64 = as_float_array(value, "scale", ndim=(0, 1), dtype=np.float64, finite=True)
    if np.any(scale64 <= 0):
        raise ValueError(f"scale: expected values > 0, got minimum {scale64.min()!r}")
    with np.errstate(over="ignore"):
        scale = scale64.astype(np.float32)
    if np.any(scale == 0) or not np.all(np.isfinite(scale)):
        raise ValueError(
            f"scale: expected values representable as positive finite float32, got "
            f"values in [{scale64.min()!r}, {scale64.max()!r}]"
        )
    return scale


def _check_zero_point(value, shape: tuple, qmin: int, qmax: int) -> np.ndarray:
    """A zero point as an int32 copy of the scale's shape, inside ``[qmin, qmax]``."""
    zp = np.asarray(value)
    if zp.dtype.kind not in "iu":
        raise TypeError(f"zero_point: expected integers, got dtype {zp.dtype}")
    if zp.shape != shape:
        raise ValueError(f"zero_point: expected the shape of scale {shape}, got {zp.shape}")
    if zp.size and (zp.min() < qmin or zp.max() > qmax):
        raise ValueError(
            f"zero_point: expected values in [{qmin}, {qmax}], got values in [{zp.min()}, {zp.max()}]"
        )
    return zp.astype(np.int32)


def _check_axis_for(axis, scale: np.ndarray) -> int | None:
    """An axis for per-channel parameters (1-D scale), None for per-tensor ones."""
    axis = check_axis(axis)
    if scale.ndim == 1 and axis is None:
        raise ValueError(
            f"axis: per-channel parameters (scale of shape {scale.shape}) need a channel axis, got None"
        )
    if scale.ndim == 0 and axis is not None:
        raise ValueError(f"axis: per-tensor parameters (scalar scale) take axis=None, got {axis}")
    return axis


def _check_grid_is_finite(scale: np.ndarray, zp: np.ndarray, qmin: int, qmax: int) -> None:
    """Every grid point ``scale * (q - zp)`` must be a finite float32 (dequantize never inf)."""
    widest = np.maximum(qmax - zp.astype(np.int64), zp.astype(np.int64) - qmin)
    if np.any(scale.astype(np.float64) * widest > _FLOAT32_MAX):
        raise ValueError(
            "scale: the grid scale * (q - zero_point) overflows float32 for q in "
            f"[{qmin}, {qmax}]; got scale up to {scale.max()!r}"
        )


@dataclass(frozen=True, eq=False)
class QParams:
    """Scale and zero point of an affine quantizer, per tensor or per channel.

    ``real = scale * (q - zero_point)``, ``q`` an integer in ``[qmin, qmax]``
    (Jacob et al. 2018, eq. 1).

    Fields:
        scale:        float32 array, shape ``()`` per tensor or ``(C,)`` per channel;
                      finite and > 0. Engines store float32 scales, so any float given
                      here is rounded to float32 (check the value you get back).
        zero_point:   int32 array of the same shape, every entry in ``[qmin, qmax]``.
        qmin, qmax:   the integer range; must equal ``qrange(bits, signed, narrow_range)``.
        bits, signed: the width and signedness of the integers (bits in [2, 16]).
        axis:         the channel axis of the tensor for per-channel parameters (may be
                      negative, counted from the end as in numpy); ``None`` per tensor.
        scheme:       ``"affine"`` (any zero point) or ``"symmetric"`` (zero point fixed
                      at ``symmetric_zero_point(bits, signed)``).
        narrow_range: whether the lowest integer is excluded (see ``qrange``).

    Invariants checked at construction: every ``q`` in ``[qmin, qmax]`` dequantizes to a
    finite float32, and the arrays are read-only copies (a ``QParams`` never changes).
    """

    scale: np.ndarray
    zero_point: np.ndarray
    qmin: int
    qmax: int
    bits: int
    signed: bool
    axis: int | None = None
    scheme: str = "affine"
    narrow_range: bool = False

    def __post_init__(self) -> None:
        bits, signed, narrow, qmin, qmax = _check_grid(self)
        if self.scheme not in _SCHEMES:
            raise ValueError(f"scheme: expected one of {_SCHEMES}, got {self.scheme!r}")
        scale = _check_scale(self.scale)
        zp = _check_zero_point(self.zero_point, scale.shape, qmin, qmax)
        if self.scheme == "symmetric" and np.any(zp != symmetric_zero_point(bits, signed)):
            raise ValueError(
                f"zero_point: a symmetric scheme needs zero point "
                f"{symmetric_zero_point(bits, signed)}, got {np.unique(zp).tolist()}"
            )
        axis = _check_axis_for(self.axis, scale)
        _check_grid_is_finite(scale, zp, qmin, qmax)
        scale.setflags(write=False)
        zp.setflags(write=False)
        fields = dict(scale=scale, zero_point=zp, qmin=qmin, qmax=qmax, bits=bits, signed=signed,
                      narrow_range=narrow, axis=axis)
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    @property
    def dtype(self) -> np.dtype:
        """Storage dtype of the integers: (u)int8 for bits <= 8, (u)int16 up to 16.

        Sub-byte widths (e.g. int4) are stored one value per byte, as in onnxruntime's
        unpacked int4 tensors.
        """
        if self.bits <= 8:
            return np.dtype(np.int8 if self.signed else np.uint8)
        return np.dtype(np.int16 if self.signed else np.uint16)

    @property
    def per_channel(self) -> bool:
        """True for per-channel parameters (``scale.shape == (C,)``)."""
        return self.axis is not None

    @property
    def num_channels(self) -> int | None:
        """``C`` for per-channel parameters, None per tensor."""
        return int(self.scale.shape[0]) if self.per_channel else None

    def broadcast_shape(self, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape to give ``scale``/``zero_point`` so they broadcast against ``x_shape``.

        Per tensor: ``()``. Per channel: all ones except ``C`` at ``axis``, e.g. ``(1, C)``
        for a weight matrix of shape ``(in, C)`` with ``axis=1`` or ``-1``. Raises
        ``ValueError`` naming ``axis`` if the axis is out of range for ``x_shape`` or if
        ``x_shape[axis] != C`` (numpy would otherwise broadcast a wrong shape silently).
        """
        x_shape = tuple(int(n) for n in x_shape)
        if not self.per_channel:
            return ()
        ndim = len(x_shape)
        if not -ndim <= self.axis < ndim:
            raise ValueError(
                f"axis: expected an axis of an array of shape {x_shape} "
                f"(in [{-ndim}, {ndim - 1}]), got {self.axis}"
            )
        axis = self.axis % ndim
        if x_shape[axis] != self.num_channels:
            raise ValueError(
                f"axis: per-channel parameters have {self.num_channels} channels, but the "
                f"array of shape {x_shape} has {x_shape[axis]} along axis {self.axis}"
            )
        shape = [1] * ndim
        shape[axis] = self.num_channels
        return tuple(shape)

    def params_for(self, x_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """``(scale, zero_point)`` reshaped to ``broadcast_shape(x_shape)`` (read-only views)."""
        shape = self.broadcast_shape(x_shape)
        return self.scale.reshape(shape), self.zero_point.reshape(shape)

    def channel(self, c: int) -> QParams:
        """The per-tensor parameters of channel ``c`` of per-channel parameters."""
        if not self.per_channel:
            raise ValueError("c: channel() needs per-channel parameters, these are per tensor")
        c = check_int_in_range(c, "c", -self.num_channels, self.num_channels - 1)
        return dataclasses.replace(
            self, scale=self.scale[c], zero_point=self.zero_point[c], axis=None
        )

    def __eq__(self, other) -> bool:
        if not isinstance(other, QParams):
            return NotImplemented
        return (
            self._fields() == other._fields()
            and self.scale.shape == other.scale.shape
            and bool(np.all(self.scale == other.scale))
            and bool(np.all(self.zero_point == other.zero_point))
        )

    def _fields(self) -> tuple:
        return (self.qmin, self.qmax, self.bits, self.signed, self.axis, self.scheme, self.narrow_range)

    def __hash__(self) -> int:
        return hash((self.scale.tobytes(), self.zero_point.tobytes(), self.scale.shape) + self._fields())

    def __repr__(self) -> str:
        kind = f"{'' if self.signed else 'u'}int{self.bits}"
        if self.per_channel:
            where = f"per-channel axis={self.axis} C={self.num_channels}"
            with np.printoptions(precision=6, threshold=8, edgeitems=3):
                vals = f"scale={self.scale}, zero_point={self.zero_point}"
        else:
            where = "per-tensor"
            vals = f"scale={float(self.scale):.9g}, zero_point={int(self.zero_point)}"
        grid = f"q in [{self.qmin}, {self.qmax}]" + (", narrow range" if self.narrow_range else "")
        return f"QParams({kind} {self.scheme} {where}, {vals}, {grid})"


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
        degenerate = scale64 < _FLOAT32_TINY
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
        scale = np.where(scale64 < _FLOAT32_TINY, 1.0, scale64).astype(np.float32)
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
    if not np.all(np.isfinite(scale)) or np.any(grid_end > _FLOAT32_MAX):
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
        """
        axis = self.channel_axis if self.per_channel else None
        return choose_qparams(min_val, max_val, axis=axis, **self.qparams_kwargs())

    def for_tensor(self, x) -> QParams:
        """Parameters covering the values of ``x``: its min and max, per channel along
        ``channel_axis`` when ``per_channel`` (reducing over every other axis)."""
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
        """The same scheme at another bit width."""
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
    """A ``QScheme`` given itself or one of the preset names in ``SCHEMES``."""
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
