"""from_tflite against LiteRT itself: converter-made fixtures (tests/fixtures/, written by
make_tflite_fixtures.py with TensorFlow's converter), every digits image, every kernel set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tflite

from nnref.data import load_digits
from nnref.interop import SUPPORTED_OPERATORS, compare, from_tflite, read_tflite, run_litert
from nnref.mlp import MLP
from nnref.quant import quantize_model
from nnref.quant.fixed_point import quantize_multiplier
from nnref.quant.profiles import (
    ENGINE_INPUT_ROUNDINGS,
    ENGINE_PROFILES,
    profile_forward,
    profile_multipliers,
    profile_requantized,
    profile_scaled,
    quantize_input_as,
)
from nnref.quant.qlayer import tflite_real_multiplier

FIXTURES = Path(__file__).resolve().parent / "fixtures"
MODELS = ["digits_relu_per_channel", "digits_relu_per_tensor", "digits_relu6", "digits_tanh", "digits_sigmoid",
          "digits_relu_int8_io"]


@pytest.fixture(scope="module")
def digits():
    return load_digits()[0]


def fixture(name: str) -> Path:
    return FIXTURES / f"{name}.tflite"


@pytest.mark.parametrize("name", MODELS)
def test_from_tflite_is_bit_exact_with_litert_reference_kernels_on_every_digits_image(name, digits):
    info = read_tflite(fixture(name))
    out = run_litert(info.path, feed(info, digits, "litert_reference"), "litert_reference")
    x_q = info.model.quantize_input(digits)
    assert np.array_equal(out[info.quantized_input_tensor], x_q)  # QUANTIZE
    logits, records = info.model.forward_int(x_q, trace=True)
    for (fc, y), record in zip(info.layer_tensors, records):  # every intermediate, not just the logits
        assert np.array_equal(out[fc], record["out"])
        assert np.array_equal(out[y], record["y"])
    assert logits.shape == (len(digits), 10)


def feed(info, x: np.ndarray, engine: str) -> np.ndarray:
    """What the engine is given: the floats, or for an int8-input graph (no QUANTIZE) the
    int8 values the engine path's own QUANTIZE would have made."""
    if info.input_tensor != info.quantized_input_tensor:
        return x
    return quantize_input_as(info.model, x, ENGINE_INPUT_ROUNDINGS[engine])


def int8_logits(info, y: np.ndarray) -> np.ndarray:
    """The int8 logits behind a DEQUANTIZE output (checked to dequantize back to it)."""
    if y.dtype == np.int8:  # no DEQUANTIZE
        return y
    qp = info.model.output_qparams
    logits = (np.rint(y / qp.scale) + int(qp.zero_point)).astype(np.int8)
    assert np.array_equal(((logits - np.float32(qp.zero_point)) * qp.scale).astype(np.float32), y)
    return logits


@pytest.mark.parametrize("name", MODELS)
def test_litert_default_path_is_the_float32_profile(name, digits):
    """The default path (XNNPACK) on every digits image and 20,000 random rows: the
    reciprocal input rounding and the float32 profile reproduce every int8 value of every
    stage (each observed as the output of a patched copy of the model) and every logit."""
    info = read_tflite(fixture(name))
    x = np.concatenate([digits, np.random.default_rng(0).uniform(0, 1, (20000, 64))])
    wanted = [info.quantized_input_tensor] + [t for pair in info.layer_tensors for t in pair]
    out = run_litert(info.path, feed(info, x, "litert_default"), "litert_default", tensors=wanted)
    x_q = quantize_input_as(info.model, x, ENGINE_INPUT_ROUNDINGS["litert_default"])
    assert np.array_equal(out[info.quantized_input_tensor], x_q)
    h = x_q
    for layer, (fc, y) in zip(info.model.layers, info.layer_tensors):
        requantized = profile_requantized(layer, layer.trace(h)["acc_bias"], ENGINE_PROFILES["litert_default"])
        assert np.array_equal(out[fc], requantized)
        h = requantized if layer.lut is None else layer.lut[requantized.astype(np.intp) + 128]
        assert np.array_equal(out[y], h)
    logits = int8_logits(info, out[info.output_tensor])
    assert np.array_equal(profile_forward(info.model, x_q, ENGINE_PROFILES["litert_default"]), logits)


def test_each_litert_quantize_follows_its_input_rounding():
    info = read_tflite(fixture("digits_tanh"))
    s = np.float64(info.model.input_qparams.scale)
    ties = ((np.arange(-140, 140) + 0.5) * s).astype(np.float32)
    x = np.concatenate([np.nextafter(ties, -np.inf), ties, np.nextafter(ties, np.inf)])
    x = np.resize(x, (len(x) // 64 + 1) * 64).reshape(-1, 64)
    seen = {}
    for engine in ("litert_reference", "litert_optimized"):
        x_q = run_litert(info.path, x, engine)[info.quantized_input_tensor]
        assert np.array_equal(x_q, quantize_input_as(info.model, x, ENGINE_INPUT_ROUNDINGS[engine]))
        seen[engine] = x_q
    assert np.count_nonzero(seen["litert_reference"] != seen["litert_optimized"]) > 10  # the rules do differ


def test_what_from_tflite_reads(digits):
    int8_io = read_tflite(fixture("digits_relu_int8_io"))
    assert int8_io.operators == ("FULLY_CONNECTED", "FULLY_CONNECTED")
    assert int8_io.input_tensor == int8_io.quantized_input_tensor
    assert int8_io.output_tensor == int8_io.layer_tensors[-1][1]
    model = from_tflite(fixture("digits_tanh"))
    assert model.layer_sizes == [64, 32, 10]
    assert [layer.activation for layer in model.layers] == ["tanh", "none"]
    assert model.requantization == "fixed_point" and model.rounding == "single"
    relu6 = from_tflite(fixture("digits_relu6"))
    assert relu6.layers[0].activation == "relu"  # its ReLU6 clamp ends at 127: ReLU's
    per_tensor = from_tflite(fixture("digits_relu_per_tensor")).layers[0]
    assert not per_tensor.w_qparams.per_channel and per_tensor.w_qparams.scale.shape == ()
    assert read_tflite(fixture("digits_sigmoid")).operators == (
        "QUANTIZE", "FULLY_CONNECTED", "LOGISTIC", "FULLY_CONNECTED", "DEQUANTIZE")


def test_quantize_model_chooses_the_converters_parameters(digits):
    """nnref's own conversion of the fixture's float model, calibrated on the converter's
    representative data, against what the converter wrote: weights, weight scales and
    biases equal; activation grids equal up to one float32 ulp of a scale (nnref's
    calibration pass runs in float64, the converter's in float32)."""
    from nnref.cli import load_dataset

    float_model = MLP.load(FIXTURES / "digits_relu_float.npz")
    calibration = load_dataset("digits", seed=0)[0][:512]
    ours = quantize_model(float_model, calibration)
    theirs = from_tflite(fixture("digits_relu_per_channel"))
    assert ours.input_qparams == theirs.input_qparams
    for a, b in zip(ours.layers, theirs.layers):
        assert np.array_equal(a.w_q, b.w_q)
        assert np.array_equal(a.w_qparams.scale, b.w_qparams.scale)
        assert np.array_equal(a.bias_q, b.bias_q)
        assert a.out_qparams.zero_point == b.out_qparams.zero_point
        assert abs(a.out_qparams.scale - b.out_qparams.scale) <= np.spacing(b.out_qparams.scale)


def per_tensor_fixture_grids(info):
    """The per-tensor fixture's activation grids, in quantize_model's order."""
    return [info.model.input_qparams] + [layer.out_qparams for layer in info.model.layers]


def test_quantize_model_per_tensor_multipliers_match_litert_reference_kernels(digits):
    """quantize_model's own per-tensor conversion of the fixture's float model, given the
    converter's activation grids: the same integers and multipliers as the file, and 0
    differing logits against LiteRT's reference kernels on every digits image. The older
    float32-product order (rounding s_in * s_w to float32 first) misses two of them."""
    info = read_tflite(fixture("digits_relu_per_tensor"))
    ours = quantize_model(MLP.load(FIXTURES / "digits_relu_float.npz"), None,
                          weight_scheme="tflite_int8_weights_per_tensor",
                          activation_qparams=per_tensor_fixture_grids(info))
    for a, b in zip(ours.layers, info.model.layers):
        assert not a.w_qparams.per_channel and a.w_qparams == b.w_qparams
        assert np.array_equal(a.w_q, b.w_q) and np.array_equal(a.bias_q, b.bias_q)
        assert np.array_equal(a.m0, b.m0) and np.array_equal(a.shift, b.shift)
    reference = run_litert(info.path, digits, "litert_reference")[info.layer_tensors[-1][1]]
    x_q = ours.quantize_input(digits)
    assert np.count_nonzero(ours.forward_int(x_q) != reference) == 0
    h = x_q  # the same layers with the float32-product multiplier, single rounding
    for layer in ours.layers:
        m0, shift = quantize_multiplier(tflite_real_multiplier(
            layer.in_qparams.scale, layer.w_qparams.scale, layer.linear_qparams.scale, layer.out_features,
            order="float32_product"))
        scaled = profile_scaled("single", layer.trace(h)["acc_bias"], m0, shift, layer.float_multiplier)
        h = np.clip(scaled + layer.zp_lin, layer.act_min, layer.act_max).astype(np.int8)
    assert np.count_nonzero(h != reference) == 2  # of 17,970 (README's engine table)


def test_litert_optimized_takes_a_per_tensor_multiplier_in_float32_product_order():
    """The (m0, shift) LiteRT 2.3's optimized FULLY_CONNECTED passes to its kernel for the
    per-tensor fixture (read under a debugger from the kernel's parameters; its
    ``GetQuantizedConvolutionMultipler`` rounds s_in * s_w to float32): the
    "float32_product" order, which the "double_up" profile uses for per-tensor layers.
    QuantizedLayer keeps the reference kernels' all-double order. No digits or random
    input lands where the two orders differ after double_up's two roundings, so the
    optimized kernels' outputs cannot tell them apart here."""
    model = from_tflite(fixture("digits_relu_per_tensor"))
    engine = [(2044811629, -9), (1175652519, -8)]
    double = [(2044811559, -9), (1175652552, -8)]
    for layer, want, own in zip(model.layers, engine, double):
        m0, shift = profile_multipliers(layer, "double_up")
        assert (set(m0.tolist()), set(shift.tolist())) == ({want[0]}, {want[1]})
        assert (set(layer.m0.tolist()), set(layer.shift.tolist())) == ({own[0]}, {own[1]})
        for profile in ("single", "double", "float32"):
            assert profile_multipliers(layer, profile)[0] is layer.m0
    per_channel = from_tflite(fixture("digits_relu_per_channel")).layers[0]
    assert profile_multipliers(per_channel, "double_up")[0] is per_channel.m0


def inputs_with_accumulators(layer, col: int, targets, seed: int = 0) -> np.ndarray:
    """int8 rows whose accumulator (bias included) in column ``col`` of ``layer`` is each
    target: random rows, then the remainder paid off input by input, largest weight first."""
    w, rng, rows = layer.w_q[:, col].astype(np.int64), np.random.default_rng(seed), []
    for target in targets:
        while True:
            u = rng.integers(0, 256, size=w.size)  # x_q - zp_in
            need = target - int(layer.bias_q[col]) - int(u @ w)
            for k in np.argsort(-np.abs(w)):
                if need and w[k]:
                    new = int(np.clip(u[k] + need // w[k], 0, 255))
                    need, u[k] = need - (new - u[k]) * w[k], new
            if need == 0:
                rows.append(u + layer.zp_in)
                break
    return np.array(rows, dtype=np.int8)


def test_litert_reference_kernels_multiply_by_m_in_double_not_in_fixed_point():
    """Where nnref's single-rounding fixed point and LiteRT 2.3's reference FULLY_CONNECTED
    part: the reference kernels multiply the accumulator by M = double(s_in) * double(s_w) /
    double(s_out) in double precision and round half away from zero; the fixed point uses
    m0 * 2**(shift - 31), M rounded to 31 bits. In column 17 of digits_relu6's first layer,
    acc * M lies less than 1e-8 above 20.5, 61.5 and 102.5 for these accumulators, and the
    31-bit multiplier puts them just below (found by trying every accumulator of every
    fixture in the output range; no digits image reaches one): the engine gives 21, 62,
    103, nnref's fixed point 20, 61, 102, profile "float64" 21, 62, 103."""
    info = read_tflite(fixture("digits_relu6"))
    layer, col = info.model.layers[0], 17
    x_q = inputs_with_accumulators(layer, col, (18748, 56244, 93740))
    x = (x_q.astype(np.float32) - np.float32(layer.zp_in)) * info.model.input_qparams.scale
    assert np.array_equal(quantize_input_as(info.model, x, ENGINE_INPUT_ROUNDINGS["litert_reference"]), x_q)
    acc = layer.trace(x_q)["acc_bias"][:, col]
    assert acc.tolist() == [18748, 56244, 93740]
    above_tie = acc * layer.real_multiplier[col] - np.array([20.5, 61.5, 102.5])
    fixed = acc * (int(layer.m0[col]) * 2.0 ** (int(layer.shift[col]) - 31)) - np.array([20.5, 61.5, 102.5])
    assert np.all((above_tie > 0) & (above_tie < 1e-8)) and np.all(fixed < 0)
    engine = run_litert(info.path, x, "litert_reference")[info.layer_tensors[0][0]][:, col]
    assert (engine.astype(np.int64) - layer.zp_lin).tolist() == [21, 62, 103]
    assert (layer.trace(x_q)["out"][:, col].astype(np.int64) - layer.zp_lin).tolist() == [20, 61, 102]
    # profile "float64" is that arithmetic: it explains every value, "single" misses these three
    assert (profile_requantized(layer, acc_all := layer.trace(x_q)["acc_bias"], "float64")[:, col].astype(np.int64)
            - layer.zp_lin).tolist() == [21, 62, 103]
    report = compare(info.path, x, "litert_reference")
    stage = next(s for s in report.stages if s.name == "layer 0")
    assert stage.per_profile["single"] == 3 and stage.per_profile["float64"] == 0
    assert "float64" in stage.explained_by and "single" not in stage.explained_by
    assert [(m.row, m.col, m.acc, m.engine - m.profiles["single"]) for m in report.mismatches] == [
        (0, col, 18748, 1), (1, col, 56244, 1), (2, col, 93740, 1)]
    assert all(m.profiles["float64"] == m.engine for m in report.mismatches)
    assert all("float64" in s.explained_by for s in report.stages if s.name != "input") and not report.unexplained
    assert report.stages[-1].per_profile["single"] > 0  # the three change the logits too
    assert "layer 0                        192       3  double, double_up, float64  (single 3," in str(report)


# --------------------------------------------------------------------------- errors


def patched(tmp_path, edit) -> Path:
    """A copy of the per-channel fixture with ``edit(data, model)`` applied to its bytes."""
    data = bytearray(fixture("digits_relu_per_channel").read_bytes())
    edit(data, tflite.Model.GetRootAs(bytes(data), 0))
    path = tmp_path / "patched.tflite"
    path.write_bytes(bytes(data))
    return path


def _write(data: bytearray, table, vtable_offset: int, fmt: str, value: int) -> None:
    pos = table._tab.Pos + table._tab.Offset(vtable_offset)
    assert table._tab.Offset(vtable_offset), "the field is stored"
    data[pos:pos + np.dtype(fmt).itemsize] = np.array(value, fmt).tobytes()


def test_an_unsupported_operator_is_named_with_its_index(tmp_path):
    def to_conv(data, model):
        for i in range(model.OperatorCodesLength()):
            code = model.OperatorCodes(i)
            if code.BuiltinCode() == tflite.BuiltinOperator.FULLY_CONNECTED:
                _write(data, code, 4, "<i1", tflite.BuiltinOperator.CONV_2D)
                if code._tab.Offset(10):
                    _write(data, code, 10, "<i4", tflite.BuiltinOperator.CONV_2D)
    with pytest.raises(ValueError, match=r"operator 1 \(CONV_2D\) is not supported.*FULLY_CONNECTED"):
        read_tflite(patched(tmp_path, to_conv))
    assert "FULLY_CONNECTED" in SUPPORTED_OPERATORS


def test_an_unsupported_dtype_is_named(tmp_path):
    def weights_uint8(data, model):
        op = model.Subgraphs(0).Operators(1)
        _write(data, model.Subgraphs(0).Tensors(int(op.InputsAsNumpy()[1])), 6, "<i1", tflite.TensorType.UINT8)
    with pytest.raises(ValueError, match=r"operator 1 \(FULLY_CONNECTED\) weights.*type UINT8.*INT8"):
        read_tflite(patched(tmp_path, weights_uint8))


def test_an_unsupported_fused_activation_is_named(tmp_path):
    def fused_tanh(data, model):
        opts = model.Subgraphs(0).Operators(1).BuiltinOptions()
        fc = tflite.FullyConnectedOptions()
        fc.Init(opts.Bytes, opts.Pos)
        _write(data, fc, 4, "<i1", tflite.ActivationFunctionType.TANH)
    with pytest.raises(ValueError, match="fused activation TANH is not supported"):
        read_tflite(patched(tmp_path, fused_tanh))


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        from_tflite(tmp_path / "missing.tflite")
    foreign = tmp_path / "foreign.tflite"
    foreign.write_bytes(b"PK\x03\x04 this is a zip, not a model")
    with pytest.raises(ValueError, match="not a TensorFlow Lite model"):
        from_tflite(foreign)
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(fixture("digits_relu_per_channel").read_bytes()[:600])
    with pytest.raises(ValueError, match="truncated.tflite"):
        from_tflite(truncated)
    with pytest.raises(TypeError, match="path"):
        from_tflite(123)
    with pytest.raises(ValueError, match="engine"):
        run_litert(fixture("digits_tanh"), np.zeros((1, 64)), "gpu")
    with pytest.raises(ValueError, match="x"):
        run_litert(fixture("digits_tanh"), np.zeros((2, 63)))
