"""Command line.

``python -m nnref [--out DIR] [--dataset mnist --data-dir DIR] ...``
                                          the main job (see :mod:`nnref.pipeline`)
``python -m nnref train --dataset digits --hidden 64 32 --epochs 30 --seed 0 [--save m.npz]``
                                          train one MLP and print the test accuracy
``python -m nnref exercises --out DIR``   student versions of the tutorials (.py, .ipynb)
``python -m nnref check PATH``            grade a student's file or folder with the laws
``python -m nnref notebooks``             regenerate tutorials/*.ipynb from the .py files
"""

from __future__ import annotations

import argparse
import sys
import time

from . import course


__all__ = ["main", "load_dataset"]


def load_dataset(name: str, data_dir=None, seed: int = 0):
    """``(x_train, x_test, y_train, y_test)`` for ``digits`` (stratified 80/20 split),
    ``mnist`` (the standard split, from IDX files in ``data_dir``) or ``spirals``."""
    from . import data

    if name == "digits":
        x, y = data.load_digits()
        return data.train_test_split(x, y, test_fraction=0.2, seed=seed, stratify=True)
    if name == "mnist":
        if data_dir is None:
            raise SystemExit("--dataset mnist needs --data-dir DIR holding the four MNIST IDX files "
                             "(python -m nnref download-mnist DIR fetches them)")
        x_train, y_train, x_test, y_test = data.load_mnist(data_dir)
        return x_train, x_test, y_train, y_test
    if name == "spirals":
        x, y = data.make_spirals(n_per_class=200, n_classes=3, noise=0.2, seed=seed)
        return data.train_test_split(x, y, test_fraction=0.2, seed=seed, stratify=True)
    raise SystemExit(f"--dataset: expected digits, mnist or spirals, got {name!r}")


def _train(args) -> int:
    from . import clip
    from .mlp import MLP
    from .optim import SGD, Adam
    from .train import fit

    x_tr, x_te, y_tr, y_te = load_dataset(args.dataset, args.data_dir, args.seed)
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


def _download(args) -> int:
    from .data import download_mnist

    path = download_mnist(args.directory)
    print(f"MNIST files in {path}")
    return 0


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = float(text)
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nnref", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command")

    t = sub.add_parser("train", help="train one MLP and print its test accuracy")
    t.add_argument("--dataset", default="digits", choices=["digits", "mnist", "spirals"])
    t.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files")
    t.add_argument("--hidden", type=positive_int, nargs="*", default=[64, 32], help="hidden layer widths")
    t.add_argument("--activation", default="relu", choices=["relu", "leaky_relu", "tanh", "sigmoid"])
    t.add_argument("--epochs", type=positive_int, default=30)
    t.add_argument("--batch-size", type=positive_int, default=32)
    t.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    t.add_argument("--lr", type=positive_float, default=None,
                   help="default 0.1 (SGD, momentum 0.9) or 1e-3 (Adam)")
    t.add_argument("--clip-norm", type=positive_float, default=None, help="clip gradients by global L2 norm")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--save", default=None, help="write the trained model to this .npz file")
    t.set_defaults(func=_train)

    d = sub.add_parser("download-mnist", help="download and verify the four MNIST IDX files")
    d.add_argument("directory")
    d.set_defaults(func=_download)

    e = sub.add_parser("exercises", help="write the student versions of the tutorials (.py and .ipynb)")
    course.add_exercises_arguments(e)
    e.set_defaults(func=course.run_exercises)
    c = sub.add_parser("check", help="grade a student's exercises with nnref's laws")
    course.add_check_arguments(c)
    c.set_defaults(func=course.run_check)
    n = sub.add_parser("notebooks", help="regenerate tutorials/*.ipynb from the .py tutorials")
    course.add_notebooks_arguments(n)
    n.set_defaults(func=course.run_notebooks)
    return p


COMMANDS = ("train", "download-mnist", "exercises", "check", "notebooks")


def main(argv=None) -> int:
    """Dispatch: a known sub-command, else the main job with its options."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in COMMANDS:
        args = build_parser().parse_args(argv)
        return args.func(args)
    from .pipeline import main as pipeline_main

    return pipeline_main(argv)
