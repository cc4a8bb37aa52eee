"""Files: every writer replaces its file atomically (a failed write leaves the previous
file loadable), and every reader checks a header against the file's size before it
allocates what the header announces."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import stat
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from nnref._files import atomic_write, check_writable_dir, check_writable_file
from nnref._npz import MAX_DEFLATE_RATIO, read_archive
from nnref.idx import MAX_GZIP_RATIO, read_idx, write_idx
from nnref.mlp import MLP
from nnref.quant import QuantizedMLP, quantize_model

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------ atomic_write


class Boom(Exception):
    pass


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old content")

    def half_then_fail(f):
        f.write(b"new")
        raise Boom

    with pytest.raises(Boom):
        atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"old content"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"], "the temporary file is removed"


def test_atomic_write_replaces_and_keeps_the_permission_bits(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    assert atomic_write(target, lambda f: f.write(b"new")) == target
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    # A new file gets the umask's mode, as open(path, "wb") would give it (not mkstemp's 0o600).
    umask = os.umask(0o022)
    os.umask(umask)
    atomic_write(tmp_path / "g.bin", lambda f: f.write(b"x"))
    assert stat.S_IMODE((tmp_path / "g.bin").stat().st_mode) == 0o666 & ~umask


def test_atomic_write_into_a_missing_folder_is_an_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "no" / "f.bin", lambda f: f.write(b"x"))


def test_writable_checks_name_the_argument(tmp_path):
    (tmp_path / "a-file").write_bytes(b"")
    assert check_writable_file(tmp_path / "m.npz", "--save") == tmp_path / "m.npz"
    assert check_writable_dir(tmp_path / "new" / "deeper", "--out") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists(), "checking creates nothing"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"], "no probe file is left"
    with pytest.raises(ValueError, match="--save: expected a file name, got .* which is a folder"):
        check_writable_file(tmp_path, "--save")
    with pytest.raises(ValueError, match="--save: expected a file in an existing folder"):
        check_writable_file(tmp_path / "missing" / "m.npz", "--save")
    with pytest.raises(ValueError, match="--out: expected a folder, got .* is a file"):
        check_writable_dir(tmp_path / "a-file" / "figs", "--out")
    with pytest.raises(TypeError, match="--save: expected a str or os.PathLike path, got int"):
        check_writable_file(3, "--save")


# ------------------------------------------------------------------- fault injection

# Runs in a subprocess: RLIMIT_FSIZE caps the size of any file the process writes, and
# with SIGXFSZ ignored a write past the cap raises OSError (EFBIG) instead of killing the
# process. For each writer and each cap, the previous (small) file is overwritten by a
# larger one under the cap; the write must fail and the previous file still load equal.
_FAULT_SCRIPT = textwrap.dedent("""
    import json, os, resource, signal, sys
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from nnref.data import read_idx, write_idx
    from nnref.plots import save_figure
    from nnref.mlp import MLP
    from nnref.quant import QuantizedMLP, quantize_model

    folder = sys.argv[1]
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    rng = np.random.default_rng(0)
    x = rng.random((64, 8)).astype(np.float32)
    old_mlp, new_mlp = MLP([8, 4, 3], seed=0), MLP([8, 256, 64, 3], seed=1)
    old_q, new_q = quantize_model(old_mlp, x), quantize_model(new_mlp, x)
    old_idx, new_idx = rng.integers(0, 256, 50, dtype=np.uint8), rng.integers(0, 256, 40000, dtype=np.uint8)
    writers = {
        "MLP.save": ("m.npz", lambda p, m: m.save(p), old_mlp, new_mlp,
                     lambda p: MLP.load(p).params["W1"].tolist(), old_mlp.params["W1"].tolist()),
        "QuantizedMLP.save": ("q.npz", lambda p, m: m.save(p), old_q, new_q,
                              lambda p: QuantizedMLP.load(p).layers[0].w_q.tolist(),
                              old_q.layers[0].w_q.tolist()),
        "write_idx": ("a.idx", write_idx, old_idx, new_idx, lambda p: read_idx(p).tolist(), old_idx.tolist()),
        "write_idx .gz": ("a.idx.gz", write_idx, old_idx, new_idx, lambda p: read_idx(p).tolist(),
                          old_idx.tolist()),
    }
    from nnref.interop import from_onnx, to_onnx
    writers["to_onnx"] = ("q.onnx", lambda p, m: to_onnx(m, p), old_q, new_q,
                          lambda p: from_onnx(p).layers[0].w_q.tolist(), old_q.layers[0].w_q.tolist())
    from nnref.course import write_exercises
    sources = {}
    for label, padding in (("old", 1), ("new", 400)):  # a tutorial with one exercise binding
        src = os.path.join(folder, "src-" + label)
        os.makedirs(src)
        with open(os.path.join(src, "01_t.py"), "w") as f:
            f.write('# %% tags=["exercise"]\\nrelu_backward = laws.reference("relu_backward")\\n'
                    + "# %%\\n" + "x = 1  # a line of the tutorial\\n" * padding)
        sources[label] = src
    writers["write_exercises"] = ("ex/01_t.ipynb", lambda p, src: write_exercises(os.path.dirname(p), src),
                                  sources["old"], sources["new"], lambda p: open(p).read(), None)
    os.makedirs(os.path.join(folder, "ex"))
    os.makedirs(os.path.join(folder, "sizing-ex"))
    old_fig, new_fig = plt.figure(figsize=(1, 1)), plt.figure(figsize=(4, 4))
    new_fig.gca().imshow(rng.random((200, 200)))  # noise: a PNG far above every small cap
    writers["save_figure"] = ("f.png", lambda p, fig: save_figure(fig, p, dpi=50), old_fig, new_fig,
                              lambda p: list(plt.imread(p).shape),
                              None)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    report = {}
    for name, (file, write, old, new, load, expected) in writers.items():
        path = os.path.join(folder, file)
        write(path, old)
        before = open(path, "rb").read()
        if expected is None:  # compared with what loaded before
            expected = load(path)
        sizing = os.path.join(folder, "sizing-" + file)
        write(sizing, new)  # the size of a complete new file
        full = os.path.getsize(sizing)
        os.remove(sizing)
        outcomes = []
        for cap in (0, 1, 512, 4096, full // 2, full - 1):
            resource.setrlimit(resource.RLIMIT_FSIZE, (cap, hard))
            try:
                write(path, new)
                raised = None
            except OSError as exc:
                raised = type(exc).__name__
            finally:
                resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            outcomes.append({"cap": cap, "raised": raised, "same_bytes": open(path, "rb").read() == before,
                             "loads_equal": load(path) == expected, "files": sorted(os.listdir(folder))})
        report[name] = {"full": full, "outcomes": outcomes}
    print(json.dumps(report))
""")


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE and SIGXFSZ are POSIX")
def test_every_file_writer_under_a_file_size_limit_leaves_the_previous_file(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", _FAULT_SCRIPT, str(tmp_path)], capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert set(report) == {"MLP.save", "QuantizedMLP.save", "write_idx", "write_idx .gz", "save_figure", "to_onnx",
                           "write_exercises"}
    for name, result in report.items():
        assert result["full"] > 4096, f"{name}: the new file must be larger than every cap but the last two"
        for o in result["outcomes"]:
            where = f"{name} capped at {o['cap']} bytes"
            assert o["raised"] is not None, f"{where}: the write should fail"
            assert o["same_bytes"] and o["loads_equal"], f"{where}: the previous file was damaged"
            assert len(o["files"]) == len(set(o["files"])) and not any(f.endswith(".tmp") for f in o["files"]), \
                f"{where}: a temporary file was left behind: {o['files']}"


# ----------------------------------------------------------------- .npz headers


def _rewrite_entry(path: Path, entry: str, content: bytes, out: Path) -> Path:
    """Copy the archive at ``path`` to ``out`` with ``entry`` replaced by ``content``."""
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, content if info.filename == entry else src.read(info))
    return out


def _npy_with_shape(array: np.ndarray, shape: tuple) -> bytes:
    """An .npy entry holding ``array``'s bytes but a header announcing ``shape``."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(array.dtype),
                                               "fortran_order": False, "shape": shape})
    return buf.getvalue() + array.tobytes()


@pytest.mark.parametrize("load", [MLP.load, QuantizedMLP.load], ids=["MLP", "QuantizedMLP"])
def test_a_small_npz_announcing_a_huge_array_is_refused_naming_the_file(tmp_path, load):
    model = MLP([4, 3, 2], seed=0)
    if load is MLP.load:
        model.save(tmp_path / "good.npz")
        entry, array = "W1.npy", model.params["W1"]
    else:
        q = quantize_model(model, np.random.default_rng(0).random((16, 4)).astype(np.float32))
        q.save(tmp_path / "good.npz")
        with zipfile.ZipFile(tmp_path / "good.npz") as z:
            entry = next(n for n in z.namelist() if n.endswith(".npy") and "w_q" in n)
            array = np.load(io.BytesIO(z.read(entry)))
    bad = _rewrite_entry(tmp_path / "good.npz", entry, _npy_with_shape(array, (10**6, 10**6)),
                         tmp_path / "huge.npz")
    assert bad.stat().st_size < 16_000, "a small file (a few KB): only its header is large"
    with pytest.raises(ValueError, match=re.escape(str(bad)) + f".*{entry}.*announces {10**12 * array.itemsize} bytes"):
        load(bad)
    # A header announcing less than the entry holds is refused the same way.
    short = _rewrite_entry(tmp_path / "good.npz", entry, _npy_with_shape(array, (1,)) + b"", tmp_path / "short.npz")
    with pytest.raises(ValueError, match=re.escape(str(short)) + ".*announces"):
        load(short)


def test_npz_entry_larger_than_the_file_is_refused(tmp_path):
    # A deflated entry may unpack to at most MAX_DEFLATE_RATIO times its stored size;
    # zeros compress about that well, so the bound is tight but honest.
    path = tmp_path / "z.npz"
    np.savez_compressed(path, format=np.array("nnref.MLP"), format_version=np.array(1),
                        W=np.zeros(2_000_000, dtype=np.uint8))
    arrays = read_archive(path, "nnref.MLP", 1, "MLP")  # a real compressed file loads
    assert arrays["W"].shape == (2_000_000,)
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("W.npy")
    assert info.file_size <= MAX_DEFLATE_RATIO * info.compress_size
    # Same archive with the central directory's unpacked size of W.npy inflated 1000x.
    # (A central directory record: signature PK 1 2, unpacked size at +24, name length
    # at +28, name at +46.)
    raw = bytearray(path.read_bytes())
    patched = 0
    start = raw.find(b"PK\x01\x02")
    while start != -1:
        name_len = int.from_bytes(raw[start + 28: start + 30], "little")
        if raw[start + 46: start + 46 + name_len] == b"W.npy":
            raw[start + 24: start + 28] = (info.file_size * 1000).to_bytes(4, "little")
            patched += 1
        start = raw.find(b"PK\x01\x02", start + 4)
    assert patched == 1
    lying = tmp_path / "lying.npz"
    lying.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=re.escape(str(lying)) + ".*'W.npy' announces"):
        read_archive(lying, "nnref.MLP", 1, "MLP")


# ------------------------------------------------------------------- IDX headers


def test_idx_header_announcing_more_than_the_file_holds_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.idx"
    # uint8, 3 dims of 100000 x 100000 x 1000 = 10**13 bytes announced, 10 given.
    path.write_bytes(bytes.fromhex("00000803") + b"".join(d.to_bytes(4, "big") for d in (10**5, 10**5, 1000))
                     + bytes(10))
    with pytest.raises(ValueError, match=re.escape(str(path)) + r": truncated: .* need 10000000000000 data bytes .* got 10"):
        read_idx(path)
    gz = tmp_path / "huge.idx.gz"
    gz.write_bytes(gzip.compress(path.read_bytes(), mtime=0))
    size = gz.stat().st_size
    with pytest.raises(ValueError, match=re.escape(str(gz)) + f".*more than a {size}-byte gzip file can hold"):
        read_idx(gz)


def test_idx_gzip_bound_is_what_deflate_can_reach():
    # 10 MB of zeros: the best case for deflate stays within MAX_GZIP_RATIO.
    raw = bytes(10_000_000)
    assert len(raw) <= MAX_GZIP_RATIO * len(gzip.compress(raw, compresslevel=9))


def test_idx_gzip_with_extra_data_counts_it_without_holding_it(tmp_path):
    good = bytes.fromhex("00000801" "00000003") + bytes([1, 2, 3])
    path = tmp_path / "extra.idx.gz"
    path.write_bytes(gzip.compress(good + bytes(3_000_000), mtime=0))
    with pytest.raises(ValueError, match=r"extra data after the array: .* need 3 data bytes .* got 3000003"):
        read_idx(path)
    assert write_idx(tmp_path / "ok.idx.gz", np.array([1, 2, 3], dtype=np.uint8)).read_bytes() == \
        gzip.compress(good, mtime=0)

