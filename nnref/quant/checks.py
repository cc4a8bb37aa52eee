"""Argument checks of the integer kernels and the quantized model.

Every function here raises a ``TypeError`` (wrong kind of thing, wrong dtype) or a
``ValueError`` (wrong shape, range or value) whose message names the argument, the
expected and the received, and otherwise returns the argument in the form the arithmetic
needs. Keeping them here keeps the kernels' formulas readable; the public kernels call
them once, at their boundary.
"""

from __future__ import annotations

import numbers

import numpy as np

from nnref._checks import check_finite, check_int_in_range, describe
from nnref.quant.qparams import QParams

__all__ = [
    "INT8",
    "UINT8",
    "INT32_MIN",
    "INT32_MAX",
    "check_choice",
    "check_quantized_array",
    "check_integers",
    "check_zero_point",
    "max_abs",
    "max_centred",
    "check_accumulator_bound",
    "check_matmul_operands",
    "check_per_channel",
    "check_output_range",
    "check_float32_scale",
    "check_act_qparams",
    "check_finite_parameters",
]

INT8 = np.dtype(np.int8)
UINT8 = np.dtype(np.uint8)
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def check_choice(value, name: str, choices: tuple):
    """Return ``value`` if it is one of ``choices``, else raise ``ValueError``.

    Parameters
    ----------
    value : object
    name : str
    choices : tuple

    Returns
    -------
    object
        ``value``.

    Raises
    ------
    ValueError
        Naming ``name``.
    """
    if not isinstance(value, (str, type(None))) or value not in choices:
        raise ValueError(f"{name}: expected one of {choices}, got {value!r}")
    return value


def check_quantized_array(x, name: str, dtypes=(INT8, UINT8), ndim: int | None = 2) -> np.ndarray:
    """``x`` if it is an ndarray of one of ``dtypes`` with ``ndim`` axes (any if None).

    Parameters
    ----------
    x : ndarray
    name : str
    dtypes : tuple of numpy.dtype
    ndim : int or None

    Returns
    -------
    ndarray

    Raises
    ------
    TypeError, ValueError
        Naming ``name``.
    """
    want = " or ".join(str(d) for d in dtypes)
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array of dtype {want}, got {describe(x)}")
    if x.dtype not in dtypes:
        raise TypeError(f"{name}: expected dtype {want}, got dtype {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {x.shape}")
    return x


def check_integers(value, name: str) -> np.ndarray:
    """An integer scalar (as a 0-d int64 array) or an integer ndarray; floats refused.

    Parameters
    ----------
    value : int or ndarray of int
    name : str

    Returns
    -------
    ndarray of int

    Raises
    ------
    TypeError, ValueError
        Naming ``name``.
    """
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "iu":
            raise TypeError(f"{name}: expected integers, got an array of dtype {value.dtype}")
        return value
    if isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool, np.bool_)):
        v = int(value)
        if not -(2**63) <= v < 2**63:
            raise ValueError(f"{name}: expected an integer of at most 64 bits, got {v}")
        return np.asarray(v, dtype=np.int64)
    raise TypeError(f"{name}: expected an integer or an integer array, got {describe(value)}")


def check_zero_point(zp, name: str, dtype: np.dtype, length: int, what: str) -> np.ndarray:
    """``zp`` as int64 of shape () or (length,), each value in ``dtype``'s range.

    Parameters
    ----------
    zp : int or ndarray of int
    name : str
    dtype : numpy.dtype
    length : int
    what : str
        How an array of ``length`` values is meant (for the message).

    Returns
    -------
    ndarray of int64

    Raises
    ------
    TypeError, ValueError
        Naming ``name``.
    """
    arr = check_integers(zp, name)
    if arr.shape not in ((), (length,)):
        raise ValueError(f"{name}: expected a scalar or shape ({length},) ({what}), got shape {arr.shape}")
    info = np.iinfo(dtype)
    if arr.size and (arr.min() < info.min or arr.max() > info.max):
        raise ValueError(
            f"{name}: expected values in [{info.min}, {info.max}] (the range of {dtype}), "
            f"got values in [{arr.min()}, {arr.max()}]"
        )
    return arr.astype(np.int64)


def max_abs(x: np.ndarray) -> int:
    """``max |x|`` as a Python int (``np.abs(int8(-128))`` would wrap); 0 if empty.

    Parameters
    ----------
    x : ndarray of int

    Returns
    -------
    int
    """
    return max(-int(x.min()), int(x.max())) if x.size else 0


def max_centred(dtype: np.dtype, zp: np.ndarray) -> int:
    """``max |v - z|`` over every value ``v`` of ``dtype`` and every zero point ``z``.

    Parameters
    ----------
    dtype : numpy.dtype
    zp : ndarray of int

    Returns
    -------
    int
    """
    info = np.iinfo(dtype)
    if zp.size == 0:
        return max(-int(info.min), int(info.max))
    return max(int(zp.max()) - int(info.min), int(info.max) - int(zp.min()))


def check_accumulator_bound(names: str, k: int, a_span: int, b_span: int, bias_max: int = 0) -> None:
    """Refuse, before computing, any shape whose worst case could overflow int32.

    ``K * a_span * b_span + bias_max`` bounds ``|sum_k (a - za)(b - zb) + bias|``.

    Parameters
    ----------
    names : str
    k : int
    a_span, b_span : int
        ``max |a - za|`` and ``max |b - zb|``.
    bias_max : int

    Raises
    ------
    ValueError
        Naming ``names``, when ``k * a_span * b_span + bias_max > 2**31 - 1``.
    """
    worst = k * a_span * b_span + bias_max
    if worst > INT32_MAX:
        raise ValueError(
            f"{names}: K = {k} products of centred values up to {a_span} * {b_span}"
            f"{f' plus |bias| up to {bias_max}' if bias_max else ''} can reach {worst}, "
            f"more than 2**31 - 1: the int32 accumulator could overflow, so this shape is refused"
        )


def check_matmul_operands(a_q, b_q, a_zero_point, b_zero_point, names, dtypes=(INT8, UINT8), bias_max=0):
    """Check ``a (B, K)``, ``b (K, N)`` and their zero points and the int32 bound.

    Returns ``(a, b, za, zb)`` with ``za`` shaped () or (B, 1) and ``zb`` () or (N,), so
    they broadcast against the (B, N) result.

    Parameters
    ----------
    a_q, b_q : ndarray
    a_zero_point, b_zero_point : int or ndarray of int
    names : tuple of str
    dtypes : tuple of numpy.dtype
    bias_max : int

    Returns
    -------
    tuple
        ``(a, b, za, zb)``.

    Raises
    ------
    TypeError, ValueError
        Naming the argument.
    """
    a_name, b_name, za_name, zb_name = names
    a = check_quantized_array(a_q, a_name, dtypes)
    b = check_quantized_array(b_q, b_name, dtypes)
    if b.shape[0] != a.shape[1]:
        raise ValueError(
            f"{b_name}: expected {a.shape[1]} rows to match the {a.shape[1]} columns of "
            f"{a_name} {a.shape}, got shape {b.shape}"
        )
    za = check_zero_point(a_zero_point, za_name, a.dtype, a.shape[0], f"one per row of {a_name}")
    zb = check_zero_point(b_zero_point, zb_name, b.dtype, b.shape[1], f"one per column of {b_name}")
    spans = max_centred(a.dtype, za), max_centred(b.dtype, zb)
    check_accumulator_bound(f"{a_name}, {b_name}", a.shape[1], *spans, bias_max)
    return a, b, za.reshape(-1, 1) if za.ndim else za, zb


def check_per_channel(value, name: str, n: int) -> None:
    """A scalar or an (n,) array: one value per output channel (the last axis).

    Parameters
    ----------
    value : int or ndarray
    name : str
    n : int

    Raises
    ------
    ValueError
        Naming ``name``.
    """
    if isinstance(value, np.ndarray) and value.shape not in ((), (n,)):
        raise ValueError(
            f"{name}: expected a scalar or shape ({n},) (one per output channel, the last axis), "
            f"got shape {value.shape}"
        )


def check_output_range(out_zero_point, act_min, act_max) -> tuple[int, int, int]:
    """int8 ``out_zero_point``, ``act_min <= act_max``, all in [-128, 127], as ints.

    Parameters
    ----------
    out_zero_point, act_min, act_max : int

    Returns
    -------
    tuple of int

    Raises
    ------
    TypeError, ValueError
        Naming the argument.
    """
    zp = check_int_in_range(out_zero_point, "out_zero_point", -128, 127)
    lo = check_int_in_range(act_min, "act_min", -128, 127)
    hi = check_int_in_range(act_max, "act_max", -128, 127)
    if lo > hi:
        raise ValueError(f"act_min, act_max: expected act_min <= act_max, got {lo} > {hi}")
    return zp, lo, hi


def check_float32_scale(value, name: str) -> np.float32:
    """A real number that is finite and > 0 as float32, returned as float32.

    Parameters
    ----------
    value : float
    name : str

    Returns
    -------
    numpy.float32

    Raises
    ------
    TypeError, ValueError
        Naming ``name``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.number)):
        raise TypeError(f"{name}: expected a real number, got {describe(value)}")
    with np.errstate(over="ignore"):
        s = np.float32(value)
    if not (np.isfinite(s) and s > 0):
        raise ValueError(f"{name}: expected a finite number > 0 as float32, got {value!r} (float32 {s})")
    return s


def check_act_qparams(qp, name: str) -> QParams:
    """Per-tensor signed int8 parameters with ``q`` in [-128, 127] (an activation grid).

    Parameters
    ----------
    qp : QParams
    name : str

    Returns
    -------
    QParams

    Raises
    ------
    TypeError, ValueError
        Naming ``name``.
    """
    if not isinstance(qp, QParams):
        raise TypeError(f"{name}: expected a QParams, got {describe(qp)}")
    if qp.per_channel or (qp.qmin, qp.qmax, qp.bits) != (-128, 127, 8) or not qp.signed:
        raise ValueError(f"{name}: expected per-tensor int8 parameters with q in [-128, 127], got {qp!r}")
    return qp


def check_finite_parameters(model, name: str = "model") -> None:
    """Refuse a float model with a NaN or infinite weight or bias, naming layer and parameter.

    Parameters
    ----------
    model : MLP
    name : str
        How the message names the model.

    Raises
    ------
    ValueError
        ``"{name}: layer {i} parameter W: expected finite values, ..."``.
    """
    for i, lin in enumerate(model.linears):
        check_finite(lin.W, f"{name}: layer {i} parameter W")
        check_finite(lin.b, f"{name}: layer {i} parameter b")
