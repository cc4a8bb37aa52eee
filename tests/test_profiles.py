"""Rounding profiles (nnref.quant.profiles): laws against exact integer arithmetic,
worked values, and bad input. Pure numpy: the engines themselves are in test_interop_*."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnref.quant import QParams, QuantizedLayer, quantize_multiplier
from nnref.quant.profiles import (
    ENGINE_INPUT_ROUNDINGS,
    ENGINE_PROFILES,
    INPUT_ROUNDINGS,
    PROFILES,
    double_up_formula,
    float32_formula,
    float64_formula,
    input_rounding_formula,
    profile_forward,
    profile_multipliers,
    profile_scaled,
    quantize_input_as,
    rounding_shift_ties_up,
)
from tests.strategies import int32_values, nonpositive_shifts, normalised_m0


def exact_double_up(acc: int, m0: int, shift: int) -> int:
    """Python integers: SRDHM (floor((a*b + 2**30) / 2**31)), then floor(hi / 2**r + 1/2)."""
    left, right = max(shift, 0), max(-shift, 0)
    high = (acc * 2**left * m0 + 2**30) // 2**31
    return (2 * high + 2**right) // 2 ** (right + 1)


def run(profile, acc, m0, shift, mult=1.0):
    return int(profile_scaled(profile, np.array([acc], np.int32), np.array([m0], np.int32),
                              np.array([shift], np.int32), np.array([mult], np.float32),
                              np.array([mult], np.float64))[0])


@given(int32_values, normalised_m0, nonpositive_shifts)
def test_double_up_is_the_exact_integer_rule(acc, m0, shift):
    assert run("double_up", acc, m0, shift) == exact_double_up(acc, m0, shift)


@given(int32_values, normalised_m0, nonpositive_shifts)
def test_double_up_is_within_half_plus_the_first_rounding(acc, m0, shift):
    right = -shift
    real = Fraction(acc * m0, 2 ** (31 - shift))  # acc * M exactly
    assert abs(run("double_up", acc, m0, shift) - real) <= Fraction(1, 2) + Fraction(1, 2 ** (right + 1))


@given(int32_values, normalised_m0, nonpositive_shifts)
def test_the_two_double_roundings_differ_only_at_negative_exact_ties(acc, m0, shift):
    up, away = run("double_up", acc, m0, shift), run("double", acc, m0, shift)
    high = (acc * m0 + 2**30) // 2**31
    tie = shift < 0 and high < 0 and high % 2 ** (-shift) == 2 ** (-shift - 1)
    assert (up != away) == tie
    if tie:
        assert up == away + 1  # toward +inf instead of away from zero


@given(int32_values, normalised_m0, nonpositive_shifts)
def test_every_fixed_point_profile_is_within_one_of_single_rounding(acc, m0, shift):
    single = run("single", acc, m0, shift)
    assert abs(run("double", acc, m0, shift) - single) <= 1
    assert abs(run("double_up", acc, m0, shift) - single) <= 1


@given(st.integers(-(2**31), 2**31 - 1), st.integers(0, 31))
def test_rounding_shift_ties_up_is_floor_of_x_over_2e_plus_half(x, e):
    got = int(rounding_shift_ties_up(np.array([x], np.int64), np.array([e], np.int64))[0])
    assert got == (Fraction(x, 2**e) + Fraction(1, 2)).__floor__()


@given(int32_values, st.floats(min_value=2**-20, max_value=0.5, width=32))
def test_float32_profile_is_the_float32_product_rounded_half_even(acc, mult):
    product = np.float32(acc) * np.float32(mult)  # numpy scalar: a float32 multiply
    assert run("float32", acc, 0, 0, mult) == round(float(product))  # Python's round: ties to even


@given(int32_values, st.floats(min_value=2**-20, max_value=2.0))
def test_float64_profile_is_the_double_product_rounded_half_away(acc, mult):
    product = Fraction(float(acc) * mult)  # Python floats: one double multiply, as the kernel
    want = (abs(product) + Fraction(1, 2)).__floor__() * (1 if product >= 0 else -1)
    assert run("float64", acc, 0, 0, mult) == min(max(want, -(2**31)), 2**31)  # saturated, never wrapped


@given(int32_values, st.floats(min_value=2**-20, max_value=0.5))
def test_float64_profile_is_within_one_of_single_rounding(acc, mult):
    m0, shift = quantize_multiplier(mult)  # the same M, rounded to a 31-bit m0
    assert abs(run("float64", acc, 0, 0, mult) - run("single", acc, int(m0), int(shift))) <= 1


def test_worked_value_double_m_above_a_tie_fixed_point_below():
    # digits_relu6's first layer, column 17: acc * M is 8.5e-10 above 20.5 in double, and
    # m0 (M rounded to 31 bits) puts it 3.5e-9 below: float64 21 (as LiteRT's reference
    # kernels), single 20. Scales as the fixture stores them.
    s_in, s_w, s_out = (np.float32(v) for v in (0.003921568859368563, 0.006560699548572302, 0.0235294122248888))
    mult = float(s_in) * float(s_w) / float(s_out)
    m0, shift = quantize_multiplier(mult)
    for acc, tie in ((18748, Fraction(41, 2)), (56244, Fraction(123, 2)), (93740, Fraction(205, 2))):
        assert 0 < Fraction(acc) * Fraction(mult) - tie < Fraction(1, 10**8)
        assert Fraction(acc * int(m0), 2 ** (31 - int(shift))) < tie
        assert run("float64", acc, 0, 0, mult) == tie + Fraction(1, 2)
        assert run("single", acc, int(m0), int(shift)) == tie - Fraction(1, 2)


def test_float64_formula_saturates_and_rounds_ties_away():
    acc = np.array([[2**31 - 1, -(2**31), 5, -5]], np.int32)
    got = float64_formula(acc, np.array([4.0, 4.0, 0.5, 0.5]))
    assert got.tolist() == [[2**31, -(2**31), 3, -3]]


def test_worked_value_negative_tie_after_the_first_rounding():
    # acc * M = -83.500566...: SRDHM gives -334 (= -83.5 * 4), then the shift by 2 meets a tie.
    acc, shift = -500, -2
    m0 = round(Fraction("334.002264") * 2**31 / 500)
    real = Fraction(acc * m0, 2**33)
    assert -83.51 < real < -83.5
    assert (acc * m0 + 2**30) // 2**31 == -334
    assert run("single", acc, m0, shift) == -84  # nearest to -83.5006
    assert run("double", acc, m0, shift) == -84  # gemmlowp: the tie away from zero
    assert run("double_up", acc, m0, shift) == -83  # ruy: the tie toward +inf


def test_worked_value_float32_product_becomes_a_tie():
    acc = 3
    mult = np.float32(159.499995588 / 3)
    exact = Fraction(acc) * Fraction(float(mult))
    assert exact < Fraction(319, 2)  # below 159.5 exactly ...
    assert np.float32(acc) * mult == np.float32(159.5)  # ... but 159.5 in float32
    assert run("float32", acc, 0, 0, float(mult)) == 160  # ties to even
    m0, shift = quantize_multiplier(float(mult))  # the same M as a fixed-point multiplier
    assert run("single", acc, m0, shift) == 159  # the exact product rounds down


def test_double_up_formula_matches_the_public_function_on_arrays():
    rng = np.random.default_rng(0)
    acc = rng.integers(-(2**31), 2**31, size=(50, 4), dtype=np.int64).astype(np.int32)
    m0 = rng.integers(2**30, 2**31, size=4).astype(np.int32)
    shift = np.array([0, -1, -9, -31], np.int32)
    got = profile_scaled("double_up", acc, m0, shift, np.ones(4, np.float32))
    assert np.array_equal(got, double_up_formula(acc, m0, shift))
    want = [[exact_double_up(int(a), int(m), int(s)) for a, m, s in zip(row, m0, shift)] for row in acc]
    assert np.array_equal(got, np.array(want))


def test_float32_formula_saturates_instead_of_wrapping():
    acc = np.array([[2**31 - 1, -(2**31)]], np.int32)
    got = float32_formula(acc, np.array([4.0, 4.0], np.float32))
    assert got.tolist() == [[2**31, -(2**31)]]


def test_the_tables_name_every_profile_and_engine_path():
    assert set(ENGINE_INPUT_ROUNDINGS) == set(ENGINE_PROFILES)
    assert set(ENGINE_INPUT_ROUNDINGS.values()) <= set(INPUT_ROUNDINGS)
    assert set(ENGINE_PROFILES.values()) <= set(PROFILES)
    assert ENGINE_PROFILES["litert_reference"] == "float64"


def tie_inputs(scale: np.float32) -> np.ndarray:
    """float32 inputs at and next to every k + 1/2 of the grid, k in [-130, 130]."""
    base = ((np.arange(-130, 131) + 0.5) * np.float64(scale)).astype(np.float32)
    return np.concatenate([np.nextafter(base, -np.inf), base, np.nextafter(base, np.inf)])


@given(st.floats(min_value=2**-12, max_value=4.0, width=32), st.integers(-128, 127))
def test_input_roundings_are_within_half_of_the_quotient_and_differ_only_near_ties(scale, zp):
    scale = np.float32(scale)
    x = tie_inputs(scale)
    q = {r: input_rounding_formula(x, scale, zp, r).astype(np.int64) for r in INPUT_ROUNDINGS}
    exact = np.array([Fraction(float(v)) / Fraction(float(scale)) for v in x])  # x / s exactly
    inside = np.array([-128 <= e + zp <= 127 for e in exact])
    for r, v in q.items():
        assert np.all(np.abs((v - zp)[inside] - exact[inside].astype(float)) <= 0.5 + 1e-4), r
    for a in q.values():
        for b in q.values():
            assert np.abs(a - b).max() <= 1
    assert np.array_equal(q["half_away"][x >= 0] >= q["half_even"][x >= 0], np.ones(int((x >= 0).sum()), bool))


def test_worked_value_the_reciprocal_moves_a_quotient_onto_a_tie():
    scale = np.float32(1 / 255)
    x = tie_inputs(scale)
    by_reciprocal = x * (np.float32(1) / scale)
    onto_tie = (by_reciprocal == np.floor(by_reciprocal) + np.float32(0.5)) & (x / scale != by_reciprocal)
    assert onto_tie.any()
    i = np.flatnonzero(onto_tie)[0]
    by_division = float(x[i] / scale)
    by_reciprocal = float(x[i] * (np.float32(1) / scale))
    assert by_reciprocal == np.floor(by_reciprocal) + 0.5 and by_division != by_reciprocal
    q = {r: int(input_rounding_formula(x[i:i + 1], scale, 0, r)[0]) for r in INPUT_ROUNDINGS}
    assert q["reciprocal_half_even"] == round(by_reciprocal)  # to even
    assert q["half_even"] == q["half_away"] == round(by_division)  # not a tie


def test_quantize_input_as_half_away_is_the_models_quantize_input():
    from nnref.mlp import MLP
    from nnref.quant import quantize_model

    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 2, (200, 8))
    qm = quantize_model(MLP([8, 4], seed=0), x)
    assert np.array_equal(quantize_input_as(qm, x, "half_away"), qm.quantize_input(x))
    x_ties = tie_inputs(qm.input_qparams.scale)[:200].reshape(25, 8)
    assert np.array_equal(quantize_input_as(qm, x_ties, "half_away"), qm.quantize_input(x_ties))
    with pytest.raises(ValueError, match="rule"):
        quantize_input_as(qm, x, "nearest")
    with pytest.raises(ValueError, match="x"):
        quantize_input_as(qm, x[:, :3], "half_even")
    with pytest.raises(TypeError, match="model"):
        quantize_input_as(None, x, "half_even")


@pytest.mark.parametrize("kwargs, error, text", [
    (dict(profile="nearest"), ValueError, "profile"),
    (dict(acc=np.zeros((2, 3), np.int64)), TypeError, "acc"),
    (dict(m0=np.zeros(3, np.float64)), TypeError, "m0"),
    (dict(shift=np.zeros(2, np.int32)), ValueError, "shift"),
    (dict(float_multiplier=np.ones(3)), TypeError, "float_multiplier"),
    (dict(profile="float64", real_multiplier=None), TypeError, "real_multiplier"),
    (dict(real_multiplier=np.ones(3, np.float32)), TypeError, "real_multiplier"),
    (dict(real_multiplier=np.array([1.0, np.nan, 1.0])), ValueError, "real_multiplier"),
    (dict(real_multiplier=np.ones(2)), ValueError, "real_multiplier"),
    (dict(profile="double_up", shift=np.ones(3, np.int32)), ValueError, "shift"),
])
def test_bad_arguments_are_named(kwargs, error, text):
    args = dict(profile="single", acc=np.zeros((2, 3), np.int32), m0=np.full(3, 2**30, np.int32),
                shift=np.zeros(3, np.int32), float_multiplier=np.ones(3, np.float32), real_multiplier=None)
    args.update(kwargs)
    with pytest.raises(error, match=text):
        profile_scaled(args["profile"], args["acc"], args["m0"], args["shift"], args["float_multiplier"],
                       args["real_multiplier"])


def test_profile_multipliers_names_bad_arguments():
    with pytest.raises(TypeError, match="layer: expected a QuantizedLayer"):
        profile_multipliers("layer", "single")
    layer = QuantizedLayer(np.ones((2, 3), np.int8), np.zeros(3, np.int32),
                           QParams(scale=np.float32(0.5), zero_point=np.int32(0), qmin=-127, qmax=127, bits=8,
                                   signed=True, scheme="symmetric", narrow_range=True),
                           *[QParams(scale=np.float32(s), zero_point=np.int32(0), qmin=-128, qmax=127, bits=8,
                                     signed=True) for s in (0.25, 0.125)])
    with pytest.raises(ValueError, match="profile: expected one of"):
        profile_multipliers(layer, "nearest")
    # 0.25 * 0.5 / 0.125 = 1 exactly in either order: the same (m0, shift) for every profile
    for profile in PROFILES:
        assert [a.tolist() for a in profile_multipliers(layer, profile)] == [[2**30] * 3, [1] * 3]


def test_profile_forward_with_the_model_profile_is_forward_int():
    from nnref.mlp import MLP
    from nnref.quant import quantize_model

    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (64, 8))
    for req, rounding, profile in (("fixed_point", "single", "single"), ("fixed_point", "double", "double"),
                                   ("float", "single", "float32")):
        qm = quantize_model(MLP([8, 16, 4], activation="tanh", seed=0), x, requantization=req, rounding=rounding)
        x_q = qm.quantize_input(x)
        assert np.array_equal(profile_forward(qm, x_q, profile), qm.forward_int(x_q))
    with pytest.raises(TypeError, match="model"):
        profile_forward("model", x_q, "single")
