"""The integer grid of a quantized tensor: :class:`QParams` and the range of a bit width.

An affine quantizer (Jacob et al. 2018, arXiv 1712.05877, eq. 1) represents a real value
by an integer ``q`` in ``[qmin, qmax]``::

    real = scale * (q - zero_point)

``scale`` (a positive float32, as every engine stores it) is the step between neighbouring
grid points, ``zero_point`` (an integer in ``[qmin, qmax]``) is the integer that stands for
real 0. Per-tensor parameters hold one scale and one zero point; per-channel parameters hold
one of each for every slice of the tensor along ``axis``. Choosing them from a real range
is :mod:`nnref.quant.qparams` (which re-exports everything here).
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass

import numpy as np

from nnref._checks import as_float_array, check_int_in_range, describe

__all__ = [
    "QParams",
    "qrange",
    "symmetric_zero_point",
    "check_axis",
    "check_bool",
    "MIN_BITS",
    "MAX_BITS",
    "SCHEME_KINDS",
    "FLOAT32_TINY",
    "FLOAT32_MAX",
]

MIN_BITS = 2
MAX_BITS = 16

#: The two kinds of grid: any zero point, or the fixed symmetric one.
SCHEME_KINDS = ("affine", "symmetric")
#: Smallest positive normal float32 (1.1754944e-38): choose_qparams replaces a smaller
#: scale by 1.0, as onnxruntime's quantization tools do.
FLOAT32_TINY = float(np.finfo(np.float32).tiny)
FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_bool(value, name: str) -> bool:
    """Return ``value`` as a bool if it is one, else raise ``TypeError`` naming ``name``.

    Parameters
    ----------
    value : bool
    name : str

    Returns
    -------
    bool

    Raises
    ------
    TypeError
        Naming ``name``.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {describe(value)}")
    return bool(value)


def check_axis(axis, name: str = "axis", allow_none: bool = True) -> int | None:
    """An axis is an int (negative counts from the end), or None where allowed.

    Parameters
    ----------
    axis : int or None
    name : str
    allow_none : bool

    Returns
    -------
    int or None

    Raises
    ------
    TypeError
        Naming ``name``.
    """
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

    Parameters
    ----------
    bits : int
        2..16.
    signed : bool
    narrow_range : bool

    Returns
    -------
    tuple of int
        ``(qmin, qmax)``.

    Raises
    ------
    TypeError, ValueError
        Naming the argument.
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

    Parameters
    ----------
    bits : int
    signed : bool

    Returns
    -------
    int
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
    if np.any(scale.astype(np.float64) * widest > FLOAT32_MAX):
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
        if self.scheme not in SCHEME_KINDS:
            raise ValueError(f"scheme: expected one of {SCHEME_KINDS}, got {self.scheme!r}")
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

        Parameters
        ----------
        x_shape : tuple of int

        Returns
        -------
        tuple of int

        Raises
        ------
        ValueError
            Naming ``axis``.
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
        """``(scale, zero_point)`` reshaped to ``broadcast_shape(x_shape)`` (read-only views).

        Parameters
        ----------
        x_shape : tuple of int

        Returns
        -------
        scale : ndarray of float32
        zero_point : ndarray of int32
        """
        shape = self.broadcast_shape(x_shape)
        return self.scale.reshape(shape), self.zero_point.reshape(shape)

    def channel(self, c: int) -> QParams:
        """The per-tensor parameters of channel ``c`` of per-channel parameters.

        Parameters
        ----------
        c : int
            A channel index (negative counts from the end).

        Returns
        -------
        QParams

        Raises
        ------
        ValueError
            Per-tensor parameters, or ``c`` out of range.
        """
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
