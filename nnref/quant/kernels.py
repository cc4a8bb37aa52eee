"""Integer-only kernels: int8 x int8 -> int32 matmul, requantization, quantized Linear.

The forward pass of a quantized Linear layer, in the order it happens (Jacob et al. 2018,
arXiv 1712.05877, section 2; TensorFlow Lite ``reference_integer_ops::FullyConnected``)::

    acc[i, j] = sum_k (x[i, k] - zp_x) * (w[k, j] - zp_w)     int32 accumulator
    acc[i, j] += bias[j]                                        int32 bias, scale s_x * s_w[j]
    y[i, j]   = MBQM(acc[i, j], m0[j], shift[j])                int32, ~ acc * s_x * s_w[j] / s_y
    y[i, j]   = clamp(y[i, j] + zp_y, act_min, act_max)         int8

One short function per step. The int32 accumulator never wraps: every function that
produces one first proves, from the dtypes, the zero points and the shapes alone, that no
input of those dtypes could overflow it, and raises ``ValueError`` otherwise.

:func:`qlinear_matmul` is the other engine convention, ONNX ``QLinearMatMul`` as
onnxruntime's CPU kernel computes it: the same int32 accumulator, then a float32
requantization.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from nnref._checks import as_float_array, check_int_in_range, describe
from nnref.quant.fixed_point import INT32_MAX, INT32_MIN, IntLike, multiply_by_quantized_multiplier

__all__ = [
    "exact_float_dtype",
    "matmul_int32_direct",
    "matmul_int32_expanded",
    "matmul_int32",
    "requantize",
    "activation_range",
    "quantized_linear",
    "qlinear_matmul",
]

_INT8 = np.dtype(np.int8)
_UINT8 = np.dtype(np.uint8)
_METHODS = ("auto", "int", "float")
_ACTIVATIONS = (None, "none", "relu", "relu6", "relu_n1_to_1")


# --------------------------------------------------------------------------- validation


def _quantized_matrix(x, name: str, dtypes=(_INT8, _UINT8)) -> np.ndarray:
    want = " or ".join(str(d) for d in dtypes)
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array of dtype {want}, got {describe(x)}")
    if x.dtype not in dtypes:
        raise TypeError(f"{name}: expected dtype {want}, got dtype {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array, got shape {x.shape}")
    return x


def _integers(value, name: str) -> np.ndarray:
    """An integer scalar (as a 0-d int64 array) or an integer ndarray, refusing floats."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "iu":
            raise TypeError(f"{name}: expected integers, got an array of dtype {value.dtype}")
        return value
    if isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool, np.bool_)):
        v = int(value)
        if not -(2**63) <= v < 2**63:
            raise ValueError(f"{name}: expected an integer of at most 64 bits, got {v}")
        return np.asarray(v, dtype=np.int64)
    raise TypeError(f"{name}: expected an integer or an integer array, got {describe(value)}")


def _zero_point(zp, name: str, dtype: np.dtype, length: int, what: str) -> np.ndarray:
    """``zp`` as int64 of shape () or (length,), each value in ``dtype``'s range."""
    arr = _integers(zp, name)
    if arr.shape not in ((), (length,)):
        raise ValueError(f"{name}: expected a scalar or shape ({length},) ({what}), got shape {arr.shape}")
    info = np.iinfo(dtype)
    if arr.size and (arr.min() < info.min or arr.max() > info.max):
        raise ValueError(
            f"{name}: expected values in [{info.min}, {info.max}] (the range of {dtype}), "
            f"got values in [{arr.min()}, {arr.max()}]"
        )
    return arr.astype(np.int64)


def _max_centred(dtype: np.dtype, zp: np.ndarray) -> int:
    """max |v - z| over every value v of ``dtype`` and every zero point z."""
    info = np.iinfo(dtype)
    if zp.size == 0:
        return max(-int(info.min), int(info.max))
    return max(int(zp.max()) - int(info.min), int(info.max) - int(zp.min()))


def _check_accumulator_bound(names: str, k: int, a, za, b, zb, bias_max: int = 0) -> None:
    """Refuse, before computing, any shape whose worst case could overflow int32."""
    ca, cb = _max_centred(a.dtype, za), _max_centred(b.dtype, zb)
    worst = k * ca * cb + bias_max
    if worst > INT32_MAX:
        raise ValueError(
            f"{names}: K = {k} products of centred values up to {ca} * {cb}"
            f"{f' plus |bias| up to {bias_max}' if bias_max else ''} can reach {worst}, "
            f"more than 2**31 - 1: the int32 accumulator could overflow, so this shape is refused"
        )


def _matmul_operands(a_q, b_q, a_zero_point, b_zero_point, names, dtypes=(_INT8, _UINT8), bias_max=0):
    """Validate ``a (B, K)``, ``b (K, N)`` and zero points; return them with the zero
    points shaped to broadcast against (B, N): ``za`` () or (B, 1), ``zb`` () or (N,)."""
    a_name, b_name, za_name, zb_name = names
    a = _quantized_matrix(a_q, a_name, dtypes)
    b = _quantized_matrix(b_q, b_name, dtypes)
    if b.shape[0] != a.shape[1]:
        raise ValueError(
            f"{b_name}: expected {a.shape[1]} rows to match the {a.shape[1]} columns of "
            f"{a_name} {a.shape}, got shape {b.shape}"
        )
    za = _zero_point(a_zero_point, za_name, a.dtype, a.shape[0], f"one per row of {a_name}")
    zb = _zero_point(b_zero_point, zb_name, b.dtype, b.shape[1], f"one per column of {b_name}")
    _check_accumulator_bound(f"{a_name}, {b_name}", a.shape[1], a, za, b, zb, bias_max)
    return a, b, za.reshape(-1, 1) if za.ndim else za, zb


def _check_method(method) -> None:
    if method not in _METHODS:
        raise ValueError(f"method: expected one of {_METHODS}, got {method!r}")


def _max_abs(x: np.ndarray) -> int:
    # In Python ints: np.abs(int8(-128)) wraps to -128.
    return max(-int(x.min()), int(x.max())) if x.size else 0


def _float32_scale(value, name: str) -> np.float32:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.number)):
        raise TypeError(f"{name}: expected a real number, got {describe(value)}")
    with np.errstate(over="ignore"):
        s = np.float32(value)
    if not (np.isfinite(s) and s > 0):
        raise ValueError(f"{name}: expected a finite number > 0 as float32, got {value!r} (float32 {s})")
    return s


# --------------------------------------------------------------------------- int32 matmul


def exact_float_dtype(k: int, max_abs_a: int, max_abs_b: int) -> np.dtype | None:
    """The narrowest float type in which a matmul of integers is provably exact.

    A product of integer matrices with ``|a| <= max_abs_a``, ``|b| <= max_abs_b`` and inner
    dimension ``k`` has every partial sum (in any order) an integer of magnitude at most
    ``bound = k * max_abs_a * max_abs_b``. Every integer of magnitude ``<= 2**24`` is a
    float32, every one ``<= 2**53`` a float64 (IEEE 754 significands of 24 and 53 bits),
    so a float matmul under that bound never rounds, whatever summation order the BLAS
    picks, and returns the integer result exactly. (This assumes a classical BLAS that
    sums products of the inputs, as OpenBLAS, MKL and Accelerate do; a Strassen-like
    algorithm would form other intermediates.)

    Returns:
        ``float32`` if ``bound <= 2**24``, ``float64`` if ``bound <= 2**53``, else ``None``.
        Uncentred int8 against narrow-range int8: ``128 * 127 * 1032 < 2**24`` so float32 up
        to ``k = 1032``; float64 for any realistic ``k`` (up to about ``5.5e11``).
    """
    bound = (
        check_int_in_range(k, "k", 0, 2**62)
        * check_int_in_range(max_abs_a, "max_abs_a", 0, 2**62)
        * check_int_in_range(max_abs_b, "max_abs_b", 0, 2**62)
    )
    if bound <= 2**24:
        return np.dtype(np.float32)
    if bound <= 2**53:
        return np.dtype(np.float64)
    return None


def _exact_product(a: np.ndarray, b: np.ndarray, method: str) -> np.ndarray:
    """``sum_k a[i, k] * b[k, j]`` as int64: through float BLAS when provably exact."""
    if method != "int":
        dtype = exact_float_dtype(a.shape[1], _max_abs(a), _max_abs(b))
        if dtype is not None:
            return (a.astype(dtype) @ b.astype(dtype)).astype(np.int64)
        if method == "float":
            raise ValueError("method: 'float' cannot be exact here (bound above 2**53); use 'auto' or 'int'")
    return a.astype(np.int64) @ b.astype(np.int64)


def matmul_int32_direct(
    a_q: np.ndarray, b_q: np.ndarray, a_zero_point: IntLike = 0, b_zero_point: IntLike = 0
) -> np.ndarray:
    """Integer matmul with zero points, the definition computed literally.

    Formula (Jacob et al. 2018, eq. 4; TensorFlow Lite ``reference_integer_ops``)::

        acc[i, j] = sum_k (a[i, k] - za[i]) * (b[k, j] - zb[j])

    computed as: cast to int64, centre, int64 matmul, cast to int32. The cast is exact
    because the shape was first checked: ``|acc| <= K * max|a - za| * max|b - zb| <= 2**31 - 1``
    over the whole dtype range (e.g. int8 with ``za = -128``, int8 with ``zb = 0``:
    ``K * 255 * 128``, so K <= 65,793).

    Args:
        a_q: (B, K) int8 or uint8.
        b_q: (K, N) int8 or uint8.
        a_zero_point: int, or int array of shape (B,) (per row), in ``a_q``'s dtype range.
        b_zero_point: int, or int array of shape (N,) (per column), in ``b_q``'s dtype range.

    Returns:
        (B, N) int32.
    """
    names = ("a_q", "b_q", "a_zero_point", "b_zero_point")
    a, b, za, zb = _matmul_operands(a_q, b_q, a_zero_point, b_zero_point, names)
    a_centred = a.astype(np.int64) - za  # |a - za| <= 255
    b_centred = b.astype(np.int64) - zb
    acc = a_centred @ b_centred  # bounded by the check in _matmul_operands
    return acc.astype(np.int32)


def matmul_int32_expanded(
    a_q: np.ndarray,
    b_q: np.ndarray,
    a_zero_point: IntLike = 0,
    b_zero_point: IntLike = 0,
    method: str = "int",
) -> np.ndarray:
    """Integer matmul with zero points by gemmlowp's four-term expansion.

    Formula (gemmlowp "low-precision" doc, efficient handling of offsets; Jacob et al.
    2018, eq. 7-9)::

        acc[i, j] = sum_k a[i,k] b[k,j]  -  zb[j] * sum_k a[i,k]
                    -  za[i] * sum_k b[k,j]  +  K * za[i] * zb[j]

    Only the first term costs O(B K N); the others are row sums, column sums and a
    constant. That first term multiplies *uncentred* values (``|a|, |b| <= 128`` for int8),
    which is what lets it run exactly in float32 BLAS for larger K than the centred form
    (see :func:`exact_float_dtype`). The terms are combined in int64 and equal the direct
    form's sum exactly; the result fits int32 by the same shape check as
    :func:`matmul_int32_direct`.

    Args:
        a_q, b_q, a_zero_point, b_zero_point: as :func:`matmul_int32_direct`.
        method: how the big product is computed: ``"int"`` (int64, integer-only; the
            default here, for teaching), ``"float"`` (float BLAS in the narrowest exactly
            representing type; ``ValueError`` if none is exact) or ``"auto"`` (float when
            provably exact, int64 otherwise). All three give bit-identical results.

    Returns:
        (B, N) int32.
    """
    _check_method(method)
    names = ("a_q", "b_q", "a_zero_point", "b_zero_point")
    a, b, za, zb = _matmul_operands(a_q, b_q, a_zero_point, b_zero_point, names)
    k = a.shape[1]
    ab = _exact_product(a, b, method)  # sum_k a b          (B, N)
    a_rows = a.sum(axis=1, dtype=np.int64)[:, None]  # sum_k a[i, k]    (B, 1)
    b_cols = b.sum(axis=0, dtype=np.int64)  # sum_k b[k, j]            (N,)
    acc = ab - zb * a_rows - za * b_cols + k * za * zb
    return acc.astype(np.int32)


def matmul_int32(
    a_q: np.ndarray,
    b_q: np.ndarray,
    a_zero_point: IntLike = 0,
    b_zero_point: IntLike = 0,
    method: str = "auto",
) -> np.ndarray:
    """Integer matmul with zero points, exact and fast: the one to call.

    ``acc[i, j] = sum_k (a[i, k] - za[i]) * (b[k, j] - zb[j])`` in int32, computed by
    :func:`matmul_int32_expanded` with ``method="auto"``: the O(B K N) product of
    uncentred operands goes through float32 BLAS when ``K * max|a| * max|b| <= 2**24``
    (the maxima of the actual inputs), float64 BLAS when that bound is ``<= 2**53``, and
    int64 otherwise. NumPy has no integer BLAS, so the float routes are 10-100x faster,
    and they are exact: every partial sum is an integer no larger than the bound, and
    every such integer is representable, so no rounding ever happens
    (:func:`exact_float_dtype`). Results are bit-identical for every ``method``. (The
    int32 check already limits K to about 2**17, far inside float64's exact range, so in
    practice "auto" never needs its int64 fallback; it is kept so the proof never rests
    on the caller.)

    Args:
        a_q: (B, K) int8 or uint8.
        b_q: (K, N) int8 or uint8.
        a_zero_point: int or (B,) int array; b_zero_point: int or (N,) int array.
        method: ``"auto"``, ``"int"`` or ``"float"``.

    Returns:
        (B, N) int32.

    Raises:
        ValueError: K mismatch, zero points out of the operand's range or of the wrong
            length, or a K for which the int32 accumulator could overflow (checked before
            computing, from dtype ranges and zero points).
        TypeError: operands that are not int8/uint8 arrays, float zero points.
    """
    return matmul_int32_expanded(a_q, b_q, a_zero_point, b_zero_point, method)


# --------------------------------------------------------------------------- requantization


def _check_per_channel(value, name: str, n: int) -> None:
    if isinstance(value, np.ndarray) and value.shape not in ((), (n,)):
        raise ValueError(
            f"{name}: expected a scalar or shape ({n},) (one per output channel, the last axis), "
            f"got shape {value.shape}"
        )


def _check_output_range(out_zero_point, act_min, act_max) -> tuple[int, int, int]:
    zp = check_int_in_range(out_zero_point, "out_zero_point", -128, 127)
    lo = check_int_in_range(act_min, "act_min", -128, 127)
    hi = check_int_in_range(act_max, "act_max", -128, 127)
    if lo > hi:
        raise ValueError(f"act_min, act_max: expected act_min <= act_max, got {lo} > {hi}")
    return zp, lo, hi


def requantize(
    acc: np.ndarray,
    m0: IntLike,
    shift: IntLike,
    out_zero_point: int,
    act_min: int = -128,
    act_max: int = 127,
    rounding: str = "single",
) -> np.ndarray:
    """Map int32 accumulators to int8 outputs, integers only (TensorFlow Lite).

    Formula (TensorFlow Lite ``reference_integer_ops::FullyConnected``, after the sum)::

        y = clamp(MBQM(acc, m0, shift) + zp_out, act_min, act_max)      -> int8

    with ``MBQM`` = :func:`~nnref.quant.fixed_point.multiply_by_quantized_multiplier`
    (``rounding`` ``"single"`` or ``"double"``) and ``m0 * 2**(shift - 31) ~= s_in * s_w / s_out``.
    A fused ReLU/ReLU6 is just the clamp bounds (:func:`activation_range`).

    Args:
        acc: int32 array of shape (..., N).
        m0, shift: ints, or int arrays of shape (N,) for per-output-channel requantization
            (applied along the last axis).
        out_zero_point, act_min, act_max: ints in [-128, 127], ``act_min <= act_max``.

    Returns:
        int8 array of ``acc``'s shape.
    """
    if not isinstance(acc, np.ndarray) or acc.dtype != np.int32 or acc.ndim == 0:
        raise TypeError(f"acc: expected an int32 array with at least one axis, got {describe(acc)}")
    _check_per_channel(m0, "m0", acc.shape[-1])
    _check_per_channel(shift, "shift", acc.shape[-1])
    zp, lo, hi = _check_output_range(out_zero_point, act_min, act_max)
    scaled = multiply_by_quantized_multiplier(acc, m0, shift, rounding)  # int32
    shifted = scaled.astype(np.int64) + zp  # int32 + int8: no overflow in int64
    return np.clip(shifted, lo, hi).astype(np.int8)


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

    Args:
        activation: one of ``None``, ``"none"``, ``"relu"``, ``"relu6"``, ``"relu_n1_to_1"``.
        out_scale: the output scale, a finite number > 0 (as float32).
        out_zero_point: int in ``[qmin, qmax]``.
        qmin, qmax: the output integer range, default int8.

    Returns:
        ``(act_min, act_max)`` Python ints with ``qmin <= act_min <= act_max <= qmax``.
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation: expected one of {_ACTIVATIONS}, got {activation!r}")
    qmin = check_int_in_range(qmin, "qmin", INT32_MIN, INT32_MAX)
    qmax = check_int_in_range(qmax, "qmax", qmin, INT32_MAX)
    zp = check_int_in_range(out_zero_point, "out_zero_point", qmin, qmax)
    scale = _float32_scale(out_scale, "out_scale")
    if activation in (None, "none"):
        return qmin, qmax
    if activation == "relu":
        return max(qmin, _quantize_bound(0.0, scale, zp)), qmax
    if activation == "relu6":
        return max(qmin, _quantize_bound(0.0, scale, zp)), min(qmax, _quantize_bound(6.0, scale, zp))
    return max(qmin, _quantize_bound(-1.0, scale, zp)), min(qmax, _quantize_bound(1.0, scale, zp))


# --------------------------------------------------------------------------- layers


def quantized_linear(
    x_q: np.ndarray,
    w_q: np.ndarray,
    bias_q: np.ndarray | None,
    x_zero_point: int,
    w_zero_point: IntLike,
    m0: IntLike,
    shift: IntLike,
    out_zero_point: int,
    act_min: int = -128,
    act_max: int = 127,
    rounding: str = "single",
    method: str = "auto",
    return_acc: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """An int8 Linear layer ``y = x @ W + b``, integers only (TensorFlow Lite order).

    Formula (TensorFlow Lite ``reference_integer_ops::FullyConnected`` and
    ``FullyConnectedPerChannel``, with ``input_offset = -zp_x``, ``weights_offset = -zp_w``,
    ``output_offset = zp_out``)::

        acc[i, j] = sum_k (w[k, j] - zp_w) * (x[i, k] - zp_x)     int32
        acc[i, j] += bias[j]                                       int32
        acc[i, j] = MBQM(acc[i, j], m0[j], shift[j])               int32
        acc[i, j] += zp_out
        y[i, j]   = clamp(acc[i, j], act_min, act_max)             -> int8

    The sum is computed by :func:`matmul_int32` (equal to TensorFlow Lite's loop, exactly).
    Weights are laid out (K, N) = (in, out), as nnref's Linear (``y = x @ W + b``);
    TensorFlow Lite stores them (out, in), so pass ``W.T`` of a TensorFlow Lite filter.

    Args:
        x_q: (B, K) int8. w_q: (K, N) int8.
        bias_q: (N,) int32 (scale ``s_x * s_w[j]``, zero point 0) or ``None``.
        x_zero_point: int in [-128, 127]. w_zero_point: int or (N,) ints (0 for
            TensorFlow Lite's symmetric weights).
        m0, shift: ints, or (N,) int arrays for per-channel weights.
        out_zero_point, act_min, act_max: ints in [-128, 127] (see :func:`activation_range`).
        rounding: ``"single"`` or ``"double"``; method: as :func:`matmul_int32`.
        return_acc: also return the int32 accumulators (after the bias, before MBQM).

    Returns:
        (B, N) int8, or ``(y, acc)`` with ``acc`` (B, N) int32 when ``return_acc``.

    Raises:
        ValueError: shapes, ranges, or a K for which ``K * max|x - zp_x| * max|w - zp_w|
            + max|bias|`` could exceed ``2**31 - 1`` (checked before computing).
    """
    names = ("x_q", "w_q", "x_zero_point", "w_zero_point")
    x, w, zx, zw = _matmul_operands(x_q, w_q, x_zero_point, w_zero_point, names, (_INT8,))
    n = w.shape[1]
    if bias_q is not None:
        if not isinstance(bias_q, np.ndarray) or bias_q.dtype != np.int32:
            raise TypeError(f"bias_q: expected an int32 array or None, got {describe(bias_q)}")
        if bias_q.shape != (n,):
            raise ValueError(f"bias_q: expected shape ({n},) (one per output), got shape {bias_q.shape}")
        _check_accumulator_bound("x_q, w_q, bias_q", x.shape[1], x, zx, w, zw, _max_abs(bias_q))
    _check_method(method)
    _check_per_channel(m0, "m0", n)
    _check_per_channel(shift, "shift", n)
    _check_output_range(out_zero_point, act_min, act_max)

    acc = matmul_int32(x_q, w_q, x_zero_point, w_zero_point, method)
    if bias_q is not None:
        acc = (acc.astype(np.int64) + bias_q).astype(np.int32)  # |acc| + |bias| <= 2**31 - 1, checked
    y = requantize(acc, m0, shift, out_zero_point, act_min, act_max, rounding)
    return (y, acc) if return_acc else y


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
    arr = _integers(value, name)
    _check_onnx_shape(arr, name, shapes)
    return _zero_point(arr.reshape(-1) if arr.size > 1 else arr.reshape(()), name, dtype, length, what)


def _output_dtype(y_zero_point) -> np.dtype:
    dtype = getattr(y_zero_point, "dtype", None)
    if not isinstance(y_zero_point, (np.ndarray, np.integer)) or dtype not in (_INT8, _UINT8):
        raise TypeError(
            f"y_zero_point: expected a numpy int8 or uint8 scalar (its dtype sets the output "
            f"dtype), got {describe(y_zero_point)}"
        )
    if np.size(y_zero_point) != 1:
        raise ValueError(f"y_zero_point: expected a single value, got shape {np.shape(y_zero_point)}")
    return np.dtype(dtype)


def qlinear_matmul(
    a: np.ndarray,
    a_scale: float | np.ndarray,
    a_zero_point: IntLike,
    b: np.ndarray,
    b_scale: float | np.ndarray,
    b_zero_point: IntLike,
    y_scale: float,
    y_zero_point: np.integer | np.ndarray,
) -> np.ndarray:
    """ONNX ``QLinearMatMul`` as onnxruntime's CPU kernel computes it (2-D case).

    Formula (onnxruntime ``quantize_linear_matmul.cc`` and MLAS ``MlasRequantizeOutput``)::

        acc[i, j]  = sum_k (a[i, k] - za[i]) * (b[k, j] - zb[j])          int32, exact
        mult[i, j] = float32(float32(a_scale[i] * b_scale[j]) / y_scale)  float32 ops, this order
        v[i, j]    = float32(acc[i, j]) * mult[i, j]                      float32
        v[i, j]    = clamp(v[i, j], qmin - zy, qmax - zy)                 (in float32)
        y[i, j]    = nearbyint(v[i, j]) + zy                              round half to even

    so ``y = saturate(round_half_even(acc * mult) + zy)``: the zero point is added *after*
    rounding. ``float32(acc)`` itself rounds (half to even) once ``|acc| > 2**24``.
    ONNX's Python reference evaluator (``onnx.reference``) differs in two ways: it
    multiplies the int32 ``acc`` by the float32 multiplier in float64, and adds ``zy``
    *before* ``rint``; the two disagree by one at (near-)ties, e.g. ``acc * mult = 2.5``
    with ``zy = 1``: onnxruntime gives ``2 + 1 = 3``, the reference ``rint(3.5) = 4``.

    Scales are float32 tensors in ONNX: they are rounded to float32 first; a multiplier
    that is not finite in float32 (``y_scale = 1e-45``, ``a_scale = b_scale = 1e38``) is
    refused (onnxruntime would cast ``inf``/``NaN`` to an integer). onnxruntime
    requires a per-tensor ``a_scale``/``a_zero_point``; the per-row form the ONNX spec
    allows is supported here with the same per-element arithmetic. onnxruntime registers
    the kernel only for ``(a, b -> y)`` = ``(uint8, uint8 or int8 -> uint8)`` and ``(int8,
    int8 -> int8)``; nnref also accepts the other mixes of int8/uint8 (``int8, uint8``,
    or an output type different from those) as an extension with the same arithmetic. Where onnxruntime's
    int32 accumulator would wrap, nnref refuses the shape (see :func:`matmul_int32`).

    Args:
        a: (M, K) int8 or uint8; a_scale, a_zero_point: scalars or shape (M,) / (M, 1).
        b: (K, N) int8 or uint8; b_scale, b_zero_point: scalars or shape (N,) / (1, N).
        y_scale: scalar > 0. y_zero_point: a numpy int8 or uint8 scalar (or 1-element
            array); its dtype is the output dtype.

    Returns:
        (M, N) array of ``y_zero_point``'s dtype.
    """
    a = _quantized_matrix(a, "a")
    b = _quantized_matrix(b, "b")
    m, n = a.shape[0], b.shape[1]
    per_row, per_col = ((), (1,), (m,), (m, 1)), ((), (1,), (n,), (1, n))
    out_dtype = _output_dtype(y_zero_point)
    zy = int(np.asarray(y_zero_point).reshape(()))
    sa = _onnx_scale(a_scale, "a_scale", per_row, (m, 1))
    sb = _onnx_scale(b_scale, "b_scale", per_col, (n,))
    sy = _onnx_scale(y_scale, "y_scale", ((), (1,)), ())
    za = _onnx_zero_point(a_zero_point, "a_zero_point", a.dtype, per_row, m, "one per row of a")
    zb = _onnx_zero_point(b_zero_point, "b_zero_point", b.dtype, per_col, n, "one per column of b")
    _matmul_operands(a, b, za, zb, ("a", "b", "a_zero_point", "b_zero_point"))  # K, overflow bound

    with np.errstate(over="ignore", under="ignore"):
        multiplier = (sa * sb) / sy  # float32 * float32, then / float32: onnxruntime's order
    if not np.all(np.isfinite(multiplier)):
        # inf * acc would be inf or NaN, and casting that to an integer wraps silently.
        raise ValueError(
            f"a_scale, b_scale, y_scale: the float32 multiplier (a_scale * b_scale) / y_scale "
            f"is not finite (a_scale in [{float(sa.min())!r}, {float(sa.max())!r}], b_scale in "
            f"[{float(sb.min())!r}, {float(sb.max())!r}], y_scale = {float(sy)!r})"
        )
    acc = matmul_int32(a, b, za, zb)  # int32, exact (onnxruntime: MlasGemm)
    v = acc.astype(np.float32) * multiplier  # float32
    info = np.iinfo(out_dtype)
    v = np.clip(v, np.float32(info.min - zy), np.float32(info.max - zy))  # MLAS clamps first
    y = np.rint(v).astype(np.int32) + zy  # round half to even, then add the zero point
    return y.astype(out_dtype)
