"""AdaRound: learn, for every weight, whether it rounds down or up (Nagel et al. 2020,
"Up or Down? Adaptive Rounding for Post-Training Quantization", ICML 2020,
arXiv 2004.10568, section 4).

Round-to-nearest minimises each weight's own error, not the layer's output error: at 2 or
3 bits the errors of one output channel add up. AdaRound keeps the grid (the step ``s``)
and chooses for each weight between ``floor(W / s)`` and ``floor(W / s) + 1``. The choice
is relaxed to a continuous variable ``V`` of the shape of ``W``:

    W_soft = s * clamp(floor(W / s) + h(V), qmin, qmax)                        (eq. 22)
    h(V)   = clamp(sigmoid(V) (zeta - gamma) + gamma, 0, 1),  zeta = 1.1, gamma = -0.1   (eq. 23)

(the rectified sigmoid of Louizos et al. 2018: it reaches exactly 0 and 1, so a decided
weight stops receiving gradient), and ``V`` minimises, by Adam on calibration data, the
reconstruction error of the layer's output plus a regulariser that pushes every ``h`` to
0 or 1::

    min_V  mean_n || f(x_hat W_soft + b) - f(x W + b) ||^2  +  lambda * f_reg(V)   (eq. 25)
    f_reg(V) = sum_ij 1 - |2 h(V_ij) - 1|^beta                                   (eq. 24)

``x`` is the layer's input in the float network, ``x_hat`` the input the network produces
with the layers before it already rounded (the paper's asymmetric reconstruction, which
lets a layer compensate earlier layers' errors), ``f`` the layer's activation (ReLU, leaky
ReLU, or none for the logits). ``beta`` is annealed from 20 (the regulariser is flat and
``h`` moves freely) to 2 (it pulls hard towards 0 and 1), after a warm-up without the
regulariser, as in the authors' implementation. At the end every weight is rounded by the
sign of ``V``: ``w_q = clamp(floor(W / s) + [h(V) >= 1/2], qmin, qmax)``, each the floor or the
ceiling of ``W / s``.

Layers are processed in order; nothing else in the network is trained. The result is a
weight set (:mod:`nnref.quant.layerwise`), converted to the integer-only model by
:func:`~nnref.quant.layerwise.to_quantized_mlp`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nnref._checks import (
    as_float_array,
    as_rng,
    check_float32_range,
    check_int_in_range,
    check_nonnegative,
    check_positive,
)
from nnref.mlp import MLP
from nnref.optim import Adam
from nnref.quant import QParams, dequantize, round_half_away
from nnref.quant.layerwise import (
    layer_activations,
    layer_inputs,
    weight_qparams,
)

__all__ = [
    "ZETA",
    "GAMMA",
    "rectified_sigmoid",
    "rectified_sigmoid_grad",
    "adaround_regularizer",
    "adaround_regularizer_grad",
    "beta_schedule",
    "initial_v",
    "soft_quantized_weights",
    "hard_rounding",
    "AdaRoundResult",
    "adaround_loss_and_grad",
    "adaround_layer",
    "adaround",
]

#: Stretch of the rectified sigmoid (Louizos et al. 2018; AdaRound, eq. 23).
ZETA, GAMMA = 1.1, -0.1


def _sigmoid(v: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(v))  # never overflows
    return np.where(v >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def rectified_sigmoid(V, zeta: float = ZETA, gamma: float = GAMMA) -> np.ndarray:
    """``h(V) = clamp(sigmoid(V) (zeta - gamma) + gamma, 0, 1)`` (AdaRound, eq. 23).

    Parameters
    ----------
    V : ndarray, float
    zeta, gamma : float
        ``zeta > 1``, ``gamma < 0``: the sigmoid is stretched to ``(gamma, zeta)`` and
        clipped, so ``h`` reaches 0 and 1 at finite ``V``.

    Returns
    -------
    ndarray of ``V``'s shape, values in [0, 1], float64.
    """
    return np.clip(_sigmoid(np.asarray(V, np.float64)) * (zeta - gamma) + gamma, 0.0, 1.0)


def rectified_sigmoid_grad(V, zeta: float = ZETA, gamma: float = GAMMA) -> np.ndarray:
    """``dh/dV = (zeta - gamma) sigmoid(V) (1 - sigmoid(V))`` where ``0 < h < 1``, else 0.

    Parameters
    ----------
    V : ndarray, float
    zeta, gamma : float
        As :func:`rectified_sigmoid`.

    Returns
    -------
    ndarray of ``V``'s shape, float64
        The derivative of eq. 23; 0 where the clamp is active (``h`` is exactly 0 or 1).

    References
    ----------
    Nagel et al. 2020, arXiv 2004.10568, eq. 23.
    """
    sig = _sigmoid(np.asarray(V, np.float64))
    raw = sig * (zeta - gamma) + gamma
    return np.where((raw > 0) & (raw < 1), (zeta - gamma) * sig * (1.0 - sig), 0.0)


def adaround_regularizer(h, beta: float) -> float:
    """The rounding regulariser ``f_reg = sum_ij 1 - |2 h_ij - 1|^beta``.

    Parameters
    ----------
    h : array, values in [0, 1]
    beta : float, >= 1
        Large: flat except near 0 and 1 (``h`` moves freely); 2: a parabola pulling every
        ``h`` to 0 or 1.

    Returns
    -------
    float
        0 exactly when every ``h`` is 0 or 1; 1 per weight at ``h = 1/2``.

    References
    ----------
    Nagel et al. 2020, arXiv 2004.10568, eq. 24.
    """
    return float(np.sum(1.0 - np.abs(2.0 * np.asarray(h, np.float64) - 1.0) ** beta))


def adaround_regularizer_grad(h, beta: float) -> np.ndarray:
    """``d f_reg / dh = -2 beta |2h - 1|^(beta - 1) sign(2h - 1)``, elementwise.

    Parameters
    ----------
    h : array, values in [0, 1]
    beta : float, >= 1 (so the derivative is 0, not undefined, at ``h = 1/2``)

    Returns
    -------
    ndarray of ``h``'s shape, float64

    References
    ----------
    Nagel et al. 2020, arXiv 2004.10568, eq. 24 (its derivative).
    """
    d = 2.0 * np.asarray(h, np.float64) - 1.0
    return -2.0 * beta * np.abs(d) ** (beta - 1.0) * np.sign(d)


def beta_schedule(t: int, total: int, start: float = 20.0, end: float = 2.0,
                  warmup: float = 0.2) -> float | None:
    """``beta`` at iteration ``t`` of ``total``.

    ``None`` (regulariser off) while ``t < warmup * total``, then linear from ``start`` to
    ``end``: ``beta = end + (start - end) * (1 - (t - t0) / (total - t0))``.

    Parameters
    ----------
    t, total : int
    start, end : float
        20 and 2 in the paper.
    warmup : float in [0, 1)

    Returns
    -------
    float or None

    References
    ----------
    Nagel et al. 2020, arXiv 2004.10568, section 5 (annealing ``beta``); the warm-up and
    the linear decay follow the authors' released code.
    """
    t0 = warmup * total
    if t < t0:
        return None
    return end + (start - end) * max(0.0, 1.0 - (t - t0) / max(total - t0, 1.0))


def initial_v(W, s, zeta: float = ZETA, gamma: float = GAMMA) -> np.ndarray:
    """``V_0`` with ``h(V_0) = W / s - floor(W / s)``, so that the soft weights start at ``W``.

    Formula: the inverse of eq. 23 on the fractional part ``r``:
    ``V_0 = log(p / (1 - p))``, ``p = (r - gamma) / (zeta - gamma)`` (``p`` clipped to
    ``[1e-6, 1 - 1e-6]`` to stay finite).

    Parameters
    ----------
    W : array (in, out)
    s : float or array (out,)
        The grid's step(s).
    zeta, gamma : float

    Returns
    -------
    ndarray (in, out), float64
    """
    frac = np.asarray(W, np.float64) / s - np.floor(np.asarray(W, np.float64) / s)
    p = np.clip((frac - gamma) / (zeta - gamma), 1e-6, 1 - 1e-6)
    return np.log(p / (1.0 - p))


def soft_quantized_weights(W_floor, h, s, qmin: int, qmax: int) -> np.ndarray:
    """The soft-quantized weights ``W_soft = s * clamp(W_floor + h, qmin, qmax)``.

    Parameters
    ----------
    W_floor : array (in, out)
        ``floor(W / s)``.
    h : array (in, out), values in [0, 1]
    s : float or array (out,)
        Broadcast over the columns.
    qmin, qmax : int
        The grid's integer range.

    Returns
    -------
    ndarray (in, out), float64

    References
    ----------
    Nagel et al. 2020, arXiv 2004.10568, eq. 22.
    """
    return s * np.clip(W_floor + h, qmin, qmax)


def hard_rounding(W_floor, V, qmin: int, qmax: int) -> np.ndarray:
    """The final integer weights ``clamp(W_floor + [V >= 0], qmin, qmax)``.

    ``V >= 0`` exactly when ``h(V) >= 1/2``, so every weight is the floor or the ceiling
    of ``W / s`` (clamped to the grid).

    Parameters
    ----------
    W_floor : array (in, out)
    V : array (in, out)
    qmin, qmax : int

    Returns
    -------
    ndarray (in, out), int8
    """
    return np.clip(W_floor + (np.asarray(V) >= 0), qmin, qmax).astype(np.int8)


@dataclass
class AdaRoundResult:
    """What :func:`adaround` returns.

    Attributes
    ----------
    weights : list of (w_q int8, QParams)
        The weight set, one pair per Linear layer.
    history : list of dict
        Per layer: ``"recon"`` (reconstruction error per iteration), ``"soft"`` (fraction
        of weights with ``0 < h < 1`` per iteration), ``"changed"`` (fraction of weights
        rounded differently from round-to-nearest).
    """

    weights: list
    history: list = field(default_factory=list)


def _activate(z: np.ndarray, kind: str, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """``f(z)`` and ``f'(z)`` for the layer's activation."""
    if kind == "none":
        return z, np.ones_like(z)
    slope = np.where(z > 0, 1.0, alpha if kind == "leaky_relu" else 0.0)
    return z * slope, slope


def adaround_loss_and_grad(V, W_floor, s, x_hat, target, b, qmin: int, qmax: int,
                           activation: str = "none", alpha: float = 0.0, reg_weight: float = 0.0,
                           beta: float | None = None) -> tuple[float, float, np.ndarray]:
    """AdaRound's objective (eq. 25) and its gradient with respect to ``V``.

    ``z = x_hat W_soft + b`` with ``W_soft = soft_quantized_weights(W_floor, h(V), s, qmin,
    qmax)``; ``recon = sum((f(z) - target)^2) / B``; ``reg = f_reg(h(V))`` (0 when ``beta``
    is None). With ``g = 2 (f(z) - target) f'(z) / B``::

        dL/dV = [(x_hat^T g) * s * [qmin < W_floor + h < qmax] + reg_weight * d f_reg/dh] * dh/dV

    Parameters
    ----------
    V, W_floor : ndarray (in, out)
    s : ndarray (out,) or float
        The grid's steps.
    x_hat : ndarray (B, in)
    target : ndarray (B, out)
    b : ndarray (out,)
    qmin, qmax : int
    activation : {"none", "relu", "leaky_relu"}
    alpha : float
        Leaky ReLU slope.
    reg_weight : float
        ``lambda``.
    beta : float or None

    Returns
    -------
    (float, float, ndarray (in, out))
        ``(recon, reg, dL/dV)``; the loss is ``recon + reg_weight * reg``; float64.

    References
    ----------
    Nagel et al. 2020, arXiv 2004.10568, eqs. 22-25.
    """
    h = rectified_sigmoid(V)
    soft = W_floor + h
    z = x_hat @ soft_quantized_weights(W_floor, h, s, qmin, qmax) + b
    out, slope = _activate(z, activation, alpha)
    diff = out - target
    g = 2.0 * diff * slope / x_hat.shape[0]
    dh = (x_hat.T @ g) * s * ((soft > qmin) & (soft < qmax))
    reg = 0.0
    if beta is not None:
        reg = adaround_regularizer(h, beta)
        dh = dh + reg_weight * adaround_regularizer_grad(h, beta)
    return float(np.sum(diff * diff) / x_hat.shape[0]), reg, dh * rectified_sigmoid_grad(V)


def adaround_layer(W, b, x_hat, target, qparams: QParams, activation: str = "none",
                   alpha: float = 0.0, iterations: int = 1000, lr: float = 1e-2,
                   reg_weight: float = 0.01, beta: tuple[float, float] = (20.0, 2.0),
                   warmup: float = 0.2, batch_size: int | None = None, seed=0):
    """AdaRound one Linear layer: ``(w_q int8 (in, out), history dict)``.

    Minimises eq. 25 over ``V`` (:func:`adaround_loss_and_grad`) with
    :class:`~nnref.optim.Adam` (``lr``), ``V`` starting at :func:`initial_v` (the soft
    weights equal ``W``) and ``beta`` from :func:`beta_schedule`; then
    :func:`hard_rounding`.

    Parameters
    ----------
    W : array (in, out)
    b : array (out,)
    x_hat : array (N, in)
        The layer's inputs with earlier layers quantized.
    target : array (N, out)
        The float layer's output after its activation.
    qparams : QParams
        The weight grid (symmetric, zero point 0).
    activation : {"none", "relu", "leaky_relu"}
    alpha : float
        Leaky ReLU slope.
    iterations, lr, reg_weight, beta, warmup
        Optimisation settings (``beta = (start, end)``).
    batch_size : int or None
        Random mini-batches of this size (``seed``), or the whole of ``x_hat`` (None).
    seed : int or numpy.random.Generator

    Returns
    -------
    w_q : ndarray (in, out), int8
    history : dict
        ``"recon"`` and ``"soft"`` per iteration, ``"changed"`` (see :class:`AdaRoundResult`).
    """
    W = check_float32_range(as_float_array(W, "W", ndim=2), "W").astype(np.float64)
    x_hat = check_float32_range(as_float_array(x_hat, "x_hat", ndim=2), "x_hat").astype(np.float64)
    target = check_float32_range(as_float_array(target, "target", ndim=2), "target").astype(np.float64)
    b = check_float32_range(as_float_array(b, "b", ndim=1), "b").astype(np.float64)
    if x_hat.shape[1] != W.shape[0] or target.shape != (x_hat.shape[0], W.shape[1]) or b.shape != (W.shape[1],):
        raise ValueError(f"W, b, x_hat, target: expected shapes (in, out), (out,), (N, in), (N, out), "
                         f"got {W.shape}, {b.shape}, {x_hat.shape}, {target.shape}")
    if activation not in ("none", "relu", "leaky_relu"):
        raise ValueError(f"activation: expected 'none', 'relu' or 'leaky_relu', got {activation!r}")
    if not isinstance(qparams, QParams) or not qparams.signed or np.any(qparams.zero_point != 0) or (
            qparams.per_channel and qparams.num_channels != W.shape[1]):
        raise ValueError(f"qparams: expected symmetric signed QParams (zero point 0) per tensor or "
                         f"with {W.shape[1]} channels, got {qparams!r}")
    if batch_size is not None:
        batch_size = check_int_in_range(batch_size, "batch_size", 1, 10**9)
    iterations = check_int_in_range(iterations, "iterations", 1, 10**7)
    lr, reg_weight = check_positive(lr, "lr"), check_nonnegative(reg_weight, "reg_weight")
    rng = as_rng(seed)
    s = np.broadcast_to(qparams.scale.astype(np.float64), (W.shape[1],))
    W_floor = np.floor(W / s)
    params, opt = {"V": initial_v(W, s)}, Adam(lr)
    hist = {"recon": [], "soft": []}
    n = x_hat.shape[0]
    for t in range(iterations):
        idx = slice(None) if batch_size is None or batch_size >= n else rng.choice(n, batch_size, replace=False)
        bt = beta_schedule(t, iterations, beta[0], beta[1], warmup)
        recon, _, grad = adaround_loss_and_grad(params["V"], W_floor, s, x_hat[idx], target[idx], b,
                                                qparams.qmin, qparams.qmax, activation, alpha,
                                                reg_weight, bt)
        hist["soft"].append(float(np.mean(rectified_sigmoid_grad(params["V"]) > 0)))
        opt.step(params, {"V": grad})
        hist["recon"].append(recon)
    w_q = hard_rounding(W_floor, params["V"], qparams.qmin, qparams.qmax)
    nearest = np.clip(round_half_away(W / s), qparams.qmin, qparams.qmax)
    hist["changed"] = float(np.mean(w_q != nearest))
    return w_q, hist


def adaround(model: MLP, calibration_x, weight_scheme="tflite_int8_weights", bits: int = 4,
             scale_method: str = "mse", iterations: int = 1000, lr: float = 1e-2,
             reg_weight: float = 0.01, beta: tuple[float, float] = (20.0, 2.0),
             warmup: float = 0.2, batch_size: int | None = None, seed=0) -> AdaRoundResult:
    """AdaRound every Linear layer of ``model``, in order: a weight set on the grids of
    :func:`~nnref.quant.layerwise.weight_qparams` (``scale_method``).

    Layer ``l`` reconstructs the float model's output ``f(z_l)`` from the input ``x_hat_l``
    that the model with layers ``0..l-1`` already rounded produces (eq. 25). Nothing else
    changes: biases stay float (:mod:`nnref.quant.bias_correction` can correct them for the
    result) and the network is not retrained.

    Parameters
    ----------
    model : MLP
        ReLU or leaky ReLU between the layers.
    calibration_x : array (N, in_features)
    weight_scheme, bits
        The weight grid (per channel or per tensor; 2..8 bits).
    scale_method : {"mse", "minmax"}
        How the grid's step is chosen (see :func:`~nnref.quant.layerwise.weight_qparams`).
    iterations, lr, reg_weight, beta, warmup, batch_size, seed
        See :func:`adaround_layer` (the same settings for every layer; ``seed`` seeds one
        generator shared by the layers).

    Returns
    -------
    AdaRoundResult
    """
    acts = layer_activations(model)
    x = model.check_input(calibration_x, "calibration_x")
    rng = as_rng(seed)
    inputs, pre = layer_inputs(model, x)
    x_hat = inputs[0].astype(np.float64)
    weights, history = [], []
    for l, lin in enumerate(model.linears):
        qp = weight_qparams(lin.W, weight_scheme, bits, scale_method)
        kind, alpha = acts[l]
        target = _activate(pre[l].astype(np.float64), kind, alpha)[0]
        w_q, hist = adaround_layer(lin.W, lin.b, x_hat, target, qp, kind, alpha, iterations, lr,
                                   reg_weight, beta, warmup, batch_size, rng)
        weights.append((w_q, qp))
        history.append(hist)
        # the next layer's input, with this layer rounded (the asymmetric reconstruction)
        W_hat = dequantize(w_q, qp).astype(np.float64)
        x_hat = _activate(x_hat @ W_hat + lin.b.astype(np.float64), kind, alpha)[0]
    return AdaRoundResult(weights, history)
