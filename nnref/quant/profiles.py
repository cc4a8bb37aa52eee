"""Rounding profiles: how each engine path turns an int32 accumulator into an int8 value.

An int8 fully connected layer computes the same int32 accumulator ``acc`` (plus bias) in
every engine; engines differ only in how they apply the real multiplier
``M = s_in * s_w / s_out`` and round. Each profile is that one step, as a plain function
of a few lines, measured element for element against the engine it names
(``tests/test_interop_tflite.py`` and ``tests/test_interop_compare.py`` run the engines;
``tests/test_profiles.py`` checks the laws and worked values without them)::

    profile     scaled = acc * M rounded as                 engine path
    single      (acc * m0 + 2**(t-1)) >> t,  t = 31 - shift   TFLite integer-only spec (TFLITE_SINGLE_ROUNDING)
    double      RDBPOT(SRDHM(acc * 2**l, m0), r)            gemmlowp, Jacob et al. 2018
    double_up   RSHIFT_UP(SRDHM(acc * 2**l, m0), r)         LiteRT optimized kernels (ruy)
    float64     round_half_away(double(acc) * double(M))    LiteRT reference kernels
    float32     rint(float32(acc) * float32(M))             XNNPACK, onnxruntime

with ``l = max(shift, 0)``, ``r = max(-shift, 0)``, ``(m0, shift) =
quantize_multiplier(M)`` (``M`` in double; for ``double_up`` with per-tensor weights the
scale product is rounded to float32 first, as LiteRT's optimized FULLY_CONNECTED does:
:func:`profile_multipliers`), SRDHM gemmlowp's saturating rounding doubling high multiply
(ties toward +infinity), RDBPOT its rounding divide by a power of two (ties away from
zero) and RSHIFT_UP a rounding right shift with ties toward +infinity,
``floor((x + 2**(r-1)) / 2**r)``. The two double roundings differ only when the first
result is negative and exactly halfway: ``acc * M = -83.500566`` can first round to
``-334`` (``r = 2``), which is ``-83.5`` after the shift; ``"double"`` gives ``-84``,
``"double_up"`` ``-83``, ``"single"`` (nearest to -83.500566) ``-84``.

``"float64"`` is ``"single"`` without the 31-bit fixed-point multiplier: LiteRT 2.3's
reference FULLY_CONNECTED takes the float scales, multiplies ``double(acc)`` by
``M = double(s_in) * double(s_w) / double(s_out)`` and rounds half away from zero. The two
agree on every digits value; they part only within ~1e-8 of a tie, where ``m0`` (``M``
rounded to 31 bits) moves ``acc * M`` across it: in column 17 of
``tests/fixtures/digits_relu6.tflite``'s first layer, ``acc = 18748`` gives
``acc * M = 20.5 + 8.5e-10`` (``"float64"`` 21, as the engine) and ``20.5 - 3.5e-9``
with ``m0`` (``"single"`` 20).

``"float32"`` multiplies in float32, so a product like ``159.499995588`` becomes the
float32 ``159.5`` before rounding, and rounds half to even (``160``); the multiplier is
``float32(float32(s_in) * float32(s_w)) / float32(s_out)``.

The float input is quantized by one of three rules (:data:`INPUT_ROUNDINGS`,
:func:`input_rounding_formula`): LiteRT's reference QUANTIZE divides and rounds half away
from zero, onnxruntime divides and rounds half to even, LiteRT's optimized QUANTIZE and
XNNPACK multiply by the float32 reciprocal of the scale and round half to even.
:data:`ENGINE_PROFILES` and :data:`ENGINE_INPUT_ROUNDINGS` say which engine path follows
which (measured by ``tests/test_interop_*.py``).

After the profile: ``clamp(scaled + zp_out, act_min, act_max)`` as int8, as in
:class:`~nnref.quant.QuantizedLayer`.

References
----------
B. Jacob et al., arXiv 1712.05877 (2018), section 2.2 (SRDHM, RDBPOT); TensorFlow Lite /
LiteRT ``MultiplyByQuantizedMultiplier`` (``TFLITE_SINGLE_ROUNDING``); TFLite's
``reference_integer_ops::FullyConnected`` / ``FullyConnectedPerChannel`` overloads that take
the float scales (``reference/integer_ops/fully_connected.h``); ruy's fixed-point
output stage; XNNPACK's fp32 requantization; onnxruntime's MLAS ``RequantizeOutput``.
Every profile here was fitted to, and is tested against, the engines' own outputs
(ai-edge-litert 2.3, onnxruntime 1.32), not only to their source.
"""

from __future__ import annotations

import numpy as np

from nnref._checks import as_float_array, describe
from nnref.quant.checks import check_choice
from nnref.quant.convert import QuantizedLayer, QuantizedMLP
from nnref.quant.fixed_point import (
    INT32_MIN,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    saturating_rounding_doubling_high_mul,
)
from nnref.quant.ops import round_half_away
from nnref.quant.qlayer import tflite_real_multiplier

__all__ = [
    "PROFILES",
    "INPUT_ROUNDINGS",
    "ENGINE_PROFILES",
    "ENGINE_INPUT_ROUNDINGS",
    "input_rounding_formula",
    "quantize_input_as",
    "rounding_shift_ties_up",
    "double_up_formula",
    "float32_formula",
    "float64_formula",
    "profile_scaled",
    "profile_multipliers",
    "profile_requantized",
    "profile_forward",
    "model_profile",
]

#: Profile name -> what it follows.
PROFILES = {
    "single": "TFLite's integer-only fixed point (TFLITE_SINGLE_ROUNDING): one rounding, ties toward +inf",
    "double": "gemmlowp / Jacob et al. 2018: SRDHM then RDBPOT (ties away from zero)",
    "double_up": "LiteRT optimized kernels (ruy), no delegate: SRDHM then a right shift with ties toward +inf "
                 "(a per-tensor multiplier in the float32-product order, GetQuantizedConvolutionMultipler)",
    "float64": "LiteRT reference kernels (BUILTIN_REF): double(acc) * double M, ties away from zero",
    "float32": "XNNPACK (LiteRT's default delegate) and onnxruntime: float32 product, ties to even",
}
#: How an engine path quantizes the float input (QUANTIZE / QuantizeLinear), by name.
INPUT_ROUNDINGS = {
    "half_away": "round_half_away(float32(x) / s) + zp: LiteRT's reference QUANTIZE (std::round)",
    "half_even": "rint(float32(x) / s) + zp: ONNX QuantizeLinear as onnxruntime computes it",
    "reciprocal_half_even": "rint(float32(x) * float32(1 / s)) + zp: LiteRT's optimized QUANTIZE and XNNPACK",
}
#: The requantization profile each engine path of :mod:`nnref.interop` follows (measured).
ENGINE_PROFILES = {"litert_reference": "float64", "litert_optimized": "double_up",
                   "litert_default": "float32", "onnxruntime": "float32"}
#: The input rounding each engine path follows (measured).
ENGINE_INPUT_ROUNDINGS = {"litert_reference": "half_away", "litert_optimized": "reciprocal_half_even",
                          "litert_default": "reciprocal_half_even", "onnxruntime": "half_even"}


def input_rounding_formula(x: np.ndarray, scale: np.float32, zero_point: int, rule: str) -> np.ndarray:
    """The int8 input of a QUANTIZE / QuantizeLinear under ``rule`` (plain math).

    ``clamp(r + zp, -128, 127)`` with ``r`` one of (:data:`INPUT_ROUNDINGS`)::

        half_away             round_half_away(x / s)      float32 division, ties away from zero
        half_even             rint(x / s)                 float32 division, ties to even
        reciprocal_half_even  rint(x * float32(1 / s))    float32 multiply by the reciprocal

    Parameters
    ----------
    x : numpy.ndarray of float32, any shape
    scale : numpy.float32, > 0
    zero_point : int in [-128, 127]
    rule : {"half_away", "half_even", "reciprocal_half_even"}

    Returns
    -------
    numpy.ndarray of int8, the shape of ``x``.

    Notes
    -----
    The reciprocal can move a quotient onto or off a tie: measured on LiteRT's optimized
    QUANTIZE, ``x / s = 254.50002`` but ``x * (1 / s) = 254.5``, which rounds to 254.
    Sources: LiteRT ``reference_ops::AffineQuantize`` (half away), onnxruntime's
    ``QuantizeLinear`` (half even), LiteRT's optimized ``AffineQuantize`` and XNNPACK's
    f32 -> qs8 convert (reciprocal); each measured in ``tests/test_interop_*.py``.
    """
    if rule == "reciprocal_half_even":
        v = np.rint(x * (np.float32(1.0) / scale))
    else:
        v = x / scale
        v = np.rint(v) if rule == "half_even" else round_half_away(v)  # exact (not floor(v + 0.5))
    return np.clip(v + np.float32(zero_point), -128, 127).astype(np.int8)


def rounding_shift_ties_up(x: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """``x / 2**exponent`` rounded to nearest, ties toward +infinity (plain math).

    Formula: ``floor((x + 2**(e-1)) / 2**e)`` for ``e >= 1``, ``x`` for ``e == 0``, computed
    as ``(x + 2**e // 2) >> e`` (numpy's ``>>`` floors).

    Parameters
    ----------
    x : numpy.ndarray of int64, ``|x| <= 2**31``
    exponent : numpy.ndarray of int64 in [0, 31], broadcast against ``x``

    Returns
    -------
    numpy.ndarray of int64

    Notes
    -----
    gemmlowp's ``RoundingDivideByPOT`` rounds ties away from zero instead; the two differ
    only for negative exact ties. Source: ruy's rounding right shift in its fixed-point
    output stage, which LiteRT's optimized kernels use (measured, see the module docstring).
    """
    return (x + ((np.int64(1) << exponent) >> 1)) >> exponent


def double_up_formula(acc: np.ndarray, m0: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Profile ``"double_up"``: ``RSHIFT_UP(SRDHM(acc * 2**l, m0), r)`` (plain math).

    ``l = max(shift, 0)``, ``r = max(-shift, 0)``; SRDHM is
    :func:`~nnref.quant.fixed_point.saturating_rounding_doubling_high_mul`, RSHIFT_UP
    :func:`rounding_shift_ties_up`.

    Parameters
    ----------
    acc : numpy.ndarray of int32, shape (..., N)
    m0 : numpy.ndarray of int32, shape (N,), each 0 or in [2**30, 2**31)
    shift : numpy.ndarray of int32, shape (N,), in [-31, 0]

    Returns
    -------
    numpy.ndarray of int64, the shape of ``acc``.

    References
    ----------
    Measured element for element against LiteRT's optimized FULLY_CONNECTED (ruy); the
    first step is gemmlowp's (Jacob et al. 2018, arXiv 1712.05877, section 2.2).
    """
    left = np.maximum(shift, 0).astype(np.int64)
    right = np.maximum(-shift, 0).astype(np.int64)
    high = saturating_rounding_doubling_high_mul((acc.astype(np.int64) << left).astype(np.int32), m0)
    return rounding_shift_ties_up(np.asarray(high, dtype=np.int64), right)


def float32_formula(acc: np.ndarray, multiplier: np.ndarray) -> np.ndarray:
    """Profile ``"float32"``: ``rint(float32(acc) * multiplier)`` (plain math).

    The product is a float32 multiply and ``rint`` rounds half to even. The float32 is
    clamped to ``[-2**31, 2**31]`` before the integer cast (the later int8 clamp makes
    that invisible).

    Parameters
    ----------
    acc : numpy.ndarray of int32, shape (..., N)
    multiplier : numpy.ndarray of float32, shape (N,)

    Returns
    -------
    numpy.ndarray of int64, the shape of ``acc``.

    References
    ----------
    XNNPACK's fp32 requantization (LiteRT's default delegate) and onnxruntime's MLAS
    ``RequantizeOutput``; measured against both.
    """
    v = np.rint(acc.astype(np.float32) * multiplier.astype(np.float32))
    return np.clip(v, np.float32(INT32_MIN), np.float32(-INT32_MIN)).astype(np.int64)  # 2**31: exact


def float64_formula(acc: np.ndarray, multiplier: np.ndarray) -> np.ndarray:
    """Profile ``"float64"``: ``round_half_away(double(acc) * M)`` (plain math).

    ``M = double(s_in) * double(s_w) / double(s_out)``
    (:func:`~nnref.quant.qlayer.tflite_real_multiplier`, order ``"double"``); the product
    is one float64 multiply, rounded half away from zero (C's ``std::round``), clamped to
    ``[-2**31, 2**31]`` before the integer cast (the later int8 clamp makes that invisible).

    Parameters
    ----------
    acc : numpy.ndarray of int32, shape (..., N)
    multiplier : numpy.ndarray of float64, shape (N,)

    Returns
    -------
    numpy.ndarray of int64, the shape of ``acc``.

    Notes
    -----
    Not the integer-only spec (:func:`~nnref.quant.fixed_point.multiply_by_quantized_multiplier`,
    ``"single"``): the 31-bit ``m0`` and the double ``M`` part only within ~1e-8 of a tie.

    References
    ----------
    TensorFlow Lite's ``reference_integer_ops::FullyConnected`` and
    ``FullyConnectedPerChannel``, the overloads that take the float scales
    (``tensorflow/lite/kernels/internal/reference/integer_ops/fully_connected.h``), which
    LiteRT 2.3's ``BUILTIN_REF`` resolver runs; measured against it
    (``tests/test_interop_tflite.py``).
    """
    v = round_half_away(acc.astype(np.float64) * multiplier.astype(np.float64))
    return np.clip(v, float(INT32_MIN), -float(INT32_MIN)).astype(np.int64)  # 2**31: exact


def _check_int32(a, name: str) -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.dtype != np.int32:
        raise TypeError(f"{name}: expected an int32 array, got {describe(a)}")
    return a


def profile_scaled(profile: str, acc, m0, shift, float_multiplier, real_multiplier=None) -> np.ndarray:
    """The requantized value before the zero point, ``acc * M`` rounded by ``profile``.

    Parameters
    ----------
    profile : {"single", "double", "double_up", "float64", "float32"}
        See :data:`PROFILES`.
    acc : numpy.ndarray of int32, shape (..., N)
        Accumulators plus bias.
    m0, shift : numpy.ndarray of int32, shape (N,)
        The fixed-point multiplier per output channel (``quantize_multiplier``);
        ``shift <= 0`` for the double roundings (``M < 1``, every converter-made layer).
    float_multiplier : numpy.ndarray of float32, shape (N,)
        ``float32(float32(s_in) * float32(s_w)) / float32(s_out)`` (``"float32"`` only).
    real_multiplier : numpy.ndarray of float64, shape (N,), optional
        ``double(s_in) * double(s_w) / double(s_out)``, finite; required by ``"float64"``
        (only).

    Returns
    -------
    numpy.ndarray of int64, the shape of ``acc``.

    Raises
    ------
    TypeError
        ``acc``, ``m0`` or ``shift`` not int32 arrays; ``float_multiplier`` not float32;
        ``real_multiplier`` not float64 (or missing with ``"float64"``).
    ValueError
        An unknown profile; channel counts that differ; a positive shift with
        ``"double_up"``; a non-finite ``real_multiplier``.
    """
    check_choice(profile, "profile", tuple(PROFILES))
    acc, m0, shift = _check_int32(acc, "acc"), _check_int32(m0, "m0"), _check_int32(shift, "shift")
    if not (isinstance(float_multiplier, np.ndarray) and float_multiplier.dtype == np.float32):
        raise TypeError(f"float_multiplier: expected a float32 array, got {describe(float_multiplier)}")
    if profile == "float64" or real_multiplier is not None:
        if not (isinstance(real_multiplier, np.ndarray) and real_multiplier.dtype == np.float64):
            raise TypeError(f"real_multiplier: expected a float64 array, got {describe(real_multiplier)}")
        if not np.all(np.isfinite(real_multiplier)):
            raise ValueError(f"real_multiplier: expected finite values, got {real_multiplier!r}")
    n = acc.shape[-1] if acc.ndim else None
    checked = (("m0", m0), ("shift", shift), ("float_multiplier", float_multiplier),
               ("real_multiplier", real_multiplier))
    for name, a in ((k, v) for k, v in checked if v is not None):
        if a.shape != (n,):
            raise ValueError(f"{name}: expected shape ({n},) (one per channel of acc {acc.shape}), got {a.shape}")
    if profile in ("single", "double"):
        return np.asarray(multiply_by_quantized_multiplier(acc, m0, shift, profile), dtype=np.int64)
    if profile == "double_up":
        if np.any(shift > 0) or np.any((m0 != 0) & (m0 < 2**30)):
            raise ValueError(f"shift, m0: expected shift <= 0 and m0 from quantize_multiplier, got shift "
                             f"up to {int(shift.max())}")
        return double_up_formula(acc, m0, shift)
    if profile == "float64":
        return float64_formula(acc, real_multiplier)
    return float32_formula(acc, float_multiplier)


def profile_multipliers(layer, profile: str) -> tuple[np.ndarray, np.ndarray]:
    """The fixed-point ``(m0, shift)`` the engine of ``profile`` uses for ``layer``.

    The layer's own (order ``"double"`` of
    :func:`~nnref.quant.qlayer.tflite_real_multiplier`), except ``"double_up"`` with
    per-tensor weights: LiteRT's optimized FULLY_CONNECTED takes that multiplier from
    ``GetQuantizedConvolutionMultipler``, order ``"float32_product"``.

    Parameters
    ----------
    layer : QuantizedLayer
    profile : str
        A key of :data:`PROFILES`.

    Returns
    -------
    (numpy.ndarray of int32, numpy.ndarray of int32), each of shape (layer.out_features,).

    Raises
    ------
    TypeError
        ``layer`` is not a QuantizedLayer.
    ValueError
        An unknown profile.
    """
    if not isinstance(layer, QuantizedLayer):
        raise TypeError(f"layer: expected a QuantizedLayer, got {describe(layer)}")
    if profile not in PROFILES:
        raise ValueError(f"profile: expected one of {tuple(PROFILES)}, got {profile!r}")
    if profile == "double_up" and not layer.w_qparams.per_channel:
        real = tflite_real_multiplier(layer.in_qparams.scale, layer.w_qparams.scale, layer.linear_qparams.scale,
                                      layer.out_features, order="float32_product")
        return quantize_multiplier(real)
    return layer.m0, layer.shift


def profile_requantized(layer, acc_bias: np.ndarray, profile: str) -> np.ndarray:
    """A :class:`~nnref.quant.QuantizedLayer`'s requantized int8 output under ``profile``.

    ``clamp(profile_scaled(acc_bias) + zp, act_min, act_max)`` as int8, with the
    profile's multipliers (:func:`profile_multipliers`) and the layer's zero point and
    clamp bounds: the value LiteRT's FULLY_CONNECTED writes
    (before a TANH / LOGISTIC table, which ``layer.lut`` then applies).

    Parameters
    ----------
    layer : QuantizedLayer
    acc_bias : numpy.ndarray of int32, shape (B, layer.out_features)
        ``layer.trace(x_q)["acc_bias"]``.
    profile : str
        A key of :data:`PROFILES`.

    Returns
    -------
    numpy.ndarray of int8, shape (B, layer.out_features).
    """
    acc_bias = _check_int32(acc_bias, "acc_bias")
    if not isinstance(layer, QuantizedLayer):
        raise TypeError(f"layer: expected a QuantizedLayer, got {describe(layer)}")
    m0, shift = profile_multipliers(layer, profile)
    scaled = profile_scaled(profile, acc_bias, m0, shift, np.asarray(layer.float_multiplier, dtype=np.float32),
                            np.asarray(layer.real_multiplier, dtype=np.float64))
    return np.clip(scaled + layer.zp_lin, layer.act_min, layer.act_max).astype(np.int8)


def profile_forward(model, x_q: np.ndarray, profile: str) -> np.ndarray:
    """A :class:`~nnref.quant.QuantizedMLP`'s int8 logits with every layer requantized by
    ``profile`` (:func:`profile_requantized`, then each layer's lookup table).

    Parameters
    ----------
    model : QuantizedMLP
    x_q : numpy.ndarray of int8, shape (B, model.in_features)
    profile : str
        A key of :data:`PROFILES`.

    Returns
    -------
    numpy.ndarray of int8, shape (B, model.n_outputs). With the model's own profile
    (:func:`model_profile`) this is ``model.forward_int(x_q)`` bit for bit.

    Raises
    ------
    TypeError, ValueError
        A model that is not a QuantizedMLP; bad ``x_q`` (see ``QuantizedLayer.trace``);
        an unknown profile.
    """
    if not isinstance(model, QuantizedMLP):
        raise TypeError(f"model: expected a QuantizedMLP, got {describe(model)}")
    check_choice(profile, "profile", tuple(PROFILES))
    h = x_q
    for layer in model.layers:
        out = profile_requantized(layer, layer.trace(h)["acc_bias"], profile)
        h = out if layer.lut is None else layer.lut[out.astype(np.intp) + 128]
    return h


def model_profile(model) -> str:
    """The profile a :class:`~nnref.quant.QuantizedMLP` itself follows.

    Parameters
    ----------
    model : QuantizedMLP

    Returns
    -------
    str
        Its fixed-point rounding (``"single"`` or ``"double"``), or ``"float32"`` for
        ``requantization="float"``.
    """
    if not isinstance(model, QuantizedMLP):
        raise TypeError(f"model: expected a QuantizedMLP, got {describe(model)}")
    return "float32" if model.requantization == "float" else model.rounding


def quantize_input_as(model, x, rule: str) -> np.ndarray:
    """``model``'s int8 input for float ``x`` under the input rounding ``rule``.

    Parameters
    ----------
    model : QuantizedMLP
        Its ``input_qparams`` give the scale and zero point.
    x : array_like, shape (B, model.in_features)
        Finite real inputs, rounded to float32 first (the engines' input type).
    rule : {"half_away", "half_even", "reciprocal_half_even"}
        See :data:`INPUT_ROUNDINGS` and :func:`input_rounding_formula`.

    Returns
    -------
    numpy.ndarray of int8, shape (B, model.in_features). ``"half_away"`` equals
    ``model.quantize_input(x)``.

    Raises
    ------
    TypeError, ValueError
        A model that is not a QuantizedMLP; an unknown rule; ``x`` not finite or of the
        wrong shape.
    """
    if not isinstance(model, QuantizedMLP):
        raise TypeError(f"model: expected a QuantizedMLP, got {describe(model)}")
    check_choice(rule, "rule", tuple(INPUT_ROUNDINGS))
    x = as_float_array(x, "x", ndim=2)
    if x.shape[1] != model.in_features:
        raise ValueError(f"x: expected shape (B, {model.in_features}), got shape {x.shape}")
    qp = model.input_qparams
    with np.errstate(over="ignore"):  # beyond float32: +-inf, clamped
        return input_rounding_formula(x.astype(np.float32), np.float32(qp.scale), int(qp.zero_point), rule)
