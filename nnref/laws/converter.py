"""Laws of the converter's float-to-integer constants: TensorFlow Lite's QuantizeMultiplier
(m0, shift) and the int32 bias as TFLite's converter computes it.

Oracles use Python integers and :class:`fractions.Fraction` for the multiplier, and numpy
float32 arithmetic, operation by operation, for the bias (the converter's precisions).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from hypothesis import strategies as st

from nnref.laws.compare import expect_equal, expect_ints, expect_pair
from nnref.laws.core import Law
from nnref.laws.integer import I32_MAX
from nnref.laws.strategies import floats
from nnref.laws.training import by_hand, unchanged_law, worked

__all__ = ["quantize_multiplier_laws", "quantize_bias_laws", "quantize_multiplier_o", "quantize_bias_o"]


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
    expect_ints(got_m0.reshape(-1), np.array([p[0] for p in pairs]), "m0: " + what)
    expect_ints(got_shift.reshape(-1), np.array([p[1] for p in pairs]), "shift: " + what)


def quantize_multiplier_laws() -> tuple:
    tie = {"real": (2**30 + 0.5) * 2.0**-31}
    carry = {"real": (2**31 - 0.5) * 2.0**-32}
    return (
        Law("TFLite's rule", "(m0, shift) with M ~= m0 2^(shift - 31): frexp, round half away from zero, "
            "the carry at 2^31, flushed below 2^-32", _multiplier_cases(), _verify_multiplier_split, 40),
        worked("a tie rounds away from zero: q 2^31 = 2^30 + 1/2 -> m0 = 2^30 + 1", tie, _verify_multiplier_split),
        worked("the carry: q 2^31 = 2^31 - 1/2 rounds to 2^31 -> (2^30, shift + 1)", carry,
               _verify_multiplier_split),
        # 0.5 = 0.5 2^0 -> (2^30, 0); 1 = 0.5 2^1; 0.1 = 0.8 2^-3: 0.8 2^31 = 1717986918.4;
        # 2^-33 has shift -32 < -31: flushed; 0 -> (0, 0); 0.5 + 2^-32: 2^30 + 1/2 -> 2^30 + 1 (away)
        by_hand("0.5, 1, 0.1, 2^-33, 0 and the tie 0.5 + 2^-32",
                {"real": np.array([0.5, 1.0, 0.1, 2.0**-33, 0.0, 0.5 + 2.0**-32])}, lambda fn, c: fn(c["real"]),
                (np.array([2**30, 2**30, 1717986918, 0, 0, 2**30 + 1]), np.array([0, 1, -3, 0, 0, 0]))),
        # 1 - 2^-53: 2^31 - 2^-22 rounds up to 2^31, the carry gives (2^30, 1); just below 2^-32
        # the carry lifts the shift back to -31 (no flush); the largest accepted multiplier
        by_hand("carry and flush edges: 1 - 2^-53, 2^-32, just below 2^-32, just below 2^30 - 1/4",
                {"real": np.array([np.nextafter(1.0, 0.0), 2.0**-32, np.nextafter(2.0**-32, 0.0),
                                   np.nextafter(2.0**30 - 0.25, 0.0)])}, lambda fn, c: fn(c["real"]),
                (np.array([2**30, 2**30, 2**30, 2**31 - 1]), np.array([1, -31, -31, 30]))),
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


def _bias_call(fn, c):
    return fn(c["b"], c["input_scale"], c["weight_scale"])


def _verify_bias_odd(fn, c):
    pos = np.asarray(_bias_call(fn, c))
    neg = np.asarray(fn(-c["b"], c["input_scale"], c["weight_scale"]))
    expect_equal(neg.astype(np.int64), -pos.astype(np.int64), "quantize_bias(-b) = -quantize_bias(b)", dtype=False)


def quantize_bias_laws() -> tuple:
    ex = {"b": np.array([-0.6018157005310059]), "input_scale": 0.0123, "weight_scale": np.array([0.00766237685456872])}
    return (
        Law("TFLite's converter", "float32 scale product, its reciprocal as float32, a float32 product, "
            "rounded half away from zero", _bias_cases(), _verify_bias, 40),
        worked("multiplying by the float32 reciprocal gives -6386 (float64 division: -6385)", ex, _verify_bias),
        # s_b = 0.125: 0.3 / 0.125 = 2.4 -> 2; -2.5 -> -3 (away); per channel 1 / 0.25, 1 / 0.0625
        by_hand("s_b = 0.125: 0.3 -> 2, -0.3125 -> -3 (half away)", {"b": np.array([0.3, -0.3125]),
                "input_scale": 0.5, "weight_scale": np.float32(0.25)}, _bias_call, np.array([2, -3], np.int32)),
        by_hand("per channel: 1 / (0.5 * 0.5) = 4, 1 / (0.5 * 0.125) = 16", {"b": np.array([1.0, 1.0]),
                "input_scale": 0.5, "weight_scale": np.array([0.5, 0.125], np.float32)}, _bias_call,
                np.array([4, 16], np.int32)),
        by_hand("saturation at +-(2^31 - 1): 1e10 / 1e-6", {"b": np.array([1e10, -1e10]), "input_scale": 1e-3,
                "weight_scale": np.array([1e-3, 1e-3], np.float32)}, _bias_call, np.array([I32_MAX, -I32_MAX], np.int32)),
        Law("odd", "quantize_bias(-b) = -quantize_bias(b) (round half away from zero is odd)", _bias_cases(),
            _verify_bias_odd, 20),
        worked("and not dividing in float32 either: -7200 (float32 division: -7201)",
               {"b": np.array([-19.6191463470459]), "input_scale": 0.09563110023736954,
                "weight_scale": np.array([0.028491696], np.float32)}, _verify_bias),
        unchanged_law(_bias_cases(), lambda fn, c: fn(c["b"], c["input_scale"], c["weight_scale"])),
    )
