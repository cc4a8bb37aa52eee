"""Tests of nnref.quant.ops: rounding, quantize, dequantize, fake quantization and its STE."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnref.quant.ops import (
    FakeQuantize,
    dequantize,
    fake_quantize,
    fake_quantize_backward,
    fake_quantize_with_mask,
    quantize,
    round_half_away,
    round_half_even,
)
from nnref.quant.qparams import QParams, choose_qparams, qrange, symmetric_zero_point
from tests.strategies import float_arrays, quant_settings, rounding_modes

# float32-representable elements, so the same values can be drawn as float32 or float64
elements = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, width=32)


@st.composite
def x_and_qparams(draw, per_channel=None, from_data=None, symmetric=None):
    """An array ``x`` (1-3 dims, float32 or float64) and QParams for it: per tensor or per
    channel along a random axis; the range either x's own (per channel where needed) or an
    unrelated random one (so that values saturate)."""
    kw = draw(quant_settings())
    if symmetric is not None:
        kw["symmetric"] = symmetric
    shape = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    x = draw(float_arrays(shape, elements=elements, dtype=dtype))
    pc = draw(st.booleans()) if per_channel is None else per_channel
    axis = draw(st.integers(-len(shape), len(shape) - 1)) if pc else None
    if draw(st.booleans()) if from_data is None else from_data:
        if pc:
            others = tuple(i for i in range(x.ndim) if i != axis % x.ndim)
            mn, mx = x.min(axis=others), x.max(axis=others)
        else:
            mn, mx = x.min(), x.max()
    else:
        rshape = (shape[axis],) if pc else ()
        a = draw(float_arrays(rshape, elements=elements))
        b = draw(float_arrays(rshape, elements=elements))
        mn, mx = np.minimum(a, b), np.maximum(a, b)
    return x, choose_qparams(mn, mx, axis=axis, **kw)


def bcast(qp: QParams, shape) -> tuple[np.ndarray, np.ndarray]:
    """scale (float64) and zero point (int64) broadcast to ``shape``."""
    s, z = qp.params_for(shape)
    return np.broadcast_to(s.astype(np.float64), shape), np.broadcast_to(z.astype(np.int64), shape)


# ---------------------------------------------------------------------------------------
# Rounding
# ---------------------------------------------------------------------------------------


def test_rounding_worked_values():
    x = np.array([2.5, -2.5, 0.5, -0.5, 1.5, -1.5, 0.4, -0.6])
    # half to even: ties go to the even neighbour (numpy, ONNX, PyTorch)
    assert round_half_even(x).tolist() == [2.0, -2.0, 0.0, -0.0, 2.0, -2.0, 0.0, -1.0]
    # half away from zero: ties grow in magnitude (std::round, TensorFlow Lite)
    assert round_half_away(x).tolist() == [3.0, -3.0, 1.0, -1.0, 2.0, -2.0, 0.0, -1.0]


def test_round_half_away_is_exact_below_one_half():
    # the largest double below 0.5: floor(x + 0.5) would give 1.0 (x + 0.5 rounds up to 1)
    x = np.nextafter(0.5, 0.0)
    assert round_half_away(x) == 0.0 and round_half_away(-x) == 0.0
    assert round_half_away(np.float32(np.nextafter(np.float32(0.5), np.float32(0)))) == 0.0


def test_rounding_keeps_float_dtype_and_passes_non_finite():
    assert round_half_away(np.float32([2.5])).dtype == np.float32
    assert round_half_even(np.float32([2.5])).dtype == np.float32
    assert round_half_away([1, 2]).dtype == np.float64
    out = round_half_away([np.inf, -np.inf, np.nan])
    assert out[0] == np.inf and out[1] == -np.inf and np.isnan(out[2])


@given(x=float_arrays(st.integers(1, 30), elements=st.floats(-1e6, 1e6)))
def test_rounding_laws(x):
    for rnd in (round_half_even, round_half_away):
        r = rnd(x)
        assert np.all(r == np.floor(r))  # integer valued
        assert np.all(np.abs(x - r) <= 0.5)  # nearest (exact: x - r is exact here)
        assert np.array_equal(rnd(-x), -r)  # odd function
        assert np.array_equal(rnd(r), r)  # integers are fixed points
    ties = np.abs(x - np.floor(x)) == 0.5
    e, a = round_half_even(x), round_half_away(x)
    assert np.array_equal(e[~ties], a[~ties])  # the modes differ only at ties
    assert np.all(e[ties] % 2 == 0)
    assert np.all(np.abs(a[ties]) == np.abs(x[ties]) + 0.5)


@given(k=st.integers(-1000, 1000))
def test_rounding_at_exact_ties(k):
    x = np.array([k + 0.5])
    assert round_half_away(x)[0] == (k + 1 if k >= 0 else k)
    assert round_half_even(x)[0] == (k if k % 2 == 0 else k + 1)


# ---------------------------------------------------------------------------------------
# quantize / dequantize laws
# ---------------------------------------------------------------------------------------


@given(xq=x_and_qparams(), rounding=rounding_modes)
def test_quantize_returns_storage_dtype_in_range(xq, rounding):
    x, qp = xq
    q = quantize(x, qp, rounding)
    assert q.dtype == qp.dtype and q.shape == x.shape
    assert q.min() >= qp.qmin and q.max() <= qp.qmax
    out = dequantize(q, qp)
    assert out.dtype == np.float32 and out.shape == x.shape


@given(xq=x_and_qparams(), rounding=rounding_modes)
def test_zero_is_exactly_representable(xq, rounding):
    x, qp = xq
    q = quantize(np.zeros_like(x), qp, rounding)
    _, z = bcast(qp, x.shape)
    assert np.array_equal(q, z)
    assert np.all(dequantize(q, qp) == 0.0)


@given(xq=x_and_qparams(), rounding=rounding_modes)
def test_error_at_most_half_a_step_inside_the_grid(xq, rounding):
    """Where x is not clamped, |x - dequantize(quantize(x))| <= scale / 2.

    Tolerance: dequantize rounds to float32 (2**-24 relative to the result) and, for
    float64 x, x / scale is a float64 quotient (2**-53 relative); 2**-23 and 2**-50 are
    these bounds with room for the final float64 subtraction.
    """
    x, qp = xq
    out, mask = fake_quantize_with_mask(x, qp, rounding)
    s, _ = bcast(qp, x.shape)
    x64, out64 = x.astype(np.float64), out.astype(np.float64)
    bound = s / 2 + 2.0**-23 * np.abs(out64) + 2.0**-50 * np.abs(x64)
    assert np.all(np.abs(x64 - out64)[mask] <= bound[mask])
    # where x was clamped, the grid end is at least half a step away
    assert np.all(np.abs(x64 - out64)[~mask] >= (s / 2 - 2.0**-23 * np.abs(out64) - 2.0**-50 * np.abs(x64))[~mask])


@given(xq=x_and_qparams(from_data=True), rounding=rounding_modes)
def test_data_range_gives_error_at_most_half_a_step(xq, rounding):
    """With parameters chosen from x's own range, every x is within half a step (plus the
    float32 scale's rounding accumulated over the grid, see test_quant_qparams)."""
    x, qp = xq
    s, _ = bcast(qp, x.shape)
    err = np.abs(x.astype(np.float64) - fake_quantize(x, qp, rounding))
    tol = 2.0**-23 * (qp.qmax - qp.qmin) * s + 2.0**-23 * np.abs(x)
    assert np.all(err <= s / 2 + tol)


@given(xq=x_and_qparams(), rounding=rounding_modes)
def test_quantize_inverts_dequantize_on_every_grid_point(xq, rounding):
    """quantize(dequantize(q)) == q for every q in [qmin, qmax]: the float32 rounding of
    scale * (q - zp) moves it by at most 2**-24 * 2**17 steps, far below half a step."""
    x, qp = xq
    q = np.arange(qp.qmin, qp.qmax + 1, dtype=np.int64).astype(qp.dtype)
    if qp.per_channel:
        for c in range(qp.num_channels):
            one = qp.channel(c)
            assert np.array_equal(quantize(dequantize(q, one), one, rounding), q)
    else:
        assert np.array_equal(quantize(dequantize(q, qp), qp, rounding), q)


@given(xq=x_and_qparams(per_channel=True), rounding=rounding_modes)
def test_per_channel_round_trip_on_broadcast_grid(xq, rounding):
    # the whole grid of every channel at once, broadcast along the channel axis
    x, qp = xq
    C = qp.num_channels
    q = np.arange(qp.qmin, qp.qmax + 1, dtype=np.int64)
    q = np.broadcast_to(q[:, None], (q.size, C)).astype(qp.dtype)
    qp2 = QParams(scale=qp.scale, zero_point=qp.zero_point, qmin=qp.qmin, qmax=qp.qmax,
                  bits=qp.bits, signed=qp.signed, axis=1, scheme=qp.scheme, narrow_range=qp.narrow_range)
    assert np.array_equal(quantize(dequantize(q, qp2), qp2, rounding), q)


@given(xq=x_and_qparams(per_channel=False), rounding=rounding_modes)
def test_quantize_is_monotone(xq, rounding):
    x, qp = xq
    xs = np.sort(x.ravel())
    assert np.all(np.diff(quantize(xs, qp, rounding).astype(np.int64)) >= 0)


@given(xq=x_and_qparams(per_channel=True), rounding=rounding_modes)
def test_quantize_is_monotone_per_channel(xq, rounding):
    x, qp = xq
    axis = qp.axis % x.ndim
    other = 0 if axis != 0 else (1 if x.ndim > 1 else None)
    if other is None:
        return  # a 1-D tensor with one value per channel has nothing to sort
    xs = np.sort(x, axis=other)
    assert np.all(np.diff(quantize(xs, qp, rounding).astype(np.int64), axis=other) >= 0)


@given(xq=x_and_qparams(symmetric=True), rounding=rounding_modes)
def test_symmetric_quantize_is_odd(xq, rounding):
    """Symmetric: zero point z0, and quantize(-x) - z0 == -(quantize(x) - z0) away from the
    clamp (both roundings are odd functions and x / scale negates exactly)."""
    x, qp = xq
    z0 = symmetric_zero_point(qp.bits, qp.signed)
    assert np.all(qp.zero_point == z0)
    s, _ = bcast(qp, x.shape)
    inside = np.abs(x / s) <= min(qp.qmax - z0, z0 - qp.qmin)
    qx = quantize(x, qp, rounding).astype(np.int64) - z0
    qn = quantize(-x, qp, rounding).astype(np.int64) - z0
    assert np.array_equal(qn[inside], -qx[inside])


@given(k=st.integers(-60, 59), e=st.integers(-10, 10), signed=st.booleans(), rounding=rounding_modes)
def test_symmetric_quantize_is_odd_at_exact_ties(k, e, signed, rounding):
    # a power-of-two scale makes x = (k + 1/2) * scale an exact tie
    z0 = symmetric_zero_point(8, signed)
    qmin, qmax = qrange(8, signed)
    qp = QParams(scale=2.0**e, zero_point=z0, qmin=qmin, qmax=qmax, bits=8, signed=signed, scheme="symmetric")
    x = np.array([(k + 0.5) * 2.0**e])
    q, qn = int(quantize(x, qp, rounding)[0]) - z0, int(quantize(-x, qp, rounding)[0]) - z0
    assert qn == -q
    if rounding == "half_even":
        assert q % 2 == 0
    else:
        assert q == (k + 1 if k >= 0 else k)


@given(xq=x_and_qparams(per_channel=True), rounding=rounding_modes)
def test_per_channel_equals_per_tensor_channel_by_channel(xq, rounding):
    x, qp = xq
    q = quantize(x, qp, rounding)
    out, mask = fake_quantize_with_mask(x, qp, rounding)
    deq = dequantize(q, qp)
    for c in range(qp.num_channels):
        one = qp.channel(c)
        xc = np.take(x, c, axis=qp.axis)
        assert np.array_equal(np.take(q, c, axis=qp.axis), quantize(xc, one, rounding))
        assert np.array_equal(np.take(deq, c, axis=qp.axis), dequantize(quantize(xc, one, rounding), one))
        out_c, mask_c = fake_quantize_with_mask(xc, one, rounding)
        assert np.array_equal(np.take(out, c, axis=qp.axis), out_c)
        assert np.array_equal(np.take(mask, c, axis=qp.axis), mask_c)


@given(xq=x_and_qparams(), rounding=rounding_modes)
def test_fake_quantize_equals_dequantize_of_quantize(xq, rounding):
    x, qp = xq
    out = fake_quantize(x, qp, rounding)
    assert out.dtype == x.dtype
    assert np.array_equal(out, dequantize(quantize(x, qp, rounding), qp))


@given(xq=x_and_qparams(), rounding=rounding_modes, data=st.data())
def test_ste_gradient_is_mask_times_upstream(xq, rounding, data):
    x, qp = xq
    g = data.draw(float_arrays(x.shape))
    out, mask = fake_quantize_with_mask(x, qp, rounding)
    assert mask.dtype == np.bool_ and mask.shape == x.shape
    grad = fake_quantize_backward(g, mask)
    assert grad.shape == g.shape and grad.dtype == g.dtype
    assert np.array_equal(grad[mask], g[mask])
    assert np.all(grad[~mask] == 0)
    # clamped entries are exactly those quantized to an end of the grid from beyond it
    q = quantize(x, qp, rounding)
    assert np.all((q[~mask] == qp.qmin) | (q[~mask] == qp.qmax))
    # the layer does the same
    layer = FakeQuantize(qp, rounding)
    assert np.array_equal(layer.forward(x), out)
    assert np.array_equal(layer.backward(g), grad)


# ---------------------------------------------------------------------------------------
# Worked examples
# ---------------------------------------------------------------------------------------


def int8(scale, zero_point=0, **kw) -> QParams:
    return QParams(scale=scale, zero_point=zero_point, qmin=-128, qmax=127, bits=8, signed=True, **kw)


def test_per_channel_worked_example():
    # weight (in=2, out=2), per output channel: scales 0.5 and 0.25, zero point 0
    qp = choose_qparams([-1.0, 0.0], [63.5, 31.75], symmetric=True, narrow_range=True, axis=-1)
    assert qp.scale.tolist() == [0.5, 0.25]  # 63.5 / 127, 31.75 / 127
    w = np.array([[1.0, 1.0], [-0.75, 0.3]])
    # column 0: 1 / 0.5 = 2, -0.75 / 0.5 = -1.5 -> -2;  column 1: 1 / 0.25 = 4, 0.3 / 0.25 = 1.2 -> 1
    assert quantize(w, qp).tolist() == [[2, 4], [-2, 1]]
    assert fake_quantize(w, qp).tolist() == [[1.0, 1.0], [-1.0, 0.25]]


def test_scalar_and_empty_inputs():
    qp = int8(0.5, zero_point=1)
    q = quantize(1.0, qp)
    assert q.shape == () and q.dtype == np.int8 and q == 3
    assert dequantize(q, qp).shape == ()
    assert quantize(np.zeros((0, 3)), qp).shape == (0, 3)
    assert fake_quantize(np.float32(0.74), qp).dtype == np.float32


def _exact_round(f: Fraction, rounding: str) -> int:
    """Round an exact rational: Python's round() on a Fraction is half to even."""
    if rounding == "half_even":
        return round(f)
    a = abs(f)
    r = int(a) + (1 if a - int(a) >= Fraction(1, 2) else 0)
    return r if f >= 0 else -r


# ---------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_quantize_rejects_non_finite(bad):
    qp = int8(0.5)
    for f in (quantize, fake_quantize, fake_quantize_with_mask):
        with pytest.raises(ValueError, match="x"):
            f(np.array([0.0, bad]), qp)


def test_bad_arguments():
    qp = int8(0.5)
    with pytest.raises(ValueError, match="rounding"):
        quantize([1.0], qp, rounding="nearest")
    with pytest.raises(TypeError, match="qparams"):
        quantize([1.0], 0.5)
    with pytest.raises(TypeError, match="x"):
        quantize(["a"], qp)
    with pytest.raises(TypeError, match="q"):
        dequantize(np.array([1.0]), qp)  # floats are not quantized values
    with pytest.raises(ValueError, match="q"):
        dequantize(np.array([200], dtype=np.int16), qp)  # outside [-128, 127]
    unsigned = choose_qparams(0.0, 1.0, signed=False, narrow_range=True)
    with pytest.raises(ValueError, match="q"):
        dequantize(np.array([0], dtype=np.uint8), unsigned)  # narrow range starts at 1


def test_per_channel_axis_mismatch():
    qp = choose_qparams([0.0, 0.0, 0.0], [1.0, 2.0, 3.0], axis=1)
    with pytest.raises(ValueError, match="axis"):
        quantize(np.zeros((3, 4)), qp)  # 4 channels along axis 1, expected 3
    with pytest.raises(ValueError, match="axis"):
        quantize(np.zeros(3), qp)  # axis 1 does not exist
    with pytest.raises(ValueError, match="axis"):
        dequantize(np.zeros((2, 2), dtype=np.int8), qp)


def test_backward_bad_input():
    with pytest.raises(TypeError, match="mask"):
        fake_quantize_backward(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="mask"):
        fake_quantize_backward(np.ones(3), np.ones(2, dtype=bool))
    layer = FakeQuantize(int8(0.5))
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(np.ones(3))
    layer.forward(np.ones(3))
    with pytest.raises(ValueError, match="grad_out"):
        layer.backward(np.ones(4))
    with pytest.raises(TypeError, match="qparams"):
        FakeQuantize(0.5)
    with pytest.raises(ValueError, match="rounding"):
        FakeQuantize(int8(0.5), rounding="up")
