"""Laws of the training formulas: backward passes, the loss gradient, optimizers, clipping.

Each ``*_laws()`` returns the laws of one exercise. Where a law compares with an oracle,
the oracle is written here independently of nnref, entry by entry in float64 (``math.fsum``
for sums), so it shares no code with the function it checks.
"""

from __future__ import annotations

import copy
import math

import numpy as np
from hypothesis import strategies as st

from nnref.laws.compare import (as_array, expect_close, expect_equal, expect_pair, expect_true,
                                expect_unchanged)
from nnref.laws.core import Law
from nnref.laws.strategies import arrays, edgy_arrays, floats, shapes2

__all__ = [
    "linear_backward_laws", "relu_backward_laws", "leaky_relu_forward_laws", "leaky_relu_backward_laws",
    "tanh_backward_laws", "sigmoid_backward_laws", "cross_entropy_laws", "unchanged_law", "worked", "by_hand",
]


def unchanged_law(cases, call, max_examples: int = 15) -> Law:
    """The function returns new arrays and leaves its inputs as they were."""
    def verify(fn, case):
        saved = copy.deepcopy(case)
        call(fn, case)
        expect_unchanged(saved, case)
    return Law("inputs unchanged", "returns new arrays; never modifies its inputs", cases, verify, max_examples)


def worked(name: str, case: dict, verify) -> Law:
    """A worked value: one fixed case."""
    return Law(f"worked value: {name}", "one fixed case, against the law's oracle", st.just(case), verify, 1)


def by_hand(name: str, case: dict, call, want, rtol: float = 0.0, atol: float = 0.0) -> Law:
    """A worked value whose result was worked out by hand (no oracle): ``call(fn, case)``
    must give ``want`` (a tuple for several results; ``None`` where ``None`` is due),
    exactly unless a tolerance is given."""
    def verify(fn, c):
        got = call(fn, c)
        wants = want if isinstance(want, tuple) else (want,)
        gots = expect_pair(got, len(wants), name) if isinstance(want, tuple) else (got,)
        for i, (g, w) in enumerate(zip(gots, wants)):
            what = name + (f" (result {i + 1} of {len(wants)})" if len(wants) > 1 else "")
            if w is None:
                expect_true(g is None, f"{what}: expected None", None, g)
            elif rtol or atol:
                expect_close(g, np.asarray(w), what, rtol=rtol, atol=atol)
            else:
                expect_equal(g, np.asarray(w), what, dtype=False)
    return Law(f"worked value: {name}", "a case worked out by hand", st.just(case), verify, 1)


# ---------------------------------------------------------------- linear and activations

@st.composite
def _linear_cases(draw):
    b, n_in = draw(shapes2(4, 5))
    n_out = draw(st.one_of(st.just(n_in), st.integers(1, 5)))  # square layers hide transposes
    return {"x": draw(arrays((b, n_in))), "W": draw(arrays((n_in, n_out))), "grad_out": draw(arrays((b, n_out)))}


def _fsum_dot(a, b) -> float:
    return math.fsum(float(u) * float(v) for u, v in zip(a, b))


def _verify_linear(fn, case):
    x, W, g = case["x"], case["W"], case["grad_out"]
    dx, dW, db = expect_pair(fn(x, W, g), 3, "linear_backward(x, W, grad_out)")
    B, n_in = x.shape
    n_out = W.shape[1]
    want_dx = np.array([[_fsum_dot(g[i], W[k]) for k in range(n_in)] for i in range(B)])
    want_dW = np.array([[_fsum_dot(x[:, k], g[:, j]) for j in range(n_out)] for k in range(n_in)])
    want_db = np.array([math.fsum(g[:, j]) for j in range(n_out)])
    scale = 1e-12 * (1 + np.abs(x).max() * np.abs(g).max() * B + np.abs(W).max() * np.abs(g).max() * n_out)
    expect_close(dW, want_dW, "dW = x^T g, dW[k, j] = sum_i x[i, k] g[i, j]", rtol=1e-12, atol=scale)
    expect_close(db, want_db, "db = sum over the batch of g", rtol=1e-12, atol=scale)
    expect_close(dx, want_dx, "dx = g W^T, dx[i, k] = sum_j g[i, j] W[k, j]", rtol=1e-12, atol=scale)


def linear_backward_laws() -> tuple:
    """The laws and worked values of ``linear_backward``: a tuple of :class:`~nnref.laws.core.Law`."""
    ex = {"x": np.array([[1.0, 2.0], [3.0, 4.0]]), "W": np.array([[1.0, 0.0, -1.0], [2.0, 1.0, 0.5]]),
          "grad_out": np.array([[1.0, -1.0, 2.0], [0.5, 0.0, -1.0]])}
    return (
        Law("chain rule", "dx = g W^T, dW = x^T g, db = sum over rows of g (each entry as a sum)",
            _linear_cases(), _verify_linear, 40),
        worked("2x2 input, 3 outputs", ex, _verify_linear),
        # dx = g W^T = [1 - 2, 2 - 1 + 1]; dW = x^T g; db = g summed over the batch
        by_hand("one row: dx = [-1, 2], dW = [[1, -1, 2], [2, -2, 4]], db = [1, -1, 2]",
                {"x": np.array([[1.0, 2.0]]), "W": ex["W"], "grad_out": np.array([[1.0, -1.0, 2.0]])},
                lambda fn, c: fn(c["x"], c["W"], c["grad_out"]),
                (np.array([[-1.0, 2.0]]), np.array([[1.0, -1.0, 2.0], [2.0, -2.0, 4.0]]), np.array([1.0, -1.0, 2.0]))),
        unchanged_law(_linear_cases(), lambda fn, c: fn(c["x"], c["W"], c["grad_out"])),
    )


@st.composite
def _elementwise(draw, slope: bool = False, positive_y: bool = False):
    shape = draw(shapes2(3, 5))
    case = {"x": draw(edgy_arrays(shape)), "grad_out": draw(arrays(shape))}
    if slope:
        case["alpha"] = draw(st.one_of(st.sampled_from([0.0, 0.01, 0.2, 1.0, 1.5, 3.0]), floats(0.0, 5.0)))
    return case


def _verify_relu_backward(fn, case):
    x, g = case["x"], case["grad_out"]
    got = fn(x, g)
    expect_equal(got, np.where(x > 0, g, 0.0), "dx = g where x > 0, else 0 (also at x = 0 and x = -0.0)", dtype=False)


def _verify_leaky_forward(fn, case):
    x, a = case["x"], case["alpha"]
    got = fn(x, a)
    expect_equal(got, np.where(x > 0, x, a * x), f"y = x if x > 0 else alpha x (alpha = {a!r})", dtype=False)


def _verify_leaky_backward(fn, case):
    x, g, a = case["x"], case["grad_out"], case["alpha"]
    got = fn(x, g, a)
    expect_equal(got, np.where(x > 0, g, a * g), f"dx = g if x > 0 else alpha g (alpha = {a!r})", dtype=False)


def relu_backward_laws() -> tuple:
    """The laws and worked values of ``relu_backward``: a tuple of :class:`~nnref.laws.core.Law`."""
    ex = {"x": np.array([[-1.0, 0.0, 2.0]]), "grad_out": np.array([[5.0, 6.0, 7.0]])}
    return (
        Law("mask", "dx = g * [x > 0]: the gradient passes where x > 0, and is 0 at x <= 0",
            _elementwise(), _verify_relu_backward, 40),
        worked("x = [-1, 0, 2]", ex, _verify_relu_backward),
        by_hand("x = [-2, 0, 3], g = 10: [0, 0, 10] (subgradient 0 at x = 0)",
                {"x": np.array([[-2.0, 0.0, 3.0]]), "grad_out": np.array([[10.0, 10.0, 10.0]])},
                lambda fn, c: fn(c["x"], c["grad_out"]), np.array([[0.0, 0.0, 10.0]])),
        unchanged_law(_elementwise(), lambda fn, c: fn(c["x"], c["grad_out"])),
    )


def leaky_relu_forward_laws() -> tuple:
    """The laws and worked values of ``leaky_relu_forward``: a tuple of :class:`~nnref.laws.core.Law`."""
    ex = {"x": np.array([[-2.0, 0.0, 3.0]]), "alpha": 2.0}
    return (
        Law("definition", "y = x where x > 0, alpha x elsewhere, for every alpha >= 0 (also > 1)",
            _elementwise(slope=True), _verify_leaky_forward, 40),
        worked("alpha = 2 (above 1): y(-2) = -4", ex, _verify_leaky_forward),
        by_hand("alpha = 0.25: [-2, 0, 3] -> [-0.5, 0, 3]", {"x": np.array([[-2.0, 0.0, 3.0]]), "alpha": 0.25},
                lambda fn, c: fn(c["x"], c["alpha"]), np.array([[-0.5, 0.0, 3.0]])),
        by_hand("integer input is not truncated: alpha = 0.5, -3 -> -1.5", {"x": np.array([[-3, 4]]), "alpha": 0.5},
                lambda fn, c: fn(c["x"], c["alpha"]), np.array([[-1.5, 4.0]])),
        unchanged_law(_elementwise(slope=True), lambda fn, c: fn(c["x"], c["alpha"])),
    )


def leaky_relu_backward_laws() -> tuple:
    """The laws and worked values of ``leaky_relu_backward``: a tuple of :class:`~nnref.laws.core.Law`."""
    ex = {"x": np.array([[-2.0, 0.0, 3.0]]), "grad_out": np.array([[1.0, 1.0, 1.0]]), "alpha": 2.0}
    return (
        Law("slopes", "dx = g where x > 0, alpha g where x <= 0, for every alpha >= 0 (also > 1)",
            _elementwise(slope=True), _verify_leaky_backward, 40),
        worked("alpha = 2, x = [-2, 0, 3]", ex, _verify_leaky_backward),
        by_hand("alpha = 0.25, g = 10: [2.5, 2.5, 10] (x = 0 takes the negative slope)",
                {"x": np.array([[-2.0, 0.0, 3.0]]), "grad_out": np.array([[10.0, 10.0, 10.0]]), "alpha": 0.25},
                lambda fn, c: fn(c["x"], c["grad_out"], c["alpha"]), np.array([[2.5, 2.5, 10.0]])),
        unchanged_law(_elementwise(slope=True), lambda fn, c: fn(c["x"], c["grad_out"], c["alpha"])),
    )


@st.composite
def _output_cases(draw, lo: float, hi: float):
    shape = draw(shapes2(3, 5))
    return {"y": draw(arrays(shape, lo, hi)), "grad_out": draw(arrays(shape))}


def _verify_tanh(fn, case):
    y, g = case["y"], case["grad_out"]
    expect_close(fn(y, g), g * (1 - y * y), "dx = g (1 - y^2), y = tanh(x) the forward's output",
                 rtol=1e-12, atol=1e-14)


def _verify_sigmoid(fn, case):
    y, g = case["y"], case["grad_out"]
    expect_close(fn(y, g), g * y * (1 - y), "dx = g y (1 - y), y = sigmoid(x) the forward's output",
                 rtol=1e-12, atol=1e-14)


def _verify_derivative(fn, case, forward, name):
    """Finite differences: (f(x + h) - f(x - h)) / 2h against the backward at y = f(x)."""
    x = np.array([-2.0, -0.5, 0.0, 0.3, 1.7])
    h = 1e-6
    numeric = (forward(x + h) - forward(x - h)) / (2 * h)
    expect_close(fn(forward(x), np.ones_like(x)), numeric, f"{name} matches central differences", rtol=1e-6, atol=1e-9)


def tanh_backward_laws() -> tuple:
    """The laws and worked values of ``tanh_backward``: a tuple of :class:`~nnref.laws.core.Law`."""
    return (
        Law("formula", "dx = g (1 - y^2) in terms of the OUTPUT y", _output_cases(-1.0, 1.0), _verify_tanh, 30),
        worked("tanh' at five points equals central differences", {},
               lambda fn, c: _verify_derivative(fn, c, np.tanh, "tanh'")),
        # tanh(0) = 0: slope 1; tanh(ln 3) = (3 - 1/3) / (3 + 1/3) = 0.8: slope 1 - 0.64 = 0.36
        by_hand("y = tanh(0) = 0 and tanh(ln 3) = 0.8: slopes 1 and 0.36 (g = 2, 1)",
                {"y": np.array([[0.0, 0.8]]), "grad_out": np.array([[2.0, 1.0]])},
                lambda fn, c: fn(c["y"], c["grad_out"]), np.array([[2.0, 0.36]]), atol=1e-15),
        unchanged_law(_output_cases(-1.0, 1.0), lambda fn, c: fn(c["y"], c["grad_out"])),
    )


def sigmoid_backward_laws() -> tuple:
    """The laws and worked values of ``sigmoid_backward``: a tuple of :class:`~nnref.laws.core.Law`."""
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731 - a one-line oracle
    return (
        Law("formula", "dx = g y (1 - y) in terms of the OUTPUT y", _output_cases(0.0, 1.0), _verify_sigmoid, 30),
        worked("sigmoid' at five points equals central differences", {},
               lambda fn, c: _verify_derivative(fn, c, sig, "sigmoid'")),
        # sigmoid(0) = 1/2: slope 1/4; sigmoid(ln 3) = 3/4: slope 3/16
        by_hand("y = 1/2 and 3/4: slopes 0.25 and 0.1875", {"y": np.array([[0.5, 0.75]]), "grad_out": np.ones((1, 2))},
                lambda fn, c: fn(c["y"], c["grad_out"]), np.array([[0.25, 0.1875]])),
        unchanged_law(_output_cases(0.0, 1.0), lambda fn, c: fn(c["y"], c["grad_out"])),
    )


# ---------------------------------------------------------------- softmax cross-entropy

@st.composite
def _ce_cases(draw, lo: float = -30.0, hi: float = 30.0):
    b, c = draw(st.tuples(st.integers(1, 5), st.integers(2, 5)))
    logits = draw(arrays((b, c), lo, hi))
    labels = np.array(draw(st.lists(st.integers(0, c - 1), min_size=b, max_size=b)), dtype=np.int64)
    return {"logits": logits, "labels": labels}


def _ce_oracle(z, y):
    b = z.shape[0]
    lse = [m + math.log(math.fsum(math.exp(v - m) for v in row)) for row, m in zip(z.tolist(), z.max(axis=1))]
    loss = math.fsum(lse[i] - z[i, y[i]] for i in range(b)) / b
    p = np.array([[math.exp(v - lse[i]) for v in row] for i, row in enumerate(z.tolist())])
    p[np.arange(b), y] -= 1.0
    return loss, p / b


def _verify_ce(fn, case):
    z, y = case["logits"], case["labels"]
    loss, grad = expect_pair(fn(z, y), 2, "cross_entropy_loss_and_grad(logits, labels)")
    want_loss, want_grad = _ce_oracle(z, y)
    expect_close(as_array(loss, "loss"), want_loss, "loss = mean over rows of -log softmax(z)[label]",
                 rtol=1e-10, atol=1e-12)
    expect_close(grad, want_grad, "dlogits = (softmax(z) - onehot(labels)) / B", rtol=1e-9, atol=1e-15)


def _verify_ce_rows(fn, case):
    z, y = case["logits"], case["labels"]
    _, grad = expect_pair(fn(z, y), 2, "cross_entropy_loss_and_grad(logits, labels)")
    grad = as_array(grad, "dlogits")
    expect_true(grad.shape == z.shape, f"dlogits: expected shape {z.shape}, got {grad.shape}")
    sums = grad.sum(axis=1)
    expect_close(sums, np.zeros_like(sums), "each row of dlogits sums to 0 (probabilities sum to 1)", atol=1e-12)


def cross_entropy_laws() -> tuple:
    """The laws and worked values of ``cross_entropy``: a tuple of :class:`~nnref.laws.core.Law`."""
    ex = {"logits": np.zeros((2, 4)), "labels": np.array([0, 3])}
    return (
        Law("loss and gradient", "L = mean(-log softmax(z)[label]); dL/dz = (softmax(z) - onehot) / B",
            _ce_cases(), _verify_ce, 40),
        Law("large logits", "stays finite and exact for logits up to +-1e4 (subtract the row max)",
            _ce_cases(-1e4, 1e4), _verify_ce, 20),
        Law("rows sum to zero", "each row of the gradient sums to 0", _ce_cases(), _verify_ce_rows, 20),
        worked("equal logits: L = log 4", ex, _verify_ce),
        # p = 1/4 everywhere: dlogits = (1/4 - onehot) / 2
        by_hand("equal logits, labels [1, 3]: L = log 4, dlogits rows 1/8 and -3/8",
                {"logits": np.zeros((2, 4)), "labels": np.array([1, 3])}, lambda fn, c: fn(c["logits"], c["labels"]),
                (math.log(4.0), np.array([[0.125, -0.375, 0.125, 0.125], [0.125, 0.125, 0.125, -0.375]])), rtol=1e-15),
        # row 1: p = [1/2, 1/2], loss ln 2; row 2: p = [3/4, 1/4], label 1, loss ln 4; mean 1.5 ln 2
        by_hand("z = [[0, 0], [ln 3, 0]], labels [0, 1]: L = 1.5 ln 2",
                {"logits": np.array([[0.0, 0.0], [math.log(3.0), 0.0]]), "labels": np.array([0, 1])},
                lambda fn, c: fn(c["logits"], c["labels"]),
                (1.5 * math.log(2.0), np.array([[-0.25, 0.25], [0.375, -0.375]])), rtol=1e-15, atol=1e-16),
        # softmax of [1e4, 0] is [1, e^-1e4 = 0]: loss 1e4 at label 1 and 0 at label 0, exactly
        by_hand("logits [1e4, 0]: label 1 costs exactly 1e4, gradient [1, -1]",
                {"logits": np.array([[1e4, 0.0]]), "labels": np.array([1])}, lambda fn, c: fn(c["logits"], c["labels"]),
                (1e4, np.array([[1.0, -1.0]]))),
        by_hand("logits [1e4, 0], label 0: loss 0, gradient 0",
                {"logits": np.array([[1e4, 0.0]]), "labels": np.array([0])}, lambda fn, c: fn(c["logits"], c["labels"]),
                (0.0, np.array([[0.0, 0.0]]))),
        unchanged_law(_ce_cases(), lambda fn, c: fn(c["logits"], c["labels"])),
    )
