"""Quantization-aware training (QAT): train through the rounding the integer model will do.

Jacob et al. 2018 ("Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference", arXiv 1712.05877, section 3) fine-tune a float model
whose forward pass *simulates* quantization: weights and activations go through
``fake_quantize`` (quantize then dequantize, so they take exactly the values the integer
model will see), while the backward pass treats rounding as the identity inside the
representable range and as 0 outside it (the straight-through estimator, STE; Bengio et
al. 2013, arXiv 1308.3432). PyTorch's ``FakeQuantize`` modules implement the same scheme
(observer, then fake quantization, then a straight-through backward zero where clamped);
nnref follows them, except for the rounding and observation details stated below.

The simulated network, for ``MLP([n0, n1, ..., nL])``::

    h_0 = FQ_in(x)                                  activation fake-quant (moving-average range)
    z_l = h_{l-1} @ FQ_w(W_l) + b_l                 weights fake-quantized per output channel
    h_l = FQ_l(relu(z_l))                 (l < L)   ReLU: the activation, then its fake-quant
    h_l = FQ_l(act(FQ_pre_l(z_l)))        (l < L)   tanh, sigmoid, leaky ReLU (lookup tables)
    logits = FQ_L(z_L)

Each ``FQ`` is ``fake_quantize`` with its own ``QParams``:

- weights (``QATLinear``): scale(s) chosen from the *current* weights' min and max at
  every forward (TensorFlow Model Optimization's ``LastValueQuantizer``; PyTorch's default
  per-channel weight fake-quant instead tracks them with a
  ``MovingAveragePerChannelMinMaxObserver``), symmetric narrow range by default
  (TensorFlow Lite's weight scheme at ``weight_bits``);
- activations (``ActivationFakeQuantize``): int8 asymmetric per tensor (TensorFlow Lite's
  activation scheme at ``act_bits``), range from a ``MovingAverageMinMaxObserver``;
- tanh and sigmoid outputs (``FixedQParamsFakeQuantize``, PyTorch's
  ``FixedQParamsFakeQuantize``): fixed parameters, no observer. At 8 bits they are the
  converter's :data:`~nnref.quant.convert.FIXED_OUTPUT_QPARAMS` (TensorFlow Lite's spec):
  tanh scale 1/128, zero point 0 (the grid ``[-1, 127/128]``); sigmoid scale 1/256, zero
  point -128 (``[0, 255/256]``); at ``b`` bits the same intervals with ``2**b`` levels.

This is the graph :func:`nnref.quant.convert.quantize_model` builds: a ReLU layer
requantizes straight onto ``FQ_l``'s grid (the ReLU is its clamp); a tanh, sigmoid or
leaky-ReLU layer requantizes onto the pre-activation grid ``FQ_pre_l`` and a 256-entry
table maps that onto the output grid, and the table entry for ``q`` is exactly
``FQ_l(act(dequantize(q)))``. :meth:`QATMLP.convert` builds the integer model with the
grids learned here.

Backward (STE), with ``g = dL/dz`` and ``m`` the in-range mask of the weights::

    dW = (h^T @ g) * m        db = sum_batch g        dh = g @ FQ_w(W)^T

and through an activation fake-quant ``dL/dx = dL/dout * [x in range]``. The scales are
not trained (no gradient flows to them; learned-scale methods such as LSQ, Esser et al.
2020, would add one).

The bias stays float during QAT. At conversion it becomes an int32 with scale
``s_in * s_w[c]`` (TensorFlow Lite's bias rule), so its rounding error is at most
``M / 2`` output steps, ``M = s_in * s_w[c] / s_out`` being the layer's requantization
multiplier (well below 1 in practice): fine-grained enough not to simulate (PyTorch's
and TensorFlow's QAT leave the bias float too).

Rounding: ``rounding="half_away"`` (default) rounds ties away from zero everywhere, as
TensorFlow Lite's ``std::round`` and as nnref's integer model does for its weights, its
input and its tables (:mod:`nnref.quant.convert`), so the converted model stores exactly
the weights this simulation used. ``"half_even"`` is PyTorch's fake-quant rounding;
weights exactly at a tie then differ by one step from the converted ones.

What the simulation does *not* reproduce exactly (the "rounding-mode details"): the
integer model rounds the bias to its int32 grid, represents each requantization
multiplier ``s_in * s_w / s_out`` as a 31-bit fixed-point number and rounds its ties
upward (fixed point), while the simulation adds a float bias and rounds the float32
quotient ``z / s_out`` half away; the simulation's sums carry float32 rounding, and its
sigmoid is the overflow-free form where the table evaluates
``1 / (1 + exp(-x))`` (they can differ in the last bit). Each of these can move an output
by one integer step, rarely.
"""

from __future__ import annotations

import numpy as np

from nnref._checks import check_int_in_range, describe
from nnref.layers import Layer, LeakyReLU, Linear, Sigmoid, Tanh
from nnref.mlp import MLP
from nnref.quant.convert import quantize_model
from nnref.quant.observers import MovingAverageMinMaxObserver
from nnref.quant.qat_layers import (
    FIXED_OUTPUT_ACTIVATIONS,
    MAX_QAT_BITS,
    ActivationFakeQuantize,
    FixedQParamsFakeQuantize,
    QATLinear,
    check_qat_weight_scheme,
    fixed_output_qparams,
)
from nnref.quant.ops import check_rounding
from nnref.quant.qmodel import QuantizedMLP
from nnref.quant.qparams import QParams

__all__ = [
    "QATLinear",
    "ActivationFakeQuantize",
    "FixedQParamsFakeQuantize",
    "fixed_output_qparams",
    "QATMLP",
    "prepare_qat",
    "MAX_QAT_BITS",
]

def _activation_kind(layer: Layer) -> str:
    """The converter's name for an activation layer: tanh, sigmoid, leaky_relu or other."""
    return {Tanh: "tanh", Sigmoid: "sigmoid", LeakyReLU: "leaky_relu"}.get(type(layer), "other")


class QATMLP(MLP):
    """An :class:`~nnref.mlp.MLP` whose forward simulates the quantized model.

    Build it with :func:`prepare_qat`. Layers, for ``MLP([n0, ..., nL])`` (the
    fake-quant layers are absent when ``act_bits`` is None)::

        ActivationFakeQuantize, QATLinear, ReLU, ActivationFakeQuantize, ..., QATLinear,
        ActivationFakeQuantize

    and, in place of ``ReLU, ActivationFakeQuantize``, for a table activation (see the
    module docstring) ``ActivationFakeQuantize`` (the pre-activation), ``LeakyReLU``,
    ``ActivationFakeQuantize``, or ``..., Tanh`` / ``Sigmoid``, ``FixedQParamsFakeQuantize``.

    ``params``/``grads`` are keyed ``W1, b1, ...`` and hold the latent float parameters,
    so :func:`nnref.train.fit`, the optimizers and every clipper work unchanged.

    Modes. In training mode (the default; :meth:`train`) each *training step*, i.e. each
    :meth:`loss_and_grads` call (what ``fit`` calls once per batch), first moves the
    activation ranges with that batch, then fake-quantizes with the new ranges (PyTorch's
    order). Evaluation calls (``forward``, ``loss``, ``predict``, ``accuracy``, which
    ``fit`` also runs on the whole training and validation sets at the end of each epoch)
    use the current ranges and never move them, so evaluation data never leaks into the
    ranges. (PyTorch moves them in every training-mode forward.) In eval mode
    (:meth:`eval`) the observers are frozen entirely. ``forward(x, observe=True)`` moves
    them explicitly, for hand-written training loops.

    ``calibrate(x)`` resets the ranges and sets them from ``x`` (recommended before
    fine-tuning: the first training batch otherwise sets them). ``to_float()`` returns
    the latent float model; :meth:`convert` the integer model with the weights and
    activation grids simulated here. ``save`` writes the latent float weights as a plain MLP file (``MLP.load`` reads it).
    """

    def __init__(self, model: MLP, weight_bits: int = 8, act_bits: int | None = 8,
                 weight_scheme="tflite_int8_weights", averaging_constant: float = 0.01,
                 rounding: str = "half_away"):
        if not isinstance(model, MLP):
            raise TypeError(f"model: expected an MLP, got {describe(model)}")
        if isinstance(model, QATMLP):
            raise TypeError("model: expected a float MLP, got a QATMLP (use its to_float())")
        if model.dtype not in (np.float32, np.float64):
            raise TypeError(
                f"model: expected a float32 or float64 MLP (float16 cannot hold the fake-"
                f"quantized grid exactly), got dtype {model.dtype}"
            )
        self.weight_bits = check_int_in_range(weight_bits, "weight_bits", 2, MAX_QAT_BITS)
        self.act_bits = None if act_bits is None else check_int_in_range(
            act_bits, "act_bits", 2, MAX_QAT_BITS)
        self.weight_scheme = check_qat_weight_scheme(weight_scheme, self.weight_bits)
        self.rounding = check_rounding(rounding)
        # Checked here even when act_bits is None (no observer would check it).
        self.averaging_constant = MovingAverageMinMaxObserver(averaging_constant).averaging_constant
        self.layer_sizes = list(model.layer_sizes)
        self.activation = model.activation
        self.init = model.init
        self.dtype = model.dtype
        self.training = True
        self._step = False  # True only inside loss_and_grads: the forward of a training step

        # The quantizers by role (the same objects as in self.layers): _output_fqs holds the
        # input's and every layer's output quantizer, _pre_fqs per Linear layer the
        # pre-activation quantizer of a table activation, else None.
        self._output_fqs: list[ActivationFakeQuantize] = []
        self._pre_fqs: list[ActivationFakeQuantize | None] = []

        def act_fq(role: list, activation: str | None = None) -> list[Layer]:
            """The fake-quant layer of one activation (none without ``act_bits``).

            Parameters
            ----------
            role : list
                Where to record the quantizer.
            activation : str, optional

            Returns
            -------
            list of Layer
            """
            if self.act_bits is None:
                return []
            if activation in FIXED_OUTPUT_ACTIVATIONS:
                fq = FixedQParamsFakeQuantize(activation, self.act_bits, self.rounding)
            else:
                fq = ActivationFakeQuantize(self.act_bits, averaging_constant, self.rounding)
            role.append(fq)
            return [fq]

        self.layers = act_fq(self._output_fqs)
        n_linear = len(model.linears)
        for layer in model.layers:
            if isinstance(layer, Linear):
                self.layers.append(QATLinear.from_linear(layer, self.weight_scheme, self.rounding))
                self._pre_fqs.append(None)
                if len(self._pre_fqs) == n_linear:  # logits
                    self.layers += act_fq(self._output_fqs)
            else:  # the activation after a hidden Linear
                kind = _activation_kind(layer)
                if kind != "other" and self.act_bits is not None:
                    # The converter requantizes z onto its own grid before the table.
                    self._pre_fqs.pop()
                    self.layers += act_fq(self._pre_fqs)
                self.layers.append(_copy_layer(layer))
                self.layers += act_fq(self._output_fqs, kind)

    # ---------------------------------------------------------------- structure
    @property
    def activation_quantizers(self) -> list[ActivationFakeQuantize]:
        """The output fake-quant layers in order: input, each hidden output, logits
        (without the pre-activation quantizers; empty when ``act_bits`` is None)."""
        return list(self._output_fqs)

    @property
    def preactivation_quantizers(self) -> list[ActivationFakeQuantize | None]:
        """Per Linear layer, the quantizer of its pre-activation ``z_l`` when a table
        activation (tanh, sigmoid, leaky ReLU) follows it, else None."""
        return list(self._pre_fqs)

    @property
    def weight_qparams(self) -> list[QParams | None]:
        """Per Linear layer, the weight ``QParams`` the current weights quantize with."""
        return [lin.quantize_weights()[2] for lin in self.linears]

    @property
    def activation_qparams(self) -> list[QParams | None]:
        """Per output quantizer (input, hidden outputs, logits), its current QParams: the
        layout of ``quantize_model``'s ``activation_qparams``."""
        return [fq.qparams for fq in self._output_fqs]

    @property
    def preactivation_qparams(self) -> list[QParams | None]:
        """Per Linear layer, its pre-activation quantizer's current QParams (None without
        one, or before any range)."""
        return [None if fq is None else fq.qparams for fq in self._pre_fqs]

    # ---------------------------------------------------------------- modes
    def train(self) -> "QATMLP":
        """Training mode: training steps move the activation ranges. Returns self."""
        self.training = True
        return self

    def eval(self) -> "QATMLP":
        """Eval mode: activation ranges frozen. Returns self."""
        self.training = False
        return self

    def calibrate(self, x, batch_size: int | None = None) -> "QATMLP":
        """Reset the activation ranges and set them from ``x`` (any mode). Returns self.

        With ``batch_size=None`` the whole of ``x`` is one batch, so each range is exactly
        the min-max range of that activation over ``x``; with batches the moving average
        runs over them in order. Weights are not touched.

        Parameters
        ----------
        x : array_like of float, shape (N, in_features)
        batch_size : int, optional

        Returns
        -------
        QATMLP
            ``self``.
        """
        x = self._check_x(x)
        n = x.shape[0]
        bs = n if batch_size is None else check_int_in_range(batch_size, "batch_size", 1, 10**9)
        for layer in self.layers:
            if isinstance(layer, ActivationFakeQuantize):
                layer.reset()
        for start in range(0, n, bs):
            self._forward(x[start:start + bs], observe=True)
        return self

    # ---------------------------------------------------------------- forward / backward
    def forward(self, x: np.ndarray, observe: bool | None = None) -> np.ndarray:
        """Simulated-quantized logits ``(B, n_outputs)``.

        ``observe``: move the activation ranges with this batch first. Default: only
        inside a training step (:meth:`loss_and_grads`) in training mode. ``True`` in eval
        mode is an error (the observers are frozen).

        Parameters
        ----------
        x : ndarray of float, shape (B, in_features)
        observe : bool, optional

        Returns
        -------
        ndarray, shape (B, n_outputs)
        """
        if observe is None:
            observe = self._step and self.training
        elif observe and not self.training:
            raise ValueError("observe: the activation observers are frozen in eval mode; "
                             "call train() first")
        return self._forward(self._check_x(x), bool(observe))

    def _forward(self, h: np.ndarray, observe: bool) -> np.ndarray:
        for layer in self.layers:
            if isinstance(layer, ActivationFakeQuantize):
                h = layer.forward(h, observe=observe)
            else:
                h = layer.forward(h)
        return h

    def forward_trace(self, x: np.ndarray) -> list[np.ndarray]:
        """The fake-quantized tensors the simulation produces, without moving any range:
        ``[h_0, h_1, ..., logits]`` (``h_0`` the quantized input, ``h_l`` layer l's output
        after its activation and fake quantization; pre-activations are not listed).
        Needs ``act_bits``.

        Parameters
        ----------
        x : ndarray of float, shape (B, in_features)

        Returns
        -------
        list of ndarray
        """
        if self.act_bits is None:
            raise ValueError("forward_trace: needs activation quantizers (act_bits is None)")
        outputs = {id(fq) for fq in self._output_fqs}
        h = self._check_x(x)
        out = []
        for layer in self.layers:
            h = layer.forward(h)
            if id(layer) in outputs:
                out.append(h)
        return out

    def loss_and_grads(self, x: np.ndarray, labels: np.ndarray, loss: str = "cross_entropy"):
        """One training step: ``(loss, grads)``. In training mode this batch first moves
        the activation ranges (see the class docstring).

        Parameters
        ----------
        x : ndarray of float, shape (B, in_features)
        labels : ndarray of int, shape (B,)
        loss : str

        Returns
        -------
        tuple
            ``(loss, grads)``.
        """
        self._step = True
        try:
            value, dlogits = self.loss(x, labels, loss)
        finally:
            self._step = False
        return value, self.backward(dlogits)

    def backward(self, dlogits: np.ndarray) -> dict[str, np.ndarray]:
        """STE backpropagation through every layer down to the first Linear (the input
        quantizer has no parameters and nothing below it needs a gradient).

        Parameters
        ----------
        dlogits : ndarray, shape (B, n_outputs)

        Returns
        -------
        dict of str to ndarray
        """
        first = next(i for i, layer in enumerate(self.layers) if isinstance(layer, Linear))
        g = dlogits
        for i in range(len(self.layers) - 1, first - 1, -1):
            layer = self.layers[i]
            if isinstance(layer, Linear):
                g = layer.backward(g, input_grad=i > first)
            else:
                g = layer.backward(g)
        return self.grads

    # ---------------------------------------------------------------- conversion
    def to_float(self, fake_quantized: bool = False) -> MLP:
        """A plain float :class:`MLP` with this model's latent weights and biases (copies).

        With ``fake_quantized=True`` the weights are instead ``FQ_w(W)``, the values the
        simulated forward multiplies by (activations are not quantized in the result).

        Parameters
        ----------
        fake_quantized : bool

        Returns
        -------
        MLP
        """
        model = MLP(self.layer_sizes, activation=self.activation, init=self.init, dtype=self.dtype)
        layers = []
        for layer in self.layers:
            if isinstance(layer, QATLinear):
                lin = Linear(layer.in_features, layer.out_features, dtype=self.dtype)
                lin.W = (layer.quantize_weights()[0] if fake_quantized else layer.W).copy()
                lin.b = layer.b.copy()
                layers.append(lin)
            elif not isinstance(layer, ActivationFakeQuantize):
                layers.append(_copy_layer(layer))  # keeps settings such as LeakyReLU's alpha
        model.layers = layers
        return model

    def convert(self, calibration_x=None, requantization: str = "fixed_point",
                rounding: str = "single") -> QuantizedMLP:
        """The integer-only model of this simulation: :func:`~nnref.quant.convert.quantize_model`
        of the latent float model with the grids QAT learned (PyTorch's ``convert`` and
        TensorFlow Lite's converter also keep the QAT ranges rather than recalibrating).

        With activation quantizers (``act_bits=8``)::

            quantize_model(self.to_float(), ..., weight_scheme=self.weight_scheme,
                           bits=self.weight_bits, activation_qparams=self.activation_qparams)

        plus ``preactivation_qparams=self.preactivation_qparams``: every table layer
        (tanh, sigmoid, leaky ReLU) requantizes onto its learned pre-activation grid. Every
        grid of the result is then the simulation's: weights (the same
        :func:`~nnref.quant.convert.quantize_weights`; with the default
        ``rounding="half_away"``: with ``"half_even"`` the converter still rounds half
        away, so weights exactly at a tie land one step apart), input, pre-activations,
        outputs (tanh and sigmoid: the fixed ones, equal on both sides).
        ``calibration_x`` is not used.

        Weight-only QAT (``act_bits=None``) learned no activation grids: they are
        calibrated (min-max) on ``calibration_x``, which is then required.

        Parameters
        ----------
        calibration_x
            (N, in_features) inputs, for weight-only QAT only.
        requantization, rounding
            as :func:`~nnref.quant.convert.quantize_model`.

        Raises
        ------
        RuntimeError
            activation quantizers without a range yet (call :meth:`calibrate`
            or train first).
        ValueError
            ``act_bits`` other than 8 or None (the integer model's activations
            are int8); ``calibration_x`` None for weight-only QAT; what
            ``quantize_model`` raises.
        """
        model = self.to_float()
        common = {"weight_scheme": self.weight_scheme, "bits": self.weight_bits,
                  "requantization": requantization, "rounding": rounding}
        if self.act_bits is None:
            if calibration_x is None:
                raise ValueError("calibration_x: weight-only QAT (act_bits=None) learned no "
                                 "activation ranges; expected calibration inputs, got None")
            return quantize_model(model, calibration_x, **common)
        if self.act_bits != 8:
            raise ValueError(f"act_bits: the integer model's activations are int8, so only an "
                             f"8-bit simulation converts with its own ranges; expected act_bits=8 "
                             f"or None, got {self.act_bits}")
        grids, pre_grids = self.activation_qparams, self.preactivation_qparams
        if any(qp is None for qp in grids) or any(
                fq is not None and fq.qparams is None for fq in self._pre_fqs):
            raise RuntimeError("convert: no activation ranges yet; call calibrate(x) on the "
                               "QATMLP or train it first")
        return quantize_model(model, calibration_x, activation_qparams=grids,
                              preactivation_qparams=pre_grids, **common)

    @classmethod
    def load(cls, path) -> "QATMLP":
        """Not available: refused with a ``TypeError`` naming ``MLP.load``.

        The QAT state (observers, ranges) is not saved; :meth:`save` writes the latent
        float model, which ``MLP.load`` reads and :func:`prepare_qat` wraps again. (The
        inherited ``MLP.load`` would build a ``QATMLP`` from layer sizes, which its
        constructor cannot take.)

        Parameters
        ----------
        path : str or os.PathLike

        Raises
        ------
        TypeError
            Always.
        """
        raise TypeError("QATMLP.load: QAT state is not saved; load the float model with "
                        "MLP.load(path) and call prepare_qat on it")

    def __repr__(self) -> str:
        return (f"QATMLP({self.layer_sizes}, activation={self.activation!r}, "
                f"weight_bits={self.weight_bits}, act_bits={self.act_bits}, "
                f"mode={'train' if self.training else 'eval'})")


def _copy_layer(layer: Layer) -> Layer:
    """A fresh activation layer of the same type and settings, with no cache."""
    new = type(layer).__new__(type(layer))
    new.__dict__.update({k: v for k, v in layer.__dict__.items() if not k.startswith("_")})
    for k in layer.__dict__:
        if k.startswith("_"):
            setattr(new, k, None)
    return new


def prepare_qat(model: MLP, weight_bits: int = 8, act_bits: int | None = 8,
                weight_scheme="tflite_int8_weights", averaging_constant: float = 0.01,
                rounding: str = "half_away") -> QATMLP:
    """A :class:`QATMLP` for fine-tuning ``model`` (a trained float MLP; left untouched).

    Parameters
    ----------
    model
        float32 or float64 ``MLP``; its weights and biases are copied.
    weight_bits
        2..8. Weights are fake-quantized with ``weight_scheme`` at this width
        (default TensorFlow Lite's: symmetric, narrow range ``[-(2**(b-1) - 1),
        2**(b-1) - 1]``, one scale per output channel, ``scale = max|w| / qmax``).
    act_bits
        2..8, or None for weight-only QAT. Activations: asymmetric per tensor,
        ``[-2**(b-1), 2**(b-1) - 1]``, moving-average min-max range.
    weight_scheme
        a ``QScheme`` or preset name (its ``bits`` is replaced by
        ``weight_bits``) that the converter accepts: symmetric, signed, per tensor or
        per output column (``channel_axis`` -1 or 1); anything else raises
        ``ValueError`` here rather than after training.
    averaging_constant
        the observers' moving-average constant, in (0, 1].
    rounding
        ``"half_away"`` (default: TensorFlow Lite, and nnref's converter) or
        ``"half_even"`` (PyTorch's fake quantization), for weights and activations.

    Activation ranges start empty: call ``calibrate(x)`` or let the first training step
    set them. Convert the trained model with :meth:`QATMLP.convert`.
    """
    return QATMLP(model, weight_bits, act_bits, weight_scheme, averaging_constant, rounding)
