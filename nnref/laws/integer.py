"""Laws of the integer-only arithmetic: gemmlowp's SRDHM and rounding divide by a power of
two, TensorFlow Lite's multiplier (single and double rounding), requantization, the
zero-point matmul, the int8 Linear layer, and onnxruntime's float requantization.

The oracles use Python integers (unbounded, ``>>`` floors), so they are exact over the
whole int32 range and share no code with numpy implementations.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from hypothesis import strategies as st

from nnref.laws.compare import expect_equal, expect_pair
from nnref.laws.core import Law, LawViolation
from nnref.laws.strategies import floats
from nnref.laws.training import unchanged_law, worked

__all__ = ["srdhm_laws", "rdbpot_laws", "mbqm_single_laws", "mbqm_double_laws", "requantize_laws",
           "matmul_laws", "linear_int8_laws", "qlinear_multiplier_laws", "requantize_float_laws",
           "quantize_multiplier_laws", "quantize_bias_laws"]

I32_MIN, I32_MAX = -(2**31), 2**31 - 1


def srdhm_o(a: int, b: int) -> int:
    """SRDHM on Python integers (the oracle): ``(a b + 2**30) >> 31``, saturating INT32_MIN**2."""
    return I32_MAX if a == b == I32_MIN else (a * b + 2**30) >> 31


def rdbpot_o(x: int, e: int) -> int:
    """RDBPOT on Python integers (the oracle): ``x / 2**e`` rounded half away from zero."""
    magnitude = (abs(x) + ((1 << e) >> 1)) >> e
    return magnitude if x >= 0 else -magnitude


def mbqm_single_o(x: int, m0: int, shift: int) -> int:
    """Single-rounding MBQM on Python integers (the oracle): ``round(x m0 / 2**(31 - shift))``, ties up."""
    t = 31 - shift
    return (x * m0 + (1 << (t - 1))) >> t


def mbqm_double_o(x: int, m0: int, shift: int) -> int:
    """Double-rounding MBQM on Python integers (the oracle): SRDHM of the shifted ``x``, then RDBPOT."""
    return rdbpot_o(srdhm_o(x << max(shift, 0), m0), max(-shift, 0))


_MBQM = {"single": mbqm_single_o, "double": mbqm_double_o}


def _apply(oracle, *arrays_) -> np.ndarray:
    """Apply a scalar oracle over broadcast integer arrays, exactly (Python ints)."""
    b = np.broadcast_arrays(*[np.asarray(a, dtype=np.int64) for a in arrays_])
    flat = [oracle(*(int(v) for v in vals)) for vals in zip(*(a.ravel() for a in b))]
    return np.array(flat, dtype=np.int64).reshape(b[0].shape)


def _int32s(draw, n: int, lo: int = I32_MIN, hi: int = I32_MAX) -> np.ndarray:
    edges = [v for v in (I32_MIN, I32_MIN + 1, -(2**30), -1, 0, 1, 2**30, I32_MAX) if lo <= v <= hi]
    vals = st.one_of(st.sampled_from(edges), st.integers(lo, hi), st.integers(max(lo, -1000), min(hi, 1000)))
    return np.array(draw(st.lists(vals, min_size=n, max_size=n)), dtype=np.int32)


def _expect_ints(got, want, what):
    got_arr = np.asarray(got)
    if got_arr.dtype.kind not in "iu":
        raise LawViolation(f"{what}: expected an integer array, got dtype {got_arr.dtype}", want, got)
    expect_equal(got_arr.astype(np.int64), want, what, dtype=False)


# ---------------------------------------------------------------- SRDHM and RDBPOT

@st.composite
def _srdhm_cases(draw):
    n = draw(st.integers(1, 6))
    a = _int32s(draw, n)
    b = _int32s(draw, n) if draw(st.booleans()) else np.full(n, draw(st.sampled_from([2**30, I32_MIN, I32_MAX])), np.int32)
    return {"a": a, "b": b}


def _verify_srdhm(fn, case):
    _expect_ints(fn(case["a"], case["b"]), _apply(srdhm_o, case["a"], case["b"]),
                 "SRDHM(a, b) = floor((a b + 2^30) / 2^31), 2^31 - 1 for a = b = -2^31")


def srdhm_laws() -> tuple:
    """The laws and worked values of ``srdhm``: a tuple of :class:`~nnref.laws.core.Law`."""
    ties = {"a": np.array([1, -1, 3, -3], dtype=np.int32), "b": np.array([2**30] * 4, dtype=np.int32)}
    sat = {"a": np.array([I32_MIN], dtype=np.int32), "b": np.array([I32_MIN], dtype=np.int32)}
    return (
        Law("exact", "equals floor((a b + 2^30) / 2^31) over the whole int32 range (ties toward "
            "+infinity), saturating at a = b = -2^31", _srdhm_cases(), _verify_srdhm, 60),
        worked("ties: a/2 for a = 1, -1, 3, -3 gives 1, 0, 2, -1", ties, _verify_srdhm),
        worked("saturation: SRDHM(-2^31, -2^31) = 2^31 - 1", sat, _verify_srdhm),
        unchanged_law(_srdhm_cases(), lambda fn, c: fn(c["a"], c["b"])),
    )


@st.composite
def _rdbpot_cases(draw):
    n = draw(st.integers(1, 6))
    x = _int32s(draw, n)
    e = st.one_of(st.sampled_from([0, 1, 31]), st.integers(0, 31))
    exponent = draw(e) if draw(st.booleans()) else np.array(draw(st.lists(e, min_size=n, max_size=n)), dtype=np.int32)
    return {"x": x, "exponent": exponent}


def _verify_rdbpot(fn, case):
    _expect_ints(fn(case["x"], case["exponent"]), _apply(rdbpot_o, case["x"], case["exponent"]),
                 "RDBPOT(x, e) = x / 2^e rounded to nearest, ties away from zero")


def rdbpot_laws() -> tuple:
    """The laws and worked values of ``rdbpot``: a tuple of :class:`~nnref.laws.core.Law`."""
    ties = {"x": np.array([5, -5, 6, -6, 7, -7], dtype=np.int32), "exponent": 1}
    ends = {"x": np.array([I32_MIN, I32_MAX, -1, 1], dtype=np.int32), "exponent": np.array([31, 31, 0, 0])}
    return (
        Law("exact", "equals x / 2^e rounded half away from zero, for every int32 x and 0 <= e <= 31",
            _rdbpot_cases(), _verify_rdbpot, 60),
        worked("ties away from zero: +-5/2 = +-3, +-7/2 = +-4", ties, _verify_rdbpot),
        worked("exponents 0 and 31 at the ends of int32", ends, _verify_rdbpot),
        unchanged_law(_rdbpot_cases(), lambda fn, c: fn(c["x"], c["exponent"])),
    )


# ---------------------------------------------------------------- multiplier

@st.composite
def _mbqm_cases(draw):
    n = draw(st.integers(1, 5))
    m0s = st.one_of(st.sampled_from([0, 2**30, 2**31 - 1, 3 * 2**29]), st.integers(2**30, 2**31 - 1))
    shifts = st.one_of(st.sampled_from([0, -1, -31]), st.integers(-31, 0), st.integers(1, 30))
    per_channel = draw(st.booleans())
    m0 = np.array(draw(st.lists(m0s, min_size=n, max_size=n)), np.int64) if per_channel else draw(m0s)
    shift = np.array(draw(st.lists(shifts, min_size=n, max_size=n)), np.int64) if per_channel else draw(shifts)
    limit = 2 ** (30 - max(int(np.max(shift)), 0))  # keeps x * 2^shift, and the result, in int32
    x = _int32s(draw, n, -limit, limit - 1)
    return {"x": x, "m0": m0, "shift": shift}


def _verify_mbqm(rounding):
    def verify(fn, case):
        want = _apply(_MBQM[rounding], case["x"], case["m0"], case["shift"])
        form = ("(x m0 + 2^(t-1)) >> t, t = 31 - shift" if rounding == "single"
                else "RDBPOT(SRDHM(x 2^max(shift, 0), m0), max(-shift, 0))")
        _expect_ints(fn(case["x"], case["m0"], case["shift"]), want, form)
    return verify


def _mbqm_laws(rounding: str, worked_cases) -> tuple:
    """The laws and worked values of ``_mbqm``: a tuple of :class:`~nnref.laws.core.Law`."""
    return (
        Law("exact", f"equals the {rounding}-rounding formula over int32 accumulators, m0 in "
            "[2^30, 2^31), every shift (scalar or per channel)", _mbqm_cases(), _verify_mbqm(rounding), 60),
        *[worked(name, case, _verify_mbqm(rounding)) for name, case in worked_cases],
        unchanged_law(_mbqm_cases(), lambda fn, c: fn(c["x"], c["m0"], c["shift"])),
    )


def mbqm_single_laws() -> tuple:
    """The laws and worked values of ``mbqm_single``: a tuple of :class:`~nnref.laws.core.Law`."""
    q = {"x": np.array([5, -5, 3, -3], dtype=np.int32), "m0": 2**30, "shift": -1}
    ties = {"x": np.array([1, -1, 3, -3], dtype=np.int32), "m0": 2**30, "shift": 0}
    return _mbqm_laws("single", [("x / 4 with one rounding: 1.25 -> 1, -1.25 -> -1, 0.75 -> 1, -0.75 -> -1", q),
                                 ("ties go toward +infinity: x / 2 = 0.5, -0.5, 1.5, -1.5 -> 1, 0, 2, -1", ties)])


def mbqm_double_laws() -> tuple:
    """The laws and worked values of ``mbqm_double``: a tuple of :class:`~nnref.laws.core.Law`."""
    q = {"x": np.array([5, -5, 3, -3], dtype=np.int32), "m0": 2**30, "shift": -1}
    return _mbqm_laws("double", [("x / 4 with two roundings: 1.25 -> 2 (SRDHM gives 3, then 3 / 2)", q)])


# ---------------------------------------------------------------- requantization

@st.composite
def _requant_cases(draw):
    rows, n = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    acc = np.stack([_int32s(draw, n, -(2**24), 2**24) for _ in range(rows)])
    per_channel = draw(st.booleans())
    m0s = st.one_of(st.just(2**30), st.integers(2**30, 2**31 - 1))
    # mostly outputs inside int8; small shifts with m0 = 2^30 make the two roundings differ
    shifts = st.one_of(st.integers(-24, -16), st.integers(-4, -1), st.integers(-31, 0))
    m0 = np.array(draw(st.lists(m0s, min_size=n, max_size=n)), np.int64) if per_channel else draw(m0s)
    shift = np.array(draw(st.lists(shifts, min_size=n, max_size=n)), np.int64) if per_channel else draw(shifts)
    zp = draw(st.integers(-128, 127))
    lo = draw(st.sampled_from([-128, zp, max(zp - 5, -128)]))
    hi = draw(st.sampled_from([127, max(lo, min(zp + 40, 127))]))
    return {"acc": acc, "m0": m0, "shift": shift, "out_zero_point": zp, "act_min": lo, "act_max": hi,
            "rounding": draw(st.sampled_from(["single", "double"]))}


def _verify_requant(fn, case):
    oracle = _MBQM[case["rounding"]]
    scaled = _apply(oracle, case["acc"], case["m0"], case["shift"])
    want = np.clip(scaled + case["out_zero_point"], case["act_min"], case["act_max"]).astype(np.int8)
    got = fn(case["acc"], case["m0"], case["shift"], case["out_zero_point"], case["act_min"], case["act_max"],
             rounding=case["rounding"])
    expect_equal(got, want, "clip(MBQM(acc, m0, shift) + out_zero_point, act_min, act_max) as int8")


def requantize_laws() -> tuple:
    """The laws and worked values of ``requantize``: a tuple of :class:`~nnref.laws.core.Law`."""
    relu = {"acc": np.array([[-1000, 7, 1000]], dtype=np.int32), "m0": 2**30, "shift": -2, "out_zero_point": -5,
            "act_min": -5, "act_max": 127, "rounding": "single"}
    return (
        Law("contract", "clip(MBQM(acc) + zero point, act_min, act_max) -> int8, both roundings, per tensor "
            "or per channel", _requant_cases(), _verify_requant, 50),
        worked("a fused ReLU is the clamp at the zero point", relu, _verify_requant),
        worked("double rounding: 5 / 4 -> 2, -5 / 4 -> -2 (single rounding gives 1, -1)",
               {"acc": np.array([[5, -5]], dtype=np.int32), "m0": 2**30, "shift": -1, "out_zero_point": 0,
                "act_min": -128, "act_max": 127, "rounding": "double"}, _verify_requant),
        unchanged_law(_requant_cases(), lambda fn, c: fn(c["acc"], c["m0"], c["shift"], c["out_zero_point"],
                                                         c["act_min"], c["act_max"], rounding=c["rounding"])),
    )


@st.composite
def _matmul_cases(draw):
    b, k, n = draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 4))
    i8 = st.one_of(st.sampled_from([-128, 127, 0]), st.integers(-128, 127))
    a = np.array(draw(st.lists(i8, min_size=b * k, max_size=b * k)), np.int8).reshape(b, k)
    w = np.array(draw(st.lists(i8, min_size=k * n, max_size=k * n)), np.int8).reshape(k, n)
    zb = draw(i8) if draw(st.booleans()) else np.array(draw(st.lists(i8, min_size=n, max_size=n)), np.int64)
    return {"a": a, "b": w, "a_zero_point": draw(i8), "b_zero_point": zb}


def matmul_oracle(a, b, za, zb) -> np.ndarray:
    """``sum_k (a[i, k] - za) (b[k, j] - zb[j])`` with Python integers (the oracle), as int64."""
    zb = np.broadcast_to(np.asarray(zb, dtype=np.int64), (b.shape[1],))
    return np.array([[sum((int(a[i, k]) - int(za)) * (int(b[k, j]) - int(zb[j])) for k in range(a.shape[1]))
                      for j in range(b.shape[1])] for i in range(a.shape[0])], dtype=np.int64)


def _verify_matmul(fn, case):
    want = matmul_oracle(case["a"], case["b"], case["a_zero_point"], case["b_zero_point"]).astype(np.int32)
    expect_equal(fn(case["a"], case["b"], case["a_zero_point"], case["b_zero_point"]), want,
                 "acc[i, j] = sum_k (a[i, k] - za)(b[k, j] - zb[j]) as int32 (no int8 wrap-around)")


def matmul_laws() -> tuple:
    """The laws and worked values of ``matmul``: a tuple of :class:`~nnref.laws.core.Law`."""
    ex = {"a": np.array([[127, -128]], np.int8), "b": np.array([[1], [-128]], np.int8), "a_zero_point": -128,
          "b_zero_point": 127}
    return (
        Law("definition", "each entry is the sum of products of the centred values, in int32",
            _matmul_cases(), _verify_matmul, 40),
        worked("centred values up to 255 in size: no int8 arithmetic", ex, _verify_matmul),
        unchanged_law(_matmul_cases(), lambda fn, c: fn(c["a"], c["b"], c["a_zero_point"], c["b_zero_point"])),
    )


@st.composite
def _linear_cases(draw):
    mm = draw(_matmul_cases())
    rq = draw(_requant_cases())
    n = mm["b"].shape[1]
    per_channel = draw(st.booleans())
    sym = draw(st.booleans())  # TFLite's weights are symmetric: zero point 0
    bias = np.array(draw(st.lists(st.integers(-(2**14), 2**14), min_size=n, max_size=n)), np.int32)
    m0 = rq["m0"] if np.ndim(rq["m0"]) == 0 else np.resize(rq["m0"], n)
    # a multiplier that maps the largest possible accumulator to about 64-128, so the outputs
    # are mostly inside int8 and not all saturated
    bound = mm["a"].shape[1] * 255 * 255 + 2**14
    base = 7 - int(bound).bit_length()
    offsets = np.array(draw(st.lists(st.integers(-1, 3), min_size=n, max_size=n)), np.int64)
    shift = base + (offsets if per_channel else int(offsets[0]))
    return {"x_q": mm["a"], "w_q": mm["b"], "bias_q": bias, "x_zero_point": mm["a_zero_point"],
            "w_zero_point": 0 if sym else (mm["b_zero_point"] if per_channel else int(np.ravel(mm["b_zero_point"])[0])),
            "m0": m0, "shift": shift, "out_zero_point": rq["out_zero_point"], "act_min": rq["act_min"],
            "act_max": rq["act_max"], "rounding": rq["rounding"]}


_LINEAR_ARGS = ("x_q", "w_q", "bias_q", "x_zero_point", "w_zero_point", "m0", "shift", "out_zero_point",
                "act_min", "act_max")


def _verify_linear_int8(fn, c):
    acc = matmul_oracle(c["x_q"], c["w_q"], c["x_zero_point"], c["w_zero_point"]) + c["bias_q"]
    scaled = _apply(_MBQM[c["rounding"]], acc, c["m0"], c["shift"])
    want = np.clip(scaled + c["out_zero_point"], c["act_min"], c["act_max"]).astype(np.int8)
    expect_equal(fn(*(c[k] for k in _LINEAR_ARGS), rounding=c["rounding"]), want,
                 "TFLite FullyConnected: clip(MBQM(sum_k (x - zx)(w - zw) + bias) + zp_out) as int8")


def linear_int8_laws() -> tuple:
    """The laws and worked values of ``linear_int8``: a tuple of :class:`~nnref.laws.core.Law`."""
    ex = {"x_q": np.array([[10, -20]], np.int8), "w_q": np.array([[3, -1], [2, 5]], np.int8),
          "bias_q": np.array([100, -50], np.int32), "x_zero_point": -1, "w_zero_point": 0, "m0": 2**30,
          "shift": -3, "out_zero_point": 3, "act_min": -128, "act_max": 127, "rounding": "single"}
    return (
        Law("TFLite's order", "int32 sum of centred products, plus the bias, then one requantization "
            "(bias before the multiplier, zero point after it)", _linear_cases(), _verify_linear_int8, 40),
        worked("a 1x2 input through a 2x2 layer", ex, _verify_linear_int8),
        unchanged_law(_linear_cases(), lambda fn, c: fn(*(c[k] for k in _LINEAR_ARGS), rounding=c["rounding"])),
    )


# ---------------------------------------------------------------- onnxruntime float requantization

@st.composite
def _scales(draw):
    s = st.one_of(floats(1e-5, 1.0), st.sampled_from([0.1, 0.003921569, 2.0**-7]))
    n = draw(st.integers(1, 4))
    b = np.array([draw(s) for _ in range(n)], np.float32) if draw(st.booleans()) else np.float32(draw(s))
    return {"a_scale": np.float32(draw(s)), "b_scale": b, "y_scale": np.float32(draw(s))}


def _verify_multiplier(fn, c):
    want = (np.float32(c["a_scale"]) * np.asarray(c["b_scale"], np.float32)) / np.float32(c["y_scale"])
    expect_equal(fn(c["a_scale"], c["b_scale"], c["y_scale"]), np.asarray(want, np.float32),
                 "float32(float32(a_scale * b_scale) / y_scale), each operation in float32, in this order")


def qlinear_multiplier_laws() -> tuple:
    """The laws and worked values of ``qlinear_multiplier``: a tuple of :class:`~nnref.laws.core.Law`."""
    near = {"a_scale": np.float32(0.046575177), "b_scale": np.float32(0.051239517), "y_scale": np.float32(0.07917691)}
    return (
        Law("float32 order", "(a_scale * b_scale) / y_scale in float32, bit for bit", _scales(), _verify_multiplier, 40),
        worked("order matters: (sa sb) / sy = 0.030141233, sa (sb / sy) = 0.03014123", near, _verify_multiplier),
    )


@st.composite
def _rqf_cases(draw):
    n = draw(st.integers(1, 5))
    acc = _int32s(draw, n, -(2**22), 2**22)
    mult = np.float32(draw(st.one_of(st.sampled_from([0.5, 0.25, 2.0**-7]), floats(1e-6, 0.1))))
    zp = draw(st.one_of(st.sampled_from([-3, 1, 0, 127]), st.integers(-128, 127)))
    lo = draw(st.sampled_from([-128, zp]))
    if draw(st.booleans()):  # float32 products at or next to k + 1/2, inside the output range
        a = draw(st.integers(1, 2**15))
        mult = np.float32((draw(st.integers(0, 60)) + 0.5) / a)
        acc = np.array([a * draw(st.sampled_from([1, -1])) for _ in range(n)], dtype=np.int32)
        zp, lo = draw(st.integers(-60, 60)), -128
    return {"acc": acc, "multiplier": mult, "out_zero_point": zp, "act_min": lo, "act_max": 127, "dtype": np.int8}


def _verify_rqf(fn, c):
    v = c["acc"].astype(np.float32) * np.float32(c["multiplier"])
    zp = c["out_zero_point"]
    v = np.clip(v, np.float32(c["act_min"] - zp), np.float32(c["act_max"] - zp))
    want = (np.rint(v).astype(np.int64) + zp).astype(c["dtype"])
    got = fn(c["acc"], c["multiplier"], zp, c["act_min"], c["act_max"], dtype=c["dtype"])
    expect_equal(got, want, "rint(clip(float32(acc) * multiplier, ...)) + zero_point (half to even, zero "
                 "point after rounding)")


def requantize_float_laws() -> tuple:
    """The laws and worked values of ``requantize_float``: a tuple of :class:`~nnref.laws.core.Law`."""
    tie = {"acc": np.array([1, 3, -1, 5], np.int32), "multiplier": np.float32(0.5), "out_zero_point": 1,
           "act_min": -128, "act_max": 127, "dtype": np.int8}
    return (
        Law("onnxruntime", "float32 product, half-to-even rounding, zero point added after rounding, "
            "clamped", _rqf_cases(), _verify_rqf, 40),
        worked("ties with an odd zero point: 0.5 -> 0 + 1, 1.5 -> 2 + 1", tie, _verify_rqf),
        unchanged_law(_rqf_cases(), lambda fn, c: fn(c["acc"], c["multiplier"], c["out_zero_point"], c["act_min"],
                                                     c["act_max"], dtype=c["dtype"])),
    )


# ---------------------------------------------------------------- the converter's constants

def quantize_multiplier_o(m: float) -> tuple[int, int]:
    """TensorFlow Lite's QuantizeMultiplier, exactly (Python ints and fractions)."""
    if m == 0.0:
        return 0, 0
    q, e = math.frexp(m)  # exact: m = q 2^e, q in [0.5, 1)
    m0 = math.floor(Fraction(q) * 2**31 + Fraction(1, 2))  # half away from zero (q > 0)
    if m0 == 2**31:
        m0, e = 2**30, e + 1
    return (0, 0) if e < -31 else (m0, e)


@st.composite
def _multiplier_cases(draw):
    e = draw(st.integers(-40, 20))
    kind = draw(st.integers(0, 3))
    if kind == 0:  # q 2^31 = k + 1/2 exactly: a tie
        m = (draw(st.integers(2**30, 2**31 - 1)) + 0.5) * 2.0 ** (e - 31)
    elif kind == 1:  # rounds up into the next binade (the carry)
        m = (2**31 - draw(st.sampled_from([0.5, 0.25, 0.75]))) * 2.0 ** (e - 31)
    else:
        m = draw(floats(0.5, 1.0)) * 2.0**e
    if draw(st.booleans()):
        return {"real": draw(st.sampled_from([m, 0.0, 2.0**-33, 0.5, 1.0]))}
    return {"real": np.array([m, draw(floats(1e-6, 10.0)), 0.0])}


def _verify_multiplier_split(fn, case):
    real = case["real"]
    got_m0, got_shift = (np.asarray(v) for v in expect_pair(fn(real), 2, "quantize_multiplier(real)"))
    pairs = [quantize_multiplier_o(float(v)) for v in np.ravel(real)]
    what = "m0 = round_half_away(q 2^31) with (q, e) = frexp(M), carried to 2^30 at 2^31, 0 below 2^-32"
    _expect_ints(got_m0.reshape(-1), np.array([p[0] for p in pairs]), "m0: " + what)
    _expect_ints(got_shift.reshape(-1), np.array([p[1] for p in pairs]), "shift: " + what)


def quantize_multiplier_laws() -> tuple:
    tie = {"real": (2**30 + 0.5) * 2.0**-31}
    carry = {"real": (2**31 - 0.5) * 2.0**-32}
    return (
        Law("TFLite's rule", "(m0, shift) with M ~= m0 2^(shift - 31): frexp, round half away from zero, "
            "the carry at 2^31, flushed below 2^-32", _multiplier_cases(), _verify_multiplier_split, 40),
        worked("a tie rounds away from zero: q 2^31 = 2^30 + 1/2 -> m0 = 2^30 + 1", tie, _verify_multiplier_split),
        worked("the carry: q 2^31 = 2^31 - 1/2 rounds to 2^31 -> (2^30, shift + 1)", carry,
               _verify_multiplier_split),
    )


def quantize_bias_o(b, s_in, s_w) -> np.ndarray:
    """TensorFlow Lite's converter: float32 scales, double reciprocal stored as float32,
    float32 product, round half away from zero, saturated to +-(2^31 - 1)."""
    s_b = np.float32(s_in) * np.asarray(s_w, dtype=np.float32)
    inv = (1.0 / s_b.astype(np.float64)).astype(np.float32)
    v = (np.asarray(b, dtype=np.float32) * inv).astype(np.float64)
    r = np.array([math.copysign(math.floor(abs(x) + 0.5), x) for x in np.ravel(v)]).reshape(v.shape)
    return np.clip(r, -(2**31 - 1), 2**31 - 1).astype(np.int32)


@st.composite
def _bias_cases(draw):
    n = draw(st.integers(1, 5))
    s_in = np.float32(draw(floats(1e-4, 0.1)))
    s_w = np.array([draw(floats(1e-4, 0.1)) for _ in range(n)], np.float32)
    if draw(st.integers(0, 3)):  # near ties of b / s_b, where dividing and multiplying by 1 / s_b differ
        k = np.array([draw(st.integers(-20000, 20000)) for _ in range(n)])
        b = ((k + 0.5) * (s_in.astype(np.float64) * s_w)).astype(np.float32).astype(np.float64)
    else:
        b = np.array([draw(floats(-5.0, 5.0)) for _ in range(n)])
    return {"b": b, "input_scale": float(s_in), "weight_scale": s_w}


def _verify_bias(fn, c):
    want = quantize_bias_o(c["b"], c["input_scale"], c["weight_scale"])
    expect_equal(fn(c["b"], c["input_scale"], c["weight_scale"]), want,
                 "round_half_away(float32(b) * float32(1 / (s_in s_w))) as int32, the converter's precisions")


def quantize_bias_laws() -> tuple:
    ex = {"b": np.array([-0.6018157005310059]), "input_scale": 0.0123, "weight_scale": np.array([0.00766237685456872])}
    return (
        Law("TFLite's converter", "float32 scale product, its reciprocal as float32, a float32 product, "
            "rounded half away from zero", _bias_cases(), _verify_bias, 40),
        worked("multiplying by the float32 reciprocal gives -6386 (float64 division: -6385)", ex, _verify_bias),
        worked("and not dividing in float32 either: -7200 (float32 division: -7201)",
               {"b": np.array([-19.6191463470459]), "input_scale": 0.09563110023736954,
                "weight_scale": np.array([0.028491696], np.float32)}, _verify_bias),
        unchanged_law(_bias_cases(), lambda fn, c: fn(c["b"], c["input_scale"], c["weight_scale"])),
    )
