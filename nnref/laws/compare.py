"""Comparisons that laws use: each raises :class:`~nnref.laws.core.LawViolation` with the
expected and the received value, so a report shows exactly what differed."""

from __future__ import annotations

import numpy as np

from nnref.laws.core import LawViolation

__all__ = ["as_array", "expect_close", "expect_equal", "expect_ints", "expect_true", "expect_unchanged", "expect_pair"]


def as_array(value, what: str) -> np.ndarray:
    """``value`` as an ndarray, or a violation naming ``what`` was not array-like."""
    if value is None:
        raise LawViolation(f"{what}: expected an array, got None (a missing return?)")
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and such
        raise LawViolation(f"{what}: expected an array, got {type(value).__name__} ({exc})") from exc
    if arr.dtype == object:
        raise LawViolation(f"{what}: expected a numeric array, got {type(value).__name__}", received=value)
    return arr


def _check_shape(received: np.ndarray, expected: np.ndarray, what: str) -> None:
    if received.shape != expected.shape:
        raise LawViolation(f"{what}: expected shape {expected.shape}, got shape {received.shape}",
                           expected, received)


def expect_close(received, expected, what: str, rtol: float = 1e-9, atol: float = 0.0,
                 dtype: bool = False) -> np.ndarray:
    """``received`` equals ``expected`` to ``|r - e| <= atol + rtol |e|`` elementwise (NaN only where NaN)."""
    r = as_array(received, what)
    e = np.asarray(expected)
    _check_shape(r, e, what)
    if dtype and r.dtype != e.dtype:
        raise LawViolation(f"{what}: expected dtype {e.dtype}, got dtype {r.dtype}", e, r)
    if not np.issubdtype(r.dtype, np.number) and r.dtype != np.bool_:
        raise LawViolation(f"{what}: expected numbers, got dtype {r.dtype}", e, r)
    r64, e64 = r.astype(np.float64), e.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        ok = (np.abs(r64 - e64) <= atol + rtol * np.abs(e64)) | (r64 == e64) | (np.isnan(r64) & np.isnan(e64))
    if not np.all(ok):
        i = int(np.flatnonzero(~ok.ravel())[0]) if ok.ndim else 0
        where = f" at index {tuple(int(j) for j in np.unravel_index(i, ok.shape))}" if ok.ndim else ""
        raise LawViolation(f"{what}: differs{where} (tolerance rtol={rtol:g}, atol={atol:g})", e, r)
    return r


def expect_equal(received, expected, what: str, dtype: bool = True) -> np.ndarray:
    """Exactly equal values (and dtype, unless ``dtype=False``): integer results, bitwise floats."""
    r = as_array(received, what)
    e = np.asarray(expected)
    _check_shape(r, e, what)
    if dtype and r.dtype != e.dtype:
        raise LawViolation(f"{what}: expected dtype {e.dtype}, got dtype {r.dtype}", e, r)
    if not np.array_equal(r, e, equal_nan=r.dtype.kind == "f" and e.dtype.kind == "f"):
        diff = np.flatnonzero((r != e).ravel()) if r.shape else np.array([0])
        where = f" at index {tuple(int(j) for j in np.unravel_index(int(diff[0]), r.shape))}" if r.ndim and diff.size else ""
        raise LawViolation(f"{what}: differs{where}", e, r)
    return r


def expect_ints(got, want, what: str) -> None:
    """``got`` is an integer array (any integer dtype) equal to ``want``."""
    got_arr = np.asarray(got)
    if got_arr.dtype.kind not in "iu":
        raise LawViolation(f"{what}: expected an integer array, got dtype {got_arr.dtype}", want, got)
    expect_equal(got_arr.astype(np.int64), want, what, dtype=False)


def expect_true(condition: bool, message: str, expected=None, received=None) -> None:
    """A violation with ``message`` unless ``condition``."""
    if not bool(condition):
        raise LawViolation(message, expected, received)


def expect_unchanged(before: dict, after: dict) -> None:
    """The inputs (arrays, lists of arrays) have not been modified in place."""
    for key, b in before.items():
        a = after[key]
        pairs = list(zip(b, a)) if isinstance(b, list) else [(b, a)]
        for x, y in pairs:
            if isinstance(x, np.ndarray) and not np.array_equal(x, y, equal_nan=True):
                raise LawViolation(f"modified its input {key!r} in place (the function must return new arrays)",
                                   x, y)


def expect_pair(result, n: int, what: str) -> tuple:
    """``result`` is a tuple (or list) of ``n`` items."""
    if not isinstance(result, (tuple, list)) or len(result) != n:
        raise LawViolation(f"{what}: expected a tuple of {n} values, got {type(result).__name__}"
                           + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else ""),
                           received=result)
    return tuple(result)
