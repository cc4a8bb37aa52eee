"""The main command (``python -m nnref``) and the ``train`` sub-command, end to end."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nnref import cli
from nnref.data import write_idx
from nnref.pipeline import PipelineConfig, report, run

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def default_run():
    """The documented run (defaults), without figures: what `python -m nnref` computes."""
    cfg = PipelineConfig(figures=False, verbose=False)
    return cfg, run(cfg)


def test_default_run_int8_within_one_point_of_float32(default_run):
    _, res = default_run
    f32 = res.row("float32")["accuracy"]
    assert f32 >= 0.96
    assert abs(res.row("int8 PTQ per-channel")["accuracy"] - f32) <= 0.01


def test_default_run_qat_recovers_at_least_half_of_the_two_bit_loss(default_run):
    _, res = default_run
    f32 = res.row("float32")["accuracy"]
    ptq = res.row("int2 PTQ per-channel")["accuracy"]
    qat = res.row("int2 QAT per-channel")["accuracy"]
    assert f32 - ptq > 0.10, "2-bit post-training quantization should lose tens of points"
    assert qat - ptq >= 0.5 * (f32 - ptq)


def test_default_run_sizes_shrink_and_clipping_is_recorded(default_run):
    cfg, res = default_run
    sizes = [r["bytes"] for r in res.rows]
    assert sizes[0] == 2 * sizes[1], "float16 is half of float32"
    assert res.row("int8 PTQ per-channel")["bytes"] < sizes[1]
    assert res.row("int2 PTQ per-channel")["bytes"] < res.row("int8 PTQ per-channel")["bytes"]
    c = res.clip
    assert c["steps"] > 0 and 0 <= c["clipped"] <= c["steps"]
    assert c["fraction"] == pytest.approx(c["clipped"] / c["steps"])
    text = report(res, cfg)
    for name in ("float32", "float16", "int8 PTQ per-channel", "int2 QAT per-channel", "clipping:"):
        assert name in text


def test_main_command_runs_end_to_end_and_writes_figures(tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, "-m", "nnref", "--epochs", "3", "--qat-epochs", "1", "--out", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert re.search(r"^\[1/5\] training", out, flags=re.M), "progress is shown"
    assert re.search(r"^float32\s+float32\s+float32\s+\d+\.\d\d", out, flags=re.M), "the table is printed"
    assert "int8 PTQ per-channel" in out and "done in" in out
    written = sorted(p.name for p in tmp_path.glob("*.png"))
    assert "main_grad_norms.png" in written and "main_training_curves.png" in written
    assert any(name.startswith("main_weight_histograms") for name in written)
    committed = {p.name for p in (ROOT / "figures").glob("main_*.png")}
    assert set(written) == committed, "figures/ holds exactly what the main command writes (regenerate it)"


def _fake_mnist(directory: Path, n_train=300, n_test=100, seed=0):
    """Small MNIST-format files: class k is a bright k-th row band plus noise (learnable)."""
    rng = np.random.default_rng(seed)
    for (kind, n) in (("train", n_train), ("t10k", n_test)):
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, k in enumerate(y):
            x[i, 2 + 2 * k: 4 + 2 * k, :] = 250
        write_idx(directory / f"{kind}-images-idx3-ubyte.gz", x)
        write_idx(directory / f"{kind}-labels-idx1-ubyte.gz", y)


def test_main_command_on_mnist_files(tmp_path, capsys):
    _fake_mnist(tmp_path)
    assert cli.main(["--dataset", "mnist", "--data-dir", str(tmp_path), "--epochs", "3",
                     "--qat-epochs", "1", "--no-figures", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "Results on mnist test set" in out
    f32 = float(re.search(r"^float32\s+float32\s+float32\s+(\d+\.\d\d)", out, flags=re.M).group(1))
    assert f32 > 90.0, "the synthetic bands are easy to learn"


def test_mnist_without_data_dir_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--dataset", "mnist", "--no-figures", "--quiet"])
    assert "--data-dir" in capsys.readouterr().err


@pytest.mark.parametrize("option", [["--clip-norm", "0"], ["--epochs", "0"], ["--qat-epochs", "-1"],
                                    ["--low-bits", "8"], ["--hidden", "0"]])
def test_bad_options_are_refused_before_any_work(option, capsys):
    with pytest.raises(SystemExit):
        cli.main([*option, "--no-figures", "--quiet"])
    assert option[0] in capsys.readouterr().err


def test_config_is_checked_naming_the_setting():
    with pytest.raises(ValueError, match="calibration_size"):
        PipelineConfig(calibration_size=0)
    with pytest.raises(ValueError, match="dataset"):
        PipelineConfig(dataset="foo")


def test_train_subcommand_prints_accuracy_and_saves(tmp_path, capsys):
    path = tmp_path / "m.npz"
    assert cli.main(["train", "--epochs", "5", "--seed", "0", "--save", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.count("epoch") >= 5 and "test accuracy:" in out
    from nnref.mlp import MLP

    assert MLP.load(path).layer_sizes == [64, 64, 32, 10]


def test_unknown_option_exits_with_usage():
    with pytest.raises(SystemExit):
        cli.main(["--no-such-option"])
