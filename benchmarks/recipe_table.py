"""The rest of the recipe, measured: precision chosen from statistics, half-precision
training with loss scaling, Deep Compression, binary and ternary weights.

Digits, for each seed (0, 1, 2) its own stratified 20% test split and initialisation;
every accuracy is on the 360 test images, the mean over the seeds with the range min..max.

1. **Precision** (``MLP([64, 128, 128, 10])``): trained (Adam 1e-3, 30 epochs, batch 32) on
   75% of the training split; the other 25% is the held-out data
   :func:`~nnref.quant.sensitivity.choose_bit_widths` measures on. Rows are integer-only
   models (int8 activations, per-channel weights, calibrated on the training part):
   uniform 4-, 3- and 2-bit PTQ, the mixed widths chosen at the size of uniform 4 and 3
   bits, and the smallest mixed model within 1 point of float32 on the held-out data.
2. **Half precision** (``MLP([64, 64, 10])``, Adam 1e-3, 30 epochs, batch 32, the whole
   training split): float32 (:func:`nnref.train.fit`) against
   :func:`~nnref.halfprec.fit_half` in float16 (dynamic loss scaling, PyTorch's defaults;
   dynamic scaling with global-norm clipping at 1 after unscaling; no scaling) and bfloat16
   (no scaling). Then the underflow demonstration: the fraction of gradient entries that
   float16 flushes to zero in the trained float32 model's backward pass, over the training
   set in batches of 32, without and with the loss scale 2**16.
3. **Deep Compression** (``MLP([64, 64, 10])`` of part 2): one-shot 80% magnitude pruning
   per layer without retraining; iterative pruning per layer to 50%, 70%, 80% of every
   weight matrix with 15 epochs of retraining each (Adam 1e-3, masks kept); 16-value
   k-means weight sharing of the pruned model (4-bit indices) with 3 epochs of centroid
   fine-tuning (Adam 1e-4); Huffman coding; and the pruned model as an int8 integer-only
   model. Sizes by :func:`~nnref.prune.compression_sizes` (5-bit relative indices).
4. **Binary and ternary** (the float model of part 1): hidden 128x128 layer binary
   (XNOR-Net) or ternary (TWN), first and last layers 8-bit weights per channel,
   activations float; before and after 10 epochs of straight-through fine-tuning (Adam 1e-3);
   and with binary activations in front of the binary layer.

Run:  python benchmarks/recipe_table.py     (about 30 s on 2 cores)
"""

from __future__ import annotations

import time

import numpy as np

from nnref import clip
from nnref.data import load_digits, train_test_split
from nnref.halfprec import GradScaler, fit_half, gradient_underflow
from nnref.mlp import MLP
from nnref.optim import Adam
from nnref.prune import MaskedOptimizer, SharedWeightMLP, apply_masks, compression_sizes, prune_masks
from nnref.quant.binary import binarize_mlp, binary_size_bytes
from nnref.quant.convert import quantize_model
from nnref.quant.report import format_table, model_size_bytes
from nnref.quant.sensitivity import choose_bit_widths, mixed_size_bytes, quantize_model_mixed
from nnref.train import fit

SEEDS = (0, 1, 2)
WIDE, SMALL = [64, 128, 128, 10], [64, 64, 10]
EPOCHS, LR, BATCH = 30, 1e-3, 32
PRUNE_SCHEDULE, PRUNE_EPOCHS, SHARE_K, SHARE_EPOCHS = (0.5, 0.7, 0.8), 15, 16, 3
BINARY_EPOCHS = 10


def _pct(values) -> str:
    v = 100 * np.asarray(values)
    return f"{v.mean():.2f} ({v.min():.2f}..{v.max():.2f})"


def _split(seed: int):
    x, y = load_digits()
    return train_test_split(x, y, seed=seed)


def _train(sizes, x, y, seed: int) -> MLP:
    model = MLP(sizes, seed=seed)
    fit(model, Adam(LR), x, y, epochs=EPOCHS, batch_size=BATCH, seed=seed, verbose=False)
    return model


# --------------------------------------------------------------------------- 1 and 4


def _add(table: dict, label: str, size: int, acc: float, bits=None) -> None:
    row = table.setdefault(label, {"size": [], "acc": [], "bits": []})
    row["size"].append(size)
    row["acc"].append(acc)
    row["bits"].append(bits)


def _wide_model(seed: int):
    """Part 1's data and float model: ``(model, x_fit, y_fit, x_val, y_val, x_te, y_te)``."""
    x_tr, x_te, y_tr, y_te = _split(seed)
    x_fit, x_val, y_fit, y_val = train_test_split(x_tr, y_tr, test_fraction=0.25, seed=seed)
    return _train(WIDE, x_fit, y_fit, seed), x_fit, y_fit, x_val, y_val, x_te, y_te


def precision(seeds=SEEDS) -> tuple[dict, list]:
    """Part 1: ``(rows, sensitivities)``; rows map a label to ``{"size": [...], "acc":
    [...], "bits": [...]}`` (one entry per seed); one Sensitivity per seed."""
    rows, sens = {}, []
    for seed in seeds:
        model, x_fit, _, x_val, y_val, x_te, y_te = _wide_model(seed)
        _add(rows, "float32", model_size_bytes(model, "float32").total, model.accuracy(x_te, y_te))
        for b in (4, 3, 2):
            _add(rows, f"uniform {b}-bit PTQ", mixed_size_bytes(model, [b] * 3),
                 quantize_model(model, x_fit, bits=b).accuracy(x_te, y_te), (b, b, b))
            if b == 2:
                continue
            choice = choose_bit_widths(model, x_val, y_val, size_budget=mixed_size_bytes(model, [b] * 3))
            _add(rows, f"mixed, size of {b}-bit", choice.size_bytes,
                 quantize_model_mixed(model, x_fit, choice.bits).accuracy(x_te, y_te), choice.bits)
        choice = choose_bit_widths(model, x_val, y_val, max_accuracy_drop=0.01)
        _add(rows, "mixed, smallest within 1 pt", choice.size_bytes,
             quantize_model_mixed(model, x_fit, choice.bits).accuracy(x_te, y_te), choice.bits)
        sens.append(choice.sensitivity)
    return rows, sens


def binary(seeds=SEEDS) -> dict:
    """Part 4: rows as :func:`precision`'s (without bits)."""
    rows = {}
    for seed in seeds:
        model, x_fit, y_fit, _, _, x_te, y_te = _wide_model(seed)
        _add(rows, "float32", model_size_bytes(model, "float32").total, model.accuracy(x_te, y_te))
        for label, mode, acts in [("binary hidden", "binary", False), ("ternary hidden", "ternary", False),
                                  ("binary hidden + binary activations", "binary", True)]:
            b = binarize_mlp(model, mode, first_last_bits=8, binary_activations=acts)
            if not acts:
                _add(rows, f"{label}, no retraining", binary_size_bytes(b), b.accuracy(x_te, y_te))
            fit(b, Adam(LR), x_fit, y_fit, epochs=BINARY_EPOCHS, batch_size=BATCH, seed=seed, verbose=False)
            _add(rows, f"{label}, STE fine-tuned", binary_size_bytes(b), b.accuracy(x_te, y_te))
    return rows


# --------------------------------------------------------------------------- 2 and 3


def half(seeds=SEEDS) -> tuple[dict, list]:
    """Part 2: ``(rows, underflow per seed)``."""
    rows, underflow = {}, []
    for seed in seeds:
        x_tr, x_te, y_tr, y_te = _split(seed)
        model = _train(SMALL, x_tr, y_tr, seed)
        rows.setdefault("float32 (fit)", {"acc": [], "skipped": [], "scale": []})
        rows["float32 (fit)"]["acc"].append(model.accuracy(x_te, y_te))
        runs = [("float16, dynamic loss scaling", "float16", GradScaler(), None),
                ("float16, dynamic scaling + clip 1.0", "float16", GradScaler(), clip.GlobalNorm(1.0)),
                ("float16, no loss scaling", "float16", None, None),
                ("bfloat16, no loss scaling", "bfloat16", None, None)]
        for label, fmt, scaler, transform in runs:
            m = MLP(SMALL, seed=seed)
            h = fit_half(m, Adam(LR), x_tr, y_tr, EPOCHS, BATCH, fmt, scaler, transform, seed=seed)
            row = rows.setdefault(label, {"acc": [], "skipped": [], "scale": []})
            row["acc"].append(m.accuracy(x_te, y_te))
            row["skipped"].append(h.n_skipped)
            row["scale"].append(scaler.scale if scaler is not None else 1.0)
        batches = [(x_tr[i:i + BATCH], y_tr[i:i + BATCH]) for i in range(0, len(x_tr), BATCH)]
        underflow.append({s: {k: np.mean([gradient_underflow(model, xb, yb, "float16", s)[k] for xb, yb in batches])
                              for k in ("parameter", "activation", "all")} for s in (1.0, 2.0**16)})
    return rows, underflow


def compression(seeds=SEEDS) -> dict:
    """Part 3: rows mapping a stage to ``{"acc": [...], "size": [...]}``."""
    comp = {}
    for seed in seeds:
        x_tr, x_te, y_tr, y_te = _split(seed)
        model = _train(SMALL, x_tr, y_tr, seed)
        _compress(model, x_tr, y_tr, x_te, y_te, seed, model.accuracy(x_te, y_te), comp)
    return comp


def _compress(model, x_tr, y_tr, x_te, y_te, seed, f32, comp) -> None:
    def add(label, acc, size):
        row = comp.setdefault(label, {"acc": [], "size": []})
        row["acc"].append(acc)
        row["size"].append(size)

    one = model.copy()
    apply_masks(one.params, prune_masks(one, PRUNE_SCHEDULE[-1]))
    pruned = model.copy()
    for s in PRUNE_SCHEDULE:
        masks = prune_masks(pruned, s)
        apply_masks(pruned.params, masks)
        fit(pruned, MaskedOptimizer(Adam(LR), masks), x_tr, y_tr, epochs=PRUNE_EPOCHS, batch_size=BATCH,
            seed=seed, verbose=False)
    shared = SharedWeightMLP(pruned, SHARE_K, masks)
    fit(shared, Adam(1e-4), x_tr, y_tr, epochs=SHARE_EPOCHS, batch_size=BATCH, seed=seed, verbose=False)
    sizes = compression_sizes(shared)
    add("float32", f32, sizes.dense)
    add("pruned 80% one-shot, no retraining", one.accuracy(x_te, y_te), sizes.pruned)
    add("pruned 80% iterative, retrained", pruned.accuracy(x_te, y_te), sizes.pruned)
    add("+ 16-value sharing, centroids tuned", shared.accuracy(x_te, y_te), sizes.shared)
    add("+ Huffman coding (lossless)", shared.accuracy(x_te, y_te), sizes.huffman)
    q = quantize_model(pruned, x_tr)
    add("pruned 80% + int8 integer-only", q.accuracy(x_te, y_te), model_size_bytes(pruned, "int8").total)


# --------------------------------------------------------------------------- printing


def _bits_cell(bits) -> str:
    return " ".join("-".join(map(str, b)) for b in bits) if bits[0] is not None else ""


def precision_table(prec: dict) -> str:
    body = [(k, int(np.mean(r["size"])), _pct(r["acc"]), _bits_cell(r["bits"])) for k, r in prec.items()]
    return format_table(body, ["weights (MLP [64, 128, 128, 10])", "size (B)", "accuracy % (min..max)",
                               "bits per layer, seeds 0 1 2"], align="lrll")


def sensitivity_table(sens) -> str:
    """Held-out loss increase with one layer quantized, mean over seeds, by bit width."""
    bits = sens[0].bits
    delta = np.mean([s.delta_loss for s in sens], axis=0)
    cells = [[f"{d:+.3f}".replace("-0.000", "+0.000") for d in row] for row in delta]  # no "-0"
    body = [(f"W{l + 1}", *row) for l, row in enumerate(cells)]
    return format_table(body, ["layer"] + [f"{b}-bit" for b in bits], align="l" + "r" * len(bits))


def half_table(half: dict) -> str:
    f32 = np.asarray(half["float32 (fit)"]["acc"])
    body = [(k, _pct(r["acc"]), f"{100 * np.mean(np.asarray(r['acc']) - f32):+.2f}",
             str(int(np.sum(r["skipped"]))) if r["skipped"] else "",
             f"{np.mean(r['scale']):g}" if r["scale"] else "") for k, r in half.items()]
    return format_table(body, ["training (MLP [64, 64, 10])", "accuracy % (min..max)", "vs float32",
                               "skipped steps", "final scale"], align="llrrr")


def underflow_lines(underflow: list) -> list[str]:
    out = []
    for s, name in ((1.0, "without loss scaling"), (2.0**16, "with loss scale 2^16")):
        u = {k: 100 * np.mean([d[s][k] for d in underflow]) for k in ("parameter", "activation", "all")}
        out.append(f"float16 underflow {name}: {u['all']:.3f}% of nonzero gradient entries flushed to 0 "
                   f"(activation gradients {u['activation']:.3f}%, weight gradients {u['parameter']:.3f}%)")
    return out


def compression_table(comp: dict) -> str:
    base = comp["float32"]["size"][0]
    body = [(k, int(np.mean(r["size"])), f"{base / np.mean(r['size']):.1f}x", _pct(r["acc"]),
             f"{100 * np.mean(np.asarray(r['acc']) - np.asarray(comp['float32']['acc'])):+.2f}")
            for k, r in comp.items()]
    return format_table(body, ["stage (MLP [64, 64, 10])", "size (B)", "smaller", "accuracy % (min..max)",
                               "vs float32"], align="lrrlr")


def binary_table(binary: dict) -> str:
    body = [(k, int(np.mean(r["size"])), _pct(r["acc"])) for k, r in binary.items()]
    return format_table(body, ["hidden layer (first, last 8-bit)", "size (B)", "accuracy % (min..max)"],
                        align="lrl")


def precision_report(seeds=SEEDS) -> str:
    rows, sens = precision(seeds)
    return "\n".join([precision_table(rows), "",
                      "held-out loss increase, one layer quantized at a time (mean over seeds):",
                      sensitivity_table(sens)])


def half_report(seeds=SEEDS) -> str:
    rows, underflow = half(seeds)
    return "\n".join([half_table(rows), *underflow_lines(underflow)])


def report(seeds=SEEDS) -> str:
    """Every table, as printed (the README quotes this text)."""
    return "\n\n".join([precision_report(seeds), half_report(seeds), compression_table(compression(seeds)),
                        binary_table(binary(seeds))])


def main() -> None:
    t0 = time.perf_counter()
    print(f"digits, 20% stratified test split, mean over seeds {SEEDS}\n")
    print(report())
    print(f"\n({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
