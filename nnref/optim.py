"""Optimizers, following the update rules documented for PyTorch's ``torch.optim.SGD`` and
``torch.optim.Adam`` exactly (the pseudo-code in their documentation).

``step(params, grads)`` updates every array of ``params`` *in place* from the matching
array of ``grads`` (both dicts keyed ``W1, b1, ...``). The per-parameter state is a plain
dict in ``optimizer.state[name]`` that can be inspected at any step.
"""

from __future__ import annotations

import numpy as np

from ._checks import check_nonnegative, check_positive, describe

__all__ = ["Optimizer", "SGD", "Adam"]


class Optimizer:
    """Base class: validation shared by every optimizer."""

    def __init__(self):
        self.state: dict[str, dict] = {}
        self.t = 0  # number of steps taken

    def _check(self, params: dict, grads: dict) -> None:
        if not isinstance(params, dict) or not isinstance(grads, dict):
            raise TypeError(f"params, grads: expected dicts name -> array, got {describe(params)}, {describe(grads)}")
        if params.keys() != grads.keys():
            raise ValueError(f"grads: expected the keys of params {sorted(params)}, got {sorted(grads)}")
        for name, p in params.items():
            g = grads[name]
            if type(p) is not np.ndarray or p.dtype.kind != "f":
                if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
                    raise TypeError(f"params[{name!r}]: expected a floating ndarray (updated in place), "
                                    f"got {describe(p)}")
            if not isinstance(g, np.ndarray) or g.shape != p.shape:
                raise ValueError(f"grads[{name!r}]: expected shape {p.shape}, got {describe(g)}")
            if g.dtype.kind != "f":
                raise TypeError(f"grads[{name!r}]: expected a floating array, got dtype {g.dtype}")

    def step(self, params: dict, grads: dict) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def zero_state(self) -> None:
        """Forget all state (momentum buffers, moments, step count)."""
        self.state.clear()
        self.t = 0


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov and L2 weight decay.

    PyTorch's ``torch.optim.SGD`` rule, per parameter ``p`` with gradient ``g`` at step t::

        g <- g + weight_decay * p
        if momentum != 0:
            b <- g                                   (t = 1)
            b <- momentum * b + (1 - dampening) * g  (t > 1)
            g <- g + momentum * b   if nesterov else   g <- b
        p <- p - lr * g

    State: ``state[name]["momentum_buffer"]`` (the ``b`` above).
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
        self._check(params, grads)
        self.t += 1
        for name, p in params.items():
            g = grads[name]
            if self.weight_decay:
                g = g + self.weight_decay * p
            if self.momentum:
                st = self.state.setdefault(name, {})
                if "momentum_buffer" not in st:
                    st["momentum_buffer"] = np.array(g, dtype=p.dtype, copy=True)
                else:
                    b = st["momentum_buffer"]
                    b *= self.momentum
                    b += (1 - self.dampening) * g
                b = st["momentum_buffer"]
                g = g + self.momentum * b if self.nesterov else b
            p -= self.lr * g

    def __repr__(self) -> str:
        return (f"SGD(lr={self.lr}, momentum={self.momentum}, nesterov={self.nesterov}, "
                f"weight_decay={self.weight_decay}, dampening={self.dampening})")


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015, Algorithm 1) as documented for ``torch.optim.Adam``::

        g <- g + weight_decay * p              (L2 penalty; AdamW would decay p directly)
        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g^2
        m_hat = m / (1 - beta1^t)              (bias correction; t starts at 1)
        v_hat = v / (1 - beta2^t)
        p <- p - lr * m_hat / (sqrt(v_hat) + eps)

    with ``m = v = 0`` before the first step. At ``t = 1`` the bias correction makes
    ``m_hat = g`` and ``v_hat = g^2``, so the first step moves each entry by about ``lr``.
    State: ``state[name]`` has ``exp_avg`` (m), ``exp_avg_sq`` (v) and ``step`` (t).
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
        self._check(params, grads)
        self.t += 1
        b1, b2 = self.betas
        for name, p in params.items():
            g = grads[name]
            if self.weight_decay:
                g = g + self.weight_decay * p
            st = self.state.setdefault(
                name, {"step": 0, "exp_avg": np.zeros_like(p), "exp_avg_sq": np.zeros_like(p)}
            )
            st["step"] += 1
            t = st["step"]
            m, v = st["exp_avg"], st["exp_avg_sq"]
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * (g * g)
            m_hat = m / (1 - b1**t)
            v_hat = v / (1 - b2**t)
            p -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)

    def __repr__(self) -> str:
        return f"Adam(lr={self.lr}, betas={self.betas}, eps={self.eps}, weight_decay={self.weight_decay})"
