"""Quantize, dequantize and fake-quantize: the maps between reals and the integer grid.

With ``s = scale`` and ``z = zero_point`` from a ``QParams``::

    quantize:       q   = clamp(round(x / s) + z, qmin, qmax)     (integers)
    dequantize:     x'  = s * (q - z)                             (float32)
    fake_quantize:  x'  = dequantize(quantize(x))                 (floats, for training)

(ONNX QuantizeLinear / DequantizeLinear, TensorFlow Lite's quantize kernel; Jacob et al.
2018, arXiv 1712.05877, eq. 1.) Per-channel parameters broadcast along ``qparams.axis``.

The backward pass of fake quantization is the straight-through estimator (Bengio et al.
2013, arXiv 1308.3432) with PyTorch's clipping: the gradient passes where
``qmin <= round(x / s) + z <= qmax`` and is 0 where the value was clamped.
"""

from __future__ import annotations

import numpy as np

from nnref._checks import as_float_array, as_int_array, describe
from nnref.layers import Layer
from nnref.quant.qparams import QParams

__all__ = [
    "round_half_even",
    "round_half_away",
    "quantize",
    "dequantize",
    "fake_quantize",
    "fake_quantize_with_mask",
    "fake_quantize_backward",
    "FakeQuantize",
    "ROUNDING_MODES",
]

ROUNDING_MODES = ("half_even", "half_away")


def round_half_even(x) -> np.ndarray:
    """Round to the nearest integer, ties to the even one: 2.5 -> 2, -2.5 -> -2, 0.5 -> 0.

    The IEEE 754 default, used by ``numpy.round``/``numpy.rint``, ONNX QuantizeLinear and
    PyTorch (``torch.round``, its observers and fake-quant kernels). Exact (no arithmetic
    besides the rounding). Returns a float array of ``x``'s float dtype (float64 for
    integer input); NaN and inf pass through unchanged.
    """
    x = as_float_array(x, "x", finite=False, allow_empty=True)
    return np.rint(x)


def round_half_away(x) -> np.ndarray:
    """Round to the nearest integer, ties away from zero: 2.5 -> 3, -2.5 -> -3, 0.5 -> 1.

    C's ``std::round``, used by TensorFlow Lite's converter and kernels (``TfLiteRound``).
    Computed exactly as ``sign(x) * (f + [|x| - f >= 1/2])`` with ``f = floor(|x|)``:
    ``|x| - f`` is exact in binary floating point, unlike the common ``floor(x + 0.5)``,
    which rounds 0.49999999999999994 up to 1. Returns a float array of ``x``'s float dtype
    (float64 for integer input); NaN and inf pass through unchanged.
    """
    x = as_float_array(x, "x", finite=False, allow_empty=True)
    a = np.abs(x)
    f = np.floor(a)
    with np.errstate(invalid="ignore"):  # inf - inf for infinite input; copysign fixes it
        up = (a - f) >= 0.5
    return np.copysign(np.where(up, f + 1, f), x).astype(x.dtype, copy=False)


def _rounder(rounding: str):
    if rounding == "half_even":
        return np.rint
    if rounding == "half_away":
        return round_half_away
    raise ValueError(f"rounding: expected one of {ROUNDING_MODES}, got {rounding!r}")


def _check_qparams(qparams) -> QParams:
    if not isinstance(qparams, QParams):
        raise TypeError(f"qparams: expected a QParams, got {describe(qparams)}")
    return qparams


def _grid_position(x, qparams: QParams, rounding: str) -> tuple[np.ndarray, np.ndarray]:
    """Check ``x`` and return it with ``round(x / scale) + zero_point`` before clamping.

    The quotient is computed in float32, as the engines compute it: onnxruntime's
    QuantizeLinear ``nearbyintf(x / scale)`` and TensorFlow Lite's ``round(x / scale)``
    both divide float32 by float32. (float64 ``x`` is rounded to float32 first, the
    engines' input type.) Near a tie that float32 quotient can round differently from the
    exact real quotient, and then nnref does what the engines do. Never NaN: x is finite
    and the scale finite and > 0 (a huge quotient may be +-inf; the clamp handles it).
    """
    qparams = _check_qparams(qparams)
    rnd = _rounder(rounding)
    x = as_float_array(x, "x", allow_empty=True)
    scale, zero_point = qparams.params_for(x.shape)
    with np.errstate(over="ignore"):
        quotient = x.astype(np.float32) / scale.astype(np.float32)
        pos = rnd(quotient.astype(np.float64)) + zero_point
    return x, pos


def quantize(x, qparams: QParams, rounding: str = "half_even") -> np.ndarray:
    """Map reals to the integer grid: ``q = clamp(round(x / scale) + zero_point, qmin, qmax)``.

    ONNX QuantizeLinear (``rounding="half_even"``) and TensorFlow Lite's quantize kernel
    (``rounding="half_away"``) use this form: divide by the scale (PyTorch's fake-quant
    kernel multiplies by ``1 / scale`` instead, which can differ by one at near-ties).

    Args:
        x: real array of any shape, finite (a NaN must never become an integer: ValueError).
        qparams: per-tensor, or per-channel broadcast along ``qparams.axis``
            (``x.shape[axis]`` must equal the number of channels).
        rounding: ``"half_even"`` or ``"half_away"`` (see the rounding functions).

    Returns an integer array of ``x.shape`` and dtype ``qparams.dtype``. Values outside the
    representable range saturate to ``qmin``/``qmax``. The division is float32 by float32,
    bit for bit what onnxruntime and TensorFlow Lite compute (see ``_grid_position``).
    """
    _, pos = _grid_position(x, qparams, rounding)
    # After the clamp every value is an integer in [qmin, qmax], which the storage dtype holds.
    return np.asarray(np.clip(pos, qparams.qmin, qparams.qmax)).astype(qparams.dtype)


def dequantize(q, qparams: QParams) -> np.ndarray:
    """Map integers back to reals: ``x = scale * (q - zero_point)`` as float32.

    ONNX DequantizeLinear / TensorFlow Lite's dequantize kernel. ``q`` must have an integer
    dtype (any width) and values in ``[qmin, qmax]`` (checked: a value outside the grid is
    a bug upstream). ``q - zero_point`` is taken in int64, so nothing wraps; its magnitude
    is below 2**17, so it converts to float32 exactly and the product is rounded once.
    """
    qparams = _check_qparams(qparams)
    q = as_int_array(q, "q", allow_empty=True)
    if q.size and (q.min() < qparams.qmin or q.max() > qparams.qmax):
        raise ValueError(
            f"q: expected values in [{qparams.qmin}, {qparams.qmax}], got values in "
            f"[{q.min()}, {q.max()}]"
        )
    scale, zero_point = qparams.params_for(q.shape)
    centred = q.astype(np.int64) - zero_point.astype(np.int64)
    return np.asarray(scale * centred.astype(np.float32))


def fake_quantize_with_mask(
    x, qparams: QParams, rounding: str = "half_even"
) -> tuple[np.ndarray, np.ndarray]:
    """Fake quantization and its straight-through mask.

    ``out = dequantize(quantize(x))`` cast to ``x``'s float dtype (exactly for float32 and
    float64 ``x``: every float32 grid value is a float64; float16 rounds again) and
    ``mask = qmin <= round(x / scale) + zero_point <= qmax`` (bool, shape of ``x``): where
    the value was not clamped. PyTorch's ``fake_quantize_per_tensor_affine`` /
    ``..._per_channel_affine`` forward and backward mask; PyTorch's forward multiplies by
    ``1 / scale`` where nnref divides (as :func:`quantize`), so the two can differ by one
    step at near-ties.
    """
    x, pos = _grid_position(x, qparams, rounding)
    mask = np.asarray((pos >= qparams.qmin) & (pos <= qparams.qmax))
    q = np.asarray(np.clip(pos, qparams.qmin, qparams.qmax)).astype(qparams.dtype)
    out = dequantize(q, qparams).astype(x.dtype, copy=False)
    return out, mask


def fake_quantize(x, qparams: QParams, rounding: str = "half_even") -> np.ndarray:
    """``dequantize(quantize(x, qparams, rounding), qparams)`` in ``x``'s float dtype.

    Used in quantization-aware training so the float forward pass sees exactly the values
    the integer model will (Jacob et al. 2018, section 3; PyTorch's FakeQuantize).
    """
    return fake_quantize_with_mask(x, qparams, rounding)[0]


def fake_quantize_backward(grad_out, mask) -> np.ndarray:
    """Straight-through estimator: ``grad_in = grad_out`` where ``mask``, else 0.

    ``mask`` is the in-range mask of ``fake_quantize_with_mask`` (same shape as
    ``grad_out``, dtype bool). Rounding has derivative 0 almost everywhere; the STE treats
    it as the identity inside the range and the clamp's derivative (0) outside it, as
    PyTorch's fake-quant backward does.
    """
    grad_out = as_float_array(grad_out, "grad_out", allow_empty=True)
    mask = np.asarray(mask)
    if mask.dtype != np.bool_:
        raise TypeError(f"mask: expected a bool array, got dtype {mask.dtype}")
    if mask.shape != grad_out.shape:
        raise ValueError(f"mask: expected the shape of grad_out {grad_out.shape}, got {mask.shape}")
    return np.where(mask, grad_out, np.zeros((), dtype=grad_out.dtype))


class FakeQuantize(Layer):
    """Fake-quantization layer with a straight-through backward pass (CS231n style).

    ``forward(x)`` returns ``fake_quantize(x, qparams)`` and caches the in-range mask;
    ``backward(grad_out)`` returns ``grad_out`` where the mask is True, else 0 (the mask is
    kept in ``self.mask``). ``qparams`` may be replaced between steps (quantization-aware
    training refreshes it from an observer); ``rounding`` is ``"half_even"`` (PyTorch,
    ONNX) or ``"half_away"`` (TensorFlow Lite). No parameters of its own.
    """

    def __init__(self, qparams: QParams, rounding: str = "half_even") -> None:
        self.qparams = qparams
        _rounder(rounding)
        self.rounding = rounding
        self.mask: np.ndarray | None = None

    @property
    def qparams(self) -> QParams:
        return self._qparams

    @qparams.setter
    def qparams(self, value: QParams) -> None:
        self._qparams = _check_qparams(value)

    def forward(self, x) -> np.ndarray:
        out, self.mask = fake_quantize_with_mask(x, self.qparams, self.rounding)
        return out

    def backward(self, grad_out) -> np.ndarray:
        grad_out = self._check_grad(grad_out, None if self.mask is None else self.mask.shape)
        return fake_quantize_backward(grad_out, self.mask)

    def __repr__(self) -> str:
        return f"FakeQuantize({self.qparams!r}, rounding={self.rounding!r})"
