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
# # 11 · Binary and ternary weights, and the XNOR-popcount kernel
#
# The end of the bit-width road: one bit per weight. XNOR-Net (Rastegari et al. 2016)
# replaces each weight by its sign times one scale per output channel; ternary weight
# networks (Li et al. 2016) allow a zero as well. Trained with the straight-through
# estimator, a hidden layer survives this. And when the *activations* are binary too, a
# dot product becomes a bit count: XOR the packed bits and count the ones.
#
# **You will learn**
#
# - the best scale for sign weights, $\alpha = \mathrm{mean}|W|$, and ternary thresholds;
# - the straight-through gradient of $\alpha\,\mathrm{sign}(W)$, including the term from
#   $\alpha$ itself;
# - how to binarize the hidden layer of an MLP (first and last layers kept at 8 bits) and
#   fine-tune it with `fit`;
# - the XNOR-popcount identity $a \cdot b = n - 2\,\mathrm{popcount}(a \oplus b)$ on packed
#   bits, exact for every length, and why the padding bits drop out;
# - what binary activations cost.
#
# **You need** tutorial 07 (fake quantization and the straight-through estimator).
#
# **Figures written** (to `figures/`): `11_binary_weights.png`.

# %%
import matplotlib.pyplot as plt
import numpy as np

from nnref.data import load_digits, train_test_split
from nnref.mlp import MLP
from nnref.optim import Adam
from nnref.plots import figures_dir, save_figure
from nnref.plots_recipe import plot_binary_weights
from nnref.quant.binary import (
    BinaryLinear,
    binarize_mlp,
    binary_layer_forward,
    binary_size_bytes,
    binary_weight_grad,
    binary_weights,
    pack_signs,
    ternary_weights,
    xnor_dot,
    xnor_matmul,
)
from nnref.quant.report import format_table, model_size_bytes
from nnref.train import fit

np.set_printoptions(precision=4, suppress=True, linewidth=100)

# %% [markdown]
# ## 1. Sign weights and their scale
#
# Approximate a column $w \in \mathbb{R}^n$ of $W$ by $\alpha b$ with $b \in \{-1,+1\}^n$.
# $\|w - \alpha b\|^2 = \|w\|^2 - 2\alpha\, b^\top w + \alpha^2 n$ is smallest for
# $b = \mathrm{sign}(w)$ (which maximises $b^\top w = \sum_i |w_i|$), and then for
#
# $$\alpha^* = \frac{1}{n}\sum_i |w_i| \qquad \text{(Rastegari et al. 2016, eq. 4).}$$
#
# Ternary weights (TWN) zero the small ones: $t_i = \mathrm{sign}(w_i)\,[|w_i| > \Delta]$ with
# $\Delta = 0.7\,\mathrm{mean}|w|$, and $\alpha$ the mean of the kept magnitudes.

# %%
w = np.array([[0.9], [-0.1], [-0.5], [0.2], [0.05], [-0.6]])
B, alpha = binary_weights(w)
T, alpha_t = ternary_weights(w)
print("w      ", w.ravel())
print("binary ", B.ravel(), " alpha", alpha, " error", np.sum((w - B * alpha) ** 2))
print("ternary", T.ravel(), " alpha", alpha_t, " error", np.sum((w - T * alpha_t) ** 2))
for a in (0.3, 0.5):
    print(f"  binary with alpha = {a}: error {np.sum((w - B * a) ** 2):.4f}")

# %% [markdown]
# ## 2. The straight-through gradient
#
# Training keeps a float *latent* $W$ and uses $W_{\text{eff}} = \alpha\,\mathrm{sign}(W)$
# forward. $\mathrm{sign}$ has zero derivative almost everywhere, so backward replaces it
# with $\mathbf{1}\{|W| \le 1\}$ (the derivative of $\mathrm{clip}(W, -1, 1)$). $\alpha$ depends
# on $W$ too, $\partial\alpha_j / \partial W_{ij} = \mathrm{sign}(W_{ij})/n$, so for
# $g = \partial L / \partial W_{\text{eff}}$:
#
# $$\frac{\partial L}{\partial W_{ij}} = g_{ij}\,\alpha_j\,\mathbf{1}\{|W_{ij}| \le 1\}
#   + \frac{B_{ij}}{n}\sum_k g_{kj} B_{kj}.$$

# %%
g = np.array([[0.3], [-0.2], [0.1], [0.0], [0.5], [-0.4]])
print("dL/dW =", binary_weight_grad(w, g, B, alpha).ravel())
print("first term only (plain STE):", (g * alpha * (np.abs(w) <= 1)).ravel())

# %% [markdown]
# ## 3. A binary hidden layer
#
# `MLP([64, 128, 128, 10])`: the hidden $128 \times 128$ matrix (63 % of the weights) becomes
# binary; the first and last layers keep 8-bit weights (per channel, fake-quantized as in
# QAT), as XNOR-Net and most binary networks do: the first layer sees raw pixels, the
# last produces the logits, and both are small. We start from the trained float model and
# fine-tune for 5 epochs.

# %%
x, y = load_digits()
x_train, x_test, y_train, y_test = train_test_split(x, y, test_fraction=0.2, seed=0)
model = MLP([64, 128, 128, 10], seed=0)
fit(model, Adam(1e-3), x_train, y_train, epochs=30, batch_size=32, seed=0, verbose=False)
rows = [["float32", model_size_bytes(model, "float32").total, 100 * model.accuracy(x_test, y_test)]]
trained = {}
for label, mode, acts in (("binary", "binary", False), ("ternary", "ternary", False),
                          ("binary + binary activations", "binary", True)):
    b = binarize_mlp(model, mode, first_last_bits=8, binary_activations=acts)
    before = b.accuracy(x_test, y_test)
    fit(b, Adam(1e-3), x_train, y_train, epochs=5, batch_size=32, seed=0, verbose=False)
    trained[label] = b
    rows.append([label, binary_size_bytes(b), 100 * b.accuracy(x_test, y_test), 100 * before])
print(format_table([[r[0], r[1], f"{rows[0][1] / r[1]:.1f}x", f"{r[2]:.2f}", f"{r[3]:.2f}" if len(r) > 3 else ""]
                    for r in rows], ["hidden layer", "bytes", "smaller", "test accuracy %", "before fine-tuning %"],
                   align="lrrrr"))

# %% [markdown]
# One bit per hidden weight costs almost nothing after fine-tuning, and the model is
# nearly 8 times smaller than float32 (the 8-bit first and last layers and the float32
# biases and scales are most of what is left). Binary *activations* are harder: the layer in front of the
# binary layer now passes on only the sign of its output, one bit of information per unit.
#
# Below, one column of the binary layer: its latent float weights and the two values
# $\pm\alpha$ they are replaced by.

# %%
layer = trained["binary"].linears[1]
_, alpha_col = layer.quantized()
ax = plot_binary_weights(layer.W[:, 0], alpha_col[0])
ax.set_title("Binary layer, output channel 0: latent weights and $\\pm\\alpha$")
save_figure(ax, figures_dir() / "11_binary_weights.png")
plt.close("all")

# %% [markdown]
# ## 4. XNOR and popcount
#
# With $a, b \in \{-1, +1\}^n$ encoded as bits ($+1 \to 1$, $-1 \to 0$), each product
# $a_i b_i$ is $+1$ where the bits agree and $-1$ where they differ, so
#
# $$a \cdot b = (n - d) - d = n - 2d, \qquad d = \mathrm{popcount}(a \oplus b).$$
#
# `np.packbits` stores 8 signs per byte and pads the last byte with 0 bits *in both
# operands*: their XOR is 0, so the padding drops out (the XNOR form
# $2\,\mathrm{popcount}(\overline{a \oplus b}) - n$ of the paper would count the padding
# and need a correction).

# %%
rng = np.random.default_rng(0)
a = rng.choice([-1, 1], size=13).astype(np.int8)  # 13: not a multiple of 8
b = rng.choice([-1, 1], size=13).astype(np.int8)
pa, pb = pack_signs(a), pack_signs(b)
print("a bits", [f"{v:08b}" for v in pa], " b bits", [f"{v:08b}" for v in pb])
print("a XOR b", [f"{v:08b}" for v in pa ^ pb])
print(f"xnor_dot = {xnor_dot(pa, pb, 13)}, integer dot = {int(a.astype(np.int64) @ b)}")
A = rng.choice([-1, 1], size=(5, 77)).astype(np.int8)
W = rng.choice([-1, 1], size=(77, 3)).astype(np.int8)
print("matrix: equal to A @ W:", np.array_equal(xnor_matmul(pack_signs(A), pack_signs(W.T), 77),
                                                 A.astype(np.int64) @ W))

# %% [markdown]
# In the model with binary activations, the binary layer receives $\pm1$ inputs, so its
# forward pass *is* an XNOR-popcount product followed by one float scale per channel:
# $y = \alpha \odot (x \cdot B) + b$.

# %%
net = trained["binary + binary activations"]
h = x_test[:64].astype(np.float32)
for layer_ in net.layers[:2]:  # 8-bit first layer, then the sign activation
    h = layer_.forward(h)
binary_layer = net.layers[2]
assert isinstance(binary_layer, BinaryLinear)
float_path = binary_layer.forward(h)
xnor_path = binary_layer_forward(h.astype(np.int8), binary_layer)
print(f"max |float forward - XNOR path| = {np.max(np.abs(float_path - xnor_path)):.2e} "
      f"(float32 rounding of the scaled sums only)")

# %% [markdown]
# On hardware the XNOR path replaces 128 multiply-adds per output by two 64-bit XORs and
# popcounts: that, and the 32x smaller weights, is the appeal of binary networks.

# %% [markdown]
# ## Graded exercises: binary weights, their gradient and the XNOR dot product
#
# Each function below is nnref's own. `python -m nnref exercises --out my_exercises`
# writes your version of this tutorial with each of them replaced by its signature, its
# docstring and `raise NotImplementedError`; write the bodies, then
# `python -m nnref check my_exercises` runs nnref's laws on them (hypothesis looks for
# inputs where a law fails and shows the smallest it finds, with the expected and the
# received values). The cell after the exercises runs the same checks here.
#
# - `binary_weights`: section 1: $B = \mathrm{sign}(W)$ with $\mathrm{sign}(0) = +1$ and
#   $\alpha$ = mean $|W|$ per output column
# - `binary_weight_grad`: section 2: the straight-through gradient of the latent weights,
#   both terms
# - `xnor_dot`: section 4: $n - 2\,\mathrm{popcount}(a \oplus b)$, the padding bits left out

# %%
from nnref import laws

# %% tags=["exercise"]
binary_weights = laws.reference("binary_weights")

# %% tags=["exercise"]
binary_weight_grad = laws.reference("binary_weight_grad")

# %% tags=["exercise"]
xnor_dot = laws.reference("xnor_dot")

# %%
for exercise in (binary_weights,
                 binary_weight_grad,
                 xnor_dot):
    report = laws.check(exercise.__name__, exercise, max_examples=15)
    print(report if not report.passed else f"{exercise.__name__}: passed ({len(report.results)} laws)")

# %% [markdown]
# ## Summary
#
# - Binary weights: $W \approx \alpha\,\mathrm{sign}(W)$ per output channel with
#   $\alpha = \mathrm{mean}|W|$, the least-squares scale; ternary adds a zero below
#   $\Delta = 0.7\,\mathrm{mean}|W|$.
# - Training keeps float latent weights; the straight-through estimator passes the
#   gradient where $|W| \le 1$, plus the exact term from $\alpha$.
# - A binary hidden layer with 8-bit first and last layers loses almost nothing on digits
#   after a few epochs of fine-tuning; binary activations cost a few points.
# - With both operands binary, $a \cdot b = n - 2\,\mathrm{popcount}(a \oplus b)$ on packed bits,
#   exactly, for any length.
#
# ## Exercises
#
# 1. Binarize *every* layer (write the model by hand from `BinaryLinear`). How much
#    accuracy do the first and last layers cost in binary?
# 2. Drop the $\alpha$ term from the gradient (train with the first term only). Does it
#    matter here?
# 3. Vary the ternary threshold factor (0.7 in TWN) from 0.3 to 1.2. Plot the fraction of
#    zeros and the accuracy after fine-tuning.
# 4. Time `xnor_matmul` against `A @ W` in int32 and float32 for $n = 4096$. Where does
#    numpy's byte-wise popcount lose to BLAS, and why would 64-bit words change that?
