r"""Exploding gradients, made to happen on purpose, and gradient clipping stopping them.

The setting (:func:`exploding_gradient_demo`, all of it seeded)
----------------------------------------------------------------
A ReLU network ``MLP([4, 32, 32, 1])`` (He init, float32) regresses a target that nobody
standardized: ``y = S * w^T x`` with ``x ~ N(0, I_4)``, ``||w|| = 1`` and ``S = 30``, so
``y ~ N(0, S^2)``. Loss: mean squared error over a batch of ``B = 32``; optimizer: plain
SGD, ``eta = 0.03``; 50 epochs of 256 examples (400 steps). Two runs share everything
(data, initial weights, batch order, lr); the second one clips the global gradient norm
to ``c = 1`` before each step. The plain run overflows in its second epoch (step 12);
the clipped one ends with a training loss near 1e-3 of ``var(y)``.

Why the gradients explode
-------------------------
Write ``f_i = f_theta(x_i)`` and the error ``e_i = f_i - y_i``. For
``L = (1/B) sum_i e_i^2``::

    grad L = (2/B) sum_i e_i * grad_theta f_i                                  (1)

1. **The gradient grows with the error.** At initialisation ``f_i`` is O(1) while
   ``y_i`` is O(S), so ``e_i ~ -y_i`` and, by (1), ``grad L`` grows linearly with S
   (measured at the first step: norm about 150, against about 6 for the same network
   and batch with ``S = 1``).

2. **One step on a quadratic.** To first order an SGD step moves the outputs by
   ``f <- f - eta J grad L`` with ``J`` the ``B x P`` Jacobian of the outputs, so by (1)::

       e <- (I - eta K) e,        K = (2/B) J J^T                              (2)

   ``K`` is the Gauss-Newton curvature (its nonzero eigenvalues are those of the
   Gauss-Newton matrix ``(2/B) J^T J``, the Hessian of ``L`` for a model linear in
   ``theta``). Along an eigenvector of ``K`` with eigenvalue ``lambda`` the error is
   multiplied by ``1 - eta lambda``: it shrinks when ``eta lambda < 2`` and overshoots
   into a *larger* error of the opposite sign when ``eta lambda > 2``. That is the rule
   for gradient descent on any quadratic: learning rate times curvature below 2.

3. **In a network the curvature is not fixed.** The entries of ``grad_theta f`` are
   hidden activations (for the last layer's weights) and products of the later layers'
   weights (for the earlier ones), so ``K``, a sum of their squares, grows at least like
   the square of the weights' scale. At initialisation ``eta lambda_max(K)`` is about 1.7
   here, below 2, and with ``S = 1`` plain SGD trains without trouble. With ``S = 30``
   the first step has length ``eta ||grad L||``, about 4.5 on weights of norm about 11,
   and it leaves ``eta lambda`` near 8, the second above 200 (measured); by (2) the error
   then grows, the next gradient is larger, the next step longer, the curvature larger
   still. Since the factor ``|1 - eta lambda|`` itself grows at every step, the loss grows
   faster than geometrically: float32 overflows within a dozen steps.

How clipping stops it
---------------------
Clipping by global norm (Pascanu, Mikolov & Bengio 2013, "On the difficulty of training
recurrent neural networks", arXiv 1211.5063; PyTorch's ``clip_grad_norm_``) replaces
``g`` by ``g * min(1, c / ||g||)``, so *every* step has length
``||Delta theta|| <= eta c``, whatever the error. The weights, and with them the
curvature, change only a little per step, the loop of point 3 never starts, and the run
walks to the solution.

Clipping acts at every step of this run, and that is not a flaw of the demonstration: a
network whose output is 30 times larger is also more sensitive to its weights (by point
3, the sensitivity to one layer is the product of the others), so the solution itself
is sharp: ``eta lambda`` ends near 17 (:func:`sharpness`, reported by
:meth:`DemoResult.report`), a place where plain SGD with this lr cannot stay. Clipped
SGD there is normalized gradient descent with step ``eta c`` and settles within about
that distance of the valley floor. Curvature that grows with the gradient,
``||Hess L|| <= L0 + L1 ||grad L||``, is the "(L0, L1)-smoothness" under which Zhang,
He, Sra & Jadbabaie (ICLR 2020, "Why gradient clipping accelerates training: a
theoretical justification for adaptivity") prove that clipped gradient descent can
converge arbitrarily faster than gradient descent with any fixed step size.

The control ``exploding_gradient_demo(target_scale=1.0)`` shows the scale is the cause:
same lr, same initial weights, and plain SGD converges.

:func:`compare_clippers` runs the same setting with each clipper of :mod:`nnref.clip`
(by value, per-tensor norm, global norm, adaptive, AutoClip) for side-by-side plots.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import clip
from ._checks import as_float_array, as_rng, check_int_in_range, check_positive, describe
from .mlp import MLP
from .optim import SGD
from .train import History, fit

__all__ = [
    "DemoResult",
    "compare_clippers",
    "default_clippers",
    "exploding_gradient_demo",
    "final_loss",
    "make_regression_data",
    "sharpness",
]

# The demonstration's fixed choices (the arguments of exploding_gradient_demo vary the rest).
N_EXAMPLES = 256
N_FEATURES = 4
LAYER_SIZES = [N_FEATURES, 32, 32, 1]
ACTIVATION = "relu"
BATCH_SIZE = 32
DEFAULT_EPOCHS = 50
DEFAULT_LR = 0.03
DEFAULT_TARGET_SCALE = 30.0


def make_regression_data(n: int = N_EXAMPLES, seed: int | np.random.Generator = 0,
                         n_features: int = N_FEATURES,
                         target_scale: float = DEFAULT_TARGET_SCALE) -> tuple[np.ndarray, np.ndarray]:
    """A linear regression task whose target has not been standardized.

    ``x ~ N(0, I_d)`` (``n x d``), a direction ``w = u / ||u||`` with ``u ~ N(0, I_d)``, and
    ``y = S * x @ w`` (``n x 1``) with ``S = target_scale``, so each ``y_i ~ N(0, S^2)``
    and predicting 0 (or the mean) costs an MSE of about ``S^2``. The task is linear on
    purpose: the only hard thing about it is its scale. Returns float64 ``(x, y)``; ``seed``
    (an int or a ``numpy.random.Generator``) determines both, ``x`` drawn first.
    """
    n = check_int_in_range(n, "n", 1, 10**8)
    n_features = check_int_in_range(n_features, "n_features", 1, 10**5)
    scale = check_positive(target_scale, "target_scale")
    rng = as_rng(seed)
    x = rng.standard_normal((n, n_features))
    u = rng.standard_normal(n_features)
    w = u / np.linalg.norm(u)
    y = scale * (x @ w)
    return x, y[:, None]


def sharpness(model: MLP, x: np.ndarray) -> float:
    """Largest eigenvalue of the Gauss-Newton curvature of the MSE at ``model``'s weights.

    For a single-output model and ``L = (1/N) sum_i (f_i - y_i)^2`` over the ``N`` rows of
    ``x``::

        K = (2/N) J J^T,   J[i, :] = grad_theta f_theta(x_i)   (N x P)
        sharpness = lambda_max(K)

    ``K`` has the nonzero eigenvalues of the Gauss-Newton matrix ``(2/N) J^T J``, which is
    the Hessian of ``L`` when ``f`` is linear in ``theta`` and its dominant part near a
    good fit. It does not depend on the targets. Gradient descent with learning rate
    ``eta`` is stable along the top direction only if ``eta * sharpness < 2`` (eq. 2 of the
    module docstring; the "sharpness" of Cohen et al., ICLR 2021, "Gradient descent on
    neural networks typically occurs at the edge of stability", there of the full
    Hessian). For a single Linear layer it is ``lambda_max((2/N) X X^T)`` with
    ``X = [x, 1]``, exactly the Hessian of linear least squares.

    ``model``: an :class:`~nnref.mlp.MLP` with one output (it is not modified; the
    computation runs on a float64 copy). ``x``: ``(N, in_features)`` finite. Returns a
    Python float >= 0. Cost: an ``N x N`` eigenproblem, so keep ``N`` in the thousands.
    """
    if not isinstance(model, MLP):
        raise TypeError(f"model: expected an nnref.mlp.MLP, got {describe(model)}")
    if model.n_outputs != 1:
        raise ValueError(f"model: expected a model with one output, got layer sizes {model.layer_sizes}")
    x = as_float_array(x, "x", ndim=2, dtype=np.float64)
    if x.shape[1] != model.in_features:
        raise ValueError(f"x: expected shape (N, {model.in_features}), got {x.shape}")
    bad = [k for k, v in model.params.items() if not np.all(np.isfinite(v))]
    if bad:
        raise ValueError(f"model: expected finite parameters, got NaN/inf in {bad} (a diverged run?)")
    m = model.astype(np.float64)
    f = m.forward(x)
    # per_example_grads gives d(e_i^2)/d theta = 2 e_i grad f_i; with targets f - 1/2
    # every e_i is 1/2, so it gives the Jacobian rows grad f_i themselves.
    rows = m.per_example_grads(x, f - 0.5, loss="mse")
    jac = np.concatenate([g.reshape(x.shape[0], -1) for g in rows.values()], axis=1)
    k = (2.0 / x.shape[0]) * (jac @ jac.T)
    return float(max(np.linalg.eigvalsh(k)[-1], 0.0))  # K is PSD: clamp round-off below 0


def final_loss(history: History) -> float:
    """The training loss at the end of a run.

    The full-pass training loss after the last epoch (``history.train_loss[-1]``), unless
    the run was stopped mid-epoch by a non-finite value: then the last completed epoch's
    loss is stale and the loss of the step that stopped it (``history.loss[-1]``, often
    inf or NaN) is returned. NaN for a history with no steps.
    """
    if not isinstance(history, History):
        raise TypeError(f"history: expected an nnref.train.History, got {describe(history)}")
    stopped_mid_epoch = history.diverged and (
        not history.train_loss or np.isfinite(history.train_loss[-1])
    )
    if stopped_mid_epoch or not history.train_loss:
        return float(history.loss[-1]) if history.loss else float("nan")
    return float(history.train_loss[-1])


def _max_norm_seen(history: History) -> float:
    """The largest pre-clipping gradient norm; inf if any was infinite, NaN only if all were."""
    norms = np.asarray(history.grad_norm, dtype=np.float64)
    if norms.size == 0 or np.all(np.isnan(norms)):
        return float("nan")
    return float(np.nanmax(norms))


@dataclass
class DemoResult:
    """The two runs of :func:`exploding_gradient_demo` and what they show.

    ``unclipped`` / ``clipped``: the :class:`~nnref.train.History` of plain SGD and of SGD
    with ``clip.GlobalNorm(max_norm)``; ``*_final_loss``: :func:`final_loss` of each;
    ``baseline_loss``: ``var(y)``, the MSE of always predicting the mean; ``sharpness_init``
    and ``sharpness_clipped_end``: :func:`sharpness` on the training inputs at the shared
    initial weights and after the clipped run; ``settings``: every choice that defines
    the runs.
    """

    unclipped: History
    clipped: History
    unclipped_final_loss: float
    clipped_final_loss: float
    max_norm: float
    baseline_loss: float
    sharpness_init: float
    sharpness_clipped_end: float
    settings: dict = field(default_factory=dict)

    @property
    def lr(self) -> float:
        """The learning rate of both runs."""
        return self.settings["lr"]

    def report(self) -> str:
        """A few lines: both final losses, how often clipping acted, the largest gradient
        norm of each run, and learning rate times sharpness before and after."""
        s, u, c = self.settings, self.unclipped, self.clipped
        lines = [
            f"Exploding gradients: MLP {s['layer_sizes']} ({s['activation']}, {s['dtype']}), MSE on a "
            f"target of scale {s['target_scale']:g}, SGD lr={s['lr']:g}, batch {s['batch_size']}, "
            f"{s['epochs']} epochs, seed {s['seed']}.",
            f"  predicting the mean: loss {self.baseline_loss:.4g}",
            f"  plain SGD: final loss {self.unclipped_final_loss:.4g} after {u.n_steps} steps; "
            f"largest gradient norm {_max_norm_seen(u):.3g}",
        ]
        if u.diverged:
            lines.append(f"    diverged: {u.message}")
        lines += [
            f"  SGD + {c.transform}: final loss {self.clipped_final_loss:.4g} after {c.n_steps} "
            f"steps; largest gradient norm {_max_norm_seen(c):.3g} (before clipping)",
            f"    clipping acted at {c.n_clipped}/{c.n_steps} steps ({100 * c.clip_fraction:.1f}%)",
        ]
        if c.diverged:
            lines.append(f"    diverged: {c.message}")
        lines.append(
            f"  lr x sharpness (plain SGD is stable below 2): {self.lr * self.sharpness_init:.3g} "
            f"at the initial weights, {self.lr * self.sharpness_clipped_end:.3g} at the end of "
            f"the clipped run"
        )
        return "\n".join(lines)


def _check_seed(seed) -> int:
    """``seed`` as a non-negative int (not a Generator: both runs must draw the very same
    numbers)."""
    return check_int_in_range(seed, "seed", 0, 2**63 - 1)


def _streams(seed: int) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    """Fresh generators for the data, the initial weights and the batch order.

    Three independent streams spawned from one seed (numpy's ``SeedSequence.spawn``):
    handing the same int to all three would draw the first weights from the very numbers
    that made the first inputs.
    """
    children = np.random.SeedSequence(seed).spawn(3)
    return tuple(np.random.default_rng(child) for child in children)


def _initial_model(seed: int) -> MLP:
    """The initial model both runs start from."""
    _, init_rng, _ = _streams(seed)
    return MLP(LAYER_SIZES, activation=ACTIVATION, seed=init_rng)


def _run(transform, seed: int, epochs: int, lr: float, target_scale: float, verbose: bool):
    """One training run of the demonstration setting; returns ``(model, history, x, y)``."""
    data_rng, init_rng, order_rng = _streams(seed)
    x, y = make_regression_data(N_EXAMPLES, data_rng, N_FEATURES, target_scale)
    model = MLP(LAYER_SIZES, activation=ACTIVATION, seed=init_rng)
    # Overflow to inf/NaN is the expected outcome of the plain run, not an accident to
    # warn about: fit records it and stops.
    with np.errstate(over="ignore", invalid="ignore"):
        history = fit(model, SGD(lr), x, y, epochs=epochs, batch_size=BATCH_SIZE, seed=order_rng,
                      grad_transform=transform, verbose=verbose, loss="mse")
    return model, history, x, y


def exploding_gradient_demo(max_norm: float = 1.0, seed: int = 0, epochs: int = DEFAULT_EPOCHS,
                            lr: float = DEFAULT_LR, verbose: bool = False, *,
                            target_scale: float = DEFAULT_TARGET_SCALE) -> DemoResult:
    """Train the setting of the module docstring twice: plain SGD, then SGD with
    global-norm clipping at ``max_norm``; everything else identical.

    ``seed`` (an int) draws the data (:func:`make_regression_data`), the initial weights
    and the batch order, from three independent streams, identically for both runs.
    ``target_scale`` is ``S``: 30 makes plain SGD diverge, 1 is the control in which it
    does not. With the defaults the whole call takes well under a second. ``verbose``
    prints fit's per-epoch lines.
    Returns a :class:`DemoResult`; ``print(result.report())`` summarises it.
    """
    max_norm = check_positive(max_norm, "max_norm")
    seed = _check_seed(seed)
    epochs = check_int_in_range(epochs, "epochs", 1, 10**6)
    lr = check_positive(lr, "lr")
    target_scale = check_positive(target_scale, "target_scale")
    init = _initial_model(seed)
    _, plain, x, y = _run(None, seed, epochs, lr, target_scale, verbose)
    clipped_model, clipped, _, _ = _run(clip.GlobalNorm(max_norm), seed, epochs, lr, target_scale, verbose)
    settings = {
        "n_examples": N_EXAMPLES, "n_features": N_FEATURES, "target_scale": target_scale,
        "layer_sizes": list(LAYER_SIZES), "activation": ACTIVATION, "init": init.init,
        "dtype": init.dtype.name, "loss": "mse", "optimizer": repr(SGD(lr)), "lr": lr,
        "batch_size": BATCH_SIZE, "epochs": epochs, "seed": seed, "max_norm": max_norm,
    }
    return DemoResult(
        unclipped=plain,
        clipped=clipped,
        unclipped_final_loss=final_loss(plain),
        clipped_final_loss=final_loss(clipped),
        max_norm=max_norm,
        baseline_loss=float(np.var(y)),
        sharpness_init=sharpness(init, x),
        sharpness_clipped_end=sharpness(clipped_model, x),
        settings=settings,
    )


def default_clippers(max_norm: float = 1.0) -> dict:
    """Fresh clippers for :func:`compare_clippers`, one per method, label -> clipper:

    * ``"none"``: ``None`` (plain SGD, the baseline);
    * ``"value"``: ``clip.Value(0.1 * max_norm)``; each of the ~1250 entries clamped to
      ``[-0.1, 0.1]``, which changes the gradient's direction;
    * ``"norm"``: ``clip.Norm(max_norm)``, each of the 6 tensors separately;
    * ``"global_norm"``: ``clip.GlobalNorm(max_norm)``, the demonstration's clipper;
    * ``"adaptive"``: ``clip.Adaptive(0.1)``: Brock et al. (2021) recommend the ratio
      0.01 for their batches of 1024 to 4096 and a larger, less strict one for smaller
      batches; these are 32;
    * ``"autoclip"``: ``clip.AutoClip(10)``, the authors' recommended 10th percentile.
    """
    c = check_positive(max_norm, "max_norm")
    return {
        "none": None,
        "value": clip.Value(0.1 * c),
        "norm": clip.Norm(c),
        "global_norm": clip.GlobalNorm(c),
        "adaptive": clip.Adaptive(0.1),
        "autoclip": clip.AutoClip(10.0),
    }


def compare_clippers(clippers: dict | None = None, seed: int = 0, epochs: int = DEFAULT_EPOCHS,
                     lr: float = DEFAULT_LR, verbose: bool = False, *,
                     target_scale: float = DEFAULT_TARGET_SCALE) -> dict[str, History]:
    """Run the demonstration setting once per clipper; return label -> History.

    ``clippers``: label -> a ``grad_transform`` (``None`` for no clipping); default
    :func:`default_clippers`. Every run has the same data, initial weights, batch order
    and lr (``seed``, ``epochs``, ``lr``, ``target_scale`` as in
    :func:`exploding_gradient_demo`). A clipper with a ``reset()`` method (all of
    :mod:`nnref.clip`'s) is reset first, so AutoClip's history starts empty. About
    0.1 s per run with the defaults. Pass the result to
    :func:`nnref.plots.plot_loss_per_step`.

    What the defaults show (seed 0): plain SGD diverges; by value, per tensor, by global
    norm and adaptive all end with a training loss below 0.5% of ``var(y)`` (about 720).
    AutoClip does not diverge but ends far above the fixed clippers (a loss of order
    1e2; the exact value is sensitive to rounding in this chaotic run): its threshold is a percentile of
    the norms this run has seen, all of them large (about 150 at the first step, which is
    thus barely clipped), so it lets through gradients of norm up to about 190 where
    ``GlobalNorm(1.0)`` allows 1. A threshold learned from an exploding run grows with it.
    """
    clippers = default_clippers() if clippers is None else clippers
    if not isinstance(clippers, dict) or not clippers:
        raise TypeError(f"clippers: expected a non-empty dict label -> clipper (or None), got {describe(clippers)}")
    for label, transform in clippers.items():
        if transform is not None and not callable(transform):
            raise TypeError(f"clippers[{label!r}]: expected a callable (grads, params) -> grads or None, "
                            f"got {describe(transform)}")
    seed = _check_seed(seed)
    epochs = check_int_in_range(epochs, "epochs", 1, 10**6)
    lr = check_positive(lr, "lr")
    target_scale = check_positive(target_scale, "target_scale")
    out = {}
    for label, transform in clippers.items():
        if hasattr(transform, "reset"):
            transform.reset()
        _, out[label], _, _ = _run(transform, seed, epochs, lr, target_scale, verbose)
    return out
