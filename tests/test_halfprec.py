"""Half-precision training: bfloat16 rounding, stochastic rounding, loss scaling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnref import clip
from nnref.data import load_digits, train_test_split
from nnref.halfprec import (
    GradScaler,
    bfloat16_bits,
    fit_half,
    gradient_underflow,
    half_loss_and_grads,
    loss_scale_update,
    round_to_bfloat16,
    round_to_format,
    scaled_step,
    stochastic_round,
    stochastic_round_float16,
)
from nnref.mlp import MLP
from nnref.optim import SGD, Adam
from nnref.train import fit
from tests.strategies import float32_patterns, seeds

# --------------------------------------------------------------------------- bfloat16


def _bf16_reference(u: int) -> int:
    """Round-to-nearest-even of the float32 pattern ``u`` to its top 16 bits, by comparing
    the two neighbouring bfloat16 values in exact float64 arithmetic."""
    x = np.uint32(u).view(np.float32)
    if np.isnan(x):
        return -1  # any NaN
    if np.isinf(x):
        return u
    lo = u & 0xFFFF0000
    hi = lo + 0x10000

    def value(p: int) -> float:  # the pattern's magnitude, with 2**128 standing for infinity
        mag = p & 0x7FFFFFFF
        v = 2.0**128 if mag >= 0x7F800000 else float(np.uint32(mag).view(np.float32))
        return v

    d_lo, d_hi = abs(value(u) - value(lo)), abs(value(hi) - value(u))
    if d_lo < d_hi or (d_lo == d_hi and not (lo >> 16) & 1):
        return lo
    return hi


@given(float32_patterns)
def test_bfloat16_is_round_to_nearest_even_on_the_top_16_bits(u):
    got = int(bfloat16_bits(np.array([u], dtype=np.uint32))[0])
    want = _bf16_reference(u)
    if want == -1:
        assert np.isnan(np.uint32(got).view(np.float32))
    else:
        assert got == want
    assert got & 0xFFFF == 0


@given(st.lists(float32_patterns, min_size=1, max_size=20))
def test_bfloat16_rounding_is_idempotent_and_monotone(us):
    x = np.array(us, dtype=np.uint32).view(np.float32)
    x = np.sort(x[~np.isnan(x)])
    r = round_to_bfloat16(x)
    assert np.array_equal(round_to_bfloat16(r), r)
    assert np.all(np.diff(r) >= 0)


def test_bfloat16_worked_values():
    x = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-20, -2.5, np.inf, -np.inf,
                  np.finfo(np.float32).max, 1e-40], dtype=np.float32)
    r = round_to_bfloat16(x)
    # a tie rounds to the even neighbour (down from 1 + 2^-8, up from 1 + 3 * 2^-8); above a
    # tie rounds up; float32's largest value rounds to inf; subnormals keep their top bits
    assert r[:8].tolist() == [1.0, 1.0, 1 + 2**-6, 1 + 2**-7, -2.5, np.inf, -np.inf, np.inf]
    assert int(r[8:9].view(np.uint32)[0]) == _bf16_reference(int(x[8:9].view(np.uint32)[0]))
    nan = np.array([0x7F800001, 0xFFC00001], dtype=np.uint32).view(np.float32)
    assert np.all(np.isnan(round_to_bfloat16(nan)))  # NaN with its payload in the low bits stays NaN


def test_round_to_bfloat16_wants_float32_and_format_names():
    with pytest.raises(TypeError, match="float32"):
        round_to_bfloat16(np.ones(3))
    with pytest.raises(ValueError, match="fmt"):
        round_to_format(np.ones(3, np.float32), "float8")
    x = np.array([1e-8, 7e4, 1.0001], np.float32)
    with np.errstate(over="ignore"):
        assert round_to_format(x, "float16").tolist() == x.astype(np.float16).astype(np.float32).tolist()


# --------------------------------------------------------------------------- stochastic rounding


@given(st.floats(-100, 100), st.sampled_from([1.0, 0.25, 2.0**-6]), seeds)
def test_stochastic_rounding_is_unbiased(x, step, seed):
    n = 4000
    r = stochastic_round(np.full(n, x), step, seed)
    lo = np.floor(x / step) * step
    assert np.all((r == lo) | (r == lo + step))  # one of the two neighbours
    p = (x - lo) / step
    se = step * np.sqrt(p * (1 - p) / n)
    assert abs(r.mean() - x) <= 5 * se + 1e-12


@given(st.floats(-1000, 1000), seeds)
def test_stochastic_rounding_to_float16_is_unbiased(x, seed):
    n = 4000
    r = stochastic_round_float16(np.full(n, x), seed).astype(np.float64)
    near = np.float16(x)
    candidates = [near, np.nextafter(near, np.float16(-np.inf)), np.nextafter(near, np.float16(np.inf))]
    lo = max(float(c) for c in candidates if float(c) <= x)  # the float16 neighbours of x
    hi = float(np.nextafter(np.float16(lo), np.float16(np.inf)))
    assert set(np.unique(r).tolist()) <= {lo, hi}
    p = (x - lo) / (hi - lo)
    assert abs(r.mean() - x) <= 5 * (hi - lo) * np.sqrt(p * (1 - p) / n) + 1e-12


def test_stochastic_rounding_keeps_updates_that_nearest_rounding_loses():
    w = np.full(1000, 1.0, dtype=np.float16)
    update = 1e-4  # float16's spacing at 1.0 is 2**-10 ~ 9.8e-4: half of it is lost
    assert np.all((w.astype(np.float64) + update).astype(np.float16) == w)
    sr = stochastic_round_float16(w.astype(np.float64) + update, seed=0).astype(np.float64)
    assert abs(sr.mean() - (1 + update)) < 3e-5
    with pytest.raises(ValueError, match="65504"):
        stochastic_round_float16([7e4])
    with pytest.raises(ValueError, match="step"):
        stochastic_round([1.0], 0.0)


# --------------------------------------------------------------------------- loss scaling


@given(st.lists(st.booleans(), max_size=60), st.integers(1, 5))
def test_dynamic_loss_scale_follows_growth_and_backoff(found, interval):
    scale, tracker = 2.0**16, 0
    for f in found:
        scale, tracker = loss_scale_update(scale, tracker, f, 2.0, 0.5, interval)
    # independently: every inf halves; every full run of `interval` finite steps doubles
    backoffs = sum(found)
    runs, run = [], 0
    for f in found:
        if f:
            runs.append(run)
            run = 0
        else:
            run += 1
    runs.append(run)
    growths = sum(r // interval for r in runs)
    assert scale == 2.0**16 * 2.0**growths * 0.5**backoffs
    assert tracker == runs[-1] % interval


def test_grad_scaler_defaults_are_pytorchs():
    s = GradScaler()
    assert (s.scale, s.growth_factor, s.backoff_factor, s.growth_interval) == (65536.0, 2.0, 0.5, 2000)
    for _ in range(1999):
        s.update(False)
    assert s.scale == 65536.0
    s.update(False)
    assert s.scale == 131072.0 and s.growth_tracker == 0
    s.update(True)
    assert s.scale == 65536.0
    static = GradScaler(1024.0, dynamic=False)
    static.update(True)
    assert static.scale == 1024.0 and static.skipped == [True]
    with pytest.raises(ValueError, match="growth_factor"):
        GradScaler(growth_factor=0.5)


@given(st.lists(st.sampled_from(["ok", "inf", "nan", "ok"]), min_size=1, max_size=12), seeds,
       st.sampled_from(["sgd", "momentum", "adam"]))
def test_dynamic_loss_scaling_skips_exactly_the_non_finite_steps(kinds, seed, opt_name):
    rng = np.random.default_rng(seed)
    params = {"W": rng.standard_normal((3, 2)).astype(np.float32)}
    opt = {"sgd": SGD(0.1), "momentum": SGD(0.1, momentum=0.9), "adam": Adam(0.01)}[opt_name]
    scaler = GradScaler(init_scale=8.0, growth_interval=3)
    for kind in kinds:
        g = (rng.standard_normal((3, 2)) * scaler.scale).astype(np.float32)
        if kind != "ok":
            g[rng.integers(3), rng.integers(2)] = np.inf if kind == "inf" else np.nan
        before, t_before = params["W"].copy(), opt.t
        skipped = scaled_step(opt, params, {"W": g}, scaler)
        assert skipped == (kind != "ok")
        if skipped:
            assert np.array_equal(params["W"], before) and opt.t == t_before
        else:
            assert not np.array_equal(params["W"], before)
    assert scaler.skipped == [k != "ok" for k in kinds]


def test_unscale_then_clip_versus_clip_then_unscale():
    g = {"W": np.full((4,), 0.5, np.float32)}  # norm 1
    scaler = GradScaler(2.0**16)
    scaled = {"W": g["W"] * np.float32(scaler.scale)}
    right, _ = scaler.unscale(scaled)
    right, norm = clip.clip_by_global_norm(right, 0.5)
    wrong, _ = clip.clip_by_global_norm(scaled, 0.5)
    wrong, _ = scaler.unscale(wrong)
    assert np.isclose(np.linalg.norm(right["W"]), 0.5)
    assert np.isclose(np.linalg.norm(wrong["W"]), 0.5 / 2**16)  # the threshold was met 65536x too early


# --------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def trained():
    x, y = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, seed=0)
    model = MLP([64, 64, 10], seed=0)
    fit(model, Adam(1e-3), x_tr, y_tr, epochs=30, batch_size=32, verbose=False)
    return model, x_tr, y_tr


def test_float32_format_reproduces_the_plain_backward(trained):
    model, x, y = trained
    loss, grads = model.copy().loss_and_grads(x[:32], y[:32])
    loss32, grads32 = half_loss_and_grads(model.copy(), x[:32], y[:32], "float32", 1.0)
    assert loss == loss32
    assert all(np.array_equal(grads[k], grads32[k]) for k in grads)


def test_loss_scaling_saves_the_gradients_float16_flushes(trained):
    model, x, y = trained
    plain = gradient_underflow(model, x[:32], y[:32], "float16", 1.0)
    scaled = gradient_underflow(model, x[:32], y[:32], "float16", 2.0**16)
    assert plain["activation"] > 0.005
    assert scaled == {"parameter": 0.0, "activation": 0.0, "all": 0.0}
    assert gradient_underflow(model, x[:32], y[:32], "bfloat16", 1.0)["all"] == 0.0  # float32's range


def test_fit_half_trains_with_float32_master_weights_and_skips_overflow(trained):
    _, x, y = trained
    model = MLP([64, 32, 10], seed=1)
    scaler = GradScaler(init_scale=2.0**30, growth_interval=50)  # overflows at first
    hist = fit_half(model, Adam(1e-2), x[:640], y[:640], epochs=3, batch_size=32, fmt="float16",
                    scaler=scaler, seed=0)
    assert model.dtype == np.float32 and model.params["W1"].dtype == np.float32
    assert hist.skipped[0] and hist.n_skipped < 20
    assert hist.scale[hist.skipped.index(False)] < 2.0**30  # backed off until finite
    assert hist.train_acc[-1] > 0.8
    bf = MLP([64, 32, 10], seed=1)
    hist_bf = fit_half(bf, Adam(1e-2), x[:640], y[:640], epochs=3, batch_size=32, fmt="bfloat16")
    assert hist_bf.n_skipped == 0 and hist_bf.train_acc[-1] > 0.8
    with pytest.raises(TypeError, match="master"):
        fit_half(MLP([64, 10], dtype=np.float64), SGD(0.1), x, y, 1, 32)
    with pytest.raises(ValueError, match="fmt"):
        fit_half(MLP([64, 10]), SGD(0.1), x, y, 1, 32, fmt="fp8")


def test_fit_half_in_float32_is_fit_bit_for_bit(trained):
    _, x, y = trained
    a, b = MLP([64, 16, 10], seed=2), MLP([64, 16, 10], seed=2)
    fit(a, Adam(1e-3), x[:320], y[:320], epochs=2, batch_size=32, seed=5, verbose=False)
    fit_half(b, Adam(1e-3), x[:320], y[:320], epochs=2, batch_size=32, fmt="float32", seed=5)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
