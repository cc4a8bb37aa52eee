"""Bad inputs across the public API, one row each: the call, the exception it must raise
and a fragment of the message, which names the argument (or, for a file, the file).

A row is ``(id, call, exception type, fragment)``; ``call`` takes a :class:`Kit` of
ready-made valid objects and a temporary folder, so each row changes exactly one thing
from a valid call. The fragment is a regular expression searched in the message.
"""

from __future__ import annotations

import argparse
import gzip
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

from nnref import cli, clip, pipeline, plots  # noqa: E402
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
from nnref.train import History, fit  # noqa: E402


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
    yield Kit(tmp, x, y, model, qmodel, history, fig, ax, grads)
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
]


def test_the_table_is_large_and_its_ids_unique():
    ids = [row[0] for row in ROWS]
    assert len(ids) == len(set(ids))
    assert len(ROWS) >= 80


@pytest.mark.parametrize("name, call, exc_type, fragment", ROWS, ids=[row[0] for row in ROWS])
def test_bad_input_is_refused_naming_it(kit, name, call, exc_type, fragment):
    with pytest.raises(exc_type) as info:
        call(kit)
    # Exactly the documented kind: a TypeError row must not pass on a ValueError subclass
    # of something else, and no raw numpy error hides behind a generic Exception.
    assert isinstance(info.value, exc_type)
    assert re.search(fragment, str(info.value)), f"{name}: {info.value!s}"
