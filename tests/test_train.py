"""Tests for nnref.train: digits accuracy and speed, determinism, what History records
(step counts, gradient norms, the grad_transform hook, clipping flags), printing,
divergence, and bad input."""

from __future__ import annotations

import io
import math
import time

import numpy as np
import pytest

from nnref import data
from nnref.mlp import MLP
from nnref.optim import SGD, Adam
from nnref.train import History, evaluate, fit


@pytest.fixture(scope="module")
def digits_split():
    x, y = data.load_digits()
    return data.train_test_split(x, y, test_fraction=0.2, seed=0, stratify=True)


def small_problem(n=50, d=4, c=3, seed=0):
    """A small classification problem: labels from a random linear rule, so it is learnable."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = np.argmax(x @ rng.standard_normal((d, c)), axis=1)
    return x, y


# --------------------------------------------------------------------------------------
# Learning
# --------------------------------------------------------------------------------------


def test_digits_mlp_reaches_96_percent_fast(digits_split):
    x_tr, x_te, y_tr, y_te = digits_split
    assert len(x_te) == 360 and np.all(np.bincount(y_te) >= 35)  # stratified 20% of 1,797
    model = MLP([64, 64, 10], seed=0)
    t0 = time.perf_counter()
    h = fit(model, SGD(lr=0.1, momentum=0.9), x_tr, y_tr, epochs=30, batch_size=32, seed=0,
            validation=(x_te, y_te), verbose=False)
    elapsed = time.perf_counter() - t0
    acc = model.accuracy(x_te, y_te)
    assert acc >= 0.96, acc
    assert elapsed < 20.0, elapsed
    assert not h.diverged and h.val_acc[-1] == acc
    assert h.train_loss[-1] < h.train_loss[0]


def test_same_seed_gives_bitwise_identical_parameters():
    x, y = small_problem()
    runs = []
    for _ in range(2):
        model = MLP([4, 8, 3], seed=5)
        h = fit(model, Adam(lr=0.01), x, y, epochs=3, batch_size=7, seed=11, verbose=False)
        runs.append((model.params, h.loss))
    for k in runs[0][0]:
        np.testing.assert_array_equal(runs[0][0][k], runs[1][0][k])
    assert runs[0][1] == runs[1][1]
    # a different shuffling seed gives a different run
    other = MLP([4, 8, 3], seed=5)
    fit(other, Adam(lr=0.01), x, y, epochs=3, batch_size=7, seed=12, verbose=False)
    assert not np.array_equal(other.params["W1"], runs[0][0]["W1"])


def test_mse_regression_training_reduces_the_loss():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3))
    targets = x @ rng.standard_normal((3, 2))  # a linear map the model can represent
    model = MLP([3, 16, 2], activation="tanh", seed=0)
    h = fit(model, Adam(lr=0.01), x, targets, epochs=20, batch_size=16, loss="mse", verbose=False)
    assert h.train_loss[-1] < 0.2 * h.train_loss[0]
    assert all(math.isnan(a) for a in h.train_acc)  # no accuracy for regression


# --------------------------------------------------------------------------------------
# History
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, batch, epochs", [(50, 7, 3), (50, 50, 2), (50, 64, 2), (49, 1, 1)])
def test_history_lengths(n, batch, epochs):
    x, y = small_problem(n)
    model = MLP([4, 5, 3])
    h = fit(model, SGD(lr=0.1), x, y, epochs=epochs, batch_size=batch, validation=(x, y), verbose=False)
    steps = epochs * math.ceil(n / batch)  # the last batch of an epoch may be smaller
    assert h.n_steps == steps
    for seq in (h.loss, h.grad_norm, h.grad_norm_after, h.clipped):
        assert len(seq) == steps
    assert set(h.param_grad_norm) == set(h.param_grad_norm_after) == {"W1", "b1", "W2", "b2"}
    assert all(len(v) == steps for v in h.param_grad_norm.values())
    assert all(len(v) == steps for v in h.param_grad_norm_after.values())
    for seq in (h.train_loss, h.train_acc, h.val_loss, h.val_acc, h.epoch_time):
        assert len(seq) == epochs
    assert h.steps_per_epoch() == math.ceil(n / batch)
    # no transform: nothing clipped, norms unchanged
    assert h.transform is None and h.n_clipped == 0 and h.clip_fraction == 0.0
    assert h.grad_norm_after == h.grad_norm


def test_grad_norm_is_the_l2_norm_of_all_gradients_concatenated():
    x, y = small_problem()
    seen = []

    def record(grads, params):
        assert params is not None and set(params) == set(grads)
        seen.append({k: v.copy() for k, v in grads.items()})
        return grads

    model = MLP([4, 6, 3])
    h = fit(model, SGD(lr=0.1), x, y, epochs=2, batch_size=16, grad_transform=record, verbose=False)
    assert len(seen) == h.n_steps == 8
    # fit computes norms in the gradients' dtype (float32 here, as PyTorch does), so they
    # match the float64 norm to float32 precision: a few ulps of 6e-8 for these sizes.
    for i, grads in enumerate(seen):
        flat = np.concatenate([g.astype(np.float64).ravel() for g in grads.values()])
        assert h.grad_norm[i] == pytest.approx(np.linalg.norm(flat), rel=1e-6)
        for k, g in grads.items():
            norm = np.linalg.norm(g.astype(np.float64))
            assert h.param_grad_norm[k][i] == pytest.approx(norm, rel=1e-6)
        # sum of squared per-tensor norms = squared global norm
        squares = sum(h.param_grad_norm[k][i] ** 2 for k in grads)
        assert squares == pytest.approx(h.grad_norm[i] ** 2, rel=1e-12)
    # the recorded loss is the batch loss the gradients came from: positive and finite
    assert all(0 < v < np.inf for v in h.loss)


def test_zeroing_transform_leaves_params_unchanged_and_counts_as_clipped():
    x, y = small_problem()
    model = MLP([4, 6, 3])
    before = {k: v.copy() for k, v in model.params.items()}
    h = fit(model, SGD(lr=0.5), x, y, epochs=2, batch_size=10,
            grad_transform=lambda g, p: {k: np.zeros_like(v) for k, v in g.items()}, verbose=False)
    for k, v in model.params.items():
        np.testing.assert_array_equal(v, before[k])
    assert h.clipped == [True] * 10 and h.clip_fraction == 1.0
    assert h.grad_norm_after == [0.0] * 10
    assert all(n > 0 for n in h.grad_norm)  # measured before the transform


def test_identity_transform_is_never_clipped():
    x, y = small_problem()
    a, b = MLP([4, 6, 3]), MLP([4, 6, 3])
    ha = fit(a, SGD(lr=0.1), x, y, epochs=2, batch_size=10, grad_transform=lambda g, p: g, verbose=False)
    hb = fit(b, SGD(lr=0.1), x, y, epochs=2, batch_size=10, verbose=False)
    assert ha.clipped == [False] * 10 and ha.n_clipped == 0
    assert hb.transform is None and hb.clipped == [False] * 10
    assert ha.grad_norm_after == ha.grad_norm
    assert ha.transform is not None and "clipped 0/10 steps" in ha.summary()
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])


def test_transform_output_is_what_the_optimizer_uses():
    # Halving every gradient (exact in binary) with lr equals lr / 2 without a transform, bit
    # for bit: lr * (g / 2) and (lr / 2) * g are the same float. Both runs shuffle alike.
    x, y = small_problem()
    a, b = MLP([4, 6, 3]), MLP([4, 6, 3])
    ha = fit(a, SGD(lr=0.2), x, y, epochs=2, batch_size=10, verbose=False,
             grad_transform=lambda g, p: {k: v * 0.5 for k, v in g.items()})
    fit(b, SGD(lr=0.1), x, y, epochs=2, batch_size=10, verbose=False)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert ha.clipped == [True] * 10
    np.testing.assert_allclose(ha.grad_norm_after, 0.5 * np.array(ha.grad_norm), rtol=1e-12)


def test_history_summary_and_clip_fraction():
    h = History(loss=[1.0, 0.5, 0.4, 0.3], clipped=[True, False, True, False], train_loss=[0.4],
                val_acc=[0.875], transform="GlobalNorm(1.0)")
    assert h.n_steps == 4 and h.n_clipped == 2 and h.clip_fraction == 0.5
    assert h.summary() == "4 steps, train loss 0.4, val acc 87.50%, clipped 2/4 steps (50.0%)"
    assert History().clip_fraction == 0.0 and History().summary() == "0 steps"


# --------------------------------------------------------------------------------------
# Printing
# --------------------------------------------------------------------------------------


def test_verbose_prints_one_line_per_epoch(capsys):
    x, y = small_problem()
    fit(MLP([4, 5, 3]), SGD(lr=0.1), x, y, epochs=3, batch_size=10, validation=(x, y))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    for i, line in enumerate(lines, start=1):
        assert line.startswith(f"epoch {i:3d}/3: train loss ") and "val loss" in line


def test_quiet_and_redirected_output(capsys):
    x, y = small_problem()
    fit(MLP([4, 5, 3]), SGD(lr=0.1), x, y, epochs=2, batch_size=10, verbose=False)
    assert capsys.readouterr().out == ""
    buf = io.StringIO()
    fit(MLP([4, 5, 3]), SGD(lr=0.1), x, y, epochs=2, batch_size=10, out=buf)
    assert capsys.readouterr().out == "" and len(buf.getvalue().splitlines()) == 2


# --------------------------------------------------------------------------------------
# Divergence
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "lr, transform",
    [(1e8, None), (0.1, lambda g, p: {k: v * 1e30 for k, v in g.items()})],
    ids=["huge-lr", "gradients-times-1e30"],
)
def test_non_finite_loss_stops_training(capsys, lr, transform):
    x, y = small_problem(n=40)
    model = MLP([4, 8, 3], seed=0)  # float32: overflows at 3.4e38
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging model overflows, by design
        h = fit(model, SGD(lr=lr), x, y, epochs=50, batch_size=8, grad_transform=transform)
    assert h.diverged
    assert h.message.startswith("non-finite loss at epoch 1, step ") and "training stopped" in h.message
    assert h.n_steps < 50 * 5  # stopped early ...
    assert not np.isfinite(h.loss[-1]) and all(np.isfinite(h.loss[:-1]))  # ... at the first bad step
    assert len(h.grad_norm) == len(h.grad_norm_after) == len(h.clipped) == h.n_steps
    assert h.train_loss == []  # the epoch never finished
    out = capsys.readouterr().out
    assert h.message in out and "DIVERGED" in h.summary()


def test_nan_in_x_is_rejected_up_front():
    x, y = small_problem()
    x[3, 1] = np.nan
    with pytest.raises(ValueError, match="x: expected finite values, got 1 NaN"):
        fit(MLP([4, 5, 3]), SGD(lr=0.1), x, y, epochs=1, batch_size=10, verbose=False)


# --------------------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------------------


def test_evaluate_is_independent_of_its_batch_size():
    x, y = small_problem(n=23)
    model = MLP([4, 5, 3], dtype=np.float64)
    full_loss, _ = model.loss(x, y)
    for bs in (1, 5, 23, 4096):
        loss, acc = evaluate(model, x, y, batch_size=bs)
        # batches of unequal size are weighted by their size
        assert loss == pytest.approx(full_loss, rel=1e-12)
        assert acc == pytest.approx(np.mean(model.predict(x) == y), abs=0)


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


def test_bad_fit_arguments():
    x, y = small_problem()
    model, opt = MLP([4, 5, 3]), SGD(lr=0.1)
    cases = [
        (dict(x=x[:, :3]), ValueError, r"x: expected 4 features per example, got shape \(50, 3\)"),
        (dict(x=x[0]), ValueError, "x: expected a 2-D array"),
        (dict(x=np.zeros((0, 4)), y=np.zeros(0, dtype=np.int64)), ValueError,
         "x: expected a non-empty array"),
        (dict(x=x.astype(str)), TypeError, "x: expected a real numeric array"),
        (dict(y=y + 1), ValueError, r"y: expected values in \[0, 2\], got values in \[1, 3\]"),
        (dict(y=y.astype(float)), TypeError, "y: expected integer class indices"),
        (dict(y=y[:-1]), ValueError, r"y: expected shape \(50,\)"),
        (dict(epochs=0), ValueError, r"epochs: expected an integer in \[1, "),
        (dict(epochs=2.0), TypeError, "epochs: expected an integer"),
        (dict(batch_size=0), ValueError, "batch_size: expected an integer in"),
        (dict(grad_transform="clip"), TypeError, "grad_transform: expected a callable"),
        (dict(validation=x), TypeError, r"validation: expected a pair \(x_val, y_val\)"),
        (dict(validation=(x[:, :2], y)), ValueError, "validation\\[0\\]: expected 4 features"),
        (dict(validation=(x, y + 5)), ValueError, "validation\\[1\\]: expected values in"),
        (dict(loss="mse"), ValueError, r"y: expected a 2-D array"),
        (dict(seed="zero"), TypeError, "seed: expected an int"),
    ]
    for kwargs, exc, match in cases:
        args = dict(x=x, y=y, epochs=1, batch_size=10, verbose=False) | kwargs
        with pytest.raises(exc, match=match):
            fit(model, opt, args.pop("x"), args.pop("y"), **args)
    assert opt.t == 0  # every check happens before the first step


# --------------------------------------------------------------------------------------
# Bad or extreme input across the training API: the call, the exception, the message
# --------------------------------------------------------------------------------------

from nnref import clip  # noqa: E402
from nnref.gradcheck import check_gradients  # noqa: E402
from nnref.layers import Linear, init_weight, make_activation  # noqa: E402
from nnref.train import train_step  # noqa: E402


def _bad_input_cases(tmp_path):
    x, y = small_problem()
    m = MLP([4, 5, 3])
    npy = tmp_path / "array.npy"
    np.save(npy, np.ones(3))
    nan_file = tmp_path / "nan.npz"
    bad = MLP([4, 5, 3])
    bad.save(nan_file)
    with np.load(nan_file) as archive:
        arrays = {k: archive[k] for k in archive.files}
    arrays["W1"] = arrays["W1"].copy()
    arrays["W1"][0, 0] = np.nan
    np.savez(nan_file, **arrays)
    nan_params = {k: v.copy() for k, v in m.params.items()}
    nan_params["b2"][1] = np.nan
    fit_args = dict(epochs=1, batch_size=10, verbose=False)
    return [
        (lambda: MLP([4, 3], seed=-1), ValueError, "seed: expected a non-negative integer.*got -1"),
        (lambda: MLP([4, 3], dtype="bogus"), TypeError, "dtype: expected float16, float32 or float64, got 'bogus'"),
        (lambda: MLP([4, 3, 2], activation=["relu"]), ValueError, r"activation: expected one of .*got \['relu'\]"),
        (lambda: MLP([4, 3], init=["he"]), ValueError, r"init: expected one of .*got \['he'\]"),
        (lambda: Linear(2, 2, seed=-3), ValueError, "seed: expected a non-negative"),
        (lambda: init_weight("he", 2, 2, rng=-1), ValueError, "seed"),
        (lambda: m.astype(np.int32), TypeError, "dtype: expected float16, float32 or float64, got int32"),
        (lambda: m.astype("bogus"), TypeError, "dtype: expected float16"),
        (lambda: m.set_params(nan_params), ValueError, r"params\['b2'\]: expected finite values, got 1 NaN"),
        (lambda: m.set_params([1, 2]), TypeError, "params: expected a dict"),
        (lambda: MLP.load(3), TypeError, "path: expected a file path"),
        (lambda: MLP.load(npy), ValueError, r"array\.npy: a \.npy array file"),
        (lambda: MLP.load(nan_file), ValueError, "parameter 'W1' holds NaN"),
        (lambda: m.predict(np.full((2, 4), 1e300)), ValueError, "x: expected values within the model's float32 range"),
        (lambda: m.forward(np.full((1, 4), -1e300)), ValueError, "float32 range"),
        (lambda: fit(None, SGD(0.1), x, y, **fit_args), TypeError, "model: expected an nnref.mlp.MLP.*got NoneType"),
        (lambda: fit(m, None, x, y, **fit_args), TypeError, "optimizer: expected an optimizer with a step"),
        (lambda: fit(m, SGD(0.1), x, y, seed=-1, **fit_args), ValueError, "seed: expected a non-negative"),
        (lambda: fit(m, SGD(0.1), x, y, loss="hinge", **fit_args), ValueError, "loss: expected one of"),
        (lambda: fit(m, SGD(0.1), np.full((50, 4), 1e300), y, **fit_args), ValueError, "x: expected values within"),
        (lambda: fit(m, SGD(0.1), x, y, validation=(np.full((2, 4), 1e300), y[:2]), **fit_args),
         ValueError, r"validation\[0\]: expected values within"),
        (lambda: evaluate(None, x, y), TypeError, "model: expected an nnref.mlp.MLP"),
        (lambda: evaluate(m, x, y + 3), ValueError, r"y: expected values in \[0, 2\]"),
        (lambda: evaluate(m, x, y, loss="bogus"), ValueError, "loss: expected one of"),
        (lambda: data.train_test_split(x, y, seed=-1), ValueError, "seed: expected a non-negative"),
        (lambda: clip.global_norm([np.array([1.5e308, 1.5e308])]), ValueError, "exceeds the float64 range"),
        (lambda: Linear(2, 2, dtype=np.int32), TypeError, "dtype: expected float16, float32 or float64, got int32"),
        (lambda: make_activation(["relu"]), ValueError, "activation: expected one of"),
        (lambda: fit(m, SGD(0.1), x, y, out=3, **fit_args), TypeError, "out: expected a text stream"),
        (lambda: clip.GlobalNorm(1.0)([np.ones(2)], total_norm="1"), TypeError, "total_norm: expected a number"),
        (lambda: check_gradients(None, x, y), TypeError, "model: expected an nnref.mlp.MLP"),
        (lambda: check_gradients(m, x[:, :2], y), ValueError, "x: expected 4 features"),
    ]


def test_bad_input_table(tmp_path):
    for call, exc, match in _bad_input_cases(tmp_path):
        with pytest.raises(exc, match=match):
            call()


def test_fit_refuses_a_transform_result_with_nan_before_applying_it():
    x, y = small_problem()
    model = MLP([4, 5, 3])
    before = {k: v.copy() for k, v in model.params.items()}

    def poison(g, p):
        out = {k: v.copy() for k, v in g.items()}
        out["W2"][0, 0] = np.nan
        return out

    opt = SGD(0.1)
    with pytest.raises(ValueError, match=r"grad_transform: returned grads\['W2'\] \(not applied\): expected finite"):
        fit(model, opt, x, y, epochs=1, batch_size=10, grad_transform=poison, verbose=False)
    assert opt.t == 0
    for k, v in model.params.items():
        np.testing.assert_array_equal(v, before[k])


def test_nan_gradients_stop_fit_before_the_optimizer_step():
    x, y = small_problem()
    model = MLP([4, 5, 3])
    model.linears[1].W[0, 0] = np.nan  # a corrupted weight: NaN logits, NaN gradients
    before = {k: v.copy() for k, v in model.params.items()}
    opt = Adam()
    with np.errstate(invalid="ignore"):
        h = fit(model, opt, x, y, epochs=3, batch_size=10, verbose=False)
    assert h.diverged and h.n_steps == 1 and opt.t == 0
    for k, v in model.params.items():  # no step applied: nothing else became NaN
        np.testing.assert_array_equal(v, before[k])
    step = train_step(model, opt, x[:10], y[:10])
    assert not step.stepped and opt.t == 0


def test_train_step_records_the_clippers_norms_and_clips_in_place():
    x, y = small_problem()
    model = MLP([4, 5, 3])
    opt = SGD(0.1)
    clipper = clip.GlobalNorm(1e-3)
    step = train_step(model, opt, x[:10], y[:10], grad_transform=clipper)
    assert step.stepped and step.clip.acted and opt.t == 1
    assert step.clip is clipper.last_result
    assert step.clip.total_norm_after == pytest.approx(1e-3, rel=1e-5)
    for k, g in model.grads.items():  # the model's own gradient arrays were clipped
        assert g is step.clip.grads[k]


def test_input_is_checked_once_per_fit_not_per_batch(monkeypatch):
    from nnref import _checks

    calls = []
    real = _checks.check_finite
    monkeypatch.setattr(_checks, "check_finite", lambda a, name: calls.append(name) or real(a, name))
    x, y = small_problem()
    h = fit(MLP([4, 5, 3]), SGD(0.1), x, y, epochs=2, batch_size=5, verbose=False)
    assert h.n_steps == 20 and calls == ["x"]
