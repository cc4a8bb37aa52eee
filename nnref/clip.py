"""Gradient clipping: by value, by norm, by global norm, adaptive (AGC), per example
(DP-SGD) and AutoClip, plus thin callable wrappers for ``fit(..., grad_transform=...)``.

Gradients are a dict name -> array (as :attr:`nnref.mlp.MLP.grads`: ``W`` of shape
``(in, out)``, ``b`` of shape ``(out,)``) or a list (or tuple) of arrays. Every function

* returns a NEW structure of the same kind: a dict with the same keys in the same order,
  or a list (tuple), holding new arrays; the inputs are never modified;
* keeps each array's floating dtype (float32 in, float32 out). Integer arrays and Python
  lists are read as float64, like everywhere else in nnref;
* computes the L2 norm in the gradients' own dtype, as PyTorch does (a BLAS dot; redone
  in float64 when the float32 sum of squares overflows or underflows), other p-norms in
  float64; then rounds the scale factor to the array's dtype and multiplies: one
  rounding per entry, as PyTorch does. Norms are the plain sums of ``|g_j|^p`` (no
  rescaling): float64 entries beyond ~1e154 (below ~1e-154) overflow (underflow).

Norms: ``||g||_p = (sum_j |g_j|^p)^(1/p)``, and ``||g||_inf = max_j |g_j|``.
"""

from __future__ import annotations

import inspect
import math
import numbers

import numpy as np

from ._checks import as_float_array, as_rng, check_nonnegative, check_positive, describe

__all__ = [
    "l2_norm",
    "NonFiniteNormError",
    "tensor_norms",
    "global_norm",
    "clip_by_value",
    "clip_by_norm",
    "clip_by_global_norm",
    "adaptive_clip",
    "per_example_clip",
    "Clipper",
    "Value",
    "Norm",
    "GlobalNorm",
    "Adaptive",
    "AutoClip",
]

# The structure every function takes (a tuple is accepted too and given back as a tuple).
Grads = dict[str, np.ndarray] | list[np.ndarray]


class NonFiniteNormError(ValueError, RuntimeError):
    """The total gradient norm is NaN or infinite, so it cannot be used for clipping.

    A ``ValueError`` (nnref's convention for bad input) that is also a ``RuntimeError``
    (what PyTorch's ``clip_grad_norm_(..., error_if_nonfinite=True)`` raises), so code
    written for either catches it.
    """


# ----------------------------------------------------------------------------- helpers


def _unpack(grads, name: str, *, finite: bool = False) -> tuple[list, list[np.ndarray]]:
    """``(keys, arrays)`` of a dict (keys: its names) or list/tuple (keys: positions)."""
    if isinstance(grads, dict):
        keys = list(grads)
    elif isinstance(grads, (list, tuple)):
        keys = list(range(len(grads)))
    else:
        raise TypeError(
            f"{name}: expected a dict name -> array or a list of arrays, got {describe(grads)}"
        )
    arrays = [grads[k] for k in keys]
    if not finite and all(type(a) is np.ndarray and a.dtype.kind == "f" for a in arrays):
        return keys, arrays  # already what as_float_array would return (the hot path)
    arrays = [
        as_float_array(grads[k], f"{name}[{k!r}]", finite=finite, allow_empty=True) for k in keys
    ]
    return keys, arrays


def _pack(like, keys: list, arrays: list[np.ndarray]):
    """Rebuild the structure of ``like`` (dict, list or tuple) around ``arrays``."""
    if isinstance(like, dict):
        return dict(zip(keys, arrays))
    return type(like)(arrays) if isinstance(like, tuple) else list(arrays)


def _unpack_like(params, grads, keys: list, g_arrays: list[np.ndarray]) -> list[np.ndarray]:
    """The arrays of ``params``, in the order of ``grads``, after checking both match."""
    if isinstance(params, dict) != isinstance(grads, dict):
        raise TypeError(
            f"params: expected the same kind of structure as grads ({type(grads).__name__}), "
            f"got {describe(params)}"
        )
    p_keys, p_arrays = _unpack(params, "params", finite=True)
    if isinstance(grads, dict):
        if set(p_keys) != set(keys):
            raise ValueError(f"params: expected the keys of grads {keys}, got {p_keys}")
        by_key = dict(zip(p_keys, p_arrays))
        p_arrays = [by_key[k] for k in keys]
    elif len(p_arrays) != len(g_arrays):
        raise ValueError(
            f"params: expected {len(g_arrays)} arrays (one per gradient), got {len(p_arrays)}"
        )
    for k, g, w in zip(keys, g_arrays, p_arrays):
        if w.shape != g.shape:
            raise ValueError(f"params[{k!r}]: expected shape {g.shape} (that of grads[{k!r}]), got {w.shape}")
    return p_arrays


def _check_norm_type(norm_type) -> float:
    """``p`` as a float: any number > 0, ``float('inf')`` included."""
    if isinstance(norm_type, bool) or not isinstance(norm_type, numbers.Real):
        raise TypeError(f"norm_type: expected a real number > 0 or float('inf'), got {describe(norm_type)}")
    p = float(norm_type)
    if not p > 0:  # also refuses NaN
        raise ValueError(f"norm_type: expected a number > 0 or float('inf'), got {p}")
    return p


def _vector_norm(x: np.ndarray, p: float) -> float:
    """``||x||_p`` over every entry of ``x``; 0.0 for an empty array. Float64 arithmetic,
    except the L2 norm of a float32 array, which is a float32 BLAS dot (see below).

    The textbook sum, unscaled like PyTorch's: exact where the worked examples are
    (``sqrt(9 + 16) == 5``), at the price of the float64 range noted above.
    """
    if x.size == 0:
        return 0.0
    if p == 2.0:
        return l2_norm(x)
    a = np.abs(x.astype(np.float64)).ravel()
    if p == np.inf:
        return float(np.max(a))  # NaN if any entry is NaN
    if p == 2.0:
        return float(np.sqrt(np.sum(a * a)))
    return float(np.sum(a**p) ** (1.0 / p))


def l2_norm(x: np.ndarray) -> float:
    """``||x||_2 = sqrt(sum_j x_j^2)`` over every entry, as a Python float.

    The training loop's hot path (:func:`nnref.train.fit` records it at every step, and
    clipping needs it): a BLAS dot in the array's own dtype, as PyTorch computes norms in
    the gradients' dtype. It is redone in float64 when that sum is not trustworthy: not
    finite (a NaN/inf entry, or float32 overflow) or so small that squares may have
    fallen below the normal range, ``sum < size * tiny / eps``, which bounds the relative
    error that subnormal squares can cause by ``eps / 2``.
    """
    flat = x.ravel()
    if flat.dtype in (np.float32, np.float64):
        with np.errstate(over="ignore", under="ignore"):
            sq = float(np.dot(flat, flat))
        if np.isfinite(sq) and (sq >= flat.size * _SAFE_SQ[flat.dtype.char] or not flat.any()):
            return float(np.sqrt(sq))
    a = np.abs(flat.astype(np.float64))
    return float(np.sqrt(np.dot(a, a)))


_SAFE_SQ = {t: float(np.finfo(t).tiny / np.finfo(t).eps) for t in ("f", "d")}


def _global_norm(arrays: list[np.ndarray], p: float) -> float:
    """The p-norm of the per-tensor p-norms (PyTorch's ``get_total_norm``)."""
    return _vector_norm(np.array([_vector_norm(g, p) for g in arrays]), p)


def _scale(g: np.ndarray, factor) -> np.ndarray:
    """``g * factor`` with the factor rounded to g's dtype first, so the dtype is kept."""
    if isinstance(factor, float) and factor != 0.0 and math.isfinite(factor):
        # The common case (a global coefficient): no inf * 0 can happen, so no
        # floating-point state to manage. Rounded to g's dtype first.
        return g * g.dtype.type(factor)
    f = np.asarray(factor, dtype=np.float64).astype(g.dtype)
    with np.errstate(invalid="ignore"):  # inf * 0 = NaN is the documented result
        return g * f


def _nonfinite_report(name: str, keys: list, arrays: list[np.ndarray]) -> str:
    """Which tensors hold NaN or inf, for error messages."""
    parts = []
    for k, g in zip(keys, arrays):
        n_nan, n_inf = int(np.isnan(g).sum()), int(np.isinf(g).sum())
        if n_nan or n_inf:
            parts.append(f"{name}[{k!r}] ({n_nan} NaN, {n_inf} inf)")
    return ", ".join(parts) if parts else "none (the finite entries overflowed the float64 norm)"


# ----------------------------------------------------------------------------- norms


def tensor_norms(grads: Grads, norm_type: float = 2.0) -> dict[str, float] | list[float]:
    """The p-norm of each tensor separately: ``n_t = ||vec(g_t)||_p``.

    Returns the same structure holding Python floats (dict name -> float, or list of
    floats). ``norm_type = float('inf')`` gives ``max_j |g_tj|``. Computed in float64;
    an empty tensor has norm 0; a NaN entry makes its tensor's norm NaN.
    """
    p = _check_norm_type(norm_type)
    keys, arrays = _unpack(grads, "grads")
    norms = [_vector_norm(g, p) for g in arrays]
    return dict(zip(keys, norms)) if isinstance(grads, dict) else norms


def global_norm(grads: Grads, norm_type: float = 2.0) -> float:
    """The total norm of all gradients viewed as one vector: ``||(n_1, ..., n_T)||_p``.

    ``n_t`` are the per-tensor p-norms (:func:`tensor_norms`), so for finite p this is
    ``(sum_t sum_j |g_tj|^p)^(1/p)`` and for p = inf the largest ``|g_tj|``. Computed as
    PyTorch's ``torch.nn.utils.get_total_norm`` does (a norm of norms), but in float64.
    An empty structure has norm 0.0. Returns a Python float (NaN/inf if any entry is).
    """
    p = _check_norm_type(norm_type)
    _, arrays = _unpack(grads, "grads")
    return _global_norm(arrays, p)


# ----------------------------------------------------------------------------- clipping


def clip_by_value(grads: Grads, clip_value: float) -> Grads:
    """Clamp every entry to ``[-v, v]``: ``g_j <- min(max(g_j, -v), v)``, ``v = clip_value``.

    PyTorch's ``clip_grad_value_`` and TensorFlow's ``clip_by_value``. This is the
    element-wise clipping of the early RNN literature (Mikolov 2012; discussed by Pascanu
    et al. 2013, arXiv 1211.5063): the update ``theta -= eta * clip(grad, -c/2, c/2)`` is
    ``theta -= eta * clip_by_value(grad, c/2)``. Unlike norm clipping it changes the
    direction of the gradient. ``inf`` becomes ``+-v``; NaN stays NaN (clamping does not
    hide it). ``clip_value >= 0``; 0 zeroes every finite entry.
    """
    v = check_nonnegative(clip_value, "clip_value")
    keys, arrays = _unpack(grads, "grads")
    return _pack(grads, keys, [np.clip(g, -v, v) for g in arrays])


def clip_by_norm(grads: Grads, max_norm: float) -> Grads:
    """Clip each tensor's L2 norm separately: ``g_t <- g_t * c / max(||g_t||_2, c)``.

    TensorFlow's ``tf.clip_by_norm`` applied to every tensor, ``c = max_norm >= 0``. The
    factor ``c / max(n, c)`` is exactly 1.0 when ``n <= c``, so such a tensor comes back
    bit-for-bit unchanged (TensorFlow computes ``(t * c) / max(n, c)``, which can differ
    in the last bit). A NaN norm gives a NaN tensor; an inf norm gives 0 for finite entries
    and NaN for infinite ones, as in TensorFlow. With ``c = 0`` every tensor becomes 0.
    """
    c = check_nonnegative(max_norm, "max_norm")
    keys, arrays = _unpack(grads, "grads")
    out = []
    for g in arrays:
        n = _vector_norm(g, 2.0)
        out.append(_scale(g, 1.0 if n <= c else c / n))  # `n <= c` is False for NaN
    return _pack(grads, keys, out)


def clip_by_global_norm(
    grads: Grads,
    max_norm: float,
    norm_type: float = 2.0,
    eps: float = 1e-6,
    error_if_nonfinite: bool = False,
) -> tuple[Grads, float]:
    """Scale all gradients by one factor so their total norm is at most ``max_norm``.

    PyTorch's ``torch.nn.utils.clip_grad_norm_`` (= ``get_total_norm`` followed by
    ``clip_grads_with_norm_``), the method of Pascanu et al. 2013 (arXiv 1211.5063)::

        total = || (||g_1||_p, ..., ||g_T||_p) ||_p          (see global_norm)
        coef  = min(max_norm / (total + eps), 1)
        g_t  <- g_t * coef                                  for every tensor t

    The multiply happens even when ``coef == 1`` (values unchanged: ``x * 1.0 == x``).
    Because of ``eps`` a clipped total is slightly *below* ``max_norm``, and gradients with
    ``max_norm - eps < total < max_norm`` are scaled by a factor just under 1.

    Returns ``(clipped, total)``: the new structure and the total norm BEFORE clipping
    (a Python float).

    Non-finite total (a NaN or inf gradient entry): with ``error_if_nonfinite=True``
    raises :class:`NonFiniteNormError` (a ``ValueError`` and a ``RuntimeError``, the
    latter as PyTorch) naming the tensors that hold NaN/inf. Otherwise PyTorch's results:
    an inf total gives ``coef = 0``, so finite entries become 0 and infinite ones NaN
    (``inf * 0``); a NaN total gives ``coef = NaN`` and every entry NaN.

    Differences from other engines:

    * PyTorch computes the norms in the gradients' dtype (float32 for float32 gradients);
      so does nnref for the L2 norm (a BLAS dot, redone in float64 if the float32 sum
      overflows); other p are computed in float64. Results can differ from PyTorch's in
      the last bit, since the summation order differs.
      PyTorch's eps is fixed at 1e-6; here it is a parameter (``eps = 0`` is allowed; an
      all-zero gradient then gets ``coef = 1``).
    * TensorFlow's ``tf.clip_by_global_norm`` (L2 only) has no eps:
      ``scale = c * min(1 / total, 1 / c)``, so clipped values differ in the last digits,
      and for a NaN or inf total it returns NaN everywhere.
    * Optax's ``clip_by_global_norm`` follows TensorFlow in having no eps: it keeps
      ``g`` when ``total < c``, else returns ``(g / total) * c``. For non-finite totals
      it does not: an inf total gives 0 and NaN as PyTorch does; a NaN total, NaN.
    """
    c = check_nonnegative(max_norm, "max_norm")
    p = _check_norm_type(norm_type)
    eps = check_nonnegative(eps, "eps")
    keys, arrays = _unpack(grads, "grads")
    total = _global_norm(arrays, p)
    if error_if_nonfinite and not np.isfinite(total):
        raise NonFiniteNormError(
            f"grads: the total {p}-norm is {total}, so it cannot be clipped; non-finite "
            f"tensors: {_nonfinite_report('grads', keys, arrays)}. Pass "
            f"error_if_nonfinite=False to scale by the non-finite norm as PyTorch does."
        )
    return _pack(grads, keys, _scale_to_norm(arrays, total, c, eps)), total


def _global_coef(total: float, max_norm: float, eps: float) -> float:
    """PyTorch's ``clip_coef_clamped = min(max_norm / (total + eps), 1)``."""
    denominator = total + eps
    # An all-zero gradient with eps = 0 has nothing to scale (and max_norm / 0 is undefined).
    return 1.0 if denominator == 0 else float(np.minimum(max_norm / denominator, 1.0))  # NaN stays NaN


def _scale_to_norm(arrays: list[np.ndarray], total: float, max_norm: float, eps: float) -> list[np.ndarray]:
    """Every array times ``coef = min(max_norm / (total + eps), 1)`` (new arrays)."""
    coef = _global_coef(total, max_norm, eps)
    return [_scale(g, coef) for g in arrays]


def _check_skip(skip) -> tuple:
    """``skip`` as a tuple; a bare string is refused (it would be read letter by letter)."""
    if not isinstance(skip, (list, tuple, set, frozenset)):
        raise TypeError(f"skip: expected a list or tuple of names, e.g. ('W2', 'b2'), got {describe(skip)}")
    return tuple(skip)


AGC_UNITS = ("per_unit", "nfnets")


def _unitwise_norm(x: np.ndarray, units: str = "per_unit") -> np.ndarray:
    """L2 norm of each output unit, shaped to broadcast against ``x`` (float64).

    ``units="per_unit"`` (nnref's default): an ``(in, out)`` weight has one unit per output
    column ``W[:, i]`` whatever its shape; a 1-D bias ``(out,)`` has one unit per element,
    ``b[i]`` being output unit ``i``'s bias (norm ``|b_i|``); a scalar is one unit.
    ``units="nfnets"``: the AGC authors' ``unitwise_norm`` (DeepMind's nfnets, also Optax
    and timm): a tensor that squeezes to at most 1-D (a bias, a scalar, an ``(in, 1)`` or
    ``(1, out)`` matrix) is ONE unit; a 2-D weight has one unit per output column.
    """
    x64 = x.astype(np.float64)
    if units == "nfnets" and np.squeeze(x).ndim <= 1:
        return np.sqrt(np.sum(x64 * x64, keepdims=True))
    if x.ndim <= 1:
        return np.abs(x64)
    if x.ndim == 2:
        return np.sqrt(np.sum(x64 * x64, axis=0, keepdims=True))
    raise ValueError(
        f"grads: adaptive clipping supports 0-D, 1-D and 2-D (in, out) tensors, got shape {x.shape}"
    )


def adaptive_clip(
    grads: Grads, params: Grads, clipping: float = 0.01, eps: float = 1e-3, skip: tuple | list = (),
    units: str = "per_unit",
) -> Grads:
    """Unit-wise adaptive gradient clipping, AGC (Brock et al. 2021, arXiv 2102.06171).

    For every unit ``i`` of every tensor (their eq. 3)::

        limit_i = clipping * max(||W_i||_F, eps)
        G_i    <- G_i * limit_i / max(||G_i||_F, 1e-6)     if ||G_i||_F > limit_i
        G_i    <- G_i                                       otherwise

    Units (``units``): the paper's units are a layer's output units, "the rows of the
    weight matrix" in its ``(out, in)`` layout. With ``units="per_unit"`` (default) unit
    ``i`` of an ``(in, out)`` weight ``W`` is its output column ``W[:, i]``, always, and a
    1-D bias ``b`` of shape ``(out,)`` is treated per unit: ``b_i``, with norm ``|b_i|``,
    belongs to unit ``i``. ``units="nfnets"`` reproduces the authors' reference code
    (DeepMind's nfnets ``unitwise_norm`` and ``SGD_AGC``; Optax's ``adaptive_grad_clip``
    and timm do the same): there a 1-D bias is ONE unit, ``||b||_2`` over the whole
    vector, as is any tensor that squeezes to at most 1-D (so an ``(in, 1)`` or
    ``(1, out)`` weight too). Columns of 2-D weights agree under both. ``eps`` keeps zero-initialised parameters (biases) from freezing: their
    limit is ``clipping * eps``. The ``1e-6`` only guards a division by zero.

    ``params``: the parameters, same structure, keys and shapes as ``grads``, finite.
    ``skip``: names (dict keys, or list positions) left unclipped; the authors do not clip
    the final linear layer (e.g. ``skip=("W2", "b2")`` for a 2-layer MLP).
    Returns the new structure; float64 norms, each array's dtype kept. A unit whose
    norm is NaN is left as it is (``NaN > limit`` is False, as in the authors' code;
    Optax, which keeps a unit when ``norm < limit``, makes it all NaN); a unit with an
    inf entry is scaled by 0, giving 0 and NaN.
    """
    clipping = check_nonnegative(clipping, "clipping")
    eps = check_nonnegative(eps, "eps")
    if units not in AGC_UNITS:
        raise ValueError(f"units: expected one of {AGC_UNITS}, got {units!r}")
    keys, g_arrays = _unpack(grads, "grads")
    w_arrays = _unpack_like(params, grads, keys, g_arrays)
    skip = _check_skip(skip)
    for name in skip:
        if name not in keys:
            raise ValueError(f"skip: {name!r} is not in grads; expected some of {keys}")
    out = []
    for k, g, w in zip(keys, g_arrays, w_arrays):
        if k in skip:
            out.append(g.copy())
            continue
        limit = clipping * np.maximum(_unitwise_norm(w, units), eps)
        g_norm = _unitwise_norm(g, units)
        with np.errstate(invalid="ignore", divide="ignore"):
            factor = np.where(g_norm > limit, limit / np.maximum(g_norm, 1e-6), 1.0)
        out.append(_scale(g, factor))
    return _pack(grads, keys, out)


def per_example_clip(
    per_example_grads: Grads,
    max_norm: float,
    noise_multiplier: float = 0.0,
    rng=None,
    return_norms: bool = False,
) -> Grads | tuple[Grads, np.ndarray]:
    """DP-SGD gradient aggregation (Abadi et al. 2016, arXiv 1607.00133, Algorithm 1).

    Input: the usual structure, each array with a leading batch axis ``B`` (as
    ``MLP.per_example_grads``: ``W1`` of shape ``(B, in, out)``, ...). With ``g_i`` example
    ``i``'s WHOLE gradient (all tensors together), ``C = max_norm`` and
    ``sigma = noise_multiplier``::

        n_i   = ||g_i||_2                               (over every tensor)
        g~_i  = g_i / max(1, n_i / C)                   (clip: ||g~_i|| <= C)
        g~    = (sum_i g~_i + N(0, sigma^2 C^2 I)) / B

    This is Optax's ``per_example_global_norm_clip`` followed by the noise of Algorithm 1
    (Opacus differs slightly: it scales by ``min(1, C / (n_i + 1e-6))``). Returns the
    aggregated structure (no batch axis), or ``(aggregated, norms)`` with
    ``return_norms=True``: the float64 array of the ``B`` pre-clip norms ``n_i``.

    Randomness: with ``noise_multiplier > 0`` ``rng`` (an int seed or a
    ``numpy.random.Generator``) is REQUIRED; there is no hidden default seed, which would
    add the same noise at every step. Pass one Generator for a whole training run. The
    noise is drawn tensor by tensor in the structure's order, ``rng.normal(0, sigma*C,
    shape)``. With ``noise_multiplier = 0`` no random number is drawn and ``rng`` is
    ignored. Computed in float64, returned in each array's dtype. Gradients must be finite.
    """
    c = check_positive(max_norm, "max_norm")
    sigma = check_nonnegative(noise_multiplier, "noise_multiplier")
    keys, arrays = _unpack(per_example_grads, "per_example_grads", finite=True)
    if not arrays:
        raise ValueError("per_example_grads: expected at least one array, got an empty structure")
    batch = arrays[0].shape[0] if arrays[0].ndim else 0
    for k, g in zip(keys, arrays):
        if g.ndim == 0 or g.shape[0] != batch or batch == 0:
            raise ValueError(
                f"per_example_grads[{k!r}]: expected a leading batch axis of the same length "
                f"B >= 1 as per_example_grads[{keys[0]!r}] ({batch}), got shape {g.shape}"
            )
    if sigma > 0:
        if rng is None:
            raise ValueError("rng: noise_multiplier > 0 needs an int seed or a numpy.random.Generator, got None")
        if not isinstance(rng, np.random.Generator) and (
            isinstance(rng, bool) or not isinstance(rng, numbers.Integral)
        ):
            raise TypeError(f"rng: expected an int seed or a numpy.random.Generator, got {describe(rng)}")
        rng = as_rng(rng)

    flat = [g.astype(np.float64).reshape(batch, -1) for g in arrays]
    norms = np.sqrt(sum(np.sum(f * f, axis=1) for f in flat))  # (B,)
    factors = 1.0 / np.maximum(1.0, norms / c)  # (B,)
    out = []
    for g, f in zip(arrays, flat):
        summed = (factors @ f).reshape(g.shape[1:])  # sum_i factor_i * g_i
        if sigma > 0:
            summed = summed + rng.normal(0.0, sigma * c, size=g.shape[1:])
        out.append((summed / batch).astype(g.dtype))
    aggregated = _pack(per_example_grads, keys, out)
    return (aggregated, norms) if return_norms else aggregated


# ----------------------------------------------------------------------------- callables


def _changed(before, after) -> bool:
    """True if any entry differs (NaN compared equal to NaN)."""
    _, a = _unpack(before, "grads")
    _, b = _unpack(after, "grads")
    return any(not np.array_equal(x, y, equal_nan=True) for x, y in zip(a, b))


class Clipper:
    """Uniform interface for ``fit(..., grad_transform=...)``: ``clipper(grads, params)``.

    Each subclass is a thin wrapper around one function of this module. Every call
    returns the new gradients and records:

    * ``n_calls``: calls so far; ``n_clipped``: calls where any entry changed;
    * ``last_total_norm``: the pre-clip global L2 norm of the last call (None before);
    * ``threshold``: the current bound (a norm, or the value bound for :class:`Value`;
      None when there is no single bound), e.g. to draw a line on a plot of norms.

    ``params`` is used by :class:`Adaptive` only; the others accept and ignore it.
    ``reset()`` forgets all of the above.

    For the training loop's hot path, ``total_norm`` may be passed when the caller has the
    gradients' global L2 norm already (:func:`nnref.train.fit` computes it for its
    History), as PyTorch's ``clip_grads_with_norm_`` takes a precomputed norm; and a
    clipper that leaves every entry as it was returns the input arrays themselves (in a
    new dict or list) instead of copies. ``last_scale`` is the single factor the last call
    multiplied every gradient by, when there was one (:class:`GlobalNorm`), else None.
    """

    accepts_total_norm = True  # fit() passes the L2 norm it computed

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget the statistics of past calls."""
        self.n_calls = 0
        self.n_clipped = 0
        self.last_total_norm: float | None = None
        self.last_clipped: bool | None = None  # read by fit() to record History.clipped
        self.last_scale: float | None = None

    @property
    def threshold(self) -> float | None:
        return None

    def _clip(self, grads, params, total_norm: float):
        raise NotImplementedError  # pragma: no cover - interface

    def __call__(self, grads: Grads, params: Grads | None = None, total_norm: float | None = None) -> Grads:
        total = global_norm(grads) if total_norm is None else float(total_norm)
        self.last_scale = None
        clipped = self._clip(grads, params, total)
        changed = self._changed_cheaply(total)
        if changed is None:
            changed = _changed(grads, clipped)
        self.n_calls += 1
        self.n_clipped += changed
        self.last_total_norm = total
        self.last_clipped = bool(changed)
        return clipped

    def _changed_cheaply(self, total_norm: float) -> bool | None:
        """Whether the last clip changed anything, when the total alone tells (else None)."""
        return None

    def __repr__(self) -> str:
        # The constructor's arguments that are required or differ from their default.
        sig = inspect.signature(type(self).__init__).parameters.values()
        shown = [
            f"{a.name}={getattr(self, a.name)!r}"
            for a in list(sig)[1:]
            if a.default is inspect.Parameter.empty or getattr(self, a.name) != a.default
        ]
        return f"{type(self).__name__}({', '.join(shown)})"


class Value(Clipper):
    """:func:`clip_by_value` with ``clip_value``; ``threshold`` is the value bound."""

    def __init__(self, clip_value: float) -> None:
        self.clip_value = check_nonnegative(clip_value, "clip_value")
        super().__init__()

    @property
    def threshold(self) -> float:
        return self.clip_value

    def _clip(self, grads, params, total_norm):
        return clip_by_value(grads, self.clip_value)


class Norm(Clipper):
    """:func:`clip_by_norm` (each tensor's L2 norm) with ``max_norm``."""

    def __init__(self, max_norm: float) -> None:
        self.max_norm = check_nonnegative(max_norm, "max_norm")
        super().__init__()

    @property
    def threshold(self) -> float:
        return self.max_norm

    def _clip(self, grads, params, total_norm):
        return clip_by_norm(grads, self.max_norm)


class GlobalNorm(Clipper):
    """:func:`clip_by_global_norm` (PyTorch ``clip_grad_norm_``) with fixed arguments."""

    def __init__(
        self, max_norm: float, norm_type: float = 2.0, eps: float = 1e-6, error_if_nonfinite: bool = False
    ) -> None:
        self.max_norm = check_nonnegative(max_norm, "max_norm")
        self.norm_type = _check_norm_type(norm_type)
        self.eps = check_nonnegative(eps, "eps")
        self.error_if_nonfinite = bool(error_if_nonfinite)
        super().__init__()

    @property
    def threshold(self) -> float:
        return self.max_norm

    def _clip(self, grads, params, total_norm):
        if self.norm_type == 2.0 and np.isfinite(total_norm):
            # The L2 total is already known (computed by Clipper.__call__ or handed over by
            # fit): apply clip_by_global_norm's scaling without computing norms again.
            keys, arrays = _unpack(grads, "grads")
            coef = _global_coef(total_norm, self.max_norm, self.eps)
            self.last_scale = coef
            # Multiplying by the coefficient rounded to an array's dtype changes it only if
            # that rounded factor is not 1 (0.99999999 is 1 in float32).
            self._acted = any(g.dtype.type(coef) != 1 and g.any() for g in arrays)
            if coef == 1.0:  # x * 1.0 == x: hand back the arrays, no copy on the hot path
                return _pack(grads, keys, arrays)
            return _pack(grads, keys, [_scale(g, coef) for g in arrays])
        self._acted = None
        clipped, _ = clip_by_global_norm(
            grads, self.max_norm, self.norm_type, self.eps, self.error_if_nonfinite
        )
        return clipped

    def _changed_cheaply(self, total_norm):
        # Set by the L2 fast path of _clip (None otherwise: compare the entries).
        return getattr(self, "_acted", None)


class Adaptive(Clipper):
    """:func:`adaptive_clip` (AGC); needs ``params``. ``threshold`` is None: the limits
    are per unit, ``clipping * max(||W_i||, eps)``, not one number."""

    def __init__(self, clipping: float = 0.01, eps: float = 1e-3, skip=(), units: str = "per_unit") -> None:
        self.clipping = check_nonnegative(clipping, "clipping")
        self.eps = check_nonnegative(eps, "eps")
        self.skip = _check_skip(skip)
        if units not in AGC_UNITS:
            raise ValueError(f"units: expected one of {AGC_UNITS}, got {units!r}")
        self.units = units
        super().__init__()

    def _clip(self, grads, params, total_norm):
        if params is None:
            raise ValueError("params: adaptive clipping needs the parameters (same keys as grads), got None")
        return adaptive_clip(grads, params, self.clipping, self.eps, self.skip, self.units)


class AutoClip(Clipper):
    """AutoClip (Seetharaman et al. 2020, arXiv 2007.14469): a threshold from history.

    Each call appends the current global L2 norm ``n_t`` to ``history`` and clips by
    global norm (:func:`clip_by_global_norm`, PyTorch semantics, ``eps``) at::

        threshold_t = percentile(history = [n_1, ..., n_t], percentile)

    with ``numpy.percentile``'s default linear interpolation, as in the authors' code.
    ``percentile`` is in [0, 100] (default 10). ``threshold`` is the last threshold
    (None before the first call); ``reset()`` also clears the history.

    A non-finite norm raises :class:`NonFiniteNormError` and is not recorded: in the
    authors' code it would enter the history and make every later threshold NaN.
    """

    def __init__(self, percentile: float = 10.0, eps: float = 1e-6) -> None:
        self.percentile = check_nonnegative(percentile, "percentile")
        if self.percentile > 100:
            raise ValueError(f"percentile: expected a number in [0, 100], got {self.percentile}")
        self.eps = check_nonnegative(eps, "eps")
        super().__init__()

    def reset(self) -> None:
        super().reset()
        self.history: list[float] = []
        self._threshold: float | None = None

    @property
    def threshold(self) -> float | None:
        return self._threshold

    def _clip(self, grads, params, total_norm):
        if not np.isfinite(total_norm):
            keys, arrays = _unpack(grads, "grads")
            raise NonFiniteNormError(
                f"grads: the global norm is {total_norm}; AutoClip refuses to record it "
                f"(it would poison every later percentile); non-finite tensors: "
                f"{_nonfinite_report('grads', keys, arrays)}"
            )
        self.history.append(total_norm)
        self._threshold = float(np.percentile(self.history, self.percentile))
        clipped, _ = clip_by_global_norm(grads, self._threshold, eps=self.eps)
        return clipped
