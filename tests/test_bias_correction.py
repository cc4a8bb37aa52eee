"""Bias correction, empirical and analytic (nnref.quant.bias_correction), and the shared
layer-wise pieces (nnref.quant.layerwise)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnref.data import load_digits, train_test_split
from nnref.mlp import MLP
from nnref.optim import Adam
from nnref.quant import quantize_model
from nnref.quant.bias_correction import (
    analytic_bias_correction,
    clipped_normal_mean,
    empirical_bias_correction,
    expected_output_error,
    mean_output_errors,
    normal_cdf,
    normal_pdf,
    preactivation_statistics,
)
from nnref.quant.layerwise import (
    check_weight_set,
    dequantized_model,
    mse_scales,
    rtn_weights,
    to_quantized_mlp,
    weight_qparams,
)
from nnref.train import fit
from tests.strategies import relu_mlps_with_data

schemes = st.sampled_from(["tflite_int8_weights", "tflite_int8_weights_per_tensor"])


@pytest.fixture(scope="module")
def digits_model():
    x, y = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, seed=0)
    model = MLP([64, 32, 10], seed=0)
    fit(model, Adam(1e-3), x_tr, y_tr, epochs=8, batch_size=64, seed=0, verbose=False)
    return model, x_tr, x_te, y_te


@settings(max_examples=20)
@given(relu_mlps_with_data(), st.integers(2, 8), schemes)
def test_after_empirical_bias_correction_the_mean_output_error_is_zero(case, bits, scheme):
    model, x = case
    weights = rtn_weights(model, scheme, bits)
    corrected = empirical_bias_correction(model, weights, x)
    for l, err in enumerate(mean_output_errors(model, dequantized_model(corrected, weights), x)):
        scale = 1 + np.abs(model.forward(x)).max() + sum(np.abs(lin.b).max() for lin in corrected.linears)
        np.testing.assert_allclose(err, 0.0, atol=1e-9 * scale, err_msg=f"layer {l}")
    for old, new in zip(model.linears, corrected.linears):  # only the biases move
        np.testing.assert_array_equal(old.W, new.W)


@settings(max_examples=20)
@given(relu_mlps_with_data(), st.integers(2, 8), schemes)
def test_analytic_and_empirical_corrections_agree_on_the_first_layer(case, bits, scheme):
    """Its input is the data itself: E[x] is known exactly, no normal assumption."""
    model, x = case
    weights = rtn_weights(model, scheme, bits)
    mean, stats = preactivation_statistics(model, x)
    a = analytic_bias_correction(model, weights, mean, stats).linears[0].b
    e = empirical_bias_correction(model, weights, x).linears[0].b
    np.testing.assert_allclose(a, e, rtol=1e-9, atol=1e-9 * (1 + np.abs(e).max()))


def test_expected_output_error_worked_example():
    # E[x] = [1, 2]; W_hat - W = [[0.5, 0], [-0.25, 1]] -> [1*0.5 + 2*(-0.25), 2*1] = [0, 2]
    err = expected_output_error([1.0, 2.0], np.zeros((2, 2)), [[0.5, 0.0], [-0.25, 1.0]])
    np.testing.assert_array_equal(err, [0.0, 2.0])


def test_normal_functions_worked_values():
    assert normal_cdf(0.0) == 0.5
    assert abs(float(normal_cdf(1.959963984540054)) - 0.975) < 1e-12
    assert abs(float(normal_pdf(0.0)) - 1 / math.sqrt(2 * math.pi)) < 1e-16
    # E[relu(z)] for the standard normal is 1/sqrt(2 pi); sigma = 0 is relu(mu)
    np.testing.assert_allclose(clipped_normal_mean([0.0, 3.0, -3.0], [1.0, 0.0, 0.0]),
                               [1 / math.sqrt(2 * math.pi), 3.0, 0.0], rtol=1e-15)


@settings(max_examples=60)
@given(st.floats(-5, 5), st.floats(0.01, 5), st.floats(0, 0.5))
def test_clipped_normal_mean_laws(mu, sigma, alpha):
    m = float(clipped_normal_mean([mu], [sigma])[0])
    assert m >= max(mu, 0.0) - 1e-12        # Jensen: E[relu(z)] >= relu(E[z])
    assert m <= max(mu, 0.0) + sigma / math.sqrt(2 * math.pi) + 1e-12  # at most the mu = 0 bump
    leaky = float(clipped_normal_mean([mu], [sigma], alpha)[0])
    assert abs(leaky - (alpha * mu + (1 - alpha) * m)) < 1e-12
    assert float(clipped_normal_mean([mu + 0.1], [sigma])[0]) >= m  # non-decreasing in mu


def test_clipped_normal_mean_matches_sampling():
    rng = np.random.default_rng(0)
    for mu, sigma, alpha in [(0.3, 1.2, 0.0), (-1.0, 0.5, 0.0), (0.5, 2.0, 0.1)]:
        z = rng.normal(mu, sigma, size=400_000)
        f = np.where(z > 0, z, alpha * z)
        se = f.std() / math.sqrt(z.size)
        assert abs(f.mean() - float(clipped_normal_mean([mu], [sigma], alpha)[0])) < 5 * se


def test_bias_correction_on_digits_cancels_the_per_channel_error(digits_model):
    model, x_tr, x_te, y_te = digits_model
    weights = rtn_weights(model, "tflite_int8_weights_per_tensor", 3)
    before = mean_output_errors(model, dequantized_model(model, weights), x_tr)
    corrected = empirical_bias_correction(model, weights, x_tr)
    after = mean_output_errors(model, dequantized_model(corrected, weights), x_tr)
    assert max(np.abs(e).max() for e in before) > 1e-2  # there was a bias to remove
    assert max(np.abs(e).max() for e in after) < 1e-5
    # and the integer model's logits lose their systematic error on unseen data too
    ref = model.forward(x_te)
    shift = [np.abs((to_quantized_mlp(m, weights, x_tr).dequantized_logits(x_te) - ref).mean(axis=0)).mean()
             for m in (model, corrected)]
    assert shift[1] < shift[0]


# ------------------------------------------------------------------ layerwise


@pytest.mark.parametrize("scheme", ["tflite_int8_weights", "tflite_int8_weights_per_tensor"])
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_rtn_weight_set_converts_to_exactly_the_converters_model(digits_model, scheme, bits):
    model, x_tr, x_te, _ = digits_model
    ours = to_quantized_mlp(model, rtn_weights(model, scheme, bits), x_tr, calibrate_on="float")
    ref = quantize_model(model, x_tr, scheme, bits=bits)
    for a, b in zip(ours.layers, ref.layers):
        np.testing.assert_array_equal(a.w_q, b.w_q)
        np.testing.assert_array_equal(a.bias_q, b.bias_q)
    xq = ref.quantize_input(x_te)
    np.testing.assert_array_equal(ours.forward_int(xq), ref.forward_int(xq))


@settings(max_examples=40)
@given(relu_mlps_with_data(max_layers=2), st.integers(2, 8), st.booleans())
def test_mse_grid_never_has_more_squared_error_than_minmax(case, bits, per_channel):
    model, _ = case
    W = model.linears[0].W
    qmax = 2 ** (bits - 1) - 1
    s_mse = mse_scales(W, qmax, per_channel)
    s_mm = (np.abs(W).max(axis=0) if per_channel else np.abs(W).max()) / qmax

    def err(s):
        return ((W - s * np.clip(np.round(W / s), -qmax, qmax)) ** 2).sum(axis=0 if per_channel else None)

    assert np.all(err(s_mse) <= err(s_mm) * (1 + 1e-12) + 1e-300)


def test_weight_qparams_minmax_is_the_converters_grid(digits_model):
    from nnref.quant import quantize_weights

    W = digits_model[0].linears[0].W
    assert weight_qparams(W, bits=3) == quantize_weights(W, bits=3)[1]
    mse = weight_qparams(W, bits=2, method="mse")
    assert np.all(mse.scale <= quantize_weights(W, bits=2)[1].scale * (1 + 1e-6))


def test_bad_weight_sets_and_arguments_are_refused(digits_model):
    model, x_tr, _, _ = digits_model
    w = rtn_weights(model, bits=4)
    with pytest.raises(ValueError, match="weights"):
        check_weight_set(model, w[:1])
    with pytest.raises(TypeError, match=r"weights\[0\]\[0\]"):
        check_weight_set(model, [(w[0][0].astype(np.int16), w[0][1]), w[1]])
    with pytest.raises(ValueError, match="method"):
        weight_qparams(model.linears[0].W, method="l1")
    with pytest.raises(ValueError, match="symmetric"):
        weight_qparams(model.linears[0].W, "tflite_int8_activations")
    with pytest.raises(ValueError, match="calibrate_on"):
        to_quantized_mlp(model, w, x_tr, calibrate_on="both")
    with pytest.raises(ValueError, match="stats"):
        analytic_bias_correction(model, w, np.zeros(64), [])


def test_mse_scales_worked_example():
    # 2 bits (levels -1, 0, 1): the min-max step 1.0 sends 0.6, 0.55 and -0.6 to 0 or 1 far
    # from them (error 0.5225); the best candidate j / 100 is 0.69 (error 0.1319), next to
    # the continuous optimum 0.6875, the mean of the four magnitudes all rounded to +-1.
    W = np.array([[1.0], [0.6], [0.55], [-0.6]])
    assert mse_scales(W, 1, per_channel=True)[0] == pytest.approx(0.69, abs=1e-12)
    assert mse_scales(W, 1, per_channel=False) == pytest.approx(0.69, abs=1e-12)
