"""The IDX binary format MNIST is distributed in: :func:`read_idx` and :func:`write_idx`.

Layout (all integers big-endian)::

    byte 0, 1    0x00 0x00
    byte 2       type code: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                 0x0D float32, 0x0E float64
    byte 3       ndim (number of dimensions, >= 1 here)
    4 * ndim     the dimensions d_1..d_ndim as uint32
    then         d_1 * ... * d_ndim elements, big-endian, row-major (C order)

A file may be gzip-compressed (MNIST's are). The reader checks the header against the
file's size before it allocates the array, and the writer replaces a file atomically.

Format: Y. LeCun, C. Cortes, C. J. C. Burges, "The MNIST database of handwritten
digits", section "THE IDX FILE FORMAT".
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ._checks import describe
from ._files import as_path, atomic_write

__all__ = ["IDX_DTYPES", "MAX_GZIP_RATIO", "idx_code", "read_idx", "write_idx"]

#: IDX type codes (third byte of the magic number) and their big-endian element types.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),  # unsigned byte
    0x09: np.dtype(">i1"),  # signed byte
    0x0B: np.dtype(">i2"),  # short
    0x0C: np.dtype(">i4"),  # int
    0x0D: np.dtype(">f4"),  # float
    0x0E: np.dtype(">f8"),  # double
}
#: The most a gzip (deflate) stream can expand: about 1032 bytes out per byte in
#: (RFC 1951: a 258-byte match costs at least 2 bits). A compressed file whose header
#: announces more data than this bound is refused before anything is allocated.
MAX_GZIP_RATIO = 1032
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20  # how much surplus data is read at a time, only to count it


def idx_code(dtype) -> int | None:
    """The IDX type code for ``dtype`` (either byte order), or None if IDX has none.

    Parameters
    ----------
    dtype : numpy.dtype
        An element type.

    Returns
    -------
    int or None
    """
    dtype = np.dtype(dtype)
    for code, idx_dtype in IDX_DTYPES.items():
        if dtype.newbyteorder("=") == idx_dtype.newbyteorder("="):
            return code
    return None


def _codes_text() -> str:
    """The type codes IDX knows, for error messages."""
    return ", ".join(f"0x{code:02X} ({dt.newbyteorder('=')})" for code, dt in IDX_DTYPES.items())


def _read_header(stream, path: Path) -> tuple[tuple, np.dtype, int]:
    """Read and check the magic number and dimensions: ``(dims, dtype, header length)``."""
    magic = stream.read(4)
    if len(magic) < 4:
        raise ValueError(f"{path}: not an IDX file: expected a 4-byte magic number, got {len(magic)} bytes")
    if magic[:2] != b"\x00\x00":
        raise ValueError(
            f"{path}: not an IDX file: expected a magic number starting with bytes 00 00, "
            f"got {magic.hex(' ')}"
        )
    code, ndim = magic[2], magic[3]
    if code not in IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02X}; expected one of {_codes_text()}")
    if ndim == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions; expected at least 1")
    header_len = 4 + 4 * ndim
    packed = stream.read(4 * ndim)
    if len(packed) < 4 * ndim:
        raise ValueError(
            f"{path}: truncated IDX header: {ndim} dimensions need {header_len} header bytes, "
            f"the file has {4 + len(packed)}"
        )
    return struct.unpack(f">{ndim}I", packed), IDX_DTYPES[code], header_len


def _size_error(path: Path, dims: tuple, dtype: np.dtype, header_len: int, expected: int, got: int) -> ValueError:
    """The error for data that is shorter (``truncated``) or longer than the header says."""
    what = "truncated" if got < expected else "extra data after the array"
    return ValueError(
        f"{path}: {what}: dimensions {dims} of {dtype.newbyteorder('=')} need {expected} data "
        f"bytes after the {header_len}-byte header, got {got}"
    )


def _read_data(stream, path: Path, file_size: int, compressed: bool) -> np.ndarray:
    """The array of an opened IDX stream, its size checked before it is allocated."""
    dims, dtype, header_len = _read_header(stream, path)
    expected = math.prod(dims) * dtype.itemsize  # Python int: a corrupt header cannot overflow it
    if not compressed and file_size - header_len != expected:
        raise _size_error(path, dims, dtype, header_len, expected, file_size - header_len)
    if compressed and expected > MAX_GZIP_RATIO * file_size:
        raise ValueError(
            f"{path}: truncated: dimensions {dims} of {dtype.newbyteorder('=')} need {expected} data "
            f"bytes, more than a {file_size}-byte gzip file can hold (at most {MAX_GZIP_RATIO} times its size)"
        )
    data = stream.read(expected)
    if len(data) < expected:
        raise _size_error(path, dims, dtype, header_len, expected, len(data))
    surplus = stream.read(_CHUNK)
    if surplus:  # counted chunk by chunk: the surplus is never held in memory at once
        got = expected + len(surplus)
        while chunk := stream.read(_CHUNK):
            got += len(chunk)
        raise _size_error(path, dims, dtype, header_len, expected, got)
    arr = np.frombuffer(data, dtype=dtype, count=math.prod(dims)).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))  # a native-order, writable copy


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format; layout in the module docstring), raw or gzipped.

    Compression is detected from the first two bytes (gzip's 0x1F 0x8B), so a ``.gz``
    suffix is optional; an IDX file always begins with 0x00 0x00, so the two cannot be
    confused. The header is read first and checked against the file's size (for a gzip
    file: at most :data:`MAX_GZIP_RATIO` times it) before the data is read, so a
    damaged or hostile header cannot make the reader allocate more than the file holds.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    numpy.ndarray
        A new, writable array of shape ``(d_1, ..., d_ndim)`` in native byte order (dtype
        uint8, int8, int16, int32, float32 or float64).

    Raises
    ------
    TypeError
        For a ``path`` that is not a path.
    FileNotFoundError
        If there is no such file.
    ValueError
        Naming the file, if the gzip stream is corrupt, the magic number is not IDX, the
        header is cut short, ndim is 0, or the data is shorter or longer than the
        dimensions say.
    """
    path = as_path(path, "path")
    with open(path, "rb") as raw:
        file_size = os.fstat(raw.fileno()).st_size
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        if not compressed:
            return _read_data(raw, path, file_size, compressed=False)
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                return _read_data(stream, path, file_size, compressed=True)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path}: corrupt gzip data: {exc}") from None


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file; gzip it if ``path`` ends in ``.gz``.

    The file is replaced atomically (a temporary file in the same folder, then a
    rename): a failed write leaves any previous file intact. The gzip header's timestamp
    is 0, so the same array always gives the same bytes. ``read_idx(write_idx(p, a))``
    equals ``a`` element for element and bit for bit.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    array : numpy.ndarray
        dtype uint8, int8, int16, int32, float32 or float64 (either byte order), 1 to
        255 dimensions, each below 2**32. Other dtypes (int64, bool, ...) are refused
        instead of cast silently: cast first, knowing what the cast does.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    TypeError
        For a ``path`` that is not a path, a non-array or a dtype IDX cannot store.
    ValueError
        For a shape IDX cannot store.
    OSError
        When the file cannot be written (the previous file is then unchanged).
    """
    path = as_path(path, "path")
    if not isinstance(array, np.ndarray):
        raise TypeError(f"array: expected a numpy.ndarray, got {describe(array)}")
    code = idx_code(array.dtype)
    if code is None:
        raise TypeError(f"array: expected a dtype IDX can store ({_codes_text()}), got dtype {array.dtype}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"array: expected 1 to 255 dimensions (IDX stores ndim in one byte), got shape {array.shape}")
    if max(array.shape) >= 2**32:
        raise ValueError(f"array: expected every dimension below 2**32 (IDX stores uint32), got shape {array.shape}")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    if path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    return atomic_write(path, lambda f: f.write(payload))
