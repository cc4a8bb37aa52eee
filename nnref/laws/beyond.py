"""Laws of the formulas beyond round-to-nearest (tutorial 08): AdaRound's rectified sigmoid
and rounding regulariser, cross-layer equalization's scales, LSQ's straight-through
gradients and PACT's backward pass.

Oracles are written entry by entry in Python floats (``math``, ``math.fsum`` for sums),
sharing no code with nnref's vectorised functions.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nnref.laws.compare import as_array, expect_close, expect_equal, expect_pair, expect_true
from nnref.laws.core import Law
from nnref.laws.strategies import arrays, floats, shapes2
from nnref.laws.training import by_hand, unchanged_law, worked

__all__ = ["rectified_sigmoid_laws", "adaround_regularizer_laws", "equalization_scales_laws", "lsq_grad_laws",
           "pact_backward_laws"]


# ---------------------------------------------------------------- AdaRound

_STRETCHES = st.sampled_from([(1.1, -0.1), (1.1, -0.1), (1.2, -0.2), (1.05, -0.05), (1.5, -0.3)])


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))


@st.composite
def _v_cases(draw):
    edges = st.sampled_from([0.0, -0.0, 3.0, -3.0, 1000.0, -1000.0, 2.4, -2.4])
    V = draw(hnp.arrays(np.float64, draw(shapes2(3, 4)), elements=st.one_of(edges, floats(-12.0, 12.0))))
    zeta, gamma = draw(_STRETCHES)
    return {"V": V, "zeta": zeta, "gamma": gamma}


def _verify_rectified(fn, case):
    V, z, g = case["V"], case["zeta"], case["gamma"]
    want = np.array([min(max(_sigmoid(float(v)) * (z - g) + g, 0.0), 1.0) for v in V.ravel()]).reshape(V.shape)
    got = expect_close(fn(V, zeta=z, gamma=g), want, f"h = clamp(sigmoid(V) (zeta - gamma) + gamma, 0, 1), "
                       f"zeta = {z}, gamma = {g}", rtol=1e-12, atol=1e-15)
    expect_true(np.all((got >= 0) & (got <= 1)), "h must lie in [0, 1]", want, got)


def rectified_sigmoid_laws() -> tuple:
    call = lambda fn, c: fn(c["V"], zeta=c["zeta"], gamma=c["gamma"])  # noqa: E731
    return (
        Law("eq. 23", "h(V) = clamp(sigmoid(V) (zeta - gamma) + gamma, 0, 1): stretched, then clipped, for "
            "every stretch (zeta > 1, gamma < 0) and |V| up to 1000", _v_cases(), _verify_rectified, 40),
        # sigmoid(0) = 1/2: 1/2 (1.2) - 0.1 = 0.5; sigmoid(+-10) is within 5e-5 of 1 and 0,
        # so the stretched values 1.0999 and -0.0999 are clipped to exactly 1 and 0
        by_hand("V = 0 -> 1/2; V = +-10 -> exactly 1 and 0 (clipped)", {"V": np.array([0.0, 10.0, -10.0]),
                "zeta": 1.1, "gamma": -0.1}, call, np.array([0.5, 1.0, 0.0]), rtol=1e-15),
        worked("the stretch (1.5, -0.3) at V = +-1", {"V": np.array([[1.0, -1.0]]), "zeta": 1.5, "gamma": -0.3},
               _verify_rectified),
        unchanged_law(_v_cases(), call),
    )


@st.composite
def _h_cases(draw):
    edges = st.sampled_from([0.0, 1.0, 0.5, 0.25, 0.75, 1e-9, 1 - 1e-9])
    h = draw(hnp.arrays(np.float64, draw(shapes2(4, 4)), elements=st.one_of(edges, floats(0.0, 1.0))))
    beta = draw(st.one_of(st.sampled_from([1.0, 2.0, 2.5, 10.0, 20.0]), floats(1.0, 20.0)))
    return {"h": h, "beta": beta}


def _verify_regularizer(fn, case):
    h, beta = case["h"], case["beta"]
    want = math.fsum(1.0 - abs(2.0 * float(v) - 1.0) ** beta for v in h.ravel())
    got = as_array(fn(h, beta), "f_reg")
    expect_true(got.shape == (), f"f_reg: expected one number (a sum over all weights), got shape {got.shape}",
                want, got)
    expect_close(got, want, f"f_reg = sum_ij 1 - |2 h_ij - 1|^beta, beta = {beta!r}", rtol=1e-12,
                 atol=1e-12 * h.size)


def adaround_regularizer_laws() -> tuple:
    call = lambda fn, c: fn(c["h"], c["beta"])  # noqa: E731
    return (
        Law("eq. 24", "f_reg = sum over all weights of 1 - |2h - 1|^beta, for every beta >= 1",
            _h_cases(), _verify_regularizer, 40),
        by_hand("h = 1/2 costs 1 per weight: two weights, beta 20 -> 2", {"h": np.array([[0.5, 0.5]]), "beta": 20.0},
                call, 2.0),
        by_hand("decided weights (h = 0 or 1) cost exactly 0", {"h": np.array([[0.0, 1.0], [1.0, 0.0]]), "beta": 2.0},
                call, 0.0),
        # beta = 2: 1 - (2 h - 1)^2 = 1 - 1/4 at h = 1/4 and 3/4
        by_hand("beta = 2, h = [1/4, 3/4]: 3/4 + 3/4 = 1.5", {"h": np.array([[0.25, 0.75]]), "beta": 2.0}, call, 1.5),
        unchanged_law(_h_cases(), call),
    )


# ---------------------------------------------------------------- cross-layer equalization

@st.composite
def _range_cases(draw):
    n = draw(st.integers(1, 6))
    ranges = st.one_of(st.sampled_from([0.0, 1.0, 4.0, 1e-3, 100.0]), floats(0.0, 50.0))
    r1 = np.array(draw(st.lists(ranges, min_size=n, max_size=n)))
    r2 = np.array(draw(st.lists(ranges, min_size=n, max_size=n)))
    return {"r1": r1, "r2": r2}


def _verify_scales(fn, case):
    r1, r2 = case["r1"], case["r2"]
    want = np.array([math.sqrt(a * b) / b if a > 0 and b > 0 else 1.0 for a, b in zip(r1, r2)])
    got = expect_close(fn(r1, r2), want, "s_i = sqrt(r1_i r2_i) / r2_i, 1 where r1_i or r2_i is 0", rtol=1e-12)
    alive = (r1 > 0) & (r2 > 0)
    expect_close(r1[alive] / got[alive], r2[alive] * got[alive], "after scaling both layers' ranges equal "
                 "sqrt(r1 r2): r1 / s = r2 s", rtol=1e-12)


def equalization_scales_laws() -> tuple:
    call = lambda fn, c: fn(c["r1"], c["r2"])  # noqa: E731
    return (
        Law("Nagel et al. 2019, 4.1", "s = sqrt(r1 r2) / r2 per channel, so r1 / s = r2 s = sqrt(r1 r2); a dead "
            "channel (a range 0) keeps s = 1", _range_cases(), _verify_scales, 40),
        # sqrt(4 * 1) / 1 = 2: ranges 4 / 2 = 2 and 1 * 2 = 2; sqrt(1 * 4) / 4 = 1/2
        by_hand("r1 = [4, 1], r2 = [1, 4]: s = [2, 1/2]", {"r1": np.array([4.0, 1.0]), "r2": np.array([1.0, 4.0])},
                call, np.array([2.0, 0.5])),
        by_hand("dead channels keep 1: r1 = [0, 3], r2 = [5, 0]", {"r1": np.array([0.0, 3.0]), "r2": np.array([5.0, 0.0])},
                call, np.array([1.0, 1.0])),
        unchanged_law(_range_cases(), call),
    )


# ---------------------------------------------------------------- LSQ and PACT

_LSQ_GRIDS = st.sampled_from([(8, 7), (4, 3), (1, 1), (128, 127), (0, 15), (0, 255), (2, 1)])


def _round_away(v: float) -> float:
    return math.copysign(math.floor(abs(v) + 0.5), v)


@st.composite
def _lsq_cases(draw):
    qn, qp = draw(_LSQ_GRIDS)
    rows, cols = draw(shapes2(3, 4))
    per_column = draw(st.booleans())
    steps = st.one_of(st.sampled_from([1.0, 0.5, 0.25, 2.0]), floats(0.01, 2.0))
    s = np.array([draw(steps) for _ in range(cols)]) if per_column else draw(steps)
    k = draw(arrays((rows, cols), -qn - 3.0, qp + 3.0)).round()
    kind = draw(st.integers(0, 2))
    if kind == 0:  # ties k + 1/2 (exact for power-of-two steps) and the ends of the grid
        v = (k + draw(st.sampled_from([0.5, 0.0, -0.5]))) * np.asarray(s)
    else:
        v = draw(arrays((rows, cols), -(qn + 3) * 2.0, (qp + 3) * 2.0))
    return {"v": v, "s": s, "qn": qn, "qp": qp}


def _lsq_oracle(v, s, qn, qp):
    r = v / s  # the quotient as any implementation computes it, then entry by entry
    dv = np.array([1.0 if -qn < x < qp else 0.0 for x in r.ravel()]).reshape(r.shape)
    ds = np.array([(_round_away(x) - x) if -qn < x < qp else (-qn if x <= -qn else qp) for x in r.ravel()])
    return dv, ds.reshape(r.shape)


def _verify_lsq(fn, case):
    v, s, qn, qp = case["v"], case["s"], case["qn"], case["qp"]
    dv, ds = expect_pair(fn(v, s, qn, qp), 2, "lsq_grad(v, s, qn, qp)")
    want_dv, want_ds = _lsq_oracle(v, s, qn, qp)
    expect_equal(dv, want_dv, f"d v_hat / d v = 1 where -Q_N < v / s < Q_P (strictly), else 0 (Q_N = {qn}, "
                 f"Q_P = {qp})", dtype=False)
    expect_close(ds, want_ds, "d v_hat / d s = round(v / s) - v / s inside (half away from zero), -Q_N below, "
                 "Q_P above", rtol=0.0, atol=1e-12)


def lsq_grad_laws() -> tuple:
    ex = {"v": np.array([[-5.0, -4.0, -0.5, 0.5, 2.5, 3.0, 4.0]]), "s": 1.0, "qn": 4, "qp": 3}
    return (
        Law("eq. 3", "the straight-through gradients: d/dv is 1 strictly inside the range, d/ds is "
            "round(v/s) - v/s inside and -Q_N or Q_P outside; per tensor or per column step",
            _lsq_cases(), _verify_lsq, 50),
        # inside only -0.5, 0.5, 2.5; ds: -4, -4 (at the end), round_away(-0.5) + 0.5 = -0.5,
        # 0.5, 3 - 2.5 = 0.5, then Q_P = 3 at and above the top
        by_hand("s = 1, grid [-4, 3]: ties round away, the ends count as outside", ex,
                lambda fn, c: fn(c["v"], c["s"], c["qn"], c["qp"]),
                (np.array([[0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0]]), np.array([[-4.0, -4.0, -0.5, 0.5, 0.5, 3.0, 3.0]]))),
        unchanged_law(_lsq_cases(), lambda fn, c: fn(c["v"], c["s"], c["qn"], c["qp"])),
    )


@st.composite
def _pact_cases(draw):
    shape = draw(shapes2(3, 5))
    alpha = draw(st.one_of(st.sampled_from([1.0, 6.0, 0.5]), floats(0.1, 8.0)))
    edges = st.sampled_from([0.0, -0.0, alpha, -alpha, 2 * alpha])
    x = draw(hnp.arrays(np.float64, shape, elements=st.one_of(edges, floats(-10.0, 10.0))))
    return {"grad_out": draw(arrays(shape, -5.0, 5.0)), "x": x, "alpha": alpha}


def _verify_pact(fn, case):
    g, x, a = case["grad_out"], case["x"], case["alpha"]
    dx, da = expect_pair(fn(g, x, a), 2, "pact_backward(grad_out, x, alpha)")
    expect_equal(dx, np.where((x >= 0) & (x < a), g, 0.0), "dL/dx = grad_out where 0 <= x < alpha, else 0",
                 dtype=False)
    want = math.fsum(float(gi) for gi, xi in zip(g.ravel(), x.ravel()) if xi >= a)
    expect_close(as_array(da, "dL/dalpha"), want, "dL/dalpha = sum of grad_out where x >= alpha (clipped)",
                 rtol=1e-12, atol=1e-12)


def pact_backward_laws() -> tuple:
    ex = {"grad_out": np.array([1.0, 2.0, 3.0, 4.0, 5.0]), "x": np.array([-1.0, 0.0, 0.5, 1.0, 2.0]), "alpha": 1.0}
    return (
        Law("eq. 3", "dL/dx passes where 0 <= x < alpha; dL/dalpha sums grad_out where x >= alpha",
            _pact_cases(), _verify_pact, 40),
        # x = 0 passes (the clamp at 0 is not active), x = alpha does not (it is clipped)
        by_hand("alpha = 1, x = [-1, 0, 0.5, 1, 2]: dx = [0, 2, 3, 0, 0], dalpha = 4 + 5", ex,
                lambda fn, c: fn(c["grad_out"], c["x"], c["alpha"]), (np.array([0.0, 2.0, 3.0, 0.0, 0.0]), 9.0)),
        unchanged_law(_pact_cases(), lambda fn, c: fn(c["grad_out"], c["x"], c["alpha"])),
    )
