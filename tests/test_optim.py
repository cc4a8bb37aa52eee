"""Tests for nnref.optim: SGD (plain, momentum, Nesterov, dampening, weight decay) and Adam
(with bias correction and weight decay), step by step against values worked out by hand
from the update rules documented for torch.optim.SGD and torch.optim.Adam.

Every hand example uses the same start and gradients, lr = 0.1:
    p0 = [1, -2],  g1 = [0.5, -1],  g2 = [1, 2],  g3 = [-0.5, 0]
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


def test_sgd_plain_by_hand():
    # p <- p - lr g
    # p1 = [1 - 0.1*0.5, -2 - 0.1*(-1)] = [0.95, -1.9]
    # p2 = [0.95 - 0.1*1, -1.9 - 0.1*2] = [0.85, -2.1]
    # p3 = [0.85 - 0.1*(-0.5), -2.1 - 0] = [0.9, -2.1]
    opt = SGD(lr=0.1)
    trace = run(opt)
    np.testing.assert_allclose(trace, [[0.95, -1.9], [0.85, -2.1], [0.9, -2.1]], rtol=1e-14)
    assert opt.state == {} and opt.t == 3  # no buffers without momentum


def test_sgd_momentum_by_hand():
    # b1 = g1 = [0.5, -1]                                    p1 = p0 - 0.1 b1 = [0.95, -1.9]
    # b2 = 0.9 b1 + g2 = [0.45 + 1, -0.9 + 2] = [1.45, 1.1]   p2 = [0.95 - 0.145, -1.9 - 0.11]
    #                                                           = [0.805, -2.01]
    # b3 = 0.9 b2 + g3 = [1.305 - 0.5, 0.99] = [0.805, 0.99]  p3 = [0.805 - 0.0805, -2.01 - 0.099]
    #                                                           = [0.7245, -2.109]
    opt = SGD(lr=0.1, momentum=0.9)
    trace = run(opt)
    np.testing.assert_allclose(trace, [[0.95, -1.9], [0.805, -2.01], [0.7245, -2.109]], rtol=1e-14)
    np.testing.assert_allclose(opt.state["w"]["momentum_buffer"], [0.805, 0.99], rtol=1e-14)


def test_sgd_nesterov_by_hand():
    # buffers as with momentum: b1 = [0.5, -1], b2 = [1.45, 1.1], b3 = [0.805, 0.99]
    # step direction g + 0.9 b:
    #   d1 = [0.5 + 0.45, -1 - 0.9] = [0.95, -1.9]          p1 = [0.905, -1.81]
    #   d2 = [1 + 1.305, 2 + 0.99] = [2.305, 2.99]          p2 = [0.905 - 0.2305, -1.81 - 0.299]
    #                                                          = [0.6745, -2.109]
    #   d3 = [-0.5 + 0.7245, 0 + 0.891] = [0.2245, 0.891]   p3 = [0.6745 - 0.02245, -2.109 - 0.0891]
    #                                                          = [0.65205, -2.1981]
    opt = SGD(lr=0.1, momentum=0.9, nesterov=True)
    trace = run(opt)
    np.testing.assert_allclose(trace, [[0.905, -1.81], [0.6745, -2.109], [0.65205, -2.1981]], rtol=1e-14)
    np.testing.assert_allclose(opt.state["w"]["momentum_buffer"], [0.805, 0.99], rtol=1e-14)


def test_sgd_weight_decay_by_hand():
    # g' = g + 0.5 p (L2 penalty 0.25 |p|^2), then p <- p - 0.1 g'
    # g'1 = [0.5 + 0.5, -1 - 1] = [1, -2]                       p1 = [0.9, -1.8]
    # g'2 = [1 + 0.45, 2 - 0.9] = [1.45, 1.1]                   p2 = [0.755, -1.91]
    # g'3 = [-0.5 + 0.3775, 0 - 0.955] = [-0.1225, -0.955]      p3 = [0.76725, -1.8145]
    trace = run(SGD(lr=0.1, weight_decay=0.5))
    np.testing.assert_allclose(trace, [[0.9, -1.8], [0.755, -1.91], [0.76725, -1.8145]], rtol=1e-14)


def test_sgd_dampening_skips_the_first_step_as_in_pytorch():
    # b1 = g1 (undamped)                                         p1 = [0.95, -1.9]
    # b2 = 0.9 b1 + (1 - 0.5) g2 = [0.45 + 0.5, -0.9 + 1] = [0.95, 0.1]
    #                                                            p2 = [0.855, -1.91]
    # b3 = 0.9 b2 + 0.5 g3 = [0.855 - 0.25, 0.09] = [0.605, 0.09]
    #                                                            p3 = [0.7945, -1.919]
    trace = run(SGD(lr=0.1, momentum=0.9, dampening=0.5))
    np.testing.assert_allclose(trace, [[0.95, -1.9], [0.855, -1.91], [0.7945, -1.919]], rtol=1e-14)


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


# --------------------------------------------------------------------------------------
# Adam
# --------------------------------------------------------------------------------------


def test_adam_by_hand():
    # lr 0.1, betas (0.9, 0.999), eps 1e-8; m, v start at 0
    # t = 1: m = 0.1 g1 = [0.05, -0.1]; v = 0.001 g1^2 = [0.00025, 0.001]
    #        bias corrections 1 - 0.9 = 0.1, 1 - 0.999 = 0.001: m_hat = g1 = [0.5, -1],
    #        v_hat = g1^2 = [0.25, 1], sqrt = [0.5, 1]
    #        step = 0.1 * [0.5 / (0.5 + 1e-8), -1 / (1 + 1e-8)] = [0.099999998, -0.099999999]
    #        p1 = [0.900000002, -1.900000001]      (each entry moved by ~lr * sign(g))
    # t = 2: m = 0.9 [0.05, -0.1] + 0.1 [1, 2] = [0.145, 0.11]
    #        v = 0.999 [0.00025, 0.001] + 0.001 [1, 4] = [0.00124975, 0.004999]
    #        corrections 1 - 0.81 = 0.19, 1 - 0.998001 = 0.001999
    #        m_hat = [0.763157894737, 0.578947368421], v_hat = [0.625187593797, 2.50075037519]
    #        sqrt(v_hat) = [0.790688050875, 1.58137610175]
    #        step = [0.0965182013615, 0.0366103524721]; p2 = [0.803481800639, -1.93661035347]
    # t = 3: m = 0.9 [0.145, 0.11] + 0.1 [-0.5, 0] = [0.0805, 0.099]
    #        v = 0.999 [0.00124975, 0.004999] + 0.001 [0.25, 0] = [0.00149850025, 0.004994001]
    #        corrections 1 - 0.729 = 0.271, 1 - 0.997002999 = 0.002997001
    #        m_hat = [0.29704797048, 0.365313653137], v_hat = [0.499999916583, 1.66633277733]
    #        sqrt(v_hat) = [0.707106722202, 1.29086512748]
    #        step = [0.0420089297629, 0.0282999085289]; p3 = [0.761472870876, -1.964910262]
    opt = Adam(lr=0.1)
    trace = run(opt)
    expected = [[0.900000002, -1.900000001],
                [0.803481800639, -1.93661035347],
                [0.761472870876, -1.964910262]]
    np.testing.assert_allclose(trace, expected, rtol=1e-11)
    st = opt.state["w"]
    assert st["step"] == 3 and opt.t == 3
    np.testing.assert_allclose(st["exp_avg"], [0.0805, 0.099], rtol=1e-13)
    np.testing.assert_allclose(st["exp_avg_sq"], [0.00149850025, 0.004994001], rtol=1e-13)


def test_adam_weight_decay_by_hand():
    # Zero loss gradient, so only the L2 term moves p: g' = 0.5 p. p0 = 2.
    # t = 1: g' = 1; m = 0.1, v = 0.001; m_hat = 1, v_hat = 1; step = 0.1 / (1 + 1e-8)
    #        p1 = 1.900000001
    # t = 2: g' = 0.9500000005; m = 0.09 + 0.09500000005 = 0.18500000005
    #        v = 0.000999 + 0.001 * 0.9025000009... = 0.00190150000095
    #        m_hat = 0.18500000005 / 0.19 = 0.973684210789; v_hat = / 0.001999 = 0.951225613282
    #        step = 0.1 * 0.973684210789 / 0.975307958176 = 0.0998335133681; p2 = 1.80016648763
    # t = 3: g' = 0.900083243816; m = 0.256508324427; v = 0.00270974834675
    #        m_hat = / 0.271 = 0.946525182386; v_hat = / 0.002997001 = 0.904153300832
    #        step = 0.1 * 0.946525182386 / 0.950869760184 = 0.0995430932885; p3 = 1.70062339434
    trace = run(Adam(lr=0.1, weight_decay=0.5), p0=[2.0], grads=[[0.0]] * 3)
    np.testing.assert_allclose(np.ravel(trace), [1.900000001, 1.80016648763, 1.70062339434], rtol=1e-11)


# non-zero multiples of 1/64 in [-64, 64]: |g| >= 1/64, so eps / |g| <= 6.4e-7
nonzero_grid = st.integers(-64 * 64, 64 * 64).filter(lambda k: k != 0).map(lambda k: k / 64)


@given(st.tuples(widths).flatmap(lambda s: st.tuples(float_arrays(s), float_arrays(s, nonzero_grid))),
       st.floats(1e-4, 1.0))
def test_adam_first_step_moves_each_entry_by_lr_times_sign(pg, lr):
    p, g = pg
    params = {"w": p.copy()}
    Adam(lr=lr).step(params, {"w": g})
    # bias correction at t = 1 gives m_hat = g, v_hat = g^2: step = lr g / (|g| + eps),
    # which is lr sign(g) to within eps / |g| <= 1e-8 * 64
    np.testing.assert_allclose(p - params["w"], lr * np.sign(g), rtol=1e-6, atol=1e-12 * np.max(np.abs(p)))


def test_adam_zero_gradient_entries_do_not_move():
    params = {"w": np.array([1.0, 2.0])}
    Adam(lr=0.1).step(params, {"w": np.array([0.0, 3.0])})
    # entry 0: m_hat = 0, step 0 / (0 + eps) = 0; entry 1 moves by 0.1 / (1 + eps/3)
    assert params["w"][0] == 1.0
    assert params["w"][1] == pytest.approx(1.9, rel=1e-8)


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


def test_sgd_update_worked_example():
    # momentum 0.9, lr 0.1: buf = g1, then 0.9 g1 + g2; p moves by lr * buf
    p, g1, g2 = np.array(P0), np.array(GRADS[0]), np.array(GRADS[1])
    p1, buf = sgd_update(p, g1, None, 0.1, momentum=0.9)
    np.testing.assert_array_equal(buf, g1)
    np.testing.assert_allclose(p1, [0.95, -1.9], rtol=1e-15)
    p2, buf2 = sgd_update(p1, g2, buf, 0.1, momentum=0.9)
    np.testing.assert_allclose(buf2, [1.45, 1.1], rtol=1e-15)
    np.testing.assert_allclose(p2, [0.805, -2.01], rtol=1e-15)
    assert sgd_update(p, g1, None, 0.1)[1] is None  # no buffer without momentum
    np.testing.assert_array_equal(p, P0)  # inputs untouched


def test_adam_update_first_step_moves_by_lr():
    p, g = np.array([1.0, -2.0]), np.array([0.5, -1.0])
    p1, m, v = adam_update(p, g, np.zeros(2), np.zeros(2), 1, lr=0.1)
    np.testing.assert_allclose(m, 0.1 * g, rtol=1e-15)
    np.testing.assert_allclose(v, 0.001 * g * g, rtol=1e-15)
    np.testing.assert_allclose(p1, p - 0.1 * np.sign(g), rtol=1e-7)  # m_hat / sqrt(v_hat) = sign g


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
