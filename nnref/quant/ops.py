"""Quantize, dequantize and fake-quantize: the maps between reals and the integer grid.

With ``s = scale`` and ``z = zero_point`` from a ``QParams``::

    quantize:       q   = clamp(round(x / s) + z, qmin, qmax)     (integers)
    dequantize:     x'  = s * (q - z)                             (float32)
    fake_quantize:  x'  = dequantize(quantize(x))                 (floats, for training)

(ONNX QuantizeLinear / DequantizeLinear, TensorFlow Lite's quantize kernel; Jacob et al.
2018, arXiv 1712.05877, eq. 1.) Per-channel parameters broadcast along ``qparams.axis``.

The backward pass of fake quantization is the straight-through estimator (Bengio et al.
2013, arXiv 1308.3432) with PyTorch's clipping: the gradient passes where
``qmin <= round(x / s) + z <= qmax`` and is 0 where the value was clamped.
"""

from __future__ import annotations

import numpy as np

from nnref._checks import as_float_array, as_int_array, describe
from nnref.layers import Layer
from nnref.quant.qparams import QParams

__all__ = [
    "check_rounding",
    "check_qparams",
    "grid_position",
    "quantize_affine",
    "dequantize_affine",
    "fake_quantize_affine",
    "fake_quantize_affine_backward",
    "quantize_half_away_into",
    "quantize_input_int8",
    "round_half_even",
    "round_half_away",
    "quantize",
    "dequantize",
    "fake_quantize",
    "fake_quantize_with_mask",
    "fake_quantize_backward",
    "FakeQuantize",
    "ROUNDING_MODES",
]

ROUNDING_MODES = ("half_even", "half_away")


def round_half_even(x) -> np.ndarray:
    """Round to the nearest integer, ties to the even one: 2.5 -> 2, -2.5 -> -2, 0.5 -> 0.

    The IEEE 754 default, used by ``numpy.round``/``numpy.rint``, ONNX QuantizeLinear and
    PyTorch (``torch.round``, its observers and fake-quant kernels). Exact (no arithmetic
    besides the rounding). Returns a float array of ``x``'s float dtype (float64 for
    integer input); NaN and inf pass through unchanged.

    Parameters
    ----------
    x : array_like of real

    Returns
    -------
    ndarray of float
        ``x``'s float dtype (float64 for integer input).
    """
    x = as_float_array(x, "x", finite=False, allow_empty=True)
    return np.rint(x)


def round_half_away(x) -> np.ndarray:
    """Round to the nearest integer, ties away from zero: 2.5 -> 3, -2.5 -> -3, 0.5 -> 1.

    C's ``std::round``, used by TensorFlow Lite's converter and kernels (``TfLiteRound``).
    Computed exactly as ``sign(x) * (f + [|x| - f >= 1/2])`` with ``f = floor(|x|)``:
    ``|x| - f`` is exact in binary floating point, unlike the common ``floor(x + 0.5)``,
    which rounds 0.49999999999999994 up to 1. Returns a float array of ``x``'s float dtype
    (float64 for integer input); NaN and inf pass through unchanged.

    Parameters
    ----------
    x : array_like of real

    Returns
    -------
    ndarray of float
        ``x``'s float dtype (float64 for integer input).
    """
    x = as_float_array(x, "x", finite=False, allow_empty=True)
    a = np.abs(x)
    f = np.floor(a)
    with np.errstate(invalid="ignore"):  # inf - inf for infinite input; copysign fixes it
        up = (a - f) >= 0.5
    return np.copysign(np.where(up, f + 1, f), x).astype(x.dtype, copy=False)


def check_rounding(rounding) -> str:
    """Return ``rounding`` if it is one of :data:`ROUNDING_MODES`, else raise ``ValueError``.

    Parameters
    ----------
    rounding : str

    Returns
    -------
    str

    Raises
    ------
    ValueError
        Naming ``rounding``.
    """
    if not isinstance(rounding, str) or rounding not in ROUNDING_MODES:
        raise ValueError(f"rounding: expected one of {ROUNDING_MODES}, got {rounding!r}")
    return rounding


def check_qparams(qparams) -> QParams:
    """Return ``qparams`` if it is a :class:`QParams`, else raise ``TypeError``.

    Parameters
    ----------
    qparams : QParams

    Returns
    -------
    QParams

    Raises
    ------
    TypeError
        Naming ``qparams``.
    """
    if not isinstance(qparams, QParams):
        raise TypeError(f"qparams: expected a QParams, got {describe(qparams)}")
    return qparams


# --------------------------------------------------------------------------- plain formulas


def grid_position(x, scale, zero_point, rounding: str = "half_even") -> np.ndarray:
    """``round(float32(x) / float32(scale)) + zero_point``, before clamping (plain).

    The quotient is float32 by float32, as onnxruntime's QuantizeLinear
    (``nearbyintf(x / scale)``) and TensorFlow Lite's quantize kernel compute it; float64
    ``x`` is rounded to float32 first (the engines' input type).

    Parameters
    ----------
    x : ndarray of float
    scale, zero_point : float / int or ndarray
        Broadcast against ``x``.
    rounding : {"half_even", "half_away"}

    Returns
    -------
    ndarray of float64
        Integers (or +-inf for a quotient beyond float32).
    """
    with np.errstate(over="ignore"):
        quotient = np.asarray(x, dtype=np.float32) / np.asarray(scale, dtype=np.float32)
    rounded = np.rint(quotient) if rounding == "half_even" else round_half_away(quotient)
    return rounded.astype(np.float64) + zero_point


def quantize_affine(x, scale, zero_point, qmin, qmax, rounding="half_even", dtype=np.int64) -> np.ndarray:
    """Map reals to the integer grid (plain).

    Formula (ONNX QuantizeLinear with ``"half_even"``; TensorFlow Lite's quantize kernel
    with ``"half_away"``; Jacob et al. 2018, eq. 1)::

        q = clamp(round(float32(x) / float32(scale)) + zero_point, qmin, qmax)

    Parameters
    ----------
    x : ndarray of float
    scale, zero_point : float / int or ndarray
        Broadcast against ``x``.
    qmin, qmax : int
    rounding : {"half_even", "half_away"}
    dtype : numpy dtype
        The integer type of the result (it must hold ``[qmin, qmax]``).

    Returns
    -------
    ndarray of ``dtype``, ``x``'s shape
    """
    return np.clip(grid_position(x, scale, zero_point, rounding), qmin, qmax).astype(dtype)


def dequantize_affine(q, scale, zero_point) -> np.ndarray:
    """Map integers back to reals (plain).

    Formula (ONNX DequantizeLinear; TensorFlow Lite's dequantize kernel)::

        x = float32(scale) * float32(q - zero_point)

    ``q - zero_point`` is taken in int64 (|.| < 2**17 on any grid nnref builds, so the
    conversion to float32 is exact and the product rounds once).

    Parameters
    ----------
    q : ndarray of int
    scale, zero_point : float / int or ndarray
        Broadcast against ``q``.

    Returns
    -------
    ndarray of float32
    """
    centred = np.asarray(q).astype(np.int64) - np.asarray(zero_point).astype(np.int64)
    return np.asarray(np.asarray(scale, dtype=np.float32) * centred.astype(np.float32))


def fake_quantize_affine(x, scale, zero_point, qmin, qmax, rounding="half_even") -> np.ndarray:
    """``dequantize_affine(quantize_affine(x, ...))`` in ``x``'s float dtype (plain).

    Parameters
    ----------
    x : ndarray of float
    scale, zero_point, qmin, qmax, rounding
        As :func:`quantize_affine`.

    Returns
    -------
    ndarray of ``x``'s float dtype
    """
    q = quantize_affine(x, scale, zero_point, qmin, qmax, rounding)
    return dequantize_affine(q, scale, zero_point).astype(np.asarray(x).dtype, copy=False)


def fake_quantize_affine_backward(grad_out, x, scale, zero_point, qmin, qmax, rounding="half_even"):
    """The straight-through estimator of fake quantization (plain).

    Formula (Bengio et al. 2013, arXiv 1308.3432; PyTorch's fake-quant backward)::

        grad_in = grad_out  where qmin <= round(float32(x) / float32(scale)) + zero_point <= qmax
                = 0         elsewhere (the clamp's derivative)

    Parameters
    ----------
    grad_out : ndarray of float
        Same shape as ``x``.
    x, scale, zero_point, qmin, qmax, rounding
        The forward pass's arguments (:func:`fake_quantize_affine`).

    Returns
    -------
    ndarray of ``grad_out``'s dtype
    """
    pos = grid_position(x, scale, zero_point, rounding)
    return np.where((pos >= qmin) & (pos <= qmax), grad_out, np.zeros((), dtype=grad_out.dtype))


# --------------------------------------------------------------------------- fast path


def quantize_half_away_into(x, scale, zero_point, qmin, qmax, out, scratch) -> np.ndarray:
    """``quantize_affine(x, scale, zero_point, qmin, qmax, "half_away")`` into float32 ``out``.

    The same integers, held as float32 (exact: they are small), in four passes and no
    allocation besides ``x``'s float32 copy for a float64 ``x``. Uses::

        clamp(round(q) + zp, qmin, qmax) = round(clamp(q, qmin - zp, qmax - zp)) + zp
        round_half_away(v)               = trunc(2 v) - trunc(v)

    the first because the bounds are integers and rounding is monotone, the second because
    with ``v = t + f`` (``t = trunc(v)``, ``f`` of ``v``'s sign), ``trunc(2v) = 2t +
    trunc(2f)``; ``2 v`` is exact. ``2 v`` itself is computed as ``x / (scale / 2)``, which
    equals ``2 * float32(x / scale)`` exactly (scaling by 2 commutes with rounding).

    Parameters
    ----------
    x : ndarray of float, shape (B, K)
        Finite.
    scale : float32
        Per-tensor (a scale whose half is not exact falls back to :func:`quantize_affine`).
    zero_point, qmin, qmax : int
    out, scratch : ndarray of float32, shape (B, K)
        ``out`` receives the result; ``scratch`` is overwritten.

    Returns
    -------
    ndarray of float32
        ``out``: bitwise ``quantize_affine(...).astype(np.float32)`` (tested).
    """
    half = np.float32(scale) / np.float32(2)
    if half * np.float32(2) != np.float32(scale):  # a subnormal half scale: not exact
        out[...] = quantize_affine(x, scale, zero_point, qmin, qmax, "half_away", np.float32)
        return out
    with np.errstate(over="ignore"):  # float64 beyond float32: +-inf, then clamped
        np.divide(x.astype(np.float32, copy=False), half, out=out)
    np.clip(out, np.float32(2 * (qmin - zero_point)), np.float32(2 * (qmax - zero_point)), out=out)
    np.multiply(out, np.float32(0.5), out=scratch)  # v = x / scale, exactly
    np.trunc(scratch, out=scratch)
    np.trunc(out, out=out)
    out -= scratch  # round_half_away(v), an integer in [qmin - zp, qmax - zp]
    out += np.float32(zero_point)
    return out


def quantize_input_int8(x, scale, zero_point, block_values: int = 2**17) -> np.ndarray:
    """``quantize_affine(x, scale, zero_point, -128, 127, "half_away", np.int8)``, fast.

    TensorFlow Lite's QUANTIZE kernel. Row block by row block (about ``block_values``
    values each, cache-resident), with :func:`quantize_half_away_into`; the result does
    not depend on the block size.

    Parameters
    ----------
    x : ndarray of float, shape (B, K)
        Finite.
    scale : float32
    zero_point : int
    block_values : int

    Returns
    -------
    ndarray of int8, shape (B, K)
    """
    out = np.empty(x.shape, dtype=np.int8)
    rows = max(1, block_values // max(1, x.shape[1]))
    buf = np.empty((2, min(rows, x.shape[0]), x.shape[1]), dtype=np.float32)
    for start in range(0, x.shape[0], rows):
        xb = x[start:start + rows]
        v = quantize_half_away_into(xb, scale, zero_point, -128, 127, buf[0, :len(xb)], buf[1, :len(xb)])
        out[start:start + len(xb)] = v  # exact: integers in [-128, 127]
    return out


# --------------------------------------------------------------------------- checked API


def _grid_position(x, qparams: QParams, rounding: str) -> tuple[np.ndarray, np.ndarray]:
    """Check ``x`` and return it with its :func:`grid_position` under ``qparams``.

    Never NaN: x is finite and the scale finite and > 0 (a huge quotient may be +-inf;
    the clamp handles it).
    """
    qparams = check_qparams(qparams)
    check_rounding(rounding)
    x = as_float_array(x, "x", allow_empty=True)
    scale, zero_point = qparams.params_for(x.shape)
    return x, grid_position(x, scale, zero_point, rounding)


def quantize(x, qparams: QParams, rounding: str = "half_even") -> np.ndarray:
    """Checked :func:`quantize_affine`: ``q = clamp(round(x / scale) + zero_point, qmin, qmax)``.

    ONNX QuantizeLinear (``rounding="half_even"``) and TensorFlow Lite's quantize kernel
    (``rounding="half_away"``) use this form: divide by the scale (PyTorch's fake-quant
    kernel multiplies by ``1 / scale`` instead, which can differ by one at near-ties).

    Parameters
    ----------
    x : array_like of float
        Any shape, finite (a NaN must never become an integer).
    qparams : QParams
        Per tensor, or per channel broadcast along ``qparams.axis`` (``x.shape[axis]``
        must equal the number of channels).
    rounding : {"half_even", "half_away"}

    Returns
    -------
    ndarray of ``qparams.dtype``, ``x``'s shape
        Values outside the representable range saturate to ``qmin``/``qmax``.

    Raises
    ------
    TypeError, ValueError
        Non-numeric or non-finite ``x``, ``qparams`` not a QParams, an axis mismatch, an
        unknown ``rounding``.
    """
    _, pos = _grid_position(x, qparams, rounding)
    return np.asarray(np.clip(pos, qparams.qmin, qparams.qmax)).astype(qparams.dtype)


def dequantize(q, qparams: QParams) -> np.ndarray:
    """Checked :func:`dequantize_affine`: ``x = scale * (q - zero_point)`` as float32.

    Parameters
    ----------
    q : array_like of int
        Any integer dtype, values in ``[qmin, qmax]`` (a value outside the grid is a bug
        upstream).
    qparams : QParams

    Returns
    -------
    ndarray of float32, ``q``'s shape

    Raises
    ------
    TypeError, ValueError
        Non-integer ``q``, values off the grid, ``qparams`` not a QParams.
    """
    qparams = check_qparams(qparams)
    q = as_int_array(q, "q", allow_empty=True)
    if q.size and (q.min() < qparams.qmin or q.max() > qparams.qmax):
        raise ValueError(
            f"q: expected values in [{qparams.qmin}, {qparams.qmax}], got values in "
            f"[{q.min()}, {q.max()}]"
        )
    scale, zero_point = qparams.params_for(q.shape)
    return dequantize_affine(q, scale, zero_point)


def fake_quantize_with_mask(
    x, qparams: QParams, rounding: str = "half_even"
) -> tuple[np.ndarray, np.ndarray]:
    """Fake quantization and its straight-through mask.

    ``out = dequantize(quantize(x))`` cast to ``x``'s float dtype (exactly for float32 and
    float64 ``x``: every float32 grid value is a float64; float16 rounds again) and
    ``mask = qmin <= round(x / scale) + zero_point <= qmax`` (bool, shape of ``x``): where
    the value was not clamped. PyTorch's ``fake_quantize_per_tensor_affine`` /
    ``..._per_channel_affine`` forward and backward mask; PyTorch's forward multiplies by
    ``1 / scale`` where nnref divides (as :func:`quantize`), so the two can differ by one
    step at near-ties.

    Parameters
    ----------
    x : array_like of float
        Finite.
    qparams : QParams
    rounding : {"half_even", "half_away"}

    Returns
    -------
    out : ndarray of ``x``'s float dtype
    mask : ndarray of bool, ``x``'s shape

    Raises
    ------
    TypeError, ValueError
        As :func:`quantize`.
    """
    x, pos = _grid_position(x, qparams, rounding)
    mask = np.asarray((pos >= qparams.qmin) & (pos <= qparams.qmax))
    q = np.clip(pos, qparams.qmin, qparams.qmax).astype(qparams.dtype)
    scale, zero_point = qparams.params_for(x.shape)
    return dequantize_affine(q, scale, zero_point).astype(x.dtype, copy=False), mask


def fake_quantize(x, qparams: QParams, rounding: str = "half_even") -> np.ndarray:
    """``dequantize(quantize(x, qparams, rounding), qparams)`` in ``x``'s float dtype.

    Used in quantization-aware training so the float forward pass sees exactly the values
    the integer model will (Jacob et al. 2018, section 3; PyTorch's FakeQuantize).

    Parameters
    ----------
    x : array_like of float
        Finite.
    qparams : QParams
    rounding : {"half_even", "half_away"}

    Returns
    -------
    ndarray of ``x``'s float dtype

    Raises
    ------
    TypeError, ValueError
        As :func:`quantize`.
    """
    return fake_quantize_with_mask(x, qparams, rounding)[0]


def fake_quantize_backward(grad_out, mask) -> np.ndarray:
    """Straight-through estimator: ``grad_in = grad_out`` where ``mask``, else 0.

    ``mask`` is the in-range mask of ``fake_quantize_with_mask`` (same shape as
    ``grad_out``, dtype bool). Rounding has derivative 0 almost everywhere; the STE treats
    it as the identity inside the range and the clamp's derivative (0) outside it, as
    PyTorch's fake-quant backward does.

    Parameters
    ----------
    grad_out : array_like of float
        Finite.
    mask : ndarray of bool
        ``grad_out``'s shape.

    Returns
    -------
    ndarray of ``grad_out``'s float dtype

    Raises
    ------
    TypeError, ValueError
        Naming ``grad_out`` or ``mask``.
    """
    grad_out = as_float_array(grad_out, "grad_out", allow_empty=True)
    mask = np.asarray(mask)
    if mask.dtype != np.bool_:
        raise TypeError(f"mask: expected a bool array, got dtype {mask.dtype}")
    if mask.shape != grad_out.shape:
        raise ValueError(f"mask: expected the shape of grad_out {grad_out.shape}, got {mask.shape}")
    return np.where(mask, grad_out, np.zeros((), dtype=grad_out.dtype))


class FakeQuantize(Layer):
    """Fake-quantization layer with a straight-through backward pass (CS231n style).

    ``forward(x)`` returns ``fake_quantize(x, qparams)`` and caches the in-range mask;
    ``backward(grad_out)`` returns ``grad_out`` where the mask is True, else 0 (the mask is
    kept in ``self.mask``). ``qparams`` may be replaced between steps (quantization-aware
    training refreshes it from an observer); ``rounding`` is ``"half_even"`` (PyTorch,
    ONNX) or ``"half_away"`` (TensorFlow Lite). No parameters of its own.

    Parameters
    ----------
    qparams : QParams
    rounding : {"half_even", "half_away"}
    """

    def __init__(self, qparams: QParams, rounding: str = "half_even") -> None:
        self.qparams = qparams
        check_rounding(rounding)
        self.rounding = rounding
        self.mask: np.ndarray | None = None

    @property
    def qparams(self) -> QParams:
        """The grid fake quantization rounds onto.

        Returns
        -------
        QParams
            The current grid (assignable).
        """
        return self._qparams

    @qparams.setter
    def qparams(self, value: QParams) -> None:
        self._qparams = check_qparams(value)

    def forward(self, x) -> np.ndarray:
        """Fake-quantize ``x`` and keep the in-range mask.

        Parameters
        ----------
        x : array_like of float

        Returns
        -------
        ndarray
            ``fake_quantize(x, qparams, rounding)``; the mask is kept for :meth:`backward`.
        """
        out, self.mask = fake_quantize_with_mask(x, self.qparams, self.rounding)
        return out

    def backward(self, grad_out) -> np.ndarray:
        """The straight-through gradient.

        Parameters
        ----------
        grad_out : ndarray of float
            The shape of the last forward input.

        Returns
        -------
        ndarray
            ``grad_out`` where the last input was in range, else 0.
        """
        grad_out = self._check_grad(grad_out, None if self.mask is None else self.mask.shape)
        return fake_quantize_backward(grad_out, self.mask)

    def __repr__(self) -> str:
        return f"FakeQuantize({self.qparams!r}, rounding={self.rounding!r})"
