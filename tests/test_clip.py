"""Tests for nnref.clip: the checked functions and clippers (structures, options such as
norm_type and units, in place, counting), bad input. The plain clip formulas' laws and
worked values live in nnref.laws.

Tolerances: norms are computed in float64, so a law like "the clipped norm is at most
max_norm" holds up to a few roundings: we allow a relative 1e-12 (float64 inputs).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnref.clip import (
    Adaptive,
    AutoClip,
    Clipper,
    GlobalNorm,
    NonFiniteNormError,
    Norm,
    Value,
    adaptive_clip,
    clip_by_global_norm,
    clip_by_norm,
    clip_by_value,
    global_norm,
    per_example_clip,
    tensor_norms,
)
from strategies import float_arrays, grad_lists, seeds

RTOL = 1e-12


# ----------------------------------------------------------------------------- helpers


def _to_dict(arrays):
    """A list of arrays as an MLP-like dict ``{"W1": ..., "b1": ..., "W2": ...}``."""
    names = [f"{'W' if i % 2 == 0 else 'b'}{i // 2 + 1}" for i in range(len(arrays))]
    return dict(zip(names, arrays))


def _arrays(grads):
    return list(grads.values()) if isinstance(grads, dict) else list(grads)


def _flat(grads):
    arrays = _arrays(grads)
    return np.concatenate([a.ravel() for a in arrays]) if arrays else np.zeros(0)


def _l2(grads) -> float:
    """Independent oracle: the L2 norm of every entry, one long vector."""
    return float(np.linalg.norm(_flat(grads)))


def _copy(grads):
    return {k: v.copy() for k, v in grads.items()} if isinstance(grads, dict) else [a.copy() for a in grads]


def _assert_same(a, b):
    """Same structure, keys in the same order, bit-identical arrays (NaN == NaN)."""
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert list(a) == list(b)
    for x, y in zip(_arrays(a), _arrays(b)):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.array_equal(x, y, equal_nan=True)


# Entries 0 or with 1e-6 <= |x| <= 1e3: float64 squares of entries below ~1e-154
# underflow to 0 (documented; numpy's own norm does the same), which is not what these
# laws are about.
entries = st.one_of(st.just(0.0), st.floats(1e-6, 1e3), st.floats(-1e3, -1e-6))
# Gradients as a list or as an MLP-like dict: every law is checked on both.
grad_structs = st.one_of(grad_lists(elements=entries), grad_lists(elements=entries).map(_to_dict))
nonempty_structs = grad_structs.filter(len)
thresholds = st.floats(min_value=0.1, max_value=1e3)


# ----------------------------------------------------------------------------- norms


@given(grads=grad_structs)
def test_global_norm_of_parts_equals_norm_of_concatenation(grads):
    for p in (1.0, 2.0, np.inf):
        whole = global_norm([_flat(grads)], p)
        np.testing.assert_allclose(global_norm(grads, p), whole, rtol=RTOL, atol=0)
        # and both equal numpy's own vector norm of the concatenation
        expected = float(np.linalg.norm(_flat(grads), ord=p)) if _flat(grads).size else 0.0
        np.testing.assert_allclose(whole, expected, rtol=RTOL, atol=0)


@given(grads=grad_structs, p=st.floats(min_value=0.5, max_value=4.0))
def test_global_norm_any_p_is_the_p_norm_of_all_entries(grads, p):
    expected = float(np.sum(np.abs(_flat(grads)) ** p) ** (1 / p))
    np.testing.assert_allclose(global_norm(grads, p), expected, rtol=1e-9, atol=0)


@given(grads=grad_structs, a=st.one_of(st.just(0.0), st.floats(1e-3, 10), st.floats(-10, -1e-3)))
def test_global_norm_is_absolutely_homogeneous(grads, a):
    scaled = [a * g for g in _arrays(grads)]
    np.testing.assert_allclose(global_norm(scaled), abs(a) * global_norm(grads), rtol=1e-12, atol=1e-300)


@given(grads=grad_structs)
def test_tensor_norms_keeps_structure_and_matches_numpy(grads):
    norms = tensor_norms(grads)
    if isinstance(grads, dict):
        assert list(norms) == list(grads)
        values = list(norms.values())
    else:
        assert isinstance(norms, list)
        values = norms
    for n, g in zip(values, _arrays(grads)):
        assert isinstance(n, float)
        np.testing.assert_allclose(n, np.linalg.norm(g.ravel()), rtol=RTOL, atol=0)
    # the global L2 norm is the L2 norm of the per-tensor norms
    np.testing.assert_allclose(global_norm(grads), np.sqrt(np.sum(np.square(values))), rtol=RTOL, atol=0)


def test_norms_worked_examples():
    grads = [np.array([3.0, 4.0]), np.array([0.0, 0.0, 12.0])]
    # L2: per tensor sqrt(9+16) = 5 and 12; total sqrt(25 + 144) = sqrt(169) = 13
    assert tensor_norms(grads) == [5.0, 12.0]
    assert global_norm(grads) == 13.0
    # L1: per tensor 3+4 = 7 and 12; total 7 + 12 = 19
    assert global_norm(grads, 1) == 19.0
    # inf: per tensor max |x| = 4 and 12; total max(4, 12) = 12
    assert global_norm(grads, np.inf) == 12.0
    # p = 3 on [1, -2]: (1 + 8)^(1/3) = 9^(1/3)
    np.testing.assert_allclose(global_norm([np.array([1.0, -2.0])], 3), 9 ** (1 / 3), rtol=1e-15)
    assert global_norm([]) == 0.0 and global_norm({}) == 0.0
    assert global_norm([np.zeros((0,))]) == 0.0
    assert np.isnan(global_norm([np.array([1.0, np.nan])]))
    assert global_norm([np.array([1.0, -np.inf])]) == np.inf


# ----------------------------------------------------------------------------- by value


# ----------------------------------------------------------------------------- by norm


# ----------------------------------------------------------------------------- global norm


@given(grads=grad_structs, c=thresholds)
def test_clip_by_global_norm_is_idempotent(grads, c):
    once, _ = clip_by_global_norm(grads, c)
    twice, total_once = clip_by_global_norm(once, c)
    # the second pass can only shrink by c / (total_once + eps) with total_once <= c:
    # a relative change of at most eps / c
    for a, b in zip(_arrays(once), _arrays(twice)):
        np.testing.assert_allclose(b, a, rtol=2e-6 / c + 1e-12, atol=0)
    # with eps = 0 it is idempotent up to rounding
    once0, _ = clip_by_global_norm(grads, c, eps=0.0)
    twice0, _ = clip_by_global_norm(once0, c, eps=0.0)
    for a, b in zip(_arrays(once0), _arrays(twice0)):
        np.testing.assert_allclose(b, a, rtol=1e-14, atol=0)


@given(grads=grad_structs, c=thresholds)
def test_clip_by_global_norm_bound_for_other_p(grads, c):
    for p in (1.0, np.inf, 3.0):
        out, total = clip_by_global_norm(grads, c, norm_type=p)
        assert total == global_norm(grads, p)
        assert global_norm(out, p) <= c * (1 + 1e-9)


def test_clip_by_global_norm_worked_examples_for_other_p():
    # p = 2 worked values are laws (nnref.laws, clip_grads_by_global_norm); norm_type is the
    # checked function's own option.
    # p = 1: [1, -2] and [3] -> per tensor 3 and 3, total 3 + 3 = 6; coef = 3 / (6 + 1e-6)
    out, total = clip_by_global_norm([np.array([1.0, -2.0]), np.array([3.0])], 3.0, norm_type=1)
    assert total == 6.0
    np.testing.assert_allclose(out[0], [0.5, -1.0], rtol=1e-6)
    np.testing.assert_allclose(global_norm(out, 1), 3.0 * 6 / 6.000001, rtol=1e-15)
    # p = inf: [1, -5] and [3] -> max |x| = 5; coef = 2 / (5 + 1e-6) ~= 0.4
    out, total = clip_by_global_norm([np.array([1.0, -5.0]), np.array([3.0])], 2.0, norm_type=np.inf)
    assert total == 5.0
    np.testing.assert_allclose(out[0], [0.4, -2.0], rtol=1e-6)
    np.testing.assert_allclose(out[1], [1.2], rtol=1e-6)
    # empty: a new empty list
    empty = []
    out, total = clip_by_global_norm(empty, 1.0)
    assert out == [] and out is not empty and total == 0.0


def test_clip_by_global_norm_error_if_nonfinite_names_the_tensors():
    grads = {"W1": np.array([1.0, 2.0]), "b1": np.array([np.nan, np.inf, 1.0])}
    with pytest.raises(NonFiniteNormError, match=r"grads\['b1'\] \(1 NaN, 1 inf\)") as info:
        clip_by_global_norm(grads, 1.0, error_if_nonfinite=True)
    assert "W1" not in str(info.value)
    # catchable both as nnref's ValueError and as PyTorch's RuntimeError
    with pytest.raises(ValueError, match="non-finite"):
        clip_by_global_norm([np.array([np.inf])], 1.0, error_if_nonfinite=True)
    with pytest.raises(RuntimeError, match=r"grads\[0\]"):
        clip_by_global_norm([np.array([np.inf])], 1.0, error_if_nonfinite=True)
    # finite gradients never raise
    out, total = clip_by_global_norm([np.array([3.0, 4.0])], 1.0, error_if_nonfinite=True)
    assert total == 5.0


# ----------------------------------------------------------------------------- structure, dtype


FUNCTIONS = {
    "clip_by_value": lambda g, p: clip_by_value(g, 0.5),
    "clip_by_norm": lambda g, p: clip_by_norm(g, 0.5),
    "clip_by_global_norm": lambda g, p: clip_by_global_norm(g, 0.5)[0],
    "adaptive_clip": lambda g, p: adaptive_clip(g, p, clipping=0.01),
    "GlobalNorm": lambda g, p: GlobalNorm(0.5)(g, p),
    "AutoClip": lambda g, p: AutoClip(50)(g, p),
}


def before_arrays(before, now, g):
    """The saved copy of the array ``g`` of the structure ``now``."""
    pairs = zip(_arrays(now), _arrays(before))
    return next(b for n, b in pairs if n is g)


def _astype(grads, dtype):
    if isinstance(grads, dict):
        return {k: v.astype(dtype) for k, v in grads.items()}
    return [g.astype(dtype) for g in grads]


@given(grads=nonempty_structs, seed=seeds)
def test_inputs_untouched_structure_and_dtype_kept(grads, seed):
    rng = np.random.default_rng(seed)
    for dtype in (np.float32, np.float64):
        g32 = _astype(grads, dtype)
        params = _astype(
            {k: rng.normal(size=v.shape) for k, v in g32.items()}
            if isinstance(g32, dict)
            else [rng.normal(size=g.shape) for g in g32],
            dtype,
        )
        before, params_before = _copy(g32), _copy(params)
        for name, function in FUNCTIONS.items():
            out = function(g32, params)
            _assert_same(g32, before)
            _assert_same(params, params_before)
            assert type(out) is type(g32), name
            if isinstance(g32, dict):
                assert list(out) == list(g32), name
            for o, g in zip(_arrays(out), _arrays(g32)):
                assert o.dtype == dtype and o.shape == g.shape, name
                if name in ("GlobalNorm", "AutoClip") and np.shares_memory(o, g):
                    # Documented for clipper objects (the training hot path): arrays they
                    # leave unchanged are handed back, not copied. Functions always copy.
                    assert o is g and np.array_equal(o, before_arrays(before, g32, g)), name
                else:
                    assert not np.shares_memory(o, g), name


def test_tuple_in_tuple_out_and_lists_read_as_float64():
    out, total = clip_by_global_norm(([3, 4], [0, 0, 12]), 5.0)
    assert isinstance(out, tuple) and total == 13.0
    assert out[0].dtype == np.float64


def test_float32_result_rounds_coef_to_float32_once():
    g = np.array([3.0, 4.0, 12.0], dtype=np.float32)
    out, total = clip_by_global_norm([g], 5.0)
    coef32 = np.float32(5.0 / (13.0 + 1e-6))
    np.testing.assert_array_equal(out[0], g * coef32)


# ----------------------------------------------------------------------------- AGC


@st.composite
def agc_layers(draw):
    """One MLP layer's params and grads: W, G of shape (in, out) with in, out >= 2, and
    a bias with its gradient; some units get small gradients so both branches occur."""
    n_in, n_out = draw(st.integers(2, 6)), draw(st.integers(2, 6))
    w = draw(float_arrays((n_in, n_out)))
    g = draw(float_arrays((n_in, n_out)))
    shrink = draw(float_arrays((n_out,), st.sampled_from([1.0, 1e-3, 1e-6, 0.0])))
    b = draw(float_arrays((n_out,)))
    gb = draw(float_arrays((n_out,))) * draw(st.sampled_from([1.0, 1e-6]))
    return {"W1": w, "b1": b}, {"W1": g * shrink, "b1": gb}


@given(layer=agc_layers(), clipping=st.floats(min_value=1e-3, max_value=1.0))
def test_agc_nfnets_units_bound_the_whole_bias(layer, clipping):
    # per-unit clipping (the default) is a law (nnref.laws, adaptive_clip_grad); with the
    # authors' units (nfnets) the whole bias vector is one unit
    params, grads = layer
    out = adaptive_clip(grads, params, clipping=clipping, units="nfnets")
    b_limit = clipping * max(np.linalg.norm(params["b1"]), 1e-3)
    assert np.linalg.norm(out["b1"]) <= b_limit * (1 + RTOL)
    if np.linalg.norm(grads["b1"]) <= b_limit:
        assert np.array_equal(out["b1"], grads["b1"])
    np.testing.assert_array_equal(out["W1"], adaptive_clip(grads, params, clipping=clipping)["W1"])


@given(layer=agc_layers(), clipping=st.floats(min_value=1e-3, max_value=1.0))
def test_agc_is_idempotent_and_preserves_unit_directions(layer, clipping):
    params, grads = layer
    once = adaptive_clip(grads, params, clipping=clipping)
    twice = adaptive_clip(once, params, clipping=clipping)
    np.testing.assert_allclose(twice["W1"], once["W1"], rtol=1e-12, atol=0)
    # each column is a non-negative multiple of the original column
    dots = np.sum(once["W1"] * grads["W1"], axis=0)
    assert np.all(dots >= 0)


def test_agc_worked_example_units_and_skip():
    # the per-unit worked values are laws (nnref.laws, adaptive_clip_grad). The bias b = 0
    # with gb = [3e-4, 4e-4]: with the authors' units (nfnets) the vector is one unit of
    # norm 5e-4 above 0.1 * 1e-3 -> times 0.2 -> [6e-5, 8e-5].
    params = {"W1": np.array([[3.0, 0.0], [4.0, 1.0]]), "b1": np.zeros(2)}
    grads = {"W1": np.array([[0.3, 1.0], [0.4, 0.0]]), "b1": np.array([3e-4, 4e-4])}
    out = adaptive_clip(grads, params, clipping=0.1, units="nfnets")
    np.testing.assert_allclose(out["W1"], [[0.3, 0.1], [0.4, 0.0]], rtol=1e-15)
    np.testing.assert_allclose(out["b1"], [6e-5, 8e-5], rtol=1e-12)
    # skip: the named tensors come back unchanged (the authors skip the final layer)
    out = adaptive_clip(grads, params, clipping=0.1, skip=("b1",))
    np.testing.assert_array_equal(out["b1"], grads["b1"])
    np.testing.assert_allclose(out["W1"][:, 1], [0.1, 0.0], rtol=1e-15)
    # lists: skip by position
    out = adaptive_clip([grads["W1"], grads["b1"]], [params["W1"], params["b1"]], 0.1, skip=[0])
    np.testing.assert_array_equal(out[0], grads["W1"])


def test_agc_squeezed_matrices_are_one_unit():
    # nfnets units: a (1, 2) weight squeezes to 1-D: one unit of norm ||W|| = 5, limit
    # 0.1 * 5 = 0.5; G = [[0, 1]] has norm 1 -> times 0.5 -> [[0, 0.5]]. (Per unit, the
    # default, it is two columns: a law's worked value.)
    out = adaptive_clip([np.array([[0.0, 1.0]])], [np.array([[3.0, 4.0]])], clipping=0.1, units="nfnets")
    np.testing.assert_allclose(out[0], [[0.0, 0.5]], rtol=1e-15)
    with pytest.raises(ValueError, match="units"):
        adaptive_clip([np.ones(2)], [np.ones(2)], units="rows")


# ----------------------------------------------------------------------------- per example


@st.composite
def per_example_batches(draw):
    """{W1: (B, in, out), b1: (B, out)} per-example gradients, some examples tiny."""
    b = draw(st.integers(1, 6))
    n_in, n_out = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    w = draw(float_arrays((b, n_in, n_out)))
    bias = draw(float_arrays((b, n_out)))
    scale = draw(float_arrays((b,), st.sampled_from([1.0, 1e-4, 0.0])))
    return {"W1": w * scale[:, None, None], "b1": bias * scale[:, None]}


def _loop_dp(per_example, c):
    """Plain Python reference: clip each example's whole gradient, sum, divide by B."""
    names = list(per_example)
    batch = per_example[names[0]].shape[0]
    total = {k: np.zeros(per_example[k].shape[1:]) for k in names}
    for i in range(batch):
        n_i = np.sqrt(sum(np.sum(per_example[k][i] ** 2) for k in names))
        factor = 1.0 / max(1.0, n_i / c)
        for k in names:
            total[k] += per_example[k][i] * factor
    return {k: total[k] / batch for k in names}


@given(batch=per_example_batches(), c=thresholds)
def test_per_example_clip_matches_loop(batch, c):
    out, norms = per_example_clip(batch, c, return_norms=True)
    expected = _loop_dp(batch, c)
    for k in batch:
        np.testing.assert_allclose(out[k], expected[k], rtol=1e-12, atol=1e-12 * c)
    b = batch["W1"].shape[0]
    for i in range(b):
        np.testing.assert_allclose(norms[i], _l2({k: v[i] for k, v in batch.items()}), rtol=RTOL)


@given(batch=per_example_batches(), c=thresholds)
def test_per_example_clip_bounds_each_contribution(batch, c):
    b = batch["W1"].shape[0]
    out = per_example_clip(batch, c)
    singles = [per_example_clip({k: v[i : i + 1] for k, v in batch.items()}, c) for i in range(b)]
    for s in singles:  # with B = 1 the aggregate is that example's clipped gradient
        assert _l2(s) <= c * (1 + RTOL)
    for k in batch:  # B * aggregate is the sum of the clipped contributions
        np.testing.assert_allclose(b * out[k], sum(s[k] for s in singles), rtol=1e-12, atol=1e-12 * c)
    assert b * _l2(out) <= b * c * (1 + RTOL)


def test_per_example_clip_worked_example_and_list_input():
    # g_1 = [3, 4] (norm 5 > C = 1) -> [0.6, 0.8]; g_2 = [0, 1] (norm 1) unchanged;
    # sum [0.6, 1.8], divided by B = 2 -> [0.3, 0.9]
    out, norms = per_example_clip([np.array([[3.0, 4.0], [0.0, 1.0]])], 1.0, return_norms=True)
    assert isinstance(out, list)
    np.testing.assert_allclose(out[0], [0.3, 0.9], rtol=1e-15)
    np.testing.assert_array_equal(norms, [5.0, 1.0])
    # every example under C: the plain mean
    g = np.array([[0.1, 0.2], [0.3, -0.2]], dtype=np.float32)
    out = per_example_clip({"b1": g}, 1.0)
    assert out["b1"].dtype == np.float32
    np.testing.assert_allclose(out["b1"], g.mean(axis=0), rtol=1e-6)


def test_per_example_clip_noise_is_seeded_and_has_the_right_scale():
    g = {"W1": np.zeros((4, 100, 100)), "b1": np.ones((4, 100))}
    a = per_example_clip(g, 2.0, noise_multiplier=0.5, rng=7)
    b = per_example_clip(g, 2.0, noise_multiplier=0.5, rng=np.random.default_rng(7))
    c = per_example_clip(g, 2.0, noise_multiplier=0.5, rng=8)
    _assert_same(a, b)
    assert not np.array_equal(a["W1"], c["W1"])
    # W1 sums to 0, so B * aggregate is pure noise with std sigma * C = 1 (10000 draws:
    # the sample std is within 3% of 1 and the mean within 0.03, for this fixed seed)
    noise = 4 * a["W1"]
    assert abs(noise.std() - 1.0) < 0.03 and abs(noise.mean()) < 0.03
    # b1: each example [1]*100 has norm 10 (with W1 = 0) -> clipped to 2/10 = 0.2 each;
    # B * aggregate - 4 * 0.2 is noise
    assert abs((4 * a["b1"] - 0.8).std() - 1.0) < 0.2
    # noise_multiplier 0 draws nothing: the Generator is left untouched
    gen = np.random.default_rng(3)
    state = gen.bit_generator.state
    per_example_clip(g, 2.0, rng=gen)
    assert gen.bit_generator.state == state


# ----------------------------------------------------------------------------- AutoClip


@given(
    norms=st.lists(st.floats(min_value=1e-3, max_value=1e3), min_size=1, max_size=12),
    percentile=st.floats(min_value=0, max_value=100),
)
def test_autoclip_threshold_is_percentile_of_history(norms, percentile):
    clipper, twin = AutoClip(percentile), AutoClip(percentile)
    direction = np.array([0.6, 0.0, -0.8])  # unit L2 norm
    for i, n in enumerate(norms):
        grads = {"W1": direction * n}
        out = clipper(grads)
        _assert_same(out, twin(grads))  # deterministic
        assert clipper.history == pytest.approx(norms[: i + 1], rel=1e-15)
        expected = float(np.percentile(clipper.history, percentile))
        assert clipper.threshold == expected
        assert np.linalg.norm(out["W1"]) <= expected * (1 + RTOL)
        if n + 1e-6 <= expected:
            _assert_same(out, grads)


def test_autoclip_worked_example_reset_and_nonfinite():
    clipper = AutoClip(percentile=50)
    assert clipper.threshold is None
    # norms 1, 3, 2: medians of [1], [1, 3], [1, 3, 2] are 1, 2, 2
    clipper([np.array([1.0])])
    assert clipper.threshold == 1.0
    out = clipper([np.array([3.0])])
    assert clipper.threshold == 2.0
    np.testing.assert_allclose(out[0], [3.0 * 2.0 / 3.000001], rtol=1e-15)  # ~2.0
    clipper([np.array([0.0, 2.0])])
    assert clipper.threshold == 2.0 and clipper.history == [1.0, 3.0, 2.0]
    # every call clipped: each norm was >= its threshold, and then eps makes the factor
    # c / (n + 1e-6) < 1 even when n == c (1 -> 1 / 1.000001)
    assert clipper.n_calls == 3 and clipper.n_clipped == 3
    with pytest.raises(NonFiniteNormError, match=r"grads\[0\] \(1 NaN"):
        clipper([np.array([np.nan])])
    assert clipper.history == [1.0, 3.0, 2.0] and clipper.n_calls == 3
    clipper.reset()
    assert clipper.history == [] and clipper.threshold is None and clipper.n_calls == 0


# ----------------------------------------------------------------------------- callables


def test_clippers_delegate_and_count():
    grads = {"W1": np.array([[3.0, 0.0], [4.0, 1.0]]), "b1": np.array([0.0, 12.0])}
    params = {"W1": np.ones((2, 2)), "b1": np.ones(2)}
    cases = [
        (Value(2.0), clip_by_value(grads, 2.0), 2.0),
        (Norm(1.0), clip_by_norm(grads, 1.0), 1.0),
        (GlobalNorm(1.0, norm_type=1), clip_by_global_norm(grads, 1.0, 1)[0], 1.0),
        (Adaptive(0.1, skip=["b1"]), adaptive_clip(grads, params, 0.1, skip=("b1",)), None),
    ]
    total = np.sqrt(9 + 16 + 1 + 144)
    for clipper, expected, threshold in cases:
        assert isinstance(clipper, Clipper)
        assert clipper.n_calls == 0 and clipper.last_total_norm is None
        _assert_same(clipper(grads, params), expected)
        assert clipper.threshold == threshold
        assert clipper.n_calls == 1 and clipper.n_clipped == 1
        np.testing.assert_allclose(clipper.last_total_norm, total, rtol=1e-15)
        # a call that changes nothing is counted but not as clipped
        zeros = {k: np.zeros_like(v) for k, v in grads.items()}
        clipper(zeros, params)
        assert clipper.n_calls == 2 and clipper.n_clipped == 1 and clipper.last_total_norm == 0.0
        clipper.reset()
        assert (clipper.n_calls, clipper.n_clipped, clipper.last_total_norm) == (0, 0, None)


def test_clipper_reprs():
    assert repr(GlobalNorm(1.0)) == "GlobalNorm(max_norm=1.0)"
    assert repr(GlobalNorm(1, norm_type=np.inf, error_if_nonfinite=True)) == (
        "GlobalNorm(max_norm=1.0, norm_type=inf, error_if_nonfinite=True)"
    )
    assert repr(Value(0.5)) == "Value(clip_value=0.5)"
    assert repr(Norm(2)) == "Norm(max_norm=2.0)"
    assert repr(Adaptive()) == "Adaptive()"
    assert repr(Adaptive(0.02, skip=["W2", "b2"])) == "Adaptive(clipping=0.02, skip=('W2', 'b2'))"
    assert repr(AutoClip()) == "AutoClip()" and repr(AutoClip(25)) == "AutoClip(percentile=25.0)"


def test_global_norm_clipper_error_mode_and_adaptive_needs_params():
    with pytest.raises(NonFiniteNormError, match=r"grads\['W1'\]"):
        GlobalNorm(1.0, error_if_nonfinite=True)({"W1": np.array([np.inf])})
    with pytest.raises(ValueError, match="params: adaptive clipping needs the parameters"):
        Adaptive()({"W1": np.ones(2)})


# ----------------------------------------------------------------------------- bad input


G = [np.array([1.0, 2.0])]


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: clip_by_global_norm(G, -1.0), ValueError, "max_norm: expected a number >= 0"),
        (lambda: clip_by_global_norm(G, np.nan), ValueError, "max_norm: expected a finite"),
        (lambda: clip_by_global_norm(G, np.inf), ValueError, "max_norm: expected a finite"),
        (lambda: clip_by_global_norm(G, "1"), TypeError, "max_norm: expected a real number"),
        (lambda: clip_by_global_norm(G, 1.0, eps=-1e-6), ValueError, "eps"),
        (lambda: clip_by_norm(G, -0.5), ValueError, "max_norm"),
        (lambda: clip_by_value(G, -1), ValueError, "clip_value: expected a number >= 0"),
        (lambda: clip_by_value(G, np.inf), ValueError, "clip_value: expected a finite"),
        (lambda: adaptive_clip(G, G, clipping=-0.1), ValueError, "clipping: expected a number >= 0"),
        (lambda: adaptive_clip(G, G, clipping=np.nan), ValueError, "clipping"),
        (lambda: global_norm(G, 0), ValueError, "norm_type: expected a number > 0"),
        (lambda: global_norm(G, -2.0), ValueError, "norm_type"),
        (lambda: global_norm(G, np.nan), ValueError, "norm_type"),
        (lambda: global_norm(G, -np.inf), ValueError, "norm_type"),
        (lambda: clip_by_global_norm(G, 1.0, norm_type="inf"), TypeError, "norm_type"),
        (lambda: tensor_norms(G, True), TypeError, "norm_type"),
        (lambda: global_norm(np.ones(3)), TypeError, "grads: expected a dict name -> array or a list"),
        (lambda: global_norm({"W1": np.array(["a", "b"])}), TypeError, r"grads\['W1'\]: expected a real numeric"),
        (lambda: clip_by_value([np.array([1 + 2j])], 1.0), TypeError, r"grads\[0\]"),
        (lambda: clip_by_norm([np.array([True])], 1.0), TypeError, r"grads\[0\]"),
        (lambda: clip_by_global_norm([[1.0, 2.0], [[1.0], 2.0]], 1.0), TypeError, r"grads\[1\]"),
        (lambda: clip_by_value("abc", 1.0), TypeError, "grads"),
    ],
)
def test_bad_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize(
    "grads, params, exc, match",
    [
        ({"W1": np.ones((2, 2))}, [np.ones((2, 2))], TypeError, "params: expected the same kind"),
        ([np.ones((2, 2))], {"W1": np.ones((2, 2))}, TypeError, "params: expected the same kind"),
        ({"W1": np.ones((2, 2))}, {"W2": np.ones((2, 2))}, ValueError, "params: expected the keys of grads"),
        ({"W1": np.ones((2, 2))}, {"W1": np.ones((2, 3))}, ValueError, r"params\['W1'\]: expected shape \(2, 2\)"),
        ([np.ones(2)], [np.ones(2), np.ones(2)], ValueError, "params: expected 1 arrays"),
        ([np.ones(2)], [np.array([np.nan, 1.0])], ValueError, r"params\[0\]: expected finite"),
        ([np.ones((2, 2, 2))], [np.ones((2, 2, 2))], ValueError, "adaptive clipping supports"),
    ],
)
def test_adaptive_clip_mismatched_structures(grads, params, exc, match):
    with pytest.raises(exc, match=match):
        adaptive_clip(grads, params)


def test_adaptive_clip_bad_skip():
    g = {"W1": np.ones((2, 2)), "b1": np.ones(2)}
    with pytest.raises(TypeError, match="skip: expected a list or tuple of names"):
        adaptive_clip(g, g, skip="W1")
    with pytest.raises(ValueError, match="skip: 'W3' is not in grads"):
        adaptive_clip(g, g, skip=("W3",))
    with pytest.raises(TypeError, match="skip"):
        Adaptive(skip="b1")


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(per_example_grads=[np.ones((3, 2)), np.ones((2, 2))]), ValueError, r"per_example_grads\[1\]: expected a leading batch axis"),
        (dict(per_example_grads=[np.array(1.0)]), ValueError, "leading batch axis"),
        (dict(per_example_grads=[np.ones((0, 2))]), ValueError, "B >= 1"),
        (dict(per_example_grads=[]), ValueError, "per_example_grads: expected at least one"),
        (dict(per_example_grads=[np.array([[np.nan]])]), ValueError, r"per_example_grads\[0\]: expected finite"),
        (dict(max_norm=0.0), ValueError, "max_norm: expected a number > 0"),
        (dict(noise_multiplier=-1.0), ValueError, "noise_multiplier"),
        (dict(noise_multiplier=1.0), ValueError, "rng: noise_multiplier > 0 needs"),
        (dict(noise_multiplier=1.0, rng="7"), TypeError, "rng: expected an int seed"),
        (dict(noise_multiplier=1.0, rng=1.5), TypeError, "rng: expected an int seed"),
    ],
)
def test_per_example_clip_bad_input(kwargs, exc, match):
    args = dict(per_example_grads=[np.ones((3, 2))], max_norm=1.0)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        per_example_clip(**args)


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda: Value(-1.0), ValueError, "clip_value"),
        (lambda: Norm(np.nan), ValueError, "max_norm"),
        (lambda: GlobalNorm(-1.0), ValueError, "max_norm"),
        (lambda: GlobalNorm(1.0, norm_type=0), ValueError, "norm_type"),
        (lambda: Adaptive(clipping=-1), ValueError, "clipping"),
        (lambda: AutoClip(101), ValueError, r"percentile: expected a number in \[0, 100\]"),
        (lambda: AutoClip(-5), ValueError, "percentile"),
    ],
)
def test_clipper_bad_construction(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


# ----------------------------------------------------------------------------- fit's fast path


@given(grads=nonempty_structs, c=st.floats(1e-3, 1e3), seed=seeds)
def test_global_norm_clipper_with_known_norm_equals_the_function(grads, c, seed):
    """fit() hands GlobalNorm the L2 norm it computed; the result must be the function's,
    in float32 (the training dtype) and float64, and last_clipped must say whether any
    entry changed."""
    for dtype in (np.float32, np.float64):
        g = _astype(grads, dtype)
        expected, total = clip_by_global_norm(g, c)
        clipper = GlobalNorm(c)
        out = clipper(g, None, total_norm=total)
        for o, e in zip(_arrays(out), _arrays(expected)):
            np.testing.assert_array_equal(o, e)
        changed = any(not np.array_equal(o, x) for o, x in zip(_arrays(out), _arrays(g)))
        assert clipper.last_clipped == changed
        assert clipper.last_total_norm == total


def test_clipped_flag_false_when_the_factor_rounds_to_one():
    # coef = 100 / (100 + 1e-6) = 0.99999999..., which is 1.0 in float32: nothing changes
    clipper = GlobalNorm(100.0)
    g = {"W1": np.float32([60, 80])}
    out = clipper(g)
    np.testing.assert_array_equal(out["W1"], g["W1"])
    assert clipper.last_clipped is False and clipper.n_clipped == 0


def test_fit_with_global_norm_equals_fit_with_the_function():
    from nnref.mlp import MLP
    from nnref.optim import SGD
    from nnref.train import fit

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    a, b = MLP([5, 8, 3], seed=1), MLP([5, 8, 3], seed=1)
    ha = fit(a, SGD(0.5), x, y, epochs=3, batch_size=8, grad_transform=GlobalNorm(0.3), verbose=False)
    hb = fit(b, SGD(0.5), x, y, epochs=3, batch_size=8, verbose=False,
             grad_transform=lambda g, p: clip_by_global_norm(g, 0.3)[0])
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert ha.clipped == hb.clipped and 0 < ha.n_clipped
    # the after-clip norms fit derives from the clip factor equal the measured ones
    np.testing.assert_allclose(ha.grad_norm_after, hb.grad_norm_after, rtol=1e-6)
    for k in a.params:
        np.testing.assert_allclose(ha.param_grad_norm_after[k], hb.param_grad_norm_after[k], rtol=1e-6)


def test_fit_and_clip_compute_the_same_l2_norm_even_for_tiny_float32():
    # 20,000 entries of 1.1e-21: each square (1.2e-42) is subnormal in float32 although
    # the sum (2.4e-38) is not; the shared l2_norm redoes such sums in float64
    from nnref.clip import l2_norm as _l2  # the norm fit records and hands to clippers

    x = np.full(20000, 1.1e-21, dtype=np.float32)
    exact = float(np.linalg.norm(x.astype(np.float64)))
    assert global_norm([x]) == pytest.approx(exact, rel=1e-7)
    assert _l2(x) == global_norm([x])


# ----------------------------------------------------------------------------- plain formulas

from nnref.clip import (  # noqa: E402
    ClipResult,
    adaptive_clip_grad,
    clip_grad_by_norm,
    clip_grads_by_global_norm,
    clip_grads_by_value,
    grad_norms,
)


@given(grads=grad_structs, c=thresholds, dt=st.sampled_from([np.float32, np.float64]))
def test_checked_functions_compute_the_plain_formulas_bit_for_bit(grads, c, dt):
    g = _astype(grads, dt)
    arrays = _arrays(g)
    before = _copy(g)
    plain, plain_total = clip_grads_by_global_norm(arrays, c)
    out, total = clip_by_global_norm(g, c)
    assert total == plain_total
    for a, b in zip(_arrays(out), plain):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(_arrays(clip_by_norm(g, c)), [clip_grad_by_norm(x, c) for x in arrays]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(_arrays(clip_by_value(g, c)), clip_grads_by_value(arrays, -c, c)):
        np.testing.assert_array_equal(a, b)
    _assert_same(g, before)  # nothing modified
    # in place: the same bits, written into the given arrays, and the same total
    inplace = _copy(g)
    ids = [id(a) for a in _arrays(inplace)]
    out2, total2 = clip_by_global_norm(inplace, c, inplace=True)
    assert total2 == total and [id(a) for a in _arrays(out2)] == ids
    for a, b in zip(_arrays(inplace), plain):
        np.testing.assert_array_equal(a, b)


@given(grads=nonempty_structs, seed=seeds)
def test_adaptive_clip_is_the_plain_formula_per_tensor(grads, seed):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(a.shape) for a in _arrays(grads)]
    got = adaptive_clip(list(_arrays(grads)), params, 0.05)
    for a, w, g in zip(got, params, _arrays(grads)):
        np.testing.assert_array_equal(a, adaptive_clip_grad(w, g, 0.05))


@given(grads=nonempty_structs, c=thresholds)
def test_global_norm_clipper_reports_what_it_did(grads, c):
    g = _copy(grads)
    expected, total = clip_by_global_norm(g, c)
    res = GlobalNorm(c).clip(g, inplace=True)
    assert isinstance(res, ClipResult) and res.total_norm == total
    for a, e in zip(_arrays(g), _arrays(expected)):  # written in place
        np.testing.assert_array_equal(a, e)
    assert res.acted == (total > c * 1.000001 and total > 0) or res.acted == (res.scale < 1)
    np.testing.assert_allclose(res.norms_after, [n * res.scale for n in res.norms], rtol=1e-15)
    assert res.total_norm_after <= c * (1 + 1e-12) or not res.acted


def test_clip_result_norms_are_fits_and_the_functions_total_is_fits():
    """fit's recorded total is the very number clip_by_global_norm returns (float64 and
    float32 models): one summation."""
    from nnref.mlp import MLP
    from nnref.optim import SGD
    from nnref.train import fit

    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 5))
    y = rng.integers(0, 3, 40)
    for dtype in (np.float64, np.float32):
        seen = []
        h = fit(MLP([5, 7, 3], dtype=dtype), SGD(0.3), x, y, epochs=1, batch_size=8, verbose=False,
                grad_transform=lambda g, p: seen.append({k: v.copy() for k, v in g.items()}) or g)
        assert [clip_by_global_norm(g, 1.0)[1] for g in seen] == h.grad_norm
        assert [global_norm(g) for g in seen] == h.grad_norm


def test_clipper_refuses_a_measurement_of_other_arrays_and_a_wrong_hint():
    g = [np.array([3.0, 4.0])]
    with pytest.raises(ValueError, match="norms: expected grad_norms"):
        GlobalNorm(1.0).clip(g, norms=grad_norms([np.array([3.0, 4.0])]))
    with pytest.raises(ValueError, match=r"total_norm: expected the gradients' global L2 norm 5\.0, got 0\.5"):
        GlobalNorm(1.0)(g, total_norm=0.5)
    out = GlobalNorm(1.0)(g, total_norm=5.0)  # a right hint is accepted (and not needed)
    np.testing.assert_allclose(out[0], [0.6, 0.8], rtol=1e-6)


# ----------------------------------------------------------------------------- extremes


@pytest.mark.parametrize(
    "arrays, p, expected",
    [
        ([np.array([0.5, 0.25])], 2000.0, 0.5),  # 0.5**2000 underflows: scaled, not 0
        ([np.array([3e-200, 4e-200])], 2.0, 5e-200),  # squares underflow float64
        ([np.array([3e200]), np.array([4e200])], 2.0, 5e200),  # squares overflow float64
        ([np.array([3e-200, 4e-200])], 3.0, (27 + 64) ** (1 / 3) * 1e-200),
        ([np.float32([3e-30, 4e-30])], 2.0, 5e-30),
        ([np.array([1e300, 1e300])], 1.0, 2e300),
    ],
)
def test_norms_stay_right_at_the_extremes(arrays, p, expected):
    assert global_norm(arrays, p) == pytest.approx(expected, rel=1e-6)
    assert tensor_norms(arrays[:1], p)[0] <= expected * (1 + 1e-6)


def test_clipping_never_zeroes_gradients_because_a_norm_overflowed():
    huge = [np.array([1.5e308, 1.5e308])]  # finite, but the norm 2.1e308 is beyond float64
    for call in (lambda: global_norm(huge), lambda: clip_by_global_norm(huge, 1.0),
                 lambda: clip_by_norm(huge, 1.0), lambda: GlobalNorm(1.0)(huge),
                 lambda: adaptive_clip(huge, [np.ones(2)]), lambda: Norm(1.0)(huge)):
        with pytest.raises(ValueError, match="exceeds the float64 range"):
            call()
    with pytest.raises(ValueError, match=r"grads\[0\]: the sum of squares of these finite entries exceeds"):
        adaptive_clip([np.array([1e200, 1.0])], [np.ones(2)])  # AGC's squares overflow: refused
    big = [np.array([3e200, 4e200])]  # its norm 5e200 fits: clipped correctly
    out, total = clip_by_global_norm(big, 1.0)
    assert total == pytest.approx(5e200) and np.allclose(out[0], [0.6, 0.8])


# ----------------------------------------------------------------------------- clip_by_value bounds


def test_clip_by_value_bounds_and_the_value_clipper():
    # the clamps' worked values are laws (nnref.laws, clip_grads_by_value); here the
    # checked function's defaults and the Value clipper
    g = [np.array([-5.0, -0.5, 0.5, 5.0, np.inf, -np.inf, np.nan])]
    out = clip_by_value(g, min_value=0.0)  # upper side open
    np.testing.assert_array_equal(out[0], [0.0, 0.0, 0.5, 5.0, np.inf, 0.0, np.nan])
    np.testing.assert_array_equal(clip_by_value(g, 1.0)[0], clip_by_value(g, min_value=-1.0, max_value=1.0)[0])
    clipper = Value(min_value=-1.0, max_value=2.0)
    assert clipper.threshold is None and repr(clipper) == "Value(min_value=-1.0, max_value=2.0)"
    res = clipper.clip([np.array([0.5, 3.0])])
    assert res.acted and res.grads[0].tolist() == [0.5, 2.0]
    assert not clipper.clip([np.array([0.5, np.nan])]).acted  # NaN is not clamped


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(clip_value=1.0, min_value=0.0), TypeError, "either clip_value or min_value/max_value"),
        (dict(), TypeError, "clip_value: expected clip_value, or min_value"),
        (dict(min_value=2.0, max_value=1.0), ValueError, "expected min_value <= max_value, got 2.0 > 1.0"),
        (dict(min_value=np.nan), ValueError, "min_value: expected a number or"),
        (dict(max_value="1"), TypeError, "max_value: expected a real number"),
    ],
)
def test_clip_by_value_bad_bounds(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        clip_by_value([np.ones(2)], **kwargs)


@given(grads=nonempty_structs, seed=seeds)
def test_every_clipper_in_place_gives_the_functional_result(grads, seed):
    rng = np.random.default_rng(seed)
    params = _astype(grads, np.float64)
    params = {k: rng.standard_normal(v.shape) for k, v in params.items()} if isinstance(params, dict) else [
        rng.standard_normal(v.shape) for v in params]
    for make in (lambda: Value(0.5), lambda: Value(min_value=-0.1, max_value=2.0), lambda: Norm(1.0),
                 lambda: GlobalNorm(1.0), lambda: GlobalNorm(1.0, norm_type=1), lambda: Adaptive(0.05),
                 lambda: AutoClip(50)):
        expected = make()(grads, params)
        g = _copy(grads)
        ids = [id(a) for a in _arrays(g)]
        res = make().clip(g, params, inplace=True)
        assert [id(a) for a in _arrays(res.grads)] == ids  # the given arrays, written in place
        _assert_same(g, expected)
        changed = any(not np.array_equal(a, b) for a, b in zip(_arrays(g), _arrays(grads)))
        assert res.acted == changed
        np.testing.assert_allclose(res.norms_after, [np.linalg.norm(a) for a in _arrays(g)], rtol=1e-6)
