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


# ---- Fixed-point multipliers (nnref.quant.fixed_point; appended with the plain formulas) ----

#: A normalised Q0.31 mantissa from quantize_multiplier: 0 or in [2**30, 2**31).
quantized_multipliers = st.one_of(st.just(0), st.integers(2**30, 2**31 - 1))


# --------------------------------------------------------------------------- rounding profiles
#: int32 accumulators and normalised fixed-point multipliers M < 1 (shift <= 0), as every
#: converter-made layer has (nnref.quant.profiles).
int32_values = st.integers(min_value=-(2**31), max_value=2**31 - 1)
normalised_m0 = st.integers(min_value=2**30, max_value=2**31 - 1)
nonpositive_shifts = st.integers(min_value=-31, max_value=0)


# ---- Post-training toolbox (nnref.quant.equalize, bias_correction, adaround, lsq) ----


@st.composite
def relu_mlps_with_data(draw, max_layers=3, max_width=8, activations=("relu", "leaky_relu"),
                        dtype=np.float64):
    """``(model, x)``: a float64 ``MLP`` of 2..max_layers Linear layers joined by ReLU or
    leaky ReLU, its weights' columns scaled by factors up to 100 apart (so channel ranges
    differ, as equalization needs) and random biases, and inputs ``x`` (N, in), N in 1..16."""
    from nnref.mlp import MLP

    n_layers = draw(st.integers(2, max_layers))
    sizes = draw(st.lists(st.integers(1, max_width), min_size=n_layers + 1, max_size=n_layers + 1))
    activation = draw(st.sampled_from(list(activations)))
    seed = draw(seeds)
    model = MLP(sizes, activation=activation, seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed)
    for lin in model.linears:
        lin.W *= 10.0 ** rng.uniform(-1, 1, size=lin.W.shape[1])
        lin.b[...] = rng.normal(0, 1, size=lin.b.shape)
    n = draw(st.integers(1, 16))
    x = draw(float_arrays((n, sizes[0]), st.floats(-3, 3, allow_nan=False), dtype))
    return model, x

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
