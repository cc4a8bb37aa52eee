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
# # 07 · Quantization-aware fine-tuning and the full recipe
#
# Tutorial 06 ended on a failure: with 2-bit weights, post-training quantization (PTQ)
# threw away a third of the accuracy. The network was trained for float weights and then
# rounded; nothing told it that the rounding was coming. **Quantization-aware training**
# (QAT) tells it: the forward pass computes with the rounded weights and activations, and
# the network is fine-tuned until it works *with* them. This tutorial puts the whole
# course together:
#
# $$\text{train with gradient clipping} \;\to\; \text{post-training quantize} \;\to\;
#   \text{fine-tune with QAT (clipping still on)} \;\to\; \text{integer-only model},$$
#
# at 8, 4, 3 and 2 bits per weight.
#
# **You will learn**
#
# - how fake quantization puts the integer model's rounding into a float forward pass;
# - why the true gradient of rounding is useless, and the straight-through estimator
#   (STE) that replaces it: $\partial\,\mathrm{fq}(x)/\partial x \approx 1$ inside the
#   range, 0 outside (PyTorch's `FakeQuantize` semantics);
# - that QAT is ordinary training: `fit`, Adam and a clipper work on it unchanged;
# - that the fine-tuned model converts to the same integer-only `QuantizedMLP`, and that
#   the integer model matches the QAT simulation;
# - what the recipe buys at each bit width: nothing to gain at 8 bits, most of the loss
#   recovered at 2 bits.
#
# **You need** tutorial 03 (gradient clipping), tutorial 04 (fake quantization, section 10)
# and tutorial 06 (post-training quantization, `quantize_model`).
#
# **Figures written** (to `figures/`): `07_accuracy_vs_bits.png`, `07_qat_curves.png`,
# `07_weight_histograms_2bit.png`.

# %%
import matplotlib.pyplot as plt
import numpy as np

from nnref import clip
from nnref.data import load_digits, train_test_split
from nnref.mlp import MLP
from nnref.optim import Adam
from nnref.plots import (
    STYLE,
    figures_dir,
    plot_grad_norms,
    plot_training_curves,
    save_figure,
)
from nnref.quant import (
    dequantize,
    format_table,
    model_size_bytes,
    prepare_qat,
    quantize_model,
    quantize_weights,
)
from nnref.train import fit

np.set_printoptions(precision=4, suppress=True, linewidth=100)

# %% [markdown]
# ## 1. Step one of the recipe: train with clipping
#
# The data split of tutorial 02: 20 % of the digits for the final test (360 images, so
# one image is 0.28 points), and 20 % of the rest as a validation set to watch training
# with. We train `MLP([64, 64, 10])` with Adam ($\eta = 10^{-3}$, batches of 32, 30
# epochs) and clip the global gradient norm at 1 (`clip.GlobalNorm(1.0)`, PyTorch's
# `clip_grad_norm_`, tutorial 03): a guard against the rare large gradient, which costs
# nothing when the norm is below the threshold. Under Adam it bounds the gradient that
# enters the moment estimates, not the step: tutorial 03's bound $\eta c$ on every step
# holds for plain SGD only, since Adam divides each entry by its own running RMS and
# moves it by about $\eta$ whatever the gradient's size.

# %%
x, y = load_digits()
x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_fraction=0.2, seed=0)
x_train, x_val, y_train, y_val = train_test_split(x_rest, y_rest, test_fraction=0.2, seed=1)
print(f"train {len(y_train)}, validation {len(y_val)}, test {len(y_test)}")

CLIP_NORM = 1.0
model = MLP([64, 64, 10], seed=0)
history = fit(model, Adam(lr=1e-3), x_train, y_train, epochs=30, batch_size=32, seed=0,
              validation=(x_val, y_val), grad_transform=clip.GlobalNorm(CLIP_NORM), verbose=False)
float_acc = model.accuracy(x_test, y_test)
point_per_image = 100 / len(y_test)
print(history.summary())
print(f"median gradient norm {np.median(history.grad_norm):.3f}, largest {max(history.grad_norm):.2f}")
print(f"float32 test accuracy: {100 * float_acc:.2f} %")

# %% [markdown]
# ## 2. Step two: post-training quantization at every bit width
#
# Exactly tutorial 06: `quantize_model` with min-max calibration on the training set,
# weights symmetric per output channel at $b$ bits in the narrow range
# $[-(2^{b-1} - 1),\ 2^{b-1} - 1]$ ($2^b - 1$ levels), activations int8, integer-only
# inference.

# %%
ptq = {bits: quantize_model(model, x_train, bits=bits) for bits in range(8, 1, -1)}
ptq_acc = {bits: qm.accuracy(x_test, y_test) for bits, qm in ptq.items()}
print(format_table(
    [[bits, 2**bits - 1, 100 * acc, f"{100 * (acc - float_acc):+.2f}"] for bits, acc in ptq_acc.items()],
    ["weight bits", "levels", "PTQ accuracy %", "change (points)"], floatfmt=".2f", align="rrrr"))
assert 100 * (float_acc - ptq_acc[8]) <= 1.0  # int8: within the 1-point budget
assert ptq_acc[2] < float_acc - 0.15  # 2 bits: collapse

# %% [markdown]
# Down to 4 bits PTQ stays within about a point of float32; at 3 bits it loses several
# points, and at 2 bits it collapses. With the narrow range at 2 bits each weight is
# **ternary**: $w \in \{-s_c, 0, +s_c\}$ with $s_c = \max_k |W_{kc}|$, so every weight
# whose magnitude is below half of its channel's largest becomes exactly 0:

# %%
w_q2 = ptq[2].layers[0].w_q
print(f"2-bit layer-1 weights: levels {np.unique(w_q2)}, {100 * np.mean(w_q2 == 0):.0f} % are 0")
assert set(np.unique(w_q2)) == {-1, 0, 1}

# %% [markdown]
# Most of each neuron's inputs are cut, and the survivors are all given the same
# magnitude. The float network's solution is gone. We cannot fix that after training; we
# can fine-tune the network to find a *different* solution that lives on the ternary grid.
#
# ## 3. Fake quantization in the forward pass
#
# `prepare_qat(model, weight_bits=2)` builds a `QATMLP`: the same network, but every
# Linear layer computes with fake-quantized weights, and every activation passes through
# an int8 fake quantizer (Jacob et al. 2018, arXiv 1712.05877, section 3):
#
# $$h_0 = \mathrm{FQ}_{in}(x), \qquad z_l = h_{l-1}\, \mathrm{FQ}_w(W_l) + b_l, \qquad
#   h_l = \mathrm{FQ}_l(\mathrm{ReLU}(z_l)), \qquad \text{logits} = \mathrm{FQ}_L(z_L),$$
#
# with $\mathrm{FQ}(v) = s\,(\operatorname{clamp}(\operatorname{round}(v/s) + z,\ q_{\min},\ q_{\max}) - z)$:
# quantize, then dequantize (tutorial 04). The values are floats, but each is exactly one
# of the grid values the integer model will use. The network keeps **latent** float
# weights $W_l$; what it computes with is $\mathrm{FQ}_w(W_l)$, with per-channel scales
# recomputed from the current weights at every step, exactly as the converter will
# compute them. The activation ranges come from moving-average observers (PyTorch's
# default for QAT); `calibrate(x)` initialises them from the training set.

# %%
qat2 = prepare_qat(model, weight_bits=2).calibrate(x_train)
print(qat2)
for layer in qat2.layers:
    print("  ", layer)

# %% [markdown]
# Before any fine-tuning, the simulated weights are exactly the weights 2-bit PTQ
# stored, so the simulation starts where PTQ ended:

# %%
for lin_q, lin_f in zip(qat2.linears, model.linears):
    W_fq = lin_q.quantize_weights()[0]  # FQ_w(W): what the forward pass multiplies by
    assert np.array_equal(W_fq, dequantize(*quantize_weights(lin_f.W, bits=2)))
sim_before = qat2.eval().accuracy(x_test, y_test)
print(f"QAT simulation before fine-tuning: {100 * sim_before:.2f} %, integer 2-bit PTQ model: "
      f"{100 * ptq_acc[2]:.2f} %")
assert abs(sim_before - ptq_acc[2]) <= 0.02

# %% [markdown]
# ## 4. The backward pass: the straight-through estimator
#
# $\mathrm{FQ}$ is a staircase. Its derivative is 0 everywhere except at the steps, where
# it does not exist. So the *true* gradient of the loss with respect to a latent weight is
# zero: nudge the weight and, unless it crosses a rounding boundary, nothing the network
# computes changes. We check it on one weight of layer 1 (`W1`) that is not the largest of its
# column (that one would also move the channel's scale):

# %%
lin0 = qat2.linears[0]
xb, yb = x_train[:64], y_train[:64]
k, c = 3, 5
column = np.abs(lin0.W[:, c])
assert column[k] < column.max()
w_kc = lin0.W[k, c].copy()
loss_before, _ = qat2.loss(xb, yb)
lin0.W[k, c] = w_kc + np.float32(1e-3)  # a small nudge of one latent weight
loss_after, _ = qat2.loss(xb, yb)
lin0.W[k, c] = w_kc  # restored exactly
print(f"W[{k}, {c}] nudged by 1e-3: loss {loss_before:.6f} -> {loss_after:.6f}, "
      f"finite difference {(loss_after - loss_before) / 1e-3:.1f}")
assert loss_after == loss_before

# %% [markdown]
# Gradient descent with that gradient would never move. The **straight-through
# estimator** (Bengio et al. 2013, arXiv 1308.3432; used by Jacob et al. and by PyTorch's
# `FakeQuantize`) pretends the rounding is the identity and keeps the clamp:
#
# $$\frac{\partial\, \mathrm{FQ}(v)}{\partial v} \approx
#   \mathbb{1}\big[q_{\min} \le \operatorname{round}(v/s) + z \le q_{\max}\big]
#   = \begin{cases} 1 & \text{inside the range} \\ 0 & \text{outside (clamped)} \end{cases}$$
#
# For a QAT Linear layer with upstream gradient $g = \partial L / \partial z$ and input $h$:
#
# $$\frac{\partial L}{\partial W} = \big(h^\top g\big) \odot m_W, \qquad
#   \frac{\partial L}{\partial b} = \textstyle\sum_{\text{batch}} g, \qquad
#   \frac{\partial L}{\partial h} = g\, \mathrm{FQ}_w(W)^\top.$$
#
# The weight ranges are the weights' own min-max, so nothing is clamped ($m_W$ is all
# ones): the gradient is the ordinary one, evaluated at the quantized weights, and applied
# to the latent ones. We check exactly that, on a weight-only QAT model (`act_bits=None`)
# against a plain MLP whose weights *are* the quantized ones:

# %%
qat_w = prepare_qat(model, weight_bits=2, act_bits=None)
_, grads_ste = qat_w.loss_and_grads(xb, yb)
plain = qat_w.to_float(fake_quantized=True)  # an ordinary MLP with weights FQ_w(W)
_, grads_plain = plain.loss_and_grads(xb, yb)
for name in grads_ste:
    np.testing.assert_allclose(grads_ste[name], grads_plain[name], rtol=1e-5, atol=1e-7)
print("STE gradient of the latent weights = ordinary gradient at the quantized weights:",
      {name: f"{np.linalg.norm(g):.4f}" for name, g in grads_ste.items()})
assert all(lin.weight_mask.all() for lin in qat_w.linears)

# %% [markdown]
# For the activations the clamp matters: a value can fall outside the moving-average
# range, and then its gradient stops there. Take the quantizer after the hidden ReLU
# (int8, zero point $-128$, top of the range $t = s\,(127 - z)$) and push a few values
# through it, with an upstream gradient of 1. A value slightly beyond $t$ still rounds
# onto the grid (in range: gradient 1); one more than half a step beyond is clamped
# (gradient 0):

# %%
fq_hidden = qat2.activation_quantizers[1]
s_h, z_h = float(fq_hidden.qparams.scale), int(fq_hidden.qparams.zero_point)
top = s_h * (127 - z_h)
probe = np.array([[0.0, 0.3 * top, top, top + 0.4 * s_h, top + 0.6 * s_h, 2 * top]], dtype=np.float32)
out = fq_hidden.forward(probe)
grad = fq_hidden.backward(np.ones_like(probe))
print(f"s = {s_h:.5f}, z = {z_h}, top t = {top:.4f}")
print("v        :", probe[0])
print("FQ(v)    :", out[0])
print("dL/dv    :", grad[0])
assert grad[0].tolist() == [1, 1, 1, 1, 0, 0]

# %% [markdown]
# nnref's fake quantization rounds half away from zero by default, as TensorFlow Lite
# and nnref's converter do, so the simulated weights are bit for bit the stored ones;
# PyTorch rounds half to even (`prepare_qat(..., rounding="half_even")`). Otherwise the
# forward and backward are PyTorch's `FakeQuantize`.
#
# ## 5. Step three: fine-tune with QAT, clipping still on
#
# A `QATMLP` *is* an `MLP`: its `loss_and_grads` returns the STE gradients of the latent
# parameters under the usual names `W1, b1, W2, b2`. So `fit`, Adam and every clipper of
# tutorial 03 work on it unchanged, and clipping composes with QAT through
# `fit(..., grad_transform=...)`. One training step is:
#
# 1. the batch moves the activation ranges (moving average, $c = 0.01$), then
#    fake-quantizes with the new ranges (PyTorch's order);
# 2. forward with $\mathrm{FQ}_w(W)$ and $\mathrm{FQ}$ activations, backward with the STE;
# 3. `clip.GlobalNorm(1.0)` rescales the gradient if its norm exceeds 1;
# 4. Adam updates the latent float weights.
#
# Fine-tuning is short and gentle: 5 epochs at $\eta = 3 \cdot 10^{-4}$. We note the
# simulation's validation accuracy before it starts (the "epoch 0").

# %%
QAT_EPOCHS, QAT_LR = 5, 3e-4


def qat_finetune(bits: int):
    """Step three of the recipe at `bits`: prepare, calibrate, fine-tune with clipping.

    Returns the fine-tuned QATMLP (in eval mode), its History and the validation accuracy
    of the simulation before fine-tuning.
    """
    qat = prepare_qat(model, weight_bits=bits).calibrate(x_train)
    start = qat.eval().accuracy(x_val, y_val)  # the PTQ starting point
    qat.train()
    hist = fit(qat, Adam(lr=QAT_LR), x_train, y_train, epochs=QAT_EPOCHS, batch_size=32, seed=0,
               validation=(x_val, y_val), grad_transform=clip.GlobalNorm(CLIP_NORM), verbose=False)
    return qat.eval(), hist, start


qat2, qat2_history, qat2_start = qat_finetune(2)
print(qat2_history.summary())
print(f"validation accuracy of the 2-bit simulation: {100 * qat2_start:.2f} % before, "
      f"{100 * qat2_history.val_acc[-1]:.2f} % after {QAT_EPOCHS} epochs")
print(f"gradient norm: median {np.median(qat2_history.grad_norm):.2f}, "
      f"clipped on {100 * qat2_history.clip_fraction:.0f} % of the steps")

# %% [markdown]
# The first fine-tuning steps start from a network that has just lost a third of its
# accuracy, so the loss and the gradients are large, and the clipper acts on many steps
# (during the float training it acted on a few percent). Training curves, and the
# gradient norms against the threshold:

# %%
fig, (ax_loss, ax_acc, ax_norm) = plt.subplots(1, 3, figsize=(15.0, 4.2), layout="constrained")
plot_training_curves(qat2_history, axes=[ax_loss, ax_acc])
ax_acc.axhline(100 * qat2_start, color=STYLE["clipped"], ls=":", lw=STYLE["linewidth"],
               label="validation before QAT (2-bit PTQ)")
ax_acc.axhline(100 * model.accuracy(x_val, y_val), color=STYLE["threshold"], ls="--",
               lw=STYLE["linewidth"], label="float32 model, validation")
ax_acc.legend(loc="lower right")
ax_loss.set_title("2-bit QAT: loss per epoch")
ax_acc.set_title("2-bit QAT: accuracy per epoch")
plot_grad_norms(qat2_history, ax=ax_norm, threshold=CLIP_NORM)
ax_norm.set_title("2-bit QAT: gradient norm per step\n(Adam, GlobalNorm(1.0))")
save_figure(fig, figures_dir() / "07_qat_curves.png")
fig

# %%
plt.close(fig)
assert qat2_history.val_acc[-1] > qat2_start + 0.1  # QAT recovered a large part of the loss

# %% [markdown]
# ## 6. Step four: convert to the integer-only model
#
# QAT's product is not the simulation: it is the latent float model, `to_float()`,
# converted to the integer-only model by `QATMLP.convert()`. That calls the same
# `quantize_model` as in tutorial 06, at the same bit width, with the activation ranges
# QAT learned (as PyTorch's `convert` and the TFLite converter keep them) instead of a
# fresh calibration. The converter quantizes the latent weights with exactly the rule the
# simulation used, so the integer model stores *the very weights the network was
# fine-tuned with*, on the very activation grids:

# %%
q2 = qat2.convert()
print(q2)
assert q2.input_qparams == qat2.activation_qparams[0]
assert [layer.out_qparams for layer in q2.layers] == qat2.activation_qparams[1:]
for lin_q, layer in zip(qat2.linears, q2.layers):
    assert np.array_equal(dequantize(layer.w_q, layer.w_qparams), lin_q.quantize_weights()[0])
print("integer weights == simulated weights: True (both layers)")

# %% [markdown]
# The rest is not bit-identical, by design: the integer model rounds the bias to int32
# and applies each multiplier as a 31-bit fixed-point number, where the simulation keeps
# the bias in float and multiplies in float. Each can move an output by one integer step,
# rarely. So we check that the integer model agrees with the simulation on (nearly) every
# test image (exercise 3 asks what a fresh min-max calibration would change):

# %%
pred_int = q2.predict(x_test)
pred_sim = qat2.predict(x_test)
agreement = np.mean(pred_int == pred_sim)
acc_int, acc_sim = q2.accuracy(x_test, y_test), qat2.accuracy(x_test, y_test)
print(f"test accuracy: integer model {100 * acc_int:.2f} %, QAT simulation {100 * acc_sim:.2f} %; "
      f"same prediction on {100 * agreement:.2f} % of the {len(y_test)} images")
assert agreement >= 0.98 and abs(acc_int - acc_sim) <= 0.01

# %% [markdown]
# ## 7. The whole recipe at 8, 4, 3 and 2 bits
#
# The same four steps at each bit width (section 5's function; the 2-bit run is the one
# above). The "simulation" column is the fake-quantized `QATMLP`, the "QAT" column the
# integer model actually deployed. Sizes are counted as in tutorial 06 (packed weights,
# int32 biases, scales, zero points).

# %%
results = {2: (qat2, qat2_history, q2)}
for bits in (8, 4, 3):
    qat_b, hist_b, _ = qat_finetune(bits)
    results[bits] = (qat_b, hist_b, qat_b.convert())

rows, qat_acc = [], {}
for bits in (8, 4, 3, 2):
    qat_b, hist_b, q_b = results[bits]
    qat_acc[bits] = q_b.accuracy(x_test, y_test)
    rows.append([f"int{bits}", model_size_bytes(model, f"int{bits}").total, 100 * ptq_acc[bits],
                 100 * qat_acc[bits], 100 * qat_b.accuracy(x_test, y_test),
                 f"{100 * hist_b.clip_fraction:.0f} %"])
print(f"float32: {model_size_bytes(model, 'float32').total} B, {100 * float_acc:.2f} %")
print(format_table(rows, ["weights", "size (B)", "PTQ %", "QAT %", "QAT simulation %", "steps clipped"],
                   floatfmt=".2f", align="lrrrrr"))
recovered = (qat_acc[2] - ptq_acc[2]) / (float_acc - ptq_acc[2])
print(f"2 bits: PTQ loses {100 * (float_acc - ptq_acc[2]):.1f} points, QAT recovers "
      f"{100 * (qat_acc[2] - ptq_acc[2]):.1f} of them ({100 * recovered:.0f} %)")
assert 100 * (float_acc - qat_acc[8]) <= 1.0 and recovered > 0.5

# %% [markdown]
# - At **8 bits** there is nothing to recover: PTQ is already within the 1-point budget
#   and QAT leaves the accuracy where it was (give or take an image).
# - At **4 and 3 bits** QAT closes the gap, or most of it; a result slightly above
#   float32 is within the noise of one or two images.
# - At **2 bits** PTQ collapsed and QAT brings most of it back, with ternary weights and
#   a model 9 times smaller than float32.
#
# These are one seed's numbers on 360 test images; one image is 0.28 points. The table in
# the README averages 3 seeds (and shows the spread), produced by
# `python benchmarks/quant_table.py` (same float training and QAT settings, without the
# validation split and without clipping).

# %%
fig, ax = plt.subplots(figsize=STYLE["figsize"], layout="constrained")
ax.axhspan(100 * float_acc - 1, 100 * float_acc, color=STYLE["cycle"][2], alpha=0.15,
           label="within 1 point of float32")
ax.axhline(100 * float_acc, color=STYLE["threshold"], ls="--", lw=STYLE["linewidth"], label="float32")
ax.plot(list(ptq_acc), [100 * a for a in ptq_acc.values()], "o-", color=STYLE["before"],
        lw=STYLE["linewidth"], ms=STYLE["markersize"] + 1, label="post-training quantization")
ax.plot(list(qat_acc), [100 * a for a in qat_acc.values()], "s", color=STYLE["after"],
        ms=STYLE["markersize"] + 3, label=f"QAT ({QAT_EPOCHS} epochs, integer model)")
ax.set(title="Integer-only MLP on digits: test accuracy vs weight bits\n"
             "(int8 activations, per-channel weights)",
       xlabel="weight bit width (bits)", ylabel="test accuracy (%)", xticks=range(2, 9))
ax.grid(True, alpha=STYLE["grid_alpha"])
ax.legend(loc="lower right")
save_figure(fig, figures_dir() / "07_accuracy_vs_bits.png")
fig

# %% [markdown]
# ## 8. What QAT did to the 2-bit weights
#
# Drawn as tutorial 06's histograms, the ternary weights before and after QAT look the
# same: the change is too small to see. So we count it instead. Each weight of the integer
# models sits on level $-1$, $0$ or $+1$ of its channel's grid; the figure shows, for each
# layer, how many weights go from each level after PTQ (rows) to each level after QAT
# (columns). The diagonal holds the weights that kept their level; everything off it is
# what QAT changed. The right panel shows *which* weights moved: their position on the
# PTQ grid, $|W| / s_c$ before fine-tuning, against the rounding threshold $1/2$.

# %%
plt.close("all")
fig, axes = plt.subplots(1, 3, figsize=(15.0, 4.4), layout="constrained")
moved_pos, kept_pos = [], []
for i, (ax, before, after, lin) in enumerate(zip(axes[:2], ptq[2].layers, q2.layers, model.linears)):
    counts = np.array([[np.sum((before.w_q == a) & (after.w_q == c)) for c in (-1, 0, 1)] for a in (-1, 0, 1)])
    ax.imshow(np.log10(counts + 1), cmap="Blues")
    for (r, c), n in np.ndenumerate(counts):
        ax.text(c, r, f"{n}\n({100 * n / counts.sum():.1f} %)", ha="center", va="center",
                color="white" if r == c else "black", fontsize=10)
    moved = 100 * (1 - np.trace(counts) / counts.sum())
    ax.set(xticks=range(3), yticks=range(3), xticklabels=["-1", "0", "+1"], yticklabels=["-1", "0", "+1"],
           xlabel="level after QAT", ylabel="level after PTQ (before QAT)",
           title=f"Layer {i + 1} ({lin.W.shape[0]} x {lin.W.shape[1]}): {moved:.1f} % changed level")
    position = np.abs(lin.W) / before.w_qparams.scale  # |W| / s_c of the trained float weights
    changed = before.w_q != after.w_q
    moved_pos.append(position[changed])
    kept_pos.append(position[~changed])
bins = np.linspace(0, 1, 41)
axes[2].hist(np.concatenate(kept_pos), bins=bins, density=True, color=STYLE["before"], alpha=0.6,
             label="kept their level")
axes[2].hist(np.concatenate(moved_pos), bins=bins, density=True, color=STYLE["after"], alpha=0.7,
             label="changed level in QAT")
axes[2].axvline(0.5, color=STYLE["threshold"], ls="--", lw=STYLE["linewidth"], label="rounding threshold 1/2")
axes[2].set(xlabel="|W| / s_c of the trained weight (position on the PTQ grid)", ylabel="density",
            title="Which weights moved: both layers")
axes[2].legend(loc="upper right", fontsize="small")
fig.suptitle("2-bit (ternary) weights: what quantization-aware fine-tuning changed")
save_figure(fig, figures_dir() / "07_weight_histograms_2bit.png")
fig

# %%
plt.close("all")
for i, (before, after) in enumerate(zip(ptq[2].layers, q2.layers)):
    moved = np.mean(before.w_q != after.w_q)
    step_change = np.max(np.abs(after.w_qparams.scale / before.w_qparams.scale - 1))
    print(f"layer {i + 1}: zeros {100 * np.mean(before.w_q == 0):.0f} % -> {100 * np.mean(after.w_q == 0):.0f} %, "
          f"{100 * moved:.1f} % of the weights changed level, "
          f"channel steps s_c changed by up to {100 * step_change:.0f} %")
near = np.mean(np.abs(np.concatenate(moved_pos) - 0.5) < 0.15)
print(f"of the weights that changed level, {100 * near:.0f} % started within 0.15 of the threshold 1/2")

# %% [markdown]
# QAT moved only a few percent of the weights to another level, mostly weights that
# post-training rounding had placed close to the threshold $1/2$ (a coin toss for
# round-to-nearest), changed the channel steps by a few percent (through each channel's
# largest weight) and adjusted the float biases. That was enough to recover most of the
# accuracy. Round-to-nearest PTQ could not find those few changes, because it never
# looks at the loss: it rounds each weight on its own. (Post-training methods that do
# optimise a loss exist: AdaRound (Nagel et al. 2020) learns whether to round each weight
# up or down, and bias correction fixes the shift rounding causes in each layer's output;
# both use calibration data but no labels and no fine-tuning.) The straight-through
# gradient, computed *at* the ternary weights, points to the changes that matter.
#
# ## 9. Does clipping help QAT? An ablation
#
# The recipe keeps clipping on during QAT, and it acted on about half of the 2-bit
# fine-tuning steps (section 5). Does it make the 2-bit model better? We fine-tune the
# same PTQ model with and without `clip.GlobalNorm(1.0)`, with three batch orders (the
# `seed` of `fit`), and compare the integer models on the test set.

# %%
ablation = []
for seed in (0, 1, 2):
    row = {"seed": seed}
    for label, transform in (("clipped", clip.GlobalNorm(CLIP_NORM)), ("unclipped", None)):
        q_seed = prepare_qat(model, weight_bits=2).calibrate(x_train)
        hist = fit(q_seed, Adam(lr=QAT_LR), x_train, y_train, epochs=QAT_EPOCHS, batch_size=32, seed=seed,
                   grad_transform=transform, verbose=False)
        row[label] = 100 * q_seed.eval().convert().accuracy(x_test, y_test)
        row[label + " history"] = hist
    ablation.append(row)
rows = [[r["seed"], r["clipped"], r["unclipped"], r["clipped"] - r["unclipped"],
         f"{100 * r['clipped history'].clip_fraction:.0f} %", max(r["unclipped history"].grad_norm)]
        for r in ablation]
print(format_table(rows, ["seed", "clipped %", "unclipped %", "difference", "steps clipped",
                          "largest norm (unclipped)"], floatfmt=".2f", align="rrrrrr"))
diffs = np.array([r[3] for r in rows])
print(f"clipped minus unclipped: mean {diffs.mean():+.2f} points, range {diffs.min():+.2f} to {diffs.max():+.2f}; "
      f"signs {' '.join('+' if d > 0 else '-' if d < 0 else '0' for d in diffs)} (one image = {point_per_image:.2f})")

# %% [markdown]
# Read the differences against the noise: one test image is 0.28 points, and the QAT rows
# move by up to about 2 points between machines (the float32 summation order of the
# BLAS changes the fine-tuning trajectory; see the README). Differences of this size,
# with signs that change from seed to seed, mean **no measurable effect**: in this recipe
# clipping neither helps nor hurts 2-bit QAT. That is what one should expect from how
# it works here:
#
# - The gradients do not explode: without clipping the largest norm stays within a small
#   factor of the threshold (last column). There is nothing for the guard to catch.
# - Adam divides each entry by its running RMS. Scaling *every* gradient by the same
#   factor would not change Adam's steps at all (up to $\epsilon$); clipping scales only
#   the larger ones, which changes their weight inside Adam's averages a little, not the
#   size of the steps.
#
# So the link between clipping and quantization in this course is not that clipping
# improves the quantized model. Clipping makes the *float training* robust (tutorial 03:
# one bad batch or an unscaled target cannot blow the weights up, and weights that never
# blew up give post-training quantization a sane range to cover); QAT is what recovers
# the accuracy at low bit widths. Keeping the clipper on during QAT costs nothing and
# guards against a rare bad batch; it is not why QAT works.
#
# ## Summary
#
# - The full recipe: train in float with gradient clipping, post-training quantize, and if
#   PTQ loses too much, fine-tune with QAT and convert again to the integer-only model.
# - QAT's forward pass fake-quantizes weights (per channel, from the current weights) and
#   activations (moving-average ranges), so the loss sees exactly the integer model's
#   grid values.
# - The true derivative of rounding is zero almost everywhere; the straight-through
#   estimator uses 1 inside the range and 0 where the value was clamped (PyTorch's
#   `FakeQuantize`), so the weight gradient is the ordinary one at the quantized weights,
#   applied to the latent float weights.
# - A `QATMLP` is an `MLP`: `fit`, optimizers and clippers compose with it unchanged, and
#   `qat.convert()` stores exactly the simulated weights on the learned activation grids;
#   the integer model agrees with the simulation on nearly every image.
# - At 8 bits PTQ is enough; at 2 bits (ternary weights) PTQ collapses and a few epochs of
#   QAT recover most of the loss, at 9 times less memory than float32, by moving a few
#   percent of the weights, mostly those near a rounding threshold, to another level.
# - Clipping during 2-bit QAT (under Adam) has no measurable effect here: its part in the
#   recipe is keeping the float training stable, not improving the quantized model.
#
# ## Exercises
#
# 1. Section 9 compared clipping at 1 with no clipping. Add a tight threshold
#    (`clip.GlobalNorm(0.1)`, which clips every step) and plain SGD with momentum instead
#    of Adam (`SGD(0.05, momentum=0.9)`). With SGD the clipper bounds the step itself:
#    does clipping change the 2-bit result there?
# 2. Use per-tensor weights at 2 bits (`weight_scheme="tflite_int8_weights_per_tensor"` in
#    both `prepare_qat` and `quantize_model`). How much worse is PTQ, and how much does QAT
#    recover?
# 3. Convert the 2-bit QAT model with a fresh min-max calibration instead of its learned
#    ranges: `quantize_model(qat2.to_float(), x_train, bits=2)`. Which activation grids
#    change (compare `input_qparams` and each layer's `out_qparams`), and how often do the
#    integer model and the simulation now disagree?
