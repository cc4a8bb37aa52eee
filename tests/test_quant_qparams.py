"""Tests of nnref.quant.qparams: integer ranges, QParams, choose_qparams, QScheme presets."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnref.quant.ops import dequantize, fake_quantize, quantize
from nnref.quant.qparams import (
    SCHEMES,
    TFLITE_INT8_ACTIVATIONS,
    TFLITE_INT8_WEIGHTS,
    TFLITE_INT8_WEIGHTS_PER_TENSOR,
    QParams,
    QScheme,
    choose_qparams,
    get_scheme,
    qrange,
    symmetric_zero_point,
)
from tests.strategies import bit_widths, float_arrays, quant_settings

# Range ends: moderate values, plus (hypothesis' float generation includes them) zeros and
# tiny subnormals, which exercise the degenerate-range rule.
range_ends = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=32)


@st.composite
def ranges(draw, num_channels=None):
    """(min_val, max_val) with min_val <= max_val: scalars, or 1-D arrays of length C."""
    shape = () if num_channels is None else (num_channels,)
    a = draw(float_arrays(shape, elements=range_ends))
    b = draw(float_arrays(shape, elements=range_ends))
    mn, mx = np.minimum(a, b), np.maximum(a, b)
    if num_channels is None:
        return float(mn), float(mx)
    return mn, mx


def grid_ends(qp: QParams) -> tuple[np.ndarray, np.ndarray]:
    """The smallest and largest representable reals, ``scale * (qmin - zp)`` etc., float64."""
    s = qp.scale.astype(np.float64)
    return s * (qp.qmin - qp.zero_point.astype(np.float64)), s * (qp.qmax - qp.zero_point.astype(np.float64))


# ---------------------------------------------------------------------------------------
# qrange and the storage dtype
# ---------------------------------------------------------------------------------------


def test_qrange_worked_values():
    assert qrange(8) == (-128, 127)
    assert qrange(8, narrow_range=True) == (-127, 127)  # TFLite int8 weights
    assert qrange(8, signed=False) == (0, 255)
    assert qrange(8, signed=False, narrow_range=True) == (1, 255)
    assert qrange(2) == (-2, 1)
    assert qrange(4) == (-8, 7)
    assert qrange(16) == (-32768, 32767)
    assert qrange(16, signed=False) == (0, 65535)


@given(bits=bit_widths, signed=st.booleans(), narrow=st.booleans())
def test_qrange_counts_and_fits_dtype(bits, signed, narrow):
    qmin, qmax = qrange(bits, signed, narrow)
    # 2**bits integers, one fewer with narrow range
    assert qmax - qmin + 1 == 2**bits - int(narrow)
    assert (qmin <= 0 <= qmax) == (signed or not narrow)
    qp = choose_qparams(-1.0, 1.0, bits=bits, signed=signed, narrow_range=narrow)
    info = np.iinfo(qp.dtype)
    assert info.min <= qmin and qmax <= info.max
    assert info.bits == (8 if bits <= 8 else 16)
    assert (info.min < 0) == signed


@pytest.mark.parametrize("bits", [1, 0, 17, 32])
def test_qrange_rejects_bits(bits):
    with pytest.raises(ValueError, match="bits"):
        qrange(bits)


def test_qrange_rejects_non_int_bits_and_non_bool_flags():
    with pytest.raises(TypeError, match="bits"):
        qrange(8.0)
    with pytest.raises(TypeError, match="signed"):
        qrange(8, signed=1)
    with pytest.raises(TypeError, match="narrow_range"):
        qrange(8, narrow_range="yes")


def test_dtype_worked_values():
    def dtype(bits, signed):
        return choose_qparams(-1.0, 1.0, bits=bits, signed=signed).dtype

    assert dtype(4, True) == np.int8  # int4 stored one value per byte
    assert dtype(8, True) == np.int8
    assert dtype(8, False) == np.uint8
    assert dtype(9, True) == np.int16
    assert dtype(16, False) == np.uint16


def test_symmetric_zero_point_worked_values():
    assert symmetric_zero_point(8, True) == 0
    assert symmetric_zero_point(8, False) == 128  # PyTorch quint8 symmetric
    assert symmetric_zero_point(16, False) == 32768
    assert symmetric_zero_point(2, False) == 2


# ---------------------------------------------------------------------------------------
# choose_qparams: laws
# ---------------------------------------------------------------------------------------


@given(r=ranges(), kw=quant_settings())
def test_choose_gives_valid_params_and_exact_zero(r, kw):
    qp = choose_qparams(*r, **kw)
    assert qp.scale.dtype == np.float32 and qp.scale.shape == () and qp.scale > 0
    assert qp.zero_point.dtype == np.int32 and qp.qmin <= qp.zero_point <= qp.qmax
    assert (qp.qmin, qp.qmax) == qrange(kw["bits"], kw["signed"], kw["narrow_range"])
    assert qp.axis is None and not qp.per_channel
    # real 0 is a grid point: quantizes to the zero point and comes back as exactly 0
    q0 = quantize(0.0, qp)
    assert q0 == qp.zero_point
    assert dequantize(q0, qp) == 0.0
    if kw["symmetric"]:
        assert qp.scheme == "symmetric"
        assert qp.zero_point == symmetric_zero_point(kw["bits"], kw["signed"])


@given(r=ranges(), kw=quant_settings(), data=st.data())
def test_choose_covers_the_widened_range(r, kw, data):
    """Every x in [min(mn, 0), max(mx, 0)] lies within half a step of its grid point.

    Tolerance: the stored scale is float32, so the grid's far end can miss the range end
    by the scale's rounding accumulated over qmax - qmin steps, at most
    2**-24 * (qmax - qmin) * scale; the dequantized float32 adds 2**-24 relative.
    """
    mn, mx = min(r[0], 0.0), max(r[1], 0.0)
    qp = choose_qparams(*r, **kw)
    x = data.draw(float_arrays((20,), elements=st.floats(mn, mx)))
    x = np.concatenate([x, [mn, mx, 0.0]])
    err = np.abs(x - fake_quantize(x, qp))
    s = float(qp.scale)
    tol = 2.0**-23 * (qp.qmax - qp.qmin) * s + 2.0**-23 * np.abs(x)
    assert np.all(err <= s / 2 + tol)


@given(r=ranges(), kw=quant_settings())
def test_choose_affine_scale_spreads_range_over_grid(r, kw):
    kw = dict(kw, symmetric=False)
    mn, mx = min(r[0], 0.0), max(r[1], 0.0)
    qp = choose_qparams(*r, **kw)
    width = (mx - mn) / (qp.qmax - qp.qmin)
    if width < np.finfo(np.float32).tiny:
        assert qp.scale == 1.0  # degenerate rule
    else:
        # the float64 quotient rounded once to float32
        assert abs(float(qp.scale) - width) <= 2.0**-24 * width
        # the grid's lower end is mn rounded to a multiple of the scale
        lo, _ = grid_ends(qp)
        assert abs(lo - mn) <= float(qp.scale) / 2 * (1 + 2.0**-20)


@given(r=ranges(), kw=quant_settings())
def test_choose_symmetric_grid_is_symmetric_about_zero(r, kw):
    kw = dict(kw, symmetric=True)
    qp = choose_qparams(*r, **kw)
    amax = max(-r[0], r[1], 0.0)
    lo, hi = grid_ends(qp)
    s = float(qp.scale)
    # both conventions reach max|x| - scale/2 or further on each side (tflite: max|x|;
    # pytorch: max|x| - scale/2 when the grid has an even number of points); 2**-22 covers
    # the float32 rounding of the scale
    assert hi >= amax - s / 2 - 2.0**-22 * amax
    assert -lo >= amax - s / 2 - 2.0**-22 * amax
    # the grid is symmetric, or (even number of points) has one extra step below 0
    assert -lo - hi in (0.0, s)


@given(r=ranges(), kw=quant_settings(), e=st.integers(-20, 20))
def test_choose_is_scale_equivariant(r, kw, e):
    """Multiplying the range by 2**e multiplies the scale by 2**e and keeps the zero point
    (powers of two are exact in floating point), unless the degenerate rule applies."""
    k = 2.0**e
    a = choose_qparams(*r, **kw)
    b = choose_qparams(r[0] * k, r[1] * k, **kw)
    width = max(r[1], 0.0) - min(r[0], 0.0)
    if width * min(k, 1.0) > 1e-30:  # both scales far above float32's smallest normal
        assert float(b.scale) == float(a.scale) * k
        assert b.zero_point == a.zero_point


@given(C=st.integers(1, 6), data=st.data(), kw=quant_settings())
def test_choose_per_channel_equals_per_tensor_channel_by_channel(C, data, kw):
    mn, mx = data.draw(ranges(num_channels=C))
    axis = data.draw(st.integers(-3, 2))
    pc = choose_qparams(mn, mx, axis=axis, **kw)
    assert pc.per_channel and pc.axis == axis and pc.num_channels == C
    for c in range(C):
        pt = choose_qparams(float(mn[c]), float(mx[c]), **kw)
        assert pc.channel(c) == pt
        assert pc.scale[c] == pt.scale and pc.zero_point[c] == pt.zero_point


# ---------------------------------------------------------------------------------------
# choose_qparams: worked examples (arithmetic in the comments)
# ---------------------------------------------------------------------------------------


def test_zero_width_range_gets_scale_one():
    # onnxruntime's rule: scale below float32's smallest normal -> scale 1.0, zero point 0
    for kw, zp in [
        ({}, 0),
        ({"signed": False}, 0),
        ({"signed": False, "narrow_range": True}, 1),  # 0 is not in [1, 255]: clamp(0) = 1
        ({"symmetric": True}, 0),
        ({"symmetric": True, "signed": False}, 128),
    ]:
        qp = choose_qparams(0.0, 0.0, **kw)
        assert qp.scale == 1.0 and qp.zero_point == zp, kw
        assert dequantize(quantize(np.zeros(3), qp), qp).tolist() == [0.0, 0.0, 0.0]


def test_per_channel_worked_example():
    # channels [-1, 1] and [0, 2.54]: TFLite weight scales 1/127 and 2.54/127 = 0.02
    qp = choose_qparams([-1.0, 0.0], [1.0, 2.54], symmetric=True, narrow_range=True, axis=1)
    assert qp.scale.tolist() == [np.float32(1 / 127), np.float32(0.02)]
    assert qp.zero_point.tolist() == [0, 0] and qp.axis == 1


# ---------------------------------------------------------------------------------------
# choose_qparams: bad input
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [1, 17])
def test_choose_rejects_bits_outside_2_16(bits):
    with pytest.raises(ValueError, match="bits"):
        choose_qparams(-1.0, 1.0, bits=bits)


def test_choose_rejects_min_above_max():
    with pytest.raises(ValueError, match="min_val <= max_val"):
        choose_qparams(1.0, -1.0)
    with pytest.raises(ValueError, match="channel 1"):
        choose_qparams([0.0, 2.0], [1.0, 1.0], axis=0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_choose_rejects_non_finite(bad):
    with pytest.raises(ValueError, match="min_val"):
        choose_qparams(bad, 1.0)
    with pytest.raises(ValueError, match="max_val"):
        choose_qparams(-1.0, bad)


def test_choose_rejects_bad_per_channel_shapes_and_axis():
    with pytest.raises(ValueError, match="max_val"):
        choose_qparams([0.0, 0.0], [1.0, 1.0, 1.0], axis=0)
    with pytest.raises(ValueError, match="axis"):
        choose_qparams([0.0, 0.0], [1.0, 1.0])  # per channel needs an axis
    with pytest.raises(ValueError, match="axis"):
        choose_qparams(0.0, 1.0, axis=0)  # per tensor takes none
    with pytest.raises(ValueError, match="min_val"):
        choose_qparams(np.zeros((2, 2)), np.ones((2, 2)), axis=0)
    with pytest.raises(TypeError, match="axis"):
        choose_qparams([0.0], [1.0], axis=1.0)


def test_choose_rejects_unknown_convention_and_wide_range():
    with pytest.raises(ValueError, match="symmetric_convention"):
        choose_qparams(-1.0, 1.0, symmetric=True, symmetric_convention="onnx")
    with pytest.raises(ValueError, match="min_val, max_val"):
        choose_qparams(-1e308, 1e308)  # the width overflows float64
    with pytest.raises(ValueError, match="min_val, max_val"):
        choose_qparams(-1e300, 1e300)  # the scale overflows float32
    with pytest.raises(ValueError, match="min_val, max_val"):
        choose_qparams(-3.4e38, 3.4e38)  # the scale fits, the grid's ends do not
    with pytest.raises(TypeError, match="symmetric"):
        choose_qparams(-1.0, 1.0, symmetric="yes")


# ---------------------------------------------------------------------------------------
# QParams
# ---------------------------------------------------------------------------------------


def make(scale=0.5, zero_point=0, bits=8, signed=True, **kw) -> QParams:
    qmin, qmax = qrange(bits, signed, kw.get("narrow_range", False))
    return QParams(scale=scale, zero_point=zero_point, qmin=qmin, qmax=qmax, bits=bits, signed=signed, **kw)


def test_qparams_stores_float32_int32_read_only_copies():
    scale = np.array([0.5, 0.25])
    zp = np.array([1, -2])
    qp = make(scale=scale, zero_point=zp, axis=0)
    assert qp.scale.dtype == np.float32 and qp.zero_point.dtype == np.int32
    scale[0] = 99.0  # the caller's array is not shared
    assert qp.scale[0] == 0.5
    with pytest.raises(ValueError):
        qp.scale[0] = 1.0
    with pytest.raises(ValueError):
        qp.zero_point[0] = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        qp.bits = 4


@pytest.mark.parametrize("scale", [0.0, -1.0, np.nan, np.inf, 1e-50, 1e50])
def test_qparams_rejects_bad_scale(scale):
    # 1e-50 underflows and 1e50 overflows float32, where the scale is stored
    with pytest.raises(ValueError, match="scale"):
        make(scale=scale)


def test_qparams_rejects_grid_overflowing_float32():
    # 1e37 * (-128) = -1.28e39 > float32 max 3.4e38
    with pytest.raises(ValueError, match="scale"):
        make(scale=1e37)


@pytest.mark.parametrize("zp", [128, -129])
def test_qparams_rejects_zero_point_out_of_range(zp):
    with pytest.raises(ValueError, match="zero_point"):
        make(zero_point=zp)


def test_qparams_rejects_inconsistent_fields():
    with pytest.raises(TypeError, match="zero_point"):
        make(zero_point=0.0)
    with pytest.raises(ValueError, match="zero_point"):
        make(scale=[0.5, 0.5], zero_point=[0, 0, 0], axis=0)
    with pytest.raises(ValueError, match="qmin, qmax"):
        QParams(scale=0.5, zero_point=0, qmin=-127, qmax=127, bits=8, signed=True)
    with pytest.raises(ValueError, match="qmin < qmax"):
        QParams(scale=0.5, zero_point=0, qmin=5, qmax=5, bits=8, signed=True)
    with pytest.raises(ValueError, match="zero_point"):
        make(zero_point=3, scheme="symmetric")
    with pytest.raises(ValueError, match="scheme"):
        make(scheme="asymmetric")
    with pytest.raises(ValueError, match="axis"):
        make(scale=[0.5, 0.5], zero_point=[0, 0])  # per channel without an axis
    with pytest.raises(ValueError, match="axis"):
        make(axis=0)  # per tensor with an axis
    with pytest.raises(ValueError, match="bits"):
        make(bits=20)


def test_broadcast_shape_along_axis():
    qp = make(scale=[0.5, 0.25, 1.0], zero_point=[0, 1, 2], axis=-1)
    assert qp.broadcast_shape((4, 3)) == (1, 3)
    assert qp.broadcast_shape((3,)) == (3,)
    assert qp.broadcast_shape((2, 5, 3)) == (1, 1, 3)
    qp1 = dataclasses.replace(qp, axis=0)
    assert qp1.broadcast_shape((3, 7)) == (3, 1)
    scale, zp = qp1.params_for((3, 7))
    assert scale.shape == (3, 1) and zp.shape == (3, 1)
    assert make().broadcast_shape((4, 3)) == ()
    with pytest.raises(ValueError, match="axis"):
        qp.broadcast_shape((3, 4))  # 4 channels along axis -1, expected 3
    with pytest.raises(ValueError, match="axis"):
        dataclasses.replace(qp, axis=2).broadcast_shape((4, 3))  # out of range
    with pytest.raises(ValueError, match="axis"):
        qp.broadcast_shape(())


def test_qparams_equality_hash_and_repr():
    a = choose_qparams(-1.0, 3.0)
    b = choose_qparams(-1.0, 3.0)
    c = choose_qparams(-1.0, 3.5)
    assert a == b and hash(a) == hash(b)
    assert a != c
    assert a != dataclasses.replace(a, zero_point=-63)
    r = repr(a)
    assert "int8" in r and "affine" in r and "per-tensor" in r and "zero_point=-64" in r
    pc = TFLITE_INT8_WEIGHTS.for_tensor(np.arange(12.0).reshape(3, 4))
    r = repr(pc)
    assert "per-channel" in r and "C=4" in r and "narrow range" in r


def test_channel_extracts_per_tensor_params():
    qp = make(scale=[0.5, 0.25], zero_point=[3, -4], axis=0)
    assert qp.channel(1) == make(scale=0.25, zero_point=-4)
    with pytest.raises(ValueError, match="c"):
        qp.channel(2)
    with pytest.raises(ValueError, match="per-channel"):
        make().channel(0)


# ---------------------------------------------------------------------------------------
# QScheme and presets
# ---------------------------------------------------------------------------------------


def test_presets_match_tflite_spec():
    w = TFLITE_INT8_WEIGHTS
    assert (w.bits, w.signed, w.symmetric, w.narrow_range, w.per_channel, w.channel_axis) == (
        8, True, True, True, True, -1
    )
    assert w.symmetric_convention == "tflite"
    assert TFLITE_INT8_WEIGHTS_PER_TENSOR == dataclasses.replace(w, per_channel=False)
    a = TFLITE_INT8_ACTIVATIONS
    assert (a.bits, a.signed, a.symmetric, a.narrow_range, a.per_channel) == (8, True, False, False, False)
    for name, scheme in SCHEMES.items():
        assert get_scheme(name) is scheme
    assert get_scheme(w) is w


def test_get_scheme_rejects_unknown():
    with pytest.raises(ValueError, match="tflite_int8_activations"):
        get_scheme("int8")
    with pytest.raises(TypeError, match="scheme"):
        get_scheme(8)


@given(w=float_arrays(st.tuples(st.integers(1, 6), st.integers(1, 6))))
def test_weight_preset_for_tensor(w):
    qp = TFLITE_INT8_WEIGHTS.for_tensor(w)
    assert qp.axis == -1 and qp.num_channels == w.shape[1]
    assert np.all(qp.zero_point == 0) and (qp.qmin, qp.qmax) == (-127, 127)
    amax = np.abs(w).max(axis=0)
    for c in range(w.shape[1]):
        expected = np.float32(amax[c] / 127) if amax[c] / 127 >= np.finfo(np.float32).tiny else 1.0
        assert qp.scale[c] == expected
    q = quantize(w, qp)
    assert q.min() >= -127  # narrow range: -128 never appears
    # the per-tensor preset uses the largest |w| of the whole matrix
    pt = TFLITE_INT8_WEIGHTS_PER_TENSOR.for_tensor(w)
    big = np.abs(w).max() / 127
    assert pt.axis is None and pt.scale == (np.float32(big) if big >= np.finfo(np.float32).tiny else 1.0)


@given(x=float_arrays(st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5))), kw=quant_settings(), axis=st.integers(-3, 2))
def test_scheme_for_tensor_per_channel_reduces_other_axes(x, kw, axis):
    scheme = QScheme(per_channel=True, channel_axis=axis, **kw)
    qp = scheme.for_tensor(x)
    others = tuple(i for i in range(3) if i != axis % 3)
    assert qp == choose_qparams(x.min(axis=others), x.max(axis=others), axis=axis, **kw)
    assert QScheme(**kw).for_tensor(x) == choose_qparams(x.min(), x.max(), **kw)
    assert scheme.with_bits(4).bits == 4 and scheme.with_bits(4).channel_axis == axis


def test_scheme_rejects_bad_fields():
    with pytest.raises(ValueError, match="bits"):
        QScheme(bits=1)
    with pytest.raises(ValueError, match="symmetric_convention"):
        QScheme(symmetric_convention="keras")
    with pytest.raises(TypeError, match="per_channel"):
        QScheme(per_channel=1)
    with pytest.raises(ValueError, match="channel_axis"):
        TFLITE_INT8_WEIGHTS.for_tensor(np.float64(1.0))  # a 0-d tensor has no channel axis
    with pytest.raises(ValueError, match="channel_axis"):
        dataclasses.replace(TFLITE_INT8_WEIGHTS, channel_axis=2).for_tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match="bits"):
        TFLITE_INT8_WEIGHTS.with_bits(40)
