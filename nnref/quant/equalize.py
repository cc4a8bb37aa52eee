"""Cross-layer equalization and high-bias absorption (Nagel et al. 2019, "Data-Free
Quantization Through Weight Equalization and Bias Correction", arXiv 1906.04721, section 4.1).

ReLU and leaky ReLU are positively homogeneous: ``f(s z) = s f(z)`` for every ``s > 0``.
So for two Linear layers joined by one of them, dividing output channel ``i`` of the first
layer by ``s_i`` and multiplying input row ``i`` of the second by ``s_i`` changes nothing
the network computes::

    f(x W1 + b1) W2 = f(x W1 S^-1 + b1 S^-1) S W2          S = diag(s) > 0

(nnref stores ``W`` as ``(in, out)``, so the first layer's output channels are the
*columns* of ``W1`` and the second layer's input channels are the *rows* of ``W2``.) The
freedom is used to make every channel's weight range the same in both layers, which is
what a per-tensor grid needs: with ``r1_i = max_k |W1[k, i]|`` and ``r2_i = max_j |W2[i, j]|``
the scales

    s_i = sqrt(r1_i r2_i) / r2_i

give both layers the range ``sqrt(r1_i r2_i)`` in channel ``i`` (the optimum of the paper's
section 4.1 and appendix A: it maximises the product of the channels' shares of their
tensors' ranges). A chain of layers is equalized pair by pair, sweeping until the scales
settle.

Equalization can make some biases ``b1_i / s_i`` large; since a ReLU is the identity
above 0, an amount ``c_i`` the pre-activation always exceeds can move to the next layer
(section 4.1, "absorbing high biases")::

    b1 <- b1 - c,      b2 <- b2 + c W2,      c_i = max(0, E[z_i] - 3 std[z_i])

exact for every input whose pre-activation stays at or above ``c`` (the paper takes
``E`` and ``std`` from batch normalization; here they are measured on calibration data,
or ``c_i = max(0, min z_i)``, exact on that data).
"""

from __future__ import annotations

import numpy as np

from nnref._checks import check_int_in_range, check_nonnegative
from nnref.mlp import MLP
from nnref.quant.layerwise import layer_activations, layer_inputs

__all__ = [
    "channel_ranges",
    "equalization_scales",
    "equalize_pair",
    "cross_layer_equalization",
    "absorption_amounts",
    "absorb_high_biases",
]


def channel_ranges(W1: np.ndarray, W2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The per-channel weight ranges of a layer pair: ``(r1, r2)``.

    ``r1_i = max_k |W1[k, i]|`` (output column ``i`` of the first layer) and
    ``r2_i = max_j |W2[i, j]|`` (input row ``i`` of the second).

    Parameters
    ----------
    W1 : ndarray (in, n)
    W2 : ndarray (n, out)

    Returns
    -------
    (ndarray (n,), ndarray (n,))
    """
    return np.abs(W1).max(axis=0), np.abs(W2).max(axis=1)


def equalization_scales(r1: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """Per-channel equalization scales ``s_i = sqrt(r1_i r2_i) / r2_i``.

    Formula of Nagel et al. 2019, section 4.1 (derived in their appendix A). Dividing
    channel ``i`` of the first layer by ``s_i`` and multiplying the second layer's row
    ``i`` by it leaves both with range ``sqrt(r1_i r2_i)``. A channel with ``r1_i = 0`` or
    ``r2_i = 0`` (a dead unit) keeps ``s_i = 1``.

    Parameters
    ----------
    r1, r2 : ndarray (n,), >= 0

    Returns
    -------
    ndarray (n,), > 0, float64
    """
    r1, r2 = np.asarray(r1, dtype=np.float64), np.asarray(r2, dtype=np.float64)
    alive = (r1 > 0) & (r2 > 0)
    safe1, safe2 = np.where(alive, r1, 1.0), np.where(alive, r2, 1.0)
    return np.where(alive, np.sqrt(safe1 * safe2) / safe2, 1.0)


def equalize_pair(W1, b1, W2, s) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(W1 S^-1, b1 S^-1, S W2)`` for ``S = diag(s)``.

    Columns of ``W1`` and entries of ``b1`` divided by ``s``, rows of ``W2`` multiplied
    by it: for ReLU or leaky ReLU between them the function is unchanged.

    Parameters
    ----------
    W1 : ndarray (in, n)
    b1 : ndarray (n,)
    W2 : ndarray (n, out)
    s : ndarray (n,), > 0

    Returns
    -------
    (ndarray, ndarray, ndarray)
        Same shapes and dtypes as the inputs.

    References
    ----------
    Nagel et al. 2019, arXiv 1906.04721, section 4.1.
    """
    s = np.asarray(s)
    return ((W1 / s[None, :]).astype(W1.dtype), (b1 / s).astype(b1.dtype),
            (W2 * s[:, None]).astype(W2.dtype))


def cross_layer_equalization(model: MLP, max_sweeps: int = 20, tol: float = 1e-6) -> MLP:
    """A copy of ``model`` with every consecutive pair of Linear layers equalized.

    Each sweep equalizes the pairs ``(0, 1), (1, 2), ...`` in order with
    :func:`equalization_scales`; sweeps repeat (a layer in the middle belongs to two pairs)
    until every scale of a sweep is within ``tol`` of 1 or ``max_sweeps`` is reached. With
    two layers one sweep is exact. The float function is unchanged (up to float rounding).

    Parameters
    ----------
    model : MLP
        ReLU or leaky ReLU between the layers (other activations are not positively
        homogeneous: ``ValueError``).
    max_sweeps : int
    tol : float, >= 0

    Returns
    -------
    MLP
        A new model; ``model`` is not changed.
    """
    layer_activations(model)  # checks the activations
    max_sweeps = check_int_in_range(max_sweeps, "max_sweeps", 1, 10**6)
    tol = check_nonnegative(tol, "tol")
    new = model.copy()
    lins = new.linears
    for _ in range(max_sweeps):
        worst = 0.0
        for a, b in zip(lins[:-1], lins[1:]):
            s = equalization_scales(*channel_ranges(a.W.astype(np.float64), b.W.astype(np.float64)))
            a.W, a.b, b.W = equalize_pair(a.W, a.b, b.W, s)
            worst = max(worst, float(np.max(np.abs(s - 1.0))))
        if worst <= tol:
            break
    return new


def absorption_amounts(mean, std, n_std: float = 3.0) -> np.ndarray:
    """How much of each ReLU unit's bias can move to the next layer: ``c = max(0, mean - n_std * std)``.

    Parameters
    ----------
    mean, std : array (n,)
        The pre-activation's statistics (batch normalization's ``beta`` and ``gamma`` in
        the paper).
    n_std : float

    Returns
    -------
    ndarray (n,), >= 0

    References
    ----------
    Nagel et al. 2019, arXiv 1906.04721, section 4.1 ("absorbing high biases").
    """
    return np.maximum(0.0, np.asarray(mean) - n_std * np.asarray(std))


def absorb_high_biases(model: MLP, calibration_x, n_std: float | None = 3.0) -> MLP:
    """A copy of ``model`` with the high biases of every hidden layer moved to the next.

    For hidden layer ``l`` with pre-activation ``z_l`` measured on ``calibration_x``::

        c = absorption_amounts(mean(z_l), std(z_l), n_std)   or   max(0, min(z_l))  (n_std None)
        b_l <- b_l - c,     b_{l+1} <- b_{l+1} + c W_{l+1}

    The outputs are unchanged for every input whose pre-activations stay at or above
    ``c`` (all of ``calibration_x`` with ``n_std=None``). Layers are processed in order,
    each measured on the model as absorbed so far.

    Parameters
    ----------
    model : MLP
        ReLU or leaky ReLU activations.
    calibration_x : array (N, in_features)
    n_std : float >= 0, or None

    Returns
    -------
    MLP
    """
    layer_activations(model)
    if n_std is not None:
        n_std = check_nonnegative(n_std, "n_std")
    x = model.check_input(calibration_x, "calibration_x")
    new = model.copy()
    lins = new.linears
    for l in range(len(lins) - 1):
        z = layer_inputs(new, x)[1][l].astype(np.float64)
        if n_std is None:
            c = np.maximum(0.0, z.min(axis=0))
        else:
            c = absorption_amounts(z.mean(axis=0), z.std(axis=0), n_std)
        lins[l].b = (lins[l].b - c).astype(lins[l].b.dtype)
        lins[l + 1].b = (lins[l + 1].b + c @ lins[l + 1].W.astype(np.float64)).astype(lins[l + 1].b.dtype)
    return new
