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
# # 06 · Post-training quantization of the whole MLP
#
# Tutorial 05 built one integer-only layer by hand. Here `nnref` converts a whole trained
# network, `MLP([64, 64, 10])` on the digits, into an integer-only model in one call,
# the way TensorFlow Lite's post-training full-integer quantization does: no retraining,
# only a few hundred calibration images. Then we look at every choice that conversion
# makes and what each one costs in accuracy and in bytes.
#
# **You will learn**
#
# - what **calibration** records (the range of every tensor the integer model must
#   represent) and how the ranges become scales and zero points;
# - what `quantize_model` stores per layer: int8 weights, int32 biases, a fixed-point
#   multiplier and shift per output channel, zero points and clamp bounds;
# - how to run the integer model (`predict`) and trace one image through it, integer by
#   integer, with nothing floating-point after the input is quantized;
# - how the calibration observer, per-tensor vs per-channel weights and the
#   requantization arithmetic (TensorFlow Lite single or double rounding, ONNX float)
#   change the result;
# - how to count a quantized model's size honestly, and what int8, int4 and int2
#   weights cost in accuracy.
#
# **You need** tutorials 04 (scale, zero point, observers) and 05 (the integer layer:
# accumulator, multiplier $m_0$ and shift, clamp).
#
# **Figures written** (to `figures/`): `06_channel_ranges.png`,
# `06_weight_histograms.png`, `06_quantization_error.png`.

# %%
import matplotlib.pyplot as plt
import numpy as np

from nnref.data import load_digits, train_test_split
from nnref.layers import Linear
from nnref.mlp import MLP
from nnref.optim import Adam
from nnref.plots import (
    STYLE,
    figures_dir,
    plot_channel_ranges,
    plot_quantization_error,
    plot_weight_histograms,
    save_figure,
)
from nnref.quant import (
    TFLITE_INT8_ACTIVATIONS,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MSEObserver,
    PercentileObserver,
    calibrate,
    dequantize,
    format_table,
    model_size_bytes,
    pack_int4,
    quantization_error,
    quantize_bias,
    quantize_model,
    quantize_multiplier,
    quantize_weights,
    round_half_away,
    to_float16,
    unpack_int4,
    weight_error_report,
)
from nnref.train import fit

np.set_printoptions(precision=5, suppress=True, linewidth=100)

# %% [markdown]
# ## 1. The float model
#
# We train `MLP([64, 64, 10])` (64 pixels, 64 ReLU units, 10 logits) with Adam,
# $\eta = 10^{-3}$, batches of 32, for 30 epochs: under a second. This is exactly seed 0
# of `benchmarks/quant_table.py`, which produces the accuracy table in the README (the
# mean of three seeds).
#
# **How precise is "accuracy" here?** The test set holds 360 images (20 % of the 1,797
# digits, rounded up), so one image is $100/360 \approx 0.28$ percentage points. nnref's
# target for int8 post-training quantization is to lose **at most 1 point** of test
# accuracy against float32: at most 3 images.

# %%
x, y = load_digits()
x_train, x_test, y_train, y_test = train_test_split(x, y, test_fraction=0.2, seed=0)
model = MLP([64, 64, 10], seed=0)
history = fit(model, Adam(lr=1e-3), x_train, y_train, epochs=30, batch_size=32, seed=0, verbose=False)
float_acc = model.accuracy(x_test, y_test)
n_test = len(y_test)
point_per_image = 100 / n_test
print(history.summary())
print(f"float32 test accuracy: {100 * float_acc:.2f} % ({round(float_acc * n_test)} of {n_test} images; "
      f"one image = {point_per_image:.2f} points)")
assert n_test == 360

# %% [markdown]
# ## 2. Calibration: what the integer model must represent
#
# The weights are known; the activations are not, until inputs flow through the
# network. **Calibration** runs the float model on representative inputs (here the
# training images; TensorFlow Lite calls them the `representative_dataset`) and lets an
# observer (tutorial 04, section 9) watch every tensor the integer model will hold:
#
# | tensor | what | `Calibration` field |
# |---|---|---|
# | $h_0 = x$ | the input pixels | `input` |
# | $z_l = h_l W_l + b_l$ | Linear $l$'s output before its activation | `preactivations[l]` |
# | $h_{l+1} = \mathrm{ReLU}(z_l)$, or the logits $z_L$ | what enters the next layer | `outputs[l]` |
#
# `calibrate` feeds them batch by batch (512 rows at a time) and returns the observers:

# %%
cal = calibrate(model, x_train)  # MinMaxObserver for every tensor by default
print(cal)

# %% [markdown]
# Read it as tutorial 05 did: the pixels lie in $[0, 1]$; layer 1's pre-activation $z_1$
# is negative and positive, its ReLU output starts at exactly 0; the logits (layer 2 has
# no activation) are both. The pre-activations are recorded for activations that need
# their own grid (tanh and sigmoid become lookup tables on it); for ReLU the output range
# is enough, because ReLU becomes a clamp.
#
# Each observed range becomes int8 affine parameters (`TFLITE_INT8_ACTIVATIONS`):
# $s = (r_{\max} - r_{\min}) / 255$ and $z = -128 - \operatorname{round}(r_{\min}/s)$,
# after widening the range to contain 0. The ReLU output has $r_{\min} = 0$, so $z = -128$
# and all 256 levels cover $[0, \max h_1]$:

# %%
qp_h1 = cal.outputs[0].qparams(TFLITE_INT8_ACTIVATIONS)
qp_logits = cal.outputs[1].qparams(TFLITE_INT8_ACTIVATIONS)
s_by_hand = np.float32((cal.outputs[0].max_val - 0.0) / 255)
z_by_hand = -128 - round(cal.outputs[1].min_val / ((cal.outputs[1].max_val - cal.outputs[1].min_val) / 255))
print("layer-1 output:", qp_h1, f"| by hand s = {s_by_hand:.10f}")
print("logits        :", qp_logits, f"| by hand z = {z_by_hand}")
assert np.float32(qp_h1.scale) == s_by_hand and int(qp_h1.zero_point) == -128
assert int(qp_logits.zero_point) == z_by_hand

# %% [markdown]
# ## 3. Conversion: what `quantize_model` stores
#
# `quantize_model(model, calibration_x)` calibrates exactly as above and converts each
# Linear layer following TensorFlow Lite's int8 specification (Jacob et al. 2018, arXiv
# 1712.05877, sections 2-3), with the defaults we use first:
#
# - **weights** int8, symmetric ($z_w = 0$), narrow range $[-127, 127]$, one scale per
#   output channel: $s_w[c] = \max_k |W_{kc}| / 127$, $w_q = \operatorname{round}(W / s_w)$,
#   rounding half away from zero as TensorFlow Lite's converter;
# - **bias** int32 with scale $s_{in} s_w[c]$: on paper $\operatorname{round}(b[c] / (s_{in} s_w[c]))$,
#   computed as the converter does (tutorial 05, section 2): $s_b = s_{in} s_w[c]$ in float32,
#   $b_q[c] = \operatorname{round}(\mathrm{float32}(b[c]) \cdot \mathrm{float32}(1/s_b))$, which can differ
#   by one from the float64 division near a tie;
# - **requantization**: $M[c] = s_{in} s_w[c] / s_{out} \approx m_0[c]\, 2^{\text{shift}[c] - 31}$;
# - **activation**: ReLU fused as the clamp $[\max(-128, z_{out}),\ 127]$;
# - the **grids chain**: layer $l$'s output parameters are layer $l+1$'s input parameters,
#   so the int8 output of one layer is the next one's input, untouched.
#
# `summary()` lists them:

# %%
q8 = quantize_model(model, x_train)  # int8 per-channel weights, min-max calibration
print(q8.summary())

# %% [markdown]
# Everything a layer stores, for layer 1 and for the logits layer, layer 2. (These
# tutorials count layers from 1, as the parameter names `W1`, `W2` and the figures do;
# Python's indices, and `summary()`, count from 0: `q8.layers[0]` is layer 1.)

# %%
for i, layer in enumerate(q8.layers):
    print(f"--- layer {i + 1}: {layer}")
    w_q = layer.w_q
    print(f"  w_q       {w_q.dtype} {w_q.shape}, values in [{w_q.min()}, {w_q.max()}]")
    print(f"  s_w       {layer.w_qparams.scale.dtype} {layer.w_qparams.scale.shape}, zero points all "
          f"{int(np.unique(layer.w_qparams.zero_point)[0])}")
    print(f"  bias_q    {layer.bias_q.dtype} {layer.bias_q.shape}, first three {layer.bias_q[:3]}")
    print(f"  m0        {layer.m0.dtype}, first three {layer.m0[:3]} (all in [2**30, 2**31))")
    print(f"  shift     {layer.shift.dtype}, values {np.unique(layer.shift)}")
    print(f"  input     s = {float(layer.in_qparams.scale):.6g}, z = {int(layer.in_qparams.zero_point)}")
    print(f"  output    s = {float(layer.out_qparams.scale):.6g}, z = {int(layer.out_qparams.zero_point)}")
    print(f"  clamp     [{layer.act_min}, {layer.act_max}] (activation {layer.activation!r})")

# %% [markdown]
# Every one of those numbers follows from the float weights and the calibrated ranges by
# the formulas above. We recompute layer 1's by hand (in numpy) and check them against
# the stored ones and against nnref's building blocks `quantize_weights`,
# `quantize_bias` and `quantize_multiplier` (tutorial 05, section 6):

# %%
W0, b0 = model.linears[0].W, model.linears[0].b
L0 = q8.layers[0]
s_in = np.float32(L0.in_qparams.scale)

s_w_hand = (np.abs(W0).max(axis=0) / np.float32(127)).astype(np.float32)  # (64,) one per column
w_q_hand = np.clip(round_half_away(W0 / s_w_hand), -127, 127).astype(np.int8)
inv_s_b = (1.0 / (s_in * s_w_hand).astype(np.float64)).astype(np.float32)  # the converter's reciprocal
b_q_hand = round_half_away(b0.astype(np.float32) * inv_s_b).astype(np.int32)  # float32 product
M_hand = np.float64(s_in) * s_w_hand.astype(np.float64) / np.float64(L0.out_qparams.scale)

np.testing.assert_allclose(L0.w_qparams.scale, s_w_hand, rtol=1e-6)
assert np.array_equal(L0.w_q, w_q_hand) and np.array_equal(L0.w_q, quantize_weights(W0)[0])
assert np.array_equal(L0.bias_q, b_q_hand)
assert np.array_equal(L0.bias_q, quantize_bias(b0, s_in, L0.w_qparams.scale))
np.testing.assert_allclose(L0.real_multiplier, M_hand, rtol=1e-6)
assert all(np.array_equal(a, b) for a, b in zip(quantize_multiplier(L0.real_multiplier), (L0.m0, L0.shift)))
print(f"M[:3] = {M_hand[:3]}, m0 * 2**(shift - 31) = {L0.m0[:3] * 2.0 ** (L0.shift[:3] - 31.0)}")
# ReLU clamp: act_min = max(-128, z_out) = max(-128, -128) = -128, so the clamp is the int8 range.
assert (L0.act_min, L0.act_max) == (max(-128, int(L0.out_qparams.zero_point)), 127)
assert q8.layers[1].in_qparams == L0.out_qparams  # the grids chain
assert q8.input_qparams == cal.input.qparams(TFLITE_INT8_ACTIVATIONS) and L0.out_qparams == qp_h1

# %% [markdown]
# As in tutorial 05, the ReLU's output range was calibrated *after* the ReLU, so
# $z_{out} = -128$ and the ReLU clamp coincides with int8 saturation. The logits layer has
# no activation: its clamp is the int8 range too, and its zero point sits inside it
# because logits are negative and positive.
#
# ## 4. Running the integer model
#
# `predict(x)` quantizes the float input once (the model's only floating-point
# operation: $x_q = \operatorname{clamp}(\operatorname{round}(x / s_{in}) + z_{in})$),
# runs `forward_int` on int8, and takes the argmax of the int8 logits. Dequantizing is
# monotone ($s > 0$), so the integer argmax is the argmax of the real logits it stands
# for. `compare` puts it next to the float model:

# %%
pred_q = q8.predict(x_test)
report8 = q8.compare(model, x_test, y_test)
s_logits = float(q8.output_qparams.scale)
print(f"predictions: {pred_q.dtype} {pred_q.shape}, first ten {pred_q[:10]} (labels {y_test[:10]})")
print(f"float32 accuracy {100 * report8['float_accuracy']:.2f} %, "
      f"int8 accuracy {100 * report8['int_accuracy']:.2f} %, "
      f"same prediction on {100 * report8['agreement']:.2f} % of the images")
print(f"|float logit - dequantized int8 logit|: mean {report8['mean_logit_error']:.4f}, "
      f"max {report8['max_logit_error']:.4f} (logit step s_out = {s_logits:.4f}: "
      f"max {report8['max_logit_error'] / s_logits:.2f} steps)")
drop8 = 100 * (report8["float_accuracy"] - report8["int_accuracy"])
print(f"accuracy lost: {drop8:.2f} points = {round(drop8 / point_per_image)} image(s); budget 1 point")
assert np.mean(pred_q == y_test) == report8["int_accuracy"] and drop8 <= 1.0

# %% [markdown]
# ## 5. One image, integer by integer
#
# `forward_int(x_q, trace=True)` also returns every intermediate of every layer (the
# steps of tutorial 05: `acc`, `acc_bias`, `scaled`, `out`, `y`). With `method="int"`
# even the matrix product runs in integer arithmetic (the default `"auto"` computes the
# same integers through float BLAS where that is provably exact, tutorial 05 section 5).
# We follow the first test image:

# %%
x_q = q8.quantize_input(x_test[:1])  # the only float operation
logits_q, records = q8.forward_int(x_q, trace=True, method="int")
for i, rec in enumerate(records):
    print(f"layer {i + 1}:")
    for name, arr in rec.items():
        print(f"  {name:9s} {str(arr.dtype):6s} {str(arr.shape):8s} [{arr.min():>7}, {arr.max():>7}]  "
              f"first {arr[0, :4]}")
assert all(arr.dtype.kind == "i" for rec in records for arr in rec.values())  # integers only
assert records[1]["x_q"] is records[0]["y"]  # layer 1's int8 output enters layer 2 as is
assert np.array_equal(logits_q, q8.forward_int(x_q))  # "auto" (float BLAS, exact) = "int"

# %% [markdown]
# Every array after `quantize_input` is `int8` or `int32`. The int32 accumulators are far
# inside their proven bound (tutorial 05, section 5), and each layer ends back in int8.
# Only to *read* the answer do we dequantize the logits: $s_{out}(q - z_{out})$.

# %%
logits_float = model.forward(x_test[:1])[0]
logits_deq = dequantize(logits_q, q8.output_qparams)[0]
print("int8 logits       :", logits_q[0])
print("dequantized       :", logits_deq)
print("float32 logits    :", logits_float)
print(f"predicted class {int(np.argmax(logits_q))} "
      f"(float: {int(np.argmax(logits_float))}, label {y_test[0]})")
assert int(np.argmax(logits_q)) == int(np.argmax(logits_deq))

# %% [markdown]
# ## 6. Calibration choices
#
# The activation ranges are the one part of conversion that depends on data. Tutorial 04
# compared four observers on one tensor; here each calibrates the whole network
# (`quantize_model(..., activation_observer=...)`), and we measure the end result:
#
# - `MinMaxObserver`: the largest range seen; nothing in the calibration set is clamped.
# - `MovingAverageMinMaxObserver(0.1)`: the first batch sets the range, each next batch
#   moves it 10 % of the way to its own min and max. `quantize_model` calibrates in batches
#   of 512, so our 1,437 images are just 3 batches: it is close to the first batch's range.
#   (The observer is built for the thousands of steps of quantization-aware training.)
# - `PercentileObserver(99.9)`: the range from the 0.1th to the 99.9th percentile; the
#   values beyond it are clamped.
# - `MSEObserver`: the shrunk range with the least mean squared rounding-plus-clamping error.
#
# For each we report the top of two calibrated ranges, the accuracy, and the error of each
# layer's integer output against the float model's, as an SQNR in dB (tutorial 04,
# section 7: higher is better). Those errors accumulate: the logits carry the error of
# layer 1 too.

# %%
def float_layer_outputs(float_model: MLP, inputs: np.ndarray) -> list[np.ndarray]:
    """The float model's output of each Linear layer after its activation (logits last)."""
    h, outputs, layers = inputs.astype(float_model.dtype), [], float_model.layers
    for k, layer in enumerate(layers):
        h = layer.forward(h)
        if k + 1 == len(layers) or isinstance(layers[k + 1], Linear):
            outputs.append(h)
    return outputs


def layer_output_sqnr(qmodel, inputs: np.ndarray, float_model: MLP = model) -> list[float]:
    """SQNR (dB) of each layer's dequantized int8 output against the float model's."""
    _, recs = qmodel.forward_int(qmodel.quantize_input(inputs), trace=True)
    return [quantization_error(h, dequantize(rec["y"], layer.out_qparams)).sqnr_db
            for h, rec, layer in zip(float_layer_outputs(float_model, inputs), recs, qmodel.layers)]


def top_of_range(qp) -> float:
    """The largest real value an int8 grid represents: s * (127 - z)."""
    return float(qp.scale) * (127 - int(qp.zero_point))


observers = {
    "min-max": MinMaxObserver,
    "moving average (0.1)": lambda: MovingAverageMinMaxObserver(averaging_constant=0.1),
    "percentile 99.9": lambda: PercentileObserver(percentile=99.9, seed=0),
    "MSE search": lambda: MSEObserver(seed=0),
}
observer_rows, observer_acc = [], {}
for name, factory in observers.items():
    qm = quantize_model(model, x_train, activation_observer=factory)
    sqnr = layer_output_sqnr(qm, x_test)
    observer_acc[name] = qm.accuracy(x_test, y_test)
    observer_rows.append([name, top_of_range(qm.layers[0].out_qparams), top_of_range(qm.output_qparams),
                          sqnr[0], sqnr[1], 100 * observer_acc[name]])
print(format_table(observer_rows, ["observer", "top of h1 range", "top of logit range", "h1 SQNR (dB)",
                                   "logits SQNR (dB)", "int8 accuracy %"], floatfmt=".2f"))
print(f"(float32: {100 * float_acc:.2f} %)")
assert all(100 * (float_acc - acc) <= 1.0 for acc in observer_acc.values())

# %% [markdown]
# At 8 bits the observers barely matter on this network: all stay within the 1-point
# budget, and their accuracies differ by one image, which is noise. The SQNR columns show
# the trade-off of tutorial 04 at work: a smaller range means a finer step for everyone
# (rounding error down), but the values beyond it are clamped (clamping error up). The
# MSE search and the moving average shrink the ranges a little and gain a fraction of a
# dB; the percentile clamps too much and loses a few dB (up to about 4). With 256 levels rounding error
# is already small, so shrinking the range gains little, and min-max is a sound default.
# The calibration set matters more than the observer: it must contain the extremes the
# model will meet, or they are clamped at inference time.
#
# ## 7. Per-tensor vs per-channel weights
#
# One scale per weight tensor must cover the largest weight of the whole matrix; one per
# output channel (column) lets each channel use its own range. How different are the
# channels of our trained layers?

# %%
fig, axes = plt.subplots(1, 2, figsize=STYLE["panel_figsize"], layout="constrained")
plot_channel_ranges(model, ax=axes)
for ax in axes:
    bottom, top = ax.get_ylim()
    ax.set_ylim(bottom, top + 0.45 * (top - bottom))  # head room: the legend above the bars
    ax.legend(loc="upper center", ncols=2, fontsize="small")
save_figure(fig, figures_dir() / "06_channel_ranges.png")
fig

# %%
plt.close(fig)
amax_c = np.abs(W0).max(axis=0)
print(f"layer 1: max|W| = {amax_c.max():.3f}, per-channel max|W[:, c]| from {amax_c.min():.3f} "
      f"to {amax_c.max():.3f} (median {np.median(amax_c):.3f})")

rows = []
for scheme, label in (("tflite_int8_weights_per_tensor", "per-tensor"),
                      ("tflite_int8_weights", "per-channel")):
    errors = weight_error_report(model, scheme, rounding="half_away")
    qm = quantize_model(model, x_train, weight_scheme=scheme)
    per_channel = label == "per-channel"
    rows.append([label, errors[0].sqnr_db, errors[1].sqnr_db, layer_output_sqnr(qm, x_test)[1],
                 100 * qm.accuracy(x_test, y_test), model_size_bytes(model, "int8", per_channel).total])
print(format_table(rows, ["int8 weights", "W1 SQNR (dB)", "W2 SQNR (dB)", "logits SQNR (dB)",
                          "accuracy %", "size (B)"], floatfmt=".2f"))
assert rows[1][1] > rows[0][1] and rows[1][2] > rows[0][2]  # per channel: smaller weight error

# %% [markdown]
# Per channel cuts the weight error by 2 to 3 dB (each channel's step $s_c \le s$; the
# figure's titles say the per-tensor step is 1.3 to 1.5 times the median channel's) and
# costs $4 + 4$ bytes for each extra scale and zero point: 74 instead of 2, so 576 bytes.
# At 8 bits both are well within the budget on this small network, whose channels have
# similar ranges. Networks whose channels differ by orders of magnitude (common in
# convolutional networks) need per-channel scales, which is why they are TensorFlow
# Lite's default.
#
# ## 8. Requantization: single rounding, double rounding, ONNX float
#
# The int32 accumulator goes back to int8 through $M = s_{in} s_w / s_{out}$ (tutorial 05,
# sections 7 and 12). Two engines, three conventions (TensorFlow Lite has two roundings):
#
# - `rounding="single"`: TensorFlow Lite's integer-only fixed point (`TFLITE_SINGLE_ROUNDING`),
#   one rounding in 64 bits (LiteRT's reference kernels give the same values on the digits, tutorial 12);
# - `rounding="double"`: gemmlowp / the Jacob et al. paper, SRDHM then a rounding shift;
# - `requantization="float"`: ONNX `QLinearMatMul` as onnxruntime computes it
#   (`float32(acc) * float32(M)`, round half to even).
#
# They differ only where $\text{acc} \cdot M$ is within a hair of a half-integer. How
# often does that happen in a whole network, on all 360 test images?

# %%
x_q_test = q8.quantize_input(x_test)
logits_ref = q8.forward_int(x_q_test)  # fixed point, single rounding
variants = {
    "fixed point, double rounding": quantize_model(model, x_train, rounding="double"),
    "ONNX float requantization": quantize_model(model, x_train, requantization="float"),
}
print(f"reference: fixed point, single rounding ({logits_ref.size} int8 logits)")
for name, qm in variants.items():
    logits_v = qm.forward_int(x_q_test)
    diff = logits_v.astype(np.int64) - logits_ref
    changed = int(np.sum(np.argmax(logits_v, axis=1) != np.argmax(logits_ref, axis=1)))
    print(f"  {name:29s}: {int(np.sum(diff != 0))} logits differ (by at most {int(np.abs(diff).max())}), "
          f"{changed} predictions differ, accuracy {100 * qm.accuracy(x_test, y_test):.2f} %")
    assert np.abs(diff).max() <= 2

# %% [markdown]
# A handful of logits move by one step, out of 3,600. A one-step difference in a hidden
# layer can propagate and grow a little (hence "at most 2" in the check), but it almost
# never changes a prediction. For a reference implementation the point is not which is
# best: it is that each is reproduced exactly, so a deployed model can be checked bit for
# bit against the engine that will run it.
#
# ## 9. What rounding does to the weights
#
# `plot_weight_histograms` draws each layer's float weights and the quantized ones on the
# grid they were rounded to. Per-channel weights have a different grid per channel, so
# they are drawn in units of their own channel's step, $W[:, c] / s_c$: the grid is then
# the integers $-127 \ldots 127$ for every channel. At 8 bits (top) the quantized histogram
# is indistinguishable from the float one; at 3 bits (bottom: seven levels
# $-3 \ldots 3$) every weight visibly snaps to its nearest level.

# %%
q3 = quantize_model(model, x_train, bits=3)
fig, axes = plt.subplots(2, 2, figsize=(12.0, 7.5), layout="constrained")
plot_weight_histograms(model, q8, ax=axes[0])
plot_weight_histograms(model, q3, ax=axes[1])
fig.suptitle("Float weights and their quantized values: int8 (top) and int3 (bottom), per channel")
save_figure(fig, figures_dir() / "06_weight_histograms.png")
fig

# %%
plt.close(fig)
for bits, qm in ((8, q8), (3, q3)):
    w_q = qm.layers[0].w_q
    print(f"int{bits}: layer-1 weights use {len(np.unique(w_q))} distinct levels, "
          f"{100 * np.mean(w_q == 0):.1f} % of them are 0")

# %% [markdown]
# ## 10. Where the error is: per layer
#
# `plot_quantization_error` puts two numbers per layer side by side: the SQNR of the
# weights alone, and the SQNR of the layer's integer output on the test images, which
# includes everything before it (the quantized input, the previous layer, each
# requantization to int8).
#
# - At 8 bits (left) weights and outputs are all near 45 dB; the logits lose a few dB:
#   they carry the error of layer 1 plus their own rounding.
# - At 4 bits (right) the weights lose about 25 dB, the $4 \times 6$ dB of tutorial 04,
#   section 8, and now dominate. Yet the outputs come out a few dB *better* than the
#   weights: in each sum $\sum_k x_k w_{kc}$ the 64 rounding errors are unrelated to the
#   input and partly cancel, while the trained weights add up coherently with it (and
#   the ReLU drops the error of every output it sets to 0).

# %%
q4 = quantize_model(model, x_train, bits=4)
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=STYLE["panel_figsize"], layout="constrained")
for ax, qm in ((ax0, q8), (ax1, q4)):
    plot_quantization_error(model, qm, x_test, ax=ax)
    ax.set_ylim(top=1.3 * ax.get_ylim()[1])  # head room: the legend above the bars and their labels
    ax.legend(loc="upper center", ncols=2)
save_figure(fig, figures_dir() / "06_quantization_error.png")
fig

# %%
plt.close(fig)
for bits, qm in ((8, q8), (4, q4)):
    w_sqnr = [quantization_error(lin.W, dequantize(layer.w_q, layer.w_qparams)).sqnr_db
              for lin, layer in zip(model.linears, qm.layers)]
    out_sqnr = layer_output_sqnr(qm, x_test)
    print(f"int{bits}: weight SQNR {np.round(w_sqnr, 1)} dB, layer-output SQNR {np.round(out_sqnr, 1)} dB")

# %% [markdown]
# ## 11. Accuracy and size, counted honestly
#
# A quantized model is smaller only if we count *everything* it must store.
# `model_size_bytes` itemises it (nnref's `QParams` hold zero points as int32, so they
# count 4 bytes each):
#
# - weights: packed at $b$ bits, $\lceil n\,b / 8 \rceil$ bytes per tensor;
# - biases: int32, 4 bytes each (they do not shrink with the weights);
# - one float32 scale and one zero point per weight channel (or per tensor);
# - a scale and a zero point for the input and for each layer's output.
#
# By hand for int8 per-channel weights: $64 \cdot 64 + 64 \cdot 10 = 4736$ weight bytes,
# $74 \cdot 4 = 296$ bias bytes, $74 \cdot 4 = 296$ bytes of scales and as many of zero
# points (74 channels), and $3 \cdot (4 + 4) = 24$ bytes of activation parameters:
# 5,648 bytes.

# %%
size8 = model_size_bytes(model, "int8")
print(size8)
assert size8.total == 4736 + 296 + 296 + 296 + 24
print(f"QuantizedMLP.size_bytes() = {q8.size_bytes():,} B: it also counts m0 and shift per channel "
      f"(74 * 8 = 592 B) and the clamp bounds (2 layers * 8 = 16 B), which engines derive when loading")
assert q8.size_bytes() - size8.total == 74 * 8 + 2 * 8

# %% [markdown]
# At 4 bits two weights share a byte (`pack_int4`: low nibble first, ONNX's INT4 layout),
# so the 4,096 weights of layer 1 take 2,048 bytes; unpacking gives them back exactly:

# %%
w4 = q4.layers[0].w_q  # int8 array holding values in [-7, 7]
packed = pack_int4(w4)
print(f"layer-1 int4 weights: {w4.size} values in [{w4.min()}, {w4.max()}] "
      f"-> {packed.size} bytes ({packed.dtype})")
flat = w4.ravel()
i = int(np.flatnonzero((flat[0::2] < 0) & (flat[1::2] > 0))[0])  # a byte with a negative and a positive value
lo, hi = int(flat[2 * i]), int(flat[2 * i + 1])
# 4-bit two's complement: v & 0xF (e.g. -3 -> 16 - 3 = 13 = 0xd); the earlier value in the low nibble.
print(f"byte {i}: values ({lo}, {hi}) -> low nibble {lo & 0xF:#x}, high nibble {hi & 0xF:#x} "
      f"-> {(lo & 0xF) | ((hi & 0xF) << 4):#04x}; pack_int4 wrote {packed[i]:#04x}")
assert packed[i] == (lo & 0xF) | ((hi & 0xF) << 4)
assert packed.size == w4.size // 2
assert np.array_equal(unpack_int4(packed, w4.size).reshape(w4.shape), w4)

# %% [markdown]
# Now the table. float16 (`to_float16`) rounds every parameter to half precision and
# computes as numpy does (float32 accumulation); the int rows are integer-only
# `QuantizedMLP`s with int8 activations, calibrated min-max on the training set.

# %%
table_rows = []


def add_row(label: str, size_bytes: int, accuracy: float) -> None:
    change = 100 * (accuracy - float_acc)  # percentage points; negative = lost
    table_rows.append([label, size_bytes, f"{size_f32 / size_bytes:.1f}x", 100 * accuracy,
                       f"{change:+.2f}", round(-change / point_per_image)])


size_f32 = model_size_bytes(model, "float32").total
add_row("float32", size_f32, float_acc)
add_row("float16", model_size_bytes(model, "float16").total, to_float16(model).accuracy(x_test, y_test))
q8_tensor = quantize_model(model, x_train, weight_scheme="tflite_int8_weights_per_tensor")
add_row("int8 per-tensor PTQ", model_size_bytes(model, "int8", per_channel=False).total,
        q8_tensor.accuracy(x_test, y_test))
add_row("int8 per-channel PTQ", size8.total, q8.accuracy(x_test, y_test))
add_row("int4 per-channel PTQ", model_size_bytes(model, "int4").total, q4.accuracy(x_test, y_test))
add_row("int3 per-channel PTQ", model_size_bytes(model, "int3").total, q3.accuracy(x_test, y_test))
q2 = quantize_model(model, x_train, bits=2)
add_row("int2 per-channel PTQ", model_size_bytes(model, "int2").total, q2.accuracy(x_test, y_test))
print(format_table(table_rows, ["model", "size (B)", "smaller", "accuracy %", "change (points)",
                                "images lost"], floatfmt=".2f", align="lrrrrr"))
assert all(float(row[4]) >= -1.0 for row in table_rows[:4])  # float16 and int8: within the 1-point budget

# %% [markdown]
# Reading the table:
#
# - **float16** halves the size and, here, changes nothing: 11 significant bits are plenty
#   for these weights.
# - **int8** divides the size by 3.4 to 3.8 (not 4: biases, scales and zero points stay
#   32-bit) and stays within the 1-point budget, per tensor or per channel.
# - **int4** weights (15 levels) cost two images on this small, easy problem; **int3**
#   (7 levels) about 3 points. The activations keep all 256 levels in both.
# - **int2** weights are *ternary*: the narrow range $[-1, 1]$ leaves only $-s_c, 0, s_c$
#   per channel, with $s_c = \max|W[:, c]|$, so every weight smaller than half the largest
#   of its channel becomes 0. The model is no longer the one we trained, and post-training
#   quantization has no way to compensate. Tutorial 07 trains through the rounding
#   instead (quantization-aware training) and recovers most of it.
#
# Single-seed numbers move by an image or two with the split and the initialisation; the
# README's table averages three seeds (`python benchmarks/quant_table.py`).

# %%
print(f"int2: {100 * np.mean(q2.layers[0].w_q == 0):.0f} % of layer-1 weights are 0, "
      f"levels used {np.unique(q2.layers[0].w_q)}")
assert set(np.unique(q2.layers[0].w_q)) <= {-1, 0, 1}

# %% [markdown]
# ## Summary
#
# - Post-training quantization needs the trained model and a few hundred representative
#   inputs: `calibrate` observes the input, every pre-activation and every layer output;
#   each range becomes an int8 scale and zero point.
# - `quantize_model` stores per layer int8 weights (symmetric, one scale per output
#   channel), an int32 bias with scale $s_{in} s_w$, the multiplier
#   $M = s_{in} s_w / s_{out}$ as $(m_0, \text{shift})$, and clamp bounds that fuse the ReLU
#   (TensorFlow Lite's int8 specification); the layers' grids chain.
# - `forward_int` runs from int8 input to int8 logits with int8/int32 arithmetic only;
#   `trace=True` shows every intermediate, and `predict` is the argmax of the int8 logits.
# - At 8 bits the choices (observer, per-tensor vs per-channel, single/double/float
#   requantization) move at most an image or two, and the int8 model stays within 1
#   point of float32 at about 3.4x smaller, counting biases, scales and zero points.
# - Below 4 bits post-training quantization breaks down: 2-bit (ternary) weights zero out
#   most of each channel.
#
# ## Exercises
#
# 1. Calibrate on only the first 20 training images (`quantize_model(model,
#    x_train[:20])`). Which activation ranges shrink, how many test pixels or activations
#    are now clamped, and what happens to the accuracy?
# 2. Rebuild the table of section 11 with `weight_scheme="tflite_int8_weights_per_tensor"`
#    for the 4-, 3- and 2-bit rows. At which bit width does per-channel start to matter
#    for the accuracy?
# 3. Train the model with `activation="tanh"` (`MLP([64, 64, 10], activation="tanh", seed=0)`)
#    and convert it. Print `summary()`: what does layer 1 (`layers[0]`) store now (`pre_qparams`,
#    `lut`), and which output grid does TensorFlow Lite impose on tanh?
