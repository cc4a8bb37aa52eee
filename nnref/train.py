"""The training loop, and the record it keeps of every step.

One step of :func:`fit` (:func:`train_step`) is, in order::

    loss, grads = model.loss_and_grads(x_batch, y_batch)     # forward + manual backward
    norms = clip.grad_norms(grads)                           # ||grads||_2, each ||grads[name]||_2
    stop here if the loss or the norm is not finite          # no poisoned optimizer step
    grads = grad_transform(grads, params)                    # e.g. a clipper, or nothing
    optimizer.step(params, grads)                            # in place

and :class:`History` records the loss, the norms before and after the transform and
whether it changed anything. ``grad_transform`` is where gradient clipping plugs in:
``fit(..., grad_transform=clip.GlobalNorm(1.0))``. An nnref clipper
(:class:`nnref.clip.Clipper`) clips in place and reports the norms it computed
(:class:`nnref.clip.ClipResult`); any other callable ``(grads, params) -> grads`` is
measured.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from ._checks import as_float_array, as_rng, check_finite, check_int_in_range, check_labels, describe
from .clip import Clipper, ClipResult, GradNorms, global_l2_norm, grad_norms, l2_norm
from .mlp import LOSSES, MLP, loss_from_logits

__all__ = ["History", "StepResult", "fit", "train_step", "evaluate"]


@dataclass
class History:
    """Everything :func:`fit` measured.

    Per step (lists of length ``n_steps``): ``loss``; ``grad_norm`` (global L2 norm of the
    gradients before ``grad_transform``) and ``grad_norm_after`` (after it; equal without
    a transform); ``param_grad_norm[name]`` and ``param_grad_norm_after[name]``;
    ``clipped`` (True where the transform changed any gradient entry).

    Per epoch: ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc`` (full passes over the
    data at the end of each epoch; accuracy is NaN for regression), ``epoch_time`` (s, the
    whole epoch) and ``step_time`` (s, the epoch's training steps alone, without the
    evaluation passes).

    Per run: ``diverged`` and ``message`` (why training stopped early, if it did),
    ``transform`` (repr of the grad_transform), and :attr:`clip_fraction`.
    """

    loss: list = field(default_factory=list)
    grad_norm: list = field(default_factory=list)
    grad_norm_after: list = field(default_factory=list)
    param_grad_norm: dict = field(default_factory=dict)
    param_grad_norm_after: dict = field(default_factory=dict)
    clipped: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    train_acc: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_acc: list = field(default_factory=list)
    epoch_time: list = field(default_factory=list)
    step_time: list = field(default_factory=list)
    diverged: bool = False
    message: str = ""
    transform: str | None = None

    @property
    def n_steps(self) -> int:
        """Number of recorded steps."""
        return len(self.loss)

    @property
    def n_clipped(self) -> int:
        """Number of steps at which the transform changed the gradients."""
        return int(np.sum(self.clipped))

    @property
    def clip_fraction(self) -> float:
        """Fraction of steps at which the transform changed the gradients (0 if no steps)."""
        return self.n_clipped / self.n_steps if self.n_steps else 0.0

    def steps_per_epoch(self) -> float:
        """Steps per completed epoch (all steps if no epoch completed)."""
        return self.n_steps / max(len(self.train_loss), 1)

    def record_step(self, loss: float, result: ClipResult, names: list) -> None:
        """Append one step: its loss, and the norms and clipping of ``result``
        (``names``: the parameter names, in the order of ``result.norms``)."""
        self.loss.append(loss)
        self.grad_norm.append(result.total_norm)
        self.grad_norm_after.append(result.total_norm_after)
        self.clipped.append(result.acted)
        before, after = self.param_grad_norm, self.param_grad_norm_after
        for name, n, n_after in zip(names, result.norms, result.norms_after):
            if name not in before:
                before[name], after[name] = [], []
            before[name].append(n)
            after[name].append(n_after)

    def summary(self) -> str:
        """One line: steps, final losses/accuracies, clipping rate, divergence."""
        parts = [f"{self.n_steps} steps"]
        if self.train_loss:
            parts.append(f"train loss {self.train_loss[-1]:.4g}")
        if self.val_acc and np.isfinite(self.val_acc[-1]):
            parts.append(f"val acc {100 * self.val_acc[-1]:.2f}%")
        if self.transform:
            parts.append(f"clipped {self.n_clipped}/{self.n_steps} steps ({100 * self.clip_fraction:.1f}%)")
        if self.diverged:
            parts.append(f"DIVERGED: {self.message}")
        return ", ".join(parts)


@dataclass
class StepResult:
    """What :func:`train_step` did.

    Attributes
    ----------
    loss : float
        The batch loss the gradients came from.
    clip : ClipResult
        The gradients that were applied, with their norms before and after the transform
        and whether it changed them (``acted``); with no transform, unchanged.
    stepped : bool
        False when the loss or the gradient norm was not finite: the optimizer step was
        then NOT applied (it would have written NaN or inf into every parameter).
    """

    loss: float
    clip: ClipResult
    stepped: bool


def _unchanged(grads, measured: GradNorms) -> ClipResult:
    """The result of no transform: the same gradients and norms."""
    norms = list(measured.norms)
    return ClipResult(grads, norms, measured.total, norms, measured.total, False)


def _measure_transform(transform, grads: dict, params: dict, measured: GradNorms) -> ClipResult:
    """Apply a callable that is not an nnref clipper, check what it returned, measure it."""
    new = transform(grads, params)
    if not isinstance(new, dict) or new.keys() != grads.keys():
        got = f"dict with keys {sorted(new)}" if isinstance(new, dict) else type(new).__name__
        raise TypeError(f"grad_transform: expected it to return a dict with keys {sorted(grads)}, got {got}")
    for k, g in grads.items():
        v = new[k]
        if not isinstance(v, np.ndarray) or v.shape != g.shape or v.dtype.kind != "f":
            raise ValueError(f"grad_transform: returned grads[{k!r}] should be a float array of shape "
                             f"{g.shape}, got {describe(v)}")
        check_finite(v, f"grad_transform: returned grads[{k!r}] (not applied)")
    after = [l2_norm(new[k]) for k in grads]
    acted = any(a != b for a, b in zip(after, measured.norms)) or any(
        new[k] is not g and not np.array_equal(new[k], g) for k, g in grads.items())
    return ClipResult(new, list(measured.norms), measured.total, after, global_l2_norm(after), acted)


def train_step(model, optimizer, x_batch, y_batch, loss: str = "cross_entropy",
               grad_transform=None, params: dict | None = None) -> StepResult:
    """One training step: forward and backward, the gradients' norms, the transform (an
    nnref clipper works in place), the optimizer step.

    Parameters
    ----------
    model : MLP
    optimizer : an :mod:`nnref.optim` optimizer
    x_batch, y_batch : ndarray
        One batch (inputs, and labels or targets).
    loss : {"cross_entropy", "mse"}
    grad_transform : Clipper or callable ``(grads, params) -> grads``, optional
    params : dict, optional
        ``model.params`` (the same arrays at every step, so a loop fetches them once).

    Returns
    -------
    StepResult

    Raises
    ------
    TypeError, ValueError
        ``grad_transform`` returned something other than finite float gradients of the
        right keys and shapes (nothing is applied then).
    """
    value, grads = model.loss_and_grads(x_batch, y_batch, loss)
    params = model.params if params is None else params
    measured = grad_norms(grads)
    if not (math.isfinite(value) and math.isfinite(measured.total)):
        return StepResult(value, _unchanged(grads, measured), False)
    if grad_transform is None:
        result = _unchanged(grads, measured)
    elif isinstance(grad_transform, Clipper):
        result = grad_transform.clip(grads, params, inplace=True, norms=measured)
    else:
        result = _measure_transform(grad_transform, grads, params, measured)
    optimizer.step(params, result.grads)
    return StepResult(value, result, True)


def evaluate(model, x: np.ndarray, y: np.ndarray, loss: str = "cross_entropy",
             batch_size: int = 4096) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on ``(x, y)``, in batches.

    Parameters
    ----------
    model : MLP
    x : array_like, shape (N, in_features)
    y : array_like
        Labels ``(N,)`` (or targets ``(N, out)`` with ``loss="mse"``).
    loss : {"cross_entropy", "mse"}
    batch_size : int >= 1

    Returns
    -------
    loss, accuracy : float
        Accuracy is NaN for ``loss="mse"``.
    """
    model = _check_model(model)
    loss = _check_loss(loss)
    x = _check_inputs(x, model, "x")
    y = _check_targets(y, x.shape[0], model, loss, "y")
    batch_size = check_int_in_range(batch_size, "batch_size", 1, 10**9)
    return _evaluate(model, x, y, loss, batch_size)


def _evaluate(model, x: np.ndarray, y: np.ndarray, loss: str, batch_size: int = 4096) -> tuple[float, float]:
    """:func:`evaluate` on inputs and targets already checked."""
    n = x.shape[0]
    total, correct = 0.0, 0
    with model.inputs_checked():
        for start in range(0, n, batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            logits = model.forward(xb)  # one pass gives both the loss and the predictions
            value, _ = loss_from_logits(logits, yb, loss, check_targets=False)
            total += value * len(xb)
            if loss == "cross_entropy":
                correct += int(np.sum(np.argmax(logits, axis=1) == yb))
    acc = correct / n if loss == "cross_entropy" else float("nan")
    return total / n, acc


#: What fit and evaluate use of a model: an MLP has all of it; a wrapper such as
#: :class:`nnref.prune.SharedWeightMLP` provides the same.
MODEL_PROTOCOL = ("params", "forward", "loss_and_grads", "check_input", "inputs_checked",
                  "in_features", "n_outputs", "dtype")


def _check_model(model) -> MLP:
    """``model`` after checking it is an :class:`~nnref.mlp.MLP` or has :data:`MODEL_PROTOCOL`."""
    if isinstance(model, MLP):
        return model
    missing = [name for name in MODEL_PROTOCOL if not hasattr(model, name)]
    if missing:
        raise TypeError(f"model: expected an nnref.mlp.MLP (or a model with {', '.join(MODEL_PROTOCOL)}), "
                        f"got {describe(model)}, which lacks {', '.join(missing)}")
    return model


def _check_loss(loss) -> str:
    """``loss`` after checking it names a loss of :data:`nnref.mlp.LOSSES`."""
    if not isinstance(loss, str) or loss not in LOSSES:
        raise ValueError(f"loss: expected one of {LOSSES}, got {loss!r}")
    return loss


def _check_inputs(x, model, name: str) -> np.ndarray:
    """Inputs for ``model``: shape first (the cheap check), then the model's own check."""
    x = as_float_array(x, name, ndim=2, finite=False)
    if x.shape[1] != model.in_features:
        raise ValueError(f"{name}: expected {model.in_features} features per example, got shape {x.shape}")
    return model.check_input(x, name)


def _check_targets(y, n: int, model, loss: str, name: str) -> np.ndarray:
    """Labels ``(n,)`` (cross-entropy) or targets ``(n, n_outputs)`` (MSE), checked."""
    if loss == "cross_entropy":
        return check_labels(y, n, model.n_outputs, name)
    y = as_float_array(y, name, ndim=2)
    if y.shape != (n, model.n_outputs):
        raise ValueError(f"{name}: expected targets of shape ({n}, {model.n_outputs}), got {y.shape}")
    return y


def _check_fit_args(model, optimizer, x, y, epochs, batch_size, seed, validation, grad_transform, loss,
                    out=None):
    """Every argument of :func:`fit`, checked before any work; returns the checked ones."""
    model = _check_model(model)
    if not callable(getattr(optimizer, "step", None)):
        raise TypeError(f"optimizer: expected an optimizer with a step(params, grads) method "
                        f"(nnref.optim.SGD, Adam), got {describe(optimizer)}")
    loss = _check_loss(loss)
    x = _check_inputs(x, model, "x")
    y = _check_targets(y, x.shape[0], model, loss, "y")
    epochs = check_int_in_range(epochs, "epochs", 1, 10**9)
    batch_size = check_int_in_range(batch_size, "batch_size", 1, 10**9)
    val = None
    if validation is not None:
        if not (isinstance(validation, (tuple, list)) and len(validation) == 2):
            raise TypeError("validation: expected a pair (x_val, y_val) or None")
        xv = _check_inputs(validation[0], model, "validation[0]")
        val = (xv, _check_targets(validation[1], xv.shape[0], model, loss, "validation[1]"))
    if grad_transform is not None and not callable(grad_transform):
        raise TypeError(f"grad_transform: expected a callable (grads, params) -> grads, got {grad_transform!r}")
    if out is not None and not callable(getattr(out, "write", None)):
        raise TypeError(f"out: expected a text stream with a write method (or None), got {describe(out)}")
    return model, x, y, epochs, batch_size, as_rng(seed), val, loss


def fit(model, optimizer, x: np.ndarray, y: np.ndarray, epochs: int, batch_size: int,
        seed=0, validation=None, grad_transform=None, verbose: bool = True,
        loss: str = "cross_entropy", out=None) -> History:
    """Train ``model`` with mini-batch ``optimizer`` steps; return a :class:`History`.

    Parameters
    ----------
    model : MLP
    optimizer : an :mod:`nnref.optim` optimizer (anything with ``step(params, grads)``)
    x, y : array_like
        Training inputs ``(N, in)`` and labels ``(N,)`` (or targets ``(N, out)`` with
        ``loss="mse"``), checked once here, not per batch.
    epochs, batch_size : int >= 1
        Each epoch visits every example once, in an order drawn from ``seed``; the last
        batch of an epoch may be smaller.
    seed : int >= 0 or numpy.random.Generator
        The same seed gives bitwise identical parameters.
    validation : (x_val, y_val), optional
        Evaluated at the end of each epoch.
    grad_transform : callable ``(grads, params) -> grads``, optional
        Applied between backward and the optimizer (gradient clipping: see
        :mod:`nnref.clip`; an nnref clipper works in place on the model's gradients).
    verbose : bool
        Print one progress line per epoch (to ``out``, default stdout).
    loss : {"cross_entropy", "mse"}

    Returns
    -------
    History

    Raises
    ------
    TypeError, ValueError
        A bad argument (before any step), or a ``grad_transform`` result that is not
        finite float gradients of the right keys and shapes (before it is applied).

    Notes
    -----
    A non-finite loss or gradient norm stops training at once, BEFORE the optimizer step:
    an optimizer propagates NaN as PyTorch's does (one NaN gradient makes every
    parameter it touches NaN), so the parameters are left as the last finite step made
    them. The offending value is recorded, ``history.diverged`` is set and
    ``history.message`` (also printed when verbose) says at which epoch and step.
    """
    model, x, y, epochs, batch_size, rng, val, loss = _check_fit_args(
        model, optimizer, x, y, epochs, batch_size, seed, validation, grad_transform, loss, out)
    out = out if out is not None else sys.stdout
    h = History(transform=repr(grad_transform) if grad_transform is not None else None)
    params = model.params
    names = list(params)
    for name in names:
        h.param_grad_norm[name], h.param_grad_norm_after[name] = [], []
    n = x.shape[0]
    with model.inputs_checked():
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            order = rng.permutation(n)
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                step = train_step(model, optimizer, x[idx], y[idx], loss, grad_transform, params)
                h.record_step(step.loss, step.clip, names)
                if not step.stepped:
                    what = "loss" if not math.isfinite(step.loss) else "gradient norm"
                    h.diverged = True
                    h.message = (f"non-finite {what} at epoch {epoch}, step {h.n_steps} "
                                 f"(loss={step.loss}, grad norm={step.clip.total_norm}); training stopped")
                    break
            h.step_time.append(time.perf_counter() - t0)
            if h.diverged:
                if verbose:
                    print(f"epoch {epoch:3d}: {h.message}", file=out)
                break
            _end_of_epoch(h, model, x, y, val, loss, epoch, epochs, grad_transform, n, batch_size, t0, verbose, out)
            if h.diverged:
                break
    return h


def _end_of_epoch(h: History, model, x, y, val, loss, epoch, epochs, grad_transform, n, batch_size,
                  t0, verbose, out) -> None:
    """Evaluate on the training (and validation) data, record, print the epoch's line."""
    tl, ta = _evaluate(model, x, y, loss)
    h.train_loss.append(tl)
    h.train_acc.append(ta)
    line = f"epoch {epoch:3d}/{epochs}: train loss {tl:.4f}"
    if loss == "cross_entropy":
        line += f", acc {100 * ta:.2f}%"
    if val is not None:
        vl, va = _evaluate(model, val[0], val[1], loss)
        h.val_loss.append(vl)
        h.val_acc.append(va)
        line += f" | val loss {vl:.4f}" + (f", acc {100 * va:.2f}%" if loss == "cross_entropy" else "")
    if grad_transform is not None:
        steps = h.clipped[-(len(range(0, n, batch_size))):]
        line += f" | clipped {int(np.sum(steps))}/{len(steps)} steps"
    h.epoch_time.append(time.perf_counter() - t0)
    if not np.isfinite(tl):
        h.diverged = True
        h.message = f"non-finite training loss after epoch {epoch}; training stopped"
        line += f" | {h.message}"
    if verbose:
        print(line, file=out)
