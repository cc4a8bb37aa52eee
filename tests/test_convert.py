"""Tests for nnref.quant.convert: the integer-only QuantizedMLP and its conversion.

The integer model is checked three ways:

* against a slow scalar reference written in this file straight from the formulas, with
  Python integers (``acc = sum (x - zp_x) * w + bias``, TensorFlow Lite's
  MultiplyByQuantizedMultiplier as integer formulas, ``+ zp``, clamp, table), bit for bit;
* against the library's checked kernels (``quantized_linear``, ``qlinear_matmul``), which
  are themselves tested against engine references in ``test_kernels.py``;
* end to end on the digits data set: within 1 percentage point of the float model.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnref.data import load_digits, train_test_split
from nnref.mlp import MLP
from nnref.optim import Adam
from nnref.quant.convert import (
    FIXED_OUTPUT_QPARAMS,
    REQUANTIZATIONS,
    QuantizedLayer,
    QuantizedMLP,
    build_lut,
    quantize_bias,
    quantize_model,
    quantize_weights,
)
from nnref.quant.fixed_point import quantize_multiplier
from nnref.quant.kernels import qlinear_matmul, quantized_linear
from nnref.quant.observers import MovingAverageMinMaxObserver, PercentileObserver, PerChannelMinMaxObserver
from nnref.quant.ops import dequantize
from nnref.quant.qlayer import tflite_real_multiplier
from nnref.quant.qparams import QParams, QScheme
from nnref.train import fit
from strategies import int8_arrays, seeds

INT32_MAX = 2**31 - 1


# --------------------------------------------------------------------------- helpers



def _rewritten_copy(source, path, change):
    """A copy of the .npz file ``source`` at ``path`` with its arrays edited by ``change``."""
    with np.load(source) as data:
        arrays = {k: data[k] for k in data.files}
    change(arrays)
    np.savez(path, **arrays)
    return path

def act_qp(scale, zero_point) -> QParams:
    return QParams(scale=np.float32(scale), zero_point=np.int32(zero_point), qmin=-128, qmax=127,
                   bits=8, signed=True)


def weight_qp(scale, bits=8) -> QParams:
    scale = np.asarray(scale, dtype=np.float32)
    return QParams(scale=scale, zero_point=np.zeros(scale.shape, np.int32), qmin=-(2 ** (bits - 1)) + 1,
                   qmax=2 ** (bits - 1) - 1, bits=bits, signed=True, axis=-1 if scale.ndim else None,
                   scheme="symmetric", narrow_range=True)


def tiny_layer(activation="none", requantization="fixed_point", rounding="single", bias=5) -> QuantizedLayer:
    """K = 2, N = 1: w = [[2], [-3]], bias = [5], s_in = 0.5 (zp -1), s_w = 0.25, s_out = 1 (zp 3).

    M = 0.5 * 0.25 / 1 = 0.125 = 0.5 * 2**-2, so m0 = 2**30 and shift = -2."""
    return QuantizedLayer(np.array([[2], [-3]], np.int8), np.array([bias], np.int32), weight_qp(0.25),
                          act_qp(0.5, -1), act_qp(1.0, 3), activation,
                          requantization=requantization, rounding=rounding)


def tiny_model(**kw) -> QuantizedMLP:
    layer = tiny_layer(**kw)
    return QuantizedMLP([layer], layer.in_qparams)


def half_away(r: Fraction) -> int:
    return int(math.copysign(math.floor(abs(r) + Fraction(1, 2)), r)) if r else 0


def ref_mbqm(x: int, m0: int, shift: int, rounding: str) -> int:
    """TensorFlow Lite's MultiplyByQuantizedMultiplier with Python integers."""
    if rounding == "single":
        t = 31 - shift
        return (x * m0 + (1 << (t - 1))) >> t  # Python >> floors: ties toward +infinity
    left, right = max(shift, 0), max(-shift, 0)
    a = x * (1 << left)
    if a == m0 == -(2**31):
        high = INT32_MAX
    else:
        high = (a * m0 + (1 << 30)) >> 31  # SRDHM: round(a * m0 / 2**31), ties toward +inf
    # RDBPOT: round(high / 2**right), ties away from zero.
    return half_away(Fraction(high, 1 << right))


def ref_float_requant(acc: int, multiplier: np.float32, zp: int) -> int:
    """onnxruntime/MLAS: float32(acc) * multiplier, clamp, round half to even, + zp."""
    v = np.float32(acc) * multiplier
    v = min(max(v, np.float32(-128 - zp)), np.float32(127 - zp))
    return int(np.rint(v)) + zp


def reference_forward(qmodel: QuantizedMLP, x_q: np.ndarray) -> list[list[int]]:
    """The integer network, one example and one output at a time, in Python ints."""
    out = []
    for row in x_q:
        h = [int(v) for v in row]
        for layer in qmodel.layers:
            zp_x = int(layer.in_qparams.zero_point)
            zp_o = int(layer.linear_qparams.zero_point)
            nxt = []
            for j in range(layer.out_features):
                acc = sum((h[k] - zp_x) * int(layer.w_q[k, j]) for k in range(layer.in_features))
                acc += int(layer.bias_q[j])
                assert -(2**31) <= acc <= INT32_MAX
                if layer.requantization == "fixed_point":
                    q = ref_mbqm(acc, int(layer.m0[j]), int(layer.shift[j]), layer.rounding) + zp_o
                else:
                    q = ref_float_requant(acc, layer.float_multiplier[j], zp_o)
                lo, hi = (zp_o, 127) if layer.activation == "relu" else (-128, 127)
                q = min(max(q, lo), hi)
                if layer.lut is not None:
                    q = int(layer.lut[q + 128])
                nxt.append(q)
            h = nxt
        out.append(h)
    return out


# --------------------------------------------------------------------------- digits fixture


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits()
    return train_test_split(x, y, test_fraction=0.2, seed=0)


def trained(digits, activation="relu", sizes=(64, 32, 10)) -> MLP:
    x_tr, _, y_tr, _ = digits
    model = MLP(list(sizes), activation=activation, seed=0)
    fit(model, Adam(lr=1e-2), x_tr, y_tr, epochs=30, batch_size=64, seed=0, verbose=False)
    return model


@pytest.fixture(scope="module")
def relu_model(digits):
    return trained(digits)


@pytest.fixture(scope="module")
def relu_qmodel(digits, relu_model):
    return quantize_model(relu_model, digits[0])


# --------------------------------------------------------------------------- acceptance on digits


@pytest.mark.parametrize("kw", [
    {},  # int8 per-channel weights, fixed point, single rounding (the default)
    {"rounding": "double"},
    {"requantization": "float"},
], ids=["single", "double", "float"])
def test_int8_model_is_within_one_point_of_float_on_digits(digits, relu_model, kw):
    x_tr, x_te, _, y_te = digits
    qmodel = quantize_model(relu_model, x_tr, **kw)
    float_acc = relu_model.accuracy(x_te, y_te)
    assert float_acc > 0.95  # the float model is worth quantizing
    assert qmodel.accuracy(x_te, y_te) >= float_acc - 0.01


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "leaky_relu"])
def test_lookup_table_activations_are_within_one_point(digits, activation):
    model = trained(digits, activation)
    x_tr, x_te, _, y_te = digits
    qmodel = quantize_model(model, x_tr)
    assert qmodel.layers[0].lut is not None and qmodel.layers[1].lut is None
    assert qmodel.accuracy(x_te, y_te) >= model.accuracy(x_te, y_te) - 0.01


def test_per_tensor_weights_convert_and_stay_close(digits, relu_model):
    x_tr, x_te, _, y_te = digits
    qmodel = quantize_model(relu_model, x_tr, weight_scheme="tflite_int8_weights_per_tensor")
    assert all(not layer.w_qparams.per_channel for layer in qmodel.layers)
    assert qmodel.accuracy(x_te, y_te) >= relu_model.accuracy(x_te, y_te) - 0.02


@pytest.mark.parametrize("bits, qmax, min_acc", [(4, 7, 0.9), (2, 1, 0.2)])
def test_low_bit_weights_convert_and_run(digits, relu_model, bits, qmax, min_acc):
    x_tr, x_te, _, y_te = digits
    qmodel = quantize_model(relu_model, x_tr, bits=bits)
    for layer in qmodel.layers:
        assert layer.w_q.dtype == np.int8 and layer.weight_bits == bits
        assert -qmax <= layer.w_q.min() and layer.w_q.max() <= qmax
        # The widest entry of every (non-zero) column reaches the end of the grid.
        assert np.all(np.abs(layer.w_q.astype(int)).max(axis=0) == qmax)
    pred = qmodel.predict(x_te)
    assert pred.dtype == np.int64 and pred.min() >= 0 and pred.max() <= 9
    assert qmodel.accuracy(x_te, y_te) >= min_acc  # 2-bit (ternary) weights: far above chance 0.1
    assert np.array_equal(pred, np.argmax(reference_forward(qmodel, qmodel.quantize_input(x_te)), axis=1))


def test_compare_reports_consistent_numbers(digits, relu_model, relu_qmodel):
    _, x_te, _, y_te = digits
    c = relu_qmodel.compare(relu_model, x_te, y_te)
    assert c["float_accuracy"] == relu_model.accuracy(x_te, y_te)
    assert c["int_accuracy"] == relu_qmodel.accuracy(x_te, y_te)
    assert c["n"] == len(y_te) and 0.97 <= c["agreement"] <= 1.0
    # |int acc - float acc| can be at most the fraction of disagreements.
    assert abs(c["int_accuracy"] - c["float_accuracy"]) <= 1 - c["agreement"] + 1e-12
    logits_err = np.abs(relu_model.forward(x_te) - relu_qmodel.dequantized_logits(x_te))
    assert c["max_logit_error"] == pytest.approx(float(logits_err.max()), rel=1e-6)
    assert 0 < c["mean_logit_error"] <= c["max_logit_error"]
    # The logits are on a grid of step s_out: the error cannot be below rounding, and on a
    # well-calibrated model it stays a few steps.
    assert c["max_logit_error"] < 20 * float(relu_qmodel.output_qparams.scale)


# --------------------------------------------------------------------------- bit-exact references


@pytest.mark.parametrize("kw", [{}, {"rounding": "double"}, {"requantization": "float"}],
                         ids=["single", "double", "float"])
def test_integer_logits_equal_the_scalar_reference_bit_for_bit(digits, relu_model, kw):
    x_tr, x_te, _, _ = digits
    qmodel = quantize_model(relu_model, x_tr, **kw)
    x_q = qmodel.quantize_input(x_te[:6])
    assert qmodel.forward_int(x_q).tolist() == reference_forward(qmodel, x_q)


def test_lookup_table_model_equals_the_scalar_reference(digits):
    x_tr, x_te, _, _ = digits
    qmodel = quantize_model(trained(digits, "tanh"), x_tr)
    x_q = qmodel.quantize_input(x_te[:6])
    assert qmodel.forward_int(x_q).tolist() == reference_forward(qmodel, x_q)


def test_hand_worked_layer():
    # x_q = [3, -5]:  acc = (3 + 1) * 2 + (-5 + 1) * (-3) = 8 + 12 = 20;  + bias 5 = 25.
    # MBQM single, t = 31 - (-2) = 33:  (25 * 2**30 + 2**32) >> 33 = floor(29 / 8) = 3
    # (25 * 0.125 = 3.125);  + zp 3 = 6.
    # x_q = [-1, 7]:  acc = 0 * 2 + 8 * (-3) = -24;  + 5 = -19;  -19 * 0.125 = -2.375:
    # (-19 * 2**30 + 2**32) >> 33 = floor(-15 / 8) = -2;  + 3 = 1;  fused ReLU clamps to zp = 3.
    x_q = np.array([[3, -5], [-1, 7]], np.int8)
    layer = tiny_layer()
    assert (layer.m0.tolist(), layer.shift.tolist()) == ([2**30], [-2])
    assert tiny_model().forward_int(x_q).tolist() == [[6], [1]]
    assert tiny_model(activation="relu").forward_int(x_q).tolist() == [[6], [3]]
    _, (record,) = tiny_model().forward_int(x_q, trace=True)
    assert record["acc"].tolist() == [[20], [-24]]
    assert record["acc_bias"].tolist() == [[25], [-19]]
    assert record["scaled"].tolist() == [[3], [-2]]
    assert record["out"].tolist() == [[6], [1]]


def test_hand_worked_ties_separate_single_double_and_float_rounding():
    # x_q = [0, 8]: acc = 1 * 2 + 9 * (-3) = -25;  + 5 = -20;  -20 * 0.125 = -2.5 exactly.
    #   single (ties toward +inf):  (-20 * 2**30 + 2**32) >> 33 = floor(-2) = -2  -> -2 + 3 = 1
    #   double: SRDHM(-20, 2**30) = -10, RDBPOT(-10, 2) = -2.5 away from zero = -3  -> 0
    #   float (onnxruntime, half to even): rint(-2.5) = -2                         -> 1
    # x_q = [2, 3]: acc = 3 * 2 + 4 * (-3) = -6;  + 5 = -1;  -0.125: single -> 0, double
    #   SRDHM(-1, 2**30) = round(-0.5 toward +inf) = 0 -> 0, float -> -0 -> 0; all give 3.
    x_q = np.array([[0, 8], [2, 3]], np.int8)
    assert tiny_model(rounding="single").forward_int(x_q).tolist() == [[1], [3]]
    assert tiny_model(rounding="double").forward_int(x_q).tolist() == [[0], [3]]
    assert tiny_model(requantization="float").forward_int(x_q).tolist() == [[1], [3]]


@given(x_q=int8_arrays((5, 64)))
def test_fast_and_pure_integer_paths_agree_bit_for_bit(relu_qmodel, x_q):
    fast = relu_qmodel.forward_int(x_q, method="auto")
    pure = relu_qmodel.forward_int(x_q, method="int")
    traced, records = relu_qmodel.forward_int(x_q, trace=True, method="int")
    assert fast.dtype == pure.dtype == np.int8
    assert np.array_equal(fast, pure) and np.array_equal(fast, traced)
    assert np.array_equal(records[-1]["y"], fast)


@given(seed=seeds, k=st.integers(1, 40), n=st.integers(1, 12), zp_x=st.integers(-128, 127),
       zp_o=st.integers(-128, 127), relu=st.booleans(), rounding=st.sampled_from(["single", "double"]))
def test_fixed_point_layer_equals_tflite_fully_connected_kernel(seed, k, n, zp_x, zp_o, relu, rounding):
    rng = np.random.default_rng(seed)
    w_q = rng.integers(-127, 128, (k, n)).astype(np.int8)
    bias = rng.integers(-5000, 5000, n).astype(np.int32)
    w_qp = weight_qp(rng.uniform(1e-3, 1e-1, n))
    layer = QuantizedLayer(w_q, bias, w_qp, act_qp(rng.uniform(1e-3, 1.0), zp_x),
                           act_qp(rng.uniform(1e-2, 1.0), zp_o), "relu" if relu else "none",
                           rounding=rounding)
    x_q = rng.integers(-128, 128, (4, k)).astype(np.int8)
    expected = quantized_linear(x_q, w_q, bias, zp_x, 0, layer.m0, layer.shift, zp_o,
                                layer.act_min, layer.act_max, rounding=rounding)
    assert np.array_equal(layer.forward(x_q), expected)
    assert np.array_equal(layer.forward(x_q, "int"), expected)
    assert np.array_equal(layer.trace(x_q)["out"], expected)


@given(seed=seeds, k=st.integers(1, 40), n=st.integers(1, 12), zp_x=st.integers(-128, 127),
       zp_o=st.integers(-128, 127))
def test_float_requantization_with_zero_bias_is_onnx_qlinear_matmul(seed, k, n, zp_x, zp_o):
    rng = np.random.default_rng(seed)
    w_q = rng.integers(-127, 128, (k, n)).astype(np.int8)
    s_w, s_in, s_out = rng.uniform(1e-3, 1e-1, n), rng.uniform(1e-3, 1.0), rng.uniform(1e-3, 1.0)
    layer = QuantizedLayer(w_q, np.zeros(n, np.int32), weight_qp(s_w), act_qp(s_in, zp_x),
                           act_qp(s_out, zp_o), requantization="float")
    x_q = rng.integers(-128, 128, (4, k)).astype(np.int8)
    expected = qlinear_matmul(x_q, s_in, zp_x, w_q, s_w, 0, s_out, np.int8(zp_o))
    assert np.array_equal(layer.forward(x_q), expected)


# --------------------------------------------------------------------------- integers only


def test_every_traced_intermediate_is_an_integer_array(relu_qmodel, digits):
    x_q = relu_qmodel.quantize_input(digits[1][:8])
    logits, records = relu_qmodel.forward_int(x_q, trace=True, method="int")
    assert logits.dtype == np.int8
    expected = {"x_q": np.int8, "acc": np.int32, "acc_bias": np.int32, "scaled": np.int32,
                "out": np.int8, "y": np.int8}
    for record in records:
        assert {k: v.dtype for k, v in record.items()} == {k: np.dtype(v) for k, v in expected.items()}
    # acc_bias = acc + bias and out = clamp(scaled + zp): the steps chain as documented.
    for layer, record in zip(relu_qmodel.layers, records):
        assert np.array_equal(record["acc_bias"], record["acc"] + layer.bias_q)
        zp = int(layer.out_qparams.zero_point)
        assert np.array_equal(record["out"], np.clip(record["scaled"].astype(np.int64) + zp,
                                                     layer.act_min, layer.act_max))


class IntegerOnly(np.ndarray):
    """An ndarray that refuses to take part in any floating-point operation.

    Every ufunc (arithmetic, comparisons, matmul, reductions) and every numpy function
    that receives an ``IntegerOnly`` operand checks all array operands and results and
    raises if one is floating point, and ``astype`` refuses float targets. Results of
    operations on it are ``IntegerOnly`` again, so the check follows the data through the
    whole network. (It cannot see operations on arrays that never touched the input, such
    as the weights alone; those are constants prepared at conversion time.)
    """

    calls = 0

    @staticmethod
    def _check(arrays, what):
        for a in arrays:
            if isinstance(a, np.ndarray) and a.dtype.kind not in "biu":
                raise AssertionError(f"floating-point {what}: dtype {a.dtype}")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        IntegerOnly.calls += 1
        self._check(inputs, f"input to {ufunc.__name__}")
        plain = [i.view(np.ndarray) if isinstance(i, IntegerOnly) else i for i in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(o.view(np.ndarray) if isinstance(o, IntegerOnly) else o for o in kwargs["out"])
        result = getattr(ufunc, method)(*plain, **kwargs)
        results = result if isinstance(result, tuple) else (result,)
        self._check(results, f"result of {ufunc.__name__}")
        wrapped = tuple(r.view(IntegerOnly) if isinstance(r, np.ndarray) else r for r in results)
        return wrapped if isinstance(result, tuple) else wrapped[0]

    def __array_function__(self, func, types, args, kwargs):
        IntegerOnly.calls += 1
        result = super().__array_function__(func, types, args, kwargs)
        self._check(result if isinstance(result, tuple) else (result,), f"result of {func.__name__}")
        return result

    def astype(self, dtype, *args, **kwargs):
        if np.dtype(dtype).kind not in "biu":
            raise AssertionError(f"floating-point astype({np.dtype(dtype)})")
        return super().astype(dtype, *args, **kwargs)


def test_integer_only_guard_catches_float_operations():
    # The guard itself must be able to fail, or the next test would prove nothing.
    g = np.arange(4, dtype=np.int8).view(IntegerOnly)
    with pytest.raises(AssertionError, match="floating-point"):
        g * 0.5
    with pytest.raises(AssertionError, match="floating-point"):
        g.astype(np.float32)
    with pytest.raises(AssertionError, match="floating-point"):
        g @ np.ones((4, 2), np.float32)
    assert np.array_equal(g + np.int8(1), [1, 2, 3, 4])


@pytest.mark.parametrize("trace", [False, True])
def test_forward_int_runs_under_the_integer_only_guard(relu_qmodel, digits, trace):
    # method="int" with fixed-point requantization: no float may touch the activations.
    # (method="auto" would fail this guard by design: it runs the exact int8 product in
    # float BLAS; requantization="float" multiplies in float32, as onnxruntime.)
    x_q = relu_qmodel.quantize_input(digits[1][:8])
    IntegerOnly.calls = 0
    result = relu_qmodel.forward_int(x_q.view(IntegerOnly), trace=trace, method="int")
    logits = result[0] if trace else result
    assert IntegerOnly.calls > 10  # the guard saw the arithmetic
    assert isinstance(logits, IntegerOnly)  # ... all the way to the logits
    assert np.array_equal(logits.view(np.ndarray), relu_qmodel.forward_int(x_q))
    with pytest.raises(AssertionError, match="floating-point"):
        relu_qmodel.forward_int(x_q.view(IntegerOnly), method="auto")


# --------------------------------------------------------------------------- conversion steps


def test_quantize_weights_worked_examples():
    # 2-bit narrow range: q in [-1, 1], s = max|w| / 1 = 2:  [2, 1, -0.5, 0.25] / 2 =
    # [1, 0.5, -0.25, 0.125] -> half away from zero: [1, 1, 0, 0] (half to even: 0.5 -> 0).
    # 3-bit: q in [-3, 3], s = 3 / 3 = 1:  [3, 1.5, -0.5] -> [3, 2, -1].
    w_q, qp = quantize_weights(np.array([[2.0], [1.0], [-0.5], [0.25]]), bits=2)
    assert w_q.ravel().tolist() == [1, 1, 0, 0] and qp.scale.tolist() == [2.0]
    w_q, qp = quantize_weights(np.array([[3.0], [1.5], [-0.5]]), bits=3)
    assert w_q.ravel().tolist() == [3, 2, -1] and qp.scale.tolist() == [1.0]


@given(seed=seeds, bits=st.integers(2, 8), per_channel=st.booleans())
def test_quantize_weights_laws(seed, bits, per_channel):
    w = np.random.default_rng(seed).standard_normal((7, 5)).astype(np.float32)
    scheme = "tflite_int8_weights" if per_channel else "tflite_int8_weights_per_tensor"
    w_q, qp = quantize_weights(w, scheme, bits)
    qmax = 2 ** (bits - 1) - 1
    assert w_q.dtype == np.int8 and np.all(np.abs(w_q.astype(int)) <= qmax)
    assert np.all(qp.zero_point == 0) and qp.per_channel == per_channel and qp.bits == bits
    # Every weight is within half a step of its grid point (no clamping: symmetric range).
    s = qp.scale.reshape(1, -1) if per_channel else qp.scale
    assert np.all(np.abs(dequantize(w_q, qp) - w) <= s / 2 * (1 + 1e-6))
    # The largest |w| of each channel (or of the tensor) lands on the grid's end.
    top = np.abs(w_q.astype(int)).max(axis=0) if per_channel else np.abs(w_q.astype(int)).max()
    assert np.all(top == qmax)


def test_converted_weights_are_quantize_weights_of_the_float_weights(relu_model, relu_qmodel):
    # The contract quantization-aware training relies on: one quantizer for both.
    for lin, layer in zip(relu_model.linears, relu_qmodel.layers):
        w_q, qp = quantize_weights(lin.W)
        assert np.array_equal(layer.w_q, w_q) and layer.w_qparams == qp


def test_quantize_bias_refuses_bad_scales():
    # the converter's arithmetic (worked values, ties, saturation, oddness) is a law
    # (nnref.laws, quantize_bias); here the checks around it
    with pytest.raises(ValueError, match="weight_scale"):
        quantize_bias(np.array([1.0, 2.0]), 0.5, np.array([0.5, 0.5, 0.5]))
    with pytest.raises(ValueError, match=r"input_scale, weight_scale: expected scales > 0, got input_scale = -0.5"):
        quantize_bias(np.array([1.0]), -0.5, 0.5)
    with pytest.raises(ValueError, match=r"underflows or overflows float32"):
        quantize_bias(np.array([1.0]), 1e-30, 1e-30)


def test_converted_model_records_tflite_parameters(relu_model, relu_qmodel, digits):
    x_tr = digits[0]
    q = relu_qmodel
    # Input: digits are in [0, 1] -> s = 1/255, zp = -128 (min 0 maps to the bottom).
    assert float(q.input_qparams.scale) == np.float32(float(x_tr.max()) / 255)
    assert int(q.input_qparams.zero_point) == -128
    hidden = q.layers[0]
    # ReLU output: range [0, max] -> zp = -128, and the fused ReLU clamp is then [-128, 127].
    assert int(hidden.out_qparams.zero_point) == -128 and (hidden.act_min, hidden.act_max) == (-128, 127)
    assert hidden.activation == "relu" and q.layers[1].activation == "none"
    for layer in q.layers:
        assert layer.w_qparams.per_channel and layer.w_qparams.narrow_range
        m0, shift = layer.m0.astype(np.int64), layer.shift.astype(np.int64)
        assert np.all((m0 >= 2**30) & (m0 < 2**31))
        # m0 * 2**(shift - 31) is M to within half a unit in the last place.
        approx = m0 * np.exp2(shift - 31.0)
        assert np.all(np.abs(approx - layer.real_multiplier) <= np.exp2(shift - 32.0))
        # TFLite PopulateConvolutionQuantizationParams (per channel): every factor widened
        # to double first, M = double(s_in) * double(s_w[c]) / double(s_out).
        expected_m = [float(layer.in_qparams.scale) * float(s) / float(layer.out_qparams.scale)
                      for s in layer.w_qparams.scale]
        assert layer.real_multiplier.tolist() == expected_m
    # Per tensor: the one scale in the same all-double order, as LiteRT 2.x's reference
    # FULLY_CONNECTED computes it: M = double(s_in) * double(s_w) / double(s_out).
    q_pt = quantize_model(relu_model, x_tr, weight_scheme="tflite_int8_weights_per_tensor")
    for layer in q_pt.layers:
        assert not layer.w_qparams.per_channel
        expected = float(layer.in_qparams.scale) * float(layer.w_qparams.scale) / float(layer.out_qparams.scale)
        assert layer.real_multiplier.tolist() == [expected] * layer.out_features


def test_per_tensor_multiplier_order_worked_values():
    # A triple where the order shows in m0: the all-double product (QuantizedLayer, LiteRT's
    # reference kernels) gives (1372340950, -4); GetQuantizedConvolutionMultipler's
    # double(float32(0.6373247504234314) * float32(0.02743261121213436)) / 0.4377395212650299
    # (LiteRT's optimized kernels, TensorFlow Lite Micro) gives (1372340954, -4).
    s_in, s_w, s_out = 0.6373247504234314, 0.02743261121213436, 0.4377395212650299
    for w_qp in (weight_qp(s_w), weight_qp([s_w])):  # per tensor and per channel alike
        layer = QuantizedLayer(np.array([[1]], np.int8), np.zeros(1, np.int32), w_qp,
                               act_qp(s_in, 0), act_qp(s_out, 0))
        assert (int(layer.m0[0]), int(layer.shift[0])) == (1372340950, -4)
    older = tflite_real_multiplier(np.float32(s_in), np.float32(s_w), np.float32(s_out), 1, order="float32_product")
    assert tuple(int(v[0]) for v in quantize_multiplier(older)) == (1372340954, -4)


positive_float32_scales = st.floats(min_value=2.0**-20, max_value=2.0**10, width=32)


@given(positive_float32_scales, positive_float32_scales, positive_float32_scales, st.integers(1, 5))
def test_real_multiplier_orders_laws(s_in, s_w, s_out, n):
    s_in, s_w, s_out = np.float32(s_in), np.float32(s_w), np.float32(s_out)
    per_tensor = tflite_real_multiplier(s_in, s_w, s_out, n)
    per_channel = tflite_real_multiplier(s_in, np.full(n, s_w, np.float32), s_out, n)
    older = tflite_real_multiplier(s_in, s_w, s_out, n, order="float32_product")
    assert per_tensor.dtype == older.dtype == np.float64 and per_tensor.shape == older.shape == (n,)
    assert np.array_equal(per_tensor, per_channel)  # one formula: the scale given to every channel
    exact = Fraction(float(s_in)) * Fraction(float(s_w)) / Fraction(float(s_out))
    assert abs(Fraction(float(per_tensor[0])) - exact) <= exact * Fraction(1, 2**52)  # two double roundings
    # The float32 product is off by at most half a float32 ulp (relative 2**-24), then divided.
    assert abs(Fraction(float(older[0])) - exact) <= exact * (Fraction(1, 2**24) + Fraction(1, 2**51))
    assert older[0] == np.float64(s_in * s_w) / np.float64(s_out)


@pytest.mark.parametrize("s_in, s_w, s_out", [(0.5, 0.25, 1e-45), (1e36, 1e36, 1.0), (1e30, 1e-5, 1e-30)])
def test_layer_refuses_non_finite_multipliers(s_in, s_w, s_out):
    # 0.125 / 1e-45 (a float32 subnormal), 1e72 (beyond float32) and 1e55: float32 gives inf,
    # which would wrap silently when cast to an integer.
    for req in REQUANTIZATIONS:
        with pytest.raises(ValueError, match="in_qparams, w_qparams, out_qparams: the scales give a non-finite"):
            QuantizedLayer(np.array([[1]], np.int8), np.zeros(1, np.int32), weight_qp(s_w),
                           act_qp(s_in, 0), act_qp(s_out, 0), requantization=req)


def test_lookup_table_worked_values_and_monotonicity():
    # sigmoid: input grid s = 1/16, zp = 0; output grid fixed at s = 1/256, zp = -128.
    #   q = 0:   real 0, sigmoid 0.5, 0.5 * 256 = 128, + (-128) = 0.
    #   q = 127: real 7.9375, sigmoid 0.99964, * 256 = 255.9 -> 256, - 128 = 128 -> clamp 127.
    #   q = -128: real -8, sigmoid 3.35e-4, * 256 = 0.086 -> 0, - 128 = -128.
    lut = build_lut("sigmoid", act_qp(1 / 16, 0), FIXED_OUTPUT_QPARAMS["sigmoid"])
    assert (lut[0 + 128], lut[127 + 128], lut[-128 + 128]) == (0, 127, -128)
    # tanh: output s = 1/128, zp 0. q = 8 (real 0.5): tanh 0.46212 * 128 = 59.15 -> 59.
    lut = build_lut("tanh", act_qp(1 / 16, 0), FIXED_OUTPUT_QPARAMS["tanh"])
    assert (lut[128], lut[8 + 128], lut[-8 + 128]) == (0, 59, -59)
    # leaky ReLU alpha 0.25 onto a grid of step 1/8 (every value below is exact, so the
    # ties are real ties):  q = -8: -0.5 * 0.25 = -0.125 -> -1 step;  q = 8: 0.5 -> 4 steps;
    # q = 1: 0.0625 / 0.125 = 0.5 -> 1 (half away; half to even would give 0);
    # q = -4: -0.25 * 0.25 / 0.125 = -0.5 -> -1;  q = 3: 0.1875 * 8 = 1.5 -> 2.
    lut = build_lut("leaky_relu", act_qp(1 / 16, 0), act_qp(1 / 8, 0), alpha=0.25)
    assert [int(lut[q + 128]) for q in (-8, 8, 1, -4, 3)] == [-1, 4, 1, -1, 2]


@given(seed=seeds, kind=st.sampled_from(["tanh", "sigmoid", "leaky_relu"]), zp=st.integers(-128, 127))
def test_lookup_tables_are_monotone_and_within_one_step_of_the_function(seed, kind, zp):
    rng = np.random.default_rng(seed)
    in_qp = act_qp(rng.uniform(1e-3, 0.2), zp)
    out_qp = FIXED_OUTPUT_QPARAMS.get(kind) or act_qp(rng.uniform(1e-3, 0.2), int(rng.integers(-128, 128)))
    lut = build_lut(kind, in_qp, out_qp, alpha=0.1)
    assert lut.dtype == np.int8 and lut.shape == (256,)
    assert np.all(np.diff(lut.astype(int)) >= 0)  # every f here is non-decreasing
    real = float(in_qp.scale) * (np.arange(-128, 128) - zp)
    f = {"tanh": np.tanh, "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
         "leaky_relu": lambda v: np.where(v > 0, v, 0.1 * v)}[kind]
    ideal = np.clip(f(real) / float(out_qp.scale) + int(out_qp.zero_point), -128, 127)
    assert np.all(np.abs(lut - ideal) <= 0.5 + 1e-3)  # float32 rounding near a tie at most


# --------------------------------------------------------------------------- input quantization


def ref_quantize_input(x: np.ndarray, qp: QParams) -> list[list[int]]:
    """TensorFlow Lite's AffineQuantize: float32 division, std::round, + zp, clamp."""
    s, zp = np.float32(qp.scale), int(qp.zero_point)
    return [[min(max(half_away(Fraction(float(np.float32(v) / s))) + zp, -128), 127) for v in row] for row in x]


def test_quantize_input_worked_ties_round_half_away():
    # s = 0.5, zp = -1: 0.25 / 0.5 = 0.5 -> 1 -> 0;  -0.25 -> -0.5 -> -1 -> -2;
    # 0.75 -> 1.5 -> 2 -> 1;  100 -> 200 -> 199 -> clamp 127;  -100 -> -201 -> clamp -128.
    q = tiny_model().quantize_input(np.array([[0.25, -0.25], [0.75, 100.0], [-100.0, 0.0]]))
    assert q.dtype == np.int8 and q.tolist() == [[0, -2], [1, 127], [-128, -1]]


@given(seed=seeds, rows=st.integers(1, 300), scale_exp=st.integers(-9, 2), zp=st.integers(-128, 127))
def test_quantize_input_equals_tflite_reference(seed, rows, scale_exp, zp):
    rng = np.random.default_rng(seed)
    scale = float(rng.uniform(1, 2) * 2.0**scale_exp)
    layer = QuantizedLayer(np.ones((3, 1), np.int8), np.zeros(1, np.int32), weight_qp(1.0),
                           act_qp(scale, zp), act_qp(1.0, 0))
    model = QuantizedMLP([layer], layer.in_qparams)
    s = float(layer.in_qparams.scale)
    # Mix of random values and exact ties (k + 1/2) * s (representable when s is a power of 2).
    x = rng.uniform(-200 * s, 200 * s, (rows, 3)).astype(np.float32)
    x[::2, 0] = (rng.integers(-200, 200, x[::2, 0].shape) + 0.5) * np.float32(2.0**scale_exp)
    assert model.quantize_input(x).tolist() == ref_quantize_input(x, layer.in_qparams)


def test_quantize_input_blocks_do_not_change_the_result():
    # More rows than one block (2**17 values / 2 features = 65,536 rows): a block
    # boundary falls between rows 65,535 and 65,536.
    model = tiny_model()
    x = np.random.default_rng(0).uniform(-80, 80, (70_000, 2)).astype(np.float32)
    q = model.quantize_input(x)
    assert np.array_equal(q[-7:], model.quantize_input(x[-7:]))
    assert np.array_equal(q[65_530:65_540], model.quantize_input(x[65_530:65_540]))


# --------------------------------------------------------------------------- size, repr


def test_size_bytes_worked_example(relu_qmodel):
    # [64, 32, 10], int8 per-channel:
    #   weights 64*32 + 32*10 = 2368; biases 4 * (32 + 10) = 168;
    #   per channel: scale, zero point, m0, shift = 16 bytes * 42 = 672;
    #   output scale + zp and act_min/max per layer: 16 * 2 = 32; input scale + zp: 8.
    #   Total 2368 + 168 + 672 + 32 + 8 = 3248 (float32 model: 4 * 2410 = 9640).
    assert relu_qmodel.size_bytes() == 3248


def test_size_bytes_counts_packed_low_bit_weights(digits, relu_model):
    # 4 bits: 2048 * 4 / 8 = 1024 and 320 * 4 / 8 = 160 bytes of weights instead of 2368;
    # 3 bits: ceil(6144 / 8) = 768 and ceil(960 / 8) = 120.
    assert quantize_model(relu_model, digits[0], bits=4).size_bytes() == 3248 - 2368 + 1024 + 160
    assert quantize_model(relu_model, digits[0], bits=3).size_bytes() == 3248 - 2368 + 768 + 120
    # Per-tensor weights: one scale/zp/m0/shift per layer instead of per channel.
    per_tensor = quantize_model(relu_model, digits[0], weight_scheme="tflite_int8_weights_per_tensor")
    assert per_tensor.size_bytes() == 3248 - 16 * 42 + 16 * 2


def test_repr_and_summary_are_readable(relu_qmodel):
    text = repr(relu_qmodel)
    assert "QuantizedMLP([64, 32, 10]" in text and "int8 per-channel" in text and "3,248 bytes" in text
    summary = relu_qmodel.summary()
    assert "layer 0" in summary and "layer 1" in summary and "clamp [" in summary
    assert "QuantizedLayer(64 -> 32" in repr(relu_qmodel.layers[0])


# --------------------------------------------------------------------------- save / load


def all_arrays(q: QuantizedMLP):
    for layer in q.layers:
        yield from (layer.w_q, layer.bias_q, layer.m0, layer.shift, layer.w_qparams.scale,
                    layer.out_qparams.scale, layer.out_qparams.zero_point)
        if layer.lut is not None:
            yield layer.lut


@pytest.mark.parametrize("kind", ["relu", "tanh"])
def test_save_load_round_trip_is_bitwise(tmp_path, digits, relu_qmodel, kind):
    q = relu_qmodel if kind == "relu" else quantize_model(trained(digits, "tanh"), digits[0], bits=5,
                                                          requantization="float")
    path = tmp_path / "q.npz"
    q.save(path)
    r = QuantizedMLP.load(path)
    assert r.layer_sizes == q.layer_sizes and r.input_qparams == q.input_qparams
    assert (r.requantization, r.rounding, r.weight_bits) == (q.requantization, q.rounding, q.weight_bits)
    for a, b in zip(all_arrays(q), all_arrays(r)):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    x_q = q.quantize_input(digits[1])
    assert np.array_equal(r.forward_int(x_q), q.forward_int(x_q))
    assert r.size_bytes() == q.size_bytes()


def test_load_rejects_foreign_truncated_and_mismatched_files(tmp_path, relu_qmodel, relu_model):
    good = tmp_path / "good.npz"
    relu_qmodel.save(good)
    with pytest.raises(FileNotFoundError):
        QuantizedMLP.load(tmp_path / "missing.npz")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(ValueError, match="truncated.npz: not a readable"):
        QuantizedMLP.load(truncated)
    foreign = tmp_path / "float_model.npz"
    relu_model.save(foreign)
    with pytest.raises(ValueError, match="not an nnref QuantizedMLP file"):
        QuantizedMLP.load(foreign)

    def rewrite(name, change):
        return _rewritten_copy(good, tmp_path / name, change)

    def bump_m0(a):
        a["layer0.m0"] = a["layer0.m0"] + np.int32(1)

    def wrong_width(a):
        a["layer1.w_q"] = a["layer1.w_q"][:-1]

    def float_weights(a):
        a["layer0.w_q"] = a["layer0.w_q"].astype(np.float32)

    def version(a):
        a["format_version"] = np.array(99)

    cases = {
        "mismatched m0": (bump_m0, "layer0.m0: stored values disagree"),
        "missing entry": (lambda a: a.pop("layer1.bias_q"), "missing entry 'layer1.bias_q'"),
        "extra entry": (lambda a: a.update(extra=np.zeros(1)), "unexpected entries"),
        "layer widths do not chain": (wrong_width, "layers\\[1\\]: expected 32 inputs"),
        "float weights": (float_weights, "w_q: expected an int8 array"),
        "version": (version, "format version"),
    }
    for i, (change, message) in enumerate(cases.values()):
        with pytest.raises(ValueError, match=message):
            QuantizedMLP.load(rewrite(f"bad{i}.npz", change))


# --------------------------------------------------------------------------- bad input


def test_forward_int_rejects_floats_and_wrong_shapes(relu_qmodel):
    with pytest.raises(TypeError, match="x_q: expected an int8 array"):
        relu_qmodel.forward_int(np.zeros((2, 64), np.float32))
    with pytest.raises(TypeError, match="x_q: expected an int8 array"):
        relu_qmodel.forward_int(np.zeros((2, 64), np.int32))
    with pytest.raises(ValueError, match=r"x_q: expected shape \(B, 64\)"):
        relu_qmodel.forward_int(np.zeros((2, 63), np.int8))
    with pytest.raises(ValueError, match="x_q"):
        relu_qmodel.forward_int(np.zeros(64, np.int8))
    with pytest.raises(ValueError, match="method"):
        relu_qmodel.forward_int(np.zeros((2, 64), np.int8), method="blas")


def test_float_entry_points_reject_bad_input(relu_qmodel, relu_model):
    with pytest.raises(ValueError, match=r"x: expected shape \(B, 64\)"):
        relu_qmodel.predict(np.zeros((2, 10)))
    with pytest.raises(ValueError, match="x: expected finite"):
        relu_qmodel.quantize_input(np.full((1, 64), np.nan))
    with pytest.raises(TypeError, match="x: expected a real numeric"):
        relu_qmodel.predict(np.array([["a"] * 64]))
    with pytest.raises(ValueError, match="y: expected shape"):
        relu_qmodel.accuracy(np.zeros((3, 64)), np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="y: expected values"):
        relu_qmodel.accuracy(np.zeros((2, 64)), np.array([0, 10]))
    with pytest.raises(TypeError, match="float_model"):
        relu_qmodel.compare("model", np.zeros((2, 64)), np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="float_model: expected layer sizes"):
        relu_qmodel.compare(MLP([64, 10]), np.zeros((2, 64)), np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="method"):
        relu_qmodel.method = "fast"


def test_quantize_model_rejects_bad_arguments(relu_model, digits):
    x = digits[0][:50]
    with pytest.raises(TypeError, match="model"):
        quantize_model("model", x)
    for bits in (1, 9):
        with pytest.raises(ValueError, match="bits"):
            quantize_model(relu_model, x, bits=bits)
    with pytest.raises(ValueError, match="weight_scheme: expected a symmetric"):
        quantize_model(relu_model, x, weight_scheme=QScheme(bits=8, symmetric=False))
    with pytest.raises(ValueError, match="weight_scheme: per-channel"):
        quantize_model(relu_model, x, weight_scheme=QScheme(symmetric=True, per_channel=True, channel_axis=0))
    with pytest.raises(ValueError, match="scheme"):
        quantize_model(relu_model, x, weight_scheme="int4")
    with pytest.raises(ValueError, match="requantization"):
        quantize_model(relu_model, x, requantization="double")
    with pytest.raises(ValueError, match="rounding"):
        quantize_model(relu_model, x, rounding="half_even")
    with pytest.raises(ValueError, match="activation_observer: expected per-tensor"):
        quantize_model(relu_model, x, activation_observer=PerChannelMinMaxObserver)
    with pytest.raises(ValueError, match="x: expected 64 features"):
        quantize_model(relu_model, x[:, :10])


def test_other_observers_plug_in(relu_model, digits):
    x_tr, x_te, _, y_te = digits
    for factory in (lambda: PercentileObserver(99.99), lambda: MovingAverageMinMaxObserver(0.1)):
        q = quantize_model(relu_model, x_tr, activation_observer=factory)
        assert q.accuracy(x_te, y_te) >= relu_model.accuracy(x_te, y_te) - 0.02


def test_layer_constructor_checks(relu_qmodel):
    layer = relu_qmodel.layers[0]
    args = dict(w_q=layer.w_q, bias_q=layer.bias_q, w_qparams=layer.w_qparams,
                in_qparams=layer.in_qparams, out_qparams=layer.out_qparams, activation="relu")
    with pytest.raises(TypeError, match="bias_q"):
        QuantizedLayer(**{**args, "bias_q": layer.bias_q.astype(np.int64)})
    with pytest.raises(ValueError, match="activation"):
        QuantizedLayer(**{**args, "activation": "gelu"})
    with pytest.raises(TypeError, match="lut"):
        QuantizedLayer(**{**args, "activation": "tanh", "pre_qparams": layer.out_qparams})
    with pytest.raises(ValueError, match="w_q: expected values in"):
        QuantizedLayer(**{**args, "w_q": np.full(layer.w_q.shape, -128, np.int8)})
    # An accumulator that could overflow int32 is refused before any input is seen:
    # K = 70,000 inputs * 255 * 127 > 2**31 - 1.
    with pytest.raises(ValueError, match="int32 accumulator could overflow"):
        QuantizedLayer(np.full((70_000, 1), 127, np.int8), np.zeros(1, np.int32), weight_qp(0.01),
                       act_qp(0.1, -128), act_qp(1.0, 0))
    with pytest.raises(ValueError, match="in_qparams"):
        QuantizedMLP([layer], relu_qmodel.layers[1].out_qparams)


# --------------------------------------------------------------------------- QAT activation grids


def test_activation_qparams_replace_calibration(digits, relu_model):
    # Grids given by hand (as QAT would learn them) are used as they are, with no
    # calibration data at all; the weights and biases are quantized against them.
    grids = [act_qp(1 / 255, -128), act_qp(0.05, -128), act_qp(0.1, 7)]
    q = quantize_model(relu_model, None, activation_qparams=grids)
    assert q.input_qparams == grids[0]
    assert [layer.out_qparams for layer in q.layers] == grids[1:]
    assert [layer.in_qparams for layer in q.layers] == grids[:2]
    for lin, layer in zip(relu_model.linears, q.layers):
        w_q, w_qp = quantize_weights(lin.W)
        assert np.array_equal(layer.w_q, w_q)
        assert np.array_equal(layer.bias_q, quantize_bias(lin.b, layer.in_qparams.scale, w_qp.scale))
    # Passing calibration data too changes nothing: the given grids win.
    q2 = quantize_model(relu_model, digits[0][:50], activation_qparams=grids)
    x_q = q.quantize_input(digits[1])
    assert np.array_equal(q.forward_int(x_q), q2.forward_int(x_q))
    # The grids the calibrated conversion chose, given back, reproduce that model exactly.
    cal = quantize_model(relu_model, digits[0])
    again = quantize_model(relu_model, None,
                           activation_qparams=[cal.input_qparams] + [l.out_qparams for l in cal.layers])
    assert np.array_equal(again.forward_int(x_q), cal.forward_int(x_q))


def test_activation_qparams_from_a_qat_model(digits):
    from nnref.quant.qat import prepare_qat

    x_tr, x_te, _, y_te = digits
    qat = prepare_qat(trained(digits, "relu", (64, 16, 10)))
    qat.calibrate(x_tr)
    grids = qat.activation_qparams
    q = quantize_model(qat.to_float(), None, activation_qparams=grids)
    assert [q.input_qparams] + [layer.out_qparams for layer in q.layers] == grids
    assert q.accuracy(x_te, y_te) >= qat.accuracy(x_te, y_te) - 0.03


def test_activation_qparams_with_lookup_tables_still_calibrate_the_preactivation(digits):
    model = trained(digits, "tanh", (64, 16, 10))
    grids = [act_qp(1 / 255, -128), act_qp(0.01, 3), act_qp(0.1, 7)]
    with pytest.raises(ValueError, match="calibration_x: layers \\[0\\] use a lookup table"):
        quantize_model(model, None, activation_qparams=grids)
    q = quantize_model(model, digits[0], activation_qparams=grids)
    cal = quantize_model(model, digits[0])
    # The pre-activation grid is calibrated; tanh's output grid is TFLite's fixed one, not
    # the given entry; the input and the logits come from the given grids.
    assert q.layers[0].pre_qparams == cal.layers[0].pre_qparams
    assert q.layers[0].out_qparams == FIXED_OUTPUT_QPARAMS["tanh"]
    assert q.input_qparams == grids[0] and q.layers[1].out_qparams == grids[2]


def test_activation_qparams_are_validated(relu_model):
    good = [act_qp(1 / 255, -128), act_qp(0.05, -128), act_qp(0.1, 7)]
    with pytest.raises(TypeError, match="activation_qparams: expected a list of 3 QParams"):
        quantize_model(relu_model, None, activation_qparams=good[0])
    with pytest.raises(ValueError, match="activation_qparams: expected 3 QParams .* got 2"):
        quantize_model(relu_model, None, activation_qparams=good[:2])
    with pytest.raises(ValueError, match=r"activation_qparams\[1\] \(out_0\): expected a QParams, got None"):
        quantize_model(relu_model, None, activation_qparams=[good[0], None, good[2]])
    with pytest.raises(TypeError, match=r"activation_qparams\[2\] \(out_1\): expected a QParams"):
        quantize_model(relu_model, None, activation_qparams=[good[0], good[1], (0.1, 7)])
    four_bit = QParams(scale=np.float32(0.1), zero_point=np.int32(0), qmin=-8, qmax=7, bits=4, signed=True)
    with pytest.raises(ValueError, match=r"activation_qparams\[0\] \(input\): expected per-tensor int8"):
        quantize_model(relu_model, None, activation_qparams=[four_bit, good[1], good[2]])
    with pytest.raises(ValueError, match="calibration_x: expected .* got None"):
        quantize_model(relu_model, None)


# --------------------------------------------------------------------------- fast path, trace bound, load checks


class _ProductSpy(np.ndarray):
    """A weight array that records every product computed with it: the operands' dtypes
    and the raw (float) result, before the layer casts it back to integers."""

    calls: list = []

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        inputs = tuple(np.asarray(v).view(np.ndarray) for v in inputs)
        out = getattr(ufunc, method)(*inputs, **kwargs)
        _ProductSpy.calls.append((ufunc.__name__, inputs[0].dtype, out))
        return out


@pytest.mark.parametrize("k, dtype", [(1032, np.float32), (1033, np.float64), (4000, np.float64)])
def test_layer_fast_path_at_the_float32_bound_is_exact(k, dtype):
    # K * 128 * 127 <= 2**24 = 16,777,216 exactly up to K = 1032 (16,776,192): float32;
    # K = 1033 gives 16,792,448 > 2**24, so the layer must switch to float64.
    w = np.full((k, 3), 127, np.int8)
    w[:, 1] = -127
    w[::2, 2] = -127
    x = np.array([np.full(k, -128), np.full(k, 127), np.where(np.arange(k) % 2, 127, -128),
                  np.where(np.arange(k) % 3, -128, 127)], dtype=np.int8)
    # s_in = 1, s_w = 1, s_out = 2**17: M = 2**-17; the spy checks the raw product itself.
    layer = QuantizedLayer(w, np.zeros(3, np.int32), weight_qp(1.0), act_qp(1.0, 0), act_qp(2.0**17, 0))
    assert layer._blas_dtype == dtype
    layer._w_blas = layer._w_blas.view(_ProductSpy)
    _ProductSpy.calls = []
    y_auto = layer.forward(x, "auto")
    (name, seen, raw), = _ProductSpy.calls
    assert name == "matmul" and seen == dtype and raw.dtype == dtype
    exact = x.astype(np.int64) @ w.astype(np.int64)
    assert np.abs(exact).max() == k * 128 * 127  # the extreme really is reached
    assert np.array_equal(raw.astype(np.int64), exact) and np.all(raw == exact)
    assert np.array_equal(y_auto, layer.forward(x, "int"))
    assert np.array_equal(y_auto, layer.trace(x, "int")["y"])


def test_trace_accepts_every_layer_the_constructor_accepts():
    # K = 66,000, zp_in = -128, |w| <= 127: 66,000 * 255 * 127 = 2,137,410,000 <= 2**31 - 1,
    # so the layer is valid (the dtype bound K * 255 * 128 would not be).
    k = 66_000
    layer = QuantizedLayer(np.full((k, 1), 127, np.int8), np.zeros(1, np.int32), weight_qp(1e-3),
                           act_qp(1e-3, -128), act_qp(4e2, 0))
    x = np.full((2, k), 127, np.int8)
    x[1] = -128
    for method in ("auto", "int"):
        record = layer.trace(x, method)
        assert record["acc"].dtype == np.int32
        assert record["acc"][:, 0].tolist() == [k * 255 * 127, 0]
        assert np.array_equal(record["y"], layer.forward(x, method))


def test_load_rebuilds_lookup_tables_and_checks_fixed_grids(tmp_path, digits):
    model = trained(digits, "tanh", (64, 16, 10))
    q = quantize_model(model, digits[0])
    good = tmp_path / "tanh.npz"
    q.save(good)

    def rewrite(name, change):
        return _rewritten_copy(good, tmp_path / name, change)

    def tamper_lut(a):
        lut = a["layer0.lut"].copy()
        lut[200] = lut[200] - 1 if lut[200] > -128 else lut[200] + 1
        a["layer0.lut"] = lut

    def relabel(a):
        a["layer0.activation"] = np.array("sigmoid")

    with pytest.raises(ValueError, match=r"lut_tampered.npz: .*layer0.lut: the stored table differs"):
        QuantizedMLP.load(rewrite("lut_tampered.npz", tamper_lut))
    with pytest.raises(ValueError, match=r"relabelled.npz: .*layer0.out: a sigmoid layer's output grid is fixed"):
        QuantizedMLP.load(rewrite("relabelled.npz", relabel))


def test_leaky_relu_alpha_is_saved_and_checked(tmp_path, digits):
    from nnref.layers import LeakyReLU, Linear

    model = MLP([64, 16, 10], seed=0)
    model.layers = [model.layers[0], LeakyReLU(0.2), model.layers[2]]
    assert isinstance(model.layers[2], Linear)
    q = quantize_model(model, digits[0][:200])
    assert q.layers[0].alpha == 0.2 and q.layers[1].alpha is None
    path = tmp_path / "leaky.npz"
    q.save(path)
    r = QuantizedMLP.load(path)
    assert r.layers[0].alpha == 0.2 and np.array_equal(r.layers[0].lut, q.layers[0].lut)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["layer0.alpha"] = np.array(0.01)
    np.savez(tmp_path / "other_alpha.npz", **arrays)
    with pytest.raises(ValueError, match="other_alpha.npz: .*layer0.lut: the stored table differs"):
        QuantizedMLP.load(tmp_path / "other_alpha.npz")
    with pytest.raises(ValueError, match="alpha: only for leaky_relu"):
        QuantizedLayer(q.layers[1].w_q, q.layers[1].bias_q, q.layers[1].w_qparams, q.layers[1].in_qparams,
                       q.layers[1].out_qparams, alpha=0.2)
