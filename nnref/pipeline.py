"""The main job: train with clipping -> quantize -> integer-only inference -> fine-tune.

``python -m nnref`` runs, on the UCI digits (or ``--dataset mnist --data-dir DIR``):

1. train ``MLP([in, 64, 64, 10])`` with SGD + momentum, clipping every step's gradients by
   their global L2 norm (:class:`nnref.clip.GlobalNorm`, PyTorch's ``clip_grad_norm_``);
2. evaluate it in float32 and float16;
3. quantize it post-training to int8 (TensorFlow Lite's scheme: symmetric per-channel
   weights, asymmetric per-tensor activations calibrated on training data) and run the
   test set through the integer-only :class:`~nnref.quant.convert.QuantizedMLP`
   (int8 x int8 -> int32, fixed-point requantization, bit-exact with TFLite's
   reference kernels);
4. quantize the weights to 2 bits (ternary: {-1, 0, 1} x scale per channel), watch the
   accuracy collapse, fine-tune with quantization-aware training (fake quantization,
   straight-through estimator, Adam with the same clipping) and convert again;
5. print a results table (accuracy, size, clipping statistics) and write the figures:
   gradient norms, training curves, weight histograms before/after quantization.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._checks import check_int_in_range, check_nonnegative, check_positive

__all__ = ["PipelineConfig", "PipelineResult", "run", "main"]


@dataclass
class PipelineConfig:
    """Settings of the main job (the defaults are the documented run)."""

    dataset: str = "digits"
    data_dir: str | None = None
    hidden: tuple = (64, 64)
    epochs: int = 30
    batch_size: int = 32
    lr: float = 0.05
    momentum: float = 0.9
    clip_norm: float = 1.0
    low_bits: int = 2
    qat_epochs: int = 5
    qat_lr: float = 3e-4  # Adam; robust across seeds (see benchmarks/quant_table.py)
    calibration_size: int = 512
    seed: int = 0
    out: str | None = None  # figures folder; None: nnref.plots.figures_dir()
    figures: bool = True
    verbose: bool = True
    validation_fraction: float = 0.1  # of the training split, for the per-epoch curves

    def __post_init__(self):
        # Checked before any work, naming the setting (and so the command-line option).
        if self.dataset not in ("digits", "mnist"):
            raise ValueError(f"dataset: expected 'digits' or 'mnist', got {self.dataset!r}")
        if self.dataset == "mnist" and self.data_dir is None:
            raise ValueError("data_dir: --dataset mnist needs --data-dir DIR with the four MNIST IDX files")
        for name in ("epochs", "batch_size", "qat_epochs", "calibration_size"):
            check_int_in_range(getattr(self, name), name, 1, 10**9)
        for h in self.hidden:
            check_int_in_range(h, "hidden", 1, 10**6)
        check_int_in_range(self.low_bits, "low_bits", 2, 7)
        for name in ("lr", "clip_norm", "qat_lr"):
            check_positive(getattr(self, name), name)
        check_nonnegative(self.momentum, "momentum")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction: expected a number in (0, 1), got {self.validation_fraction}")


@dataclass
class PipelineResult:
    """What :func:`run` measured: the table rows (dicts with ``model``, ``weights``,
    ``activations``, ``accuracy``, ``bytes``), clipping statistics, figure paths, time."""

    rows: list = field(default_factory=list)
    clip: dict = field(default_factory=dict)
    figures: list = field(default_factory=list)
    seconds: float = 0.0

    def row(self, name: str) -> dict:
        for r in self.rows:
            if r["model"] == name:
                return r
        raise KeyError(name)

    def table(self) -> str:
        from .quant.report import format_table

        base, base_size = self.rows[0]["accuracy"], self.rows[0]["bytes"]
        body = [[r["model"], r["weights"], r["activations"], f"{100 * r['accuracy']:.2f}",
                 f"{100 * (r['accuracy'] - base):+.2f}", f"{r['bytes']:,}",
                 f"{base_size / r['bytes']:.1f}x"]
                for r in self.rows]
        return format_table(body, ["model", "weights", "activations", "test acc %", "vs float32",
                                   "size (bytes)", "smaller"])


def _say(cfg: PipelineConfig, msg: str) -> None:
    if cfg.verbose:
        print(msg, flush=True)


def run(cfg: PipelineConfig | None = None) -> PipelineResult:
    """Run the whole pipeline; return the table rows, clip statistics and figure paths."""
    from . import clip
    from .cli import load_dataset
    from .data import train_test_split
    from .mlp import MLP
    from .optim import SGD, Adam
    from .quant.convert import quantize_model
    from .quant.half import to_float16
    from .quant.qat import prepare_qat
    from .quant.report import model_size_bytes
    from .train import fit

    cfg = cfg or PipelineConfig()
    t_start = time.perf_counter()
    res = PipelineResult()

    x_tr, x_te, y_tr, y_te = load_dataset(cfg.dataset, cfg.data_dir, cfg.seed)
    # The test set is looked at once, for the table; the per-epoch curves use a validation
    # split carved from the training data.
    x_tr, x_val, y_tr, y_val = train_test_split(x_tr, y_tr, test_fraction=cfg.validation_fraction,
                                                seed=cfg.seed, stratify=True)
    n_classes = int(max(y_tr.max(), y_te.max())) + 1
    sizes = [x_tr.shape[1], *cfg.hidden, n_classes]
    rng = np.random.default_rng(cfg.seed)
    calib = x_tr[rng.permutation(len(x_tr))[: cfg.calibration_size]]

    # 1. train with global-norm clipping ------------------------------------------------
    model = MLP(sizes, seed=cfg.seed)
    clipper = clip.GlobalNorm(cfg.clip_norm)
    _say(cfg, f"[1/5] training {model} on {cfg.dataset} ({len(x_tr)} train / {len(x_val)} validation / "
              f"{len(x_te)} test), "
              f"SGD(lr={cfg.lr}, momentum={cfg.momentum}) with {clipper}")
    hist = fit(model, SGD(lr=cfg.lr, momentum=cfg.momentum), x_tr, y_tr, epochs=cfg.epochs,
               batch_size=cfg.batch_size, seed=cfg.seed,
               grad_transform=clipper, verbose=cfg.verbose, validation=(x_val, y_val))
    if hist.diverged:
        raise RuntimeError(f"training diverged: {hist.message}")
    norms = np.asarray(hist.grad_norm)
    res.clip = {"threshold": cfg.clip_norm, "steps": hist.n_steps, "clipped": hist.n_clipped,
                "fraction": hist.clip_fraction, "median_norm": float(np.median(norms)),
                "max_norm": float(norms.max())}

    def add(name, weights, acts, acc, nbytes):
        res.rows.append({"model": name, "weights": weights, "activations": acts,
                         "accuracy": float(acc), "bytes": int(nbytes)})

    # 2. float baselines -----------------------------------------------------------------
    _say(cfg, "[2/5] evaluating float32 and float16")
    add("float32", "float32", "float32", model.accuracy(x_te, y_te), model_size_bytes(model, "float32").total)
    add("float16", "float16", "float16", to_float16(model).accuracy(x_te, y_te),
        model_size_bytes(model, "float16").total)

    # 3. post-training int8 ---------------------------------------------------------------
    _say(cfg, f"[3/5] post-training int8 quantization (calibrated on {len(calib)} training images), "
              "integer-only inference")
    q8 = quantize_model(model, calib, weight_scheme="tflite_int8_weights", bits=8)
    # Sizes are what a stored model holds (report.model_size_bytes: weights, int32 biases,
    # scales, zero points), the same count for every row; multipliers derive from scales.
    add("int8 PTQ per-channel", "int8 /channel", "int8", q8.accuracy(x_te, y_te),
        model_size_bytes(model, "int8").total)
    q8t = quantize_model(model, calib, weight_scheme="tflite_int8_weights_per_tensor", bits=8)
    add("int8 PTQ per-tensor", "int8 /tensor", "int8", q8t.accuracy(x_te, y_te),
        model_size_bytes(model, "int8", per_channel=False).total)

    # 4. low-bit weights: post-training, then QAT -----------------------------------------
    b = cfg.low_bits
    _say(cfg, f"[4/5] {b}-bit weights: post-training, then {cfg.qat_epochs} epochs of "
              "quantization-aware training")
    qlow = quantize_model(model, calib, weight_scheme="tflite_int8_weights", bits=b)
    add(f"int{b} PTQ per-channel", f"int{b} /channel", "int8", qlow.accuracy(x_te, y_te),
        model_size_bytes(model, f"int{b}").total)
    qat = prepare_qat(model, weight_bits=b, act_bits=8)
    qat.calibrate(calib)
    qat_hist = fit(qat, Adam(lr=cfg.qat_lr), x_tr, y_tr, epochs=cfg.qat_epochs,
                   batch_size=cfg.batch_size, seed=cfg.seed + 1, validation=(x_val, y_val),
                   grad_transform=clip.GlobalNorm(cfg.clip_norm), verbose=cfg.verbose)
    qat.eval()
    qat_float = qat.to_float()
    # Converted with the activation ranges QAT learned, as PyTorch's convert and the TFLite
    # converter do (the weights: exactly the ones QAT simulated).
    qlow_qat = qat.convert()
    add(f"int{b} QAT per-channel", f"int{b} /channel", "int8", qlow_qat.accuracy(x_te, y_te),
        model_size_bytes(model, f"int{b}").total)

    # 5. figures ---------------------------------------------------------------------------
    if cfg.figures:
        _say(cfg, "[5/5] writing figures")
        res.figures = _figures(cfg, model, hist, q8, qlow, qat_float, qlow_qat, qat_hist)
    res.seconds = time.perf_counter() - t_start
    return res


def _figures(cfg, model, hist, q8, qlow, qat_float, qlow_qat, qat_hist) -> list[Path]:
    import matplotlib.pyplot as plt

    from .plots import (figures_dir, plot_grad_norms, plot_training_curves,
                        plot_weight_histograms, save_figure)

    out = Path(cfg.out) if cfg.out else figures_dir()
    out.mkdir(parents=True, exist_ok=True)
    paths = []

    fig, ax = plt.subplots(figsize=(8, 4.5))
    plot_grad_norms(hist, ax=ax, threshold=cfg.clip_norm)
    ax.set_title(f"Gradient norms while training (clipped to {cfg.clip_norm} at "
                 f"{100 * hist.clip_fraction:.0f}% of steps)")
    paths.append(save_figure(fig, out / "main_grad_norms.png"))
    plt.close(fig)

    axes = plot_training_curves(hist)
    fig = np.ravel(axes)[0].figure
    fig.suptitle("Float training with global-norm clipping")
    paths.append(save_figure(fig, out / "main_training_curves.png"))
    plt.close(fig)

    b = cfg.low_bits
    for name, float_model, qm, title in (
        ("int8", model, q8, "int8 weights, post-training"),
        (f"int{b}_ptq", model, qlow, f"int{b} weights, post-training"),
        (f"int{b}_qat", qat_float, qlow_qat, f"int{b} weights after quantization-aware training"),
    ):
        drawn = plot_weight_histograms(float_model, qm)
        fig = drawn if hasattr(drawn, "savefig") else np.ravel(drawn)[0].figure
        fig.suptitle(f"Float weights (before) and quantized (after): {title}")
        paths.append(save_figure(fig, out / f"main_weight_histograms_{name}.png"))
        plt.close(fig)

    axes = plot_training_curves(qat_hist)
    fig = np.ravel(axes)[0].figure
    fig.suptitle(f"Quantization-aware fine-tuning, {cfg.low_bits}-bit weights")
    paths.append(save_figure(fig, out / "main_qat_curves.png"))
    plt.close(fig)
    return paths


def report(res: PipelineResult, cfg: PipelineConfig) -> str:
    """The text ``python -m nnref`` prints at the end: the table and what it shows."""
    c = res.clip
    f32 = res.rows[0]["accuracy"]
    int8 = res.row("int8 PTQ per-channel")["accuracy"]
    b = cfg.low_bits
    ptq = res.row(f"int{b} PTQ per-channel")["accuracy"]
    qat = res.row(f"int{b} QAT per-channel")["accuracy"]
    lost = f32 - ptq
    lines = [
        "",
        f"Results on {cfg.dataset} test set (MLP {list(cfg.hidden)} hidden, seed {cfg.seed}):",
        res.table(),
        "",
        f"clipping: global L2 norm <= {c['threshold']}: clipped {c['clipped']} of {c['steps']} steps "
        f"({100 * c['fraction']:.1f}%); median gradient norm {c['median_norm']:.3g}, "
        f"largest {c['max_norm']:.3g}",
        f"int8 (integer-only, TFLite fixed-point requantization) vs float32: "
        f"{100 * (int8 - f32):+.2f} points",
        f"int{b} weights: post-training loses {100 * lost:.2f} points; QAT recovers "
        f"{100 * (qat - ptq):.2f} of them"
        + (f" ({100 * (qat - ptq) / lost:.0f}%)" if lost > 0 else ""),
    ]
    if res.figures:
        lines.append("figures: " + ", ".join(str(p) for p in res.figures))
    lines.append(f"done in {res.seconds:.1f} s")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The main job's options (``python -m nnref --help``)."""
    from .cli import positive_float, positive_int

    p = argparse.ArgumentParser(
        prog="python -m nnref",
        description="Train with gradient clipping, quantize, run integer-only inference, "
                    "fine-tune a low-bit model with QAT; print a results table and write figures. "
                    "Other commands: `python -m nnref train --help`, `python -m nnref download-mnist DIR`.")
    d = PipelineConfig()
    p.add_argument("--dataset", default=d.dataset, choices=["digits", "mnist"])
    p.add_argument("--data-dir", default=None, help="folder with the four MNIST IDX files (--dataset mnist)")
    p.add_argument("--out", default=None,
                   help="figures folder (default: $NNREF_FIGURES_DIR, else the figures/ of the nnref "
                        "checkout holding the current folder, else ./figures)")
    p.add_argument("--hidden", type=positive_int, nargs="+", default=list(d.hidden))
    p.add_argument("--epochs", type=positive_int, default=d.epochs)
    p.add_argument("--qat-epochs", type=positive_int, default=d.qat_epochs)
    p.add_argument("--clip-norm", type=positive_float, default=d.clip_norm)
    p.add_argument("--low-bits", type=int, default=d.low_bits, choices=range(2, 8), metavar="{2..7}")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--no-figures", action="store_true", help="skip writing figures")
    p.add_argument("--quiet", action="store_true", help="no progress lines, only the report")
    return p


def main(argv=None) -> int:
    """Run the main job with command-line options; print the report."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = PipelineConfig(dataset=args.dataset, data_dir=args.data_dir, out=args.out,
                             hidden=tuple(args.hidden), epochs=args.epochs, qat_epochs=args.qat_epochs,
                             clip_norm=args.clip_norm, low_bits=args.low_bits, seed=args.seed,
                             figures=not args.no_figures, verbose=not args.quiet)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))  # exits with the usage line and the message
    res = run(cfg)
    print(report(res, cfg))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
