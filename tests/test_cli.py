"""The command line refuses every bad argument before any work: one line
``nnref: error: ...`` on stderr, exit status 2, no traceback; and new commands are one
row of its table."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nnref import cli
from nnref.idx import write_idx
from nnref.pipeline import TrainingDiverged

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if training (fit) or the main job (run) starts."""
    def started(*args, **kwargs):
        raise AssertionError("work started before the arguments were all checked")

    monkeypatch.setattr(cli, "fit", started)
    monkeypatch.setattr(cli, "run", started)


def refused(argv, capsys) -> str:
    """Run the command line in-process; return its one error line (exit status 2)."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("nnref: error: ") and err.endswith("\n") and err.count("\n") == 1, err
    return err


def _mnist_dir(folder: Path, corrupt: str | None = None) -> Path:
    rng = np.random.default_rng(0)
    for kind, n in (("train", 30), ("t10k", 10)):
        write_idx(folder / f"{kind}-images-idx3-ubyte", rng.integers(0, 256, (n, 4, 4), dtype=np.uint8))
        write_idx(folder / f"{kind}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8))
    if corrupt:
        path = folder / corrupt
        path.write_bytes(path.read_bytes()[:-3])
    return folder


def _cases(tmp: Path) -> list:
    """(argv, fragment of the error line) for every kind of bad argument."""
    (tmp / "a-file").write_bytes(b"")
    (tmp / "empty").mkdir()
    (tmp / "corrupt").mkdir()
    corrupt = _mnist_dir(tmp / "corrupt", corrupt="t10k-images-idx3-ubyte")
    return [
        (["--seed", "-1"], "argument --seed: expected an integer >= 0, got -1"),
        (["train", "--seed", "-5"], "argument --seed: expected an integer >= 0, got -5"),
        (["--seed", "1.5"], "argument --seed: expected an integer >= 0, got '1.5'"),
        (["--epochs", "0"], "argument --epochs: expected an integer >= 1, got 0"),
        (["train", "--batch-size", "0"], "argument --batch-size: expected an integer >= 1"),
        (["--hidden", "0"], "argument --hidden: expected an integer >= 1, got 0"),
        (["--clip-norm", "nan"], "argument --clip-norm: expected a finite number > 0, got nan"),
        (["train", "--lr", "inf"], "argument --lr: expected a finite number > 0, got inf"),
        (["train", "--lr", "-1"], "argument --lr: expected a finite number > 0"),
        (["--low-bits", "8"], "argument --low-bits: invalid choice"),
        (["--no-such-option"], "unrecognized arguments: --no-such-option"),
        (["no-such-command"], "argument COMMAND: invalid choice: 'no-such-command'"),
        (["--epochs", "3", "train"], "the main job's options cannot come before the command 'train'"),
        (["train", "--save", str(tmp / "missing" / "m.npz")], "--save: expected a file in an existing folder"),
        (["train", "--save", str(tmp)], "--save: expected a file name"),
        (["train", "--save", str(tmp / "a-file" / "m.npz")], "--save: expected a file in an existing folder"),
        (["--out", str(tmp / "a-file")], "--out: expected a folder"),
        (["--out", str(tmp / "a-file" / "figs")], "--out: expected a folder"),
        (["--dataset", "mnist"], "--data-dir: --dataset mnist needs --data-dir DIR"),
        (["train", "--dataset", "mnist"], "--data-dir: --dataset mnist needs --data-dir DIR"),
        (["--dataset", "mnist", "--data-dir", str(tmp / "nowhere")], "--data-dir: expected a folder"),
        (["train", "--dataset", "mnist", "--data-dir", str(tmp / "empty")], "--data-dir: " + str(tmp / "empty")),
        (["train", "--dataset", "mnist", "--data-dir", str(corrupt)], "t10k-images-idx3-ubyte: truncated"),
        (["train", "--data-dir", str(tmp)], "--data-dir: only used with --dataset mnist"),
        (["--hidden", "100000", "100000"], "--hidden 100000 100000: layer sizes [64, 100000, 100000, 10] need"),
        (["train", "--hidden", "100000", "100000"], "--hidden 100000 100000: layer sizes"),
        (["download-mnist", str(tmp / "a-file" / "mnist")], "directory: expected a folder"),
        (["download-mnist"], "the following arguments are required: directory"),
    ]


def test_every_bad_argument_is_one_line_exit_2_before_any_work(tmp_path, capsys, no_work):
    for argv, fragment in _cases(tmp_path):
        err = refused(argv, capsys)
        assert fragment in err, (argv, err)


def test_memory_estimate_is_checked_against_what_the_machine_has(capsys, monkeypatch, no_work):
    monkeypatch.setattr(cli, "available_memory_bytes", lambda: 10_000)
    err = refused(["train", "--hidden", "64", "32"], capsys)
    assert "--hidden 64 32: layer sizes [64, 64, 32, 10] need about" in err and "0.0 GiB of memory available" in err
    # The estimate: 4 copies of the parameters + 3 arrays per layer for the largest batch.
    params = 65 * 64 + 65 * 32 + 33 * 10
    assert cli.training_memory_bytes([64, 64, 32, 10], 4096, 4) == 4 * 4 * params + 3 * 4 * 4096 * 170
    assert cli.available_memory_bytes() == 10_000
    monkeypatch.undo()
    have = cli.available_memory_bytes()
    assert have is None or have > 2**20, "a real machine has more than a megabyte"


def test_options_are_named_for_pipeline_settings(capsys, no_work):
    # PipelineConfig's own checks come back under the option's name.
    err = refused(["--hidden", "64", "2000000"], capsys)
    assert err == "nnref: error: --hidden: expected an integer in [1, 1000000], got 2000000\n"


@pytest.mark.parametrize("argv, fragment", [
    (["--seed", "-1"], "argument --seed"),
    (["train", "--epochs", "1", "--save", "/nonexistent-nnref-folder/m.npz"], "--save"),
])
def test_errors_as_a_user_sees_them_in_a_shell(argv, fragment):
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, "-m", "nnref", *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("nnref: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert fragment in proc.stderr and "Traceback" not in proc.stderr


def test_a_new_command_is_one_row_of_the_table(monkeypatch, capsys):
    calls = []

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--level", type=cli.positive_int, default=1)

    def prepare(args):
        if args.level > 3:
            raise ValueError(f"--level: expected at most 3, got {args.level}")
        return args.level

    def run(job):
        calls.append(job)
        return 0

    monkeypatch.setitem(cli.COMMANDS, "exercises", cli.Command("the course's exercises", add_arguments, prepare, run))
    assert cli.main(["exercises", "--level", "2"]) == 0 and calls == [2]
    assert "--level: expected at most 3, got 4" in refused(["exercises", "--level", "4"], capsys)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    assert "exercises" in capsys.readouterr().out and calls == [2]


def test_download_failure_is_one_line_exit_1(tmp_path, capsys, monkeypatch):
    def offline(directory):
        raise OSError("download_mnist: could not download http://example.invalid/x: offline")

    monkeypatch.setattr(cli, "download_mnist", offline)
    assert cli.main(["download-mnist", str(tmp_path / "m")]) == 1
    err = capsys.readouterr().err
    assert err == "nnref: error: download_mnist: could not download http://example.invalid/x: offline\n"


def test_a_diverged_main_job_is_one_line_exit_1(capsys, monkeypatch):
    def diverge(cfg, data):
        raise TrainingDiverged("training diverged: non-finite loss at epoch 1, step 3")

    monkeypatch.setattr(cli, "run", diverge)
    assert cli.main(["--epochs", "1", "--no-figures", "--quiet"]) == 1
    assert capsys.readouterr().err == "nnref: error: training diverged: non-finite loss at epoch 1, step 3\n"
