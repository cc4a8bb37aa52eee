"""Binary and ternary weights (XNOR-Net, ternary weight networks) and the XNOR-popcount
kernel.

**Binary weights** (Rastegari et al. 2016, *XNOR-Net*, ECCV, arXiv:1603.05279, section
3.1): each output channel ``j`` (a column of ``W``) is approximated by ``alpha_j * B_j``
with ``B = sign(W)`` in {-1, +1} and ``alpha_j = mean_i |W_ij|``, the scale minimising
``||W_j - alpha_j B_j||^2`` (their eq. 4). **Ternary weights** (Li, Zhang & Liu 2016,
*Ternary Weight Networks*, arXiv:1605.04711, eq. 10-11): ``T = sign(W) * [|W| > Delta]``
with ``Delta_j = 0.7 * mean_i |W_ij|`` and ``alpha_j`` the mean of the kept magnitudes.

Training keeps float *latent* weights and uses the quantized ones in the forward pass;
the backward pass goes straight through the non-differentiable ``sign`` (the
straight-through estimator, Bengio et al. 2013, with XNOR-Net's gate ``1{|W| <= 1}``).
:func:`binarize_mlp` turns an :class:`~nnref.mlp.MLP` into one with binary (or ternary)
hidden layers, the first and last layers kept at 8-bit weights (fake-quantized with
:class:`~nnref.quant.qat.QATLinear`), optionally with binary activations in front of the
binary layers, trainable with :func:`nnref.train.fit` unchanged.

With both operands in {-1, +1}, a dot product is a bit operation: pack ``+1`` as bit 1 and
``-1`` as bit 0; two entries agree iff their bits are equal, so ``a . b = (#agree) -
(#disagree) = n - 2 popcount(a XOR b)``: :func:`xnor_matmul`.
"""

from __future__ import annotations

import numpy as np

from nnref._checks import as_int_array, check_int_in_range, describe
from nnref.layers import Layer, Linear
from nnref.mlp import MLP
from nnref.quant.qat import QATLinear

__all__ = [
    "binary_weights",
    "ternary_weights",
    "binary_weight_grad",
    "BinaryLinear",
    "SignActivation",
    "binarize_mlp",
    "pack_signs",
    "POPCOUNT_TABLE",
    "popcount_bytes",
    "xnor_dot",
    "xnor_matmul",
    "binary_layer_forward",
    "binary_size_bytes",
]

#: Number of set bits of every byte value 0..255.
POPCOUNT_TABLE = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


# --------------------------------------------------------------------------- the formulas


def binary_weights(W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """XNOR-Net binary weights of ``W`` (in, out): ``(B int8 (in, out) in {-1, +1}, alpha (out,))``.

    Formula (Rastegari et al. 2016, eq. 4): ``B_ij = +1 if W_ij >= 0 else -1``,
    ``alpha_j = (1 / n) sum_i |W_ij|`` (``n`` = in); ``W ~ B * alpha``.

    Parameters
    ----------
    W : float ndarray (in, out)

    Returns
    -------
    (B, alpha) : int8 (in, out), ``W``'s dtype (out,)
    """
    B = np.where(W >= 0, 1, -1).astype(np.int8)
    return B, np.mean(np.abs(W), axis=0).astype(W.dtype)


def ternary_weights(W: np.ndarray, delta_factor: float = 0.7) -> tuple[np.ndarray, np.ndarray]:
    """Ternary weights of ``W`` (in, out): ``(T int8 (in, out) in {-1, 0, +1}, alpha (out,))``.

    Formula (Li et al. 2016, TWN, eq. 10-11), per column ``j``::

        Delta_j = delta_factor * mean_i |W_ij|          (0.7: their approximation)
        T_ij    = sign(W_ij) if |W_ij| > Delta_j else 0
        alpha_j = mean{|W_ij| : |W_ij| > Delta_j}       (0 for an all-zero column)

    Parameters
    ----------
    W : float ndarray (in, out)
    delta_factor : float, the threshold as a multiple of mean|W|

    Returns
    -------
    (T, alpha) : int8 (in, out), ``W``'s dtype (out,)
    """
    a = np.abs(W)
    keep = a > delta_factor * a.mean(axis=0)
    T = (np.sign(W) * keep).astype(np.int8)
    alpha = np.sum(a * keep, axis=0) / np.maximum(keep.sum(axis=0), 1)
    return T, alpha.astype(W.dtype)


def binary_weight_grad(W: np.ndarray, g: np.ndarray, B: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Gradient of the latent ``W`` through ``W_eff = alpha * sign(W)`` (straight-through).

    With ``d sign(w)/dw`` replaced by ``1{|w| <= 1}`` (XNOR-Net section 3.1; Hubara et al.
    2016) and ``d alpha_j / d W_ij = sign(W_ij) / n``, the chain rule for ``g = dL/dW_eff``::

        dL/dW_ij = g_ij * alpha_j * 1{|W_ij| <= 1} + (B_ij / n) * sum_k g_kj B_kj

    (Rastegari et al. 2016, eq. 7, with the sum over the channel written out). All (in, out)
    except ``alpha`` (out,).

    Parameters
    ----------
    W : float (in, out), latent weights
    g : float (in, out), ``dL/dW_eff``
    B, alpha : :func:`binary_weights` of ``W``

    Returns
    -------
    ndarray (in, out), ``dL/dW``
    """
    n = W.shape[0]
    return g * alpha * (np.abs(W) <= 1) + B * (np.sum(g * B, axis=0) / n)


# --------------------------------------------------------------------------- layers


class BinaryLinear(Linear):
    """Linear layer with binary (XNOR-Net) or ternary (TWN) weights in the forward pass.

    Forward: ``W_eff = alpha * Q(W)`` from the latent float ``W`` (:func:`binary_weights` or
    :func:`ternary_weights`), ``y = x @ W_eff + b``. Backward: ``dx = g @ W_eff^T``,
    ``db = sum_batch g``; ``dW`` = :func:`binary_weight_grad` (binary) or the plain
    straight-through ``x^T g`` (ternary, as TWN trains). Shapes as :class:`Linear`.
    """

    def __init__(self, in_features: int, out_features: int, mode: str = "binary", seed=0, dtype=np.float32):
        super().__init__(in_features, out_features, seed=seed, dtype=dtype)
        if mode not in ("binary", "ternary"):
            raise ValueError(f"mode: expected 'binary' or 'ternary', got {mode!r}")
        self.mode = mode
        self.Q: np.ndarray | None = None
        self.alpha: np.ndarray | None = None

    @classmethod
    def from_linear(cls, linear: Linear, mode: str = "binary") -> "BinaryLinear":
        """A BinaryLinear holding copies of ``linear``'s ``W`` and ``b`` as latent weights."""
        if not isinstance(linear, Linear):
            raise TypeError(f"linear: expected a Linear layer, got {describe(linear)}")
        new = cls(linear.in_features, linear.out_features, mode, dtype=linear.W.dtype)
        new.W, new.b = linear.W.copy(), linear.b.copy()
        return new

    def quantized(self) -> tuple[np.ndarray, np.ndarray]:
        """``(Q, alpha)`` of the current latent weights: int8 (in, out) and (out,)."""
        return binary_weights(self.W) if self.mode == "binary" else ternary_weights(self.W)

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"x: expected an array of shape (batch, {self.in_features}), got {describe(x)}")
        self.Q, self.alpha = self.quantized()
        self._W_eff = (self.Q * self.alpha).astype(self.W.dtype)
        self._x = x.astype(self.W.dtype, copy=False)
        return self._x @ self._W_eff + self.b

    def backward(self, grad_out: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        x = self._x
        g = self._check_grad(grad_out, None if x is None else (x.shape[0], self.out_features))
        g_eff = x.T @ g
        self.dW = binary_weight_grad(self.W, g_eff, self.Q, self.alpha) if self.mode == "binary" else g_eff
        self.db = g.sum(axis=0)
        return g @ self._W_eff.T if input_grad else None

    def __repr__(self) -> str:
        return f"BinaryLinear({self.in_features}, {self.out_features}, mode={self.mode!r})"


class SignActivation(Layer):
    """Binary activation: ``y = +1 if x >= 0 else -1``; backward ``g * 1{|x| <= 1}`` (the
    straight-through estimator of hard tanh; XNOR-Net, Hubara et al. 2016)."""

    def __init__(self):
        self._x = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x
        return np.where(x >= 0, 1, -1).astype(x.dtype)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        g = self._check_grad(grad_out, None if self._x is None else self._x.shape)
        return g * (np.abs(self._x) <= 1)


def binarize_mlp(model: MLP, mode: str = "binary", first_last_bits: int | None = 8,
                 binary_activations: bool = False) -> MLP:
    """A copy of ``model`` whose hidden Linear layers (all but the first and the last) are
    :class:`BinaryLinear` (``mode`` ``"binary"`` or ``"ternary"``).

    ``first_last_bits``: the first and last layers become :class:`~nnref.quant.qat.QATLinear`
    with that many weight bits (per channel; None keeps them float). ``binary_activations``:
    the activation in front of every binary layer becomes :class:`SignActivation`, so each
    binary layer multiplies {-1, +1} by {-1, +1} (the XNOR-popcount case). Needs at least
    three Linear layers. The result trains with :func:`nnref.train.fit`.

    Parameters
    ----------
    model : nnref MLP with at least 3 Linear layers (copied, not modified)
    mode : {"binary", "ternary"}
    first_last_bits : int in 2..8 or None
    binary_activations : bool

    Returns
    -------
    MLP whose ``layers`` hold the replaced layers
    """
    if not isinstance(model, MLP):
        raise TypeError(f"model: expected an nnref MLP, got {describe(model)}")
    if len(model.linears) < 3:
        raise ValueError(f"model: expected at least 3 Linear layers (a hidden one to binarize), got {len(model.linears)}")
    if not isinstance(binary_activations, bool):
        raise TypeError(f"binary_activations: expected a bool, got {describe(binary_activations)}")
    new = model.copy()
    lin_pos = [i for i, layer in enumerate(new.layers) if isinstance(layer, Linear)]
    for i in lin_pos[1:-1]:
        new.layers[i] = BinaryLinear.from_linear(new.layers[i], mode)
        if binary_activations:
            new.layers[i - 1] = SignActivation()
    if first_last_bits is not None:
        bits = check_int_in_range(first_last_bits, "first_last_bits", 2, 8)
        scheme = "tflite_int8_weights"
        for i in (lin_pos[0], lin_pos[-1]):
            q = QATLinear.from_linear(new.layers[i], scheme)
            q.weight_scheme = q.weight_scheme.with_bits(bits)
            new.layers[i] = q
    return new


def binary_size_bytes(model: MLP) -> int:
    """Stored bytes of a :func:`binarize_mlp` model: binary layers 1 bit per weight (ternary
    2 bits) plus a float32 alpha per output, QATLinear layers packed at their bit width with
    a float32 scale per output, other Linear layers float32; every bias float32."""
    if not isinstance(model, MLP):
        raise TypeError(f"model: expected an nnref MLP (from binarize_mlp), got {describe(model)}")
    total = 0
    for lin in model.linears:
        n_w, n_out = lin.W.size, lin.W.shape[1]
        if isinstance(lin, BinaryLinear):
            total += -(-n_w * (1 if lin.mode == "binary" else 2) // 8) + 4 * n_out
        elif isinstance(lin, QATLinear):
            total += -(-n_w * lin.weight_scheme.bits // 8) + 4 * n_out
        else:
            total += 4 * n_w
        total += 4 * n_out
    return total


# --------------------------------------------------------------------------- XNOR-popcount


def pack_signs(x) -> np.ndarray:
    """Pack a {-1, +1} integer array along its last axis, 8 signs per byte: ``+1 -> 1``,
    ``-1 -> 0``, most significant bit first (``numpy.packbits``); the last byte is padded
    with 0 bits. ``(..., n)`` -> uint8 ``(..., ceil(n / 8))``.

    Parameters
    ----------
    x : integer array (n,) or (B, n) of -1 and +1

    Returns
    -------
    uint8 ndarray (ceil(n / 8),) or (B, ceil(n / 8))

    Raises
    ------
    TypeError, ValueError
        For a non-integer array or an entry other than -1, +1.
    """
    x = as_int_array(x, "x", ndim=(1, 2))
    if not np.all((x == 1) | (x == -1)):
        raise ValueError(f"x: expected entries in {{-1, +1}}, got values {np.unique(x)[:8].tolist()}")
    return np.packbits(x > 0, axis=-1)


def popcount_bytes(a: np.ndarray) -> np.ndarray:
    """Set bits of each uint8 entry, by table lookup (``POPCOUNT_TABLE[a]``); equal to
    ``numpy.bitwise_count`` (numpy >= 2.0), which :func:`xnor_matmul` uses."""
    return POPCOUNT_TABLE[a]


def xnor_dot(a_bits: np.ndarray, b_bits: np.ndarray, n: int) -> int:
    """The {-1, +1} dot product of two packed vectors of length ``n``.

    Formula: equal bits are +1 products, different bits -1 products, so
    ``a . b = n - 2 * popcount(a XOR b)``. The padding bits are 0 in both operands, so
    their XOR is 0 and they drop out (XNOR-Net computes ``2 popcount(XNOR) - n``, where
    the padding would have to be subtracted). ``a_bits``, ``b_bits`` uint8 (ceil(n / 8),).

    Parameters
    ----------
    a_bits, b_bits : uint8 (ceil(n / 8),), packed by :func:`pack_signs`
    n : int, the vectors' length

    Returns
    -------
    int in [-n, n]

    References
    ----------
    Rastegari et al. 2016, section 3.2 (binary dot products by XNOR and bit-counting).
    """
    return n - 2 * int(popcount_bytes(np.bitwise_xor(a_bits, b_bits)).sum(dtype=np.int64))


def xnor_matmul(a_bits, w_bits, n: int) -> np.ndarray:
    """All {-1, +1} dot products ``A @ W`` from packed operands: int32 (B, N).

    Parameters
    ----------
    a_bits : uint8 (B, ceil(n / 8)), the rows of ``A`` (B, n) packed by :func:`pack_signs`
    w_bits : uint8 (N, ceil(n / 8)), the *columns* of ``W`` (n, N) packed (``pack_signs(W.T)``)
    n : the true length (the products ignore the padding bits)

    Returns
    -------
    int32 (B, N): ``n - 2 * popcount(a_i XOR w_j)``, equal to ``A @ W`` exactly
    (``|A @ W| <= n``; ``n < 2**31`` is checked).
    """
    n = check_int_in_range(n, "n", 1, 2**31 - 1)
    nb = -(-n // 8)
    a_bits = as_int_array(a_bits, "a_bits", dtype=np.uint8, ndim=2)
    w_bits = as_int_array(w_bits, "w_bits", dtype=np.uint8, ndim=2)
    for name, arr in (("a_bits", a_bits), ("w_bits", w_bits)):
        if arr.shape[1] != nb:
            raise ValueError(f"{name}: expected ceil({n} / 8) = {nb} bytes per row, got shape {arr.shape}")
    diff = np.bitwise_count(a_bits[:, None, :] ^ w_bits[None, :, :]).sum(axis=-1, dtype=np.int64)
    return (n - 2 * diff).astype(np.int32)


def binary_layer_forward(x_sign, layer: BinaryLinear) -> np.ndarray:
    """A binary layer on {-1, +1} inputs through the XNOR kernel: ``alpha * (x . B) + b``.

    The integer part ``x . B`` is :func:`xnor_matmul` (exact); only the per-channel scale and
    bias are float. Equals ``layer.forward(x_sign)`` up to float32 rounding of the product.

    Parameters
    ----------
    x_sign : int8 (B, in) of -1 and +1
    layer : BinaryLinear with ``mode="binary"``

    Returns
    -------
    float32 ndarray (B, out)
    """
    x_sign = as_int_array(x_sign, "x_sign", ndim=2)
    if not isinstance(layer, BinaryLinear) or layer.mode != "binary":
        raise TypeError(f"layer: expected a binary BinaryLinear, got {describe(layer)}")
    B, alpha = layer.quantized()
    dots = xnor_matmul(pack_signs(x_sign), pack_signs(B.T), layer.in_features)
    return dots.astype(np.float32) * alpha + layer.b

