"""TEMPORARY adapters: each formula as a plain function, computed with nnref's public API.

The exercises ask for plain functions (issue 9 brings them out of nnref's classes and
checked wrappers: ``nnref.layers.linear_backward``, ``nnref.optim.adam_update``, ...).
Until they are merged, :data:`nnref.laws.catalog.EXERCISES` points each name at the
adapter below, which computes the same thing through nnref's existing public functions
and classes, with the same signature and docstring as the plain function. After the
merge each ``reference`` entry switches to ``"nnref.<module>:<name>"`` and this module
is deleted.
"""

from __future__ import annotations

import numpy as np

from nnref import clip, losses
from nnref.layers import LeakyReLU, Linear, ReLU
from nnref.optim import SGD, Adam

__all__ = [
    "linear_backward", "relu_backward", "leaky_relu_forward", "leaky_relu_backward",
    "tanh_backward", "sigmoid_backward", "cross_entropy_loss_and_grad", "sgd_update",
    "adam_update", "clip_grads_by_value", "clip_grad_by_norm", "clip_grads_by_global_norm",
    "adaptive_clip_grad",
]


def linear_backward(x, W, grad_out):
    """Gradients of ``y = x @ W + b`` from ``g = dL/dy``::

        dx = g @ W^T         (B, in)
        dW = x^T @ g         (in, out)
        db = sum_rows g      (out,)

    Parameters
    ----------
    x : ndarray, shape (B, in)
        The forward's input.
    W : ndarray, shape (in, out)
    grad_out : ndarray, shape (B, out)

    Returns
    -------
    dx, dW, db : ndarrays of shapes (B, in), (in, out), (out,).

    References
    ----------
    CS231n, ``affine_backward``.
    """
    layer = Linear(W.shape[0], W.shape[1], dtype=W.dtype)
    layer.W = W.copy()
    layer.forward(x)
    dx = layer.backward(grad_out)
    return dx, layer.dW, layer.db


def relu_backward(x, grad_out):
    """``dx = g * [x > 0]``: the subgradient 0 is taken at ``x = 0``.

    Parameters
    ----------
    x : ndarray
        The forward's input.
    grad_out : ndarray, shape of x

    Returns
    -------
    dx : ndarray, shape of x
    """
    layer = ReLU()
    layer.forward(x)
    return layer.backward(grad_out)


def leaky_relu_forward(x, alpha):
    """``y = x if x > 0 else alpha x`` entrywise (Maas et al. 2013), any ``alpha >= 0``.

    Parameters
    ----------
    x : ndarray
    alpha : float
        Slope on the non-positive side (also above 1).

    Returns
    -------
    y : ndarray, shape of x
    """
    return LeakyReLU(alpha).forward(x)


def leaky_relu_backward(x, grad_out, alpha):
    """``dx = where(x > 0, g, alpha g)``, any ``alpha >= 0`` (also above 1).

    Parameters
    ----------
    x : ndarray
        The forward's input.
    grad_out : ndarray, shape of x
    alpha : float

    Returns
    -------
    dx : ndarray, shape of x
    """
    layer = LeakyReLU(alpha)
    layer.forward(x)
    return layer.backward(grad_out)


def tanh_backward(y, grad_out):
    """``dx = g (1 - y^2)`` with ``y = tanh(x)`` the forward's OUTPUT.

    Parameters
    ----------
    y : ndarray
        The forward's output.
    grad_out : ndarray, shape of y

    Returns
    -------
    dx : ndarray, shape of y
    """
    return grad_out * (1 - y * y)  # Tanh.backward's formula; Tanh keeps y only inside the layer


def sigmoid_backward(y, grad_out):
    """``dx = g y (1 - y)`` with ``y = sigma(x)`` the forward's OUTPUT.

    Parameters
    ----------
    y : ndarray
        The forward's output.
    grad_out : ndarray, shape of y

    Returns
    -------
    dx : ndarray, shape of y
    """
    return grad_out * y * (1 - y)  # Sigmoid.backward's formula; Sigmoid keeps y inside the layer


def cross_entropy_loss_and_grad(logits, labels):
    """Mean softmax cross-entropy and its gradient::

        L = -(1/B) sum_i log softmax(z_i)[label_i]
        dL/dz = (softmax(z) - onehot(labels)) / B

    Parameters
    ----------
    logits : ndarray, shape (B, C)
    labels : ndarray of ints, shape (B,), values in [0, C)

    Returns
    -------
    loss : float
    dlogits : ndarray, shape (B, C)

    References
    ----------
    ``torch.nn.functional.cross_entropy`` (mean reduction).
    """
    return losses.softmax_cross_entropy(logits, labels)


def sgd_update(p, g, buf, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    """One step of PyTorch's SGD for one parameter::

        d = g + weight_decay * p
        buf = d                                          (first step: buf is None)
        buf = momentum * buf + (1 - dampening) * d       (later steps)
        d = d + momentum * buf if nesterov else buf      (when momentum != 0)
        p_new = p - lr * d

    Parameters
    ----------
    p, g : ndarrays of one shape
    buf : ndarray or None
        The momentum buffer; None before the first step.
    lr, momentum, dampening, weight_decay : float
    nesterov : bool

    Returns
    -------
    p_new : ndarray
    buf_new : ndarray, or None when momentum == 0

    References
    ----------
    ``torch.optim.SGD`` (its documented algorithm); Sutskever et al. 2013.
    """
    opt = SGD(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, dampening=dampening)
    if buf is not None and momentum:
        opt.state["p"] = {"momentum_buffer": np.array(buf, copy=True)}
    params = {"p": np.array(p, copy=True)}
    opt.step(params, {"p": g})
    new_buf = opt.state["p"]["momentum_buffer"] if momentum else None
    return params["p"], new_buf


def adam_update(p, g, m, v, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
    """One step of PyTorch's Adam for one parameter, at this parameter's step ``t``::

        d = g + weight_decay * p
        m_new = beta1 * m + (1 - beta1) * d
        v_new = beta2 * v + (1 - beta2) * d^2
        p_new = p - lr * (m_new / (1 - beta1^t)) / (sqrt(v_new / (1 - beta2^t)) + eps)

    Parameters
    ----------
    p, g, m, v : ndarrays of one shape
        ``m = v = 0`` before the parameter's first step.
    step : int
        This parameter's own step count ``t >= 1``, this step included.
    lr, beta1, beta2, eps, weight_decay : float

    Returns
    -------
    p_new, m_new, v_new : ndarrays

    References
    ----------
    Kingma & Ba 2015, Algorithm 1; ``torch.optim.Adam``.
    """
    opt = Adam(lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)
    opt.state["p"] = {"step": int(step) - 1, "exp_avg": np.array(m, copy=True), "exp_avg_sq": np.array(v, copy=True)}
    params = {"p": np.array(p, copy=True)}
    opt.step(params, {"p": g})
    st = opt.state["p"]
    return params["p"], st["exp_avg"], st["exp_avg_sq"]


def clip_grads_by_value(grads, min_value, max_value):
    """Clip every entry of every gradient to ``[min_value, max_value]``.

    Parameters
    ----------
    grads : list of ndarrays
    min_value, max_value : float, ``min_value <= max_value``

    Returns
    -------
    list of ndarrays, ``clip(g, min_value, max_value)`` each (dtype kept).
    """
    return [np.clip(g, min_value, max_value) for g in grads]


def clip_grad_by_norm(g, max_norm):
    """TensorFlow's ``clip_by_norm``: ``g * max_norm / max(||g||_2, max_norm)``.

    Parameters
    ----------
    g : ndarray
    max_norm : float > 0

    Returns
    -------
    ndarray, shape and dtype of g, with L2 norm at most ``max_norm``.
    """
    return clip.clip_by_norm([g], max_norm)[0]


def clip_grads_by_global_norm(grads, max_norm, eps=1e-6):
    """PyTorch's ``clip_grad_norm_``: one factor for all gradients::

        total = sqrt(sum_t ||g_t||_2^2)
        coef  = min(max_norm / (total + eps), 1)
        g_t  <- g_t * coef

    Parameters
    ----------
    grads : list of ndarrays
    max_norm : float >= 0
    eps : float >= 0

    Returns
    -------
    clipped : list of ndarrays (dtypes kept)
    total : float, the norm before clipping

    References
    ----------
    ``torch.nn.utils.clip_grad_norm_``; Pascanu et al. 2013.
    """
    return clip.clip_by_global_norm(list(grads), max_norm, eps=eps)


def adaptive_clip_grad(w, g, clipping=0.01, eps=1e-3):
    """Adaptive gradient clipping (AGC) of one tensor, unit by unit::

        limit_i = clipping * max(||w_i||, eps)
        g_i    <- g_i * limit_i / ||g_i||     if ||g_i|| > limit_i

    Units: the columns of a 2-D ``w`` of shape (in, out); each entry of a 1-D bias is its
    own unit (norm ``|b_i|``).

    Parameters
    ----------
    w : ndarray, shape (in, out) or (out,)
        The parameter.
    g : ndarray, shape of w
        Its gradient.
    clipping, eps : float

    Returns
    -------
    ndarray, the clipped gradient (shape and dtype of g).

    References
    ----------
    Brock et al. 2021, arXiv 2102.06171, eq. 3.
    """
    return clip.adaptive_clip([g], [w], clipping=clipping, eps=eps)[0]
