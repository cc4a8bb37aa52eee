"""Fixed-point arithmetic for integer-only requantization (TensorFlow Lite / gemmlowp).

An int8 network produces int32 accumulators in units of ``s_x * s_w``; to turn them into
int8 outputs in units of ``s_out`` they are multiplied by the real number
``M = s_x * s_w / s_out``. Integer-only hardware cannot multiply by a real, so ``M`` is
stored as a 31-bit fixed-point mantissa and a power-of-two exponent,

    M ~= m0 * 2**(shift - 31),    m0 in [2**30, 2**31)   (Jacob et al. 2018, eq. 5-6)

and applied with one integer multiply and a rounding shift. Everything here follows
TensorFlow Lite's ``QuantizeMultiplier`` / ``MultiplyByQuantizedMultiplier``
(``tensorflow/lite/kernels/internal/quantization_util.cc`` and ``common.cc``) and
gemmlowp's ``fixedpoint.h`` bit for bit, vectorised over numpy arrays.

Integer discipline: data arguments are int32 (arrays must have dtype int32; Python ints
are range-checked), every intermediate is int64 and provably in range (the bound is
stated next to each computation), and a result that would not fit int32 raises
``ValueError`` instead of wrapping: C++ leaves those cases undefined or ``DCHECK``-ed,
nnref refuses them.
"""

from __future__ import annotations

import numbers

import numpy as np

from nnref._checks import as_float_array, describe

__all__ = [
    "INT32_MIN",
    "INT32_MAX",
    "quantize_multiplier",
    "saturating_rounding_doubling_high_mul",
    "rounding_divide_by_pot",
    "multiply_by_quantized_multiplier",
    "srdhm",
    "rdbpot",
    "mbqm_single",
    "mbqm_double",
    "MBQM",
    "check_mbqm_operands",
    "check_mbqm_fits",
]

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
_ROUNDINGS = ("single", "double")

IntLike = int | np.integer | np.ndarray  # a Python/NumPy integer or an integer array


# --------------------------------------------------------------------------- validation


def _int_operand(x, name: str, lo: int, hi: int, *, int32_only: bool) -> np.ndarray:
    """Return ``x`` as an int64 array (0-d for scalars) after checking every value is in
    ``[lo, hi]``. With ``int32_only`` an ndarray must already have dtype int32 (data
    tensors); otherwise any integer dtype is accepted (parameters such as shifts)."""
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "iu":
            raise TypeError(f"{name}: expected an integer array, got dtype {x.dtype}")
        if int32_only and x.dtype != np.int32:
            raise TypeError(f"{name}: expected an int32 array, got dtype {x.dtype}")
        arr = x
    elif isinstance(x, (numbers.Integral, np.integer)) and not isinstance(x, (bool, np.bool_)):
        arr = np.asarray(int(x), dtype=object)  # range-check as a Python int, then convert
    else:
        want = "an int32 array or an int" if int32_only else "an integer array or an int"
        raise TypeError(f"{name}: expected {want}, got {describe(x)}")
    if arr.size and (arr.min() < lo or arr.max() > hi):
        raise ValueError(
            f"{name}: expected integers in [{lo}, {hi}], got values in [{arr.min()}, {arr.max()}]"
        )
    return arr.astype(np.int64)


def _check_m0(m0) -> np.ndarray:
    m = _int_operand(m0, "m0", 0, INT32_MAX, int32_only=False)
    normalised = (m == 0) | (m >= 2**30)
    if not np.all(normalised):
        bad = int(m[~normalised].flat[0])
        raise ValueError(
            f"m0: expected 0 or an integer in [2**30, 2**31) (a normalised Q0.31 mantissa "
            f"from quantize_multiplier), got {bad}"
        )
    return m


def _broadcast_shape(**arrays: np.ndarray) -> tuple[int, ...]:
    try:
        return np.broadcast_shapes(*(a.shape for a in arrays.values()))
    except ValueError:
        shapes = ", ".join(f"{k} {v.shape}" for k, v in arrays.items())
        raise ValueError(f"{', '.join(arrays)}: expected broadcastable shapes, got {shapes}") from None


def _as_int32_result(r: np.ndarray):
    """Cast a proven-in-range int64 result to int32 (a numpy scalar for 0-d results)."""
    return r.astype(np.int32)[()]


# --------------------------------------------------------------------------- multiplier


def quantize_multiplier(real: float | np.ndarray) -> tuple[int, int] | tuple[np.ndarray, np.ndarray]:
    """Split a real multiplier into a Q0.31 mantissa and a power-of-two exponent.

    Formula (TensorFlow Lite ``QuantizeMultiplier``, double precision)::

        (q, e) = frexp(M)                       # M = q * 2**e, q in [0.5, 1)
        m0     = round_half_away(q * 2**31)     # in [2**30, 2**31]
        if m0 == 2**31:  m0, e = 2**30, e + 1   # rounding carried into the next binade
        if e < -31:      m0, e = 0, 0           # |M| < 2**-32: flushed to zero
        shift  = e                              # so M ~= m0 * 2**(shift - 31)

    and ``M == 0`` gives ``(0, 0)``. The result is within half a unit of the last place:
    ``|m0 * 2**(shift - 31) - M| <= 2**(shift - 32)``.

    Parameters
    ----------
    real
        a number or an array of numbers ``M >= 0`` (per-channel multipliers),
        converted to float64 first (TensorFlow Lite computes in ``double``).

    Returns
    -------
    result
        ``(m0, shift)``: Python ints for a scalar ``real``, otherwise two int32 arrays of
        ``real``'s shape.

    Raises
    ------
    ValueError
        negative, NaN or infinite ``real``, or ``real >= 2**30 - 2**-2`` (the
        shift would exceed 30, outside ``multiply_by_quantized_multiplier``'s range;
        TensorFlow Lite's single-rounding build silently saturates such multipliers to
        ``(2**31 - 1, 30)`` and its double-rounding build returns a shift whose
        ``x * 2**shift`` overflows; nnref refuses them instead).
    TypeError
        non-numeric ``real``.
    """
    m = as_float_array(real, "real", dtype=np.float64, allow_empty=True)
    if np.any(m < 0):
        raise ValueError(f"real: expected multipliers >= 0, got minimum {float(m.min())!r}")
    q, e = np.frexp(m)  # frexp(0) = (0.0, 0), so M == 0 falls through to (0, 0)
    # q * 2**31 only moves the binary point (exact); q has 53 bits so q * 2**31 has 22
    # fractional bits and adding 0.5 is exact too: floor(v + 0.5) is round-half-away for v >= 0.
    m0 = np.floor(q * 2.0**31 + 0.5).astype(np.int64)
    e = e.astype(np.int64)
    carry = m0 == 2**31
    m0 = np.where(carry, 2**30, m0)
    e = np.where(carry, e + 1, e)
    tiny = e < -31
    m0 = np.where(tiny, 0, m0)
    e = np.where(tiny, 0, e)
    if np.any(e > 30):
        raise ValueError(
            f"real: expected multipliers below 2**30 - 2**-2 (shift <= 30), got maximum {float(m.max())!r}"
        )
    if m.ndim == 0:
        return int(m0), int(e)
    return m0.astype(np.int32), e.astype(np.int32)


# --------------------------------------------------------------------------- plain arithmetic


def srdhm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Saturating rounding doubling high multiply: ``a * b / 2**31``, rounded (plain).

    Formula (gemmlowp ``SaturatingRoundingDoublingHighMul``, ``fixedpoint.h``; Jacob et
    al. 2018, arXiv 1712.05877, section 2.2)::

        SRDHM(a, b) = 2**31 - 1                        if a == b == -2**31
                    = trunc((a * b + nudge) / 2**31)   nudge = 2**30 if a*b >= 0 else 1 - 2**30

    i.e. round to nearest with ties toward +infinity.

    Parameters
    ----------
    a, b : ndarray of int
        Values in int32 range, broadcast together.

    Returns
    -------
    ndarray of int64
        In int32 range. No checks: :func:`saturating_rounding_doubling_high_mul` checks.
    """
    ab = np.multiply(a, b, dtype=np.int64)  # |a * b| <= 2**62: exact
    s = ab + np.where(ab >= 0, 2**30, 1 - 2**30)
    high = np.where(s >= 0, s >> 31, -((-s) >> 31))  # C++ division truncates toward zero
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, high)


def rdbpot(x: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """Rounding divide by a power of two: ``x / 2**exponent``, ties away from zero (plain).

    Formula (gemmlowp ``RoundingDivideByPOT``, ``fixedpoint.h``), ``0 <= exponent <= 31``::

        mask      = 2**exponent - 1
        remainder = x & mask
        threshold = (mask >> 1) + (1 if x < 0 else 0)
        RDBPOT    = (x >> exponent) + (1 if remainder > threshold else 0)

    Parameters
    ----------
    x : ndarray of int
        Values in int32 range.
    exponent : int or ndarray of int
        In ``[0, 31]``, broadcast against ``x``.

    Returns
    -------
    ndarray of int64
    """
    x = np.asarray(x, dtype=np.int64)
    mask = (np.int64(1) << exponent) - 1
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + ((x & mask) > threshold)


def mbqm_single(x: np.ndarray, m0: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Multiply by the quantized multiplier ``m0 * 2**(shift - 31)``, one rounding (plain).

    Formula (TensorFlow Lite ``MultiplyByQuantizedMultiplier`` with
    ``TFLITE_SINGLE_ROUNDING``, ``kernels/internal/common.cc``)::

        t    = 31 - shift                       # in [1, 62]
        MBQM = (x * m0 + 2**(t - 1)) >> t       # in int64: round half toward +infinity

    Parameters
    ----------
    x : ndarray of int
        Values in int32 range (e.g. int32 accumulators).
    m0 : int or ndarray of int
        0 or in ``[2**30, 2**31)``; per-channel arrays apply along the last axis of ``x``.
    shift : int or ndarray of int
        In ``[-31, 30]``.

    Returns
    -------
    ndarray of int64
        In int32 range whenever ``shift <= 0``; :func:`multiply_by_quantized_multiplier`
        checks the other cases.
    """
    t = 31 - np.asarray(shift, dtype=np.int64)
    return (np.multiply(x, m0, dtype=np.int64) + (np.int64(1) << (t - 1))) >> t


def mbqm_double(x: np.ndarray, m0: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Multiply by the quantized multiplier ``m0 * 2**(shift - 31)``, two roundings (plain).

    Formula (gemmlowp; TensorFlow Lite ``MultiplyByQuantizedMultiplier`` without
    ``TFLITE_SINGLE_ROUNDING``; Jacob et al. 2018, section 2.2)::

        MBQM = RDBPOT(SRDHM(x * 2**max(shift, 0), m0), max(-shift, 0))

    Parameters
    ----------
    x, m0, shift
        As :func:`mbqm_single`; ``x * 2**max(shift, 0)`` must fit int32.

    Returns
    -------
    ndarray of int64
        In int32 range.
    """
    shift = np.asarray(shift, dtype=np.int64)
    scaled = np.asarray(x, dtype=np.int64) << np.maximum(shift, 0)
    return rdbpot(srdhm(scaled, m0), np.maximum(-shift, 0))


MBQM = {"single": mbqm_single, "double": mbqm_double}
"""The plain multiplier functions by rounding name."""


def check_mbqm_operands(x, m0, shift, rounding: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check the arguments of :func:`multiply_by_quantized_multiplier`.

    Returns
    -------
    tuple of ndarray of int64
        ``x``, ``m0`` and ``shift``, broadcastable together.

    Raises
    ------
    TypeError, ValueError
        As :func:`multiply_by_quantized_multiplier`.

    Parameters
    ----------
    x, m0, shift : int or ndarray of int
    rounding : {"single", "double"}
    """
    x64 = _int_operand(x, "x", INT32_MIN, INT32_MAX, int32_only=True)
    m64 = _check_m0(m0)
    s64 = _int_operand(shift, "shift", -31, 30, int32_only=False)
    _broadcast_shape(x=x64, m0=m64, shift=s64)
    if not isinstance(rounding, str) or rounding not in MBQM:
        raise ValueError(f"rounding: expected one of {_ROUNDINGS}, got {rounding!r}")
    return x64, m64, s64


def check_mbqm_fits(x: np.ndarray, m0: np.ndarray, shift: np.ndarray, rounding: str) -> None:
    """Refuse a multiplier application that does not fit int32.

    Single rounding: the result must fit; double rounding: ``x * 2**max(shift, 0)`` must.
    Neither can fail when every ``shift <= 0`` (a multiplier below 1).

    Raises
    ------
    ValueError
        Naming ``x``; TensorFlow Lite assumes both never happen (a ``DCHECK``, or
        undefined behaviour in C++).

    Parameters
    ----------
    x, m0, shift : ndarray of int64
        As returned by :func:`check_mbqm_operands`.
    rounding : {"single", "double"}
    """
    if not np.any(shift > 0):
        return
    r, what = (mbqm_single(x, m0, shift), "x * m0 * 2**(shift - 31)") if rounding == "single" else (
        np.asarray(x, dtype=np.int64) << np.maximum(shift, 0), "x * 2**max(shift, 0)")
    if r.size and (r.min() < INT32_MIN or r.max() > INT32_MAX):
        raise ValueError(
            f"x: {what} does not fit int32 (got values in [{r.min()}, {r.max()}]); "
            "TensorFlow Lite assumes it does (a DCHECK, or undefined behaviour in C++)"
        )


def saturating_rounding_doubling_high_mul(a: IntLike, b: IntLike) -> np.int32 | np.ndarray:
    """gemmlowp ``SaturatingRoundingDoublingHighMul``: the high 32 bits of ``2 * a * b``.

    Formula (gemmlowp ``fixedpoint.h``; Jacob et al. 2018, section 2.2)::

        SRDHM(a, b) = 2**31 - 1                      if a == b == -2**31   (saturate)
                    = floor((a * b + 2**30) / 2**31) otherwise

    i.e. ``a * b / 2**31`` rounded to nearest, ties toward +infinity. (gemmlowp writes this
    as adding a nudge of ``2**30`` or ``1 - 2**30`` by the sign of ``a * b`` and dividing
    with truncation toward zero; the two forms are equal for every integer product.) Read
    ``b`` as the Q0.31 number ``b / 2**31``: the result is ``a`` times that, rounded.

    Parameters
    ----------
    a, b
        int32 arrays (or ints in int32 range), broadcast together.

    Returns
    -------
    result
        int32 array of the broadcast shape (a numpy int32 scalar for scalar inputs).
    """
    a64 = _int_operand(a, "a", INT32_MIN, INT32_MAX, int32_only=True)
    b64 = _int_operand(b, "b", INT32_MIN, INT32_MAX, int32_only=True)
    _broadcast_shape(a=a64, b=b64)
    return _as_int32_result(srdhm(a64, b64))


def rounding_divide_by_pot(x: IntLike, exponent: IntLike) -> np.int32 | np.ndarray:
    """gemmlowp ``RoundingDivideByPOT``: ``x / 2**exponent`` rounded, ties away from zero.

    Formula (gemmlowp ``fixedpoint.h``)::

        mask      = 2**exponent - 1
        remainder = x & mask                    # x mod 2**exponent
        threshold = (mask >> 1) + (1 if x < 0 else 0)
        RDBPOT(x, exponent) = (x >> exponent) + (1 if remainder > threshold else 0)

    which equals ``sign(x) * floor(|x| / 2**exponent + 1/2)``.

    Parameters
    ----------
    x
        int32 array (or int in int32 range).
    exponent
        int or integer array in ``[0, 31]``, broadcast against ``x``.

    Returns
    -------
    result
        int32 array of the broadcast shape (a numpy int32 scalar for scalar inputs).
    """
    x64 = _int_operand(x, "x", INT32_MIN, INT32_MAX, int32_only=True)
    e64 = _int_operand(exponent, "exponent", 0, 31, int32_only=False)
    _broadcast_shape(x=x64, exponent=e64)
    return _as_int32_result(rdbpot(x64, e64))


# --------------------------------------------------------------------------- multiplier application


def multiply_by_quantized_multiplier(
    x: IntLike, m0: IntLike, shift: IntLike, rounding: str = "single"
) -> np.int32 | np.ndarray:
    """Multiply int32 values by the real ``M = m0 * 2**(shift - 31)``, integers only.

    ``rounding="single"`` (TensorFlow Lite with ``TFLITE_SINGLE_ROUNDING``, its
    integer-only form; ``common.cc``. LiteRT 2.3's reference FULLY_CONNECTED multiplies by
    ``M`` in double instead: profile ``"float64"`` of :mod:`nnref.quant.profiles`)::

        t = 31 - shift
        MBQM(x) = (x * m0 + 2**(t - 1)) >> t        # in int64: one rounding, ties toward +inf

    ``rounding="double"`` (gemmlowp; Jacob et al. 2018, section 2.2; TensorFlow Lite
    without the compile-time switch ``TFLITE_SINGLE_ROUNDING``, which selects between the
    two forms: builds that leave it off, as TensorFlow Lite Micro builds commonly do, use
    this one)::

        MBQM(x) = RDBPOT(SRDHM(x * 2**max(shift, 0), m0), max(-shift, 0))

    Two roundings (ties toward +inf, then ties away from zero) can differ by one from the
    single-rounding result, e.g. ``x = 5, m0 = 2**30, shift = -1`` (``M = 1/4``,
    ``x * M = 1.25``): single gives 1, double gives ``RDBPOT(SRDHM(5, 2**30) = 3, 1) = 2``.

    Per-channel requantization passes ``m0`` and ``shift`` of shape ``(N,)``; numpy
    broadcasting applies them along the last axis of ``x`` of shape ``(..., N)``.

    Parameters
    ----------
    x
        int32 array (or int in int32 range), e.g. int32 accumulators.
    m0
        int or integer array, each ``0`` or in ``[2**30, 2**31)``
        (from :func:`quantize_multiplier`).
    shift
        int or integer array in ``[-31, 30]`` (TensorFlow Lite's DCHECKed range).
    rounding
        ``"single"`` or ``"double"``.

    Returns
    -------
    result
        int32 array of the broadcast shape (a numpy int32 scalar for scalar inputs).

    Raises
    ------
    ValueError
        the result (single) or ``x * 2**max(shift, 0)`` (double) does not fit
        int32. TensorFlow Lite assumes both never happen (a ``DCHECK`` in the
        single-rounding kernel, undefined behaviour in the double-rounding one); nnref
        checks and raises rather than saturating or wrapping. Neither can happen for
        ``shift <= 0``, i.e. for any multiplier ``M < 1``.
    TypeError
        float arrays, or an ``x`` array whose dtype is not int32.
    """
    x64, m64, s64 = check_mbqm_operands(x, m0, shift, rounding)
    check_mbqm_fits(x64, m64, s64, rounding)
    r = MBQM[rounding](x64, m64, s64)
    return _as_int32_result(r)
