"""qlinear_matmul with ONNX MatMul batching (numpy matmul broadcasting) and (1,)-shaped
scales and zero points (issue 11, item 2), against a Python-integer reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnref.quant.kernels import qlinear_matmul
from strategies import seeds


def ref_qlinear_2d(a, sa, za, b, sb, zb, sy, zy, dtype):
    """onnxruntime's QLinearMatMul on one (M, K) x (K, N) pair, element by element: Python
    integer accumulator, np.float32 multiplier and product, round half to even, + zy."""
    info = np.iinfo(dtype)
    out = np.zeros((a.shape[0], b.shape[1]), dtype)
    mult = np.float32(np.float32(sa) * np.float32(sb)) / np.float32(sy)
    for i in range(a.shape[0]):
        for j in range(b.shape[1]):
            acc = sum((int(a[i, k]) - za) * (int(b[k, j]) - zb) for k in range(a.shape[1]))
            value = np.float32(acc) * mult
            out[i, j] = min(max(round(float(value)) + zy, info.min), info.max)
    return out


def ref_qlinear(a, sa, za, b, sb, zb, sy, zy, dtype):
    """numpy.matmul's batching rules applied to :func:`ref_qlinear_2d`."""
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    a_b = np.broadcast_to(a2, batch + a2.shape[-2:])
    b_b = np.broadcast_to(b2, batch + b2.shape[-2:])
    out = np.zeros(batch + (a2.shape[-2], b2.shape[-1]), dtype)
    for idx in np.ndindex(*batch):
        out[idx] = ref_qlinear_2d(a_b[idx], sa, za, b_b[idx], sb, zb, sy, zy, dtype)
    if a.ndim == 1:
        out = out[..., 0, :]
    return out[..., 0] if b.ndim == 1 else out


batch_shapes = st.sampled_from([((), ()), ((2,), ()), ((), (3,)), ((2, 1), (3,)), ((1, 2), (2, 1)), ((2,), (2,))])


@given(seeds, batch_shapes, st.booleans(), st.sampled_from([np.int8, np.uint8]))
def test_nd_inputs_follow_numpy_matmul_batching(seed, batches, shaped_one, dtype):
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    m, k, n = (int(v) for v in rng.integers(1, 4, 3))
    a = rng.integers(info.min, info.max + 1, batches[0] + (m, k)).astype(dtype)
    b = rng.integers(-128, 128, batches[1] + (k, n)).astype(np.int8)
    za, zb, zy = int(rng.integers(info.min, info.max + 1)), int(rng.integers(-128, 128)), int(rng.integers(info.min, info.max + 1))
    sa, sb, sy = (float(np.float32(v)) for v in rng.uniform(0.01, 0.2, 3))

    def wrap(v, kind):  # a scalar, or a (1,) array where ONNX allows one
        return np.array([v], kind) if shaped_one else v

    y = qlinear_matmul(a, wrap(sa, np.float32), wrap(za, dtype), b, wrap(sb, np.float32), wrap(zb, np.int8),
                       wrap(sy, np.float32), np.array([zy], dtype) if shaped_one else dtype(zy))
    expected = ref_qlinear(a, sa, za, b, sb, zb, sy, zy, dtype)
    assert y.dtype == dtype and y.shape == np.matmul(a.astype(int), b.astype(int)).shape
    assert np.array_equal(y, expected)


def test_one_dimensional_operands_drop_their_axis():
    a = np.array([1, 2, 3], np.int8)
    b = np.array([[1, 0], [0, 1], [1, 1]], np.int8)
    y = qlinear_matmul(a, 1.0, 0, b, 1.0, 0, 1.0, np.int8(0))
    assert y.shape == (2,) and y.tolist() == [4, 5]
    assert qlinear_matmul(a, 1.0, 0, a, 1.0, 0, 1.0, np.int8(0)).shape == ()  # 1 + 4 + 9 = 14
    assert int(qlinear_matmul(a, 1.0, 0, a, 1.0, 0, 1.0, np.int8(0))) == 14
    batched = qlinear_matmul(np.stack([b.T, 2 * b.T]), 1.0, 0, a, 1.0, 0, 1.0, np.int8(0))
    assert batched.tolist() == [[4, 5], [8, 10]]


def test_per_row_parameters_apply_along_the_row_axis_of_every_batch():
    a = np.ones((2, 3, 4), np.int8)  # batch 2, M = 3
    b = np.ones((4, 2), np.int8)
    sa = np.array([0.5, 1.0, 2.0], np.float32)  # one per row of a
    y = qlinear_matmul(a, sa, np.zeros(3, np.int8), b, 1.0, 0, 1.0, np.int8(0))
    assert y.tolist() == [[[2, 2], [4, 4], [8, 8]]] * 2


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(a=np.zeros((2, 2, 3), np.int8), b=np.zeros((3, 3, 2), np.int8)), ValueError, "batch axes"),
    (dict(a=np.zeros((), np.int8)), ValueError, "^a:"),
    (dict(b=np.zeros((4,), np.int8)), ValueError, "^b:"),
    (dict(y_zero_point=np.zeros((1, 1), np.int8)), ValueError, "y_zero_point"),
    (dict(y_scale=np.ones(2)), ValueError, "y_scale"),
    (dict(a_scale=np.ones((2, 2))), ValueError, "a_scale"),
    (dict(a_scale=float("nan")), ValueError, "a_scale"),
    (dict(b_zero_point=0.5), TypeError, "b_zero_point"),
])
def test_nd_bad_input_is_refused_by_name(kwargs, error, match):
    args = dict(a=np.zeros((2, 3), np.int8), a_scale=0.1, a_zero_point=0, b=np.zeros((3, 2), np.int8),
                b_scale=0.1, b_zero_point=0, y_scale=0.1, y_zero_point=np.int8(0))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        qlinear_matmul(**args)
