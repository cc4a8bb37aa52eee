"""Tests for nnref.layers: every backward pass against central differences, worked
examples, numerical stability, initializer statistics and bad input.

Gradient laws use a scalar probe ``f(x) = sum(forward(x) * R)`` with a fixed random ``R``:
then ``df/dy = R``, so ``backward(R)`` must equal the finite-difference gradient of ``f``.
All gradient checks run in float64 (see nnref.gradcheck for why float32 cannot be checked
this way).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnref.gradcheck import numerical_gradient, rel_error
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

TOL = 1e-6  # rel_error bound for float64 central differences (h = 1e-6)
KINK_GAP = 0.01  # distance kept between ReLU/LeakyReLU inputs and their kink at 0

shapes = st.tuples(batch_sizes, widths)
# Inputs on a grid of 1/64 in [-3, 3]. A central difference resolves a gradient only down
# to its rounding error, ~eps * |f| / h ~ 1e-9 here; an input such as 1e-44, whose weight
# gradient is also ~1e-44, would be below what the check can see. On the grid every
# non-zero input has magnitude >= 1/64.
grid_values = st.integers(-192, 192).map(lambda k: k / 64)


def away_from_kink(x: np.ndarray) -> np.ndarray:
    """Move every entry at least KINK_GAP away from 0, keeping its sign (0 goes up).

    ReLU and LeakyReLU are not differentiable at 0. When |x| < h the central difference
    (f(x + h) - f(x - h)) / 2h straddles the kink and measures the average of the two
    one-sided slopes (0.5 for ReLU), which is neither side's derivative. With every
    |x| >= KINK_GAP >> h = 1e-6 both probes stay on one side and the law is exact.
    """
    return np.where(x >= 0, x + KINK_GAP, x - KINK_GAP)


def probe_gradients(layer, x: np.ndarray, seed: int):
    """(analytic dL/dx, numerical dL/dx, R) for L = sum(layer.forward(x) * R)."""
    y = layer.forward(x)
    r = np.random.default_rng(seed).standard_normal(y.shape)
    dx = layer.backward(r)
    num = numerical_gradient(lambda _: np.sum(layer.forward(x) * r), x)
    return dx, num, r


# --------------------------------------------------------------------------------------
# Gradient laws
# --------------------------------------------------------------------------------------


@given(shape=shapes, out=widths, seed=seeds, data=st.data())
def test_linear_backward_matches_central_differences(shape, out, seed, data):
    b, n_in = shape
    x = data.draw(float_arrays((b, n_in), grid_values))
    layer = Linear(n_in, out, seed=seed, dtype=np.float64)
    rng = np.random.default_rng(seed)
    layer.b[...] = rng.standard_normal(out)  # a non-zero bias, so db is not checked at b = 0
    y = layer.forward(x)
    r = rng.standard_normal(y.shape)
    dx = layer.backward(r)
    dW, db = layer.dW.copy(), layer.db.copy()

    def f(_):
        return np.sum(layer.forward(x) * r)

    assert rel_error(dx, numerical_gradient(f, x)) < TOL
    assert rel_error(dW, numerical_gradient(f, layer.W)) < TOL
    assert rel_error(db, numerical_gradient(f, layer.b)) < TOL


@pytest.mark.parametrize("cls", [Tanh, Sigmoid])
@given(shape=shapes, seed=seeds, data=st.data())
def test_smooth_activation_backward_matches_central_differences(cls, shape, seed, data):
    x = data.draw(float_arrays(shape, grid_values))
    dx, num, _ = probe_gradients(cls(), x, seed)
    assert rel_error(dx, num) < TOL


@pytest.mark.parametrize("make", [ReLU, LeakyReLU, lambda: LeakyReLU(alpha=0.3)])
@given(shape=shapes, seed=seeds, data=st.data())
def test_kinked_activation_backward_matches_central_differences(make, shape, seed, data):
    x = away_from_kink(data.draw(float_arrays(shape, grid_values)))
    dx, num, _ = probe_gradients(make(), x, seed)
    assert rel_error(dx, num) < TOL


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
    layer = Linear(2, 3, dtype=np.float64)
    layer.W[...] = [[1.0, 0.0, -1.0],
                    [2.0, 1.0, 0.5]]
    layer.b[...] = [0.5, -1.0, 0.0]
    x = np.array([[1.0, 2.0]])
    # y = x @ W + b = [1*1 + 2*2, 1*0 + 2*1, 1*(-1) + 2*0.5] + b = [5, 2, 0] + b = [5.5, 1, 0]
    np.testing.assert_array_equal(layer.forward(x), [[5.5, 1.0, 0.0]])
    g = np.array([[1.0, -1.0, 2.0]])
    dx = layer.backward(g)
    # dx = g @ W^T = [1*1 + (-1)*0 + 2*(-1), 1*2 + (-1)*1 + 2*0.5] = [-1, 2]
    np.testing.assert_array_equal(dx, [[-1.0, 2.0]])
    # dW = x^T @ g = [[1*1, 1*(-1), 1*2], [2*1, 2*(-1), 2*2]]; db = g summed over the batch
    np.testing.assert_array_equal(layer.dW, [[1.0, -1.0, 2.0], [2.0, -2.0, 4.0]])
    np.testing.assert_array_equal(layer.db, [1.0, -1.0, 2.0])


def test_linear_input_grad_false_skips_dx_but_keeps_weight_grads():
    layer = Linear(2, 2, dtype=np.float64)
    x = np.array([[1.0, -1.0], [0.5, 2.0]])
    layer.forward(x)
    g = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert layer.backward(g, input_grad=False) is None
    # dW = x^T @ I = x^T
    np.testing.assert_array_equal(layer.dW, x.T)
    np.testing.assert_array_equal(layer.db, [1.0, 1.0])


def test_relu_and_leaky_relu_worked_example():
    x = np.array([[-2.0, 0.0, 3.0]])
    g = np.array([[10.0, 10.0, 10.0]])
    relu = ReLU()
    np.testing.assert_array_equal(relu.forward(x), [[0.0, 0.0, 3.0]])
    # mask [x > 0] = [0, 0, 1]: the subgradient 0 is taken at x = 0
    np.testing.assert_array_equal(relu.backward(g), [[0.0, 0.0, 10.0]])
    leaky = LeakyReLU(alpha=0.25)
    # negative side: 0.25 * -2 = -0.5; x = 0 is on the negative branch: 0.25 * 0 = 0
    np.testing.assert_array_equal(leaky.forward(x), [[-0.5, 0.0, 3.0]])
    np.testing.assert_array_equal(leaky.backward(g), [[2.5, 2.5, 10.0]])


def test_leaky_relu_does_not_truncate_integer_input():
    leaky = LeakyReLU(alpha=0.5)
    # -3 * 0.5 = -1.5, which a cast back to int would make -1
    np.testing.assert_array_equal(leaky.forward(np.array([[-3, 4]])), [[-1.5, 4.0]])
    np.testing.assert_array_equal(leaky.backward(np.array([[2, 2]])), [[1.0, 2.0]])


def test_tanh_and_sigmoid_worked_example():
    x = np.array([[0.0, np.log(3.0)]])
    g = np.ones((1, 2))
    tanh = Tanh()
    # tanh(ln 3) = (3 - 1/3) / (3 + 1/3) = (8/3) / (10/3) = 0.8; slope 1 - 0.8^2 = 0.36
    np.testing.assert_allclose(tanh.forward(x), [[0.0, 0.8]], rtol=0, atol=1e-15)
    np.testing.assert_allclose(tanh.backward(g), [[1.0, 0.36]], rtol=0, atol=1e-15)
    sig = Sigmoid()
    # sigma(0) = 1/2, slope 1/2 * 1/2 = 1/4; sigma(ln 3) = 1 / (1 + 1/3) = 0.75, slope 0.75 * 0.25
    np.testing.assert_allclose(sig.forward(x), [[0.5, 0.75]], rtol=0, atol=1e-15)
    np.testing.assert_allclose(sig.backward(g), [[0.25, 0.1875]], rtol=0, atol=1e-15)


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


def test_linear_formulas_worked_example():
    x = np.array([[1.0, 2.0]])
    W = np.array([[1.0, 0.0, -1.0], [2.0, 1.0, 0.5]])
    b = np.array([0.5, -1.0, 0.0])
    np.testing.assert_array_equal(linear_forward(x, W, b), [[5.5, 1.0, 0.0]])
    g = np.array([[1.0, -1.0, 2.0]])
    dx, dW, db = linear_backward(x, W, g)
    np.testing.assert_array_equal(dx, [[1.0 - 2.0, 2.0 - 1.0 + 1.0]])  # g W^T
    np.testing.assert_array_equal(dW, [[1.0, -1.0, 2.0], [2.0, -2.0, 4.0]])  # x^T g
    np.testing.assert_array_equal(db, [1.0, -1.0, 2.0])
    assert linear_backward(x, None, g)[0] is None  # no input gradient asked for


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


@given(x=float_arrays(shapes, elements=grid_values), alpha=st.floats(0.0, 5.0), seed=seeds)
def test_leaky_relu_formula_slopes_for_any_alpha(x, alpha, seed):
    # dx = g where x > 0, alpha g elsewhere (alpha > 1 included)
    g = np.random.default_rng(seed).standard_normal(x.shape)
    dx = leaky_relu_backward(x, g, alpha)
    np.testing.assert_array_equal(dx[x > 0], g[x > 0])
    np.testing.assert_array_equal(dx[x <= 0], alpha * g[x <= 0])
    np.testing.assert_array_equal(leaky_relu_forward(x, alpha)[x <= 0], alpha * x[x <= 0])


@given(y=float_arrays(shapes, elements=st.floats(0.0, 1.0)), seed=seeds)
def test_sigmoid_and_tanh_backward_formulas_worked_values(y, seed):
    g = np.random.default_rng(seed).standard_normal(y.shape)
    np.testing.assert_array_equal(sigmoid_backward(y, g), g * y * (1 - y))
    np.testing.assert_array_equal(tanh_backward(y, g), g * (1 - y * y))
    assert sigmoid_backward(np.array(0.5), np.array(1.0)) == 0.25  # sigma'(0) = 1/4
    assert tanh_backward(np.array(0.0), np.array(2.0)) == 2.0  # tanh'(0) = 1
