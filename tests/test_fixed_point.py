"""Tests for nnref.quant.fixed_point's checked functions: dtypes, arrays and broadcasting,
per-channel use, the bounds they refuse, and how the primitives compose. The primitives'
laws (exact over int32, ties, saturation, carry and flush, nearness to the real product,
monotonicity) and their worked values live in nnref.laws; the oracles below, in Python
integers and ``fractions.Fraction``, serve the compositions checked here.
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


def test_quantize_multiplier_refuses_what_needs_shift_31():
    # the worked values, ties, carry and flush edges are laws (nnref.laws, quantize_multiplier);
    # the largest accepted multiplier is one of them. Just above it:
    with pytest.raises(ValueError, match="real"):
        quantize_multiplier(2.0**30 - 0.25)  # would need m0 = 2**30 at shift 31


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


@given(st.lists(st.tuples(int32s, int32s), min_size=1, max_size=10))
def test_srdhm_vectorised_is_elementwise(pairs):
    a = np.array([p[0] for p in pairs], dtype=np.int32)
    b = np.array([p[1] for p in pairs], dtype=np.int32)
    got = saturating_rounding_doubling_high_mul(a, b)
    assert got.dtype == np.int32
    assert got.tolist() == [ref_srdhm(x, y) for x, y in pairs]


# --------------------------------------------------------------------------- RDBPOT


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


@given(st.floats(min_value=2.0**-20, max_value=2.0**10), st.integers(-(2**20), 2**20))
def test_mbqm_after_quantize_multiplier_approximates_the_real_product(real, x):
    m0, shift = quantize_multiplier(real)
    got = int(multiply_by_quantized_multiplier(np.int32(x), m0, shift))
    # rounding of the product (1/2) plus |x| times the multiplier's own error (half ulp)
    bound = HALF + abs(x) * Fraction(2) ** (shift - 32)
    assert abs(got - Fraction(x) * Fraction(real)) <= bound


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
