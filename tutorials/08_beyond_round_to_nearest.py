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
# # 08 · Beyond round-to-nearest: equalization, bias correction, AdaRound, LSQ and PACT
#
# Tutorial 07 said that post-training quantization "never looks at the loss". That is
# true of **round-to-nearest** (RTN): each weight goes to its nearest grid point, on a grid
# fixed by the weights' min and max. Between RTN and a full quantization-aware fine-tuning
# lies the post-training toolbox that the field's quantization white paper (Nagel et al.
# 2021, arXiv 2106.08295) teaches, and beyond QAT the quantizers that *learn* their grid:
#
# | method | what it changes | data | training |
# |---|---|---|---|
# | cross-layer equalization (CLE) | rescales channels so one grid fits all | none | no |
# | bias correction (BC) | the biases, to cancel the mean error | calibration (or none) | no |
# | AdaRound | whether each weight rounds up or down | calibration | per layer, no labels |
# | QAT (tutorial 07) | the weights, through the rounding | labelled | yes |
# | LSQ | the weights **and** the grid's step | labelled | yes |
# | PACT | the clipping level of each ReLU | labelled | yes |
#
# **You will learn**
#
# - why ReLU networks can be rescaled channel by channel for free, and how that fixes
#   per-tensor grids;
# - that rounding errors have a mean, and how to subtract it from the bias, with data or
#   from a normal model of the pre-activations;
# - AdaRound's relaxation of "up or down" to a continuous variable, and why it works
#   at 2 bits without retraining the network;
# - LSQ's gradient for the step size and PACT's for the clipping level: clipping and
#   quantization as one idea;
# - how all of them compare at 4, 3 and 2 bits, layer by layer.
#
# **You need** tutorials 04 (scale, rounding, clipping), 06 (post-training quantization)
# and 07 (QAT and the straight-through estimator).
#
# **Figures written** (to `figures/`): `08_equalized_ranges.png`, `08_bias_correction.png`,
# `08_adaround.png`, `08_methods_vs_bits.png`, `08_per_layer_error.png`.

# %%
import matplotlib.pyplot as plt
import numpy as np

from nnref.data import load_digits, train_test_split
from nnref.gradcheck import numerical_gradient
from nnref.mlp import MLP
from nnref.optim import Adam
from nnref.plots import figures_dir, save_figure
from nnref.quant import format_table, prepare_qat, quantize_model
from nnref.quant.adaround import (
    adaround,
    adaround_regularizer,
    rectified_sigmoid,
)
from nnref.quant.bias_correction import (
    analytic_bias_correction,
    empirical_bias_correction,
    mean_output_errors,
    preactivation_statistics,
)
from nnref.quant.equalize import absorb_high_biases, channel_ranges, cross_layer_equalization
from nnref.quant.layerwise import dequantized_model, rtn_weights, to_quantized_mlp
from nnref.quant.lsq import lsq_grad, lsq_quantize, pact_backward, prepare_lsq
from nnref.quant.ptq_plots import (
    layer_output_sqnr,
    plot_channel_bias,
    plot_equalized_ranges,
    plot_layer_sqnr,
)
from nnref.train import fit

np.set_printoptions(precision=4, suppress=True, linewidth=100)
PER_CHANNEL, PER_TENSOR = "tflite_int8_weights", "tflite_int8_weights_per_tensor"

# %% [markdown]
# ## 1. The model and the baseline
#
# The float model of `benchmarks/quant_table.py`, seed 0: `MLP([64, 64, 10])` trained with
# Adam for 30 epochs on 80 % of the digits. Round-to-nearest on the converter's min-max grid
# (`quantize_model`, tutorial 06) at 4, 3 and 2 bits, per output channel and per tensor:

# %%
x, y = load_digits()
x_tr, x_te, y_tr, y_te = train_test_split(x, y, seed=0)
model = MLP([64, 64, 10], seed=0)
fit(model, Adam(1e-3), x_tr, y_tr, epochs=30, batch_size=32, seed=0, verbose=False)
float_acc = model.accuracy(x_te, y_te)
BITS = (4, 3, 2)
results = {"RTN per-channel": {}, "RTN per-tensor": {}}
for b in BITS:
    results["RTN per-channel"][b] = quantize_model(model, x_tr, PER_CHANNEL, bits=b).accuracy(x_te, y_te)
    results["RTN per-tensor"][b] = quantize_model(model, x_tr, PER_TENSOR, bits=b).accuracy(x_te, y_te)
print(f"float32: {100 * float_acc:.2f} %")
for name, acc in results.items():
    print(f"{name:16s}", "  ".join(f"int{b} {100 * a:6.2f} %" for b, a in acc.items()))

# %% [markdown]
# ## 2. Cross-layer equalization
#
# A per-tensor grid has one step for the whole matrix, set by its largest weight: a
# channel whose weights are all small lands on a handful of levels. ReLU is *positively
# homogeneous*, $\mathrm{relu}(s z) = s\,\mathrm{relu}(z)$ for $s > 0$, so for two layers
# joined by a ReLU, with $S = \mathrm{diag}(s)$,
#
# $$\mathrm{relu}(x W_1 + b_1)\, W_2 = \mathrm{relu}(x W_1 S^{-1} + b_1 S^{-1})\, S W_2 .$$
#
# Channel $i$ of the first layer (a *column* of $W_1$, nnref stores $W$ as (in, out)) is
# divided by $s_i$, row $i$ of $W_2$ multiplied by it, and the network computes exactly
# the same function. Nagel et al. 2019 (arXiv 1906.04721, section 4.1) choose
#
# $$s_i = \frac{\sqrt{r^{(1)}_i r^{(2)}_i}}{r^{(2)}_i}, \qquad
#   r^{(1)}_i = \max_k |W_1[k, i]|, \quad r^{(2)}_i = \max_j |W_2[i, j]|,$$
#
# after which channel $i$ has the range $\sqrt{r^{(1)}_i r^{(2)}_i}$ in *both* layers.

# %%
cle = cross_layer_equalization(model)
diff = np.abs(cle.forward(x_te) - model.forward(x_te)).max()
r1, r2 = channel_ranges(*[lin.W for lin in cle.linears])
print(f"largest change of a logit after equalization: {diff:.2e} (float32 rounding)")
print(f"ranges equal after: max |r1 - r2| / r2 = {np.max(np.abs(r1 - r2) / r2):.1e}")
assert diff < 1e-4 and np.allclose(r1, r2, rtol=1e-5)
fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
plot_equalized_ranges(model, cle, ax=ax)
save_figure(fig, figures_dir() / "08_equalized_ranges.png")
fig

# %% [markdown]
# Before, the ranges of the first layer's columns and of the second layer's rows differ
# from channel to channel (by a factor of about three here; in convolutional networks with
# depthwise layers, by a factor of a hundred and more); after, the two curves coincide. The
# equalized model is quantized per tensor exactly as before. On this small MLP the ranges
# were never far apart, so equalization alone changes little; it pays off with bias
# correction and at 2 bits (see the benchmark table in the README):

# %%
plt.close(fig)
results["CLE per-tensor"] = {}
for b in BITS:
    w = rtn_weights(cle, PER_TENSOR, b)
    results["CLE per-tensor"][b] = to_quantized_mlp(cle, w, x_tr, calibrate_on="float").accuracy(x_te, y_te)
print("CLE per-tensor  ", "  ".join(f"int{b} {100 * a:6.2f} %" for b, a in results["CLE per-tensor"].items()))

# %% [markdown]
# Dividing $b_1$ by $s$ can also leave a unit with a large bias. Where a pre-activation
# stays above some $c_i \ge 0$ on (almost) all data, the ReLU is the identity there, and
# $c$ can move into the next layer, $b_1 \leftarrow b_1 - c$, $b_2 \leftarrow b_2 + c\,W_2$,
# shrinking the first layer's output range (section 4.1, "absorbing high biases", with
# $c_i = \max(0, \mu_i - 3\sigma_i)$). `absorb_high_biases` does that; on this model no
# hidden unit is three standard deviations above zero, so it moves nothing:

# %%
absorbed = absorb_high_biases(cle, x_tr, n_std=3.0)
moved = cle.linears[0].b - absorbed.linears[0].b
print(f"units whose bias moved: {int(np.sum(moved > 0))} of {moved.size}")
assert np.all(moved >= 0)

# %% [markdown]
# ## 3. Bias correction
#
# Quantizing $W$ to $\hat W = W + \varepsilon$ changes a layer's output by $x\varepsilon$.
# Its mean over the data, $\mathbb{E}[x]\,\varepsilon$, need not be zero: the rounding
# errors of one channel do not cancel, least of all at low bit widths. Since
# $\mathbb{E}[x \hat W + b] = \mathbb{E}[x W + b] + \mathbb{E}[x]\,\varepsilon$ (section 4.2),
#
# $$b \leftarrow b - \mathbb{E}[x]\,(\hat W - W)$$
#
# removes it. **Empirical** correction measures the mean error on calibration data, layer by
# layer, each layer seeing the inputs of the already-corrected quantized network.
# **Analytic** correction needs no data: the input of a hidden layer is $\mathrm{relu}(z)$
# with $z \sim \mathcal{N}(\mu, \sigma^2)$ per channel (batch normalization's statistics in
# the paper, here measured once), whose mean is that of a clipped normal,
#
# $$\mathbb{E}[\mathrm{relu}(z)] = \mu\, \Phi(\mu/\sigma) + \sigma\, \phi(\mu/\sigma).$$

# %%
w3 = rtn_weights(cle, PER_TENSOR, 3)
before = mean_output_errors(cle, dequantized_model(cle, w3), x_tr)
cle_bc = empirical_bias_correction(cle, w3, x_tr)
after = mean_output_errors(cle, dequantized_model(cle_bc, w3), x_tr)
for l, (e0, e1) in enumerate(zip(before, after)):
    print(f"layer {l + 1}: largest |mean error| per channel {np.abs(e0).max():.4f} -> {np.abs(e1).max():.1e}")
assert max(np.abs(e).max() for e in after) < 1e-5
fig, ax = plt.subplots(figsize=(7.5, 4.0), layout="constrained")
plot_channel_bias({"3-bit per-tensor weights": before[1], "after bias correction": after[1]}, ax=ax,
                  title="Layer 2 (logits): mean output error per channel, CLE + 3-bit RTN")
save_figure(fig, figures_dir() / "08_bias_correction.png")
fig

# %%
plt.close(fig)
mean_in, stats = preactivation_statistics(cle, x_tr)
results["CLE + BC per-tensor"], results["CLE + BC (analytic)"] = {}, {}
for b in BITS:
    w = rtn_weights(cle, PER_TENSOR, b)
    emp = empirical_bias_correction(cle, w, x_tr)
    ana = analytic_bias_correction(cle, w, mean_in, stats)
    results["CLE + BC per-tensor"][b] = to_quantized_mlp(emp, w, x_tr).accuracy(x_te, y_te)
    results["CLE + BC (analytic)"][b] = to_quantized_mlp(ana, w, x_tr).accuracy(x_te, y_te)
for name in ("CLE + BC per-tensor", "CLE + BC (analytic)"):
    print(f"{name:20s}", "  ".join(f"int{b} {100 * a:6.2f} %" for b, a in results[name].items()))

# %% [markdown]
# ## 4. AdaRound: up or down?
#
# Round-to-nearest minimises each weight's own error; what matters is the layer's
# *output*. AdaRound (Nagel et al. 2020, arXiv 2004.10568) keeps the grid and decides for
# every weight between $\lfloor W/s \rfloor$ and $\lfloor W/s \rfloor + 1$, relaxed to a
# continuous $V$ (eqs. 22-23):
#
# $$\tilde W = s \cdot \operatorname{clamp}\big(\lfloor W/s \rfloor + h(V),\ q_{\min},\ q_{\max}\big),
#   \qquad h(V) = \operatorname{clamp}\big(\sigma(V)(\zeta - \gamma) + \gamma,\ 0,\ 1\big),$$
#
# with $\zeta = 1.1$, $\gamma = -0.1$: a sigmoid stretched past $[0, 1]$ and clipped, so
# $h$ reaches 0 and 1 exactly. $V$ minimises the reconstruction error of the layer's output
# plus a regulariser that is zero only when every $h$ is 0 or 1 (eqs. 24-25):
#
# $$\min_V\ \big\| f(\hat x \tilde W + b) - f(x W + b) \big\|^2
#   + \lambda \sum_{ij} \big(1 - |2 h(V_{ij}) - 1|^\beta\big),$$
#
# $\hat x$ being the input with the earlier layers already rounded. $\beta$ is annealed from
# 20 (a flat regulariser: $h$ moves freely) to 2 (it pulls hard to 0 or 1):

# %%
v = np.linspace(-4, 4, 401)
hs = np.linspace(0, 1, 201)
fig, (ax_h, ax_r, ax_l) = plt.subplots(1, 3, figsize=(15.0, 4.0), layout="constrained")
ax_h.plot(v, rectified_sigmoid(v), lw=2, label=r"$h(V)$, $\zeta = 1.1$, $\gamma = -0.1$")
ax_h.plot(v, 1 / (1 + np.exp(-v)), "--", label=r"$\sigma(V)$")
ax_h.set(xlabel="V", title="The rectified sigmoid reaches 0 and 1")
for beta in (20, 8, 2):
    ax_r.plot(hs, [adaround_regularizer(np.array([h]), beta) for h in hs], label=rf"$\beta = {beta}$")
ax_r.set(xlabel="h", title=r"Regulariser $1 - |2h - 1|^\beta$ per weight")
for ax in (ax_h, ax_r):
    ax.grid(True, alpha=0.3)
    ax.legend()

# %% [markdown]
# We AdaRound the 2-bit per-channel model (on the step that minimises the weights' squared
# error, as the white paper recommends for low bit widths), 300 Adam iterations per layer
# on mini-batches of 256 calibration images (the benchmark runs 1000 on all of them). No
# label is used and nothing else is trained:

# %%
ada = adaround(model, x_tr, PER_CHANNEL, bits=2, iterations=300, batch_size=256, seed=0)
for l, h in enumerate(ada.history):
    ax_l.plot(h["recon"], label=f"layer {l + 1}")
    print(f"layer {l + 1}: reconstruction error {h['recon'][0]:.3f} -> {h['recon'][-1]:.3f}, "
          f"{100 * h['changed']:.1f} % of the weights rounded the other way than nearest")
ax_l.set(xlabel="iteration", ylabel="reconstruction error", yscale="log",
         title="AdaRound at 2 bits: layer-output error")
ax_l.grid(True, alpha=0.3)
ax_l.legend()
save_figure(fig, figures_dir() / "08_adaround.png")
fig

# %%
plt.close(fig)
mse2 = rtn_weights(model, PER_CHANNEL, 2, method="mse")
acc_mse2 = to_quantized_mlp(model, mse2, x_tr).accuracy(x_te, y_te)
results["AdaRound per-channel"] = {2: to_quantized_mlp(model, ada.weights, x_tr).accuracy(x_te, y_te)}
for b in (4, 3):
    res = adaround(model, x_tr, PER_CHANNEL, bits=b, iterations=300, batch_size=256, seed=0)
    results["AdaRound per-channel"][b] = to_quantized_mlp(model, res.weights, x_tr).accuracy(x_te, y_te)
print(f"2 bits: RTN min-max grid {100 * results['RTN per-channel'][2]:.2f} %, RTN on the MSE grid "
      f"{100 * acc_mse2:.2f} %, AdaRound {100 * results['AdaRound per-channel'][2]:.2f} %")
assert results["AdaRound per-channel"][2] > results["RTN per-channel"][2]

# %% [markdown]
# Every AdaRound weight is still the floor or the ceiling of $W/s$, so the integer model
# stores ordinary 2-bit weights on an ordinary grid: the *choice* of rounding did the work.
#
# ## 5. LSQ: learn the step; PACT: learn the clip
#
# QAT (tutorial 07) trains the weights through the rounding, but its grid is still min-max.
# **LSQ** (Esser et al. 2020, arXiv 1902.08153) makes the step $s$ a parameter:
#
# $$\hat v = \operatorname{round}\big(\operatorname{clamp}(v/s, -Q_N, Q_P)\big)\, s, \qquad
#   \frac{\partial \hat v}{\partial s} = \begin{cases} -v/s + \operatorname{round}(v/s) & -Q_N < v/s < Q_P \\
#   -Q_N & v/s \le -Q_N \\ Q_P & v/s \ge Q_P \end{cases}$$
#
# (eqs. 1-3; the rounding is passed straight through), scaled by $g = 1/\sqrt{N Q_P}$.
# **PACT** (Choi et al. 2018, arXiv 1805.06085) replaces a ReLU by
# $y = \operatorname{clamp}(x, 0, \alpha)$ quantized on $[0, \alpha]$, with
# $\partial y_q / \partial \alpha = 1$ where $x \ge \alpha$, else 0, and $\alpha$
# L2-regularised. A step $s$ with $Q_P$ levels clips at $s Q_P$: both learn *where to clip*.
# The gradients, checked against central differences where the functions are smooth:

# %%
vv = np.array([-2.3, -0.4, 0.2, 1.7, 5.0])
s0 = 1.3
_, ds = lsq_grad(vv, s0, 1, 1)
num = [numerical_gradient(lambda a, vi=vi: float(lsq_quantize(np.array([vi]), a[0], 1, 1)[0]), np.array([s0]))[0]
       for vi in vv]
print("v / s              :", vv / s0)
print("LSQ d v_hat / d s  :", ds)
print("finite differences :", np.array(num), "(equal where clamped; inside, the STE keeps -v/s)")
xs = np.array([-1.0, 0.5, 2.0, 3.5])
dx, dalpha = pact_backward(np.ones(4), xs, 2.5)
print(f"PACT, alpha = 2.5: dL/dx {dx}, dL/dalpha {dalpha} (one input above alpha)")
clamped = np.abs(vv / s0) >= 1
assert np.allclose(ds[clamped], np.array(num)[clamped]) and dalpha == 1.0

# %% [markdown]
# Both are `MLP`s for `fit`: `prepare_lsq` returns a model whose `params` hold the weights,
# biases and steps (`sW1`, `sA1`, ... or PACT's `alpha1`). We fine-tune QAT, LSQ and
# LSQ + PACT exactly alike: 5 epochs of Adam at $3 \cdot 10^{-4}$, int8 activations, then
# convert each to the integer-only model.

# %%
for name in ("QAT", "LSQ", "LSQ + PACT"):
    results[name] = {}
for b in BITS:
    sims = {"QAT": prepare_qat(model, weight_bits=b).calibrate(x_tr),
            "LSQ": prepare_lsq(model, x_tr, b, act_quantizer="lsq"),
            "LSQ + PACT": prepare_lsq(model, x_tr, b, act_quantizer="pact")}
    for name, sim in sims.items():
        fit(sim, Adam(3e-4), x_tr, y_tr, epochs=5, batch_size=32, seed=0, verbose=False)
        qm = sim.eval().convert() if name == "QAT" else sim.convert(x_tr)
        results[name][b] = qm.accuracy(x_te, y_te)
print(format_table([[name] + [100 * acc[b] for b in BITS] for name, acc in results.items()],
                   ["method (int8 activations)"] + [f"int{b} %" for b in BITS], floatfmt=".2f"))

# %% [markdown]
# ## 6. Side by side
#
# One seed and 360 test images (one image is 0.28 points): read differences of a point or
# two as noise. `python benchmarks/ptq_toolbox.py` runs every method on three seeds with
# AdaRound's full 1000 iterations (the table in the README).

# %%
fig, ax = plt.subplots(figsize=(8.5, 4.8), layout="constrained")
ax.axhline(100 * float_acc, color="#555555", ls="--", label="float32")
for i, (name, acc) in enumerate(results.items()):
    ax.plot(BITS, [100 * acc[b] for b in BITS], "o-" if "RTN" in name else "s-",
            color=plt.cm.tab10(i), label=name)
ax.set(xlabel="weight bits", ylabel="test accuracy (%)", xticks=BITS,
       title="Integer-only MLP on digits: methods vs weight bits (int8 activations)")
ax.invert_xaxis()
ax.grid(True, alpha=0.3)
ax.legend(fontsize="small", ncol=2, loc="lower left")
save_figure(fig, figures_dir() / "08_methods_vs_bits.png")
fig

# %% [markdown]
# ## 7. Where the error is: layer by layer
#
# Accuracy is one number; the signal-to-quantization-noise ratio of each layer's output
# (integer model, dequantized, against the float model's) shows where each method gains.
# At 2 bits per channel:

# %%
plt.close(fig)
lsq2 = prepare_lsq(model, x_tr, 2)
fit(lsq2, Adam(3e-4), x_tr, y_tr, epochs=5, batch_size=32, seed=0, verbose=False)
compared = {
    "RTN (min-max grid)": quantize_model(model, x_tr, bits=2),
    "RTN (MSE grid)": to_quantized_mlp(model, mse2, x_tr),
    "RTN + bias correction": to_quantized_mlp(empirical_bias_correction(model, mse2, x_tr), mse2, x_tr),
    "AdaRound": to_quantized_mlp(model, ada.weights, x_tr),
    "LSQ (fine-tuned)": lsq2.convert(x_tr),
}
sqnr = {name: layer_output_sqnr(model, qm, x_te) for name, qm in compared.items()}
for name, values in sqnr.items():
    print(f"{name:22s}", "  ".join(f"{v:6.2f} dB" for v in values))
fig, ax = plt.subplots(figsize=(8.0, 4.5), layout="constrained")
plot_layer_sqnr(sqnr, ax=ax, title="2-bit weights per channel: SQNR of each layer's output (test set)")
save_figure(fig, figures_dir() / "08_per_layer_error.png")
fig

# %% [markdown]
# Reading the bars from left to right:
#
# - the min-max grid wastes its three levels (one weight per channel sits at $\pm s$,
#   most others round to 0): the lowest SQNR in both layers;
# - the MSE grid clips the largest weights and gains several dB;
# - bias correction on the same weights gains several more: at 2 bits a large part of the
#   error is its *mean*, which the bias absorbs;
# - AdaRound, on the same grid and without touching the bias, chooses the roundings that
#   reconstruct each layer's output, and reaches the best logits of the post-training
#   methods (and the benchmark's "AdaRound + BC" row combines the two);
# - LSQ, fine-tuned with the labels, does not try to reproduce the float model's hidden
#   layer at all (its first-layer SQNR is lower than AdaRound's) and still ends with the
#   highest SQNR at the logits: it changed the weights, not only their rounding.

# %%
plt.close("all")
first, logits = 0, 1
assert sqnr["RTN (MSE grid)"][first] > sqnr["RTN (min-max grid)"][first]
assert all(sqnr["RTN + bias correction"][l] > sqnr["RTN (MSE grid)"][l] for l in (first, logits))
assert sqnr["AdaRound"][logits] > max(sqnr[k][logits] for k in list(sqnr)[:3])
assert sqnr["LSQ (fine-tuned)"][first] < sqnr["AdaRound"][first]
assert sqnr["LSQ (fine-tuned)"][logits] == max(v[logits] for v in sqnr.values())

# %% [markdown]
# ## Graded exercises: write AdaRound's, equalization's, LSQ's and PACT's formulas
#
# Each function below is nnref's own. `python -m nnref exercises --out my_exercises`
# writes your version of this tutorial with each of them replaced by its signature, its
# docstring and `raise NotImplementedError`; write the bodies, then
# `python -m nnref check my_exercises` runs nnref's laws on them (hypothesis looks for
# inputs where a law fails and shows the smallest it finds, with the expected and the
# received values). The cell after the exercises runs the same checks here.
#
# - `rectified_sigmoid`: section 4: AdaRound's $h(V) = \mathrm{clamp}(\sigma(V)(\zeta -
#   \gamma) + \gamma, 0, 1)$, exactly 0 or 1 for large $|V|$
# - `adaround_regularizer`: section 4: $\sum 1 - |2h - 1|^\beta$, one number for the layer
# - `equalization_scales`: section 2: $s_i = \sqrt{r^{(1)}_i r^{(2)}_i} / r^{(2)}_i$, and 1
#   for a dead channel
# - `lsq_grad`: section 5: the gradients for the value and the step, ties half away from
#   zero, the ends of the grid outside
# - `pact_backward`: section 5: the input's gradient where $0 \le x < \alpha$, the clip's
#   where $x \ge \alpha$

# %%
from nnref import laws

# %% tags=["exercise"]
rectified_sigmoid = laws.reference("rectified_sigmoid")

# %% tags=["exercise"]
adaround_regularizer = laws.reference("adaround_regularizer")

# %% tags=["exercise"]
equalization_scales = laws.reference("equalization_scales")

# %% tags=["exercise"]
lsq_grad = laws.reference("lsq_grad")

# %% tags=["exercise"]
pact_backward = laws.reference("pact_backward")

# %%
for exercise in (rectified_sigmoid,
                 adaround_regularizer,
                 equalization_scales,
                 lsq_grad,
                 pact_backward):
    report = laws.check(exercise.__name__, exercise, max_examples=15)
    print(report if not report.passed else f"{exercise.__name__}: passed ({len(report.results)} laws)")

# %% [markdown]
# ## Summary
#
# - **Cross-layer equalization** uses ReLU's positive homogeneity to give every channel the
#   same range in two consecutive layers, $s_i = \sqrt{r^{(1)}_i r^{(2)}_i} / r^{(2)}_i$,
#   without changing the float function: it is what makes per-tensor grids work.
# - **Bias correction** subtracts the mean output error $\mathbb{E}[x](\hat W - W)$ from the
#   bias: measured on calibration data (empirical) or computed from the pre-activation
#   statistics with a clipped-normal model (analytic, data-free).
# - **AdaRound** learns, per weight, floor or ceiling, by minimising each layer's output
#   error through a rectified sigmoid and an annealed regulariser; at 2 bits it recovers
#   most of what round-to-nearest loses, without training the network.
# - **LSQ** learns the step size with gradient $-v/s + \operatorname{round}(v/s)$ inside the
#   range and $\pm Q$ outside, scaled by $1/\sqrt{N Q_P}$; **PACT** learns the ReLU's
#   clipping level with gradient 1 where the input is clipped. Both turn the clipping range
#   into a parameter of the loss.
# - All of these produce ordinary integer weights on ordinary grids: the same integer-only
#   `QuantizedMLP`, bit for bit the TensorFlow Lite arithmetic of tutorial 05.
#
# ## Exercises
#
# 1. Give one channel of the first layer a range 100 times the others (multiply column 0
#    of `W1` by 100 and row 0 of `W2` by 1/100: the float function is unchanged). How much
#    does per-tensor RTN lose at 4 bits now, and how much does CLE recover?
# 2. Run AdaRound at 2 bits with `scale_method="minmax"` and with `reg_weight=0`. Which
#    matters more, the grid or the regulariser? Look at `history[l]["soft"]`, the fraction
#    of weights still undecided, in both runs.
# 3. Compare the empirical and the analytic bias corrections layer by layer: print
#    `empirical_bias_correction(...).linears[1].b - analytic_bias_correction(...).linears[1].b`
#    at 3 bits. Where does the clipped-normal assumption fail, and why does it not matter in
#    the first layer?
# 4. Fine-tune LSQ with the weights' steps frozen (set `lsq.linears[l].s` back after every
#    epoch, or give Adam a zero learning rate for them by removing them from `params`).
#    How much of LSQ's advantage over QAT comes from the learned step?
# 5. Quantize the hidden activations to 3 bits (`prepare_lsq(..., act_bits=3)` and
#    `prepare_qat(..., act_bits=3)`) and compare QAT's min-max range, LSQ's learned step and
#    PACT's learned clip on the simulation's accuracy (`sim.accuracy`): where does learning
#    the clipping level pay off?
