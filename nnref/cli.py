"""The command line: ``python -m nnref [COMMAND] [OPTIONS]``.

Commands (``python -m nnref [COMMAND] --help`` lists each one's options):

``python -m nnref [--out DIR] [--dataset mnist --data-dir DIR] ...``
    the main job (no command name): train with clipping, quantize, run integer-only
    inference, fine-tune a low-bit model; print a results table, write figures
    (:mod:`nnref.pipeline`);
``python -m nnref train --dataset digits --hidden 64 32 --epochs 30 --seed 0 [--save m.npz]``
    train one MLP and print its test accuracy;
``python -m nnref download-mnist DIR``
    download and verify the four MNIST files;
``python -m nnref compare MODEL --data digits``
    where an engine's int8 values differ from nnref's, and which rounding explains them
    (needs the optional extra ``interop``; see :mod:`nnref.interop`);
``python -m nnref exercises --out DIR``
    write the student versions of the tutorials (.py and .ipynb; :mod:`nnref.course`);
``python -m nnref check PATH``
    grade a student's file or folder of exercises with :mod:`nnref.laws`;
``python -m nnref notebooks``
    regenerate ``tutorials/*.ipynb`` from the ``.py`` tutorials.

Every command runs in two phases. ``prepare`` checks every argument (paths writable,
seeds non-negative, data present and readable, sizes within the machine's memory) and
loads what the job needs; ``run`` does the work. Any ``ValueError``, ``TypeError`` or
``OSError`` in the first phase is reported as one line ``nnref: error: ...`` on stderr
with exit status 2, so nothing is lost to a bad argument after hours of training.

Adding a command
----------------
Write three functions in your own module (which must not import :mod:`nnref.cli`), then
import them here and add one row to :data:`COMMANDS`::

    # nnref/exercises.py
    def add_arguments(parser: argparse.ArgumentParser) -> None: ...  # parser.add_argument(...)
    def prepare(args: argparse.Namespace) -> object: ...  # check everything, load what run
                                                          # needs; raise ValueError("--opt: ...")
    def run(job: object) -> int: ...                      # the work; returns the exit status

    # nnref/cli.py
    from . import exercises
    COMMANDS = {..., "exercises": Command("one-line help", exercises.add_arguments,
                                          exercises.prepare, exercises.run)}
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import clip, course
from ._files import check_writable_dir, check_writable_file
from .data import DATASETS, download_mnist, load_dataset
from .mlp import MLP
from .optim import SGD, Adam
from .pipeline import MAX_SEED, PipelineConfig, TrainingDiverged, report, run
from .plots import figures_dir
from .train import fit

__all__ = [
    "COMMANDS",
    "MAIN",
    "MAX_COUNT",
    "Command",
    "available_memory_bytes",
    "build_parser",
    "check_memory",
    "load_dataset",
    "main",
    "nonnegative_int",
    "positive_float",
    "positive_int",
    "training_memory_bytes",
]


@dataclass(frozen=True)
class Command:
    """One command of the command line.

    Attributes
    ----------
    help : str
        One line for ``python -m nnref --help``.
    add_arguments : callable
        ``add_arguments(parser)`` adds the command's options to its ``argparse`` parser.
    prepare : callable
        ``prepare(args) -> job`` checks every argument and loads what the work needs,
        raising ``ValueError``/``TypeError``/``OSError`` whose message names the option.
    run : callable
        ``run(job) -> int`` does the work and returns the exit status.
    """

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    prepare: Callable[[argparse.Namespace], object]
    run: Callable[[object], int]


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, ``nnref: error: ...``, exit status 2."""

    def error(self, message: str):
        """Print ``nnref: error: <message>`` (on one line) to stderr and exit with status 2."""
        self.exit(2, f"nnref: error: {' '.join(str(message).split())}\n")


# --------------------------------------------------------------------------------------
# Argument types and checks
# --------------------------------------------------------------------------------------


def _integer(text: str, lo: int, what: str) -> int:
    """``int(text)`` if it is an integer >= ``lo``; else an ArgumentTypeError saying ``what`` was expected."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < lo:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return value


#: The largest count an option takes (epochs, batch size, a layer's width), as ``fit`` and
#: :class:`~nnref.pipeline.PipelineConfig` bound them.
MAX_COUNT = 10**9


def positive_int(text: str) -> int:
    """argparse type: an integer in ``[1, MAX_COUNT]``; else an ``argparse.ArgumentTypeError``."""
    value = _integer(text, 1, "an integer >= 1")
    if value > MAX_COUNT:
        raise argparse.ArgumentTypeError(f"expected an integer in [1, {MAX_COUNT}], got {value}")
    return value


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0 (seeds); else an ``argparse.ArgumentTypeError``."""
    value = _integer(text, 0, "an integer >= 0")
    if value > MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, {MAX_SEED}], got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0; else an ``argparse.ArgumentTypeError``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def training_memory_bytes(layer_sizes, n_rows: int, copies: int, itemsize: int = 4) -> int:
    """A rough upper estimate of the memory a training run needs, in bytes.

    ``copies * itemsize * P + 3 * itemsize * n_rows * sum(layer_sizes)``: ``P`` parameters
    held ``copies`` times (weights, gradients, optimizer state, quantized or QAT copies),
    plus each layer's input, output and gradient for ``n_rows`` rows at a time (the
    largest batch: evaluation and accuracy work on up to a whole test set). The data
    themselves are not counted (they are loaded before this is asked).

    Parameters
    ----------
    layer_sizes : sequence of int
        ``[in, hidden..., out]``.
    n_rows : int
        The most rows pushed through the model at once.
    copies : int
        How many arrays the size of the parameters the job keeps.
    itemsize : int, default 4
        Bytes per number (float32).

    Returns
    -------
    int
    """
    params = sum((a + 1) * b for a, b in zip(layer_sizes[:-1], layer_sizes[1:]))
    return copies * itemsize * params + 3 * itemsize * n_rows * sum(layer_sizes)


def _cgroup_limit() -> int | None:
    """The memory a Linux container may still use (cgroup v2), or None."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(int(limit) - used, 0)


def available_memory_bytes() -> int | None:
    """The memory this process can still use, as far as the system says, or None.

    Linux: ``MemAvailable`` of ``/proc/meminfo``, capped by the container's cgroup
    limit; elsewhere the physical memory (``os.sysconf``); None when unknown.

    Returns
    -------
    int or None
    """
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (AttributeError, ValueError, OSError):
            pass
    limit = _cgroup_limit()
    if limit is not None:
        found.append(limit)
    return min(found) if found else None


def check_memory(layer_sizes, n_rows: int, copies: int, option: str) -> None:
    """Refuse a model the machine cannot hold, before any work.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``[in, hidden..., out]``.
    n_rows : int
        The most rows pushed through the model at once.
    copies : int
        Parameter-sized arrays the job keeps (see :func:`training_memory_bytes`).
    option : str
        What to blame, e.g. ``"--hidden 100000 100000"``.

    Raises
    ------
    ValueError
        When :func:`training_memory_bytes` exceeds :func:`available_memory_bytes`.
    """
    need, have = training_memory_bytes(layer_sizes, n_rows, copies), available_memory_bytes()
    if have is not None and need > have:
        raise ValueError(f"{option}: layer sizes {list(layer_sizes)} need about {need / 2**30:.1f} GiB "
                         f"(parameters, gradients, optimizer state and activations), more than the "
                         f"{have / 2**30:.1f} GiB of memory available")


def _data(dataset: str, data_dir, seed: int) -> tuple:
    """The data set, loaded in the prepare phase; errors name ``--data-dir``/``--dataset``."""
    if dataset == "mnist" and data_dir is None:
        raise ValueError("--data-dir: --dataset mnist needs --data-dir DIR holding the four MNIST IDX "
                         "files (python -m nnref download-mnist DIR fetches them)")
    if dataset != "mnist" and data_dir is not None:
        raise ValueError(f"--data-dir: only used with --dataset mnist, got --dataset {dataset}")
    if data_dir is not None and not Path(data_dir).is_dir():
        raise ValueError(f"--data-dir: expected a folder holding the four MNIST IDX files, got {data_dir!r} "
                         "(no such folder; python -m nnref download-mnist DIR fetches them)")
    try:
        return load_dataset(dataset, data_dir, seed)
    except (ValueError, OSError) as exc:
        raise ValueError(f"--data-dir: {exc}") from None


def _eval_rows(data: tuple, batch_size: int) -> int:
    """The most rows pushed through a model at once: a batch, an evaluation batch, or the test set.

    A batch is at most the training set; ``fit`` evaluates in batches of up to 4096;
    ``accuracy`` takes a whole test set at once.
    """
    n_train, n_test = len(data[0]), len(data[1])
    return max(min(batch_size, n_train), min(4096, n_train), n_test)


# --------------------------------------------------------------------------------------
# The main job
# --------------------------------------------------------------------------------------


def add_main_arguments(p: argparse.ArgumentParser) -> None:
    """The main job's options (on the top-level parser: no command name)."""
    d = PipelineConfig()
    p.add_argument("--dataset", default=d.dataset, choices=["digits", "mnist"])
    p.add_argument("--data-dir", default=None, help="folder with the four MNIST IDX files (--dataset mnist)")
    p.add_argument("--out", default=None,
                   help="figures folder (default: $NNREF_FIGURES_DIR, else the figures/ of the nnref "
                        "checkout holding the current folder, else ./figures)")
    p.add_argument("--hidden", type=positive_int, nargs="+", default=list(d.hidden), help="hidden layer widths")
    p.add_argument("--epochs", type=positive_int, default=d.epochs)
    p.add_argument("--qat-epochs", type=positive_int, default=d.qat_epochs)
    p.add_argument("--clip-norm", type=positive_float, default=d.clip_norm)
    p.add_argument("--low-bits", type=int, default=d.low_bits, choices=range(2, 8), metavar="{2..7}")
    p.add_argument("--seed", type=nonnegative_int, default=d.seed)
    p.add_argument("--no-figures", action="store_true", help="skip writing figures")
    p.add_argument("--quiet", action="store_true", help="no progress lines, only the report")


def prepare_main(args: argparse.Namespace) -> tuple:
    """Check the main job's options, load its data: ``(PipelineConfig, data)``.

    Raises
    ------
    ValueError
        Naming the option: a setting :class:`~nnref.pipeline.PipelineConfig` refuses, an
        unwritable ``--out``, missing or unreadable MNIST files, a model too large.
    """
    try:
        cfg = PipelineConfig(dataset=args.dataset, data_dir=args.data_dir, out=args.out,
                             hidden=tuple(args.hidden), epochs=args.epochs, qat_epochs=args.qat_epochs,
                             clip_norm=args.clip_norm, low_bits=args.low_bits, seed=args.seed,
                             figures=not args.no_figures, verbose=not args.quiet)
    except (ValueError, TypeError) as exc:
        # The message starts with the setting's name; the option is that name with dashes.
        setting, _, rest = str(exc).partition(": ")
        raise ValueError(f"--{setting.replace('_', '-')}: {rest}") from None
    if cfg.figures:
        check_writable_dir(cfg.out if cfg.out else figures_dir(create=False), "--out")
    data = _data(cfg.dataset, cfg.data_dir, cfg.seed)
    sizes = [data[0].shape[1], *cfg.hidden, int(max(data[2].max(), data[3].max())) + 1]
    # Float model, gradients, momentum; QAT: weights, gradients, two Adam moments, fake
    # quantized copies; the quantized and float16 models.
    check_memory(sizes, _eval_rows(data, cfg.batch_size), 10, "--hidden " + " ".join(map(str, cfg.hidden)))
    return cfg, data


def run_main(job: tuple) -> int:
    """Run the main job and print its report.

    Returns
    -------
    int
        0, or 1 (after one line on stderr) if the float training diverged.
    """
    cfg, data = job
    try:
        res = run(cfg, data)
    except TrainingDiverged as exc:
        print(f"nnref: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print(report(res, cfg))
    return 0


# --------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------


def add_train_arguments(t: argparse.ArgumentParser) -> None:
    """``train``'s options."""
    t.add_argument("--dataset", default="digits", choices=list(DATASETS))
    t.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files (--dataset mnist)")
    t.add_argument("--hidden", type=positive_int, nargs="*", default=[64, 32], help="hidden layer widths")
    t.add_argument("--activation", default="relu", choices=["relu", "leaky_relu", "tanh", "sigmoid"])
    t.add_argument("--epochs", type=positive_int, default=30)
    t.add_argument("--batch-size", type=positive_int, default=32)
    t.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    t.add_argument("--lr", type=positive_float, default=None, help="default 0.1 (SGD, momentum 0.9) or 1e-3 (Adam)")
    t.add_argument("--clip-norm", type=positive_float, default=None, help="clip gradients by global L2 norm")
    t.add_argument("--seed", type=nonnegative_int, default=0)
    t.add_argument("--save", default=None, help="write the trained model to this .npz file")


def prepare_train(args: argparse.Namespace) -> tuple:
    """Check ``train``'s options (``--save`` writable first), load the data: ``(args, data)``.

    Raises
    ------
    ValueError
        Naming the option.
    """
    if args.save is not None:
        check_writable_file(args.save, "--save")
    data = _data(args.dataset, args.data_dir, args.seed)
    sizes = [data[0].shape[1], *args.hidden, int(max(data[2].max(), data[3].max())) + 1]
    # Weights, gradients, up to two optimizer moments.
    check_memory(sizes, _eval_rows(data, args.batch_size), 4, "--hidden " + " ".join(map(str, args.hidden)))
    return args, data


def run_train(job: tuple) -> int:
    """Train one MLP, print its test accuracy, save it if asked.

    Returns
    -------
    int
        0, or 1 if training diverged.
    """
    args, (x_tr, x_te, y_tr, y_te) = job
    sizes = [x_tr.shape[1], *args.hidden, int(max(y_tr.max(), y_te.max())) + 1]
    model = MLP(sizes, activation=args.activation, seed=args.seed)
    if args.optimizer == "adam":
        opt = Adam(lr=1e-3 if args.lr is None else args.lr)
    else:
        opt = SGD(lr=0.1 if args.lr is None else args.lr, momentum=0.9)
    transform = None if args.clip_norm is None else clip.GlobalNorm(args.clip_norm)
    print(f"training {model} on {args.dataset} ({len(x_tr)} train / {len(x_te)} test) with {opt}"
          + (f", {transform}" if transform else ""))
    t0 = time.perf_counter()
    hist = fit(model, opt, x_tr, y_tr, epochs=args.epochs, batch_size=args.batch_size,
               seed=args.seed, validation=(x_te, y_te), grad_transform=transform)
    acc = model.accuracy(x_te, y_te)
    print(f"test accuracy: {100 * acc:.2f}% (trained in {time.perf_counter() - t0:.2f} s)")
    if hist.diverged:
        print(f"warning: {hist.message}", file=sys.stderr)
    if args.save:
        model.save(args.save)
        print(f"saved to {args.save}")
    return 1 if hist.diverged else 0


# --------------------------------------------------------------------------------------
# download-mnist
# --------------------------------------------------------------------------------------


def add_download_arguments(d: argparse.ArgumentParser) -> None:
    """``download-mnist``'s one argument."""
    d.add_argument("directory", help="folder for the four .gz files (created if missing)")


def prepare_download(args: argparse.Namespace) -> Path:
    """Check that files can be written in ``directory``."""
    return check_writable_dir(args.directory, "directory")


def run_download(directory: Path) -> int:
    """Download and verify the files.

    Returns
    -------
    int
        0, or 1 (after one line on stderr) if the network or a checksum failed.
    """
    try:
        path = download_mnist(directory)
    except (OSError, ValueError) as exc:
        print(f"nnref: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print(f"MNIST files in {path}")
    return 0


def add_compare_arguments(c: argparse.ArgumentParser) -> None:
    """Options of ``compare`` (the engine check of :mod:`nnref.interop`)."""
    c.add_argument("model", help="a .tflite file (int8 MLP) or an .onnx file written by nnref.interop.to_onnx")
    c.add_argument("--data", default="digits", choices=["digits"],
                   help="the inputs: every image of the UCI digits (1,797)")
    c.add_argument("--engine", default="all",
                   help="the engine path (default: every path that runs the file; see nnref.interop.ENGINES)")
    c.add_argument("--details", type=nonnegative_int, default=8, help="differing values to detail per report")


def prepare_compare(args: argparse.Namespace) -> tuple:
    """Check that the optional extra is installed, the model file exists and the engine is known.

    The extra is imported here, not at the top, so that the rest of the command line works
    (and starts fast) without it.
    """
    try:
        interop_cli = importlib.import_module("nnref.interop.cli")
    except ImportError as exc:
        raise ValueError(f"compare: {exc}") from None
    if not Path(args.model).is_file():
        raise ValueError(f"model: expected an existing .tflite or .onnx file, got {args.model!r}")
    if args.engine != "all" and args.engine not in interop_cli.ENGINES:
        raise ValueError(f"--engine: expected 'all' or one of {list(interop_cli.ENGINES)}, got {args.engine!r}")
    return interop_cli, args


def run_compare(job: tuple) -> int:
    """Print the compare report of each engine path; the exit status says whether all is explained."""
    interop_cli, args = job
    return interop_cli.run_compare(args)


def _tutorials_dir(value, option: str = "--tutorials") -> None:
    """Refuse a ``--tutorials`` folder that does not exist or holds no ``NN_name.py``."""
    if value is not None and not (Path(value).is_dir() and any(Path(value).glob("[0-9][0-9]_*.py"))):
        raise ValueError(f"{option}: expected an existing folder of tutorials (NN_name.py), got {value!r}")


def prepare_exercises(args: argparse.Namespace) -> argparse.Namespace:
    """Check that ``--out`` can be written and ``--tutorials`` exists."""
    check_writable_dir(args.out, "--out")
    _tutorials_dir(args.tutorials)
    return args


def prepare_check(args: argparse.Namespace) -> argparse.Namespace:
    """Check that the student's ``path`` exists and ``--max-examples`` is positive."""
    path = Path(args.path)
    if not path.exists():
        raise ValueError(f"path: expected a student's .py or .ipynb file or a folder of them, "
                         f"got {args.path!r}, which does not exist")
    suffixes = {p.suffix for p in path.iterdir()} if path.is_dir() else {path.suffix}
    if not suffixes & {".py", ".ipynb"} or (path.is_file() and path.suffix not in (".py", ".ipynb")):
        raise ValueError(f"path: expected a student's .py or .ipynb file or a folder of them, got {args.path!r}")
    if args.max_examples is not None and args.max_examples < 1:
        raise ValueError(f"--max-examples: expected an integer >= 1, got {args.max_examples}")
    return args


def prepare_notebooks(args: argparse.Namespace) -> argparse.Namespace:
    """Check that ``--tutorials`` exists."""
    _tutorials_dir(args.tutorials)
    return args


# --------------------------------------------------------------------------------------
# The table and the entry point
# --------------------------------------------------------------------------------------

#: The main job, run when no command name is given.
MAIN = Command("train with clipping, quantize, run integer-only inference, fine-tune a low-bit model",
               add_main_arguments, prepare_main, run_main)

#: Command name -> :class:`Command`. A new command is one more row.
COMMANDS: dict[str, Command] = {
    "train": Command("train one MLP and print its test accuracy", add_train_arguments, prepare_train, run_train),
    "download-mnist": Command("download and verify the four MNIST IDX files", add_download_arguments,
                              prepare_download, run_download),
    "compare": Command("where an engine's int8 values differ from nnref's, and why (extra 'interop')",
                       add_compare_arguments, prepare_compare, run_compare),
    "exercises": Command("write the student versions of the tutorials (.py and .ipynb)",
                         course.add_exercises_arguments, prepare_exercises, course.run_exercises),
    "check": Command("grade a student's exercises with nnref's laws", course.add_check_arguments,
                     prepare_check, course.run_check),
    "notebooks": Command("regenerate tutorials/*.ipynb from the .py tutorials", course.add_notebooks_arguments,
                         prepare_notebooks, course.run_notebooks),
}


def build_parser() -> argparse.ArgumentParser:
    """The one parser: the main job's options, and one sub-parser per command.

    Returns
    -------
    argparse.ArgumentParser
    """
    # No abbreviations: the main job's --dataset would otherwise swallow a command's --data.
    p = _Parser(prog="python -m nnref", allow_abbrev=False,
                description="Without a command: the main job, " + MAIN.help + "; print a results "
                            "table and write figures. `python -m nnref COMMAND --help` shows a "
                            "command's options.")
    MAIN.add_arguments(p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", title="commands (default: the main job)")
    for name, command in COMMANDS.items():
        command.add_arguments(sub.add_parser(name, help=command.help, description=command.help))
    return p


def main(argv=None) -> int:
    """Parse ``argv``, check every argument, then run the command.

    Parameters
    ----------
    argv : list of str, optional
        The arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status. A bad argument exits (``SystemExit``) with status 2 after one
        line ``nnref: error: ...`` on stderr, before any work.
    """
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is not None and argv[0] != args.command:
        parser.error(f"the main job's options cannot come before the command {args.command!r}; "
                     f"write python -m nnref {args.command} [options]")
    command = MAIN if args.command is None else COMMANDS[args.command]
    try:
        try:
            job = command.prepare(args)
        except (ValueError, TypeError, OSError) as exc:
            parser.error(str(exc))
        return command.run(job)
    except KeyboardInterrupt:
        print("nnref: interrupted", file=sys.stderr)
        return 130
