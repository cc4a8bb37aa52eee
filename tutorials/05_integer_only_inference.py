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
# # 05 · Integer-only inference
#
# Tutorial 04 turned real numbers into integers. Here we run a layer **on** the
# integers: one trained `Linear` layer followed by a ReLU, computed the way TensorFlow
# Lite's int8 `FullyConnected` kernel computes it, with no floating-point arithmetic at
# inference time at all. We follow one batch integer by integer and check every step
# against `nnref.quant`.
#
# **You will learn**
#
# - how input, weights and bias of a layer are quantized (int8 asymmetric, int8
#   symmetric per channel, int32);
# - the int32 accumulator $\sum_k (x_k - z_x)\,w_k$, gemmlowp's zero-point expansion, and
#   why symmetric weights make it cheaper;
# - why the accumulator cannot overflow for this layer, and when a float BLAS computes
#   integer products exactly;
# - how the real rescaling factor $M = s_x s_w / s_y$ becomes an integer multiplier
#   and a shift, and how it is applied with integer roundings (single vs double);
# - why a fused ReLU is just a clamp;
# - how close the integer layer gets to the float one, and how ONNX's float
#   requantization compares with TensorFlow Lite's fixed-point one.
#
# **You need** tutorial 04 (scale, zero point, symmetric vs affine, per channel).
#
# **Figures written** (to `figures/`): `05_requantization_error.png`,
# `05_integer_pipeline.png`.

# %%
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import StrMethodFormatter

from nnref.data import load_digits, train_test_split
from nnref.mlp import MLP
from nnref.optim import Adam
from nnref.plots import STYLE, figures_dir, save_figure
from nnref.quant import (
    TFLITE_INT8_ACTIVATIONS,
    TFLITE_INT8_WEIGHTS,
    activation_range,
    dequantize,
    exact_float_dtype,
    matmul_int32,
    matmul_int32_direct,
    matmul_int32_expanded,
    multiply_by_quantized_multiplier,
    qlinear_matmul,
    quantize,
    quantize_bias,
    quantize_multiplier,
    quantized_linear,
    requantize,
    round_half_away,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)
from nnref.train import fit

np.set_printoptions(precision=5, suppress=True, linewidth=100)

# %% [markdown]
# ## 1. The float layer we will replace
#
# The same small model as in tutorial 04: `MLP([64, 64, 10])` trained on the 8x8 digits.
# We take its first layer and the ReLU after it:
#
# $$h = \max(0,\; x W + b), \qquad x \in \mathbb{R}^{B \times 64},\;
#   W \in \mathbb{R}^{64 \times 64},\; b \in \mathbb{R}^{64}.$$

# %%
x, y = load_digits()
x_train, x_test, y_train, y_test = train_test_split(x, y, test_fraction=0.2, seed=0)
model = MLP([64, 64, 10], seed=0)
history = fit(model, Adam(lr=1e-2), x_train, y_train, epochs=15, batch_size=64, seed=0, verbose=False)
print(history.summary(), f"| test accuracy {100 * model.accuracy(x_test, y_test):.2f} %")

W, b = model.linears[0].W, model.linears[0].b
K, N = W.shape  # K = 64 inputs, N = 64 outputs


def float_layer(inputs: np.ndarray) -> np.ndarray:
    """The float reference: ReLU(x W + b)."""
    return np.maximum(inputs @ W + b, 0)


h_train, h_test = float_layer(x_train), float_layer(x_test)
print("W:", W.shape, W.dtype, "| b:", b.shape, "| h_test:", h_test.shape)

# %% [markdown]
# ## 2. Quantization parameters (TensorFlow Lite's int8 spec)
#
# | tensor | integers | scheme | from |
# |---|---|---|---|
# | input $x$ | int8 $[-128, 127]$ | affine, per tensor: $s_x, z_x$ | range of the training inputs |
# | weights $W$ | int8 $[-127, 127]$ | symmetric, per output channel: $s_w[j]$, $z_w = 0$ | $\max_k \lvert W_{kj}\rvert$ |
# | bias $b$ | int32 | $s_b[j] = s_x\, s_w[j]$, zero point 0 | follows from the others |
# | output $h$ | int8 $[-128, 127]$ | affine, per tensor: $s_y, z_y$ | range of $h$ on the training set |
#
# The activation ranges are min-max (tutorial 04, section 9). The pixels lie in
# $[0, 1]$, so $s_x = 1/255$ and $z_x = -128$; the ReLU output lies in $[0, \max h]$,
# so $z_y = -128$ as well.

# %%
qp_x = TFLITE_INT8_ACTIVATIONS.for_tensor(x_train)
qp_w = TFLITE_INT8_WEIGHTS.for_tensor(W)
qp_y = TFLITE_INT8_ACTIVATIONS.for_tensor(h_train)
print("input  :", qp_x)
print("weights:", qp_w)
print("output :", qp_y)

s_x, z_x = np.float32(qp_x.scale), int(qp_x.zero_point)
s_w = qp_w.scale  # (N,) float32, one per output channel
s_y, z_y = np.float32(qp_y.scale), int(qp_y.zero_point)
assert (s_x, z_x) == (np.float32(1 / 255), -128) and np.all(qp_w.zero_point == 0)

# %% [markdown]
# Now quantize. TensorFlow Lite rounds half away from zero (`std::round`), so we ask for
# that. The bias gets the scale $s_x s_w[j]$ so that it can be added straight to the
# int32 accumulator, whose units are exactly that (next section). On paper
# $b_q[j] = \operatorname{round}\big(b[j] / (s_x\, s_w[j])\big)$; TensorFlow Lite's converter
# (`SymmetricPerChannelBiasQuantize`), and nnref's `quantize_bias` after it, compute it in
# its own precisions: the two float32 scales multiplied in float32, the reciprocal taken
# in double and stored as float32, and the bias *multiplied* by it in float32, rounded
# half away from zero:
#
# $$s_b = s_x s_w[j]\ (\text{float32}), \qquad
#   b_q[j] = \operatorname{round}\big(\mathrm{float32}(b[j]) \cdot \mathrm{float32}(1 / s_b)\big)
#   \in \text{int32}.$$
#
# Multiplying by a rounded reciprocal is not dividing: near a tie the two differ by one
# (`quantize_bias`'s docstring has an example). We compute the converter's form and check
# it against the library.

# %%
x_q = quantize(x_test, qp_x, rounding="half_away")  # (B, K) int8
w_q = quantize(W, qp_w, rounding="half_away")  # (K, N) int8, in [-127, 127]
s_b = s_x * s_w  # float32 * float32 -> float32, as the converter computes it
inv_s_b = (1.0 / s_b.astype(np.float64)).astype(np.float32)  # reciprocal in double, stored float32
bias_f = round_half_away(b.astype(np.float32) * inv_s_b)  # float32 product, std::round
assert np.all(np.abs(bias_f) <= 2**31 - 1)  # check the range before casting: no silent wrap
bias_q = bias_f.astype(np.int32)
np.testing.assert_array_equal(bias_q, quantize_bias(b, s_x, s_w))  # the library's converter step
by_division = round_half_away(b.astype(np.float64) / s_b.astype(np.float64))
print(f"bias entries where float64 division would round differently: {int(np.sum(by_division != bias_f))} of {b.size}")

print("first test digit, pixels 0..7:", x_test[0, :8])
print("  quantized (int8)           :", x_q[0, :8])
print("w_q:", w_q.dtype, w_q.shape, f"values in [{w_q.min()}, {w_q.max()}]")
print("b[:4]     =", b[:4])
print("bias_q[:4]=", bias_q[:4], bias_q.dtype)

# %% [markdown]
# ## 3. The int32 accumulator
#
# Write $\tilde x = s_x (x_q - z_x)$ and $\tilde w_{kj} = s_w[j]\, w_{q,kj}$ for the
# dequantized values. Then
#
# $$\sum_k \tilde x_k \tilde w_{kj} + b_j \approx
#   s_x s_w[j] \Big(\underbrace{\sum_k (x_{q,k} - z_x)\, w_{q,kj} + b_q[j]}_{\text{acc}[j]\ \in\ \text{int32}}\Big).$$
#
# Everything inside the brackets is integer. Here it is for one output element, with a
# plain Python loop (Python integers never overflow, so this is the ground truth):

# %%
i, j = 0, 5  # first test digit, output channel 5
acc_loop = 0
for k in range(K):
    acc_loop += (int(x_q[i, k]) - z_x) * int(w_q[k, j])
acc_loop += int(bias_q[j])

acc = matmul_int32(x_q, w_q, z_x, 0)  # (B, N) int32: sum_k (x - z_x)(w - 0)
acc = (acc.astype(np.int64) + bias_q).astype(np.int32)  # |acc| stays far inside int32 (section 5)
print(f"acc[{i}, {j}] by the loop: {acc_loop}, by matmul_int32 + bias: {acc[i, j]}")
print(f"in real units: acc * s_x * s_w[j] = {acc_loop * float(s_x) * float(s_w[j]):.5f}, "
      f"float pre-activation x W + b = {(x_test[i] @ W[:, j] + b[j]):.5f}")
assert acc_loop == acc[i, j]

# %% [markdown]
# **Integers are not automatically safe in NumPy.** The product of two `int8` arrays
# is computed *in int8*: every sum beyond 127 silently wraps around. That is why
# `matmul_int32` widens before multiplying:

# %%
wrapped = x_q @ w_q  # int8 @ int8 -> int8: wraps modulo 256, no warning
exact = x_q.astype(np.int64) @ w_q.astype(np.int64)
print("dtype of int8 @ int8:", wrapped.dtype)
print(f"entries that wrapped: {np.sum(wrapped != exact)} of {exact.size}")
assert wrapped.dtype == np.int8 and np.any(wrapped != exact)

# %% [markdown]
# ## 4. The zero-point expansion, and why weights are symmetric
#
# gemmlowp ("efficient handling of offsets"; Jacob et al. 2018, eq. 7-9) expands the
# centred product into four terms:
#
# $$\sum_k (x_k - z_x)(w_{kj} - z_w) =
#   \underbrace{\sum_k x_k w_{kj}}_{T_1:\ O(BKN)}
#   - \underbrace{z_w \sum_k x_k}_{T_2:\ \text{per input row}}
#   - \underbrace{z_x \sum_k w_{kj}}_{T_3:\ \text{per column}}
#   + \underbrace{K z_x z_w}_{T_4}.$$
#
# Only $T_1$ is a real matrix product, on the raw int8 values. $T_3$ depends on the
# weights alone: it is computed once, when the model is converted, and folded into the
# bias. $T_2$ depends on every new input row, so it costs extra work at run time, unless
# $z_w = 0$. That is why TensorFlow Lite's weights are **symmetric**: $T_2$ and $T_4$
# vanish and the layer becomes one int8 matmul plus a precomputed int32 bias.

# %%
z_w = 0
t1 = x_q.astype(np.int64) @ w_q.astype(np.int64)  # (B, N)
t2 = z_w * x_q.sum(axis=1, dtype=np.int64)[:, None]  # (B, 1): zero for symmetric weights
t3 = z_x * w_q.sum(axis=0, dtype=np.int64)  # (N,)
t4 = K * z_x * z_w  # scalar: zero too
print(f"T1[0, :3] = {t1[0, :3]}, T2 = 0: {not np.any(t2)}, T3[:3] = {t3[:3]}, T4 = {t4}")

folded_bias = bias_q.astype(np.int64) - t3  # computed once, at conversion time
acc_folded = t1 + folded_bias  # at run time: one int8 matmul and one add
assert np.array_equal(acc_folded, acc)
assert np.array_equal(matmul_int32_expanded(x_q, w_q, z_x, 0), matmul_int32_direct(x_q, w_q, z_x, 0))

# %% [markdown]
# ## 5. Can the accumulator overflow?
#
# Each centred product is at most $|x_q - z_x| \cdot |w_q| \le 255 \cdot 127 = 32{,}385$
# in magnitude (an int8 minus its zero point spans at most 255; narrow-range weights are
# at most 127). So
#
# $$|\text{acc}| \le K \cdot 255 \cdot 127 + \max|b_q| ,$$
#
# and int32 is safe while that is at most $2^{31} - 1$: without bias, up to
# $K = 66{,}311$ inputs. `nnref` proves the bound from the *dtypes* before computing
# (an `int8` array could also hold $-128$, so it uses $255 \cdot 128$: $K \le 65{,}793$)
# and refuses a shape that could overflow rather than wrap silently.

# %%
bound = K * 255 * 127 + int(np.abs(bias_q).max())
print(f"this layer: |acc| <= {K} * 255 * 127 + max|bias_q| = {bound:,} "
      f"(observed max |acc| = {int(np.abs(acc.astype(np.int64)).max()):,}; int32 max = {2**31 - 1:,})")
print("largest K without bias, narrow-range weights:", (2**31 - 1) // (255 * 127))
assert np.abs(acc.astype(np.int64)).max() <= bound < 2**31 - 1

too_long = 65_794
try:
    matmul_int32(np.zeros((1, too_long), np.int8), np.zeros((too_long, 1), np.int8), -128, 0)
except ValueError as err:
    print("ValueError:", err)

# %% [markdown]
# **Exact integer products in float BLAS.** NumPy has no integer BLAS: an int64 matmul is
# many times slower than a float32 one. But a float matmul of integer-valued
# arrays is *exact* as long as every partial sum is an integer the float type can hold:
# all integers up to $2^{24}$ in float32 (a 24-bit significand), up to $2^{53}$ in
# float64. Beyond $2^{24}$ float32 starts skipping integers:

# %%
print("float32(2**24) + 1 =", np.float32(2**24) + np.float32(1), "(the +1 is lost)")
print(f"T1 of this layer: K * 128 * 127 = {K * 128 * 127:,} <= 2**24 = {2**24:,} ->",
      exact_float_dtype(K, 128, 127))
print("uncentred int8 (|x| <= 128), float32 exact up to K =", 2**24 // (128 * 127),
      "| centred (|x - z| <= 255) only up to K =", 2**24 // (255 * 127))
print("a 2000-input layer:", exact_float_dtype(2000, 128, 127))
assert np.array_equal(matmul_int32(x_q, w_q, z_x, 0, method="float"),
                      matmul_int32(x_q, w_q, z_x, 0, method="int"))

# %% [markdown]
# This is one more reason for the expansion: $T_1$ multiplies *uncentred* int8 values
# ($|x| \le 128$), so float32 stays exact up to $K = 1032$, twice as far as the centred
# product. `matmul_int32(method="auto")` picks the narrowest provably exact float type and
# is bit-identical to the integer computation.
#
# ## 6. The real multiplier and its fixed-point form
#
# The accumulator is in units of $s_x s_w[j]$; the output must be in units of $s_y$:
#
# $$y_q = z_y + \operatorname{round}\big(M_j \cdot \text{acc}\big), \qquad
#   M_j = \frac{s_x\, s_w[j]}{s_y}.$$
#
# An integer-only chip cannot multiply by a real $M$. TensorFlow Lite stores it as a
# 31-bit integer mantissa $m_0 \in [2^{30}, 2^{31})$ and a power-of-two exponent
# (`QuantizeMultiplier`; Jacob et al. 2018, eq. 5-6):
#
# $$M \approx m_0 \cdot 2^{\text{shift} - 31}.$$
#
# With `frexp`: $M = q \cdot 2^e$, $q \in [0.5, 1)$, then $m_0 = \operatorname{round}(q\,2^{31})$
# and shift $= e$. Worked values:
#
# - $0.5 = 0.5 \cdot 2^0$: $m_0 = 2^{30} = 1073741824$, shift 0;
# - $1.0 = 0.5 \cdot 2^1$: $m_0 = 2^{30}$, shift 1;
# - $0.1 = 0.8 \cdot 2^{-3}$: $0.8 \cdot 2^{31} = 1717986918.4$, so $m_0 = 1717986918$,
#   shift $-3$.

# %%
for real in (0.5, 1.0, 0.1):
    m0, shift = quantize_multiplier(real)
    approx = m0 * 2.0 ** (shift - 31)
    print(f"M = {real}: frexp = {np.frexp(real)}, m0 = {m0}, shift = {shift}, "
          f"m0 * 2**(shift - 31) = {approx!r}")
assert quantize_multiplier(0.5) == (2**30, 0) and quantize_multiplier(1.0) == (2**30, 1)
assert quantize_multiplier(0.1) == (1717986918, -3)

# %% [markdown]
# For our layer there is one multiplier per output channel (per-channel weight scales).
# They are small, so the shifts are negative (a right shift), and the approximation error
# is below half a unit in the 31st bit: $|m_0 2^{\text{shift}-31} - M| \le 2^{\text{shift}-32}$.

# %%
M = s_x.astype(np.float64) * s_w.astype(np.float64) / np.float64(s_y)  # TFLite: in double
m0, shift = quantize_multiplier(M)  # two (N,) int32 arrays
approx = m0.astype(np.float64) * 2.0 ** (shift.astype(np.float64) - 31)
print("M[:4]     =", M[:4])
print("m0[:4]    =", m0[:4], "| shift[:4] =", shift[:4])
print(f"max relative error of the fixed-point multiplier: {np.max(np.abs(approx - M) / M):.2e} "
      f"(2**-31 = {2.0**-31:.2e})")
assert np.all(np.abs(approx - M) <= 2.0 ** (shift.astype(np.float64) - 32))

# %% [markdown]
# ## 7. Applying the multiplier with integers: SRDHM and rounding shifts
#
# gemmlowp's two primitives (`fixedpoint.h`):
#
# - **SRDHM** (saturating rounding doubling high multiply): $\operatorname{SRDHM}(a, b) =
#   \operatorname{round}(a b / 2^{31})$, ties toward $+\infty$, computed in 64 bits. Read
#   $b = m_0$ as the fraction $m_0/2^{31} \in [0.5, 1)$. The single overflow case
#   $a = b = -2^{31}$ saturates to $2^{31} - 1$.
# - **RDBPOT** (rounding divide by power of two): $\operatorname{round}(x / 2^e)$, ties away
#   from zero.
#
# Worked values: $\operatorname{SRDHM}(3, 2^{30}) = \operatorname{round}(1.5) = 2$,
# $\operatorname{SRDHM}(-3, 2^{30}) = \operatorname{round}(-1.5) = -1$ (toward $+\infty$);
# $\operatorname{RDBPOT}(5, 1) = \operatorname{round}(2.5) = 3$,
# $\operatorname{RDBPOT}(-5, 1) = -3$, $\operatorname{RDBPOT}(-12, 3) = \operatorname{round}(-1.5) = -2$
# (away from zero).

# %%
print("SRDHM(3, 2**30) =", saturating_rounding_doubling_high_mul(3, 2**30))
print("SRDHM(-3, 2**30) =", saturating_rounding_doubling_high_mul(-3, 2**30))
print("SRDHM(-2**31, -2**31) =", saturating_rounding_doubling_high_mul(-(2**31), -(2**31)))
print("RDBPOT(5, 1), RDBPOT(-5, 1), RDBPOT(-12, 3) =",
      rounding_divide_by_pot(5, 1), rounding_divide_by_pot(-5, 1), rounding_divide_by_pot(-12, 3))
assert saturating_rounding_doubling_high_mul(3, 2**30) == 2
assert saturating_rounding_doubling_high_mul(-3, 2**30) == -1
assert saturating_rounding_doubling_high_mul(-(2**31), -(2**31)) == 2**31 - 1
assert rounding_divide_by_pot(5, 1) == 3 and rounding_divide_by_pot(-5, 1) == -3
assert rounding_divide_by_pot(-12, 3) == -2

# %% [markdown]
# TensorFlow Lite has two ways to combine them (`MultiplyByQuantizedMultiplier`):
#
# - **double rounding** (gemmlowp, the Jacob et al. paper):
#   $\operatorname{RDBPOT}(\operatorname{SRDHM}(x \cdot 2^{\max(\text{shift},0)}, m_0), \max(-\text{shift}, 0))$;
# - **single rounding** (`TFLITE_SINGLE_ROUNDING`, TensorFlow Lite's integer-only form;
#   LiteRT 2.3's reference kernels compute $x \cdot M$ in double instead, the same value
#   except within about $10^{-8}$ of a tie, tutorial 12):
#   $(x\, m_0 + 2^{t-1}) \gg t$ with $t = 31 - \text{shift}$, one rounding in 64 bits.
#
# They differ by one near ties. With $x = 5$, $m_0 = 2^{30}$, shift $= -1$
# ($M = 2^{30} \cdot 2^{-32} = 1/4$, exact product $1.25$):
#
# - single: $(5 \cdot 2^{30} + 2^{31}) \gg 32 = \lfloor 7 \cdot 2^{30} / 2^{32} \rfloor = \lfloor 1.75 \rfloor = 1$;
# - double: $\operatorname{SRDHM}(5, 2^{30}) = \operatorname{round}(2.5) = 3$, then
#   $\operatorname{RDBPOT}(3, 1) = \operatorname{round}(1.5) = 2$.
#
# Rounding twice turned $1.25$ into 2.

# %%
single = multiply_by_quantized_multiplier(5, 2**30, -1, rounding="single")
double = multiply_by_quantized_multiplier(5, 2**30, -1, rounding="double")
print(f"5 * 1/4 = 1.25: single rounding -> {single}, double rounding -> {double}")
assert (single, double) == (1, 2)

# %% [markdown]
# ## 8. Requantize: multiply, add the zero point, clamp
#
# $$y_q = \operatorname{clamp}\big(\operatorname{MBQM}(\text{acc}, m_0, \text{shift}) + z_y,\;
#   a_{\min},\, a_{\max}\big) \in \text{int8}.$$
#
# Per channel, $m_0$ and shift are $(N,)$ arrays and broadcast along the last axis of the
# $(B, N)$ accumulator. Step by step, then with `requantize`:

# %%
act_min, act_max = activation_range("relu", s_y, z_y)  # next section
scaled = multiply_by_quantized_multiplier(acc, m0, shift, rounding="single")  # (B, N) int32
shifted = scaled.astype(np.int64) + z_y  # int32 + int8 in int64: cannot overflow
y_steps = np.clip(shifted, act_min, act_max).astype(np.int8)
print(f"acc[0, :4] = {acc[0, :4]} -> MBQM -> {scaled[0, :4]} -> + z_y -> {shifted[0, :4]} "
      f"-> clamp -> y_q {y_steps[0, :4]}")
assert np.array_equal(y_steps, requantize(acc, m0, shift, z_y, act_min, act_max, rounding="single"))

# %% [markdown]
# ## 9. ReLU is a clamp
#
# A fused ReLU costs nothing: real 0 is the integer $z_y$, so $\max(0, \cdot)$ is a clamp
# from below at $z_y$ (TensorFlow Lite's `CalculateActivationRangeQuantized`):
# $a_{\min} = \max(q_{\min}, z_y)$, $a_{\max} = q_{\max}$; ReLU6 also caps at
# $z_y + \operatorname{round}(6/s_y)$.
#
# In our layer the output range was calibrated *after* the ReLU, $[0, \max h]$, so
# $z_y = -128 = q_{\min}$: the ordinary int8 saturation is already the ReLU. Had we
# calibrated on the pre-activation $xW + b$ (which is negative too), $z_y$ would sit
# inside the range and the clamp would do visible work:

# %%
print("ReLU clamp, output range [0, max h]      :", (act_min, act_max))
qp_pre = TFLITE_INT8_ACTIVATIONS.for_tensor(x_train @ W + b)
s_pre, z_pre = np.float32(qp_pre.scale), int(qp_pre.zero_point)
print(f"pre-activation range: s = {s_pre:.5f}, z = {z_pre}")
print("ReLU clamp, pre-activation range         :", activation_range("relu", s_pre, z_pre))
# ReLU6 by hand with s = 0.05, z = -20:
# a_min = max(-128, -20) = -20, a_max = min(127, -20 + round(6 / 0.05)) = -20 + 120 = 100
print("ReLU6 clamp, s = 0.05, z = -20           :", activation_range("relu6", 0.05, -20))
assert activation_range("relu6", 0.05, -20) == (-20, 100)
assert (act_min, act_max) == (-128, 127) and activation_range("relu", s_pre, z_pre) == (z_pre, 127)
assert np.all(dequantize(y_steps, qp_y) >= 0)  # every output is a ReLU output

# %% [markdown]
# ## 10. `quantized_linear` is exactly these steps
#
# `quantized_linear` does sections 3 to 9 in one call, in TensorFlow Lite's order. It
# agrees with our step-by-step computation bit for bit, accumulator included:

# %%
y_q, acc_lib = quantized_linear(x_q, w_q, bias_q, z_x, 0, m0, shift, z_y, act_min, act_max,
                                rounding="single", return_acc=True)
print("y_q:", y_q.dtype, y_q.shape, "| identical to the steps:", np.array_equal(y_q, y_steps))
assert np.array_equal(acc_lib, acc) and np.array_equal(y_q, y_steps)

y_q_double = quantized_linear(x_q, w_q, bias_q, z_x, 0, m0, shift, z_y, act_min, act_max, rounding="double")
n_diff = int(np.sum(y_q != y_q_double))
print(f"single vs double rounding: {n_diff} of {y_q.size} outputs differ, "
      f"by at most {np.abs(y_q.astype(int) - y_q_double).max()}")
assert np.abs(y_q.astype(int) - y_q_double).max() <= 1

# %% [markdown]
# ## 11. How close is the integer layer to the float one?
#
# Compare the dequantized output $s_y (y_q - z_y)$ with the float $h$, in units of the
# output step $s_y$ ("LSB"). Two kinds of rounding separate them (the integer
# arithmetic in between is exact):
#
# 1. quantizing the input, the weights and the bias: the accumulator represents
#    $\tilde x \tilde W + \tilde b$, not $xW + b$;
# 2. requantizing the accumulator to int8: $\le 1/2$ LSB, plus a trace from the
#    31-bit $m_0$.
#
# The best any int8 output could do is `quantize(h)`, the float result rounded onto the
# output grid; we count how often the integer layer lands on that ideal value.

# %%
y_deq = dequantize(y_q, qp_y)
err_lsb = (y_deq.astype(np.float64) - h_test) / np.float64(s_y)
ideal = quantize(h_test, qp_y, rounding="half_away")
diff = y_q.astype(np.int64) - ideal

pre_float = x_test.astype(np.float64) @ W.astype(np.float64) + b  # x W + b
acc_real = acc.astype(np.float64) * (np.float64(s_x) * s_w.astype(np.float64))  # what acc stands for
step1 = (acc_real - pre_float) / np.float64(s_y)
exact_requant = np.clip(round_half_away(acc.astype(np.float64) * M) + z_y, act_min, act_max)

print(f"1. input/weight/bias rounding : |acc_real - (xW + b)| up to {np.abs(step1).max():.3f} LSB "
      f"(mean {np.abs(step1).mean():.3f})")
print(f"2. requantization             : fixed point vs exact round(acc * M): "
      f"{int(np.sum(y_q != exact_requant))} of {y_q.size} outputs differ")
print(f"total |dequantized - float|   : max {np.abs(err_lsb).max():.3f} LSB, "
      f"mean {np.abs(err_lsb).mean():.3f} LSB")
values, counts = np.unique(diff, return_counts=True)
print("y_q - quantize(h):", dict(zip(values.tolist(), counts.tolist())))
print(f"on the ideal grid point: {100 * np.mean(diff == 0):.1f} % of outputs")
assert np.abs(diff).max() <= 2 and np.mean(diff == 0) > 0.5

# %%
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=STYLE["panel_figsize"], layout="constrained")
ax0.plot(h_test.ravel(), err_lsb.ravel(), ".", ms=2, alpha=0.3, color=STYLE["before"],
         label="outputs (test set)")
ax0.axhline(0.5, color=STYLE["clipped"], ls=":", lw=STYLE["linewidth"], label="$\\pm 1/2$ LSB (ideal rounding)")
ax0.axhline(-0.5, color=STYLE["clipped"], ls=":", lw=STYLE["linewidth"])
ax0.set(title=f"Error of the integer layer ({y_q.size:,} outputs)",
        xlabel="float output ReLU(xW + b) (real units)",
        ylabel="$(s_y(y_q - z_y) - h) / s_y$ (output steps, LSB)")
ax0.grid(True, alpha=STYLE["grid_alpha"])
ax0.legend()
ax1.bar(values, counts, color=STYLE["after"], width=0.6, label="count")
for v, c in zip(values, counts):
    ax1.annotate(f"{c:,}", (v, c), ha="center", va="bottom")
ax1.set_yscale("log")
ax1.set_xticks(values)
ax1.set(title="Integer output minus the ideal int8 output quantize(h)",
        xlabel="$y_q$ - quantize(float output) (output steps, LSB)", ylabel="number of outputs (log scale)")
ax1.grid(True, axis="y", alpha=STYLE["grid_alpha"])
ax1.legend()
save_figure(fig, figures_dir() / "05_requantization_error.png")
fig

# %% [markdown]
# Most outputs land on the ideal grid point, nearly all others on a neighbour: the
# integer layer is off by a fifth of an output step on average and by at most about one
# and a half (the printed mean and maximum above). Almost all of it comes from rounding
# the inputs and weights (step 1); the fixed-point requantization itself agrees with
# exact rounding almost everywhere.
#
# ## 12. ONNX QLinearMatMul: the same accumulator, float requantization
#
# ONNX's `QLinearMatMul`, as onnxruntime's CPU kernel computes it, uses the same int32
# accumulator but requantizes in float32:
#
# $$y_q = \operatorname{saturate}\Big(\operatorname{round\_half\_even}\big(\text{float32}(\text{acc})
#   \cdot \text{float32}(s_a s_b / s_y)\big) + z_y\Big).$$
#
# Two differences from TensorFlow Lite: the multiplier is a float32 (24-bit mantissa)
# instead of a 31-bit integer, and ties round to even instead of toward $+\infty$.
# `QLinearMatMul` has no bias and no fused activation, so we compare the bare matmul
# $xW$, with an output range calibrated on $xW$:

# %%
qp_mm = TFLITE_INT8_ACTIVATIONS.for_tensor(x_train @ W)
s_mm, z_mm = np.float32(qp_mm.scale), int(qp_mm.zero_point)
m0_mm, shift_mm = quantize_multiplier(s_x.astype(np.float64) * s_w.astype(np.float64) / np.float64(s_mm))

y_onnx = qlinear_matmul(x_q, s_x, z_x, w_q, s_w, 0, s_mm, np.int8(z_mm))
for rounding in ("single", "double"):
    y_tfl = quantized_linear(x_q, w_q, None, z_x, 0, m0_mm, shift_mm, z_mm, rounding=rounding)
    d = y_tfl.astype(np.int64) - y_onnx
    print(f"TFLite {rounding:6s} rounding vs ONNX: {int(np.sum(d != 0))} of {d.size} outputs differ"
          f", by at most {int(np.abs(d).max())}")
    assert np.abs(d).max() <= 1

# %% [markdown]
# On real data the engines almost always agree: they can only disagree where
# $\text{acc} \cdot M$ lies within a rounding error of a half-integer. At an exact tie
# they must disagree. With $s_a = s_b = 0.5$, $s_y = 1$ ($M = 1/4$, exactly representable
# in both) and accumulators $-10, -6, \ldots, 10$, the exact products are
# $-2.5, -1.5, -0.5, 0.5, 1.5, 2.5$:

# %%
acc_ties = np.array([-10, -6, -2, 2, 6, 10], dtype=np.int32)
m0_q, shift_q = quantize_multiplier(0.25)
onnx_ties = qlinear_matmul(acc_ties.astype(np.int8)[:, None], 0.5, 0, np.ones((1, 1), np.int8), 0.5, 0, 1.0,
                           np.int8(0))[:, 0]
single_ties = requantize(acc_ties[None, :], m0_q, shift_q, 0, rounding="single")[0]
double_ties = requantize(acc_ties[None, :], m0_q, shift_q, 0, rounding="double")[0]
print("acc * M              :", acc_ties / 4)
print("ONNX (half to even)  :", onnx_ties)
print("TFLite single (+inf) :", single_ties)
print("TFLite double        :", double_ties)
assert onnx_ties.tolist() == [-2, -2, 0, 0, 2, 2]
assert single_ties.tolist() == [-2, -1, 0, 1, 2, 3]
assert double_ties.tolist() == [-3, -2, -1, 1, 2, 3]

# %% [markdown]
# Two engines, three conventions (TensorFlow Lite builds with either rounding), three
# answers at a tie, each correct by its own specification. A reference implementation must
# say which one it reproduces; `nnref` offers all three by
# name.
#
# ## 13. The whole pipeline at a glance
#
# The value ranges at each stage: int8 in, int8 weights, a wide int32 accumulator (far
# inside its proven bound), and back to int8.

# %%
fig, axes = plt.subplots(2, 2, figsize=(11.0, 7.0), layout="constrained")
stages = [
    (axes[0, 0], x_q, "input $x_q$ (int8, $z_x$ = -128)", (-128, 127)),
    (axes[0, 1], w_q, "weights $w_q$ (int8, symmetric, narrow range)", (-127, 127)),
    (axes[1, 0], acc, "accumulator acc (int32, bias included)", (-bound, bound)),
    (axes[1, 1], y_q, "output $y_q$ (int8, ReLU = clamp at $z_y$ = -128)", (-128, 127)),
]
for ax, values_, title, (lo, hi) in stages:
    ax.hist(values_.ravel().astype(np.int64), bins=64, color=STYLE["before"], log=True)
    ax.set_ylim(top=30 * ax.get_ylim()[1])  # head room for the legend above the bars
    ax.set_xlim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))  # both limit lines inside the frame
    ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    is_acc = values_ is acc
    limit_label = "proven bound $\\pm(K \\cdot 255 \\cdot 127 + \\max|b_q|)$" if is_acc else "range of the type"
    ax.axvline(lo, color=STYLE["clipped"], ls="--", lw=STYLE["linewidth"], label=limit_label)
    ax.axvline(hi, color=STYLE["clipped"], ls="--", lw=STYLE["linewidth"])
    ax.set(title=f"{title}\nobserved [{int(values_.min()):,}, {int(values_.max()):,}]",
           xlabel="integer value", ylabel="count (log scale)")
    ax.grid(True, alpha=STYLE["grid_alpha"])
    ax.legend(loc="upper center")
fig.suptitle("Integer-only Linear + ReLU: value ranges per stage (test set)")
save_figure(fig, figures_dir() / "05_integer_pipeline.png")
fig

# %%
plt.close("all")

# %% [markdown]
# ## Graded exercises: write the integer arithmetic of this tutorial
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
# - `quantize_bias`: section 2: the int32 bias in the converter's precisions (a float32
#   reciprocal, not a division)
# - `quantize_multiplier`: section 6: $M = m_0 2^{\text{shift} - 31}$, rounding half away from
#   zero, with the carry into the next binade
# - `srdhm`: section 7: gemmlowp's SaturatingRoundingDoublingHighMul (do not forget the
#   saturation case)
# - `rdbpot`: section 7: RoundingDivideByPOT, ties away from zero
# - `mbqm_single`: section 7: TFLite's multiplier with one rounding
# - `mbqm_double`: section 7: the same with two roundings
# - `matmul_centred`: sections 3-4: the int32 accumulator with zero points
# - `requantize_fixed_point`: section 8: multiply, add the zero point, clamp
# - `linear_int8`: section 10: the int8 Linear layer, TFLite's order
# - `qlinear_multiplier`: section 12: onnxruntime's float32 multiplier (the order of the
#   operations matters)
# - `requantize_float`: section 12: onnxruntime's float requantization

# %%
from nnref import laws

# %% tags=["exercise"]
quantize_bias = laws.reference("quantize_bias")

# %% tags=["exercise"]
quantize_multiplier = laws.reference("quantize_multiplier")

# %% tags=["exercise"]
srdhm = laws.reference("srdhm")

# %% tags=["exercise"]
rdbpot = laws.reference("rdbpot")

# %% tags=["exercise"]
mbqm_single = laws.reference("mbqm_single")

# %% tags=["exercise"]
mbqm_double = laws.reference("mbqm_double")

# %% tags=["exercise"]
matmul_centred = laws.reference("matmul_centred")

# %% tags=["exercise"]
requantize_fixed_point = laws.reference("requantize_fixed_point")

# %% tags=["exercise"]
linear_int8 = laws.reference("linear_int8")

# %% tags=["exercise"]
qlinear_multiplier = laws.reference("qlinear_multiplier")

# %% tags=["exercise"]
requantize_float = laws.reference("requantize_float")

# %%
for exercise in (quantize_bias,
                 quantize_multiplier,
                 srdhm,
                 rdbpot,
                 mbqm_single,
                 mbqm_double,
                 matmul_centred,
                 requantize_fixed_point,
                 linear_int8,
                 qlinear_multiplier,
                 requantize_float):
    report = laws.check(exercise.__name__, exercise, max_examples=15)
    print(report if not report.passed else f"{exercise.__name__}: passed ({len(report.results)} laws)")

# %% [markdown]
# ## Summary
#
# - An int8 Linear layer is: $\text{acc} = \sum_k (x_q - z_x)\, w_q + b_q$ in int32, then
#   $y_q = \operatorname{clamp}(z_y + \operatorname{MBQM}(\text{acc}), a_{\min}, a_{\max})$
#   (TensorFlow Lite `FullyConnected`); `quantized_linear` does exactly that.
# - Symmetric weights ($z_w = 0$) remove the input-dependent term of gemmlowp's
#   expansion; the weight-only term is folded into the bias at conversion time.
# - The accumulator is provably safe: $K \cdot 255 \cdot 127 + \max|b_q| < 2^{31}$; and
#   float BLAS computes the integer product exactly while partial sums stay below
#   $2^{24}$ (float32) or $2^{53}$ (float64).
# - $M = s_x s_w / s_y \approx m_0 2^{\text{shift}-31}$ is applied with integer
#   multiplies and rounding shifts; single and double rounding differ by one near ties,
#   and a fused ReLU is just the clamp at $z_y$.
# - The integer layer lands on the ideal int8 output for most elements and within one or
#   two steps everywhere; ONNX's float requantization agrees with TensorFlow Lite's
#   except at (near-)ties.
#
# ## Exercises
#
# 1. Quantize the weights **per tensor** (`TFLITE_INT8_WEIGHTS_PER_TENSOR`; then $m_0$ and
#    shift are scalars) and redo section 11. How many more outputs miss the ideal
#    `quantize(h)`?
# 2. Use affine weights with a nonzero zero point (`choose_qparams(W.min(), W.max())`
#    per tensor) and compute the four terms of section 4 again. Check against
#    `matmul_int32(x_q, w_q, z_x, z_w)` that $T_2$ and $T_4$ are now needed.
# 3. Build the second layer (`model.linears[1]`, no activation) the same way, feeding it
#    `y_q` with the output parameters of layer 1 as its input parameters. What test
#    accuracy does the argmax of the int8 logits give, compared with the float model?
