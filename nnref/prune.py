"""Deep Compression: magnitude pruning, k-means weight sharing and Huffman coding.

Han, Mao & Dally, *Deep Compression: Compressing Deep Neural Networks with Pruning,
Trained Quantization and Huffman Coding*, ICLR 2016 (arXiv:1510.00149), in three stages:

1. **Pruning** (section 2; Han et al. 2015, arXiv:1506.02626): zero the weights of
   smallest magnitude, per layer or with one global threshold, then retrain the rest with
   the pruned weights held at zero; iteratively (prune a little, retrain, prune more).
   Here the masks are kept by :class:`MaskedOptimizer`, which wraps any nnref optimizer:
   pruned entries get zero gradient, their optimizer state (momentum, Adam's moments) is
   zeroed, and the mask is re-applied after every step, so they stay exactly 0.
2. **Trained quantization by weight sharing** (section 3): the surviving weights of a
   layer are clustered into ``k`` values by 1-D k-means (linear initialisation); each
   weight stores a ``log2 k``-bit index into a table of ``k`` float32 centroids; the
   centroids are fine-tuned with the gradient of a shared value, the sum of its members'
   gradients (eq. 3): :class:`SharedWeightMLP`, trainable with :func:`nnref.train.fit`.
3. **Huffman coding** (section 4) of the cluster indices and of the sparse-storage index
   gaps: :func:`huffman_code_lengths`, sizes by :func:`compression_sizes`.

Biases are neither pruned nor shared (they are 1% of the parameters; Han et al. prune
weights only).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

from ._checks import as_float_array, as_int_array, check_int_in_range, check_names, describe
from .mlp import MLP

__all__ = [
    "magnitude_mask_plain",
    "magnitude_mask",
    "global_magnitude_masks",
    "prune_masks",
    "apply_masks",
    "sparsity",
    "MaskedOptimizer",
    "linear_centroids",
    "kmeans_step",
    "kmeans_1d",
    "centroid_grads",
    "SharedWeightMLP",
    "huffman_code_lengths",
    "relative_index_gaps",
    "CompressionSizes",
    "compression_sizes",
]


# --------------------------------------------------------------------------- pruning


def magnitude_mask_plain(w: np.ndarray, n_prune: int) -> np.ndarray:
    """Keep-mask pruning the ``n_prune`` entries of ``w`` of smallest ``|w|``.

    Formula (Han et al. 2015, section 3): ``mask = |w| > t`` with ``t`` the ``n_prune``-th
    smallest magnitude; ties at ``t`` are broken by position (a stable sort), so exactly
    ``n_prune`` entries are pruned. Returns a bool array of ``w``'s shape, True = kept.

    Parameters
    ----------
    w : float ndarray, any shape
    n_prune : int in [0, w.size]

    Returns
    -------
    ndarray of bool, ``w``'s shape (True = kept)
    """
    order = np.argsort(np.abs(w).ravel(), kind="stable")
    keep = np.ones(w.size, dtype=bool)
    keep[order[:n_prune]] = False
    return keep.reshape(w.shape)


def _check_sparsity(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"sparsity: expected a number in [0, 1), got {value!r}")
    return float(value)


def magnitude_mask(w, sparsity: float) -> np.ndarray:
    """Magnitude-pruning mask of one tensor: ``round(sparsity * w.size)`` entries pruned.

    Parameters
    ----------
    w : finite float array-like, any shape
    sparsity : float in [0, 1), the fraction of entries to prune

    Returns
    -------
    ndarray of bool, ``w``'s shape, True where the weight is kept.
    """
    w = as_float_array(w, "w")
    return magnitude_mask_plain(w, int(round(_check_sparsity(sparsity) * w.size)))


def global_magnitude_masks(weights: dict, sparsity: float) -> dict[str, np.ndarray]:
    """Masks with one threshold for all tensors: the ``round(sparsity * total)`` smallest
    magnitudes over every tensor of ``weights`` (dict name -> array) are pruned.

    Returns a dict name -> bool mask (True = kept). A layer with small weights loses more
    of them than the average (Han et al. prune per layer; global pruning is the other
    common choice, e.g. ``torch.nn.utils.prune.global_unstructured``).

    Parameters
    ----------
    weights : dict name -> finite float array
    sparsity : float in [0, 1)

    Returns
    -------
    dict name -> ndarray of bool (True = kept)
    """
    if not isinstance(weights, dict) or not weights:
        raise TypeError(f"weights: expected a non-empty dict name -> array, got {describe(weights)}")
    arrays = {k: as_float_array(v, f"weights[{k!r}]") for k, v in weights.items()}
    flat = np.concatenate([a.ravel() for a in arrays.values()])
    keep = magnitude_mask_plain(flat, int(round(_check_sparsity(sparsity) * flat.size)))
    out, start = {}, 0
    for k, a in arrays.items():
        out[k] = keep[start:start + a.size].reshape(a.shape)
        start += a.size
    return out


def prune_masks(model: MLP, sparsity: float, scope: str = "layer") -> dict[str, np.ndarray]:
    """Magnitude masks for every weight matrix ``W1, W2, ...`` of ``model`` (biases kept).

    ``scope="layer"``: each matrix loses the fraction ``sparsity`` of its entries;
    ``scope="global"``: one threshold over all matrices (:func:`global_magnitude_masks`).

    Parameters
    ----------
    model : nnref MLP
    sparsity : float in [0, 1)
    scope : {"layer", "global"}

    Returns
    -------
    dict ``"W1", "W2", ...`` -> ndarray of bool (True = kept)

    Raises
    ------
    TypeError, ValueError
        For a model that is not an MLP, a sparsity outside [0, 1) or an unknown scope.
    """
    if not isinstance(model, MLP):
        raise TypeError(f"model: expected an nnref MLP, got {describe(model)}")
    weights = {k: v for k, v in model.params.items() if k.startswith("W")}
    if scope == "layer":
        return {k: magnitude_mask(v, sparsity) for k, v in weights.items()}
    if scope == "global":
        return global_magnitude_masks(weights, sparsity)
    raise ValueError(f"scope: expected 'layer' or 'global', got {scope!r}")


def _check_masks(params: dict, masks: dict) -> None:
    """Refuse ``params`` or ``masks`` that are not dicts, and masks that match no parameter."""
    if not isinstance(params, dict):
        raise TypeError(f"params: expected a dict name -> array, got {describe(params)}")
    if not isinstance(masks, dict):
        raise TypeError(f"masks: expected a dict name -> bool array, got {describe(masks)}")
    for k, m in masks.items():
        if k not in params:
            raise ValueError(f"masks: key {k!r} is not a parameter (expected some of {sorted(params)})")
        if not isinstance(m, np.ndarray) or m.dtype != bool or m.shape != params[k].shape:
            raise ValueError(f"masks[{k!r}]: expected a bool array of shape {params[k].shape}, got {describe(m)}")


def apply_masks(params: dict, masks: dict) -> None:
    """Zero the pruned entries of ``params`` in place: ``p[~mask] = 0`` for each masked name.

    Parameters
    ----------
    params : dict name -> float array (modified in place)
    masks : dict name -> bool array of the parameter's shape (True = kept)

    Raises
    ------
    ValueError
        If a mask names no parameter or has the wrong shape or dtype.
    """
    _check_masks(params, masks)
    for k, m in masks.items():
        params[k][~m] = 0


def sparsity(params: dict, names=None) -> float:
    """Fraction of exactly-zero entries over ``names`` (default: every ``W*`` of ``params``).

    Parameters
    ----------
    params : dict name -> array
    names : iterable of str or None

    Returns
    -------
    float in [0, 1]

    Raises
    ------
    TypeError
        ``params`` not a dict; ``names`` a bare string or not a collection of names.
    ValueError
        A name that is not in ``params``.
    """
    if not isinstance(params, dict):
        raise TypeError(f"params: expected a dict name -> array, got {describe(params)}")
    names = [k for k in params if k.startswith("W")] if names is None else list(check_names(names, "names"))
    missing = [k for k in names if k not in params]
    if missing:
        raise ValueError(f"names: expected names of params {sorted(params)}, got {missing}")
    total = sum(np.size(params[k]) for k in names)
    return sum(int(np.count_nonzero(params[k] == 0)) for k in names) / max(total, 1)


class MaskedOptimizer:
    """Any nnref optimizer with pruning masks kept: pruned weights stay exactly zero.

    ``step(params, grads)``:

    1. ``g <- g * mask`` for every masked name (a pruned weight gets no gradient);
    2. the wrapped optimizer's ``step``;
    3. ``p[~mask] = 0`` and, for every array of the wrapped optimizer's ``state[name]``
       with the parameter's shape (SGD's momentum buffer, Adam's ``exp_avg`` and
       ``exp_avg_sq``), ``state[~mask] = 0``.

    Step 3 makes the guarantee independent of the optimizer's rule: weight decay, momentum
    from before pruning, or any update that would move a zero weight is undone, and the
    state that would carry it is cleared. Use it with :func:`nnref.train.fit` like any
    optimizer: ``fit(model, MaskedOptimizer(Adam(1e-3), masks), ...)``.

    Parameters
    ----------
    optimizer : an nnref optimizer (``step(params, grads)``, ``state`` dict)
    masks : dict name -> bool array (True = kept), e.g. from :func:`prune_masks`
    """

    def __init__(self, optimizer, masks: dict):
        if not (hasattr(optimizer, "step") and isinstance(getattr(optimizer, "state", None), dict)):
            raise TypeError(f"optimizer: expected an nnref optimizer (step, state), got {describe(optimizer)}")
        if not isinstance(masks, dict):
            raise TypeError(f"masks: expected a dict name -> bool array, got {describe(masks)}")
        self.optimizer = optimizer
        self.masks = masks

    @property
    def state(self) -> dict:
        """The wrapped optimizer's state (momentum buffers, Adam's moments), by parameter name."""
        return self.optimizer.state

    def step(self, params: dict, grads: dict) -> None:
        """Masked gradients, the wrapped optimizer's step, then pruned entries and their state zeroed."""
        _check_masks(params, self.masks)
        masked = {k: (g * self.masks[k] if k in self.masks else g) for k, g in grads.items()}
        self.optimizer.step(params, masked)
        for k, m in self.masks.items():
            params[k][~m] = 0
            for v in self.optimizer.state.get(k, {}).values():
                if isinstance(v, np.ndarray) and v.shape == m.shape:
                    v[~m] = 0

    def __repr__(self) -> str:
        return f"MaskedOptimizer({self.optimizer!r}, masks={sorted(self.masks)})"


# --------------------------------------------------------------------------- weight sharing


def linear_centroids(values: np.ndarray, k: int) -> np.ndarray:
    """``k`` centroids spaced evenly over ``[min, max]`` of ``values`` (Han et al. 2016,
    section 3.2: linear initialisation keeps the rare large weights, which matter most).

    Parameters
    ----------
    values : 1-D float ndarray (non-empty)
    k : int >= 1

    Returns
    -------
    ndarray (k,) of ``values``' dtype
    """
    return np.linspace(values.min(), values.max(), k).astype(values.dtype)


def kmeans_step(values: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One Lloyd iteration of 1-D k-means: ``(assignments, new centroids)``.

    Formula: ``a_i = argmin_j |v_i - c_j|`` (the lowest ``j`` on a tie), then
    ``c_j = mean{v_i : a_i = j}``; an empty cluster keeps its centroid. ``values`` (n,),
    ``centroids`` (k,) float; returns int64 (n,) and float (k,).

    References
    ----------
    S. Lloyd, *Least squares quantization in PCM*, IEEE Trans. Inf. Theory 28(2), 1982;
    Han et al. 2016, section 3.1 (eq. 2: the within-cluster sum of squares it minimises).
    """
    assign = np.argmin(np.abs(values[:, None] - centroids[None, :]), axis=1)
    sums = np.bincount(assign, weights=values, minlength=centroids.size)
    counts = np.bincount(assign, minlength=centroids.size)
    new = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
    return assign, new.astype(centroids.dtype)


def kmeans_1d(values, k: int, max_iter: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Cluster 1-D ``values`` into ``k`` shared values: :func:`kmeans_step` from
    :func:`linear_centroids` until the assignments stop changing (or ``max_iter``).

    Returns ``(centroids (k,), assignments (n,) int64)``; every value's nearest centroid is
    its own cluster's.

    Parameters
    ----------
    values : 1-D finite float array-like
    k : int >= 1, the number of clusters
    max_iter : int >= 1

    Returns
    -------
    (centroids, assignments) : float64 (k,), int64 (n,)
    """
    values = as_float_array(values, "values", ndim=1)
    k = check_int_in_range(k, "k", 1, 2**16)
    max_iter = check_int_in_range(max_iter, "max_iter", 1, 10**6)
    centroids = linear_centroids(values, k)
    assign = None
    for _ in range(max_iter):
        new_assign, centroids = kmeans_step(values, centroids)
        if assign is not None and np.array_equal(new_assign, assign):
            break
        assign = new_assign
    assign = np.argmin(np.abs(values[:, None] - centroids[None, :]), axis=1)  # final centroids
    return centroids, assign


def centroid_grads(dW: np.ndarray, idx: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """Gradient of the shared values: ``dL/dc_j = sum_{i: idx_i = j, kept} dL/dW_i``.

    Han et al. 2016, eq. 3. ``dW`` float, ``idx`` int and ``mask`` bool of the same shape;
    returns ``(k,)`` in ``dW``'s dtype.

    Parameters
    ----------
    dW : float ndarray (in, out), the dense weight gradient
    idx : int ndarray (in, out), each weight's cluster
    mask : bool ndarray (in, out), True = kept (pruned weights belong to no cluster)
    k : int, the number of clusters

    Returns
    -------
    ndarray (k,)
    """
    return np.bincount(idx[mask], weights=dW[mask], minlength=k).astype(dW.dtype)


class SharedWeightMLP:
    """An MLP whose weight matrices are ``k``-value codebooks: ``W_l = where(mask_l,
    C_l[idx_l], 0)``.

    Built from a (pruned) float MLP by clustering each layer's kept weights with
    :func:`kmeans_1d`. Its trainable parameters are the centroids and the biases,
    ``params = {"C1": (k,), "b1": ..., "C2": ...}``, so :func:`nnref.train.fit` fine-tunes
    the centroids directly: :meth:`loss_and_grads` returns ``dL/dC_l =``
    :func:`centroid_grads` of the dense ``dL/dW_l``. Every forward rebuilds the dense
    weights from the current centroids, so a layer never holds more than ``k`` distinct
    kept values.

    Parameters
    ----------
    model : float MLP (copied); masks : optional dict ``W1, ...`` -> bool keep-masks
        (default: keep every entry); k : number of shared values per layer (2..65536)
    """

    def __init__(self, model: MLP, k: int, masks: dict | None = None, max_iter: int = 50):
        if not isinstance(model, MLP):
            raise TypeError(f"model: expected an nnref MLP, got {describe(model)}")
        self.k = check_int_in_range(k, "k", 2, 2**16)
        self.model = model.copy()
        weights = {n: p for n, p in self.model.params.items() if n.startswith("W")}
        masks = {n: np.ones(w.shape, dtype=bool) for n, w in weights.items()} if masks is None else masks
        _check_masks(self.model.params, masks)
        self.masks, self.idx, self.centroids = {}, {}, {}
        for l, name in enumerate(weights, start=1):
            m = masks.get(name, np.ones(weights[name].shape, dtype=bool))
            c, a = kmeans_1d(weights[name][m].astype(np.float64), self.k, max_iter)
            idx = np.zeros(m.shape, dtype=np.int64)
            idx[m] = a
            self.masks[name], self.idx[name] = m, idx
            self.centroids[f"C{l}"] = c.astype(self.model.dtype)
        self._rebuild()

    # the attributes fit and evaluate read
    dtype = property(lambda self: self.model.dtype)
    in_features = property(lambda self: self.model.in_features)
    n_outputs = property(lambda self: self.model.n_outputs)

    @property
    def params(self) -> dict[str, np.ndarray]:
        """``{"C1": centroids, "b1": bias, ...}``: the arrays optimizers update in place."""
        out = {}
        for l, lin in enumerate(self.model.linears, start=1):
            out[f"C{l}"], out[f"b{l}"] = self.centroids[f"C{l}"], lin.b
        return out

    def _rebuild(self) -> None:
        for l, lin in enumerate(self.model.linears, start=1):
            m, idx = self.masks[f"W{l}"], self.idx[f"W{l}"]
            lin.W[...] = np.where(m, self.centroids[f"C{l}"][idx], 0)

    def to_mlp(self) -> MLP:
        """A plain MLP holding the current shared weights (a copy)."""
        self._rebuild()
        return self.model.copy()

    def check_input(self, x, name: str = "x") -> np.ndarray:
        """The wrapped model's input check (:meth:`nnref.mlp.MLP.check_input`)."""
        return self.model.check_input(x, name)

    def inputs_checked(self):
        """The wrapped model's block of trusted inputs (:meth:`nnref.mlp.MLP.inputs_checked`)."""
        return self.model.inputs_checked()

    def forward(self, x) -> np.ndarray:
        """Logits of the model with the current shared weights."""
        self._rebuild()
        return self.model.forward(x)

    def loss_and_grads(self, x, labels, loss: str = "cross_entropy"):
        """``(loss, {"C1": dL/dC1, "b1": dL/db1, ...})``; see :func:`centroid_grads`."""
        self._rebuild()
        value, grads = self.model.loss_and_grads(x, labels, loss)
        out = {}
        for l in range(1, len(self.model.linears) + 1):
            name = f"W{l}"
            out[f"C{l}"] = centroid_grads(grads[name], self.idx[name], self.masks[name], self.k)
            out[f"b{l}"] = grads[f"b{l}"]
        return value, out

    def predict(self, x) -> np.ndarray:
        """The predicted class of each row of ``x``, with the current shared values."""
        self._rebuild()
        return self.model.predict(x)

    def accuracy(self, x, labels) -> float:
        """The fraction of rows of ``x`` classified as ``labels``, with the current shared values."""
        self._rebuild()
        return self.model.accuracy(x, labels)

    def __repr__(self) -> str:
        return f"SharedWeightMLP({self.model.layer_sizes}, k={self.k})"


# --------------------------------------------------------------------------- Huffman coding and sizes


def huffman_code_lengths(counts) -> np.ndarray:
    """Code length in bits of each symbol of an optimal prefix code (Huffman 1952).

    Formula: repeatedly merge the two least frequent subtrees (ties: the earlier created
    first); each merge adds one bit to every symbol below it. ``counts`` (n,) non-negative
    ints; symbols of count 0 get length 0; a single used symbol gets 1 bit. Returns int64
    (n,). The coded size is ``sum(counts * lengths)`` bits, within 1 bit per symbol of the
    entropy ``-sum n_i log2(n_i / N)``.

    Parameters
    ----------
    counts : 1-D array-like of non-negative ints

    Returns
    -------
    ndarray of int64, one code length per symbol

    References
    ----------
    D. A. Huffman, *A Method for the Construction of Minimum-Redundancy Codes*, Proc. IRE 40(9), 1952.
    """
    counts = as_int_array(counts, "counts", ndim=1)
    if counts.min() < 0:
        raise ValueError(f"counts: expected non-negative counts, got min {counts.min()}")
    lengths = np.zeros(counts.size, dtype=np.int64)
    heap = [(int(c), i, [i]) for i, c in enumerate(counts) if c > 0]
    heapq.heapify(heap)
    if len(heap) == 1:
        lengths[heap[0][2]] = 1
    tie = counts.size
    while len(heap) > 1:
        c1, _, s1 = heapq.heappop(heap)
        c2, _, s2 = heapq.heappop(heap)
        lengths[s1 + s2] += 1
        heapq.heappush(heap, (c1 + c2, tie, s1 + s2))
        tie += 1
    return lengths


def relative_index_gaps(mask, index_bits: int) -> tuple[np.ndarray, int]:
    """Sparse storage by relative index (Han et al. 2016, section 2, Figure 2).

    The kept positions ``p_0 < p_1 < ...`` of the flattened ``mask`` are stored as gaps
    ``d_i = p_i - p_{i-1}`` (``p_{-1} = -1``), each in ``index_bits`` bits, so ``1 <= d <=
    2**index_bits``; a larger gap is bridged by filler entries (a stored zero) every
    ``2**index_bits`` positions. Returns ``(gaps of every stored entry, fillers inserted)``.

    Parameters
    ----------
    mask : bool array-like, any shape (flattened in C order)
    index_bits : int in 1..32

    Returns
    -------
    (gaps, n_fillers) : int64 (stored entries,), int
    """
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.ndim == 0:
        raise TypeError(f"mask: expected a bool array (True = kept), got {describe(mask)}")
    mask = mask.ravel()
    index_bits = check_int_in_range(index_bits, "index_bits", 1, 32)
    span = 2**index_bits
    gaps = np.diff(np.concatenate([[-1], np.flatnonzero(mask)]))
    out = []
    for d in gaps.tolist():
        while d > span:
            out.append(span)
            d -= span
        out.append(d)
    return np.asarray(out, dtype=np.int64), len(out) - gaps.size


@dataclass(frozen=True)
class CompressionSizes:
    """Bytes of the weights and biases after each Deep Compression stage."""

    dense: int     # float32, every weight
    pruned: int    # float32 kept weights + index gaps (+ fillers)
    shared: int    # log2(k)-bit cluster indices + gaps + float32 codebooks
    huffman: int   # Huffman-coded cluster indices and gaps + codebooks + code tables


def compression_sizes(shared: SharedWeightMLP, index_bits: int = 5) -> CompressionSizes:
    """The three-stage sizes of Deep Compression's Table 1, for a :class:`SharedWeightMLP`.

    Per layer with ``n`` stored entries (kept weights plus fillers, :func:`relative_index_gaps`):

    - pruned: ``n * (32 + index_bits)`` bits;
    - shared: ``n * (ceil(log2(k + 1)) + index_bits)`` bits (``k`` clusters plus the filler
      zero as a symbol) and the float32 codebook ``32 k``;
    - Huffman: the cluster indices and the gaps Huffman-coded (:func:`huffman_code_lengths`),
      the codebook, and the two code tables at one byte (a code length) per symbol.

    Biases are float32 at every stage; each layer's total is rounded up to whole bytes.

    Parameters
    ----------
    shared : SharedWeightMLP
    index_bits : int in 1..32, bits per relative index (Han et al. use 5 for FC layers)

    Returns
    -------
    CompressionSizes
    """
    if not isinstance(shared, SharedWeightMLP):
        raise TypeError(f"shared: expected a SharedWeightMLP, got {describe(shared)}")
    k = shared.k
    bias_bytes = 4 * sum(lin.b.size for lin in shared.model.linears)
    dense = 4 * sum(lin.W.size for lin in shared.model.linears) + bias_bytes
    pruned = shared_b = huff = bias_bytes
    for name, m in shared.masks.items():
        gaps, n_fill = relative_index_gaps(m, index_bits)
        n = gaps.size
        pruned += math.ceil(n * (32 + index_bits) / 8)
        shared_b += math.ceil(n * (math.ceil(math.log2(k + 1)) + index_bits) / 8) + 4 * k
        symbols = np.concatenate([shared.idx[name].ravel()[m.ravel()], np.full(n_fill, k)])
        sym_counts = np.bincount(symbols, minlength=k + 1)
        gap_counts = np.bincount(gaps - 1, minlength=2**index_bits)
        bits = int(np.sum(sym_counts * huffman_code_lengths(sym_counts)))
        bits += int(np.sum(gap_counts * huffman_code_lengths(gap_counts)))
        huff += math.ceil(bits / 8) + 4 * k + (k + 1) + 2**index_bits
    return CompressionSizes(dense, pruned, shared_b, huff)
