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
# # 09 · Choosing the precision, and training in half precision
#
# Tutorials 06 and 07 quantized every layer to the same bit width. Two questions were left
# open. **Which precision should each layer get?** The recipe answers from two kinds of
# evidence: the statistics of the weights (before any data is seen) and the model's
# measured performance when one layer at a time is quantized. And **can training itself
# run in 16 bits?** It can, with float32 master weights and *loss scaling*, which keeps
# the small gradients from underflowing to zero.
#
# **You will learn**
#
# - the statistics that predict how well a tensor quantizes: the crest factor
#   $\max|w| / \mathrm{rms}(w)$, outliers, kurtosis, and the "6 dB per bit" rule;
# - per-layer sensitivity, measured on held-out data, and `choose_bit_widths` under a
#   size or an accuracy budget; the integer-only model with mixed per-layer bits;
# - float16 and bfloat16: what each keeps, and bfloat16 rounding as a bit trick;
# - why float16 gradients underflow, and loss scaling (static and dynamic, PyTorch's
#   `GradScaler` rules) as the fix; clipping *after* unscaling;
# - stochastic rounding, which keeps updates that round-to-nearest throws away.
#
# **You need** tutorial 04 (quantization, SQNR), 06 (post-training quantization) and 03
# (gradient clipping).
#
# **Figures written** (to `figures/`): `09_sensitivity.png`, `09_loss_scale.png`.

# %%
import matplotlib.pyplot as plt
import numpy as np

from nnref import clip
from nnref.data import load_digits, train_test_split
from nnref.halfprec import (
    GradScaler,
    bfloat16_bits,
    fit_half,
    gradient_underflow,
    round_to_bfloat16,
    stochastic_round_float16,
)
from nnref.mlp import MLP
from nnref.optim import Adam
from nnref.plots import figures_dir, save_figure
from nnref.plots_recipe import plot_loss_scale, plot_sensitivity
from nnref.quant.report import format_table
from nnref.quant.sensitivity import (
    bits_from_statistics,
    choose_bit_widths,
    layer_statistics,
    mixed_size_bytes,
    quantize_model_mixed,
)
from nnref.train import fit

np.set_printoptions(precision=4, suppress=True, linewidth=100)

# %% [markdown]
# ## 1. A model and three kinds of data
#
# Choosing precision *from the model's measured performance* needs data the model was not
# trained on, and that is not the test set either (choosing on the test set would make
# the test accuracy an optimistic estimate). So the training split is split again: 75 %
# to train, 25 % held out for the choices. The model is a little wider than before,
# `MLP([64, 128, 128, 10])`, three weight matrices of different shapes.

# %%
x, y = load_digits()
x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_fraction=0.2, seed=0)
x_train, x_val, y_train, y_val = train_test_split(x_rest, y_rest, test_fraction=0.25, seed=0)
model = MLP([64, 128, 128, 10], seed=0)
fit(model, Adam(1e-3), x_train, y_train, epochs=30, batch_size=32, seed=0, verbose=False)
float_acc = model.accuracy(x_test, y_test)
print(f"train {len(y_train)}, held out {len(y_val)}, test {len(y_test)}; float32 test accuracy "
      f"{100 * float_acc:.2f} %")

# %% [markdown]
# ## 2. What the statistics of the weights say
#
# A symmetric $b$-bit quantizer scaled to the largest weight has step
# $\Delta = \max|w| / (2^{b-1} - 1)$. Rounding errors are roughly uniform on
# $[-\Delta/2, \Delta/2]$, with power $\Delta^2/12$, so the signal-to-quantization-noise
# ratio is
#
# $$\mathrm{SQNR} = 10\log_{10}\frac{\mathrm{rms}(w)^2}{\Delta^2/12}
#   \approx 10.79 + 20\log_{10}(2^{b-1}-1) - 20\log_{10} c, \qquad
#   c = \frac{\max|w|}{\mathrm{rms}(w)} .$$
#
# Each bit adds about 6 dB; the **crest factor** $c$ subtracts. A tensor with a few large
# outliers (high $c$, high kurtosis) wastes its grid on them: it needs more bits for the
# same SQNR. `layer_statistics` measures all of this per layer (the measured SQNR uses
# per-channel scales, which is why it beats the per-tensor prediction).

# %%
stats = layer_statistics(model, bits=(2, 3, 4, 8))
print(format_table(
    [[s.name, str(s.shape), f"{s.std:.3f}", f"{s.crest_factor:.2f}", f"{100 * s.outlier_fraction:.2f}",
      f"{s.kurtosis:+.2f}", *[f"{s.sqnr_db[b]:.1f} / {s.predicted_sqnr_db[b]:.1f}" for b in (2, 3, 4, 8)]]
     for s in stats],
    ["layer", "shape", "std", "crest", "outliers %", "kurtosis",
     "SQNR 2b (dB, meas./pred.)", "3b", "4b", "8b"]))

# %% [markdown]
# These weights are well behaved: crest factors of 3-5, almost Gaussian (kurtosis near 0),
# and the prediction follows the measurement within a few dB above 2 bits (at 2 bits
# the step is no longer small, and the "uniform error" assumption breaks).
#
# The statistics already give a data-free choice: the fewest bits at which every layer
# reaches a target SQNR (`bits_from_statistics`). An outlier shows what they detect: one
# weight three times the largest stretches a per-tensor grid three times, $-9.5$ dB.

# %%
per_tensor = "tflite_int8_weights_per_tensor"
print("bits for 20 dB, per tensor:             ", bits_from_statistics(model, 20.0, per_tensor))
spiky = model.copy()
spiky.params["W2"][0, 0] = 3 * np.abs(spiky.params["W2"]).max()
print("the same with one outlier in W2:        ", bits_from_statistics(spiky, 20.0, per_tensor))
print(f"crest factor of W2: {layer_statistics(model)[1].crest_factor:.2f} -> "
      f"{layer_statistics(spiky)[1].crest_factor:.2f}")

# %% [markdown]
# Statistics say *how much noise* each bit width adds to each layer. They do not say how
# much the *loss* cares, which is what section 3 measures.
#
# ## 3. Sensitivity: quantize one layer at a time
#
# For each layer $l$ and width $b$, quantize only $W_l$ to $b$ bits, keep the rest float,
# and measure the held-out loss: $\Delta L_l(b) = L(\text{only } W_l \text{ at } b) - L$.

# %%
budget_3 = mixed_size_bytes(model, [3, 3, 3])
choice_3 = choose_bit_widths(model, x_val, y_val, size_budget=budget_3)
sens = choice_3.sensitivity
print(format_table([[f"W{l + 1}", *[f"{d:+.4f}" for d in row]] for l, row in enumerate(sens.delta_loss)],
                   ["layer"] + [f"{b}-bit" for b in sens.bits]))
ax = plot_sensitivity(sens)
save_figure(ax, figures_dir() / "09_sensitivity.png")
plt.close("all")

# %% [markdown]
# Every layer is nearly free down to 4 bits, costs a little at 3, and ten times more at 2.
# The last layer (the logits, 1280 weights) is the most sensitive at 2 bits, and also the
# cheapest to keep precise.
#
# ## 4. `choose_bit_widths`: the best assignment under a budget
#
# Assume the layers' losses add up: the predicted cost of an assignment
# $(b_1, \dots, b_L)$ is $\sum_l \Delta L_l(b_l)$. `choose_bit_widths` scores every
# assignment of 2..8 bits ($7^3 = 343$ here), keeps those within the **size budget**, and
# measures the 8 best predicted *together* on the held-out data (the additivity is only
# an approximation); the lowest measured loss wins. With an **accuracy budget** instead
# it walks from the smallest model up and returns the first within the allowed drop.

# %%
budget_4 = mixed_size_bytes(model, [4, 4, 4])
choice_4 = choose_bit_widths(model, x_val, y_val, size_budget=budget_4)
choice_acc = choose_bit_widths(model, x_val, y_val, max_accuracy_drop=0.01)
rows = []
for label, bits in [("uniform 4-bit", (4, 4, 4)), ("mixed at 4-bit size", choice_4.bits),
                    ("uniform 3-bit", (3, 3, 3)), ("mixed at 3-bit size", choice_3.bits),
                    ("smallest within 1 point", choice_acc.bits)]:
    qmodel = quantize_model_mixed(model, x_train, bits)  # integer-only, int8 activations
    rows.append([label, "-".join(map(str, bits)), mixed_size_bytes(model, bits),
                 f"{100 * qmodel.accuracy(x_test, y_test):.2f}"])
print(format_table(rows, ["weights", "bits W1-W2-W3", "size (B)", "test accuracy %"]))
print(f"assignments within the 3-bit budget: {choice_3.n_feasible}; measured jointly: "
      f"{[''.join(map(str, b)) for b, _, _ in choice_3.evaluated]}")

# %% [markdown]
# Under the 3-bit budget the only ways to give a layer more bits are to push another to 2
# bits, and the sensitivity table shows why that never pays: a 2-bit layer costs ten
# times more loss than any layer gains above 3 bits. So the search keeps 3-3-3. Under the
# 4-bit budget there is room to trade (e.g. a layer at 3 bits pays for another at 5 or 6),
# and the mixed model can beat uniform 4-bit. The accuracy budget was met on the held-out
# data; on the test set the same model can land a little lower (360 images each, one
# image is 0.28 points): a budget on held-out data is an estimate. `quantize_model_mixed` builds the integer
# model layer by layer: each `QuantizedLayer` holds its own weight grid, and the integer
# arithmetic of tutorial 05 does not care how many levels the weights use.
#
# ## 5. Half-precision formats
#
# | format | exponent bits | significand bits (stored) | largest | smallest normal | smallest subnormal |
# |---|---|---|---|---|---|
# | float32 | 8 | 23 | $3.4\times10^{38}$ | $1.2\times10^{-38}$ | $1.4\times10^{-45}$ |
# | float16 | 5 | 10 | 65504 | $6.1\times10^{-5}$ | $6.0\times10^{-8}$ |
# | bfloat16 | 8 | 7 | $3.4\times10^{38}$ | $1.2\times10^{-38}$ | $9.2\times10^{-41}$ |
#
# bfloat16 is float32 with the low 16 bits cut off, so rounding to it is integer
# arithmetic on the bit pattern $u$: add $\mathtt{0x7FFF}$ plus the last kept bit, then
# clear the low 16 bits, which is round-to-nearest, ties to even:
#
# $$\mathrm{bf16}(u) = \bigl(u + \mathtt{0x7FFF} + ((u \gg 16) \mathbin{\&} 1)\bigr)
#   \mathbin{\&} \mathtt{0xFFFF0000}.$$

# %%
vals = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, np.pi, 1e-30, 70000.0], dtype=np.float32)
bf = round_to_bfloat16(vals)
with np.errstate(over="ignore"):
    f16 = vals.astype(np.float16)  # 70000 overflows float16: inf
for v, r, h in zip(vals, bf, f16):
    u = int(np.array(v, np.float32).view(np.uint32))
    print(f"{float(v):>12.8g}  0x{u:08X} -> 0x{int(bfloat16_bits(np.array([u], np.uint32))[0]):08X} "
          f"= {float(r):<12.8g} float16: {float(h):.6g}")

# %% [markdown]
# $1 + 2^{-8}$ lies exactly halfway between two bfloat16 values and goes to the even one
# (1.0); $1 + 3\cdot2^{-8}$ also a tie, goes up. bfloat16 keeps $10^{-30}$ and 70000,
# which float16 flushes to 0 and overflows to infinity: bfloat16 trades precision for
# float32's range.
#
# ## 6. Why float16 gradients vanish, and loss scaling
#
# Softmax cross-entropy's gradient is $(p - y)/B$. Once the model is confident, many
# entries of $p$ are tiny, and divided by the batch size they fall below float16's
# smallest subnormal $2^{-24}$: they round to zero, and so does everything
# backpropagated from them. **Loss scaling** multiplies the loss by $S$ before the
# backward pass (every gradient is then $S$ times larger, shifted into float16's range) and
# divides the float32 gradients by $S$ before the optimizer step (Micikevicius et al.
# 2018). We count the gradient entries float16 flushes to zero in the trained model's
# backward pass:

# %%
for scale in (1.0, 2.0**8, 2.0**16):
    u = [gradient_underflow(model, x_train[i:i + 32], y_train[i:i + 32], "float16", scale)
         for i in range(0, len(x_train), 32)]
    print(f"S = 2^{int(np.log2(scale)):>2}: flushed {100 * np.mean([d['all'] for d in u]):.3f} % of "
          f"nonzero gradient entries (weight gradients {100 * np.mean([d['parameter'] for d in u]):.3f} %)")
print("bfloat16, S = 1:", gradient_underflow(model, x_train[:32], y_train[:32], "bfloat16", 1.0))

# %% [markdown]
# Too large a scale overflows instead (65504 is float16's largest value). **Dynamic loss
# scaling** (PyTorch `GradScaler`) finds the scale as it trains: start at $S = 2^{16}$; if a
# step's gradients contain inf or NaN, *skip the step* and halve $S$; after 2000 finite
# steps in a row, double $S$. Here we start far too high ($2^{30}$) and shorten the growth
# interval to 100 steps to see the whole mechanism in one short run:

# %%
half_model = MLP([64, 128, 128, 10], seed=0)
scaler = GradScaler(init_scale=2.0**30, growth_interval=100)
hist = fit_half(half_model, Adam(1e-3), x_train, y_train, epochs=8, batch_size=32, fmt="float16",
                scaler=scaler, grad_transform=clip.GlobalNorm(1.0), seed=0)
print(f"{hist.n_skipped} of {len(hist.skipped)} steps skipped; final scale 2^{np.log2(scaler.scale):.0f}; "
      f"float16 test accuracy {100 * half_model.accuracy(x_test, y_test):.2f} %")
ax = plot_loss_scale(hist.scale, hist.skipped)
save_figure(ax, figures_dir() / "09_loss_scale.png")
plt.close("all")

# %% [markdown]
# The first steps overflow and are skipped while the scale halves down to where the
# gradients fit; then it climbs every 100 finite steps until it overflows again and backs
# off: a sawtooth just under the largest safe scale. The clipper (`grad_transform`) ran
# on the **unscaled** gradients, as PyTorch requires (`scaler.unscale_` before
# `clip_grad_norm_`). Clipping the *scaled* gradients instead would apply the threshold
# to $S\,g$, i.e. clip the true gradient at $1/S$:

# %%
g = {"W": np.full(4, 0.5, np.float32)}  # true gradient, norm 1
s = GradScaler()
unscaled, _ = s.unscale({"W": g["W"] * np.float32(s.scale)})
right = clip.clip_by_global_norm(unscaled, 0.5)[0]["W"]
wrong = s.unscale(clip.clip_by_global_norm({"W": g["W"] * np.float32(s.scale)}, 0.5)[0])[0]["W"]
print(f"clip after unscaling: norm {np.linalg.norm(right):.3f};  before: norm {np.linalg.norm(wrong):.2e}")

# %% [markdown]
# ## 7. Stochastic rounding
#
# Keeping the *weights* in low precision has a different problem: an update smaller than
# half the spacing between representable numbers is rounded away, every time. Stochastic
# rounding (Gupta et al. 2015) rounds up with probability equal to the distance from the
# lower neighbour:
#
# $$\mathrm{SR}(x) = \begin{cases} \lfloor x\rfloor_\epsilon + \epsilon & \text{with probability }
#   (x - \lfloor x\rfloor_\epsilon)/\epsilon \\ \lfloor x\rfloor_\epsilon & \text{otherwise,}\end{cases}
#   \qquad \mathbb{E}[\mathrm{SR}(x)] = x .$$

# %%
w16_nearest = np.float16(1.0)
w16_stochastic = np.full(1000, 1.0, dtype=np.float16)  # 1000 independent copies
rng = np.random.default_rng(0)
for _ in range(100):  # 100 updates of +1e-4 each: +0.01 in total
    w16_nearest = np.float16(np.float64(w16_nearest) + 1e-4)
    w16_stochastic = stochastic_round_float16(w16_stochastic.astype(np.float64) + 1e-4, rng)
print(f"after 100 steps of +1e-4: round to nearest {float(w16_nearest):.4f}, stochastic "
      f"{w16_stochastic.astype(np.float64).mean():.4f} (mean of 1000), exact 1.0100")

# %% [markdown]
# float16's spacing at 1.0 is $2^{-10} \approx 9.8\times10^{-4}$: round-to-nearest never
# moves the weight; stochastic rounding moves it by the right amount on average. This is
# why float32 *master weights* are the default in mixed-precision training, and why
# stochastic rounding is how hardware without them (or with 8-bit weights) keeps learning.
#
# The benchmark (`python benchmarks/recipe_table.py`, README) trains over three seeds: float16
# with dynamic loss scaling matches float32 to within 0.5 points.

# %% [markdown]
# ## Graded exercises: bfloat16, stochastic rounding and the loss scale
#
# Each function below is nnref's own. `python -m nnref exercises --out my_exercises`
# writes your version of this tutorial with each of them replaced by its signature, its
# docstring and `raise NotImplementedError`; write the bodies, then
# `python -m nnref check my_exercises` runs nnref's laws on them (hypothesis looks for
# inputs where a law fails and shows the smallest it finds, with the expected and the
# received values). The cell after the exercises runs the same checks here.
#
# - `bfloat16_bits`: section 5: float32 bit patterns rounded to bfloat16, nearest even
#   (ties to an even last bit, the largest floats to infinity, NaN kept a NaN)
# - `stochastic_round_plain`: section 7: up with probability $\mathrm{frac}(x/\Delta)$,
#   given the uniforms $u$: unbiased
# - `loss_scale_update`: section 6: PyTorch's `GradScaler.update`, one step

# %%
from nnref import laws

# %% tags=["exercise"]
bfloat16_bits = laws.reference("bfloat16_bits")

# %% tags=["exercise"]
stochastic_round_plain = laws.reference("stochastic_round_plain")

# %% tags=["exercise"]
loss_scale_update = laws.reference("loss_scale_update")

# %%
for exercise in (bfloat16_bits,
                 stochastic_round_plain,
                 loss_scale_update):
    report = laws.check(exercise.__name__, exercise, max_examples=15)
    print(report if not report.passed else f"{exercise.__name__}: passed ({len(report.results)} laws)")

# %% [markdown]
# ## Summary
#
# - Weight statistics predict the quantization noise: about 6 dB per bit minus the crest
#   factor in dB; outliers (high crest factor, high kurtosis) cost bits.
# - Sensitivity measured on held-out data says how much the *loss* cares, layer by layer;
#   `choose_bit_widths` searches every assignment under a size or accuracy budget, and
#   `quantize_model_mixed` runs the result integer-only.
# - float16 has 10 significand bits and a narrow range; bfloat16 has float32's range and 7
#   bits; bfloat16 rounding is integer arithmetic on the float32 pattern.
# - Small gradients underflow in float16; loss scaling shifts them into range, dynamic
#   scaling finds the scale (skip and halve on overflow, double after 2000 good steps),
#   and clipping acts after unscaling.
# - Stochastic rounding is unbiased and keeps updates smaller than the grid spacing.
#
# ## Exercises
#
# 1. Use per-tensor weight scales (`weight_scheme="tflite_int8_weights_per_tensor"` in
#    `layer_statistics` and `choose_bit_widths`). Which layers lose the most SQNR, and does
#    the crest factor predict it?
# 2. Multiply the largest weight of `W2` by 10 (an outlier). How do its crest factor,
#    kurtosis, SQNR and sensitivity change, and which bits does `choose_bit_widths` give it?
# 3. Train with `fit_half(..., fmt="float16", scaler=None)` and with `GradScaler()`. Count
#    the underflowed entries during training (call `gradient_underflow` every epoch). When
#    in training does underflow start, and why then?
# 4. Implement SGD on float16 master weights (no float32 copy) with round-to-nearest and
#    with stochastic rounding. At which learning rate does round-to-nearest stop learning?
