"""Tests for nnref.experiments: the exploding-gradient demonstration does what its
docstring says (plain SGD diverges, clipped SGD converges, for the reason given), is
deterministic, and its building blocks (data, sharpness, final loss) obey their laws."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnref import clip
from nnref.experiments import (
    DemoResult,
    compare_clippers,
    default_clippers,
    exploding_gradient_demo,
    final_loss,
    make_regression_data,
    sharpness,
)
from nnref.mlp import MLP
from nnref.optim import SGD
from nnref.train import History, fit

from strategies import float_arrays, seeds

# The bounds the tests hold the demonstration to. Predicting the mean scores var(y)
# (about 720 for seed 0), so "converged" means explaining 99.5% of the variance and
# "diverged" means a non-finite loss or one 100 times worse than predicting the mean.
CONVERGED_FRACTION = 0.005
DIVERGED_FACTOR = 100.0

HISTORY_FIELDS = ("loss", "grad_norm", "grad_norm_after", "clipped", "train_loss", "train_acc",
                  "val_loss", "val_acc")


@pytest.fixture(scope="module")
def demo() -> DemoResult:
    return exploding_gradient_demo()


def diverged(result: DemoResult) -> bool:
    v = result.unclipped_final_loss
    return not np.isfinite(v) or v > DIVERGED_FACTOR * result.baseline_loss


def assert_same_history(a: History, b: History) -> None:
    for name in HISTORY_FIELDS:
        # assert_array_equal treats NaN == NaN, which a diverged run needs.
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in a.param_grad_norm:
        np.testing.assert_array_equal(a.param_grad_norm[name], b.param_grad_norm[name], err_msg=name)
    assert (a.diverged, a.message, a.transform) == (b.diverged, b.message, b.transform)


# ------------------------------------------------------------------- the demonstration


def test_plain_sgd_diverges(demo):
    u = demo.unclipped
    assert diverged(demo)
    assert u.diverged and "non-finite" in u.message
    assert u.n_steps < 20  # it blows up within two epochs (8 steps each)
    # The gradient itself explodes: its largest norm dwarfs the first step's.
    assert np.nanmax(u.grad_norm) > 1e6 * u.grad_norm[0]


def test_clipped_sgd_converges(demo):
    c = demo.clipped
    assert not c.diverged
    assert c.n_steps == 400 and len(c.train_loss) == 50
    assert demo.clipped_final_loss < CONVERGED_FRACTION * demo.baseline_loss
    assert demo.clipped_final_loss == c.train_loss[-1]
    # Global-norm clipping's law, step by step: the norm the optimizer used is at most c.
    assert max(c.grad_norm_after) <= demo.max_norm * (1 + 1e-6)
    assert c.n_clipped > 0 and c.transform == "GlobalNorm(max_norm=1.0)"


def test_both_runs_share_data_init_and_batches(demo):
    # Until clipping changes the first update, the two runs are the same computation.
    assert demo.unclipped.loss[0] == demo.clipped.loss[0]
    assert demo.unclipped.grad_norm[0] == demo.clipped.grad_norm[0]
    for name in demo.clipped.param_grad_norm:
        assert demo.unclipped.param_grad_norm[name][0] == demo.clipped.param_grad_norm[name][0]


def test_the_mechanism_of_the_docstring(demo):
    # Point 3: at the shared initial weights lr x curvature is below 2 (a standardized
    # target would train), and the clipped run ends where it is far above 2.
    lr = demo.settings["lr"]
    assert 1.0 < lr * demo.sharpness_init < 2.0
    assert lr * demo.sharpness_clipped_end > 2.0 * 5
    # Point 1: the first gradient is much larger than with a standardized target.
    control = exploding_gradient_demo(target_scale=1.0, epochs=1)
    assert demo.unclipped.grad_norm[0] > 10 * control.unclipped.grad_norm[0]


def test_standardized_target_trains_without_clipping():
    # The control: same lr, same initial weights, S = 1; plain SGD converges.
    r = exploding_gradient_demo(target_scale=1.0)
    assert not r.unclipped.diverged
    assert r.unclipped_final_loss < 0.05 * r.baseline_loss
    assert r.sharpness_init == pytest.approx(exploding_gradient_demo(epochs=1).sharpness_init)


@pytest.mark.parametrize("seed", [1, 2])
def test_other_seeds_show_the_same_contrast(seed):
    r = exploding_gradient_demo(seed=seed)
    assert diverged(r)
    assert r.clipped_final_loss < CONVERGED_FRACTION * r.baseline_loss


def test_same_seed_gives_identical_runs(demo):
    again = exploding_gradient_demo()
    assert_same_history(demo.unclipped, again.unclipped)
    assert_same_history(demo.clipped, again.clipped)
    assert again.clipped_final_loss == demo.clipped_final_loss
    assert again.sharpness_clipped_end == demo.sharpness_clipped_end


def test_different_seed_gives_a_different_run(demo):
    other = exploding_gradient_demo(seed=1, epochs=1)
    assert other.clipped.loss[0] != demo.clipped.loss[0]


def test_report_mentions_both_losses_and_the_clipping(demo):
    text = demo.report()
    assert f"final loss {demo.unclipped_final_loss:.4g}" in text
    assert f"final loss {demo.clipped_final_loss:.4g}" in text
    c = demo.clipped
    assert f"clipping acted at {c.n_clipped}/{c.n_steps} steps" in text
    assert f"largest gradient norm {np.nanmax(c.grad_norm):.3g}" in text
    assert f"largest gradient norm {np.nanmax(demo.unclipped.grad_norm):.3g}" in text
    assert "diverged: " + demo.unclipped.message in text
    assert f"{demo.settings['lr'] * demo.sharpness_init:.3g} at the initial weights" in text


def test_settings_record_the_arguments():
    r = exploding_gradient_demo(max_norm=2.5, seed=3, epochs=1, lr=0.01)
    s = r.settings
    assert (s["max_norm"], s["seed"], s["epochs"], s["lr"]) == (2.5, 3, 1, 0.01)
    assert s["layer_sizes"] == [4, 32, 32, 1] and s["loss"] == "mse" and s["dtype"] == "float32"
    assert r.max_norm == 2.5 and r.clipped.transform == "GlobalNorm(max_norm=2.5)"
    assert r.clipped.n_steps == 8  # 256 examples in batches of 32


def test_demo_bad_input():
    with pytest.raises(ValueError, match="max_norm"):
        exploding_gradient_demo(max_norm=0.0)
    with pytest.raises(ValueError, match="lr"):
        exploding_gradient_demo(lr=-0.1)
    with pytest.raises(ValueError, match="epochs"):
        exploding_gradient_demo(epochs=0)
    with pytest.raises(ValueError, match="seed"):
        exploding_gradient_demo(seed=-1)
    with pytest.raises(TypeError, match="seed"):
        exploding_gradient_demo(seed=np.random.default_rng(0))
    with pytest.raises(ValueError, match="target_scale"):
        exploding_gradient_demo(target_scale=float("nan"))


# ---------------------------------------------------------------------- compare_clippers


@pytest.fixture(scope="module")
def comparison() -> dict:
    return compare_clippers()


def test_compare_clippers_default_runs(comparison, demo):
    assert list(comparison) == ["none", "value", "norm", "global_norm", "adaptive", "autoclip"]
    assert comparison["none"].diverged
    # The global-norm run IS the demonstration's clipped run.
    assert_same_history(comparison["global_norm"], demo.clipped)
    for label in ("value", "norm", "global_norm", "adaptive"):
        h = comparison[label]
        assert not h.diverged and final_loss(h) < CONVERGED_FRACTION * demo.baseline_loss, label
    # AutoClip's threshold is learned from the exploding norms: no divergence, no fit,
    # and it lets through norms a hundred times the other clippers' bound.
    auto = comparison["autoclip"]
    assert not auto.diverged and final_loss(auto) > 0.1 * demo.baseline_loss
    assert max(auto.grad_norm_after) > 100.0 * demo.max_norm


def test_compare_clippers_resets_stateful_clippers():
    auto = clip.AutoClip(10.0)
    first = compare_clippers({"auto": auto}, epochs=1)["auto"]
    assert auto.n_calls == 8
    second = compare_clippers({"auto": auto}, epochs=1)["auto"]
    assert auto.n_calls == 8 and len(auto.history) == 8
    assert_same_history(first, second)


def test_default_clippers_are_fresh_and_scaled():
    a, b = default_clippers(2.0), default_clippers(2.0)
    assert a["global_norm"] is not b["global_norm"]
    assert a["none"] is None
    assert (a["value"].threshold, a["norm"].threshold, a["global_norm"].threshold) == (0.2, 2.0, 2.0)
    with pytest.raises(ValueError, match="max_norm"):
        default_clippers(-1.0)


def test_compare_clippers_bad_input():
    with pytest.raises(TypeError, match="clippers"):
        compare_clippers({})
    with pytest.raises(TypeError, match=r"clippers\['x'\]"):
        compare_clippers({"x": 3})
    with pytest.raises(ValueError, match="seed"):
        compare_clippers({"none": None}, seed=-2)


# ------------------------------------------------------------------ make_regression_data


@given(n=st.integers(6, 40), d=st.integers(1, 5), seed=seeds,
       scale=st.floats(0.1, 1e3, allow_nan=False))
def test_regression_target_is_linear_with_gain_scale(n, d, seed, scale):
    # Law: y = S x w with ||w|| = 1, so least squares recovers w exactly: residual 0 and
    # ||coefficients|| = S.
    x, y = make_regression_data(n, seed, n_features=d, target_scale=scale)
    assert x.shape == (n, d) and y.shape == (n, 1)
    assert x.dtype == np.float64 and y.dtype == np.float64
    coef, *_ = np.linalg.lstsq(x, y[:, 0], rcond=None)
    np.testing.assert_allclose(x @ coef, y[:, 0], rtol=1e-9, atol=1e-9 * scale)
    if np.linalg.matrix_rank(x) == d:
        assert np.linalg.norm(coef) == pytest.approx(scale, rel=1e-8)


@given(seed=seeds, a=st.floats(0.1, 100), b=st.floats(0.1, 100))
def test_regression_data_scales_only_the_target(seed, a, b):
    xa, ya = make_regression_data(20, seed, target_scale=a)
    xb, yb = make_regression_data(20, seed, target_scale=b)
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_allclose(ya * b, yb * a, rtol=1e-12, atol=1e-12 * a * b)


def test_regression_data_worked_example():
    # seed 0, n = 1, d = 1: x = N(0,1) draw; u = next draw; w = u/|u| = sign(u); y = 2 x w.
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((1, 1))
    u = rng.standard_normal(1)
    x, y = make_regression_data(1, 0, n_features=1, target_scale=2.0)
    assert x[0, 0] == x0[0, 0]
    assert y[0, 0] == 2.0 * x0[0, 0] * np.sign(u[0])


def test_regression_data_bad_input():
    with pytest.raises(ValueError, match="n"):
        make_regression_data(0)
    with pytest.raises(TypeError, match="n_features"):
        make_regression_data(10, n_features=2.5)
    with pytest.raises(ValueError, match="target_scale"):
        make_regression_data(10, target_scale=0.0)
    with pytest.raises(TypeError, match="seed"):
        make_regression_data(10, seed="zero")


# ---------------------------------------------------------------------------- sharpness


def linear_least_squares_sharpness(x: np.ndarray) -> float:
    # For f = x W + b the Hessian of (1/N) sum (f - y)^2 is (2/N) X~^T X~, X~ = [x, 1].
    xt = np.hstack([x, np.ones((x.shape[0], 1))])
    return float(np.linalg.eigvalsh((2.0 / x.shape[0]) * xt.T @ xt)[-1])


@given(x=st.tuples(st.integers(1, 12), st.integers(1, 4)).flatmap(
    lambda s: float_arrays(s, st.floats(-10, 10, allow_nan=False))), seed=seeds)
def test_sharpness_of_a_linear_model_is_the_least_squares_hessian(x, seed):
    # Law: for one Linear layer the curvature is that of linear least squares, whatever
    # the weights (the seed) are.
    model = MLP([x.shape[1], 1], seed=seed)
    expected = linear_least_squares_sharpness(x)
    assert sharpness(model, x) == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_sharpness_worked_examples():
    # x = [[1], [-1]]: X~ = [[1, 1], [-1, 1]], X~^T X~ = [[2, 0], [0, 2]], times 2/N = 1: 2.
    assert sharpness(MLP([1, 1]), np.array([[1.0], [-1.0]])) == pytest.approx(2.0, rel=1e-12)
    # x = [[1], [1]]: X~^T X~ = [[2, 2], [2, 2]] has eigenvalues 4 and 0; times 1: 4.
    assert sharpness(MLP([1, 1]), np.array([[1.0], [1.0]])) == pytest.approx(4.0, rel=1e-12)


@settings(max_examples=20)
@given(seed=seeds, n=st.integers(1, 6))
def test_sharpness_matches_example_by_example_jacobian(seed, n):
    # Law: sharpness = lambda_max((2/N) J J^T) with row i of J = grad f(x_i); here each row
    # comes from the ordinary backward pass on one example (loss (f - y)^2 with
    # y = f - 1/2 has gradient 2 * (1/2) * grad f).
    model = MLP([3, 5, 4, 1], activation="tanh", seed=seed, dtype=np.float64)
    x = np.random.default_rng(seed).standard_normal((n, 3))
    rows = []
    for i in range(n):
        xi = x[i:i + 1]
        _, grads = model.loss_and_grads(xi, model.forward(xi) - 0.5, "mse")
        rows.append(np.concatenate([g.ravel() for g in grads.values()]))
    jac = np.array(rows)
    expected = np.linalg.eigvalsh((2.0 / n) * jac @ jac.T)[-1]
    assert sharpness(model, x) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_sharpness_leaves_the_model_unchanged():
    model = MLP([4, 8, 1], seed=0)
    before = {k: v.copy() for k, v in model.params.items()}
    sharpness(model, np.ones((5, 4)))
    for k, v in model.params.items():
        np.testing.assert_array_equal(v, before[k])
        assert v.dtype == np.float32


@pytest.mark.parametrize("factor, should_converge", [(1.9, True), (2.1, False)])
def test_learning_rate_times_sharpness_below_two_is_the_stability_rule(factor, should_converge):
    # The rule the demonstration rests on, on the one model where it is exact (linear
    # least squares, full batch): lr = 1.9 / sharpness converges to the least squares
    # solution, lr = 2.1 / sharpness blows up.
    x, y = make_regression_data(64, 5, n_features=3, target_scale=1.0)
    y = y + 0.1 * np.random.default_rng(1).standard_normal(y.shape)  # a nonzero optimum
    model = MLP([3, 1], seed=0, dtype=np.float64)
    lr = factor / sharpness(model, x)
    with np.errstate(over="ignore", invalid="ignore"):
        h = fit(model, SGD(lr), x, y, epochs=300, batch_size=64, seed=0, verbose=False, loss="mse")
    xt = np.hstack([x, np.ones((64, 1))])
    coef, *_ = np.linalg.lstsq(xt, y, rcond=None)
    best = float(np.mean((xt @ coef - y) ** 2))
    if should_converge:
        assert final_loss(h) == pytest.approx(best, rel=1e-6)
    else:
        assert final_loss(h) > 1e6 * h.train_loss[0]


def test_sharpness_bad_input():
    with pytest.raises(TypeError, match="model"):
        sharpness("mlp", np.ones((2, 2)))
    with pytest.raises(ValueError, match="model: expected a model with one output"):
        sharpness(MLP([2, 3]), np.ones((2, 2)))
    with pytest.raises(ValueError, match="x"):
        sharpness(MLP([2, 1]), np.ones((2, 3)))
    with pytest.raises(ValueError, match="x"):
        sharpness(MLP([2, 1]), np.array([[1.0, np.nan]]))


# --------------------------------------------------------------------------- final_loss


def test_final_loss_worked_examples():
    # A completed run: the last epoch's full-pass loss.
    done = History(loss=[5.0, 3.0], train_loss=[4.0, 2.0])
    assert final_loss(done) == 2.0
    # Stopped mid-epoch 2 by a NaN step: epoch 1's loss (4.0) is stale, the step's counts.
    mid = History(loss=[5.0, 3.0, np.nan], train_loss=[4.0], diverged=True)
    assert np.isnan(final_loss(mid))
    # Stopped mid-epoch by an infinite gradient with a finite (huge) loss.
    huge = History(loss=[5.0, 1e30], train_loss=[4.0], diverged=True)
    assert final_loss(huge) == 1e30
    # Stopped because the epoch's full-pass loss was not finite: that value.
    end = History(loss=[5.0, 3.0], train_loss=[4.0, np.inf], diverged=True)
    assert final_loss(end) == np.inf
    assert np.isnan(final_loss(History()))
    with pytest.raises(TypeError, match="history"):
        final_loss({"loss": [1.0]})
