"""Layer-by-layer post-training quantization: the pieces equalization, bias correction and
AdaRound share.

A *weight set* is what a post-training method decides for each Linear layer of an
:class:`~nnref.mlp.MLP`: a list with one ``(w_q, qparams)`` pair per layer, ``w_q`` the
int8 array ``(in, out)`` of integer weights and ``qparams`` its symmetric
:class:`~nnref.quant.qparams.QParams` (zero point 0, per output column or per tensor).
Round-to-nearest (:func:`rtn_weights`) is one weight set; AdaRound
(:func:`nnref.quant.adaround.adaround`) chooses another on the same grid. Any weight set
becomes the integer-only :class:`~nnref.quant.convert.QuantizedMLP` through
:func:`to_quantized_mlp`, which builds each layer from the converter's public pieces
(``quantize_model`` for the activation grids, ``quantize_bias``, ``QuantizedLayer``).

The grid of a layer is chosen by :func:`weight_qparams`: the converter's min-max scale
``s_c = max_k |W[k, c]| / qmax`` or the scale minimising the squared rounding error
(:func:`mse_scales`), which matters at 2 and 3 bits where clipping the few largest weights
buys a finer step for all the others.
"""

from __future__ import annotations

import numpy as np

from nnref._checks import as_float_array, check_float32_range, check_int_in_range, describe
from nnref.layers import LeakyReLU, Linear, ReLU
from nnref.mlp import MLP
from nnref.quant import (
    MinMaxObserver,
    QParams,
    QScheme,
    QuantizedLayer,
    QuantizedMLP,
    dequantize,
    get_scheme,
    quantize,
    quantize_bias,
    quantize_model,
    qrange,
)

__all__ = [
    "WEIGHT_SCALE_METHODS",
    "check_weight_scheme",
    "check_weight_set",
    "mse_scales",
    "weight_qparams",
    "rtn_weights",
    "dequantized_model",
    "layer_activations",
    "layer_inputs",
    "to_quantized_mlp",
]

#: How :func:`weight_qparams` picks a layer's grid.
WEIGHT_SCALE_METHODS = ("minmax", "mse")
_MAX_WEIGHT_BITS = 8  # the integer model stores one weight per int8


def check_weight_scheme(weight_scheme, bits) -> QScheme:
    """The weight scheme at ``bits`` bits, checked as the converter checks it.

    Parameters
    ----------
    weight_scheme : str or QScheme
        A preset name (``"tflite_int8_weights"``, per channel, or
        ``"tflite_int8_weights_per_tensor"``) or a symmetric signed :class:`QScheme`, per
        tensor or per output column (``channel_axis`` -1 or 1).
    bits : int
        2..8.

    Returns
    -------
    QScheme
        The scheme with ``bits`` replaced.

    Raises
    ------
    TypeError, ValueError
        Not a scheme; not symmetric and signed; a per-channel axis other than the columns;
        ``bits`` outside 2..8.
    """
    bits = check_int_in_range(bits, "bits", 2, _MAX_WEIGHT_BITS)
    try:
        scheme = get_scheme(weight_scheme)
    except (TypeError, ValueError) as exc:  # its message names "scheme": name this argument
        raise type(exc)(f"weight_scheme: {str(exc).partition(': ')[2]}") from None
    if not (scheme.symmetric and scheme.signed):
        raise ValueError(f"weight_scheme: expected a symmetric signed scheme (zero point 0), got {scheme}")
    if scheme.per_channel and scheme.channel_axis not in (-1, 1):
        raise ValueError(f"weight_scheme: per-channel weights need one scale per column of W "
                         f"(channel_axis -1 or 1), got channel_axis={scheme.channel_axis}")
    return scheme.with_bits(bits)


def check_weight_set(model: MLP, weights) -> list[tuple[np.ndarray, QParams]]:
    """``weights`` checked against ``model``: one ``(w_q, qparams)`` per Linear layer, each
    ``w_q`` int8 of the layer's shape inside its grid, each ``qparams`` symmetric signed."""
    if not isinstance(model, MLP):
        raise TypeError(f"model: expected an nnref.mlp.MLP, got {describe(model)}")
    lins = model.linears
    if not isinstance(weights, (list, tuple)) or len(weights) != len(lins):
        raise ValueError(f"weights: expected a list of {len(lins)} (w_q, qparams) pairs, got {describe(weights)}")
    out = []
    for i, (pair, lin) in enumerate(zip(weights, lins)):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise TypeError(f"weights[{i}]: expected a pair (w_q, qparams), got {describe(pair)}")
        w_q, qp = pair
        if not (isinstance(w_q, np.ndarray) and w_q.dtype == np.int8 and w_q.shape == lin.W.shape):
            raise TypeError(f"weights[{i}][0]: expected an int8 array of shape {lin.W.shape}, got {describe(w_q)}")
        if not isinstance(qp, QParams) or not qp.signed or np.any(qp.zero_point != 0):
            raise ValueError(f"weights[{i}][1]: expected symmetric signed QParams (zero point 0), got {qp!r}")
        if w_q.min() < qp.qmin or w_q.max() > qp.qmax:
            raise ValueError(f"weights[{i}][0]: expected values in [{qp.qmin}, {qp.qmax}], "
                             f"got [{w_q.min()}, {w_q.max()}]")
        out.append((w_q, qp))
    return out


def mse_scales(W: np.ndarray, qmax: int, per_channel: bool, n_grid: int = 100) -> np.ndarray:
    """The symmetric step minimising the squared rounding error, by grid search.

    Formula: for candidate clipping levels ``a_j = (j / n) * max|W|`` (``j = 1..n``, per
    column when ``per_channel``), the step ``s_j = a_j / qmax`` and the error
    ``E_j = sum_k (W_k - s_j * clamp(round(W_k / s_j), -qmax, qmax))**2``; returns the
    ``s_j`` of the smallest ``E_j`` (ties to the largest ``j``, the least clipping). ``j = n``
    is the min-max step, so the error is never above min-max's. This is the weight-range
    setting of Nagel et al. 2021 ("A White Paper on Neural Network Quantization",
    arXiv 2106.08295, section 3.4.1, the MSE range setting).

    Parameters
    ----------
    W : ndarray (in, out), float
    qmax : int
        The grid's largest integer (``2**(bits-1) - 1`` for narrow-range weights).
    per_channel : bool
    n_grid : int
        Number of candidates ``n``.

    Returns
    -------
    ndarray
        Float64 steps, shape ``(out,)`` per channel or ``()`` per tensor; a column of
        zeros gets step 1 (its error is 0 for any step).
    """
    amax = np.abs(W).max(axis=0) if per_channel else np.abs(W).max()
    amax = np.where(amax > 0, amax, qmax)  # an all-zero channel: any step, 1 after / qmax
    frac = np.arange(1, n_grid + 1, dtype=np.float64) / n_grid
    steps = frac.reshape((-1,) + (1,) * np.ndim(amax)) * amax / qmax  # (n,) or (n, out)
    s = steps[:, None] if per_channel else steps[:, None, None]       # broadcast over rows
    err = (W - s * np.clip(np.round(W / s), -qmax, qmax)) ** 2
    err = err.sum(axis=1) if per_channel else err.sum(axis=(1, 2))
    best = len(frac) - 1 - np.argmin(err[::-1], axis=0)                # ties: largest j
    return steps[best, np.arange(steps.shape[1])] if per_channel else steps[best]


def weight_qparams(W, weight_scheme="tflite_int8_weights", bits: int = 8,
                   method: str = "minmax") -> QParams:
    """The grid of one weight matrix: ``QParams`` of ``weight_scheme`` at ``bits`` bits.

    Parameters
    ----------
    W : array (in, out), finite
    weight_scheme : str or QScheme
        See :func:`check_weight_scheme`.
    bits : int
        2..8.
    method : {"minmax", "mse"}
        ``"minmax"``: the converter's grid (``scheme.for_tensor(W)``: ``s = max|W| /
        qmax``), exactly what :func:`~nnref.quant.convert.quantize_weights` uses.
        ``"mse"``: :func:`mse_scales`.

    Returns
    -------
    QParams
    """
    scheme = check_weight_scheme(weight_scheme, bits)
    W = check_float32_range(as_float_array(W, "W", ndim=2), "W")
    if method not in WEIGHT_SCALE_METHODS:
        raise ValueError(f"method: expected one of {WEIGHT_SCALE_METHODS}, got {method!r}")
    if method == "minmax":
        return scheme.for_tensor(W)
    qmax = qrange(scheme.bits, signed=True, narrow_range=scheme.narrow_range)[1]
    a = mse_scales(W.astype(np.float64), qmax, scheme.per_channel) * qmax
    return scheme.choose(-a, a)


def rtn_weights(model: MLP, weight_scheme="tflite_int8_weights", bits: int = 8,
                method: str = "minmax") -> list[tuple[np.ndarray, QParams]]:
    """Round-to-nearest weight set: ``w_q = clamp(round_half_away(W / s), qmin, qmax)``.

    With ``method="minmax"`` each pair is exactly what ``quantize_model`` stores
    (:func:`~nnref.quant.convert.quantize_weights`). Returns ``[(w_q int8, qparams), ...]``,
    one per Linear layer.
    """
    if not isinstance(model, MLP):
        raise TypeError(f"model: expected an nnref.mlp.MLP, got {describe(model)}")
    out = []
    for lin in model.linears:
        qp = weight_qparams(lin.W, weight_scheme, bits, method)
        out.append((quantize(lin.W, qp, rounding="half_away").astype(np.int8), qp))
    return out


def dequantized_model(model: MLP, weights) -> MLP:
    """A copy of ``model`` whose weights are ``dequantize(w_q, qparams)`` (biases kept):
    the float model the integer one approximates."""
    weights = check_weight_set(model, weights)
    new = model.copy()
    for lin, (w_q, qp) in zip(new.linears, weights):
        lin.W = dequantize(w_q, qp).astype(model.dtype)
    return new


def layer_activations(model: MLP) -> list[tuple[str, float]]:
    """``(kind, alpha)`` per Linear layer: ``"relu"``, ``"leaky_relu"`` (with its slope),
    ``"none"`` for the logits; other activations raise ``ValueError`` (the methods here
    rely on ReLU's or leaky ReLU's positive homogeneity and piecewise linearity)."""
    if not isinstance(model, MLP):
        raise TypeError(f"model: expected an nnref.mlp.MLP, got {describe(model)}")
    out = []
    for i, layer in enumerate(model.layers):
        if isinstance(layer, Linear):
            nxt = model.layers[i + 1] if i + 1 < len(model.layers) else None
            if nxt is None:
                out.append(("none", 0.0))
            elif type(nxt) is ReLU:
                out.append(("relu", 0.0))
            elif type(nxt) is LeakyReLU:
                out.append(("leaky_relu", float(nxt.alpha)))
            else:
                raise ValueError(f"model: expected ReLU or LeakyReLU after Linear layer {len(out)}, "
                                 f"got {nxt!r}")
    return out


def layer_inputs(model: MLP, x) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``(inputs, preactivations)`` of every Linear layer of ``model`` on ``x``:
    ``inputs[l]`` ``(N, in_l)`` and ``preactivations[l] = inputs[l] @ W_l + b_l``."""
    if not isinstance(model, MLP):
        raise TypeError(f"model: expected an nnref MLP, got {describe(model)}")
    h = model.check_input(x, "x")  # 2-D, the model's width, finite within its dtype
    inputs, pre = [], []
    for layer in model.layers:
        if isinstance(layer, Linear):
            inputs.append(h)
            h = layer.forward(h)
            pre.append(h)
        else:
            h = layer.forward(h)
    return inputs, pre


def to_quantized_mlp(model: MLP, weights, calibration_x, calibrate_on: str = "dequantized",
                     activation_observer=MinMaxObserver, requantization: str = "fixed_point",
                     rounding: str = "single", activation_qparams=None) -> QuantizedMLP:
    """The integer-only model of ``model`` with the integer weights ``weights``.

    Built from the converter's public pieces, per layer ``l`` (TensorFlow Lite's rules):
    the activation grids from ``quantize_model`` calibrated on ``calibration_x`` (on the
    dequantized model by default, the float model the integer one approximates; on
    ``model`` itself with ``calibrate_on="float"``), then
    ``QuantizedLayer(w_q, quantize_bias(b_l, s_in, s_w), qparams, ...)`` with that layer's
    grids, activation and table. With ``rtn_weights(model, scheme, bits)`` and
    ``calibrate_on="float"`` this is ``quantize_model(model, calibration_x, scheme,
    bits=bits)`` exactly.

    Parameters
    ----------
    model : MLP
        The float model whose biases (and activations) are used.
    weights : list of (w_q, QParams)
        One per Linear layer (see :func:`check_weight_set`).
    calibration_x : array (N, in_features)
    calibrate_on : {"dequantized", "float"}
    activation_observer, requantization, rounding, activation_qparams
        As :func:`~nnref.quant.convert.quantize_model` (given ``activation_qparams``, the
        activation grids are those instead of calibrated ones).

    Returns
    -------
    QuantizedMLP
    """
    weights = check_weight_set(model, weights)
    if calibrate_on not in ("dequantized", "float"):
        raise ValueError(f"calibrate_on: expected 'dequantized' or 'float', got {calibrate_on!r}")
    ref = dequantized_model(model, weights) if calibrate_on == "dequantized" else model
    grids = quantize_model(ref, calibration_x, activation_observer=activation_observer,
                           requantization=requantization, rounding=rounding,
                           activation_qparams=activation_qparams)
    layers = []
    for lin, (w_q, qp), ql in zip(model.linears, weights, grids.layers):
        bias_q = quantize_bias(lin.b, ql.in_qparams.scale, qp.scale)
        layers.append(QuantizedLayer(w_q, bias_q, qp, ql.in_qparams, ql.out_qparams, ql.activation,
                                     ql.pre_qparams, ql.lut, ql.requantization, ql.rounding,
                                     alpha=ql.alpha))
    return QuantizedMLP(layers, grids.input_qparams)
