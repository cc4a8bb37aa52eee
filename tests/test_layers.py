"""Tests for nnref.layers: the layer classes (forward values, state, dtype, stability),
initializer statistics and bad input. The backward formulas' laws and worked values live in
nnref.laws (run on nnref's own functions by tests/test_laws.py); the classes are proven to
compute those plain formulas bit for bit here.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnref.layers import (
    ACTIVATIONS,
    INITIALIZERS,
    LeakyReLU,
    Linear,
    ReLU,
    Sigmoid,
    Tanh,
    he_normal,
    he_uniform,
    init_weight,
    make_activation,
    stable_sigmoid,
    xavier_normal,
    xavier_uniform,
)
from strategies import batch_sizes, float_arrays, seeds, widths

shapes = st.tuples(batch_sizes, widths)


# --------------------------------------------------------------------------------------
# Per-example gradients
# --------------------------------------------------------------------------------------


@given(shape=shapes, out=widths, seed=seeds)
def test_linear_per_example_grads_are_outer_products_summing_to_dW(shape, out, seed):
    b, n_in = shape
    rng = np.random.default_rng(seed)
    layer = Linear(n_in, out, seed=seed, dtype=np.float64)
    x = rng.standard_normal((b, n_in))
    g = rng.standard_normal((b, out))
    layer.forward(x)
    dW_i, db_i = layer.per_example_grads(g)
    assert dW_i.shape == (b, n_in, out) and db_i.shape == (b, out)
    for i in range(b):
        np.testing.assert_allclose(dW_i[i], np.outer(x[i], g[i]), rtol=1e-12, atol=1e-12)
    layer.backward(g)
    np.testing.assert_allclose(dW_i.sum(axis=0), layer.dW, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(db_i.sum(axis=0), layer.db, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------------------
# Worked examples
# --------------------------------------------------------------------------------------


def test_linear_worked_example():
    # the backward's worked values are laws (nnref.laws, linear_backward); the layer runs them
    layer = Linear(2, 3, dtype=np.float64)
    layer.W[...] = [[1.0, 0.0, -1.0],
                    [2.0, 1.0, 0.5]]
    layer.b[...] = [0.5, -1.0, 0.0]
    x = np.array([[1.0, 2.0]])
    # y = x @ W + b = [1*1 + 2*2, 1*0 + 2*1, 1*(-1) + 2*0.5] + b = [5, 2, 0] + b = [5.5, 1, 0]
    np.testing.assert_array_equal(layer.forward(x), [[5.5, 1.0, 0.0]])
    dx = layer.backward(np.array([[1.0, -1.0, 2.0]]))
    np.testing.assert_array_equal(dx, [[-1.0, 2.0]])  # the layer stores dW and db too
    np.testing.assert_array_equal(layer.db, [1.0, -1.0, 2.0])


def test_activation_forward_worked_values():
    # the backward passes' worked values are laws (nnref.laws); these are the forwards
    x = np.array([[-2.0, 0.0, 3.0]])
    np.testing.assert_array_equal(ReLU().forward(x), [[0.0, 0.0, 3.0]])
    np.testing.assert_array_equal(LeakyReLU(alpha=0.25).forward(x), [[-0.5, 0.0, 3.0]])
    x = np.array([[0.0, np.log(3.0)]])
    # tanh(ln 3) = (3 - 1/3) / (3 + 1/3) = 0.8; sigma(ln 3) = 1 / (1 + 1/3) = 0.75
    np.testing.assert_allclose(Tanh().forward(x), [[0.0, 0.8]], rtol=0, atol=1e-15)
    np.testing.assert_allclose(Sigmoid().forward(x), [[0.5, 0.75]], rtol=0, atol=1e-15)


def test_leaky_relu_does_not_truncate_integer_input():
    leaky = LeakyReLU(alpha=0.5)
    # -3 * 0.5 = -1.5, which a cast back to int would make -1
    np.testing.assert_array_equal(leaky.forward(np.array([[-3, 4]])), [[-1.5, 4.0]])
    np.testing.assert_array_equal(leaky.backward(np.array([[2, 2]])), [[1.0, 2.0]])


def test_linear_input_grad_false_skips_dx_but_keeps_weight_grads():
    layer = Linear(2, 2, dtype=np.float64)
    x = np.array([[1.0, -1.0], [0.5, 2.0]])
    layer.forward(x)
    g = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert layer.backward(g, input_grad=False) is None
    # dW = x^T @ I = x^T
    np.testing.assert_array_equal(layer.dW, x.T)
    np.testing.assert_array_equal(layer.db, [1.0, 1.0])


# --------------------------------------------------------------------------------------
# Sigmoid: stability and laws
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_sigmoid_is_stable_for_large_inputs(dtype):
    x = np.array([[-1000.0, 1000.0, -1e4, 1e4]], dtype=dtype)
    sig = Sigmoid()
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")  # any RuntimeWarning would fail the test
        y = sig.forward(x)
        dx = sig.backward(np.ones_like(x))
    assert y.dtype == dtype
    # the exact values e^-1000 / (1 + e^-1000) and 1 / (1 + e^-1000) round to 0 and 1
    np.testing.assert_array_equal(y, [[0.0, 1.0, 0.0, 1.0]])
    np.testing.assert_array_equal(dx, [[0.0, 0.0, 0.0, 0.0]])


def test_sigmoid_of_integers_is_not_truncated():
    # sigma(1) = 0.731..., sigma(-1) = 0.268...; a cast back to int would give 0 and 0
    y = stable_sigmoid(np.array([[1, -1, 0]]))
    np.testing.assert_allclose(y, [[1 / (1 + np.exp(-1.0)), 1 / (1 + np.exp(1.0)), 0.5]], rtol=1e-15)


@given(float_arrays(st.tuples(batch_sizes, widths), st.floats(-30.0, 30.0)))
def test_sigmoid_matches_textbook_formula_and_is_symmetric(x):
    y = Sigmoid().forward(x)
    # for |x| <= 30, 1 / (1 + e^-x) cannot overflow, so the textbook form is a fair reference
    np.testing.assert_allclose(y, 1.0 / (1.0 + np.exp(-x)), rtol=1e-14, atol=0)
    # sigma(-x) = 1 - sigma(x)
    np.testing.assert_allclose(Sigmoid().forward(-x), 1.0 - y, rtol=0, atol=1e-15)
    assert np.all((y > 0) & (y < 1))


@given(float_arrays(st.tuples(batch_sizes, widths), st.floats(-1e6, 1e6)))
def test_sigmoid_and_tanh_range_and_monotone_for_any_magnitude(x):
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = Sigmoid().forward(x)
        t = Tanh().forward(x)
    assert np.all((y >= 0) & (y <= 1)) and np.all(np.abs(t) <= 1)
    order = np.argsort(x, axis=None, kind="stable")
    assert np.all(np.diff(y.ravel()[order]) >= 0)
    assert np.all(np.diff(t.ravel()[order]) >= 0)


@pytest.mark.parametrize("cls", [ReLU, LeakyReLU, Tanh, Sigmoid])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activations_preserve_float_dtype(cls, dtype):
    x = np.linspace(-2, 2, 12, dtype=dtype).reshape(3, 4)
    layer = cls()
    assert layer.forward(x).dtype == dtype
    assert layer.backward(np.ones_like(x)).dtype == dtype


def test_linear_float32_forward_is_float32():
    layer = Linear(3, 2, dtype=np.float32)
    assert layer.W.dtype == np.float32 and layer.b.dtype == np.float32
    assert layer.forward(np.ones((4, 3))).dtype == np.float32


# --------------------------------------------------------------------------------------
# Initializers
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(INITIALIZERS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_initializer_shape_dtype_and_determinism(name, dtype):
    w = init_weight(name, 5, 7, 123, dtype=dtype)
    assert w.shape == (5, 7) and w.dtype == dtype
    np.testing.assert_array_equal(w, init_weight(name, 5, 7, 123, dtype=dtype))
    assert not np.array_equal(w, init_weight(name, 5, 7, 124, dtype=dtype))
    # a Generator is consumed: two draws from one generator differ
    rng = np.random.default_rng(0)
    assert not np.array_equal(init_weight(name, 5, 7, rng), init_weight(name, 5, 7, rng))


FAN_IN, FAN_OUT = 300, 500  # 150,000 draws: the std estimate is good to ~0.2%

@pytest.mark.parametrize(
    "fn, std",
    [
        (he_normal, np.sqrt(2 / FAN_IN)),
        (he_uniform, np.sqrt(2 / FAN_IN)),  # a = sqrt(6/fan_in), Var U(-a, a) = a^2/3
        (xavier_normal, np.sqrt(2 / (FAN_IN + FAN_OUT))),
        (xavier_uniform, np.sqrt(2 / (FAN_IN + FAN_OUT))),  # a = sqrt(6/(fan_in+fan_out))
    ],
)
@pytest.mark.parametrize("gain", [1.0, 2.5])
def test_initializer_empirical_std_matches_formula(fn, std, gain):
    w = fn(FAN_IN, FAN_OUT, 0, gain=gain, dtype=np.float64)
    # relative standard error of a sample std from N = 150,000 draws is ~1/sqrt(2N) ~ 0.002
    assert abs(w.std() / (gain * std) - 1) < 0.02
    assert abs(w.mean()) < 0.02 * gain * std


@pytest.mark.parametrize(
    "fn, bound",
    [(he_uniform, np.sqrt(6 / FAN_IN)), (xavier_uniform, np.sqrt(6 / (FAN_IN + FAN_OUT)))],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_uniform_initializers_respect_their_bounds(fn, bound, dtype):
    w = fn(FAN_IN, FAN_OUT, 1, dtype=dtype)
    # rounding to dtype is monotone, so |w| <= bound rounded to dtype
    assert np.abs(w).max() <= dtype(bound)
    # and the range is actually used: the largest of 150,000 draws is close to the bound
    assert np.abs(w).max() > 0.99 * bound
    assert w.min() < -0.99 * bound


def test_linear_uses_the_named_initializer_and_zero_bias():
    layer = Linear(4, 3, init="xavier_uniform", seed=7, dtype=np.float64)
    np.testing.assert_array_equal(layer.W, xavier_uniform(4, 3, 7, dtype=np.float64))
    np.testing.assert_array_equal(layer.b, np.zeros(3))


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [lambda: Linear(3, 2), ReLU, LeakyReLU, Tanh, Sigmoid])
def test_backward_before_forward_raises(make):
    with pytest.raises(RuntimeError, match="backward called before forward"):
        make().backward(np.ones((1, 2)))


@pytest.mark.parametrize("make", [lambda: Linear(3, 2), ReLU, LeakyReLU, Tanh, Sigmoid])
def test_backward_with_wrong_shape_raises(make):
    layer = make()
    layer.forward(np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"grad_out: expected .*shape"):
        layer.backward(np.ones((4, 5)))
    with pytest.raises(ValueError, match="grad_out"):
        layer.backward([[1.0, 2.0]])


@pytest.mark.parametrize(
    "x", [np.ones((2, 4)), np.ones(3), np.ones((1, 2, 3)), [[1.0, 2.0, 3.0]]],
    ids=["wrong-features", "1-D", "3-D", "list"],
)
def test_linear_forward_rejects_bad_x(x):
    with pytest.raises(ValueError, match=r"x: expected an array of shape \(batch, 3\)"):
        Linear(3, 2).forward(x)


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, "3"])
def test_linear_rejects_bad_sizes(bad):
    with pytest.raises(ValueError, match="in_features"):
        Linear(bad, 2)
    with pytest.raises(ValueError, match="out_features"):
        Linear(2, bad)


def test_bad_init_gain_alpha_activation():
    with pytest.raises(ValueError, match="init: expected one of"):
        Linear(2, 2, init="lecun")
    with pytest.raises(ValueError, match="gain"):
        Linear(2, 2, gain=0.0)
    with pytest.raises(ValueError, match="alpha"):
        LeakyReLU(alpha=-0.1)
    with pytest.raises(ValueError, match="activation: expected one of"):
        make_activation("gelu")
    with pytest.raises(TypeError, match="seed"):
        Linear(2, 2, seed="abc")


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_make_activation_returns_fresh_layers(name):
    a, b = make_activation(name), make_activation(name)
    assert isinstance(a, ACTIVATIONS[name]) and a is not b


# --------------------------------------------------------------------------------------
# The plain formula functions (what the layer classes compute)
# --------------------------------------------------------------------------------------

from nnref.layers import (  # noqa: E402
    leaky_relu_backward,
    leaky_relu_forward,
    linear_backward,
    linear_forward,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    tanh_backward,
)


def test_linear_forward_formula_and_no_input_gradient():
    x = np.array([[1.0, 2.0]])
    W = np.array([[1.0, 0.0, -1.0], [2.0, 1.0, 0.5]])
    np.testing.assert_array_equal(linear_forward(x, W, np.array([0.5, -1.0, 0.0])), [[5.5, 1.0, 0.0]])
    assert linear_backward(x, None, np.array([[1.0, -1.0, 2.0]]))[0] is None  # no input gradient asked for


@given(shape=shapes, out=widths, seed=seeds, dtype=st.sampled_from([np.float32, np.float64]))
def test_layer_classes_compute_the_plain_formulas_bit_for_bit(shape, out, seed, dtype):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    x_before = x.copy()
    lin = Linear(shape[1], out, seed=seed, dtype=dtype)
    lin.b = rng.standard_normal(out).astype(dtype)
    y = lin.forward(x)
    np.testing.assert_array_equal(y, linear_forward(x, lin.W, lin.b))
    g = rng.standard_normal(y.shape).astype(dtype)
    dx = lin.backward(g)
    for got, want in zip((dx, lin.dW, lin.db), linear_backward(x, lin.W, g)):
        np.testing.assert_array_equal(got, want)
    gx = rng.standard_normal(shape).astype(dtype)
    for layer, fwd, bwd in [
        (ReLU(), relu_forward(x), relu_backward(x, gx)),
        (LeakyReLU(0.2), leaky_relu_forward(x, 0.2), leaky_relu_backward(x, gx, 0.2)),
        (Tanh(), np.tanh(x), tanh_backward(np.tanh(x), gx)),
        (Sigmoid(), stable_sigmoid(x), sigmoid_backward(stable_sigmoid(x), gx)),
    ]:
        np.testing.assert_array_equal(layer.forward(x), fwd)
        np.testing.assert_array_equal(layer.backward(gx), bwd)
    np.testing.assert_array_equal(x, x_before)  # functional: the input is never modified


