"""Half precision (IEEE 754 binary16, ``numpy.float16``): storage and arithmetic.

float16 has an 11-bit significand (relative rounding error at most ``2**-11``, about
4.9e-4), a largest finite value of 65504, and subnormals down to ``2**-24``. Storing a
model's weights in float16 halves its size; how the *arithmetic* is done depends on the
engine, and this module offers the two cases by name (``accumulate=``):

- ``"float32"``: weights and activations are stored in float16, every product and sum of a
  layer is computed in float32 and each layer's output is rounded to float16 once. This
  is what numpy itself does: its float16 ``matmul`` converts every element to float32,
  accumulates in float32 and rounds the result once (``numpy/_core/src/umath/
  matmul.c.src``; checked on the installed numpy by ``tests/test_half.py``). GPUs do the
  same with float16 inputs and a float32 compute type (e.g. cuBLAS ``CUBLAS_COMPUTE_32F``).
- ``"float16"``: every product and every partial sum is rounded to float16, in the order
  ``k = 0, 1, ..., K-1``. This is arithmetic done entirely in half precision, as the
  ARMv8.2-A half-precision kernels of XNNPACK (``f16-gemm ... neonfp16arith``, which keep
  float16 accumulators) do. Those kernels use fused multiply-add (one rounding per step,
  not two) and several interleaved partial sums, so this mode reproduces the size of
  their error, not their exact bits.

A third deployment, TensorFlow Lite's float16 post-training quantization run on a CPU,
dequantizes the float16 weights to float32 at load time and computes everything in
float32; its outputs are those of ``to_float16(model).astype(np.float32)`` run with the
ordinary forward pass.

Why "float16" mode is exact as simulated: numpy computes a float16 ``a + b`` or ``a * b``
in float32 and rounds the float32 result to float16. Rounding twice (to 24, then to 11
bits) gives the correctly rounded result of +, -, * and / whenever the intermediate
format has at least ``2p + 2`` bits for ``p``-bit operands (Figueroa 1995, "When is
double rounding innocuous?"); ``24 >= 2 * 11 + 2``. So each step is the correctly rounded
IEEE float16 operation.
"""

from __future__ import annotations

import numpy as np

from nnref._checks import as_float_array, check_labels, describe
from nnref.layers import Linear
from nnref.mlp import MLP

__all__ = [
    "FLOAT16_MAX",
    "ACCUMULATE_MODES",
    "to_float16",
    "float16_matmul",
    "float16_forward",
    "float16_predict",
    "float16_accuracy",
]

FLOAT16_MAX = float(np.finfo(np.float16).max)  # 65504.0
ACCUMULATE_MODES = ("float32", "float16")


def _check_plain_mlp(model) -> MLP:
    if not isinstance(model, MLP):
        raise TypeError(f"model: expected an MLP, got {describe(model)}")
    if any(type(lin) is not Linear for lin in model.linears) or len(model.layers) != 2 * len(model.linears) - 1:
        raise TypeError(
            f"model: expected a float MLP (Linear and activation layers only), got "
            f"{type(model).__name__}; for a QATMLP use model.to_float() first"
        )
    return model


def _to_half(a: np.ndarray, name: str) -> np.ndarray:
    """``a`` rounded to float16 (round to nearest, ties to even), refusing overflow.

    A finite value overflows exactly when ``|a| >= 65520`` (halfway between 65504 and the
    next binade's first value 65536, which is beyond float16's range; the tie rounds to
    even, i.e. up, to inf).
    """
    with np.errstate(over="ignore"):
        h = a.astype(np.float16)
    overflow = np.isinf(h) & np.isfinite(a)
    if np.any(overflow):
        raise ValueError(
            f"{name}: {int(overflow.sum())} value(s) overflow float16 (largest finite "
            f"float16 is {FLOAT16_MAX:g}; |value| >= 65520 rounds to inf), largest "
            f"|value| {float(np.max(np.abs(a))):.6g}"
        )
    return h


def to_float16(model: MLP) -> MLP:
    """A float16 copy of ``model``: every parameter rounded to the nearest float16.

    ``W16 = float16(W)`` (round to nearest, ties to even: numpy's ``astype``, the IEEE
    754 default), biases likewise; the model itself is untouched. Raises ``ValueError``
    naming the parameter (``"params['W1']"``) if any value would overflow to inf. Values
    below ``2**-24`` in magnitude round to 0 or to subnormals: that is float16's precision
    loss, not an error. The copy's ordinary ``forward`` uses numpy's float16 arithmetic
    (see the module docstring); :func:`float16_forward` makes the accumulation explicit.

    Parameters
    ----------
    model : MLP
        A plain float MLP.

    Returns
    -------
    MLP
        A float16 copy.

    Raises
    ------
    TypeError, ValueError
        Naming the argument.
    """
    _check_plain_mlp(model)
    for name, p in model.params.items():
        _to_half(as_float_array(p, f"params[{name!r}]"), f"params[{name!r}]")
    return model.astype(np.float16)


def float16_matmul(x, W, accumulate: str = "float32") -> np.ndarray:
    """``x @ W`` of float16 matrices with the named accumulation; float16 result.

    Shapes ``x (B, K)``, ``W (K, N)`` -> ``(B, N)``; both must already be float16.

    - ``"float32"``: ``float16(sum_k float32(x[b, k]) * float32(W[k, n]))``. Each product
      of two float16 values is exact in float32 (22 significant bits); the sum is
      float32's (BLAS order), rounded once to float16.
    - ``"float16"``: ``acc = 0; acc = fl16(acc + fl16(x[:, k] * W[k, :]))`` for k in order.

    Results beyond 65504 become inf, as on float16 hardware (no error: it is the
    arithmetic being studied).

    Parameters
    ----------
    x : array_like of float, shape (B, K)
    W : array_like of float, shape (K, N)
    accumulate : {"float32", "float16"}

    Returns
    -------
    ndarray of float16, shape (B, N)

    Raises
    ------
    TypeError, ValueError
        Naming the argument.
    """
    if accumulate not in ACCUMULATE_MODES:
        raise ValueError(f"accumulate: expected one of {ACCUMULATE_MODES}, got {accumulate!r}")
    for name, a in (("x", x), ("W", W)):
        if not isinstance(a, np.ndarray) or a.dtype != np.float16 or a.ndim != 2:
            raise TypeError(f"{name}: expected a 2-D float16 array, got {describe(a)}")
    if x.shape[1] != W.shape[0]:
        raise ValueError(f"W: expected {x.shape[1]} rows (x has shape {x.shape}), got shape {W.shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        if accumulate == "float32":
            return (x.astype(np.float32) @ W.astype(np.float32)).astype(np.float16)
        acc = np.zeros((x.shape[0], W.shape[1]), dtype=np.float16)
        for k in range(x.shape[1]):
            acc = acc + x[:, k:k + 1] * W[k]  # float16 * float16, float16 + float16
        return acc


def float16_forward(model: MLP, x, accumulate: str = "float32") -> np.ndarray:
    """Logits of ``model`` computed in half precision, ``(B, n_outputs)`` float16.

    ``h_0 = float16(x)``; per Linear layer ``z = float16_matmul(h, W16, accumulate) + b16``
    (the bias add rounded once more to float16 in ``"float16"`` mode; in ``"float32"``
    mode it joins the float32 sum before the single rounding); activations are applied to
    float16 arrays (numpy evaluates them in float32 and rounds once). ``model`` may be any
    plain float MLP: its parameters are rounded with :func:`to_float16` (same overflow
    error). Overflowing activations become inf, as on float16 hardware.

    Parameters
    ----------
    model : MLP
    x : array_like of float, shape (B, in_features)
        Finite and within float16's range.
    accumulate : {"float32", "float16"}

    Returns
    -------
    ndarray of float16, shape (B, n_outputs)

    Raises
    ------
    TypeError, ValueError
        Naming the argument.
    """
    if accumulate not in ACCUMULATE_MODES:
        raise ValueError(f"accumulate: expected one of {ACCUMULATE_MODES}, got {accumulate!r}")
    m16 = model if (_check_plain_mlp(model).dtype == np.float16) else to_float16(model)
    x = as_float_array(x, "x", ndim=2)
    if x.shape[1] != m16.in_features:
        raise ValueError(
            f"x: expected shape (batch, {m16.in_features}), got shape {x.shape}"
        )
    h = _to_half(x, "x")
    with np.errstate(over="ignore", invalid="ignore"):
        for layer in m16.layers:
            if isinstance(layer, Linear):
                if accumulate == "float32":
                    acc = h.astype(np.float32) @ layer.W.astype(np.float32)
                    h = (acc + layer.b.astype(np.float32)).astype(np.float16)
                else:
                    h = float16_matmul(h, layer.W, "float16") + layer.b
            else:
                h = layer.forward(h)
    return h


def float16_predict(model: MLP, x, accumulate: str = "float32") -> np.ndarray:
    """Class indices ``argmax_j`` of :func:`float16_forward`'s logits (int64, ``(B,)``).
    Ties (more likely in float16) go to the lowest index, as ``numpy.argmax``.

    Parameters
    ----------
    model : MLP
    x : array_like of float, shape (B, in_features)
    accumulate : {"float32", "float16"}

    Returns
    -------
    ndarray of int64, shape (B,)

    Raises
    ------
    TypeError, ValueError
        Naming the argument.
    """
    return np.argmax(float16_forward(model, x, accumulate), axis=1).astype(np.int64)


def float16_accuracy(model: MLP, x, labels, accumulate: str = "float32") -> float:
    """Fraction of examples whose :func:`float16_predict` class equals the label.

    Parameters
    ----------
    model : MLP
    x : array_like of float, shape (B, in_features)
    labels : array_like of int, shape (B,)
    accumulate : {"float32", "float16"}

    Returns
    -------
    float

    Raises
    ------
    TypeError, ValueError
        Naming the argument.
    """
    pred = float16_predict(model, x, accumulate)
    y = check_labels(labels, pred.shape[0], model.n_outputs)
    return float(np.mean(pred == y))
