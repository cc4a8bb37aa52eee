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
# # 10 · Pruning, weight sharing and Huffman coding (Deep Compression)
#
# Quantization shrinks every weight. Deep Compression (Han, Mao & Dally, ICLR 2016) goes
# further in three stages: **prune** the weights that matter least and retrain the rest;
# **share** the survivors, so each weight is a short index into a small table of values;
# **Huffman-code** the indices, since some values are much more common than others. This
# tutorial runs all three on the digits MLP and measures the size after each stage.
#
# **You will learn**
#
# - magnitude pruning, per layer or with one global threshold, one-shot or iterative;
# - how to keep pruned weights at exactly zero through training, whatever the optimizer
#   (momentum buffers and Adam's moments included);
# - k-means weight sharing, and why the gradient of a shared value is the *sum* of its
#   members' gradients;
# - Huffman coding and sparse storage by relative index, and the three-stage size table;
# - that pruning composes with the integer-only int8 model.
#
# **You need** tutorial 02 (optimizers, `fit`) and 06 (post-training quantization).
#
# **Figures written** (to `figures/`): `10_sparsity_by_layer.png`, `10_centroids.png`.

# %%
import matplotlib.pyplot as plt
import numpy as np

from nnref.data import load_digits, train_test_split
from nnref.mlp import MLP
from nnref.optim import SGD, Adam
from nnref.plots import figures_dir, save_figure
from nnref.plots_recipe import plot_centroids, plot_sparsity_by_layer
from nnref.prune import (
    MaskedOptimizer,
    SharedWeightMLP,
    apply_masks,
    compression_sizes,
    huffman_code_lengths,
    prune_masks,
    relative_index_gaps,
    sparsity,
)
from nnref.quant.convert import quantize_model
from nnref.quant.report import format_table, model_size_bytes
from nnref.train import fit

np.set_printoptions(precision=4, suppress=True, linewidth=100)

# %% [markdown]
# ## 1. The float model
#
# `MLP([64, 64, 10])` trained as in tutorial 07 (Adam, $\eta = 10^{-3}$, 30 epochs): the
# model of the README's quantization table.

# %%
x, y = load_digits()
x_train, x_test, y_train, y_test = train_test_split(x, y, test_fraction=0.2, seed=0)
model = MLP([64, 64, 10], seed=0)
fit(model, Adam(1e-3), x_train, y_train, epochs=30, batch_size=32, seed=0, verbose=False)
float_acc = model.accuracy(x_test, y_test)
print(f"float32 test accuracy {100 * float_acc:.2f} %, {model.n_params} parameters")

# %% [markdown]
# ## 2. Magnitude pruning
#
# The simplest importance score is the magnitude: a weight near zero contributes little
# to $z = xW + b$. Pruning to sparsity $s$ keeps a mask
#
# $$m_{ij} = \bigl[\,|W_{ij}| > t\,\bigr], \qquad t = \text{the } \lceil s\,n \rceil\text{-th smallest } |W_{ij}|,$$
#
# and sets $W \leftarrow m \odot W$. **Per layer**, each matrix loses the fraction $s$;
# **globally**, one threshold $t$ serves all matrices, so a layer of small weights loses
# more. One-shot pruning of 80 % without retraining:

# %%
per_layer = prune_masks(model, 0.8, scope="layer")
global_ = prune_masks(model, 0.8, scope="global")
for label, masks in (("per layer", per_layer), ("global", global_)):
    pruned = model.copy()
    apply_masks(pruned.params, masks)
    print(f"{label:>9}: pruned {[f'{1 - m.mean():.2f}' for m in masks.values()]} of W1, W2; "
          f"test accuracy {100 * pruned.accuracy(x_test, y_test):.2f} % (no retraining)")
ax = plot_sparsity_by_layer({"per layer": per_layer, "global": global_})
save_figure(ax, figures_dir() / "10_sparsity_by_layer.png")
plt.close("all")

# %% [markdown]
# Global pruning spares the output layer (640 weights, larger on average) and takes more
# from `W1`, whose weights are smaller: one threshold for all layers prunes where the
# magnitudes are small, not evenly. Here that happens to hurt less without retraining;
# with retraining (section 4) per-layer pruning to 80 % loses almost nothing. Without
# retraining, 80 % is too much either way.
#
# ## 3. Keeping the mask through training
#
# Retraining must not revive a pruned weight. Masking the gradient is not enough: SGD's
# momentum buffer and Adam's moments remember gradients from *before* pruning, and weight
# decay pulls on every entry. `MaskedOptimizer` wraps any optimizer and enforces the mask
# after each step, on the weights **and** on the optimizer's state:
#
# $$g \leftarrow m \odot g, \quad \text{step}, \quad W \leftarrow m \odot W, \quad
#   \text{state} \leftarrow m \odot \text{state}.$$

# %%
demo = model.copy()
opt = SGD(0.05, momentum=0.9, weight_decay=1e-3)
fit(demo, opt, x_train[:256], y_train[:256], epochs=1, batch_size=32, verbose=False)  # momentum built up
masks = prune_masks(demo, 0.5)
apply_masks(demo.params, masks)
naive = demo.copy()
fit(naive, opt, x_train, y_train, epochs=1, batch_size=32, verbose=False)  # the plain optimizer
print(f"plain SGD with momentum: {sparsity(naive.params):.3f} of the weights still zero")
opt2 = Adam(1e-3)
fit(demo, MaskedOptimizer(opt2, masks), x_train, y_train, epochs=3, batch_size=32, verbose=False)
print(f"MaskedOptimizer(Adam):   {sparsity(demo.params):.3f} still zero; Adam's exp_avg at pruned "
      f"entries: {np.abs(opt2.state['W1']['exp_avg'][~masks['W1']]).max()}")

# %% [markdown]
# ## 4. Iterative pruning with retraining
#
# Han et al. prune in steps: remove some weights, retrain so the others take over their
# work, remove more. Here 50 %, 70 % then 80 % of every weight matrix, with 15 epochs of
# retraining after each step.

# %%
pruned = model.copy()
for s in (0.5, 0.7, 0.8):
    masks = prune_masks(pruned, s, scope="layer")
    apply_masks(pruned.params, masks)
    fit(pruned, MaskedOptimizer(Adam(1e-3), masks), x_train, y_train, epochs=15, batch_size=32,
        seed=0, verbose=False)
    print(f"sparsity {sparsity(pruned.params):.3f}: test accuracy {100 * pruned.accuracy(x_test, y_test):.2f} %")
pruned_acc = pruned.accuracy(x_test, y_test)

# %% [markdown]
# ## 5. Weight sharing by k-means
#
# The 20 % of weights left in a layer take many distinct float values; they need far
# fewer. Cluster them into $k = 16$ values $c_1..c_k$ by 1-D k-means (initialised evenly
# between the smallest and largest weight, which keeps the rare large weights), and store
# for each weight a 4-bit index $a_{ij}$: $W_{ij} = c_{a_{ij}}$. The loss depends on $c_j$
# through every weight that points at it, so by the chain rule
#
# $$\frac{\partial L}{\partial c_j} = \sum_{(i,l):\ a_{il} = j} \frac{\partial L}{\partial W_{il}}$$
#
# (Han et al. 2016, eq. 3): the centroids are trained with the summed gradient of their
# members. `SharedWeightMLP` exposes the centroids as parameters, so `fit` fine-tunes them.

# %%
shared = SharedWeightMLP(pruned, k=16, masks=masks)
print(f"shared, before fine-tuning: {100 * shared.accuracy(x_test, y_test):.2f} %")
fit(shared, Adam(1e-4), x_train, y_train, epochs=3, batch_size=32, seed=0, verbose=False)
shared_acc = shared.accuracy(x_test, y_test)
print(f"after 3 epochs of centroid fine-tuning: {100 * shared_acc:.2f} %; distinct kept values in W1: "
      f"{len(np.unique(shared.to_mlp().params['W1'][masks['W1']]))}")
ax = plot_centroids(pruned.params["W1"][masks["W1"]], shared.params["C1"])
save_figure(ax, figures_dir() / "10_centroids.png")
plt.close("all")

# %% [markdown]
# ## 6. Sparse storage and Huffman coding
#
# A sparse matrix stores each kept weight with its position. Deep Compression stores the
# *gap* to the previous kept weight in a few bits (5 here); a gap too long for 5 bits is
# bridged with a filler zero. Then both streams (the 4-bit cluster indices and the gaps)
# are Huffman-coded: an optimal prefix code gives frequent symbols short codes, and the
# coded length $\sum_i n_i \ell_i$ is within one bit per symbol of the entropy
# $-\sum_i n_i \log_2 (n_i / N)$.

# %%
gaps, fillers = relative_index_gaps(masks["W1"], 5)
idx = shared.idx["W1"][masks["W1"]]
counts = np.bincount(idx, minlength=16)
lengths = huffman_code_lengths(counts)
entropy = -np.sum(counts[counts > 0] * np.log2(counts[counts > 0] / counts.sum()))
print(f"W1: {masks['W1'].sum()} kept weights, {fillers} fillers, gaps 1..{gaps.max()}")
print("cluster sizes ", counts)
print("code lengths  ", lengths)
print(f"4-bit indices {4 * counts.sum()} bits; Huffman {np.sum(counts * lengths)} bits; entropy {entropy:.0f} bits")

# %% [markdown]
# ## 7. The three-stage table, and pruning with int8

# %%
sizes = compression_sizes(shared, index_bits=5)
q = quantize_model(pruned, x_train)
rows = [
    ["float32", sizes.dense, 100 * float_acc],
    ["pruned 80 % (sparse, float32 values)", sizes.pruned, 100 * pruned_acc],
    ["+ 16-value sharing (4-bit indices)", sizes.shared, 100 * shared_acc],
    ["+ Huffman coding", sizes.huffman, 100 * shared_acc],
    ["pruned 80 % + int8 integer-only (dense storage)", model_size_bytes(pruned, "int8").total,
     100 * q.accuracy(x_test, y_test)],
]
print(format_table([[r[0], r[1], f"{sizes.dense / r[1]:.1f}x", f"{r[2]:.2f}"] for r in rows],
                   ["stage", "bytes", "smaller", "test accuracy %"], align="lrrr"))
zeros_kept = all(np.array_equal(layer.w_q == 0, pruned.params[f"W{i}"] == 0) for i, layer in enumerate(q.layers, 1))
print("int8 weights are zero exactly where the pruned weights are:", zeros_kept)

# %% [markdown]
# Pruning and sharing multiply: 80 % fewer weights, each 4 + 5 bits instead of 32 + 5,
# then Huffman's variable-length codes. The int8 row stores its weights densely (zeros
# included), so pruning buys it no size by itself, but symmetric quantization maps 0 to
# the integer 0: the integer model keeps the sparsity, which sparse int8 kernels exploit.
# The benchmark (README) repeats this over three seeds.

# %% [markdown]
# ## Graded exercises: the pruning mask and the shared values' gradient
#
# Each function below is nnref's own. `python -m nnref exercises --out my_exercises`
# writes your version of this tutorial with each of them replaced by its signature, its
# docstring and `raise NotImplementedError`; write the bodies, then
# `python -m nnref check my_exercises` runs nnref's laws on them (hypothesis looks for
# inputs where a law fails and shows the smallest it finds, with the expected and the
# received values). The cell after the exercises runs the same checks here.
#
# - `magnitude_mask_plain`: section 2: keep all but the `n_prune` smallest $|w|$ (equal
#   magnitudes: the earlier position is pruned first)
# - `centroid_grads`: section 5: each shared value's gradient, the sum over its kept
#   weights

# %%
from nnref import laws

# %% tags=["exercise"]
magnitude_mask_plain = laws.reference("magnitude_mask_plain")

# %% tags=["exercise"]
centroid_grads = laws.reference("centroid_grads")

# %%
for exercise in (magnitude_mask_plain,
                 centroid_grads):
    report = laws.check(exercise.__name__, exercise, max_examples=15)
    print(report if not report.passed else f"{exercise.__name__}: passed ({len(report.results)} laws)")

# %% [markdown]
# ## Summary
#
# - Magnitude pruning keeps the largest weights, per layer or with one global threshold;
#   80 % one-shot costs many points, iterative pruning with retraining almost none.
# - A mask must be enforced on the weights *and* on the optimizer state; `MaskedOptimizer`
#   does both for any optimizer.
# - Weight sharing replaces each weight by one of $k$ centroids; the centroid's gradient
#   is the sum of its members' gradients, so the shared model trains with `fit`.
# - Relative indices, shared values and Huffman coding store the pruned, shared model in
#   about 14 times fewer bytes than the float32 one; int8 quantization keeps pruned
#   weights exactly zero.
#
# ## Exercises
#
# 1. Prune globally instead of per layer (`scope="global"`) in section 4. Which layer
#    ends up sparsest, and is the accuracy better or worse at 80 %? At 90 %?
# 2. Replace `MaskedOptimizer` by masking only the gradients (a `grad_transform` that
#    multiplies by the mask) and train with momentum and weight decay. Which pruned weights
#    come back, and why?
# 3. Share with $k = 4$ and $k = 64$. How do accuracy and size change? Initialise the
#    centroids at random quantiles instead of evenly: what happens to the largest weights?
# 4. Compute the Huffman size of the *unpruned* model's 16-value indices. Why does
#    Huffman coding help less there?
