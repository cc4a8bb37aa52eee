"""Accuracy and size of MLP([64, 64, 10]) on digits at every precision nnref offers.

For each seed (0, 1, 2 by default) the script draws its own stratified train/test split,
trains its own float32 model (Adam, lr 1e-3, 30 epochs, batch 32), then evaluates on the
test set:

- float32, and float16 with float32 or float16 accumulation (:mod:`nnref.quant.half`);
- post-training quantization (PTQ) with int8 weights per tensor and per channel, and with
  4-, 3- and 2-bit per-channel weights: :func:`nnref.quant.convert.quantize_model`
  calibrated (min-max) on the training set, int8 activations, integer-only inference;
- quantization-aware training (QAT) at 4, 3 and 2 bits: :func:`nnref.quant.qat.prepare_qat`
  from the float model, ranges calibrated on the training set, 5 epochs of Adam at lr 3e-4,
  then converted with :meth:`~nnref.quant.qat.QATMLP.convert`: the weights and the
  activation ranges QAT learned (not recalibrated).

"accuracy" is the deployed model's: the float model for float rows, the integer-only
model for int rows. "simulation" is the fake-quantized float model of the same
quantization (a ``QATMLP`` in eval mode): for PTQ rows calibrated as the converter
calibrates, for QAT rows the trained simulation whose grids the converted model uses.
The two should agree closely (they differ only in bias and requantization rounding). Sizes are
:func:`nnref.quant.report.model_size_bytes` (packed weights, int32 biases, float32 scales,
4-byte zero points, activation parameters). Every accuracy is the mean over the seeds with
the range min..max.

Run:  python benchmarks/quant_table.py     (5-8 s for three seeds)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from nnref.data import load_digits, train_test_split
from nnref.mlp import MLP
from nnref.optim import Adam
from nnref.quant.convert import quantize_model
from nnref.quant.half import float16_accuracy
from nnref.quant.qat import prepare_qat
from nnref.quant.report import format_table, model_size_bytes
from nnref.train import fit

SIZES = [64, 64, 10]
EPOCHS, LR, BATCH = 30, 1e-3, 32
QAT_EPOCHS, QAT_LR = 5, 3e-4
LOW_BITS = (4, 3, 2)
PER_CHANNEL = "tflite_int8_weights"
PER_TENSOR = "tflite_int8_weights_per_tensor"


@dataclass
class Row:
    """One line of the table: accuracies per seed (fractions in [0, 1])."""

    method: str                 # "float", "PTQ" or "QAT"
    weights: str                # e.g. "float16 (fp32 acc.)", "int4 per-channel"
    size_bytes: int
    accuracy: list = field(default_factory=list)     # deployed model, one per seed
    simulation: list = field(default_factory=list)   # fake-quantized model (int rows only)


def train_float_model(seed: int, epochs: int = EPOCHS):
    """The seed's split and trained float32 model: ``(model, x_tr, x_te, y_tr, y_te)``."""
    x, y = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, seed=seed)
    model = MLP(SIZES, seed=seed)
    fit(model, Adam(LR), x_tr, y_tr, epochs=epochs, batch_size=BATCH, seed=seed, verbose=False)
    return model, x_tr, x_te, y_tr, y_te


def _simulated_accuracy(model, bits, scheme, x_tr, x_te, y_te) -> float:
    qat = prepare_qat(model, weight_bits=bits, weight_scheme=scheme).calibrate(x_tr).eval()
    return qat.accuracy(x_te, y_te)


def run(seeds=(0, 1, 2), epochs: int = EPOCHS, qat_epochs: int = QAT_EPOCHS) -> list[Row]:
    """Every row of the table, with one accuracy per seed (in the order of ``seeds``)."""
    probe = MLP(SIZES)
    rows = {
        "float32": Row("float", "float32", model_size_bytes(probe, "float32").total),
        "f16_32": Row("float", "float16 (fp32 acc.)", model_size_bytes(probe, "float16").total),
        "f16_16": Row("float", "float16 (fp16 acc.)", model_size_bytes(probe, "float16").total),
        "ptq8t": Row("PTQ", "int8 per-tensor",
                     model_size_bytes(probe, "int8", per_channel=False).total),
    }
    for b in (8,) + LOW_BITS:
        rows[f"ptq{b}"] = Row("PTQ", f"int{b} per-channel", model_size_bytes(probe, f"int{b}").total)
    for b in LOW_BITS:
        rows[f"qat{b}"] = Row("QAT", f"int{b} per-channel", model_size_bytes(probe, f"int{b}").total)

    for seed in seeds:
        model, x_tr, x_te, y_tr, y_te = train_float_model(seed, epochs)
        rows["float32"].accuracy.append(model.accuracy(x_te, y_te))
        rows["f16_32"].accuracy.append(float16_accuracy(model, x_te, y_te, "float32"))
        rows["f16_16"].accuracy.append(float16_accuracy(model, x_te, y_te, "float16"))
        for key, scheme, b in [("ptq8t", PER_TENSOR, 8)] + [(f"ptq{b}", PER_CHANNEL, b) for b in (8,) + LOW_BITS]:
            rows[key].accuracy.append(
                quantize_model(model, x_tr, weight_scheme=scheme, bits=b).accuracy(x_te, y_te))
            rows[key].simulation.append(_simulated_accuracy(model, b, scheme, x_tr, x_te, y_te))
        for b in LOW_BITS:
            qat = prepare_qat(model, weight_bits=b).calibrate(x_tr)
            fit(qat, Adam(QAT_LR), x_tr, y_tr, epochs=qat_epochs, batch_size=BATCH, seed=seed,
                verbose=False)
            qat.eval()
            rows[f"qat{b}"].accuracy.append(qat.convert().accuracy(x_te, y_te))
            rows[f"qat{b}"].simulation.append(qat.accuracy(x_te, y_te))
    return list(rows.values())


def _pct(values) -> str:
    """``mean (min..max)`` in percent, or the single value for one seed."""
    if not values:
        return ""
    v = 100 * np.asarray(values)
    if len(v) == 1:
        return f"{v[0]:.2f}"
    return f"{v.mean():.2f} ({v.min():.2f}..{v.max():.2f})"


def table(rows: list[Row]) -> str:
    """The rows as an aligned plain-text table."""
    base = rows[0].size_bytes  # float32
    body = [(r.method, r.weights, r.size_bytes, f"{base / r.size_bytes:.1f}x",
             _pct(r.accuracy), _pct(r.simulation)) for r in rows]
    return format_table(body, ["method", "weights", "size (B)", "smaller",
                               "accuracy % (min..max)", "simulation %"], align="llrrll")


def findings(rows: list[Row]) -> list[str]:
    """The two claims the table is for, computed from it (accuracies are seed means)."""
    by = {(r.method, r.weights): np.asarray(r.accuracy) for r in rows}
    f32 = by[("float", "float32")]
    drop8 = 100 * (f32 - by[("PTQ", "int8 per-channel")])
    ptq2, qat2 = by[("PTQ", "int2 per-channel")], by[("QAT", "int2 per-channel")]
    loss, gain = 100 * (f32 - ptq2), 100 * (qat2 - ptq2)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(loss > 0, gain / loss, np.nan)
    return [
        f"int8 per-channel PTQ vs float32: {drop8.mean():+.2f} points lost on average "
        f"(worst seed {drop8.max():+.2f}): within 1 point: {'yes' if drop8.max() <= 1 else 'NO'}",
        f"2-bit per-channel weights: PTQ loses {loss.mean():.2f} points; QAT recovers "
        f"{gain.mean():.2f} of them ({100 * gain.mean() / loss.mean():.0f}% of the loss; "
        f"per seed {100 * np.nanmin(frac):.0f}%..{100 * np.nanmax(frac):.0f}%)",
    ]


def main() -> None:
    t0 = time.perf_counter()
    seeds = (0, 1, 2)
    rows = run(seeds)
    print(f"MLP({SIZES}) on digits (1797 images 8x8, 20% test), mean over seeds {seeds}; "
          f"QAT: {QAT_EPOCHS} epochs, Adam lr {QAT_LR}")
    print(table(rows))
    print()
    for line in findings(rows):
        print(line)
    print(f"\n({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
