"""Laws of the formulas of half precision, pruning, weight sharing and binary weights
(tutorials 09-11): bfloat16 rounding on the float32 bit pattern, stochastic rounding, the
dynamic loss scale, the magnitude-pruning mask, the shared values' gradient, XNOR-Net's
binary weights and their gradient, and the XNOR-popcount dot product.

Oracles work entry by entry in Python integers and floats (``math.fsum`` for sums).
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nnref.laws.compare import as_array, expect_close, expect_equal, expect_pair, expect_true
from nnref.laws.core import Law
from nnref.laws.strategies import arrays, floats, shapes2
from nnref.laws.training import by_hand, unchanged_law

__all__ = ["bfloat16_bits_laws", "stochastic_round_laws", "loss_scale_update_laws", "magnitude_mask_laws",
           "centroid_grads_laws", "binary_weights_laws", "binary_weight_grad_laws", "xnor_dot_laws"]


# ---------------------------------------------------------------- bfloat16

def bfloat16_o(u: int) -> int:
    """Round one float32 pattern to bfloat16, nearest even, by comparing the dropped half."""
    if (u & 0x7FFFFFFF) > 0x7F800000:  # NaN: keep the sign, quiet, drop the low payload
        return (u | 0x00400000) & 0xFFFF0000
    lo, rest = u & 0xFFFF0000, u & 0xFFFF
    up = rest > 0x8000 or (rest == 0x8000 and (u >> 16) & 1)
    return (lo + 0x10000 * up) & 0xFFFFFFFF


@st.composite
def _bits_cases(draw):
    special = st.sampled_from([0x3F808000, 0x3F818000, 0x7F7FFFFF, 0xFF7FFFFF, 0x7F800000, 0x7F800001, 0xFFC00001,
                               0x00008000, 0x00018000, 0x80000000, 0x7F7F8000, 0x7F808000])
    top = st.integers(0, 0xFFFF)
    tie = top.map(lambda t: (t << 16) | 0x8000)  # the dropped half exactly one half
    n = draw(st.integers(1, 8))
    vals = draw(st.lists(st.one_of(special, tie, st.integers(0, 2**32 - 1)), min_size=n, max_size=n))
    return {"bits": np.array(vals, dtype=np.uint32)}


def _verify_bits(fn, case):
    bits = case["bits"]
    want = np.array([bfloat16_o(int(u)) for u in bits], dtype=np.uint32)
    expect_equal(fn(bits), want, "round to nearest even on the top 16 bits (ties to an even bit 16; the carry "
                 "may reach infinity); NaN stays a quiet NaN", dtype=True)


def bfloat16_bits_laws() -> tuple:
    call = lambda fn, c: fn(c["bits"])  # noqa: E731
    return (
        Law("nearest even", "each float32 pattern rounded to its top 16 bits, ties to even, as uint32",
            _bits_cases(), _verify_bits, 50),
        # 1 + 2^-8 is halfway between bfloat16's 1 and 1 + 2^-7: to even, 1; 1 + 3 * 2^-8 -> 1 + 2^-6
        by_hand("ties to even: 0x3F808000 -> 0x3F800000, 0x3F818000 -> 0x3F820000",
                {"bits": np.array([0x3F808000, 0x3F818000], np.uint32)}, call,
                np.array([0x3F800000, 0x3F820000], np.uint32)),
        by_hand("the largest float32 rounds to infinity; a signalling NaN stays NaN (0x7FC00000)",
                {"bits": np.array([0x7F7FFFFF, 0x7F800001], np.uint32)}, call, np.array([0x7F800000, 0x7FC00000], np.uint32)),
        unchanged_law(_bits_cases(), call),
    )


# ---------------------------------------------------------------- stochastic rounding

@st.composite
def _sr_cases(draw):
    shape = draw(shapes2(3, 5))
    step = draw(st.sampled_from([1.0, 0.5, 2.0**-4, 2.0**-10, 0.1]))
    x = draw(arrays(shape, -50.0, 50.0)) * step
    if draw(st.booleans()):  # points of the grid and fractions next to them
        x = (np.round(x / step) + draw(st.sampled_from([0.0, 0.25, -0.25, 0.5]))) * step
    u = draw(hnp.arrays(np.float64, shape, elements=st.one_of(st.sampled_from([0.0, 0.25, 0.5, 0.75]),
                                                                 st.floats(0.0, 1.0, exclude_max=True))))
    return {"x": x, "step": step, "u": u}


def _verify_sr(fn, case):
    x, step, u = case["x"], case["step"], case["u"]
    want = []
    for xi, ui in zip(x.ravel(), u.ravel()):
        q = float(xi) / step
        lo = math.floor(q)
        want.append((lo + (1 if ui < q - lo else 0)) * step)
    expect_close(fn(x, step, u), np.array(want).reshape(x.shape), "floor(x / step) + 1 with probability "
                 "frac(x / step) (up when u < frac), times step", rtol=1e-15, atol=0.0)


@st.composite
def _mean_cases(draw):
    step = draw(st.sampled_from([1.0, 0.25, 2.0**-8]))
    x = np.full(64, draw(floats(-20.0, 20.0)) * step)
    return {"x": x, "step": step, "u": (np.arange(64) + 0.5) / 64}  # stratified uniforms


def _verify_unbiased(fn, case):
    x, step = case["x"], case["step"]
    got = as_array(fn(x, step, case["u"]), "result")
    mean = math.fsum(float(v) for v in got.ravel()) / got.size
    expect_true(abs(mean - x[0]) <= step / 64 + 1e-12 * abs(x[0]),
                f"unbiased: over evenly spread u the mean must be x = {x[0]!r} (within step / 64)", x[0], mean)


def stochastic_round_laws() -> tuple:
    call = lambda fn, c: fn(c["x"], c["step"], c["u"])  # noqa: E731
    return (
        Law("Gupta et al. 2015, eq. 3", "rounds up exactly when u < (x - floor) / step, down otherwise",
            _sr_cases(), _verify_sr, 40),
        Law("unbiased", "the mean over evenly spread u is x", _mean_cases(), _verify_unbiased, 20),
        # x = 0.3: up when u < 0.3; x = -0.3: floor -1, frac 0.7
        by_hand("x = 0.3 with u = 0.2, 0.3, 0.5 -> 1, 0, 0; x = -0.3 with u = 0.6 -> 0",
                {"x": np.array([0.3, 0.3, 0.3, -0.3]), "step": 1.0, "u": np.array([0.2, 0.3, 0.5, 0.6])}, call,
                np.array([1.0, 0.0, 0.0, 0.0])),
        unchanged_law(_sr_cases(), call),
    )


# ---------------------------------------------------------------- dynamic loss scale

def loss_scale_o(scale, tracker, found_inf, growth, backoff, interval):
    """PyTorch's GradScaler.update, one step."""
    if found_inf:
        return scale * backoff, 0
    tracker += 1
    if tracker == interval:
        return (scale * growth if math.isfinite(scale * growth) else scale), 0
    return scale, tracker


@st.composite
def _scale_cases(draw):
    return {"scale": draw(st.sampled_from([2.0**16, 1.0, 2.0**1000, 1e308, 3.0])),
            "found_inf": draw(st.lists(st.booleans() | st.just(False), min_size=1, max_size=12)),
            "growth_factor": draw(st.sampled_from([2.0, 4.0, 1.5])),
            "backoff_factor": draw(st.sampled_from([0.5, 0.25, 0.125])),
            "growth_interval": draw(st.integers(1, 4))}


_SCALE_OPTS = ("growth_factor", "backoff_factor", "growth_interval")


def _verify_scale(fn, case):
    scale, tracker = case["scale"], 0
    opts = {k: case[k] for k in _SCALE_OPTS}
    for t, inf in enumerate(case["found_inf"], start=1):
        want = loss_scale_o(scale, tracker, inf, *(case[k] for k in _SCALE_OPTS))
        got = expect_pair(fn(scale, tracker, inf, **opts), 2, f"step {t}: loss_scale_update(...)")
        what = f"step {t} from (scale {scale!r}, tracker {tracker}), found_inf = {inf}, {opts}"
        expect_close(as_array(got[0], "scale"), want[0], what + ": scale", rtol=0.0)
        expect_true(got[1] == want[1], what + ": growth_tracker", want[1], got[1])
        scale, tracker = want


def loss_scale_update_laws() -> tuple:
    steps = {"scale": 8.0, "found_inf": [False, False, False, True, False], "growth_factor": 2.0,
             "backoff_factor": 0.5, "growth_interval": 3}

    def run(fn, c):
        scale, tracker, trace = c["scale"], 0, []
        for inf in c["found_inf"]:
            scale, tracker = fn(scale, tracker, inf, **{k: c[k] for k in _SCALE_OPTS})
            trace.append(scale)
        return np.array(trace)

    return (
        Law("PyTorch's GradScaler.update", "an inf step multiplies by backoff_factor and resets the count; "
            "growth_interval finite steps in a row multiply by growth_factor (kept only if finite)",
            _scale_cases(), _verify_scale, 50),
        # interval 3: 8, 8, then 16 at the third finite step; inf -> 8; one finite step: 8
        by_hand("interval 3 from 8: 8, 8, 16, then an inf step 8, then 8", steps, run,
                np.array([8.0, 8.0, 16.0, 8.0, 8.0])),
        by_hand("growing past float64's range keeps the scale", {**steps, "scale": 1e308, "found_inf": [False] * 3},
                run, np.array([1e308, 1e308, 1e308])),
    )


# ---------------------------------------------------------------- pruning and weight sharing

@st.composite
def _mask_cases(draw):
    shape = draw(st.one_of(st.tuples(st.integers(1, 8)), shapes2(4, 4)))
    tied = st.sampled_from([0.0, 0.5, -0.5, 1.0, -1.0, 0.25])  # many equal magnitudes
    w = draw(hnp.arrays(np.float64, shape, elements=st.one_of(tied, floats(-3.0, 3.0))))
    return {"w": w, "n_prune": draw(st.integers(0, w.size))}


def _verify_mask(fn, case):
    w, n = case["w"], case["n_prune"]
    flat = [abs(float(v)) for v in w.ravel()]
    pruned = set(sorted(range(len(flat)), key=lambda i: (flat[i], i))[:n])
    want = np.array([i not in pruned for i in range(len(flat))]).reshape(w.shape)
    got = as_array(fn(w, n), "mask")
    expect_true(got.dtype == np.bool_, f"mask: expected a bool array, got dtype {got.dtype}", want, got)
    expect_equal(got, want, f"prune the {n} smallest |w| (equal magnitudes: the earlier position first), "
                 "True = kept")


def magnitude_mask_laws() -> tuple:
    call = lambda fn, c: fn(c["w"], c["n_prune"])  # noqa: E731
    return (
        Law("Han et al. 2015", "exactly n_prune entries pruned, the smallest magnitudes, ties by position",
            _mask_cases(), _verify_mask, 40),
        by_hand("|w| = [0.5, 0.1, 0.3, 0.1], prune 2: the two 0.1s",
                {"w": np.array([0.5, -0.1, 0.3, -0.1]), "n_prune": 2}, call, np.array([True, False, True, False])),
        by_hand("a tie: [1, -1, 1, 2], prune 1: the first 1", {"w": np.array([[1.0, -1.0], [1.0, 2.0]]), "n_prune": 1},
                call, np.array([[False, True], [True, True]])),
        unchanged_law(_mask_cases(), call),
    )


@st.composite
def _centroid_cases(draw):
    shape = draw(shapes2(4, 4))
    k = draw(st.integers(1, 5))
    idx = draw(hnp.arrays(np.int64, shape, elements=st.integers(0, k - 1)))
    mask = draw(hnp.arrays(np.bool_, shape))
    return {"dW": draw(arrays(shape, -5.0, 5.0)), "idx": idx, "mask": mask, "k": k}


def _verify_centroids(fn, case):
    dW, idx, mask, k = case["dW"], case["idx"], case["mask"], case["k"]
    want = np.array([math.fsum(float(d) for d, i, m in zip(dW.ravel(), idx.ravel(), mask.ravel()) if m and i == j)
                     for j in range(k)])
    expect_close(fn(dW, idx, mask, k), want, "dL/dc_j = sum of dL/dW over the kept weights of cluster j "
                 "(one entry per cluster, empty ones 0)", rtol=1e-12, atol=1e-12)


def centroid_grads_laws() -> tuple:
    ex = {"dW": np.array([[1.0, 2.0], [3.0, 4.0]]), "idx": np.array([[0, 1], [1, 0]]),
          "mask": np.array([[True, True], [False, True]]), "k": 3}
    call = lambda fn, c: fn(c["dW"], c["idx"], c["mask"], c["k"])  # noqa: E731
    return (
        Law("Han et al. 2016, eq. 3", "each shared value's gradient is the sum of its kept weights' gradients",
            _centroid_cases(), _verify_centroids, 40),
        # cluster 0: 1 + 4; cluster 1: 2 (the 3 is pruned); cluster 2: empty
        by_hand("k = 3: [1 + 4, 2, 0] (the pruned 3 counts nowhere)", ex, call, np.array([5.0, 2.0, 0.0])),
        unchanged_law(_centroid_cases(), call),
    )


# ---------------------------------------------------------------- binary weights

@st.composite
def _w_cases(draw):
    n_in = draw(st.integers(1, 5))
    n_out = draw(st.one_of(st.just(n_in), st.integers(1, 5)))  # square matrices hide a wrong axis
    edges = st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 2.0])
    return {"W": draw(hnp.arrays(np.float64, (n_in, n_out), elements=st.one_of(edges, floats(-3.0, 3.0))))}


def _binary_o(W):
    B = np.array([[1 if v >= 0 else -1 for v in row] for row in W.tolist()], dtype=np.int64)
    alpha = np.array([math.fsum(abs(v) for v in W[:, j]) / W.shape[0] for j in range(W.shape[1])])
    return B, alpha


def _verify_binary(fn, case):
    W = case["W"]
    B, alpha = expect_pair(fn(W), 2, "binary_weights(W)")
    want_B, want_alpha = _binary_o(W)
    expect_equal(as_array(B, "B").astype(np.int64), want_B, "B = +1 where W >= 0 (also at 0), else -1",
                 dtype=False)
    expect_close(alpha, want_alpha, "alpha_j = mean over the inputs (rows) of |W_ij|, one per output column",
                 rtol=1e-12)


def binary_weights_laws() -> tuple:
    ex = {"W": np.array([[0.5, -1.0], [-0.25, 0.0], [0.0, 3.0]])}
    return (
        Law("XNOR-Net, eq. 4", "B = sign(W) with sign(0) = +1, alpha = mean |W| per output column",
            _w_cases(), _verify_binary, 40),
        by_hand("zeros binarize to +1; alpha = [0.75 / 3, 4 / 3]", ex, lambda fn, c: fn(c["W"]),
                (np.array([[1, -1], [-1, 1], [1, 1]]), np.array([0.25, 4.0 / 3.0])), rtol=1e-15),
        unchanged_law(_w_cases(), lambda fn, c: fn(c["W"])),
    )


@st.composite
def _wgrad_cases(draw):
    W = draw(_w_cases())["W"]
    B, alpha = _binary_o(W)
    return {"W": W, "g": draw(arrays(W.shape, -2.0, 2.0)), "B": B.astype(np.int8), "alpha": alpha}


def _verify_wgrad(fn, case):
    W, g, B, alpha = case["W"], case["g"], case["B"].astype(np.int64), case["alpha"]
    n = W.shape[0]
    cols = [math.fsum(float(g[k, j]) * int(B[k, j]) for k in range(n)) for j in range(W.shape[1])]
    want = np.array([[g[i, j] * alpha[j] * (abs(W[i, j]) <= 1) + B[i, j] * cols[j] / n for j in range(W.shape[1])]
                     for i in range(n)])
    expect_close(fn(W, g, case["B"], alpha), want, "dL/dW_ij = g_ij alpha_j [|W_ij| <= 1] + (B_ij / n) "
                 "sum_k g_kj B_kj", rtol=1e-12, atol=1e-12)


def binary_weight_grad_laws() -> tuple:
    # n = 2, B = [1, -1], alpha = 1.25: the first term passes only where |W| <= 1
    one = {"W": np.array([[0.5], [-2.0]]), "B": np.array([[1], [-1]], np.int8), "alpha": np.array([1.25])}
    call = lambda fn, c: fn(c["W"], c["g"], c["B"], c["alpha"])  # noqa: E731
    return (
        Law("XNOR-Net, eq. 7", "the straight-through term through sign (clipped at |W| <= 1) plus the term "
            "through alpha", _wgrad_cases(), _verify_wgrad, 40),
        by_hand("g = [1, 1]: sum g B = 0, only [1.25, 0] through sign", {**one, "g": np.array([[1.0], [1.0]])}, call,
                np.array([[1.25], [0.0]])),
        by_hand("g = [1, -1]: sum g B = 2, plus B 2 / 2: [2.25, -1]", {**one, "g": np.array([[1.0], [-1.0]])}, call,
                np.array([[2.25], [-1.0]])),
        unchanged_law(_wgrad_cases(), call),
    )


@st.composite
def _xnor_cases(draw):
    n = draw(st.one_of(st.sampled_from([1, 7, 8, 9, 16, 17]), st.integers(1, 40)))
    signs = st.lists(st.sampled_from([-1, 1]), min_size=n, max_size=n)
    a, b = np.array(draw(signs)), np.array(draw(signs))
    return {"a_bits": np.packbits(a > 0), "b_bits": np.packbits(b > 0), "n": n, "a": a, "b": b}


def _verify_xnor(fn, case):
    want = int(sum(int(x) * int(y) for x, y in zip(case["a"], case["b"])))
    got = fn(case["a_bits"], case["b_bits"], case["n"])
    expect_true(np.ndim(got) == 0 and float(got) == want, f"the {case['n']}-long dot product of the +-1 "
                "vectors packed in a_bits and b_bits (padding bits must not count)", want, got)


def xnor_dot_laws() -> tuple:
    def packed(a, b):
        a, b = np.array(a), np.array(b)
        return {"a_bits": np.packbits(a > 0), "b_bits": np.packbits(b > 0), "n": len(a), "a": a, "b": b}

    call = lambda fn, c: fn(c["a_bits"], c["b_bits"], c["n"])  # noqa: E731
    return (
        Law("popcount", "a . b = n - 2 popcount(a XOR b) for packed +-1 vectors of any length n",
            _xnor_cases(), _verify_xnor, 40),
        by_hand("[1, -1, 1] . [1, 1, -1] = 1 - 1 - 1 = -1 (five padding bits)", packed([1, -1, 1], [1, 1, -1]),
                call, -1),
        by_hand("equal vectors of length 9: 9", packed([1, -1] * 4 + [1], [1, -1] * 4 + [1]), call, 9),
        unchanged_law(_xnor_cases(), lambda fn, c: fn(c["a_bits"], c["b_bits"], c["n"])),
    )
