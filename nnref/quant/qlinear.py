"""ONNX ``QLinearMatMul`` as onnxruntime's CPU kernel computes it: float requantization.

The same exact int32 accumulator as TensorFlow Lite's kernels, then a float32 multiplier
(onnxruntime ``quantize_linear_matmul.cc`` and MLAS ``MlasRequantizeOutput``)::

    acc  = sum_k (a - za) * (b - zb)                       int32, exact
    mult = float32(float32(a_scale * b_scale) / y_scale)    float32 operations, this order
    y    = saturate(round_half_even(float32(acc) * mult) + zy)

:func:`qlinear_multiplier` and :func:`requantize_float` are the plain formulas;
:func:`qlinear_matmul` checks its arguments (ONNX's shapes and dtypes) and calls them.
"""

from __future__ import annotations

import numpy as np

from nnref._checks import as_float_array, describe
from nnref.quant.checks import (
    INT8,
    UINT8,
    check_accumulator_bound,
    check_integers,
    check_quantized_array,
    check_zero_point,
    max_centred,
)
from nnref.quant.fixed_point import IntLike
from nnref.quant.matmul import exact_product

__all__ = ["qlinear_multiplier", "requantize_float", "qlinear_matmul"]


def qlinear_multiplier(a_scale, b_scale, y_scale) -> np.ndarray:
    """The float32 requantization multiplier of ``QLinearMatMul`` (plain).

    Formula (onnxruntime ``quantize_linear_matmul.cc``), every operation in float32::

        mult = float32(float32(a_scale) * float32(b_scale)) / float32(y_scale)

    Parameters
    ----------
    a_scale, b_scale, y_scale : float or ndarray
        Broadcast together (per row of ``a``: shape (M, 1); per column of ``b``: (N,)).

    Returns
    -------
    ndarray of float32
    """
    return (np.float32(a_scale) * np.float32(b_scale)) / np.float32(y_scale)


def requantize_float(acc, multiplier, out_zero_point, act_min=-128, act_max=127, dtype=np.int8) -> np.ndarray:
    """Float requantization of int32 accumulators, onnxruntime's arithmetic (plain).

    Formula (MLAS ``MlasRequantizeOutput``; round half to even, the zero point added
    *after* rounding)::

        v = float32(acc) * multiplier                              float32
        y = rint(clamp(v, act_min - zp, act_max - zp)) + zp        -> dtype

    Clamping before rounding equals clamping after it, since the bounds are integers.
    ONNX's Python reference instead adds ``zp`` before rounding in float64: the two can
    differ by one at ties.

    Parameters
    ----------
    acc : ndarray of int32
    multiplier : float32 or ndarray of float32
        Broadcast against ``acc`` (per channel along the last axis).
    out_zero_point, act_min, act_max : int
        With ``act_min <= out_zero_point``-shifted bounds inside ``dtype``'s range.
    dtype : numpy dtype
        The output integer type.

    Returns
    -------
    ndarray of ``dtype``, ``acc``'s shape
    """
    v = acc.astype(np.float32)
    v *= multiplier  # float32 * float32
    np.clip(v, np.float32(act_min - out_zero_point), np.float32(act_max - out_zero_point), out=v)
    np.rint(v, out=v)
    v += np.float32(out_zero_point)  # integers of at most 9 bits: exact in float32
    return v.astype(dtype)


def _check_onnx_shape(arr: np.ndarray, name: str, shapes: tuple) -> None:
    if arr.shape not in shapes:
        want = " or ".join(str(shape) for shape in shapes[1:])
        raise ValueError(f"{name}: expected a scalar or shape {want}, got shape {arr.shape}")


def _onnx_scale(value, name: str, shapes: tuple, target: tuple) -> np.ndarray:
    """A per-tensor or per-axis scale as float32, shaped () or ``target``."""
    arr = as_float_array(value, name)
    _check_onnx_shape(arr, name, shapes)
    with np.errstate(over="ignore"):
        s = arr.astype(np.float32).reshape(target if arr.size > 1 else ())
    if not (np.all(np.isfinite(s)) and np.all(s > 0)):
        raise ValueError(
            f"{name}: expected finite values > 0 (as float32), got values in [{arr.min()}, {arr.max()}]"
        )
    return s


def _onnx_zero_point(value, name: str, dtype, shapes: tuple, length: int, what: str) -> np.ndarray:
    """A per-tensor or per-axis zero point as int64, shaped () or (length,)."""
    arr = check_integers(value, name)
    _check_onnx_shape(arr, name, shapes)
    return check_zero_point(arr.reshape(-1) if arr.size > 1 else arr.reshape(()), name, dtype, length, what)


def _output_dtype(y_zero_point) -> np.dtype:
    dtype = getattr(y_zero_point, "dtype", None)
    if not isinstance(y_zero_point, (np.ndarray, np.integer)) or dtype not in (INT8, UINT8):
        raise TypeError(
            f"y_zero_point: expected a numpy int8 or uint8 scalar (its dtype sets the output "
            f"dtype), got {describe(y_zero_point)}"
        )
    if np.size(y_zero_point) != 1 or np.ndim(y_zero_point) > 1:
        raise ValueError(f"y_zero_point: expected a scalar or shape (1,), got shape {np.shape(y_zero_point)}")
    return np.dtype(dtype)


def _onnx_operands(a, b) -> tuple[np.ndarray, np.ndarray, int, int]:
    """``a``, ``b`` at least 2-D (ONNX MatMul promotes 1-D operands), with M and N."""
    a = check_quantized_array(a, "a", ndim=None)
    b = check_quantized_array(b, "b", ndim=None)
    for arr, name in ((a, "a"), (b, "b")):
        if arr.ndim == 0:
            raise ValueError(f"{name}: expected an array with at least one axis, got a 0-d array")
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    if b2.shape[-2] != a2.shape[-1]:
        raise ValueError(f"b: expected {a2.shape[-1]} rows (the last axis of a {a.shape}), got shape {b.shape}")
    try:
        np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    except ValueError:
        raise ValueError(f"a, b: batch axes do not broadcast (numpy matmul rules): a {a.shape}, b {b.shape}") from None
    return a2, b2, a2.shape[-2], b2.shape[-1]


def qlinear_matmul(
    a: np.ndarray, a_scale, a_zero_point: IntLike, b: np.ndarray, b_scale, b_zero_point: IntLike,
    y_scale, y_zero_point,
) -> np.ndarray:
    """ONNX ``QLinearMatMul`` as onnxruntime's CPU kernel computes it.

    ``y = requantize_float(matmul(a - za, b - zb), qlinear_multiplier(a_scale, b_scale,
    y_scale), zy)`` saturated to the output dtype (see the module docstring). Batching
    follows ONNX MatMul, i.e. ``numpy.matmul``: ``a`` (..., M, K) and ``b`` (..., K, N)
    with broadcast batch axes; a 1-D ``a`` is a row (K,), a 1-D ``b`` a column (K,), and
    that axis is dropped from the result.

    Parameters
    ----------
    a : ndarray of int8 or uint8, shape (..., M, K) or (K,)
    a_scale, a_zero_point : scalar, shape (1,), or per row of ``a``: (M,) or (M, 1)
    b : ndarray of int8 or uint8, shape (..., K, N) or (K,)
    b_scale, b_zero_point : scalar, shape (1,), or per column of ``b``: (N,) or (1, N)
    y_scale : scalar or shape (1,), > 0
    y_zero_point : numpy int8 or uint8 scalar or shape (1,) array
        Its dtype is the output dtype.

    Returns
    -------
    ndarray of ``y_zero_point``'s dtype, shape ``numpy.matmul(a, b).shape``

    Raises
    ------
    TypeError
        Operands not int8/uint8 arrays, float zero points, a ``y_zero_point`` that is not a
        numpy int8/uint8 value.
    ValueError
        K mismatch, batch axes that do not broadcast, scales not finite and > 0 in float32,
        zero points out of range, a multiplier that is not finite in float32, or a K for
        which the int32 accumulator could overflow (onnxruntime's would wrap).

    Notes
    -----
    onnxruntime requires per-tensor ``a_scale``/``a_zero_point`` and registers only
    ``(uint8, uint8 or int8 -> uint8)`` and ``(int8, int8 -> int8)``; nnref also accepts
    per-row ``a`` parameters and the other int8/uint8 mixes, with the same arithmetic.
    ``float32(acc)`` rounds (half to even) once ``|acc| > 2**24``, as in onnxruntime.
    """
    a2, b2, m, n = _onnx_operands(a, b)
    per_row, per_col = ((), (1,), (m,), (m, 1)), ((), (1,), (n,), (1, n))
    out_dtype = _output_dtype(y_zero_point)
    zy = int(np.asarray(y_zero_point).reshape(()))
    sa = _onnx_scale(a_scale, "a_scale", per_row, (m, 1))
    sb = _onnx_scale(b_scale, "b_scale", per_col, (n,))
    sy = _onnx_scale(y_scale, "y_scale", ((), (1,)), ())
    za = _onnx_zero_point(a_zero_point, "a_zero_point", a2.dtype, per_row, m, "one per row of a")
    zb = _onnx_zero_point(b_zero_point, "b_zero_point", b2.dtype, per_col, n, "one per column of b")
    check_accumulator_bound("a, b", a2.shape[-1], max_centred(a2.dtype, za), max_centred(b2.dtype, zb))
    with np.errstate(over="ignore", under="ignore"):
        multiplier = qlinear_multiplier(sa, sb, sy)
    if not np.all(np.isfinite(multiplier)):  # inf * acc cast to an integer would wrap silently
        raise ValueError(
            f"a_scale, b_scale, y_scale: the float32 multiplier (a_scale * b_scale) / y_scale "
            f"is not finite (a_scale in [{float(sa.min())!r}, {float(sa.max())!r}], b_scale in "
            f"[{float(sb.min())!r}, {float(sb.max())!r}], y_scale = {float(sy)!r})"
        )
    za_rows = za.reshape(-1, 1) if za.ndim else za  # per row: along the M axis
    acc = exact_product(a2.astype(np.int64) - za_rows, b2.astype(np.int64) - zb).astype(np.int32)
    info = np.iinfo(out_dtype)
    y = requantize_float(acc, multiplier, zy, info.min, info.max, out_dtype)
    if a.ndim == 1:
        y = y[..., 0, :]
    return y[..., 0] if b.ndim == 1 else y
