"""AdaRound (nnref.quant.adaround): the rectified sigmoid, the regulariser, the objective's
gradient, and the final rounding."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnref.data import load_digits, train_test_split
from nnref.gradcheck import numerical_gradient
from nnref.mlp import MLP
from nnref.optim import Adam
from nnref.quant.adaround import (
    GAMMA,
    ZETA,
    adaround,
    adaround_layer,
    adaround_loss_and_grad,
    adaround_regularizer,
    adaround_regularizer_grad,
    beta_schedule,
    hard_rounding,
    initial_v,
    rectified_sigmoid,
    rectified_sigmoid_grad,
    soft_quantized_weights,
)
from nnref.quant.layerwise import rtn_weights, to_quantized_mlp, weight_qparams
from nnref.train import fit
from tests.strategies import float_arrays, seeds

any_v = st.floats(-1e6, 1e6, allow_nan=False)


@given(float_arrays(st.integers(1, 50), any_v))
def test_rectified_sigmoid_stays_in_the_unit_interval(V):
    h = rectified_sigmoid(V)
    assert np.all((h >= 0) & (h <= 1))
    assert np.all(np.isfinite(rectified_sigmoid_grad(V)))


def test_rectified_sigmoid_worked_values():
    # sigmoid(0) = 1/2: h = 0.5 * 1.2 - 0.1 = 0.5; it reaches 0 and 1 exactly at finite V
    np.testing.assert_allclose(rectified_sigmoid(np.array([0.0])), [0.5], rtol=1e-15)
    assert rectified_sigmoid(np.array([-3.0]))[0] == 0.0 and rectified_sigmoid(np.array([3.0]))[0] == 1.0
    assert rectified_sigmoid_grad(np.array([-3.0, 3.0])).tolist() == [0.0, 0.0]
    assert rectified_sigmoid_grad(np.array([0.0]))[0] == pytest.approx((ZETA - GAMMA) / 4)


@given(st.floats(-2.3, 2.3))
def test_rectified_sigmoid_gradient_matches_finite_differences(v):
    # |V| < 2.3 keeps h strictly inside (0, 1), where h is differentiable
    num = numerical_gradient(lambda a: float(rectified_sigmoid(a)[0]), np.array([v]), h=1e-6)
    np.testing.assert_allclose(rectified_sigmoid_grad(np.array([v])), num, rtol=1e-6, atol=1e-9)


@given(float_arrays(st.integers(1, 20), st.floats(0, 1)), st.floats(1, 20))
def test_regularizer_is_zero_exactly_at_binary_h_and_at_most_one_per_weight(h, beta):
    r = adaround_regularizer(h, beta)
    assert -1e-12 <= r <= h.size + 1e-12
    assert adaround_regularizer(np.round(h), beta) == 0.0
    assert adaround_regularizer(np.full(3, 0.5), beta) == 3.0


@given(st.floats(0.01, 0.49) | st.floats(0.51, 0.99), st.floats(1, 20))
def test_regularizer_gradient_matches_finite_differences(h, beta):
    num = numerical_gradient(lambda a: adaround_regularizer(a, beta), np.array([h]), h=1e-7)
    np.testing.assert_allclose(adaround_regularizer_grad(np.array([h]), beta), num, rtol=1e-5, atol=1e-7)


def test_beta_schedule_warm_up_then_linear_annealing_from_20_to_2():
    assert beta_schedule(0, 100) is None and beta_schedule(19, 100) is None
    assert beta_schedule(20, 100) == 20.0
    assert beta_schedule(60, 100) == pytest.approx(11.0)
    assert beta_schedule(100, 100) == 2.0


@settings(max_examples=20)
@given(seeds, st.integers(2, 8), st.sampled_from(["none", "relu", "leaky_relu"]), st.booleans())
def test_objective_gradient_matches_finite_differences(seed, bits, activation, with_reg):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(5, 3))
    s = np.abs(W).max(axis=0) / (2 ** (bits - 1) - 1)
    V = rng.uniform(-2, 2, size=W.shape)  # h strictly inside (0, 1)
    x, t, b = rng.normal(size=(7, 5)), rng.normal(size=(7, 3)), rng.normal(size=3)
    qmax = 2 ** (bits - 1) - 1
    W_floor = np.floor(W / s)
    beta = 7.0 if with_reg else None
    args = (W_floor, s, x, t, b, -qmax, qmax, activation, 0.1, 0.3, beta)

    def loss(v):
        recon, reg, _ = adaround_loss_and_grad(v, *args)
        return recon + 0.3 * reg

    soft = W_floor + rectified_sigmoid(V)
    z = x @ soft_quantized_weights(W_floor, rectified_sigmoid(V), s, -qmax, qmax) + b
    if np.any(np.abs(z) < 1e-4) or np.any(np.abs(soft - np.round(soft)) < 1e-4):
        return  # a kink of the activation or the grid clamp: not differentiable there
    num = numerical_gradient(loss, V.copy(), h=1e-6)
    np.testing.assert_allclose(adaround_loss_and_grad(V, *args)[2], num, rtol=1e-4, atol=1e-7)


@settings(max_examples=15)
@given(seeds, st.integers(2, 8), st.sampled_from(["tflite_int8_weights", "tflite_int8_weights_per_tensor"]),
       st.sampled_from(["minmax", "mse"]))
def test_every_adarounded_weight_is_the_floor_or_the_ceiling_of_w_over_s(seed, bits, scheme, method):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(6, 4)) * 10.0 ** rng.uniform(-1, 1, size=4)
    x = rng.normal(size=(20, 6))
    qp = weight_qparams(W, scheme, bits, method)
    w_q, hist = adaround_layer(W, np.zeros(4), x, x @ W, qp, iterations=30, seed=seed)
    assert w_q.dtype == np.int8
    q = W / np.broadcast_to(qp.scale.astype(np.float64), (4,))
    lo, hi = np.clip(np.floor(q), qp.qmin, qp.qmax), np.clip(np.ceil(q), qp.qmin, qp.qmax)
    assert np.all((w_q == lo) | (w_q == hi))
    assert 0.0 <= hist["changed"] <= 1.0 and len(hist["recon"]) == 30


@given(seeds)
def test_initial_v_makes_the_soft_weights_equal_w(seed):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(4, 3))
    s = np.abs(W).max(axis=0) / 3
    soft = soft_quantized_weights(np.floor(W / s), rectified_sigmoid(initial_v(W, s)), s, -3, 3)
    np.testing.assert_allclose(soft, W, rtol=1e-5, atol=1e-5 * np.abs(W).max())
    assert hard_rounding(np.floor(W / s), initial_v(W, s), -3, 3).tolist() == np.clip(
        np.floor(W / s) + (W / s - np.floor(W / s) >= 0.5), -3, 3).tolist()


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, seed=0)
    model = MLP([64, 32, 10], seed=0)
    fit(model, Adam(1e-3), x_tr, y_tr, epochs=10, batch_size=64, seed=0, verbose=False)
    return model, x_tr, x_te, y_te


def test_adaround_reconstructs_better_than_nearest_and_converts_to_the_integer_model(digits):
    model, x_tr, x_te, y_te = digits
    res = adaround(model, x_tr, bits=2, scale_method="minmax", iterations=200, batch_size=256)
    nearest = rtn_weights(model, bits=2)
    inputs = x_tr.astype(np.float64)
    W0, (w_a, qp), (w_n, _) = model.linears[0].W, res.weights[0], nearest[0]
    target = inputs @ W0
    err = [np.mean((inputs @ (w * qp.scale.astype(np.float64)) - target) ** 2) for w in (w_a, w_n)]
    assert err[0] < err[1]  # the first layer's output error on the calibration data
    qm = to_quantized_mlp(model, res.weights, x_tr)
    for layer, (w, q) in zip(qm.layers, res.weights):
        np.testing.assert_array_equal(layer.w_q, w)
        assert layer.w_qparams == q
    assert qm.accuracy(x_te, y_te) > to_quantized_mlp(model, nearest, x_tr).accuracy(x_te, y_te)


def test_adaround_refuses_bad_arguments(digits):
    model, x_tr, _, _ = digits
    W = model.linears[0].W
    qp = weight_qparams(W, bits=4)
    with pytest.raises(ValueError, match="x_hat"):
        adaround_layer(W, model.linears[0].b, x_tr[:, :10], x_tr[:, :32], qp)
    with pytest.raises(ValueError, match="activation"):
        adaround_layer(W, model.linears[0].b, x_tr, x_tr @ W, qp, activation="tanh")
    with pytest.raises(ValueError, match="iterations"):
        adaround_layer(W, model.linears[0].b, x_tr, x_tr @ W, qp, iterations=0)
    with pytest.raises(ValueError, match="ReLU or LeakyReLU"):
        adaround(MLP([64, 8, 10], activation="sigmoid"), x_tr)


def test_adaround_layer_refuses_a_grid_that_does_not_fit(digits):
    model, x_tr, _, _ = digits
    W, b = model.linears[0].W, model.linears[0].b
    with pytest.raises(ValueError, match="qparams"):
        adaround_layer(W, b, x_tr, x_tr @ W, weight_qparams(W[:, :5], bits=4))
    with pytest.raises(ValueError, match="batch_size"):
        adaround_layer(W, b, x_tr, x_tr @ W, weight_qparams(W, bits=4), batch_size=0)
