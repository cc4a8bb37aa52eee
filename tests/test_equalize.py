"""Cross-layer equalization and high-bias absorption (nnref.quant.equalize)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from nnref.mlp import MLP
from nnref.quant.equalize import (
    absorb_high_biases,
    absorption_amounts,
    channel_ranges,
    cross_layer_equalization,
    equalization_scales,
    equalize_pair,
)
from tests.strategies import relu_mlps_with_data


def _forward(model, x):
    return model.forward(x).astype(np.float64)


@settings(max_examples=25)
@given(relu_mlps_with_data())
def test_equalization_leaves_the_float_function_unchanged(case):
    model, x = case
    eq = cross_layer_equalization(model)
    ref = _forward(model, x)
    np.testing.assert_allclose(_forward(eq, x), ref, rtol=1e-9, atol=1e-9 * (1 + np.abs(ref).max()))


@settings(max_examples=25)
@given(relu_mlps_with_data())
def test_equalization_makes_each_pairs_channel_ranges_equal(case):
    model, _ = case
    eq = cross_layer_equalization(model, max_sweeps=200, tol=1e-12)
    for a, b in zip(eq.linears[:-1], eq.linears[1:]):
        r1, r2 = channel_ranges(a.W, b.W)
        alive = (r1 > 0) & (r2 > 0)
        np.testing.assert_allclose(r1[alive], r2[alive], rtol=1e-6)


@settings(max_examples=25)
@given(relu_mlps_with_data(max_layers=2))
def test_two_layers_are_equal_after_one_sweep_and_the_scales_are_the_geometric_mean(case):
    model, _ = case
    (a, b), eq = model.linears, cross_layer_equalization(model, max_sweeps=1)
    r1, r2 = channel_ranges(a.W, b.W)
    s = equalization_scales(r1, r2)
    np.testing.assert_allclose(channel_ranges(*[lin.W for lin in eq.linears])[0], np.sqrt(r1 * r2), rtol=1e-12)
    np.testing.assert_allclose(eq.linears[0].W, a.W / s, rtol=1e-12)
    np.testing.assert_allclose(eq.linears[1].W, b.W * s[:, None], rtol=1e-12)


def test_equalization_scales_worked_example():
    s = equalization_scales(np.array([4.0, 1.0, 0.0, 2.0]), np.array([1.0, 4.0, 3.0, 2.0]))
    # sqrt(4 * 1) / 1 = 2, sqrt(1 * 4) / 4 = 0.5, a dead channel keeps 1, equal ranges 1
    np.testing.assert_array_equal(s, [2.0, 0.5, 1.0, 1.0])
    W1 = np.array([[4.0, -1.0], [2.0, 0.5]])
    W2 = np.array([[1.0, -0.5], [4.0, 2.0]])
    b1 = np.array([2.0, 1.0])
    W1e, b1e, W2e = equalize_pair(W1, b1, W2, equalization_scales(*channel_ranges(W1, W2)))
    np.testing.assert_array_equal(W1e, [[2.0, -2.0], [1.0, 1.0]])
    np.testing.assert_array_equal(b1e, [1.0, 2.0])
    np.testing.assert_array_equal(W2e, [[2.0, -1.0], [2.0, 1.0]])


def test_absorption_amounts_worked_example():
    np.testing.assert_array_equal(absorption_amounts([5.0, 1.0, -2.0], [1.0, 1.0, 0.0]), [2.0, 0.0, 0.0])


@settings(max_examples=25)
@given(relu_mlps_with_data())
def test_absorbing_the_observed_minimum_leaves_the_outputs_on_that_data_unchanged(case):
    model, x = case
    new = absorb_high_biases(model, x, n_std=None)
    ref = _forward(model, x)
    np.testing.assert_allclose(_forward(new, x), ref, rtol=1e-9, atol=1e-9 * (1 + np.abs(ref).max()))
    assert np.all(new.linears[0].b <= model.linears[0].b)  # moves a non-negative amount out


def test_absorption_moves_a_large_bias_and_keeps_the_function():
    model = MLP([3, 4, 2], seed=0, dtype=np.float64)
    model.linears[0].b[...] = [10.0, 0.0, 5.0, -1.0]
    x = np.random.default_rng(0).uniform(0, 1, size=(200, 3))
    new = absorb_high_biases(model, x, n_std=3.0)
    assert new.linears[0].b[0] < 10.0 and new.linears[0].b[3] == -1.0
    np.testing.assert_allclose(_forward(new, x), _forward(model, x), rtol=1e-9, atol=1e-9)


def test_equalization_refuses_activations_without_positive_homogeneity():
    with pytest.raises(ValueError, match="ReLU or LeakyReLU"):
        cross_layer_equalization(MLP([3, 4, 2], activation="tanh"))
    with pytest.raises(ValueError, match="max_sweeps"):
        cross_layer_equalization(MLP([3, 4, 2]), max_sweeps=0)
    with pytest.raises(ValueError, match="n_std"):
        absorb_high_biases(MLP([3, 4, 2]), np.zeros((2, 3)), n_std=-1.0)
