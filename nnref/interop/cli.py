"""``python -m nnref compare MODEL --data digits``: the :func:`~nnref.interop.compare`
report of a model file on one engine path or all of them."""

from __future__ import annotations

import argparse
import os

from nnref.data import load_digits
from nnref.interop.compare import compare
from nnref.interop.engines import ENGINES, LITERT_PATHS

__all__ = ["add_compare_arguments", "run_compare"]


def add_compare_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``compare`` sub-command's arguments to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser

    Returns
    -------
    argparse.ArgumentParser
        ``parser``, with ``model``, ``--data``, ``--engine`` and ``--details``.
    """
    parser.add_argument("model", help="a .tflite file (int8 MLP) or an .onnx file written by nnref.interop.to_onnx")
    parser.add_argument("--data", default="digits", choices=["digits"],
                        help="the inputs: every image of the UCI digits (1,797)")
    parser.add_argument("--engine", default="all", choices=["all", *ENGINES],
                        help="the engine path (default: every path that runs the file)")
    parser.add_argument("--details", type=int, default=8, help="differing values to detail per report")
    return parser


def run_compare(args: argparse.Namespace) -> int:
    """Print the :func:`~nnref.interop.compare` report of each engine path.

    Parameters
    ----------
    args : argparse.Namespace
        From a parser set up by :func:`add_compare_arguments`.

    Returns
    -------
    int
        0 when every difference is explained by a profile, 1 otherwise, 2 for a file that
        cannot be read or an engine that does not run it.
    """
    x, _ = load_digits()
    if args.engine != "all":
        engines = [args.engine]
    elif os.fspath(args.model).endswith(".tflite"):
        engines = list(LITERT_PATHS)
    else:
        engines = ["onnxruntime"]
    status = 0
    for engine in engines:
        try:
            report = compare(args.model, x, engine, max_details=args.details)
        except (OSError, ValueError) as exc:
            print(f"error: {exc}")
            return 2
        print(report, end="\n\n")
        status = max(status, int(bool(report.unexplained)))
    return status
