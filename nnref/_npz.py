"""Model files: ``.npz`` archives with a format name and version, read without pickles.

Shared by :meth:`nnref.mlp.MLP.save`/``load`` and
:meth:`nnref.quant.convert.QuantizedMLP.save`/``load``, so both behave the same way:

* writing is atomic (:func:`nnref._files.atomic_write`): a failed save leaves the
  previous file as it was;
* reading refuses, with a ``ValueError`` naming the file (``FileNotFoundError`` for a
  missing one), a file that is not a zip archive, a foreign or newer format, and any
  entry whose ``.npy`` header announces more data than the entry holds, before an
  array of that size is allocated.

An ``.npz`` file is a zip archive with one ``.npy`` entry per array. Each ``.npy`` entry
starts with a header giving the dtype and shape; numpy allocates the array from that
header and then reads the data, so a 2 KB file announcing a 10**12-element array would
ask for terabytes. Here every header is read first and checked against the entry's size
(numpy's ``.npy`` format, NEP 1).
"""

from __future__ import annotations

import math
import os
import zipfile

import numpy as np

from ._files import atomic_write

__all__ = ["write_archive", "read_archive", "check_archive_sizes"]

#: The largest ratio of uncompressed to compressed size deflate can reach (RFC 1951:
#: a 258-byte match costs at least 2 bits, about 1032:1); a compressed entry claiming
#: more is lying.
MAX_DEFLATE_RATIO = 1032

#: Errors numpy and zipfile raise on a damaged archive (the last two: a damaged zip
#: header, such as an encrypted entry or an unknown codec).
_READ_ERRORS = (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, RuntimeError,
                NotImplementedError)


def write_archive(path, fmt: str, version: int, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` plus the entries ``format`` and ``format_version`` to ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The file; replaced atomically, so a failure leaves any previous file intact.
    fmt : str
        The format name stored in the ``format`` entry.
    version : int
        The format version stored in the ``format_version`` entry.
    arrays : dict of str to numpy.ndarray
        The content.

    Raises
    ------
    OSError
        When the file cannot be written.
    """
    atomic_write(path, lambda f: np.savez(f, format=np.array(fmt), format_version=np.array(version), **arrays))


def _npy_data_size(member, path: str, name: str) -> tuple[int, int]:
    """Bytes of array data an ``.npy`` entry's header announces, and the header's length.

    Raises
    ------
    ValueError
        For a header numpy cannot read.
    """
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    else:
        raise ValueError(f"{path}: entry {name!r}: .npy format version {version} is not supported")
    return math.prod(shape) * dtype.itemsize, member.tell()


def check_archive_sizes(archive: zipfile.ZipFile, path: str, file_size: int) -> None:
    """Refuse an archive whose entries announce more data than the file can hold.

    For each entry: its stored size must fit in the file; its unpacked size must be
    the stored size (no compression) or at most :data:`MAX_DEFLATE_RATIO` times it; and
    for an ``.npy`` entry, the array its header announces (``prod(shape) * itemsize``
    bytes) must be exactly the entry's data after the header.

    Parameters
    ----------
    archive : zipfile.ZipFile
        The opened archive.
    path : str
        Its file name, for error messages.
    file_size : int
        Its size in bytes.

    Raises
    ------
    ValueError
        Naming the file and the entry, for the first entry that fails.
    """
    for info in archive.infolist():
        name = info.filename
        stored_ok = info.compress_size <= file_size
        if info.compress_type == zipfile.ZIP_STORED:
            unpacked_ok = info.file_size == info.compress_size
        else:
            unpacked_ok = info.file_size <= MAX_DEFLATE_RATIO * max(info.compress_size, 1)
        if not (stored_ok and unpacked_ok):
            raise ValueError(f"{path}: entry {name!r} announces {info.file_size} bytes "
                             f"({info.compress_size} stored) but the file holds {file_size}")
        if not name.endswith(".npy"):
            continue
        with archive.open(info) as member:
            announced, header = _npy_data_size(member, path, name)
        if announced != info.file_size - header:
            raise ValueError(f"{path}: entry {name!r}: its header announces {announced} bytes of array "
                             f"data, the entry holds {info.file_size - header}")


def read_archive(path, fmt: str, version: int, what: str) -> dict[str, np.ndarray]:
    """Every array of the archive at ``path``, after checking its sizes, format and version.

    Loaded with ``allow_pickle=False``: an archive cannot run code.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    fmt : str
        The expected ``format`` entry.
    version : int
        The expected ``format_version`` entry.
    what : str
        The kind of model, for error messages.

    Returns
    -------
    dict of str to numpy.ndarray

    Raises
    ------
    FileNotFoundError
        For a missing file.
    ValueError
        Naming the file: not a readable ``.npz``, sizes that do not add up (see
        :func:`check_archive_sizes`), a foreign format or another version.
    """
    path = os.fspath(path)
    try:
        # Opened here, not by np.load, so the file is closed even when it is not a zip.
        with open(path, "rb") as f:
            with zipfile.ZipFile(f) as archive:
                check_archive_sizes(archive, path, os.fstat(f.fileno()).st_size)
            f.seek(0)
            with np.load(f, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise
    except _READ_ERRORS as exc:
        if isinstance(exc, ValueError) and str(exc).startswith(f"{path}: "):
            raise  # already says what is wrong with which file
        raise ValueError(f"{path}: not a readable nnref .npz model file ({exc})") from None
    if str(arrays.get("format", "")) != fmt:
        raise ValueError(f"{path}: not an nnref {what} file (missing or wrong 'format' entry)")
    v = arrays.get("format_version")
    if v is None or v.shape != () or v.dtype.kind not in "iu" or int(v) != version:
        raise ValueError(f"{path}: format version {v!r} is not supported (expected {version})")
    return arrays
