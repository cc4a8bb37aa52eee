# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Exploding gradients and clipping
#
# Sometimes training does not fail gently: the loss jumps to $10^{14}$, then to `inf`, and
# every weight becomes NaN. This tutorial makes that happen on purpose, explains *why* with
# one line of algebra about curvature, and shows how gradient clipping prevents it.
#
# **You will learn**
#
# - a small, seeded setting in which plain SGD blows up within a dozen steps, and the
#   mechanism: learning rate times curvature above 2, with curvature that grows as the
#   weights grow;
# - how clipping by global norm keeps every step of plain SGD at most $\eta c$ long and
#   rescues the run;
# - the clipping functions side by side (by value, per-tensor norm, global norm,
#   adaptive), what each does to the gradient's direction and length, and the PyTorch and
#   TensorFlow conventions;
# - why AutoClip does not rescue this run;
# - how to pick a threshold from the gradient norms of a healthy run, and what the
#   fraction of clipped steps tells you;
# - per-example clipping as used by DP-SGD.
#
# **You need**: tutorial 02 (`fit`, `History`, SGD).
#
# **Figures written** (to `figures/`): `03_grad_norms.png` (gradient norms of both runs),
# `03_loss_clipped_vs_unclipped.png` (their losses) and `03_clipper_comparison.png` (every
# clipper on the same run).

# %%
import matplotlib.pyplot as plt
import numpy as np

from nnref import clip
from nnref.experiments import (
    LAYER_SIZES,
    compare_clippers,
    default_clippers,
    exploding_gradient_demo,
    final_loss,
    make_regression_data,
    sharpness,
)
from nnref.mlp import MLP
from nnref.optim import SGD
from nnref.plots import STYLE, figures_dir, plot_grad_norms, plot_loss_per_step, save_figure

np.set_printoptions(precision=4, suppress=True)

# %% [markdown]
# ## 1. The setting
#
# A ReLU network `MLP([4, 32, 32, 1])` regresses a target nobody standardized:
#
# $$x \sim \mathcal N(0, I_4), \qquad y = S\, w^\top x, \quad \|w\| = 1, \quad S = 30,$$
#
# so $y \sim \mathcal N(0, S^2)$: predicting 0 costs a mean squared error of $S^2 = 900$ in
# expectation. The cell below draws one sample of 256 to look at (seed 0; variance about
# 740); the demonstration of section 2 draws its own data and weights from seeds derived
# from its `seed` argument, and its report prints the variance of *its* targets as the cost
# of predicting the mean (724). The loss is the MSE over batches of 32, the optimizer plain SGD with
# $\eta = 0.03$, for 50 epochs of 256 examples (400 steps). The task is linear on purpose:
# the only hard thing about it is its **scale**. Nothing here is exotic; forgetting to
# standardize a regression target is one of the most common ways to meet exploding
# gradients.

# %%
x_demo, y_demo = make_regression_data(seed=0)
print("x:", x_demo.shape, " y:", y_demo.shape, f" std(y) = {y_demo.std():.1f}, var(y) = {y_demo.var():.0f}")
print("layer sizes:", LAYER_SIZES)

# %% [markdown]
# ## 2. Two runs: plain SGD and SGD with clipping
#
# `exploding_gradient_demo()` trains this setting twice with the same data, the same
# initial weights, the same batch order and the same learning rate. The only difference:
# the second run clips the global gradient norm to $c = 1$ before each step
# (`clip.GlobalNorm(1.0)`, PyTorch's `clip_grad_norm_`).

# %%
demo = exploding_gradient_demo(max_norm=1.0, seed=0)
print(demo.report())

# %%
u, c = demo.unclipped, demo.clipped
print("plain SGD, step by step:")
for t in range(u.n_steps):
    print(f"  step {t + 1:2d}: batch loss {u.loss[t]:10.3g}   gradient norm {u.grad_norm[t]:10.3g}")
print(f"final losses: plain {demo.unclipped_final_loss:.3g}, clipped {demo.clipped_final_loss:.3g} "
      f"(predicting the mean: {demo.baseline_loss:.0f})")
assert u.diverged and not c.diverged
assert demo.clipped_final_loss < 0.01 * demo.baseline_loss

# %% [markdown]
# The plain run's gradient norm goes from about $10^2$ to $10^{14}$ in seven steps, then the
# loss overflows float32 and `fit` stops with `history.diverged` set. The clipped run
# ends with a loss near 1, about 0.1% of what predicting the mean costs. Two views of the
# same runs: the gradient norms (with clipping, the norm *before* clipping, the norm
# *after* it, and a marker at every step where clipping acted) and the losses.

# %%
fig, (ax_u, ax_c) = plt.subplots(1, 2, figsize=STYLE["panel_figsize"], layout="constrained")
plot_grad_norms(u, ax=ax_u)
ax_u.set_title("Plain SGD: the gradient norm explodes")
plot_grad_norms(c, ax=ax_c, threshold=demo.max_norm)
ax_c.set_title(f"SGD + {c.transform}: every step is clipped")
save_figure(fig, figures_dir() / "03_grad_norms.png")
fig

# %%
ax = plot_loss_per_step({"plain SGD": u, f"SGD + {c.transform}": c})
ax.axhline(demo.baseline_loss, color=STYLE["threshold"], ls=":", label="predicting the mean (var y)")
ax.legend()
ax.set_ylabel("mini-batch MSE (squared target units)")
save_figure(ax, figures_dir() / "03_loss_clipped_vs_unclipped.png")
ax.figure

# %% [markdown]
# ## 3. Why the gradients explode: learning rate times curvature
#
# **On a quadratic.** Gradient descent on $f(\theta) = \tfrac{\lambda}{2}\theta^2$ does
# $\theta \leftarrow \theta - \eta\lambda\theta = (1 - \eta\lambda)\,\theta$. The iterates
# shrink if $|1 - \eta\lambda| < 1$, that is $\eta\lambda < 2$; beyond 2 each step
# overshoots the minimum and lands *further* away on the other side. In many dimensions
# the same holds along each eigenvector of the Hessian: gradient descent is stable only if
# $\eta\,\lambda_{\max} < 2$.

# %%
for eta_lambda in (0.5, 1.5, 2.5):
    theta = [1.0]
    for _ in range(5):
        theta.append((1 - eta_lambda) * theta[-1])
    print(f"eta * lambda = {eta_lambda}: theta =", np.round(theta, 3))

# %% [markdown]
# **In the network.** With errors $e_i = f_\theta(x_i) - y_i$ the batch loss is
# $L = \frac1B\sum_i e_i^2$ and
#
# $$\nabla_\theta L = \frac{2}{B}\sum_i e_i\, \nabla_\theta f_\theta(x_i). \tag{1}$$
#
# To first order a step $\theta \leftarrow \theta - \eta \nabla L$ changes the errors by
#
# $$e \leftarrow (I - \eta K)\, e, \qquad K = \frac{2}{B} J J^\top, \tag{2}$$
#
# where $J$ is the $B \times P$ Jacobian of the outputs with respect to the $P$ parameters.
# $K$ is a $B \times B$ matrix in *function space* (the Gram matrix of the output gradients,
# the empirical neural tangent kernel); it is not the Gauss-Newton matrix
# $G = \frac{2}{B} J^\top J$ ($P \times P$, in parameter space), but the two share their nonzero
# eigenvalues. $G$ is the Hessian of $L$ without the residual term
# $\frac{2}{B}\sum_i e_i \nabla^2_\theta f_\theta(x_i)$, which is *not* small here, where the
# errors are about 30; so (2) is a first-order picture and $\lambda_{\max}(K)$ the
# Gauss-Newton sharpness (`nnref.experiments.sharpness`), not the full Hessian's. The rule
# for (2) is again $\eta\,\lambda_{\max}(K) < 2$.
#
# Three facts make the loop:
#
# 1. By (1) the gradient is proportional to the errors, and the errors start at about
#    $|y| \sim S$: the first gradient is some 25 times larger than with $S = 1$
#    (115 against 4.8, 24 times, in the runs below).
# 2. A first step some 24 times larger changes the weights a lot.
# 3. The entries of $J$ are hidden activations and products of later layers' weights, so
#    the curvature grows at least like the square of the weights' scale. Larger weights,
#    larger $\eta\lambda_{\max}$, by (2) larger errors, a larger next gradient, and so on:
#    faster than geometric growth.
#
# We can watch it. Below, the same setting, with the sample drawn in section 1 and its own
# initial weights (not the demonstration's), is trained by full-batch
# gradient descent, all 256 examples per step, so that the batch noise does not blur the
# picture, and $\eta\,\lambda_{\max}$ is measured before every step; $S = 1$ is the
# control.

# %%
def watch_first_steps(target_scale: float, n_steps: int = 5, lr: float = 0.03) -> list[float]:
    """Full-batch GD on the demo setting; print and return lr x sharpness before each step."""
    x, y = make_regression_data(seed=0, target_scale=target_scale)
    model = MLP(LAYER_SIZES, seed=0)
    opt = SGD(lr)
    seen = []
    print(f"S = {target_scale:g}:")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is what we came to see
        for t in range(1, n_steps + 1):
            seen.append(lr * sharpness(model, x))
            loss, grads = model.loss_and_grads(x, y, loss="mse")
            print(f"  step {t}: lr x sharpness {seen[-1]:9.3g}   loss {loss:9.3g}   "
                  f"gradient norm {clip.global_norm(grads):9.3g}")
            opt.step(model.params, grads)
    return seen


exploding = watch_first_steps(30.0)
calm = watch_first_steps(1.0)
assert exploding[0] < 2 and exploding[-1] > 1e3 * exploding[0] and max(calm) < 2

# %% [markdown]
# Both runs start from the same weights with $\eta\lambda_{\max} \approx 1.5$, stable (the
# demonstration's own initial weights, on its own data, give 1.66: printed in section 4). With
# $S = 30$ the first step pushes it to about 7, the next to about 100, then about 1000,
# then $10^7$: every direction with $\eta\lambda > 2$ now amplifies the error at each
# step, and the amplification itself grows. With $S = 1$ it stays below 2 and training
# proceeds.
#
# ## 4. How clipping stops it
#
# Clipping by global norm (Pascanu, Mikolov & Bengio 2013) replaces the gradient $g$ by
#
# $$g \leftarrow g \cdot \min\!\Big(1, \frac{c}{\|g\|_2 + 10^{-6}}\Big)$$
#
# (the $10^{-6}$ is PyTorch's guard against division by zero), so every step of plain SGD
# has length $\|\Delta\theta\| \le \eta c$ whatever the error. (With momentum a step sums
# several clipped gradients, up to $\eta c / (1 - \mu)$; Adam divides each entry by its own
# running RMS, so its steps stay about $\eta$ per entry whatever the gradient's size, and
# clipping there bounds what enters the moment estimates, not the step.) The weights, and with them the
# curvature, change only a little per step, the loop of section 3 never starts, and the
# run walks to the solution.
#
# Clipping acted at **every** step of the clipped run. That is not a flaw of the
# demonstration: the solution itself is sharp (a network whose output is 30 times larger
# is more sensitive to its weights). The report shows $\eta\lambda_{\max}$ ending far
# above 2, a place where plain SGD at this learning rate could not stay. There, clipped
# SGD is normalized gradient descent with step $\eta c$. Zhang, He, Sra & Jadbabaie
# (ICLR 2020) prove that when curvature grows with the gradient like this, clipped descent
# can converge arbitrarily faster than gradient descent with any fixed step size.

# %%
print(f"lr x sharpness at the initial weights:      {demo.lr * demo.sharpness_init:.3g}")
print(f"lr x sharpness at the end of the clipped run: {demo.lr * demo.sharpness_clipped_end:.3g}")
steps = np.array(c.grad_norm_after)
print(f"clipped run: norm used by the optimizer between {steps.min():.7f} and {steps.max():.7f}")
assert np.all(steps <= demo.max_norm * (1 + 1e-6))  # float32 rounding of the scaled entries

# %% [markdown]
# ## 5. The clipping functions side by side
#
# Take one small gradient made of two tensors, $g_1 = (3, 4)$ and $g_2 = (0, 0, 12)$.
# Their norms are $\|g_1\| = 5$ and $\|g_2\| = 12$, and the global norm, of all entries as
# one vector, is $\sqrt{9 + 16 + 144} = \sqrt{169} = 13$. Four ways to clip it:
#
# | method | formula | nnref |
# |---|---|---|
# | by value | $g_j \leftarrow \min(\max(g_j, -v), v)$ per entry | `clip_by_value(g, v)` |
# | by norm, per tensor | $g_t \leftarrow g_t \cdot c / \max(\lVert g_t \rVert, c)$ | `clip_by_norm(g, c)` |
# | by global norm | $g_t \leftarrow g_t \cdot \min(1, c / (\lVert g \rVert + 10^{-6}))$ for all $t$ | `clip_by_global_norm(g, c)` |
# | adaptive (AGC) | per unit: $G_i \leftarrow G_i \cdot \ell_i / \lVert G_i \rVert$ if $\lVert G_i \rVert > \ell_i = \lambda \max(\lVert W_i \rVert, 10^{-3})$ | `adaptive_clip(g, W, clipping=λ)` |
#
# With $v = 2$, $c = 5$, and for AGC $\lambda = 0.5$ with weights $W_1 = (0.6, 0.8)$
# (norm 1) and $W_2 = (0, 0, 10)$ (norm 10), treating each vector as one unit (the AGC
# authors' rule, `units="nfnets"`; nnref's default, `units="per_unit"`, gives each bias
# entry its own unit, which here happens to give the same numbers): the limits are
# $0.5$ and $5$. By hand:
#
# - by value: $(2, 2)$ and $(0, 0, 2)$; global norm $\sqrt{12} \approx 3.46$;
# - by norm: $g_1$ has norm $5 \le 5$ and is kept; $g_2$ becomes $12 \cdot 5/12$, i.e.
#   $(0, 0, 5)$;
# - by global norm: everything times $5/13$: $(15/13, 20/13) \approx (1.154, 1.538)$ and
#   $(0, 0, 60/13) \approx (0, 0, 4.615)$, global norm 5 (a hair under, because of the
#   $10^{-6}$);
# - AGC: $g_1$ scaled to norm 0.5, $(0.3, 0.4)$; $g_2$ to norm 5, $(0, 0, 5)$.

# %%
grads = {"g1": np.array([3.0, 4.0]), "g2": np.array([0.0, 0.0, 12.0])}
weights = {"g1": np.array([0.6, 0.8]), "g2": np.array([0.0, 0.0, 10.0])}
print("tensor norms:", clip.tensor_norms(grads), " global norm:", clip.global_norm(grads))
assert clip.global_norm(grads) == 13.0

by_global, total = clip.clip_by_global_norm(grads, 5.0)
results = {
    "by value (v = 2)": clip.clip_by_value(grads, 2.0),
    "by norm (c = 5)": clip.clip_by_norm(grads, 5.0),
    "by global norm (c = 5)": by_global,
    "adaptive (lambda = 0.5)": clip.adaptive_clip(grads, weights, clipping=0.5, units="nfnets"),
}
flat = np.concatenate(list(grads.values()))
print(f"{'method':24s} {'g1':>18s} {'g2':>24s} {'global norm':>12s} {'cos(angle to g)':>16s}")
for name, r in results.items():
    f = np.concatenate(list(r.values()))
    cosine = f @ flat / (np.linalg.norm(f) * np.linalg.norm(flat))
    print(f"{name:24s} {str(r['g1']):>18s} {str(r['g2']):>24s} {clip.global_norm(r):12.4f} {cosine:16.4f}")

np.testing.assert_array_equal(results["by value (v = 2)"]["g2"], [0.0, 0.0, 2.0])
np.testing.assert_array_equal(results["by norm (c = 5)"]["g1"], [3.0, 4.0])
np.testing.assert_allclose(by_global["g1"], [15 / 13, 20 / 13], rtol=1e-6)
np.testing.assert_allclose(results["adaptive (lambda = 0.5)"]["g1"], [0.3, 0.4], rtol=1e-12)
assert total == 13.0  # clip_by_global_norm returns the norm BEFORE clipping

# %% [markdown]
# The last column is the cosine of the angle between the clipped and the original
# gradient, all tensors together:
#
# - **Global norm** is the only method that keeps the direction exactly (cosine 1) and only
#   shortens the step. This is why it is the default choice.
# - **Per-tensor norm** keeps each tensor's direction but changes their balance: $g_2$ was
#   shrunk, $g_1$ was not.
# - **By value** changes the direction even inside a tensor: $(3, 4)$ became $(2, 2)$.
# - **AGC** bounds each unit's gradient *relative to its weights*: a step of $\eta G_i$
#   changes $W_i$ by at most $\eta\lambda$ of its norm. It needs the parameters, and
#   changes the balance between units like per-tensor clipping does.
#
# **Engine conventions, one sentence each.** PyTorch's
# `torch.nn.utils.clip_grad_norm_(parameters, max_norm)` scales all gradients in place by
# $\min(1, c/(\|g\| + 10^{-6}))$ and returns the total norm before clipping (nnref's
# `clip_by_global_norm` returns the same pair, without modifying its input).
# TensorFlow's `tf.clip_by_global_norm(t_list, clip_norm)` returns the clipped list and the
# global norm, scaling by $c / \max(\|g\|, c)$ with no $\varepsilon$, while
# `tf.clip_by_norm` clips one tensor, and Keras optimizers' `clipnorm` argument clips each
# tensor separately (`global_clipnorm` is the global one). Without the $\varepsilon$ the
# results differ by a relative $10^{-6}/\lVert g \rVert$, here $8 \times 10^{-8}$:

# %%
tf_style, _ = clip.clip_by_global_norm(grads, 5.0, eps=0.0)  # c / max(||g||, c), as TensorFlow
print("PyTorch convention (eps = 1e-6):", by_global["g1"])
print("TensorFlow convention (no eps): ", tf_style["g1"])
rel = (tf_style["g1"] - by_global["g1"]) / tf_style["g1"]
print("relative difference:", ", ".join(f"{r:.2e}" for r in rel), "(= 1e-6 / 13: the eps over the norm)")
np.testing.assert_allclose(rel, 1e-6 / 13, rtol=1e-3)
np.testing.assert_allclose(tf_style["g1"], [15 / 13, 20 / 13], rtol=1e-15)

# %% [markdown]
# ## 6. Every clipper on the exploding run
#
# `compare_clippers` trains the setting of section 1 once per clipper, everything else
# identical. The defaults (`default_clippers(1.0)`): none; by value at 0.1; per-tensor norm
# at 1; global norm at 1; AGC with $\lambda = 0.1$; AutoClip at its recommended 10th
# percentile.

# %%
clippers = default_clippers(1.0)
runs = compare_clippers(clippers, seed=0)
print(f"{'clipper':12s} {'final loss':>12s} {'clipped steps':>14s} {'largest norm':>13s}")
for label, h in runs.items():
    print(f"{label:12s} {final_loss(h):12.4g} {100 * h.clip_fraction:13.1f}% {max(h.grad_norm):13.3g}"
          + ("   diverged" if h.diverged else ""))
fixed = ("value", "norm", "global_norm", "adaptive")
assert runs["none"].diverged and not any(runs[k].diverged for k in fixed + ("autoclip",))
assert final_loss(runs["autoclip"]) > 10 * max(final_loss(runs[k]) for k in fixed)

# %% [markdown]
# Every fixed-threshold clipper rescues the run, to a loss of order 1. **AutoClip does not
# diverge, but it does not converge either**: it ends one to two orders of magnitude
# higher. AutoClip (Seetharaman et al. 2020) clips by global norm at the 10th
# percentile of all the norms this run has produced so far:
#
# $$c_t = \operatorname{percentile}_{10}(\|g_1\|, \dots, \|g_t\|).$$
#
# In a healthy run that adapts the threshold to the model. Here *every* norm is large from
# the first step on (about 150), so the percentile is large too, and AutoClip lets through
# steps about a hundred times longer than `GlobalNorm(1)` does. **A threshold learned from
# an exploding run grows with it.** The right panel recomputes $c_t$ from the norms the
# clipper recorded (`clippers["autoclip"].history`) and checks it against the clipper's
# own last threshold.

# %%
auto = clippers["autoclip"]
norms_seen = np.array(auto.history)
thresholds = np.array([np.percentile(norms_seen[:t], 10) for t in range(1, len(norms_seen) + 1)])
assert np.isclose(thresholds[-1], auto.threshold)
print(f"AutoClip: {len(norms_seen)} norms recorded; threshold at the end {auto.threshold:.1f} "
      f"(GlobalNorm: 1.0); largest norm it let through {max(runs['autoclip'].grad_norm_after):.0f}")

fig, (ax_l, ax_r) = plt.subplots(1, 2, figsize=STYLE["panel_figsize"], layout="constrained")
plot_loss_per_step(runs, ax=ax_l)
ax_l.set_title("Training loss per step, one run per clipper")
ax_l.set_ylabel("mini-batch MSE (squared target units)")
plot_grad_norms(runs["autoclip"], ax=ax_r)
# The threshold is drawn wide and pale *under* the norms: where AutoClip clips, the norm
# after clipping equals the threshold, and a line on top would hide it.
ax_r.plot(np.arange(1, len(thresholds) + 1), thresholds, color=STYLE["threshold"], ls="-",
          lw=5 * STYLE["linewidth"], alpha=0.3, zorder=0.5,
          label="AutoClip threshold $c_t$ (= norm after clipping where it clips)")
ax_r.axhline(1.0, color=STYLE["cycle"][2], ls="--", lw=1, label="GlobalNorm threshold 1")
ax_r.legend(fontsize=8)
ax_r.set_title("AutoClip: its threshold follows the already-large norms")
save_figure(fig, figures_dir() / "03_clipper_comparison.png")
fig

# %% [markdown]
# ## 7. Picking a threshold, and reading the clip statistics
#
# The threshold should catch the *outliers* of a healthy run, not every step. A practical
# recipe: train the model for a while in a setting that works (here the control, $S = 1$,
# where plain SGD converges), look at the recorded `History.grad_norm`, and put $c$ at a
# high percentile of it.

# %%
control = exploding_gradient_demo(max_norm=1.0, seed=0, target_scale=1.0)
healthy = np.array(control.unclipped.grad_norm)
for q in (50, 90, 99):
    print(f"healthy run: {q}th percentile of the gradient norm = {np.percentile(healthy, q):.2f}")
print(f"healthy run: plain SGD final loss {control.unclipped_final_loss:.4f} "
      f"(predicting the mean: {control.baseline_loss:.3f})")
threshold = float(np.percentile(healthy, 90))

# %% [markdown]
# With $c$ at the 90th percentile, clipping in the control should act on the order of 10%
# of the steps and change little; on the exploding run it acts at every step and still
# rescues it.

# %%
safety_net = exploding_gradient_demo(max_norm=threshold, seed=0, target_scale=1.0)
rescue = exploding_gradient_demo(max_norm=threshold, seed=0)
for name, d in (("S = 1 (healthy)", safety_net), ("S = 30 (exploding)", rescue)):
    h = d.clipped
    print(f"{name:18s} GlobalNorm({threshold:.2f}): clipped {100 * h.clip_fraction:5.1f}% of steps, "
          f"final loss {d.clipped_final_loss:.4g} (without clipping: {d.unclipped_final_loss:.4g})")
assert not rescue.clipped.diverged and rescue.unclipped.diverged

# %% [markdown]
# `History.clip_fraction` (printed by `fit` per epoch, and in `History.summary()`) reads
# like this:
#
# - **A few percent**: clipping is a safety net, catching the occasional large batch; the
#   run is otherwise plain SGD.
# - **Close to 100%**: clipping *is* the optimizer. Every plain-SGD step has length $\eta c$, so $c$
#   acts as a second learning rate, and the run is normalized gradient descent. That may
#   be fine (it rescued the exploding run) but it usually means something upstream is
#   wrong: here the unscaled target. Standardizing $y$ (the $S = 1$ control) fixes the
#   cause, and then plain SGD trains.
# - **Zero**: the threshold is above every norm; it costs nothing and does nothing, until
#   the day it is needed.
#
# ## 8. Per-example clipping (DP-SGD)
#
# Differentially private SGD (Abadi et al. 2016) needs a bound on how much any **one
# example** can move the model. It clips each example's whole gradient $g_i$ (all tensors
# together) to norm $C$, sums, adds Gaussian noise and divides by $B$:
#
# $$\tilde g = \frac{1}{B}\Big(\sum_i \frac{g_i}{\max(1, \|g_i\|/C)} + \mathcal N(0, \sigma^2 C^2 I)\Big).$$
#
# `MLP.per_example_grads` gives every $g_i$ in one batched backward pass (for a Linear
# layer, $\partial L_i/\partial W = x_i\, g_{\text{out},i}^\top$, an outer product), with a
# leading batch axis; their mean is the ordinary batch gradient.

# %%
x_s, y_s = make_regression_data(n=8, seed=3, target_scale=1.0)
model = MLP(LAYER_SIZES, seed=0, dtype=np.float64)
per_example = model.per_example_grads(x_s, y_s, loss="mse")
_, batch_grads = model.loss_and_grads(x_s, y_s, loss="mse")
print({k: v.shape for k, v in per_example.items()})
for k in batch_grads:
    np.testing.assert_allclose(per_example[k].mean(axis=0), batch_grads[k], rtol=1e-10, atol=1e-15)

C = 5.0
aggregated, norms = clip.per_example_clip(per_example, max_norm=C, return_norms=True)
print("per-example gradient norms:", norms)
# The same aggregate by hand: scale each example by min(1, C / n_i), sum, divide by B.
scale = np.minimum(1.0, C / norms)
for k, g in per_example.items():
    np.testing.assert_allclose(aggregated[k], np.tensordot(scale, g, axes=1) / len(norms), rtol=1e-12)
print(f"clipped examples: {int(np.sum(norms > C))} of {len(norms)}; "
      f"aggregated global norm {clip.global_norm(aggregated):.4f} <= C = {C:g}")
assert clip.global_norm(aggregated) <= C * (1 + 1e-12)

noisy = clip.per_example_clip(per_example, max_norm=C, noise_multiplier=1.0, rng=0)
print(f"with noise (sigma = 1, seeded): global norm {clip.global_norm(noisy):.4f}")

# %% [markdown]
# Each example contributes at most $C/B$ to the average, so no single example can dominate
# the step: this bound is what lets the added noise hide any one example. Noise needs an
# explicit `rng` (a seed or a `Generator`), never a hidden default. Its standard deviation
# after the division, $\sigma C / B$ per entry, is why DP-SGD uses large batches: with
# $B = 8$ and about 1,250 parameters, the noise here is ten times the clipped gradient.

# %% [markdown]
# ## Graded exercises: write the clipping functions of section 5
#
# Each function below is nnref's own. Get your version of this tutorial, with each of
# them replaced by its signature, its docstring and `raise NotImplementedError`, with
#
# ```bash
# python -m nnref exercises --out my_exercises     # .py and .ipynb for every tutorial
# python -m nnref check my_exercises               # one row per exercise
# ```
#
# Then write the bodies. `python -m nnref check` runs nnref's laws on each function
# (`nnref.laws`: hypothesis searches for inputs where a law fails and shows the smallest
# one, with the expected and the received values) and reports passed, failed or not
# attempted. The cell after the exercises runs the same checks here.
#
# - `clip_grads_by_value`: clip every entry to `[min_value, max_value]`
# - `clip_grad_by_norm`: TensorFlow's `clip_by_norm`
# - `clip_grads_by_global_norm`: PyTorch's `clip_grad_norm_`, with its $\epsilon$ and the
#   clamp at 1; the total norm exact also for float32 gradients whose squares under- or
#   overflow
# - `adaptive_clip_grad`: AGC, per output unit (columns of $W$, each bias entry its own
#   unit)

# %%
from nnref import laws

# %% tags=["exercise"]
clip_grads_by_value = laws.reference("clip_grads_by_value")

# %% tags=["exercise"]
clip_grad_by_norm = laws.reference("clip_grad_by_norm")

# %% tags=["exercise"]
clip_grads_by_global_norm = laws.reference("clip_grads_by_global_norm")

# %% tags=["exercise"]
adaptive_clip_grad = laws.reference("adaptive_clip_grad")

# %%
for exercise in (clip_grads_by_value,
                 clip_grad_by_norm,
                 clip_grads_by_global_norm,
                 adaptive_clip_grad):
    report = laws.check(exercise.__name__, exercise, max_examples=15)
    print(report if not report.passed else f"{exercise.__name__}: passed ({len(report.results)} laws)")

# %% [markdown]
# ## Summary
#
# - Gradient descent is stable only while learning rate times curvature stays below 2;
#   in a network the curvature grows with the weights, so one large step (here from an
#   unstandardized target) can start a loop that overflows float32 in about ten steps.
# - Clipping by global norm bounds every plain-SGD step by $\eta c$ and keeps the direction; it
#   rescues the run. By value and per-tensor norm also bound the step but change the
#   direction; AGC bounds each unit's step relative to its weights.
# - AutoClip's percentile threshold is learned from the run itself, so in a run that
#   explodes from the first step it is too large to help.
# - Pick $c$ from a healthy run's `History.grad_norm` (a high percentile) and watch
#   `History.clip_fraction`: a few percent is a safety net, near 100% means clipping has
#   become the optimizer and something upstream needs fixing.
# - DP-SGD clips every example's gradient to norm $C$ before averaging and adding noise.
#
# ## Exercises
#
# 1. Run `exploding_gradient_demo(max_norm=c)` for $c$ in `[0.1, 0.3, 1, 3, 10, 30]` and
#    plot the clipped run's final loss against $c$ (log-log). Why do both a very small and
#    a very large threshold end with a high loss after 400 steps? (Think of the step
#    length $\eta c$ and of section 3.)
# 2. Keep $S = 30$ but lower the learning rate (`exploding_gradient_demo(lr=...)`): find
#    roughly the largest learning rate at which *plain* SGD no longer diverges. Compare
#    $\eta$ times `demo.sharpness_init` with 2 there. Why is being below 2 at the initial
#    weights not enough?
# 3. Run `compare_clippers({"autoclip 50": clip.AutoClip(50), "autoclip 1": clip.AutoClip(1)})`
#    and compare the final losses with section 6. Can any percentile rescue the run?
#    Explain with the norm of the first step, which AutoClip can barely clip.
