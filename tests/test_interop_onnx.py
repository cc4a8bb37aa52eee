"""to_onnx / from_onnx: onnxruntime runs the exported model as nnref's float requantization
path, bit for bit, and the round trip keeps every parameter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from nnref.data import load_digits
from nnref.interop import from_onnx, from_tflite, read_onnx, run_onnxruntime, to_onnx
from nnref.quant.profiles import quantize_input_as
from nnref.mlp import MLP
from nnref.quant import quantize_model

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="module")
def digits():
    return load_digits()[0]


def models():
    """Converter-made models and nnref-made ones (per tensor, leaky ReLU, double rounding)."""
    rng = np.random.default_rng(0)
    cal = rng.uniform(0, 1, (256, 64))
    yield "tflite_relu", from_tflite(FIXTURES / "digits_relu_per_channel.tflite")
    yield "tflite_tanh", from_tflite(FIXTURES / "digits_tanh.tflite")
    yield "tflite_sigmoid", from_tflite(FIXTURES / "digits_sigmoid.tflite")
    yield "nnref_per_tensor", quantize_model(MLP([64, 24, 10], seed=1), cal, weight_scheme="tflite_int8_weights_per_tensor")
    yield "nnref_leaky_4bit", quantize_model(MLP([64, 16, 16, 10], activation="leaky_relu", seed=2), cal, bits=4,
                                             rounding="double")


MODELS = dict(models())


def same_parameters(a, b) -> bool:
    if a.input_qparams != b.input_qparams or len(a.layers) != len(b.layers):
        return False
    for la, lb in zip(a.layers, b.layers):
        if not (np.array_equal(la.w_q, lb.w_q) and np.array_equal(la.bias_q, lb.bias_q)
                and la.w_qparams == lb.w_qparams and la.in_qparams == lb.in_qparams
                and la.out_qparams == lb.out_qparams and la.pre_qparams == lb.pre_qparams
                and la.activation == lb.activation and la.alpha == lb.alpha
                and (la.act_min, la.act_max) == (lb.act_min, lb.act_max)
                and ((la.lut is None and lb.lut is None) or np.array_equal(la.lut, lb.lut))):
            return False
    return True


@pytest.mark.parametrize("name", list(MODELS))
def test_onnxruntime_runs_the_export_as_nnrefs_float_path(name, digits, tmp_path):
    model = MODELS[name]
    path = tmp_path / "m.onnx"
    to_onnx(model, path)
    info = read_onnx(path)  # requantization="float": what onnxruntime computes
    rng = np.random.default_rng(3)
    s = np.float64(model.input_qparams.scale)
    ties = ((np.arange(-140, 140) + 0.5) * s).astype(np.float32)  # QuantizeLinear at k + 1/2 and next to it
    ties = np.concatenate([np.nextafter(ties, -np.inf), ties, np.nextafter(ties, np.inf)])
    x = np.concatenate([digits, rng.uniform(-0.25, 1.25, (2000, 64)),  # also negative, saturating inputs
                        np.resize(ties, (len(ties) // 64 + 1) * 64).reshape(-1, 64)])
    out = {k: v.reshape(len(x), -1) for k, v in run_onnxruntime(path, x).items()}
    x_q = quantize_input_as(info.model, x, "half_even")  # QuantizeLinear: ties to even
    assert np.array_equal(out[info.quantized_input_name], x_q)
    logits, records = info.model.forward_int(x_q, trace=True)
    for (req, y), record in zip(info.layer_names, records):
        assert np.array_equal(out[req], record["out"])
        assert np.array_equal(out[y], record["y"])
    assert info.model.requantization == "float"


@pytest.mark.parametrize("fmt", ["qoperator", "qdq"])
@pytest.mark.parametrize("name", list(MODELS))
def test_from_onnx_of_to_onnx_keeps_every_parameter(name, fmt, tmp_path):
    model = MODELS[name]
    to_onnx(model, tmp_path / "m.onnx", format=fmt)
    back = from_onnx(tmp_path / "m.onnx", requantization=model.requantization)
    assert same_parameters(back, model)
    assert back.rounding == "single"
    onnx.checker.check_model(onnx.load(tmp_path / "m.onnx"))


def test_the_qoperator_graph_uses_standard_operators_only(tmp_path):
    to_onnx(MODELS["tflite_tanh"], tmp_path / "m.onnx")
    graph = onnx.load(tmp_path / "m.onnx").graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("QLinearConv") == 2 and ops.count("Gather") == 1
    assert all(n.domain in ("", "ai.onnx") for n in graph.node)


def test_errors(tmp_path):
    with pytest.raises(TypeError, match="qmodel"):
        to_onnx("model", tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="format"):
        to_onnx(MODELS["tflite_relu"], tmp_path / "m.onnx", format="qlinear")
    with pytest.raises(FileNotFoundError):
        from_onnx(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00\x01 not a protobuf model \xff" * 3)
    with pytest.raises(ValueError, match="junk.onnx"):
        from_onnx(tmp_path / "junk.onnx")
    to_onnx(MODELS["tflite_relu"], tmp_path / "m.onnx")
    model = onnx.load(tmp_path / "m.onnx")
    node = next(n for n in model.graph.node if n.op_type == "QLinearConv")
    node.op_type, node.domain = "QLinearAdd", "com.microsoft"
    onnx.save(model, tmp_path / "foreign.onnx")
    with pytest.raises(ValueError, match=r"node \d+ \(QLinearAdd .*com.microsoft.QLinearAdd is not supported"):
        from_onnx(tmp_path / "foreign.onnx")
    model = onnx.load(tmp_path / "m.onnx")
    init = next(i for i in model.graph.initializer if i.name == "input.zero_point")
    init.CopyFrom(onnx.numpy_helper.from_array(np.uint8(0), "input.zero_point"))
    onnx.save(model, tmp_path / "uint8.onnx")
    with pytest.raises(ValueError, match="int8 zero point"):
        from_onnx(tmp_path / "uint8.onnx")


def float_onnx_mlp(model: MLP, path) -> None:
    """An ONNX float32 MLP (Gemm, Relu) with ``model``'s weights: the input of onnxruntime's
    own static quantization."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, cur = [], [], "x"
    for i, lin in enumerate(model.linears):
        inits += [numpy_helper.from_array(lin.W.astype(np.float32), f"W{i}"),
                  numpy_helper.from_array(lin.b.astype(np.float32), f"b{i}")]
        nodes.append(helper.make_node("Gemm", [cur, f"W{i}", f"b{i}"], [f"gemm{i}"]))
        cur = f"gemm{i}"
        if i < len(model.linears) - 1:
            nodes.append(helper.make_node("Relu", [cur], [f"relu{i}"]))
            cur = f"relu{i}"
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 64])],
                              [helper.make_tensor_value_info(cur, TensorProto.FLOAT, ["b", 10])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


@pytest.fixture(scope="module")
def static_quantized(tmp_path_factory):
    """onnxruntime's quantize_static of the fixture's float MLP (QOperator: QGemm), int8
    activations and per-channel int8 weights, calibrated on 256 training images."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from nnref.cli import load_dataset

    folder = tmp_path_factory.mktemp("static")
    float_onnx_mlp(MLP.load(FIXTURES / "digits_relu_float.npz"), folder / "float.onnx")
    batches = iter([{"x": load_dataset("digits", seed=0)[0][:256].astype(np.float32)}])

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(batches, None)

    quantize_static(folder / "float.onnx", folder / "static.onnx", Reader(), quant_format=QuantFormat.QOperator,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True)
    return folder / "static.onnx"


def test_onnxruntime_static_quantization_is_read_and_reproduced(static_quantized, digits):
    from nnref.interop import compare

    info = read_onnx(static_quantized)
    ops = [n.op_type for n in onnx.load(static_quantized).graph.node]
    assert ops.count("QGemm") == 2
    assert info.model.layer_sizes == [64, 64, 10] and info.model.layers[0].w_qparams.per_channel
    rng = np.random.default_rng(4)
    report = compare(static_quantized, np.concatenate([digits, rng.uniform(-0.3, 1.3, (3000, 64))]))
    assert report.agree and report.reference == "float32"
