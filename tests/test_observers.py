"""Tests of nnref.quant.observers: calibration ranges and the parameters they give."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnref.quant.observers import (
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MSEObserver,
    PercentileObserver,
    PerChannelMinMaxObserver,
)
from nnref.quant.ops import fake_quantize
from nnref.quant.qparams import TFLITE_INT8_ACTIVATIONS, TFLITE_INT8_WEIGHTS, choose_qparams
from tests.strategies import float_arrays, quant_settings, rounding_modes

batch = float_arrays(st.tuples(st.integers(1, 6), st.integers(1, 5)))
batches = st.lists(batch, min_size=1, max_size=4)


@st.composite
def same_width_batches(draw, max_batches=4):
    """Batches of shape (n_i, C) sharing the channel count C."""
    C = draw(st.integers(1, 5))
    sizes = draw(st.lists(st.integers(1, 6), min_size=1, max_size=max_batches))
    return [draw(float_arrays((n, C))) for n in sizes]


def observe_all(obs, xs):
    for x in xs:
        assert obs.observe(x) is obs
    return obs


# ---------------------------------------------------------------------------------------
# Common behaviour
# ---------------------------------------------------------------------------------------

ALL = [
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    lambda: PerChannelMinMaxObserver(axis=-1),
    PercentileObserver,
    MSEObserver,
]


@pytest.mark.parametrize("make", ALL)
def test_before_observe(make):
    obs = make()
    assert obs.min_val is None and obs.max_val is None and obs.count == 0
    with pytest.raises(ValueError, match="observe"):
        obs.qparams()


@pytest.mark.parametrize("make", ALL)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_data_is_an_error(make, bad):
    obs = make()
    with pytest.raises(ValueError, match="x"):
        obs.observe(np.array([[0.0, 1.0], [bad, 2.0]]))
    assert obs.count == 0  # nothing was recorded


@pytest.mark.parametrize("make", ALL)
def test_empty_and_non_numeric_data_are_errors(make):
    with pytest.raises(ValueError, match="x"):
        make().observe(np.zeros((0, 2)))
    with pytest.raises(TypeError, match="x"):
        make().observe([["a", "b"]])


@pytest.mark.parametrize("make", [MinMaxObserver, PercentileObserver, MSEObserver, MovingAverageMinMaxObserver])
def test_qparams_argument_errors(make):
    obs = make().observe(np.array([[-1.0, 2.0]]))
    with pytest.raises(TypeError, match="scheme"):
        obs.qparams("tflite_int8_activations", bits=4)
    with pytest.raises(TypeError, match="axis"):
        obs.qparams(axis=0)
    with pytest.raises(ValueError, match="scheme"):
        obs.qparams(TFLITE_INT8_WEIGHTS)  # per-channel scheme on a per-tensor observer
    with pytest.raises(ValueError, match="scheme"):
        obs.qparams("int8")
    with pytest.raises(ValueError, match="bits"):
        obs.qparams(bits=1)


# ---------------------------------------------------------------------------------------
# MinMaxObserver
# ---------------------------------------------------------------------------------------


@given(xs=batches, kw=quant_settings())
def test_minmax_is_the_range_of_everything_seen(xs, kw):
    obs = observe_all(MinMaxObserver(), xs)
    everything = np.concatenate([x.ravel() for x in xs])
    assert obs.min_val == everything.min() and obs.max_val == everything.max()
    assert obs.count == everything.size
    # observing in batches equals observing the concatenation
    whole = MinMaxObserver().observe(everything)
    assert (whole.min_val, whole.max_val) == (obs.min_val, obs.max_val)
    assert obs.qparams(**kw) == choose_qparams(everything.min(), everything.max(), **kw)


def test_minmax_worked_example_and_scheme():
    obs = MinMaxObserver().observe([0.5, 3.0]).observe([[-1.0, 2.0]])
    assert (obs.min_val, obs.max_val) == (-1.0, 3.0)
    # TFLite activations on [-1, 3]: scale 4/255, zero point -128 - round(-63.75) = -64
    for scheme in ("tflite_int8_activations", TFLITE_INT8_ACTIVATIONS):
        qp = obs.qparams(scheme)
        assert qp.scale == np.float32(4 / 255) and qp.zero_point == -64


# ---------------------------------------------------------------------------------------
# MovingAverageMinMaxObserver
# ---------------------------------------------------------------------------------------


def test_moving_average_worked_example():
    # first batch [0, 4] sets the range; second batch [-2, 2] with c = 0.5:
    # min = 0 + 0.5 * (-2 - 0) = -1,  max = 4 + 0.5 * (2 - 4) = 3
    obs = MovingAverageMinMaxObserver(0.5).observe([0.0, 4.0]).observe([-2.0, 2.0])
    assert (obs.min_val, obs.max_val) == (-1.0, 3.0)
    # PyTorch's default c = 0.01: min = 0 + 0.01 * (-2) = -0.02, max = 4 + 0.01 * (2 - 4) = 3.98
    obs = MovingAverageMinMaxObserver().observe([0.0, 4.0]).observe([-2.0, 2.0])
    assert obs.min_val == pytest.approx(-0.02, abs=1e-15) and obs.max_val == pytest.approx(3.98, abs=1e-15)
    # a third batch [1, 1]: min = -0.02 + 0.01 * (1 + 0.02) = -0.0098, max = 3.98 + 0.01 * (1 - 3.98) = 3.9502
    obs.observe([1.0, 1.0])
    assert obs.min_val == pytest.approx(-0.0098, abs=1e-15) and obs.max_val == pytest.approx(3.9502, abs=1e-15)


@given(xs=batches, c=st.floats(0.001, 1.0))
def test_moving_average_follows_the_formula(xs, c):
    obs = observe_all(MovingAverageMinMaxObserver(c), xs)
    mins, maxs = [x.min() for x in xs], [x.max() for x in xs]
    mn, mx = mins[0], maxs[0]
    for bmin, bmax in zip(mins[1:], maxs[1:]):
        mn += c * (bmin - mn)
        mx += c * (bmax - mx)
    assert obs.min_val == mn and obs.max_val == mx
    # each is a convex combination of batch values: it lies within their hull (up to the
    # rounding of the updates, a few ulps of the largest magnitude)
    eps = 1e-12 * max(1.0, np.max(np.abs(mins + maxs)))
    assert min(mins) - eps <= obs.min_val <= max(mins) + eps
    assert min(maxs) - eps <= obs.max_val <= max(maxs) + eps


def test_moving_average_c_one_tracks_last_batch():
    obs = MovingAverageMinMaxObserver(1.0).observe([-5.0, 5.0]).observe([1.0, 2.0])
    assert (obs.min_val, obs.max_val) == (1.0, 2.0)


@pytest.mark.parametrize("c", [0.0, -0.1, 1.5, np.nan])
def test_moving_average_rejects_bad_constant(c):
    with pytest.raises(ValueError, match="averaging_constant"):
        MovingAverageMinMaxObserver(c)


# ---------------------------------------------------------------------------------------
# PerChannelMinMaxObserver
# ---------------------------------------------------------------------------------------


@given(xs=same_width_batches(), kw=quant_settings())
def test_per_channel_ranges_contain_every_value(xs, kw):
    obs = observe_all(PerChannelMinMaxObserver(axis=-1), xs)
    everything = np.concatenate(xs, axis=0)
    assert np.array_equal(obs.min_val, everything.min(axis=0))
    assert np.array_equal(obs.max_val, everything.max(axis=0))
    assert np.all(everything >= obs.min_val) and np.all(everything <= obs.max_val)
    qp = obs.qparams(**kw)
    assert qp.per_channel and qp.axis == -1 and qp.num_channels == everything.shape[1]
    for c in range(everything.shape[1]):
        assert qp.channel(c) == MinMaxObserver().observe(everything[:, c]).qparams(**kw)


@given(x=float_arrays(st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4))), axis=st.integers(-3, 2))
def test_per_channel_any_axis(x, axis):
    obs = PerChannelMinMaxObserver(axis).observe(x)
    moved = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
    assert np.array_equal(obs.min_val, moved.min(axis=1))
    assert np.array_equal(obs.max_val, moved.max(axis=1))
    assert obs.qparams().axis == axis


def test_per_channel_worked_example_with_weight_preset():
    # weight (in=2, out=2): column maxima of |w| are 2.54 and 1.27
    w = np.array([[2.54, -1.27], [-1.0, 0.5]])
    obs = PerChannelMinMaxObserver(axis=1).observe(w)
    assert obs.min_val.tolist() == [-1.0, -1.27] and obs.max_val.tolist() == [2.54, 0.5]
    qp = obs.qparams("tflite_int8_weights")  # channel_axis -1 is axis 1 of a 2-D weight
    assert qp.scale.tolist() == [np.float32(0.02), np.float32(0.01)]  # 2.54/127, 1.27/127
    assert qp.axis == 1 and qp.zero_point.tolist() == [0, 0]


def test_per_channel_errors():
    obs = PerChannelMinMaxObserver(axis=0).observe(np.ones((2, 3)))
    with pytest.raises(ValueError, match="x"):
        obs.observe(np.ones((3, 3)))  # 3 channels, earlier 2
    with pytest.raises(ValueError, match="scheme"):
        obs.qparams("tflite_int8_weights")  # channel_axis -1 is not axis 0 here
    with pytest.raises(ValueError, match="scheme"):
        obs.qparams("tflite_int8_activations")  # per-tensor scheme
    with pytest.raises(ValueError, match="scheme"):
        obs.qparams(dataclasses.replace(TFLITE_INT8_WEIGHTS, channel_axis=2))  # 2 % 2 == 0 but no axis 2
    with pytest.raises(ValueError, match="axis"):
        PerChannelMinMaxObserver(axis=2).observe(np.ones((2, 3)))
    with pytest.raises(TypeError, match="axis"):
        PerChannelMinMaxObserver(axis=1.0)


# ---------------------------------------------------------------------------------------
# PercentileObserver
# ---------------------------------------------------------------------------------------


def test_percentile_worked_example():
    # values 0, 1, ..., 100: the p-th percentile (linear interpolation) is p itself
    obs = PercentileObserver(99.0).observe(np.arange(101.0))
    assert (obs.min_val, obs.max_val) == (1.0, 99.0)
    # 0..10 at p = 95: position 0.95 * 10 = 9.5 -> 9.5; 5th percentile -> 0.5
    obs = PercentileObserver(95.0).observe(np.arange(11.0))
    assert obs.min_val == pytest.approx(0.5, abs=1e-12) and obs.max_val == pytest.approx(9.5, abs=1e-12)


@given(xs=batches, p=st.floats(50, 100), q=st.floats(50, 100), kw=quant_settings())
def test_percentile_ranges_are_nested_inside_min_max(xs, p, q, kw):
    lo_p, hi_p = sorted((p, q))
    a = observe_all(PercentileObserver(lo_p), xs)
    b = observe_all(PercentileObserver(hi_p), xs)
    m = observe_all(MinMaxObserver(), xs)
    assert m.min_val <= b.min_val <= a.min_val <= a.max_val <= b.max_val <= m.max_val
    # p = 100 without subsampling is exactly the min-max range
    full = observe_all(PercentileObserver(100.0), xs)
    assert (full.min_val, full.max_val) == (m.min_val, m.max_val)
    assert full.qparams(**kw) == m.qparams(**kw)


@given(seed=st.integers(0, 2**32 - 1), cap=st.integers(1, 50))
def test_percentile_subsample_is_a_deterministic_subset(seed, cap):
    rng = np.random.default_rng(seed)
    xs = [rng.normal(size=n) for n in (30, 1, 45)]
    a = observe_all(PercentileObserver(99.0, max_samples=cap, seed=seed), xs)
    b = observe_all(PercentileObserver(99.0, max_samples=cap, seed=seed), xs)
    kept = a.samples
    assert kept.size == min(cap, 76) and a.count == 76
    assert np.array_equal(np.sort(kept), np.sort(b.samples))  # same seed, same sample
    everything = np.concatenate(xs)
    assert np.all(np.isin(kept, everything))  # only observed values are kept
    assert np.unique(kept).size == kept.size  # without replacement (values are distinct)


def test_subsample_is_uniform_over_batches():
    # 2,000 zeros then 8,000 ones, 1,000 kept: a uniform sample holds ~200 zeros
    # (hypergeometric, standard deviation ~12); keeping the first values of each batch, or
    # of the stream, would not. Fixed seed: the count is the same on every run.
    for obs in (PercentileObserver(max_samples=1000, seed=3), MSEObserver(max_samples=1000, seed=3)):
        obs.observe(np.zeros(2000)).observe(np.ones(8000))
        zeros = int(np.sum(obs.samples == 0.0))
        assert obs.samples.size == 1000 and 140 <= zeros <= 260


def test_percentile_bad_arguments():
    for p in (49.0, 100.5):
        with pytest.raises(ValueError, match="percentile"):
            PercentileObserver(p)
    with pytest.raises(ValueError, match="max_samples"):
        PercentileObserver(max_samples=0)
    with pytest.raises(TypeError, match="seed"):
        PercentileObserver(seed="x")


# ---------------------------------------------------------------------------------------
# MSEObserver
# ---------------------------------------------------------------------------------------


@given(xs=batches, kw=quant_settings(bits=st.integers(2, 16)), rounding=rounding_modes, n=st.integers(1, 30))
def test_mse_error_never_exceeds_min_max(xs, kw, rounding, n):
    mse = observe_all(MSEObserver(num_candidates=n, rounding=rounding), xs)
    m = observe_all(MinMaxObserver(), xs)
    v = np.concatenate([x.ravel() for x in xs])
    qp = mse.qparams(**kw)
    err = np.mean((v - fake_quantize(v, qp, rounding)) ** 2)
    mm_err = np.mean((v - fake_quantize(v, m.qparams(**kw), rounding)) ** 2)
    assert err <= mm_err
    search = mse.last_search
    assert search.alphas.shape == search.errors.shape == (n,)
    assert search.alphas[-1] == 1.0 and np.all(np.diff(search.alphas) > 0)
    assert search.errors[-1] == mm_err  # alpha = 1 is the min-max range itself
    assert search.best_error == err == search.errors.min()
    # ties go to the largest alpha
    assert search.best_alpha == search.alphas[search.errors == search.errors.min()].max()
    assert (mse.min_val, mse.max_val) == (m.min_val, m.max_val)


def test_mse_clips_outliers_worked_example():
    # 10,000 values uniform in [-1, 1] and two outliers +-8, 4-bit symmetric (TFLite
    # convention: step = max|x| / 7). Min-max (alpha = 1, step 8/7) rounds the bulk with
    # error ~ (8/7)**2 / 12 = 0.109. alpha = 1/8 (range [-1, 1], step 1/7) costs
    # ~ (1/7)**2 / 12 = 0.0017 on the bulk plus 2 * (8 - 1)**2 / 10002 = 0.0098 for the
    # clamped outliers: ~ 0.0115, a tenth of min-max's. The search must shrink the range.
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-1, 1, 10_000), [8.0, -8.0]])
    obs = MSEObserver(num_candidates=32).observe(x)
    qp = obs.qparams(bits=4, symmetric=True)
    s = obs.last_search
    assert s.best_alpha < 0.5
    assert s.best_error < 0.2 * s.errors[-1]
    assert float(qp.scale) == pytest.approx(8 * s.best_alpha / 7, rel=1e-6)
    # an observer of the same data at 8 bits also prefers clipping, but less
    obs.qparams(bits=8, symmetric=True)
    assert obs.last_search.best_alpha > s.best_alpha


def test_mse_all_zero_data():
    obs = MSEObserver(num_candidates=5).observe(np.zeros(10))
    qp = obs.qparams()
    assert qp.scale == 1.0 and obs.last_search.best_alpha == 1.0 and obs.last_search.best_error == 0.0


def test_mse_bad_arguments():
    with pytest.raises(ValueError, match="num_candidates"):
        MSEObserver(num_candidates=0)
    with pytest.raises(ValueError, match="rounding"):
        MSEObserver(rounding="up")
    obs = MSEObserver().observe([1.0])
    with pytest.raises(ValueError, match="scheme"):
        obs.qparams("tflite_int8_weights")
