"""Bad inputs across the public API, one row each: the call, the exception it must raise
and a fragment of the message, which names the argument (or, for a file, the file).

A row is ``(id, call, exception type, fragment)``; ``call`` takes a :class:`Kit` of
ready-made valid objects and a temporary folder, so each row changes exactly one thing
from a valid call. The fragment is a regular expression searched in the message.
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from nnref import cli, clip, course, halfprec, laws, pipeline, plots, plots_recipe, prune  # noqa: E402
from nnref.data import (  # noqa: E402
    download_mnist,
    load_dataset,
    load_digits,
    load_mnist,
    make_spirals,
    read_idx,
    train_test_split,
    write_idx,
)
from nnref.mlp import MLP  # noqa: E402
from nnref.optim import SGD, Adam  # noqa: E402
from nnref.quant import QuantizedMLP, choose_qparams, quantize_model  # noqa: E402
from nnref.quant import adaround, bias_correction, binary, equalize, layerwise, lsq, profiles  # noqa: E402
from nnref.quant import ptq_plots, sensitivity  # noqa: E402
from nnref.train import History, fit  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TFLITE = ROOT / "tests" / "fixtures" / "digits_relu_per_channel.tflite"


def interop():
    """The optional extra, imported when a row needs it."""
    return importlib.import_module("nnref.interop")


@dataclass
class Kit:
    """Valid objects for the rows to spoil one at a time."""

    tmp: Path
    x: np.ndarray
    y: np.ndarray
    model: MLP
    qmodel: QuantizedMLP
    history: History
    fig: object
    ax: object
    grads: dict
    masks: dict
    weights: list
    onnx: Path


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad-inputs")
    x, y = make_spirals(n_per_class=20, n_classes=3, seed=0)
    model = MLP([2, 8, 3], seed=0)
    history = fit(model, SGD(lr=0.1), x, y, epochs=1, batch_size=30, seed=0, verbose=False)
    qmodel = quantize_model(model, x)
    model.save(tmp / "mlp.npz")
    qmodel.save(tmp / "q.npz")
    (tmp / "a-file").write_bytes(b"not a model")
    np.save(tmp / "array.npy", np.zeros(3))
    _, grads = model.loss_and_grads(x[:4], y[:4])
    fig, ax = plt.subplots()
    masks = prune.prune_masks(model, 0.5)
    weights = layerwise.rtn_weights(model, bits=4)
    interop().to_onnx(qmodel, tmp / "q.onnx")
    (tmp / "q.tflite").write_bytes(TFLITE.read_bytes()[:3000])  # truncated
    (tmp / "notes.txt").write_text("not a notebook")
    (tmp / "empty").mkdir()
    yield Kit(tmp, x, y, model, qmodel, history, fig, ax, grads, masks, weights, tmp / "q.onnx")
    plt.close("all")


def _huge_npz(k: Kit) -> Path:
    """The MLP file with W1's header announcing 10**12 elements over its 64 bytes."""
    out = k.tmp / "huge.npz"
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)})
    with zipfile.ZipFile(k.tmp / "mlp.npz") as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info.filename, buf.getvalue() + bytes(64) if info.filename == "W1.npy" else data)
    return out


def _dead_first_layer() -> MLP:
    """An MLP whose first ReLU layer outputs 0 for every input near 0 (biases of -100)."""
    model = MLP([2, 8, 3], seed=0)
    model.params["b1"][...] = -100.0
    return model


def _file(k: Kit, name: str, content: bytes) -> Path:
    path = k.tmp / name
    path.write_bytes(content)
    return path


def _ns(**kw) -> argparse.Namespace:
    """A ``train`` namespace with the defaults and ``kw``."""
    base = dict(dataset="digits", data_dir=None, hidden=[8], activation="relu", epochs=1, batch_size=32,
                optimizer="sgd", lr=None, clip_norm=None, seed=0, save=None)
    return argparse.Namespace(**{**base, **kw})


def _main_ns(**kw) -> argparse.Namespace:
    """A main-job namespace with the defaults and ``kw``."""
    base = dict(dataset="digits", data_dir=None, out=None, hidden=[8], epochs=1, qat_epochs=1, clip_norm=1.0,
                low_bits=2, seed=0, no_figures=False, quiet=True)
    return argparse.Namespace(**{**base, **kw})


E, V, T, F = Exception, ValueError, TypeError, FileNotFoundError

ROWS = [
    # --- nnref.data: digits, split, spirals, by name ---------------------------------
    ("load_digits dtype int", lambda k: load_digits(dtype=np.int32), T, r"dtype: expected a floating dtype"),
    ("load_digits dtype bogus", lambda k: load_digits(dtype="bogus"), T, r"dtype: expected a numpy floating"),
    ("split y short", lambda k: train_test_split(k.x, k.y[:-1]), V, r"y: expected one label per row of x"),
    ("split y 2-D", lambda k: train_test_split(k.x, k.y[:, None]), V, r"y: expected a 1-D array"),
    ("split x 0-D", lambda k: train_test_split(np.float64(1.0), k.y), V, r"x: expected an array of shape"),
    ("split fraction 0", lambda k: train_test_split(k.x, k.y, test_fraction=0), V, r"test_fraction: expected"),
    ("split fraction 1", lambda k: train_test_split(k.x, k.y, test_fraction=1.0), V, r"test_fraction: expected"),
    ("split fraction nan", lambda k: train_test_split(k.x, k.y, test_fraction=float("nan")), V, r"test_fraction"),
    ("split fraction str", lambda k: train_test_split(k.x, k.y, test_fraction="0.2"), T, r"test_fraction: expected a real"),
    ("split fraction bool", lambda k: train_test_split(k.x, k.y, test_fraction=True), T, r"test_fraction"),
    ("split empty train", lambda k: train_test_split(k.x[:2], k.y[:2], test_fraction=0.9), V,
     r"test_fraction: .* leaves the training set empty"),
    ("split stratify str", lambda k: train_test_split(k.x, k.y, stratify="yes"), T, r"stratify: expected True or False"),
    ("split float labels", lambda k: train_test_split(k.x, k.y.astype(float)), T, r"y: stratify=True needs integer"),
    ("split seed -1", lambda k: train_test_split(k.x, k.y, seed=-1), V, r"seed: expected a non-negative integer.*got -1"),
    ("split seed str", lambda k: train_test_split(k.x, k.y, seed="0"), T, r"seed: expected an int"),
    ("spirals n 0", lambda k: make_spirals(n_per_class=0), V, r"n_per_class"),
    ("spirals classes float", lambda k: make_spirals(n_classes=1.5), T, r"n_classes: expected an integer"),
    ("spirals noise -1", lambda k: make_spirals(noise=-1.0), V, r"noise: expected a number >= 0"),
    ("spirals noise nan", lambda k: make_spirals(noise=float("nan")), V, r"noise: expected a finite"),
    ("spirals dtype int", lambda k: make_spirals(dtype=np.int64), T, r"dtype: expected a floating"),
    ("spirals seed -3", lambda k: make_spirals(seed=-3), V, r"seed: expected a non-negative integer"),
    ("dataset unknown", lambda k: load_dataset("cifar"), V, r"name: expected one of digits, mnist, spirals"),
    ("dataset mnist no dir", lambda k: load_dataset("mnist"), V, r"data_dir: expected the folder"),
    ("dataset digits with dir", lambda k: load_dataset("digits", data_dir="x"), V, r"data_dir: .* None for the other"),
    ("dataset seed -1", lambda k: load_dataset("digits", seed=-1), V, r"seed: expected an integer in \[0"),
    ("dataset seed float", lambda k: load_dataset("digits", seed=0.5), T, r"seed: expected an integer"),
    # --- nnref.idx -------------------------------------------------------------------
    ("read_idx int path", lambda k: read_idx(3), T, r"path: expected a str or os.PathLike"),
    ("read_idx None", lambda k: read_idx(None), T, r"path: expected a str or os.PathLike"),
    ("read_idx missing", lambda k: read_idx(k.tmp / "missing.idx"), F, r"missing\.idx"),
    ("read_idx not idx", lambda k: read_idx(k.tmp / "a-file"), V, r"a-file: not an IDX file"),
    ("read_idx huge header", lambda k: read_idx(_file(k, "h.idx", bytes.fromhex("00000802" "FFFFFFFF" "FFFFFFFF"))), V,
     r"h\.idx: truncated: .* need 18446744065119617025 data bytes"),
    ("read_idx gz huge header", lambda k: read_idx(_file(k, "h.gz", gzip.compress(bytes.fromhex("00000802" "FFFFFFFF" "FFFFFFFF")))),
     V, r"h\.gz: .* more than a \d+-byte gzip file can hold"),
    ("read_idx gz corrupt", lambda k: read_idx(_file(k, "c.gz", b"\x1f\x8b" + bytes(20))), V, r"c\.gz: corrupt gzip"),
    ("read_idx 0 dims", lambda k: read_idx(_file(k, "z.idx", bytes.fromhex("00000800"))), V, r"z\.idx: .*0 dimensions"),
    ("write_idx list", lambda k: write_idx(k.tmp / "w.idx", [1, 2]), T, r"array: expected a numpy.ndarray"),
    ("write_idx int64", lambda k: write_idx(k.tmp / "w.idx", np.zeros(2, np.int64)), T, r"array: expected a dtype IDX can store"),
    ("write_idx bool", lambda k: write_idx(k.tmp / "w.idx", np.zeros(2, bool)), T, r"array: expected a dtype IDX"),
    ("write_idx 0-D", lambda k: write_idx(k.tmp / "w.idx", np.array(3, dtype=np.uint8)), V,
     r"array: expected 1 to 255 dimensions"),
    ("write_idx int path", lambda k: write_idx(3, np.zeros(2, np.uint8)), T, r"path: expected a str"),
    ("write_idx no folder", lambda k: write_idx(k.tmp / "no" / "w.idx", np.zeros(2, np.uint8)), F, r"w\.idx"),
    # --- nnref.mnist -----------------------------------------------------------------
    ("load_mnist int", lambda k: load_mnist(3), T, r"directory: expected a str or os.PathLike"),
    ("load_mnist missing dir", lambda k: load_mnist(k.tmp / "nowhere"), F, r"nowhere: no such directory"),
    ("load_mnist empty dir", lambda k: load_mnist(k.tmp), F, r"train-images-idx3-ubyte: no such file"),
    ("download dir int", lambda k: download_mnist(3), T, r"directory: expected a str"),
    ("download url int", lambda k: download_mnist(k.tmp / "m", base_url=3), T, r"base_url: expected a str URL"),
    ("download url empty", lambda k: download_mnist(k.tmp / "m", base_url=""), V, r"base_url: expected a non-empty"),
    ("download checksums list", lambda k: download_mnist(k.tmp / "m", checksums=["a"]), T, r"checksums: expected a dict"),
    ("download checksums empty", lambda k: download_mnist(k.tmp / "m", checksums={}), V, r"checksums: .* missing"),
    ("download timeout 0", lambda k: download_mnist(k.tmp / "m", timeout=0), V, r"timeout: expected a number > 0"),
    # --- nnref.plots -----------------------------------------------------------------
    ("grad_norms empty", lambda k: plots.plot_grad_norms(History()), V, r"history: expected a run with at least one"),
    ("grad_norms not history", lambda k: plots.plot_grad_norms({"loss": [1]}), T, r"history: expected an nnref.train.History"),
    ("grad_norms threshold -1", lambda k: plots.plot_grad_norms(k.history, threshold=-1), V, r"threshold: expected a number > 0"),
    ("grad_norms threshold str", lambda k: plots.plot_grad_norms(k.history, threshold="1"), T, r"threshold: expected a real"),
    ("grad_norms threshold inf", lambda k: plots.plot_grad_norms(k.history, threshold=float("inf")), V, r"threshold: expected a finite"),
    ("grad_norms ax str", lambda k: plots.plot_grad_norms(k.history, ax="left"), T, r"ax: expected a matplotlib Axes"),
    ("grad_norms per_param str", lambda k: plots.plot_grad_norms(k.history, per_param="yes"), T, r"per_param: expected True or False"),
    ("grad_norms log_scale None", lambda k: plots.plot_grad_norms(k.history, log_scale=None), T, r"log_scale: expected True"),
    ("curves empty", lambda k: plots.plot_training_curves(History()), V, r"history: expected a run with at least one"),
    ("curves None", lambda k: plots.plot_training_curves(None), T, r"history: expected an nnref.train.History"),
    ("curves loss hinge", lambda k: plots.plot_training_curves(k.history, loss="hinge"), V, r"loss: expected None, 'cross_entropy'"),
    ("curves loss mse", lambda k: plots.plot_training_curves(k.history, loss="mse"), V, r"loss: .* accuracy record says"),
    ("curves log_loss str", lambda k: plots.plot_training_curves(k.history, log_loss="no"), T, r"log_loss: expected True"),
    ("curves ax one of two", lambda k: plots.plot_training_curves(k.history, ax=[k.ax]), T, r"ax: expected None, one matplotlib Axes"),
    ("curves ax and axes", lambda k: plots.plot_training_curves(k.history, ax=k.ax, axes=k.ax), T, r"ax, axes: expected"),
    ("loss_per_step empty dict", lambda k: plots.plot_loss_per_step({}), T, r"histories: expected a non-empty dict"),
    ("loss_per_step list", lambda k: plots.plot_loss_per_step([k.history]), T, r"histories: expected a non-empty dict"),
    ("loss_per_step empty run", lambda k: plots.plot_loss_per_step({"a": History()}), V, r"histories\['a'\]: expected a run"),
    ("loss_per_step not run", lambda k: plots.plot_loss_per_step({"a": k.history, "b": [1]}), T, r"histories\['b'\]: expected"),
    ("loss_per_step log str", lambda k: plots.plot_loss_per_step({"a": k.history}, log_scale="x"), T, r"log_scale: expected"),
    ("save_figure str", lambda k: plots.save_figure("figure", k.tmp / "f.png"), T, r"fig_or_ax: expected a matplotlib"),
    ("save_figure int path", lambda k: plots.save_figure(k.fig, 3), T, r"path: expected a str or os.PathLike"),
    ("save_figure dpi 0", lambda k: plots.save_figure(k.fig, k.tmp / "f.png", dpi=0), V, r"dpi: expected a number > 0"),
    ("save_figure close str", lambda k: plots.save_figure(k.fig, k.tmp / "f.png", close="y"), T, r"close: expected True"),
    ("figures_dir create str", lambda k: plots.figures_dir(create="no"), T, r"create: expected True or False"),
    ("histograms quantized str", lambda k: plots.plot_weight_histograms(k.model, "int8"), T, r"quantized: expected a QuantizedMLP"),
    ("histograms weights list", lambda k: plots.plot_weight_histograms([1.0], k.qmodel), T, r"float_weights: expected an MLP"),
    ("histograms bins 0", lambda k: plots.plot_weight_histograms(k.model, k.qmodel, bins=0), V, r"bins: expected an int >= 1"),
    ("histograms layer 5", lambda k: plots.plot_weight_histograms(k.model, k.qmodel, layer=5), V, r"layer: expected None or a layer"),
    ("histograms sizes", lambda k: plots.plot_weight_histograms(MLP([2, 4, 3]), k.qmodel), V, r"quantized: expected weights of shapes"),
    ("histograms ax str", lambda k: plots.plot_weight_histograms(k.model, k.qmodel, ax="a"), T, r"ax: expected None"),
    ("qerror model str", lambda k: plots.plot_quantization_error("m", k.qmodel), T, r"float_model: expected an MLP"),
    ("qerror quantized MLP", lambda k: plots.plot_quantization_error(k.model, k.model), T, r"quantized: expected a QuantizedMLP"),
    ("qerror metric", lambda k: plots.plot_quantization_error(k.model, k.qmodel, metric="snr"), V, r"metric: expected 'sqnr' or 'mse'"),
    ("qerror sizes", lambda k: plots.plot_quantization_error(MLP([2, 3]), k.qmodel), V, r"quantized: expected layer sizes"),
    ("qerror ax", lambda k: plots.plot_quantization_error(k.model, k.qmodel, ax=1), T, r"ax: expected a matplotlib Axes"),
    ("ranges 1-D", lambda k: plots.plot_channel_ranges(np.zeros(3)), V, r"model_or_weights: expected a non-empty 2-D"),
    ("ranges nan", lambda k: plots.plot_channel_ranges(np.array([[np.nan, 1.0]])), V, r"model_or_weights: expected finite"),
    ("ranges empty", lambda k: plots.plot_channel_ranges(np.zeros((0, 3))), V, r"model_or_weights: expected a non-empty"),
    ("ranges str", lambda k: plots.plot_channel_ranges("W"), T, r"model_or_weights: expected an MLP"),
    ("ranges layer", lambda k: plots.plot_channel_ranges(np.ones((2, 2)), layer=1), V, r"layer: expected None or a layer"),
    # --- model files (nnref._npz through the models' load) ---------------------------
    ("MLP.load missing", lambda k: MLP.load(k.tmp / "missing.npz"), F, r"missing\.npz"),
    ("MLP.load not zip", lambda k: MLP.load(k.tmp / "a-file"), V, r"a-file: not a readable nnref \.npz"),
    ("MLP.load .npy", lambda k: MLP.load(k.tmp / "array.npy"), V, r"array\.npy: a \.npy array file, expected an nnref MLP \.npz"),
    ("MLP.load huge header", lambda k: MLP.load(_huge_npz(k)), V, r"huge\.npz: entry 'W1\.npy': its header announces"),
    ("MLP.load quantized file", lambda k: MLP.load(k.tmp / "q.npz"), V, r"q\.npz: not an nnref MLP file"),
    ("QuantizedMLP.load MLP file", lambda k: QuantizedMLP.load(k.tmp / "mlp.npz"), V, r"mlp\.npz: not an nnref QuantizedMLP"),
    ("QuantizedMLP.load not zip", lambda k: QuantizedMLP.load(k.tmp / "a-file"), V, r"a-file: not a readable"),
    # --- nnref.pipeline ----------------------------------------------------------------
    ("config dataset", lambda k: pipeline.PipelineConfig(dataset="cifar"), V, r"dataset: expected 'digits' or 'mnist'"),
    ("config mnist no dir", lambda k: pipeline.PipelineConfig(dataset="mnist"), V, r"data_dir: --dataset mnist needs"),
    ("config epochs 0", lambda k: pipeline.PipelineConfig(epochs=0), V, r"epochs: expected an integer in \[1"),
    ("config epochs float", lambda k: pipeline.PipelineConfig(epochs=2.5), T, r"epochs: expected an integer"),
    ("config hidden empty", lambda k: pipeline.PipelineConfig(hidden=()), T, r"hidden: expected a non-empty tuple"),
    ("config hidden 0", lambda k: pipeline.PipelineConfig(hidden=(64, 0)), V, r"hidden: expected an integer in \[1"),
    ("config seed -1", lambda k: pipeline.PipelineConfig(seed=-1), V, r"seed: expected an integer in \[0"),
    ("config lr nan", lambda k: pipeline.PipelineConfig(lr=float("nan")), V, r"lr: expected a finite number"),
    ("config low_bits 8", lambda k: pipeline.PipelineConfig(low_bits=8), V, r"low_bits: expected an integer in \[2, 7\]"),
    ("config momentum -1", lambda k: pipeline.PipelineConfig(momentum=-1), V, r"momentum: expected a number >= 0"),
    ("config figures str", lambda k: pipeline.PipelineConfig(figures="yes"), T, r"figures: expected True or False"),
    ("config validation 1.5", lambda k: pipeline.PipelineConfig(validation_fraction=1.5), V, r"validation_fraction: expected"),
    ("config out int", lambda k: pipeline.PipelineConfig(out=3), T, r"out: expected None or a folder name"),
    ("run cfg str", lambda k: pipeline.run("cfg"), T, r"cfg: expected None or a PipelineConfig"),
    ("run data short", lambda k: pipeline.run(pipeline.PipelineConfig(verbose=False), data=(k.x, k.y)), T,
     r"data: expected None or \(x_train, x_test, y_train, y_test\)"),
    # --- nnref.cli: each command's prepare phase, and the memory check -----------------
    ("train --save folder", lambda k: cli.prepare_train(_ns(save=str(k.tmp))), V, r"--save: expected a file name"),
    ("train --save no folder", lambda k: cli.prepare_train(_ns(save=str(k.tmp / "no" / "m.npz"))), V, r"--save: expected a file in an existing"),
    ("train --data-dir digits", lambda k: cli.prepare_train(_ns(data_dir=str(k.tmp))), V, r"--data-dir: only used with --dataset mnist"),
    ("train mnist no dir", lambda k: cli.prepare_train(_ns(dataset="mnist")), V, r"--data-dir: --dataset mnist needs"),
    ("train mnist empty dir", lambda k: cli.prepare_train(_ns(dataset="mnist", data_dir=str(k.tmp))), V, r"--data-dir: .*no such file"),
    ("train --hidden huge", lambda k: cli.prepare_train(_ns(hidden=[100000, 100000])), V, r"--hidden 100000 100000: layer sizes"),
    ("main --out file", lambda k: cli.prepare_main(_main_ns(out=str(k.tmp / "a-file"))), V, r"--out: expected a folder"),
    ("main --hidden too wide", lambda k: cli.prepare_main(_main_ns(hidden=[2 * 10**6])), V, r"--hidden: expected an integer in"),
    ("main --seed -1", lambda k: cli.prepare_main(_main_ns(seed=-1)), V, r"--seed: expected an integer in \[0"),
    ("download under a file", lambda k: cli.prepare_download(argparse.Namespace(directory=str(k.tmp / "a-file" / "m"))), V,
     r"directory: expected a folder"),
    ("memory", lambda k: cli.check_memory([784, 10**6, 10**6, 10], 4096, 4, "--hidden"), V, r"--hidden: layer sizes .* GiB"),
    # --- elsewhere: calls that already refuse clearly ------------------------------------
    ("MLP one size", lambda k: MLP([4]), V, r"layer_sizes"),
    ("MLP activation", lambda k: MLP([2, 3], activation="bogus"), V, r"activation"),
    ("MLP dtype int", lambda k: MLP([2, 3], dtype=np.int32), T, r"dtype"),
    ("MLP predict wrong width", lambda k: k.model.predict(np.zeros((2, 5), np.float32)), V, r"x"),
    ("MLP predict nan", lambda k: k.model.predict(np.full((2, 2), np.nan, np.float32)), V, r"x"),
    ("SGD lr -1", lambda k: SGD(lr=-1), V, r"lr"),
    ("SGD momentum -1", lambda k: SGD(lr=0.1, momentum=-1), V, r"momentum"),
    ("Adam lr 0", lambda k: Adam(lr=0), V, r"lr"),
    ("fit epochs 0", lambda k: fit(k.model, SGD(lr=0.1), k.x, k.y, epochs=0, batch_size=8), V, r"epochs"),
    ("fit batch 0", lambda k: fit(k.model, SGD(lr=0.1), k.x, k.y, epochs=1, batch_size=0), V, r"batch_size"),
    ("fit labels short", lambda k: fit(k.model, SGD(lr=0.1), k.x, k.y[:-1], epochs=1, batch_size=8), V, r"y|labels"),
    ("global clip max_norm -1", lambda k: clip.clip_by_global_norm(k.grads, max_norm=-1.0), V, r"max_norm"),
    ("GlobalNorm -1", lambda k: clip.GlobalNorm(-1), V, r"max_norm"),
    ("clip_by_value negative", lambda k: clip.clip_by_value(k.grads, -1.0), V, r"clip_value"),
    ("quantize_model bits 1", lambda k: quantize_model(k.model, k.x, bits=1), V, r"bits"),
    ("quantize_model calib wrong width", lambda k: quantize_model(k.model, np.zeros((4, 5), np.float32)), V, r"calibration_x|x"),
    ("choose_qparams bits 1", lambda k: choose_qparams(-1.0, 1.0, bits=1), V, r"bits"),
    # --- nnref.interop (optional extra) --------------------------------------------------
    ("from_tflite int path", lambda k: interop().from_tflite(3), T, r"path: expected a file path"),
    ("read_tflite int path", lambda k: interop().read_tflite(3), T, r"path: expected a str or os.PathLike"),
    ("from_tflite folder", lambda k: interop().from_tflite(k.tmp), V, r"path: expected a file, got .* which is a folder"),
    ("from_tflite truncated", lambda k: interop().from_tflite(k.tmp / "q.tflite"), V, r"q\.tflite: (corrupt|unreadable)"),
    ("from_tflite an npz", lambda k: interop().from_tflite(k.tmp / "mlp.npz"), V, r"mlp\.npz: not a TensorFlow Lite model"),
    ("to_onnx MLP", lambda k: interop().to_onnx(k.model, k.tmp / "m.onnx"), T, r"qmodel: expected a QuantizedMLP"),
    ("to_onnx int path", lambda k: interop().to_onnx(k.qmodel, 3), T, r"path: expected a str or os.PathLike"),
    ("to_onnx format", lambda k: interop().to_onnx(k.qmodel, k.tmp / "m.onnx", format="qlinear"), V,
     r"format: expected one of \('qoperator', 'qdq'\)"),
    ("to_onnx no folder", lambda k: interop().to_onnx(k.qmodel, k.tmp / "no" / "m.onnx"), F, r"no/m\.onnx'"),
    ("from_onnx int path", lambda k: interop().from_onnx(3), T, r"path: expected a file path"),
    ("from_onnx requantization", lambda k: interop().from_onnx(k.onnx, requantization="double"), V,
     r"requantization: expected one of"),
    ("from_onnx tflite file", lambda k: interop().from_onnx(TFLITE), V, r"digits_relu_per_channel\.tflite: not an ONNX"),
    ("from_onnx missing", lambda k: interop().from_onnx(k.tmp / "missing.onnx"), F, r"missing\.onnx: no such file"),
    ("compare path int", lambda k: interop().compare(3, k.x), T, r"model_path: expected a \.tflite or \.onnx"),
    ("compare engine", lambda k: interop().compare(k.onnx, k.x, engine="litert_reference"), V, r"engine: expected one of"),
    ("compare x width", lambda k: interop().compare(k.onnx, np.zeros((2, 5), np.float32)), V, r"x: expected shape \(B, 2\)"),
    ("compare x 1e300", lambda k: interop().compare(k.onnx, np.full((2, 2), 1e300)), V, r"x: expected values within float32"),
    ("compare x nan", lambda k: interop().compare(k.onnx, np.full((2, 2), np.nan)), V, r"x: expected finite values"),
    ("compare max_details str", lambda k: interop().compare(k.onnx, k.x, max_details="8"), T, r"max_details: expected an int"),
    ("compare max_details -1", lambda k: interop().compare(k.onnx, k.x, max_details=-1), V, r"max_details: expected an int >= 0"),
    ("run_litert tensors str", lambda k: interop().run_litert(TFLITE, np.zeros((1, 64)), tensors="1"), T,
     r"tensors: expected a sequence"),
    ("run_litert tensors range", lambda k: interop().run_litert(TFLITE, np.zeros((1, 64)), tensors=[10**6]), V,
     r"tensors: expected indices in \[0, \d+\]"),
    ("run_onnxruntime x width", lambda k: interop().run_onnxruntime(k.onnx, np.zeros((2, 7))), V, r"x: expected shape \(B, 2\)"),
    # --- nnref.quant.profiles ------------------------------------------------------------
    ("profile_forward profile list", lambda k: profiles.profile_forward(k.qmodel, k.qmodel.quantize_input(k.x), ["single"]),
     V, r"profile: expected one of"),
    ("profile_forward MLP", lambda k: profiles.profile_forward(k.model, k.x, "single"), T, r"model: expected a QuantizedMLP"),
    ("profile_requantized acc float", lambda k: profiles.profile_requantized(k.qmodel.layers[0], k.x, "double"), T,
     r"acc_bias: expected an int32 array"),
    ("quantize_input_as rule", lambda k: profiles.quantize_input_as(k.qmodel, k.x, "half_up"), V, r"rule: expected one of"),
    # --- nnref.prune -----------------------------------------------------------------------
    ("apply_masks params list", lambda k: prune.apply_masks([1], k.masks), T, r"params: expected a dict"),
    ("apply_masks masks None", lambda k: prune.apply_masks(dict(k.model.params), None), T, r"masks: expected a dict"),
    ("apply_masks unknown key", lambda k: prune.apply_masks({"W9": np.ones(2)}, k.masks), V, r"masks: key 'W1' is not a parameter"),
    ("sparsity names str", lambda k: prune.sparsity(k.model.params, names="W1"), T, r"names: expected a list or tuple"),
    ("sparsity unknown name", lambda k: prune.sparsity(k.model.params, names=["W9"]), V, r"names: expected names of params"),
    ("sparsity params None", lambda k: prune.sparsity(None), T, r"params: expected a dict"),
    ("magnitude_mask sparsity 1.5", lambda k: prune.magnitude_mask(k.model.params["W1"], 1.5), V, r"sparsity"),
    ("prune_masks scope", lambda k: prune.prune_masks(k.model, 0.5, scope="row"), V, r"scope: expected 'layer' or 'global'"),
    ("SharedWeightMLP masks str", lambda k: prune.SharedWeightMLP(k.model, 4, masks="all"), T, r"masks: expected a dict"),
    ("SharedWeightMLP k 1", lambda k: prune.SharedWeightMLP(k.model, 1), V, r"k: expected an integer in \[2"),
    ("relative_index_gaps mask int", lambda k: prune.relative_index_gaps(np.ones(4, int), 3), T, r"mask: expected a bool array"),
    ("MaskedOptimizer None", lambda k: prune.MaskedOptimizer(None, k.masks), T, r"optimizer: expected an nnref optimizer"),
    # --- nnref.halfprec -----------------------------------------------------------------------
    ("round_to_format fmt", lambda k: halfprec.round_to_format(k.x, "float8"), V, r"fmt: expected one of"),
    ("round_to_format x str", lambda k: halfprec.round_to_format("x", "float16"), T, r"x: expected a real numeric array"),
    ("unscale grads list", lambda k: halfprec.GradScaler().unscale([np.ones(2)]), T, r"grads: expected a dict"),
    ("scaled_step optimizer None", lambda k: halfprec.scaled_step(None, {}, {}, halfprec.GradScaler()), T,
     r"optimizer: expected an optimizer with a step"),
    ("scaled_step grads keys", lambda k: halfprec.scaled_step(SGD(0.1), dict(k.model.params), {"W1": 1}, halfprec.GradScaler()),
     T, r"scaled_grads: expected a dict with the keys of params"),
    ("scaled_step transform nan", lambda k: halfprec.scaled_step(
        SGD(0.1), {n: v.copy() for n, v in k.model.params.items()}, {n: np.zeros_like(v) for n, v in k.model.params.items()},
        halfprec.GradScaler(), lambda g, p: {n: np.full_like(v, np.nan) for n, v in g.items()}), V,
     r"grad_transform: returned grads\['W1'\]: expected finite values"),
    ("fit_half optimizer None", lambda k: halfprec.fit_half(k.model, None, k.x, k.y, 1, 30), T, r"optimizer: expected"),
    ("fit_half transform str", lambda k: halfprec.fit_half(k.model, SGD(0.1), k.x, k.y, 1, 30, grad_transform="clip"), T,
     r"grad_transform: expected a callable"),
    ("fit_half x 1e300", lambda k: halfprec.fit_half(k.model, SGD(0.1), np.full((60, 2), 1e300), k.y, 1, 30), V,
     r"x: expected values within the model's float32 range"),
    ("fit_half fmt", lambda k: halfprec.fit_half(k.model, SGD(0.1), k.x, k.y, 1, 30, fmt="half"), V, r"fmt: expected one of"),
    ("GradScaler init_scale 0", lambda k: halfprec.GradScaler(init_scale=0), V, r"init_scale"),
    # --- nnref.quant.sensitivity ----------------------------------------------------------------
    ("layer_statistics scheme", lambda k: sensitivity.layer_statistics(k.model, weight_scheme="int8"), V,
     r"weight_scheme: expected one of"),
    ("layer_statistics scheme None", lambda k: sensitivity.layer_statistics(k.model, weight_scheme=None), T,
     r"weight_scheme: expected a QScheme"),
    ("bits_from_statistics nan", lambda k: sensitivity.bits_from_statistics(k.model, float("nan")), V,
     r"target_db: expected a finite number"),
    ("bits_from_statistics str", lambda k: sensitivity.bits_from_statistics(k.model, "20"), T, r"target_db: expected a real"),
    ("layer_sensitivity x wide", lambda k: sensitivity.layer_sensitivity(k.model, np.zeros((4, 3)), k.y[:4]), V,
     r"x: expected 2 features"),
    ("layer_sensitivity x 1e300", lambda k: sensitivity.layer_sensitivity(k.model, np.full((4, 2), 1e300), k.y[:4]), V,
     r"x: expected values within"),
    ("quantize_model_mixed bits", lambda k: sensitivity.quantize_model_mixed(k.model, k.x, (4, 9)), V, r"bits"),
    ("choose_bit_widths no budget", lambda k: sensitivity.choose_bit_widths(k.model, k.x, k.y), V, r"size_budget"),
    # --- nnref.quant.binary -----------------------------------------------------------------
    ("binary_size_bytes None", lambda k: binary.binary_size_bytes(None), T, r"model: expected an nnref MLP"),
    ("binary_layer_forward floats", lambda k: binary.binary_layer_forward(np.ones((2, 9)), binary.BinaryLinear(9, 3)), T,
     r"x_sign: expected an integer array"),
    ("BinaryLinear mode", lambda k: binary.BinaryLinear(4, 3, mode="quaternary"), V, r"mode: expected 'binary' or 'ternary'"),
    ("binarize_mlp too shallow", lambda k: binary.binarize_mlp(k.model), V, r"model: expected at least 3 Linear layers"),
    # --- nnref.quant.equalize, bias_correction, adaround, lsq, layerwise ----------------------
    ("cross_layer_equalization str", lambda k: equalize.cross_layer_equalization("m"), T, r"model"),
    ("absorb_high_biases x nan", lambda k: equalize.absorb_high_biases(k.model, np.full((3, 2), np.nan)), V,
     r"calibration_x: expected finite values"),
    ("absorb_high_biases n_std -1", lambda k: equalize.absorb_high_biases(k.model, k.x, n_std=-1), V,
     r"n_std: expected a number >= 0"),
    ("empirical_bias_correction x wide", lambda k: bias_correction.empirical_bias_correction(k.model, k.weights, k.x[:, :1]),
     V, r"calibration_x: expected 2 features"),
    ("empirical_bias_correction weights", lambda k: bias_correction.empirical_bias_correction(k.model, k.weights[:1], k.x),
     V, r"weights"),
    ("mean_output_errors quantized", lambda k: bias_correction.mean_output_errors(k.model, k.qmodel, k.x), T,
     r"quantized: expected an MLP of model's layer sizes"),
    ("preactivation_statistics model", lambda k: bias_correction.preactivation_statistics(None, k.x), T,
     r"model: expected an nnref MLP"),
    ("adaround x 1e300", lambda k: adaround.adaround(k.model, np.full((4, 2), 1e300), bits=4, iterations=2), V,
     r"calibration_x: expected values within"),
    ("adaround bits 9", lambda k: adaround.adaround(k.model, k.x, bits=9, iterations=2), V, r"bits: expected an integer"),
    ("LSQActivation step nan", lambda k: lsq.LSQActivation(4, float("nan")), V, r"step: expected a finite number"),
    ("LSQActivation step list", lambda k: lsq.LSQActivation(4, [0.1]), T, r"step: expected a real number"),
    ("PACTActivation alpha 0", lambda k: lsq.PACTActivation(4, 0.0), V, r"alpha: expected a number > 0"),
    ("PACTActivation alpha 1e39", lambda k: lsq.PACTActivation(4, 1e39), V, r"alpha: expected a number within float32"),
    ("prepare_lsq dead layer", lambda k: lsq.prepare_lsq(_dead_first_layer(), np.zeros((4, 2))), V,
     r"calibration_x: every activation after Linear layer 1 is 0"),
    ("weight_qparams method", lambda k: layerwise.weight_qparams(k.model.params["W1"], method="max"), V, r"method"),
    ("weight_qparams W 1e200", lambda k: layerwise.weight_qparams(np.full((2, 2), 1e200)), V, r"W: expected values within float32"),
    ("adaround_layer x_hat 1e200", lambda k: adaround.adaround_layer(
        k.model.params["W1"], k.model.params["b1"], np.full((3, 2), 1e200), np.zeros((3, 8)), k.weights[0][1],
        iterations=2), V, r"x_hat: expected values within float32"),
    ("check_weight_scheme int", lambda k: layerwise.check_weight_scheme(8, 4), T, r"weight_scheme: expected a QScheme"),
    ("layer_inputs model str", lambda k: layerwise.layer_inputs("m", k.x), T, r"model: expected an nnref MLP"),
    # --- plots of the recipe -------------------------------------------------------------------
    ("plot_layer_sqnr empty", lambda k: ptq_plots.plot_layer_sqnr({}), T, r"sqnr: expected a non-empty dict"),
    ("plot_layer_sqnr nan", lambda k: ptq_plots.plot_layer_sqnr({"rtn": [1.0, float("nan")]}), V,
     r"sqnr\['rtn'\]: expected numbers or \+inf"),
    ("plot_layer_sqnr ax", lambda k: ptq_plots.plot_layer_sqnr({"rtn": [1.0]}, ax="left"), T, r"ax: expected a matplotlib Axes"),
    ("plot_equalized_ranges pair", lambda k: ptq_plots.plot_equalized_ranges(k.model, k.model, pair=1), V,
     r"pair: expected an integer in \[0, 0\]"),
    ("plot_equalized_ranges after", lambda k: ptq_plots.plot_equalized_ranges(k.model, MLP([2, 3])), T,
     r"after: expected an MLP of before's layer sizes"),
    ("plot_channel_bias list", lambda k: ptq_plots.plot_channel_bias([1.0]), T, r"errors: expected a non-empty dict"),
    ("plot_channel_bias title", lambda k: ptq_plots.plot_channel_bias({"a": [1.0]}, title=3), T, r"title: expected a str"),
    ("plot_loss_scale zero", lambda k: plots_recipe.plot_loss_scale([1.0, 0.0], [False, False]), V, r"scales: expected loss scales > 0"),
    ("plot_loss_scale skipped int", lambda k: plots_recipe.plot_loss_scale([1.0], [0]), T, r"skipped: expected a sequence"),
    ("plot_centroids nan", lambda k: plots_recipe.plot_centroids([1.0, np.nan], [0.0]), V, r"weights: expected finite values"),
    ("plot_centroids bins 0", lambda k: plots_recipe.plot_centroids([1.0], [0.0], bins=0), V, r"bins: expected an integer"),
    ("plot_binary_weights alpha array", lambda k: plots_recipe.plot_binary_weights([1.0, -1.0], np.ones(2)), T,
     r"alpha: expected a real number"),
    ("plot_sparsity_by_layer masks", lambda k: plots_recipe.plot_sparsity_by_layer({"a": k.masks, "b": [1]}), T,
     r"masks_by_label\['b'\]: expected a dict"),
    ("plot_sensitivity ax", lambda k: plots_recipe.plot_sensitivity(
        sensitivity.layer_sensitivity(k.model, k.x, k.y, bits=(4,)), ax=1), T, r"ax: expected a matplotlib Axes"),
    # --- nnref.laws and nnref.course -----------------------------------------------------------
    ("laws.reference unknown", lambda k: laws.reference("relu"), V, r"name: expected one of"),
    ("laws.reference int", lambda k: laws.reference(3), T, r"name: expected a str"),
    ("laws.check max_examples 0", lambda k: laws.check("relu_backward", np.abs, max_examples=0), V,
     r"max_examples: expected an integer in \[1"),
    ("laws.check max_examples float", lambda k: laws.check("relu_backward", np.abs, max_examples=2.5), T,
     r"max_examples: expected an integer"),
    ("course.parse_percent bytes", lambda k: course.parse_percent(b"# %%"), T, r"text: expected the script as a str"),
    ("course.notebook_code list", lambda k: course.notebook_code([]), T, r"nb: expected a notebook dict"),
    ("course.stub_source unknown", lambda k: course.stub_source("relu"), V, r"name: expected one of"),
    ("course.write_exercises under a file", lambda k: course.write_exercises(k.tmp / "a-file" / "ex"), V,
     r"out_dir: expected a folder"),
    ("course.write_exercises empty source", lambda k: course.write_exercises(k.tmp / "ex", k.tmp / "empty"), V,
     r"source_dir: expected tutorials named NN_name\.py"),
    ("course.write_tutorial_notebooks int", lambda k: course.write_tutorial_notebooks(3), T, r"source_dir: expected a str"),
    ("course.grade txt", lambda k: course.grade(k.tmp / "notes.txt"), V, r"path: expected a \.py or \.ipynb file"),
    ("course.grade missing", lambda k: course.grade(k.tmp / "missing.py"), F, r"missing\.py: no such file"),
    ("course.grade max_examples", lambda k: course.grade(k.tmp / "notes.txt", max_examples=-1), V, r"max_examples"),
    # --- the command line's counts --------------------------------------------------------------
    ("cli positive_int huge", lambda k: cli.positive_int("100000000000"), argparse.ArgumentTypeError,
     r"expected an integer in \[1, 1000000000\]"),
    ("check empty folder", lambda k: cli.prepare_check(argparse.Namespace(path=str(k.tmp / "empty"), max_examples=None)), V,
     r"path: expected a student's \.py or \.ipynb"),
    ("notebooks --tutorials empty", lambda k: cli.prepare_notebooks(argparse.Namespace(tutorials=str(k.tmp / "empty"))), V,
     r"--tutorials: expected an existing folder of tutorials"),
]


def test_the_table_is_large_and_its_ids_unique():
    ids = [row[0] for row in ROWS]
    assert len(ids) == len(set(ids))
    assert len(ROWS) >= 150


@pytest.mark.parametrize("name, call, exc_type, fragment", ROWS, ids=[row[0] for row in ROWS])
def test_bad_input_is_refused_naming_it(kit, name, call, exc_type, fragment):
    with pytest.raises(exc_type) as info:
        call(kit)
    # Exactly the documented kind: a TypeError row must not pass on a ValueError subclass
    # of something else, and no raw numpy error hides behind a generic Exception.
    assert isinstance(info.value, exc_type)
    assert re.search(fragment, str(info.value)), f"{name}: {info.value!s}"
