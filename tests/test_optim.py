"""Tests for nnref.optim's classes: their state (buffers, steps, per parameter), dtype,
in-place updates, bad input, and that they apply the plain update rules bit for bit. The
rules' laws and the hand-worked trajectories (p0 = [1, -2], g1 = [0.5, -1], g2 = [1, 2],
g3 = [-0.5, 0], lr = 0.1) live in nnref.laws (sgd_update, adam_update).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnref.optim import SGD, Adam
from strategies import float_arrays, widths

P0 = [1.0, -2.0]
GRADS = [[0.5, -1.0], [1.0, 2.0], [-0.5, 0.0]]


def run(opt, p0=P0, grads=GRADS):
    """Step ``opt`` through ``grads`` from ``p0``; return the parameters after each step."""
    p = np.array(p0)
    params = {"w": p}
    trace = []
    for g in grads:
        opt.step(params, {"w": np.array(g)})
        assert params["w"] is p  # updated in place
        trace.append(p.copy())
    return trace


# --------------------------------------------------------------------------------------
# SGD
# --------------------------------------------------------------------------------------


@given(st.tuples(widths).flatmap(lambda s: st.tuples(float_arrays(s), float_arrays(s))),
       st.floats(1e-4, 10.0))
def test_sgd_without_momentum_is_exactly_p_minus_lr_g(pg, lr):
    p, g = pg
    expected = p - lr * g
    params = {"w": p.copy()}
    SGD(lr=lr).step(params, {"w": g})
    np.testing.assert_array_equal(params["w"], expected)  # bitwise: the same two roundings


def test_sgd_keeps_float32_and_state_per_parameter():
    params = {"W1": np.ones((2, 2), dtype=np.float32), "b1": np.zeros(2, dtype=np.float32)}
    grads = {"W1": np.full((2, 2), 0.5, dtype=np.float32), "b1": np.ones(2, dtype=np.float32)}
    opt = SGD(lr=0.5, momentum=0.5)
    opt.step(params, grads)
    opt.step(params, grads)
    assert params["W1"].dtype == np.float32 and params["b1"].dtype == np.float32
    # b: 0.5 then 0.5*0.5 + 0.5 = 0.75 (W1); 1 then 1.5 (b1)
    # W1: 1 - 0.25 - 0.375 = 0.375; b1: 0 - 0.5 - 0.75 = -1.25
    np.testing.assert_array_equal(params["W1"], np.full((2, 2), 0.375))
    np.testing.assert_array_equal(params["b1"], [-1.25, -1.25])
    assert set(opt.state) == {"W1", "b1"}
    np.testing.assert_array_equal(opt.state["b1"]["momentum_buffer"], [1.5, 1.5])
    opt.zero_state()
    assert opt.state == {} and opt.t == 0


def test_sgd_state_after_the_hand_worked_steps():
    # the trajectories are laws (nnref.laws, sgd_update); here the class's bookkeeping
    plain = SGD(lr=0.1)
    np.testing.assert_allclose(run(plain)[-1], [0.9, -2.1], rtol=1e-14)
    assert plain.state == {} and plain.t == 3  # no buffers without momentum
    momentum = SGD(lr=0.1, momentum=0.9)
    np.testing.assert_allclose(run(momentum)[-1], [0.7245, -2.109], rtol=1e-14)
    np.testing.assert_allclose(momentum.state["w"]["momentum_buffer"], [0.805, 0.99], rtol=1e-14)


# --------------------------------------------------------------------------------------
# Adam
# --------------------------------------------------------------------------------------


def test_adam_state_after_the_hand_worked_steps():
    opt = Adam(lr=0.1)
    np.testing.assert_allclose(run(opt)[-1], [0.761472870876, -1.964910262], rtol=1e-11)
    state = opt.state["w"]
    assert state["step"] == 3 and opt.t == 3
    np.testing.assert_allclose(state["exp_avg"], [0.0805, 0.099], rtol=1e-13)
    np.testing.assert_allclose(state["exp_avg_sq"], [0.00149850025, 0.004994001], rtol=1e-13)


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("lr", [-0.1, 0.0, np.nan, np.inf])
def test_bad_lr(lr):
    with pytest.raises(ValueError, match="lr: expected"):
        SGD(lr=lr)
    with pytest.raises(ValueError, match="lr: expected"):
        Adam(lr=lr)


def test_bad_hyperparameters():
    with pytest.raises(TypeError, match="lr: expected a real number"):
        SGD(lr="0.1")
    with pytest.raises(ValueError, match="nesterov: requires momentum > 0"):
        SGD(lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="nesterov: requires momentum > 0 and dampening = 0"):
        SGD(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)
    with pytest.raises(ValueError, match="momentum: expected a number >= 0"):
        SGD(lr=0.1, momentum=-0.9)
    with pytest.raises(ValueError, match="weight_decay: expected a number >= 0"):
        SGD(lr=0.1, weight_decay=-1.0)
    with pytest.raises(ValueError, match="weight_decay: expected a number >= 0"):
        Adam(weight_decay=-1.0)
    with pytest.raises(ValueError, match=r"betas: expected values in \[0, 1\)"):
        Adam(betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="betas: expected a pair"):
        Adam(betas=(0.9,))
    with pytest.raises(ValueError, match="eps: expected a number >= 0"):
        Adam(eps=-1e-8)


@pytest.mark.parametrize("opt", [SGD(lr=0.1), Adam()], ids=["SGD", "Adam"])
def test_bad_step_arguments(opt):
    p = {"W1": np.zeros((2, 3)), "b1": np.zeros(3)}
    with pytest.raises(ValueError,
                       match=r"grads: expected the keys of params \['W1', 'b1'\], got \['W1'\]"):
        opt.step(p, {"W1": np.zeros((2, 3))})
    with pytest.raises(ValueError, match=r"grads\['b1'\]: expected shape \(3,\), "
                                         r"got array of dtype float64 and shape \(2,\)"):
        opt.step(p, {"W1": np.zeros((2, 3)), "b1": np.zeros(2)})
    with pytest.raises(ValueError, match=r"grads\['b1'\]: expected shape \(3,\), got list"):
        opt.step(p, {"W1": np.zeros((2, 3)), "b1": [0.0, 0.0, 0.0]})
    with pytest.raises(TypeError, match=r"params\['b1'\]: expected a floating ndarray"):
        opt.step({"b1": np.zeros(3, dtype=np.int64)}, {"b1": np.zeros(3)})
    with pytest.raises(TypeError, match="params, grads: expected dicts"):
        opt.step([np.zeros(3)], [np.zeros(3)])
    # nothing was updated by the failed calls
    assert not np.any(p["W1"]) and not np.any(p["b1"]) and opt.t == 0


# --------------------------------------------------------------------------------------
# The plain update rules, and the in-place optimizers that apply them
# --------------------------------------------------------------------------------------

from nnref.optim import adam_update, sgd_update  # noqa: E402
from strategies import seeds  # noqa: E402


settings_sgd = st.fixed_dictionaries({
    "momentum": st.sampled_from([0.0, 0.5, 0.9]), "dampening": st.sampled_from([0.0, 0.1]),
    "nesterov": st.booleans(), "weight_decay": st.sampled_from([0.0, 0.01])})


@given(n=widths, seed=seeds, dtype=st.sampled_from([np.float32, np.float64]), kw=settings_sgd)
def test_sgd_class_applies_sgd_update_bit_for_bit(n, seed, dtype, kw):
    if kw["nesterov"] and (kw["momentum"] == 0 or kw["dampening"] != 0):
        kw = dict(kw, nesterov=False)
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(n).astype(dtype)
    ref, buf = p.copy(), None
    opt = SGD(0.1, **kw)
    for _ in range(3):
        g = rng.standard_normal(n).astype(dtype)
        g_before = g.copy()
        ref_before = ref.copy()
        ref, buf = sgd_update(ref, g, buf, 0.1, **kw)
        opt.step({"w": p}, {"w": g})
        np.testing.assert_array_equal(p, ref)
        np.testing.assert_array_equal(g, g_before)
        assert ref is not ref_before
    if kw["momentum"]:
        np.testing.assert_array_equal(opt.state["w"]["momentum_buffer"], buf)


@given(n=widths, seed=seeds, dtype=st.sampled_from([np.float32, np.float64]),
       wd=st.sampled_from([0.0, 0.01]), betas=st.sampled_from([(0.9, 0.999), (0.5, 0.9)]))
def test_adam_class_applies_adam_update_bit_for_bit(n, seed, dtype, wd, betas):
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(n).astype(dtype)
    ref, m, v = p.copy(), np.zeros(n, dtype), np.zeros(n, dtype)
    opt = Adam(0.01, betas=betas, weight_decay=wd)
    for t in range(1, 4):
        g = rng.standard_normal(n).astype(dtype)
        ref, m, v = adam_update(ref, g, m, v, t, 0.01, betas[0], betas[1], 1e-8, wd)
        opt.step({"w": p}, {"w": g})
        np.testing.assert_array_equal(p, ref)
    st_ = opt.state["w"]
    assert st_["step"] == 3
    np.testing.assert_array_equal(st_["exp_avg"], m)
    np.testing.assert_array_equal(st_["exp_avg_sq"], v)


def test_optimizer_state_is_created_once_and_updated_in_place():
    p = {"w": np.ones(3)}
    opt = Adam()
    opt.step(p, {"w": np.ones(3)})
    m = opt.state["w"]["exp_avg"]
    opt.step(p, {"w": np.ones(3)})
    assert opt.state["w"]["exp_avg"] is m  # same array, updated in place
    sgd = SGD(0.1, momentum=0.9)
    sgd.step(p, {"w": np.ones(3)})
    buf = sgd.state["w"]["momentum_buffer"]
    sgd.step(p, {"w": np.ones(3)})
    assert sgd.state["w"]["momentum_buffer"] is buf
