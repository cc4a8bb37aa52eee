"""Integer matrix products with zero points: int8 x int8 -> exact int32 accumulators.

The definition (Jacob et al. 2018, arXiv 1712.05877, eq. 4; TensorFlow Lite
``reference_integer_ops``)::

    acc[i, j] = sum_k (a[i, k] - za[i]) * (b[k, j] - zb[j])

:func:`matmul_centred` is that formula alone. :func:`matmul_int32_expanded` is gemmlowp's
four-term expansion of it, whose one O(B K N) term multiplies uncentred values and so can
run in float BLAS exactly (:func:`exact_float_dtype`); :func:`matmul_int32` is the checked
entry point. The int32 accumulator never wraps: every public function first proves, from
the dtypes, the zero points and K alone, that no input could overflow it, and raises
``ValueError`` otherwise.
"""

from __future__ import annotations

import numpy as np

from nnref._checks import check_int_in_range
from nnref.quant.checks import check_choice, check_matmul_operands, max_abs
from nnref.quant.fixed_point import IntLike

__all__ = [
    "MATMUL_METHODS",
    "exact_float_dtype",
    "matmul_centred",
    "exact_product",
    "matmul_expanded",
    "matmul_int32_direct",
    "matmul_int32_expanded",
    "matmul_int32",
]

MATMUL_METHODS = ("auto", "int", "float")
_NAMES = ("a_q", "b_q", "a_zero_point", "b_zero_point")


def exact_float_dtype(k: int, max_abs_a: int, max_abs_b: int) -> np.dtype | None:
    """The narrowest float type in which a matmul of integers is provably exact.

    Parameters
    ----------
    k : int
        The inner dimension.
    max_abs_a, max_abs_b : int
        Bounds on ``|a|`` and ``|b|``.

    Returns
    -------
    numpy.dtype or None
        ``float32`` if ``bound = k * max_abs_a * max_abs_b <= 2**24``, ``float64`` if
        ``bound <= 2**53``, else ``None``.

    Notes
    -----
    Every partial sum of the product, in any order, is an integer of magnitude at most
    ``bound``; every integer up to ``2**24`` is a float32 and up to ``2**53`` a float64
    (IEEE 754 significands of 24 and 53 bits), so a classical BLAS (OpenBLAS, MKL,
    Accelerate: sums of products of the inputs) never rounds. Uncentred int8 against
    narrow-range int8: ``1032 * 128 * 127 < 2**24``, so float32 up to ``k = 1032``.
    """
    bound = (
        check_int_in_range(k, "k", 0, 2**62)
        * check_int_in_range(max_abs_a, "max_abs_a", 0, 2**62)
        * check_int_in_range(max_abs_b, "max_abs_b", 0, 2**62)
    )
    if bound <= 2**24:
        return np.dtype(np.float32)
    if bound <= 2**53:
        return np.dtype(np.float64)
    return None


def matmul_centred(a: np.ndarray, b: np.ndarray, a_zero_point=0, b_zero_point=0) -> np.ndarray:
    """Integer matmul with zero points, the definition computed literally (plain).

    Formula (Jacob et al. 2018, eq. 4; TensorFlow Lite ``reference_integer_ops``)::

        acc[i, j] = sum_k (a[i, k] - za[i]) * (b[k, j] - zb[j])      in int64, then int32

    Parameters
    ----------
    a : ndarray of int, shape (B, K)
    b : ndarray of int, shape (K, N)
    a_zero_point : int or ndarray of int, shape () or (B, 1)
    b_zero_point : int or ndarray of int, shape () or (N,)

    Returns
    -------
    ndarray of int32, shape (B, N)
        Exact when ``K * max|a - za| * max|b - zb| <= 2**31 - 1``, which the public
        functions check before calling this.
    """
    a_centred = a.astype(np.int64) - a_zero_point
    b_centred = b.astype(np.int64) - b_zero_point
    return (a_centred @ b_centred).astype(np.int32)


def exact_product(a: np.ndarray, b: np.ndarray, method: str = "auto") -> np.ndarray:
    """``sum_k a[i, k] * b[k, j]`` as int64, through float BLAS where provably exact.

    Parameters
    ----------
    a, b : ndarray of int, shapes (..., B, K) and (..., K, N)
        Batch axes broadcast as in ``numpy.matmul``.
    method : {"auto", "int", "float"}
        ``"int"``: int64 arithmetic; ``"float"``: the narrowest exact float type
        (:func:`exact_float_dtype`), ``ValueError`` if none is exact; ``"auto"``: float
        when exact, int64 otherwise. All give the same integers.

    Returns
    -------
    ndarray of int64, shape (..., B, N)
    """
    if method != "int":
        dtype = exact_float_dtype(a.shape[-1], max_abs(a), max_abs(b))
        if dtype is not None:
            return (a.astype(dtype) @ b.astype(dtype)).astype(np.int64)
        if method == "float":
            raise ValueError("method: 'float' cannot be exact here (bound above 2**53); use 'auto' or 'int'")
    return a.astype(np.int64) @ b.astype(np.int64)


def matmul_expanded(a, b, a_zero_point=0, b_zero_point=0, method: str = "int") -> np.ndarray:
    """Integer matmul with zero points by gemmlowp's four-term expansion (plain).

    Formula (gemmlowp "low-precision" doc, efficient handling of offsets; Jacob et al.
    2018, eq. 7-9)::

        acc[i, j] = sum_k a[i,k] b[k,j] - zb[j] sum_k a[i,k] - za[i] sum_k b[k,j] + K za[i] zb[j]

    Parameters
    ----------
    a, b, a_zero_point, b_zero_point
        As :func:`matmul_centred`.
    method : {"int", "float", "auto"}
        How the uncentred product is computed (:func:`exact_product`).

    Returns
    -------
    ndarray of int32, shape (B, N)
    """
    ab = exact_product(a, b, method)
    a_rows = a.sum(axis=1, dtype=np.int64)[:, None]
    b_cols = b.sum(axis=0, dtype=np.int64)
    acc = ab - b_zero_point * a_rows - a_zero_point * b_cols + a.shape[1] * a_zero_point * b_zero_point
    return acc.astype(np.int32)


def matmul_int32_direct(
    a_q: np.ndarray, b_q: np.ndarray, a_zero_point: IntLike = 0, b_zero_point: IntLike = 0
) -> np.ndarray:
    """Checked :func:`matmul_centred`: the definition computed literally.

    Parameters
    ----------
    a_q : ndarray of int8 or uint8, shape (B, K)
    b_q : ndarray of int8 or uint8, shape (K, N)
    a_zero_point : int or ndarray of int, shape (B,)
        In ``a_q``'s dtype range (per row).
    b_zero_point : int or ndarray of int, shape (N,)
        In ``b_q``'s dtype range (per column).

    Returns
    -------
    ndarray of int32, shape (B, N)

    Raises
    ------
    TypeError
        Operands that are not int8/uint8 arrays, float zero points.
    ValueError
        K mismatch, zero points out of range or of the wrong length, or a K for which the
        int32 accumulator could overflow (e.g. int8 with ``za = -128`` and ``zb = 0``:
        ``K * 255 * 128 <= 2**31 - 1``, so K <= 65,793).
    """
    a, b, za, zb = check_matmul_operands(a_q, b_q, a_zero_point, b_zero_point, _NAMES)
    return matmul_centred(a, b, za, zb)


def matmul_int32_expanded(
    a_q: np.ndarray, b_q: np.ndarray, a_zero_point: IntLike = 0, b_zero_point: IntLike = 0,
    method: str = "int",
) -> np.ndarray:
    """Checked :func:`matmul_expanded` (gemmlowp's four-term expansion).

    Parameters
    ----------
    a_q, b_q, a_zero_point, b_zero_point
        As :func:`matmul_int32_direct`.
    method : {"int", "float", "auto"}
        As :func:`exact_product`; all three give bit-identical results.

    Returns
    -------
    ndarray of int32, shape (B, N)

    Raises
    ------
    TypeError, ValueError
        As :func:`matmul_int32_direct`; ``method`` not one of the three.
    """
    check_choice(method, "method", MATMUL_METHODS)
    a, b, za, zb = check_matmul_operands(a_q, b_q, a_zero_point, b_zero_point, _NAMES)
    return matmul_expanded(a, b, za, zb, method)


def matmul_int32(
    a_q: np.ndarray, b_q: np.ndarray, a_zero_point: IntLike = 0, b_zero_point: IntLike = 0,
    method: str = "auto",
) -> np.ndarray:
    """Integer matmul with zero points, exact and fast: the one to call.

    ``acc[i, j] = sum_k (a[i, k] - za[i]) * (b[k, j] - zb[j])`` in int32, computed by
    :func:`matmul_int32_expanded` with ``method="auto"`` by default: the uncentred product
    runs in float32 BLAS when ``K * max|a| * max|b| <= 2**24``, float64 BLAS up to
    ``2**53``, int64 otherwise. NumPy has no integer BLAS, so the float routes are 10-100x
    faster, and exact (:func:`exact_float_dtype`).

    Parameters
    ----------
    a_q, b_q, a_zero_point, b_zero_point
        As :func:`matmul_int32_direct`.
    method : {"auto", "int", "float"}

    Returns
    -------
    ndarray of int32, shape (B, N)

    Raises
    ------
    TypeError, ValueError
        As :func:`matmul_int32_expanded`.
    """
    return matmul_int32_expanded(a_q, b_q, a_zero_point, b_zero_point, method)
