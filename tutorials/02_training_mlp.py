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
# # 02 · Training the MLP on digits
#
# Tutorial 01 built and checked the gradients. Now we use them: train a small multilayer
# perceptron to read handwritten digits, and watch it learn.
#
# **You will learn**
#
# - the digits data set that ships with nnref, and a stratified train / validation / test
#   split;
# - one step of mini-batch SGD by hand, then momentum and Adam, with their update
#   formulas exactly as PyTorch documents them (`torch.optim.SGD`, `torch.optim.Adam`);
# - how `nnref.train.fit` runs the loop and what its `History` records;
# - how SGD, SGD with momentum and Adam compare on this problem;
# - the final test accuracy (about 98%), and saving and loading the model.
#
# **You need**: tutorial 01 (`MLP`, `loss_and_grads`, the gradient of cross-entropy).
#
# **Figures written** (to `figures/`): `02_digits_samples.png` (a few digits),
# `02_training_curves.png` (loss and accuracy per epoch) and `02_optimizers.png` (the
# optimizers compared).

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from nnref.data import load_digits, train_test_split
from nnref.mlp import MLP
from nnref.optim import SGD, Adam
from nnref.plots import STYLE, figures_dir, plot_training_curves, save_figure
from nnref.train import fit

np.set_printoptions(precision=4, suppress=True)

# %% [markdown]
# ## 1. The data
#
# `load_digits()` returns the 1,797 handwritten digits of the UCI "Optical Recognition of
# Handwritten Digits" set (Alpaydin & Kaynak 1998, CC BY 4.0), shipped inside nnref, so no
# download is needed. Each image is $8 \times 8$ pixels; each pixel counts the inked bits
# of a $4 \times 4$ block of the original $32 \times 32$ scan (0 to 16), and nnref divides
# by 16, so $x \in [0, 1]$. One image is one row of 64 numbers.

# %%
x, y = load_digits()
print("x:", x.shape, x.dtype, f"values in [{x.min()}, {x.max()}]")
print("y:", y.shape, y.dtype, "examples per class:", np.bincount(y))

# %%
fig, axes = plt.subplots(2, 10, figsize=(10, 2.8), layout="constrained")
for digit in range(10):
    for row in range(2):
        i = np.flatnonzero(y == digit)[row]  # the first two examples of each class
        ax = axes[row, digit]
        im = ax.imshow(x[i].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(f"label {digit}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
fig.colorbar(im, ax=axes, shrink=0.9, label="ink (pixel count / 16)")
fig.suptitle("Digits data set: 8 x 8 pixel images, two per class")
save_figure(fig, figures_dir() / "02_digits_samples.png")
fig

# %% [markdown]
# ## 2. Train, validation and test sets
#
# We hold out 20% as a **test set**, looked at once, at the very end. From the remaining
# 80% we hold out another 20% as a **validation set**, used to watch training and compare
# optimizers. Choosing anything by test accuracy would make that accuracy an optimistic
# estimate.
#
# `train_test_split(x, y, test_fraction, seed, stratify=True)` takes
# $n_{test} = \lceil n \cdot \text{fraction} \rceil$ examples and **stratifies**: class
# $k$, with $c_k$ of the $n$ examples, gets $c_k\, n_{test}/n$ test examples, rounded so
# the counts add up (largest remainders first). Every class then has the same share of
# each part, up to one example.

# %%
x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_fraction=0.2, seed=0)
x_train, x_val, y_train, y_val = train_test_split(x_rest, y_rest, test_fraction=0.2, seed=1)
print(f"train {len(y_train)}, validation {len(y_val)}, test {len(y_test)} "
      f"(ceil(0.2 * 1797) = {int(np.ceil(0.2 * 1797))})")
for name, labels in (("all", y), ("train", y_train), ("validation", y_val), ("test", y_test)):
    print(f"  {name:10s} class shares (%):", np.round(100 * np.bincount(labels) / len(labels), 1))

# Stratified: every class's test share is within one example of its exact share.
exact = np.bincount(y) * len(y_test) / len(y)
assert np.all(np.abs(np.bincount(y_test) - exact) < 1)

# %% [markdown]
# ## 3. The model
#
# `MLP([64, 64, 10])`: 64 pixels in, one hidden layer of 64 ReLU units, 10 logits out
# (one per digit), He-initialised (tutorial 01). It has
# $64 \cdot 64 + 64 + 64 \cdot 10 + 10 = 4810$ parameters. Before training it guesses: the
# accuracy is near 10% and the loss near $\ln 10 \approx 2.30$, the cross-entropy of a
# uniform guess.

# %%
model = MLP([64, 64, 10], seed=0)
loss0, _ = model.loss(x_train, y_train)
print(model)
print(f"initial loss {loss0:.3f} (ln 10 = {np.log(10):.3f}), "
      f"initial accuracy {100 * model.accuracy(x_train, y_train):.1f}%")
assert model.n_params == 64 * 64 + 64 + 64 * 10 + 10

# %% [markdown]
# ## 4. Mini-batch SGD, one step by hand
#
# The loss we minimise is the mean over all $N$ training examples, but its gradient costs
# a full pass. **Mini-batch SGD** estimates it from a random batch of $B$ examples and
# steps against it:
#
# $$\theta \leftarrow \theta - \eta\, \nabla_\theta L_{\text{batch}}(\theta), \qquad
#   L_{\text{batch}} = \frac{1}{B}\sum_{i \in \text{batch}} L_i .$$
#
# One **epoch** shuffles the $N$ examples and walks through them in $\lceil N/B \rceil$
# batches (the last may be smaller). Here is one step written out, next to
# `nnref.optim.SGD`, which updates the parameter arrays in place.

# %%
lr, batch = 0.1, np.arange(32)  # the first 32 training examples as one batch
m_hand, m_lib = model.copy(), model.copy()

loss_before, grads = m_hand.loss_and_grads(x_train[batch], y_train[batch])
for name, p in m_hand.params.items():
    p -= lr * grads[name]  # theta <- theta - lr * grad, in place

_, grads_lib = m_lib.loss_and_grads(x_train[batch], y_train[batch])
SGD(lr).step(m_lib.params, grads_lib)

for name in model.params:
    np.testing.assert_array_equal(m_hand.params[name], m_lib.params[name])
loss_after, _ = m_lib.loss(x_train[batch], y_train[batch])
print(f"batch loss {loss_before:.4f} -> {loss_after:.4f} after one step; "
      f"{int(np.ceil(len(y_train) / 32))} such steps make one epoch")
assert loss_after < loss_before

# %% [markdown]
# ## 5. Momentum
#
# SGD with momentum keeps a running "velocity" $b$ and steps along it. PyTorch's rule
# (`torch.optim.SGD`, with dampening 0), at step $t$:
#
# $$b_1 = g_1, \qquad b_t = \mu\, b_{t-1} + g_t, \qquad \theta \leftarrow \theta - \eta\, b_t .$$
#
# Consecutive gradients that agree add up, ones that alternate cancel. Under a constant
# gradient $g$ the step grows to $\eta\, g\,(1 + \mu + \mu^2 + \dots) = \eta g / (1 - \mu)$:
# with $\mu = 0.9$ momentum multiplies the learning rate by up to 10. (Sutskever et al.
# 2013 put $\eta$ inside the velocity instead; the two agree for a constant $\eta$.)
#
# Watch it on one parameter with a constant gradient of 1, $\eta = 0.1$, $\mu = 0.9$: the
# step is $\eta (1 - \mu^t) / (1 - \mu)$ and approaches $1.0$.

# %%
opt = SGD(0.1, momentum=0.9)
w = {"w": np.zeros(1)}
steps = []
for _ in range(50):
    before = w["w"][0]
    opt.step(w, {"w": np.ones(1)})
    steps.append(before - w["w"][0])
steps = np.array(steps)
print("step sizes at t = 1, 2, 3, 10, 50:", steps[[0, 1, 2, 9, 49]])
print("momentum buffer b after 50 steps:", opt.state["w"]["momentum_buffer"])
t = np.arange(1, 51)
np.testing.assert_allclose(steps, 0.1 * (1 - 0.9**t) / (1 - 0.9), rtol=1e-12)

# %% [markdown]
# ## 6. Adam
#
# Adam (Kingma & Ba 2015, Algorithm 1; `torch.optim.Adam`) keeps two running averages per
# parameter entry, of the gradient and of its square, and divides one by the root of the
# other:
#
# $$m_t = \beta_1 m_{t-1} + (1-\beta_1)\, g_t, \qquad
#   v_t = \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2,$$
# $$\hat m_t = \frac{m_t}{1-\beta_1^t}, \qquad \hat v_t = \frac{v_t}{1-\beta_2^t}, \qquad
#   \theta \leftarrow \theta - \eta\, \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon},$$
#
# with $m_0 = v_0 = 0$ and defaults $\beta_1 = 0.9$, $\beta_2 = 0.999$,
# $\epsilon = 10^{-8}$. The **bias correction** $1/(1-\beta^t)$ undoes the pull towards
# the zero start: at $t = 1$ it gives $\hat m_1 = g_1$ and $\hat v_1 = g_1^2$, so the first
# step is $\eta\, g/(|g| + \epsilon) \approx \eta \operatorname{sign}(g)$ **whatever the
# gradient's scale**. Without it the first step would be
# $\eta\, 0.1 g / \sqrt{0.001 g^2} \approx 3.16\,\eta$.
#
# Check both claims on two entries whose gradients differ by a factor $10^6$.

# %%
opt = Adam(lr=1e-3)
p = {"w": np.array([0.0, 0.0])}
g1 = {"w": np.array([1e-3, -1e3])}
opt.step(p, g1)
print("after step 1: w =", p["w"], "(both entries moved by lr = 1e-3)")
np.testing.assert_allclose(np.abs(p["w"]), 1e-3, rtol=1e-4)  # rtol covers eps = 1e-8

# Step 2 by hand from the formulas, against the optimizer's own state.
g2 = np.array([2e-3, 1e3])
b1, b2 = opt.betas
m = b1 * (1 - b1) * g1["w"] + (1 - b1) * g2
v = b2 * (1 - b2) * g1["w"] ** 2 + (1 - b2) * g2**2
w_expected = p["w"] - 1e-3 * (m / (1 - b1**2)) / (np.sqrt(v / (1 - b2**2)) + opt.eps)
opt.step(p, {"w": g2})
np.testing.assert_allclose(opt.state["w"]["exp_avg"], m, rtol=1e-12)
np.testing.assert_allclose(opt.state["w"]["exp_avg_sq"], v, rtol=1e-12)
np.testing.assert_allclose(p["w"], w_expected, rtol=1e-12)
print("after step 2: w =", p["w"], " m =", opt.state["w"]["exp_avg"], " v =", opt.state["w"]["exp_avg_sq"])

# %% [markdown]
# ## 7. The training loop: `fit` and its `History`
#
# `fit(model, optimizer, x, y, epochs, batch_size, seed, validation=...)` runs exactly the
# loop of section 4, with `seed` drawing the order of the examples in each epoch (same seed,
# bitwise the same model). At every step it records the batch loss and the gradient norm;
# after every epoch, the loss and accuracy over the whole training and validation sets.
#
# We train with SGD, momentum 0.9, $\eta = 0.1$, batches of 32, for 30 epochs.

# %%
model = MLP([64, 64, 10], seed=0)
history = fit(model, SGD(0.1, momentum=0.9), x_train, y_train, epochs=30, batch_size=32,
              seed=0, validation=(x_val, y_val), verbose=False)
print(history.summary())
print(f"per step: {history.n_steps} entries in history.loss and history.grad_norm "
      f"({history.steps_per_epoch():.0f} steps per epoch)")
print("per epoch: train_loss[:5] =", np.round(history.train_loss[:5], 4))
print("           val_acc[-5:]   =", np.round(history.val_acc[-5:], 4))
print(f"           {sum(history.epoch_time):.2f} s in total")

# %% [markdown]
# `plot_training_curves` draws the per-epoch curves. Training loss keeps falling while the
# validation loss flattens after about ten epochs: from then on the network mostly
# memorises the training set (training accuracy reaches 100%), while validation accuracy
# holds at about 97-98%.

# %%
axes = plot_training_curves(history)
axes[0].set_ylabel("cross-entropy loss (nats)")
save_figure(axes, figures_dir() / "02_training_curves.png")
axes[0].figure

# %% [markdown]
# ## 8. SGD, momentum and Adam compared
#
# Four runs with the same initial weights (`seed=0`) and the same batch order (`seed=0`
# in `fit`), so the optimizer is the only difference:
#
# - plain SGD, $\eta = 0.1$;
# - SGD with momentum 0.9 and $\eta = 0.01$: the same *effective* step
#   $\eta/(1-\mu) = 0.1$ as plain SGD;
# - SGD with momentum 0.9 and $\eta = 0.1$ (our run above): effective step 1;
# - Adam with PyTorch's default $\eta = 10^{-3}$.

# %%
runs = {
    "SGD, lr 0.1": SGD(0.1),
    "SGD + momentum 0.9, lr 0.01": SGD(0.01, momentum=0.9),
    "SGD + momentum 0.9, lr 0.1": SGD(0.1, momentum=0.9),
    "Adam, lr 1e-3": Adam(1e-3),
}
histories = {}
for label, optimizer in runs.items():
    m = MLP([64, 64, 10], seed=0)
    histories[label] = fit(m, optimizer, x_train, y_train, epochs=30, batch_size=32, seed=0,
                           validation=(x_val, y_val), verbose=False)
    h = histories[label]
    print(f"{label:28s} train loss {h.train_loss[-1]:.4f}   val acc {100 * h.val_acc[-1]:.2f}%")

# %%
fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=STYLE["panel_figsize"], layout="constrained")
epochs = np.arange(1, 31)
for (label, h), color in zip(histories.items(), STYLE["cycle"]):
    ax_loss.plot(epochs, h.train_loss, "o-", ms=3, color=color, label=label)
    ax_acc.plot(epochs, 100 * np.array(h.val_acc), "o-", ms=3, color=color, label=label)
ax_loss.set_yscale("log")
ax_loss.set_title("Training loss per epoch")
ax_loss.set_ylabel("cross-entropy loss (nats, log scale)")
ax_acc.set_title("Validation accuracy per epoch")
ax_acc.set_ylabel("accuracy (%)")
# The runs end between 95% and 98%: a 50-100% axis would squash that into a sliver, so the
# axis starts at 85% (the first epochs of the slower runs lie below it).
ax_acc.set_ylim(85, 100)
for ax in (ax_loss, ax_acc):
    ax.set_xlabel("epoch")
    ax.grid(True, alpha=0.3)
ax_loss.legend(fontsize=8)
ax_acc.legend(fontsize=8, loc="upper left")
save_figure(fig, figures_dir() / "02_optimizers.png")
fig

# %% [markdown]
# What the curves say:
#
# - Plain SGD at $\eta = 0.1$ and momentum at $\eta = 0.01$ lie almost on top of each
#   other: on this problem momentum mostly acts as a larger learning rate,
#   $\eta/(1 - \mu)$.
# - With $\eta = 0.1$, momentum takes ten-times-larger effective steps and ends with a
#   training loss more than ten times lower.
# - Adam at its default learning rate is the slowest here. Its steps are about $\eta$ per
#   entry whatever the gradient, and $10^{-3}$ is small for this network; Adam's strength
#   is needing little tuning across very different gradient scales, not beating tuned SGD.
# - Validation accuracy differs much less than the training loss: all four end between 95%
#   and 98%.
#
# ## 9. Test accuracy
#
# The chosen model (momentum, $\eta = 0.1$) meets the test set once. The confusion matrix
# counts, for each true digit (row), how often each digit was predicted (column).

# %%
test_acc = model.accuracy(x_test, y_test)
print(f"test accuracy: {100 * test_acc:.2f}% on {len(y_test)} images "
      f"({int(round((1 - test_acc) * len(y_test)))} mistakes)")
confusion = np.zeros((10, 10), dtype=np.int64)
np.add.at(confusion, (y_test, model.predict(x_test)), 1)
print("confusion matrix (rows: true digit, columns: predicted):")
print(confusion)
assert confusion.sum() == len(y_test)
assert np.trace(confusion) == round(test_acc * len(y_test))  # the diagonal: correct answers
assert 0.95 <= test_acc <= 1.0

# %% [markdown]
# ## 10. Saving and loading
#
# `model.save(path)` writes the architecture and the parameters to a NumPy `.npz` file
# (no pickles, so loading a file cannot run code); `MLP.load(path)` checks the file and
# rebuilds the model. The loaded model is bitwise the same. (Here the file goes to a
# temporary folder; later tutorials train their own models.)

# %%
with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "digits_mlp.npz"
    model.save(path)
    loaded = MLP.load(path)
    print(f"saved {path.name}: {path.stat().st_size / 1024:.1f} KiB -> {loaded}")
for name, p in model.params.items():
    np.testing.assert_array_equal(loaded.params[name], p)
np.testing.assert_array_equal(loaded.forward(x_test), model.forward(x_test))
print(f"loaded model: test accuracy {100 * loaded.accuracy(x_test, y_test):.2f}% (identical)")

# %% [markdown]
# ## Graded exercises: write the two optimizer updates of this tutorial, one parameter at a time
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
# - `sgd_update`: sections 4-5: PyTorch's SGD with momentum, dampening, Nesterov and weight
#   decay (into the buffer); `buf` is `None` before the first step
# - `adam_update`: section 6: PyTorch's Adam; `step` is this parameter's own step count $t
#   \ge 1$

# %%
from nnref import laws

# %% tags=["exercise"]
sgd_update = laws.reference("sgd_update")

# %% tags=["exercise"]
adam_update = laws.reference("adam_update")

# %%
for exercise in (sgd_update, adam_update):
    report = laws.check(exercise.__name__, exercise, max_examples=15)
    print(report if not report.passed else f"{exercise.__name__}: passed ({len(report.results)} laws)")

# %% [markdown]
# ## Summary
#
# - The digits (1,797 images of $8 \times 8$ pixels in $[0, 1]$) are split, stratified, into
#   train / validation / test; the test set is used once.
# - Mini-batch SGD steps $\theta \leftarrow \theta - \eta \nabla L_{\text{batch}}$; momentum
#   accumulates $b_t = \mu b_{t-1} + g_t$ and multiplies the effective step by up to
#   $1/(1-\mu)$; Adam divides a bias-corrected mean of $g$ by the root of a bias-corrected
#   mean of $g^2$, so its first step is $\eta$ per entry whatever the gradient's scale.
# - `fit` runs the loop with a seeded batch order and returns a `History` with per-step
#   losses and gradient norms and per-epoch losses and accuracies.
# - A 4,810-parameter MLP reaches about 98% test accuracy in a second or two of training.
# - `save` / `MLP.load` round-trip the model bitwise through a pickle-free `.npz` file.
#
# ## Exercises
#
# 1. Train `MLP([64, 64, 10])` with `Adam(3e-3)` and with `Adam(1e-2)`. Which learning
#    rate matches momentum SGD's training loss after 30 epochs? What happens to validation
#    accuracy?
# 2. Replace the hidden layer by `[64, 16, 10]` and by `[64, 128, 64, 10]`. Plot
#    validation accuracy per epoch for each and count the parameters (`model.n_params`).
# 3. Use `SGD(0.1, momentum=0.9, nesterov=True)` and `SGD(0.1, momentum=0.9,
#    weight_decay=1e-3)`. Which one changes the gap between training and validation loss,
#    and in which direction?
