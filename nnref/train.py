"""The training loop, and the record it keeps of every step.

One step of :func:`fit` is, in order::

    loss, grads = model.loss_and_grads(x_batch, y_batch)     # forward + manual backward
    record ||grads||_2 and each ||grads[name]||_2            # before any transform
    grads = grad_transform(grads, params)                    # e.g. a clipper, or nothing
    record the norms again, and whether anything changed
    optimizer.step(params, grads)                            # in place

``grad_transform`` is where gradient clipping plugs in: ``fit(...,
grad_transform=clip.GlobalNorm(1.0))``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np

from ._checks import as_float_array, as_rng, check_int_in_range, check_labels, describe
from .clip import l2_norm
from .mlp import loss_from_logits

__all__ = ["History", "fit", "evaluate"]


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
        return self.n_steps / max(len(self.train_loss), 1)

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


def evaluate(model, x: np.ndarray, y: np.ndarray, loss: str = "cross_entropy",
             batch_size: int = 4096) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on ``(x, y)``, in batches (accuracy is NaN for
    ``loss="mse"``). Returns ``(loss, accuracy)`` as Python floats."""
    x = as_float_array(x, "x", ndim=2)
    batch_size = check_int_in_range(batch_size, "batch_size", 1, 10**9)
    n = x.shape[0]
    total, correct = 0.0, 0
    for start in range(0, n, batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        logits = model.forward(xb)  # one pass gives both the loss and the predictions
        value, _ = loss_from_logits(logits, yb, loss)
        total += value * len(xb)
        if loss == "cross_entropy":
            correct += int(np.sum(np.argmax(logits, axis=1) == yb))
    acc = correct / n if loss == "cross_entropy" else float("nan")
    return total / n, acc


def _check_transformed(new, grads: dict) -> None:
    """``grad_transform`` must return gradients of the structure it was given."""
    if not isinstance(new, dict) or new.keys() != grads.keys():
        got = f"dict with keys {sorted(new)}" if isinstance(new, dict) else type(new).__name__
        raise TypeError(f"grad_transform: expected it to return a dict with keys {sorted(grads)}, got {got}")
    for k, g in grads.items():
        v = new[k]
        if not isinstance(v, np.ndarray) or v.shape != g.shape or v.dtype.kind != "f":
            raise ValueError(f"grad_transform: returned grads[{k!r}] should be a float array of shape "
                             f"{g.shape}, got {describe(v)}")


def _check_targets(y, n: int, model, loss: str, name: str) -> np.ndarray:
    if loss == "cross_entropy":
        return check_labels(y, n, model.n_outputs, name)
    y = as_float_array(y, name, ndim=2)
    if y.shape != (n, model.n_outputs):
        raise ValueError(f"{name}: expected targets of shape ({n}, {model.n_outputs}), got {y.shape}")
    return y


def fit(model, optimizer, x: np.ndarray, y: np.ndarray, epochs: int, batch_size: int,
        seed=0, validation=None, grad_transform=None, verbose: bool = True,
        loss: str = "cross_entropy", out=None) -> History:
    """Train ``model`` with mini-batch ``optimizer`` steps; return a :class:`History`.

    Parameters
    ----------
    x, y : training inputs ``(N, in)`` and labels ``(N,)`` (or targets ``(N, out)`` with
        ``loss="mse"``).
    epochs, batch_size : positive ints. Each epoch visits every example once, in an order
        drawn from ``seed`` (a seed or Generator): the same seed gives bitwise identical
        parameters. The last batch of an epoch may be smaller.
    validation : optional ``(x_val, y_val)`` evaluated at the end of each epoch.
    grad_transform : optional callable ``(grads, params) -> grads`` applied between backward
        and the optimizer (gradient clipping: see :mod:`nnref.clip`).
    verbose : print one progress line per epoch (to ``out``, default stdout).

    A non-finite loss or gradient norm stops training at once: the offending value is
    recorded in the history, ``history.diverged`` is set and ``history.message`` (also
    printed when verbose) says at which epoch and step.
    """
    x = as_float_array(x, "x", ndim=2)
    if x.shape[1] != model.in_features:
        raise ValueError(f"x: expected {model.in_features} features per example, got shape {x.shape}")
    n = x.shape[0]
    y = _check_targets(y, n, model, loss, "y")
    epochs = check_int_in_range(epochs, "epochs", 1, 10**9)
    batch_size = check_int_in_range(batch_size, "batch_size", 1, 10**9)
    if validation is not None:
        if not (isinstance(validation, (tuple, list)) and len(validation) == 2):
            raise TypeError("validation: expected a pair (x_val, y_val) or None")
        xv = as_float_array(validation[0], "validation[0]", ndim=2)
        if xv.shape[1] != model.in_features:
            raise ValueError(f"validation[0]: expected {model.in_features} features, got shape {xv.shape}")
        yv = _check_targets(validation[1], xv.shape[0], model, loss, "validation[1]")
    if grad_transform is not None and not callable(grad_transform):
        raise TypeError(f"grad_transform: expected a callable (grads, params) -> grads, got {grad_transform!r}")
    out = out if out is not None else sys.stdout
    rng = as_rng(seed)
    x = x.astype(model.dtype, copy=False)

    h = History(transform=repr(grad_transform) if grad_transform is not None else None)
    params = model.params
    for name in params:
        h.param_grad_norm[name] = []
        h.param_grad_norm_after[name] = []

    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            value, grads = model.loss_and_grads(x[idx], y[idx], loss)
            # clip's own L2 norm, so the total handed to a clipper is clip_by_global_norm's
            norms = {k: l2_norm(g) for k, g in grads.items()}
            total = float(np.sqrt(sum(v * v for v in norms.values())))
            h.loss.append(value)
            h.grad_norm.append(total)
            for k, v in norms.items():
                h.param_grad_norm[k].append(v)
            if not (np.isfinite(value) and np.isfinite(total)):
                what = "loss" if not np.isfinite(value) else "gradient norm"
                h.diverged = True
                h.message = (f"non-finite {what} at epoch {epoch}, step {h.n_steps} "
                             f"(loss={value}, grad norm={total}); training stopped")
                h.grad_norm_after.append(total)
                h.clipped.append(False)
                for k, v in norms.items():
                    h.param_grad_norm_after[k].append(v)
                break
            if grad_transform is not None:
                if getattr(grad_transform, "accepts_total_norm", False):
                    new = grad_transform(grads, params, total_norm=total)  # norm known: reuse it
                else:
                    new = grad_transform(grads, params)
                _check_transformed(new, grads)
                # An nnref clipper says whether it acted and, for a global scaling, by what
                # factor, which gives the new norms for free; any other transform is
                # measured: different norms settle it, else the entries are compared.
                changed = getattr(grad_transform, "last_clipped", None)
                scale = getattr(grad_transform, "last_scale", None)
                if changed is False:
                    norms_after = norms
                elif isinstance(scale, float) and np.isfinite(scale):
                    norms_after = {k: v * scale for k, v in norms.items()}
                else:
                    norms_after = {k: l2_norm(g) for k, g in new.items()}
                if not isinstance(changed, bool):
                    changed = any(norms_after[k] != norms[k] for k in grads) or any(
                        new[k] is not grads[k] and not np.array_equal(new[k], grads[k]) for k in grads)
                grads = new
            else:
                changed, norms_after = False, norms
            h.clipped.append(bool(changed))
            h.grad_norm_after.append(float(np.sqrt(sum(v * v for v in norms_after.values()))))
            for k, v in norms_after.items():
                h.param_grad_norm_after[k].append(v)
            optimizer.step(params, grads)
        h.step_time.append(time.perf_counter() - t0)
        if h.diverged:
            if verbose:
                print(f"epoch {epoch:3d}: {h.message}", file=out)
            break
        tl, ta = evaluate(model, x, y, loss)
        h.train_loss.append(tl)
        h.train_acc.append(ta)
        line = f"epoch {epoch:3d}/{epochs}: train loss {tl:.4f}"
        if loss == "cross_entropy":
            line += f", acc {100 * ta:.2f}%"
        if validation is not None:
            vl, va = evaluate(model, xv, yv, loss)
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
        if h.diverged:
            break
    return h
