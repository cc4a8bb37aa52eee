"""Hypothesis strategies shared by the whole test suite (one place, as in minitorch)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

# Moderate floats: large enough to be interesting, small enough that float64 sums of a
# few hundred of them stay exact to ~1e-12 relative.
moderate_floats = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False)
unit_floats = st.floats(min_value=-1.0, max_value=1.0, allow_nan=False, allow_infinity=False)

seeds = st.integers(min_value=0, max_value=2**32 - 1)
batch_sizes = st.integers(min_value=1, max_value=16)
widths = st.integers(min_value=1, max_value=24)
bit_widths = st.integers(min_value=2, max_value=16)
int32_values = st.integers(min_value=INT32_MIN, max_value=INT32_MAX)


def float_arrays(shape, elements=moderate_floats, dtype=np.float64):
    """Arrays of the given shape (or shape strategy) with finite float elements."""
    return hnp.arrays(dtype=dtype, shape=shape, elements=elements)


def matrices(max_rows=16, max_cols=24, elements=moderate_floats, dtype=np.float64):
    """2-D float arrays with 1..max_rows rows and 1..max_cols columns."""
    shape = st.tuples(st.integers(1, max_rows), st.integers(1, max_cols))
    return shape.flatmap(lambda s: float_arrays(s, elements, dtype))


def int_arrays(shape, lo, hi, dtype):
    """Integer arrays with elements in [lo, hi]."""
    return hnp.arrays(dtype=dtype, shape=shape, elements=st.integers(lo, hi))


def int8_arrays(shape):
    return int_arrays(shape, -128, 127, np.int8)


def grad_lists(max_tensors=4, max_size=12, elements=moderate_floats):
    """A list of 0..max_tensors float64 arrays (1-D or 2-D), as gradients."""
    shapes = st.one_of(
        st.tuples(st.integers(1, max_size)),
        st.tuples(st.integers(1, max_size // 2 + 1), st.integers(1, max_size // 2 + 1)),
    )
    return st.lists(shapes.flatmap(lambda s: float_arrays(s, elements)), min_size=0, max_size=max_tensors)


# ---- Quantization settings (nnref.quant; appended with the quantization fundamentals) ----

rounding_modes = st.sampled_from(["half_even", "half_away"])


def quant_settings(bits=bit_widths):
    """Keyword arguments of ``nnref.quant.qparams.choose_qparams`` other than the range and
    axis: every bit width 2..16, signed or not, affine or symmetric (both conventions),
    full or narrow range."""
    return st.fixed_dictionaries(
        {
            "bits": bits,
            "signed": st.booleans(),
            "symmetric": st.booleans(),
            "narrow_range": st.booleans(),
            "symmetric_convention": st.sampled_from(["tflite", "pytorch"]),
        }
    )


# ---- Pruning, half precision and binary weights (nnref.prune, nnref.halfprec, nnref.quant.binary) ----

#: Any float32 bit pattern (normals, subnormals, zeros, infinities and NaNs alike).
float32_patterns = st.integers(min_value=0, max_value=2**32 - 1)


def sign_matrices(max_rows=6, max_len=70):
    """Pairs ``(A (B, n), W (n, N))`` of {-1, +1} int8 matrices, n in 1..max_len (any
    remainder modulo 8)."""
    dims = st.tuples(st.integers(1, max_rows), st.integers(1, max_len), st.integers(1, max_rows))
    return dims.flatmap(lambda d: st.tuples(
        hnp.arrays(np.int8, (d[0], d[1]), elements=st.sampled_from([-1, 1])),
        hnp.arrays(np.int8, (d[1], d[2]), elements=st.sampled_from([-1, 1]))))
