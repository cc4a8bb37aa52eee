"""Tests for nnref.losses: softmax / log-softmax laws, MSE with its gradient, the checked
cross-entropy (dtype, bit-for-bit equal to the plain formula) and bad input. The
cross-entropy formula's laws and worked values (logits of 1e4 included) live in nnref.laws."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from nnref.gradcheck import numerical_gradient, rel_error
from nnref.losses import log_softmax, mse, softmax, softmax_cross_entropy
from strategies import batch_sizes, float_arrays, moderate_floats, seeds, widths

# Logits with at least 2 classes; values up to 1e3 (the shared moderate_floats).
logit_matrices = st.tuples(batch_sizes, st.integers(2, 24)).flatmap(lambda s: float_arrays(s))
# Values up to 20: every probability is >= e^-40 / 24, so log(softmax) is accurate.
mild_logits = st.tuples(batch_sizes, st.integers(2, 24)).flatmap(
    lambda s: float_arrays(s, st.floats(-20.0, 20.0))
)
huge_logits = st.tuples(batch_sizes, st.integers(2, 24)).flatmap(
    lambda s: float_arrays(s, st.floats(-1e4, 1e4))
)


# --------------------------------------------------------------------------------------
# softmax and log_softmax
# --------------------------------------------------------------------------------------


@given(logit_matrices)
def test_softmax_rows_are_probability_distributions(z):
    p = softmax(z)
    assert p.shape == z.shape
    assert np.all((p >= 0) & (p <= 1))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    # the largest logit of each row gets the largest probability, which is >= 1/C
    rows = np.arange(len(z))
    assert np.all(p[rows, z.argmax(axis=1)] >= 1.0 / z.shape[1] - 1e-15)


@given(z=logit_matrices, data=st.data())
def test_softmax_invariant_to_adding_a_constant_per_row(z, data):
    c = data.draw(float_arrays((z.shape[0], 1), moderate_floats))
    # z + c is rounded once: logits move by up to eps * 2e3 ~ 5e-13, probabilities by
    # that much relatively
    np.testing.assert_allclose(softmax(z + c), softmax(z), rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(log_softmax(z + c), log_softmax(z), rtol=1e-9, atol=1e-9)


@given(mild_logits)
def test_log_softmax_equals_log_of_softmax_when_well_conditioned(z):
    np.testing.assert_allclose(log_softmax(z), np.log(softmax(z)), rtol=1e-12, atol=1e-12)


@given(huge_logits)
def test_log_softmax_is_finite_and_nonpositive_for_huge_logits(z):
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        lp = log_softmax(z)
    assert np.all(np.isfinite(lp)) and np.all(lp <= 0)
    # the best class of each row has log-probability in [-log C, 0]
    assert np.all(lp.max(axis=1) >= -np.log(z.shape[1]) - 1e-12)


def test_softmax_worked_example():
    # softmax([0, ln 2, ln 5]) = [1, 2, 5] / 8
    z = np.array([[0.0, np.log(2.0), np.log(5.0)]])
    np.testing.assert_allclose(softmax(z), [[0.125, 0.25, 0.625]], rtol=1e-15)
    np.testing.assert_allclose(log_softmax(z), np.log([[0.125, 0.25, 0.625]]), rtol=1e-15)


def test_softmax_of_magnitude_1e4_uses_the_max_shift():
    # rows [1e4, 0] and [-1e4, 1e4]: exp(1e4) overflows, exp(z - max) does not
    z = np.array([[1e4, 0.0], [-1e4, 1e4]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        p = softmax(z)
        lp = log_softmax(z)
    # p = [1/(1 + e^-1e4), e^-1e4/(1 + e^-1e4)] = [1, 0] in float64; log p = [0, -1e4]
    np.testing.assert_array_equal(p, [[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_array_equal(lp, [[0.0, -1e4], [-2e4, 0.0]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_and_log_softmax_preserve_dtype(dtype):
    z = np.array([[1.0, 2.0, 3.0]], dtype=dtype)
    assert softmax(z).dtype == dtype and log_softmax(z).dtype == dtype


# --------------------------------------------------------------------------------------
# softmax cross-entropy
# --------------------------------------------------------------------------------------


def test_cross_entropy_keeps_float32():
    loss, d = softmax_cross_entropy(np.zeros((2, 3), dtype=np.float32), np.array([0, 2]))
    assert d.dtype == np.float32
    assert loss == pytest.approx(np.log(3.0), rel=1e-6)


# --------------------------------------------------------------------------------------
# MSE
# --------------------------------------------------------------------------------------


def test_mse_worked_example():
    pred = np.array([[1.0, 2.0], [3.0, 4.0]])
    target = np.array([[0.0, 2.0], [5.0, 1.0]])
    # diff = [[1, 0], [-2, 3]]; squares 1 + 0 + 4 + 9 = 14; mean over N = 4 -> 3.5
    loss, d = mse(pred, target)
    assert loss == 3.5
    # dL/dpred = 2 diff / N = diff / 2
    np.testing.assert_array_equal(d, [[0.5, 0.0], [-1.0, 1.5]])


grid_values = st.integers(-640, 640).map(lambda k: k / 64)


@given(shape=st.tuples(batch_sizes, widths), data=st.data())
def test_mse_gradient_matches_central_differences(shape, data):
    # Values on a grid of 1/64 with p != t somewhere: the gradient 2 (p - t) / N is then at
    # least 2 / (64 N) somewhere. Where p == t everywhere the true gradient is exactly 0 and
    # the finite difference is rounding noise (~1e-17), which rel_error scales to 1.
    p = data.draw(float_arrays(shape, grid_values))
    t = data.draw(float_arrays(shape, grid_values))
    assume(np.any(p != t))
    _, d = mse(p, t)
    num = numerical_gradient(lambda pp: mse(pp, t)[0], p.copy())
    assert rel_error(d, num) < 1e-6


@given(shape=st.tuples(batch_sizes, widths), data=st.data())
def test_mse_laws(shape, data):
    p = data.draw(float_arrays(shape))
    t = data.draw(float_arrays(shape))
    loss, d = mse(p, t)
    assert loss >= 0
    assert loss == pytest.approx(mse(t, p)[0], rel=1e-15)  # symmetric
    np.testing.assert_array_equal(mse(t, p)[1], -d)  # gradient w.r.t. the other argument
    np.testing.assert_allclose(d, 2 * (p - t) / p.size, rtol=1e-15, atol=0)
    same, dsame = mse(p, p)
    assert same == 0.0 and not np.any(dsame)


def test_mse_accepts_integer_targets_and_keeps_pred_dtype():
    loss, d = mse(np.array([[0.5, 1.5]], dtype=np.float32), np.array([[0, 2]]))
    # diff = [0.5, -0.5]; mean square 0.25; gradient 2 * diff / 2 = diff
    assert loss == 0.25
    assert d.dtype == np.float32
    np.testing.assert_array_equal(d, [[0.5, -0.5]])


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_losses_reject_non_finite_input(bad):
    z = np.array([[0.0, bad]])
    with pytest.raises(ValueError, match="logits: expected finite values"):
        softmax_cross_entropy(z, np.array([0]))
    with pytest.raises(ValueError, match="logits: expected finite values"):
        softmax(z)
    with pytest.raises(ValueError, match="logits: expected finite values"):
        log_softmax(z)
    with pytest.raises(ValueError, match="pred: expected finite values"):
        mse(z, np.zeros((1, 2)))
    with pytest.raises(ValueError, match="target: expected finite values"):
        mse(np.zeros((1, 2)), z)


@pytest.mark.parametrize(
    "labels, exc, match",
    [
        (np.array([0, 3]), ValueError, r"labels: expected values in \[0, 2\], got values in \[0, 3\]"),
        (np.array([-1, 0]), ValueError, r"labels: expected values in \[0, 2\]"),
        (np.array([0.0, 1.0]), TypeError, "labels: expected integer class indices"),
        (np.array([True, False]), TypeError, "labels: expected integer"),
        (np.array([0, 1, 2]), ValueError, r"labels: expected shape \(2,\)"),
        (np.array([[0], [1]]), ValueError, r"labels: expected shape \(2,\)"),
    ],
)
def test_cross_entropy_rejects_bad_labels(labels, exc, match):
    with pytest.raises(exc, match=match):
        softmax_cross_entropy(np.zeros((2, 3)), labels)


def test_losses_reject_bad_shapes_and_dtypes():
    with pytest.raises(ValueError, match=r"logits: expected a 2-D array, got shape \(3,\)"):
        softmax_cross_entropy(np.zeros(3), np.array([0]))
    with pytest.raises(ValueError, match="logits: expected a non-empty array"):
        softmax_cross_entropy(np.zeros((0, 3)), np.zeros(0, dtype=np.int64))
    with pytest.raises(TypeError, match="logits: expected a real numeric array"):
        softmax_cross_entropy(np.array([["a", "b"]]), np.array([0]))
    with pytest.raises(TypeError, match="logits: expected a real numeric array"):
        softmax(np.array([[True, False]]))
    with pytest.raises(ValueError, match=r"target: expected the shape of pred \(3, 1\), got \(3,\)"):
        mse(np.zeros((3, 1)), np.zeros(3))  # would broadcast to (3, 3) if allowed
    with pytest.raises(ValueError, match="pred: expected a non-empty array"):
        mse(np.zeros((0, 2)), np.zeros((0, 2)))
    with pytest.raises(TypeError, match="target: expected a real numeric array"):
        mse(np.zeros((1, 1)), np.array([["x"]]))


@given(z=float_arrays(st.tuples(batch_sizes, st.integers(2, 12)), elements=st.floats(-80, 80)))
def test_float32_log_softmax_matches_a_float64_per_row_reference(z):
    """The float32 path must be as accurate as float32 allows, row by row: each row's
    shift is its own maximum (a batch-wide shift would lose digits on confident rows)."""
    z32 = z.astype(np.float32)
    ref = z32.astype(np.float64) - z32.max(axis=1, keepdims=True)
    ref -= np.log(np.exp(ref).sum(axis=1, keepdims=True))
    got = log_softmax(z32)
    assert got.dtype == np.float32
    # |error| <= a few float32 ulps of the larger of |log p| and the row's log-sum-exp
    tol = 8 * np.finfo(np.float32).eps * (1 + np.abs(ref) + np.log(z.shape[1]))
    assert np.all(np.abs(got - ref) <= tol)


def test_confident_rows_keep_float32_accuracy():
    z = np.array([[0, 10], [0, 60]], dtype=np.float32)
    exact = -np.log1p(np.exp(-10.0))  # log p of class 1 in row 0, exactly
    # float32 log-sum-exp is accurate to a few ulps of 1 in absolute terms (log(1 + tiny)
    # is computed from a float32 sum near 1); a batch-wide shift (60) would be 4x worse
    assert abs(log_softmax(z)[0, 1] - exact) <= 2 * np.finfo(np.float32).eps
    _, d = softmax_cross_entropy(z, np.array([0, 1]))
    assert np.all(np.abs(d.sum(axis=1)) < 1e-7)


# --------------------------------------------------------------------------------------
# The plain formula function
# --------------------------------------------------------------------------------------

from nnref.losses import cross_entropy_loss_and_grad  # noqa: E402


@given(z=float_arrays(st.tuples(batch_sizes, st.integers(2, 12))), seed=seeds,
       dtype=st.sampled_from([np.float32, np.float64]))
def test_checked_cross_entropy_is_the_plain_formula_bit_for_bit(z, seed, dtype):
    z = z.astype(dtype)
    labels = np.random.default_rng(seed).integers(0, z.shape[1], z.shape[0])
    z_before = z.copy()
    loss, grad = cross_entropy_loss_and_grad(z, labels)
    loss2, grad2 = softmax_cross_entropy(z, labels)
    assert loss == loss2 and grad.dtype == dtype
    np.testing.assert_array_equal(grad, grad2)
    np.testing.assert_array_equal(z, z_before)  # the logits are not modified
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-6)  # rows of p - y sum to 0


