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
# # 04 · Quantization basics
#
# A trained network stores its weights and activations as 32-bit floats. An int8
# network stores each of them as an 8-bit integer plus, for a whole tensor (or one
# channel of it), a float **scale** and an integer **zero point**. This tutorial is about
# that one idea and the choices it leaves open.
#
# **You will learn**
#
# - the affine map $r = s\,(q - z)$ between reals and integers, and how $s$ and $z$
#   are chosen from a range (and why real 0 must land exactly on the grid);
# - `quantize` / `dequantize` by hand and with `nnref.quant`, and what saturation does;
# - the two rounding rules engines use (half to even, half away from zero);
# - symmetric vs affine quantization, and the TensorFlow Lite vs PyTorch symmetric scale;
# - per-tensor vs per-channel scales on the weights of a real trained layer;
# - how the error falls with the bit width (about 6 dB per bit);
# - observers: four ways to pick an activation range, and what each costs;
# - fake quantization and the straight-through estimator, the bridge to tutorial 07.
#
# **You need** tutorial 02 (training the MLP on digits); we retrain a small one here in
# a fraction of a second.
#
# **Figures written** (to `figures/`): `04_quantization_staircase.png`,
# `04_bits_vs_sqnr.png`, `04_observer_ranges.png`.

# %%
import matplotlib.pyplot as plt
import numpy as np

from nnref.data import load_digits, train_test_split
from nnref.mlp import MLP
from nnref.optim import Adam
from nnref.plots import STYLE, figures_dir, save_figure
from nnref.quant import (
    prepare_qat,
    TFLITE_INT8_ACTIVATIONS,
    TFLITE_INT8_WEIGHTS,
    TFLITE_INT8_WEIGHTS_PER_TENSOR,
    FakeQuantize,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MSEObserver,
    PercentileObserver,
    choose_qparams,
    dequantize,
    fake_quantize,
    fake_quantize_with_mask,
    quantize,
    qrange,
    round_half_away,
    round_half_even,
)
from nnref.quant.report import quantization_error
from nnref.train import fit

np.set_printoptions(precision=5, suppress=True)

# %% [markdown]
# ## 1. The affine map
#
# Jacob et al. 2018 ("Quantization and Training of Neural Networks for Efficient
# Integer-Arithmetic-Only Inference", arXiv 1712.05877, eq. 1) represent a real number
# $r$ by an integer $q$:
#
# $$r = s\,(q - z)$$
#
# - $q$ is an integer in $[q_{\min}, q_{\max}]$: $[-128, 127]$ for int8;
# - the **scale** $s > 0$ (a float32) is the distance between neighbouring grid points;
# - the **zero point** $z$ (an integer in the same range) is the integer that stands for
#   real 0.
#
# So an int8 tensor can hold only $2^8 = 256$ real values, evenly spaced by $s$. With
# $s = 0.1$ and $z = -10$ the grid runs from $0.1\,(-128 + 10) = -11.8$ to
# $0.1\,(127 + 10) = 13.7$:

# %%
s, z = 0.1, -10
qmin, qmax = qrange(8)  # (-128, 127)
for q in (qmin, -11, z, -9, 0, qmax):
    print(f"q = {q:5d}  ->  r = s * (q - z) = {s * (q - z):6.2f}")

# %% [markdown]
# ## 2. Choosing the scale and zero point from a range
#
# Say a tensor's values lie in $[r_{\min}, r_{\max}]$. Affine quantization stretches the
# integer range over it:
#
# $$s = \frac{r_{\max} - r_{\min}}{q_{\max} - q_{\min}}, \qquad
#   z = \operatorname{clamp}\!\Big(q_{\min} - \operatorname{round}\big(\tfrac{r_{\min}}{s}\big),
#   \; q_{\min}, q_{\max}\Big).$$
#
# By hand for $[-1, 3]$ in int8: $s = 4 / 255 = 0.015686\ldots$ and
# $r_{\min}/s = -1 \cdot 255/4 = -63.75$, which rounds to $-64$, so
# $z = -128 - (-64) = -64$. `choose_qparams` computes the same (the scale is stored as
# float32, as every engine stores it):

# %%
s_hand = (3.0 - (-1.0)) / (127 - (-128))  # 4 / 255
z_hand = -128 - round(-1.0 / s_hand)  # -128 - round(-63.75) = -128 + 64 = -64
qp = choose_qparams(-1.0, 3.0)  # int8, affine, per tensor
print(qp)
print(f"by hand: s = {s_hand:.9f}, z = {z_hand}")
assert float(qp.scale) == np.float32(s_hand) and int(qp.zero_point) == z_hand

# %% [markdown]
# **Real 0 must be exactly representable.** Rounding $r_{\min}/s$ to an integer moves the
# whole grid a little (here by $0.25\,s$) so that the integer $z$ maps to *exactly* 0.
# That matters because 0 is the most common value in a network: every ReLU output below
# the threshold, every zero-padded pixel. If 0 were between two grid points, each of
# those zeros would come back as a small non-zero number, the same sign every time, a
# bias that no averaging removes. The integer kernels of tutorial 05 also rely on it:
# they compute with $q - z$, which is 0 exactly when the real value is.
#
# That is why `choose_qparams` first **widens the range to contain 0**:
# $r_{\min} \leftarrow \min(r_{\min}, 0)$, $r_{\max} \leftarrow \max(r_{\max}, 0)$
# (TensorFlow Lite, PyTorch and onnxruntime all do). Without it, a range $[0.5, 3]$ would
# give $s = 2.5/255$ and $z = -128 - 0.5/s = -179$, outside int8: real 0 could only be
# clamped to the lowest grid point, 0.5.

# %%
s_bad = (3.0 - 0.5) / 255
z_bad = -128 - round(0.5 / s_bad)
print(f"range [0.5, 3] without widening: s = {s_bad:.6f}, z = {z_bad} (not an int8!)")

qp_widened = choose_qparams(0.5, 3.0)  # really [0, 3]
print("choose_qparams(0.5, 3.0):", qp_widened)
print("dequantize(z) =", dequantize(qp_widened.zero_point, qp_widened), "(exactly 0)")
assert dequantize(qp_widened.zero_point, qp_widened) == 0.0

# %% [markdown]
# ## 3. Quantize and dequantize by hand
#
# $$q = \operatorname{clamp}\big(\operatorname{round}(r / s) + z,\; q_{\min},\, q_{\max}\big),
# \qquad \hat r = s\,(q - z).$$
#
# (ONNX QuantizeLinear / DequantizeLinear.) With $s = 4/255$, $z = -64$ from above:
#
# | $r$ | $r/s$ | round | $+z$ | clamp | $\hat r$ |
# |---|---|---|---|---|---|
# | -1.0 | -63.75 | -64 | -128 | -128 | -1.0039 |
# | 0.0 | 0 | 0 | -64 | -64 | 0 |
# | 0.5 | 31.875 | 32 | -32 | -32 | 0.5020 |
# | 1.37 | 87.3375 | 87 | 23 | 23 | 1.3647 |
# | 3.0 | 191.25 | 191 | 127 | 127 | 2.9961 |
# | 5.0 | 318.75 | 319 | 255 | **127** | 2.9961 |
#
# Inside the grid the error $|r - \hat r|$ is at most $s/2 = 0.0078$. The value 5 is
# outside it: it **saturates** at $q_{\max}$ and comes back as 2.9961, an error of 2.

# %%
r = np.array([-1.0, 0.0, 0.5, 1.37, 3.0, 5.0], dtype=np.float32)
s32, z32 = np.float64(qp.scale), int(qp.zero_point)

q_loop = [int(np.clip(np.round(v / s32) + z32, -128, 127)) for v in r]  # the formula, one by one
q = quantize(r, qp)
r_hat = dequantize(q, qp)
print("q     =", q, q.dtype)
print("r_hat =", r_hat)
print("error =", r - r_hat)
assert q.tolist() == q_loop == [-128, -64, -32, 23, 127, 127]
inside = r <= float(r_hat.max())
assert np.all(np.abs((r - r_hat)[inside]) <= float(qp.scale) / 2)

# %% [markdown]
# ## 4. The quantization grid as a picture
#
# `fake_quantize(x) = dequantize(quantize(x))` is a real-to-real function: a staircase.
# With only 3 bits (8 levels) the steps are easy to see. The range $[-1, 2]$ gives
# $s = 3/7 \approx 0.43$ and $z = -4 - \operatorname{round}(-1/s) = -2$: the grid runs
# from $s\,(-4 + 2) \approx -0.86$ to $s\,(3 + 2) \approx 2.14$. Inside it the error is a
# saw-tooth bounded by $\pm s/2$ (rounding); outside, every input is clamped to the end
# of the grid and the error grows without bound (saturation).

# %%
qp3 = choose_qparams(-1.0, 2.0, bits=3)
grid = dequantize(np.arange(qp3.qmin, qp3.qmax + 1, dtype=np.int8), qp3)
print(qp3)
print("grid points:", grid)

xs = np.linspace(-2.0, 3.2, 2001)
fq3 = fake_quantize(xs, qp3)
lo, hi = float(grid[0]), float(grid[-1])
half_step = float(qp3.scale) / 2

fig, (ax0, ax1) = plt.subplots(1, 2, figsize=STYLE["panel_figsize"], layout="constrained")
for ax in (ax0, ax1):
    ax.axvspan(xs[0], lo - half_step, color="0.85", label="saturation (clamped)")
    ax.axvspan(hi + half_step, xs[-1], color="0.85")
    ax.grid(True, alpha=STYLE["grid_alpha"])
ax0.plot(xs, xs, ls="--", color=STYLE["threshold"], lw=STYLE["thin_linewidth"], label="identity $x$")
ax0.plot(xs, fq3, color=STYLE["before"], lw=STYLE["linewidth"], label="fake_quantize$(x)$")
ax0.plot(grid, grid, "o", color=STYLE["after"], ms=STYLE["markersize"] + 1, label="grid points $s(q-z)$")
ax0.set(title=f"3-bit affine grid for range [-1, 2]: s = {float(qp3.scale):.3f}, z = {int(qp3.zero_point)}",
        xlabel="real input $x$", ylabel="quantized value (real units)")
ax0.legend(loc="upper left")
ax1.plot(xs, fq3 - xs, color=STYLE["before"], lw=STYLE["linewidth"], label="fake_quantize$(x) - x$")
ax1.axhline(half_step, color=STYLE["clipped"], ls=":", label="$\\pm s/2$")
ax1.axhline(-half_step, color=STYLE["clipped"], ls=":")
ax1.set(title="Quantization error: rounding inside, saturation outside",
        xlabel="real input $x$", ylabel="error (real units)")
ax1.legend(loc="upper right")
save_figure(fig, figures_dir() / "04_quantization_staircase.png")
fig

# %%
plt.close(fig)
inside = (xs >= lo - half_step) & (xs <= hi + half_step)
print(f"max |error| inside the grid: {np.abs(fq3 - xs)[inside].max():.4f} (s/2 = {half_step:.4f})")
print(f"max |error| outside (x up to {xs[-1]}): {np.abs(fq3 - xs)[~inside].max():.4f}")
assert np.abs(fq3 - xs)[inside].max() <= half_step + 1e-6

# %% [markdown]
# ## 5. Rounding: half to even or half away from zero?
#
# `round` is ambiguous exactly at ties ($x.5$). Engines disagree:
#
# - **half to even** (`round_half_even`): $2.5 \to 2$, $-2.5 \to -2$, $0.5 \to 0$. The
#   IEEE 754 default: `numpy.round`, ONNX QuantizeLinear, PyTorch.
# - **half away from zero** (`round_half_away`): $2.5 \to 3$, $-2.5 \to -3$,
#   $0.5 \to 1$. C's `std::round`: TensorFlow Lite's converter and kernels.
#
# Half to even is unbiased on average (ties go up as often as down); half away is what C
# gives for free. Either is fine; what matters is that a reference names the one it
# matches, because they give different integers.

# %%
ties = np.array([2.5, -2.5, 0.5, -0.5, 1.5])
print("x               ", ties)
print("round_half_even ", round_half_even(ties))
print("round_half_away ", round_half_away(ties))
assert round_half_even(ties).tolist() == [2, -2, 0, 0, 2]
assert round_half_away(ties).tolist() == [3, -3, 1, -1, 2]

# %% [markdown]
# Inside `quantize` a tie happens when $r/s$ is a half-integer. The range
# $[-64, 63.5]$ gives $s = 127.5/255 = 0.5$ and $z = 0$, so $r = 1.25$ gives
# $r/s = 2.5$. `quantize` rounds half to even by default (ONNX); pass
# `rounding="half_away"` to match TensorFlow Lite.

# %%
qp_half = choose_qparams(-64.0, 63.5)
r_ties = np.array([1.25, -1.25, 0.25, -0.25, 0.75], dtype=np.float32)  # r / s = 2.5, -2.5, 0.5, -0.5, 1.5
print(qp_half)
print("half_even (ONNX, PyTorch):", quantize(r_ties, qp_half))
print("half_away (TFLite)       :", quantize(r_ties, qp_half, rounding="half_away"))
assert quantize(r_ties, qp_half).tolist() == [2, -2, 0, 0, 2]
assert quantize(r_ties, qp_half, rounding="half_away").tolist() == [3, -3, 1, -1, 2]

# %% [markdown]
# ## 6. Symmetric vs affine
#
# **Symmetric** quantization fixes $z = 0$ and centres the grid on 0:
# $s = \max|r| / 127$. TensorFlow Lite's int8 spec uses it for **weights**, with the
# *narrow range* $[-127, 127]$ (dropping $-128$ makes the grid symmetric). The reason is
# arithmetic (tutorial 05): with $z_w = 0$ one of the zero-point terms of the integer
# matmul vanishes. Activations stay **affine** ($z$ free, full $[-128, 127]$), because
# their ranges are often one-sided, and there a symmetric grid wastes half its levels.
#
# A ReLU output uniform on $[0, 6]$ shows the waste: affine uses all 256 levels on
# $[0, 6]$, symmetric only the 128 non-negative ones, so its step is twice as big and its
# RMS error too (the RMS error of rounding with step $s$ is $s/\sqrt{12}$).

# %%
rng = np.random.default_rng(0)
relu_like = rng.uniform(0.0, 6.0, size=10_000).astype(np.float32)
qp_aff = choose_qparams(0.0, 6.0)  # affine, [-128, 127]
qp_sym = choose_qparams(0.0, 6.0, symmetric=True, narrow_range=True)  # TFLite weight style
for name, p in (("affine   ", qp_aff), ("symmetric", qp_sym)):
    rms = np.sqrt(np.mean((relu_like - fake_quantize(relu_like, p)) ** 2))
    print(f"{name}: s = {float(p.scale):.5f}, z = {int(p.zero_point):4d}, RMS error = {rms:.5f}"
          f"  (s / sqrt(12) = {float(p.scale) / np.sqrt(12):.5f})")

# %% [markdown]
# **Two symmetric conventions.** TensorFlow Lite divides by 127: $s = \max|w|/127$,
# so $\max|w|$ maps exactly to $\pm 127$. PyTorch's symmetric observers divide by
# $(q_{\max} - q_{\min})/2 = 127.5$ over the full range $[-128, 127]$: a slightly smaller
# step, but the largest positive value lands at $127.5$, rounds to 128 and is clamped to
# 127, off by $s/2$. `choose_qparams(..., symmetric_convention=...)` names both. For
# $w \in [-0.3, 0.9]$: TFLite $s = 0.9/127$, PyTorch $s = 0.9/127.5$.

# %%
w_demo = np.array([-0.3, 0.0, 0.45, 0.9], dtype=np.float32)
qp_tfl = choose_qparams(-0.3, 0.9, symmetric=True, narrow_range=True, symmetric_convention="tflite")
qp_pt = choose_qparams(-0.3, 0.9, symmetric=True, symmetric_convention="pytorch")
for name, p in (("TFLite  /127  ", qp_tfl), ("PyTorch /127.5", qp_pt)):
    qw = quantize(w_demo, p)
    print(f"{name}: s = {float(p.scale):.7f}, q = {qw}, error = {w_demo - dequantize(qw, p)}")
assert quantize(w_demo, qp_tfl)[-1] == 127 and quantize(w_demo, qp_pt)[-1] == 127
assert abs(0.9 - dequantize(quantize(w_demo, qp_pt), qp_pt)[-1]) > 0.49 * float(qp_pt.scale)

# %% [markdown]
# ## 7. Per-tensor vs per-channel, on a trained layer
#
# Time for real weights. We train `MLP([64, 64, 10])` on the 8x8 digits (tutorial 02)
# for 15 epochs with Adam, which takes a fraction of a second.

# %%
x, y = load_digits()
x_train, x_test, y_train, y_test = train_test_split(x, y, test_fraction=0.2, seed=0)
model = MLP([64, 64, 10], seed=0)
history = fit(model, Adam(lr=1e-2), x_train, y_train, epochs=15, batch_size=64, seed=0,
              validation=(x_test, y_test), verbose=False)
print(history.summary())
W1 = model.linears[0].W  # (in, out) = (64, 64): column c feeds output channel c
print("W1:", W1.shape, W1.dtype)

# %% [markdown]
# One scale for the whole matrix (**per tensor**) must cover its largest entry. But the
# columns (output channels) of a trained layer have very different sizes, and a column
# of small weights then uses only a few of the 255 levels. **Per channel** gives every
# output channel $c$ its own scale $s_c = \max_k |W_{kc}| / 127$ (TensorFlow Lite's
# default for weights; nnref stores $W$ as (in, out), so channels are columns,
# `axis=-1`).

# %%
col_max = np.abs(W1).max(axis=0)
print(f"max |W1[:, c]| over the 64 channels: from {col_max.min():.3f} to {col_max.max():.3f}")

qp_tensor = TFLITE_INT8_WEIGHTS_PER_TENSOR.for_tensor(W1)
qp_channel = TFLITE_INT8_WEIGHTS.for_tensor(W1)
print("per tensor :", qp_tensor)
print("per channel:", qp_channel)

# The per-channel scales, one column at a time (choose_qparams works in float64, stores float32).
s_loop = np.array([np.float32(np.float64(np.abs(W1[:, c]).max()) / 127) for c in range(W1.shape[1])])
assert np.array_equal(s_loop, qp_channel.scale)
assert float(qp_tensor.scale) == np.float32(np.float64(np.abs(W1).max()) / 127)

# %% [markdown]
# We measure the error as a **signal-to-quantization-noise ratio**,
# $\mathrm{SQNR} = 10 \log_{10}\!\big(\sum w^2 / \sum (w - \hat w)^2\big)$ in decibels:
# higher is better, +10 dB means ten times less noise power.
# `nnref.quant.report.quantization_error` returns it with the MSE and the largest error;
# here is the formula written out once, next to it:

# %%
def sqnr_db(signal: np.ndarray, approx: np.ndarray) -> float:
    """SQNR in dB, from nnref (mse, max_abs and sqnr_db are computed in float64)."""
    return quantization_error(signal, approx).sqnr_db


w = W1.astype(np.float64)
w_hat = fake_quantize(W1, qp_tensor).astype(np.float64)
by_hand = 10 * np.log10(np.sum(w**2) / np.sum((w - w_hat) ** 2))
print(f"SQNR of W1 per tensor: by hand {by_hand:.6f} dB, quantization_error {sqnr_db(W1, w_hat):.6f} dB")
np.testing.assert_allclose(sqnr_db(W1, w_hat), by_hand, rtol=1e-12)

for name, lin in (("W1", model.linears[0]), ("W2", model.linears[1])):
    fq_t = fake_quantize(lin.W, TFLITE_INT8_WEIGHTS_PER_TENSOR.for_tensor(lin.W))
    fq_c = fake_quantize(lin.W, TFLITE_INT8_WEIGHTS.for_tensor(lin.W))
    err_t, err_c = quantization_error(lin.W, fq_t), quantization_error(lin.W, fq_c)
    print(f"{name} {lin.W.shape}: per tensor MSE {err_t.mse:.3e} ({err_t.sqnr_db:.1f} dB), "
          f"per channel MSE {err_c.mse:.3e} ({err_c.sqnr_db:.1f} dB)")
    assert err_c.mse < err_t.mse

# %% [markdown]
# Per channel is never coarser: each $s_c \le s$, so every channel's rounding error is
# bounded by a smaller $s_c/2$. Does it matter for the network? At 8 bits the weights
# are so close to the float ones that accuracy hardly moves. At 3 or 4 bits
# (`with_bits`) it moves by several points, but accuracy on 360 test digits (one digit is
# 0.28 %) is a noisy yardstick: at a given bit width either scheme can come out ahead by
# a few digits in a given run. The weight error is the reliable measure, and section 8
# shows per channel ahead at every bit width.

# %%
def accuracy_with_fake_quantized_weights(scheme) -> float:
    """Test accuracy of a copy of the model whose weights went through fake_quantize
    (rounded half away from zero, as TensorFlow Lite's converter does)."""
    m = model.copy()
    for lin in m.linears:
        lin.W[...] = fake_quantize(lin.W, scheme.for_tensor(lin.W), rounding="half_away")
    return m.accuracy(x_test, y_test)


# A look ahead: the same fake quantization of the weights is what quantization-aware
# training simulates in its forward pass (tutorial 07 explains `prepare_qat`, which wraps a
# trained MLP so that its forward pass sees fake-quantized weights; with act_bits=None
# the weights only). Here it only confirms that the library rounds as we did by hand.
simulated = prepare_qat(model, weight_bits=4, act_bits=None).to_float(fake_quantized=True)
for lin, sim in zip(model.linears, simulated.linears):
    by_hand = fake_quantize(lin.W, TFLITE_INT8_WEIGHTS.with_bits(4).for_tensor(lin.W), rounding="half_away")
    np.testing.assert_array_equal(sim.W, by_hand)


print(f"float32 weights: {100 * model.accuracy(x_test, y_test):.2f} %")
for bits in (8, 4, 3):
    acc_t = accuracy_with_fake_quantized_weights(TFLITE_INT8_WEIGHTS_PER_TENSOR.with_bits(bits))
    acc_c = accuracy_with_fake_quantized_weights(TFLITE_INT8_WEIGHTS.with_bits(bits))
    print(f"{bits}-bit weights: per tensor {100 * acc_t:.2f} %, per channel {100 * acc_c:.2f} %")

# %% [markdown]
# ## 8. Bit width vs error: about 6 dB per bit
#
# Each extra bit halves the step $s$, so the rounding noise $s^2/12$ falls by 4, i.e.
# $10 \log_{10} 4 \approx 6.02$ dB. For data uniform on $[-A, A]$ the signal power is
# $A^2/3$ and $s = 2A / (2^b - 1)$, so
#
# $$\mathrm{SQNR} = 10\log_{10}\frac{A^2/3}{s^2/12} = 20 \log_{10}(2^b - 1) \approx 6.02\, b \text{ dB}.$$
#
# Real tensors are not uniform. Bell-shaped weights keep most values near 0 while the
# symmetric grid must reach the rare extremes (and the narrow range gives up one level in
# total, the lowest, $-2^{b-1}$), which costs a constant number of dB at every bit width: the same slope, a
# lower line. Per-channel scales win some of it back. The ReLU outputs do as well as
# uniform data: their many exact zeros cost nothing (0 is on the grid) and the affine grid
# spends no levels on negative values.

# %%
bit_widths = np.arange(2, 17)
uniform = rng.uniform(-1.0, 1.0, size=20_000)
hidden_train = np.maximum(x_train @ W1 + model.linears[0].b, 0)  # ReLU outputs of layer 1

curves = {
    "uniform on [-1, 1] (affine)": [
        sqnr_db(uniform, fake_quantize(uniform, choose_qparams(-1.0, 1.0, bits=b))) for b in bit_widths],
    "W1 per channel (symmetric)": [
        sqnr_db(W1, fake_quantize(W1, TFLITE_INT8_WEIGHTS.with_bits(b).for_tensor(W1))) for b in bit_widths],
    "W1 per tensor (symmetric)": [
        sqnr_db(W1, fake_quantize(W1, TFLITE_INT8_WEIGHTS_PER_TENSOR.with_bits(b).for_tensor(W1)))
        for b in bit_widths],
    "layer-1 ReLU outputs (affine)": [
        sqnr_db(hidden_train,
                fake_quantize(hidden_train, TFLITE_INT8_ACTIVATIONS.with_bits(b).for_tensor(hidden_train)))
        for b in bit_widths],
}
theory = 20 * np.log10(2.0**bit_widths - 1)
for name, values in curves.items():
    slope = np.polyfit(bit_widths[2:], values[2:], 1)[0]  # fit from 4 bits on
    print(f"{name:30s}: {values[bit_widths.tolist().index(8)]:5.1f} dB at 8 bits, slope {slope:.2f} dB/bit")
    assert 5.8 < slope < 6.3
print(f"theory 20 log10(2^b - 1)       : {theory[bit_widths.tolist().index(8)]:5.1f} dB at 8 bits")
assert np.all(np.greater(curves["W1 per channel (symmetric)"], curves["W1 per tensor (symmetric)"]))
assert np.all(np.array(curves["W1 per tensor (symmetric)"]) < theory)

# %%
fig, ax = plt.subplots(figsize=STYLE["figsize"], layout="constrained")
ax.plot(bit_widths, theory, ls="--", color=STYLE["threshold"], lw=STYLE["linewidth"],
        label="theory, uniform: $20\\log_{10}(2^b-1)$")
for i, (name, values) in enumerate(curves.items()):  # distinct markers: two curves lie on the theory line
    ax.plot(bit_widths, values, marker="osD^"[i], ms=STYLE["markersize"] + 1, lw=STYLE["thin_linewidth"],
            mfc="none" if i == 0 else None, color=STYLE["cycle"][i], label=name)
ax.set(title="Quantization error vs bit width (about 6 dB per bit)",
       xlabel="bit width $b$ (bits)", ylabel="SQNR (dB)", xticks=bit_widths[::2])
ax.grid(True, alpha=STYLE["grid_alpha"])
ax.legend()
save_figure(fig, figures_dir() / "04_bits_vs_sqnr.png")
fig

# %% [markdown]
# ## 9. Observers: choosing an activation range
#
# Weights are known before inference, so their range is simply their min and max.
# Activations depend on the input: their range is **calibrated** by running
# representative data through the float model and watching the values. An *observer*
# (PyTorch's name) does the watching: `observe(batch)` any number of times, then
# `qparams(...)`. They differ only in the range they pick:
#
# - `MinMaxObserver`: the min and max of everything seen. Nothing is ever clamped on the
#   calibration data, but one outlier stretches the grid for everyone.
# - `MovingAverageMinMaxObserver(c)`: the first batch sets the range, then each batch
#   moves it a fraction $c$ of the way: $m \leftarrow m + c\,(\max(x) - m)$. It tracks
#   a *typical* batch maximum, below the overall maximum (PyTorch's default $c = 0.01$ is
#   made for the thousands of steps of quantization-aware training; with the 23
#   calibration batches here we use $c = 0.1$).
# - `PercentileObserver(p)`: the $p$-th percentile instead of the max: a fraction
#   $(100-p)/100$ of the values is clamped.
# - `MSEObserver`: tries the shrunk ranges $[a\,r_{\min}, a\,r_{\max}]$ for
#   $a = 0.01, 0.02, \ldots, 1$ and keeps the one with the least mean squared
#   fake-quantization error on the observed values.
#
# Shrinking the range trades **clamping error** (the few values beyond it) for
# **rounding error** (everyone else gets a finer step). We calibrate on the layer-1 ReLU
# outputs of the training set in batches of 64, and measure the error on the *test* set's
# activations. (Note the many exact zeros: they are why 0 must be on the grid.)

# %%
hidden_test = np.maximum(x_test @ W1 + model.linears[0].b, 0)
print(f"calibration activations: {hidden_train.shape}, max {hidden_train.max():.3f}, "
      f"{100 * np.mean(hidden_train == 0):.1f} % exactly 0")


def make_observers() -> dict:
    return {
        "min-max": MinMaxObserver(),
        "moving average (c=0.1)": MovingAverageMinMaxObserver(averaging_constant=0.1),
        "percentile 99.9": PercentileObserver(percentile=99.9, seed=0),
        "MSE search": MSEObserver(num_candidates=100, seed=0),
    }


calibration_order = np.random.default_rng(1).permutation(len(hidden_train))
results = {}
for bits in (8, 4):
    observers = make_observers()
    for obs in observers.values():
        for start in range(0, len(hidden_train), 64):
            obs.observe(hidden_train[calibration_order[start:start + 64]])
    print(f"\n{bits}-bit activations (affine, [{qrange(bits)[0]}, {qrange(bits)[1]}]):")
    for name, obs in observers.items():
        p = obs.qparams(bits=bits)
        top = float(dequantize(np.array([p.qmax], dtype=p.dtype), p)[0])  # largest grid value
        fq, in_range = fake_quantize_with_mask(hidden_test, p)
        mse = float(np.mean((hidden_test - fq) ** 2))
        results[bits, name] = dict(top=top, mse=mse, obs=obs)
        print(f"  {name:24s} range top {top:6.3f}, s = {float(p.scale):.5f}, "
              f"test MSE {mse:.3e}, clamped {100 * np.mean(~in_range):.2f} %")
    assert results[bits, "MSE search"]["mse"] <= 1.05 * results[bits, "min-max"]["mse"]

# %% [markdown]
# At 8 bits the step is so fine that rounding error is tiny: shrinking the range gains
# little, while clamping the tail (percentile 99.9) costs several times the min-max
# error. At 4 bits there are only 16 levels: rounding error dominates, and the MSE search
# shrinks the range well below the maximum. Its error curve shows the trade-off: too small
# a range and clamping dominates (left), too large and rounding does (right).

# %%
assert results[8, "percentile 99.9"]["mse"] > 2 * results[8, "min-max"]["mse"]
assert results[4, "MSE search"]["mse"] < results[4, "min-max"]["mse"]
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=STYLE["panel_figsize"], layout="constrained")
ax0.hist(hidden_train.ravel(), bins=120, color="0.6", log=True, label="layer-1 ReLU outputs")
for i, name in enumerate(make_observers()):  # only the MSE range depends on the bit width
    ax0.axvline(results[8, name]["top"], color=STYLE["cycle"][i], lw=STYLE["linewidth"], label=name)
ax0.axvline(results[4, "MSE search"]["top"], color=STYLE["cycle"][3], ls=":", lw=STYLE["linewidth"],
            label="MSE search, 4 bits")
ax0.set(title="Activation histogram and the top of each chosen range\n(8 bits unless marked)",
        xlabel="activation value (real units)", ylabel="count (log scale)")
ax0.legend(fontsize="small")
for bits, color in ((8, STYLE["cycle"][0]), (4, STYLE["cycle"][3])):
    search = results[bits, "MSE search"]["obs"].last_search
    ax1.plot(search.alphas, search.errors, color=color, lw=STYLE["linewidth"], label=f"{bits} bits")
    ax1.plot(search.best_alpha, search.best_error, "o", color=color, ms=STYLE["markersize"] + 2,
             label=f"best $a$ = {search.best_alpha:.2f} ({bits} bits)")
ax1.set_yscale("log")
ax1.set(title="MSEObserver search: error of the range $[0, a \\cdot \\max]$",
        xlabel="shrink factor $a$ (fraction of the observed max)",
        ylabel="mean squared error (real units$^2$)")
ax1.grid(True, alpha=STYLE["grid_alpha"])
ax1.legend()
save_figure(fig, figures_dir() / "04_observer_ranges.png")
fig

# %%
plt.close("all")
best8 = results[8, "MSE search"]["obs"].last_search.best_alpha
best4 = results[4, "MSE search"]["obs"].last_search.best_alpha
print(f"MSE search keeps {100 * best8:.0f} % of the max at 8 bits, {100 * best4:.0f} % at 4 bits")
assert best4 < best8

# %% [markdown]
# ## 10. Fake quantization and the straight-through estimator
#
# To *train* a network that survives rounding (tutorial 07), we put `fake_quantize` in
# the float forward pass, so the loss sees exactly the values the integer model will.
# But the staircase has derivative 0 almost everywhere (and none at the steps), so plain
# backprop would stop every gradient there.
#
# The **straight-through estimator** (Bengio et al. 2013, arXiv 1308.3432) pretends the
# rounding is the identity: inside the grid the gradient passes unchanged, and outside it
# is 0, the derivative of the clamp (the shaded regions of
# `04_quantization_staircase.png`). PyTorch's fake-quant backward does exactly this:
#
# $$\frac{\partial L}{\partial x} = \frac{\partial L}{\partial \hat x}\cdot
#   \mathbb{1}\big[q_{\min} \le \operatorname{round}(x/s) + z \le q_{\max}\big].$$
#
# `FakeQuantize` is a layer like `Linear` or `ReLU`: its forward caches the mask, its
# backward applies it. With the 3-bit grid of section 4 (top grid value
# $\approx 2.14$):

# %%
fq_layer = FakeQuantize(qp3)
x_demo = np.array([[-1.5, -0.2, 0.3, 1.0, 2.2, 2.5, 3.0]], dtype=np.float32)
out = fq_layer.forward(x_demo)
grad_in = fq_layer.backward(np.ones_like(x_demo))  # upstream gradient of 1 everywhere
print("x        :", x_demo[0])
print("fq(x)    :", out[0])
print("in range :", fq_layer.mask[0])
print("dL/dx    :", grad_in[0])
assert np.array_equal(grad_in, fq_layer.mask.astype(np.float32))

# %% [markdown]
# Note the value 2.2: it lies beyond the top grid point 2.143 but within half a step, so
# it *rounds* onto the grid (in range: the gradient passes), while 2.5 rounds past
# $q_{\max}$ and is clamped (gradient 0). During quantization-aware training the weights
# then learn to sit where rounding hurts least, and the activation ranges come from a
# moving-average observer that follows them.

# %% [markdown]
# ## Graded exercises: write the maps between reals and integers of this tutorial
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
# - `affine_qparams`: section 2: scale and zero point (half to even at a tie, with the
#   float32 scale)
# - `symmetric_qparams`: section 6: TFLite's and PyTorch's symmetric scales
# - `quantize_affine`: sections 3 and 5: both roundings, the quotient in float32
# - `dequantize_affine`: section 3
# - `fake_quantize_affine_backward`: section 10: the straight-through estimator

# %%
from nnref import laws

# %% tags=["exercise"]
affine_qparams = laws.reference("affine_qparams")

# %% tags=["exercise"]
symmetric_qparams = laws.reference("symmetric_qparams")

# %% tags=["exercise"]
quantize_affine = laws.reference("quantize_affine")

# %% tags=["exercise"]
dequantize_affine = laws.reference("dequantize_affine")

# %% tags=["exercise"]
fake_quantize_affine_backward = laws.reference("fake_quantize_affine_backward")

# %%
for exercise in (affine_qparams,
                 symmetric_qparams,
                 quantize_affine,
                 dequantize_affine,
                 fake_quantize_affine_backward):
    report = laws.check(exercise.__name__, exercise, max_examples=15)
    print(report if not report.passed else f"{exercise.__name__}: passed ({len(report.results)} laws)")

# %% [markdown]
# ## Summary
#
# - A quantized tensor is integers plus a scale and a zero point: $r = s\,(q - z)$
#   (Jacob et al. 2018, eq. 1). Affine: $s = (r_{\max} - r_{\min})/(q_{\max}-q_{\min})$,
#   $z = q_{\min} - \operatorname{round}(r_{\min}/s)$, after widening the range to
#   contain 0 so that real 0 is exact.
# - Inside the grid the error is at most $s/2$; outside it the value saturates.
#   Rounding is half to even in ONNX/PyTorch and half away from zero in TensorFlow Lite.
# - Weights: symmetric ($z = 0$, $[-127, 127]$, $s = \max|w|/127$ in TensorFlow Lite,
#   $/127.5$ in PyTorch), per output channel, which lowers the error of a trained layer.
#   Activations: affine, per tensor.
# - Each bit buys about 6 dB of SQNR; non-uniform data sits on a lower parallel line.
# - Observers pick activation ranges; fewer bits favour tighter, clipped ranges (MSE
#   search). Fake quantization with the straight-through estimator lets training see the
#   rounding.
#
# ## Exercises
#
# 1. Quantize `W1` per tensor with `symmetric_convention="pytorch"` (full range, via
#    `choose_qparams(W1.min(), W1.max(), symmetric=True, symmetric_convention="pytorch")`)
#    and compare its SQNR with the TensorFlow Lite per-tensor one. Which entries of `W1`
#    does the PyTorch grid clamp?
# 2. Add one outlier (`hidden_train[0, 0] = 50.0`) before calibrating and rerun
#    section 9. How do the min-max and percentile ranges and their 8-bit test errors
#    change?
# 3. Repeat section 8 for the layer-1 ReLU outputs with the `PercentileObserver(99.9)`
#    range instead of min-max. Below which bit width does clipping the tail start to pay
#    off?
