"""MNIST: the four standard IDX files, loaded (:func:`load_mnist`) and downloaded
(:func:`download_mnist`) with every file checked before it is trusted.

A downloaded file is streamed into a temporary file next to its target, its sha256
compared with the published one (:data:`MNIST_SHA256`), and only then renamed into place,
so a failed or corrupt download never leaves a file where :func:`load_mnist` would read it.

Source: Y. LeCun, C. Cortes, C. J. C. Burges, "The MNIST database of handwritten digits"
(format and file names).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ._checks import check_positive, describe
from ._files import as_path
from .idx import idx_code, read_idx

__all__ = ["DEFAULT_MNIST_URL", "MNIST_FILES", "MNIST_SHA256", "download_mnist", "load_mnist"]

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
    """The four file names, for error messages."""
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
    """Refuse an array whose dtype and rank are not the MNIST file's ``magic``."""
    code = idx_code(arr.dtype)  # read_idx only returns IDX dtypes, so never None
    got = (code << 8) | arr.ndim
    if got != magic:
        raise ValueError(
            f"{path}: expected MNIST {what}, IDX magic number 0x{magic:08X}, got 0x{got:08X} "
            f"({arr.dtype}, shape {arr.shape})"
        )


def _read_mnist_images(path: Path) -> np.ndarray:
    """MNIST images as float32 rows in [0, 1], shape (n, rows * cols)."""
    images = read_idx(path)
    _check_mnist_magic(images, path, _MNIST_IMAGES_MAGIC, "images (uint8, 3 dimensions)")
    n, rows, cols = images.shape
    # uint8 / 255 in float32: exact to half an ulp, and x * 255 rounds back to the byte.
    return images.reshape(n, rows * cols).astype(np.float32) / np.float32(255)


def _read_mnist_labels(path: Path) -> np.ndarray:
    """MNIST labels as int64, each checked to be in 0..9."""
    labels = read_idx(path)
    _check_mnist_magic(labels, path, _MNIST_LABELS_MAGIC, "labels (uint8, 1 dimension)")
    bad = labels > 9
    if bad.any():
        raise ValueError(
            f"{path}: expected labels in 0..9, got {int(bad.sum())} outside it "
            f"(largest {int(labels.max())})"
        )
    return labels.astype(np.int64)


def _load_mnist_split(directory: Path, images_stem: str, labels_stem: str) -> tuple[np.ndarray, np.ndarray, Path]:
    """One split's images and labels (same count checked), and the images' path."""
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

    Parameters
    ----------
    directory : str or os.PathLike
        The folder holding the four files.

    Returns
    -------
    tuple of numpy.ndarray
        ``(x_train, y_train, x_test, y_test)``: ``x_*`` float32 of shape (n, rows * cols)
        in [0, 1] ((60000, 784) and (10000, 784) for the real MNIST), ``y_*`` int64 of
        shape (n,) in 0..9. Note the order: each split's images then its labels, unlike
        ``train_test_split``'s scikit-learn order.

    Raises
    ------
    TypeError
        For a ``directory`` that is not a path.
    FileNotFoundError
        Naming the path and the expected file names, for a missing folder or file.
    ValueError
        Naming the file, for a wrong magic number, a truncated or overlong file, an
        image/label count mismatch, a label outside 0..9, or training and test images of
        different sizes.

    References
    ----------
    Y. LeCun, C. Cortes, C. J. C. Burges, "The MNIST database of handwritten
    digits" (format and file names).
    """
    directory = as_path(directory, "directory")
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
    """``checksums`` as a dict of the four names -> lower-case sha256 digests, or None."""
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
    independent downloaders record them.

    Parameters
    ----------
    directory : str or os.PathLike
        Where the files go (created if needed).
    base_url : str, default DEFAULT_MNIST_URL
        The mirror.
    checksums : dict of str to str, or None, default MNIST_SHA256
        File name -> sha256 hex digest, for each of the four files; None checks only the
        IDX structure.
    timeout : float, default 30.0
        Seconds to wait for the network, > 0.

    Returns
    -------
    pathlib.Path
        ``directory``, ready for :func:`load_mnist`.

    Raises
    ------
    TypeError
        For arguments of the wrong type.
    ValueError
        For an empty ``base_url``, malformed ``checksums``, a ``timeout`` not > 0, or a
        download that fails its check (naming the file, expected and received digest).
    OSError
        Naming the URL, when the network fails.
    """
    directory = as_path(directory, "directory")
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


def _sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in blocks so large files need little memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

