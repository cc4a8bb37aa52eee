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

The result, a :class:`QuantizedMLP`, runs from an int8 input to int8 logits with integer
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

import math
import os

import numpy as np

from nnref._checks import as_float_array, check_int_in_range, check_labels, describe
from nnref._npz import read_archive, write_archive
from nnref.layers import LeakyReLU, Linear, ReLU, Sigmoid, Tanh
from nnref.mlp import MLP
from nnref.quant.calibrate import calibrate
from nnref.quant.fixed_point import (
    INT32_MAX,
    _mbqm_double,
    _mbqm_single,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
)
from nnref.quant.kernels import activation_range, exact_float_dtype
from nnref.quant.observers import MinMaxObserver
from nnref.quant.ops import dequantize, quantize, round_half_away
from nnref.quant.qparams import TFLITE_INT8_ACTIVATIONS, QParams, QScheme, get_scheme

__all__ = [
    "ACTIVATION_KINDS",
    "LUT_ACTIVATIONS",
    "REQUANTIZATIONS",
    "WEIGHT_ROUNDING",
    "FIXED_OUTPUT_QPARAMS",
    "quantize_weights",
    "quantize_bias",
    "build_lut",
    "QuantizedLayer",
    "QuantizedMLP",
    "quantize_model",
]

ACTIVATION_KINDS = ("none", "relu", "tanh", "sigmoid", "leaky_relu")
#: Activations applied as an int8 -> int8 lookup table after requantization.
LUT_ACTIVATIONS = ("tanh", "sigmoid", "leaky_relu")
REQUANTIZATIONS = ("fixed_point", "float")
_ROUNDINGS = ("single", "double")
_METHODS = ("auto", "int")
#: Weights are rounded half away from zero, as TensorFlow Lite's converter (``std::round``).
WEIGHT_ROUNDING = "half_away"
_MIN_WEIGHT_BITS, _MAX_WEIGHT_BITS = 2, 8
_QUANTIZE_BLOCK = 2**17  # values per block in quantize_input (512 KiB of float32)
_QMIN, _QMAX = -128, 127  # int8 activations


def _int8_qparams(scale: float, zero_point: int) -> QParams:
    return QParams(scale=np.float32(scale), zero_point=np.int32(zero_point), qmin=_QMIN, qmax=_QMAX,
                   bits=8, signed=True)


#: TensorFlow Lite's int8 quantization spec fixes the output parameters of LOGISTIC
#: (scale 1/256, zero point -128: the grid [0, 255/256]) and TANH (scale 1/128, zero point 0:
#: [-1, 127/128]); its kernels refuse others. nnref uses them too, so a sigmoid or tanh
#: layer's calibrated output range is not used.
FIXED_OUTPUT_QPARAMS: dict[str, QParams] = {
    "sigmoid": _int8_qparams(1.0 / 256.0, -128),
    "tanh": _int8_qparams(1.0 / 128.0, 0),
}


# --------------------------------------------------------------------------- conversion steps


def _weight_scheme(weight_scheme, bits) -> QScheme:
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

    Args:
        W: (in, out) finite real array.
        weight_scheme: a preset name or a :class:`QScheme`; must be symmetric and signed,
            per tensor or per column (``channel_axis`` -1 or 1). Its ``bits`` is replaced
            by ``bits``.
        bits: weight bit width, 2..8 (stored one value per int8).

    Returns:
        ``(w_q, qparams)``: int8 (in, out) and the weights' ``QParams``.
    """
    scheme = _weight_scheme(weight_scheme, bits)
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

    Args:
        b: (N,) finite real array.
        input_scale: the input's scale, a number > 0.
        weight_scale: a number or an (N,) array of per-channel weight scales, > 0.

    Returns:
        (N,) int32.

    Raises:
        ValueError: scales <= 0; a scale product that underflows float32 to 0 or whose
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


def _activation_fn(kind: str, alpha: float):
    """The float32 activation TensorFlow Lite's table builder evaluates."""
    if kind == "tanh":
        return np.tanh
    if kind == "sigmoid":
        one = np.float32(1.0)
        return lambda v: one / (one + np.exp(-v))  # TFLite: 1.0f / (1.0f + std::exp(-value))
    a = np.float32(alpha)
    return lambda v: np.where(v > 0, v, v * a)


def build_lut(activation: str, in_qparams: QParams, out_qparams: QParams, alpha: float = 0.01) -> np.ndarray:
    """An int8 -> int8 lookup table of ``activation`` between two per-tensor quantizations.

    Formula (TensorFlow Lite ``PopulateLookupTable`` in ``kernels/activations.cc``, used by
    its int8 TANH and LOGISTIC kernels), all in float32, for every int8 ``q``::

        real      = s_in * (q - zp_in)
        y         = f(real)                      tanh, 1 / (1 + exp(-real)), or leaky ReLU
        lut[q + 128] = clamp(round_half_away(y * (1 / s_out)) + zp_out, -128, 127)

    (TensorFlow Lite stores the table indexed by the byte's unsigned bit pattern; nnref by
    ``q + 128``, so ``lut[0]`` is the image of -128.) ``f`` is numpy's float32 function,
    which may differ in the last bit from the C library's ``tanhf``/``expf``, so an entry at
    an exact rounding tie could differ by one from TensorFlow Lite's. For leaky ReLU
    (``x if x > 0 else alpha * x``) the table is nnref's choice: TensorFlow Lite's int8
    LEAKY_RELU kernel applies two fixed-point multipliers (one per sign) instead, which
    can differ from the table by one at rounding ties.

    Args:
        activation: ``"tanh"``, ``"sigmoid"`` or ``"leaky_relu"``.
        in_qparams, out_qparams: per-tensor int8 ``QParams``.
        alpha: the leaky ReLU slope (ignored otherwise).

    Returns:
        (256,) int8, read-only.
    """
    if activation not in LUT_ACTIVATIONS:
        raise ValueError(f"activation: expected one of {LUT_ACTIVATIONS}, got {activation!r}")
    _check_act_qparams(in_qparams, "in_qparams")
    _check_act_qparams(out_qparams, "out_qparams")
    q = np.arange(_QMIN, _QMAX + 1, dtype=np.int32)
    real = in_qparams.scale * (q - in_qparams.zero_point).astype(np.float32)  # float32
    with np.errstate(over="ignore"):  # exp(-real) may overflow to inf: sigmoid is then 0
        y = _activation_fn(activation, alpha)(real).astype(np.float32)
    inverse_scale = np.float32(1.0) / out_qparams.scale
    rescaled = round_half_away(y * inverse_scale)  # float32
    table = np.clip(rescaled + np.float32(out_qparams.zero_point), _QMIN, _QMAX).astype(np.int8)
    table.setflags(write=False)
    return table


# --------------------------------------------------------------------------- one layer


def _check_act_qparams(qp, name: str) -> QParams:
    if not isinstance(qp, QParams):
        raise TypeError(f"{name}: expected a QParams, got {describe(qp)}")
    if qp.per_channel or (qp.qmin, qp.qmax, qp.bits) != (_QMIN, _QMAX, 8) or not qp.signed:
        raise ValueError(f"{name}: expected per-tensor int8 parameters with q in [-128, 127], got {qp!r}")
    return qp


def _check_choice(value, name: str, choices: tuple) -> str:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {choices}, got {value!r}")
    return value


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a)  # a private copy
    a.setflags(write=False)
    return a


def _tflite_real_multiplier(s_in, s_w, s_out, n: int) -> np.ndarray:
    """TensorFlow Lite's real requantization multiplier ``M[j]``, (n,) float64.

    Per tensor (``s_w`` a scalar), ``GetQuantizedConvolutionMultipler`` in
    ``kernels/kernel_util.cc``, which the FullyConnected kernel calls: the scale product is
    taken in float32 and only then widened::

        M = double(float32(s_in) * float32(s_w)) / double(s_out)

    Per channel (``s_w`` an (n,) array), ``PopulateConvolutionQuantizationParams``: every
    factor is widened first, ``M[j] = double(s_in) * double(s_w[j]) / double(s_out)``.
    The two orders can differ in the last bits of ``m0``.
    """
    s_in, s_out = np.float32(s_in), np.float32(s_out)
    s_w = np.asarray(s_w, dtype=np.float32)
    if s_w.ndim == 0:
        product = np.float64(s_in * s_w)  # float32 * float32, then widened
        return np.full(n, product / np.float64(s_out))
    return np.float64(s_in) * s_w.astype(np.float64) / np.float64(s_out)


class QuantizedLayer:
    """One int8 Linear layer and its activation, integer-only (TensorFlow Lite order).

    Stored (read-only arrays):

    - ``w_q`` (K, N) int8, ``w_qparams`` (symmetric, zero point 0; per column or per tensor);
    - ``bias_q`` (N,) int32 in units of ``s_in * s_w[j]``;
    - ``in_qparams``: the int8 input; ``out_qparams``: the int8 output of the layer (after
      the activation); ``pre_qparams``: the int8 pre-activation a lookup table reads
      (``None`` without a table);
    - ``activation``: one of :data:`ACTIVATION_KINDS`; ``lut`` (256,) int8 for
      :data:`LUT_ACTIVATIONS`, else ``None``;
    - ``requantization`` (``"fixed_point"`` or ``"float"``) and ``rounding``;
    - ``alpha``: a leaky ReLU layer's slope, the one its table was built with (``None``
      otherwise, or if not given; :meth:`QuantizedMLP.save` needs it to let
      :meth:`QuantizedMLP.load` rebuild and check the table).

    Derived at construction, for the Linear's own output grid ``(s_o, zp_o)``
    (``pre_qparams`` with a table, ``out_qparams`` otherwise):

    - ``real_multiplier[j] = s_in * s_w[j] / s_o`` (N,) float64, in TensorFlow Lite's
      order: per channel ``double(s_in) * double(s_w[j]) / double(s_o)``
      (``PopulateConvolutionQuantizationParams``), per tensor
      ``double(float32(s_in) * float32(s_w)) / double(s_o)``, the product in float32
      (``GetQuantizedConvolutionMultipler``, used by FullyConnected); and ``(m0[j],
      shift[j]) = quantize_multiplier(real_multiplier[j])``, (N,) int32;
    - ``float_multiplier[j] = float32(float32(s_in) * float32(s_w[j])) / float32(s_o)``,
      (N,) float32 (onnxruntime's QLinearMatMul / QLinearConv order);
    - ``act_min, act_max = activation_range("relu" or None, s_o, zp_o)``.

    Requantization of ``acc_bias`` (the int32 accumulator plus bias):

    - ``"fixed_point"`` (TensorFlow Lite / gemmlowp, integers only):
      ``scaled = MBQM(acc_bias, m0, shift, rounding)``;
    - ``"float"`` (ONNX ``QLinearMatMul`` as onnxruntime's CPU kernel computes it, plus the
      int32 bias): QLinearMatMul has no bias input, so nnref adds ``bias_q`` to the int32
      accumulator exactly as onnxruntime's ``QLinearConv`` does with its int32 bias ``B``
      (a Linear layer is a 1x1 convolution), then applies MLAS's float requantization:
      ``scaled = rint(clamp(float32(acc_bias) * float32_multiplier, -128 - zp_o, 127 - zp_o))``,
      round half to even. With ``bias_q = 0`` this is :func:`~nnref.quant.kernels.qlinear_matmul`
      bit for bit. ``rounding`` is ignored.

    then ``out = clamp(scaled + zp_o, act_min, act_max)`` as int8, and a table lookup for
    tanh/sigmoid/leaky ReLU.

    Overflow: the constructor proves, from the dtypes and zero points alone, that for every
    possible int8 input ``|acc| + |bias| <= K * max|x - zp_x| * max|w| + max|bias| <=
    2**31 - 1``, and raises ``ValueError`` otherwise; every int32 intermediate of
    :meth:`forward` then holds without wrapping.
    """

    def __init__(self, w_q: np.ndarray, bias_q: np.ndarray, w_qparams: QParams, in_qparams: QParams,
                 out_qparams: QParams, activation: str = "none", pre_qparams: QParams | None = None,
                 lut: np.ndarray | None = None, requantization: str = "fixed_point",
                 rounding: str = "single", alpha: float | None = None) -> None:
        if not isinstance(w_q, np.ndarray) or w_q.dtype != np.int8:
            raise TypeError(f"w_q: expected an int8 array (in, out), got {describe(w_q)}")
        if w_q.ndim != 2 or w_q.size == 0:
            raise ValueError(f"w_q: expected a non-empty 2-D array (in, out), got shape {w_q.shape}")
        k, n = w_q.shape
        if not isinstance(bias_q, np.ndarray) or bias_q.dtype != np.int32:
            raise TypeError(f"bias_q: expected an int32 array, got {describe(bias_q)}")
        if bias_q.shape != (n,):
            raise ValueError(f"bias_q: expected shape ({n},) (one per output of w_q {w_q.shape}), got {bias_q.shape}")
        self.activation = _check_choice(activation, "activation", ACTIVATION_KINDS)
        self.requantization = _check_choice(requantization, "requantization", REQUANTIZATIONS)
        self.rounding = _check_choice(rounding, "rounding", _ROUNDINGS)
        self.w_qparams = self._check_weight_qparams(w_qparams, w_q)
        self.in_qparams = _check_act_qparams(in_qparams, "in_qparams")
        self.out_qparams = _check_act_qparams(out_qparams, "out_qparams")
        if self.activation in LUT_ACTIVATIONS:
            self.pre_qparams = _check_act_qparams(pre_qparams, "pre_qparams")
            if not (isinstance(lut, np.ndarray) and lut.dtype == np.int8 and lut.shape == (256,)):
                raise TypeError(f"lut: a {activation} layer needs a (256,) int8 table, got {describe(lut)}")
            self.lut = _readonly(lut)
        else:
            if pre_qparams is not None or lut is not None:
                raise ValueError(f"pre_qparams, lut: only for {LUT_ACTIVATIONS} layers, not {activation!r}")
            self.pre_qparams = None
            self.lut = None
        if alpha is not None and self.activation != "leaky_relu":
            raise ValueError(f"alpha: only for leaky_relu layers, not {activation!r}, got {alpha!r}")
        self.alpha = None if alpha is None else float(alpha)
        self.w_q = _readonly(w_q)
        self.bias_q = _readonly(bias_q)

        lin = self.linear_qparams
        self.zp_in = int(self.in_qparams.zero_point)
        self.zp_lin = int(lin.zero_point)
        s_w = np.broadcast_to(self.w_qparams.scale, (n,))
        with np.errstate(over="ignore", under="ignore"):  # checked just below
            self.real_multiplier = _readonly(_tflite_real_multiplier(
                self.in_qparams.scale,
                self.w_qparams.scale if self.w_qparams.per_channel else np.reshape(self.w_qparams.scale, ()),
                lin.scale, n))
            self.float_multiplier = _readonly((self.in_qparams.scale * s_w) / lin.scale)  # float32 ops
        for name, mult in (("real_multiplier", self.real_multiplier), ("float_multiplier", self.float_multiplier)):
            if not np.all(np.isfinite(mult)):
                raise ValueError(
                    f"in_qparams, w_qparams, out_qparams: the scales give a non-finite {name} "
                    f"(s_in * s_w) / s_out with s_in = {float(self.in_qparams.scale)!r}, s_w in "
                    f"[{float(s_w.min())!r}, {float(s_w.max())!r}], s_out = {float(lin.scale)!r}"
                )
        m0, shift = quantize_multiplier(self.real_multiplier)
        self.m0, self.shift = _readonly(m0), _readonly(shift)
        self.act_min, self.act_max = activation_range(
            "relu" if self.activation == "relu" else None, float(lin.scale), self.zp_lin)
        self._check_accumulator_bound()
        self._prepare_fast_path()

    # ------------------------------------------------------------------ construction helpers
    @staticmethod
    def _check_weight_qparams(qp, w_q: np.ndarray) -> QParams:
        if not isinstance(qp, QParams):
            raise TypeError(f"w_qparams: expected a QParams, got {describe(qp)}")
        if not qp.signed or qp.bits > 8 or np.any(qp.zero_point != 0):
            raise ValueError(f"w_qparams: expected signed weights of at most 8 bits with zero point 0, got {qp!r}")
        if qp.per_channel:
            if qp.axis not in (-1, 1) or qp.num_channels != w_q.shape[1]:
                raise ValueError(
                    f"w_qparams: per-channel weights need one scale per column of w_q "
                    f"{w_q.shape} (axis -1 or 1, {w_q.shape[1]} channels), got axis={qp.axis} "
                    f"with {qp.num_channels} channels"
                )
        if w_q.min() < qp.qmin or w_q.max() > qp.qmax:
            raise ValueError(f"w_q: expected values in [{qp.qmin}, {qp.qmax}] (w_qparams), got [{w_q.min()}, {w_q.max()}]")
        return qp

    def _check_accumulator_bound(self) -> None:
        k = self.in_features
        x_span = max(self.zp_in - _QMIN, _QMAX - self.zp_in)  # max |x - zp_x| over int8 x
        w_max = max(-int(self.w_q.min()), int(self.w_q.max()))
        b_max = max(-int(self.bias_q.min()), int(self.bias_q.max()))
        worst = k * x_span * w_max + b_max
        if worst > INT32_MAX:
            raise ValueError(
                f"w_q, bias_q: K = {k} products up to {x_span} * {w_max} plus |bias| up to "
                f"{b_max} can reach {worst} > 2**31 - 1: the int32 accumulator could overflow"
            )

    def _prepare_fast_path(self) -> None:
        # Since zp_w = 0:  acc_bias = sum_k (x - zp_x) w + bias = (x @ w) + (bias - zp_x * colsum(w)).
        # The O(B K N) product x @ w multiplies uncentred int8 values, |x| <= 128, so float
        # BLAS computes it exactly while K * 128 * max|w| <= 2**24 (float32) or 2**53
        # (float64): every partial sum is then a representable integer (exact_float_dtype).
        col_sums = self.w_q.sum(axis=0, dtype=np.int64)
        self._bias_folded = _readonly(self.bias_q.astype(np.int64) - self.zp_in * col_sums)
        w_max = max(-int(self.w_q.min()), int(self.w_q.max()))
        self._blas_dtype = exact_float_dtype(self.in_features, 128, w_max)
        self._w_blas = None if self._blas_dtype is None else _readonly(self.w_q.astype(self._blas_dtype))
        self._w_int64 = _readonly(self.w_q.astype(np.int64))
        self._m0_64 = _readonly(self.m0.astype(np.int64))
        self._shift_64 = _readonly(self.shift.astype(np.int64))

    # ------------------------------------------------------------------ properties
    @property
    def in_features(self) -> int:
        return self.w_q.shape[0]

    @property
    def out_features(self) -> int:
        return self.w_q.shape[1]

    @property
    def linear_qparams(self) -> QParams:
        """The grid the Linear's requantized output is on: ``pre_qparams`` with a table,
        else ``out_qparams``."""
        return self.pre_qparams if self.pre_qparams is not None else self.out_qparams

    @property
    def weight_bits(self) -> int:
        return self.w_qparams.bits

    # ------------------------------------------------------------------ arithmetic
    def _float_scaled(self, acc_bias: np.ndarray) -> np.ndarray:
        """onnxruntime/MLAS: rint(clamp(float32(acc) * mult, qmin - zp, qmax - zp)), int32."""
        v = acc_bias.astype(np.float32)
        v *= self.float_multiplier
        np.clip(v, np.float32(_QMIN - self.zp_lin), np.float32(_QMAX - self.zp_lin), out=v)
        np.rint(v, out=v)  # round half to even (nearbyint)
        return v.astype(np.int32)

    def _clamp(self, scaled: np.ndarray) -> np.ndarray:
        """``clamp(scaled + zp_o, act_min, act_max)`` as int8 (int64 sum: cannot wrap)."""
        out = scaled.astype(np.int64) + self.zp_lin
        np.clip(out, self.act_min, self.act_max, out=out)
        return out.astype(np.int8)

    def _lookup(self, out: np.ndarray) -> np.ndarray:
        return self.lut[out.astype(np.intp) + 128]

    def _check_input(self, x_q, method: str) -> None:
        # O(1) checks only: the int8 dtype itself bounds every value.
        if not isinstance(x_q, np.ndarray) or x_q.dtype != np.int8:
            raise TypeError(f"x_q: expected an int8 array, got {describe(x_q)}")
        if x_q.ndim != 2 or x_q.shape[1] != self.in_features:
            raise ValueError(f"x_q: expected shape (B, {self.in_features}), got shape {x_q.shape}")
        _check_choice(method, "method", _METHODS)

    def forward(self, x_q: np.ndarray, method: str = "auto") -> np.ndarray:
        """The layer's int8 output for int8 ``x_q`` (B, K): the hot path.

        Computes exactly :meth:`trace`'s ``y`` with fewer passes. Because ``zp_w = 0``,
        ``acc_bias = sum_k (x_q - zp_x) w_q + bias_q = x_q @ w_q + (bias_q - zp_x *
        colsum(w_q))``, and the bracket is a constant folded at construction (gemmlowp's
        offset handling), so only the uncentred product is computed per call: in float
        BLAS when provably exact (``method="auto"``; every partial sum an integer below
        ``K * 128 * max|w_q| <= 2**24`` for float32, ``2**53`` for float64) or in int64
        (``method="int"``: integer-only). ``x_q``: (B, K) int8.
        """
        self._check_input(x_q, method)
        if method == "auto" and self._w_blas is not None:
            prod = (x_q.astype(self._blas_dtype) @ self._w_blas).astype(np.int64)  # exact integers
        else:
            prod = x_q.astype(np.int64) @ self._w_int64
        prod += self._bias_folded  # = acc_bias, |.| <= 2**31 - 1 (proven at construction)
        if self.requantization == "float":
            scaled = self._float_scaled(prod)
        elif self.rounding == "single":
            scaled = _mbqm_single(prod, self._m0_64, self._shift_64)
        else:
            scaled = _mbqm_double(prod, self._m0_64, self._shift_64)
        out = self._clamp(scaled)
        return out if self.lut is None else self._lookup(out)

    def _centred_product(self, x_q: np.ndarray, method: str) -> np.ndarray:
        """``sum_k (x_q - zp_x) * w_q`` as int32: in float64 BLAS when provably exact
        (``K * 255 * max|w_q| <= 2**53``) and ``method="auto"``, else in int64. The cast
        to int32 is exact: the constructor proved the bound for every int8 input."""
        x_centred = x_q.astype(np.int64) - self.zp_in  # |x - zp_x| <= 255
        w_max = max(-int(self.w_q.min()), int(self.w_q.max()))
        dtype = exact_float_dtype(self.in_features, 255, w_max) if method == "auto" else None
        if dtype is None:
            acc = x_centred @ self._w_int64
        else:
            acc = (x_centred.astype(dtype) @ self.w_q.astype(dtype)).astype(np.int64)  # exact integers
        return acc.astype(np.int32)

    def trace(self, x_q: np.ndarray, method: str = "auto") -> dict[str, np.ndarray]:
        """Every integer intermediate of the layer, step by step (for teaching).

        Returns a dict of arrays (B, N) unless noted:

        - ``x_q`` (B, K) int8: the input;
        - ``acc`` int32: ``sum_k (x_q - zp_x) * w_q``, the centred definition computed
          literally (not :meth:`forward`'s folded form), exact by the same bound the
          constructor proved (``K * max|x - zp_x| * max|w_q| + max|bias_q| <= 2**31 - 1``
          with the actual ``max|w_q|``, 127 for narrow-range int8), so every layer the
          constructor accepts can be traced;
        - ``acc_bias`` int32: ``acc + bias_q``;
        - ``scaled`` int32: ``MBQM(acc_bias, m0, shift)`` (fixed point) or the rounded
          float product (``"float"``), before the zero point;
        - ``out`` int8: ``clamp(scaled + zp_o, act_min, act_max)``;
        - ``lut_out`` int8 (table layers only): ``lut[out + 128]``;
        - ``y`` int8: the layer's output (``lut_out`` if present, else ``out``).
        """
        self._check_input(x_q, method)
        acc = self._centred_product(x_q, method)
        acc_bias = (acc.astype(np.int64) + self.bias_q).astype(np.int32)  # in range: proven
        if self.requantization == "float":
            scaled = self._float_scaled(acc_bias)
        else:
            scaled = multiply_by_quantized_multiplier(acc_bias, self.m0, self.shift, self.rounding)
        out = self._clamp(scaled)
        record = {"x_q": x_q, "acc": acc, "acc_bias": acc_bias, "scaled": scaled, "out": out}
        if self.lut is not None:
            record["lut_out"] = self._lookup(out)
        record["y"] = record.get("lut_out", out)
        return record

    # ------------------------------------------------------------------ bookkeeping
    def size_bytes(self) -> int:
        """Bytes to store the layer: weights packed at ``bits`` bits (``ceil(K*N*bits/8)``),
        the table (256 bytes) if any, and 4 bytes for every other number (int32 biases,
        float32 scales, zero points, m0 and shift per weight channel, the output (and
        pre-activation) scale and zero point, act_min and act_max)."""
        k, n = self.w_q.shape
        channels = n if self.w_qparams.per_channel else 1
        total = math.ceil(k * n * self.weight_bits / 8)
        total += 4 * n  # bias_q
        total += 4 * 4 * channels  # weight scale, weight zero point, m0, shift
        total += 4 * 2  # output scale and zero point
        total += 4 * 2  # act_min, act_max
        if self.lut is not None:
            total += 256 + 4 * 2  # the table and the pre-activation scale and zero point
        return total

    def __repr__(self) -> str:
        per = "per-channel" if self.w_qparams.per_channel else "per-tensor"
        return (f"QuantizedLayer({self.in_features} -> {self.out_features}, int{self.weight_bits} "
                f"{per} weights, activation={self.activation!r}, {self.requantization}"
                f"{'/' + self.rounding if self.requantization == 'fixed_point' else ''})")


# --------------------------------------------------------------------------- the model


def _round_half_away_inplace(v: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``v`` rounded half away from zero, in place, using ``t`` (same shape) as scratch.

    ``t = trunc(v)``; ``v - t`` is exact and in (-1, 1), doubling it is exact, and
    ``trunc(2 (v - t))`` is +1 / -1 exactly when the fraction is >= 1/2 / <= -1/2:
    ``round_half_away(v) = t + trunc(2 (v - t))``, with no rounding error anywhere.
    """
    np.trunc(v, out=t)
    v -= t
    v *= 2
    np.trunc(v, out=v)
    v += t
    return v


class QuantizedMLP:
    """An integer-only MLP: int8 activations, int8 (or fewer-bit) weights, int32 biases.

    Built by :func:`quantize_model` (or :meth:`load`). ``layers`` is a list of
    :class:`QuantizedLayer`; layer ``l``'s ``in_qparams`` is layer ``l - 1``'s
    ``out_qparams`` and the first one's is ``input_qparams``. ``output_qparams`` are the
    logits' parameters.

    ``method`` (``"auto"`` or ``"int"``, default ``"auto"``) picks how the int8 matrix
    products run: ``"auto"`` through float BLAS where that is provably exact (bit-identical
    results, 10-100x faster; numpy has no integer BLAS), ``"int"`` in int64 arithmetic only.
    Every method below that takes ``method=None`` uses this attribute.

    "No float operation after the input is quantized" holds only for ``method="int"``
    with ``requantization="fixed_point"``. The default ``"auto"`` runs each int8 product
    through float32 or float64 BLAS: the results are the exact integers, but the
    operations are float operations; ``requantization="float"`` applies the multiplier in
    float32 on any method (onnxruntime's arithmetic).
    """

    def __init__(self, layers: list[QuantizedLayer], input_qparams: QParams, method: str = "auto") -> None:
        if not isinstance(layers, (list, tuple)) or not layers or not all(isinstance(l, QuantizedLayer) for l in layers):
            raise TypeError(f"layers: expected a non-empty list of QuantizedLayer, got {describe(layers)}")
        self.input_qparams = _check_act_qparams(input_qparams, "input_qparams")
        previous, width = self.input_qparams, layers[0].in_features
        for i, layer in enumerate(layers):
            if layer.in_features != width:
                raise ValueError(f"layers[{i}]: expected {width} inputs (the previous layer's outputs), got {layer.in_features}")
            if layer.in_qparams != previous:
                raise ValueError(f"layers[{i}]: in_qparams {layer.in_qparams!r} differ from the previous output's {previous!r}")
            if (layer.requantization, layer.rounding) != (layers[0].requantization, layers[0].rounding):
                raise ValueError(f"layers[{i}]: every layer must use the same requantization and rounding")
            previous, width = layer.out_qparams, layer.out_features
        self.layers = list(layers)
        self.method = method

    # ------------------------------------------------------------------ attributes
    @property
    def method(self) -> str:
        return self._method

    @method.setter
    def method(self, value: str) -> None:
        self._method = _check_choice(value, "method", _METHODS)

    @property
    def layer_sizes(self) -> list[int]:
        return [self.layers[0].in_features] + [layer.out_features for layer in self.layers]

    @property
    def in_features(self) -> int:
        return self.layers[0].in_features

    @property
    def n_outputs(self) -> int:
        return self.layers[-1].out_features

    @property
    def output_qparams(self) -> QParams:
        return self.layers[-1].out_qparams

    @property
    def requantization(self) -> str:
        return self.layers[0].requantization

    @property
    def rounding(self) -> str:
        return self.layers[0].rounding

    @property
    def activation(self) -> str:
        """The hidden layers' activation (``"none"`` for a single-layer model)."""
        return self.layers[0].activation if len(self.layers) > 1 else "none"

    @property
    def weight_bits(self) -> int:
        return self.layers[0].weight_bits

    # ------------------------------------------------------------------ inference
    def _resolve_method(self, method) -> str:
        return self._method if method is None else _check_choice(method, "method", _METHODS)

    def _check_x_q(self, x_q) -> np.ndarray:
        if not isinstance(x_q, np.ndarray) or x_q.dtype != np.int8:
            raise TypeError(
                f"x_q: expected an int8 array (quantize floats with quantize_input first), got {describe(x_q)}"
            )
        if x_q.ndim != 2 or x_q.shape[1] != self.in_features or x_q.shape[0] == 0:
            raise ValueError(
                f"x_q: expected shape (B, {self.in_features}) with B >= 1, got shape {x_q.shape}"
            )
        return x_q

    def quantize_input(self, x) -> np.ndarray:
        """Quantize float inputs to int8 with ``input_qparams``: the model's only float op
        when it runs with ``method="int"`` and ``requantization="fixed_point"`` (with
        ``"auto"`` the int8 products also go through float BLAS, exactly; see the class).

        Formula (TensorFlow Lite's QUANTIZE kernel, ``reference_ops::AffineQuantize``;
        float32 arithmetic, ``std::round`` = half away from zero)::

            x_q = clamp(round_half_away(float32(x) / float32(s_in)) + zp_in, -128, 127)

        ``x`` is first rounded to float32 (the model's input tensor type). Computed as
        ``round_half_away(clamp(x / s, -128 - zp, 127 - zp)) + zp``, equal because the
        bounds are integers and rounding is monotone.

        Args:
            x: (B, in_features) finite real array.

        Returns:
            (B, in_features) int8.
        """
        x = as_float_array(x, "x", ndim=2)
        if x.shape[1] != self.in_features:
            raise ValueError(f"x: expected shape (B, {self.in_features}), got shape {x.shape}")
        qp = self.input_qparams
        zp = np.float32(int(qp.zero_point))
        lo, hi = np.float32(_QMIN) - zp, np.float32(_QMAX) - zp
        out = np.empty(x.shape, dtype=np.int8)
        # Block by block, so the six passes below run on cache-resident data (about 2.5x
        # faster on large batches than whole-array passes); the result does not depend on it.
        rows = max(1, _QUANTIZE_BLOCK // x.shape[1])
        v_buf = np.empty((min(rows, x.shape[0]), x.shape[1]), dtype=np.float32)
        t_buf = np.empty_like(v_buf)
        with np.errstate(over="ignore"):  # float64 beyond float32's range: +-inf, then clamped
            for start in range(0, x.shape[0], rows):
                xb = x[start:start + rows]
                v, t = v_buf[:xb.shape[0]], t_buf[:xb.shape[0]]
                np.divide(xb.astype(np.float32, copy=False), qp.scale, out=v)  # float32 / float32
                np.clip(v, lo, hi, out=v)
                _round_half_away_inplace(v, t)
                v += zp  # integers in [-128, 127]: exact
                out[start:start + xb.shape[0]] = v  # exact cast of integral float32 to int8
        return out

    def forward_int(self, x_q: np.ndarray, trace: bool = False, method: str | None = None):
        """int8 inputs to int8 logits, with integer arithmetic only.

        Each layer computes (see :class:`QuantizedLayer`)::

            acc_bias = sum_k (x_q - zp_x) * w_q + bias_q                 int32
            scaled   = MBQM(acc_bias, m0, shift)                         int32
            y        = [lut](clamp(scaled + zp_out, act_min, act_max))   int8

        With ``requantization="fixed_point"`` and ``method="int"`` every operation after
        the input is an integer operation. ``method="auto"`` computes the matrix product
        ``x_q @ w_q`` of int8 values in float BLAS where provably exact (every partial sum
        an integer below 2**24 or 2**53), which returns the same integers; with
        ``requantization="float"`` the multiplier is applied in float32 (onnxruntime).

        Args:
            x_q: (B, in_features) int8 (from :meth:`quantize_input`).
            trace: also return one dict per layer with every integer intermediate
                (:meth:`QuantizedLayer.trace`: ``x_q, acc, acc_bias, scaled, out,
                [lut_out], y``), computed step by step (the centred product, then MBQM).
            method: ``"auto"``, ``"int"`` or None (the model's :attr:`method`).

        Returns:
            (B, n_outputs) int8 logits, or ``(logits, records)`` with ``trace=True``.

        Raises:
            TypeError: ``x_q`` not an int8 array (e.g. floats).
            ValueError: wrong shape or number of features.
        """
        method = self._resolve_method(method)
        h = self._check_x_q(x_q)
        if trace:
            records = []
            for layer in self.layers:
                records.append(layer.trace(h, method))
                h = records[-1]["y"]
            return h, records
        for layer in self.layers:
            h = layer.forward(h, method)
        return h

    def predict(self, x, method: str | None = None) -> np.ndarray:
        """Predicted classes: quantize ``x`` once, run :meth:`forward_int`, integer argmax.

        Integer-only after :meth:`quantize_input` with ``method="int"`` (and fixed-point
        requantization); ``method="auto"`` computes the int8 products exactly in float BLAS.

        ``argmax_j logits_q[:, j]`` over int8 logits (ties: the first index, as numpy).
        Dequantizing is monotone (scale > 0), so this is also the argmax of the
        dequantized logits. Returns (B,) int64.
        """
        return np.argmax(self.forward_int(self.quantize_input(x), method=method), axis=1).astype(np.int64)

    def dequantized_logits(self, x, method: str | None = None) -> np.ndarray:
        """``s_out * (logits_q - zp_out)`` as float32 (B, n_outputs), for comparing with
        the float model."""
        return dequantize(self.forward_int(self.quantize_input(x), method=method), self.output_qparams)

    def accuracy(self, x, y, method: str | None = None) -> float:
        """Fraction of examples whose predicted class equals the label ``y`` (B,) int."""
        pred = self.predict(x, method)
        labels = check_labels(y, pred.shape[0], self.n_outputs, "y")
        return float(np.mean(pred == labels))

    def compare(self, float_model: MLP, x, y) -> dict:
        """How far the integer model is from ``float_model`` on ``(x, y)``.

        Returns a dict of Python floats:

        - ``float_accuracy``, ``int_accuracy``: fraction correct;
        - ``agreement``: fraction of examples on which both predict the same class;
        - ``max_logit_error``, ``mean_logit_error``: ``max`` / mean over all entries of
          ``|float logits - dequantized int logits|`` (in logit units);
        - ``n``: the number of examples.
        """
        if not isinstance(float_model, MLP):
            raise TypeError(f"float_model: expected an nnref.mlp.MLP, got {describe(float_model)}")
        if list(float_model.layer_sizes) != self.layer_sizes:
            raise ValueError(f"float_model: expected layer sizes {self.layer_sizes}, got {float_model.layer_sizes}")
        x = as_float_array(x, "x", ndim=2)
        labels = check_labels(y, x.shape[0], self.n_outputs, "y")
        logits_f = float_model.forward(x).astype(np.float64)
        logits_q = self.forward_int(self.quantize_input(x))
        pred_f = np.argmax(logits_f, axis=1)
        pred_q = np.argmax(logits_q, axis=1)
        err = np.abs(logits_f - dequantize(logits_q, self.output_qparams).astype(np.float64))
        return {
            "float_accuracy": float(np.mean(pred_f == labels)),
            "int_accuracy": float(np.mean(pred_q == labels)),
            "agreement": float(np.mean(pred_f == pred_q)),
            "max_logit_error": float(err.max()),
            "mean_logit_error": float(err.mean()),
            "n": int(x.shape[0]),
        }

    # ------------------------------------------------------------------ size and display
    def size_bytes(self) -> int:
        """Bytes the integer runtime holds: the layers' :meth:`QuantizedLayer.size_bytes`
        plus the input scale and zero point (8 bytes). Weights below 8 bits count as packed
        (``ceil(n * bits / 8)``), although nnref keeps one per int8 byte in memory.

        This includes constants an engine derives when it loads a model (``m0``, ``shift``,
        clamp bounds); :func:`nnref.quant.report.model_size_bytes` counts only what a stored
        model file holds, and is what nnref's tables quote."""
        return 8 + sum(layer.size_bytes() for layer in self.layers)

    def __repr__(self) -> str:
        per = "per-channel" if self.layers[0].w_qparams.per_channel else "per-tensor"
        req = self.requantization + (f"/{self.rounding}" if self.requantization == "fixed_point" else "")
        return (f"QuantizedMLP({self.layer_sizes}, activation={self.activation!r}, "
                f"int{self.weight_bits} {per} weights, int8 activations, {req}, "
                f"{self.size_bytes():,} bytes)")

    def summary(self) -> str:
        """A table of the layers: shape, activation, grids, multipliers and clamp bounds."""
        def grid(qp: QParams) -> str:
            return f"s={float(qp.scale):.4g} zp={int(qp.zero_point)}"

        lines = [repr(self), f"  input            {grid(self.input_qparams)}"]
        for i, layer in enumerate(self.layers):
            s_w = layer.w_qparams.scale
            lines.append(
                f"  layer {i}: {layer.in_features:>4} -> {layer.out_features:<4} {layer.activation:<10} "
                f"w int{layer.weight_bits} s_w in [{s_w.min():.3g}, {s_w.max():.3g}]  "
                f"M in [{layer.real_multiplier.min():.3g}, {layer.real_multiplier.max():.3g}]  "
                f"clamp [{layer.act_min}, {layer.act_max}]"
                + (f"  pre {grid(layer.pre_qparams)} + LUT" if layer.lut is not None else "")
                + f"  out {grid(layer.out_qparams)}  {layer.size_bytes():,} B"
            )
        return "\n".join(lines)

    # ------------------------------------------------------------------ save / load
    def save(self, path) -> None:
        """Write the model to an ``.npz`` file (no pickles): every stored array of every
        layer, the parameters of every grid, and the derived m0/shift/clamp bounds, which
        :meth:`load` recomputes and checks."""
        arrays: dict[str, np.ndarray] = {
            "num_layers": np.array(len(self.layers)),
            "requantization": np.array(self.requantization),
            "rounding": np.array(self.rounding),
        }
        arrays.update(_qparams_arrays("input", self.input_qparams))
        for i, layer in enumerate(self.layers):
            p = f"layer{i}."
            arrays[p + "w_q"] = layer.w_q
            arrays[p + "bias_q"] = layer.bias_q
            arrays[p + "activation"] = np.array(layer.activation)
            arrays[p + "m0"] = layer.m0
            arrays[p + "shift"] = layer.shift
            arrays[p + "act_range"] = np.array([layer.act_min, layer.act_max], dtype=np.int32)
            arrays.update(_qparams_arrays(p + "w", layer.w_qparams))
            arrays.update(_qparams_arrays(p + "out", layer.out_qparams))
            if layer.lut is not None:
                arrays.update(_qparams_arrays(p + "pre", layer.pre_qparams))
                arrays[p + "lut"] = layer.lut
            if layer.activation == "leaky_relu":
                if layer.alpha is None:
                    raise ValueError(f"layers[{i}]: a leaky_relu layer needs its alpha to be saved "
                                     f"(construct the QuantizedLayer with alpha=...), got None")
                arrays[p + "alpha"] = np.array(layer.alpha, dtype=np.float64)
        write_archive(path, _FORMAT, _FORMAT_VERSION, arrays)

    @classmethod
    def load(cls, path, method: str = "auto") -> QuantizedMLP:
        """Read a model written by :meth:`save` (``allow_pickle=False``).

        Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file
        for anything else wrong: not a zip/npz (truncated, foreign), another format or
        version, missing or unexpected entries, wrong dtypes or shapes, grids that do not
        chain, stored m0/shift/clamp bounds that disagree with the stored scales, a lookup
        table that differs from the one :func:`build_lut` rebuilds from the stored grids
        (and leaky ReLU ``alpha``), or a tanh/sigmoid output grid other than
        :data:`FIXED_OUTPUT_QPARAMS`.
        """
        path = os.fspath(path)
        arrays = read_archive(path, _FORMAT, _FORMAT_VERSION, "QuantizedMLP")
        used = {"format", "format_version", "num_layers", "requantization", "rounding"}
        try:
            n_layers = int(_entry(arrays, "num_layers", used))
            req, rnd = str(_entry(arrays, "requantization", used)), str(_entry(arrays, "rounding", used))
            input_qp = _qparams_from_arrays(arrays, "input", used)
            layers, in_qp = [], input_qp
            for i in range(n_layers):
                p = f"layer{i}."
                activation = str(_entry(arrays, p + "activation", used))
                has_lut = activation in LUT_ACTIVATIONS
                alpha = _alpha_entry(arrays, p + "alpha", used) if activation == "leaky_relu" else None
                layer = QuantizedLayer(
                    w_q=_entry(arrays, p + "w_q", used),
                    bias_q=_entry(arrays, p + "bias_q", used),
                    w_qparams=_qparams_from_arrays(arrays, p + "w", used),
                    in_qparams=in_qp,
                    out_qparams=_qparams_from_arrays(arrays, p + "out", used),
                    activation=activation,
                    pre_qparams=_qparams_from_arrays(arrays, p + "pre", used) if has_lut else None,
                    lut=_entry(arrays, p + "lut", used) if has_lut else None,
                    requantization=req,
                    rounding=rnd,
                    alpha=alpha,
                )
                if activation in FIXED_OUTPUT_QPARAMS and layer.out_qparams != FIXED_OUTPUT_QPARAMS[activation]:
                    raise ValueError(f"{p}out: a {activation} layer's output grid is fixed at "
                                     f"{FIXED_OUTPUT_QPARAMS[activation]!r}, got {layer.out_qparams!r}")
                if has_lut and not np.array_equal(
                        layer.lut, build_lut(activation, layer.pre_qparams, layer.out_qparams, alpha or 0.0)):
                    raise ValueError(f"{p}lut: the stored table differs from the {activation} table "
                                     f"rebuilt from the stored grids")
                for name, derived in (("m0", layer.m0), ("shift", layer.shift),
                                      ("act_range", np.array([layer.act_min, layer.act_max], dtype=np.int32))):
                    stored = _entry(arrays, p + name, used)
                    if stored.dtype != derived.dtype or not np.array_equal(stored, derived):
                        raise ValueError(f"{p + name}: stored values disagree with those derived from the stored scales")
                layers.append(layer)
                in_qp = layer.out_qparams
            model = cls(layers, input_qp, method=method)
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}: inconsistent QuantizedMLP record ({exc})") from None
        extra = set(arrays) - used
        if extra:
            raise ValueError(f"{path}: unexpected entries {sorted(extra)}")
        return model


_FORMAT = "nnref.QuantizedMLP"
_FORMAT_VERSION = 2  # 2: leaky ReLU layers store their slope (layerN.alpha)
_QP_META = ("qmin", "qmax", "bits", "signed", "narrow_range", "axis")
_NO_AXIS = -(2**31)  # stands for axis=None in the saved metadata


def _qparams_arrays(prefix: str, qp: QParams) -> dict[str, np.ndarray]:
    meta = [qp.qmin, qp.qmax, qp.bits, int(qp.signed), int(qp.narrow_range),
            _NO_AXIS if qp.axis is None else qp.axis]
    return {
        f"{prefix}.scale": np.array(qp.scale),
        f"{prefix}.zero_point": np.array(qp.zero_point),
        f"{prefix}.meta": np.array(meta, dtype=np.int64),
        f"{prefix}.scheme": np.array(qp.scheme),
    }


def _alpha_entry(arrays: dict, key: str, used: set) -> float:
    """A leaky ReLU slope: a finite float64 scalar >= 0."""
    a = _entry(arrays, key, used)
    if a.shape != () or a.dtype != np.float64 or not np.isfinite(a) or a < 0:
        raise ValueError(f"entry {key!r}: expected a finite float64 scalar >= 0, got {describe(a)}")
    return float(a)


def _entry(arrays: dict, key: str, used: set) -> np.ndarray:
    if key not in arrays:
        raise KeyError(f"missing entry {key!r}")
    used.add(key)
    return arrays[key]


def _qparams_from_arrays(arrays: dict, prefix: str, used: set) -> QParams:
    meta = _entry(arrays, f"{prefix}.meta", used)
    if meta.dtype != np.int64 or meta.shape != (len(_QP_META),):
        raise ValueError(f"{prefix}.meta: expected {len(_QP_META)} int64 values {_QP_META}, got {describe(meta)}")
    qmin, qmax, bits, signed, narrow, axis = (int(v) for v in meta)
    scale = _entry(arrays, f"{prefix}.scale", used)
    zero_point = _entry(arrays, f"{prefix}.zero_point", used)
    if scale.dtype != np.float32 or zero_point.dtype != np.int32:
        raise ValueError(f"{prefix}: expected float32 scale and int32 zero_point, got {scale.dtype} and {zero_point.dtype}")
    return QParams(scale=scale, zero_point=zero_point, qmin=qmin, qmax=qmax, bits=bits,
                   signed=bool(signed), narrow_range=bool(narrow),
                   axis=None if axis == _NO_AXIS else axis,
                   scheme=str(_entry(arrays, f"{prefix}.scheme", used)))


# --------------------------------------------------------------------------- conversion


def _layer_activations(model: MLP) -> list[tuple[str, float]]:
    """``(kind, alpha)`` for each Linear layer of ``model``, from its own layer objects."""
    kinds = {ReLU: "relu", Tanh: "tanh", Sigmoid: "sigmoid", LeakyReLU: "leaky_relu"}
    layers, out = model.layers, []
    i = 0
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


def _check_activation_qparams(qps, n_layers: int) -> list[QParams] | None:
    """``activation_qparams`` checked: None, or ``n_layers + 1`` per-tensor int8 QParams."""
    if qps is None:
        return None
    if not isinstance(qps, (list, tuple)):
        raise TypeError(f"activation_qparams: expected a list of {n_layers + 1} QParams "
                        f"[input, out_0, ..., out_{n_layers - 1}], got {describe(qps)}")
    if len(qps) != n_layers + 1:
        raise ValueError(f"activation_qparams: expected {n_layers + 1} QParams (the input and each "
                         f"of the {n_layers} layers' outputs), got {len(qps)}")
    names = ["input"] + [f"out_{i}" for i in range(n_layers)]
    for i, (qp, name) in enumerate(zip(qps, names)):
        if qp is None:
            raise ValueError(f"activation_qparams[{i}] ({name}): expected a QParams, got None "
                             f"(no range learned yet: calibrate or train the QAT model first)")
        _check_act_qparams(qp, f"activation_qparams[{i}] ({name})")
    return list(qps)


def quantize_model(model: MLP, calibration_x, weight_scheme: str | QScheme = "tflite_int8_weights",
                   activation_observer=MinMaxObserver, bits: int = 8,
                   requantization: str = "fixed_point", rounding: str = "single",
                   calibration_batch_size: int = 512,
                   activation_qparams: list[QParams] | None = None) -> QuantizedMLP:
    """Convert a float MLP into an integer-only :class:`QuantizedMLP` (TensorFlow Lite's
    post-training full-integer quantization; see the module docstring for the steps).

    Args:
        model: the trained float :class:`~nnref.mlp.MLP` (not modified, apart from its
            layers' forward caches during calibration).
        calibration_x: (N, in_features) representative inputs for the activation ranges.
        weight_scheme: a symmetric signed weight scheme, ``"tflite_int8_weights"`` (per
            output channel, default) or ``"tflite_int8_weights_per_tensor"`` or a
            :class:`QScheme`; see :func:`quantize_weights`.
        activation_observer: zero-argument factory of per-tensor observers for the
            activation ranges (``MinMaxObserver``, ``lambda: PercentileObserver(99.9)``, ...);
            activations always use ``TFLITE_INT8_ACTIVATIONS`` (int8 affine per tensor).
        bits: the weight bit width, 2..8 (weights stored one per int8; activations stay 8-bit).
        requantization: ``"fixed_point"`` (TensorFlow Lite, integers only) or ``"float"``
            (ONNX QLinearMatMul as onnxruntime computes it, plus the int32 bias).
        rounding: ``"single"`` or ``"double"`` fixed-point rounding (see
            :func:`~nnref.quant.fixed_point.multiply_by_quantized_multiplier`); ignored by
            ``"float"``.
        calibration_batch_size: batches fed to the observers (see :func:`calibrate`): it
            matters for the moving-average observer, which averages per batch.
        activation_qparams: None (calibrate every activation), or the activation grids
            quantization-aware training learned, used instead of calibration (what
            PyTorch's ``convert`` and TensorFlow Lite's converter do with QAT ranges): a
            list of ``L + 1`` per-tensor int8 :class:`QParams` (``qmin, qmax = -128, 127``)
            for a model with ``L`` Linear layers, ``[input, out_0, ..., out_{L-1}]``, where
            ``out_l`` is layer ``l``'s output after its activation (``out_{L-1}`` the
            logits). This is exactly :attr:`nnref.quant.qat.QATMLP.activation_qparams`
            of a QATMLP built with ``act_bits=8``. Then ``calibration_x`` may be None,
            unless a layer uses a lookup table (tanh, sigmoid, leaky ReLU): its
            pre-activation grid is not among the QAT grids and is still calibrated from
            ``calibration_x``. A tanh or sigmoid layer's output grid is always
            :data:`FIXED_OUTPUT_QPARAMS` (TensorFlow Lite's spec), so its ``out_l`` entry
            is not used.

    Per layer ``l`` with input grid ``(s_in, zp_in)``:

    - ReLU or no activation: the output grid comes from ``calibration.outputs[l]`` and a
      ReLU is the clamp ``act_min = zp_out``;
    - tanh / sigmoid / leaky ReLU: the Linear output is requantized onto the grid of
      ``calibration.preactivations[l]``, then the table :func:`build_lut` maps it onto the
      output grid: :data:`FIXED_OUTPUT_QPARAMS` for tanh and sigmoid (TensorFlow Lite's
      spec), ``calibration.outputs[l]`` for leaky ReLU.

    Raises:
        TypeError / ValueError: bad arguments (each named); a model with layers other than
            Linear and the four activations; a bias or accumulator that cannot fit int32.
    """
    if not isinstance(model, MLP):
        raise TypeError(f"model: expected an nnref.mlp.MLP, got {describe(model)}")
    scheme = _weight_scheme(weight_scheme, bits)
    _check_choice(requantization, "requantization", REQUANTIZATIONS)
    _check_choice(rounding, "rounding", _ROUNDINGS)
    activations = _layer_activations(model)
    given = _check_activation_qparams(activation_qparams, len(activations))
    needs_pre = [i for i, (kind, _) in enumerate(activations) if kind in LUT_ACTIVATIONS]
    if given is None and calibration_x is None:
        raise ValueError("calibration_x: expected (N, in_features) calibration inputs (or "
                         "activation_qparams from quantization-aware training), got None")
    cal = None
    if given is None or (needs_pre and calibration_x is not None):
        cal = calibrate(model, calibration_x, observer=activation_observer, batch_size=calibration_batch_size)
        for name, obs in [("input", cal.input)] + [(f"outputs[{i}]", o) for i, o in enumerate(cal.outputs)]:
            if obs.axis is not None:
                raise ValueError(f"activation_observer: expected per-tensor observers, got {type(obs).__name__} (axis={obs.axis}) for {name}")
    elif needs_pre:
        raise ValueError(
            f"calibration_x: layers {needs_pre} use a lookup table ({activations[needs_pre[0]][0]}), "
            f"whose pre-activation grid activation_qparams does not hold; expected calibration "
            f"inputs, got None"
        )

    def grid(l: int) -> QParams:  # the grid of activation l: 0 the input, l + 1 layer l's output
        if given is not None:
            return given[l]
        return (cal.input if l == 0 else cal.outputs[l - 1]).qparams(TFLITE_INT8_ACTIVATIONS)

    input_qp = grid(0)
    layers, in_qp = [], input_qp
    for i, (lin, (kind, alpha)) in enumerate(zip(model.linears, activations)):
        w_q, w_qp = quantize_weights(lin.W, scheme, bits)
        try:
            bias_q = quantize_bias(lin.b, in_qp.scale, w_qp.scale)
        except ValueError as exc:
            raise ValueError(f"model: layer {i}: {exc}") from None
        if kind in LUT_ACTIVATIONS:
            pre_qp = cal.preactivations[i].qparams(TFLITE_INT8_ACTIVATIONS)
            out_qp = FIXED_OUTPUT_QPARAMS.get(kind) or grid(i + 1)
            lut = build_lut(kind, pre_qp, out_qp, alpha)
        else:
            pre_qp, lut = None, None
            out_qp = grid(i + 1)
        layers.append(QuantizedLayer(w_q, bias_q, w_qp, in_qp, out_qp, kind, pre_qp, lut,
                                     requantization, rounding,
                                     alpha=alpha if kind == "leaky_relu" else None))
        in_qp = out_qp
    return QuantizedMLP(layers, input_qp)
