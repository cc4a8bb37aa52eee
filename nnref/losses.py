"""Losses, each returning the loss and its gradient with respect to the prediction.

The gradients are derived by hand in the docstrings, so a student can check each line.
"""

from __future__ import annotations

import numpy as np

from ._checks import as_float_array, check_labels

__all__ = ["log_softmax", "softmax", "softmax_cross_entropy", "cross_entropy_loss_and_grad", "mse"]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """``log softmax(z)_j = z_j - m - log sum_k exp(z_k - m)`` with ``m = max_k z_k`` per row.

    Subtracting the row maximum (the log-sum-exp trick) makes every exponent <= 0, so
    nothing overflows even for logits of magnitude 1e4, and leaves the result unchanged
    because softmax is invariant to adding a constant to a row. Shape ``(B, C)`` in and out,
    dtype preserved.
    """
    return _log_softmax(as_float_array(logits, "logits", ndim=2))


def _log_softmax(z: np.ndarray) -> np.ndarray:
    """The arithmetic of :func:`log_softmax` (``z`` validated by the caller). The row sums
    go through BLAS (``e @ 1``), which is faster than a reduction along short rows."""
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
    """Mean softmax cross-entropy and its gradient, after checking the arguments.

    Parameters
    ----------
    logits : array_like, shape (B, C)
        Finite floating values.
    labels : array_like of int, shape (B,)
        Class indices in ``[0, C)``.

    Returns
    -------
    loss : float
    dlogits : ndarray, shape (B, C), the logits' dtype

    Raises
    ------
    TypeError, ValueError
        Non-numeric or non-finite logits, labels of the wrong dtype, shape or range.

    Notes
    -----
    The arithmetic is :func:`cross_entropy_loss_and_grad`. Matches
    ``torch.nn.functional.cross_entropy`` with mean reduction.
    """
    z = as_float_array(logits, "logits", ndim=2)
    return cross_entropy_loss_and_grad(z, check_labels(labels, z.shape[0], z.shape[1]))


def cross_entropy_loss_and_grad(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy and its gradient (no validation).

    With ``p = softmax(z)`` and one-hot targets ``y``, for a batch of ``B`` rows::

        L = -(1/B) sum_i log p[i, label_i]
        dL/dz = (p - y) / B

    (the softmax Jacobian ``diag(p) - p p^T`` times ``-y/p`` collapses to ``p - y``), so
    each row of ``dL/dz`` sums to zero. ``log p`` is computed with the log-sum-exp shift
    (see :func:`log_softmax`).

    Parameters
    ----------
    logits : ndarray, shape (B, C), floating, finite
    labels : ndarray of int, shape (B,), values in ``[0, C)``

    Returns
    -------
    loss : float
    dlogits : ndarray, shape (B, C), the logits' dtype (a new array)

    References
    ----------
    CS231n, ``softmax_loss``; PyTorch ``torch.nn.functional.cross_entropy``.
    """
    b, c = logits.shape
    shifted = logits - logits.max(axis=1, keepdims=True)  # every exponent <= 0
    logp = shifted - np.log(np.exp(shifted) @ np.ones(c, dtype=logits.dtype))[:, None]
    rows = np.arange(b)
    loss = -float(np.add.reduce(logp[rows, labels])) / b
    dlogits = np.exp(logp, out=logp)  # p = exp(log p), reusing the buffer
    dlogits[rows, labels] -= 1
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
