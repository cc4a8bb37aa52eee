"""Integer-only kernels: requantization and the int8 Linear layer (TensorFlow Lite).

The forward pass of a quantized Linear layer, in the order it happens (Jacob et al. 2018,
arXiv 1712.05877, section 2; TensorFlow Lite ``reference_integer_ops::FullyConnected``)::

    acc[i, j] = sum_k (x[i, k] - zp_x) * (w[k, j] - zp_w)     matmul_centred       int32
    acc[i, j] += bias[j]                                        int32 bias, scale s_x * s_w[j]
    y[i, j]   = MBQM(acc[i, j], m0[j], shift[j])                mbqm_single/double   int32
    y[i, j]   = clamp(y[i, j] + zp_y, act_min, act_max)         requantize_fixed_point  int8

The plain formulas (:func:`linear_int8`, :func:`requantize_fixed_point`, and
:func:`~nnref.quant.matmul.matmul_centred`) do no checks; the public functions
(:func:`quantized_linear`, :func:`requantize`, :func:`matmul_int32`) check their
arguments once and call them. :func:`linear_int8_fast` is the same layer with the product
in float BLAS (proven exact) and the requantization in place; a test proves it bitwise
equal to :func:`linear_int8`. :class:`~nnref.quant.qmodel.QuantizedMLP` runs these.

ONNX ``QLinearMatMul`` (float requantization, onnxruntime) is in :mod:`nnref.quant.qlinear`
and the matrix products in :mod:`nnref.quant.matmul`; both are re-exported here.
"""

from __future__ import annotations

import math

import numpy as np

from nnref._checks import check_int_in_range, describe
from nnref.quant.checks import (
    INT8,
    INT32_MAX,
    INT32_MIN,
    check_accumulator_bound,
    check_choice,
    check_float32_scale,
    check_matmul_operands,
    check_output_range,
    check_per_channel,
    max_abs,
    max_centred,
)
from nnref.quant.fixed_point import MBQM, IntLike, mbqm_double, check_mbqm_fits, check_mbqm_operands
from nnref.quant.matmul import (
    MATMUL_METHODS,
    exact_float_dtype,
    matmul_centred,
    matmul_expanded,
    matmul_int32,
    matmul_int32_direct,
    matmul_int32_expanded,
)
from nnref.quant.qlinear import qlinear_matmul, qlinear_multiplier, requantize_float

__all__ = [
    "exact_float_dtype",
    "matmul_centred",
    "matmul_int32_direct",
    "matmul_int32_expanded",
    "matmul_int32",
    "requantize_fixed_point",
    "requantize",
    "activation_range",
    "linear_int8",
    "fold_bias",
    "accumulate_fast",
    "requantize_fixed_point_inplace",
    "linear_int8_fast",
    "quantized_linear",
    "qlinear_multiplier",
    "requantize_float",
    "qlinear_matmul",
]

_ACTIVATIONS = (None, "none", "relu", "relu6", "relu_n1_to_1")
_ROUNDINGS = tuple(MBQM)


# --------------------------------------------------------------------------- requantization


def requantize_fixed_point(acc, m0, shift, out_zero_point, act_min=-128, act_max=127, rounding="single"):
    """Map int32 accumulators to int8 outputs, integers only (plain).

    Formula (TensorFlow Lite ``reference_integer_ops::FullyConnected``, after the sum)::

        y = clamp(MBQM(acc, m0, shift) + zp_out, act_min, act_max)      -> int8

    with ``MBQM`` :func:`~nnref.quant.fixed_point.mbqm_single` or ``mbqm_double``.

    Parameters
    ----------
    acc : ndarray of int32, shape (..., N)
    m0, shift : int or ndarray of int, shape (N,)
        Per-channel values apply along the last axis.
    out_zero_point, act_min, act_max : int
        In [-128, 127].
    rounding : {"single", "double"}

    Returns
    -------
    ndarray of int8, ``acc``'s shape
    """
    scaled = MBQM[rounding](acc, m0, shift)  # int64, in int32 range
    return np.clip(scaled + out_zero_point, act_min, act_max).astype(np.int8)


def requantize(
    acc: np.ndarray, m0: IntLike, shift: IntLike, out_zero_point: int, act_min: int = -128,
    act_max: int = 127, rounding: str = "single",
) -> np.ndarray:
    """Checked :func:`requantize_fixed_point`: int32 accumulators to int8, integers only.

    ``y = clamp(MBQM(acc, m0, shift) + zp_out, act_min, act_max)`` with ``m0 * 2**(shift -
    31) ~= s_in * s_w / s_out``; a fused ReLU/ReLU6 is just the clamp bounds
    (:func:`activation_range`).

    Parameters
    ----------
    acc : ndarray of int32, shape (..., N), at least one axis
    m0, shift : int or ndarray of int, shape (N,)
        As :func:`~nnref.quant.fixed_point.multiply_by_quantized_multiplier`.
    out_zero_point, act_min, act_max : int
        In [-128, 127], ``act_min <= act_max``.
    rounding : {"single", "double"}

    Returns
    -------
    ndarray of int8, ``acc``'s shape

    Raises
    ------
    TypeError, ValueError
        Each argument named: dtypes, shapes, ranges; a multiplier whose product does not
        fit int32.
    """
    if not isinstance(acc, np.ndarray) or acc.dtype != np.int32 or acc.ndim == 0:
        raise TypeError(f"acc: expected an int32 array with at least one axis, got {describe(acc)}")
    check_per_channel(m0, "m0", acc.shape[-1])
    check_per_channel(shift, "shift", acc.shape[-1])
    zp, lo, hi = check_output_range(out_zero_point, act_min, act_max)
    x64, m64, s64 = check_mbqm_operands(acc, m0, shift, rounding)
    check_mbqm_fits(x64, m64, s64, rounding)
    return requantize_fixed_point(acc, m64, s64, zp, lo, hi, rounding)


# --------------------------------------------------------------------------- activation bounds


def _quantize_bound(real: float, scale: np.float32, zero_point: int) -> int:
    with np.errstate(over="ignore"):
        q = float(np.float32(real) / scale)  # float32 division, as TensorFlow Lite's float scale
    r = math.copysign(math.floor(abs(q) + 0.5), q) if math.isfinite(q) else q  # std::round
    if not INT32_MIN <= r <= INT32_MAX:
        raise ValueError(
            f"out_scale: {real} / {scale} rounds to {r}, outside int32; TensorFlow Lite "
            f"refuses such a scale too"
        )
    return zero_point + int(r)


def activation_range(
    activation: str | None, out_scale: float, out_zero_point: int, qmin: int = -128, qmax: int = 127
) -> tuple[int, int]:
    """Clamp bounds that fuse an activation into requantization.

    Formula (TensorFlow Lite ``CalculateActivationRangeQuantized``, ``kernel_util.cc``),
    with ``quantize(f) = zp + round_half_away(float32(f) / float32(s))``::

        None / "none"  -> (qmin, qmax)
        "relu"         -> (max(qmin, quantize(0)),  qmax)               = (max(qmin, zp), qmax)
        "relu6"        -> (max(qmin, quantize(0)),  min(qmax, quantize(6)))
        "relu_n1_to_1" -> (max(qmin, quantize(-1)), min(qmax, quantize(1)))

    The division is in float32 and the rounding is half away from zero (``std::round``),
    as in TensorFlow Lite, whose scales are float32: with ``s = 12``, ``6 / s = 0.5`` rounds
    to 1, not to 0 as ``numpy.round`` would.

    Parameters
    ----------
    activation : {None, "none", "relu", "relu6", "relu_n1_to_1"}
    out_scale : float
        The output scale, finite and > 0 as float32.
    out_zero_point : int
        In ``[qmin, qmax]``.
    qmin, qmax : int
        The output integer range, default int8.

    Returns
    -------
    tuple of int
        ``(act_min, act_max)`` with ``qmin <= act_min <= act_max <= qmax``.

    Raises
    ------
    TypeError, ValueError
        Each argument named; a bound that rounds outside int32.
    """
    check_choice(activation, "activation", _ACTIVATIONS)
    qmin = check_int_in_range(qmin, "qmin", INT32_MIN, INT32_MAX)
    qmax = check_int_in_range(qmax, "qmax", qmin, INT32_MAX)
    zp = check_int_in_range(out_zero_point, "out_zero_point", qmin, qmax)
    scale = check_float32_scale(out_scale, "out_scale")
    if activation in (None, "none"):
        return qmin, qmax
    if activation == "relu":
        return max(qmin, _quantize_bound(0.0, scale, zp)), qmax
    if activation == "relu6":
        return max(qmin, _quantize_bound(0.0, scale, zp)), min(qmax, _quantize_bound(6.0, scale, zp))
    return max(qmin, _quantize_bound(-1.0, scale, zp)), min(qmax, _quantize_bound(1.0, scale, zp))


# --------------------------------------------------------------------------- the int8 Linear layer


def linear_int8(x_q, w_q, bias_q, x_zero_point, w_zero_point, m0, shift, out_zero_point,
                act_min=-128, act_max=127, rounding="single") -> np.ndarray:
    """An int8 Linear layer ``y = x @ W + b``, integers only (plain).

    Formula (TensorFlow Lite ``reference_integer_ops::FullyConnected`` and
    ``FullyConnectedPerChannel``; ``input_offset = -zp_x``, ``weights_offset = -zp_w``)::

        acc = sum_k (x_q[:, k] - zp_x) * (w_q[k, :] - zp_w) + bias_q          int32
        y   = clamp(MBQM(acc, m0, shift) + zp_out, act_min, act_max)          int8

    Parameters
    ----------
    x_q : ndarray of int8, shape (B, K)
    w_q : ndarray of int8, shape (K, N)
        Laid out (in, out) as nnref's Linear; TensorFlow Lite stores ``W.T``.
    bias_q : ndarray of int32, shape (N,)
        Scale ``s_x * s_w[j]``, zero point 0.
    x_zero_point : int
    w_zero_point : int or ndarray of int, shape (N,)
    m0, shift : int or ndarray of int, shape (N,)
    out_zero_point, act_min, act_max : int
    rounding : {"single", "double"}

    Returns
    -------
    ndarray of int8, shape (B, N)
    """
    acc = matmul_centred(x_q, w_q, x_zero_point, w_zero_point) + bias_q
    return requantize_fixed_point(acc, m0, shift, out_zero_point, act_min, act_max, rounding)


def fold_bias(bias_q, w_q, x_zero_point) -> np.ndarray:
    """The constant of gemmlowp's offset handling with ``zp_w = 0`` (plain).

    Formula: ``sum_k (x - zp_x) w + bias = x @ w + (bias - zp_x * sum_k w[k, :])``; this
    returns the bracket.

    Parameters
    ----------
    bias_q : ndarray of int32, shape (N,)
    w_q : ndarray of int8, shape (K, N)
    x_zero_point : int

    Returns
    -------
    ndarray of int64, shape (N,)
    """
    return bias_q.astype(np.int64) - x_zero_point * w_q.sum(axis=0, dtype=np.int64)


def accumulate_fast(x_exact: np.ndarray, w_exact: np.ndarray, folded_bias: np.ndarray) -> np.ndarray:
    """``acc = x_q @ w_q + folded_bias`` as int64, the product in float BLAS.

    Parameters
    ----------
    x_exact, w_exact : ndarray of float32 or float64
        ``x_q`` and ``w_q`` cast to a float type in which
        :func:`~nnref.quant.matmul.exact_float_dtype` proves the product exact
        (``K * 128 * max|w_q|``), so every entry is the exact integer.
    folded_bias : ndarray of int64, shape (N,)
        From :func:`fold_bias`.

    Returns
    -------
    ndarray of int64, shape (B, N)
        Equal to ``matmul_centred(x_q, w_q, zp_x, 0) + bias_q``.
    """
    acc = (x_exact @ w_exact).astype(np.int64)
    acc += folded_bias
    return acc


def requantize_fixed_point_inplace(acc: np.ndarray, m0, shift, out_zero_point, act_min, act_max,
                                   rounding="single") -> np.ndarray:
    """:func:`requantize_fixed_point` on an int64 accumulator it may overwrite.

    Single rounding runs ``acc * m0 + 2**(t - 1) >> t`` in place (no temporaries); double
    rounding calls :func:`~nnref.quant.fixed_point.mbqm_double`. Bitwise equal to
    :func:`requantize_fixed_point` (tested).

    Parameters
    ----------
    acc : ndarray of int64, shape (..., N)
        Values in int32 range; overwritten.
    m0, shift, out_zero_point, act_min, act_max, rounding
        As :func:`requantize_fixed_point` (``m0``, ``shift`` int64 arrays).

    Returns
    -------
    ndarray of int8
    """
    if rounding == "single":
        t = 31 - shift
        acc *= m0  # |acc * m0| <= 2**62
        acc += np.int64(1) << (t - 1)
        acc >>= t
    else:
        acc = mbqm_double(acc, m0, shift)
    acc += out_zero_point
    np.clip(acc, act_min, act_max, out=acc)
    return acc.astype(np.int8)


def linear_int8_fast(x_exact, w_exact, folded_bias, m0, shift, out_zero_point, act_min=-128,
                     act_max=127, rounding="single") -> np.ndarray:
    """:func:`linear_int8` with ``zp_w = 0``: float-BLAS product (exact), in-place requantization.

    Parameters
    ----------
    x_exact, w_exact, folded_bias
        As :func:`accumulate_fast`.
    m0, shift : ndarray of int64, shape (N,)
    out_zero_point, act_min, act_max, rounding
        As :func:`linear_int8`.

    Returns
    -------
    ndarray of int8, shape (B, N)
        Bitwise equal to ``linear_int8(x_q, w_q, bias_q, zp_x, 0, ...)`` (tested).
    """
    acc = accumulate_fast(x_exact, w_exact, folded_bias)
    return requantize_fixed_point_inplace(acc, m0, shift, out_zero_point, act_min, act_max, rounding)


def _check_linear_args(x_q, w_q, bias_q, x_zero_point, w_zero_point, m0, shift, out_zero_point,
                       act_min, act_max, rounding, method):
    """Check :func:`quantized_linear`'s arguments once; return them ready for the math."""
    names = ("x_q", "w_q", "x_zero_point", "w_zero_point")
    x, w, zx, zw = check_matmul_operands(x_q, w_q, x_zero_point, w_zero_point, names, (INT8,))
    n = w.shape[1]
    if bias_q is None:
        bias_q = np.zeros(n, dtype=np.int32)
    elif not isinstance(bias_q, np.ndarray) or bias_q.dtype != np.int32:
        raise TypeError(f"bias_q: expected an int32 array or None, got {describe(bias_q)}")
    elif bias_q.shape != (n,):
        raise ValueError(f"bias_q: expected shape ({n},) (one per output), got shape {bias_q.shape}")
    spans = max_centred(x.dtype, zx), max_centred(w.dtype, zw)
    check_accumulator_bound("x_q, w_q, bias_q", x.shape[1], *spans, max_abs(bias_q))
    check_choice(method, "method", MATMUL_METHODS)
    check_per_channel(m0, "m0", n)
    check_per_channel(shift, "shift", n)
    zp, lo, hi = check_output_range(out_zero_point, act_min, act_max)
    _, m64, s64 = check_mbqm_operands(np.zeros((), np.int32), m0, shift, rounding)
    return x, w, bias_q, zx, zw, m64, s64, zp, lo, hi


def quantized_linear(
    x_q: np.ndarray, w_q: np.ndarray, bias_q: np.ndarray | None, x_zero_point: int,
    w_zero_point: IntLike, m0: IntLike, shift: IntLike, out_zero_point: int, act_min: int = -128,
    act_max: int = 127, rounding: str = "single", method: str = "auto", return_acc: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Checked int8 Linear layer ``y = x @ W + b``, integers only (TensorFlow Lite order).

    The steps of :func:`linear_int8`: ``acc = matmul(x_q - zp_x, w_q - zp_w) + bias_q``
    (int32), then :func:`requantize_fixed_point`. ``method`` chooses how the product is
    computed (:func:`~nnref.quant.matmul.exact_product`); every method gives the same bits.

    Parameters
    ----------
    x_q : ndarray of int8, shape (B, K)
    w_q : ndarray of int8, shape (K, N)
    bias_q : ndarray of int32, shape (N,), or None
    x_zero_point : int in [-128, 127]
    w_zero_point : int or ndarray of int, shape (N,)
        0 for TensorFlow Lite's symmetric weights.
    m0, shift : int or ndarray of int, shape (N,)
    out_zero_point, act_min, act_max : int in [-128, 127]
        See :func:`activation_range`.
    rounding : {"single", "double"}
    method : {"auto", "int", "float"}
    return_acc : bool
        Also return the int32 accumulators (after the bias, before MBQM).

    Returns
    -------
    ndarray of int8, shape (B, N), or tuple
        ``(y, acc)`` with ``acc`` (B, N) int32 when ``return_acc``.

    Raises
    ------
    TypeError, ValueError
        Each argument named; a K for which ``K * max|x - zp_x| * max|w - zp_w| +
        max|bias|`` could exceed ``2**31 - 1`` (checked before computing).
    """
    x, w, bias, zx, zw, m64, s64, zp, lo, hi = _check_linear_args(
        x_q, w_q, bias_q, x_zero_point, w_zero_point, m0, shift, out_zero_point, act_min, act_max,
        rounding, method)
    acc = matmul_expanded(x, w, zx, zw, method) + bias  # |acc| <= 2**31 - 1: checked
    check_mbqm_fits(acc, m64, s64, rounding)
    y = requantize_fixed_point(acc, m64, s64, zp, lo, hi, rounding)
    return (y, acc) if return_acc else y
