"""One int8 Linear layer and its activation at run time, integers only (TensorFlow Lite).

In the order the arithmetic happens (``reference_integer_ops::FullyConnected``)::

    acc[i, j]      = sum_k (x_q[i, k] - zp_x) * w_q[k, j]          int32  (zp_w = 0)
    acc_bias[i, j] = acc[i, j] + bias_q[j]                         int32
    scaled[i, j]   = MBQM(acc_bias[i, j], m0[j], shift[j])         int32  ~ acc_bias * M[j]
    out[i, j]      = clamp(scaled[i, j] + zp_out, act_min, act_max) int8
    y[i, j]        = lut[out[i, j] + 128]                          int8   (tanh/sigmoid/leaky ReLU)

:meth:`QuantizedLayer.apply` runs :func:`~nnref.quant.kernels.linear_int8` (``method="int"``)
or its fast twin :func:`~nnref.quant.kernels.linear_int8_fast` (``"auto"``), the same
functions tutorial 05 traces.
"""

from __future__ import annotations

import math

import numpy as np

from nnref._checks import check_nonnegative, describe
from nnref.quant.checks import (
    INT32_MAX,
    check_act_qparams,
    check_choice,
    max_abs,
)
from nnref.quant.fixed_point import MBQM, quantize_multiplier
from nnref.quant.kernels import (
    accumulate_fast,
    activation_range,
    exact_float_dtype,
    fold_bias,
    linear_int8,
    linear_int8_fast,
    matmul_centred,
    matmul_expanded,
    requantize_fixed_point,
    requantize_float,
)
from nnref.quant.lut import LUT_ACTIVATIONS, lookup
from nnref.quant.qparams import QParams

__all__ = ["ACTIVATION_KINDS", "REQUANTIZATIONS", "ROUNDINGS", "METHODS", "MULTIPLIER_ORDERS",
           "QuantizedLayer", "tflite_real_multiplier"]

ACTIVATION_KINDS = ("none", "relu", "tanh", "sigmoid", "leaky_relu")
REQUANTIZATIONS = ("fixed_point", "float")
ROUNDINGS = ("single", "double")
METHODS = ("auto", "int")
#: The orders of :func:`tflite_real_multiplier`: ``"double"`` (QuantizedLayer, LiteRT's
#: reference kernels) and ``"float32_product"`` (LiteRT's optimized kernels and TensorFlow
#: Lite Micro, per-tensor weights).
MULTIPLIER_ORDERS = ("double", "float32_product")
_QMIN, _QMAX = -128, 127


def tflite_real_multiplier(s_in, s_w, s_out, n: int, order: str = "double") -> np.ndarray:
    """TensorFlow Lite's real requantization multiplier ``M[j]`` (plain).

    Formula, ``order="double"`` (the default; per channel, and per tensor with the one
    scale given to every channel): every factor is widened to double first::

        M[j] = double(s_in) * double(s_w[j]) / double(s_out)

    ``order="float32_product"`` (per tensor only, ``GetQuantizedConvolutionMultipler``):
    the scale product is rounded to float32, then widened::

        M = double(float32(s_in) * float32(s_w)) / double(s_out)

    The two differ by at most one float32 rounding (relative ``2**-24``), which moves
    ``m0`` by tens of units and, rarely, an output by one.

    Parameters
    ----------
    s_in, s_out : float32
    s_w : float32 or ndarray of float32, shape (n,)
        A scalar is a per-tensor scale.
    n : int
        The number of output channels.
    order : {"double", "float32_product"}
        Which engine's arithmetic (:data:`MULTIPLIER_ORDERS`). Engines use
        ``"float32_product"`` for a scalar ``s_w`` only; given an array it is applied
        channel by channel.

    Returns
    -------
    ndarray of float64, shape (n,)

    Notes
    -----
    What ai-edge-litert 2.3 (LiteRT) does, read from its binary and measured on the
    per-tensor fixture ``tests/fixtures/digits_relu_per_tensor.tflite``: the reference
    kernels (``BUILTIN_REF``, ``reference_integer_ops::FullyConnected`` and
    ``FullyConnectedPerChannel``) receive the float scales, form ``"double"`` and apply it
    to the accumulator in double precision; on the fixture the float32 order misses a few
    int8 outputs and this one none. The optimized kernels (ruy, no delegate) receive the
    fixed-point multiplier made by ``FULLY_CONNECTED``'s ``Prepare``: per channel from
    ``"double"``, per tensor from ``GetQuantizedConvolutionMultipler``, i.e.
    ``"float32_product"`` (the fixture's first layer: ``m0 = 2044811629``, where
    ``"double"`` gives ``2044811559``, both with shift -9). TensorFlow Lite Micro's
    ``FULLY_CONNECTED`` also takes its per-tensor multiplier from
    ``GetQuantizedConvolutionMultipler``.

    References
    ----------
    LiteRT ``tflite/kernels/kernel_util.cc`` (``PopulateConvolutionQuantizationParams``,
    ``GetQuantizedConvolutionMultipler``), ``tflite/kernels/fully_connected.cc``
    (``PrepareImpl``) and ``tflite/kernels/internal/reference/integer_ops/fully_connected.h``
    (the overloads taking the float scales: ``round(double(acc) * M)``); TensorFlow Lite
    Micro ``kernels/fully_connected_common.cc`` (``CalculateOpDataFullyConnected``).
    """
    s_in, s_out = np.float32(s_in), np.float32(s_out)
    s_w = np.asarray(s_w, dtype=np.float32)
    if order == "float32_product":
        return np.full(n, np.float64(s_in * s_w) / np.float64(s_out))
    return np.float64(s_in) * np.broadcast_to(s_w, (n,)).astype(np.float64) / np.float64(s_out)


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a)  # a private copy
    a.setflags(write=False)
    return a


def _check_arrays(w_q, bias_q) -> None:
    if not isinstance(w_q, np.ndarray) or w_q.dtype != np.int8:
        raise TypeError(f"w_q: expected an int8 array (in, out), got {describe(w_q)}")
    if w_q.ndim != 2 or w_q.size == 0:
        raise ValueError(f"w_q: expected a non-empty 2-D array (in, out), got shape {w_q.shape}")
    if not isinstance(bias_q, np.ndarray) or bias_q.dtype != np.int32:
        raise TypeError(f"bias_q: expected an int32 array, got {describe(bias_q)}")
    if bias_q.shape != (w_q.shape[1],):
        raise ValueError(f"bias_q: expected shape ({w_q.shape[1]},) (one per output of w_q "
                         f"{w_q.shape}), got {bias_q.shape}")


def _check_weight_qparams(qp, w_q: np.ndarray) -> QParams:
    if not isinstance(qp, QParams):
        raise TypeError(f"w_qparams: expected a QParams, got {describe(qp)}")
    if not qp.signed or qp.bits > 8 or np.any(qp.zero_point != 0):
        raise ValueError(f"w_qparams: expected signed weights of at most 8 bits with zero point 0, got {qp!r}")
    if qp.per_channel and (qp.axis not in (-1, 1) or qp.num_channels != w_q.shape[1]):
        raise ValueError(
            f"w_qparams: per-channel weights need one scale per column of w_q {w_q.shape} (axis -1 "
            f"or 1, {w_q.shape[1]} channels), got axis={qp.axis} with {qp.num_channels} channels"
        )
    if w_q.min() < qp.qmin or w_q.max() > qp.qmax:
        raise ValueError(f"w_q: expected values in [{qp.qmin}, {qp.qmax}] (w_qparams), got [{w_q.min()}, {w_q.max()}]")
    return qp


def _check_table(activation: str, pre_qparams, lut, alpha):
    """``(pre_qparams, lut)`` for a table activation, ``(None, None)`` otherwise."""
    if alpha is not None and activation != "leaky_relu":
        raise ValueError(f"alpha: only for leaky_relu layers, not {activation!r}, got {alpha!r}")
    if activation not in LUT_ACTIVATIONS:
        if pre_qparams is not None or lut is not None:
            raise ValueError(f"pre_qparams, lut: only for {LUT_ACTIVATIONS} layers, not {activation!r}")
        return None, None
    pre = check_act_qparams(pre_qparams, "pre_qparams")
    if not (isinstance(lut, np.ndarray) and lut.dtype == np.int8 and lut.shape == (256,)):
        raise TypeError(f"lut: a {activation} layer needs a (256,) int8 table, got {describe(lut)}")
    return pre, _readonly(lut)


def _check_accumulator_bound(layer_name: str, k: int, zp_in: int, w_q: np.ndarray, bias_q: np.ndarray) -> None:
    x_span = max(zp_in - _QMIN, _QMAX - zp_in)  # max |x - zp_x| over int8 x
    w_max, b_max = max_abs(w_q), max_abs(bias_q)
    worst = k * x_span * w_max + b_max
    if worst > INT32_MAX:
        raise ValueError(
            f"{layer_name}: K = {k} products up to {x_span} * {w_max} plus |bias| up to "
            f"{b_max} can reach {worst} > 2**31 - 1: the int32 accumulator could overflow"
        )


class QuantizedLayer:
    """One int8 Linear layer and its activation, integer-only (TensorFlow Lite order).

    Parameters
    ----------
    w_q : ndarray of int8, shape (K, N)
    bias_q : ndarray of int32, shape (N,)
        In units of ``s_in * s_w[j]``.
    w_qparams : QParams
        Symmetric, zero point 0, at most 8 bits; per column or per tensor.
    in_qparams, out_qparams : QParams
        Per-tensor int8: the input, and the layer's output after the activation.
    activation : {"none", "relu", "tanh", "sigmoid", "leaky_relu"}
    pre_qparams : QParams or None
        The int8 pre-activation grid a lookup table reads (table activations only).
    lut : ndarray of int8, shape (256,), or None
        The table (:func:`~nnref.quant.lut.build_lut`) for table activations.
    requantization : {"fixed_point", "float"}
        TensorFlow Lite's integer MBQM, or ONNX QLinearMatMul's float32 multiplier as
        onnxruntime computes it (plus the int32 bias, as its QLinearConv).
    rounding : {"single", "double"}
        The fixed-point rounding (ignored by ``"float"``).
    alpha : float or None
        A leaky ReLU layer's slope (needed to save and reload it).
    name : str
        How errors name the layer (``"layer 2"``).

    Raises
    ------
    TypeError, ValueError
        Each argument named; scales whose multiplier is not finite; a layer whose int32
        accumulator could overflow for some int8 input (the layer is named).

    Notes
    -----
    Derived at construction, for the Linear's own output grid ``(s_o, zp_o)``:
    ``real_multiplier`` (:func:`tflite_real_multiplier`, order ``"double"`` per channel and
    per tensor: LiteRT's reference kernels), ``m0, shift =
    quantize_multiplier(real_multiplier)``, ``float_multiplier =
    float32(float32(s_in) * float32(s_w)) / float32(s_o)`` (onnxruntime) and
    ``act_min, act_max = activation_range("relu" or None, s_o, zp_o)``. The constructor
    proves ``K * max|x - zp_x| * max|w| + max|bias| <= 2**31 - 1`` for every int8 input, so
    no int32 intermediate can wrap.
    """

    def __init__(self, w_q: np.ndarray, bias_q: np.ndarray, w_qparams: QParams, in_qparams: QParams,
                 out_qparams: QParams, activation: str = "none", pre_qparams: QParams | None = None,
                 lut: np.ndarray | None = None, requantization: str = "fixed_point",
                 rounding: str = "single", alpha: float | None = None, name: str = "layer") -> None:
        _check_arrays(w_q, bias_q)
        self.activation = check_choice(activation, "activation", ACTIVATION_KINDS)
        self.requantization = check_choice(requantization, "requantization", REQUANTIZATIONS)
        self.rounding = check_choice(rounding, "rounding", ROUNDINGS)
        self.w_qparams = _check_weight_qparams(w_qparams, w_q)
        self.in_qparams = check_act_qparams(in_qparams, "in_qparams")
        self.out_qparams = check_act_qparams(out_qparams, "out_qparams")
        self.pre_qparams, self.lut = _check_table(self.activation, pre_qparams, lut, alpha)
        self.alpha = None if alpha is None else check_nonnegative(alpha, "alpha")
        self.w_q, self.bias_q = _readonly(w_q), _readonly(bias_q)
        self.zp_in = int(self.in_qparams.zero_point)
        _check_accumulator_bound(f"{name}: w_q, bias_q", self.in_features, self.zp_in, self.w_q, self.bias_q)
        self._derive_multipliers()
        self._prepare_fast_path()

    def _derive_multipliers(self) -> None:
        lin, n = self.linear_qparams, self.out_features
        s_w = self.w_qparams.scale
        with np.errstate(over="ignore", under="ignore"):  # checked just below
            real = tflite_real_multiplier(self.in_qparams.scale, s_w, lin.scale, n)
            self.float_multiplier = _readonly((self.in_qparams.scale * np.broadcast_to(s_w, (n,))) / lin.scale)
        self.real_multiplier = _readonly(real)
        for name, mult in (("real_multiplier", real), ("float_multiplier", self.float_multiplier)):
            if not np.all(np.isfinite(mult)):
                raise ValueError(
                    f"in_qparams, w_qparams, out_qparams: the scales give a non-finite {name} "
                    f"(s_in * s_w) / s_out with s_in = {float(self.in_qparams.scale)!r}, s_w in "
                    f"[{float(s_w.min())!r}, {float(s_w.max())!r}], s_out = {float(lin.scale)!r}"
                )
        m0, shift = quantize_multiplier(real)
        self.m0, self.shift = _readonly(m0), _readonly(shift)
        self.zp_lin = int(lin.zero_point)
        self.act_min, self.act_max = activation_range(
            "relu" if self.activation == "relu" else None, float(lin.scale), self.zp_lin)

    def _prepare_fast_path(self) -> None:
        # zp_w = 0, so acc_bias = x @ w + fold_bias(...): the product multiplies uncentred
        # int8 values, |x| <= 128, exact in float BLAS while K * 128 * max|w| <= 2**24 / 2**53.
        self._folded_bias = _readonly(fold_bias(self.bias_q, self.w_q, self.zp_in))
        self._blas_dtype = exact_float_dtype(self.in_features, 128, max_abs(self.w_q))
        self._w_blas = None if self._blas_dtype is None else _readonly(self.w_q.astype(self._blas_dtype))
        self._m0_64 = _readonly(self.m0.astype(np.int64))
        self._shift_64 = _readonly(self.shift.astype(np.int64))

    # ------------------------------------------------------------------ properties
    @property
    def in_features(self) -> int:
        """K, the number of inputs."""
        return self.w_q.shape[0]

    @property
    def out_features(self) -> int:
        """N, the number of outputs."""
        return self.w_q.shape[1]

    @property
    def exact_dtype(self) -> np.dtype | None:
        """The float type in which ``x_q @ w_q`` is provably exact (None: none is)."""
        return self._blas_dtype

    @property
    def linear_qparams(self) -> QParams:
        """The grid of the requantized Linear output: ``pre_qparams`` with a table, else
        ``out_qparams``."""
        return self.pre_qparams if self.pre_qparams is not None else self.out_qparams

    @property
    def weight_bits(self) -> int:
        """The weights' bit width (2..8)."""
        return self.w_qparams.bits

    # ------------------------------------------------------------------ arithmetic
    def check_input(self, x_q, method: str = "auto") -> np.ndarray:
        """Return ``x_q`` if it is a (B, K) int8 array and ``method`` is known, else raise.

        Parameters
        ----------
        x_q : ndarray of int8, shape (B, K)
        method : {"auto", "int"}

        Returns
        -------
        ndarray of int8

        Raises
        ------
        TypeError, ValueError
            Naming the argument.
        """
        if not isinstance(x_q, np.ndarray) or x_q.dtype != np.int8:
            raise TypeError(f"x_q: expected an int8 array, got {describe(x_q)}")
        if x_q.ndim != 2 or x_q.shape[1] != self.in_features:
            raise ValueError(f"x_q: expected shape (B, {self.in_features}), got shape {x_q.shape}")
        check_choice(method, "method", METHODS)
        return x_q

    def forward(self, x_q: np.ndarray, method: str = "auto") -> np.ndarray:
        """The layer's int8 output for int8 ``x_q`` (B, K), checked (see :meth:`apply`).

        Parameters
        ----------
        x_q : ndarray of int8, shape (B, K)
        method : {"auto", "int"}

        Returns
        -------
        ndarray of int8, shape (B, N)

        Raises
        ------
        TypeError, ValueError
            Naming the argument.
        """
        return self.apply(self.check_input(x_q, method), method)

    def apply(self, x_q: np.ndarray, method: str = "auto", x_exact: np.ndarray | None = None) -> np.ndarray:
        """The layer's int8 output, unchecked (the model checks its input once).

        ``method="int"`` runs :func:`~nnref.quant.kernels.linear_int8` (integers only);
        ``"auto"`` runs :func:`~nnref.quant.kernels.linear_int8_fast` where the float BLAS
        product is proven exact: the same bits (tested).

        Parameters
        ----------
        x_q : ndarray of int8, shape (B, K)
        method : {"auto", "int"}
        x_exact : ndarray of float, optional
            ``x_q`` already held in :attr:`exact_dtype` (saves a conversion; ``x_q`` may
            then be None).

        Returns
        -------
        ndarray of int8, shape (B, N)
        """
        if method == "auto" and self._w_blas is not None:
            if x_exact is None or x_exact.dtype != self._blas_dtype:
                x_exact = x_q.astype(self._blas_dtype)
            if self.requantization == "fixed_point":
                out = linear_int8_fast(x_exact, self._w_blas, self._folded_bias, self._m0_64, self._shift_64,
                                       self.zp_lin, self.act_min, self.act_max, self.rounding)
            else:
                acc = accumulate_fast(x_exact, self._w_blas, self._folded_bias).astype(np.int32)
                out = requantize_float(acc, self.float_multiplier, self.zp_lin, self.act_min, self.act_max)
        elif self.requantization == "fixed_point":
            out = linear_int8(x_q, self.w_q, self.bias_q, self.zp_in, 0, self._m0_64, self._shift_64,
                              self.zp_lin, self.act_min, self.act_max, self.rounding)
        else:
            acc = matmul_centred(x_q, self.w_q, self.zp_in, 0) + self.bias_q
            out = requantize_float(acc, self.float_multiplier, self.zp_lin, self.act_min, self.act_max)
        return out if self.lut is None else lookup(self.lut, out)

    def trace(self, x_q: np.ndarray, method: str = "auto") -> dict[str, np.ndarray]:
        """Every integer intermediate of the layer, step by step (for teaching).

        Parameters
        ----------
        x_q : ndarray of int8, shape (B, K)
        method : {"auto", "int"}
            How the product is computed (:func:`~nnref.quant.matmul.exact_product`).

        Returns
        -------
        dict of str to ndarray
            ``x_q``; ``acc`` (int32, ``sum_k (x_q - zp_x) * w_q``); ``acc_bias`` (int32,
            ``acc + bias_q``); ``scaled`` (int32: MBQM, or the rounded float product);
            ``out`` (int8, ``clamp(scaled + zp_o, act_min, act_max)``); ``lut_out`` (int8,
            table layers only); ``y`` (int8, the layer's output).
        """
        self.check_input(x_q, method)
        acc = matmul_expanded(x_q, self.w_q, self.zp_in, 0, method)
        acc_bias = acc + self.bias_q  # in int32 range: proven at construction
        if self.requantization == "float":
            scaled = requantize_float(acc_bias, self.float_multiplier, 0, _QMIN - self.zp_lin,
                                      _QMAX - self.zp_lin, np.int32)
            out = requantize_float(acc_bias, self.float_multiplier, self.zp_lin, self.act_min, self.act_max)
        else:
            scaled = MBQM[self.rounding](acc_bias, self._m0_64, self._shift_64).astype(np.int32)
            out = requantize_fixed_point(acc_bias, self._m0_64, self._shift_64, self.zp_lin,
                                         self.act_min, self.act_max, self.rounding)
        record = {"x_q": x_q, "acc": acc, "acc_bias": acc_bias, "scaled": scaled, "out": out}
        if self.lut is not None:
            record["lut_out"] = lookup(self.lut, out)
        record["y"] = record.get("lut_out", out)
        return record

    # ------------------------------------------------------------------ bookkeeping
    def size_bytes(self) -> int:
        """Bytes to store the layer.

        Returns
        -------
        int
            Weights packed at ``bits`` bits (``ceil(K*N*bits/8)``), the table (256 bytes)
            if any, and 4 bytes for every other number (int32 biases, float32 scales, zero
            points, m0 and shift per weight channel, the output (and pre-activation) scale
            and zero point, act_min and act_max).
        """
        k, n = self.w_q.shape
        channels = n if self.w_qparams.per_channel else 1
        total = math.ceil(k * n * self.weight_bits / 8) + 4 * n + 4 * 4 * channels + 4 * 2 + 4 * 2
        if self.lut is not None:
            total += 256 + 4 * 2  # the table and the pre-activation scale and zero point
        return total

    def __repr__(self) -> str:
        per = "per-channel" if self.w_qparams.per_channel else "per-tensor"
        return (f"QuantizedLayer({self.in_features} -> {self.out_features}, int{self.weight_bits} "
                f"{per} weights, activation={self.activation!r}, {self.requantization}"
                f"{'/' + self.rounding if self.requantization == 'fixed_point' else ''})")
