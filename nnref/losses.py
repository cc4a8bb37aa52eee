"""Losses, each returning the loss and its gradient with respect to the prediction.

The gradients are derived by hand in the docstrings, so a student can check each line.
"""

from __future__ import annotations

import numpy as np

from ._checks import as_float_array, check_labels

__all__ = ["log_softmax", "softmax", "softmax_cross_entropy", "mse"]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """``log softmax(z)_j = z_j - m - log sum_k exp(z_k - m)`` with ``m = max_k z_k`` per row.

    Subtracting the row maximum (the log-sum-exp trick) makes every exponent <= 0, so
    nothing overflows even for logits of magnitude 1e4, and leaves the result unchanged
    because softmax is invariant to adding a constant to a row. Shape ``(B, C)`` in and out,
    dtype preserved.
    """
    return _log_softmax(as_float_array(logits, "logits", ndim=2))


def _log_softmax(z: np.ndarray) -> np.ndarray:
    # Unchecked core of log_softmax, for callers that have validated z already. The row
    # sums go through BLAS (e @ 1), which is faster than a reduction along short rows.
    shifted = z - z.max(axis=1, keepdims=True)
    shifted -= np.log(np.exp(shifted) @ np.ones(z.shape[1], dtype=z.dtype))[:, None]
    return shifted


def softmax(logits: np.ndarray) -> np.ndarray:
    """``softmax(z)_j = exp(z_j - m) / sum_k exp(z_k - m)``, rows summing to 1 (see
    :func:`log_softmax` for why ``m = max_k z_k`` is subtracted). Shape ``(B, C)``."""
    z = as_float_array(logits, "logits", ndim=2)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy and its gradient.

    With ``p = softmax(z)`` and one-hot targets ``y``, for a batch of ``B`` rows::

        L = -(1/B) sum_i log p[i, label_i]
        dL/dz = (p - y) / B

    (the softmax Jacobian ``diag(p) - p p^T`` times ``-y/p`` collapses to ``p - y``). Each
    row of ``dL/dz`` therefore sums to zero. ``logits`` is ``(B, C)`` floating, ``labels``
    ``(B,)`` integers in ``[0, C)``. Returns ``(loss as a Python float, dlogits (B, C) in the
    logits' dtype)``. Matches ``torch.nn.functional.cross_entropy`` with mean reduction.
    """
    z = as_float_array(logits, "logits", ndim=2)
    return _softmax_cross_entropy(z, check_labels(labels, z.shape[0], z.shape[1]))


def _softmax_cross_entropy(z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    # Unchecked core of softmax_cross_entropy (z finite, y valid labels): the training
    # loop's hot path, which has validated both already.
    b = z.shape[0]
    logp = _log_softmax(z)
    rows = np.arange(b)
    loss = -float(np.add.reduce(logp[rows, y])) / b
    dlogits = np.exp(logp, out=logp)  # p = exp(log p), reusing the buffer
    dlogits[rows, y] -= 1
    dlogits /= b
    return loss, dlogits


def mse(pred: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean squared error over all ``N`` elements and its gradient::

        L = (1/N) sum (pred - target)^2
        dL/dpred = 2 (pred - target) / N

    (``torch.nn.MSELoss`` with mean reduction). ``pred`` and ``target`` must have the same
    shape: no broadcasting, because a broadcast ``(B, 1)`` against ``(B,)`` silently makes a
    ``(B, B)`` loss.
    """
    p = as_float_array(pred, "pred")
    t = as_float_array(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"target: expected the shape of pred {p.shape}, got {t.shape}")
    diff = p - t.astype(p.dtype, copy=False)
    n = diff.size
    return float(np.mean(diff * diff)), (2.0 / n) * diff
