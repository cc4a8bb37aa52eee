"""Bias correction: remove the mean of the output error that weight quantization causes
(Nagel et al. 2019, "Data-Free Quantization Through Weight Equalization and Bias
Correction", arXiv 1906.04721, section 4.2 and appendices C-D).

Quantizing ``W`` to ``W_hat = W + eps`` changes a layer's pre-activation by ``x eps``,
whose mean over the data, ``E[x] eps``, is in general not zero: rounding errors of one
output channel need not cancel, and at low bit widths they do not. A biased error shifts
every later layer. Since ``E[x W_hat + b] = E[x W + b] + E[x] eps``, subtracting the
expected error from the bias removes it::

    b_l <- b_l - E[x_l] (W_hat_l - W_l)

Two ways to get ``E[x_l]``:

- **empirical**: run calibration data through the float model and through the model with
  quantized weights (corrected so far), and take ``eps_l = mean_n(z_hat_l - z_l)``
  directly; layers are corrected in order, so each sees its inputs as the corrected
  quantized network produces them (the paper's appendix D);
- **analytic** (data-free in the paper, where the statistics come from batch
  normalization): the input of layer ``l > 0`` is ``f(z)`` of the previous pre-activation
  ``z``; assuming ``z ~ N(mu, sigma^2)`` per channel, ``E[relu(z)]`` is the mean of a
  clipped normal (appendix C)::

      E[relu(z)] = mu Phi(mu / sigma) + sigma phi(mu / sigma)

  (``phi``, ``Phi`` the standard normal density and distribution), and for a leaky ReLU
  of slope ``a``: ``E = a mu + (1 - a) E[relu(z)]``. Here ``mu`` and ``sigma`` are the
  float pre-activation's mean and standard deviation over calibration data (nnref's MLPs
  have no batch normalization to read them from).

The corrected model is a float :class:`~nnref.mlp.MLP` with the original weights and new
biases; :func:`~nnref.quant.layerwise.to_quantized_mlp` pairs it with the weight set it was
corrected for.
"""

from __future__ import annotations

import math

import numpy as np

from nnref._checks import as_float_array, describe
from nnref.mlp import MLP
from nnref.quant.layerwise import (
    check_weight_set,
    dequantized_model,
    layer_activations,
    layer_inputs,
)

__all__ = [
    "normal_cdf",
    "normal_pdf",
    "clipped_normal_mean",
    "expected_output_error",
    "preactivation_statistics",
    "empirical_bias_correction",
    "analytic_bias_correction",
    "mean_output_errors",
]

_erf = np.vectorize(math.erf, otypes=[np.float64])


def normal_pdf(t) -> np.ndarray:
    """Standard normal density ``phi(t) = exp(-t^2 / 2) / sqrt(2 pi)`` (float64)."""
    t = np.asarray(t, dtype=np.float64)
    return np.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi)


def normal_cdf(t) -> np.ndarray:
    """Standard normal distribution ``Phi(t) = (1 + erf(t / sqrt 2)) / 2`` (float64)."""
    return 0.5 * (1.0 + _erf(np.asarray(t, dtype=np.float64) / math.sqrt(2.0)))


def clipped_normal_mean(mu, sigma, alpha: float = 0.0) -> np.ndarray:
    """``E[f(z)]`` for ``z ~ N(mu, sigma^2)`` and ``f`` the (leaky) ReLU of slope ``alpha``.

    Formula (Nagel et al. 2019, appendix C, the mean of a normal clipped at 0)::

        E[relu(z)]  = mu Phi(mu / sigma) + sigma phi(mu / sigma)
        E[leaky(z)] = alpha mu + (1 - alpha) E[relu(z)]      (leaky(z) = relu(z) - alpha relu(-z))

    and ``max(mu, 0)`` (resp. ``leaky(mu)``) where ``sigma = 0``.

    Parameters
    ----------
    mu : array (n,)
    sigma : array (n,), >= 0
    alpha : float

    Returns
    -------
    ndarray (n,), float64
    """
    mu, sigma = np.asarray(mu, dtype=np.float64), np.asarray(sigma, dtype=np.float64)
    t = mu / np.where(sigma > 0, sigma, 1.0)
    relu_mean = np.where(sigma > 0, mu * normal_cdf(t) + sigma * normal_pdf(t), np.maximum(mu, 0.0))
    return alpha * mu + (1.0 - alpha) * relu_mean


def expected_output_error(expected_input, W, W_hat) -> np.ndarray:
    """The mean change of a layer's output when ``W`` is replaced by ``W_hat``: ``E[x] (W_hat - W)``.

    Parameters
    ----------
    expected_input : array (in,)
    W, W_hat : array (in, out)

    Returns
    -------
    ndarray (out,), float64

    References
    ----------
    Nagel et al. 2019, arXiv 1906.04721, section 4.2 (``E[y_hat] = E[y] + eps E[x]``).
    """
    return np.asarray(expected_input, np.float64) @ (np.asarray(W_hat, np.float64) - np.asarray(W, np.float64))


def preactivation_statistics(model: MLP, x) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """``(input_mean, [(mean_l, std_l), ...])``: the mean of ``x`` (the first layer's
    input) and, per Linear layer, the mean and standard deviation of its float
    pre-activation over ``x`` (what batch normalization would hold), float64."""
    inputs, pre = layer_inputs(model, x)
    stats = [(z.astype(np.float64).mean(axis=0), z.astype(np.float64).std(axis=0)) for z in pre]
    return inputs[0].astype(np.float64).mean(axis=0), stats


def mean_output_errors(model: MLP, quantized: MLP, x) -> list[np.ndarray]:
    """Per Linear layer, ``mean_n(z_hat_l - z_l)`` over ``x``: the mean pre-activation error
    of ``quantized`` (e.g. a :func:`~nnref.quant.layerwise.dequantized_model`) against
    ``model``, each run on its own activations. Zero after empirical bias correction."""
    if not isinstance(quantized, MLP) or isinstance(model, MLP) and quantized.layer_sizes != model.layer_sizes:
        raise TypeError(f"quantized: expected an MLP of model's layer sizes, got {describe(quantized)}")
    _, pre = layer_inputs(model, x)
    _, pre_q = layer_inputs(quantized, x)
    return [(zq.astype(np.float64) - z.astype(np.float64)).mean(axis=0) for z, zq in zip(pre, pre_q)]


def _check(model, weights):
    if not isinstance(model, MLP):
        raise TypeError(f"model: expected an nnref.mlp.MLP, got {describe(model)}")
    return check_weight_set(model, weights)


def empirical_bias_correction(model: MLP, weights, calibration_x) -> MLP:
    """A copy of ``model`` whose biases cancel the mean output error of ``weights``.

    For ``l = 0, 1, ...``: ``eps_l = mean_n(z_hat_l - z_l)`` over ``calibration_x``, with
    ``z_l`` the float model's pre-activation and ``z_hat_l`` that of the model with the
    dequantized ``weights`` and the biases corrected so far; then ``b_l <- b_l - eps_l``.
    Afterwards :func:`mean_output_errors` of the corrected pair is zero in every layer (to
    float rounding).

    Parameters
    ----------
    model : MLP
        The float model (not changed).
    weights : list of (w_q, QParams)
        The weight set the integer model will use (e.g. ``rtn_weights`` or ``adaround``).
    calibration_x : array (N, in_features)

    Returns
    -------
    MLP
        ``model``'s weights with corrected biases.
    """
    weights = _check(model, weights)
    x = model.check_input(calibration_x, "calibration_x")
    corrected = model.copy()
    _, pre = layer_inputs(model, x)
    for l, lin in enumerate(corrected.linears):
        _, pre_q = layer_inputs(dequantized_model(corrected, weights), x)
        eps = (pre_q[l].astype(np.float64) - pre[l].astype(np.float64)).mean(axis=0)
        lin.b = (lin.b - eps).astype(lin.b.dtype)
    return corrected


def analytic_bias_correction(model: MLP, weights, input_mean, stats) -> MLP:
    """A copy of ``model`` whose biases cancel the *expected* output error of ``weights``.

    ``b_l <- b_l - expected_output_error(E[x_l], W_l, W_hat_l)`` with ``E[x_0] =
    input_mean`` and, for ``l > 0``, ``E[x_l] = clipped_normal_mean(mu_{l-1},
    sigma_{l-1}, alpha)`` from the previous layer's pre-activation statistics.

    Parameters
    ----------
    model : MLP
        ReLU or leaky ReLU activations.
    weights : list of (w_q, QParams)
    input_mean : array (in_features,)
    stats : list of (mean, std) per Linear layer
        As :func:`preactivation_statistics` returns them.

    Returns
    -------
    MLP
    """
    weights = _check(model, weights)
    acts = layer_activations(model)
    lins = model.linears
    if not isinstance(stats, (list, tuple)) or len(stats) != len(lins):
        raise ValueError(f"stats: expected {len(lins)} (mean, std) pairs, got {describe(stats)}")
    mean = as_float_array(input_mean, "input_mean", ndim=1)
    if mean.shape != (model.in_features,):
        raise ValueError(f"input_mean: expected shape ({model.in_features},), got {mean.shape}")
    W_hat = [lin.W for lin in dequantized_model(model, weights).linears]
    corrected = model.copy()
    for l, lin in enumerate(corrected.linears):
        if l > 0:
            mu, sigma = (as_float_array(v, f"stats[{l - 1}]", ndim=1) for v in stats[l - 1])
            mean = clipped_normal_mean(mu, sigma, acts[l - 1][1])
        lin.b = (lin.b - expected_output_error(mean, lin.W, W_hat[l])).astype(lin.b.dtype)
    return corrected
