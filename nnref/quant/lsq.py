"""Learned quantizers for quantization-aware training: LSQ's learned step size (Esser et
al. 2020, "Learned Step Size Quantization", ICLR 2020, arXiv 1902.08153) and PACT's
learned activation clipping (Choi et al. 2018, "PACT: Parameterized Clipping Activation
for Quantized Neural Networks", arXiv 1805.06085).

QAT (:mod:`nnref.quant.qat`) fake-quantizes with grids chosen from min-max ranges: the
grid is a consequence of the weights, never trained. LSQ makes the step ``s`` a parameter
with its own gradient; PACT makes the clipping level ``alpha`` of a ReLU one. Both say the
same thing: **clipping is part of quantization**, and where to clip is best learned from
the loss (a step ``s`` with ``Q_P`` levels clips at ``s Q_P``).

LSQ, with ``Q_N``, ``Q_P`` the number of negative and positive levels::

    v_bar = round(clamp(v / s, -Q_N, Q_P))          v_hat = v_bar * s           (eqs. 1-2)
    d v_hat / d s = -v/s + round(v/s)   if -Q_N < v/s < Q_P                    (eq. 3)
                    -Q_N                if v/s <= -Q_N
                    Q_P                 if v/s >= Q_P
    d v_hat / d v = 1 inside, 0 outside (straight-through estimator)

and the step's gradient is multiplied by ``g = 1 / sqrt(N Q_P)`` (section 2.2; ``N`` the
number of values sharing the step), which keeps its updates in proportion to the weights'.
The ``round`` counts as a constant in eq. 3 (the STE): the gradient is the exact
derivative of ``s * (clamp(v/s) + c)`` with ``c = round(v/s) - v/s`` held fixed.

PACT replaces a ReLU by ``y = clamp(x, 0, alpha)`` (eq. 1), quantized to ``k`` bits on
``[0, alpha]`` (eq. 2: ``y_q = round(y (2^k - 1) / alpha) alpha / (2^k - 1)``), with::

    d y_q / d alpha = 1 where x >= alpha, else 0                                (eq. 3)
    d y_q / d x     = 1 where 0 <= x < alpha, else 0

and ``alpha`` L2-regularised (``lambda / 2 * alpha^2`` added to the loss, section 3).

Weights here are symmetric narrow range (``Q_N = Q_P = 2^(b-1) - 1``, TensorFlow Lite's
weight grid: ternary at 2 bits) and rounded half away from zero, as the converter does,
so :meth:`LSQMLP.convert` stores exactly the simulated weights. Hidden ReLU outputs are
unsigned (``Q_N = 0, Q_P = 2^b - 1``); at 8 bits that grid is TensorFlow Lite's int8 ReLU
grid (zero point -128, scale ``s`` or ``alpha / 255``), so the learned ranges convert
unchanged. The network's input and logits are not simulated (they are int8 in the integer
model, calibrated at conversion).
"""

from __future__ import annotations

import numpy as np

from nnref._checks import check_float_dtype, check_int_in_range, check_nonnegative, check_positive, describe
from nnref.layers import Layer, Linear, ReLU
from nnref.mlp import MLP
from nnref.quant import QParams, QuantizedMLP, quantize_model, round_half_away
from nnref.quant.layerwise import dequantized_model, layer_activations, to_quantized_mlp, weight_qparams

__all__ = [
    "lsq_quantize",
    "lsq_grad",
    "lsq_grad_scale",
    "lsq_init_step",
    "pact_forward",
    "pact_quantize",
    "pact_backward",
    "LSQLinear",
    "LSQActivation",
    "PACTActivation",
    "LSQMLP",
    "prepare_lsq",
]

_MIN_STEP = 1e-8  # a step driven to <= 0 by the optimizer is used as this (never divides by 0)


def lsq_quantize(v, s, qn: int, qp: int) -> np.ndarray:
    """LSQ's quantizer ``v_hat = round(clamp(v / s, -Q_N, Q_P)) * s``.

    Parameters
    ----------
    v : ndarray, float
    s : float or ndarray
        The step, broadcast against ``v`` (one per column of a weight matrix, or a scalar).
    qn, qp : int
        ``Q_N`` and ``Q_P``, the numbers of negative and positive levels.

    Returns
    -------
    ndarray of ``v``'s shape and dtype
        Rounded half away from zero, as TensorFlow Lite (the paper leaves ties open).

    References
    ----------
    Esser et al. 2020, arXiv 1902.08153, eqs. 1-2.
    """
    return (round_half_away(np.clip(v / s, -qn, qp)) * s).astype(np.asarray(v).dtype, copy=False)


def lsq_grad(v, s, qn: int, qp: int) -> tuple[np.ndarray, np.ndarray]:
    """``(d v_hat / d v, d v_hat / d s)``, elementwise, with the straight-through estimator.

    Formula::

        d v_hat / d v = 1 if -Q_N < v/s < Q_P else 0
        d v_hat / d s = round(v/s) - v/s  inside,   -Q_N below,   Q_P above

    Parameters
    ----------
    v : ndarray, float
    s : float or ndarray, > 0
    qn, qp : int

    Returns
    -------
    (ndarray, ndarray)
        Both of ``v``'s shape (``s`` broadcast), float.

    References
    ----------
    Esser et al. 2020, arXiv 1902.08153, eq. 3.
    """
    r = v / s
    inside = (r > -qn) & (r < qp)
    ds = np.where(inside, round_half_away(np.clip(r, -qn, qp)) - r, np.where(r <= -qn, -qn, qp))
    return inside.astype(r.dtype), ds.astype(r.dtype)


def lsq_grad_scale(n: int, qp: int) -> float:
    """LSQ's gradient scale ``g = 1 / sqrt(N Q_P)``.

    Parameters
    ----------
    n : int
        The number of values that share the step (a layer's weights per step, or a
        layer's features per example for an activation).
    qp : int

    Returns
    -------
    float

    References
    ----------
    Esser et al. 2020, arXiv 1902.08153, section 2.2.
    """
    return 1.0 / float(np.sqrt(n * qp))


def lsq_init_step(v, qp: int, axis=None) -> np.ndarray:
    """LSQ's initial step ``2 mean|v| / sqrt(Q_P)``.

    Parameters
    ----------
    v : ndarray
    qp : int
    axis : int or None
        ``0`` gives one step per column of a weight matrix.

    Returns
    -------
    float or ndarray

    References
    ----------
    Esser et al. 2020, arXiv 1902.08153, section 2.1.
    """
    return 2.0 * np.mean(np.abs(v), axis=axis) / np.sqrt(qp)


def pact_forward(x, alpha) -> np.ndarray:
    """PACT's activation ``y = clamp(x, 0, alpha) = (|x| - |x - alpha| + alpha) / 2``.

    Parameters
    ----------
    x : ndarray, float
    alpha : float, > 0

    Returns
    -------
    ndarray of ``x``'s shape and dtype

    References
    ----------
    Choi et al. 2018, arXiv 1805.06085, eq. 1.
    """
    return np.clip(x, 0.0, alpha).astype(np.asarray(x).dtype, copy=False)


def pact_quantize(x, alpha, bits: int) -> np.ndarray:
    """PACT's quantized activation ``y_q = round(y (2^k - 1) / alpha) * alpha / (2^k - 1)``.

    ``y = pact_forward(x, alpha)``: ``2^k`` levels on ``[0, alpha]``, rounded half away
    from zero.

    Parameters
    ----------
    x : ndarray, float
    alpha : float, > 0
    bits : int
        ``k``.

    Returns
    -------
    ndarray of ``x``'s shape and dtype

    References
    ----------
    Choi et al. 2018, arXiv 1805.06085, eq. 2.
    """
    n = 2**bits - 1
    return lsq_quantize(pact_forward(x, alpha), np.asarray(alpha / n, dtype=np.asarray(x).dtype), 0, n)


def pact_backward(grad_out, x, alpha) -> tuple[np.ndarray, float]:
    """``(dL/dx, dL/dalpha)`` through PACT, with the straight-through estimator.

    Formula::

        dL/dx     = grad_out  where 0 <= x < alpha, else 0
        dL/dalpha = sum of grad_out where x >= alpha

    Parameters
    ----------
    grad_out : ndarray, float
        ``dL/dy_q``, shape of ``x``.
    x : ndarray, float
    alpha : float

    Returns
    -------
    (ndarray, float)

    References
    ----------
    Choi et al. 2018, arXiv 1805.06085, eq. 3.
    """
    clipped = x >= alpha
    dx = np.where((x >= 0) & ~clipped, grad_out, 0.0).astype(grad_out.dtype)
    return dx, float(np.sum(grad_out, where=clipped))


def _signed_levels(bits: int) -> int:
    """``Q_N = Q_P = 2^(b-1) - 1``: symmetric narrow-range weights (TensorFlow Lite)."""
    return 2 ** (bits - 1) - 1


class LSQLinear(Linear):
    """Linear layer with LSQ-quantized weights and a learned step per output column (or
    one per tensor).

    Forward: ``W_hat = lsq_quantize(W, s, Q, Q)``, ``y = x W_hat + b`` with ``Q = 2^(b-1)
    - 1``. Backward, with ``G = x^T g`` (``g = dL/dy``) and ``(m, d) = lsq_grad(W, s, Q,
    Q)``::

        dW = G * m       db = sum_batch g       ds = g_s * sum_rows(G * d)     dx = g W_hat^T

    ``g_s = lsq_grad_scale(in_features, Q)`` per column (``in * out`` values per tensor).
    ``s`` (shape ``(out,)`` or ``(1,)``) is a parameter like ``W``; ``ds`` its gradient.
    """

    def __init__(self, linear: Linear, bits: int, per_channel: bool = True, init: str = "lsq"):
        if not isinstance(linear, Linear):
            raise TypeError(f"linear: expected a Linear layer, got {describe(linear)}")
        self.bits = check_int_in_range(bits, "bits", 2, 8)
        if not isinstance(per_channel, (bool, np.bool_)):
            raise TypeError(f"per_channel: expected a bool, got {describe(per_channel)}")
        self.per_channel = bool(per_channel)
        self.W, self.b = linear.W.copy(), linear.b.copy()
        self.dW = self.db = self.ds = None
        self.W_hat: np.ndarray | None = None  # the weights of the last forward
        self._x = None
        q = _signed_levels(self.bits)
        if init == "lsq":
            s = lsq_init_step(self.W, q, axis=0 if per_channel else None)
        elif init in ("minmax", "mse"):
            scheme = "tflite_int8_weights" if per_channel else "tflite_int8_weights_per_tensor"
            s = weight_qparams(self.W, scheme, self.bits, init).scale
        else:
            raise ValueError(f"init: expected 'lsq', 'minmax' or 'mse', got {init!r}")
        self.s = np.atleast_1d(np.asarray(s, dtype=self.W.dtype)).copy()

    @property
    def levels(self) -> int:
        """``Q_N = Q_P``."""
        return _signed_levels(self.bits)

    def step(self) -> np.ndarray:
        """The step in use: ``max(s, 1e-8)`` (an optimizer may push ``s`` below 0)."""
        return np.maximum(self.s, self.W.dtype.type(_MIN_STEP))

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"x: expected an array of shape (batch, {self.in_features}), got {describe(x)}")
        self._x = x.astype(self.W.dtype, copy=False)
        self.W_hat = lsq_quantize(self.W, self.step(), self.levels, self.levels)
        return self._x @ self.W_hat + self.b

    def backward(self, grad_out: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        g = self._check_grad(grad_out, None if self._x is None else (self._x.shape[0], self.out_features))
        G = self._x.T @ g
        mask, d_s = lsq_grad(self.W, self.step(), self.levels, self.levels)
        n = self.in_features if self.per_channel else self.W.size
        ds = (G * d_s).sum(axis=0) if self.per_channel else np.atleast_1d((G * d_s).sum())
        self.dW, self.db = G * mask, g.sum(axis=0)
        self.ds = (lsq_grad_scale(n, self.levels) * ds).astype(self.W.dtype)
        return g @ self.W_hat.T if input_grad else None

    def integer_weights(self) -> tuple[np.ndarray, QParams]:
        """``(w_q int8, qparams)``: the integers the forward multiplies by, on the grid
        ``step() * [-Q, Q]`` (what :meth:`LSQMLP.convert` stores)."""
        s = self.step()
        w_q = round_half_away(np.clip(self.W / s, -self.levels, self.levels)).astype(np.int8)
        qp = QParams(scale=s if self.per_channel else s.reshape(()), zero_point=np.zeros(
            s.shape if self.per_channel else (), np.int32), qmin=-self.levels, qmax=self.levels,
            bits=self.bits, signed=True, axis=-1 if self.per_channel else None,
            scheme="symmetric", narrow_range=True)
        return w_q, qp

    def __repr__(self) -> str:
        kind = "per-channel" if self.per_channel else "per-tensor"
        return f"LSQLinear({self.in_features}, {self.out_features}, bits={self.bits}, {kind})"


def _positive_parameter(value, name: str, dtype) -> np.ndarray:
    """``[value]`` as a 1-element array of ``dtype`` after checking it is > 0 and stays a
    finite nonzero number in that dtype."""
    v = check_positive(value, name)
    dt = check_float_dtype(dtype)
    if not 0 < abs(v) <= float(np.finfo(dt).max) or v < float(np.finfo(dt).tiny):
        raise ValueError(f"{name}: expected a number within {dt}'s normal range "
                         f"[{float(np.finfo(dt).tiny):.3g}, {float(np.finfo(dt).max):.3g}], got {v}")
    return np.array([v], dtype=dt)


class LSQActivation(Layer):
    """ReLU followed by LSQ quantization of its output on ``[0, s (2^b - 1)]`` with a
    learned step ``s`` (shape ``(1,)``): ``y = lsq_quantize(relu(x), s, 0, 2^b - 1)``.

    Backward: ``dx = g * [0 < x] * m``, ``ds = g_s * sum(g * d)`` with ``(m, d) =
    lsq_grad(relu(x), s, 0, Q_P)`` and ``g_s = lsq_grad_scale(features, Q_P)``.
    """

    def __init__(self, bits: int, step: float, dtype=np.float32):
        self.bits = check_int_in_range(bits, "bits", 2, 8)
        self.s = _positive_parameter(step, "step", dtype)
        self.ds = None
        self._x = None
        self._pos = None

    @property
    def levels(self) -> int:
        """``Q_P = 2**bits - 1``: the largest level of the unsigned activation grid."""
        return 2**self.bits - 1

    def step(self) -> np.ndarray:
        """The step in use: ``max(s, 1e-8)`` (an optimizer may push ``s`` below 0)."""
        return np.maximum(self.s, self.s.dtype.type(_MIN_STEP))

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = np.maximum(x, 0)
        self._pos = x > 0
        return lsq_quantize(self._x, self.step(), 0, self.levels)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        g = self._check_grad(grad_out, None if self._x is None else self._x.shape)
        mask, d_s = lsq_grad(self._x, self.step(), 0, self.levels)
        self.ds = np.array([lsq_grad_scale(self._x.shape[1], self.levels) * np.sum(g * d_s)],
                           dtype=self.s.dtype)
        return g * mask * self._pos

    def qparams(self) -> QParams:
        """The int8 output grid at 8 bits: scale ``s``, zero point -128 (``[0, 255 s]``)."""
        return _relu_grid(float(self.step()[0]), self.bits)

    def __repr__(self) -> str:
        return f"LSQActivation(bits={self.bits}, step={float(self.s[0]):.4g})"


class PACTActivation(Layer):
    """PACT: ``y = pact_quantize(x, alpha, bits)`` in place of a ReLU, ``alpha`` (shape
    ``(1,)``) learned. Backward :func:`pact_backward`; the L2 term is added by
    :class:`LSQMLP` (``alpha_decay``)."""

    def __init__(self, bits: int, alpha: float, dtype=np.float32):
        self.bits = check_int_in_range(bits, "bits", 2, 8)
        self.alpha = _positive_parameter(alpha, "alpha", dtype)
        self.dalpha = None
        self._x = None

    def _alpha(self) -> np.ndarray:
        return np.maximum(self.alpha, self.alpha.dtype.type(_MIN_STEP))

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x
        return pact_quantize(x, self._alpha()[0], self.bits)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        g = self._check_grad(grad_out, None if self._x is None else self._x.shape)
        dx, da = pact_backward(g, self._x, self._alpha()[0])
        self.dalpha = np.array([da], dtype=self.alpha.dtype)
        return dx

    def qparams(self) -> QParams:
        """The int8 output grid at 8 bits: scale ``alpha / 255``, zero point -128."""
        return _relu_grid(float(self._alpha()[0]) / (2**self.bits - 1), self.bits)

    def __repr__(self) -> str:
        return f"PACTActivation(bits={self.bits}, alpha={float(self.alpha[0]):.4g})"


def _relu_grid(scale: float, bits: int) -> QParams:
    if bits != 8:
        raise ValueError(f"act_bits: the integer model's activations are int8, so only an 8-bit "
                         f"activation grid converts; expected 8, got {bits}")
    return QParams(scale=np.float32(scale), zero_point=np.int32(-128), qmin=-128, qmax=127,
                   bits=8, signed=True)


class LSQMLP(MLP):
    """An :class:`~nnref.mlp.MLP` trained with learned quantizers; build it with
    :func:`prepare_lsq`.

    Layers: :class:`LSQLinear` for every Linear layer and, in place of each hidden ReLU,
    :class:`LSQActivation` (``act_quantizer="lsq"``), :class:`PACTActivation`
    (``"pact"``) or the float activation (None). ``params``/``grads`` hold ``W1, b1, sW1,
    ...`` (the weight steps) and ``sA1, ...`` (activation steps) or ``alpha1, ...``, so
    :func:`nnref.train.fit`, the optimizers and the clippers work unchanged. With PACT,
    :meth:`loss_and_grads` adds ``alpha_decay / 2 * sum alpha^2`` to the loss and
    ``alpha_decay * alpha`` to each ``alpha``'s gradient (PACT's L2 regulariser).
    """

    def __init__(self, model: MLP, weight_bits: int, act_bits: int, act_quantizer, per_channel,
                 calibration_x, weight_init: str, alpha_decay: float):
        acts = layer_activations(model)
        if act_quantizer not in ("lsq", "pact", None):
            raise ValueError(f"act_quantizer: expected 'lsq', 'pact' or None, got {act_quantizer!r}")
        if act_quantizer is not None and any(kind == "leaky_relu" for kind, _ in acts):
            raise ValueError("model: learned activation quantizers replace ReLU; got leaky ReLU layers")
        self.layer_sizes, self.activation, self.init = list(model.layer_sizes), model.activation, model.init
        self.dtype = model.dtype
        self.weight_bits, self.act_bits, self.act_quantizer = weight_bits, act_bits, act_quantizer
        self.alpha_decay = check_nonnegative(alpha_decay, "alpha_decay")
        x = model.check_input(calibration_x, "calibration_x")
        self.layers = []
        h = x
        for layer in model.layers:
            if isinstance(layer, Linear):
                self.layers.append(LSQLinear(layer, weight_bits, per_channel, weight_init))
                h = layer.forward(h)
            elif act_quantizer is None:
                self.layers.append(type(layer).__new__(type(layer)))
                self.layers[-1].__dict__.update({k: v for k, v in layer.__dict__.items() if not k.startswith("_")})
                h = layer.forward(h)
            else:
                h = np.maximum(h, 0)
                q = 2**act_bits - 1
                if not h.max() > 0:
                    n_linear = sum(isinstance(layer, LSQLinear) for layer in self.layers)
                    raise ValueError(f"calibration_x: every activation after Linear layer {n_linear} is 0 "
                                     f"on these inputs, so its initial step (or clip) would be 0")
                self.layers.append(LSQActivation(act_bits, float(lsq_init_step(h, q)), model.dtype)
                                   if act_quantizer == "lsq" else PACTActivation(act_bits, float(h.max()), model.dtype))

    def _quantizers(self) -> list:
        return [layer for layer in self.layers if isinstance(layer, (LSQActivation, PACTActivation))]

    @property
    def params(self) -> dict[str, np.ndarray]:
        out = {}
        for i, lin in enumerate(self.linears, start=1):
            out[f"W{i}"], out[f"b{i}"], out[f"sW{i}"] = lin.W, lin.b, lin.s
        for i, q in enumerate(self._quantizers(), start=1):
            out[f"sA{i}" if isinstance(q, LSQActivation) else f"alpha{i}"] = q.s if isinstance(q, LSQActivation) else q.alpha
        return out

    @property
    def grads(self) -> dict[str, np.ndarray]:
        out = {}
        for i, lin in enumerate(self.linears, start=1):
            if lin.dW is None:
                raise RuntimeError("grads: no gradients yet; call backward (or loss_and_grads) first")
            out[f"W{i}"], out[f"b{i}"], out[f"sW{i}"] = lin.dW, lin.db, lin.ds
        for i, q in enumerate(self._quantizers(), start=1):
            if isinstance(q, LSQActivation):
                out[f"sA{i}"] = q.ds
            else:
                out[f"alpha{i}"] = q.dalpha + self.alpha_decay * q.alpha
        return out

    def loss_and_grads(self, x, labels, loss: str = "cross_entropy"):
        value, grads = super().loss_and_grads(x, labels, loss)
        penalty = sum(float(q.alpha[0]) ** 2 for q in self._quantizers() if isinstance(q, PACTActivation))
        return value + 0.5 * self.alpha_decay * penalty, grads

    def to_float(self) -> MLP:
        """A plain float MLP with the latent weights and biases (copies)."""
        model = MLP(self.layer_sizes, activation=self.activation, init=self.init, dtype=self.dtype)
        for lin, own in zip(model.linears, self.linears):
            lin.W, lin.b = own.W.copy(), own.b.copy()
        return model

    def save(self, path) -> None:
        """Write the latent float weights and biases as a plain MLP file (``MLP.load`` reads
        it); the steps and clipping levels are not saved (convert to keep them)."""
        self.to_float().save(path)

    def per_example_grads(self, x, labels, loss: str = "cross_entropy"):
        """Not available: per-example gradients of the steps are not implemented."""
        raise NotImplementedError("per_example_grads: not implemented for LSQMLP (the steps' "
                                  "per-example gradients); use loss_and_grads")

    def integer_weights(self) -> list[tuple[np.ndarray, QParams]]:
        """The weight set the forward uses (one ``(w_q, qparams)`` per layer)."""
        return [lin.integer_weights() for lin in self.linears]

    def convert(self, calibration_x, requantization: str = "fixed_point", rounding: str = "single") -> QuantizedMLP:
        """The integer-only model: the LSQ integer weights on their learned steps, hidden
        activations on the learned grids (8-bit activation quantizers only; with
        ``act_quantizer=None`` they are calibrated), input and logits grids calibrated
        (min-max) on ``calibration_x``."""
        weights, model = self.integer_weights(), self.to_float()
        grids = None
        if self._quantizers():
            cal = quantize_model(dequantized_model(model, weights), calibration_x)
            grids = ([cal.input_qparams] + [q.qparams() for q in self._quantizers()]
                     + [cal.layers[-1].out_qparams])
        return to_quantized_mlp(model, weights, calibration_x, activation_qparams=grids,
                                requantization=requantization, rounding=rounding)

    def __repr__(self) -> str:
        return (f"LSQMLP({self.layer_sizes}, weight_bits={self.weight_bits}, act_bits={self.act_bits}, "
                f"act_quantizer={self.act_quantizer!r})")


def prepare_lsq(model: MLP, calibration_x, weight_bits: int = 4, act_bits: int = 8,
                act_quantizer: str | None = "lsq", per_channel: bool = True,
                weight_init: str = "lsq", alpha_decay: float = 1e-4) -> LSQMLP:
    """An :class:`LSQMLP` for fine-tuning ``model`` (a trained float ReLU MLP; not changed).

    Parameters
    ----------
    model : MLP
    calibration_x : array (N, in_features)
        Sets the initial activation steps (LSQ's ``2 mean|x| / sqrt(Q_P)``) or clipping
        levels (PACT: the largest ReLU output, so PACT starts as min-max).
    weight_bits : int
        2..8, symmetric narrow range (ternary at 2 bits).
    act_bits : int
        2..8 for the hidden ReLU outputs (only 8 converts to the integer model).
    act_quantizer : {"lsq", "pact", None}
    per_channel : bool
        One weight step per output column, or one per layer.
    weight_init : {"lsq", "mse", "minmax"}
        The initial weight steps: LSQ's ``2 mean|w| / sqrt(Q_P)``, or a post-training grid
        (:func:`~nnref.quant.layerwise.weight_qparams`).
    alpha_decay : float
        PACT's L2 coefficient ``lambda``.
    """
    if not isinstance(model, MLP):
        raise TypeError(f"model: expected an nnref.mlp.MLP, got {describe(model)}")
    weight_bits = check_int_in_range(weight_bits, "weight_bits", 2, 8)
    act_bits = check_int_in_range(act_bits, "act_bits", 2, 8)
    return LSQMLP(model, weight_bits, act_bits, act_quantizer, per_channel, calibration_x,
                  weight_init, alpha_decay)
