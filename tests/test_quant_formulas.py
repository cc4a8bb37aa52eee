"""The plain formula functions of nnref.quant (issue 9) and their fast twins.

The plain functions' laws and worked values live in nnref.laws (tests/test_laws.py runs
them on nnref's own functions). Here: each checked public function equals the plain one it
calls, and each fast path is bitwise equal to its plain version.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from nnref.quant.fixed_point import (
    mbqm_double,
    mbqm_single,
    multiply_by_quantized_multiplier,
    rdbpot,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
    srdhm,
)
from nnref.quant.kernels import (
    accumulate_fast,
    fold_bias,
    linear_int8,
    linear_int8_fast,
    matmul_centred,
    quantized_linear,
    requantize,
    requantize_fixed_point,
    requantize_fixed_point_inplace,
)
from nnref.quant.ops import (
    dequantize,
    dequantize_affine,
    fake_quantize_affine,
    fake_quantize_affine_backward,
    fake_quantize_backward,
    fake_quantize_with_mask,
    quantize,
    quantize_affine,
    quantize_half_away_into,
    quantize_input_int8,
)
from nnref.quant.qparams import affine_qparams, choose_qparams, symmetric_qparams
from strategies import int_arrays, int32_values, quant_settings, rounding_modes, seeds
from strategies import quantized_multipliers as m0s


def half_up(r: Fraction) -> int:
    return math.floor(r + Fraction(1, 2))


def half_away(r: Fraction) -> int:
    return int(math.copysign(math.floor(abs(r) + Fraction(1, 2)), r)) if r else 0


# --------------------------------------------------------------------------- fixed point


@given(int32_values, int32_values)
def test_checked_srdhm_is_the_plain_one(a, b):
    assert int(srdhm(a, b)) == int(saturating_rounding_doubling_high_mul(a, b))
    assert srdhm(np.array([3]), 2**30).dtype == np.int64


@given(int32_values, st.integers(0, 31))
def test_checked_rdbpot_is_the_plain_one(x, e):
    assert int(rdbpot(x, e)) == int(rounding_divide_by_pot(x, e))


@given(int32_values, m0s, st.integers(-31, 0))
def test_checked_mbqm_is_the_plain_one(x, m0, shift):
    assert int(mbqm_single(x, m0, shift)) == int(multiply_by_quantized_multiplier(x, m0, shift, "single"))
    assert int(mbqm_double(x, m0, shift)) == int(multiply_by_quantized_multiplier(x, m0, shift, "double"))


# --------------------------------------------------------------------------- choosing parameters


@given(st.floats(-1e3, 0), st.floats(0, 1e3), quant_settings())
def test_plain_qparams_are_choose_qparams(mn, mx, kw):
    qp = choose_qparams(mn, mx, **kw)
    if kw["symmetric"]:
        scale, zp = symmetric_qparams(mn, mx, qp.qmin, qp.qmax, int(qp.zero_point), kw["symmetric_convention"])
    else:
        scale, zp = affine_qparams(mn, mx, qp.qmin, qp.qmax)
    assert scale.dtype == np.float32 and scale == qp.scale and zp == qp.zero_point
    if not kw["symmetric"] and mx - mn > 1e-30:  # zero lies on the grid and the range is covered
        q = np.arange(qp.qmin, qp.qmax + 1)
        grid = dequantize_affine(q, scale, zp)
        assert grid.min() <= mn + scale and grid.max() >= mx - scale


# --------------------------------------------------------------------------- quantize / dequantize


@given(seeds, quant_settings(), rounding_modes)
def test_plain_quantize_dequantize_fake_quantize_equal_the_checked_ones(seed, kw, rounding):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 3, (5, 4)) * rng.choice([1, 10], (5, 4))
    qp = choose_qparams(-2.0, 3.0, **kw)
    s, z = float(qp.scale), int(qp.zero_point)
    q = quantize_affine(x, s, z, qp.qmin, qp.qmax, rounding, qp.dtype)
    assert np.array_equal(q, quantize(x, qp, rounding)) and q.dtype == qp.dtype
    assert np.array_equal(dequantize_affine(q, s, z), dequantize(q, qp))
    out, mask = fake_quantize_with_mask(x, qp, rounding)
    assert np.array_equal(fake_quantize_affine(x, s, z, qp.qmin, qp.qmax, rounding), out)
    g = rng.normal(size=x.shape)
    assert np.array_equal(fake_quantize_affine_backward(g, x, s, z, qp.qmin, qp.qmax, rounding),
                          fake_quantize_backward(g, mask))


@given(seeds, st.integers(-10, 3), st.integers(-128, 127), st.sampled_from([np.float32, np.float64]))
def test_fast_input_quantization_is_bitwise_the_plain_one(seed, scale_exp, zp, dtype):
    rng = np.random.default_rng(seed)
    scale = np.float32(rng.uniform(1, 2) * 2.0**scale_exp)
    x = rng.uniform(-300, 300, (9, 7)).astype(dtype) * scale
    x[::2, 1] = (rng.integers(-200, 200, 5) + 0.5) * np.float32(2.0**scale_exp)  # exact ties
    x[0, :3] = [1e30, -1e30, 0.49999997 * scale]
    plain = quantize_affine(x, scale, zp, -128, 127, "half_away", np.int8)
    out, scratch = np.empty(x.shape, np.float32), np.empty(x.shape, np.float32)
    assert np.array_equal(quantize_half_away_into(x, scale, zp, -128, 127, out, scratch), plain)
    assert np.array_equal(quantize_input_int8(x, scale, zp, block_values=14), plain)


def test_fast_input_quantization_with_a_subnormal_half_scale():
    scale = np.float32(np.finfo(np.float32).tiny) * np.float32(1.5)  # half of it is not exact
    x = np.array([[scale * 3.5, -scale * 2.5, 0.0]], np.float32)
    out, scratch = np.empty(x.shape, np.float32), np.empty(x.shape, np.float32)
    assert quantize_half_away_into(x, scale, 0, -128, 127, out, scratch).tolist() == [[4, -3, 0]]


# --------------------------------------------------------------------------- kernels


def ref_linear(x, w, bias, zx, m0, shift, zp, lo, hi, rounding):
    out = np.zeros((x.shape[0], w.shape[1]), np.int64)
    for (i, j), _ in np.ndenumerate(out):
        acc = sum((int(x[i, k]) - zx) * int(w[k, j]) for k in range(x.shape[1])) + int(bias[j])
        m, s = int(np.ravel(m0)[j % np.size(m0)]), int(np.ravel(shift)[j % np.size(shift)])
        if rounding == "single":
            v = half_up(Fraction(acc * m) * Fraction(2) ** (s - 31))
        else:
            v = half_away(Fraction(int(srdhm(acc * 2 ** max(s, 0), m)), 2 ** max(-s, 0)))
        out[i, j] = min(max(v + zp, lo), hi)
    return out


@st.composite
def linear_cases(draw):
    b, k, n = draw(st.integers(1, 4)), draw(st.integers(1, 9)), draw(st.integers(1, 4))
    x = draw(int_arrays((b, k), -128, 127, np.int8))
    w = draw(int_arrays((k, n), -127, 127, np.int8))
    bias = draw(int_arrays((n,), -(2**20), 2**20, np.int32))
    m0 = np.array(draw(st.lists(m0s, min_size=n, max_size=n)), np.int64)
    shift = np.array(draw(st.lists(st.integers(-31, 0), min_size=n, max_size=n)), np.int64)
    zx, zp = draw(st.integers(-128, 127)), draw(st.integers(-128, 127))
    lo = draw(st.integers(-128, 127))
    return x, w, bias, zx, m0, shift, zp, lo, draw(st.integers(lo, 127))


@given(linear_cases(), st.sampled_from(["single", "double"]))
def test_linear_int8_is_tflite_fully_connected_and_the_fast_path_is_bitwise_equal(case, rounding):
    x, w, bias, zx, m0, shift, zp, lo, hi = case
    plain = linear_int8(x, w, bias, zx, 0, m0, shift, zp, lo, hi, rounding)
    assert plain.dtype == np.int8
    assert plain.tolist() == ref_linear(x, w, bias, zx, m0, shift, zp, lo, hi, rounding).tolist()
    folded = fold_bias(bias, w, zx)
    fast = linear_int8_fast(x.astype(np.float32), w.astype(np.float32), folded, m0, shift, zp, lo, hi, rounding)
    assert fast.dtype == np.int8 and np.array_equal(fast, plain)
    checked = quantized_linear(x, w, bias, zx, 0, m0, shift, zp, lo, hi, rounding, method="int")
    assert np.array_equal(checked, plain)
    acc = matmul_centred(x, w, zx, 0) + bias
    assert np.array_equal(accumulate_fast(x.astype(np.float64), w.astype(np.float64), folded), acc)
    assert np.array_equal(requantize_fixed_point(acc, m0, shift, zp, lo, hi, rounding),
                          requantize(acc, m0, shift, zp, lo, hi, rounding))
    assert np.array_equal(requantize_fixed_point_inplace(acc.astype(np.int64), m0, shift, zp, lo, hi, rounding),
                          plain)

