"""Precision from statistics: weight statistics, sensitivity, choose_bit_widths, mixed bits."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnref.data import load_digits, train_test_split
from nnref.mlp import MLP
from nnref.optim import Adam
from nnref.quant.convert import QuantizedMLP, quantize_model
from nnref.quant.report import model_size_bytes
from nnref.quant.sensitivity import (
    bits_from_statistics,
    choose_bit_widths,
    crest_factor,
    excess_kurtosis,
    layer_sensitivity,
    layer_statistics,
    min_bits_for_sqnr,
    mixed_size_bytes,
    outlier_fraction,
    predicted_sqnr_db,
    quantize_layer_weights,
    quantize_model_mixed,
    sqnr_db,
)
from nnref.train import fit
from tests.strategies import seeds


@pytest.fixture(scope="module")
def setup():
    x, y = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, seed=0)
    x_fit, x_val, y_fit, y_val = train_test_split(x_tr, y_tr, test_fraction=0.25, seed=0)
    model = MLP([64, 32, 32, 10], seed=0)
    fit(model, Adam(3e-3), x_fit, y_fit, epochs=10, batch_size=32, verbose=False)
    return model, x_fit, x_val, y_val, x_te, y_te


def test_statistics_worked_values():
    two_point = np.array([-1.0, 1.0, -1.0, 1.0])
    assert excess_kurtosis(two_point) == pytest.approx(-2.0)
    assert crest_factor(two_point) == 1.0
    w = np.zeros(1000)
    w[0] = 10.0
    w[1:] = np.tile([-1.0, 1.0], 500)[:999]
    assert outlier_fraction(w) == 0.001
    assert sqnr_db(np.ones(3), np.ones(3)) == np.inf
    assert sqnr_db(np.array([3.0, 4.0]), np.array([3.0, 3.0])) == pytest.approx(10 * np.log10(25))


def test_gaussian_statistics_and_the_six_db_rule():
    w = np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32)
    assert abs(excess_kurtosis(w)) < 0.05
    assert abs(outlier_fraction(w) - 0.0027) < 0.001
    for bits in (6, 8):
        measured = sqnr_db(w, quantize_layer_weights(w, bits, "tflite_int8_weights_per_tensor"))
        assert abs(measured - predicted_sqnr_db(bits, crest_factor(w))) < 0.5


@given(seeds)
def test_sqnr_grows_with_bits(seed):
    w = np.random.default_rng(seed).standard_normal((16, 8)).astype(np.float32)
    s = [sqnr_db(w, quantize_layer_weights(w, b)) for b in range(2, 9)]
    assert all(a < b for a, b in zip(s, s[1:]))


@given(st.integers(2, 8), st.lists(st.integers(1, 20), min_size=2, max_size=5), st.booleans())
def test_mixed_size_of_uniform_bits_is_model_size_bytes(bits, sizes, per_channel):
    model = MLP(sizes)
    n = len(sizes) - 1
    assert mixed_size_bytes(model, [bits] * n, per_channel) == \
        model_size_bytes(model, f"int{bits}", per_channel).total


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_uniform_mixed_model_is_quantize_model(setup, bits):
    model, x_fit, _, _, x_te, _ = setup
    a = quantize_model_mixed(model, x_fit, [bits] * 3)
    b = quantize_model(model, x_fit, bits=bits)
    xq = b.quantize_input(x_te)
    assert np.array_equal(a.forward_int(xq), b.forward_int(xq))


def test_mixed_model_runs_integer_only_with_per_layer_bits(setup, tmp_path):
    model, x_fit, _, _, x_te, y_te = setup
    q = quantize_model_mixed(model, x_fit, [4, 2, 8])
    assert [layer.weight_bits for layer in q.layers] == [4, 2, 8]
    q.save(tmp_path / "mixed.npz")  # the file format keeps each layer's grid
    loaded = QuantizedMLP.load(tmp_path / "mixed.npz")
    assert [layer.weight_bits for layer in loaded.layers] == [4, 2, 8]
    xq = q.quantize_input(x_te)
    assert np.array_equal(loaded.forward_int(xq, method="int"), q.forward_int(xq))
    assert q.layers[1].w_q.min() >= -1 and q.layers[1].w_q.max() <= 1
    assert q.accuracy(x_te, y_te) > 0.5
    with pytest.raises(ValueError, match="one width per layer"):
        quantize_model_mixed(model, x_fit, [4, 4])
    with pytest.raises(ValueError, match="bits"):
        quantize_model_mixed(model, x_fit, [4, 1, 8])


def test_sensitivity_is_larger_at_fewer_bits(setup):
    model, _, x_val, y_val, _, _ = setup
    sens = layer_sensitivity(model, x_val, y_val, bits=(2, 8))
    assert sens.loss.shape == (3, 2)
    assert np.all(sens.delta_loss[:, 0] > sens.delta_loss[:, 1])
    assert np.all(np.abs(sens.delta_loss[:, 1]) < 0.01)
    stats = layer_statistics(model)
    assert [s.name for s in stats] == ["W1", "W2", "W3"]
    assert all(s.sqnr_db[8] > s.sqnr_db[2] + 30 for s in stats)


def test_choose_bit_widths_fits_the_size_budget(setup):
    model, _, x_val, y_val, _, _ = setup
    budget = mixed_size_bytes(model, [3, 3, 3])
    choice = choose_bit_widths(model, x_val, y_val, size_budget=budget)
    assert choice.size_bytes <= budget
    assert choice.size_bytes == mixed_size_bytes(model, choice.bits)
    # the winner was measured, and nothing measured beat it
    assert all(choice.loss <= loss for _, loss, _ in choice.evaluated)
    uniform_loss = [loss for bits, loss, _ in choice.evaluated if bits == (3, 3, 3)]
    assert not uniform_loss or choice.loss <= uniform_loss[0]


def test_choose_bit_widths_accuracy_budget_gives_the_smallest_within_it(setup):
    model, _, x_val, y_val, _, _ = setup
    choice = choose_bit_widths(model, x_val, y_val, max_accuracy_drop=0.01)
    assert choice.accuracy >= choice.sensitivity.base_accuracy - 0.01
    for bits, _, acc in choice.evaluated[:-1]:  # every smaller one tried fell short
        assert acc < choice.sensitivity.base_accuracy - 0.01
        assert mixed_size_bytes(model, bits) <= choice.size_bytes


def test_choose_bit_widths_bad_input(setup):
    model, _, x_val, y_val, _, _ = setup
    with pytest.raises(ValueError, match="exactly one"):
        choose_bit_widths(model, x_val, y_val)
    with pytest.raises(ValueError, match="no assignment fits"):
        choose_bit_widths(model, x_val, y_val, size_budget=10)
    with pytest.raises(TypeError, match="candidates"):
        choose_bit_widths(model, x_val, y_val, size_budget=10**6, candidates=4)


def test_with_one_evaluation_the_choice_minimises_the_predicted_cost(setup):
    import itertools

    model, _, x_val, y_val, _, _ = setup
    budget = mixed_size_bytes(model, [4, 4, 4])
    choice = choose_bit_widths(model, x_val, y_val, size_budget=budget, candidates=(2, 3, 4, 6, 8), n_eval=1)
    col = {b: j for j, b in enumerate(choice.sensitivity.bits)}
    costs = {a: sum(choice.sensitivity.delta_loss[l, col[b]] for l, b in enumerate(a))
             for a in itertools.product((2, 3, 4, 6, 8), repeat=3) if mixed_size_bytes(model, a) <= budget}
    assert len(costs) == choice.n_feasible
    assert choice.predicted_delta_loss == pytest.approx(min(costs.values()))
    assert costs[choice.bits] == pytest.approx(min(costs.values()))


@given(st.floats(1.0, 100.0), st.floats(-10.0, 90.0))
def test_min_bits_for_sqnr_is_the_fewest_that_reach_the_target(crest, target):
    b = min_bits_for_sqnr(crest, target)
    assert 2 <= b <= 16
    if b < 16:
        assert predicted_sqnr_db(b, crest) >= target
    if b > 2:
        assert predicted_sqnr_db(b - 1, crest) < target


def test_an_outlier_costs_bits_from_statistics(setup):
    model = setup[0].copy()
    per_tensor = "tflite_int8_weights_per_tensor"
    before = bits_from_statistics(model, 20.0, per_tensor)
    W2 = model.params["W2"]
    W2[0, 0] = 3 * np.abs(W2).max()  # one outlier: the whole grid is stretched 3x (-9.5 dB)
    after = bits_from_statistics(model, 20.0, per_tensor)
    assert after[0] == before[0] and after[2] == before[2]
    assert after[1] > before[1]
