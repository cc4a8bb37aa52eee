"""The multilayer perceptron: a stack of :class:`~nnref.layers.Linear` layers with an
activation between each pair, trained by hand-written backprop.

``MLP([64, 32, 10])`` is ``Linear(64, 32) -> ReLU -> Linear(32, 10)``; the last layer
outputs logits (no activation). Parameters and gradients are plain arrays in dicts keyed
``W1, b1, W2, b2, ...`` so they can be inspected, checked and handed to clip functions
and optimizers.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os

import numpy as np

from ._checks import as_float_array, as_rng, check_float_dtype, check_labels, describe
from ._npz import read_archive, write_archive
from .layers import ACTIVATIONS, Layer, Linear, make_activation
from .losses import cross_entropy_loss_and_grad, mse, softmax

__all__ = ["MLP", "LOSSES", "loss_from_logits"]

LOSSES = ("cross_entropy", "mse")
_FORMAT = "nnref.MLP"
_FORMAT_VERSION = 1


def loss_from_logits(logits: np.ndarray, y: np.ndarray, loss: str = "cross_entropy",
                     check_targets: bool = True) -> tuple[float, np.ndarray]:
    """``(loss, dL/dlogits)`` for a model's logits.

    Parameters
    ----------
    logits : ndarray, shape (B, C)
    y : ndarray
        Class indices ``(B,)`` for ``loss="cross_entropy"`` (softmax cross-entropy,
        :func:`~nnref.losses.cross_entropy_loss_and_grad`), targets ``(B, C)`` for
        ``loss="mse"``.
    loss : {"cross_entropy", "mse"}
    check_targets : bool
        Validate the class indices (a caller that validated the whole data set once
        passes False).

    Returns
    -------
    loss : float
    dlogits : ndarray, shape (B, C)

    Notes
    -----
    Non-finite logits give ``(nan, all-NaN)`` instead of an error: a model's inputs are
    checked finite, so non-finite logits mean its weights diverged (or a product
    overflowed). That is the model's state, not bad input, and :func:`nnref.train.fit`
    records it as divergence.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss: expected one of {LOSSES}, got {loss!r}")
    if not math.isfinite(np.add.reduce(logits, axis=None)) and not np.all(np.isfinite(logits)):
        return float("nan"), np.full_like(logits, np.nan)
    if loss == "cross_entropy":
        labels = check_labels(y, logits.shape[0], logits.shape[1]) if check_targets else y
        return cross_entropy_loss_and_grad(logits, labels)
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
    dtype : float16, float32 (default) or float64
    gain : float
        Multiplies the initializer's standard deviation (1.0: the textbook value). A large
        gain is how :mod:`nnref.experiments` makes gradients explode.

    Notes
    -----
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
        if not isinstance(activation, str) or activation not in ACTIVATIONS:  # a 2-layer MLP has none
            raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}, got {activation!r}")
        dtype = check_float_dtype(dtype)
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
        """Copy ``params`` (same keys and shapes as :attr:`params`) into the model.

        Raises
        ------
        ValueError
            Other keys or shapes, or NaN/infinite values (a model with them predicts
            nothing meaningful).
        TypeError
            A non-numeric array.
        """
        own = self.params
        if not isinstance(params, dict):
            raise TypeError(f"params: expected a dict name -> array, got {describe(params)}")
        if set(params) != set(own):
            raise ValueError(f"params: expected keys {sorted(own)}, got {sorted(params)}")
        checked = {}
        for name, arr in params.items():
            a = as_float_array(arr, f"params[{name!r}]", allow_empty=True)
            if a.shape != own[name].shape:
                raise ValueError(f"params[{name!r}]: expected shape {own[name].shape}, got {a.shape}")
            checked[name] = a
        for name, a in checked.items():  # all checked first: a refusal changes nothing
            own[name][...] = a

    @property
    def n_params(self) -> int:
        """Number of parameters (weights and biases)."""
        return sum(p.size for p in self.params.values())

    @property
    def in_features(self) -> int:
        """Input width."""
        return self.layer_sizes[0]

    @property
    def n_outputs(self) -> int:
        """Output width (classes)."""
        return self.layer_sizes[-1]

    # ---------------------------------------------------------------- forward / backward
    _inputs_checked = False  # True inside inputs_checked(): forward trusts its input

    def check_input(self, x, name: str = "x") -> np.ndarray:
        """``x`` as a ``(batch, in_features)`` array of the model's dtype, after checking it.

        Parameters
        ----------
        x : array_like
        name : str
            The argument's name in error messages.

        Raises
        ------
        TypeError
            Not a real numeric array.
        ValueError
            Not 2-D, the wrong number of features, empty, non-finite entries, or values
            that overflow the model's dtype (1e300 into a float32 model).
        """
        if self._inputs_checked:
            return x.astype(self.dtype, copy=False)
        x = as_float_array(x, name, ndim=2)
        if x.shape[1] != self.in_features:
            raise ValueError(
                f"{name}: expected {self.in_features} features per example (shape (batch, "
                f"{self.in_features})), got shape {x.shape}"
            )
        if x.dtype == self.dtype:
            return x
        with np.errstate(over="ignore", invalid="ignore"):
            cast = x.astype(self.dtype)
            flat = cast.ravel()  # a finite sum of squares proves every entry finite (fast)
            finite = np.isfinite(np.dot(flat, flat)) or np.isfinite(cast).all()
        if not finite:
            big = float(np.max(np.abs(x)))
            raise ValueError(f"{name}: expected values within the model's {self.dtype} range "
                             f"(|x| <= {float(np.finfo(self.dtype).max):.4g}), got |x| up to {big:.4g}")
        return cast

    _check_x = check_input  # the name nnref.quant.qat and nnref.quant.report call

    @contextlib.contextmanager
    def inputs_checked(self):
        """A block in which :meth:`forward` and :meth:`loss` trust their inputs.

        For a caller that has validated a whole data set once (:func:`nnref.train.fit`,
        :func:`nnref.train.evaluate`) and then feeds it batch by batch: inputs are only
        cast to the model's dtype, class labels are not re-checked.
        """
        previous = self._inputs_checked
        self._inputs_checked = True
        try:
            yield self
        finally:
            self._inputs_checked = previous

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Logits ``(B, n_outputs)`` for inputs ``x`` of shape ``(B, in_features)``."""
        h = self.check_input(x)
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
        return loss_from_logits(self.forward(x), y, loss, check_targets=not self._inputs_checked)

    def loss_and_grads(self, x: np.ndarray, labels: np.ndarray, loss: str = "cross_entropy"):
        """``(loss, grads)`` for one batch: forward, loss, backward."""
        value, dlogits = self.loss(x, labels, loss)
        return value, self.backward(dlogits)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class indices ``argmax_j logits[:, j]`` (int64, shape ``(B,)``).

        Raises
        ------
        ValueError
            Bad inputs (see :meth:`check_input`), or inputs that overflow the model's dtype
            inside the network (non-finite logits, which would all predict class 0).
        """
        return np.argmax(self.finite_logits(x), axis=1).astype(np.int64)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities ``softmax(logits)``, shape ``(B, n_outputs)``; raises as :meth:`predict`."""
        return softmax(self.finite_logits(x))

    def finite_logits(self, x: np.ndarray) -> np.ndarray:
        """:meth:`forward`'s logits after checking every one is finite.

        Raises
        ------
        ValueError
            Naming ``x`` and the first rows whose logits overflowed the model's dtype.
        """
        with np.errstate(over="ignore", invalid="ignore"):  # reported below as an error
            logits = self.forward(x)
        finite = np.isfinite(logits).all(axis=1)  # (B, n_outputs): cheap next to the forward
        if not finite.all():
            rows = np.flatnonzero(~finite)
            raise ValueError(f"x: expected inputs this model maps to finite logits; rows {rows[:5].tolist()} "
                             f"(of {rows.size}) overflow {self.dtype} inside the network")
        return logits

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
        """A copy with every parameter cast to the float ``dtype`` (float64 for gradient
        checks, float16 for half-precision evaluation); gradients and caches are not
        copied.

        Raises
        ------
        TypeError
            An integer or other non-float dtype (it would truncate the weights).
        """
        dtype = check_float_dtype(dtype)
        new = self.copy()
        new.dtype = dtype
        for layer in new.layers:
            layer.clear_cache()
            if isinstance(layer, Linear):
                layer.W = layer.W.astype(dtype)
                layer.b = layer.b.astype(dtype)
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
        """Read a model written by :meth:`save` (``allow_pickle=False``).

        Parameters
        ----------
        path : str or os.PathLike

        Returns
        -------
        MLP

        Raises
        ------
        TypeError
            ``path`` is not a path.
        FileNotFoundError
            No such file.
        ValueError
            A truncated, foreign (``.npy``, other formats) or inconsistent file, or
            non-finite parameters, naming the file.
        """
        if not isinstance(path, (str, bytes, os.PathLike)):
            raise TypeError(f"path: expected a file path (str or os.PathLike), got {describe(path)}")
        path = os.fspath(path)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                if f.read(6) == b"\x93NUMPY":
                    raise ValueError(f"{path}: a .npy array file, expected an nnref MLP .npz model file")
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
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                raise ValueError(f"{path}: parameter {name!r} holds NaN or infinite values")
            own[...] = arr
        extra = set(arrays) - set(model.params) - {"format", "format_version", "layer_sizes",
                                                   "activation", "init", "dtype"}
        if extra:
            raise ValueError(f"{path}: unexpected entries {sorted(extra)}")
        return model
