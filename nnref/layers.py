"""Layers with hand-written backward passes.

Each formula is first a plain function, the arithmetic alone (``linear_forward``,
``linear_backward``, ``relu_forward``, ``relu_backward``, ``leaky_relu_forward``,
``leaky_relu_backward``, ``tanh_backward``, ``sigmoid_backward``), as CS231n's
``layers.py`` writes them. The layer classes call those functions: ``forward(x)`` caches
exactly what the backward needs, and ``backward(grad_out)`` uses only that cache and
returns ``dL/dx``. Forward and backward sit side by side, so the chain rule can be read
off one screen.

Shapes: ``x`` is ``(batch, features)``; ``grad_out`` has the shape of the layer's output.
"""

from __future__ import annotations

import numpy as np

from ._checks import as_rng, check_float_dtype, check_nonnegative, check_positive, describe

__all__ = [
    "linear_forward",
    "linear_backward",
    "relu_forward",
    "relu_backward",
    "leaky_relu_forward",
    "leaky_relu_backward",
    "tanh_backward",
    "sigmoid_backward",
    "Layer",
    "Linear",
    "ReLU",
    "LeakyReLU",
    "Tanh",
    "Sigmoid",
    "INITIALIZERS",
    "init_weight",
    "he_normal",
    "he_uniform",
    "xavier_normal",
    "xavier_uniform",
    "ACTIVATIONS",
    "make_activation",
]

# --------------------------------------------------------------------------------------
# The formulas: plain functions, no validation (the layer classes below call them)
# --------------------------------------------------------------------------------------


def linear_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Affine map ``y = x @ W + b``.

    Parameters
    ----------
    x : ndarray, shape (B, in)
    W : ndarray, shape (in, out)
    b : ndarray, shape (out,)

    Returns
    -------
    y : ndarray, shape (B, out), a new array (the inputs are not modified).

    References
    ----------
    CS231n, ``affine_forward`` (assignment 2, ``layers.py``).
    """
    y = x @ W
    y += b  # y is new: adding in place saves a temporary, the inputs stay untouched
    return y


def linear_backward(x: np.ndarray, W: np.ndarray | None, grad_out: np.ndarray):
    """Gradients of ``y = x @ W + b`` from ``g = dL/dy``::

        dx = g @ W^T         (B, in)
        dW = x^T @ g         (in, out)
        db = sum_rows g      (out,)

    Parameters
    ----------
    x : ndarray, shape (B, in)
        The forward's input.
    W : ndarray, shape (in, out), or None
        None skips ``dx`` (returned as None): the first layer of a network needs no input
        gradient, and it is the largest product of the backward pass.
    grad_out : ndarray, shape (B, out)

    Returns
    -------
    dx, dW, db : ndarrays (``dx`` None when ``W`` is None).

    References
    ----------
    CS231n, ``affine_backward``.
    """
    dx = None if W is None else grad_out @ W.T
    return dx, x.T @ grad_out, grad_out.sum(axis=0)


def relu_forward(x: np.ndarray) -> np.ndarray:
    """``y = max(x, 0)`` entrywise (CS231n ``relu_forward``); same shape and dtype."""
    return np.maximum(x, 0)


def relu_backward(x: np.ndarray, grad_out: np.ndarray) -> np.ndarray:
    """``dx = g * [x > 0]``: the subgradient 0 is taken at ``x = 0`` (CS231n
    ``relu_backward``). ``x`` is the forward's input; shapes equal."""
    return grad_out * (x > 0)


def leaky_relu_forward(x: np.ndarray, alpha: float) -> np.ndarray:
    """``y = x if x > 0 else alpha x`` entrywise (Maas et al. 2013); any ``alpha >= 0``.

    ``alpha * x`` keeps a float array's dtype (a Python float does not promote it).
    """
    return np.where(x > 0, x, alpha * x)


def leaky_relu_backward(x: np.ndarray, grad_out: np.ndarray, alpha: float) -> np.ndarray:
    """``dx = where(x > 0, g, alpha g)`` (slope ``alpha`` on the non-positive side, any
    ``alpha >= 0``, also ``> 1``). ``x`` is the forward's input."""
    return np.where(x > 0, grad_out, alpha * grad_out)


def tanh_backward(y: np.ndarray, grad_out: np.ndarray) -> np.ndarray:
    """``dx = g (1 - y^2)`` with ``y = tanh(x)`` the forward's OUTPUT (``tanh' = 1 - tanh^2``)."""
    return grad_out * (1 - y * y)


def sigmoid_backward(y: np.ndarray, grad_out: np.ndarray) -> np.ndarray:
    """``dx = g y (1 - y)`` with ``y = sigma(x)`` the forward's OUTPUT
    (``sigma' = sigma (1 - sigma)``)."""
    return grad_out * y * (1 - y)


# --------------------------------------------------------------------------------------
# Initializers
# --------------------------------------------------------------------------------------


def _check_fans(fan_in, fan_out) -> None:
    """Raise ``ValueError`` unless both fans are positive integers."""
    for name, v in (("fan_in", fan_in), ("fan_out", fan_out)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name}: expected a positive integer, got {v!r}")


def he_normal(fan_in: int, fan_out: int, rng, gain: float = 1.0, dtype=np.float32) -> np.ndarray:
    """Kaiming/He normal: ``W ~ N(0, std^2)``, ``std = gain * sqrt(2 / fan_in)``.

    Keeps the variance of ReLU pre-activations constant from layer to layer.

    Parameters
    ----------
    fan_in, fan_out : int >= 1
    rng : int seed or numpy.random.Generator
    gain : float
        Multiplies ``std``.
    dtype : numpy float dtype

    Returns
    -------
    ndarray, shape (fan_in, fan_out)

    References
    ----------
    He et al. 2015, "Delving Deep into Rectifiers", eq. 10.
    """
    _check_fans(fan_in, fan_out)
    std = gain * np.sqrt(2.0 / fan_in)
    return (as_rng(rng).standard_normal((fan_in, fan_out)) * std).astype(dtype)


def he_uniform(fan_in: int, fan_out: int, rng, gain: float = 1.0, dtype=np.float32) -> np.ndarray:
    """Kaiming/He uniform: ``W ~ U(-a, a)``, ``a = gain * sqrt(6 / fan_in)``.

    The same variance ``2 / fan_in`` as :func:`he_normal`, since ``Var U(-a, a) = a^2 / 3``.
    Parameters and return as :func:`he_normal`.
    """
    _check_fans(fan_in, fan_out)
    a = gain * np.sqrt(6.0 / fan_in)
    return as_rng(rng).uniform(-a, a, (fan_in, fan_out)).astype(dtype)


def xavier_normal(fan_in: int, fan_out: int, rng, gain: float = 1.0, dtype=np.float32) -> np.ndarray:
    """Xavier/Glorot normal: ``W ~ N(0, std^2)``, ``std = gain * sqrt(2 / (fan_in + fan_out))``.

    Balances forward and backward variance for tanh/sigmoid networks. Parameters and
    return as :func:`he_normal`.

    References
    ----------
    Glorot & Bengio 2010, "Understanding the difficulty of training deep feedforward
    neural networks", eq. 12 (normal form).
    """
    _check_fans(fan_in, fan_out)
    std = gain * np.sqrt(2.0 / (fan_in + fan_out))
    return (as_rng(rng).standard_normal((fan_in, fan_out)) * std).astype(dtype)


def xavier_uniform(fan_in: int, fan_out: int, rng, gain: float = 1.0, dtype=np.float32) -> np.ndarray:
    """Xavier/Glorot uniform: ``W ~ U(-a, a)``, ``a = gain * sqrt(6 / (fan_in + fan_out))``.

    Parameters and return as :func:`he_normal`.

    References
    ----------
    Glorot & Bengio 2010, eq. 16.
    """
    _check_fans(fan_in, fan_out)
    a = gain * np.sqrt(6.0 / (fan_in + fan_out))
    return as_rng(rng).uniform(-a, a, (fan_in, fan_out)).astype(dtype)


INITIALIZERS = {
    "he": he_normal,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "xavier": xavier_normal,
    "xavier_normal": xavier_normal,
    "xavier_uniform": xavier_uniform,
}


def init_weight(init: str, fan_in: int, fan_out: int, rng, gain: float = 1.0, dtype=np.float32) -> np.ndarray:
    """Draw a ``(fan_in, fan_out)`` weight matrix with the named initializer.

    Parameters
    ----------
    init : str
        A key of :data:`INITIALIZERS` (``"he"``, ``"he_uniform"``, ``"xavier"``, ...).
    fan_in, fan_out, rng, gain, dtype
        As :func:`he_normal`.

    Raises
    ------
    ValueError
        An unknown ``init``.
    """
    if not isinstance(init, str) or init not in INITIALIZERS:
        raise ValueError(f"init: expected one of {sorted(INITIALIZERS)}, got {init!r}")
    return INITIALIZERS[init](fan_in, fan_out, rng, gain=gain, dtype=dtype)


# --------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------


class Layer:
    """Base class: a differentiable map with a cache between forward and backward."""

    def forward(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        """The layer's output for ``x``, caching what the backward needs."""
        raise NotImplementedError

    def backward(self, grad_out: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        """``dL/dx`` from ``dL/dy``, using only the cache of the last forward."""
        raise NotImplementedError

    def clear_cache(self) -> None:
        """Forget what the last forward cached (and the gradients of the last backward)."""
        for name in ("_x", "_y", "dW", "db"):
            if hasattr(self, name):
                setattr(self, name, None)

    def _check_grad(self, grad_out, expected_shape) -> np.ndarray:
        """``grad_out`` after checking it has the output's shape (and a forward ran)."""
        if expected_shape is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        if not isinstance(grad_out, np.ndarray) or grad_out.shape != expected_shape:
            raise ValueError(
                f"grad_out: expected an array of the output's shape {expected_shape}, "
                f"got {describe(grad_out)}"
            )
        return grad_out

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Linear(Layer):
    """Affine layer ``y = x @ W + b``.

    Shapes: ``x (B, in)``, ``W (in, out)``, ``b (out,)``, ``y (B, out)``. Backward, from
    ``g = dL/dy``::

        dL/dW = x^T @ g          (in, out)
        dL/db = sum_batch g      (out,)
        dL/dx = g @ W^T          (B, in)

    ``W`` is stored ``(in, out)`` so the forward reads like the math; TensorFlow Lite and
    PyTorch store ``(out, in)``, which is why nnref's output channels are *columns*.

    Parameters
    ----------
    in_features, out_features : int >= 1
    init : str
        Weight initializer (:func:`init_weight`); the bias starts at zero.
    seed : int >= 0 or numpy.random.Generator
    dtype : numpy float dtype
    gain : float > 0
        Multiplies the initializer's standard deviation.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        init: str = "he",
        seed=0,
        dtype=np.float32,
        gain: float = 1.0,
    ):
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name}: expected a positive integer, got {v!r}")
        check_positive(gain, "gain")
        dtype = check_float_dtype(dtype)
        self.W = init_weight(init, int(in_features), int(out_features), seed, gain=gain, dtype=dtype)
        self.b = np.zeros(int(out_features), dtype=dtype)
        self.dW: np.ndarray | None = None
        self.db: np.ndarray | None = None
        self._x: np.ndarray | None = None

    @property
    def in_features(self) -> int:
        """Input width (rows of ``W``)."""
        return self.W.shape[0]

    @property
    def out_features(self) -> int:
        """Output width (columns of ``W``)."""
        return self.W.shape[1]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``linear_forward(x, W, b)`` for ``x`` of shape ``(B, in)`` (cast to ``W``'s
        dtype), caching ``x``."""
        W = self.W
        if not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[1] != W.shape[0]:
            raise ValueError(f"x: expected an array of shape (batch, {W.shape[0]}), got {describe(x)}")
        x = x.astype(W.dtype, copy=False)
        self._x = x
        return linear_forward(x, W, self.b)

    def backward(self, grad_out: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """:func:`linear_backward` with the cached ``x``: store ``dW``, ``db``; return
        ``dL/dx``.

        Parameters
        ----------
        grad_out : ndarray, shape (B, out)
        input_grad : bool
            False returns None instead of ``dL/dx``: the first layer of a network needs no
            input gradient, and skipping it saves the largest product of the backward.
        """
        x = self._x
        g = self._check_grad(grad_out, None if x is None else (x.shape[0], self.out_features))
        dx, self.dW, self.db = linear_backward(x, self.W if input_grad else None, g)
        return dx

    def per_example_grads(self, grad_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each example's own ``(dW_i, db_i)``, without a loop over examples.

        ``dW_i = outer(x_i, g_i)`` (shape ``(B, in, out)``) and ``db_i = g_i``
        (``(B, out)``): the outer-product trick of DP-SGD implementations (Abadi et al.
        2016; Goodfellow 2015, "Efficient per-example gradient computations").
        ``sum_i dW_i`` equals :meth:`backward`'s ``dW``.
        """
        x = self._x
        g = self._check_grad(grad_out, None if x is None else (x.shape[0], self.out_features))
        return np.einsum("bi,bo->bio", x, g), g.copy()

    def __repr__(self) -> str:
        return f"Linear({self.in_features}, {self.out_features}, dtype={self.W.dtype})"


class ReLU(Layer):
    """``y = max(x, 0)``; ``dL/dx = g * [x > 0]`` (the subgradient 0 is taken at x = 0)."""

    def __init__(self):
        self._x: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``relu_forward(x)``, caching ``x`` for the backward."""
        self._x = x
        return relu_forward(x)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """``relu_backward(x, grad_out)`` with the cached ``x``."""
        x = self._x
        g = self._check_grad(grad_out, None if x is None else x.shape)
        return relu_backward(x, g)


class LeakyReLU(Layer):
    """``y = x if x > 0 else alpha * x``; ``dL/dx = g * (1 if x > 0 else alpha)``
    (Maas et al. 2013)."""

    def __init__(self, alpha: float = 0.01):
        self.alpha = check_nonnegative(alpha, "alpha")
        self._x: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``leaky_relu_forward(x, alpha)``, caching ``x``. No cast back to ``x``'s dtype,
        which would truncate the negative side of an integer input to 0."""
        self._x = x
        return leaky_relu_forward(x, self.alpha)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """``leaky_relu_backward(x, grad_out, alpha)`` with the cached ``x``."""
        x = self._x
        g = self._check_grad(grad_out, None if x is None else x.shape)
        return leaky_relu_backward(x, g, self.alpha)

    def __repr__(self) -> str:
        return f"LeakyReLU(alpha={self.alpha})"


class Tanh(Layer):
    """``y = tanh(x)``; ``dL/dx = g * (1 - y^2)``: the backward needs only the output."""

    def __init__(self):
        self._y: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``tanh(x)``, caching the output."""
        self._y = np.tanh(x)
        return self._y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """``tanh_backward(y, grad_out)`` with the cached output ``y``."""
        y = self._y
        g = self._check_grad(grad_out, None if y is None else y.shape)
        return tanh_backward(y, g)


def stable_sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` without overflow: for ``x < 0`` use the equal form
    ``exp(x) / (1 + exp(x))``, so ``exp`` only ever sees non-positive arguments."""
    x = np.asarray(x)
    if x.dtype.kind != "f":  # integers: casting the result back would truncate it to 0/1
        x = x.astype(np.float64)
    # For |x| beyond ~745 (float64) e^-|x| underflows to 0, which is the correctly rounded
    # result; silence the underflow flag so this also runs under np.errstate(all="raise").
    with np.errstate(under="ignore"):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


class Sigmoid(Layer):
    """``y = sigma(x) = 1 / (1 + e^-x)``; ``dL/dx = g * y * (1 - y)``.

    Stable for large ``|x|`` (see :func:`stable_sigmoid`): ``Sigmoid()(-1000)`` is 0, not a
    warning and a NaN.
    """

    def __init__(self):
        self._y: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``stable_sigmoid(x)``, caching the output."""
        self._y = stable_sigmoid(x)
        return self._y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """``sigmoid_backward(y, grad_out)`` with the cached output ``y``."""
        y = self._y
        g = self._check_grad(grad_out, None if y is None else y.shape)
        return sigmoid_backward(y, g)


ACTIVATIONS = {"relu": ReLU, "leaky_relu": LeakyReLU, "tanh": Tanh, "sigmoid": Sigmoid}


def make_activation(name: str) -> Layer:
    """A new activation layer by name: one of ``relu, leaky_relu, tanh, sigmoid``."""
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()
