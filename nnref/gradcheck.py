"""Gradient checking: compare hand-written backprop with finite differences.

The central difference ``(f(x + h e_i) - f(x - h e_i)) / 2h`` has truncation error
``O(h^2)`` and rounding error about ``eps * |f| / h``; with ``h = 1e-6`` in float64 both are
around ``1e-10``, which is why checks are done in float64 (in float32 ``eps / h`` is
``0.1``: the check would measure rounding, not your backward pass).
"""

from __future__ import annotations

import numpy as np

from ._checks import check_positive, describe
from .mlp import MLP

__all__ = ["numerical_gradient", "rel_error", "check_gradients"]


def numerical_gradient(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of the scalar function ``f`` at ``x``::

        df/dx_i ~= (f(x + h e_i) - f(x - h e_i)) / (2 h)

    ``x`` must be a float64 ndarray; it is perturbed *in place*, one entry at a time, and
    restored (so ``f`` may read it through a closure, e.g. a model's own weight array).
    Costs ``2 * x.size`` evaluations of ``f``. Returns an array of ``x``'s shape.
    """
    if not isinstance(x, np.ndarray) or x.dtype != np.float64:
        raise TypeError(
            "x: expected a float64 ndarray (finite differences in lower precision measure "
            f"rounding, not the gradient), got {type(x).__name__}"
            + (f" of dtype {x.dtype}" if isinstance(x, np.ndarray) else "")
        )
    h = check_positive(h, "h")
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)  # views: writes reach x
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        f_plus = float(f(x))
        flat[i] = old - h
        f_minus = float(f(x))
        flat[i] = old
        gflat[i] = (f_plus - f_minus) / (2 * h)
    return grad


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """Relative error of two gradients of one tensor::

        rel_error(a, b) = max_i |a_i - b_i| / max(max_i |a_i|, max_i |b_i|)

    (0 when both are all zero). Scaling by the tensor's largest entry, rather than
    entry by entry as in CS231n's ``|a - b| / (|a| + |b|)``, keeps the tiny entries whose
    finite difference is dominated by rounding from hiding a correct gradient; a wrong
    backward still shows up as an error of order 1.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"b: expected the shape of a {a.shape}, got {b.shape}")
    if a.size == 0:
        return 0.0
    scale = max(np.max(np.abs(a)), np.max(np.abs(b)))
    if scale == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / scale)


def check_gradients(model, x: np.ndarray, labels: np.ndarray, h: float = 1e-6,
                    loss: str = "cross_entropy") -> dict[str, float]:
    """Worst relative error (:func:`rel_error`) between the analytic and the numerical
    gradient, for every parameter of ``model`` (``{"W1": err, "b1": err, ...}``).

    Works on a float64 copy of the model (the model itself is not touched), so float32
    models can be checked too. Each parameter costs ``2 * size`` forward passes: use a
    small model and batch. Errors below ~1e-7 mean the backward pass is right.
    """
    if not isinstance(model, MLP):
        raise TypeError(f"model: expected an nnref.mlp.MLP, got {describe(model)}")
    m = model.astype(np.float64)
    x64 = m.check_input(x)
    _, grads = m.loss_and_grads(x64, labels, loss=loss)
    grads = {k: v.copy() for k, v in grads.items()}

    def f(_):
        """The loss at the model's current (perturbed) parameters."""
        return m.loss(x64, labels, loss)[0]

    return {name: rel_error(grads[name], numerical_gradient(f, p, h)) for name, p in m.params.items()}
