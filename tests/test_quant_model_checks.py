"""Mixed per-layer weight widths (issue 12's need) and refusals of bad arguments that
name the layer, the parameter or the argument (issue 14), for the quantized model."""

from __future__ import annotations

import numpy as np
import pytest

from nnref.mlp import MLP
from nnref.quant.calibrate import calibrate
from nnref.quant.convert import QuantizedMLP, build_lut, quantize_model
from nnref.quant.qat import prepare_qat
from nnref.quant.qparams import choose_qparams
from nnref.quant.report import format_table, model_size_bytes


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return MLP([12, 8, 6, 3], seed=0), rng.normal(size=(40, 12))


# --------------------------------------------------------------------------- mixed widths


def test_mixed_weight_widths_convert_save_load_and_count(tmp_path, data):
    model, x = data
    q = quantize_model(model, x, bits=[4, 8, 2])
    assert q.weight_bits_per_layer == [4, 8, 2] and q.weight_bits == (4, 8, 2)
    for layer, bits in zip(q.layers, (4, 8, 2)):
        qmax = 2 ** (bits - 1) - 1
        assert layer.w_qparams.qmax == qmax and np.abs(layer.w_q).max() <= qmax
    # Each layer is the uniform-width conversion's layer of the same width.
    for i, bits in enumerate((4, 8, 2)):
        same = quantize_model(model, x, bits=bits).layers[i]
        assert np.array_equal(q.layers[i].w_q, same.w_q) and q.layers[i].w_qparams == same.w_qparams
    assert "int4/int8/int2" in repr(q)
    q.save(tmp_path / "mixed.npz")
    back = QuantizedMLP.load(tmp_path / "mixed.npz")
    assert back.weight_bits_per_layer == [4, 8, 2]
    assert np.array_equal(back.predict(x), q.predict(x))
    size = model_size_bytes(q)
    assert size.precision == "int4/int8/int2"
    assert size.weights == (12 * 8 * 4 + 7) // 8 + 8 * 6 + (6 * 3 * 2 + 7) // 8  # 48 + 48 + 5
    assert size == model_size_bytes(model, ["int4", "int8", "int2"])
    assert model_size_bytes(q, "int8").weights == 12 * 8 + 8 * 6 + 6 * 3


@pytest.mark.parametrize("bits, error, match", [
    ([4, 8], ValueError, "bits: expected 3 weight bit widths"),
    ([4, 9, 8], ValueError, r"bits\[1\]: expected an integer in \[2, 8\]"),
    ([4, 8.0, 8], TypeError, r"bits\[1\]"),
    ("8", TypeError, "bits: expected an int or a sequence"),
    (True, TypeError, "bits"),
])
def test_bad_bit_widths_are_refused_by_name(data, bits, error, match):
    model, x = data
    with pytest.raises(error, match=match):
        quantize_model(model, x, bits=bits)


def test_model_size_refuses_mixed_float_and_missing_precisions(data):
    model, _ = data
    with pytest.raises(ValueError, match="precision"):
        model_size_bytes(model, ["int8", "float32", "int8"])
    with pytest.raises(ValueError, match="precision"):
        model_size_bytes(model)


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("layer, name", [(0, "W"), (1, "b"), (2, "W")])
def test_non_finite_parameters_name_the_layer_and_parameter(data, layer, name):
    model, x = data
    bad = MLP([12, 8, 6, 3], seed=0)
    getattr(bad.linears[layer], name).flat[0] = np.inf if name == "b" else np.nan
    with pytest.raises(ValueError, match=f"layer {layer} parameter {name}: expected finite"):
        quantize_model(bad, x)
    with pytest.raises(ValueError, match=f"layer {layer} parameter {name}"):
        calibrate(bad, x)


def test_the_accumulator_bound_names_the_layer():
    model = MLP([3, 70_000, 2], seed=0)  # layer 1 has K = 70,000 > 66,311
    with pytest.raises(ValueError, match="model: layer 1: .*int32 accumulator could overflow"):
        quantize_model(model, np.ones((2, 3)))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(calibration_x=np.full((3, 12), 1e300)), ValueError, "calibration_x .*float32.*infinite"),
    (dict(calibration_x=np.zeros((3, 5))), ValueError, "calibration_x: expected 12 features"),
    (dict(calibration_x="x"), TypeError, "calibration_x"),
    (dict(activation_observer=3), TypeError, "activation_observer"),
    (dict(calibration_batch_size=0), ValueError, "calibration_batch_size"),
    (dict(calibration_batch_size=2.0), TypeError, "calibration_batch_size"),
    (dict(requantization=["float"]), ValueError, "requantization"),
    (dict(preactivation_qparams=[None]), ValueError, "preactivation_qparams: expected 3"),
    (dict(preactivation_qparams=[3, None, None]), TypeError, r"preactivation_qparams\[0\]"),
])
def test_quantize_model_refuses_bad_arguments_by_name(data, kwargs, error, match):
    model, x = data
    args = dict(model=model, calibration_x=x)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        quantize_model(**args)


def test_quantized_model_entry_points_refuse_by_name(tmp_path, data):
    model, x = data
    q = quantize_model(model, x)
    with pytest.raises(ValueError, match="x: values overflow float32"):
        q.predict(np.full((2, 12), 1e300))
    with pytest.raises(TypeError, match="path: expected a str or os.PathLike"):
        QuantizedMLP.load(3)
    with pytest.raises(TypeError, match="path"):
        q.save(None)
    qp = choose_qparams(-1.0, 1.0)
    with pytest.raises(ValueError, match="alpha: expected a finite number"):
        build_lut("leaky_relu", qp, qp, alpha=float("nan"))
    with pytest.raises(TypeError, match="rows: expected a sequence"):
        format_table(3, ["a"])


def test_qat_convert_uses_its_learned_preactivation_grids_without_calibration(data):
    model, x = data
    tanh = MLP([12, 8, 3], activation="tanh", seed=0)
    qat = prepare_qat(tanh).calibrate(x)
    q = qat.convert()  # no calibration inputs, no placeholder batch
    assert q.layers[0].pre_qparams == qat.preactivation_qparams[0]
    assert q.layers[0].out_qparams == qat.activation_qparams[1]


@pytest.mark.parametrize("kw", [
    dict(activation="tanh"), dict(activation="sigmoid"), dict(requantization="float"),
    dict(rounding="double"), dict(sizes=[1100, 5, 3]),  # K > 1032: the float64 product
], ids=["tanh", "sigmoid", "float", "double", "float64"])
def test_fast_model_paths_equal_the_plain_integer_path(kw):
    kw = dict(kw)
    sizes = kw.pop("sizes", [12, 8, 6, 3])
    model = MLP(sizes, activation=kw.pop("activation", "relu"), seed=1)
    x = np.random.default_rng(1).normal(size=(50, sizes[0]))
    q = quantize_model(model, x, **kw)
    x_q = q.quantize_input(x)
    plain = q.forward_int(x_q, method="int")
    assert np.array_equal(q.forward_int(x_q, method="auto"), plain)
    assert np.array_equal(q.forward_int(x_q, trace=True, method="int")[0], plain)
    assert np.array_equal(q.predict(x, method="auto"), np.argmax(plain, axis=1))
    assert np.array_equal(q.dequantized_logits(x, method="auto"), q.dequantized_logits(x, method="int"))


def test_compare_refuses_a_float_model_with_non_finite_parameters(data):
    model, x = data
    q = quantize_model(model, x)
    bad = MLP([12, 8, 6, 3], seed=0)
    bad.linears[2].b[1] = np.nan
    with pytest.raises(ValueError, match="float_model: layer 2 parameter b"):
        q.compare(bad, x, np.zeros(len(x), int))
