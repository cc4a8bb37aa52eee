"""The clipping rules as plain functions: the arithmetic alone, no validation.

Each takes plain arrays (a list of gradient arrays, or one array), returns new arrays in
each array's dtype, and never modifies its inputs. The checked functions of
:mod:`nnref.clip` (``clip_by_value``, ``clip_by_norm``, ``clip_by_global_norm``,
``adaptive_clip``) validate their arguments and compute exactly these results (a test
checks every bit); these are the versions to read, and to write yourself.
"""

from __future__ import annotations

import numpy as np

from .norms import global_l2_norm, l2_norm

__all__ = ["clip_grads_by_value", "clip_grad_by_norm", "clip_grads_by_global_norm", "adaptive_clip_grad"]


def clip_grads_by_value(grads, min_value, max_value):
    """Clamp every entry: ``g_j <- min(max(g_j, lo), hi)``, ``lo = min_value``,
    ``hi = max_value`` (infinite bounds allowed; NaN stays NaN).

    Parameters
    ----------
    grads : list of ndarray
    min_value, max_value : float, ``min_value <= max_value``

    Returns
    -------
    list of ndarray

    References
    ----------
    TensorFlow ``tf.clip_by_value``; ONNX ``Clip``; PyTorch ``clip_grad_value_`` is the
    symmetric case ``lo = -hi``.
    """
    return [np.clip(g, min_value, max_value) for g in grads]


def clip_grad_by_norm(g, max_norm):
    """Clip one tensor's L2 norm: ``g <- g * c / max(||g||_2, c)``, ``c = max_norm``.

    The factor is exactly 1.0 when ``||g|| <= c``, so such a tensor comes back bit for
    bit. It is rounded to ``g``'s dtype before the multiply (one rounding per entry).

    Parameters
    ----------
    g : ndarray
    max_norm : float >= 0

    Returns
    -------
    ndarray

    References
    ----------
    TensorFlow ``tf.clip_by_norm`` (which computes ``(g * c) / max(n, c)``: it can differ
    in the last bit).
    """
    norm = l2_norm(g)
    factor = 1.0 if norm <= max_norm else max_norm / norm  # NaN norm: NaN factor
    return g * g.dtype.type(factor)


def clip_grads_by_global_norm(grads, max_norm, eps=1e-6):
    """Scale all gradients by one factor so that their global L2 norm is at most
    ``max_norm``::

        total = sqrt(sum_t ||g_t||_2^2)
        coef  = min(max_norm / (total + eps), 1)
        g_t  <- g_t * coef                        for every tensor t

    Parameters
    ----------
    grads : list of ndarray
    max_norm, eps : float >= 0

    Returns
    -------
    clipped : list of ndarray
    total : float
        The global norm BEFORE clipping.

    References
    ----------
    PyTorch ``torch.nn.utils.clip_grad_norm_``; Pascanu, Mikolov & Bengio 2013,
    arXiv 1211.5063.
    """
    norms = [l2_norm(g) for g in grads]
    total = global_l2_norm(norms)
    coef = 1.0 if total + eps == 0 else min(max_norm / (total + eps), 1.0)  # NaN stays NaN
    return [g * g.dtype.type(coef) for g in grads], total


def adaptive_clip_grad(w, g, clipping=0.01, eps=1e-3):
    """Unit-wise adaptive gradient clipping (AGC) of one parameter's gradient.

    For every unit ``i`` (a column ``W[:, i]`` of a 2-D ``(in, out)`` weight; each entry
    ``b_i`` of a 1-D bias, its own unit)::

        limit_i = clipping * max(||w_i||_2, eps)
        g_i    <- g_i * limit_i / max(||g_i||_2, 1e-6)    if ||g_i||_2 > limit_i

    Norms in float64; the factor is rounded to ``g``'s dtype before the multiply.

    Parameters
    ----------
    w, g : ndarray, same shape, 0-D, 1-D or 2-D
    clipping, eps : float >= 0

    Returns
    -------
    ndarray

    References
    ----------
    Brock, De, Smith & Simonyan 2021, "High-performance large-scale image recognition
    without normalization", arXiv 2102.06171, eq. 3.
    """
    def unit_norms(a):
        """One L2 norm per unit, shaped to broadcast against ``a`` (float64)."""
        a = a.astype(np.float64)
        return np.abs(a) if a.ndim <= 1 else np.sqrt(np.sum(a * a, axis=0, keepdims=True))

    limit = clipping * np.maximum(unit_norms(w), eps)
    g_norm = unit_norms(g)
    factor = np.where(g_norm > limit, limit / np.maximum(g_norm, 1e-6), 1.0)
    return g * factor.astype(g.dtype)
