"""Data sets and the plumbing around them: the shipped digits, spirals, a split, by name.

Everything here is deterministic (each random choice takes a seed or a
``numpy.random.Generator``) and every file is checked before it is trusted: the shipped
digits file against its recorded sha256, MNIST files against the IDX format and, when
downloaded, against their published sha256.

- :func:`load_digits`: the 1,797 8x8 UCI digits that ship with nnref (no network needed).
- :func:`train_test_split`: a seeded, optionally stratified split, in scikit-learn's order.
- :func:`make_spirals`: the CS231n toy spiral data set.
- :func:`load_dataset`: any of them (or MNIST) by name, split.
- :func:`read_idx` / :func:`write_idx` (from :mod:`nnref.idx`): the IDX binary format
  MNIST is distributed in.
- :func:`load_mnist` / :func:`download_mnist` (from :mod:`nnref.mnist`): the four
  standard MNIST files.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import numbers
from fractions import Fraction
from pathlib import Path

import numpy as np

from ._checks import as_rng, check_int_in_range, check_nonnegative, describe
from .idx import read_idx, write_idx
from .mnist import DEFAULT_MNIST_URL, MNIST_FILES, MNIST_SHA256, download_mnist, load_mnist

__all__ = [
    "DATASETS",
    "DEFAULT_MNIST_URL",
    "DIGITS_PATH",
    "DIGITS_SHA256",
    "MNIST_FILES",
    "MNIST_SHA256",
    "download_mnist",
    "load_dataset",
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


def _check_float_dtype(dtype, name: str) -> np.dtype:
    """Return ``np.dtype(dtype)`` after checking it is a floating dtype (TypeError naming ``name``)."""
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
    The rows are in file order (not shuffled); use ``train_test_split`` to split them.

    Parameters
    ----------
    dtype : numpy floating dtype, default float32
        The dtype of ``x``.

    Returns
    -------
    x : numpy.ndarray
        Shape (1797, 64), dtype ``dtype``: row-major 8x8 images, one per row.
    y : numpy.ndarray
        Shape (1797,), int64, values 0..9 (174 to 183 examples per class).

    Raises
    ------
    TypeError
        For a ``dtype`` that is not a floating dtype.
    ValueError
        When the shipped file's sha256 differs from ``DIGITS_SHA256`` (checked before
        parsing): a corrupt installation fails loudly rather than training on damaged
        data.

    References
    ----------
    E. Alpaydin and C. Kaynak (1998), "Optical Recognition of Handwritten Digits",
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

    Parameters
    ----------
    x : array_like
        Shape (n, ...), any dtype; rows are examples.
    y : array_like
        Shape (n,); integer class labels when ``stratify`` is True.
    test_fraction : float, default 0.2
        Share of the examples to hold out, in (0, 1); must leave at least one training
        example.
    seed : int >= 0 or numpy.random.Generator, default 0
        The randomness.
    stratify : bool, default True
        Keep each class's share equal in both parts (see above).

    Returns
    -------
    tuple of numpy.ndarray
        ``(x_train, x_test, y_train, y_test)``, scikit-learn's order, each a new array
        with the input's dtype.

    Raises
    ------
    TypeError
        For a non-number ``test_fraction``, a non-bool ``stratify``, non-integer labels
        with ``stratify=True``, a bad ``seed`` type.
    ValueError
        For mismatched shapes, a ``test_fraction`` outside (0, 1) or leaving an empty
        part, a negative ``seed``.
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

    Parameters
    ----------
    n_per_class : int, default 100
        ``N``, points per arm, >= 1.
    n_classes : int, default 3
        ``K``, arms, >= 1.
    noise : float, default 0.2
        Standard deviation of the angle noise (radians), >= 0.
    seed : int >= 0 or numpy.random.Generator, default 0
        The randomness.
    dtype : numpy floating dtype, default float32
        The dtype of ``x`` (computed in float64, then cast).

    Returns
    -------
    x : numpy.ndarray
        Shape (K * N, 2), dtype ``dtype``; rows grouped by class (class 0 first).
    y : numpy.ndarray
        Shape (K * N,), int64.

    Raises
    ------
    TypeError
        For non-integer sizes, a non-float ``dtype``, a bad ``seed`` type.
    ValueError
        For sizes < 1, a negative ``noise`` or ``seed``.
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


# --------------------------------------------------------------------------------------
# By name
# --------------------------------------------------------------------------------------

#: The data sets :func:`load_dataset` knows.
DATASETS = ("digits", "mnist", "spirals")


def load_dataset(name: str, data_dir=None, seed: int = 0):
    """A data set by name, split into training and test sets.

    Parameters
    ----------
    name : {"digits", "mnist", "spirals"}
        ``"digits"``: :func:`load_digits`, stratified 80/20 split; ``"mnist"``: the
        standard split, from the IDX files in ``data_dir`` (:func:`load_mnist`);
        ``"spirals"``: :func:`make_spirals` (3 classes of 200 points, noise 0.2),
        stratified 80/20 split.
    data_dir : str or os.PathLike, optional
        The MNIST folder; required for ``"mnist"`` and refused for the others.
    seed : int, default 0
        Seeds the split (and the spirals' noise), >= 0.

    Returns
    -------
    tuple of numpy.ndarray
        ``(x_train, x_test, y_train, y_test)``, scikit-learn's order.

    Raises
    ------
    ValueError
        For an unknown ``name``, a missing or unused ``data_dir``, a negative ``seed``,
        or MNIST files that fail :func:`load_mnist`'s checks.
    FileNotFoundError
        For a missing MNIST folder or file.
    """
    if name not in DATASETS:
        raise ValueError(f"name: expected one of {', '.join(DATASETS)}, got {name!r}")
    if (name == "mnist") != (data_dir is not None):
        raise ValueError(
            "data_dir: expected the folder holding the four MNIST IDX files for name='mnist' "
            "(download_mnist(DIR) fetches them), and None for the other data sets, got "
            f"{data_dir!r} for {name!r}"
        )
    seed = check_int_in_range(seed, "seed", 0, 2**63 - 1)
    if name == "mnist":
        x_train, y_train, x_test, y_test = load_mnist(data_dir)
        return x_train, x_test, y_train, y_test
    if name == "digits":
        x, y = load_digits()
    else:
        x, y = make_spirals(n_per_class=200, n_classes=3, noise=0.2, seed=seed)
    return train_test_split(x, y, test_fraction=0.2, seed=seed, stratify=True)
