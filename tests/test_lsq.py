"""LSQ's learned step and PACT's learned clipping (nnref.quant.lsq)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnref import clip
from nnref.data import load_digits, train_test_split
from nnref.gradcheck import numerical_gradient
from nnref.layers import Linear
from nnref.mlp import MLP
from nnref.optim import Adam
from nnref.quant import dequantize
from nnref.quant.lsq import (
    LSQLinear,
    PACTActivation,
    lsq_grad,
    lsq_grad_scale,
    lsq_init_step,
    lsq_quantize,
    pact_backward,
    pact_forward,
    pact_quantize,
    prepare_lsq,
)
from nnref.train import fit
from tests.strategies import seeds

levels = st.sampled_from([(1, 1), (3, 3), (127, 127), (0, 3), (0, 255), (4, 3)])


def _near_a_kink(r, qn, qp, tol=1e-4):
    """v / s within ``tol`` of a rounding tie or of a clamp boundary."""
    frac = np.abs(r - np.floor(r) - 0.5)
    return bool(np.any(frac < tol) or np.any(np.abs(r + qn) < tol) or np.any(np.abs(r - qp) < tol))


@settings(max_examples=60)
@given(st.floats(-20, 20), st.floats(0.05, 3), levels)
def test_lsq_step_gradient_matches_finite_differences(v, s, lv):
    """Clamped: the forward is -Q_N s or Q_P s, and eq. 3 is its exact derivative. Inside:
    eq. 3 is the exact derivative of the straight-through surrogate s * (v/s + c), with the
    rounding offset c = round(v/s) - v/s held fixed (the STE)."""
    qn, qp = lv
    r = v / s
    if _near_a_kink(np.array([r]), qn, qp):
        return
    dv, ds = lsq_grad(np.array([v]), s, qn, qp)
    inside = -qn < r < qp
    if inside:
        c = float(lsq_quantize(np.array([v]), s, qn, qp)[0]) / s - r
        surrogate = lambda a: a[0] * (v / a[0] + c)  # noqa: E731 - the STE's function of s
        num_dv = numerical_gradient(lambda a: a[0] / s + c, np.array([v]), h=1e-6) * s
    else:
        surrogate = lambda a: float(lsq_quantize(np.array([v]), a[0], qn, qp)[0])  # noqa: E731
        num_dv = np.array([0.0])
    num_ds = numerical_gradient(surrogate, np.array([s]), h=1e-7)
    np.testing.assert_allclose(ds, num_ds, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dv, num_dv, rtol=1e-5, atol=1e-6)
    assert dv[0] == (1.0 if inside else 0.0)


def test_lsq_worked_values():
    v = np.array([-5.0, -0.7, 0.2, 0.3, 2.6, 9.0])
    # s = 1, Q_N = Q_P = 3: round(clamp(v, -3, 3)) half away from zero
    np.testing.assert_array_equal(lsq_quantize(v, 1.0, 3, 3), [-3, -1, 0, 0, 3, 3])
    dv, ds = lsq_grad(v, 1.0, 3, 3)
    np.testing.assert_array_equal(dv, [0, 1, 1, 1, 1, 0])
    np.testing.assert_allclose(ds, [-3, -1 + 0.7, -0.2, -0.3, 3 - 2.6, 3], rtol=1e-12)
    assert lsq_grad_scale(64, 1) == 1 / 8
    assert lsq_init_step(np.array([1.0, -3.0]), 4) == 2.0


@given(st.floats(-5, 5), st.floats(0.1, 5))
def test_pact_gradients_match_finite_differences(x, alpha):
    if abs(x) < 1e-4 or abs(x - alpha) < 1e-4:
        return  # the two kinks
    num_dx = numerical_gradient(lambda a: float(pact_forward(a, alpha)[0]), np.array([x]))
    num_da = numerical_gradient(lambda a: float(pact_forward(np.array([x]), a[0])[0]), np.array([alpha]))
    dx, da = pact_backward(np.ones(1), np.array([x]), alpha)
    np.testing.assert_allclose(dx, num_dx, atol=1e-8)
    assert da == pytest.approx(float(num_da[0]), abs=1e-8)
    if x > alpha:  # clipped: the quantized output is alpha itself, with derivative 1 in alpha
        q = numerical_gradient(lambda a: float(pact_quantize(np.array([x]), a[0], 4)[0]), np.array([alpha]))
        assert q[0] == pytest.approx(1.0, abs=1e-6)


@given(st.lists(st.floats(-3, 6), min_size=1, max_size=30), st.floats(0.5, 4), st.integers(2, 8))
def test_pact_quantize_has_2_to_the_k_levels_on_0_alpha(xs, alpha, bits):
    y = pact_quantize(np.array(xs), alpha, bits)
    assert np.all((y >= 0) & (y <= alpha * (1 + 1e-12)))
    steps = y * (2**bits - 1) / alpha
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-9)


@settings(max_examples=30)
@given(seeds, st.integers(2, 8), st.booleans())
def test_lsq_linear_backward_is_the_chain_rule_of_the_surrogate(seed, bits, per_channel):
    rng = np.random.default_rng(seed)
    lin = Linear(5, 3, seed=seed, dtype=np.float64)
    layer = LSQLinear(lin, bits, per_channel)
    x, R = rng.normal(size=(4, 5)), rng.normal(size=(4, 3))
    layer.forward(x)
    layer.backward(R)
    offset = layer.W_hat / layer.s - layer.W / layer.s  # rounding offsets, frozen (STE)
    mask = lsq_grad(layer.W, layer.s, layer.levels, layer.levels)[0]
    frozen = np.where(mask > 0, offset, layer.W_hat / layer.s - np.clip(layer.W / layer.s, -layer.levels, layer.levels))

    def loss(s):
        W_sur = s * (np.clip(layer.W / s, -layer.levels, layer.levels) + frozen)
        return float(np.sum((x @ W_sur + layer.b) * R))

    r = layer.W / layer.s
    if _near_a_kink(r, layer.levels, layer.levels):
        return
    n = 5 if per_channel else 15
    num = numerical_gradient(loss, layer.s.copy(), h=1e-7) * lsq_grad_scale(n, layer.levels)
    np.testing.assert_allclose(layer.ds, num, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(layer.dW, (x.T @ R) * mask, rtol=1e-12)


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, seed=0)
    model = MLP([64, 32, 10], seed=0)
    fit(model, Adam(1e-3), x_tr, y_tr, epochs=10, batch_size=64, seed=0, verbose=False)
    return model, x_tr, x_te, y_tr, y_te


@pytest.mark.parametrize("act", ["lsq", "pact", None])
def test_lsq_trains_with_fit_and_a_clipper_and_converts_to_the_simulated_weights(digits, act):
    model, x_tr, x_te, y_tr, y_te = digits
    sim = prepare_lsq(model, x_tr, weight_bits=2, act_quantizer=act)
    before = {k: v.copy() for k, v in sim.params.items()}
    hist = fit(sim, Adam(3e-4), x_tr, y_tr, epochs=2, batch_size=64, seed=0, verbose=False,
               grad_transform=clip.GlobalNorm(1.0))
    assert not hist.diverged
    assert {k for k in before if k.startswith(("sW", "sA", "alpha"))} == (
        {"sW1", "sW2"} | ({"sA1"} if act == "lsq" else {"alpha1"} if act == "pact" else set()))
    assert all(not np.array_equal(before[k], v) for k, v in sim.params.items() if k.startswith("s"))
    qm = sim.convert(x_tr)
    sim.forward(x_te[:2])  # sets each layer's W_hat, the weights the simulation multiplies by
    for layer, lin in zip(qm.layers, sim.linears):
        np.testing.assert_array_equal(dequantize(layer.w_q, layer.w_qparams), lin.W_hat)
        assert set(np.unique(layer.w_q)) <= {-1, 0, 1}
    if act is not None:
        assert qm.layers[0].out_qparams == sim.layers[1].qparams()
    assert np.mean(qm.predict(x_te) == sim.predict(x_te)) >= 0.97


def test_pact_alpha_gradient_carries_the_l2_term(digits):
    model, x_tr, _, y_tr, _ = digits
    sim = prepare_lsq(model, x_tr, 4, act_quantizer="pact", alpha_decay=0.5)
    loss, grads = sim.loss_and_grads(x_tr[:32], y_tr[:32])
    q = [layer for layer in sim.layers if isinstance(layer, PACTActivation)][0]
    np.testing.assert_allclose(grads["alpha1"], q.dalpha + 0.5 * q.alpha, rtol=1e-6)
    plain, _ = MLP.loss(sim, x_tr[:32], y_tr[:32])
    assert loss == pytest.approx(plain + 0.25 * float(q.alpha[0]) ** 2)


def test_lsq_refuses_bad_arguments(digits):
    model, x_tr, _, y_tr, _ = digits
    with pytest.raises(ValueError, match="act_quantizer"):
        prepare_lsq(model, x_tr, act_quantizer="dorefa")
    with pytest.raises(ValueError, match="weight_bits"):
        prepare_lsq(model, x_tr, weight_bits=9)
    with pytest.raises(ValueError, match="init"):
        prepare_lsq(model, x_tr, weight_init="random")
    with pytest.raises(ValueError, match="leaky"):
        prepare_lsq(MLP([64, 8, 10], activation="leaky_relu"), x_tr)
    with pytest.raises(ValueError, match="act_bits"):
        prepare_lsq(model, x_tr, act_bits=4).convert(x_tr)


def test_pact_worked_values():
    x = np.array([-1.0, 0.3, 1.2, 5.0])
    # alpha = 2, 2 bits: 3 steps of 2/3 on [0, 2]; 0.3 -> 0.45 steps -> 0, 1.2 -> 1.8 -> 2
    np.testing.assert_allclose(pact_quantize(x, 2.0, 2), [0.0, 0.0, 4 / 3, 2.0], rtol=1e-15)
    np.testing.assert_array_equal(pact_forward(x, 2.0), [0.0, 0.3, 1.2, 2.0])
    dx, dalpha = pact_backward(np.array([1.0, 2.0, 3.0, 4.0]), x, 2.0)
    np.testing.assert_array_equal(dx, [0.0, 2.0, 3.0, 0.0])
    assert dalpha == 4.0


def test_lsq_model_saves_its_latent_float_weights(digits, tmp_path):
    model, x_tr, _, _, _ = digits
    sim = prepare_lsq(model, x_tr, 3, act_quantizer="pact")
    sim.save(tmp_path / "lsq.npz")
    loaded = MLP.load(tmp_path / "lsq.npz")
    for a, b in zip(loaded.linears, sim.linears):
        np.testing.assert_array_equal(a.W, b.W)
        np.testing.assert_array_equal(a.b, b.b)
    with pytest.raises(NotImplementedError, match="per_example_grads"):
        sim.per_example_grads(x_tr[:2], np.zeros(2, dtype=np.int64))
