"""Optimizers, following the update rules documented for PyTorch's ``torch.optim.SGD`` and
``torch.optim.Adam`` exactly (the pseudo-code in their documentation).

Each rule is a plain function of one parameter (:func:`sgd_update`, :func:`adam_update`):
the arithmetic alone, returning new arrays. The optimizer classes apply the same
arithmetic to every parameter of a model, *in place*: ``step(params, grads)`` updates every
array of ``params`` from the matching array of ``grads`` (both dicts keyed ``W1, b1,
...``), with the same roundings as the plain functions (a test checks every bit). The
per-parameter state is a plain dict in ``optimizer.state[name]`` that can be inspected at
any step.
"""

from __future__ import annotations

import numpy as np

from ._checks import check_nonnegative, check_positive, describe

__all__ = ["sgd_update", "adam_update", "Optimizer", "SGD", "Adam"]


# --------------------------------------------------------------------------------------
# The update rules, one parameter at a time
# --------------------------------------------------------------------------------------


def sgd_update(p, g, buf, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    """One SGD step for one parameter, as documented for ``torch.optim.SGD``::

        g <- g + weight_decay * p
        if momentum != 0:
            buf <- g                                     (first step: buf is None)
            buf <- momentum * buf + (1 - dampening) * g  (later steps)
            g   <- g + momentum * buf   if nesterov   else   buf
        p <- p - lr * g

    Parameters
    ----------
    p, g : ndarray, same shape and floating dtype
        The parameter and its gradient (not modified).
    buf : ndarray or None
        The momentum buffer from the previous step; None before the first.
    lr, momentum, dampening, weight_decay : float
    nesterov : bool

    Returns
    -------
    p_new : ndarray
    buf_new : ndarray or None
        None when ``momentum == 0`` (no buffer is kept).

    References
    ----------
    PyTorch documentation, ``torch.optim.SGD`` (the algorithm box).
    """
    if weight_decay:
        g = g + weight_decay * p
    if momentum == 0:
        return p - lr * g, None
    buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
    step = g + momentum * buf if nesterov else buf
    return p - lr * step, buf


def adam_update(p, g, m, v, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
    """One Adam step for one parameter (Kingma & Ba 2015, Algorithm 1), as documented for
    ``torch.optim.Adam``::

        g     <- g + weight_decay * p          (L2 penalty; AdamW would decay p directly)
        m     <- beta1 m + (1 - beta1) g
        v     <- beta2 v + (1 - beta2) g^2
        m_hat  = m / (1 - beta1^t)             (bias corrections)
        v_hat  = v / (1 - beta2^t)
        p     <- p - lr m_hat / (sqrt(v_hat) + eps)

    Parameters
    ----------
    p, g : ndarray, same shape and floating dtype (not modified)
    m, v : ndarray
        The first and second moments from the previous step (zeros before the first).
    step : int
        ``t``, this parameter's own step count, this step included (1 at the first).
    lr, beta1, beta2, eps, weight_decay : float

    Returns
    -------
    p_new, m_new, v_new : ndarray

    References
    ----------
    Kingma & Ba 2015, "Adam", Algorithm 1; PyTorch documentation, ``torch.optim.Adam``.
    """
    if weight_decay:
        g = g + weight_decay * p
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * (g * g)
    m_hat = m / (1 - beta1**step)
    v_hat = v / (1 - beta2**step)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


# --------------------------------------------------------------------------------------
# The optimizers: the rules above, in place, for every parameter of a model
# --------------------------------------------------------------------------------------


class Optimizer:
    """Base class: argument checks and scratch memory shared by every optimizer.

    Attributes
    ----------
    state : dict
        ``state[name]``: the per-parameter state (see each subclass).
    t : int
        Number of steps taken.
    """

    def __init__(self):
        self.state: dict[str, dict] = {}
        self.t = 0  # number of steps taken
        self._scratch: dict[str, tuple] = {}

    def _check(self, params: dict, grads: dict) -> None:
        """Raise unless ``params`` and ``grads`` are dicts of matching float arrays."""
        if not isinstance(params, dict) or not isinstance(grads, dict):
            raise TypeError(f"params, grads: expected dicts name -> array, got {describe(params)}, {describe(grads)}")
        if params.keys() != grads.keys():
            raise ValueError(f"grads: expected the keys of params {sorted(params)}, got {sorted(grads)}")
        for name, p in params.items():
            g = grads[name]
            if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
                raise TypeError(f"params[{name!r}]: expected a floating ndarray (updated in place), "
                                f"got {describe(p)}")
            if not isinstance(g, np.ndarray) or g.shape != p.shape:
                raise ValueError(f"grads[{name!r}]: expected shape {p.shape}, got {describe(g)}")
            if g.dtype.kind != "f":
                raise TypeError(f"grads[{name!r}]: expected a floating array, got dtype {g.dtype}")

    def _scratch_like(self, name: str, p: np.ndarray, k: int = 0) -> np.ndarray:
        """Reusable work array ``k`` of ``p``'s shape and dtype, made once per parameter
        array (recognised by identity: a model's parameters are the same arrays at every
        step)."""
        entry = self._scratch.get(name)
        if entry is None or entry[0] is not p:
            entry = self._scratch[name] = (p, np.empty_like(p), np.empty_like(p))
        return entry[k + 1]

    def step(self, params: dict, grads: dict) -> None:  # pragma: no cover - interface
        """Update every array of ``params`` in place from ``grads``."""
        raise NotImplementedError

    def zero_state(self) -> None:
        """Forget all state (momentum buffers, moments, step count)."""
        self.state.clear()
        self._scratch.clear()
        self.t = 0


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov and L2 weight decay.

    PyTorch's ``torch.optim.SGD`` rule (:func:`sgd_update`), applied in place to every
    parameter. Gradients are read in the parameter's dtype.

    Parameters
    ----------
    lr : float > 0
    momentum, weight_decay, dampening : float >= 0
    nesterov : bool
        Requires ``momentum > 0`` and ``dampening == 0``, as in PyTorch.

    Notes
    -----
    NaN or infinite gradients propagate into the parameters, as in PyTorch;
    :func:`nnref.train.fit` stops before such a step.

    Attributes
    ----------
    state : dict
        ``state[name]["momentum_buffer"]``: the ``buf`` of :func:`sgd_update` (with
        momentum only).
    """

    def __init__(self, lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, dampening: float = 0.0):
        super().__init__()
        self.lr = check_positive(lr, "lr")
        self.momentum = check_nonnegative(momentum, "momentum")
        self.weight_decay = check_nonnegative(weight_decay, "weight_decay")
        self.dampening = check_nonnegative(dampening, "dampening")
        if nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError(
                f"nesterov: requires momentum > 0 and dampening = 0 (as in PyTorch), got "
                f"momentum={self.momentum}, dampening={self.dampening}"
            )
        self.nesterov = bool(nesterov)

    def step(self, params: dict, grads: dict) -> None:
        """Apply :func:`sgd_update` to every parameter, in place.

        Parameters
        ----------
        params, grads : dict name -> ndarray
            Same keys and shapes; ``params`` floating arrays, updated in place.
        """
        self._check(params, grads)
        self.t += 1
        for name, p in params.items():
            self._update(name, p, grads[name].astype(p.dtype, copy=False))

    def _update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        """:func:`sgd_update` in place: the same operations, written into ``p`` and the
        buffer, the product ``lr * g`` into a scratch array made once."""
        m = self.momentum
        if self.weight_decay:
            g = g + self.weight_decay * p
        if m:
            st = self.state.get(name)
            if st is None:
                buf = self.state.setdefault(name, {})["momentum_buffer"] = g.copy()
            else:
                buf = st["momentum_buffer"]
                buf *= m
                buf += g if self.dampening == 0 else (1 - self.dampening) * g  # 1.0 * g == g
            g = g + m * buf if self.nesterov else buf
        scaled = np.multiply(g, self.lr, out=self._scratch_like(name, p))
        p -= scaled

    def __repr__(self) -> str:
        return (f"SGD(lr={self.lr}, momentum={self.momentum}, nesterov={self.nesterov}, "
                f"weight_decay={self.weight_decay}, dampening={self.dampening})")


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015, Algorithm 1) as documented for ``torch.optim.Adam``
    (:func:`adam_update`), applied in place to every parameter.

    ``m = v = 0`` before the first step; at ``t = 1`` the bias correction makes
    ``m_hat = g`` and ``v_hat = g^2``, so the first step moves each entry by about ``lr``.

    Parameters
    ----------
    lr : float > 0
    betas : pair of floats in [0, 1)
    eps, weight_decay : float >= 0

    Notes
    -----
    NaN or infinite gradients propagate into the parameters and moments, as in PyTorch;
    :func:`nnref.train.fit` stops before such a step.

    Attributes
    ----------
    state : dict
        ``state[name]`` has ``exp_avg`` (m), ``exp_avg_sq`` (v) and ``step`` (t), created
        at the parameter's first step and updated in place afterwards.
    """

    def __init__(self, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__()
        self.lr = check_positive(lr, "lr")
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
        b1, b2 = (check_nonnegative(b, "betas") for b in betas)
        if not (b1 < 1 and b2 < 1):
            raise ValueError(f"betas: expected values in [0, 1), got {tuple(betas)}")
        self.betas = (b1, b2)
        self.eps = check_nonnegative(eps, "eps")
        self.weight_decay = check_nonnegative(weight_decay, "weight_decay")

    def step(self, params: dict, grads: dict) -> None:
        """Apply :func:`adam_update` to every parameter, in place.

        Parameters
        ----------
        params, grads : dict name -> ndarray
            Same keys and shapes; ``params`` floating arrays, updated in place.
        """
        self._check(params, grads)
        self.t += 1
        for name, p in params.items():
            self._update(name, p, grads[name].astype(p.dtype, copy=False))

    def _update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        """:func:`adam_update` in place: the same operations in the same order (products
        commuted, which is exact), intermediate results in two scratch arrays."""
        b1, b2 = self.betas
        st = self.state.get(name)
        if st is None:
            st = self.state[name] = {"step": 0, "exp_avg": np.zeros_like(p), "exp_avg_sq": np.zeros_like(p)}
        st["step"] += 1
        t, m, v = st["step"], st["exp_avg"], st["exp_avg_sq"]
        if self.weight_decay:
            g = g + self.weight_decay * p
        s1, s2 = self._scratch_like(name, p, 0), self._scratch_like(name, p, 1)
        m *= b1
        m += np.multiply(g, 1 - b1, out=s1)              # m = b1 m + (1 - b1) g
        np.multiply(g, g, out=s1)
        s1 *= 1 - b2
        v *= b2
        v += s1                                          # v = b2 v + (1 - b2) g^2
        np.divide(m, 1 - b1**t, out=s1)                  # m_hat
        s1 *= self.lr                                    # lr * m_hat
        np.divide(v, 1 - b2**t, out=s2)                  # v_hat
        np.sqrt(s2, out=s2)
        s2 += self.eps
        s1 /= s2
        p -= s1

    def __repr__(self) -> str:
        return f"Adam(lr={self.lr}, betas={self.betas}, eps={self.eps}, weight_decay={self.weight_decay})"
