"""Post-training int8 conversion of an MLP, and the integer-only model it produces.

:func:`quantize_model` follows TensorFlow Lite's full-integer conversion (the int8
quantization spec; Jacob et al. 2018, arXiv 1712.05877, sections 2-3):

1. **Calibrate**: run the float model on sample inputs and observe the input, every
   pre-activation and every layer output (:func:`~nnref.quant.calibrate.calibrate`).
2. **Activations**: int8 affine per tensor (``TFLITE_INT8_ACTIVATIONS``) from the
   observed ranges, widened to contain 0. A ReLU output has min 0, so its zero point is
   -128 and the whole int8 grid covers ``[0, max]``.
3. **Weights**: symmetric (zero point 0), narrow range ``[-127, 127]`` at 8 bits, one scale
   per output channel (a column of ``W``) or per tensor, at ``bits`` bits (2..8, stored one
   value per int8 byte): :func:`quantize_weights`.
4. **Bias**: int32, scale ``s_in * s_w[c]``, zero point 0: :func:`quantize_bias`.
5. **Requantization**: the real multiplier ``M[c] = s_in * s_w[c] / s_out`` of each output
   channel, stored as a fixed-point ``(m0[c], shift[c])``.
6. **Activations as integer ops**: ReLU is fused into the output clamp
   (``act_min = zp_out``); tanh, sigmoid and leaky ReLU become a 256-entry int8 -> int8
   lookup table built at conversion time (:func:`build_lut`).

This module holds the conversion steps; the result, a
:class:`~nnref.quant.qmodel.QuantizedMLP` (layers: :mod:`nnref.quant.qlayer`; tables:
:mod:`nnref.quant.lut`; file format: :mod:`nnref.quant.qformat`, all re-exported here), runs from an int8 input to int8 logits with integer
arithmetic only (:meth:`QuantizedMLP.forward_int`). One Linear layer, in the order the
arithmetic happens (TensorFlow Lite ``reference_integer_ops::FullyConnected``)::

    acc[i, j]      = sum_k (x_q[i, k] - zp_x) * w_q[k, j]          int32  (zp_w = 0)
    acc_bias[i, j] = acc[i, j] + bias_q[j]                         int32
    scaled[i, j]   = MBQM(acc_bias[i, j], m0[j], shift[j])         int32  ~ acc_bias * M[j]
    out[i, j]      = clamp(scaled[i, j] + zp_out, act_min, act_max) int8
    y[i, j]        = lut[out[i, j] + 128]                          int8   (tanh/sigmoid/leaky ReLU)

``MBQM`` is TensorFlow Lite's ``MultiplyByQuantizedMultiplier``
(:func:`~nnref.quant.fixed_point.multiply_by_quantized_multiplier`, ``rounding="single"``
or ``"double"``). With ``requantization="float"`` the ``scaled`` step is instead ONNX
``QLinearMatMul`` as onnxruntime computes it (see :class:`QuantizedLayer`).
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from nnref._checks import as_float_array, check_finite, check_int_in_range, describe
from nnref.layers import LeakyReLU, Linear, ReLU, Sigmoid, Tanh
from nnref.mlp import MLP
from nnref.quant.calibrate import calibrate
from nnref.quant.checks import INT32_MAX, check_act_qparams, check_choice, check_finite_parameters
from nnref.quant.lut import FIXED_OUTPUT_QPARAMS, LUT_ACTIVATIONS, build_lut
from nnref.quant.observers import MinMaxObserver
from nnref.quant.ops import quantize, round_half_away
from nnref.quant.qlayer import ACTIVATION_KINDS, REQUANTIZATIONS, ROUNDINGS, QuantizedLayer
from nnref.quant.qmodel import QuantizedMLP
from nnref.quant.qparams import TFLITE_INT8_ACTIVATIONS, QParams, QScheme, get_scheme

__all__ = [
    "ACTIVATION_KINDS",
    "LUT_ACTIVATIONS",
    "REQUANTIZATIONS",
    "WEIGHT_ROUNDING",
    "FIXED_OUTPUT_QPARAMS",
    "check_weight_scheme",
    "quantize_weights",
    "quantize_bias",
    "build_lut",
    "QuantizedLayer",
    "QuantizedMLP",
    "quantize_model",
]

#: Weights are rounded half away from zero, as TensorFlow Lite's converter (``std::round``).
WEIGHT_ROUNDING = "half_away"
_MIN_WEIGHT_BITS, _MAX_WEIGHT_BITS = 2, 8


# --------------------------------------------------------------------------- conversion steps


def check_weight_scheme(weight_scheme, bits: int = 8) -> QScheme:
    """The weight scheme the converter accepts, at ``bits`` bits.

    Parameters
    ----------
    weight_scheme : str or QScheme
        Symmetric and signed, per tensor or per output column (``channel_axis`` -1 or 1).
    bits : int
        2..8.

    Returns
    -------
    QScheme

    Raises
    ------
    TypeError, ValueError
        Naming ``weight_scheme`` or ``bits``.
    """
    bits = check_int_in_range(bits, "bits", _MIN_WEIGHT_BITS, _MAX_WEIGHT_BITS)
    scheme = get_scheme(weight_scheme)
    if not (scheme.symmetric and scheme.signed):
        raise ValueError(
            f"weight_scheme: expected a symmetric signed scheme (zero point 0, as TensorFlow "
            f"Lite's int8 weights), got {scheme}"
        )
    if scheme.per_channel and scheme.channel_axis not in (-1, 1):
        raise ValueError(
            f"weight_scheme: per-channel weights need one scale per output channel, the "
            f"columns of W (channel_axis -1 or 1), got channel_axis={scheme.channel_axis}"
        )
    return scheme.with_bits(bits)


def quantize_weights(W, weight_scheme: str | QScheme = "tflite_int8_weights",
                     bits: int = 8) -> tuple[np.ndarray, QParams]:
    """Quantize a weight matrix ``W`` (in, out) with a symmetric scheme at ``bits`` bits.

    Formula (TensorFlow Lite's int8 weights; :func:`~nnref.quant.qparams.choose_qparams`
    with ``symmetric_convention`` of the scheme), per output channel ``c`` (a column)::

        s[c]      = max_k |W[k, c]| / qmax        (qmax = 2**(bits-1) - 1: 127 at 8 bits)
        w_q[k, c] = clamp(round_half_away(W[k, c] / s[c]), qmin, qmax)      zero point 0

    or one ``s`` for the whole matrix with a per-tensor scheme. Rounding is half away from
    zero (:data:`WEIGHT_ROUNDING`, TensorFlow Lite's ``std::round``). An all-zero column
    gets scale 1.0 (``choose_qparams``' rule for a zero-width range).

    This is the one place nnref quantizes weights: quantization-aware training should
    fake-quantize with ``dequantize(*quantize_weights(W, scheme, bits))`` so the integer
    model sees exactly the weights training simulated.

    Parameters
    ----------
    W
        (in, out) finite real array.
    weight_scheme
        a preset name or a :class:`QScheme`; must be symmetric and signed,
        per tensor or per column (``channel_axis`` -1 or 1). Its ``bits`` is replaced
        by ``bits``.
    bits
        weight bit width, 2..8 (stored one value per int8).

    Returns
    -------
    result
        ``(w_q, qparams)``: int8 (in, out) and the weights' ``QParams``.
    """
    scheme = check_weight_scheme(weight_scheme, bits)
    W = as_float_array(W, "W", ndim=2)
    qparams = scheme.for_tensor(W)
    return quantize(W, qparams, rounding=WEIGHT_ROUNDING).astype(np.int8, copy=False), qparams


def quantize_bias(b, input_scale, weight_scale) -> np.ndarray:
    """Quantize a bias to int32 with scale ``s_in * s_w[c]`` and zero point 0.

    Formula: exactly TensorFlow Lite's converter (``SymmetricPerChannelBiasQuantize`` in
    ``tools/optimize/quantization_utils.cc``; int8 spec: the bias of a FullyConnected
    layer is int32 with ``scale = input_scale * weight_scale[c]``), in its precisions::

        s_b[c]     = float32(s_in) * float32(s_w[c])              float32 product
        inv[c]     = float32(1.0 / double(s_b[c]))                 reciprocal in double, stored as float
        bias_q[c]  = round_half_away(float32(b[c]) * inv[c])       float32 product, std::round
        bias_q[c]  = clamp(bias_q[c], -(2**31 - 1), 2**31 - 1)     saturated, as the converter

    Multiplying by the float32 reciprocal is not the same as dividing: e.g. ``b =
    -0.6018157005310059, s_in = 0.0123, s_w = 0.00766237685456872`` gives -6386 here (and
    in the converter), while ``round(b / s_b)`` in float64 gives -6385. With this scale the
    bias adds directly to the int32 accumulator, which is in units of ``s_in * s_w[c]``.

    Saturation: the converter casts to int32 *before* clamping, which is undefined in C++
    for out-of-range values; nnref clamps the rounded float instead, which is what the
    clamp intends. A saturated bias usually means the scales are far too small; the
    :class:`QuantizedLayer` constructor then refuses the layer (its accumulator bound).
    Where the converter would use ``inv = 0`` for a zero scale, nnref raises.

    Parameters
    ----------
    b
        (N,) finite real array.
    input_scale
        the input's scale, a number > 0.
    weight_scale
        a number or an (N,) array of per-channel weight scales, > 0.

    Returns
    -------
    result
        (N,) int32.

    Raises
    ------
    ValueError
        scales <= 0; a scale product that underflows float32 to 0 or whose
        reciprocal overflows float32; shapes.
    """
    b = as_float_array(b, "b", ndim=1)
    s_in = as_float_array(input_scale, "input_scale", ndim=0).astype(np.float32)
    s_w = as_float_array(weight_scale, "weight_scale", ndim=(0, 1)).astype(np.float32)
    if s_w.ndim == 1 and s_w.shape != b.shape:
        raise ValueError(f"weight_scale: expected a scalar or shape {b.shape} (one per output), got shape {s_w.shape}")
    if not (s_in > 0 and np.all(s_w > 0)):
        raise ValueError(f"input_scale, weight_scale: expected scales > 0, got input_scale = "
                         f"{float(s_in)!r} and weight_scale in [{float(s_w.min())!r}, {float(s_w.max())!r}]")
    with np.errstate(over="ignore", under="ignore", divide="ignore"):  # checked just below
        s_b = s_in * s_w  # float32 * float32
        inverse = (1.0 / s_b.astype(np.float64)).astype(np.float32)  # double 1.0 / s_b, stored as float
    if np.any(s_b == 0) or not (np.all(np.isfinite(s_b)) and np.all(np.isfinite(inverse))):
        raise ValueError(
            f"input_scale, weight_scale: the bias scale s_in * s_w = {float(s_in)!r} * "
            f"[{float(s_w.min())!r}, {float(s_w.max())!r}] underflows or overflows float32 "
            f"(or its reciprocal does)"
        )
    with np.errstate(over="ignore"):  # |b * inv| beyond float32: +-inf, saturated below
        q = round_half_away(b.astype(np.float32) * inverse)  # float32 * float32
    q = np.clip(q.astype(np.float64), -INT32_MAX, INT32_MAX)  # float64 holds 2**31 - 1 exactly
    return q.astype(np.int32)


# --------------------------------------------------------------------------- argument checks


def _layer_activations(model: MLP) -> list[tuple[str, float]]:
    """``(kind, alpha)`` for each Linear layer of ``model``, from its own layer objects."""
    kinds = {ReLU: "relu", Tanh: "tanh", Sigmoid: "sigmoid", LeakyReLU: "leaky_relu"}
    layers, out, i = model.layers, [], 0
    while i < len(layers):
        if not isinstance(layers[i], Linear):
            raise ValueError(f"model: expected a Linear layer at position {i}, got {layers[i]!r}")
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if nxt is None:
            out.append(("none", 0.0))
            i += 1
        elif type(nxt) in kinds:
            out.append((kinds[type(nxt)], float(getattr(nxt, "alpha", 0.0))))
            i += 2
        else:
            raise ValueError(
                f"model: expected an activation ({', '.join(kinds.values())}) after Linear layer "
                f"{len(out)}, got {nxt!r} (convert a QAT model with to_float() first)"
            )
    if out[-1][0] != "none":
        raise ValueError("model: expected the last layer to be a Linear layer (logits)")
    return out


def _check_model(model) -> list[tuple[str, float]]:
    """An MLP of Linear layers and supported activations with finite parameters."""
    if not isinstance(model, MLP):
        raise TypeError(f"model: expected an nnref.mlp.MLP, got {describe(model)}")
    activations = _layer_activations(model)
    check_finite_parameters(model)
    return activations


def _check_bits(bits, n_layers: int) -> list[int]:
    """One weight bit width (2..8) per Linear layer, from an int or a sequence."""
    if isinstance(bits, (numbers.Integral, np.integer)) and not isinstance(bits, bool):
        return [check_int_in_range(bits, "bits", _MIN_WEIGHT_BITS, _MAX_WEIGHT_BITS)] * n_layers
    if not isinstance(bits, (list, tuple, np.ndarray)):
        raise TypeError(f"bits: expected an int or a sequence of {n_layers} ints (one per layer), "
                        f"got {describe(bits)}")
    if len(bits) != n_layers:
        raise ValueError(f"bits: expected {n_layers} weight bit widths (one per Linear layer), got {len(bits)}")
    return [check_int_in_range(b, f"bits[{i}]", _MIN_WEIGHT_BITS, _MAX_WEIGHT_BITS) for i, b in enumerate(bits)]


def _check_grid_list(qps, name: str, n: int, labels: list[str], allow_none: list[bool]) -> list | None:
    """None, or ``n`` per-tensor int8 QParams (None allowed where ``allow_none``)."""
    if qps is None:
        return None
    if not isinstance(qps, (list, tuple)):
        raise TypeError(f"{name}: expected a list of {n} QParams [{', '.join(labels)}], got {describe(qps)}")
    if len(qps) != n:
        raise ValueError(f"{name}: expected {n} QParams ({', '.join(labels)}), got {len(qps)}")
    for i, (qp, label) in enumerate(zip(qps, labels)):
        if qp is None and not allow_none[i]:
            raise ValueError(f"{name}[{i}] ({label}): expected a QParams, got None "
                             f"(no range learned yet: calibrate or train the QAT model first)")
        if qp is not None:
            check_act_qparams(qp, f"{name}[{i}] ({label})")
    return list(qps)


def _check_calibration_x(x, model: MLP):
    if x is None:
        return None
    x = as_float_array(x, "calibration_x", ndim=2)
    if x.shape[1] != model.in_features:
        raise ValueError(f"calibration_x: expected {model.in_features} features per example (shape (N, "
                         f"{model.in_features})), got shape {x.shape}")
    with np.errstate(over="ignore"):
        check_finite(x.astype(model.dtype, copy=False), f"calibration_x (as the model's {model.dtype})")
    return x


class _Checked(NamedTuple):
    """``quantize_model``'s arguments, checked."""

    activations: list
    bits: list
    scheme: QScheme
    grids: list | None
    pre_grids: list | None
    x: np.ndarray | None
    batch_size: int


def _check_conversion(model, calibration_x, weight_scheme, activation_observer, bits, requantization,
                      rounding, calibration_batch_size, activation_qparams, preactivation_qparams) -> _Checked:
    """Every argument of :func:`quantize_model`, checked once, before any work."""
    activations = _check_model(model)
    n = len(activations)
    layer_bits = _check_bits(bits, n)
    scheme = check_weight_scheme(weight_scheme, layer_bits[0])
    check_choice(requantization, "requantization", REQUANTIZATIONS)
    check_choice(rounding, "rounding", ROUNDINGS)
    if not callable(activation_observer):
        raise TypeError(f"activation_observer: expected a factory of observers, got {describe(activation_observer)}")
    batch_size = check_int_in_range(calibration_batch_size, "calibration_batch_size", 1, 2**62)
    outputs = ["input"] + [f"out_{i}" for i in range(n)]
    grids = _check_grid_list(activation_qparams, "activation_qparams", n + 1, outputs, [False] * (n + 1))
    pre_grids = _check_grid_list(preactivation_qparams, "preactivation_qparams", n,
                                 [f"pre_{i}" for i in range(n)], [True] * n)
    x = _check_calibration_x(calibration_x, model)
    return _Checked(activations, layer_bits, scheme, grids, pre_grids, x, batch_size)


# --------------------------------------------------------------------------- conversion


def _activation_grids(model, calibration_x, activations, given, given_pre, observer, batch_size):
    """The input grid, each layer's output grid and each table layer's pre-activation grid."""
    n = len(activations)
    tables = [i for i, (kind, _) in enumerate(activations) if kind in LUT_ACTIVATIONS]
    missing_pre = [i for i in tables if given_pre is None or given_pre[i] is None]
    cal = None
    if given is None or missing_pre:
        if calibration_x is None and given is None:
            raise ValueError("calibration_x: expected (N, in_features) calibration inputs (or "
                             "activation_qparams from quantization-aware training), got None")
        if calibration_x is None:
            raise ValueError(
                f"calibration_x: layers {missing_pre} use a lookup table ({activations[missing_pre[0]][0]}), "
                f"whose pre-activation grid activation_qparams does not hold; expected calibration "
                f"inputs (or preactivation_qparams), got None")
        cal = calibrate(model, calibration_x, observer=observer, batch_size=batch_size)
        for name, obs in [("input", cal.input)] + [(f"outputs[{i}]", o) for i, o in enumerate(cal.outputs)]:
            if obs.axis is not None:
                raise ValueError(f"activation_observer: expected per-tensor observers, got "
                                 f"{type(obs).__name__} (axis={obs.axis}) for {name}")
    grids = given if given is not None else [
        o.qparams(TFLITE_INT8_ACTIVATIONS) for o in [cal.input] + list(cal.outputs)]
    pre = [None] * n
    for i in tables:
        pre[i] = given_pre[i] if i not in missing_pre else cal.preactivations[i].qparams(TFLITE_INT8_ACTIVATIONS)
    return grids, pre


def _convert_layer(i, lin, kind, alpha, in_qp, out_qp, pre_qp, scheme, requantization, rounding):
    """Layer ``i`` of the model as a :class:`QuantizedLayer` (steps 3-6 of the module doc)."""
    w_q, w_qp = quantize_weights(lin.W, scheme, scheme.bits)
    try:
        bias_q = quantize_bias(lin.b, in_qp.scale, w_qp.scale)
    except ValueError as exc:
        raise ValueError(f"model: layer {i}: {exc}") from None
    lut = None
    if kind in LUT_ACTIVATIONS:
        out_qp = FIXED_OUTPUT_QPARAMS.get(kind) or out_qp
        lut = build_lut(kind, pre_qp, out_qp, alpha)
    return QuantizedLayer(w_q, bias_q, w_qp, in_qp, out_qp, kind, pre_qp, lut, requantization, rounding,
                          alpha=alpha if kind == "leaky_relu" else None, name=f"model: layer {i}")


def quantize_model(model: MLP, calibration_x, weight_scheme: str | QScheme = "tflite_int8_weights",
                   activation_observer=MinMaxObserver, bits=8,
                   requantization: str = "fixed_point", rounding: str = "single",
                   calibration_batch_size: int = 512,
                   activation_qparams: list[QParams] | None = None,
                   preactivation_qparams: list[QParams | None] | None = None) -> QuantizedMLP:
    """Convert a float MLP into an integer-only :class:`QuantizedMLP` (TensorFlow Lite's
    post-training full-integer quantization; the steps are in the module docstring).

    Parameters
    ----------
    model : MLP
        The trained float model (not modified, apart from its layers' forward caches
        during calibration). Its parameters must be finite.
    calibration_x : array_like of float, shape (N, in_features), or None
        Representative inputs for the activation ranges; None only when every grid is
        given (``activation_qparams`` and, for table layers, ``preactivation_qparams``).
    weight_scheme : str or QScheme
        Symmetric signed: ``"tflite_int8_weights"`` (per output channel, default),
        ``"tflite_int8_weights_per_tensor"`` or a :class:`QScheme` (:func:`quantize_weights`).
    activation_observer : callable
        Zero-argument factory of per-tensor observers for the activation ranges
        (``MinMaxObserver``, ``lambda: PercentileObserver(99.9)``, ...); activations are
        always int8 affine per tensor (``TFLITE_INT8_ACTIVATIONS``).
    bits : int or sequence of int
        The weight bit width, 2..8, for every layer, or one per Linear layer (mixed
        precision; activations stay int8). Weights are stored one per int8.
    requantization : {"fixed_point", "float"}
        TensorFlow Lite's integer requantization, or ONNX QLinearMatMul's float32 one as
        onnxruntime computes it (plus the int32 bias).
    rounding : {"single", "double"}
        The fixed-point rounding (:func:`~nnref.quant.fixed_point.multiply_by_quantized_multiplier`).
    calibration_batch_size : int
        Rows per calibration batch (matters for moving-average observers).
    activation_qparams : list of QParams, optional
        Grids learned by quantization-aware training, used instead of calibration: ``L +
        1`` per-tensor int8 grids ``[input, out_0, ..., out_{L-1}]`` (``out_l`` after the
        activation), as :attr:`nnref.quant.qat.QATMLP.activation_qparams`. A tanh or
        sigmoid layer's output grid is always :data:`FIXED_OUTPUT_QPARAMS`.
    preactivation_qparams : list of QParams or None, optional
        ``L`` entries: the pre-activation grid of each table layer (tanh, sigmoid, leaky
        ReLU), None for the others (:attr:`~nnref.quant.qat.QATMLP.preactivation_qparams`).
        A table layer without one is calibrated from ``calibration_x``.

    Returns
    -------
    QuantizedMLP

    Raises
    ------
    TypeError, ValueError
        Each argument named: a non-MLP, non-finite parameters (the layer and parameter
        named), unsupported layers, bad bit widths, schemes, grids or inputs; a bias or an
        int32 accumulator bound that cannot hold (the layer named).
    """
    args = _check_conversion(model, calibration_x, weight_scheme, activation_observer, bits, requantization,
                             rounding, calibration_batch_size, activation_qparams, preactivation_qparams)
    grids, pre = _activation_grids(model, args.x, args.activations, args.grids, args.pre_grids,
                                   activation_observer, args.batch_size)
    layers, in_qp = [], grids[0]
    for i, (lin, (kind, alpha)) in enumerate(zip(model.linears, args.activations)):
        layer = _convert_layer(i, lin, kind, alpha, in_qp, grids[i + 1], pre[i],
                               args.scheme.with_bits(args.bits[i]), requantization, rounding)
        layers.append(layer)
        in_qp = layer.out_qparams
    return QuantizedMLP(layers, grids[0])
