"""Hypothesis strategies of the laws' inputs (public: a course can reuse them).

Each strategy draws the keyword arguments of one call. Edge values are drawn on purpose,
not left to chance: exact zeros and negative zeros where a derivative switches, slopes
above 1, option combinations, ties and near-ties of float32 constants, subnormal and huge
float32 values where a norm under- or overflows.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

__all__ = ["floats", "arrays", "edgy_arrays", "shapes2", "tiny_or_huge_float32"]


def floats(lo: float = -10.0, hi: float = 10.0) -> st.SearchStrategy:
    """Finite float64 numbers in ``[lo, hi]``."""
    return st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False)


def arrays(shape, lo: float = -10.0, hi: float = 10.0, dtype=np.float64) -> st.SearchStrategy:
    """Float arrays of ``shape`` with finite elements in ``[lo, hi]``."""
    width = 32 if dtype == np.float32 else 64
    elements = st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False, width=width)
    return hnp.arrays(dtype=dtype, shape=shape, elements=elements)


def edgy_arrays(shape, lo: float = -10.0, hi: float = 10.0) -> st.SearchStrategy:
    """Float64 arrays where zeros, -0.0 and tiny values of both signs are common."""
    edges = st.sampled_from([0.0, -0.0, 5e-324, -5e-324, 1e-300, -1e-300, 1.0, -1.0])
    return hnp.arrays(dtype=np.float64, shape=shape, elements=st.one_of(edges, floats(lo, hi)))


def shapes2(max_rows: int = 5, max_cols: int = 5) -> st.SearchStrategy:
    """``(rows, cols)`` with both at least 1."""
    return st.tuples(st.integers(1, max_rows), st.integers(1, max_cols))


@st.composite
def tiny_or_huge_float32(draw, size: int) -> np.ndarray:
    """A float32 vector at one magnitude from 1e-30 (squares below float32's normal and
    subnormal range) to 1e30 (squares overflow float32)."""
    exponent = draw(st.sampled_from([-30, -25, -22, -20, -10, 0, 1, 10, 20, 25, 30]))
    mantissas = draw(arrays((size,), -9.0, 9.0))
    return (mantissas * 10.0**exponent).astype(np.float32)
