"""Tests for nnref.data: shipped digits, stratified split, IDX files, MNIST, spirals.

Network tests use only a local ``http.server`` on 127.0.0.1 (ephemeral port); nothing
here touches the internet.
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import http.server
import math
import re
import tempfile
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nnref import data
from nnref.data import (
    MNIST_FILES,
    MNIST_SHA256,
    download_mnist,
    load_digits,
    load_mnist,
    make_spirals,
    read_idx,
    train_test_split,
    write_idx,
)
from strategies import seeds

# ======================================================================================
# Digits
# ======================================================================================


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_digits_shape_dtype_range(digits):
    x, y = digits
    assert x.shape == (1797, 64) and x.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    # Pixels are counts 0..16, so 16 * x must be whole numbers.
    assert np.array_equal(x * 16, np.round(x * 16))
    assert set(np.unique(y).tolist()) == set(range(10))


def test_digits_match_an_independent_parse_of_the_csv(digits):
    x, y = digits
    with gzip.open(data.DIGITS_PATH, "rt") as f:
        rows = [[int(v) for v in row] for row in csv.reader(f)]
    table = np.array(rows)
    assert table.shape == (1797, 65)
    assert np.array_equal(x * 16, table[:, :64])
    assert np.array_equal(y, table[:, 64])
    # First row of the file: "0,0,5,13,9,1,0,0,...,0" ending in label 0: 5 / 16 = 0.3125.
    assert x[0, 2] == 0.3125 and x[0, 3] == 13 / 16 and y[0] == 0


def test_digits_class_counts(digits):
    _, y = digits
    counts = np.bincount(y, minlength=10)
    # Counted independently with `zcat digits.csv.gz | awk -F, '{c[$65]++} ...'`.
    assert counts.tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert counts.sum() == 1797 and counts.min() >= 174 and counts.max() <= 183


def test_digits_dtype_argument():
    x64, _ = load_digits(dtype=np.float64)
    x32, _ = load_digits()
    assert x64.dtype == np.float64
    assert np.array_equal(x64, x32.astype(np.float64))  # k / 16 is exact in both
    with pytest.raises(TypeError, match="dtype"):
        load_digits(dtype=np.int32)


def test_digits_returns_fresh_arrays():
    x1, y1 = load_digits()
    x1[:] = -1.0
    y1[:] = -1
    x2, y2 = load_digits()
    assert x2.min() == 0.0 and y2.min() == 0


def test_digits_checksum_matches_source_md_and_file():
    source = (data.DIGITS_PATH.parent / "SOURCE.md").read_text()
    recorded = re.search(r"sha256:\s*([0-9a-f]{64})", source).group(1)
    assert data.DIGITS_SHA256 == recorded
    assert hashlib.sha256(data.DIGITS_PATH.read_bytes()).hexdigest() == recorded


def test_digits_corrupt_file_is_refused(tmp_path, monkeypatch):
    raw = bytearray(data.DIGITS_PATH.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # flip one bit
    bad = tmp_path / "digits.csv.gz"
    bad.write_bytes(bytes(raw))
    monkeypatch.setattr(data, "DIGITS_PATH", bad)
    with pytest.raises(ValueError, match=r"(?s)digits\.csv\.gz.*corrupt.*sha256 " + data.DIGITS_SHA256):
        load_digits()


# ======================================================================================
# train_test_split
# ======================================================================================


def _n_test(n, f):
    # The documented rule: ceil(n * f) with f read as the decimal it prints as.
    return math.ceil(Fraction(repr(float(f))) * n)


@st.composite
def labelled_sets(draw, max_n=120, max_classes=6):
    """(y, test_fraction) with both parts of the split non-empty."""
    n = draw(st.integers(2, max_n))
    k = draw(st.integers(1, max_classes))
    y = draw(hnp.arrays(np.int64, n, elements=st.integers(0, k - 1)))
    f = draw(st.floats(0.01, 0.99))
    assume(_n_test(n, f) < n)
    return y, f


def _split_indices(y, f, seed, stratify=True):
    """Split x = [[0, 0], [1, 1], ...] so each returned row names the example it came from."""
    n = len(y)
    x = np.repeat(np.arange(n), 2).reshape(n, 2)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_fraction=f, seed=seed, stratify=stratify)
    assert np.array_equal(x_tr[:, 0], x_tr[:, 1]) and np.array_equal(x_te[:, 0], x_te[:, 1])
    # Labels travel with their rows.
    assert np.array_equal(y_tr, y[x_tr[:, 0]]) and np.array_equal(y_te, y[x_te[:, 0]])
    return x_tr[:, 0], x_te[:, 0]


@given(labelled_sets(), seeds, st.booleans())
def test_split_is_a_partition_of_the_right_sizes(ys, seed, stratify):
    y, f = ys
    train, test = _split_indices(y, f, seed, stratify)
    n, n_test = len(y), _n_test(len(y), f)
    assert len(test) == n_test and len(train) == n - n_test
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(n))  # disjoint, covering


@given(labelled_sets(), seeds)
def test_split_stratification_within_one_per_class(ys, seed):
    y, f = ys
    train, test = _split_indices(y, f, seed)
    n, n_test = len(y), len(test)
    for k in np.unique(y):
        c_k = int((y == k).sum())
        t_k = int((y[test] == k).sum())
        r_k = int((y[train] == k).sum())
        # |t_k - c_k n_test / n| < 1, in integers; the training side likewise.
        assert abs(t_k * n - c_k * n_test) < n
        assert abs(r_k * n - c_k * (n - n_test)) < n


@given(labelled_sets(), seeds)
def test_split_rounds_up_the_largest_remainders(ys, seed):
    y, f = ys
    _, test = _split_indices(y, f, seed)
    n, n_test = len(y), len(test)
    classes = np.unique(y)
    num = [int((y == k).sum()) * n_test for k in classes]  # q_k = num_k / n
    t = [int((y[test] == k).sum()) for k in classes]
    up = [t_k * n > num_k for t_k, num_k in zip(t, num)]  # rounded up?
    rem = [num_k % n for num_k in num]
    assert sum(t) == n_test
    for a in range(len(classes)):
        for b in range(len(classes)):
            if up[a] and not up[b]:
                assert rem[a] >= rem[b]


@given(labelled_sets(), seeds, st.booleans())
def test_split_is_deterministic_in_the_seed(ys, seed, stratify):
    y, f = ys
    first = _split_indices(y, f, seed, stratify)
    again = _split_indices(y, f, seed, stratify)
    from_generator = _split_indices(y, f, np.random.default_rng(seed), stratify)
    for a, b, c in zip(first, again, from_generator):
        assert np.array_equal(a, b) and np.array_equal(a, c)


def test_split_worked_examples():
    # Digits: ceil(1797 * 0.2) = ceil(359.4) = 360 test, 1437 train.
    x, y = np.zeros((1797, 1)), np.arange(1797) % 10
    x_tr, x_te, y_tr, y_te = train_test_split(x, y)
    assert (len(x_tr), len(x_te), len(y_tr), len(y_te)) == (1437, 360, 1437, 360)

    # 6 zeros, 4 ones, f = 0.5: n_test = 5, q = (6 * 5 / 10, 4 * 5 / 10) = (3, 2) exactly.
    y = np.array([0] * 6 + [1] * 4)
    _, _, _, y_te = train_test_split(np.zeros((10, 1)), y, test_fraction=0.5)
    assert np.bincount(y_te).tolist() == [3, 2]

    # Counts (5, 3, 2), f = 0.3: n_test = 3; q = (1.5, 0.9, 0.6), floors (1, 0, 0) sum 1;
    # the 2 left over go to the largest remainders 0.9 and 0.6, not to class 0's 0.5.
    y = np.array([0] * 5 + [1] * 3 + [2] * 2)
    for seed in range(5):
        _, _, _, y_te = train_test_split(np.zeros((10, 1)), y, test_fraction=0.3, seed=seed)
        assert np.bincount(y_te, minlength=3).tolist() == [1, 1, 1]

    # 0.07 * 100 is 7.000000000000001 in floating point; the decimal 0.07 gives 7.
    assert 0.07 * 100 > 7
    _, x_te, _, _ = train_test_split(np.zeros((100, 1)), np.zeros(100, dtype=int), test_fraction=0.07)
    assert len(x_te) == 7

    # A three-way tie: counts (1, 1, 1), f = 0.5: n_test = ceil(1.5) = 2, q_k = 2/3 each,
    # floors 0; two of the three classes (chosen at random) get one test example each.
    for seed in range(5):
        _, _, _, y_te = train_test_split(np.zeros((3, 1)), np.array([0, 1, 2]), test_fraction=0.5, seed=seed)
        assert len(y_te) == 2 and len(set(y_te.tolist())) == 2


def test_split_unstratified_accepts_float_targets_and_keeps_dtypes():
    x = np.arange(20, dtype=np.int16).reshape(10, 2)
    y = np.linspace(0.0, 1.0, 10)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_fraction=0.25, stratify=False)
    assert (len(x_te), len(x_tr)) == (3, 7)  # ceil(2.5) = 3
    assert x_tr.dtype == np.int16 and y_te.dtype == np.float64


def test_split_bad_inputs():
    x, y = np.zeros((10, 2)), np.arange(10) % 2
    with pytest.raises(ValueError, match="y: expected one label per row"):
        train_test_split(x, y[:9])
    for bad in (0.0, 1.0, 1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match="test_fraction"):
            train_test_split(x, y, test_fraction=bad)
    with pytest.raises(TypeError, match="test_fraction"):
        train_test_split(x, y, test_fraction="0.2")
    # n = 2, f = 0.6: ceil(1.2) = 2 test examples, none left to train on.
    with pytest.raises(ValueError, match="test_fraction.*training set empty"):
        train_test_split(x[:2], y[:2], test_fraction=0.6)
    with pytest.raises(TypeError, match="y: stratify=True needs integer"):
        train_test_split(x, y.astype(float))
    with pytest.raises(ValueError, match="y: expected a 1-D"):
        train_test_split(x, y.reshape(5, 2))
    with pytest.raises(ValueError, match="x: expected"):
        train_test_split(np.float64(1.0), y)
    with pytest.raises(TypeError, match="stratify"):
        train_test_split(x, y, stratify="yes")
    with pytest.raises(TypeError, match="seed"):
        train_test_split(x, y, seed=1.5)


# ======================================================================================
# IDX files
# ======================================================================================

IDX_DTYPES = ["u1", "i1", "i2", "i4", "f4", "f8"]


@st.composite
def idx_arrays(draw):
    code = draw(st.sampled_from(IDX_DTYPES))
    order = draw(st.sampled_from("<>")) if code not in ("u1", "i1") else "|"
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5))
    return draw(hnp.arrays(np.dtype(order + code), shape))


@given(idx_arrays(), st.booleans())
def test_idx_round_trip(array, gz):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / ("a.idx.gz" if gz else "a.idx")
        assert write_idx(path, array) == path
        back = read_idx(path)
        assert path.read_bytes()[:2] == (b"\x1f\x8b" if gz else b"\x00\x00")
    assert back.shape == array.shape
    assert back.dtype == array.dtype.newbyteorder("=")
    assert back.dtype.isnative and back.flags.writeable
    # Bit for bit, so NaN payloads and -0.0 survive too.
    assert back.tobytes() == array.astype(back.dtype).tobytes()


def test_idx_header_worked_example(tmp_path):
    path = write_idx(tmp_path / "a", np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8))
    # 00 00 | 08 = unsigned byte | 02 dims | 2 and 3 as big-endian uint32 | the 6 bytes.
    assert path.read_bytes() == bytes.fromhex("00000802" "00000002" "00000003" "010203040506")


def test_idx_reads_a_hand_made_file(tmp_path):
    # int16, 1 dim of 2: 258 = 0x0102, -2 = 0xFFFE in two's complement, big-endian.
    path = tmp_path / "h"
    path.write_bytes(bytes.fromhex("00000B01" "00000002" "0102" "FFFE"))
    arr = read_idx(path)
    assert arr.dtype == np.int16 and arr.tolist() == [258, -2]
    # float32 1.0 = 0x3F800000, -2.5 = 0xC0200000.
    path.write_bytes(bytes.fromhex("00000D01" "00000002" "3F800000" "C0200000"))
    assert read_idx(path).tolist() == [1.0, -2.5]


def test_idx_gzip_is_detected_without_the_suffix(tmp_path):
    array = np.arange(12, dtype=np.int32).reshape(3, 4)
    gz = write_idx(tmp_path / "a.gz", array)
    plain_name = tmp_path / "a"
    gz.rename(plain_name)
    assert np.array_equal(read_idx(plain_name), array)


def test_idx_gzip_output_is_deterministic(tmp_path):
    array = np.arange(50, dtype=np.uint8)
    first = write_idx(tmp_path / "a.gz", array).read_bytes()
    second = write_idx(tmp_path / "b.gz", array).read_bytes()
    assert first == second


# Valid file: uint8, dims (2, 3), six data bytes.
_GOOD = bytes.fromhex("00000802" "00000002" "00000003" "010203040506")


@pytest.mark.parametrize(
    "content, message",
    [
        (bytes.fromhex("01000802") + _GOOD[4:], "not an IDX file"),  # wrong magic
        (bytes.fromhex("00000702") + _GOOD[4:], "unknown IDX type code 0x07"),
        (bytes.fromhex("00000800"), "0 dimensions"),
        (bytes.fromhex("00000803" "00000002" "00000003"), "truncated IDX header"),  # 3 dims, 2 given
        (_GOOD[:-1], "truncated"),  # one data byte missing
        (_GOOD + b"\x07", "extra data"),
        (b"\x00\x00", "4-byte magic"),
        (gzip.compress(_GOOD)[:-6], "corrupt gzip"),  # gzip stream cut short
    ],
    ids=["magic", "type-code", "ndim-0", "header", "truncated", "extra", "short", "gzip"],
)
def test_idx_corruption_names_the_file(tmp_path, content, message):
    path = tmp_path / "broken-file.idx"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + message):
        read_idx(path)


def test_idx_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        read_idx(tmp_path / "missing")
    with pytest.raises(TypeError, match="path"):
        read_idx(3)
    with pytest.raises(TypeError, match="array: expected a dtype IDX can store.*int64"):
        write_idx(tmp_path / "a", np.zeros(3, dtype=np.int64))
    with pytest.raises(TypeError, match="array: expected a numpy.ndarray"):
        write_idx(tmp_path / "a", [1, 2, 3])
    with pytest.raises(ValueError, match="array: expected 1 to 255 dimensions"):
        write_idx(tmp_path / "a", np.array(3, dtype=np.uint8))


# ======================================================================================
# MNIST
# ======================================================================================


def _fake_mnist(directory: Path, gz=(True, True, False, False), n=(6, 4), shape=(3, 2), seed=0):
    """Write the four MNIST files (tiny) into ``directory``; return the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n[0], *shape), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n[0], dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n[1], *shape), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n[1], dtype=np.uint8),
    }
    for (key, stem), compressed in zip(MNIST_FILES.items(), gz):
        write_idx(directory / (stem + (".gz" if compressed else "")), arrays[key])
    return arrays


def _assert_loaded(loaded, arrays):
    x_train, y_train, x_test, y_test = loaded
    for x, images in ((x_train, arrays["train_images"]), (x_test, arrays["test_images"])):
        n, rows, cols = images.shape
        assert x.dtype == np.float32 and x.shape == (n, rows * cols)
        assert 0.0 <= x.min() and x.max() <= 1.0
        assert np.array_equal(np.rint(x * 255).astype(np.uint8), images.reshape(n, -1))
    for y, labels in ((y_train, arrays["train_labels"]), (y_test, arrays["test_labels"])):
        assert y.dtype == np.int64 and np.array_equal(y, labels)


@pytest.mark.parametrize("gz", [(True,) * 4, (False,) * 4, (True, False, False, True)])
def test_mnist_load_round_trip(tmp_path, gz):
    arrays = _fake_mnist(tmp_path, gz=gz)
    _assert_loaded(load_mnist(tmp_path), arrays)


def test_mnist_scaling_worked_example(tmp_path):
    arrays = _fake_mnist(tmp_path)
    arrays["train_images"][0, 0, :] = [0, 255]
    arrays["train_images"][0, 1, :] = [51, 1]
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", arrays["train_images"])
    x_train, _, _, _ = load_mnist(str(tmp_path))
    # Row-major: pixel (r, c) -> column r * 2 + c. 255 / 255 = 1, 51 / 255 = 0.2.
    assert x_train[0, 0] == 0.0 and x_train[0, 1] == 1.0
    assert x_train[0, 2] == np.float32(0.2) and x_train[0, 3] == np.float32(1) / np.float32(255)


def test_mnist_prefers_the_raw_file(tmp_path):
    arrays = _fake_mnist(tmp_path, gz=(False,) * 4)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", (arrays["test_labels"] + 1) % 10)
    _, _, _, y_test = load_mnist(tmp_path)
    assert np.array_equal(y_test, arrays["test_labels"])


def test_mnist_missing_file_lists_expected_names(tmp_path):
    _fake_mnist(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match=r"t10k-images-idx3-ubyte: no such file.*train-labels-idx1-ubyte"):
        load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such directory"):
        load_mnist(tmp_path / "nowhere")


def test_mnist_count_mismatch(tmp_path):
    arrays = _fake_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", arrays["train_labels"][:-1])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz: holds 6 images but .* 5 labels"):
        load_mnist(tmp_path)


def test_mnist_wrong_magic(tmp_path):
    arrays = _fake_mnist(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", arrays["train_images"].astype(np.int8))
    pattern = r"train-images-idx3-ubyte\.gz: expected MNIST images.*0x00000803, got 0x00000903"
    with pytest.raises(ValueError, match=pattern):
        load_mnist(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", arrays["train_images"].reshape(6, 6))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz: .*got 0x00000802"):
        load_mnist(tmp_path)


def test_mnist_label_out_of_range(tmp_path):
    arrays = _fake_mnist(tmp_path)
    labels = arrays["test_labels"].copy()
    labels[1] = 10
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels)
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte: expected labels in 0\.\.9, got 1 outside"):
        load_mnist(tmp_path)


def test_mnist_truncated_file_names_it(tmp_path):
    _fake_mnist(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte: truncated"):
        load_mnist(tmp_path)


def test_mnist_train_and_test_image_sizes_must_agree(tmp_path):
    arrays = _fake_mnist(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((4, 2, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte: images have 4 pixels .* have 6"):
        load_mnist(tmp_path)
    assert arrays  # the training files were valid


# ======================================================================================
# download_mnist, on loopback only
# ======================================================================================


class _QuietRecordingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def do_GET(self):
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/served on 127.0.0.1:<ephemeral>; yield (base_url, folder, requests)."""
    served = tmp_path / "served"
    served.mkdir()
    requests: list[str] = []
    handler = type("Handler", (_QuietRecordingHandler,), {"requests": requests})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(served)))
    # A short poll interval so shutdown() returns at once instead of after the 0.5 s default.
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/mnist", served, requests
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _serve_fake_mnist(served: Path):
    (served / "mnist").mkdir()
    arrays = _fake_mnist(served / "mnist", gz=(True,) * 4)
    digests = {name: hashlib.sha256((served / "mnist" / name).read_bytes()).hexdigest() for name in MNIST_SHA256}
    return arrays, digests


def _leftovers(directory: Path):
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part"))


def test_download_then_load_round_trip(tmp_path, server):
    base_url, served, requests = server
    arrays, digests = _serve_fake_mnist(served)
    dest = tmp_path / "dest" / "nested"
    assert download_mnist(dest, base_url=base_url, checksums=digests, timeout=5) == dest
    assert sorted(requests) == sorted(f"/mnist/{name}" for name in MNIST_SHA256)
    for name in MNIST_SHA256:
        assert (dest / name).read_bytes() == (served / "mnist" / name).read_bytes()
    assert _leftovers(dest) == []
    _assert_loaded(load_mnist(dest), arrays)

    # Files already present with the right checksum are not fetched again.
    requests.clear()
    download_mnist(dest, base_url=base_url + "/", checksums=digests, timeout=5)
    assert requests == []


def test_download_checksum_mismatch_is_rejected_and_not_kept(tmp_path, server):
    base_url, served, _ = server
    _, digests = _serve_fake_mnist(served)
    wrong = dict(digests, **{"train-labels-idx1-ubyte.gz": "ab" * 32})
    dest = tmp_path / "dest"
    pattern = (
        r"train-labels-idx1-ubyte\.gz: sha256 mismatch .*expected " + "ab" * 32
        + ", got " + digests["train-labels-idx1-ubyte.gz"]
    )
    with pytest.raises(ValueError, match=pattern):
        download_mnist(dest, base_url=base_url, checksums=wrong, timeout=5)
    assert not (dest / "train-labels-idx1-ubyte.gz").exists()
    assert _leftovers(dest) == []


def test_download_replaces_a_corrupt_existing_file(tmp_path, server):
    base_url, served, requests = server
    arrays, digests = _serve_fake_mnist(served)
    dest = tmp_path / "dest"
    download_mnist(dest, base_url=base_url, checksums=digests, timeout=5)
    (dest / "t10k-labels-idx1-ubyte.gz").write_bytes(b"garbage")
    requests.clear()
    download_mnist(dest, base_url=base_url, checksums=digests, timeout=5)
    assert requests == ["/mnist/t10k-labels-idx1-ubyte.gz"]
    _assert_loaded(load_mnist(dest), arrays)


def test_download_without_checksums_checks_idx_structure(tmp_path, server):
    base_url, served, _ = server
    arrays, _ = _serve_fake_mnist(served)
    dest = tmp_path / "dest"
    download_mnist(dest, base_url=base_url, checksums=None, timeout=5)
    _assert_loaded(load_mnist(dest), arrays)

    (served / "mnist" / "t10k-images-idx3-ubyte.gz").write_bytes(b"<html>not found</html>")
    dest2 = tmp_path / "dest2"
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz: .* is not a valid IDX file"):
        download_mnist(dest2, base_url=base_url, checksums=None, timeout=5)
    assert not (dest2 / "t10k-images-idx3-ubyte.gz").exists()
    assert _leftovers(dest2) == []


def test_download_http_error_names_the_url_and_leaves_nothing(tmp_path, server):
    base_url, served, _ = server
    _, digests = _serve_fake_mnist(served)
    (served / "mnist" / "t10k-images-idx3-ubyte.gz").unlink()
    dest = tmp_path / "dest"
    with pytest.raises(OSError, match=re.escape(base_url + "/t10k-images-idx3-ubyte.gz")):
        download_mnist(dest, base_url=base_url, checksums=digests, timeout=5)
    assert not (dest / "t10k-images-idx3-ubyte.gz").exists()
    assert _leftovers(dest) == []


def test_download_bad_arguments(tmp_path):
    # All rejected before any network access.
    partial = {"train-images-idx3-ubyte.gz": "00" * 32}
    with pytest.raises(ValueError, match="checksums: expected a sha256 digest for each"):
        download_mnist(tmp_path, checksums=partial)
    with pytest.raises(ValueError, match="checksums: expected a 64-character hex"):
        download_mnist(tmp_path, checksums=dict(MNIST_SHA256, **{"t10k-labels-idx1-ubyte.gz": "xyz"}))
    with pytest.raises(TypeError, match="checksums"):
        download_mnist(tmp_path, checksums=["a"])
    with pytest.raises(ValueError, match="timeout"):
        download_mnist(tmp_path, timeout=0)
    with pytest.raises(TypeError, match="base_url"):
        download_mnist(tmp_path, base_url=None)
    with pytest.raises(TypeError, match="directory"):
        download_mnist(None)


def test_mnist_constants_are_consistent():
    assert list(MNIST_SHA256) == [stem + ".gz" for stem in MNIST_FILES.values()]
    for digest in MNIST_SHA256.values():
        assert re.fullmatch("[0-9a-f]{64}", digest)
    assert data.DEFAULT_MNIST_URL.startswith("https://")


# ======================================================================================
# Spirals
# ======================================================================================


@given(st.integers(1, 40), st.integers(1, 6), st.floats(0.0, 1.0), seeds)
def test_spirals_shape_labels_and_radius(n, k, noise, seed):
    x, y = make_spirals(n, k, noise=noise, seed=seed, dtype=np.float64)
    assert x.shape == (k * n, 2) and x.dtype == np.float64
    assert y.dtype == np.int64 and np.array_equal(y, np.repeat(np.arange(k), n))
    # Noise only turns a point along its circle: |x| = r_i = i / (N - 1) whatever it is.
    r = np.tile(np.linspace(0.0, 1.0, n), k)
    np.testing.assert_allclose(np.hypot(x[:, 0], x[:, 1]), r, rtol=0, atol=1e-12)


@given(st.integers(2, 40), st.integers(1, 6))
def test_spirals_angle_without_noise(n, k):
    x, y = make_spirals(n, k, noise=0.0, dtype=np.float64)
    r = np.tile(np.linspace(0.0, 1.0, n), k)
    theta = 4 * r + 2 * np.pi * y / k
    # Compare angles on the unit circle: x = r (sin theta, cos theta).
    np.testing.assert_allclose(x[:, 0], r * np.sin(theta), atol=1e-12)
    np.testing.assert_allclose(x[:, 1], r * np.cos(theta), atol=1e-12)


def test_spirals_worked_example():
    x, y = make_spirals(n_per_class=2, n_classes=2, noise=0.0, dtype=np.float64)
    # r = (0, 1). Class 0: theta = 4, (sin 4, cos 4) = (-0.7568025, -0.6536436).
    # Class 1: theta = 4 + pi, the same point mirrored through the origin.
    expected = [[0, 0], [-0.7568025, -0.6536436], [0, 0], [0.7568025, 0.6536436]]
    np.testing.assert_allclose(x, expected, atol=1e-7)
    assert y.tolist() == [0, 0, 1, 1]


def test_spirals_noise_is_gaussian_on_the_angle():
    noise = 0.2
    x, _ = make_spirals(n_per_class=4001, n_classes=1, noise=noise, seed=3, dtype=np.float64)
    r = np.linspace(0.0, 1.0, 4001)[1:]  # the r = 0 point has no angle
    observed = np.arctan2(x[1:, 0], x[1:, 1])
    residual = np.angle(np.exp(1j * (observed - 4 * r)))  # wrapped to (-pi, pi]
    # Mean 0 and std 0.2: standard errors 0.2 / sqrt(4000) = 0.0032 and about 0.0022.
    assert abs(residual.mean()) < 0.015
    assert abs(residual.std() - noise) < 0.01


def test_spirals_deterministic_and_dtype():
    a, ya = make_spirals(seed=7)
    b, yb = make_spirals(seed=np.random.default_rng(7))
    assert a.dtype == np.float32 and a.shape == (300, 2)
    assert np.array_equal(a, b) and np.array_equal(ya, yb)
    assert np.array_equal(a, make_spirals(seed=7)[0])


def test_spirals_bad_inputs():
    with pytest.raises(ValueError, match="n_per_class"):
        make_spirals(n_per_class=0)
    with pytest.raises(TypeError, match="n_classes"):
        make_spirals(n_classes=1.5)
    with pytest.raises(ValueError, match="noise"):
        make_spirals(noise=-0.1)
    with pytest.raises(TypeError, match="dtype"):
        make_spirals(dtype=np.int64)
    with pytest.raises(TypeError, match="seed"):
        make_spirals(seed="zero")


def test_module_exports_exist():
    for name in data.__all__:
        assert hasattr(data, name)
