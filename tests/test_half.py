"""Half precision: what numpy's float16 arithmetic actually does, the two accumulation
modes, Higham's error bound, overflow errors, and float16 vs float32 accuracy on digits."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nnref.data import load_digits, train_test_split
from nnref.mlp import MLP
from nnref.optim import Adam
from nnref.quant.half import (
    FLOAT16_MAX,
    float16_accuracy,
    float16_forward,
    float16_matmul,
    float16_predict,
    to_float16,
)
from nnref.quant.qat import prepare_qat
from nnref.train import fit

from strategies import seeds

F16 = np.float16
finite_halves = st.floats(width=16, allow_nan=False, allow_infinity=False)
# Magnitudes in [2**-4, 2**4] (or 0): products stay normal and sums of up to 16 of them
# far from overflow, the setting of Higham's rounding-error model.
moderate_halves = st.one_of(
    st.just(0.0),
    st.floats(min_value=2**-4, max_value=2**4, width=16),
    st.floats(min_value=-(2**4), max_value=-(2**-4), width=16),
)


def half_matrices(rows, cols, elements=moderate_halves):
    return hnp.arrays(F16, (rows, cols), elements=elements)


# ----------------------------------------------------------------------------- numpy's float16


def test_numpy_float16_matmul_accumulates_in_float32():
    # [2048, 1, 1] . [1, 1, 1]:
    #   float16 running sum: 2048 + 1 = 2049 -> 2048 (ulp 2, tie to even), + 1 -> 2048
    #   float32 running sum: 2050, exactly representable in float16
    a = np.array([[2048, 1, 1]], dtype=F16)
    b = np.ones((3, 1), dtype=F16)
    assert float((a @ b)[0, 0]) == 2050.0
    # ...and not in float64: [4096, 1, -4096] . [4096, 1, 4096]
    #   float32: 2**24 + 1 -> 2**24 (ulp 2, tie to even), - 2**24 -> 0
    #   float64 (or exact): 1
    a = np.array([[4096, 1, -4096]], dtype=F16)
    b = np.array([[4096], [1], [4096]], dtype=F16)
    assert float((a @ b)[0, 0]) == 0.0
    # nnref's modes on the first example: float32 accumulation 2050, float16 2048.
    a, b = np.array([[2048, 1, 1]], dtype=F16), np.ones((3, 1), dtype=F16)
    assert float(float16_matmul(a, b, "float32")[0, 0]) == 2050.0
    assert float(float16_matmul(a, b, "float16")[0, 0]) == 2048.0


@given(a=finite_halves, b=finite_halves)
def test_numpy_float16_add_and_multiply_are_correctly_rounded(a, b):
    # numpy computes in float32 then rounds to float16; since 24 >= 2 * 11 + 2 the double
    # rounding is innocuous. The float64 sum and product of two float16 values are exact
    # (at most 40 and 22 significant bits), so float16(float64 result) is the correctly
    # rounded answer.
    a16, b16 = F16(a), F16(b)
    with np.errstate(over="ignore"):
        assert (a16 + b16) == F16(np.float64(a) + np.float64(b))
        assert (a16 * b16) == F16(np.float64(a) * np.float64(b))


@given(data=st.data(), m=st.integers(1, 4), k=st.integers(1, 8), n=st.integers(1, 4))
def test_float16_mode_is_the_sequential_half_precision_loop(data, m, k, n):
    x = data.draw(half_matrices(m, k))
    W = data.draw(half_matrices(k, n))
    out = float16_matmul(x, W, "float16")
    for i in range(m):
        for j in range(n):
            acc = F16(0)
            for t in range(k):
                acc = F16(acc + F16(x[i, t] * W[t, j]))  # scalar float16 ops, one at a time
            assert out[i, j] == acc


@given(data=st.data(), m=st.integers(1, 4), k=st.integers(1, 16), n=st.integers(1, 4))
def test_error_bounds_of_both_modes(data, m, k, n):
    x = data.draw(half_matrices(m, k))
    W = data.draw(half_matrices(k, n))
    exact = x.astype(np.float64) @ W.astype(np.float64)  # exact: <= 16 products of 22 bits
    absdot = np.abs(x.astype(np.float64)) @ np.abs(W.astype(np.float64))
    u = 2.0**-11  # float16 unit roundoff
    # float32 accumulation: the float32 sum is within k * 2**-24 * sum|x w| of exact,
    # then one float16 rounding: relative u, or absolute 2**-25 (half the subnormal
    # spacing) if a cancellation lands below float16's smallest normal 2**-14.
    f32 = float16_matmul(x, W, "float32").astype(np.float64)
    bound32 = u * np.abs(exact) * (1 + 1e-3) + 2 * k * 2.0**-24 * absdot + 2.0**-25
    assert np.all(np.abs(f32 - exact) <= bound32)
    # float16 accumulation (products and k - 1 sums rounded): Higham 2002, eq. (3.5),
    # |fl(x . w) - x . w| <= gamma_k sum |x_i w_i|, gamma_k = k u / (1 - k u). It needs no
    # underflow term here: every product is >= 2**-8 (normal) and float16 additions whose
    # result is subnormal are exact.
    f16 = float16_matmul(x, W, "float16").astype(np.float64)
    gamma = k * u / (1 - k * u)
    assert np.all(np.abs(f16 - exact) <= gamma * absdot)


@given(data=st.data(), m=st.integers(1, 4), k=st.integers(1, 16), n=st.integers(1, 4))
def test_float32_mode_equals_numpy_float16_matmul_when_sums_are_exact(data, m, k, n):
    # Small integers: every float32 partial sum is exact in any order, so BLAS's order and
    # numpy's sequential float16 matmul must agree bit for bit.
    ints = st.integers(-30, 30).map(float)
    x = data.draw(half_matrices(m, k, ints))
    W = data.draw(half_matrices(k, n, ints))
    np.testing.assert_array_equal(float16_matmul(x, W, "float32"), x @ W)


# ----------------------------------------------------------------------------- models


def test_to_float16_rounds_each_parameter_and_checks_overflow():
    model = MLP([3, 2], seed=0)
    model.linears[0].W[...] = [[0.1, 65519.0], [-65519.0, 1e-8], [1.0, 3.0]]
    m16 = to_float16(model)
    assert m16.dtype == F16 and m16.linears[0].W.dtype == F16
    # 65519 is below the overflow threshold 65520 (halfway to 65536): rounds to 65504.
    assert m16.linears[0].W[0, 1] == FLOAT16_MAX and m16.linears[0].W[1, 0] == -FLOAT16_MAX
    assert m16.linears[0].W[1, 1] == 0  # 1e-8 < 2**-25: below half the smallest subnormal
    np.testing.assert_array_equal(m16.linears[0].W, model.linears[0].W.astype(F16))
    assert model.linears[0].W.dtype == np.float32  # the original is untouched
    model.linears[0].W[2, 1] = 65520.0
    with pytest.raises(ValueError, match=r"params\['W1'\].*overflow"):
        to_float16(model)
    model.linears[0].W[2, 1] = 0.0
    model.linears[0].b[1] = -1e6
    with pytest.raises(ValueError, match=r"params\['b1'\]"):
        to_float16(model)


def test_float16_forward_worked_example():
    # One layer, x = [1, 2], W = [[0.1], [0.2]], b = [0.3].
    # float16: 0.1 -> 0.0999755859375, 0.2 -> 0.199951171875, 0.3 -> 0.300048828125.
    # float32 mode: 0.0999755859375 + 2 * 0.199951171875 + 0.300048828125
    #             = 0.7999267578125, rounded to float16 (ulp 2**-11 in [0.5, 1)):
    #               0.7999267578125 * 2048 = 1638.25 -> 1638 -> 0.7998046875
    # float16 mode, in units of 2**-14: products 1 * 1638 and 2 * 3276 = 6552 (exact);
    #               1638 + 6552 = 8190, in [0.25, 0.5) the ulp is 4 units: 2047.5 ulps, a
    #               tie -> 2048 ulps = 0.5; + 0.300048828125 = 0.800048828125 = 1638.5
    #               ulps of 2**-11, a tie -> 1638 -> 0.7998046875 (same result, two ties)
    model = MLP([2, 1], seed=0)
    model.linears[0].W[...] = [[0.1], [0.2]]
    model.linears[0].b[...] = [0.3]
    x = np.array([[1.0, 2.0]])
    for mode in ("float32", "float16"):
        out = float16_forward(model, x, mode)
        assert out.dtype == F16 and float(out[0, 0]) == 0.7998046875


@given(seed=seeds, mode=st.sampled_from(["float32", "float16"]))
def test_float16_forward_is_close_to_float64(seed, mode):
    rng = np.random.default_rng(seed)
    model = MLP([6, 5, 4], seed=rng, activation="tanh")
    x = rng.random((3, 6))
    ref = model.astype(np.float64).forward(x)
    out = float16_forward(model, x, mode).astype(np.float64)
    # A few float16 roundings per value, each relative 2**-11, on O(1) activations.
    assert np.max(np.abs(out - ref)) < 0.05 * (1 + np.max(np.abs(ref)))


def test_float16_accuracy_on_digits_matches_float32():
    x, y = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, seed=0)
    model = MLP([64, 64, 10], seed=0)
    fit(model, Adam(1e-3), x_tr, y_tr, epochs=10, batch_size=32, seed=0, verbose=False)
    acc32 = model.accuracy(x_te, y_te)
    for mode in ("float32", "float16"):
        acc16 = float16_accuracy(model, x_te, y_te, mode)
        assert abs(acc16 - acc32) <= 0.01
        agree = np.mean(float16_predict(model, x_te, mode) == model.predict(x_te))
        assert agree >= 0.99


def test_bad_input():
    model = MLP([3, 2], seed=0)
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match="accumulate"):
        float16_forward(model, x, accumulate="bfloat16")
    with pytest.raises(ValueError, match="accumulate"):
        float16_matmul(x.astype(F16), np.zeros((3, 2), F16), accumulate="float64")
    with pytest.raises(TypeError, match="x"):
        float16_matmul(x, np.zeros((3, 2), F16))
    with pytest.raises(ValueError, match="W"):
        float16_matmul(x.astype(F16), np.zeros((2, 2), F16))
    with pytest.raises(ValueError, match="x"):
        float16_forward(model, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="x.*overflow"):
        float16_forward(model, np.full((1, 3), 1e5))
    with pytest.raises(ValueError, match="x"):
        float16_forward(model, np.full((1, 3), np.nan))
    with pytest.raises(TypeError, match="model"):
        to_float16("model")
    with pytest.raises(TypeError, match="to_float"):
        to_float16(prepare_qat(MLP([3, 2], seed=0)))
    with pytest.raises(ValueError, match="labels"):
        float16_accuracy(model, x, np.array([0, 5]))
