"""Beyond round-to-nearest: equalization, bias correction, AdaRound, QAT, LSQ and PACT on
digits at 4, 3 and 2 bits, mean over 3 seeds.

For each seed (0, 1, 2) the script draws the stratified split and trains the float32
``MLP([64, 64, 10])`` exactly as ``benchmarks/quant_table.py`` does (Adam, lr 1e-3, 30
epochs, batch 32), then quantizes its weights at 4, 3 and 2 bits with every method and
evaluates the **integer-only** model (int8 activations) on the 360 test images:

- RTN: round to nearest on the converter's min-max grid (``quantize_model``), per channel
  and per tensor; "MSE grid": round to nearest on the step minimising the weights'
  squared error;
- CLE: cross-layer equalization (``nnref.quant.equalize``), then per-tensor weights;
  "+ BC": empirical bias correction on the training set (``nnref.quant.bias_correction``),
  "+ BC (analytic)" the data-free variant from the pre-activation statistics;
- AdaRound (``nnref.quant.adaround``): per channel on the MSE grid, 1000 Adam iterations
  per layer on mini-batches of 256 training images (lr 1e-2, lambda 0.01, beta 20 -> 2);
  no retraining;
- QAT (``nnref.quant.qat``), LSQ and LSQ + PACT (``nnref.quant.lsq``): fine-tuning, 5
  epochs of Adam at lr 3e-4 from the float model, as the QAT rows of quant_table.py.

The second table quantizes the hidden activations to the same low bit width too (the
integer model's activations are int8, so these are the fake-quantized simulations'
accuracies): QAT's min-max activation grid against LSQ's learned step and PACT's learned
clipping level.

Run:  python benchmarks/ptq_toolbox.py        (about 30-60 s on 2 cores)
"""

from __future__ import annotations

import os

# One BLAS thread: every product here is small, and on a shared machine OpenBLAS's threads
# spin against each other (AdaRound's 2,000 small products per run then cost 10x the CPU).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import time  # noqa: E402

import numpy as np  # noqa: E402

from nnref.data import load_digits, train_test_split  # noqa: E402
from nnref.mlp import MLP  # noqa: E402
from nnref.optim import Adam  # noqa: E402
from nnref.quant import prepare_qat, quantize_model  # noqa: E402
from nnref.quant.adaround import adaround  # noqa: E402
from nnref.quant.bias_correction import (  # noqa: E402
    analytic_bias_correction,
    empirical_bias_correction,
    preactivation_statistics,
)
from nnref.quant.equalize import cross_layer_equalization  # noqa: E402
from nnref.quant.layerwise import rtn_weights, to_quantized_mlp  # noqa: E402
from nnref.quant.lsq import prepare_lsq  # noqa: E402
from nnref.quant.report import format_table  # noqa: E402
from nnref.train import fit  # noqa: E402

SIZES = [64, 64, 10]
EPOCHS, LR, BATCH = 30, 1e-3, 32
FT_EPOCHS, FT_LR = 5, 3e-4
BITS = (4, 3, 2)
SEEDS = (0, 1, 2)
PER_CHANNEL, PER_TENSOR = "tflite_int8_weights", "tflite_int8_weights_per_tensor"
ADAROUND = {"iterations": 1000, "lr": 1e-2, "reg_weight": 0.01, "batch_size": 256}

#: Methods of the first table, in order: (name, weights, needs training).
METHODS = [
    ("RTN", "per-channel"), ("RTN", "per-tensor"), ("RTN, MSE grid", "per-channel"),
    ("BC", "per-channel"), ("CLE", "per-tensor"), ("CLE + BC", "per-tensor"),
    ("CLE + BC (analytic)", "per-tensor"), ("AdaRound", "per-channel"),
    ("AdaRound + BC", "per-channel"), ("CLE + AdaRound", "per-tensor"),
    ("QAT", "per-channel"), ("LSQ", "per-channel"), ("LSQ + PACT", "per-channel"),
]
#: Methods of the second table (activations at the weights' bit width, simulated).
ACT_METHODS = ["QAT (min-max activations)", "LSQ (learned step)", "LSQ + PACT (learned clip)"]
TRAINED = ("QAT", "LSQ", "LSQ + PACT")


def train_float_model(seed: int):
    """The seed's split and float model, as benchmarks/quant_table.py trains them."""
    x, y = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, seed=seed)
    model = MLP(SIZES, seed=seed)
    fit(model, Adam(LR), x_tr, y_tr, epochs=EPOCHS, batch_size=BATCH, seed=seed, verbose=False)
    return model, x_tr, x_te, y_tr, y_te


def rounding_methods(model, x_tr, bits: int) -> dict:
    """The round-to-nearest methods at ``bits`` (with equalization and bias correction, no
    optimisation: a fraction of a second): name -> integer-only QuantizedMLP."""
    out = {("RTN", "per-channel"): quantize_model(model, x_tr, bits=bits),
           ("RTN", "per-tensor"): quantize_model(model, x_tr, PER_TENSOR, bits=bits)}
    mse = rtn_weights(model, PER_CHANNEL, bits, method="mse")
    out[("RTN, MSE grid", "per-channel")] = to_quantized_mlp(model, mse, x_tr)
    rtn = rtn_weights(model, PER_CHANNEL, bits)
    out[("BC", "per-channel")] = to_quantized_mlp(empirical_bias_correction(model, rtn, x_tr), rtn, x_tr)
    cle = cross_layer_equalization(model)
    w_t = rtn_weights(cle, PER_TENSOR, bits)
    out[("CLE", "per-tensor")] = to_quantized_mlp(cle, w_t, x_tr, calibrate_on="float")
    out[("CLE + BC", "per-tensor")] = to_quantized_mlp(empirical_bias_correction(cle, w_t, x_tr), w_t, x_tr)
    mean, stats = preactivation_statistics(cle, x_tr)
    out[("CLE + BC (analytic)", "per-tensor")] = to_quantized_mlp(
        analytic_bias_correction(cle, w_t, mean, stats), w_t, x_tr)
    return out


def adaround_methods(model, x_tr, bits: int) -> dict:
    """AdaRound at ``bits``, alone, with bias correction, and per tensor after equalization."""
    ada = adaround(model, x_tr, PER_CHANNEL, bits, **ADAROUND).weights
    cle = cross_layer_equalization(model)
    ada_t = adaround(cle, x_tr, PER_TENSOR, bits, **ADAROUND).weights
    return {("AdaRound", "per-channel"): to_quantized_mlp(model, ada, x_tr),
            ("AdaRound + BC", "per-channel"): to_quantized_mlp(
                empirical_bias_correction(model, ada, x_tr), ada, x_tr),
            ("CLE + AdaRound", "per-tensor"): to_quantized_mlp(cle, ada_t, x_tr)}


def fine_tuned(model, x_tr, y_tr, seed: int, bits: int, act_bits: int = 8):
    """QAT, LSQ and LSQ + PACT at ``bits`` weights and ``act_bits`` hidden activations,
    each fine-tuned for FT_EPOCHS: name -> the trained simulation."""
    models = {"QAT": prepare_qat(model, weight_bits=bits, act_bits=act_bits).calibrate(x_tr),
              "LSQ": prepare_lsq(model, x_tr, bits, act_bits, "lsq"),
              "LSQ + PACT": prepare_lsq(model, x_tr, bits, act_bits, "pact")}
    for sim in models.values():
        fit(sim, Adam(FT_LR), x_tr, y_tr, epochs=FT_EPOCHS, batch_size=BATCH, seed=seed, verbose=False)
    models["QAT"].eval()
    return models


def run(seeds=SEEDS) -> tuple[dict, dict, list]:
    """``(int8-activation accuracies, low-bit-activation accuracies, float accuracies)``:
    dicts keyed ``(method, weights, bits)`` / ``(method, bits)``, lists over the seeds."""
    acc, act_acc, float_acc = {}, {}, []
    for seed in seeds:
        model, x_tr, x_te, y_tr, y_te = train_float_model(seed)
        float_acc.append(model.accuracy(x_te, y_te))
        for bits in BITS:
            methods = rounding_methods(model, x_tr, bits) | adaround_methods(model, x_tr, bits)
            for key, qm in methods.items():
                acc.setdefault(key + (bits,), []).append(qm.accuracy(x_te, y_te))
            for name, sim in fine_tuned(model, x_tr, y_tr, seed, bits).items():
                qm = sim.convert() if name == "QAT" else sim.convert(x_tr)
                acc.setdefault((name, "per-channel", bits), []).append(qm.accuracy(x_te, y_te))
            for name, sim in zip(ACT_METHODS, fine_tuned(model, x_tr, y_tr, seed, bits, bits).values()):
                act_acc.setdefault((name, bits), []).append(sim.accuracy(x_te, y_te))
    return acc, act_acc, float_acc


def _pct(values) -> str:
    v = 100 * np.asarray(values)
    return f"{v.mean():.2f} ({v.min():.2f}..{v.max():.2f})" if len(v) > 1 else f"{v[0]:.2f}"


def tables(acc: dict, act_acc: dict, float_acc: list) -> str:
    """The two tables as aligned text."""
    head = ["method", "weights"] + [f"int{b} weights %" for b in BITS]
    rows = [["float32", "float32"] + [_pct(float_acc)] * len(BITS)]
    rows += [[m, w] + [_pct(acc[(m, w, b)]) for b in BITS] for m, w in METHODS]
    first = format_table(rows, head, align="ll" + "l" * len(BITS))
    rows2 = [[m] + [_pct(act_acc[(m, b)]) for b in BITS] for m in ACT_METHODS]
    second = format_table(rows2, ["weights and hidden activations at b bits (simulation)"]
                          + [f"b = {b} %" for b in BITS], align="l" + "l" * len(BITS))
    return first + "\n\n" + second


def findings(acc: dict, act_acc: dict, float_acc: list) -> list[str]:
    """The acceptance claims, computed from the tables (means over the seeds)."""
    m = {k: 100 * float(np.mean(v)) for k, v in acc.items()}
    f32 = 100 * float(np.mean(float_acc))
    rtn2, ada2 = m[("RTN", "per-channel", 2)], m[("AdaRound", "per-channel", 2)]
    lost, back = f32 - rtn2, ada2 - rtn2
    t4, c4 = m[("RTN", "per-tensor", 4)], m[("CLE + BC", "per-tensor", 4)]
    qat2, lsq2 = m[("QAT", "per-channel", 2)], m[("LSQ", "per-channel", 2)]
    return [
        f"2-bit per-channel: round-to-nearest loses {lost:.2f} points; AdaRound (no retraining) "
        f"recovers {back:.2f} of them ({100 * back / lost:.0f}%): at least half: {'yes' if back >= lost / 2 else 'NO'}",
        f"4-bit per-tensor: round-to-nearest {t4:.2f}%, CLE + bias correction {c4:.2f}% "
        f"({c4 - t4:+.2f} points): better: {'yes' if c4 > t4 else 'NO'}",
        f"2-bit per-channel fine-tuning: LSQ {lsq2:.2f}% vs QAT {qat2:.2f}% "
        f"({lsq2 - qat2:+.2f} points): at least as accurate: {'yes' if lsq2 >= qat2 else 'NO'}",
    ]


def main() -> None:
    t0 = time.perf_counter()
    acc, act_acc, float_acc = run()
    print(f"MLP({SIZES}) on digits, integer-only models (int8 activations) unless marked; "
          f"mean (min..max) over seeds {SEEDS}")
    print(tables(acc, act_acc, float_acc))
    print()
    print("\n".join(findings(acc, act_acc, float_acc)))
    print(f"\n({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
