"""The fake-quantization layers of quantization-aware training (see :mod:`nnref.quant.qat`).

- :class:`QATLinear`: a Linear layer whose forward multiplies by fake-quantized weights
  and whose backward is the straight-through estimator;
- :class:`ActivationFakeQuantize`: fake quantization of an activation with a
  moving-average range;
- :class:`FixedQParamsFakeQuantize`: fake quantization onto the fixed tanh / sigmoid
  output grids (:func:`fixed_output_qparams`).
"""

from __future__ import annotations

import numpy as np

from nnref._checks import check_int_in_range, describe
from nnref.layers import Layer, Linear
from nnref.quant.convert import check_weight_scheme
from nnref.quant.observers import MovingAverageMinMaxObserver
from nnref.quant.ops import check_rounding, fake_quantize_with_mask
from nnref.quant.qparams import TFLITE_INT8_ACTIVATIONS, QParams, QScheme, get_scheme, qrange

__all__ = [
    "MAX_QAT_BITS",
    "FIXED_OUTPUT_ACTIVATIONS",
    "check_qat_weight_scheme",
    "straight_through",
    "all_finite",
    "QATLinear",
    "ActivationFakeQuantize",
    "fixed_output_qparams",
    "FixedQParamsFakeQuantize",
]

#: Widest weight/activation width QAT simulates: the integer model stores int8.
MAX_QAT_BITS = 8


def straight_through(grad: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``grad`` where ``mask``, else 0 (the STE): ``fake_quantize_backward`` without its finiteness
    check, so that a diverged run's NaN gradient reaches ``fit`` (which records it).

    Parameters
    ----------
    grad : ndarray of float
    mask : ndarray of bool

    Returns
    -------
    ndarray of ``grad``'s dtype
    """
    return np.where(mask, grad, np.zeros((), dtype=grad.dtype))


def all_finite(a: np.ndarray) -> bool:
    """True if every entry of ``a`` is finite (a sum first: fast when they are).

    Parameters
    ----------
    a : ndarray of float

    Returns
    -------
    bool
    """
    return bool(np.isfinite(np.sum(a))) or bool(np.all(np.isfinite(a)))


def check_qat_weight_scheme(weight_scheme, bits: int | None = None) -> QScheme:
    """The converter's own check (:func:`nnref.quant.convert.quantize_weights`): symmetric,
    signed, per tensor or per output column. Rejected here, before any training, rather
    than at conversion.

    Parameters
    ----------
    weight_scheme : str or QScheme
    bits : int, optional
        Replaces the scheme's width.

    Returns
    -------
    QScheme

    Raises
    ------
    TypeError, ValueError
        Naming the argument.
    """
    scheme = get_scheme(weight_scheme)
    return check_weight_scheme(scheme, scheme.bits if bits is None else bits)


class QATLinear(Linear):
    """Linear layer whose forward uses fake-quantized weights (STE backward).

    Forward, with ``qp = weight_scheme.for_tensor(W)`` chosen from the current weights
    (per output channel = column of ``W`` for the default TensorFlow Lite scheme)::

        W_fq, m = fake_quantize_with_mask(W, qp)     (in, out), mask (in, out) bool
        y = x @ W_fq + b                              (B, out)

    Backward (straight-through estimator; PyTorch's per-channel fake-quant backward)::

        dW = (x^T @ g) * m      db = sum_batch g      dx = g @ W_fq^T

    With TensorFlow Lite's convention (``symmetric_convention="tflite"``, the default
    schemes) the scale is ``max|w| / qmax``, so no weight is clamped and ``m`` is all True:
    the STE then passes the whole gradient to the latent float ``W``. With PyTorch's
    symmetric convention (``scale = max|w| / ((qmax - qmin) / 2)``, e.g. 1.275 / 127.5 =
    0.01 at 8 bits) the largest positive weight can land on ``qmax + 1`` (1.275 / 0.01 =
    127.5, rounded to 128, clamped to 127) and its gradient is then masked to 0. Shapes and dtypes as
    :class:`~nnref.layers.Linear`; ``W``/``b`` are the latent float parameters the
    optimizer updates. After a forward, ``weight_qparams``, ``W_fq`` and ``weight_mask``
    hold what that forward used.

    ``rounding``: ``"half_away"`` (default; TensorFlow Lite, and nnref's converter) or
    ``"half_even"`` (PyTorch). Non-finite weights (a diverged run) pass through
    unquantized, so the NaN reaches the loss and :func:`nnref.train.fit` records the
    divergence instead of the quantizer raising.
    """

    def __init__(self, in_features: int, out_features: int, weight_scheme="tflite_int8_weights",
                 rounding: str = "half_away", init: str = "he", seed=0, dtype=np.float32,
                 gain: float = 1.0):
        super().__init__(in_features, out_features, init=init, seed=seed, dtype=dtype, gain=gain)
        self.weight_scheme: QScheme = check_qat_weight_scheme(weight_scheme)
        self.rounding = check_rounding(rounding)
        self.weight_qparams: QParams | None = None
        self.W_fq: np.ndarray | None = None
        self.weight_mask: np.ndarray | None = None

    @classmethod
    def from_linear(cls, linear: Linear, weight_scheme="tflite_int8_weights",
                    rounding: str = "half_away") -> "QATLinear":
        """A QATLinear holding copies of ``linear``'s ``W`` and ``b``.

        Parameters
        ----------
        linear : Linear
        weight_scheme : str or QScheme
        rounding : {"half_away", "half_even"}

        Returns
        -------
        QATLinear
            With copies of ``linear``'s parameters.
        """
        if not isinstance(linear, Linear):
            raise TypeError(f"linear: expected a Linear layer, got {describe(linear)}")
        new = cls(linear.in_features, linear.out_features, weight_scheme, rounding,
                  dtype=linear.W.dtype)
        new.W = linear.W.copy()
        new.b = linear.b.copy()
        return new

    def quantize_weights(self) -> tuple[np.ndarray, np.ndarray, QParams | None]:
        """``(W_fq, mask, qparams)`` for the current weights (see the class docstring)."""
        if not all_finite(self.W):
            return self.W, np.ones(self.W.shape, dtype=bool), None
        qp = self.weight_scheme.for_tensor(self.W)
        W_fq, mask = fake_quantize_with_mask(self.W, qp, self.rounding)
        return W_fq, mask, qp

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``x @ FQ_w(W) + b``, caching what the backward pass needs.

        Parameters
        ----------
        x : ndarray of float, shape (B, in_features)

        Returns
        -------
        ndarray, shape (B, out_features)
        """
        if not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"x: expected an array of shape (batch, {self.in_features}), got {describe(x)}"
            )
        x = x.astype(self.W.dtype, copy=False)
        self.W_fq, self.weight_mask, self.weight_qparams = self.quantize_weights()
        self._x = x
        y = x @ self.W_fq
        y += self.b
        return y

    def backward(self, grad_out: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """Store ``dW = (x^T g) * mask`` and ``db``; return ``g @ W_fq^T`` (or None).

        Gradients with the straight-through estimator on the weights.

        Parameters
        ----------
        grad_out : ndarray, shape (B, out_features)
        input_grad : bool
            Whether to return ``dL/dx``.

        Returns
        -------
        ndarray or None
            ``grad_out @ FQ_w(W)^T``, or None.
        """
        x = self._x
        g = self._check_grad(grad_out, None if x is None else (x.shape[0], self.out_features))
        self.dW = straight_through(x.T @ g, self.weight_mask)
        self.db = g.sum(axis=0)
        return g @ self.W_fq.T if input_grad else None

    def per_example_grads(self, grad_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``dW_i = outer(x_i, g_i) * mask`` (B, in, out) and ``db_i = g_i`` (B, out).

        Per-example gradients of the weights (STE mask applied) and biases.

        Parameters
        ----------
        grad_out : ndarray, shape (B, out_features)

        Returns
        -------
        tuple of ndarray
            ``(dW (B, in, out), db (B, out))``.
        """
        dW, db = super().per_example_grads(grad_out)
        return dW * self.weight_mask, db

    def __repr__(self) -> str:
        return (f"QATLinear({self.in_features}, {self.out_features}, "
                f"weight_bits={self.weight_scheme.bits}, dtype={self.W.dtype})")


class ActivationFakeQuantize(Layer):
    """Activation fake quantization with a moving-average range (PyTorch's FakeQuantize
    with ``MovingAverageMinMaxObserver``; Jacob et al. 2018, section 3).

    ``forward(x, observe)``: when ``observe`` is True the observer first records ``x``
    (the first batch sets ``[min, max]``; later ones move it by ``averaging_constant``,
    see :class:`~nnref.quant.observers.MovingAverageMinMaxObserver`) and ``qparams`` is
    recomputed from its range; then::

        out, mask = fake_quantize_with_mask(x, qparams)      qparams: affine, per tensor,
                                                             [-2**(bits-1), 2**(bits-1) - 1]

    Backward: ``dL/dx = dL/dout * mask`` (zero where ``x`` was clamped). Forward without a
    range yet raises ``RuntimeError``. Non-finite input passes through unchanged and is
    never observed (see :class:`QATLinear`).
    """

    def __init__(self, bits: int = 8, averaging_constant: float = 0.01,
                 rounding: str = "half_away") -> None:
        bits = check_int_in_range(bits, "act_bits", 2, MAX_QAT_BITS)
        self.scheme: QScheme = TFLITE_INT8_ACTIVATIONS.with_bits(bits)
        self.observer = MovingAverageMinMaxObserver(averaging_constant)
        self.rounding = check_rounding(rounding)
        self.qparams: QParams | None = None
        self.mask: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the observed range."""
        self.observer = MovingAverageMinMaxObserver(self.observer.averaging_constant)
        self.qparams = None

    def forward(self, x: np.ndarray, observe: bool = False) -> np.ndarray:
        """Fake-quantize ``x`` on the current range (moving it first if ``observe``).

        Parameters
        ----------
        x : ndarray of float
        observe : bool

        Returns
        -------
        ndarray
        """
        if not all_finite(x):
            self.mask = np.ones(x.shape, dtype=bool)
            return x
        if observe:
            self.observer.observe(x)
            self.qparams = self.observer.qparams(self.scheme)
        if self.qparams is None:
            raise RuntimeError(
                "ActivationFakeQuantize: no activation range yet; call calibrate(x) on the "
                "QATMLP or take a training step first"
            )
        out, self.mask = fake_quantize_with_mask(x, self.qparams, self.rounding)
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """The straight-through gradient.

        Parameters
        ----------
        grad_out : ndarray of float

        Returns
        -------
        ndarray
        """
        grad_out = self._check_grad(grad_out, None if self.mask is None else self.mask.shape)
        return straight_through(grad_out, self.mask)

    def __repr__(self) -> str:
        return f"ActivationFakeQuantize(bits={self.scheme.bits}, qparams={self.qparams!r})"


#: The activations whose integer output grid is fixed (TensorFlow Lite's int8 spec).
FIXED_OUTPUT_ACTIVATIONS = ("tanh", "sigmoid")


def fixed_output_qparams(activation: str, bits: int = 8) -> QParams:
    """The fixed output grid of ``tanh`` or ``sigmoid`` at ``bits`` bits (signed, per tensor).

    Formula, with ``n = 2**(bits-1)`` and ``q`` in ``[-n, n - 1]``::

        tanh:     scale = 1 / n,        zero point 0     grid [-1, (n - 1) / n]
        sigmoid:  scale = 1 / (2 n),    zero point -n    grid [0, (2n - 1) / (2n)]

    i.e. the function's range ``[-1, 1]`` / ``[0, 1]`` cut into ``2**bits`` equal steps, the
    top value left out. At 8 bits these are TensorFlow Lite's TANH (1/128, 0) and LOGISTIC
    (1/256, -128) output parameters, :data:`nnref.quant.convert.FIXED_OUTPUT_QPARAMS`
    (PyTorch's fixed parameters are the same intervals on its unsigned quint8 grid).

    Parameters
    ----------
    activation : {"tanh", "sigmoid"}
    bits : int

    Returns
    -------
    QParams

    Raises
    ------
    TypeError, ValueError
        Naming the argument.
    """
    if activation not in FIXED_OUTPUT_ACTIVATIONS:
        raise ValueError(f"activation: expected one of {FIXED_OUTPUT_ACTIVATIONS}, got {activation!r}")
    bits = check_int_in_range(bits, "bits", 2, MAX_QAT_BITS)
    qmin, qmax = qrange(bits, signed=True)
    n = 2 ** (bits - 1)
    if activation == "tanh":
        scale, zero_point = 1.0 / n, 0
    else:
        scale, zero_point = 1.0 / (2 * n), -n
    return QParams(scale=np.float32(scale), zero_point=np.int32(zero_point), qmin=qmin,
                   qmax=qmax, bits=bits, signed=True)


class FixedQParamsFakeQuantize(ActivationFakeQuantize):
    """Fake quantization onto a fixed grid, no observer (PyTorch's
    ``FixedQParamsFakeQuantize``, used for sigmoid and tanh outputs).

    ``forward(x, observe)``: ``out, mask = fake_quantize_with_mask(x, qparams)`` with
    ``qparams = fixed_output_qparams(activation, bits)``; ``observe`` is accepted and
    ignored (there is no range to move). Backward as :class:`ActivationFakeQuantize`:
    ``dL/dx = dL/dout * mask``, zero where ``x`` was clamped (tanh values above
    ``(n - 1) / n``, sigmoid values above ``(2n - 1) / (2n)``).
    """

    def __init__(self, activation: str, bits: int = 8, rounding: str = "half_away") -> None:
        self.activation = activation
        self.qparams = fixed_output_qparams(activation, bits)
        self.scheme = TFLITE_INT8_ACTIVATIONS.with_bits(self.qparams.bits)
        self.observer = None
        self.rounding = check_rounding(rounding)
        self.mask = None

    def reset(self) -> None:
        """Nothing to forget: the grid is fixed."""

    def forward(self, x: np.ndarray, observe: bool = False) -> np.ndarray:
        """Fake-quantize ``x`` on the fixed grid (``observe`` is ignored).

        Parameters
        ----------
        x : ndarray of float
        observe : bool

        Returns
        -------
        ndarray
        """
        if not all_finite(x):
            self.mask = np.ones(x.shape, dtype=bool)
            return x
        out, self.mask = fake_quantize_with_mask(x, self.qparams, self.rounding)
        return out

    def __repr__(self) -> str:
        return f"FixedQParamsFakeQuantize({self.activation!r}, qparams={self.qparams!r})"
