"""Laws of the optimizer updates: PyTorch's SGD (momentum, dampening, Nesterov, weight decay)
and Adam (bias correction at each parameter's own step).

The oracle is PyTorch's documented algorithm, written out here in float64, step by step.
Every trajectory feeds the oracle's state (not the function's) into the next step, so each
step is judged on its own.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from nnref.laws.compare import expect_close, expect_pair, expect_true
from nnref.laws.core import Law
from nnref.laws.strategies import arrays, floats
from nnref.laws.training import by_hand, unchanged_law, worked

__all__ = ["sgd_laws", "adam_laws", "sgd_oracle", "adam_oracle"]


def sgd_oracle(p, g, buf, lr, momentum, dampening, nesterov, weight_decay):
    """``torch.optim.SGD``'s documented step for one parameter."""
    d = g + weight_decay * p
    if momentum != 0:
        buf = d.copy() if buf is None else momentum * buf + (1 - dampening) * d
        d = d + momentum * buf if nesterov else buf
    else:
        buf = None
    return p - lr * d, buf


def adam_oracle(p, g, m, v, step, lr, beta1, beta2, eps, weight_decay):
    """``torch.optim.Adam``'s documented step (L2 weight decay) at the parameter's step ``t``."""
    d = g + weight_decay * p
    m = beta1 * m + (1 - beta1) * d
    v = beta2 * v + (1 - beta2) * d * d
    m_hat = m / (1 - beta1**step)
    v_hat = v / (1 - beta2**step)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


@st.composite
def _sgd_cases(draw, steps: int = 3):
    momentum = draw(st.one_of(st.sampled_from([0.0, 0.5, 0.9]), floats(0.0, 0.99)))
    nesterov = momentum > 0 and draw(st.booleans())
    n = draw(st.integers(1, 6))
    return {
        "p": draw(arrays((n,))),
        "grads": [draw(arrays((n,))) for _ in range(steps)],
        "lr": draw(st.sampled_from([1e-3, 0.01, 0.1, 0.5, 1.0])),
        "momentum": momentum,
        "dampening": 0.0 if nesterov else draw(st.sampled_from([0.0, 0.1, 0.5, 1.0])),
        "nesterov": nesterov,
        "weight_decay": draw(st.sampled_from([0.0, 0.01, 0.1, 0.5])),
    }


def _sgd_options(case):
    return {k: case[k] for k in ("momentum", "dampening", "nesterov", "weight_decay")}


def _verify_sgd(fn, case):
    p, buf, lr, opts = case["p"], None, case["lr"], _sgd_options(case)
    for t, g in enumerate(case["grads"], start=1):
        want_p, want_buf = sgd_oracle(p, g, buf, lr, **opts)
        got_p, got_buf = expect_pair(fn(p, g, buf, lr, **opts), 2, f"step {t}: sgd_update(...)")
        atol = 1e-12 * (1 + np.abs(p).max() + np.abs(g).max() + (0 if buf is None else np.abs(buf).max()))
        expect_close(got_p, want_p, f"step {t}: p_new (PyTorch SGD with {opts})", rtol=1e-12, atol=atol)
        if want_buf is None:
            expect_true(got_buf is None, f"step {t}: buf_new: expected None when momentum == 0",
                        None, got_buf)
        else:
            expect_true(got_buf is not None, f"step {t}: buf_new: expected the momentum buffer, got None",
                        want_buf, None)
            expect_close(got_buf, want_buf, f"step {t}: buf_new, the momentum buffer ({opts})",
                         rtol=1e-12, atol=atol)
        p, buf = want_p, want_buf


# The hand-worked trajectories of the tests of old: lr = 0.1 from
#   p0 = [1, -2] with g1 = [0.5, -1], g2 = [1, 2], g3 = [-0.5, 0]
_P0 = np.array([1.0, -2.0])
_GRADS = [np.array([0.5, -1.0]), np.array([1.0, 2.0]), np.array([-0.5, 0.0])]


def _sgd_run(fn, c):
    """Three steps with the function's own buffer; returns (p1, p2, p3, last buffer)."""
    p, buf, trace = c["p"], None, []
    for g in c["grads"]:
        p, buf = expect_pair(fn(p, g, buf, c["lr"], **_sgd_options(c)), 2, "sgd_update(...)")
        trace.append(p)
    return (*trace, buf)


def _sgd_hand(name, opts, want, buf):
    case = {"p": _P0, "grads": _GRADS, "lr": 0.1, "momentum": 0.0, "dampening": 0.0, "nesterov": False,
            "weight_decay": 0.0, **opts}
    return by_hand(name, case, _sgd_run, (*[np.array(w) for w in want], buf), rtol=1e-14)


def _sgd_hand_laws() -> tuple:
    return (
        # p <- p - lr g: [0.95, -1.9], [0.85, -2.1], [0.9, -2.1]; no buffer
        _sgd_hand("plain SGD, three steps by hand", {}, [[0.95, -1.9], [0.85, -2.1], [0.9, -2.1]], None),
        # b1 = g1, b2 = 0.9 b1 + g2 = [1.45, 1.1], b3 = [0.805, 0.99]; p -= 0.1 b
        _sgd_hand("momentum 0.9, three steps by hand", {"momentum": 0.9},
                  [[0.95, -1.9], [0.805, -2.01], [0.7245, -2.109]], np.array([0.805, 0.99])),
        # the same buffers; steps g + 0.9 b: [0.95, -1.9], [2.305, 2.99], [0.2245, 0.891]
        _sgd_hand("Nesterov, three steps by hand", {"momentum": 0.9, "nesterov": True},
                  [[0.905, -1.81], [0.6745, -2.109], [0.65205, -2.1981]], np.array([0.805, 0.99])),
        # g' = g + 0.5 p: [1, -2], [1.45, 1.1], [-0.1225, -0.955]
        _sgd_hand("weight decay 0.5, three steps by hand", {"weight_decay": 0.5},
                  [[0.9, -1.8], [0.755, -1.91], [0.76725, -1.8145]], None),
        # b1 = g1 undamped; b2 = 0.9 b1 + 0.5 g2 = [0.95, 0.1]; b3 = [0.605, 0.09]
        _sgd_hand("dampening 0.5 skips the first step, by hand", {"momentum": 0.9, "dampening": 0.5},
                  [[0.95, -1.9], [0.855, -1.91], [0.7945, -1.919]], np.array([0.605, 0.09])),
    )


def sgd_laws() -> tuple:
    """The laws and worked values of ``sgd``: a tuple of :class:`~nnref.laws.core.Law`."""
    decay_into_buffer = {"p": np.array([1.0]), "grads": [np.array([1.0]), np.array([1.0])], "lr": 0.1,
                         "momentum": 0.9, "dampening": 0.0, "nesterov": False, "weight_decay": 0.5}
    dampened_first = {"p": np.array([0.0]), "grads": [np.array([2.0])], "lr": 1.0, "momentum": 0.9,
                      "dampening": 0.5, "nesterov": False, "weight_decay": 0.0}
    nesterov = {"p": np.array([0.0]), "grads": [np.array([1.0]), np.array([1.0])], "lr": 1.0,
                "momentum": 0.5, "dampening": 0.0, "nesterov": True, "weight_decay": 0.0}
    one = _sgd_cases(steps=1)
    return (
        Law("PyTorch's rule", "three steps from buf = None equal torch.optim.SGD's, for every "
            "combination of momentum, dampening, Nesterov and weight decay", _sgd_cases(), _verify_sgd, 60),
        worked("weight decay goes into the buffer: p = 1, g = 1, wd = 0.5, momentum 0.9", decay_into_buffer,
               _verify_sgd),
        worked("no dampening on the first step: buf = g = 2", dampened_first, _verify_sgd),
        worked("Nesterov: p -= lr (g + momentum buf)", nesterov, _verify_sgd),
        *_sgd_hand_laws(),
        unchanged_law(one, lambda fn, c: fn(c["p"], c["grads"][0], None, c["lr"], **_sgd_options(c))),
    )


@st.composite
def _adam_cases(draw, steps: int = 3):
    n = draw(st.integers(1, 5))
    first = draw(st.sampled_from([1, 1, 2, 3, 10, 1000]))
    magnitude = 10.0 ** draw(st.sampled_from([-7, -4, -1, 0]))
    fresh = first == 1
    return {
        "p": draw(arrays((n,))),
        "grads": [draw(arrays((n,))) * magnitude for _ in range(steps)],
        "m": np.zeros(n) if fresh else draw(arrays((n,))) * magnitude,
        "v": np.zeros(n) if fresh else np.abs(draw(arrays((n,)))) * magnitude**2,
        "step": first,
        "lr": draw(st.sampled_from([1e-3, 0.01, 0.1])),
        "beta1": draw(st.sampled_from([0.9, 0.0, 0.5, 0.99])),
        "beta2": draw(st.sampled_from([0.999, 0.9, 0.0, 0.5])),
        "eps": draw(st.sampled_from([1e-8, 1e-6, 1e-3, 0.1])),
        "weight_decay": draw(st.sampled_from([0.0, 0.01, 0.5])),
    }


_ADAM_OPTS = ("lr", "beta1", "beta2", "eps", "weight_decay")


def _verify_adam(fn, case):
    p, m, v, t = case["p"], case["m"], case["v"], case["step"]
    opts = {k: case[k] for k in _ADAM_OPTS}
    for i, g in enumerate(case["grads"]):
        want = adam_oracle(p, g, m, v, t + i, **opts)
        got = expect_pair(fn(p, g, m, v, t + i, **opts), 3, f"adam_update(..., step={t + i})")
        for name, w, r in zip(("p_new", "m_new", "v_new"), want, got):
            atol = 1e-13 * (1 + np.abs(w).max())
            expect_close(r, w, f"step t = {t + i}: {name} (PyTorch Adam with {opts})", rtol=1e-11, atol=atol)
        p, m, v = want


def _verify_first_step(fn, case):
    """Whatever happened before, a parameter's first step (t = 1, m = v = 0) moves each entry
    by lr * g / (|g| + eps): about lr, the point of the bias correction."""
    p, g = case["p"], case["grads"][0] + 0.5 * np.sign(case["grads"][0] + 1e-300)
    opts = {k: case[k] for k in _ADAM_OPTS}
    d = g + case["weight_decay"] * p
    got = expect_pair(fn(p, g, np.zeros_like(p), np.zeros_like(p), 1, **opts), 3, "adam_update(..., step=1)")
    expect_close(got[0], p - case["lr"] * d / (np.abs(d) + case["eps"]),
                 "first step moves each entry by lr d / (|d| + eps)", rtol=1e-11, atol=1e-13)


def _adam_run(fn, c):
    """Steps t = 1, 2, ... with the function's own state; returns (p1, ..., m, v)."""
    p, m, v, trace = c["p"], np.zeros_like(c["p"]), np.zeros_like(c["p"]), []
    for t, g in enumerate(c["grads"], start=1):
        p, m, v = expect_pair(fn(p, g, m, v, t, **{k: c[k] for k in _ADAM_OPTS}), 3, f"adam_update(..., step={t})")
        trace.append(p)
    return (*trace, m, v)


_ADAM_DEFAULTS = {"lr": 0.1, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}


def _adam_hand_laws() -> tuple:
    # t = 1: m_hat = g, v_hat = g^2: each entry moves by lr g / (|g| + eps)
    # t = 2: m = [0.145, 0.11], v = [0.00124975, 0.004999], corrections 0.19 and 0.001999
    # t = 3: m = [0.0805, 0.099], v = [0.00149850025, 0.004994001], corrections 0.271, 0.002997001
    three = (np.array([0.900000002, -1.900000001]), np.array([0.803481800639, -1.93661035347]),
             np.array([0.761472870876, -1.964910262]), np.array([0.0805, 0.099]),
             np.array([0.00149850025, 0.004994001]))
    # zero loss gradient, p0 = 2: only the L2 term g' = 0.5 p moves p
    decay = (np.array([1.900000001]), np.array([1.80016648763]), np.array([1.70062339434]))
    decay_case = {"p": np.array([2.0]), "grads": [np.zeros(1)] * 3, **_ADAM_DEFAULTS, "weight_decay": 0.5}
    zero = {"p": np.array([1.0, 2.0]), "grads": [np.array([0.0, 3.0])], **_ADAM_DEFAULTS}
    return (
        by_hand("three steps from p0 = [1, -2], lr 0.1, by hand", {"p": _P0, "grads": _GRADS, **_ADAM_DEFAULTS},
                _adam_run, three, rtol=1e-11),
        by_hand("weight decay 0.5 with zero gradients, three steps by hand", decay_case,
                lambda fn, c: _adam_run(fn, c)[:3], decay, rtol=1e-11),
        # entry 0: m_hat = 0 -> 0 / (0 + eps) = 0, exactly; entry 1 moves by 0.1 / (1 + eps / 3)
        by_hand("a zero gradient entry does not move", zero, lambda fn, c: _adam_run(fn, c)[0],
                np.array([1.0, 2.0 - 0.1 / (1 + 1e-8 / 3)]), rtol=1e-15),
    )


def adam_laws() -> tuple:
    """The laws and worked values of ``adam``: a tuple of :class:`~nnref.laws.core.Law`."""
    late = {"p": np.array([0.0]), "grads": [np.array([1.0])], "m": np.zeros(1), "v": np.zeros(1), "step": 1,
            "lr": 0.1, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}
    one = _adam_cases(steps=1)
    return (
        Law("PyTorch's rule", "three steps from any state (m, v, t) equal torch.optim.Adam's, for every "
            "combination of betas, eps and weight decay", _adam_cases(), _verify_adam, 60),
        Law("first step", "a parameter's first step (its own t = 1) moves each entry by about lr",
            _adam_cases(steps=1), _verify_first_step, 20),
        worked("first step of a parameter moves it by lr: 0 -> -0.1 (not 0.074)", late, _verify_adam),
        *_adam_hand_laws(),
        unchanged_law(one, lambda fn, c: fn(c["p"], c["grads"][0], c["m"], c["v"], c["step"],
                                            **{k: c[k] for k in _ADAM_OPTS})),
    )
