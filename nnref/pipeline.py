"""The main job: train with clipping -> quantize -> integer-only inference -> fine-tune.

``python -m nnref`` (see :mod:`nnref.cli`) runs :func:`run` on the UCI digits (or MNIST
files) and prints :func:`report`:

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
5. write the figures: gradient norms, training curves, weight histograms before/after
   quantization.

This module is library code: it takes a :class:`PipelineConfig` and returns a
:class:`PipelineResult`; the command line lives in :mod:`nnref.cli`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from . import clip
from ._checks import check_int_in_range, check_nonnegative, check_positive, describe
from .data import load_dataset, train_test_split
from .mlp import MLP
from .optim import SGD, Adam
from .plots import figures_dir, plot_grad_norms, plot_training_curves, plot_weight_histograms, save_figure
from .quant import format_table, model_size_bytes, prepare_qat, quantize_model, to_float16
from .train import History, fit

__all__ = ["PipelineConfig", "PipelineResult", "TrainingDiverged", "run", "report"]

#: Largest seed accepted (numpy's generators take any non-negative int; this keeps
#: ``seed + 1``, the QAT run's seed, a 63-bit number).
MAX_SEED = 2**63 - 2


class TrainingDiverged(RuntimeError):
    """The float training met a non-finite loss or gradient norm; nothing after it ran."""


@dataclass
class PipelineConfig:
    """Settings of the main job (the defaults are the documented run).

    Every setting is checked when the config is made, before any work, and a bad one
    raises a ``ValueError`` or ``TypeError`` whose message starts with the setting's name
    (the command-line option is the same name with dashes).

    Attributes
    ----------
    dataset : {"digits", "mnist"}
        The data set; ``"mnist"`` needs ``data_dir``.
    data_dir : str, optional
        Folder with the four MNIST IDX files.
    hidden : tuple of int
        Hidden layer widths, each in [1, 10**6].
    epochs, batch_size, qat_epochs, calibration_size : int
        Each >= 1.
    lr, momentum, clip_norm, qat_lr : float
        SGD's step and momentum (>= 0), the global-norm clipping threshold, the QAT
        fine-tuning's Adam step (all others > 0).
    low_bits : int
        Weight bits of the low-bit model, 2 to 7.
    seed : int
        Seeds the split, the initial weights and the batch order, 0 to ``MAX_SEED``.
    out : str, optional
        Figures folder; None: :func:`nnref.plots.figures_dir`.
    figures, verbose : bool
        Write the figures; print progress lines.
    validation_fraction : float
        Share of the training split held out for the per-epoch curves, in (0, 1).
    """

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
    out: str | None = None
    figures: bool = True
    verbose: bool = True
    validation_fraction: float = 0.1

    def __post_init__(self):
        """Check every setting, naming it (see the class docstring)."""
        if self.dataset not in ("digits", "mnist"):
            raise ValueError(f"dataset: expected 'digits' or 'mnist', got {self.dataset!r}")
        if self.dataset == "mnist" and self.data_dir is None:
            raise ValueError("data_dir: --dataset mnist needs --data-dir DIR with the four MNIST IDX files")
        if not isinstance(self.hidden, (tuple, list)) or not self.hidden:
            raise TypeError(f"hidden: expected a non-empty tuple of layer widths, got {describe(self.hidden)}")
        for name in ("epochs", "batch_size", "qat_epochs", "calibration_size"):
            check_int_in_range(getattr(self, name), name, 1, 10**9)
        for h in self.hidden:
            check_int_in_range(h, "hidden", 1, 10**6)
        check_int_in_range(self.low_bits, "low_bits", 2, 7)
        check_int_in_range(self.seed, "seed", 0, MAX_SEED)
        for name in ("lr", "clip_norm", "qat_lr"):
            check_positive(getattr(self, name), name)
        check_nonnegative(self.momentum, "momentum")
        if not 0 < check_positive(self.validation_fraction, "validation_fraction") < 1:
            raise ValueError(f"validation_fraction: expected a number in (0, 1), got {self.validation_fraction}")
        for name in ("figures", "verbose"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name}: expected True or False, got {describe(getattr(self, name))}")
        for name in ("data_dir", "out"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), (str, Path)):
                raise TypeError(f"{name}: expected None or a folder name, got {describe(getattr(self, name))}")


@dataclass
class PipelineResult:
    """What :func:`run` measured.

    Attributes
    ----------
    rows : list of dict
        The table rows: ``model``, ``weights``, ``activations``, ``accuracy`` (fraction),
        ``bytes`` (stored size, :func:`nnref.quant.report.model_size_bytes`).
    clip : dict
        Clipping statistics of the float run: ``threshold``, ``steps``, ``clipped``,
        ``fraction``, ``median_norm``, ``max_norm``.
    figures : list of pathlib.Path
        The figures written.
    seconds : float
        Wall time of the whole run.
    """

    rows: list = field(default_factory=list)
    clip: dict = field(default_factory=dict)
    figures: list = field(default_factory=list)
    seconds: float = 0.0

    def add(self, name: str, weights: str, activations: str, accuracy: float, nbytes: int) -> None:
        """Append a table row."""
        self.rows.append({"model": name, "weights": weights, "activations": activations,
                          "accuracy": float(accuracy), "bytes": int(nbytes)})

    def row(self, name: str) -> dict:
        """The row of model ``name``.

        Raises
        ------
        KeyError
            When there is no such row.
        """
        for r in self.rows:
            if r["model"] == name:
                return r
        raise KeyError(name)

    def table(self) -> str:
        """The rows as a text table, accuracy and size relative to the first row."""
        base, base_size = self.rows[0]["accuracy"], self.rows[0]["bytes"]
        body = [[r["model"], r["weights"], r["activations"], f"{100 * r['accuracy']:.2f}",
                 f"{100 * (r['accuracy'] - base):+.2f}", f"{r['bytes']:,}",
                 f"{base_size / r['bytes']:.1f}x"]
                for r in self.rows]
        return format_table(body, ["model", "weights", "activations", "test acc %", "vs float32",
                                   "size (bytes)", "smaller"])


@dataclass
class _Splits:
    """The data of one run: training, validation and test sets, calibration images."""

    x_tr: np.ndarray
    x_val: np.ndarray
    x_te: np.ndarray
    y_tr: np.ndarray
    y_val: np.ndarray
    y_te: np.ndarray
    calib: np.ndarray
    sizes: list


def _say(cfg: PipelineConfig, msg: str) -> None:
    """Print a progress line unless the config is quiet."""
    if cfg.verbose:
        print(msg, flush=True)


def _splits(cfg: PipelineConfig, data: tuple | None) -> _Splits:
    """Load (unless given) and split the data; pick the calibration images.

    The test set is looked at once, for the table; the per-epoch curves use a validation
    split carved from the training data.
    """
    if data is None:
        data = load_dataset(cfg.dataset, cfg.data_dir, cfg.seed)
    if not isinstance(data, tuple) or len(data) != 4:
        raise TypeError(f"data: expected None or (x_train, x_test, y_train, y_test), got {describe(data)}")
    x_tr, x_te, y_tr, y_te = data
    x_tr, x_val, y_tr, y_val = train_test_split(x_tr, y_tr, test_fraction=cfg.validation_fraction,
                                                seed=cfg.seed, stratify=True)
    n_classes = int(max(y_tr.max(), y_te.max())) + 1
    rng = np.random.default_rng(cfg.seed)
    calib = x_tr[rng.permutation(len(x_tr))[: cfg.calibration_size]]
    return _Splits(x_tr, x_val, x_te, y_tr, y_val, y_te, calib, [x_tr.shape[1], *cfg.hidden, n_classes])


def _train_float(cfg: PipelineConfig, d: _Splits, res: PipelineResult) -> tuple[MLP, History]:
    """Step 1: train the float model with global-norm clipping; record the clipping."""
    model = MLP(d.sizes, seed=cfg.seed)
    clipper = clip.GlobalNorm(cfg.clip_norm)
    _say(cfg, f"[1/5] training {model} on {cfg.dataset} ({len(d.x_tr)} train / {len(d.x_val)} validation / "
              f"{len(d.x_te)} test), "
              f"SGD(lr={cfg.lr}, momentum={cfg.momentum}) with {clipper}")
    hist = fit(model, SGD(lr=cfg.lr, momentum=cfg.momentum), d.x_tr, d.y_tr, epochs=cfg.epochs,
               batch_size=cfg.batch_size, seed=cfg.seed,
               grad_transform=clipper, verbose=cfg.verbose, validation=(d.x_val, d.y_val))
    if hist.diverged:
        raise TrainingDiverged(f"training diverged: {hist.message}")
    norms = np.asarray(hist.grad_norm)
    res.clip = {"threshold": cfg.clip_norm, "steps": hist.n_steps, "clipped": hist.n_clipped,
                "fraction": hist.clip_fraction, "median_norm": float(np.median(norms)),
                "max_norm": float(norms.max())}
    return model, hist


def _post_training(cfg: PipelineConfig, model: MLP, d: _Splits, res: PipelineResult) -> tuple:
    """Steps 2 and 3: float16, and int8 post-training per channel and per tensor.

    Sizes are what a stored model holds (``model_size_bytes``: weights, int32 biases,
    scales, zero points), the same count for every row; multipliers derive from scales.
    """
    _say(cfg, "[2/5] evaluating float32 and float16")
    res.add("float32", "float32", "float32", model.accuracy(d.x_te, d.y_te), model_size_bytes(model, "float32").total)
    res.add("float16", "float16", "float16", to_float16(model).accuracy(d.x_te, d.y_te),
            model_size_bytes(model, "float16").total)
    _say(cfg, f"[3/5] post-training int8 quantization (calibrated on {len(d.calib)} training images), "
              "integer-only inference")
    q8 = quantize_model(model, d.calib, weight_scheme="tflite_int8_weights", bits=8)
    res.add("int8 PTQ per-channel", "int8 /channel", "int8", q8.accuracy(d.x_te, d.y_te),
            model_size_bytes(model, "int8").total)
    q8t = quantize_model(model, d.calib, weight_scheme="tflite_int8_weights_per_tensor", bits=8)
    res.add("int8 PTQ per-tensor", "int8 /tensor", "int8", q8t.accuracy(d.x_te, d.y_te),
            model_size_bytes(model, "int8", per_channel=False).total)
    return q8


def _low_bits(cfg: PipelineConfig, model: MLP, d: _Splits, res: PipelineResult) -> tuple:
    """Step 4: low-bit weights post-training, then quantization-aware fine-tuning.

    The QAT model is converted with the activation ranges it learned, as PyTorch's
    ``convert`` and the TFLite converter do (the weights: exactly the ones QAT simulated).
    Returns the low-bit post-training model, the QAT model's float weights, its
    conversion and its History.
    """
    b = cfg.low_bits
    _say(cfg, f"[4/5] {b}-bit weights: post-training, then {cfg.qat_epochs} epochs of "
              "quantization-aware training")
    qlow = quantize_model(model, d.calib, weight_scheme="tflite_int8_weights", bits=b)
    res.add(f"int{b} PTQ per-channel", f"int{b} /channel", "int8", qlow.accuracy(d.x_te, d.y_te),
            model_size_bytes(model, f"int{b}").total)
    qat = prepare_qat(model, weight_bits=b, act_bits=8)
    qat.calibrate(d.calib)
    qat_hist = fit(qat, Adam(lr=cfg.qat_lr), d.x_tr, d.y_tr, epochs=cfg.qat_epochs,
                   batch_size=cfg.batch_size, seed=cfg.seed + 1, validation=(d.x_val, d.y_val),
                   grad_transform=clip.GlobalNorm(cfg.clip_norm), verbose=cfg.verbose)
    qat.eval()
    qat_float = qat.to_float()
    qlow_qat = qat.convert()
    res.add(f"int{b} QAT per-channel", f"int{b} /channel", "int8", qlow_qat.accuracy(d.x_te, d.y_te),
            model_size_bytes(model, f"int{b}").total)
    return qlow, qat_float, qlow_qat, qat_hist


def run(cfg: PipelineConfig | None = None, data: tuple | None = None) -> PipelineResult:
    """Run the whole main job.

    Parameters
    ----------
    cfg : PipelineConfig, optional
        The settings; None: the documented defaults.
    data : tuple, optional
        ``(x_train, x_test, y_train, y_test)`` already loaded (as
        :func:`nnref.data.load_dataset` returns them for ``cfg.dataset``); None loads
        them here.

    Returns
    -------
    PipelineResult
        The table rows, clipping statistics, figure paths and time.

    Raises
    ------
    TypeError
        For a ``cfg`` that is not a PipelineConfig, or malformed ``data``.
    TrainingDiverged
        When the float training diverges (a ``RuntimeError``).
    """
    cfg = PipelineConfig() if cfg is None else cfg
    if not isinstance(cfg, PipelineConfig):
        raise TypeError(f"cfg: expected None or a PipelineConfig, got {describe(cfg)}")
    t_start = time.perf_counter()
    res = PipelineResult()
    d = _splits(cfg, data)
    model, hist = _train_float(cfg, d, res)
    q8 = _post_training(cfg, model, d, res)
    qlow, qat_float, qlow_qat, qat_hist = _low_bits(cfg, model, d, res)
    if cfg.figures:
        _say(cfg, "[5/5] writing figures")
        res.figures = _figures(cfg, model, hist, q8, qlow, qat_float, qlow_qat, qat_hist)
    res.seconds = time.perf_counter() - t_start
    return res


def _figures(cfg, model, hist, q8, qlow, qat_float, qlow_qat, qat_hist) -> list[Path]:
    """Write the main job's figures (``main_*.png``) to ``cfg.out``; return their paths."""
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
        fig = np.ravel(plot_weight_histograms(float_model, qm))[0].figure
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
    """The text ``python -m nnref`` prints at the end: the table and what it shows.

    Parameters
    ----------
    res : PipelineResult
        What :func:`run` returned.
    cfg : PipelineConfig
        The settings it ran with.

    Returns
    -------
    str
    """
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
