"""Tests for nnref.quant.fixed_point against exact rational arithmetic.

Each primitive is compared with its definition evaluated in Python integers and
``fractions.Fraction`` (no bit tricks, no numpy), over the full int32 range including
-2**31, 2**31 - 1 and exact ties.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnref.quant.fixed_point import (
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)
from strategies import INT32_MAX, INT32_MIN, int32_values

# --------------------------------------------------------------------------- exact references

HALF = Fraction(1, 2)


def round_half_up(r: Fraction) -> int:
    """Nearest integer, ties toward +infinity."""
    return math.floor(r + HALF)


def round_half_away(r: Fraction) -> int:
    """Nearest integer, ties away from zero."""
    return int(math.copysign(math.floor(abs(r) + HALF), r)) if r else 0


def ref_srdhm(a: int, b: int) -> int:
    if a == b == INT32_MIN:
        return INT32_MAX
    return round_half_up(Fraction(a * b, 2**31))


def ref_rdbpot(x: int, e: int) -> int:
    return round_half_away(Fraction(x, 2**e))


def real_product(x: int, m0: int, shift: int) -> Fraction:
    return Fraction(x * m0) * Fraction(2) ** (shift - 31)


def ref_single(x: int, m0: int, shift: int) -> int:
    return round_half_up(real_product(x, m0, shift))


def ref_double(x: int, m0: int, shift: int) -> int:
    left, right = max(shift, 0), max(-shift, 0)
    return ref_rdbpot(ref_srdhm(x * 2**left, m0), right)


# --------------------------------------------------------------------------- strategies

EDGES = [INT32_MIN, INT32_MIN + 1, -(2**30), -1, 0, 1, 2**30, INT32_MAX - 1, INT32_MAX]
int32s = st.one_of(st.sampled_from(EDGES), int32_values)
m0s = st.one_of(st.just(0), st.sampled_from([2**30, 2**31 - 1]), st.integers(2**30, 2**31 - 1))
shifts = st.integers(-31, 30)


@st.composite
def mbqm_cases(draw):
    """(x, m0, shift) with x * 2**max(shift, 0) inside int32, so both forms are defined.

    Then the single-rounding result fits too: |x * m0 * 2**(shift-31)| < 2**(31-left) * 2**31
    * 2**(left-31) = 2**31.
    """
    m0 = draw(m0s)
    shift = draw(shifts)
    left = max(shift, 0)
    lo, hi = INT32_MIN >> left, INT32_MAX >> left
    x = draw(st.one_of(st.sampled_from([lo, hi, 0, -1, 1]), st.integers(lo, hi)))
    return x, m0, shift


# --------------------------------------------------------------------------- quantize_multiplier


def test_quantize_multiplier_worked_values():
    # 0.5 = 0.5 * 2**0: m0 = 0.5 * 2**31 = 2**30, shift 0.
    assert quantize_multiplier(0.5) == (1073741824, 0)
    # 1.0 = 0.5 * 2**1: m0 = 2**30, shift 1.
    assert quantize_multiplier(1.0) == (1073741824, 1)
    # 0.1 = 0.8 * 2**-3: 0.8 * 2**31 = 1717986918.4 -> 1717986918, shift -3.
    assert quantize_multiplier(0.1) == (1717986918, -3)
    # 2**-33 = 0.5 * 2**-32: shift -32 < -31, flushed to (0, 0). And M == 0 -> (0, 0).
    assert quantize_multiplier(2.0**-33) == (0, 0)
    assert quantize_multiplier(0.0) == (0, 0)
    # An exact tie: 0.5 + 2**-32 = (0.5 + 2**-32) * 2**0; times 2**31 is 2**30 + 0.5, which
    # rounds half away from zero to 2**30 + 1 (half to even would give 2**30).
    assert quantize_multiplier(0.5 + 2.0**-32) == (2**30 + 1, 0)


def test_quantize_multiplier_carry_and_flush_edges():
    # 1 - 2**-53 = (1 - 2**-53) * 2**0; times 2**31 is 2**31 - 2**-22, rounds up to 2**31:
    # the carry gives m0 = 2**30 and shift 0 + 1.
    assert quantize_multiplier(np.nextafter(1.0, 0.0)) == (2**30, 1)
    # 2**-32 = 0.5 * 2**-31: shift -31 is still allowed.
    assert quantize_multiplier(2.0**-32) == (2**30, -31)
    # Just below 2**-32 frexp gives shift -32, but the carry (done first, as TFLite does)
    # lifts it back to -31 instead of flushing to zero.
    assert quantize_multiplier(np.nextafter(2.0**-32, 0.0)) == (2**30, -31)
    # Largest accepted: 2**30 - 0.25 - 2**-23 -> 2*M = 2**31 - 0.5 - 2**-22 rounds to 2**31 - 1.
    assert quantize_multiplier(np.nextafter(2.0**30 - 0.25, 0.0)) == (2**31 - 1, 30)
    with pytest.raises(ValueError, match="real"):
        quantize_multiplier(2.0**30 - 0.25)  # would need m0 = 2**30 at shift 31


@given(st.floats(min_value=2.0**-32, max_value=2.0**30 - 1.0))
def test_quantize_multiplier_is_within_half_ulp(real):
    m0, shift = quantize_multiplier(real)
    assert isinstance(m0, int) and isinstance(shift, int)
    assert 2**30 <= m0 < 2**31
    assert -31 <= shift <= 30
    error = abs(Fraction(m0) * Fraction(2) ** (shift - 31) - Fraction(real))
    assert error <= Fraction(2) ** (shift - 32)


@given(st.floats(min_value=0.0, max_value=2.0**-33))
def test_quantize_multiplier_flushes_tiny_to_zero(real):
    assert quantize_multiplier(real) == (0, 0)


@given(st.lists(st.floats(min_value=0.0, max_value=1e6), min_size=1, max_size=8))
def test_quantize_multiplier_array_is_elementwise(reals):
    m0, shift = quantize_multiplier(np.array(reals))
    assert m0.dtype == np.int32 and shift.dtype == np.int32
    assert m0.shape == shift.shape == (len(reals),)
    assert [(int(a), int(b)) for a, b in zip(m0, shift)] == [quantize_multiplier(r) for r in reals]


@pytest.mark.parametrize(
    "bad, error",
    [(-0.5, ValueError), (float("nan"), ValueError), (float("inf"), ValueError),
     (2.0**31, ValueError), (np.array([0.5, -1e-9]), ValueError), ("0.5", TypeError)],
)
def test_quantize_multiplier_rejects_bad_input(bad, error):
    with pytest.raises(error, match="real"):
        quantize_multiplier(bad)


# --------------------------------------------------------------------------- SRDHM


def test_srdhm_worked_values():
    # The one overflow: (-2**31)**2 / 2**31 = 2**31 does not fit; saturates to 2**31 - 1.
    assert saturating_rounding_doubling_high_mul(INT32_MIN, INT32_MIN) == INT32_MAX
    # 3 * 2**30 / 2**31 = 1.5 -> tie toward +inf -> 2.
    assert saturating_rounding_doubling_high_mul(3, 2**30) == 2
    # -3 * 2**30 / 2**31 = -1.5 -> tie toward +inf -> -1.
    assert saturating_rounding_doubling_high_mul(-3, 2**30) == -1
    # 2**31 - 1 is ~1 in Q0.31: (2**31 - 1)**2 / 2**31 = 2**31 - 2 + 2**-31 -> 2**31 - 2.
    assert saturating_rounding_doubling_high_mul(INT32_MAX, INT32_MAX) == INT32_MAX - 1


@given(int32s, int32s)
def test_srdhm_matches_exact_rounding(a, b):
    got = saturating_rounding_doubling_high_mul(a, b)
    assert isinstance(got, np.int32)
    assert int(got) == ref_srdhm(a, b)


@given(st.integers(-(2**29), 2**29 - 1))
def test_srdhm_exact_ties_round_toward_plus_infinity(k):
    # (2k + 1) * 2**30 / 2**31 = k + 1/2 exactly: the tie goes up, to k + 1.
    assert saturating_rounding_doubling_high_mul(2 * k + 1, 2**30) == k + 1


@given(st.lists(st.tuples(int32s, int32s), min_size=1, max_size=10))
def test_srdhm_vectorised_is_elementwise(pairs):
    a = np.array([p[0] for p in pairs], dtype=np.int32)
    b = np.array([p[1] for p in pairs], dtype=np.int32)
    got = saturating_rounding_doubling_high_mul(a, b)
    assert got.dtype == np.int32
    assert got.tolist() == [ref_srdhm(x, y) for x, y in pairs]


# --------------------------------------------------------------------------- RDBPOT


def test_rdbpot_worked_values():
    assert rounding_divide_by_pot(5, 1) == 3  # 2.5 -> away from zero -> 3
    assert rounding_divide_by_pot(-5, 1) == -3  # -2.5 -> -3
    assert rounding_divide_by_pot(-12, 3) == -2  # -1.5 -> -2
    assert rounding_divide_by_pot(INT32_MIN, 31) == -1  # -1 exactly
    assert rounding_divide_by_pot(INT32_MAX, 31) == 1  # 1 - 2**-31 -> 1
    assert rounding_divide_by_pot(INT32_MAX, 0) == INT32_MAX


@given(int32s, st.integers(0, 31))
def test_rdbpot_matches_exact_rounding(x, e):
    got = rounding_divide_by_pot(x, e)
    assert isinstance(got, np.int32)
    assert int(got) == ref_rdbpot(x, e)


@given(st.integers(1, 31).flatmap(lambda e: st.tuples(st.just(e), st.integers(-(2 ** (31 - e)), 2 ** (31 - e) - 1))))
def test_rdbpot_exact_ties_round_away_from_zero(case):
    e, k = case
    x = (2 * k + 1) * 2 ** (e - 1)  # x / 2**e = k + 1/2 exactly; |x| <= 2**31 - 2**(e-1)
    expected = k + 1 if x > 0 else k  # away from zero: k+1 above, k below (k + 1/2 < 0)
    assert rounding_divide_by_pot(x, e) == expected


def test_rdbpot_array_exponent_broadcasts():
    x = np.array([[5], [-5]], dtype=np.int32)
    # 5/1 = 5, 5/2 = 2.5 -> 3, 5/4 = 1.25 -> 1; the negatives mirror (ties away from zero).
    got = rounding_divide_by_pot(x, np.array([0, 1, 2]))
    assert got.dtype == np.int32
    assert got.tolist() == [[5, 3, 1], [-5, -3, -1]]


@pytest.mark.parametrize("e", [-1, 32])
def test_rdbpot_rejects_exponent_out_of_range(e):
    with pytest.raises(ValueError, match="exponent"):
        rounding_divide_by_pot(1, e)


# --------------------------------------------------------------------------- MBQM


@given(mbqm_cases())
def test_mbqm_single_matches_exact_rounding(case):
    x, m0, shift = case
    assert int(multiply_by_quantized_multiplier(x, m0, shift, "single")) == ref_single(x, m0, shift)


@given(mbqm_cases())
def test_mbqm_double_matches_its_two_roundings(case):
    x, m0, shift = case
    assert int(multiply_by_quantized_multiplier(x, m0, shift, "double")) == ref_double(x, m0, shift)


@given(mbqm_cases())
def test_mbqm_both_forms_are_within_one_of_the_real_product(case):
    x, m0, shift = case
    exact = real_product(x, m0, shift)
    single = int(multiply_by_quantized_multiplier(x, m0, shift, "single"))
    double = int(multiply_by_quantized_multiplier(x, m0, shift, "double"))
    assert abs(single - exact) <= HALF  # one correct rounding
    # two roundings: 1/2 from SRDHM, scaled down by 2**right, plus 1/2 from RDBPOT
    assert abs(double - exact) <= HALF + HALF / 2 ** max(-shift, 0)
    assert abs(single - round_half_up(exact)) == 0
    assert abs(double - round_half_up(exact)) <= 1


@given(int32s, m0s, st.integers(-31, 0))
def test_mbqm_single_full_int32_range_for_multipliers_below_one(x, m0, shift):
    # shift <= 0 means M < 1: every int32 x gives an in-range result, no precondition.
    assert int(multiply_by_quantized_multiplier(x, m0, shift)) == ref_single(x, m0, shift)
    assert int(multiply_by_quantized_multiplier(x, m0, shift, "double")) == ref_double(x, m0, shift)


@given(st.lists(int32s, min_size=2, max_size=12), m0s, st.integers(-31, 0), st.sampled_from(["single", "double"]))
def test_mbqm_is_monotone_in_x(xs, m0, shift, rounding):
    x = np.sort(np.array(xs, dtype=np.int32))
    y = multiply_by_quantized_multiplier(x, m0, shift, rounding)
    assert np.all(np.diff(y.astype(np.int64)) >= 0)


@given(st.floats(min_value=2.0**-20, max_value=2.0**10), st.integers(-(2**20), 2**20))
def test_mbqm_after_quantize_multiplier_approximates_the_real_product(real, x):
    m0, shift = quantize_multiplier(real)
    got = int(multiply_by_quantized_multiplier(np.int32(x), m0, shift))
    # rounding of the product (1/2) plus |x| times the multiplier's own error (half ulp)
    bound = HALF + abs(x) * Fraction(2) ** (shift - 32)
    assert abs(got - Fraction(x) * Fraction(real)) <= bound


def test_single_and_double_differ_at_hand_made_ties():
    m0, shift = 2**30, -1  # M = 2**30 * 2**-32 = 1/4
    # x = 5: 5/4 = 1.25.
    #   single: (5 * 2**30 + 2**31) >> 32 = (1.25 + 0.5) floored = 1.
    #   double: SRDHM(5, 2**30) = 5/2 = 2.5 -> tie up -> 3; RDBPOT(3, 1) = 1.5 -> away -> 2.
    assert multiply_by_quantized_multiplier(5, m0, shift, "single") == 1
    assert multiply_by_quantized_multiplier(5, m0, shift, "double") == 2
    # x = -2: -2/4 = -0.5, an exact tie.
    #   single: floor(-0.5 + 0.5) = 0 (ties toward +inf).
    #   double: SRDHM(-2, 2**30) = -1 exactly; RDBPOT(-1, 1) = -0.5 -> away from zero -> -1.
    assert multiply_by_quantized_multiplier(-2, m0, shift, "single") == 0
    assert multiply_by_quantized_multiplier(-2, m0, shift, "double") == -1


def test_mbqm_per_channel_broadcasts_along_last_axis():
    x = np.array([[100, 100, 100], [-7, 0, 2**20]], dtype=np.int32)
    m0 = np.array([2**30, 1717986918, 2**31 - 1])
    shift = np.array([-1, -3, 0])
    got = multiply_by_quantized_multiplier(x, m0, shift)
    assert got.dtype == np.int32 and got.shape == (2, 3)
    for j in range(3):
        for i in range(2):
            assert got[i, j] == ref_single(int(x[i, j]), int(m0[j]), int(shift[j]))
    # by hand: 100/4 = 25; 100 * 0.1 (as 1717986918 * 2**-34) = 9.99999999.. -> 10;
    # 100 * (1 - 2**-31) -> 100. Row 2: -7/4 = -1.75 -> -2; 0; 2**20 * (1 - 2**-31) -> 2**20.
    assert got.tolist() == [[25, 10, 100], [-2, 0, 2**20]]


def test_mbqm_refuses_results_that_do_not_fit_int32():
    # M = 2**30 * 2**(1 - 31) = 1: x * M = 2**30 fits, so single rounding is fine ...
    assert multiply_by_quantized_multiplier(2**30, 2**30, 1) == 2**30
    # ... but the double form first computes x * 2**1 = 2**31, which overflows int32.
    with pytest.raises(ValueError, match="^x:"):
        multiply_by_quantized_multiplier(2**30, 2**30, 1, "double")
    # M = (2**31 - 1) * 2**-1 ~ 2**30: the product itself does not fit.
    with pytest.raises(ValueError, match="^x:"):
        multiply_by_quantized_multiplier(INT32_MAX, INT32_MAX, 30)


@pytest.mark.parametrize(
    "x, m0, shift, rounding, error, name",
    [
        (np.array([1.0]), 2**30, 0, "single", TypeError, "^x:"),
        (np.array([1], dtype=np.int64), 2**30, 0, "single", TypeError, "^x:"),
        (2**31, 2**30, 0, "single", ValueError, "^x:"),
        (True, 2**30, 0, "single", TypeError, "^x:"),
        (1, 5, 0, "single", ValueError, "m0"),
        (1, 2**31, 0, "single", ValueError, "m0"),
        (1, np.array([2.0**30]), 0, "single", TypeError, "m0"),
        (1, 2**30, 31, "single", ValueError, "shift"),
        (1, 2**30, -32, "double", ValueError, "shift"),
        (1, 2**30, 0.0, "single", TypeError, "shift"),
        (1, 2**30, 0, "nearest", ValueError, "rounding"),
        (np.zeros((2, 3), np.int32), np.full(2, 2**30), 0, "single", ValueError, "m0"),
    ],
)
def test_mbqm_rejects_bad_input(x, m0, shift, rounding, error, name):
    with pytest.raises(error, match=name):
        multiply_by_quantized_multiplier(x, m0, shift, rounding)


def test_primitives_reject_floats_naming_the_argument():
    with pytest.raises(TypeError, match="^a:"):
        saturating_rounding_doubling_high_mul(np.array([1.5]), 2)
    with pytest.raises(TypeError, match="^b:"):
        saturating_rounding_doubling_high_mul(1, 2.0)
    with pytest.raises(TypeError, match="^x:"):
        rounding_divide_by_pot(np.array([3], dtype=np.int16), 1)
