"""Tests for nnref.quant.calibrate: which tensor each observer sees, and calibration laws.

References are computed here from the formulas (``z = h @ W + b``, ``h' = act(z)``) with
numpy, not by calling the model's layers. Where exactness matters across batch sizes the
model has dyadic weights and inputs (small integers over powers of two): then every float
sum is exact, so no BLAS summation order can change a bit, and the laws hold bitwise.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnref.layers import stable_sigmoid
from nnref.mlp import MLP
from nnref.quant.calibrate import Calibration, calibrate
from nnref.quant.observers import (
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    PerChannelMinMaxObserver,
)
from strategies import seeds

ACTS = {
    "relu": lambda z: np.maximum(z, np.float32(0)),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z),
    "tanh": np.tanh,
    "sigmoid": stable_sigmoid,
}


def random_model(sizes, activation, seed) -> MLP:
    return MLP(sizes, activation=activation, seed=seed)


def dyadic_model(sizes, seed) -> MLP:
    """Weights and biases in {-4..4} / 8: with inputs in {0..16} / 16 every product is a
    multiple of 2**-7 and every partial sum a small one, exact in float32 whatever order."""
    model = MLP(sizes, activation="relu", seed=seed)
    rng = np.random.default_rng(seed)
    model.set_params({k: rng.integers(-4, 5, v.shape) / 8 for k, v in model.params.items()})
    return model


def dyadic_inputs(n, features, seed) -> np.ndarray:
    return (np.random.default_rng(seed + 1).integers(0, 17, (n, features)) / 16).astype(np.float32)


def reference_tensors(model: MLP, x: np.ndarray):
    """(input, [z_l], [h_l]) from the formulas, in float32 as the model computes."""
    h = x.astype(np.float32)
    zs, hs = [], []
    n = len(model.linears)
    for i, lin in enumerate(model.linears):
        z = h @ lin.W + lin.b
        h = z if i == n - 1 else ACTS[model.activation](z)
        zs.append(z)
        hs.append(h)
    return x.astype(np.float32), zs, hs


# --------------------------------------------------------------------------- what is observed


@given(seed=seeds, activation=st.sampled_from(sorted(ACTS)), n=st.integers(1, 40),
       depth=st.integers(1, 3))
def test_minmax_observers_hold_the_exact_range_of_each_tensor(seed, activation, n, depth):
    sizes = [5] + [4] * (depth - 1) + [3]
    model = random_model(sizes, activation, seed % 1000)
    x = np.random.default_rng(seed).standard_normal((n, 5)).astype(np.float32)
    cal = calibrate(model, x, batch_size=n)  # one batch: the same products as the reference
    x_ref, zs, hs = reference_tensors(model, x)
    assert isinstance(cal, Calibration) and cal.num_layers == len(sizes) - 1
    assert (cal.input.min_val, cal.input.max_val) == (float(x_ref.min()), float(x_ref.max()))
    for obs_z, obs_h, z, h in zip(cal.preactivations, cal.outputs, zs, hs):
        assert (obs_z.min_val, obs_z.max_val) == (float(z.min()), float(z.max()))
        assert (obs_h.min_val, obs_h.max_val) == (float(h.min()), float(h.max()))
        assert obs_z.count == obs_h.count == z.size
    # The last layer has no activation: its output is the logits, i.e. its pre-activation.
    assert (cal.outputs[-1].min_val, cal.outputs[-1].max_val) == (cal.preactivations[-1].min_val,
                                                                   cal.preactivations[-1].max_val)


@given(seed=seeds, activation=st.sampled_from(sorted(ACTS)), batch_size=st.integers(1, 50))
def test_monotone_activation_maps_the_preactivation_range_onto_the_output_range(seed, activation, batch_size):
    # Every activation here is elementwise and non-decreasing, so the output range of a
    # hidden layer is exactly act(pre-activation range): act(min z) = min act(z).
    model = random_model([6, 5, 4, 2], activation, seed % 1000)
    x = np.random.default_rng(seed).uniform(-3, 3, (30, 6)).astype(np.float32)
    cal = calibrate(model, x, batch_size=batch_size)
    act = ACTS[activation]
    for obs_z, obs_h in zip(cal.preactivations[:-1], cal.outputs[:-1]):
        ends = act(np.array([obs_z.min_val, obs_z.max_val], dtype=np.float32))
        assert (obs_h.min_val, obs_h.max_val) == (float(ends[0]), float(ends[1]))


def test_ranges_contain_every_activation_of_every_batch():
    model = random_model([8, 6, 3], "tanh", 3)
    x = np.random.default_rng(0).standard_normal((101, 8)).astype(np.float32)
    cal = calibrate(model, x, batch_size=7)
    for start in range(0, 101, 7):  # the same batches, checked one by one
        _, zs, hs = reference_tensors(model, x[start:start + 7])
        for obs, t in zip(cal.preactivations + cal.outputs, zs + hs):
            assert obs.min_val <= t.min() and t.max() <= obs.max_val


# --------------------------------------------------------------------------- batch size


@given(seed=seeds, batch_size=st.integers(1, 60))
def test_batch_size_does_not_change_minmax_ranges(seed, batch_size):
    model = dyadic_model([7, 5, 4, 3], seed % 1000)
    x = dyadic_inputs(45, 7, seed % 1000)
    whole = calibrate(model, x, batch_size=45)
    split = calibrate(model, x, batch_size=batch_size)
    for a, b in zip([whole.input] + whole.preactivations + whole.outputs,
                    [split.input] + split.preactivations + split.outputs):
        assert (a.min_val, a.max_val, a.count) == (b.min_val, b.max_val, b.count)


def test_default_batch_size_equals_one_batch_on_dyadic_data():
    model = dyadic_model([4, 3, 2], 0)
    x = dyadic_inputs(1300, 4, 0)  # three batches of the default 512
    a, b = calibrate(model, x), calibrate(model, x, batch_size=1300)
    assert [o.max_val for o in a.outputs] == [o.max_val for o in b.outputs]


# --------------------------------------------------------------------------- observer factories


def test_moving_average_factory_averages_over_batches():
    # Input observer, c = 0.5, batches of 2 rows: batch minima 0, 2 and maxima 1, 5.
    # min: 0 then 0 + 0.5 * (2 - 0) = 1;  max: 1 then 1 + 0.5 * (5 - 1) = 3.
    model = MLP([1, 2, 1], seed=0)
    x = np.array([[0.0], [1.0], [2.0], [5.0]], dtype=np.float32)
    cal = calibrate(model, x, observer=lambda: MovingAverageMinMaxObserver(0.5), batch_size=2)
    assert isinstance(cal.input, MovingAverageMinMaxObserver)
    assert (cal.input.min_val, cal.input.max_val) == (1.0, 3.0)
    # One batch: the average is just that batch's range.
    one = calibrate(model, x, observer=lambda: MovingAverageMinMaxObserver(0.5), batch_size=4)
    assert (one.input.min_val, one.input.max_val) == (0.0, 5.0)


def test_with_averaging_constant_one_the_range_is_the_last_batch():
    model = random_model([3, 4, 2], "relu", 1)
    x = np.random.default_rng(5).standard_normal((10, 3)).astype(np.float32)
    cal = calibrate(model, x, observer=lambda: MovingAverageMinMaxObserver(1.0), batch_size=4)
    _, zs, hs = reference_tensors(model, x[8:])
    assert (cal.outputs[0].min_val, cal.outputs[0].max_val) == (float(hs[0].min()), float(hs[0].max()))


def test_every_tensor_gets_its_own_observer():
    cal = calibrate(random_model([3, 4, 4, 2], "relu", 0), np.ones((2, 3)))
    observers = [cal.input] + cal.outputs + cal.preactivations
    assert len({id(o) for o in observers}) == len(observers) == 7
    assert all(type(o) is MinMaxObserver for o in observers)


def test_calibration_leaves_the_parameters_unchanged():
    model = random_model([3, 4, 2], "sigmoid", 2)
    before = {k: v.copy() for k, v in model.params.items()}
    calibrate(model, np.random.default_rng(0).standard_normal((9, 3)))
    assert all(np.array_equal(before[k], v) for k, v in model.params.items())


def test_repr_lists_every_layer():
    text = repr(calibrate(random_model([3, 4, 2], "relu", 0), np.ones((2, 3))))
    assert "layer 0" in text and "layer 1" in text and "input" in text


# --------------------------------------------------------------------------- bad input


def test_bad_arguments_raise_clear_errors():
    model = random_model([3, 4, 2], "relu", 0)
    x = np.ones((4, 3))
    with pytest.raises(TypeError, match="model"):
        calibrate("not a model", x)
    with pytest.raises(ValueError, match="x: expected 3 features"):
        calibrate(model, np.ones((4, 5)))
    with pytest.raises(ValueError, match="x: expected a 2-D"):
        calibrate(model, np.ones(3))
    with pytest.raises(ValueError, match="x: expected finite"):
        calibrate(model, np.full((2, 3), np.nan))
    with pytest.raises(TypeError, match="observer"):
        calibrate(model, x, observer=3)
    with pytest.raises(TypeError, match="observer"):
        calibrate(model, x, observer=lambda: "not an observer")
    with pytest.raises(ValueError, match="batch_size"):
        calibrate(model, x, batch_size=0)
    with pytest.raises(TypeError, match="batch_size"):
        calibrate(model, x, batch_size=2.0)


def test_per_channel_observer_factory_is_accepted_by_calibrate():
    # calibrate itself is agnostic; quantize_model is where per-tensor is required.
    cal = calibrate(random_model([3, 4, 2], "relu", 0), np.ones((5, 3)),
                    observer=lambda: PerChannelMinMaxObserver(axis=-1))
    assert cal.outputs[0].min_val.shape == (4,)
    assert "layer 1" in repr(cal)
