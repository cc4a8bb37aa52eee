"""Quantization reports: error statistics (SQNR laws), per-layer reports, int4 packing,
model size counted by hand, the table formatter, and a smoke run of the benchmark."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from nnref.data import load_digits
from nnref.mlp import MLP
from nnref.quant.convert import WEIGHT_ROUNDING, quantize_weights
from nnref.quant.ops import dequantize, fake_quantize
from nnref.quant.qparams import QScheme, get_scheme
from nnref.quant.report import (
    SizeBreakdown,
    activation_error_report,
    format_table,
    model_size_bytes,
    pack_int4,
    packed_size_bytes,
    quantization_error,
    unpack_int4,
    weight_error_report,
)

from strategies import float_arrays, int_arrays, moderate_floats, seeds

shapes = st.tuples(st.integers(1, 5), st.integers(1, 5))


# ----------------------------------------------------------------------------- quantization_error


def test_quantization_error_worked_example():
    # e = [0, 0, 0, 0.5]: mse = 0.25 / 4 = 0.0625, max_abs = 0.5,
    # sqnr = 10 log10((1 + 4 + 9 + 16) / 0.25) = 10 log10(120) = 20.7918... dB
    err = quantization_error([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 3.5])
    assert err.mse == 0.0625 and err.max_abs == 0.5
    assert err.sqnr_db == pytest.approx(20.791812460476248, rel=1e-12)


@given(r=float_arrays(shapes))
def test_sqnr_of_a_tensor_with_itself_is_infinite(r):
    err = quantization_error(r, r)
    assert err == (0.0, 0.0, math.inf)


pairs = shapes.flatmap(lambda s: st.tuples(float_arrays(s), float_arrays(s)))


@given(pair=pairs, c=st.floats(1e-3, 1e3))
def test_error_laws_scaling_and_symmetry(pair, c):
    r, a = pair
    assume(np.any(r != a) and np.any(r != 0))
    e = quantization_error(r, a)
    scaled = quantization_error(c * r, c * a)
    # SQNR is scale-free; the MSE scales by c^2 and the max error by c.
    assert scaled.sqnr_db == pytest.approx(e.sqnr_db, abs=1e-9)
    assert scaled.mse == pytest.approx(c * c * e.mse, rel=1e-9)
    assert scaled.max_abs == pytest.approx(c * e.max_abs, rel=1e-12)
    # Negating both changes nothing.
    assert quantization_error(-r, -a) == e
    # The definition, evaluated naively in float64 where its sums neither underflow nor
    # overflow (the extreme cases are the next test's).
    d = r - a
    if np.sum(d * d) > 1e-250 and np.sum(r * r) > 1e-250:
        assert e.sqnr_db == pytest.approx(10 * np.log10(np.sum(r * r) / np.sum(d * d)), abs=1e-9)


def test_sqnr_edge_cases_and_extreme_magnitudes():
    assert quantization_error([0.0, 0.0], [0.0, 1.0]).sqnr_db == -math.inf
    # Squares of 1e-200 underflow and of 1e200 overflow float64; the scaled form does not.
    tiny = quantization_error([1e-200, 2e-200], [1e-200, 1e-200])
    huge = quantization_error([1e200, 2e200], [1e200, 1e200])
    # sqnr = 10 log10((1 + 4) / 1) = 6.9897 dB in both
    assert tiny.sqnr_db == pytest.approx(10 * math.log10(5), rel=1e-12)
    assert huge.sqnr_db == pytest.approx(10 * math.log10(5), rel=1e-12)


@given(seed=seeds)
def test_sqnr_grows_with_bits_for_uniform_data(seed):
    # Uniform data over the quantizer's full range: each extra bit halves the step,
    # about +6 dB (20 log10 2). Tested: strictly increasing, slope between 5 and 7 dB/bit.
    x = np.random.default_rng(seed).uniform(-1, 1, 4096)
    sqnr = []
    for bits in range(2, 13):
        qp = QScheme(bits=bits, symmetric=True, narrow_range=True).for_tensor(x)
        sqnr.append(quantization_error(x, fake_quantize(x, qp)).sqnr_db)
    assert all(b > a for a, b in zip(sqnr, sqnr[1:]))
    slope = (sqnr[-1] - sqnr[2]) / (12 - 4)
    assert 5.0 < slope < 7.0


def test_bad_input_quantization_error():
    with pytest.raises(ValueError, match="approx"):
        quantization_error(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="reference"):
        quantization_error([np.nan, 1.0], [0.0, 1.0])
    with pytest.raises(TypeError, match="approx"):
        quantization_error([1.0], ["a"])
    with pytest.raises(ValueError, match="overflow"):
        quantization_error([1e308], [-1e308])


# ----------------------------------------------------------------------------- per-layer reports


@given(seed=seeds, bits=st.integers(2, 8), per_channel=st.booleans())
def test_weight_error_report_rows(seed, bits, per_channel):
    model = MLP([5, 4, 3], seed=seed)
    name = "tflite_int8_weights" if per_channel else "tflite_int8_weights_per_tensor"
    rows = weight_error_report(model, name, bits=bits)
    assert [r.name for r in rows] == ["W1", "W2"]
    for row, lin in zip(rows, model.linears):
        qp = get_scheme(name).with_bits(bits).for_tensor(lin.W)
        assert row.shape == lin.W.shape and row.bits == bits
        assert (row.mse, row.max_abs, row.sqnr_db) == quantization_error(
            lin.W, fake_quantize(lin.W, qp, WEIGHT_ROUNDING))
        # By default the error is that of the weights the converter stores.
        w_q, w_qp = quantize_weights(lin.W, name, bits)
        assert row[3:6] == quantization_error(lin.W, dequantize(w_q, w_qp))
        assert (row.scale_min, row.scale_max) == (qp.scale.min(), qp.scale.max())
        # A min-max range clamps nothing: every error is at most half a step.
        assert row.max_abs <= row.scale_max / 2 * (1 + 1e-6)


def test_activation_error_report_on_digits():
    x, _ = load_digits()
    x = x[:300]
    model = MLP([64, 32, 10], seed=0)
    rows8 = activation_error_report(model, x)
    rows4 = activation_error_report(model, x, weight_bits=4, act_bits=4)
    assert [r.name for r in rows8] == ["input", "layer 1", "layer 2 (logits)"]
    assert [r.shape for r in rows8] == [(300, 64), (300, 32), (300, 10)]
    assert all(r.sqnr_db > 30 for r in rows8)  # 8 bits: well under 1% noise everywhere
    assert all(a.sqnr_db > b.sqnr_db + 12 for a, b in zip(rows8, rows4))  # 4 fewer bits
    # The input row is x against its own fake quantization: error at most half a step.
    assert rows8[0].max_abs <= (x.max() - min(x.min(), 0)) / 255 / 2 * (1 + 1e-6)


def test_bad_input_reports():
    with pytest.raises(TypeError, match="model"):
        weight_error_report("model", "tflite_int8_weights")
    with pytest.raises(ValueError, match="scheme"):
        weight_error_report(MLP([3, 2]), "int3")
    with pytest.raises(ValueError, match="bits"):
        weight_error_report(MLP([3, 2]), "tflite_int8_weights", bits=1)
    with pytest.raises(ValueError, match="x"):
        activation_error_report(MLP([3, 2]), np.zeros((4, 5)))


# ----------------------------------------------------------------------------- int4 packing


def test_pack_int4_worked_example():
    # [1, -1, 7, -8, 3]: nibbles 0x1, 0xF, 0x7, 0x8, 0x3 (4-bit two's complement);
    # low nibble first: 0xF1, 0x87, 0x03 (odd count: last high nibble 0).
    packed = pack_int4(np.array([1, -1, 7, -8, 3], dtype=np.int8))
    assert packed.dtype == np.uint8
    assert packed.tolist() == [0xF1, 0x87, 0x03]
    assert unpack_int4(packed, 5).tolist() == [1, -1, 7, -8, 3]


@given(q=st.integers(0, 40).flatmap(lambda n: int_arrays((n,), -8, 7, np.int8)))
def test_pack_unpack_round_trip(q):
    packed = pack_int4(q)
    assert packed.shape == ((q.size + 1) // 2,) == (packed_size_bytes(q.size, 4),)
    out = unpack_int4(packed, q.size)
    assert out.dtype == np.int8
    np.testing.assert_array_equal(out, q)


@given(q=int_arrays(st.tuples(st.integers(1, 4), st.integers(1, 4)), -8, 7, np.int32))
def test_pack_flattens_in_c_order_any_integer_dtype(q):
    np.testing.assert_array_equal(unpack_int4(pack_int4(q), q.size), q.ravel())


@given(b=st.integers(0, 255))
def test_every_byte_unpacks_to_two_nibbles(b):
    lo, hi = unpack_int4(np.array([b], dtype=np.uint8), 2).tolist()
    assert lo == (b & 15) - 16 * ((b & 15) >= 8) and hi == (b >> 4) - 16 * ((b >> 4) >= 8)
    assert pack_int4(np.array([lo, hi], dtype=np.int8)).tolist() == [b]


def test_bad_input_int4():
    with pytest.raises(ValueError, match="q"):
        pack_int4(np.array([0, 8], dtype=np.int8))
    with pytest.raises(ValueError, match="q"):
        pack_int4(np.array([-9], dtype=np.int16))
    with pytest.raises(TypeError, match="q"):
        pack_int4(np.array([0.5, 1.0]))
    with pytest.raises(TypeError, match="packed"):
        unpack_int4(np.array([1, 2], dtype=np.int8), 4)
    with pytest.raises(ValueError, match="packed"):
        unpack_int4(np.array([1, 2], dtype=np.uint8), 5)
    with pytest.raises(ValueError, match="packed"):
        unpack_int4(np.array([0x13], dtype=np.uint8), 1)  # unused high nibble not 0
    with pytest.raises(ValueError, match="n"):
        unpack_int4(np.array([], dtype=np.uint8), -1)


# ----------------------------------------------------------------------------- model size


def test_model_size_by_hand():
    # MLP([3, 2, 4]): W1 3x2 = 6, W2 2x4 = 8 weights (14); biases 2 + 4 = 6; 6 channels.
    model = MLP([3, 2, 4])
    assert model_size_bytes(model, "float32") == SizeBreakdown("float32", 56, 24, 0, 0, 0)
    assert model_size_bytes(model, "float16").total == 14 * 2 + 6 * 2  # 40
    # int8 per channel: 14 weight bytes, 6 * 4 bias, 6 * 4 scales, 6 * 4 zero points,
    # (1 input + 2 outputs) * (4 + 4) activation parameters = 14 + 24 + 24 + 24 + 24 = 110
    int8 = model_size_bytes(model, "int8")
    assert int8 == SizeBreakdown("int8", 14, 24, 24, 24, 24) and int8.total == 110
    # int4: ceil(6 * 4 / 8) + ceil(8 * 4 / 8) = 3 + 4 = 7 weight bytes
    assert model_size_bytes(model, "int4").weights == 7
    # int3: ceil(18 / 8) + ceil(24 / 8) = 3 + 3; int2: ceil(12 / 8) + ceil(16 / 8) = 2 + 2
    assert model_size_bytes(model, "int3").weights == 6
    assert model_size_bytes(model, "int2").weights == 4
    # per tensor: one scale and zero point per layer: 14 + 24 + 8 + 8 + 24 = 78
    assert model_size_bytes(model, "int8", per_channel=False).total == 78


@given(sizes=st.lists(st.integers(1, 40), min_size=2, max_size=4), per_channel=st.booleans())
def test_model_size_laws(sizes, per_channel):
    model = MLP(sizes)
    f32, f16 = model_size_bytes(model, "float32"), model_size_bytes(model, "float16")
    assert f32.total == 2 * f16.total == 4 * model.n_params
    totals = [model_size_bytes(model, f"int{b}", per_channel).total for b in range(2, 9)]
    assert all(a <= b for a, b in zip(totals, totals[1:]))  # more bits, never smaller
    for b in range(2, 9):
        s = model_size_bytes(model, f"int{b}", per_channel)
        n = [lin.W.size for lin in model.linears]
        assert s.weights == sum(-(-k * b // 8) for k in n)  # ceil(k * b / 8) per tensor
        assert s.biases == 4 * sum(lin.b.size for lin in model.linears)


def test_bad_input_size():
    model = MLP([3, 2])
    for bad in ("int9", "int1", "fp32", "int8 ", 8):
        with pytest.raises(ValueError, match="precision"):
            model_size_bytes(model, bad)
    with pytest.raises(TypeError, match="per_channel"):
        model_size_bytes(model, "int8", per_channel="yes")
    with pytest.raises(TypeError, match="model"):
        model_size_bytes(None, "int8")
    with pytest.raises(ValueError, match="bits"):
        packed_size_bytes(10, 0)


# ----------------------------------------------------------------------------- format_table


def test_format_table_worked_example():
    out = format_table([("float32", 19240, 0.975), ("int2", 2096, None)],
                       ["model", "bytes", "acc"], floatfmt=".3f")
    assert out == (
        "model    bytes    acc\n"
        "-------  -----  -----\n"
        "float32  19240  0.975\n"
        "int2      2096"
    )
    assert format_table([("a", "b")], ["x", "y"], align="rl") == "x  y\n-  -\na  b"


@given(rows=st.lists(st.tuples(st.text("abc", max_size=6), moderate_floats), max_size=5))
def test_format_table_lines_are_aligned(rows):
    lines = format_table(rows, ["name", "value"]).split("\n")
    assert len(lines) == 2 + len(rows)
    width = len(lines[1])
    # Right-aligned numbers: every line that has a number ends at the rule's width.
    assert all(len(line) == width for line in lines[2:])


def test_bad_input_format_table():
    with pytest.raises(ValueError, match=r"rows\[1\]"):
        format_table([(1, 2), (3,)], ["a", "b"])
    with pytest.raises(ValueError, match="align"):
        format_table([(1, 2)], ["a", "b"], align="lx")


# ----------------------------------------------------------------------------- the benchmark


def _load_benchmark():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "quant_table.py"
    spec = importlib.util.spec_from_file_location("quant_table", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quant_table_smoke_one_seed():
    bench = _load_benchmark()
    rows = bench.run(seeds=(0,))
    labels = [(r.method, r.weights) for r in rows]
    assert labels[:5] == [("float", "float32"), ("float", "float16 (fp32 acc.)"),
                          ("float", "float16 (fp16 acc.)"), ("PTQ", "int8 per-tensor"),
                          ("PTQ", "int8 per-channel")]
    assert ("QAT", "int2 per-channel") in labels
    probe = MLP(bench.SIZES)
    for r in rows:
        assert len(r.accuracy) == 1 and 0 <= r.accuracy[0] <= 1
        if r.method != "float":
            # The integer model and its simulation agree within 2 test images in 360.
            assert abs(r.accuracy[0] - r.simulation[0]) <= 2 / 360
            bits = int(r.weights[3])
            per_channel = "per-channel" in r.weights
            assert r.size_bytes == model_size_bytes(probe, f"int{bits}", per_channel).total
    by = {label: r.accuracy[0] for label, r in zip(labels, rows)}
    assert abs(by[("PTQ", "int8 per-channel")] - by[("float", "float32")]) <= 0.01
    assert by[("QAT", "int2 per-channel")] > by[("PTQ", "int2 per-channel")]
    text = bench.table(rows)
    assert "int2 per-channel" in text and text.count("\n") == len(rows) + 1
    assert len(bench.findings(rows)) == 2
