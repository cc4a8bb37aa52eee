"""Binary and ternary weights: XNOR-Net scaling, the STE gradient, the XNOR-popcount kernel."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnref.data import load_digits, train_test_split
from nnref.mlp import MLP
from nnref.optim import Adam
from nnref.quant.binary import (
    POPCOUNT_TABLE,
    BinaryLinear,
    SignActivation,
    binarize_mlp,
    binary_layer_forward,
    binary_size_bytes,
    binary_weight_grad,
    binary_weights,
    pack_signs,
    popcount_bytes,
    ternary_weights,
    xnor_dot,
    xnor_matmul,
)
from nnref.quant.qat import QATLinear
from nnref.train import fit
from tests.strategies import float_arrays, seeds, sign_matrices, unit_floats

# --------------------------------------------------------------------------- XNOR-popcount


@given(sign_matrices())
def test_xnor_popcount_equals_the_integer_sign_dot_product(aw):
    a, w = aw
    n = a.shape[1]
    got = xnor_matmul(pack_signs(a), pack_signs(w.T), n)
    assert got.dtype == np.int32
    assert np.array_equal(got, a.astype(np.int64) @ w.astype(np.int64))
    assert xnor_dot(pack_signs(a[0]), pack_signs(w[:, 0]), n) == int(a[0].astype(np.int64) @ w[:, 0])


def test_popcount_table_is_numpys_bitwise_count():
    b = np.arange(256, dtype=np.uint8)
    assert np.array_equal(popcount_bytes(b), np.bitwise_count(b))
    assert POPCOUNT_TABLE[255] == 8 and POPCOUNT_TABLE[0b1011] == 3


def test_pack_signs_layout_and_errors():
    assert pack_signs(np.array([1, -1, -1, -1, -1, -1, -1, -1, 1])).tolist() == [0b10000000, 0b10000000]
    with pytest.raises(ValueError, match="-1, \\+1"):
        pack_signs(np.array([1, 0, -1]))
    with pytest.raises(TypeError, match="integer"):
        pack_signs(np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="bytes per row"):
        xnor_matmul(np.zeros((2, 2), np.uint8), np.zeros((3, 1), np.uint8), 9)


# --------------------------------------------------------------------------- binary and ternary weights


@given(float_arrays((7, 3), unit_floats), st.floats(-2, 2))
def test_alpha_mean_abs_is_the_least_squares_scale(W, other):
    B, alpha = binary_weights(W)
    assert set(np.unique(B)) <= {-1, 1}
    assert np.all(B[W == 0] == 1)  # sign(0) = +1
    best = np.sum((W - B * alpha) ** 2, axis=0)
    assert np.all(best <= np.sum((W - B * other) ** 2, axis=0) + 1e-12)


def test_ternary_worked_example():
    W = np.array([[0.9, -0.1], [-0.5, 0.2], [0.05, -0.6], [0.0, 0.1]])
    T, alpha = ternary_weights(W)
    # column 0: mean|W| = 0.3625, Delta = 0.25375: keeps 0.9 and -0.5; column 1: Delta = 0.175
    assert T.tolist() == [[1, 0], [-1, 1], [0, -1], [0, 0]]
    assert np.allclose(alpha, [0.7, 0.4])


@given(float_arrays((5, 3), st.floats(1.05, 3.0)), float_arrays((5, 3), unit_floats), seeds)
def test_binary_gradient_of_the_scale_matches_finite_differences(mag, g, seed):
    # With every |W| > 1 the STE gate is closed: what is left is the exact gradient of
    # sum(g * alpha(W) * B) with B = sign(W) locally constant.
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=mag.shape)
    W = mag * signs
    B, alpha = binary_weights(W)
    grad = binary_weight_grad(W, g, B, alpha)

    def f(w):
        b2, a2 = binary_weights(w)
        return np.sum(g * a2 * b2)

    eps = 1e-6
    for idx in np.ndindex(W.shape):
        d = np.zeros_like(W)
        d[idx] = eps
        assert abs((f(W + d) - f(W - d)) / (2 * eps) - grad[idx]) < 1e-6


def test_binary_gradient_worked_example():
    W = np.array([[0.5], [-2.0]])
    g = np.array([[1.0], [1.0]])
    B, alpha = binary_weights(W)  # B = [1, -1], alpha = 1.25
    # dW = g * alpha * [|W| <= 1] + B / n * sum(g * B) = [1.25, 0] + [1, -1] / 2 * 0
    assert np.allclose(binary_weight_grad(W, g, B, alpha), [[1.25], [0.0]])


# --------------------------------------------------------------------------- layers and models


def test_binary_linear_forward_and_the_xnor_path_agree():
    rng = np.random.default_rng(0)
    layer = BinaryLinear(19, 5, seed=0)
    layer.b[...] = rng.standard_normal(5)
    x = np.where(rng.standard_normal((4, 19)) >= 0, 1.0, -1.0).astype(np.float32)
    B, alpha = binary_weights(layer.W)
    want = x @ (B * alpha).astype(np.float32) + layer.b
    assert np.allclose(layer.forward(x), want, rtol=1e-6, atol=1e-6)
    assert np.allclose(binary_layer_forward(x.astype(np.int8), layer), want, rtol=1e-6, atol=1e-6)
    sign = SignActivation()
    assert sign.forward(np.array([[-0.5, 0.0, 2.0]])).tolist() == [[-1, 1, 1]]
    assert sign.backward(np.ones((1, 3))).tolist() == [[1, 1, 0]]


def test_binarize_mlp_structure_size_and_errors():
    model = MLP([8, 16, 16, 4], seed=0)
    b = binarize_mlp(model, binary_activations=True)
    kinds = [type(layer).__name__ for layer in b.layers]
    assert kinds == ["QATLinear", "SignActivation", "BinaryLinear", "ReLU", "QATLinear"]
    assert binary_size_bytes(b) == (8 * 16 + 4 * 16 + 4 * 16) + (16 * 16 // 8 + 8 * 16) + (16 * 4 + 8 * 4)
    with pytest.raises(ValueError, match="at least 3"):
        binarize_mlp(MLP([8, 4]))
    assert isinstance(binarize_mlp(model, "ternary", first_last_bits=None).layers[0], type(model.layers[0]))


def test_binary_hidden_layer_trains_with_the_ste():
    x, y = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, seed=0)
    model = MLP([64, 64, 64, 10], seed=0)
    fit(model, Adam(3e-3), x_tr, y_tr, epochs=8, batch_size=32, verbose=False)
    b = binarize_mlp(model)
    before = b.accuracy(x_te, y_te)
    fit(b, Adam(1e-3), x_tr, y_tr, epochs=3, batch_size=32, verbose=False)
    assert isinstance(b.linears[0], QATLinear) and isinstance(b.linears[1], BinaryLinear)
    assert b.accuracy(x_te, y_te) > max(0.85, before - 0.01)
    W_eff = b.linears[1].quantized()
    assert all(len(np.unique(np.abs(col))) == 1 for col in (W_eff[0] * W_eff[1]).T)  # +-alpha_j per column
