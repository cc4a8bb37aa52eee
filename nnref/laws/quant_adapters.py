"""TEMPORARY adapters for the quantization formulas (see :mod:`nnref.laws.adapters`).

Each computes what issue 9's plain function computes, through nnref's current public API
(``choose_qparams``, the rounding functions, the fixed-point primitives, ``requantize``,
``matmul_int32``, ``quantized_linear``), with the plain function's signature and
docstring. Deleted when the catalogue points at the plain functions.
"""

from __future__ import annotations

import numpy as np

from nnref.quant.fixed_point import (multiply_by_quantized_multiplier, rounding_divide_by_pot,
                                     saturating_rounding_doubling_high_mul)
from nnref.quant.kernels import matmul_int32, quantized_linear, requantize
from nnref.quant.ops import round_half_away, round_half_even
from nnref.quant.qparams import choose_qparams

__all__ = [
    "affine_qparams", "symmetric_qparams", "quantize_affine", "dequantize_affine",
    "fake_quantize_affine_backward", "srdhm", "rdbpot", "mbqm_single", "mbqm_double",
    "matmul_centred", "requantize_fixed_point", "qlinear_multiplier", "requantize_float", "linear_int8",
]


def _grid_settings(qmin: int, qmax: int) -> dict:
    """choose_qparams's bits / signed / narrow_range for the grid [qmin, qmax]."""
    if qmin < 0:
        return {"bits": int(qmax + 1).bit_length(), "signed": True, "narrow_range": qmin == -qmax}
    return {"bits": int(qmax).bit_length(), "signed": False, "narrow_range": qmin == 1}


def _choose(min_val, max_val, **kwargs):
    mn = np.asarray(min_val, dtype=np.float64)
    qp = choose_qparams(mn, max_val, axis=0 if mn.ndim else None, **kwargs)
    return np.asarray(qp.scale, dtype=np.float32).reshape(mn.shape), np.asarray(qp.zero_point, dtype=np.int64).reshape(mn.shape)


def affine_qparams(min_val, max_val, qmin, qmax):
    """Scale and zero point of affine quantization covering ``[min_val, max_val]``::

        mn = min(min_val, 0),  mx = max(max_val, 0)
        scale = (mx - mn) / (qmax - qmin)              float64, stored as float32
        zero_point = clip(qmin - round_half_even(mn / scale_float32), qmin, qmax)

    A scale below float32's smallest normal number (e.g. ``mn == mx == 0``) becomes 1.0
    with zero point ``clip(0, qmin, qmax)`` (onnxruntime).

    Parameters
    ----------
    min_val, max_val : float or ndarray of float (per channel)
    qmin, qmax : int
        The integer grid.

    Returns
    -------
    scale : ndarray of float32, min_val's shape
    zero_point : ndarray of int64, min_val's shape

    References
    ----------
    Jacob et al. 2018, arXiv 1712.05877, section 3; PyTorch's observers (half-even).
    """
    return _choose(min_val, max_val, symmetric=False, **_grid_settings(qmin, qmax))


def symmetric_qparams(min_val, max_val, qmin, qmax, zero_point=0, convention="tflite"):
    """Scale of symmetric quantization covering ``[min_val, max_val]``, zero point fixed::

        a = max(-min(min_val, 0), max(max_val, 0))
        scale = a / (qmax - zero_point)            convention "tflite" (max|w| / 127)
        scale = a / ((qmax - qmin) / 2)            convention "pytorch" (/ 127.5)

    stored as float32; a scale below float32's smallest normal number becomes 1.0.

    Parameters
    ----------
    min_val, max_val : float or ndarray of float (per channel)
    qmin, qmax : int
    zero_point : int
        0 for signed grids, ``2**(bits - 1)`` for unsigned ones.
    convention : {"tflite", "pytorch"}

    Returns
    -------
    scale : ndarray of float32, min_val's shape
    zero_point : ndarray of int64, min_val's shape (all ``zero_point``)

    References
    ----------
    TensorFlow Lite 8-bit quantization spec (weights); PyTorch's symmetric observers.
    """
    return _choose(min_val, max_val, symmetric=True, symmetric_convention=convention,
                   **_grid_settings(qmin, qmax))


def quantize_affine(x, scale, zero_point, qmin, qmax, rounding="half_even", dtype=np.int64):
    """Map reals to the integer grid::

        q = clip(round(float32(x) / float32(scale)) + zero_point, qmin, qmax)

    with round half to even (ONNX QuantizeLinear) or half away from zero (TensorFlow Lite,
    ``std::round``); the division is float32 by float32, as both engines compute it.

    Parameters
    ----------
    x : ndarray of float
    scale, zero_point : float / int or ndarray (per channel along the last axis)
    qmin, qmax : int
    rounding : {"half_even", "half_away"}
    dtype : numpy integer dtype of the result

    Returns
    -------
    ndarray of ``dtype``, x's shape
    """
    with np.errstate(over="ignore"):
        quotient = np.asarray(x, dtype=np.float32) / np.asarray(scale, dtype=np.float32)
    rnd = round_half_even if rounding == "half_even" else round_half_away
    return np.clip(rnd(quotient).astype(np.float64) + zero_point, qmin, qmax).astype(dtype)


def dequantize_affine(q, scale, zero_point):
    """Map integers back to reals: ``x = float32(scale) * float32(q - zero_point)``.

    Parameters
    ----------
    q : ndarray of int
    scale, zero_point : float / int or ndarray (per channel along the last axis)

    Returns
    -------
    ndarray of float32
    """
    centred = np.asarray(q).astype(np.int64) - np.asarray(zero_point).astype(np.int64)
    return np.asarray(np.asarray(scale, dtype=np.float32) * centred.astype(np.float32))


def fake_quantize_affine_backward(grad_out, x, scale, zero_point, qmin, qmax, rounding="half_even"):
    """Straight-through estimator of fake quantization::

        grad_in = grad_out  where qmin <= round(float32(x) / float32(scale)) + zero_point <= qmax
                = 0         elsewhere (the clamp's derivative)

    Parameters
    ----------
    grad_out : ndarray of float, x's shape
    x, scale, zero_point, qmin, qmax, rounding
        The forward's arguments (as :func:`quantize_affine`).

    Returns
    -------
    ndarray, grad_out's dtype and shape

    References
    ----------
    Bengio et al. 2013, arXiv 1308.3432; PyTorch's fake-quant backward.
    """
    with np.errstate(over="ignore"):
        quotient = np.asarray(x, dtype=np.float32) / np.asarray(scale, dtype=np.float32)
    rnd = round_half_even if rounding == "half_even" else round_half_away
    pos = rnd(quotient).astype(np.float64) + zero_point
    return np.where((pos >= qmin) & (pos <= qmax), grad_out, np.zeros((), dtype=grad_out.dtype))


def _i32(a):
    return np.asarray(a, dtype=np.int64).astype(np.int32)


def srdhm(a, b):
    """Saturating rounding doubling high multiply (gemmlowp)::

        SRDHM(a, b) = 2**31 - 1                       if a == b == -2**31
                    = floor((a * b + 2**30) / 2**31)  otherwise (ties toward +infinity)

    Parameters
    ----------
    a, b : ndarray of int
        Values in int32 range, broadcast together.

    Returns
    -------
    ndarray of int64
    """
    return np.asarray(saturating_rounding_doubling_high_mul(_i32(a), _i32(b))).astype(np.int64)


def rdbpot(x, exponent):
    """Rounding divide by a power of two (gemmlowp): ``x / 2**exponent``, ties away from zero.

    Parameters
    ----------
    x : ndarray of int
        Values in int32 range.
    exponent : int or ndarray of int in [0, 31]

    Returns
    -------
    ndarray of int64
    """
    return np.asarray(rounding_divide_by_pot(_i32(x), np.asarray(exponent, dtype=np.int64))).astype(np.int64)


def mbqm_single(x, m0, shift):
    """Multiply by ``m0 * 2**(shift - 31)`` with one rounding (TensorFlow Lite)::

        t = 31 - shift
        MBQM(x) = (x * m0 + 2**(t - 1)) >> t          exact in int64

    Parameters
    ----------
    x : ndarray of int (int32 values)
    m0 : int or ndarray of int, 0 or in [2**30, 2**31)
    shift : int or ndarray of int in [-31, 30]

    Returns
    -------
    ndarray of int64
    """
    return np.asarray(multiply_by_quantized_multiplier(_i32(x), m0, shift, "single")).astype(np.int64)


def mbqm_double(x, m0, shift):
    """Multiply by ``m0 * 2**(shift - 31)`` with two roundings (gemmlowp)::

        MBQM(x) = RDBPOT(SRDHM(x * 2**max(shift, 0), m0), max(-shift, 0))

    Parameters
    ----------
    x, m0, shift
        As :func:`mbqm_single`.

    Returns
    -------
    ndarray of int64
    """
    return np.asarray(multiply_by_quantized_multiplier(_i32(x), m0, shift, "double")).astype(np.int64)


def matmul_centred(a, b, a_zero_point=0, b_zero_point=0):
    """Integer matrix product with zero points::

        acc[i, j] = sum_k (a[i, k] - za) * (b[k, j] - zb[j])        int32

    Parameters
    ----------
    a : ndarray of int8, shape (B, K)
    b : ndarray of int8, shape (K, N)
    a_zero_point : int
    b_zero_point : int or ndarray of int, shape (N,)

    Returns
    -------
    ndarray of int32, shape (B, N)

    References
    ----------
    Jacob et al. 2018, eq. 4; TensorFlow Lite's reference integer kernels.
    """
    return matmul_int32(a, b, a_zero_point, b_zero_point, method="int")


def requantize_fixed_point(acc, m0, shift, out_zero_point, act_min=-128, act_max=127, rounding="single"):
    """int32 accumulators to int8 outputs, integers only (TensorFlow Lite)::

        y = clip(MBQM(acc, m0, shift) + out_zero_point, act_min, act_max)

    Parameters
    ----------
    acc : ndarray of int32, shape (..., N)
    m0, shift : int or ndarray of int, shape (N,) (per channel, last axis)
    out_zero_point, act_min, act_max : int in [-128, 127]
    rounding : {"single", "double"}

    Returns
    -------
    ndarray of int8, acc's shape
    """
    return requantize(acc, m0, shift, out_zero_point, act_min, act_max, rounding)


def qlinear_multiplier(a_scale, b_scale, y_scale):
    """onnxruntime's float32 requantization multiplier of QLinearMatMul::

        mult = float32(float32(a_scale) * float32(b_scale)) / float32(y_scale)

    every operation in float32, in this order.

    Parameters
    ----------
    a_scale, b_scale, y_scale : float or ndarray

    Returns
    -------
    float32 (array of the broadcast shape)
    """
    return (np.float32(a_scale) * np.float32(b_scale)) / np.float32(y_scale)  # kernels.qlinear_matmul's order


def requantize_float(acc, multiplier, out_zero_point, act_min=-128, act_max=127, dtype=np.int8):
    """Float requantization, onnxruntime's arithmetic (MLAS)::

        v = float32(acc) * float32(multiplier)
        y = rint(clip(v, act_min - zp, act_max - zp)) + zp       (half to even; zp after rounding)

    Parameters
    ----------
    acc : ndarray of int32
    multiplier : float32 or ndarray of float32 (per channel, last axis)
    out_zero_point, act_min, act_max : int
    dtype : the output integer dtype

    Returns
    -------
    ndarray of ``dtype``, acc's shape
    """
    v = np.asarray(acc).astype(np.float32) * np.asarray(multiplier, dtype=np.float32)
    v = np.clip(v, np.float32(act_min - out_zero_point), np.float32(act_max - out_zero_point))
    return (round_half_even(v).astype(np.int64) + out_zero_point).astype(dtype)  # kernels.qlinear_matmul's arithmetic


def linear_int8(x_q, w_q, bias_q, x_zero_point, w_zero_point, m0, shift, out_zero_point,
                act_min=-128, act_max=127, rounding="single"):
    """An int8 Linear layer ``y = x @ W + b``, integers only (TensorFlow Lite FullyConnected)::

        acc = sum_k (x_q[:, k] - zp_x) (w_q[k, :] - zp_w) + bias_q          int32
        y   = clip(MBQM(acc, m0, shift) + zp_out, act_min, act_max)         int8

    Parameters
    ----------
    x_q : ndarray of int8, shape (B, K)
    w_q : ndarray of int8, shape (K, N), laid out (in, out)
    bias_q : ndarray of int32, shape (N,)
    x_zero_point : int
    w_zero_point : int or ndarray of int, shape (N,)
    m0, shift : int or ndarray of int, shape (N,)
    out_zero_point, act_min, act_max : int
    rounding : {"single", "double"}

    Returns
    -------
    ndarray of int8, shape (B, N)
    """
    return quantized_linear(x_q, w_q, bias_q, x_zero_point, w_zero_point, m0, shift, out_zero_point,
                            act_min, act_max, rounding=rounding, method="int")
