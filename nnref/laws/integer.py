"""Laws of the integer-only arithmetic: gemmlowp's SRDHM and rounding divide by a power of
two, TensorFlow Lite's multiplier (single and double rounding), requantization, the
zero-point matmul, the int8 Linear layer, and onnxruntime's float requantization.

The oracles use Python integers (unbounded, ``>>`` floors), so they are exact over the
whole int32 range and share no code with numpy implementations.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from hypothesis import strategies as st

from nnref.laws.compare import expect_equal, expect_ints, expect_true
from nnref.laws.core import Law, LawViolation
from nnref.laws.strategies import floats
from nnref.laws.training import by_hand, unchanged_law, worked

__all__ = ["srdhm_laws", "rdbpot_laws", "mbqm_single_laws", "mbqm_double_laws", "requantize_laws",
           "matmul_laws", "linear_int8_laws", "qlinear_multiplier_laws", "requantize_float_laws", "I32_MIN",
           "I32_MAX"]

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


# ---------------------------------------------------------------- SRDHM and RDBPOT

@st.composite
def _srdhm_cases(draw):
    n = draw(st.integers(1, 6))
    a = _int32s(draw, n)
    b = _int32s(draw, n) if draw(st.booleans()) else np.full(n, draw(st.sampled_from([2**30, I32_MIN, I32_MAX])), np.int32)
    return {"a": a, "b": b}


def _verify_srdhm(fn, case):
    expect_ints(fn(case["a"], case["b"]), _apply(srdhm_o, case["a"], case["b"]),
                 "SRDHM(a, b) = floor((a b + 2^30) / 2^31), 2^31 - 1 for a = b = -2^31")


@st.composite
def _srdhm_ties(draw):
    k = np.array(draw(st.lists(st.one_of(st.sampled_from([-(2**29), -1, 0, 2**29 - 1]), st.integers(-(2**29), 2**29 - 1)),
                               min_size=1, max_size=6)), np.int64)
    return {"a": (2 * k + 1).astype(np.int32), "b": np.full(k.shape, 2**30, np.int32), "k": k}


def _verify_srdhm_ties(fn, case):
    expect_ints(fn(case["a"], case["b"]), case["k"] + 1, "SRDHM(2k + 1, 2^30) = k + 1/2 exactly: the tie goes up, to k + 1")


def _srdhm_call(fn, c):
    return fn(c["a"], c["b"])


def srdhm_laws() -> tuple:
    """The laws and worked values of ``srdhm``: a tuple of :class:`~nnref.laws.core.Law`."""
    ties = {"a": np.array([1, -1, 3, -3], dtype=np.int32), "b": np.array([2**30] * 4, dtype=np.int32)}
    sat = {"a": np.array([I32_MIN], dtype=np.int32), "b": np.array([I32_MIN], dtype=np.int32)}
    return (
        Law("exact", "equals floor((a b + 2^30) / 2^31) over the whole int32 range (ties toward "
            "+infinity), saturating at a = b = -2^31", _srdhm_cases(), _verify_srdhm, 60),
        worked("ties: a/2 for a = 1, -1, 3, -3 gives 1, 0, 2, -1", ties, _verify_srdhm),
        worked("saturation: SRDHM(-2^31, -2^31) = 2^31 - 1", sat, _verify_srdhm),
        Law("ties", "SRDHM(2k + 1, 2^30) = k + 1/2 rounds to k + 1 (toward +infinity) for every k",
            _srdhm_ties(), _verify_srdhm_ties, 20),
        # 3 2^30 / 2^31 = 1.5 -> 2; -1.5 -> -1; (2^31 - 1)^2 / 2^31 = 2^31 - 2 + 2^-31 -> 2^31 - 2
        by_hand("SRDHM(+-3, 2^30) = 2, -1; SRDHM(2^31 - 1, 2^31 - 1) = 2^31 - 2; the saturation",
                {"a": np.array([3, -3, I32_MAX, I32_MIN], np.int32), "b": np.array([2**30, 2**30, I32_MAX, I32_MIN], np.int32)},
                _srdhm_call, np.array([2, -1, I32_MAX - 1, I32_MAX])),
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
    expect_ints(fn(case["x"], case["exponent"]), _apply(rdbpot_o, case["x"], case["exponent"]),
                 "RDBPOT(x, e) = x / 2^e rounded to nearest, ties away from zero")


@st.composite
def _rdbpot_ties(draw):
    e = draw(st.integers(1, 31))
    k = np.array(draw(st.lists(st.integers(-(2 ** (31 - e)), 2 ** (31 - e) - 1), min_size=1, max_size=6)), np.int64)
    return {"x": ((2 * k + 1) * 2 ** (e - 1)).astype(np.int32), "exponent": e, "k": k}


def _verify_rdbpot_ties(fn, case):
    x, k = case["x"], case["k"]
    expect_ints(fn(x, case["exponent"]), np.where(x > 0, k + 1, k),
                 "x / 2^e = k + 1/2 exactly rounds away from zero: k + 1 above 0, k below")


def rdbpot_laws() -> tuple:
    """The laws and worked values of ``rdbpot``: a tuple of :class:`~nnref.laws.core.Law`."""
    ties = {"x": np.array([5, -5, 6, -6, 7, -7], dtype=np.int32), "exponent": 1}
    ends = {"x": np.array([I32_MIN, I32_MAX, -1, 1], dtype=np.int32), "exponent": np.array([31, 31, 0, 0])}
    return (
        Law("exact", "equals x / 2^e rounded half away from zero, for every int32 x and 0 <= e <= 31",
            _rdbpot_cases(), _verify_rdbpot, 60),
        worked("ties away from zero: +-5/2 = +-3, +-7/2 = +-4", ties, _verify_rdbpot),
        worked("exponents 0 and 31 at the ends of int32", ends, _verify_rdbpot),
        Law("ties", "x / 2^e = k + 1/2 exactly rounds away from zero, for every exponent 1..31",
            _rdbpot_ties(), _verify_rdbpot_ties, 20),
        # 2.5 -> 3, -2.5 -> -3, -12 / 8 = -1.5 -> -2, -2^31 / 2^31 = -1, (2^31 - 1) / 2^31 -> 1
        by_hand("5/2 -> 3, -5/2 -> -3, -12/8 -> -2, -2^31/2^31 = -1, (2^31-1)/2^31 -> 1, e = 0 keeps x",
                {"x": np.array([5, -5, -12, I32_MIN, I32_MAX, I32_MAX], np.int32), "exponent": np.array([1, 1, 3, 31, 31, 0])},
                lambda fn, c: fn(c["x"], c["exponent"]), np.array([3, -3, -2, -1, 1, I32_MAX])),
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
        expect_ints(fn(case["x"], case["m0"], case["shift"]), want, form)
    return verify


def _verify_mbqm_near(rounding):
    def verify(fn, case):
        x, m0, shift = case["x"], case["m0"], case["shift"]
        got = np.asarray(fn(x, m0, shift)).astype(np.int64).ravel()
        b = np.broadcast_arrays(*[np.asarray(a, dtype=np.int64) for a in (x, m0, shift)])
        for g, xi, mi, si in zip(got, *(a.ravel() for a in b)):
            exact = Fraction(int(xi) * int(mi)) * Fraction(2) ** (int(si) - 31)
            # one rounding: 1/2; two: 1/2 from SRDHM scaled down by 2^right, plus 1/2
            bound = Fraction(1, 2) if rounding == "single" else Fraction(1, 2) + Fraction(1, 2 ** (max(-int(si), 0) + 1))
            if abs(int(g) - exact) > bound:
                raise LawViolation(f"result {int(g)} is further than {bound} from x m0 2^(shift - 31) = "
                                   f"{float(exact)!r}", float(exact), int(g))
    return verify


@st.composite
def _sorted_cases(draw):
    case = draw(_mbqm_cases())
    case["x"] = np.sort(case["x"])
    if np.ndim(case["m0"]):  # one multiplier for the whole row
        case["m0"], case["shift"] = int(case["m0"][0]), int(np.ravel(case["shift"])[0])
    case["x"] = np.clip(case["x"], -(2 ** (30 - max(case["shift"], 0))), 2 ** (30 - max(case["shift"], 0)) - 1)
    return case


def _verify_monotone(fn, case):
    got = np.asarray(fn(case["x"], case["m0"], case["shift"])).astype(np.int64)
    expect_true(np.all(np.diff(got) >= 0), "not monotone: a larger x gave a smaller result", None, got)


def _mbqm_laws(rounding: str, worked_cases) -> tuple:
    """The laws and worked values of ``_mbqm``: a tuple of :class:`~nnref.laws.core.Law`."""
    return (
        Law("exact", f"equals the {rounding}-rounding formula over int32 accumulators, m0 in "
            "[2^30, 2^31), every shift (scalar or per channel)", _mbqm_cases(), _verify_mbqm(rounding), 60),
        Law("near the real product", "within 1/2 (one rounding) or 1/2 + 1/2^(right + 1) (two) of "
            "x m0 2^(shift - 31)", _mbqm_cases(), _verify_mbqm_near(rounding), 20),
        Law("monotone", "sorted x gives sorted results (one multiplier)", _sorted_cases(), _verify_monotone, 15),
        *[worked(name, case, _verify_mbqm(rounding)) for name, case in worked_cases],
        unchanged_law(_mbqm_cases(), lambda fn, c: fn(c["x"], c["m0"], c["shift"])),
    )


def mbqm_single_laws() -> tuple:
    """The laws and worked values of ``mbqm_single``: a tuple of :class:`~nnref.laws.core.Law`."""
    q = {"x": np.array([5, -5, 3, -3], dtype=np.int32), "m0": 2**30, "shift": -1}
    ties = {"x": np.array([1, -1, 3, -3], dtype=np.int32), "m0": 2**30, "shift": 0}
    # M = 1/4: 5/4 = 1.25 -> floor(1.25 + 0.5) = 1; -2/4 = -0.5 -> floor(0) = 0 (ties up)
    hand = by_hand("one rounding: 5 / 4 -> 1, -2 / 4 -> 0 (two roundings give 2 and -1)",
                   {"x": np.array([5, -2], np.int32), "m0": 2**30, "shift": -1},
                   lambda fn, c: fn(c["x"], c["m0"], c["shift"]), np.array([1, 0]))
    return (*_mbqm_laws("single", [("x / 4 with one rounding: 1.25 -> 1, -1.25 -> -1, 0.75 -> 1, -0.75 -> -1", q),
                                   ("ties go toward +infinity: x / 2 = 0.5, -0.5, 1.5, -1.5 -> 1, 0, 2, -1", ties)]),
            hand)


def mbqm_double_laws() -> tuple:
    """The laws and worked values of ``mbqm_double``: a tuple of :class:`~nnref.laws.core.Law`."""
    q = {"x": np.array([5, -5, 3, -3], dtype=np.int32), "m0": 2**30, "shift": -1}
    # SRDHM(5, 2^30) = 2.5 -> 3, RDBPOT(3, 1) = 1.5 -> 2; SRDHM(-2, 2^30) = -1, RDBPOT(-1, 1) = -0.5 -> -1
    hand = by_hand("two roundings: 5 / 4 -> 2, -2 / 4 -> -1", {"x": np.array([5, -2], np.int32), "m0": 2**30, "shift": -1},
                   lambda fn, c: fn(c["x"], c["m0"], c["shift"]), np.array([2, -1]))
    return (*_mbqm_laws("double", [("x / 4 with two roundings: 1.25 -> 2 (SRDHM gives 3, then 3 / 2)", q)]), hand)


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


def _requant_call(fn, c):
    return fn(c["acc"], c["m0"], c["shift"], c["out_zero_point"], c["act_min"], c["act_max"], rounding=c["rounding"])


def requantize_laws() -> tuple:
    """The laws and worked values of ``requantize``: a tuple of :class:`~nnref.laws.core.Law`."""
    relu = {"acc": np.array([[-1000, 7, 1000]], dtype=np.int32), "m0": 2**30, "shift": -2, "out_zero_point": -5,
            "act_min": -5, "act_max": 127, "rounding": "single"}
    return (
        Law("contract", "clip(MBQM(acc) + zero point, act_min, act_max) -> int8, both roundings, per tensor "
            "or per channel", _requant_cases(), _verify_requant, 50),
        worked("a fused ReLU is the clamp at the zero point", relu, _verify_requant),
        # M = 1/4: 25 + 3 = 28, -25 + 3 = -22, 250 + 3 -> 127, -250 + 3 -> -128
        by_hand("M = 1/4, zero point 3: [100, -100, 1000, -1000] -> [28, -22, 127, -128]",
                {"acc": np.array([[100, -100, 1000, -1000]], np.int32), "m0": 2**30, "shift": -1, "out_zero_point": 3,
                 "act_min": -128, "act_max": 127, "rounding": "single"}, _requant_call,
                np.array([[28, -22, 127, -128]], np.int8)),
        by_hand("the same with a fused ReLU (act_min 3): [28, 3, 127, 3]",
                {"acc": np.array([[100, -100, 1000, -1000]], np.int32), "m0": 2**30, "shift": -1, "out_zero_point": 3,
                 "act_min": 3, "act_max": 127, "rounding": "single"}, _requant_call, np.array([[28, 3, 127, 3]], np.int8)),
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
        # a - 1 = [[0, 1], [2, 3]], b + 1 = [[6], [-5]]: -5 and 12 - 15 = -3
        by_hand("zero points 1 and -1: [[-5], [-3]]", {"a": np.array([[1, 2], [3, 4]], np.int8),
                "b": np.array([[5], [-6]], np.int8), "a_zero_point": 1, "b_zero_point": -1},
                lambda fn, c: fn(c["a"], c["b"], c["a_zero_point"], c["b_zero_point"]), np.array([[-5], [-3]], np.int32)),
        by_hand("zero points 1 and 2: [[0 * 3 + 1 * 4], [2 * 3 + 3 * 4]]", {"a": np.array([[1, 2], [3, 4]], np.int8),
                "b": np.array([[5], [6]], np.int8), "a_zero_point": 1, "b_zero_point": 2},
                lambda fn, c: fn(c["a"], c["b"], c["a_zero_point"], c["b_zero_point"]), np.array([[4], [18]], np.int32)),
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
        # x - 2 = [8, -5]: acc = [-4, -33]; + bias [96, -40]; M = 1/4: [24, -10]; + 1: [25, -9]
        by_hand("zero point 2, bias [100, -7], M = 1/4, output zero point 1: [25, -9]",
                {"x_q": np.array([[10, -3]], np.int8), "w_q": np.array([[2, -1], [4, 5]], np.int8),
                 "bias_q": np.array([100, -7], np.int32), "x_zero_point": 2, "w_zero_point": 0, "m0": 2**30,
                 "shift": -1, "out_zero_point": 1, "act_min": -128, "act_max": 127, "rounding": "single"},
                lambda fn, c: fn(*(c[k] for k in _LINEAR_ARGS), rounding=c["rounding"]), np.array([[25, -9]], np.int8)),
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
        by_hand("0.5 * 0.5 / 0.1 = float32(0.25) / float32(0.1)", {"a_scale": np.float32(0.5), "b_scale": np.float32(0.5),
                "y_scale": np.float32(0.1)}, lambda fn, c: fn(c["a_scale"], c["b_scale"], c["y_scale"]),
                np.float32(0.25) / np.float32(0.1)),
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


def _rqf_call(fn, c):
    return fn(c["acc"], c["multiplier"], c["out_zero_point"], c["act_min"], c["act_max"], dtype=c["dtype"])


def requantize_float_laws() -> tuple:
    """The laws and worked values of ``requantize_float``: a tuple of :class:`~nnref.laws.core.Law`."""
    tie = {"acc": np.array([1, 3, -1, 5], np.int32), "multiplier": np.float32(0.5), "out_zero_point": 1,
           "act_min": -128, "act_max": 127, "dtype": np.int8}
    return (
        Law("onnxruntime", "float32 product, half-to-even rounding, zero point added after rounding, "
            "clamped", _rqf_cases(), _verify_rqf, 40),
        worked("ties with an odd zero point: 0.5 -> 0 + 1, 1.5 -> 2 + 1", tie, _verify_rqf),
        # 5 * 0.5 = 2.5 -> 2 (even) + 1 = 3 (ONNX's reference evaluator, rint(3.5), gives 4);
        # + 2 -> 4; -2.5 -> -2
        *[by_hand(f"{acc} * 0.5 = {acc / 2}, zero point {zp}: {want}", {"acc": np.array([acc], np.int32),
                  "multiplier": np.float32(0.5), "out_zero_point": zp, "act_min": -128, "act_max": 127,
                  "dtype": np.int8}, _rqf_call, np.array([want], np.int8)) for acc, zp, want in ((5, 1, 3), (5, 2, 4),
                                                                                                  (-5, 0, -2))],
        # x 0.5: 2.5, 3.5, -2.5, 500 -> rint 2, 4, -2, 500; + 1; clamped
        by_hand("[5, 7, -5, 1000] x 0.5, zero point 1: [3, 5, -1, 127]", {"acc": np.array([[5, 7, -5, 1000]], np.int32),
                "multiplier": np.float32(0.5), "out_zero_point": 1, "act_min": -128, "act_max": 127, "dtype": np.int8},
                _rqf_call, np.array([[3, 5, -1, 127]], np.int8)),
        by_hand("the same clamped to [0, 4]: [3, 4, 0, 4]", {"acc": np.array([[5, 7, -5, 1000]], np.int32),
                "multiplier": np.float32(0.5), "out_zero_point": 1, "act_min": 0, "act_max": 4, "dtype": np.int8},
                _rqf_call, np.array([[3, 4, 0, 4]], np.int8)),
        # float32(5 * float32(0.1)) = 0.5 exactly (float64 gives 0.50000000745 -> 1)
        by_hand("the float32 product 5 * 0.1 is 0.5: rounds to 0", {"acc": np.array([5], np.int32),
                "multiplier": np.float32(0.1), "out_zero_point": 0, "act_min": -128, "act_max": 127,
                "dtype": np.int8}, _rqf_call, np.array([0], np.int8)),
        # 380 * 0.5 = 190 + 100 -> 255 (saturated); 380 * 0.125 = 47.5 -> 48 + 100 = 148
        *[by_hand(f"uint8: 380 * {m} + 100 -> {want}", {"acc": np.array([380], np.int32), "multiplier": np.float32(m),
                  "out_zero_point": 100, "act_min": 0, "act_max": 255, "dtype": np.uint8}, _rqf_call,
                  np.array([want], np.uint8)) for m, want in ((0.5, 255), (0.125, 148))],
        unchanged_law(_rqf_cases(), lambda fn, c: fn(c["acc"], c["multiplier"], c["out_zero_point"], c["act_min"],
                                                     c["act_max"], dtype=c["dtype"])),
    )
