"""Tests for nnref.mlp: every parameter gradient against central differences, parameter
dicts, per-example gradients, save/load (and every way a file can be wrong), astype, and
bad input."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from nnref.gradcheck import numerical_gradient, rel_error
from nnref.layers import Linear
from nnref.mlp import MLP
from strategies import batch_sizes, seeds, widths

TOL = 1e-6
KINK_GAP = 1e-4  # min |pre-activation| for ReLU nets; see test_mlp_gradients_match_...

activations = st.sampled_from(["relu", "leaky_relu", "tanh", "sigmoid"])
losses = st.sampled_from(["cross_entropy", "mse"])
# [in, hidden..., out] with 0-2 hidden layers; at least 2 outputs so cross-entropy has a choice
layer_sizes = st.tuples(widths, st.lists(widths, min_size=0, max_size=2), st.integers(2, 24)).map(
    lambda t: [t[0], *t[1], t[2]]
)


def random_problem(sizes, batch, loss, seed, activation="relu", dtype=np.float64):
    """A model with random (non-zero) biases, inputs and targets, all from ``seed``."""
    rng = np.random.default_rng(seed)
    model = MLP(sizes, activation=activation, seed=seed, dtype=dtype)
    for lin in model.linears:
        lin.b[...] = rng.standard_normal(lin.b.shape)
    x = rng.standard_normal((batch, sizes[0]))
    if loss == "cross_entropy":
        y = rng.integers(0, sizes[-1], batch)
    else:
        y = rng.standard_normal((batch, sizes[-1]))
    return model, x, y


def hidden_preactivations(model, x):
    """Outputs of every Linear layer but the last (the inputs of the activations)."""
    out, h = [], x
    for layer in model.layers[:-1]:
        h = layer.forward(h)
        if isinstance(layer, Linear):
            out.append(h)
    return out


# --------------------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------------------


# Each example costs 2 forward passes per parameter (up to ~1,800 parameters): 25 examples
# keep this test near a second.
@settings(max_examples=25)
@given(sizes=layer_sizes, batch=batch_sizes, activation=activations, loss=losses, seed=seeds)
def test_mlp_gradients_match_central_differences(sizes, batch, activation, loss, seed):
    model, x, y = random_problem(sizes, batch, loss, seed, activation)
    if activation in ("relu", "leaky_relu"):
        # Perturbing one parameter by h = 1e-6 moves a pre-activation by ~h * |input| <~ 1e-5.
        # A pre-activation that close to 0 would cross the kink during the central
        # difference, which then measures the average of the two one-sided slopes instead of
        # the derivative. Keep every pre-activation KINK_GAP = 1e-4 away (rejects ~5%).
        assume(all(np.min(np.abs(z)) > KINK_GAP for z in hidden_preactivations(model, x)))
    _, grads = model.loss_and_grads(x, y, loss=loss)
    grads = {k: v.copy() for k, v in grads.items()}

    def f(_):
        return model.loss(x, y, loss)[0]

    for name, p in model.params.items():
        assert rel_error(grads[name], numerical_gradient(f, p)) < TOL, name


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_every_activation_and_loss_pair_passes_the_gradient_check(activation, loss):
    # the random search above samples these pairs; this makes sure each one is checked
    model, x, y = random_problem([7, 9, 6, 4], 5, loss, 3, activation)
    if activation in ("relu", "leaky_relu"):
        assert all(np.min(np.abs(z)) > KINK_GAP for z in hidden_preactivations(model, x))
    _, grads = model.loss_and_grads(x, y, loss=loss)
    grads = {k: v.copy() for k, v in grads.items()}
    for name, p in model.params.items():
        num = numerical_gradient(lambda _: model.loss(x, y, loss)[0], p)
        assert rel_error(grads[name], num) < TOL, name


@settings(max_examples=30)
@given(sizes=layer_sizes, batch=batch_sizes, activation=activations, loss=losses, seed=seeds)
def test_per_example_grads_equal_a_loop_of_single_example_grads(sizes, batch, activation, loss, seed):
    model, x, y = random_problem(sizes, batch, loss, seed, activation)
    per = model.per_example_grads(x, y, loss=loss)
    assert list(per) == list(model.params)
    for name, p in model.params.items():
        assert per[name].shape == (batch, *p.shape)
    for i in range(batch):
        _, gi = model.loss_and_grads(x[i:i + 1], y[i:i + 1], loss=loss)
        for name in per:
            np.testing.assert_allclose(per[name][i], gi[name], rtol=1e-10, atol=1e-12, err_msg=name)
    # the batch loss is the mean of the examples' losses, so its gradient is their mean
    _, g = model.loss_and_grads(x, y, loss=loss)
    for name in per:
        np.testing.assert_allclose(per[name].mean(axis=0), g[name], rtol=1e-10, atol=1e-12, err_msg=name)


def test_gradients_of_a_float32_model_are_float32():
    model, x, y = random_problem([3, 4, 2], 5, "cross_entropy", 0, dtype=np.float32)
    _, grads = model.loss_and_grads(x, y)
    assert all(g.dtype == np.float32 for g in grads.values())
    assert model.forward(x).dtype == np.float32


# --------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------


def test_params_and_grads_are_keyed_by_layer():
    model = MLP([5, 4, 3, 2], seed=0)
    expected = {"W1": (5, 4), "b1": (4,), "W2": (4, 3), "b2": (3,), "W3": (3, 2), "b3": (2,)}
    assert {k: v.shape for k, v in model.params.items()} == expected
    assert list(model.params) == list(expected)
    _, grads = model.loss_and_grads(np.ones((2, 5)), np.array([0, 1]))
    assert {k: v.shape for k, v in grads.items()} == expected
    assert model.n_params == 5 * 4 + 4 + 4 * 3 + 3 + 3 * 2 + 2
    assert len(model.layers) == 5  # Linear, ReLU, Linear, ReLU, Linear


def test_params_are_the_models_own_arrays():
    model = MLP([3, 4, 2], seed=0, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((5, 3))
    before = model.forward(x)
    params = model.params
    assert params["W1"] is model.linears[0].W and params["b2"] is model.linears[1].b
    params["b2"] += 1.0  # in place, as an optimizer does
    # the output layer is affine: adding 1 to b2 adds 1 to every logit
    np.testing.assert_allclose(model.forward(x), before + 1.0, rtol=1e-15, atol=1e-15)


def test_mlp_forward_worked_example():
    model = MLP([2, 2, 1], activation="relu", dtype=np.float64)
    model.set_params({"W1": [[1.0, -1.0], [2.0, 0.0]], "b1": [0.0, 1.0], "W2": [[1.0], [3.0]], "b2": [0.5]})
    x = np.array([[1.0, 1.0], [-1.0, 0.5]])
    # row 1: z1 = [1 + 2, -1 + 0] + [0, 1] = [3, 0]; relu -> [3, 0]; z2 = 3*1 + 0*3 + 0.5 = 3.5
    # row 2: z1 = [-1 + 1, 1 + 0] + [0, 1] = [0, 2]; relu -> [0, 2]; z2 = 0*1 + 2*3 + 0.5 = 6.5
    np.testing.assert_array_equal(model.forward(x), [[3.5], [6.5]])


def test_predict_proba_and_accuracy_worked_example():
    model = MLP([2, 2], dtype=np.float64)  # no hidden layer: logits = x @ W + b
    model.set_params({"W1": np.eye(2), "b1": np.zeros(2)})
    x = np.array([[2.0, 1.0], [0.0, 3.0], [np.log(3.0), 0.0]])
    np.testing.assert_array_equal(model.predict(x), [0, 1, 0])
    assert model.predict(x).dtype == np.int64
    # row 3: softmax([ln 3, 0]) = [3/4, 1/4]
    np.testing.assert_allclose(model.predict_proba(x)[2], [0.75, 0.25], rtol=1e-15)
    # predictions [0, 1, 0] against labels [0, 0, 0]: 2 of 3 right
    assert model.accuracy(x, np.array([0, 0, 0])) == pytest.approx(2 / 3)


@pytest.mark.parametrize("init", ["he", "he_uniform", "xavier", "xavier_uniform"])
def test_same_seed_same_weights(init):
    a, b, c = (MLP([6, 5, 4], init=init, seed=s) for s in (7, 7, 8))
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert not np.array_equal(a.params["W1"], c.params["W1"])


def test_set_params_copies_and_checks():
    model = MLP([2, 3, 2], seed=0)
    new = {k: np.full(v.shape, 0.5) for k, v in model.params.items()}
    model.set_params(new)
    new["W1"][...] = 9.0  # a copy was taken
    assert np.all(model.params["W1"] == 0.5) and model.params["W1"].dtype == np.float32
    with pytest.raises(ValueError, match="params: expected keys"):
        model.set_params({"W1": np.zeros((2, 3))})
    bad = {k: np.zeros(v.shape) for k, v in model.params.items()}
    bad["b2"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"params\['b2'\]: expected shape \(2,\), got \(3,\)"):
        model.set_params(bad)


def test_astype_float64_copies_exactly_and_independently():
    model = MLP([4, 3, 2], seed=0)  # float32
    m64 = model.astype(np.float64)
    assert m64.dtype == np.float64 and model.dtype == np.float32
    for k, p in m64.params.items():
        assert p.dtype == np.float64
        np.testing.assert_array_equal(p, model.params[k].astype(np.float64))  # float32 -> 64 is exact
    m64.params["W1"][...] = 0.0
    assert np.any(model.params["W1"] != 0)
    x = np.random.default_rng(0).standard_normal((5, 4))
    assert m64.forward(x).dtype == np.float64
    np.testing.assert_allclose(MLP([4, 3, 2], seed=0).astype(np.float64).forward(x), model.forward(x),
                               rtol=1e-5, atol=1e-5)


def test_non_finite_logits_give_a_nan_loss_not_an_error():
    # finite x with weights big enough to overflow float32: the model has diverged
    model = MLP([2, 2, 2], seed=0)
    model.params["W1"][...] = 1e30
    model.params["W2"][...] = 1e30
    with np.errstate(over="ignore", invalid="ignore"):
        value, d = model.loss(np.ones((3, 2)), np.array([0, 1, 0]))
    assert np.isnan(value) and d.shape == (3, 2) and np.all(np.isnan(d))


# --------------------------------------------------------------------------------------
# Save / load
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_save_load_round_trip_is_bitwise(tmp_path, dtype, activation):
    model, x, _ = random_problem([5, 4, 3, 2], 3, "cross_entropy", 1, activation, dtype)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = MLP.load(path)
    assert loaded.layer_sizes == [5, 4, 3, 2]
    assert loaded.activation == activation and loaded.dtype == dtype
    for k, p in model.params.items():
        assert loaded.params[k].dtype == p.dtype
        np.testing.assert_array_equal(loaded.params[k], p)
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))
    MLP.load(str(path))  # str paths work as well as Path


def _saved(tmp_path, name="model.npz"):
    path = tmp_path / name
    MLP([4, 3, 2], seed=0).save(path)
    return path


def _raises_naming(path, match=""):
    return pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + match)


def test_load_truncated_file(tmp_path):
    path = _saved(tmp_path)
    data = path.read_bytes()
    for cut in (0, 10, len(data) // 2, len(data) - 10):
        bad = tmp_path / f"cut{cut}.npz"
        bad.write_bytes(data[:cut])
        with _raises_naming(bad, "not a readable nnref .npz model file"):
            MLP.load(bad)


def test_load_foreign_npz(tmp_path):
    path = tmp_path / "foreign.npz"
    rng = np.random.default_rng(0)
    np.savez(path, W1=rng.standard_normal((4, 3)), something=rng.standard_normal(5))
    with _raises_naming(path, "not an nnref MLP file"):
        MLP.load(path)


def test_load_non_zip_file(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("these are not the weights you are looking for\n")
    with _raises_naming(path, "not a readable nnref .npz model file"):
        MLP.load(path)


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        MLP.load(tmp_path / "nope.npz")


def _edit(path, **changes):
    with np.load(path) as f:
        arrays = dict(f)
    arrays.update(changes)
    for k in [k for k, v in arrays.items() if v is None]:
        del arrays[k]
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"W1": np.zeros((4, 5), dtype=np.float32)}, r"parameter 'W1' expected float32\(4, 3\)"),
        ({"b2": np.zeros(2, dtype=np.float64)}, r"parameter 'b2' expected float32\(2,\)"),
        ({"layer_sizes": np.array([4, 5, 2])}, r"parameter 'W1' expected float32\(4, 5\)"),
        ({"layer_sizes": np.array([4, 3])}, r"unexpected entries \['W2', 'b2'\]"),
        ({"layer_sizes": np.array([4, 3, 2, 2])}, "missing parameter 'W3'"),
        ({"layer_sizes": np.array([4, 0, 2])}, "inconsistent architecture record.*layer_sizes"),
        ({"activation": np.array("swish")}, "inconsistent architecture record.*activation"),
        ({"b1": None}, "missing parameter 'b1'"),
        ({"format_version": np.array(99)}, "format version"),
        ({"format_version": None}, "format version"),
    ],
    ids=["W1-shape", "b2-dtype", "sizes-vs-W1", "fewer-layers", "more-layers", "zero-width",
         "activation", "missing-b1", "version", "no-version"],
)
def test_load_mismatched_architecture(tmp_path, changes, match):
    path = _saved(tmp_path)
    _edit(path, **changes)
    with _raises_naming(path, match):
        MLP.load(path)


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sizes", [[10], [], [3, 0], [3, -2], [3, 2.5], [True, 3], "abc", [3, "4"], None, 5],
    ids=["one", "empty", "zero", "negative", "float", "bool", "string", "str-entry", "None", "int"],
)
def test_bad_layer_sizes(sizes):
    with pytest.raises(ValueError, match="layer_sizes: expected a list of at least two positive integers"):
        MLP(sizes)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="activation: expected one of"):
        MLP([3, 4, 2], activation="swish")
    with pytest.raises(ValueError, match="activation: expected one of"):
        MLP([3, 2], activation="swish")  # no hidden layer, but still a typo
    with pytest.raises(ValueError, match="init: expected one of"):
        MLP([3, 2], init="orthogonal")
    with pytest.raises(TypeError, match="dtype: expected float16, float32 or float64, got int32"):
        MLP([3, 2], dtype=np.int32)
    with pytest.raises(TypeError, match="seed"):
        MLP([3, 2], seed=1.5)


@pytest.mark.parametrize(
    "x, exc, match",
    [
        (np.ones((2, 5)), ValueError, r"x: expected 4 features per example .*got shape \(2, 5\)"),
        (np.ones(4), ValueError, r"x: expected a 2-D array, got shape \(4,\)"),
        (np.ones((0, 4)), ValueError, "x: expected a non-empty array"),
        (np.array([[1.0, np.nan, 0.0, 0.0]]), ValueError, "x: expected finite values, got 1 NaN"),
        (np.array([[1.0, np.inf, 0.0, 0.0]]), ValueError,
         "x: expected finite values, got 0 NaN and 1 infinite"),
        (np.array([["a", "b", "c", "d"]]), TypeError, "x: expected a real numeric array.*<U1"),
        ([[1.0, 2.0], [3.0]], TypeError, "x: expected a numeric array"),
    ],
    ids=["features", "1-D", "empty", "nan", "inf", "strings", "ragged"],
)
def test_bad_x(x, exc, match):
    model = MLP([4, 3, 2])
    with pytest.raises(exc, match=match):
        model.forward(x)
    with pytest.raises(exc, match=match):
        model.loss_and_grads(x, np.zeros(len(x), dtype=np.int64))


def test_bad_labels_and_loss():
    model = MLP([4, 3, 2])
    x = np.ones((3, 4))
    with pytest.raises(ValueError, match=r"labels: expected values in \[0, 1\], got values in \[0, 2\]"):
        model.loss_and_grads(x, np.array([0, 1, 2]))
    with pytest.raises(TypeError, match="labels: expected integer class indices, got dtype float64"):
        model.loss_and_grads(x, np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"labels: expected shape \(3,\)"):
        model.accuracy(x, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"target: expected the shape of pred \(3, 2\)"):
        model.loss_and_grads(x, np.zeros(3), loss="mse")
    with pytest.raises(ValueError, match="loss: expected one of"):
        model.loss(x, np.array([0, 1, 1]), loss="hinge")


def test_backward_before_forward_and_grads_before_backward():
    model = MLP([4, 3, 2])
    with pytest.raises(RuntimeError, match="grads: no gradients yet"):
        model.grads
    with pytest.raises(RuntimeError, match="backward called before forward"):
        model.backward(np.ones((1, 2)))
    model.forward(np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"grad_out: expected an array of the output's shape \(3, 2\)"):
        model.backward(np.ones((2, 2)))


def test_repr_states_architecture():
    assert repr(MLP([4, 3, 2], activation="tanh")) == (
        "MLP([4, 3, 2], activation='tanh', dtype=float32, n_params=23)"
    )


def test_astype_refuses_integers_and_leaves_no_stale_cache():
    model = MLP([3, 4, 2], seed=0)
    model.loss_and_grads(np.ones((2, 3)), np.array([0, 1]))
    m64 = model.astype(np.float64)
    assert m64.dtype == np.float64 and all(v.dtype == np.float64 for v in m64.params.values())
    with pytest.raises(RuntimeError, match="no gradients yet"):
        m64.grads  # gradients of the old dtype were not carried over
    np.testing.assert_array_equal(m64.params["W1"], model.params["W1"].astype(np.float64))
    with pytest.raises(TypeError, match="dtype: expected float16, float32 or float64, got int32"):
        model.astype(np.int32)


def test_inputs_checked_block_skips_the_checks_and_restores_them():
    model = MLP([3, 2], seed=0)
    x = np.ones((2, 3))
    with model.inputs_checked():
        np.testing.assert_array_equal(model.forward(x), MLP([3, 2], seed=0).forward(x))
    with pytest.raises(ValueError, match="x: expected finite values"):
        model.forward(np.full((2, 3), np.nan))  # checked again after the block
    with pytest.raises(ValueError, match="x: expected values within the model's float32 range"):
        model.check_input(np.full((1, 3), 1e39))
    assert model.check_input(np.full((1, 3), 1e38)).dtype == np.float32


def test_predict_refuses_inputs_that_overflow_inside_the_network():
    """Inputs within float32's range whose logits overflow would all predict class 0:
    predict, predict_proba and accuracy refuse them, naming x and the rows."""
    model = MLP([64, 64, 10], seed=0)
    x = np.full((3, 64), 3e38, dtype=np.float32)
    for call in (lambda: model.predict(x), lambda: model.predict_proba(x),
                 lambda: model.accuracy(x, np.array([0, 1, 2]))):
        with pytest.raises(ValueError, match=r"x: expected inputs this model maps to finite logits; rows \[0, 1, 2\]"):
            call()
    large = np.full((3, 64), 1e30, dtype=np.float32)  # large, but the logits stay finite
    assert np.array_equal(model.predict(large), np.argmax(model.forward(large), axis=1))
