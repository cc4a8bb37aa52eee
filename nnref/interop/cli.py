"""``python -m nnref compare MODEL --data digits``: the :func:`~nnref.interop.compare`
report of a model file on one engine path or all of them.

The options are declared and checked in :mod:`nnref.cli` (``add_compare_arguments``,
``prepare_compare``), which imports this module only when the command runs, so the rest
of the command line works without the optional extra.
"""

from __future__ import annotations

import argparse
import os

from nnref.data import load_digits
from nnref.interop.compare import compare
from nnref.interop.engines import ENGINES, LITERT_PATHS

__all__ = ["ENGINES", "run_compare"]


def run_compare(args: argparse.Namespace) -> int:
    """Print the :func:`~nnref.interop.compare` report of each engine path.

    Parameters
    ----------
    args : argparse.Namespace
        Checked by :func:`nnref.cli.prepare_compare`.

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
