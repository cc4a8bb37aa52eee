"""Tests for nnref.gradcheck: central differences on functions with known gradients,
rel_error's definition, check_gradients on models (and that it catches a broken backward)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnref import layers
from nnref.gradcheck import check_gradients, numerical_gradient, rel_error
from nnref.mlp import MLP
from strategies import float_arrays, seeds, widths

unit_grid = st.integers(-64, 64).map(lambda k: k / 32)  # [-2, 2] on a grid of 1/32
# numerical_gradient itself is checked on small arrays (its cost is 2 f-calls per entry);
# the layer and model tests exercise it on the full batch/width ranges
shapes = st.tuples(st.integers(1, 8), st.integers(1, 8))


@given(float_arrays(shapes, unit_grid))
def test_numerical_gradient_of_sum_of_squares_is_2x(x):
    # (f(x + h) - f(x - h)) / 2h for f = x^2 is ((x+h)^2 - (x-h)^2) / 2h = 2x exactly in
    # real arithmetic (no truncation error for a quadratic); only rounding remains: f is a
    # sum of up to 64 squares <= 4, so |f| <= 256, whose float64 spacing is 5.7e-14; a few
    # of those over 2h = 2e-6 is ~1e-7 at worst
    num = numerical_gradient(lambda v: np.sum(v * v), x)
    np.testing.assert_allclose(num, 2 * x, rtol=0, atol=3e-7)


@given(float_arrays(shapes, unit_grid))
def test_numerical_gradient_of_sum_of_sines_is_cosine(x):
    # truncation error h^2/6 * |f'''| <= 2e-13 for h = 1e-6; rounding: |f| <= 64, whose
    # spacing 1.4e-14 over 2h is 7e-9, a few times over at worst
    num = numerical_gradient(lambda v: np.sum(np.sin(v)), x)
    np.testing.assert_allclose(num, np.cos(x), rtol=0, atol=1e-7)


@given(n=widths, seed=seeds)
def test_numerical_gradient_of_quadratic_form(n, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n))
    x = rng.standard_normal(n)
    # d/dx (x^T A x) = (A + A^T) x
    num = numerical_gradient(lambda v: v @ a @ v, x)
    assert rel_error(num, (a + a.T) @ x) < 1e-6


@given(float_arrays(shapes, unit_grid))
def test_numerical_gradient_restores_x_bitwise(x):
    before = x.copy()
    numerical_gradient(lambda v: np.sum(np.exp(v)), x)
    np.testing.assert_array_equal(x, before)


def test_numerical_gradient_perturbs_x_in_place_one_entry_at_a_time():
    x = np.array([1.0, 2.0, 3.0])
    seen = []
    numerical_gradient(lambda v: seen.append(v.copy()) or 0.0, x, h=0.5)
    # entry i is set to x_i + h, then x_i - h, the others untouched
    expected = [[1.5, 2, 3], [0.5, 2, 3], [1, 2.5, 3], [1, 1.5, 3], [1, 2, 3.5], [1, 2, 2.5]]
    np.testing.assert_array_equal(seen, expected)


def test_numerical_gradient_worked_example():
    # f(x) = x0 * x1 at (3, -2), h = 0.5:
    # df/dx0 ~ (3.5 * -2 - 2.5 * -2) / 1 = -2 ; df/dx1 ~ (3 * -1.5 - 3 * -2.5) / 1 = 3
    x = np.array([3.0, -2.0])
    np.testing.assert_array_equal(numerical_gradient(lambda v: v[0] * v[1], x, h=0.5), [-2.0, 3.0])


def test_rel_error_worked_examples():
    # max |a - b| = 0.5, scale max(2, 2.5) = 2.5 -> 0.2
    assert rel_error(np.array([1.0, 2.0]), np.array([1.0, 2.5])) == pytest.approx(0.2, rel=1e-15)
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    assert rel_error(np.zeros((0,)), np.zeros((0,))) == 0.0
    # an all-zero gradient against anything non-zero is a 100% error
    assert rel_error(np.zeros(2), np.array([0.0, 1e-3])) == 1.0


@given(st.tuples(widths).flatmap(lambda s: st.tuples(float_arrays(s, unit_grid),
                                                     float_arrays(s, unit_grid))),
       st.floats(1e-3, 1e3))
def test_rel_error_laws(ab, k):
    a, b = ab
    e = rel_error(a, b)
    assert 0.0 <= e <= 2.0  # |a - b| <= |a| + |b| <= 2 * scale
    assert e == rel_error(b, a)
    assert rel_error(a, a) == 0.0
    assert rel_error(k * a, k * b) == pytest.approx(e, rel=1e-12, abs=1e-300)


def test_check_gradients_on_float32_model_reports_every_parameter_and_leaves_it_alone():
    model = MLP([4, 5, 3], activation="tanh", seed=3)  # float32
    before = {k: v.copy() for k, v in model.params.items()}
    x = np.random.default_rng(0).standard_normal((6, 4))
    errs = check_gradients(model, x, np.array([0, 1, 2, 0, 1, 2]))
    assert list(errs) == ["W1", "b1", "W2", "b2"]
    assert max(errs.values()) < 1e-6
    assert model.dtype == np.float32
    for k, v in model.params.items():
        np.testing.assert_array_equal(v, before[k])


def test_check_gradients_with_mse():
    model = MLP([3, 4, 2], activation="sigmoid", seed=1, dtype=np.float64)
    rng = np.random.default_rng(1)
    errs = check_gradients(model, rng.standard_normal((5, 3)), rng.standard_normal((5, 2)), loss="mse")
    assert max(errs.values()) < 1e-6


def test_check_gradients_catches_a_broken_backward(monkeypatch):
    # sabotage: tanh's derivative taken as 1 - y instead of 1 - y^2
    monkeypatch.setattr(layers.Tanh, "backward", lambda self, g: g * (1 - self._y))
    model = MLP([4, 5, 3], activation="tanh", seed=3)
    x = np.random.default_rng(0).standard_normal((6, 4))
    errs = check_gradients(model, x, np.array([0, 1, 2, 0, 1, 2]))
    # the layer after tanh is unaffected, the ones before it are wrong by O(1)
    assert errs["W2"] < 1e-6 and errs["b2"] < 1e-6
    assert errs["W1"] > 1e-2 and errs["b1"] > 1e-2


def test_bad_input():
    with pytest.raises(TypeError, match="x: expected a float64 ndarray.*float32"):
        numerical_gradient(np.sum, np.zeros(3, dtype=np.float32))
    with pytest.raises(TypeError, match="x: expected a float64 ndarray.*list"):
        numerical_gradient(np.sum, [1.0, 2.0])
    with pytest.raises(ValueError, match="h: expected a number > 0"):
        numerical_gradient(np.sum, np.zeros(3), h=0.0)
    with pytest.raises(ValueError, match=r"b: expected the shape of a \(2,\), got \(3,\)"):
        rel_error(np.zeros(2), np.zeros(3))
