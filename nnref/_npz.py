"""Model files: ``.npz`` archives with a format name and version, read without pickles.

Shared by :meth:`nnref.mlp.MLP.save`/``load`` and
:meth:`nnref.quant.convert.QuantizedMLP.save`/``load``, so both refuse a truncated, foreign
or newer file the same way: a ``ValueError`` naming the file (``FileNotFoundError`` for a
missing one).
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

__all__ = ["write_archive", "read_archive"]


def write_archive(path, fmt: str, version: int, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` plus the entries ``format`` and ``format_version`` to ``path``."""
    with open(path, "wb") as f:
        np.savez(f, format=np.array(fmt), format_version=np.array(version), **arrays)


def read_archive(path, fmt: str, version: int, what: str) -> dict[str, np.ndarray]:
    """Every array of the archive at ``path`` after checking its format and version
    (``allow_pickle=False``: an archive cannot run code). ``what`` names the kind of model
    in error messages."""
    path = os.fspath(path)
    try:
        # Opened here, not by np.load, so the file is closed even when it is not a zip.
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, RuntimeError,
            NotImplementedError) as exc:  # the last two: a damaged zip header (encrypted, unknown codec)
        raise ValueError(f"{path}: not a readable nnref .npz model file ({exc})") from None
    if str(arrays.get("format", "")) != fmt:
        raise ValueError(f"{path}: not an nnref {what} file (missing or wrong 'format' entry)")
    v = arrays.get("format_version")
    if v is None or v.shape != () or v.dtype.kind not in "iu" or int(v) != version:
        raise ValueError(f"{path}: format version {v!r} is not supported (expected {version})")
    return arrays
