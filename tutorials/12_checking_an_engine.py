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
# # 12 · Checking an engine against the arithmetic
#
# Tutorials 05 and 06 built an int8 MLP whose every integer nnref can show. Real models
# run on engines: LiteRT (TensorFlow Lite) on phones, onnxruntime on servers. Do they
# compute the same integers? Here we take a digits MLP converted by **TensorFlow Lite's
# own converter**, read it into nnref, run it on three LiteRT kernel sets and on
# onnxruntime, and find every int8 value on which an engine differs from nnref, and why.
#
# **You will learn**
#
# - how a `.tflite` file stores an int8 MLP, and how `from_tflite` turns it into a
#   `QuantizedMLP` with the multipliers LiteRT computes;
# - how to run an engine keeping its intermediate tensors and compare **stage by stage**,
#   each stage from the engine's own input, so a difference is charged where it is made;
# - the five roundings of the requantization step that engines actually use (the
#   *profiles* of `nnref.quant.profiles`) and why they differ only at near-ties;
# - how to export to ONNX and check onnxruntime the same way.
#
# **You need** tutorial 05 (accumulator, $m_0$ and shift, SRDHM, single vs double
# rounding) and 06 (the whole integer model). Requires the extra: `pip install
# nnref[interop]` (the README's install includes it).
#
# **Figures written** (to `figures/`): `12_differences_by_engine.png`,
# `12_distance_to_tie.png`.

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import nnref
from nnref.data import load_digits
from nnref.interop import compare, read_tflite, run_litert, to_onnx
from nnref.plots import STYLE, figures_dir, save_figure
from nnref.quant import saturating_rounding_doubling_high_mul
from nnref.quant.profiles import PROFILES, profile_requantized

np.set_printoptions(precision=5, suppress=True, linewidth=100)
FIXTURES = Path(nnref.__file__).resolve().parent.parent / "tests" / "fixtures"  # in the checkout
MODEL = FIXTURES / "digits_relu_per_channel.tflite"
x, y = load_digits()  # all 1,797 images, pixels in [0, 1]

# %% [markdown]
# ## 1. A converter-made model, read by nnref
#
# `tests/fixtures/make_tflite_fixtures.py` trained `MLP([64, 64, 10])` with nnref, copied
# its weights into Keras and ran TensorFlow Lite's converter once (full int8, 512
# calibration images). The file holds the chain QUANTIZE -> FULLY_CONNECTED (ReLU fused)
# -> FULLY_CONNECTED -> DEQUANTIZE, with int8 weights stored `(out, in)`, one scale per
# output channel, int32 biases and the int8 grid of every activation. `read_tflite`
# checks all of it, and `QuantizedLayer` derives the multiplier of each output channel
# as LiteRT's FULLY_CONNECTED does, in double precision:
#
# $$M_j = \frac{s_{in}\, s_w[j]}{s_{out}}, \qquad
#   (m_{0,j}, \text{shift}_j) = \text{quantize\_multiplier}(M_j), \qquad
#   M_j \approx m_{0,j}\, 2^{\text{shift}_j - 31}.$$

# %%
info = read_tflite(MODEL)
model = info.model
print(info.operators)
print(model.summary())

# %% [markdown]
# ## 2. The reference kernels: every value agrees
#
# nnref's default requantization is TensorFlow Lite's integer-only fixed point
# (`TFLITE_SINGLE_ROUNDING`, profile `single`): one rounding of the product with the
# 31-bit multiplier,
#
# $$\text{scaled} = \big(\text{acc} \cdot m_0 + 2^{t-1}\big) \gg t, \qquad t = 31 - \text{shift}.$$
#
# LiteRT 2.3's reference kernels (op resolver `BUILTIN_REF`) take the float scales instead
# and compute in double precision (profile `float64`), rounding half away from zero:
#
# $$\text{scaled} = \operatorname{round}\big(\text{double}(\text{acc}) \cdot M\big), \qquad
#   M = \frac{\text{double}(s_{in})\,\text{double}(s_w)}{\text{double}(s_{out})}.$$
#
# $m_0 \, 2^{\text{shift} - 31}$ is $M$ to 31 bits, so the two part only where
# $\text{acc} \cdot M$ lies within about $10^{-8}$ of a half integer: no digits value does
# (below, both profiles explain every stage), but crafted inputs of
# `digits_relu6.tflite` do (20.5 + 8.5e-10 gives 21 in double and 20 in fixed point;
# `tests/test_interop_tflite.py` pins them).
#
# `run_litert` keeps every intermediate tensor (`experimental_preserve_all_tensors`), and
# `compare` replays each stage in nnref from the engine's own input to it: the
# quantized input, each layer's requantized output, the logits.

# %%
tensors = run_litert(MODEL, x, "litert_reference")
x_q = model.quantize_input(x)
logits, records = model.forward_int(x_q, trace=True)
print("quantized input equal:", np.array_equal(tensors[info.quantized_input_tensor], x_q))
print("hidden layer equal:   ", np.array_equal(tensors[info.layer_tensors[0][1]], records[0]["y"]))
reference_report = compare(MODEL, x, "litert_reference")
print(reference_report)
print({s.name: s.explained_by for s in reference_report.stages[1:]})

# %% [markdown]
# ## 3. The optimized kernels: a second rounding, ties toward $+\infty$
#
# Without a delegate LiteRT runs its optimized kernels (`BUILTIN_WITHOUT_DEFAULT_DELEGATES`:
# the ruy matrix library). `compare` finds tens of values that differ from the reference
# and tries every profile on every layer:

# %%
report = compare(MODEL, x, "litert_optimized", max_details=4)
print(report)
print({name: text.split(":")[0] for name, text in PROFILES.items()})

# %% [markdown]
# Every differing value sits next to a tie ($\text{acc} \cdot M$ = 31.499999147, ...), and
# one profile reproduces **every** value of both layers: `double_up`, gemmlowp's two
# roundings with the second one rounding ties toward $+\infty$ instead of away from zero:
#
# $$h = \text{SRDHM}(\text{acc}, m_0) = \Big\lfloor \frac{\text{acc} \cdot m_0 + 2^{30}}{2^{31}} \Big\rfloor,
#   \qquad \text{scaled} = \Big\lfloor \frac{h + 2^{r-1}}{2^{r}} \Big\rfloor, \quad r = -\text{shift}.$$
#
# The first rounding can land a value just beyond a tie, like $-42.5004 \cdot 2^r$, exactly
# on it; the second rounding then decides, toward $+\infty$. The first such case of layer
# 1, step by step:

# %%
layer = model.layers[1]
tensors_opt = run_litert(MODEL, x, "litert_optimized")
h1 = tensors_opt[info.layer_tensors[0][1]]  # the engine's own hidden values
acc = layer.trace(h1)["acc_bias"]
values = {p: profile_requantized(layer, acc, p) for p in PROFILES}
engine = tensors_opt[info.layer_tensors[1][0]]
negative_ties = np.argwhere((values["double_up"] != values["double"]) & (engine == values["double_up"]))
row, col = negative_ties[0]
a, m0, shift = int(acc[row, col]), int(layer.m0[col]), int(layer.shift[col])
high = int(saturating_rounding_doubling_high_mul(np.int32(a), np.int32(m0)))
print(f"acc = {a}, m0 = {m0}, shift = {shift}: acc * M = {a * layer.real_multiplier[col]:.6f}")
print(f"SRDHM = {high} = {high / 2 ** -shift} * 2^{-shift}: a tie after the first rounding")
print({p: int(v[row, col]) - layer.zp_lin for p, v in values.items()}, "engine:", int(engine[row, col]) - layer.zp_lin)

# %% [markdown]
# ## 4. The default path: XNNPACK's float requantization
#
# With the default op resolver (`BUILTIN`) the XNNPACK delegate takes the whole graph and
# hands back only its output. To see inside, `run_litert` makes each intermediate tensor
# the graph output of a patched copy of the model and runs it once per tensor: the
# delegate must then produce exactly that tensor. XNNPACK requantizes in float32, ties to even, and
# quantizes the input by multiplying by the float32 reciprocal of the scale, ties to even
# (as LiteRT's optimized QUANTIZE does; no digits pixel lies near a tie):
#
# $$\text{scaled} = \operatorname{rint}\big(\text{float32}(\text{acc}) \otimes \text{float32}(M)\big),$$
#
# where $\otimes$ is a float32 multiply: a product just below $k + \tfrac12$ can become
# the float32 $k + \tfrac12$ and then round to even. The one hidden value XNNPACK
# computes differently on the digits is such a case:

# %%
default_report = compare(MODEL, x, "litert_default")
print(default_report)
m = default_report.mismatches[0]
product = np.float32(m.acc) * model.layers[m.layer].float_multiplier[m.col]  # a float32 multiply
print(f"float32(acc) * float32(M) = {product!r}: exactly a tie, rint gives {np.rint(product):.0f} (even); "
      f"the exact product {m.acc * m.multiplier:.9f} rounds to {round(m.acc * m.multiplier)}")

# %% [markdown]
# ## 5. onnxruntime on the exported model
#
# `to_onnx` writes the same integers as standard ONNX: QuantizeLinear, one `QLinearConv`
# per layer (a 1x1 convolution is a Linear layer with an int32 bias input, which
# `QLinearMatMul` lacks), DequantizeLinear. onnxruntime requantizes in float32 too, so
# it should agree with the `float32` profile, nnref's `requantization="float"`:

# %%
with tempfile.TemporaryDirectory() as tmp:  # the export is a scratch file
    onnx_path = Path(tmp) / "digits.onnx"
    to_onnx(model, onnx_path)
    onnx_report = compare(onnx_path, x)
print(onnx_report)

# %% [markdown]
# ## 6. The whole picture
#
# For each engine path, the int8 logits that differ from nnref's, end to end from the
# float input, under each profile. The profile an engine follows gives 0.

# %%
reports = {e: compare(MODEL, x, e) for e in ("litert_reference", "litert_optimized", "litert_default")}
reports["onnxruntime"] = onnx_report
fig, ax = plt.subplots(figsize=STYLE["panel_figsize"], layout="constrained")
width = 0.8 / len(PROFILES)
for k, profile in enumerate(PROFILES):
    counts = [r.stages[-1].per_profile[profile] for r in reports.values()]
    bars = ax.bar(np.arange(len(reports)) + (k - (len(PROFILES) - 1) / 2) * width, counts, width, label=profile,
                  color=STYLE["cycle"][k])
    ax.bar_label(bars, fontsize=8)
ax.set_xticks(np.arange(len(reports)), list(reports))
ax.set_ylabel(f"differing int8 logits (of {x.shape[0] * 10:,})")
ax.set_title("Which rounding each engine path follows (digits, all 1,797 images)")
ax.legend(title="nnref profile", loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the bars
save_figure(fig, figures_dir() / "12_differences_by_engine.png")

# %% [markdown]
# Why only a few dozen values out of 133,000? Two roundings of the same real number
# $\text{acc} \cdot M$ can only disagree when it lies within $2^{-(r+1)}$ of a half
# integer (the first rounding moves it by at most that much, $r = -\text{shift}$). The figure shows the distance of $\text{acc} \cdot M$ to the nearest
# $k + \tfrac12$ for every hidden value, and for those the optimized kernels changed.

# %%
layer0 = model.layers[0]
acc0 = layer0.trace(tensors_opt[info.quantized_input_tensor])["acc_bias"]
real = acc0 * layer0.real_multiplier  # float64, close enough to show the distance
distance = np.abs(real - np.floor(real) - 0.5)
changed = tensors_opt[info.layer_tensors[0][0]] != profile_requantized(layer0, acc0, "single")
fig, ax = plt.subplots(figsize=STYLE["figsize"], layout="constrained")
bins = np.logspace(-9, np.log10(0.5), 50)
ax.hist(np.maximum(distance.ravel(), 1e-9), bins=bins, color=STYLE["before"], alpha=0.6, label="all values")
ax.hist(np.maximum(distance[changed], 1e-9), bins=bins, color=STYLE["clipped"], label="changed by the optimized kernels")
bound = 2.0 ** (int(layer0.shift.max()) - 1)  # 2^-(r+1) for the smallest r
ax.axvline(bound, color=STYLE["threshold"], ls="--", lw=STYLE["thin_linewidth"], label=r"$2^{-(r+1)}$")
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel(r"distance of acc$\cdot M$ to the nearest $k + 1/2$")
ax.set_ylabel("values (layer 0)")
ax.legend()
save_figure(fig, figures_dir() / "12_distance_to_tie.png")
print(f"largest distance among changed values: {distance[changed].max():.2e} (2^-(r+1) = {bound:.2e})")
assert distance[changed].max() <= bound

# %% [markdown]
# ## Summary
#
# - `from_tflite` reads a converter-made int8 MLP (QUANTIZE, FULLY_CONNECTED with fused
#   ReLU/ReLU6, TANH/LOGISTIC, DEQUANTIZE) and reproduces LiteRT's reference kernels bit
#   for bit on every digits image (with profile `float64`, near ties too); anything else
#   is refused by name.
# - Engines compute the same int32 accumulators; they differ only in the rounding of
#   $\text{acc} \cdot M$, and only near ties. `compare` charges each difference to the
#   stage that made it and names the profile that explains all of a stage's values:
#   `float64` for the reference kernels (and nnref's integer-only `single`, on every
#   digits value), `double_up` for the optimized (ruy) kernels, `float32` for XNNPACK
#   and onnxruntime.
# - A difference no profile explains is a bug somewhere: in the engine, the converter or
#   nnref. That is what an oracle is for.
#
# ## Exercises
#
# 1. Run `python -m nnref compare tests/fixtures/digits_tanh.tflite --data digits`. Which
#    stages does the report show for a tanh model, and does the TANH table ever differ?
# 2. Export with `to_onnx(model, path, format="qdq")` and compare with onnxruntime. Which
#    profile explains the first layer now? Look at the optimized graph
#    (`SessionOptions.optimized_model_filepath`): which `Conv` did onnxruntime fuse into
#    `QLinearConv`, and which one did it run in float?
# 3. Show that `single`, `double` and `double_up` never give three different values for
#    the same accumulator: where the two double roundings differ, $h / 2^r$ is exactly
#    $k + \tfrac12$; how far from $k + \tfrac12$ can $\text{acc} \cdot M$ then be, and
#    what does single rounding give? Check your answer with `profile_scaled` on a
#    million random accumulators.
