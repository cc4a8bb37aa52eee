"""Deep Compression: pruning masks kept by every optimizer, weight sharing, Huffman sizes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnref.data import load_digits, train_test_split
from nnref.mlp import MLP
from nnref.optim import SGD, Adam
from nnref.prune import (
    MaskedOptimizer,
    SharedWeightMLP,
    apply_masks,
    centroid_grads,
    compression_sizes,
    global_magnitude_masks,
    huffman_code_lengths,
    kmeans_1d,
    kmeans_step,
    magnitude_mask,
    prune_masks,
    relative_index_gaps,
    sparsity,
)
from nnref.quant.convert import quantize_model
from nnref.train import fit
from tests.strategies import float_arrays, seeds

OPTIMIZERS = {
    "sgd": lambda: SGD(0.1),
    "sgd_wd": lambda: SGD(0.1, weight_decay=0.01),
    "momentum": lambda: SGD(0.1, momentum=0.9),
    "nesterov": lambda: SGD(0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    "adam": lambda: Adam(0.01),
    "adam_wd": lambda: Adam(0.01, weight_decay=0.1),
}


# --------------------------------------------------------------------------- masks


@given(float_arrays(st.tuples(st.integers(1, 12), st.integers(1, 12))), st.floats(0, 0.99))
def test_magnitude_mask_prunes_exactly_the_smallest(w, s):
    mask = magnitude_mask(w, s)
    assert (~mask).sum() == round(s * w.size)
    if mask.any() and (~mask).any():
        assert np.abs(w[mask]).min() >= np.abs(w[~mask]).max()


@given(float_arrays((5, 7)), float_arrays((3, 4)), st.floats(0, 0.99))
def test_global_masks_use_one_threshold(a, b, s):
    masks = global_magnitude_masks({"W1": a, "W2": b}, s)
    kept = np.concatenate([a[masks["W1"]], b[masks["W2"]]])
    pruned = np.concatenate([a[~masks["W1"]], b[~masks["W2"]]])
    assert pruned.size == round(s * (a.size + b.size))
    if kept.size and pruned.size:
        assert np.abs(kept).min() >= np.abs(pruned).max()


def test_prune_masks_per_layer_and_bad_input():
    model = MLP([8, 6, 4], seed=0)
    masks = prune_masks(model, 0.5)
    assert set(masks) == {"W1", "W2"}
    assert [(~m).sum() for m in masks.values()] == [24, 12]
    with pytest.raises(ValueError, match="sparsity"):
        magnitude_mask(np.ones(3), 1.0)
    with pytest.raises(ValueError, match="scope"):
        prune_masks(model, 0.5, scope="row")
    with pytest.raises(ValueError, match=r"masks\['W1'\]"):
        apply_masks(model.params, {"W1": np.ones((2, 2), bool)})


@given(seeds, st.sampled_from(sorted(OPTIMIZERS)), st.integers(1, 15), st.floats(0.1, 0.95))
def test_pruned_weights_stay_exactly_zero_under_every_optimizer(seed, name, n_steps, s):
    rng = np.random.default_rng(seed)
    params = {"W": rng.standard_normal((6, 5)).astype(np.float32), "b": np.zeros(5, np.float32)}
    opt = OPTIMIZERS[name]()
    for _ in range(3):  # state from before pruning: momentum and moments that point away from 0
        opt.step(params, {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()})
    masks = {"W": magnitude_mask(params["W"], s)}
    apply_masks(params, masks)
    masked = MaskedOptimizer(opt, masks)
    for _ in range(n_steps):
        masked.step(params, {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()})
        assert np.all(params["W"][~masks["W"]] == 0)
        for v in opt.state.get("W", {}).values():
            if isinstance(v, np.ndarray):
                assert np.all(v[~masks["W"]] == 0)
    assert np.all(params["W"][masks["W"]] != 0) or n_steps == 0  # the kept weights did move


def test_iterative_pruning_with_fit_keeps_masks_and_converts_to_integer():
    x, y = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, seed=0)
    model = MLP([64, 32, 10], seed=0)
    fit(model, Adam(3e-3), x_tr, y_tr, epochs=8, batch_size=32, verbose=False)
    for s in (0.5, 0.8):
        masks = prune_masks(model, s)
        apply_masks(model.params, masks)
        fit(model, MaskedOptimizer(Adam(3e-3), masks), x_tr, y_tr, epochs=3, batch_size=32, verbose=False)
    assert abs(sparsity(model.params) - 0.8) < 1e-3
    assert all(np.all(model.params[k][~m] == 0) for k, m in masks.items())
    assert model.accuracy(x_te, y_te) > 0.85
    q = quantize_model(model, x_tr)  # symmetric weights: a pruned 0 stays an integer 0
    for layer, (k, m) in zip(q.layers, masks.items()):
        assert np.array_equal(layer.w_q != 0, model.params[k] != 0)


# --------------------------------------------------------------------------- weight sharing


@given(float_arrays(st.integers(2, 60)), st.integers(1, 8))
def test_kmeans_assigns_every_value_to_its_nearest_centroid(v, k):
    centroids, assign = kmeans_1d(v, k)
    dist = np.abs(v[:, None] - centroids[None, :])
    assert np.allclose(dist[np.arange(v.size), assign], dist.min(axis=1))
    assert len(np.unique(centroids[assign])) <= k


def test_kmeans_step_worked_example():
    v = np.array([0.0, 0.1, 0.9, 1.0, 1.1])
    assign, c = kmeans_step(v, np.array([0.0, 1.0]))
    assert assign.tolist() == [0, 0, 1, 1, 1]
    assert np.allclose(c, [0.05, 1.0])
    _, c = kmeans_step(v, np.array([0.0, 5.0, 1.0]))  # an empty cluster keeps its centroid
    assert np.allclose(c, [0.05, 5.0, 1.0])


@given(seeds, st.integers(2, 6), st.integers(0, 4))
def test_shared_layer_has_k_values_and_the_summed_member_gradient(seed, k, n_steps):
    rng = np.random.default_rng(seed)
    model = MLP([5, 7, 3], seed=seed)
    masks = prune_masks(model, 0.3)
    shared = SharedWeightMLP(model, k, masks)
    x, y = rng.standard_normal((8, 5)).astype(np.float32), rng.integers(0, 3, 8)
    opt = Adam(0.05)
    for _ in range(n_steps):
        opt.step(shared.params, shared.loss_and_grads(x, y)[1])
    dense = shared.to_mlp()
    for l, lin in enumerate(dense.linears, start=1):
        m = shared.masks[f"W{l}"]
        assert len(np.unique(lin.W[m])) <= k and np.all(lin.W[~m] == 0)
    _, g_shared = shared.loss_and_grads(x, y)
    _, g_dense = dense.loss_and_grads(x, y)
    for l in range(1, 3):
        idx, m = shared.idx[f"W{l}"], shared.masks[f"W{l}"]
        want = np.zeros(k)
        for (i, j), keep in np.ndenumerate(m):  # the definition, one member at a time
            if keep:
                want[idx[i, j]] += g_dense[f"W{l}"][i, j]
        assert np.allclose(g_shared[f"C{l}"], want, rtol=1e-5, atol=1e-6)


def test_centroid_gradient_matches_finite_differences():
    rng = np.random.default_rng(3)
    model = MLP([4, 6, 3], seed=3, dtype=np.float64)
    shared = SharedWeightMLP(model, 3)
    x, y = rng.standard_normal((10, 4)), rng.integers(0, 3, 10)
    _, grads = shared.loss_and_grads(x, y)
    c, eps = shared.params["C1"], 1e-6
    for j in range(3):
        c[j] += eps
        up = shared.loss_and_grads(x, y)[0]
        c[j] -= 2 * eps
        down = shared.loss_and_grads(x, y)[0]
        c[j] += eps
        assert abs((up - down) / (2 * eps) - grads["C1"][j]) < 1e-6


def test_centroid_grads_worked_example():
    dW = np.array([[1.0, 2.0], [3.0, 4.0]])
    idx = np.array([[0, 1], [1, 1]])
    mask = np.array([[True, True], [True, False]])
    assert centroid_grads(dW, idx, mask, 3).tolist() == [1.0, 5.0, 0.0]


# --------------------------------------------------------------------------- Huffman and sizes


def test_huffman_textbook_example():
    # Cormen et al., Introduction to Algorithms, 16.3: a:45 b:13 c:12 d:16 e:9 f:5
    lengths = huffman_code_lengths([45, 13, 12, 16, 9, 5])
    assert lengths.tolist() == [1, 3, 3, 3, 4, 4]
    assert huffman_code_lengths([0, 7, 0]).tolist() == [0, 1, 0]


@given(st.lists(st.integers(0, 1000), min_size=2, max_size=20).filter(lambda c: sum(1 for v in c if v) >= 2))
def test_huffman_is_a_complete_prefix_code_within_a_bit_of_the_entropy(counts):
    counts = np.array(counts)
    lengths = huffman_code_lengths(counts)
    used = counts > 0
    assert np.isclose(np.sum(2.0 ** -lengths[used]), 1.0)  # Kraft equality: complete
    p = counts[used] / counts.sum()
    entropy = -np.sum(counts[used] * np.log2(p))
    bits = np.sum(counts * lengths)
    assert entropy - 1e-9 <= bits <= entropy + counts.sum()


@given(st.lists(st.booleans(), min_size=1, max_size=200), st.integers(1, 5))
def test_relative_index_gaps_reconstruct_the_positions(mask, index_bits):
    mask = np.array(mask)
    gaps, n_fill = relative_index_gaps(mask, index_bits)
    assert np.all((gaps >= 1) & (gaps <= 2**index_bits))
    stored = np.cumsum(gaps) - 1
    assert set(np.flatnonzero(mask)) <= set(stored.tolist())
    assert len(stored) - mask.sum() == n_fill


def test_compression_sizes_shrink_at_every_stage():
    model = MLP([64, 32, 10], seed=0)
    masks = prune_masks(model, 0.8)
    apply_masks(model.params, masks)
    sizes = compression_sizes(SharedWeightMLP(model, 16, masks))
    assert sizes.dense == 4 * (64 * 32 + 32 * 10 + 32 + 10)
    assert sizes.dense > sizes.pruned > sizes.shared > sizes.huffman
