"""The multilayer perceptron: a stack of :class:`~nnref.layers.Linear` layers with an
activation between each pair, trained by hand-written backprop.

``MLP([64, 32, 10])`` is ``Linear(64, 32) -> ReLU -> Linear(32, 10)``; the last layer
outputs logits (no activation). Parameters and gradients are plain arrays in dicts keyed
``W1, b1, W2, b2, ...`` so they can be inspected, checked and handed to clip functions
and optimizers.
"""

from __future__ import annotations

import copy
import os

import numpy as np

from ._checks import as_float_array, as_rng, check_labels, describe
from ._npz import read_archive, write_archive
from .layers import ACTIVATIONS, Layer, Linear, make_activation
from .losses import _softmax_cross_entropy, mse, softmax

__all__ = ["MLP", "LOSSES", "loss_from_logits"]

LOSSES = ("cross_entropy", "mse")
_FORMAT = "nnref.MLP"
_FORMAT_VERSION = 1


def loss_from_logits(logits: np.ndarray, y: np.ndarray, loss: str = "cross_entropy") -> tuple[float, np.ndarray]:
    """``(loss, dL/dlogits)`` for a model's logits ``(B, C)``: softmax cross-entropy with
    class indices ``y`` ``(B,)``, or mean squared error with targets ``y`` ``(B, C)``.

    Non-finite logits give ``(nan, all-NaN)`` instead of an error: a model's inputs are
    checked finite, so non-finite logits mean its weights diverged (or a product
    overflowed). That is the model's state, not bad input, and :func:`nnref.train.fit`
    records it as divergence.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss: expected one of {LOSSES}, got {loss!r}")
    if not np.isfinite(logits.sum()) and not np.all(np.isfinite(logits)):
        return float("nan"), np.full_like(logits, np.nan)
    if loss == "cross_entropy":
        # The logits were just checked finite: skip the public function's re-check.
        return _softmax_cross_entropy(logits, check_labels(y, logits.shape[0], logits.shape[1]))
    return mse(logits, y)


class MLP:
    """Multilayer perceptron with manual backprop.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``[in, hidden..., out]``, at least two entries, all positive.
    activation : {"relu", "leaky_relu", "tanh", "sigmoid"}
        Between every pair of Linear layers (not after the last).
    init : {"he", "he_uniform", "xavier", "xavier_uniform", ...}
        Weight initializer (see :mod:`nnref.layers`); biases start at zero.
    seed : int or numpy.random.Generator
        Drives the initialization: the same seed gives bitwise identical weights.
    dtype : float32 (default) or float64.
    gain : float
        Multiplies the initializer's standard deviation (1.0: the textbook value). A large
        gain is how :mod:`nnref.experiments` makes gradients explode.

    Forward: ``h_0 = x``, ``z_l = h_{l-1} @ W_l + b_l``, ``h_l = act(z_l)``; logits ``z_L``.
    Backward walks the layers in reverse, each using only what its forward cached.
    """

    def __init__(self, layer_sizes, activation: str = "relu", init: str = "he", seed=0,
                 dtype=np.float32, gain: float = 1.0):
        try:
            sizes = None if isinstance(layer_sizes, (str, bytes)) else list(layer_sizes)
        except TypeError:  # not iterable (None, an int): reported below with the expected form
            sizes = None
        if (
            sizes is None
            or len(sizes) < 2
            or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in sizes)
        ):
            raise ValueError(
                f"layer_sizes: expected a list of at least two positive integers, got {layer_sizes!r}"
            )
        if activation not in ACTIVATIONS:  # checked here too: a 2-layer MLP has no activation
            raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}, got {activation!r}")
        dtype = np.dtype(dtype)
        if dtype not in (np.float16, np.float32, np.float64):
            raise TypeError(f"dtype: expected float16, float32 or float64, got {dtype}")
        rng = as_rng(seed)
        self.layer_sizes = [int(s) for s in sizes]
        self.activation = activation
        self.init = init
        self.dtype = dtype
        self.layers: list[Layer] = []
        for i, (n_in, n_out) in enumerate(zip(self.layer_sizes[:-1], self.layer_sizes[1:])):
            # float16 weights are drawn in float32 then rounded, so a float16 model starts
            # from the float32 model's weights rounded (same seed, comparable runs).
            draw = np.float32 if dtype == np.float16 else dtype
            lin = Linear(n_in, n_out, init=init, seed=rng, dtype=draw, gain=gain)
            lin.W, lin.b = lin.W.astype(dtype), lin.b.astype(dtype)
            self.layers.append(lin)
            if i < len(self.layer_sizes) - 2:
                self.layers.append(make_activation(activation))

    # ---------------------------------------------------------------- parameters
    @property
    def linears(self) -> list[Linear]:
        """The Linear layers in order (``W1`` is ``linears[0].W``)."""
        return [layer for layer in self.layers if isinstance(layer, Linear)]

    @property
    def params(self) -> dict[str, np.ndarray]:
        """``{"W1": W1, "b1": b1, ...}``: the model's own arrays (optimizers update them in
        place), not copies."""
        out = {}
        for i, lin in enumerate(self.linears, start=1):
            out[f"W{i}"] = lin.W
            out[f"b{i}"] = lin.b
        return out

    @property
    def grads(self) -> dict[str, np.ndarray]:
        """``{"W1": dL/dW1, "b1": dL/db1, ...}`` from the last :meth:`backward`."""
        out = {}
        for i, lin in enumerate(self.linears, start=1):
            if lin.dW is None:
                raise RuntimeError("grads: no gradients yet; call backward (or loss_and_grads) first")
            out[f"W{i}"] = lin.dW
            out[f"b{i}"] = lin.db
        return out

    def set_params(self, params: dict[str, np.ndarray]) -> None:
        """Copy ``params`` (same keys and shapes as :attr:`params`) into the model."""
        own = self.params
        if set(params) != set(own):
            raise ValueError(f"params: expected keys {sorted(own)}, got {sorted(params)}")
        for name, arr in params.items():
            a = np.asarray(arr)
            if a.shape != own[name].shape:
                raise ValueError(f"params[{name!r}]: expected shape {own[name].shape}, got {a.shape}")
            own[name][...] = a

    @property
    def n_params(self) -> int:
        return sum(p.size for p in self.params.values())

    @property
    def in_features(self) -> int:
        return self.layer_sizes[0]

    @property
    def n_outputs(self) -> int:
        return self.layer_sizes[-1]

    # ---------------------------------------------------------------- forward / backward
    def _check_x(self, x) -> np.ndarray:
        x = as_float_array(x, "x", ndim=2)
        if x.shape[1] != self.in_features:
            raise ValueError(
                f"x: expected {self.in_features} features per example (shape (batch, "
                f"{self.in_features})), got shape {x.shape}"
            )
        return x.astype(self.dtype, copy=False)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Logits ``(B, n_outputs)`` for inputs ``x`` of shape ``(B, in_features)``."""
        h = self._check_x(x)
        for layer in self.layers:
            h = layer.forward(h)
        return h

    def backward(self, dlogits: np.ndarray) -> dict[str, np.ndarray]:
        """Backpropagate ``dL/dlogits`` through every layer; return :attr:`grads`."""
        g = dlogits
        for k, layer in enumerate(reversed(self.layers)):
            if isinstance(layer, Linear):
                g = layer.backward(g, input_grad=k < len(self.layers) - 1)
            else:
                g = layer.backward(g)
        return self.grads

    def loss(self, x: np.ndarray, y: np.ndarray, loss: str = "cross_entropy") -> tuple[float, np.ndarray]:
        """Forward pass and loss: ``(loss, dL/dlogits)`` (see :func:`loss_from_logits`)."""
        return loss_from_logits(self.forward(x), y, loss)

    def loss_and_grads(self, x: np.ndarray, labels: np.ndarray, loss: str = "cross_entropy"):
        """``(loss, grads)`` for one batch: forward, loss, backward."""
        value, dlogits = self.loss(x, labels, loss)
        return value, self.backward(dlogits)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class indices ``argmax_j logits[:, j]`` (int64, shape ``(B,)``)."""
        return np.argmax(self.forward(x), axis=1).astype(np.int64)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities ``softmax(logits)``, shape ``(B, n_outputs)``."""
        return softmax(self.forward(x))

    def accuracy(self, x: np.ndarray, labels: np.ndarray) -> float:
        """Fraction of examples whose predicted class equals the label."""
        x = self._check_x(x)
        y = check_labels(labels, x.shape[0], self.n_outputs)
        return float(np.mean(self.predict(x) == y))

    def per_example_grads(self, x: np.ndarray, labels: np.ndarray, loss: str = "cross_entropy"):
        """Each example's own gradient, as ``{"W1": (B, in, out), "b1": (B, out), ...}``.

        Example ``i``'s gradient is that of its own loss ``L_i`` (not divided by ``B``), so
        the mean over the batch axis equals :meth:`loss_and_grads`' gradient of the mean
        loss. Computed in one batched pass: the output gradient of every example is
        backpropagated together and each Linear layer forms the outer products
        ``x_i g_i^T`` (see :meth:`Linear.per_example_grads`) instead of looping over
        examples. :attr:`grads` is left as it was. Used for DP-SGD clipping (:func:`nnref.clip.per_example_clip`).
        """
        _, dlogits = self.loss(x, labels, loss)
        # Both losses are means over the batch, L = (1/B) sum_i L_i, so dL_i/dz_i = B dL/dz_i.
        g = dlogits * dlogits.shape[0]
        out: dict[str, np.ndarray] = {}
        saved = [(lin.dW, lin.db) for lin in self.linears]  # leave model.grads as it was
        n = len(self.linears)
        for layer in reversed(self.layers):
            if isinstance(layer, Linear):
                dW, db = layer.per_example_grads(g)
                out[f"W{n}"], out[f"b{n}"] = dW, db
                n -= 1
                g = layer.backward(g)
            else:
                g = layer.backward(g)
        for lin, (dW, db) in zip(self.linears, saved):
            lin.dW, lin.db = dW, db
        return {k: out[k] for k in self.params}

    # ---------------------------------------------------------------- copies
    def copy(self) -> "MLP":
        """A deep copy (parameters, optimizer-independent)."""
        return copy.deepcopy(self)

    def astype(self, dtype) -> "MLP":
        """A copy with every parameter cast to ``dtype`` (e.g. float64 for gradient checks,
        float16 for half-precision evaluation)."""
        new = self.copy()
        new.dtype = np.dtype(dtype)
        for lin in new.linears:
            lin.W = lin.W.astype(dtype)
            lin.b = lin.b.astype(dtype)
            lin.dW = lin.db = None
            lin._x = None
        return new

    def __repr__(self) -> str:
        return (f"MLP({self.layer_sizes}, activation={self.activation!r}, "
                f"dtype={self.dtype.name}, n_params={self.n_params})")

    # ---------------------------------------------------------------- save / load
    def save(self, path) -> None:
        """Write the architecture and parameters to an ``.npz`` file (no pickles)."""
        arrays = {
            "layer_sizes": np.array(self.layer_sizes, dtype=np.int64),
            "activation": np.array(self.activation),
            "init": np.array(self.init),
            "dtype": np.array(self.dtype.name),
        }
        arrays.update(self.params)
        write_archive(path, _FORMAT, _FORMAT_VERSION, arrays)

    @classmethod
    def load(cls, path) -> "MLP":
        """Read a model written by :meth:`save`. Loaded with ``allow_pickle=False``; a
        missing, truncated, foreign or inconsistent file raises ``ValueError`` (or
        ``FileNotFoundError``) naming the file."""
        path = os.fspath(path)
        arrays = read_archive(path, _FORMAT, _FORMAT_VERSION, "MLP")
        try:
            sizes = [int(s) for s in arrays["layer_sizes"]]
            model = cls(sizes, activation=str(arrays["activation"]), init=str(arrays["init"]),
                        dtype=np.dtype(str(arrays["dtype"])))
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}: inconsistent architecture record ({exc})") from None
        for name, own in model.params.items():
            if name not in arrays:
                raise ValueError(f"{path}: missing parameter {name!r}")
            arr = arrays[name]
            if arr.shape != own.shape or arr.dtype != own.dtype:
                raise ValueError(
                    f"{path}: parameter {name!r} expected {own.dtype}{own.shape} for layer sizes "
                    f"{sizes}, got {describe(arr)}"
                )
            own[...] = arr
        extra = set(arrays) - set(model.params) - {"format", "format_version", "layer_sizes",
                                                   "activation", "init", "dtype"}
        if extra:
            raise ValueError(f"{path}: unexpected entries {sorted(extra)}")
        return model
