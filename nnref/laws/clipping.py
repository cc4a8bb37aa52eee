"""Laws of the clip functions: by value, by norm (TensorFlow), by global norm (PyTorch,
with its eps and the clamp at 1) and adaptive clipping (AGC, per unit).

Norms in the oracles are exact to float64 rounding: ``sqrt(math.fsum(x_i^2))`` over the
float64 values, whatever the gradients' dtype, so a float32 sum of squares that under- or
overflows is caught.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from nnref.laws.compare import as_array, expect_close, expect_equal, expect_pair, expect_true
from nnref.laws.core import Law, LawViolation
from nnref.laws.strategies import arrays, floats, tiny_or_huge_float32
from nnref.laws.training import by_hand, unchanged_law, worked

__all__ = ["clip_value_laws", "clip_norm_laws", "clip_global_norm_laws", "agc_laws", "exact_norm"]


def exact_norm(arrays_) -> float:
    """``sqrt(sum of squares)`` of all entries, to float64 precision over the whole float64
    range: scaled by the largest magnitude (so no square under- or overflows), summed exactly."""
    values = [abs(float(v)) for a in arrays_ for v in np.asarray(a, dtype=np.float64).ravel()]
    top = max(values, default=0.0)
    if top == 0.0 or not math.isfinite(top):
        return top
    return top * math.sqrt(math.fsum((v / top) ** 2 for v in values))


def _as_list(result, n: int, what: str) -> list:
    if not isinstance(result, (list, tuple)) or len(result) != n:
        raise LawViolation(f"{what}: expected a list of {n} arrays, got {type(result).__name__}"
                           + (f" of length {len(result)}" if isinstance(result, (list, tuple)) else ""),
                           received=result)
    return list(result)


@st.composite
def _grad_list(draw, max_tensors: int = 3, lo: float = -10.0, hi: float = 10.0):
    shapes = st.one_of(st.tuples(st.integers(1, 5)), st.tuples(st.integers(1, 3), st.integers(1, 3)))
    dtype = draw(st.sampled_from([np.float64, np.float64, np.float32]))
    return [draw(arrays(s, lo, hi, dtype)) for s in draw(st.lists(shapes, min_size=0, max_size=max_tensors))]


# ---------------------------------------------------------------- by value

@st.composite
def _value_cases(draw):
    a, b = sorted([draw(floats(-5.0, 5.0)), draw(floats(-5.0, 5.0))])
    if draw(st.booleans()):
        a, b = -abs(b) - 0.5, abs(b) / 3  # asymmetric ranges on purpose
    return {"grads": draw(_grad_list()), "min_value": a, "max_value": b}


def _verify_value(fn, case):
    grads, lo, hi = case["grads"], case["min_value"], case["max_value"]
    got = _as_list(fn(grads, lo, hi), len(grads), "clip_grads_by_value(grads, min_value, max_value)")
    for i, (g, r) in enumerate(zip(grads, got)):
        want = np.minimum(np.maximum(g, g.dtype.type(lo)), g.dtype.type(hi))
        expect_equal(r, want, f"grads[{i}]: clip(g, min_value={lo!r}, max_value={hi!r}), dtype kept")


def _hand_list(name, case, call, want, want_total=None, rtol=0.0):
    """A hand-worked case whose result is a list of arrays (and, for the global norm, the total)."""
    def verify(fn, c):
        got = call(fn, c)
        if want_total is not None:
            got, total = expect_pair(got, 2, name)
            expect_close(as_array(total, "total"), want_total, f"{name}: total", rtol=rtol)
        got = _as_list(got, len(want), name)
        for i, (r, w) in enumerate(zip(got, want)):
            expect_close(r, np.asarray(w), f"{name}: grads[{i}]", rtol=rtol)
    return Law(f"worked value: {name}", "a case worked out by hand", st.just(case), verify, 1)


def _value_call(fn, c):
    return fn(c["grads"], c["min_value"], c["max_value"])


def clip_value_laws() -> tuple:
    """The laws and worked values of ``clip_value``: a tuple of :class:`~nnref.laws.core.Law`."""
    ex = {"grads": [np.array([-3.0, -0.5, 0.25, 4.0])], "min_value": -1.0, "max_value": 0.5}
    odd = np.array([-5.0, -0.5, 0.5, 5.0, np.inf, -np.inf, np.nan])
    return (
        Law("clip each entry", "every entry clipped to [min_value, max_value] (not symmetric), inside "
            "unchanged, dtype kept, one array per gradient (none for none)", _value_cases(), _verify_value, 40),
        worked("[-3, -0.5, 0.25, 4] to [-1, 0.5]", ex, _verify_value),
        _hand_list("[-7, 0.5, 3, -2] to [-2, 2]: -2 on the bound stays", {"grads": [np.array([-7.0, 0.5, 3.0, -2.0])],
                   "min_value": -2.0, "max_value": 2.0}, _value_call, [[-2.0, 0.5, 2.0, -2.0]]),
        _hand_list("infinities are clamped, NaN stays NaN; [-1, 2]", {"grads": [odd], "min_value": -1.0,
                   "max_value": 2.0}, _value_call, [[-1.0, -0.5, 0.5, 2.0, 2.0, -1.0, np.nan]]),
        _hand_list("an open upper bound: [0, inf]", {"grads": [odd], "min_value": 0.0, "max_value": np.inf},
                   _value_call, [[0.0, 0.0, 0.5, 5.0, np.inf, 0.0, np.nan]]),
        _hand_list("the range [0, 0] zeroes everything", {"grads": [np.array([3.0, -1.0])], "min_value": 0.0,
                   "max_value": 0.0}, _value_call, [[0.0, 0.0]]),
        unchanged_law(_value_cases(), lambda fn, c: fn(c["grads"], c["min_value"], c["max_value"])),
    )


# ---------------------------------------------------------------- by norm (TensorFlow)

@st.composite
def _norm_cases(draw):
    g = draw(arrays((draw(st.integers(1, 6)),)))
    if draw(st.integers(0, 5)) == 0:
        g = np.zeros_like(g)
    n = exact_norm([g])
    max_norm = draw(st.one_of(floats(1e-3, 20.0), st.sampled_from([n if n > 0 else 1.0, 1.0])))
    return {"g": g, "max_norm": max_norm}


def _verify_norm(fn, case):
    g, c = case["g"], case["max_norm"]
    got = fn(g, c)
    n = exact_norm([g])
    want = g * (c / max(n, c))
    expect_close(got, want, f"g * max_norm / max(||g||, max_norm), ||g|| = {n!r}", rtol=1e-12, atol=1e-300)
    expect_true(exact_norm([as_array(got, "result")]) <= c * (1 + 1e-12), "the result's norm exceeds max_norm")


def clip_norm_laws() -> tuple:
    """The laws and worked values of ``clip_norm``: a tuple of :class:`~nnref.laws.core.Law`."""
    ex = {"g": np.array([3.0, 4.0]), "max_norm": 1.0}
    return (
        Law("TensorFlow's rule", "g * max_norm / max(||g||_2, max_norm): norm at most max_norm, direction "
            "kept, unchanged below it, zero stays zero", _norm_cases(), _verify_norm, 40),
        worked("[3, 4] to norm 1: [0.6, 0.8]", ex, _verify_norm),
        by_hand("[0, 0, 12] to norm 1: times 1/12", {"g": np.array([0.0, 0.0, 12.0]), "max_norm": 1.0},
                lambda fn, c: fn(c["g"], c["max_norm"]), np.array([0.0, 0.0, 1.0]), rtol=1e-15),
        by_hand("norm exactly max_norm = 5: unchanged, bit for bit", {"g": np.array([3.0, 4.0]), "max_norm": 5.0},
                lambda fn, c: fn(c["g"], c["max_norm"]), np.array([3.0, 4.0])),
        by_hand("max_norm 0 zeroes the tensor", {"g": np.array([1.0, -1.0]), "max_norm": 0.0},
                lambda fn, c: fn(c["g"], c["max_norm"]), np.array([0.0, 0.0])),
        by_hand("a zero tensor with max_norm 0 stays zero (no 0 / 0)", {"g": np.zeros(2), "max_norm": 0.0},
                lambda fn, c: fn(c["g"], c["max_norm"]), np.array([0.0, 0.0])),
        by_hand("an infinite norm: finite entries to 0, the infinite one to NaN",
                {"g": np.array([np.inf, 1.0]), "max_norm": 1.0}, lambda fn, c: fn(c["g"], c["max_norm"]),
                np.array([np.nan, 0.0])),
        by_hand("a NaN norm: every entry NaN", {"g": np.array([np.nan, 1.0]), "max_norm": 1.0},
                lambda fn, c: fn(c["g"], c["max_norm"]), np.array([np.nan, np.nan])),
        unchanged_law(_norm_cases(), lambda fn, c: fn(c["g"], c["max_norm"])),
    )


# ---------------------------------------------------------------- by global norm (PyTorch)

@st.composite
def _global_cases(draw):
    grads = draw(_grad_list())
    total = exact_norm(grads)
    max_norm = draw(st.one_of(floats(1e-4, 30.0), st.sampled_from([total, total * (1 + 1e-7), 1e-4, 0.0])))
    eps = draw(st.sampled_from([1e-6, 1e-6, 0.0, 1e-3, 0.5]))
    return {"grads": grads, "max_norm": max_norm, "eps": eps}


@st.composite
def _float32_extremes(draw):
    grads = [draw(tiny_or_huge_float32(draw(st.integers(1, 6)))) for _ in range(draw(st.integers(1, 2)))]
    return {"grads": grads, "max_norm": draw(st.sampled_from([1.0, 1e-5, 1e5])), "eps": 1e-6}


@st.composite
def _below_cases(draw):
    grads = [g for g in draw(_grad_list()) if np.any(g)] or [np.array([1.0, -2.0])]
    max_norm = draw(floats(0.1, 1e3))
    n = exact_norm(grads)
    return {"grads": [(g * (0.5 * max_norm / n)).astype(g.dtype) for g in grads], "max_norm": max_norm, "eps": 1e-6}


def _verify_below(fn, case):
    clipped, _ = expect_pair(fn(case["grads"], case["max_norm"], eps=case["eps"]), 2, "clip_grads_by_global_norm")
    for i, (g, r) in enumerate(zip(case["grads"], _as_list(clipped, len(case["grads"]), "clipped"))):
        expect_equal(r, g, f"grads[{i}]: below the threshold (total about max_norm / 2) it comes back bit for bit")


def _global_call(fn, c):
    return fn(c["grads"], c["max_norm"], eps=c["eps"])


def _global_hand_laws() -> tuple:
    coef = 5.0 / 13.000001  # total sqrt(9 + 16 + 144) = 13; coef = 5 / (13 + 1e-6)
    both = [np.array([np.inf, 1.0]), np.array([2.0])]
    return (
        _hand_list("[3, 4] and [0, 0, 12]: total 13, scaled by 5 / 13.000001",
                   {"grads": [np.array([3.0, 4.0]), np.array([0.0, 0.0, 12.0])], "max_norm": 5.0, "eps": 1e-6},
                   _global_call, [[3.0 * coef, 4.0 * coef], [0.0, 0.0, 12.0 * coef]], 13.0),
        _hand_list("no gradients: none back, total 0", {"grads": [], "max_norm": 1.0, "eps": 1e-6}, _global_call,
                   [], 0.0),
        _hand_list("all zeros with eps = 0: unchanged, total 0 (no 0 / 0)",
                   {"grads": [np.zeros((2, 3)), np.zeros(3)], "max_norm": 1.0, "eps": 0.0}, _global_call,
                   [np.zeros((2, 3)), np.zeros(3)], 0.0),
        _hand_list("max_norm 0 zeroes everything", {"grads": [np.array([3.0, -4.0])], "max_norm": 0.0, "eps": 1e-6},
                   _global_call, [[0.0, 0.0]], 5.0),
        _hand_list("an infinite total: coef 0, so finite -> 0 and inf -> NaN (PyTorch)",
                   {"grads": both, "max_norm": 1.0, "eps": 1e-6}, _global_call, [[np.nan, 0.0], [0.0]], np.inf),
        _hand_list("a NaN total: every entry NaN", {"grads": [np.array([np.nan, 1.0]), np.array([2.0])],
                   "max_norm": 1.0, "eps": 1e-6}, _global_call, [[np.nan, np.nan], [np.nan]], np.nan),
    )


def _verify_global(fn, case):
    grads, c, eps = case["grads"], case["max_norm"], case["eps"]
    clipped, total = expect_pair(fn(grads, c, eps=eps), 2, "clip_grads_by_global_norm(grads, max_norm, eps)")
    clipped = _as_list(clipped, len(grads), "clipped")
    want_total = exact_norm(grads)
    f32 = any(g.dtype == np.float32 for g in grads)
    # float64 totals below 1e-150 have squares in float64's subnormal range: there a plain
    # float64 sum of squares is accepted as well as the exact norm
    expect_close(as_array(total, "total"), want_total, "total = sqrt(sum of all squares), before clipping",
                 rtol=2e-6 if f32 else 1e-12, atol=0.0 if f32 else 1e-150)
    coef = 1.0 if want_total + eps == 0 else min(c / (want_total + eps), 1.0)
    for i, (g, r) in enumerate(zip(grads, clipped)):
        want = (g.astype(np.float64) * coef).astype(g.dtype)
        expect_close(r, want, f"grads[{i}] * min(max_norm / (total + eps), 1) with max_norm={c!r}, eps={eps!r}",
                     rtol=2e-6 if f32 else 1e-12, atol=1e-44 if f32 else 1e-300, dtype=True)


def clip_global_norm_laws() -> tuple:
    """The laws and worked values of ``clip_global_norm``: a tuple of :class:`~nnref.laws.core.Law`."""
    at_threshold = {"grads": [np.array([3.0]), np.array([4.0])], "max_norm": 5.0, "eps": 1e-6}
    below = {"grads": [np.array([0.3, -0.4])], "max_norm": 1.0, "eps": 1e-6}
    return (
        Law("PyTorch's rule", "coef = min(max_norm / (total + eps), 1) times every gradient; total is "
            "the norm before clipping", _global_cases(), _verify_global, 50),
        Law("float32 range", "float32 gradients from 1e-30 (squares underflow) to 1e30 (squares "
            "overflow) get the exact total", _float32_extremes(), _verify_global, 25),
        worked("total exactly max_norm = 5 is still scaled by 5 / (5 + 1e-6)", at_threshold, _verify_global),
        worked("below the threshold nothing changes (clamped at 1)", below, _verify_global),
        Law("below the threshold", "gradients of total norm max_norm / 2 come back bit for bit (coef exactly 1)",
            _below_cases(), _verify_below, 20),
        *_global_hand_laws(),
        unchanged_law(_global_cases(), lambda fn, c: fn(c["grads"], c["max_norm"], eps=c["eps"])),
    )


# ---------------------------------------------------------------- AGC

@st.composite
def _agc_cases(draw):
    shape = draw(st.one_of(st.tuples(st.integers(1, 4)), st.tuples(st.integers(1, 4), st.integers(1, 4))))
    w = draw(arrays(shape, -2.0, 2.0))
    if draw(st.integers(0, 4)) == 0:
        w = np.zeros(shape)  # zero-initialised parameters: eps keeps them moving
    return {"w": w, "g": draw(arrays(shape, -2.0, 2.0)),
            "clipping": draw(st.sampled_from([0.01, 0.1, 0.5, 2.0])),
            "eps": draw(st.sampled_from([1e-3, 1e-3, 0.1, 1.0]))}


def _agc_oracle(w, g, clipping, eps):
    out = g.astype(np.float64).copy()
    units = [(slice(None), j) for j in range(w.shape[1])] if w.ndim == 2 else [(j,) for j in range(w.size)]
    for u in units:
        limit = clipping * max(exact_norm([w[u]]), eps)
        gn = exact_norm([g[u]])
        if gn > limit:
            out[u] = g[u] * (limit / gn)
    return out


def _verify_agc(fn, case):
    w, g, c, eps = case["w"], case["g"], case["clipping"], case["eps"]
    got = fn(w, g, clipping=c, eps=eps)
    unit = "each column of W" if w.ndim == 2 else "each entry of the bias"
    expect_close(got, _agc_oracle(w, g, c, eps), f"per unit ({unit}): g_i * limit_i / ||g_i|| where "
                 f"||g_i|| > limit_i = clipping * max(||w_i||, eps)", rtol=1e-12, atol=1e-300)


def _agc_call(fn, c):
    return fn(c["w"], c["g"], clipping=c["clipping"], eps=c["eps"])


def agc_laws() -> tuple:
    """The laws and worked values of ``agc``: a tuple of :class:`~nnref.laws.core.Law`."""
    cols = {"w": np.array([[3.0, 0.0], [4.0, 0.0]]), "g": np.array([[1.0, 0.0], [0.0, 1.0]]),
            "clipping": 0.1, "eps": 1e-3}
    bias = {"w": np.array([1.0, 0.0]), "g": np.array([1.0, -1.0]), "clipping": 0.5, "eps": 1e-3}
    return (
        Law("unit-wise rule", "each unit's gradient is scaled to at most clipping * max(||w_unit||, eps); "
            "units within the limit are unchanged", _agc_cases(), _verify_agc, 50),
        worked("columns are units: W columns of norm 5 and 0", cols, _verify_agc),
        worked("a bias: each entry its own unit", bias, _verify_agc),
        # W columns of norm 5 and 1, clipping 0.1: limits 0.5 and 0.1; G column 0 has norm
        # 0.5 (not above: unchanged), column 1 norm 1 (times 0.1)
        by_hand("limits 0.5 and 0.1: [[0.3, 1], [0.4, 0]] -> [[0.3, 0.1], [0.4, 0]]",
                {"w": np.array([[3.0, 0.0], [4.0, 1.0]]), "g": np.array([[0.3, 1.0], [0.4, 0.0]]), "clipping": 0.1,
                 "eps": 1e-3}, _agc_call, np.array([[0.3, 0.1], [0.4, 0.0]]), rtol=1e-15),
        # b = 0: each entry's limit is 0.1 * max(0, 1e-3) = 1e-4
        by_hand("a zero bias: limit 0.1 * eps = 1e-4 per entry", {"w": np.zeros(2), "g": np.array([3e-4, 4e-4]),
                "clipping": 0.1, "eps": 1e-3}, _agc_call, np.array([1e-4, 1e-4]), rtol=1e-12),
        by_hand("a (1, 2) weight: two columns, limits 0.3 and 0.4", {"w": np.array([[3.0, 4.0]]),
                "g": np.array([[0.0, 1.0]]), "clipping": 0.1, "eps": 1e-3}, _agc_call, np.array([[0.0, 0.4]]),
                rtol=1e-15),
        # column 0's norm is NaN and NaN > limit is False: left as it is; column 2 ([3, 4],
        # norm 5 > 0.1 sqrt 2) scaled; the NaN does not spread
        by_hand("a NaN unit is left alone, the others clipped", {"w": np.ones((2, 3)),
                "g": np.array([[np.nan, 0.0, 3.0], [1.0, 0.0, 4.0]]), "clipping": 0.1, "eps": 1e-3}, _agc_call,
                np.array([[np.nan, 0.0, 3.0 * 0.1 * math.sqrt(2) / 5], [1.0, 0.0, 4.0 * 0.1 * math.sqrt(2) / 5]]),
                rtol=1e-15),
        unchanged_law(_agc_cases(), lambda fn, c: fn(c["w"], c["g"], clipping=c["clipping"], eps=c["eps"])),
    )
