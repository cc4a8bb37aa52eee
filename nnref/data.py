"""Data sets and the plumbing around them: the shipped digits, MNIST, spirals, a split.

Everything here is deterministic (each random choice takes a seed or a
``numpy.random.Generator``) and every file is checked before it is trusted: the shipped
digits file against its recorded sha256, MNIST files against the IDX format and, when
downloaded, against their published sha256.

- ``load_digits``: the 1,797 8x8 UCI digits that ship with nnref (no network needed).
- ``train_test_split``: a seeded, optionally stratified split, in scikit-learn's order.
- ``read_idx`` / ``write_idx``: the IDX binary format MNIST is distributed in.
- ``load_mnist`` / ``download_mnist``: the four standard MNIST files.
- ``make_spirals``: the CS231n toy spiral data set.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import numbers
import os
import struct
import tempfile
import urllib.request
import zlib
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path

import numpy as np

from ._checks import as_rng, check_int_in_range, check_nonnegative, check_positive, describe

__all__ = [
    "DEFAULT_MNIST_URL",
    "DIGITS_PATH",
    "DIGITS_SHA256",
    "MNIST_FILES",
    "MNIST_SHA256",
    "download_mnist",
    "load_digits",
    "load_mnist",
    "make_spirals",
    "read_idx",
    "train_test_split",
    "write_idx",
]

# --------------------------------------------------------------------------------------
# The shipped digits
# --------------------------------------------------------------------------------------

DIGITS_PATH = Path(__file__).parent / "data" / "digits.csv.gz"
# sha256 of the compressed file exactly as shipped (recorded in nnref/data/SOURCE.md).
DIGITS_SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"
_DIGITS_SHAPE = (1797, 65)  # 64 pixels then the label


def _sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in blocks so large files need little memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_float_dtype(dtype, name: str) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name}: expected a numpy floating dtype, got {describe(dtype)}") from None
    if dt.kind != "f":
        raise TypeError(f"{name}: expected a floating dtype such as float32, got {dt}")
    return dt


def load_digits(dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """The UCI optical-recognition digits shipped with nnref: 1,797 8x8 images.

    Formula: ``x[i, j] = pixel[i, j] / 16`` (each pixel counts the on-bits of a 4x4 block
    of a 32x32 bitmap, so it lies in 0..16 and ``x`` in [0, 1]); ``y[i]`` is the digit.

    Returns ``x`` of shape (1797, 64), dtype ``dtype`` (row-major 8x8 images, one per
    row) and ``y`` of shape (1797,), int64, values 0..9 (174 to 183 examples per class).
    The rows are in file order (not shuffled); use ``train_test_split`` to split them.

    Before parsing, the shipped file's sha256 is checked against ``DIGITS_SHA256`` and a
    mismatch raises ``ValueError``: a corrupt installation fails loudly rather than
    training on damaged data.

    Source: E. Alpaydin and C. Kaynak (1998), "Optical Recognition of Handwritten Digits",
    UCI Machine Learning Repository, https://doi.org/10.24432/C50P49, licensed CC BY 4.0;
    the 1,797-sample test set as distributed in scikit-learn (``load_digits``). See
    ``nnref/data/SOURCE.md``.
    """
    dt = _check_float_dtype(dtype, "dtype")
    path = DIGITS_PATH
    raw = path.read_bytes()  # read once: the bytes checked are the bytes parsed
    got = hashlib.sha256(raw).hexdigest()
    if got != DIGITS_SHA256:
        raise ValueError(
            f"{path}: the shipped digits file is corrupt: expected sha256 {DIGITS_SHA256}, "
            f"got {got}; reinstall nnref"
        )
    text = gzip.decompress(raw).decode("ascii")
    table = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.int64, ndmin=2)
    # The checksum already proves the content; this guards a stale constant.
    if table.shape != _DIGITS_SHAPE:
        raise ValueError(f"{path}: expected a table of shape {_DIGITS_SHAPE}, got {table.shape}")
    pixels, labels = table[:, :64], table[:, 64]
    x = pixels.astype(dt) / dt.type(16)  # 16 is a power of two: the division is exact
    y = labels.copy()
    return x, y


# --------------------------------------------------------------------------------------
# Train / test split
# --------------------------------------------------------------------------------------


def _test_count(n: int, test_fraction) -> int:
    """``ceil(n * test_fraction)``, with ``test_fraction`` read as the decimal it prints as."""
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (numbers.Real, np.number)):
        raise TypeError(f"test_fraction: expected a real number in (0, 1), got {describe(test_fraction)}")
    f = float(test_fraction)
    if not (math.isfinite(f) and 0.0 < f < 1.0):
        raise ValueError(f"test_fraction: expected a number in the open interval (0, 1), got {f}")
    # 0.07 is stored as 0.0700000000000000067..., so in floating point 0.07 * 100 rounds to
    # 7.000000000000001 and its ceil is 8. Reading the float as its shortest decimal
    # (repr) gives the 7/100 the caller typed, and Fraction makes the product exact.
    return math.ceil(Fraction(repr(f)) * n)


def _stratified_test_counts(class_counts: list[int], n_test: int, rng: np.random.Generator) -> np.ndarray:
    """How many test examples each class gets: the largest-remainder apportionment.

    Class k's exact share is ``q_k = n_test * c_k / n``. Every class gets ``floor(q_k)``;
    the ``n_test - sum(floor(q_k))`` left over go, one each, to the classes with the
    largest fractional parts ``q_k - floor(q_k)``, ties broken at random by ``rng``. So the
    counts sum to ``n_test`` and each is ``floor(q_k)`` or ``ceil(q_k)``.
    """
    n = sum(class_counts)
    # Python ints: c_k * n_test cannot wrap, and the remainders are exact (no float ties).
    floors = np.array([c * n_test // n for c in class_counts], dtype=np.int64)
    remainders = np.array([c * n_test % n for c in class_counts], dtype=np.int64)
    left_over = n_test - int(floors.sum())  # = sum(remainders) / n, an integer < len(c)
    # lexsort: the last key is the primary one (largest remainder first), random ties.
    order = np.lexsort((rng.random(len(class_counts)), -remainders))
    counts = floors.copy()
    counts[order[:left_over]] += 1
    return counts


def train_test_split(
    x,
    y,
    test_fraction: float = 0.2,
    seed: int | np.random.Generator | None = 0,
    stratify: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split examples at random into a training and a test set.

    Sizes: ``n_test = ceil(n * test_fraction)``, ``n_train = n - n_test`` (scikit-learn's
    rule for a float ``test_size``). ``test_fraction`` is read as the decimal number it
    prints as, so ``0.07`` of 100 examples is 7; scikit-learn computes the product in
    floating point and gets 8 there (0.07 * 100 = 7.000000000000001). The two agree
    whenever the floating-point product is not pushed across an integer.

    Stratified (``stratify=True``, the default; ``y`` must hold integer class labels):
    class k, with ``c_k`` of the ``n`` examples, gets ``t_k`` test examples, where
    ``t_k`` is ``q_k = c_k * n_test / n`` rounded down, plus one for the
    ``n_test - sum_k floor(q_k)`` classes with the largest fractional parts of ``q_k``
    (largest-remainder apportionment; ties broken at random by the seed). Hence
    ``sum_k t_k = n_test`` and ``|t_k - q_k| < 1`` for every class; the training set gets
    the other ``c_k - t_k``, so it is stratified within one example per class too. This is
    the apportionment scikit-learn's ``StratifiedShuffleSplit`` computes
    (``_approximate_mode``), applied to the test set (scikit-learn apportions the training
    set first; the counts differ at most where ties were broken at random). Which examples
    of a class go to the test set is a uniform random choice. Unlike scikit-learn, a class
    with a single example is allowed (it lands in one of the two sets).

    Unstratified: a uniformly random subset of ``n_test`` examples is the test set.

    Both outputs are in random order (not sorted by index or class). The same ``seed``
    gives the same split; the random streams are nnref's own, so the split is not the
    one scikit-learn draws for the same seed.

    Args:
        x: array of shape (n, ...), any dtype; rows are examples.
        y: array of shape (n,); integer class labels when ``stratify`` is True.
        test_fraction: share of the examples to hold out, in (0, 1); must leave at least
            one training example.
        seed: int seed or ``numpy.random.Generator``.
        stratify: keep each class's share equal in both parts (see above).

    Returns:
        ``(x_train, x_test, y_train, y_test)``, scikit-learn's order, each a new array
        with the input's dtype.
    """
    x_arr = np.asarray(x)
    y_arr = np.asarray(y)
    if x_arr.ndim < 1:
        raise ValueError(f"x: expected an array of shape (n, ...), got a 0-D {describe(x_arr)}")
    if y_arr.ndim != 1:
        raise ValueError(f"y: expected a 1-D array of shape (n,), got shape {y_arr.shape}")
    n = x_arr.shape[0]
    if y_arr.shape[0] != n:
        raise ValueError(f"y: expected one label per row of x, i.e. shape ({n},), got shape {y_arr.shape}")
    if not isinstance(stratify, (bool, np.bool_)):
        raise TypeError(f"stratify: expected True or False, got {describe(stratify)}")
    n_test = _test_count(n, test_fraction)
    if n - n_test < 1:
        raise ValueError(
            f"test_fraction: {float(test_fraction)} of n={n} examples puts ceil(n * test_fraction) "
            f"= {n_test} in the test set and leaves the training set empty; expected both "
            f"parts non-empty (n >= 2 and a smaller fraction)"
        )
    rng = as_rng(seed)

    is_test = np.zeros(n, dtype=bool)
    if stratify:
        if y_arr.dtype.kind not in "iu":
            raise TypeError(
                f"y: stratify=True needs integer class labels, got dtype {y_arr.dtype}; "
                f"pass stratify=False to split other targets"
            )
        classes, class_of = np.unique(y_arr, return_inverse=True)
        class_counts = np.bincount(class_of, minlength=len(classes)).tolist()
        test_counts = _stratified_test_counts(class_counts, n_test, rng)
        for k, t_k in enumerate(test_counts):
            members = np.flatnonzero(class_of == k)
            is_test[rng.permutation(members)[:t_k]] = True
    else:
        is_test[rng.permutation(n)[:n_test]] = True

    train_idx = rng.permutation(np.flatnonzero(~is_test))
    test_idx = rng.permutation(np.flatnonzero(is_test))
    return x_arr[train_idx], x_arr[test_idx], y_arr[train_idx], y_arr[test_idx]


# --------------------------------------------------------------------------------------
# IDX files
# --------------------------------------------------------------------------------------

# IDX type codes (third byte of the magic number) and their big-endian element types,
# as specified on the MNIST page (LeCun, Cortes & Burges, "THE IDX FILE FORMAT").
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),  # unsigned byte
    0x09: np.dtype(">i1"),  # signed byte
    0x0B: np.dtype(">i2"),  # short
    0x0C: np.dtype(">i4"),  # int
    0x0D: np.dtype(">f4"),  # float
    0x0E: np.dtype(">f8"),  # double
}
_GZIP_MAGIC = b"\x1f\x8b"


def _as_path(value, name: str) -> Path:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a str or os.PathLike path, got {describe(value)}")
    return Path(value)


def _idx_code(dtype: np.dtype) -> int | None:
    """The IDX type code for ``dtype`` (either byte order), or None if IDX has none."""
    for code, idx_dtype in _IDX_DTYPES.items():
        if dtype.newbyteorder("=") == idx_dtype.newbyteorder("="):
            return code
    return None


def _idx_codes_text() -> str:
    return ", ".join(f"0x{code:02X} ({dt.newbyteorder('=')})" for code, dt in _IDX_DTYPES.items())


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format), raw or gzip-compressed.

    Layout (all integers big-endian)::

        byte 0, 1    0x00 0x00
        byte 2       type code: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                     0x0D float32, 0x0E float64
        byte 3       ndim (number of dimensions, >= 1 here)
        4 * ndim     the dimensions d_1..d_ndim as uint32
        then         d_1 * ... * d_ndim elements, big-endian, row-major (C order)

    Compression is detected from the first two bytes (gzip's 0x1F 0x8B), so a ``.gz``
    suffix is optional; an IDX file always begins with 0x00 0x00, so the two cannot be
    confused.

    Returns a new, writable array of shape ``(d_1, ..., d_ndim)`` in native byte order
    (dtype uint8, int8, int16, int32, float32 or float64).

    Raises ``ValueError`` naming the file if the gzip stream is corrupt, the magic number
    is not IDX, the header is cut short, ndim is 0, or the data is shorter or longer
    than the dimensions say; ``FileNotFoundError`` if there is no such file.

    Format: Y. LeCun, C. Cortes, C. J. C. Burges, "The MNIST database of handwritten
    digits", section "THE IDX FILE FORMAT".
    """
    path = _as_path(path, "path")
    data = path.read_bytes()
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path}: corrupt gzip data: {exc}") from None
    if len(data) < 4:
        raise ValueError(f"{path}: not an IDX file: expected a 4-byte magic number, got {len(data)} bytes")
    if data[:2] != b"\x00\x00":
        raise ValueError(
            f"{path}: not an IDX file: expected a magic number starting with bytes 00 00, "
            f"got {data[:4].hex(' ')}"
        )
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02X}; expected one of {_idx_codes_text()}")
    if ndim == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions; expected at least 1")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise ValueError(
            f"{path}: truncated IDX header: {ndim} dimensions need {header_len} header bytes, "
            f"the file has {len(data)}"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header_len])
    dtype = _IDX_DTYPES[code]
    count = math.prod(dims)  # Python int: a corrupt header cannot overflow it
    expected = count * dtype.itemsize
    got = len(data) - header_len
    if got != expected:
        what = "truncated" if got < expected else "extra data after the array"
        raise ValueError(
            f"{path}: {what}: dimensions {dims} of {dtype.newbyteorder('=')} need {expected} data "
            f"bytes after the {header_len}-byte header, got {got}"
        )
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=header_len).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))  # a native-order, writable copy


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file (the layout in ``read_idx``); gzip it if ``path`` ends in ``.gz``.

    ``array`` must be a numpy array of dtype uint8, int8, int16, int32, float32 or
    float64 (either byte order) with 1 to 255 dimensions, each below 2**32. Other dtypes
    (int64, bool, ...) raise ``TypeError`` instead of being cast silently: cast first,
    knowing what the cast does. The gzip header's timestamp is 0, so the same array
    always gives the same bytes. Returns the path written.

    ``read_idx(write_idx(p, a))`` equals ``a`` element for element and bit for bit.
    """
    path = _as_path(path, "path")
    if not isinstance(array, np.ndarray):
        raise TypeError(f"array: expected a numpy.ndarray, got {describe(array)}")
    code = _idx_code(array.dtype)
    if code is None:
        raise TypeError(f"array: expected a dtype IDX can store ({_idx_codes_text()}), got dtype {array.dtype}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"array: expected 1 to 255 dimensions (IDX stores ndim in one byte), got shape {array.shape}")
    if max(array.shape) >= 2**32:
        raise ValueError(f"array: expected every dimension below 2**32 (IDX stores uint32), got shape {array.shape}")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=_IDX_DTYPES[code]).tobytes()
    if path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)
    return path


# --------------------------------------------------------------------------------------
# MNIST
# --------------------------------------------------------------------------------------

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# The Google-hosted copy that TensorFlow/Keras and TensorFlow Datasets download from: the
# original host, yann.lecun.com/exdb/mnist/, often refuses downloads now. Same files.
DEFAULT_MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
# sha256 of the four published .gz files (9,912,422 / 28,881 / 1,648,877 / 4,542 bytes),
# as recorded identically by several independent downloaders (not re-fetched here).
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
_MNIST_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (count, rows, cols)
_MNIST_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (count)


def _mnist_names_text() -> str:
    return ", ".join(MNIST_FILES.values())


def _find_mnist_file(directory: Path, stem: str) -> Path:
    """``directory/stem`` if it exists, else ``directory/stem.gz``."""
    for name in (stem, stem + ".gz"):
        candidate = directory / name
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{directory / stem}: no such file (nor {stem}.gz); load_mnist expects the four MNIST "
        f"files in {directory}, each raw or gzip-compressed with a .gz suffix: "
        f"{_mnist_names_text()}; download_mnist(directory) fetches them"
    )


def _check_mnist_magic(arr: np.ndarray, path: Path, magic: int, what: str) -> None:
    code = _idx_code(arr.dtype)  # read_idx only returns IDX dtypes, so never None
    got = (code << 8) | arr.ndim
    if got != magic:
        raise ValueError(
            f"{path}: expected MNIST {what}, IDX magic number 0x{magic:08X}, got 0x{got:08X} "
            f"({arr.dtype}, shape {arr.shape})"
        )


def _read_mnist_images(path: Path) -> np.ndarray:
    images = read_idx(path)
    _check_mnist_magic(images, path, _MNIST_IMAGES_MAGIC, "images (uint8, 3 dimensions)")
    n, rows, cols = images.shape
    # uint8 / 255 in float32: exact to half an ulp, and x * 255 rounds back to the byte.
    return images.reshape(n, rows * cols).astype(np.float32) / np.float32(255)


def _read_mnist_labels(path: Path) -> np.ndarray:
    labels = read_idx(path)
    _check_mnist_magic(labels, path, _MNIST_LABELS_MAGIC, "labels (uint8, 1 dimension)")
    bad = labels > 9
    if bad.any():
        raise ValueError(
            f"{path}: expected labels in 0..9, got {int(bad.sum())} outside it "
            f"(largest {int(labels.max())})"
        )
    return labels.astype(np.int64)


def _load_mnist_split(directory: Path, images_stem: str, labels_stem: str) -> tuple[np.ndarray, np.ndarray, tuple]:
    images_path = _find_mnist_file(directory, images_stem)
    labels_path = _find_mnist_file(directory, labels_stem)
    x = _read_mnist_images(images_path)
    y = _read_mnist_labels(labels_path)
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{images_path}: holds {x.shape[0]} images but {labels_path} holds {y.shape[0]} labels; "
            f"expected one label per image"
        )
    return x, y, images_path


def load_mnist(directory: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load MNIST from the four standard IDX files in ``directory``.

    Files: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each either raw or with a
    ``.gz`` suffix (the raw one is used if both exist). Images must have IDX magic number
    0x00000803 (uint8, dims count x rows x cols), labels 0x00000801 (uint8, dims count).

    Formula: ``x[i, r * cols + c] = image[i, r, c] / 255`` (row-major flattening, as in
    the files), ``y[i] = label[i]``.

    Returns ``(x_train, y_train, x_test, y_test)``: ``x_*`` float32 of shape
    (n, rows * cols) in [0, 1] ((60000, 784) and (10000, 784) for the real MNIST),
    ``y_*`` int64 of shape (n,) in 0..9. Note the order: each split's images then its
    labels, unlike ``train_test_split``'s scikit-learn order.

    Raises ``FileNotFoundError`` (naming the path and the expected file names) for a
    missing file and ``ValueError`` naming the file for a wrong magic number, a
    truncated or overlong file, an image/label count mismatch, a label outside 0..9, or
    training and test images of different sizes.

    Source: Y. LeCun, C. Cortes, C. J. C. Burges, "The MNIST database of handwritten
    digits" (format and file names).
    """
    directory = _as_path(directory, "directory")
    if not directory.is_dir():
        raise FileNotFoundError(
            f"{directory}: no such directory; load_mnist expects a directory holding "
            f"{_mnist_names_text()} (raw or .gz); download_mnist(directory) fetches them"
        )
    x_train, y_train, train_path = _load_mnist_split(
        directory, MNIST_FILES["train_images"], MNIST_FILES["train_labels"]
    )
    x_test, y_test, test_path = _load_mnist_split(directory, MNIST_FILES["test_images"], MNIST_FILES["test_labels"])
    if x_train.shape[1] != x_test.shape[1]:
        raise ValueError(
            f"{test_path}: images have {x_test.shape[1]} pixels but those in {train_path} have "
            f"{x_train.shape[1]}; expected training and test images of the same size"
        )
    return x_train, y_train, x_test, y_test


def _check_checksums(checksums) -> dict[str, str] | None:
    if checksums is None:
        return None
    if not isinstance(checksums, Mapping):
        raise TypeError(
            f"checksums: expected a dict of file name -> sha256 hex digest, or None, got {describe(checksums)}"
        )
    missing = [name for name in MNIST_SHA256 if name not in checksums]
    if missing:
        raise ValueError(f"checksums: expected a sha256 digest for each of {list(MNIST_SHA256)}, missing {missing}")
    clean = {}
    for name in MNIST_SHA256:
        digest = checksums[name]
        is_hex = isinstance(digest, str) and all(ch in "0123456789abcdef" for ch in digest.lower())
        if not is_hex or len(digest) != 64:
            raise ValueError(f"checksums: expected a 64-character hex sha256 digest for {name}, got {digest!r}")
        clean[name] = digest.lower()
    return clean


def _is_valid_file(path: Path, expected_sha256: str | None) -> bool:
    """Does an existing file pass the check a fresh download would have to pass?"""
    if expected_sha256 is not None:
        return _sha256_file(path) == expected_sha256
    try:
        read_idx(path)
    except ValueError:
        return False
    return True


def _download_file(url: str, target: Path, expected_sha256: str | None, timeout: float) -> None:
    """Fetch ``url`` to a temporary file next to ``target``, verify it, then rename it.

    The rename (``os.replace``) is atomic on one file system, so ``target`` is never seen
    half-written, and a download that fails verification is deleted, never renamed.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    for block in iter(lambda: response.read(1 << 16), b""):
                        digest.update(block)
                        out.write(block)
            except OSError as exc:  # URLError, HTTPError and socket timeouts are OSErrors
                raise OSError(f"download_mnist: could not download {url}: {exc}") from exc
            out.flush()
            os.fsync(out.fileno())
        got = digest.hexdigest()
        if expected_sha256 is not None and got != expected_sha256:
            raise ValueError(
                f"{target.name}: sha256 mismatch for {url}: expected {expected_sha256}, got {got}; "
                f"the download was discarded"
            )
        if expected_sha256 is None:
            try:
                read_idx(tmp)
            except ValueError as exc:
                raise ValueError(
                    f"{target.name}: {url} is not a valid IDX file ({exc}); the download was discarded"
                ) from None
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def download_mnist(
    directory: str | os.PathLike,
    base_url: str = DEFAULT_MNIST_URL,
    checksums: Mapping[str, str] | None = MNIST_SHA256,
    timeout: float = 30.0,
) -> Path:
    """Download the four gzip-compressed MNIST files into ``directory`` (created if needed).

    For each ``name`` in ``MNIST_SHA256``: fetch ``base_url + name`` (a ``/`` is put in
    between if missing) with ``urllib.request``, streaming it into a temporary file in
    ``directory``; compare its sha256 with ``checksums[name]``; on a match rename it to
    ``directory/name`` (atomic), on a mismatch delete it and raise ``ValueError`` naming
    the file, the expected and the received digest. With ``checksums=None`` the digest is
    not checked; only the IDX structure is (``read_idx``), for mirrors whose files differ.

    A file already present that passes the same check is kept and not downloaded again;
    one that fails it is deleted and downloaded again.

    ``MNIST_SHA256`` holds the sha256 of the standard published files, as several
    independent downloaders record them. Network failures raise ``OSError`` naming the
    URL. Returns ``directory`` as a ``Path``, ready for ``load_mnist``.
    """
    directory = _as_path(directory, "directory")
    if not isinstance(base_url, str):
        raise TypeError(f"base_url: expected a str URL, got {describe(base_url)}")
    if not base_url:
        raise ValueError("base_url: expected a non-empty URL, got ''")
    expected = _check_checksums(checksums)
    timeout = check_positive(timeout, "timeout")
    directory.mkdir(parents=True, exist_ok=True)
    for name in MNIST_SHA256:
        target = directory / name
        want = None if expected is None else expected[name]
        if target.is_file():
            if _is_valid_file(target, want):
                continue
            target.unlink()  # known bad: never leave it where load_mnist would read it
        _download_file(base_url.rstrip("/") + "/" + name, target, want, timeout)
    return directory


# --------------------------------------------------------------------------------------
# Spirals
# --------------------------------------------------------------------------------------


def make_spirals(
    n_per_class: int = 100,
    n_classes: int = 3,
    noise: float = 0.2,
    seed: int | np.random.Generator | None = 0,
    dtype=np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """The CS231n spiral data set: ``n_classes`` interleaved arms in the plane.

    For class ``k`` (0..K-1) and point ``i`` (0..N-1) on its arm::

        r_i        = i / (N - 1)                  (r_0 = 0 when N = 1)
        theta_ki   = 4 r_i + 2 pi k / K + noise * eps_ki,    eps_ki ~ N(0, 1)
        x          = (r_i sin(theta_ki), r_i cos(theta_ki)),  y = k

    So every point lies at distance exactly ``r_i`` from the origin; the noise moves it
    along its circle only. CS231n ("Putting it together: minimal neural network case
    study") offsets arm k by 4k radians; here the offsets are 2 pi k / K so the arms are
    evenly spaced for every K (with 4k, arms 0 and 11 of K = 12 almost coincide).

    Returns ``x`` of shape (K * N, 2), dtype ``dtype`` (computed in float64, then cast)
    and ``y`` of shape (K * N,), int64; rows are grouped by class (class 0 first).
    """
    n = check_int_in_range(n_per_class, "n_per_class", 1, 2**31 - 1)
    k = check_int_in_range(n_classes, "n_classes", 1, 2**31 - 1)
    noise = check_nonnegative(noise, "noise")
    dt = _check_float_dtype(dtype, "dtype")
    rng = as_rng(seed)
    r = np.linspace(0.0, 1.0, n)  # (N,)
    offset = 2.0 * np.pi * np.arange(k) / k  # (K,)
    eps = rng.standard_normal((k, n))  # drawn even when noise = 0: same stream for any noise
    theta = 4.0 * r[None, :] + offset[:, None] + noise * eps  # (K, N)
    x = np.stack([r * np.sin(theta), r * np.cos(theta)], axis=-1).reshape(k * n, 2)
    y = np.repeat(np.arange(k, dtype=np.int64), n)
    return x.astype(dt), y
