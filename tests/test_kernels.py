"""Tests for nnref.quant.kernels against independent Python-integer / np.float32 loops.

The references below are written from the engines' published loops (TensorFlow Lite's
``reference_integer_ops::FullyConnected``, onnxruntime's QLinearMatMul + MLAS
requantization) as scalar Python code, sharing nothing with the vectorised kernels.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnref.quant import matmul as kernels  # the module where the product is chosen
from nnref.quant.kernels import (
    activation_range,
    exact_float_dtype,
    matmul_int32,
    matmul_int32_direct,
    matmul_int32_expanded,
    qlinear_matmul,
    quantized_linear,
    requantize,
)
from strategies import int_arrays, seeds

INT32_MAX = 2**31 - 1

# --------------------------------------------------------------------------- exact references


def zp_at(zp, i: int) -> int:
    """Zero point for row/column i: a scalar or a per-row/per-column array."""
    return int(zp) if np.ndim(zp) == 0 else int(np.ravel(zp)[i])


def ref_matmul(a, b, za, zb) -> list[list[int]]:
    """sum_k (a[i,k] - za[i]) * (b[k,j] - zb[j]) in Python ints."""
    rows, inner = a.shape
    cols = b.shape[1]
    return [
        [sum((int(a[i, k]) - zp_at(za, i)) * (int(b[k, j]) - zp_at(zb, j)) for k in range(inner)) for j in range(cols)]
        for i in range(rows)
    ]


def ref_mbqm(x: int, m0: int, shift: int, rounding: str) -> int:
    """TFLite MultiplyByQuantizedMultiplier in exact rationals."""

    def half_up(r):
        return math.floor(r + Fraction(1, 2))

    def half_away(r):
        return int(math.copysign(math.floor(abs(r) + Fraction(1, 2)), r)) if r else 0

    if rounding == "single":
        return half_up(Fraction(x * m0) * Fraction(2) ** (shift - 31))
    left, right = max(shift, 0), max(-shift, 0)
    a = x * 2**left
    high = 2**31 - 1 if a == m0 == -(2**31) else half_up(Fraction(a * m0, 2**31))
    return half_away(Fraction(high, 2**right))


def ref_tflite_fully_connected(x, w, bias, zx, zw, m0, shift, zy, lo, hi, rounding):
    """TFLite reference_integer_ops::FullyConnected(PerChannel), w laid out (in, out)."""
    rows, inner = x.shape
    out = np.zeros((rows, w.shape[1]), dtype=np.int8)
    accs = np.zeros((rows, w.shape[1]), dtype=np.int32)
    for b in range(rows):
        for c in range(w.shape[1]):
            acc = 0
            for d in range(inner):
                acc += (int(w[d, c]) - zp_at(zw, c)) * (int(x[b, d]) - zx)
            if bias is not None:
                acc += int(bias[c])
            accs[b, c] = acc
            acc = ref_mbqm(acc, zp_at(m0, c), zp_at(shift, c), rounding)
            acc += zy
            out[b, c] = min(max(acc, lo), hi)
    return out, accs


def ref_onnxruntime_qlinear_matmul(a, sa, za, b, sb, zb, sy, zy, out_dtype):
    """onnxruntime QLinearMatMul, one element at a time with np.float32 scalars."""
    info = np.iinfo(out_dtype)
    acc = ref_matmul(a, b, za, zb)
    out = np.zeros((a.shape[0], b.shape[1]), dtype=out_dtype)
    for i in range(a.shape[0]):
        for j in range(b.shape[1]):
            mult = np.float32(np.float32(zp_f(sa, i)) * np.float32(zp_f(sb, j))) / np.float32(sy)
            value = np.float32(acc[i][j]) * mult  # float32(acc), float32 product
            q = round(float(value)) + int(zy)  # Python round(): ties to even
            out[i, j] = min(max(q, info.min), info.max)
    return out


def zp_f(s, i: int) -> float:
    return float(s) if np.ndim(s) == 0 else float(np.ravel(s)[i])


# --------------------------------------------------------------------------- strategies

RANGES = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255)}


@st.composite
def matmul_cases(draw, dtypes=(np.int8, np.uint8), max_b=5, max_k=12, max_n=5):
    rows, inner, cols = draw(st.integers(1, max_b)), draw(st.integers(1, max_k)), draw(st.integers(1, max_n))
    da, db = np.dtype(draw(st.sampled_from(dtypes))), np.dtype(draw(st.sampled_from(dtypes)))
    a = draw(int_arrays((rows, inner), *RANGES[da], da))
    b = draw(int_arrays((inner, cols), *RANGES[db], db))
    za = draw(st.one_of(st.integers(*RANGES[da]), int_arrays((rows,), *RANGES[da], np.int64)))
    zb = draw(st.one_of(st.integers(*RANGES[db]), int_arrays((cols,), *RANGES[db], np.int64)))
    return a, b, za, zb


m0s = st.one_of(st.just(0), st.integers(2**30, 2**31 - 1))


# --------------------------------------------------------------------------- int32 matmul


@given(matmul_cases())
def test_all_matmul_paths_equal_the_exact_sum(case):
    a, b, za, zb = case
    expected = ref_matmul(a, b, za, zb)
    results = [
        matmul_int32_direct(a, b, za, zb),
        matmul_int32_expanded(a, b, za, zb),
        matmul_int32(a, b, za, zb, method="int"),
        matmul_int32(a, b, za, zb, method="float"),
        matmul_int32(a, b, za, zb),
    ]
    for got in results:
        assert got.dtype == np.int32 and got.shape == (a.shape[0], b.shape[1])
        assert got.tolist() == expected


@given(matmul_cases())
def test_matmul_transpose_law(case):
    # (A - za)(B - zb) transposed is (B^T - zb)(A^T - za): per-column zb becomes per-row.
    a, b, za, zb = case
    assert np.array_equal(matmul_int32(a, b, za, zb).T, matmul_int32(b.T.copy(), a.T.copy(), zb, za))


@given(matmul_cases(max_k=16), st.data())
def test_matmul_splits_over_k(case, data):
    # sum over k = sum over k < s plus sum over k >= s.
    a, b, za, zb = case
    s = data.draw(st.integers(0, a.shape[1]))
    whole = matmul_int32(a, b, za, zb).astype(np.int64)
    parts = matmul_int32(a[:, :s], b[:s], za, zb).astype(np.int64) + matmul_int32(a[:, s:], b[s:], za, zb)
    assert np.array_equal(whole, parts)


@pytest.mark.parametrize(
    "k, max_a, max_b, expected",
    [
        (1032, 128, 127, np.float32),  # 1032 * 16256 = 16,776,192 <= 2**24 = 16,777,216
        (1033, 128, 127, np.float64),  # 1033 * 16256 = 16,792,448 >  2**24
        (1024, 128, 128, np.float32),  # 1024 * 16384 = 2**24 exactly
        (1025, 128, 128, np.float64),
        (2**39, 128, 128, np.float64),  # 2**39 * 2**14 = 2**53 exactly
        (2**39 + 1, 128, 128, None),
        (0, 128, 128, np.float32),
    ],
)
def test_exact_float_dtype_boundaries(k, max_a, max_b, expected):
    got = exact_float_dtype(k, max_a, max_b)
    assert got == (None if expected is None else np.dtype(expected))


@pytest.fixture
def route(monkeypatch):
    """Record which float type (or None) matmul_int32 chose for its big product."""
    chosen = []
    original = kernels.exact_float_dtype

    def spy(*args):
        chosen.append(original(*args))
        return chosen[-1]

    monkeypatch.setattr(kernels, "exact_float_dtype", spy)
    return chosen


def test_float32_route_at_the_bound_is_exact(route):
    # K = 1024, all -128 x all -128: every entry 1024 * 16384 = 2**24, the largest
    # magnitude the bound allows; every partial sum is a multiple of 16384 <= 2**24.
    a = np.full((2, 1024), -128, dtype=np.int8)
    b = np.full((1024, 3), -128, dtype=np.int8)
    got = matmul_int32(a, b)
    assert route == [np.dtype(np.float32)]
    assert got.tolist() == [[2**24] * 3] * 2
    assert np.array_equal(got, matmul_int32(a, b, method="int"))


def test_past_the_float32_bound_the_float64_route_is_taken(route):
    # K = 1026: 1025 products (-128)(-128) = 16384 then one 127 * 127 = 16129.
    # Exact sum: 1025 * 16384 + 16129 = 16,793,600 + 16,129 = 16,809,729, odd and > 2**24,
    # so float32 cannot even represent the answer; float64 does, exactly.
    col = np.array([-128] * 1025 + [127], dtype=np.int8)
    a = col[None, :].copy()
    b = col[:, None].copy()
    got = matmul_int32(a, b)
    assert route == [np.dtype(np.float64)]
    assert got.tolist() == [[16_809_729]]
    naive32 = (a.astype(np.float32) @ b.astype(np.float32))[0, 0]
    assert int(naive32) != 16_809_729  # what the bound protects against


@pytest.mark.parametrize("k, dtype", [(1032, np.float32), (1033, np.float64)])
@given(seed=seeds)
def test_extreme_inputs_at_and_past_the_bound_are_bit_identical(k, dtype, seed):
    # Uncentred int8 activations in {-128, 127} against narrow-range weights in {-127, 127}:
    # the bound 128 * 127 * K crosses 2**24 between K = 1032 and 1033.
    rng = np.random.default_rng(seed)
    a = rng.choice(np.array([-128, 127], dtype=np.int8), size=(3, k))
    b = rng.choice(np.array([-127, 127], dtype=np.int8), size=(k, 2))
    za, zb = int(rng.integers(-128, 128)), 0
    chosen = []
    original = kernels.exact_float_dtype
    kernels.exact_float_dtype = lambda *args: chosen.append(original(*args)) or chosen[-1]
    try:
        fast = matmul_int32(a, b, za, zb)
    finally:
        kernels.exact_float_dtype = original
    assert chosen == [np.dtype(dtype)]
    assert np.array_equal(fast, matmul_int32_direct(a, b, za, zb))


def test_accumulator_bound_is_exact_at_the_limit():
    # int8 with za = -128: |a - za| <= 255; int8 b, zb = 0: |b| <= 128.
    # 255 * 128 = 32,640; 32,640 * 65,793 = 2,147,483,520 <= 2**31 - 1 = 2,147,483,647.
    k = 65_793
    a = np.full((1, k), 127, dtype=np.int8)  # a - za = 255
    b = np.full((k, 1), -128, dtype=np.int8)
    expected = 255 * -128 * k  # -2,147,483,520, the worst case itself
    for method in ("auto", "int", "float"):
        assert matmul_int32(a, b, -128, 0, method=method).tolist() == [[expected]]
    assert matmul_int32_direct(a, b, -128, 0).tolist() == [[expected]]
    # One more term could reach 2,147,516,160 > 2**31 - 1: refused, whatever the values.
    with pytest.raises(ValueError, match="a_q, b_q"):
        matmul_int32(np.zeros((1, k + 1), np.int8), np.zeros((k + 1, 1), np.int8), -128, 0)


def test_overflow_is_refused_before_computing():
    # A zero-stride view of 10**9 columns: computing would allocate gigabytes; the
    # shape check must refuse it first (uint8 x uint8: 255 * 255 * 10**9 > 2**31).
    a = np.broadcast_to(np.uint8(0), (1, 10**9))
    b = np.broadcast_to(np.uint8(0), (10**9, 1))
    for f in (matmul_int32_direct, matmul_int32_expanded, matmul_int32):
        with pytest.raises(ValueError, match="overflow"):
            f(a, b)


@pytest.mark.parametrize(
    "args, error, name",
    [
        ((np.zeros((2, 3)), np.zeros((3, 2), np.int8)), TypeError, "a_q"),
        ((np.zeros((2, 3), np.int8), np.zeros((3, 2), np.int16)), TypeError, "b_q"),
        ((np.zeros((2, 3), np.int8), [[1, 2]] * 3), TypeError, "b_q"),
        ((np.zeros((2, 3), np.int8), np.zeros((4, 2), np.int8)), ValueError, "b_q"),
        ((np.zeros(3, np.int8), np.zeros((3, 2), np.int8)), ValueError, "a_q"),
        ((np.zeros((2, 3), np.int8), np.zeros((3, 2), np.int8), 128), ValueError, "a_zero_point"),
        ((np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.int8), -1), ValueError, "a_zero_point"),
        ((np.zeros((2, 3), np.int8), np.zeros((3, 2), np.int8), 0, 0.5), TypeError, "b_zero_point"),
        ((np.zeros((2, 3), np.int8), np.zeros((3, 2), np.int8), 0, np.zeros(3, int)), ValueError, "b_zero_point"),
        ((np.zeros((2, 3), np.int8), np.zeros((3, 2), np.int8), np.zeros(3, int)), ValueError, "a_zero_point"),
        ((np.zeros((2, 3), np.int8), np.zeros((3, 2), np.int8), 0, 0, "fast"), ValueError, "method"),
    ],
)
def test_matmul_rejects_bad_input(args, error, name):
    with pytest.raises(error, match=name):
        matmul_int32(*args)


# --------------------------------------------------------------------------- requantize


@given(int_arrays((12,), -(2**31), 2**31 - 1, np.int32), m0s, st.integers(-31, 0), st.integers(-128, 127))
def test_requantize_is_monotone(acc, m0, shift, zp):
    y = requantize(np.sort(acc)[None, :], m0, shift, zp)
    assert np.all(np.diff(y.astype(np.int16)) >= 0)


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(acc=np.zeros((2, 3))), TypeError, "acc"),
        (dict(acc=np.zeros((2, 3), np.int64)), TypeError, "acc"),
        (dict(out_zero_point=128), ValueError, "out_zero_point"),
        (dict(act_min=5, act_max=4), ValueError, "act_min"),
        (dict(act_max=200), ValueError, "act_max"),
        (dict(m0=np.full(2, 2**30)), ValueError, "m0"),
        (dict(shift=np.zeros(4, int)), ValueError, "shift"),
        (dict(rounding="even"), ValueError, "rounding"),
    ],
)
def test_requantize_rejects_bad_input(kwargs, error, name):
    args = dict(acc=np.zeros((2, 3), np.int32), m0=2**30, shift=-1, out_zero_point=0)
    args.update(kwargs)
    with pytest.raises(error, match=name):
        requantize(**args)


# --------------------------------------------------------------------------- activation range


def test_activation_range_worked_values():
    assert activation_range(None, 0.1, 5) == (-128, 127)
    assert activation_range("none", 0.1, 5) == (-128, 127)
    assert activation_range("relu", 0.1, -5) == (-5, 127)  # quantize(0) = zp
    # float32(0.05) = 0.0500000007..; 6 / that = 119.9999998.. -> 120; -128 + 120 = -8.
    assert activation_range("relu6", 0.05, -128) == (-128, -8)
    # s = 12: 6 / 12 = 0.5 exactly -> half away from zero -> 1 (numpy.round would give 0).
    assert activation_range("relu6", 12.0, 0) == (0, 1)
    # s = 2: +-1 / 2 = +-0.5 -> +-1, so (-1, 1) where half-to-even would give (0, 0).
    assert activation_range("relu_n1_to_1", 2.0, 0) == (-1, 1)
    # The division is float32: float32(2.4) = 2.4000000953..; 6 / that = 2.49999990066..,
    # whose nearest float32 is 2.5 (float32 spacing there is 2**-22 ~ 2.4e-7), and
    # round-half-away(2.5) = 3. In float64 the quotient stays below 2.5 and would give 2.
    assert activation_range("relu6", 2.4, 0) == (0, 3)
    # Clamped by qmin/qmax: 6 / 0.01 = 600 -> zp + 600 far above 127.
    assert activation_range("relu6", 0.01, 0) == (0, 127)
    assert activation_range("relu", 0.1, 10, qmin=0, qmax=255) == (10, 255)


@given(
    st.sampled_from([None, "relu", "relu6", "relu_n1_to_1"]),
    st.floats(min_value=1e-4, max_value=10.0),
    st.integers(-128, 127),
)
def test_activation_range_laws(activation, scale, zp):
    lo, hi = activation_range(activation, scale, zp)
    assert -128 <= lo <= zp <= hi <= 127
    s = Fraction(float(np.float32(scale)))
    if activation in ("relu", "relu6"):
        assert lo == zp
    if activation == "relu6" and hi < 127:
        # act_max - zp is 6 / s rounded (the float32 quotient adds at most one ulp of error)
        assert abs(hi - zp - 6 / s) <= Fraction(1, 2) + Fraction(1, 10**4)
    if activation == "relu_n1_to_1" and -128 < lo and hi < 127:
        assert hi - zp == zp - lo  # round half away from zero is odd-symmetric


@pytest.mark.parametrize(
    "args, error, name",
    [
        (("tanh", 0.1, 0), ValueError, "activation"),
        (("relu", 0.0, 0), ValueError, "out_scale"),
        (("relu", -0.1, 0), ValueError, "out_scale"),
        (("relu", float("nan"), 0), ValueError, "out_scale"),
        (("relu", 1e-50, 0), ValueError, "out_scale"),  # 0 as float32
        (("relu6", 1e-30, 0), ValueError, "out_scale"),  # 6 / 1e-30 overflows int32
        (("relu", "0.1", 0), TypeError, "out_scale"),
        (("relu", 0.1, 128), ValueError, "out_zero_point"),
        (("relu", 0.1, 0.0), TypeError, "out_zero_point"),
    ],
)
def test_activation_range_rejects_bad_input(args, error, name):
    with pytest.raises(error, match=name):
        activation_range(*args)


# --------------------------------------------------------------------------- quantized linear


@given(
    matmul_cases(dtypes=(np.int8,), max_k=10),
    st.data(),
    st.sampled_from(["single", "double"]),
    st.sampled_from(["auto", "int"]),
)
def test_quantized_linear_matches_tflite_loop(case, data, rounding, method):
    x, w, zx, zw = case
    zx = zp_at(zx, 0)  # one input zero point per tensor, as TFLite
    n = w.shape[1]
    bias = data.draw(st.one_of(st.none(), int_arrays((n,), -(2**20), 2**20, np.int32)))
    per_channel = data.draw(st.booleans())
    if per_channel:
        m0 = np.array(data.draw(st.lists(m0s, min_size=n, max_size=n)))
        shift = np.array(data.draw(st.lists(st.integers(-31, 0), min_size=n, max_size=n)))
    else:
        m0, shift = data.draw(m0s), data.draw(st.integers(-31, 0))
    zy = data.draw(st.integers(-128, 127))
    lo, hi = sorted(data.draw(st.tuples(st.integers(-128, 127), st.integers(-128, 127))))
    y, acc = quantized_linear(x, w, bias, zx, zw, m0, shift, zy, lo, hi, rounding, method, return_acc=True)
    y_ref, acc_ref = ref_tflite_fully_connected(x, w, bias, zx, zw, m0, shift, zy, lo, hi, rounding)
    assert np.array_equal(acc, acc_ref)
    assert np.array_equal(y, y_ref) and y.dtype == np.int8


def test_quantized_linear_bias_counts_in_the_overflow_bound():
    # zp_x = -128, zp_w = 0: K * 255 * 128 = 2,147,483,520 for K = 65,793; a bias of up to
    # 127 brings the worst case to exactly 2**31 - 1, a bias of 128 one past it.
    k = 65_793
    x = np.full((1, k), 127, dtype=np.int8)
    w = np.full((k, 1), -128, dtype=np.int8)
    _, acc = quantized_linear(x, w, np.array([-127], np.int32), -128, 0, 2**30, -31, 0, return_acc=True)
    assert acc.tolist() == [[-2_147_483_520 - 127]]
    with pytest.raises(ValueError, match="bias_q"):
        quantized_linear(x, w, np.array([128], np.int32), -128, 0, 2**30, -31, 0)


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(x_q=np.zeros((2, 3), np.uint8)), TypeError, "x_q"),
        (dict(w_q=np.zeros((3, 4))), TypeError, "w_q"),
        (dict(w_q=np.zeros((5, 4), np.int8)), ValueError, "w_q"),
        (dict(bias_q=np.zeros(4, np.int64)), TypeError, "bias_q"),
        (dict(bias_q=np.zeros(3, np.int32)), ValueError, "bias_q"),
        (dict(x_zero_point=200), ValueError, "x_zero_point"),
        (dict(w_zero_point=np.zeros(3, int)), ValueError, "w_zero_point"),
        (dict(m0=np.full(3, 2**30)), ValueError, "m0"),
        (dict(shift=np.zeros(5, int)), ValueError, "shift"),
        (dict(act_min=10, act_max=-10), ValueError, "act_min"),
        (dict(out_zero_point=-129), ValueError, "out_zero_point"),
        (dict(method="gpu"), ValueError, "method"),
    ],
)
def test_quantized_linear_rejects_bad_input(kwargs, error, name):
    args = dict(
        x_q=np.zeros((2, 3), np.int8), w_q=np.zeros((3, 4), np.int8), bias_q=np.zeros(4, np.int32),
        x_zero_point=0, w_zero_point=0, m0=2**30, shift=-1, out_zero_point=0,
    )
    args.update(kwargs)
    with pytest.raises(error, match=name):
        quantized_linear(**args)


# --------------------------------------------------------------------------- qlinear_matmul

scales = st.floats(min_value=1e-3, max_value=1.0).map(lambda s: float(np.float32(s)))


@given(matmul_cases(), st.data())
def test_qlinear_matmul_matches_onnxruntime_emulation(case, data):
    a, b, za, zb = case
    m, n = a.shape[0], b.shape[1]
    per_row_a = np.ndim(za) == 1
    sa = np.array(data.draw(st.lists(scales, min_size=m, max_size=m)), np.float32)[:, None] if per_row_a else data.draw(scales)
    if per_row_a:
        za = za.reshape(m, 1)  # the ONNX (M, 1) form
    sb = np.array(data.draw(st.lists(scales, min_size=n, max_size=n)), np.float32) if np.ndim(zb) else data.draw(scales)
    sy = data.draw(st.floats(min_value=1e-2, max_value=50.0))
    out_dtype = data.draw(st.sampled_from([np.int8, np.uint8]))
    zy = np.array(data.draw(st.integers(*RANGES[np.dtype(out_dtype)])), dtype=out_dtype)[()]
    got = qlinear_matmul(a, sa, za, b, sb, zb, sy, zy)
    assert got.dtype == out_dtype and got.shape == (m, n)
    assert np.array_equal(got, ref_onnxruntime_qlinear_matmul(a, sa, za, b, sb, zb, sy, zy, out_dtype))


pow2_scales = st.integers(-8, 2).map(lambda e: 2.0**e)


@given(matmul_cases(), pow2_scales, pow2_scales, pow2_scales, st.data())
def test_qlinear_matmul_matches_the_emulation_at_ties(case, ea, eb, ey, data):
    # Power-of-two scales make the multiplier a power of two, so acc * mult is often an
    # exact half: the round-half-to-even ties the uniform scales above never produce.
    a, b, za, zb = case
    if np.ndim(za):
        za = za.reshape(-1, 1)
    out_dtype = data.draw(st.sampled_from([np.int8, np.uint8]))
    zy = np.array(data.draw(st.integers(*RANGES[np.dtype(out_dtype)])), dtype=out_dtype)[()]
    got = qlinear_matmul(a, ea, za, b, eb, zb, ey, zy)
    assert np.array_equal(got, ref_onnxruntime_qlinear_matmul(a, ea, za, b, eb, zb, ey, zy, out_dtype))


@given(seed=st.integers(0, 2**32 - 1))
def test_qlinear_matmul_matches_the_emulation_when_float32_acc_rounds(seed):
    # K = 1100 with a - za up to 255 and |b| up to 127: |acc| up to 35,623,500 > 2**24, where
    # float32(acc) itself rounds (to a multiple of 2 or 4) before the multiplier.
    rng = np.random.default_rng(seed)
    k = 1100
    a = rng.integers(90, 128, size=(3, k)).astype(np.int8)
    b = (rng.choice([-1, 1], size=(k, 2)) * rng.integers(100, 128, size=(k, 2)))
    b[:, 0] = np.abs(b[:, 0])
    a[0, 0] = 127  # a - za = 255 is odd, so changing b[0, 0] by one flips acc[0, 0]'s parity:
    if sum((int(v) + 128) * int(w) for v, w in zip(a[0], b[:, 0])) % 2 == 0:
        b[0, 0] -= 1  # make acc[0, 0] odd, which float32 cannot hold above 2**24
    b = b.astype(np.int8)
    acc = np.array(ref_matmul(a, b, -128, 0), dtype=np.int64)
    assert np.abs(acc).max() > 2**24
    assert np.any(acc.astype(np.float32).astype(np.int64) != acc)  # float32(acc) really rounds
    sy = float(2.0 ** rng.integers(17, 20))  # ties again: mult = 2**-17 .. 2**-19
    for sa in (1.0, 0.3):
        got = qlinear_matmul(a, sa, -128, b, 1.0, 0, sy, np.int8(3))
        assert np.array_equal(got, ref_onnxruntime_qlinear_matmul(a, sa, -128, b, 1.0, 0, sy, np.int8(3), np.int8))


@pytest.mark.parametrize("sa, sb, sy", [(1.0, 1.0, 1e-45), (1e38, 1e38, 1.0)])
def test_qlinear_matmul_refuses_a_non_finite_multiplier(sa, sb, sy):
    # 1 / 1e-45 (a float32 subnormal) and 1e38 * 1e38 overflow float32 to inf; inf * acc
    # cast to an integer would wrap silently.
    a, b = np.ones((1, 2), np.int8), np.ones((2, 1), np.int8)
    with pytest.raises(ValueError, match="a_scale, b_scale, y_scale: the float32 multiplier .* is not finite"):
        qlinear_matmul(a, sa, 0, b, sb, 0, sy, np.int8(0))


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(a=np.zeros((2, 3))), TypeError, "^a:"),
        (dict(b=np.zeros((4, 2), np.int8)), ValueError, "^b:"),
        (dict(a_scale=0.0), ValueError, "a_scale"),
        (dict(a_scale=float("inf")), ValueError, "a_scale"),
        (dict(b_scale=np.ones(3)), ValueError, "b_scale"),
        (dict(y_scale=-1.0), ValueError, "y_scale"),
        (dict(a_zero_point=128), ValueError, "a_zero_point"),
        (dict(b_zero_point=np.zeros((2, 1), int)), ValueError, "b_zero_point"),
        (dict(y_zero_point=0), TypeError, "y_zero_point"),
        (dict(y_zero_point=np.int16(0)), TypeError, "y_zero_point"),
    ],
)
def test_qlinear_matmul_rejects_bad_input(kwargs, error, name):
    args = dict(
        a=np.zeros((2, 3), np.int8), a_scale=0.1, a_zero_point=0, b=np.zeros((3, 2), np.int8),
        b_scale=0.1, b_zero_point=0, y_scale=0.1, y_zero_point=np.int8(0),
    )
    args.update(kwargs)
    with pytest.raises(error, match=name):
        qlinear_matmul(**args)
