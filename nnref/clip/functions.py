"""The checked clipping functions: each validates its arguments, then computes the rule
of :mod:`nnref.clip.formulas` (the same bits), or an in-place fast path of it.

Gradients are a dict name -> array (as :attr:`nnref.mlp.MLP.grads`: ``W`` of shape
``(in, out)``, ``b`` of shape ``(out,)``) or a list (or tuple) of arrays. Every function
returns a NEW structure of the same kind (a dict with the same keys in the same order, or
a list or tuple) holding new arrays, and keeps each array's floating dtype (integer arrays
and Python lists are read as float64), unless told ``inplace=True``. Norms are computed
as :mod:`nnref.clip.norms` explains: right at the extremes of the floating-point range,
and a norm that overflows float64 is refused rather than used to scale by 0.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .._checks import (
    as_rng,
    check_grads,
    check_names,
    check_nonnegative,
    check_norm_type,
    check_params_like,
    check_positive,
    describe,
    pack_like,
)
from .formulas import adaptive_clip_grad, clip_grad_by_norm, clip_grads_by_global_norm, clip_grads_by_value
from .norms import global_l2_norm, l2_norm, p_norm

__all__ = [
    "NonFiniteNormError",
    "AGC_UNITS",
    "tensor_norms",
    "global_norm",
    "clip_coef",
    "scale_grads",
    "clip_by_value",
    "clip_by_norm",
    "clip_by_global_norm",
    "adaptive_clip",
    "per_example_clip",
]

AGC_UNITS = ("per_unit", "nfnets")


class NonFiniteNormError(ValueError, RuntimeError):
    """The total gradient norm is NaN or infinite, so it cannot be used for clipping.

    A ``ValueError`` (nnref's convention for bad input) that is also a ``RuntimeError``
    (what PyTorch's ``clip_grad_norm_(..., error_if_nonfinite=True)`` raises), so code
    written for either catches it.
    """


# ----------------------------------------------------------------------------- helpers


def describe_nonfinite(name: str, keys: list, arrays: list) -> str:
    """Which tensors hold NaN or inf, for error messages: ``"grads['W1'] (1 NaN, 0 inf)"``."""
    parts = []
    for k, g in zip(keys, arrays):
        n_nan, n_inf = int(np.isnan(g).sum()), int(np.isinf(g).sum())
        if n_nan or n_inf:
            parts.append(f"{name}[{k!r}] ({n_nan} NaN, {n_inf} inf)")
    return ", ".join(parts) if parts else "none"


def _refuse_overflow(norm: float, keys: list, arrays: list, what: str, name: str = "grads") -> None:
    """Raise if ``norm`` is inf although every entry is finite: its true value is beyond
    float64, and using inf would scale every gradient by 0."""
    if norm == math.inf and all(np.isfinite(g).all() for g in arrays):
        largest = max(float(np.max(np.abs(g))) for g in arrays if g.size)
        raise ValueError(
            f"{name}: {what} of these finite entries exceeds the float64 range (largest "
            f"|entry| {largest:.3g}), so it cannot be computed; scale the loss down"
        )


def _norms(arrays: list, p: float) -> tuple[list, float]:
    """Per-tensor p-norms and the global p-norm (their p-norm)."""
    norms = [p_norm(g, p) for g in arrays]
    total = global_l2_norm(norms) if p == 2.0 else p_norm(np.asarray(norms, dtype=np.float64), p)
    return norms, total


# ----------------------------------------------------------------------------- norms


def tensor_norms(grads, norm_type: float = 2.0):
    """The p-norm of each tensor separately: ``n_t = ||vec(g_t)||_p``.

    Parameters
    ----------
    grads : dict or list of arrays
    norm_type : float > 0 or inf

    Returns
    -------
    dict name -> float, or list of float
        The same structure. An empty tensor has norm 0; a NaN entry makes its tensor's
        norm NaN.

    Raises
    ------
    ValueError
        A norm of finite entries beyond the float64 range.
    """
    p = check_norm_type(norm_type)
    keys, arrays = check_grads(grads, "grads")
    norms = [p_norm(g, p) for g in arrays]
    for k, g, n in zip(keys, arrays, norms):
        _refuse_overflow(n, [k], [g], f"the {p}-norm of grads[{k!r}]")
    return dict(zip(keys, norms)) if isinstance(grads, dict) else norms


def global_norm(grads, norm_type: float = 2.0) -> float:
    """The total norm of all gradients viewed as one vector: ``||(n_1, ..., n_T)||_p``.

    ``n_t`` are the per-tensor p-norms (:func:`tensor_norms`), so for finite p this is
    ``(sum_t sum_j |g_tj|^p)^(1/p)`` and for p = inf the largest ``|g_tj|``: PyTorch's
    ``torch.nn.utils.get_total_norm`` (a norm of norms), in float64 for the combination.

    Parameters
    ----------
    grads : dict or list of arrays
    norm_type : float > 0 or inf

    Returns
    -------
    float
        0.0 for an empty structure; NaN/inf if any entry is.

    Raises
    ------
    ValueError
        The norm of finite entries is beyond the float64 range.
    """
    p = check_norm_type(norm_type)
    keys, arrays = check_grads(grads, "grads")
    _, total = _norms(arrays, p)
    _refuse_overflow(total, keys, arrays, f"the total {p}-norm")
    return total


# ----------------------------------------------------------------------------- clipping


def clip_coef(total: float, max_norm: float, eps: float) -> float:
    """PyTorch's ``clip_coef_clamped = min(max_norm / (total + eps), 1)``; 1.0 when
    ``total + eps == 0`` (nothing to scale); NaN for a NaN total, 0.0 for an inf one."""
    return 1.0 if total + eps == 0 else min(max_norm / (total + eps), 1.0)


def scale_grads(arrays: list, coef: float, inplace: bool = False) -> tuple[list, bool]:
    """Every array times ``coef`` rounded to its dtype: the multiply of
    :func:`~nnref.clip.formulas.clip_grads_by_global_norm`, in place on request.

    Parameters
    ----------
    arrays : list of floating ndarray (no validation)
    coef : float
    inplace : bool
        Write into ``arrays`` (as PyTorch's ``clip_grad_norm_`` does); an array whose
        rounded factor is 1 is left untouched (``x * 1 == x``).

    Returns
    -------
    out : list of ndarray
        New arrays, or ``arrays`` themselves when in place.
    acted : bool
        Whether any entry changed: some rounded factor is not 1 on an array that is not
        all zero.
    """
    factors = [g.dtype.type(coef) for g in arrays]
    acted = any(f != 1 and g.any() for g, f in zip(arrays, factors))
    with np.errstate(invalid="ignore"):  # inf * 0 = NaN is PyTorch's documented result
        if inplace:
            return [g if f == 1 else np.multiply(g, f, out=g) for g, f in zip(arrays, factors)], acted
        return [g * f for g, f in zip(arrays, factors)], acted


def clip_by_value(grads, clip_value: float | None = None, min_value: float | None = None,
                  max_value: float | None = None):
    """Clamp every entry to ``[lo, hi]``: ``g_j <- min(max(g_j, lo), hi)``.

    Either the symmetric form, ``clip_by_value(grads, v)`` with ``lo = -v, hi = v``
    (PyTorch's ``clip_grad_value_``), or separate bounds, ``clip_by_value(grads,
    min_value=lo, max_value=hi)`` (TensorFlow's ``clip_by_value``, ONNX ``Clip``; an
    infinite bound leaves that side open). This is the element-wise clipping of the early
    RNN literature (Mikolov 2012; Pascanu et al. 2013, arXiv 1211.5063). Unlike norm
    clipping it changes the direction of the gradient. ``inf`` becomes the bound; NaN
    stays NaN (clamping does not hide it). The arithmetic is
    :func:`~nnref.clip.formulas.clip_grads_by_value`.

    Parameters
    ----------
    grads : dict or list of arrays
    clip_value : float >= 0, finite, optional
        The symmetric bound (0 zeroes every finite entry).
    min_value, max_value : float, optional
        Separate bounds, ``min_value <= max_value``, infinite allowed, NaN refused;
        not together with ``clip_value``.

    Returns
    -------
    The same structure with new arrays.
    """
    lo, hi = value_bounds(clip_value, min_value, max_value)
    keys, arrays = check_grads(grads, "grads")
    return pack_like(grads, keys, clip_grads_by_value(arrays, lo, hi))


def value_bounds(clip_value=None, min_value=None, max_value=None) -> tuple[float, float]:
    """``(lo, hi)`` for :func:`clip_by_value`, from the symmetric form (``clip_value``) or
    the two-sided one (``min_value``, ``max_value``), after checking them."""
    if clip_value is not None:
        if min_value is not None or max_value is not None:
            raise TypeError("clip_value: expected either clip_value or min_value/max_value, got both")
        v = check_nonnegative(clip_value, "clip_value")
        return -v, v
    if min_value is None and max_value is None:
        raise TypeError("clip_value: expected clip_value, or min_value and/or max_value, got none")
    lo = -math.inf if min_value is None else _bound(min_value, "min_value")
    hi = math.inf if max_value is None else _bound(max_value, "max_value")
    if lo > hi:
        raise ValueError(f"min_value, max_value: expected min_value <= max_value, got {lo} > {hi}")
    return lo, hi


def _bound(value, name: str) -> float:
    """A bound of :func:`clip_by_value` as a float: a real number, infinity allowed."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.number)):
        raise TypeError(f"{name}: expected a real number (infinity allowed), got {describe(value)}")
    if math.isnan(float(value)):
        raise ValueError(f"{name}: expected a number or +-inf, got nan")
    return float(value)


def clip_by_norm(grads, max_norm: float):
    """Clip each tensor's L2 norm separately: ``g_t <- g_t * c / max(||g_t||_2, c)``.

    TensorFlow's ``tf.clip_by_norm`` applied to every tensor, ``c = max_norm >= 0``
    (:func:`~nnref.clip.formulas.clip_grad_by_norm`). A tensor with ``||g_t|| <= c``
    comes back bit for bit. A NaN norm gives a NaN tensor; an inf norm (an inf entry)
    gives 0 for finite entries and NaN for infinite ones, as in TensorFlow. With ``c = 0``
    every tensor becomes 0. A norm of finite entries beyond float64 is refused
    (``ValueError``), never used to scale by 0.

    Returns
    -------
    The same structure with new arrays.
    """
    c = check_nonnegative(max_norm, "max_norm")
    keys, arrays = check_grads(grads, "grads")
    for k, g in zip(keys, arrays):
        _refuse_overflow(l2_norm(g), [k], [g], f"the L2 norm of grads[{k!r}]")
    with np.errstate(invalid="ignore"):
        return pack_like(grads, keys, [clip_grad_by_norm(g, c) for g in arrays])


def clip_by_global_norm(grads, max_norm: float, norm_type: float = 2.0, eps: float = 1e-6,
                        error_if_nonfinite: bool = False, inplace: bool = False):
    """Scale all gradients by one factor so their total norm is at most ``max_norm``.

    PyTorch's ``torch.nn.utils.clip_grad_norm_`` (= ``get_total_norm`` followed by
    ``clip_grads_with_norm_``), the method of Pascanu et al. 2013 (arXiv 1211.5063)::

        total = || (||g_1||_p, ..., ||g_T||_p) ||_p          (see global_norm)
        coef  = min(max_norm / (total + eps), 1)
        g_t  <- g_t * coef                                  for every tensor t

    For ``p = 2`` the arithmetic is :func:`~nnref.clip.formulas.clip_grads_by_global_norm`
    (bit for bit). The multiply happens even when ``coef == 1`` (values unchanged:
    ``x * 1.0 == x``). Because of ``eps`` a clipped total is slightly *below*
    ``max_norm``, and gradients with ``max_norm - eps < total < max_norm`` are scaled by a
    factor just under 1.

    Parameters
    ----------
    grads : dict or list of arrays
    max_norm : float >= 0
    norm_type : float > 0 or inf
    eps : float >= 0
        PyTorch's is fixed at 1e-6; ``eps = 0`` is allowed (an all-zero gradient then gets
        ``coef = 1``).
    error_if_nonfinite : bool
        Raise :class:`NonFiniteNormError` for a NaN or inf total instead of scaling by it.
    inplace : bool
        Scale the given arrays in place (they must be floating ndarrays), as PyTorch's
        ``clip_grad_norm_`` does; the returned structure then holds them.

    Returns
    -------
    clipped : the same structure
    total : float
        The total norm BEFORE clipping.

    Raises
    ------
    NonFiniteNormError
        With ``error_if_nonfinite``, for a NaN or inf total, naming the tensors.
    ValueError
        A total of finite entries beyond float64 (scaling by it would zero every entry).

    Notes
    -----
    Non-finite total without ``error_if_nonfinite``: PyTorch's results. An inf total
    gives ``coef = 0``, so finite entries become 0 and infinite ones NaN (``inf * 0``); a
    NaN total gives ``coef = NaN`` and every entry NaN.

    PyTorch computes the norms in the gradients' dtype; so does nnref for the L2 norm of
    each tensor (a BLAS dot), combined in float64; other p are computed in float64.
    Results can differ from PyTorch's in the last bit, since the summation order differs.
    TensorFlow's ``tf.clip_by_global_norm`` (L2 only) has no eps:
    ``scale = c * min(1 / total, 1 / c)``, and for a NaN or inf total returns NaN
    everywhere. Optax's ``clip_by_global_norm`` has no eps either: it keeps ``g`` when
    ``total < c``, else returns ``(g / total) * c``.
    """
    c = check_nonnegative(max_norm, "max_norm")
    p = check_norm_type(norm_type)
    eps = check_nonnegative(eps, "eps")
    keys, arrays = check_grads(grads, "grads")
    if inplace and any(a is not grads[k] for k, a in zip(keys, arrays)):
        raise TypeError("grads: inplace=True needs floating ndarrays to write into, got "
                        f"{[describe(grads[k]) for k in keys]}")
    _, total = _norms(arrays, p)
    check_total(total, c, keys, arrays, p, error_if_nonfinite)
    if p == 2.0 and not inplace:
        with np.errstate(invalid="ignore"):
            clipped, total = clip_grads_by_global_norm(arrays, c, eps)
        return pack_like(grads, keys, clipped), total
    out, _ = scale_grads(arrays, clip_coef(total, c, eps), inplace)
    return pack_like(grads, keys, out), total


def check_total(total: float, max_norm: float, keys: list, arrays: list, p: float,
                error_if_nonfinite: bool) -> None:
    """Refuse a total norm that clipping must not use: one that overflowed although every
    entry is finite (``ValueError``), or, with ``error_if_nonfinite``, any NaN or inf
    total (:class:`NonFiniteNormError`, naming the tensors)."""
    _refuse_overflow(total, keys, arrays, f"the total {p}-norm")
    if error_if_nonfinite and not math.isfinite(total):
        raise NonFiniteNormError(
            f"grads: the total {p}-norm is {total}, so it cannot be clipped; non-finite "
            f"tensors: {describe_nonfinite('grads', keys, arrays)}. Pass "
            f"error_if_nonfinite=False to scale by the non-finite norm as PyTorch does."
        )


def adaptive_clip(grads, params, clipping: float = 0.01, eps: float = 1e-3, skip=(),
                  units: str = "per_unit"):
    """Unit-wise adaptive gradient clipping, AGC (Brock et al. 2021, arXiv 2102.06171).

    For every unit ``i`` of every tensor (their eq. 3;
    :func:`~nnref.clip.formulas.adaptive_clip_grad`)::

        limit_i = clipping * max(||W_i||_F, eps)
        G_i    <- G_i * limit_i / max(||G_i||_F, 1e-6)     if ||G_i||_F > limit_i
        G_i    <- G_i                                       otherwise

    Parameters
    ----------
    grads, params : dict or list of arrays
        Same structure, keys and shapes; 0-D, 1-D or 2-D ``(in, out)`` tensors; ``params``
        finite.
    clipping, eps : float >= 0
        ``eps`` keeps zero-initialised parameters (biases) from freezing: their limit is
        ``clipping * eps``. The ``1e-6`` only guards a division by zero.
    skip : list or tuple of names
        Names (dict keys, or list positions) left unclipped; the authors do not clip the
        final linear layer (e.g. ``skip=("W2", "b2")`` for a 2-layer MLP).
    units : {"per_unit", "nfnets"}
        The paper's units are a layer's output units, "the rows of the weight matrix" in
        its ``(out, in)`` layout. ``"per_unit"`` (default): unit ``i`` of an ``(in, out)``
        weight is its output column ``W[:, i]``, always, and a 1-D bias ``b`` of shape
        ``(out,)`` is treated per unit (``b_i``, norm ``|b_i|``, belongs to unit ``i``).
        ``"nfnets"`` reproduces the authors' reference code (DeepMind's nfnets
        ``unitwise_norm``; Optax's ``adaptive_grad_clip`` and timm do the same): a tensor
        that squeezes to at most 1-D (a bias, a scalar, an ``(in, 1)`` or ``(1, out)``
        weight) is ONE unit. Columns of 2-D weights agree under both.

    Returns
    -------
    The same structure with new arrays; float64 norms, each array's dtype kept.

    Notes
    -----
    A unit whose norm is NaN is left as it is (``NaN > limit`` is False, as in the
    authors' code; Optax, which keeps a unit when ``norm < limit``, makes it all NaN); a
    unit with an inf entry is scaled by 0, giving 0 and NaN. Finite entries whose squares
    overflow float64 are refused (``ValueError``), never scaled by 0.
    """
    clipping = check_nonnegative(clipping, "clipping")
    eps = check_nonnegative(eps, "eps")
    if units not in AGC_UNITS:
        raise ValueError(f"units: expected one of {AGC_UNITS}, got {units!r}")
    keys, g_arrays = check_grads(grads, "grads")
    w_arrays = check_params_like(params, grads, keys, g_arrays)
    skip = check_names(skip)
    for name in skip:
        if name not in keys:
            raise ValueError(f"skip: {name!r} is not in grads; expected some of {keys}")
    out = []
    for k, g, w in zip(keys, g_arrays, w_arrays):
        if g.ndim > 2:
            raise ValueError(f"grads: adaptive clipping supports 0-D, 1-D and 2-D (in, out) tensors, got shape {g.shape}")
        for name, a in (("grads", g), ("params", w)):
            _refuse_overflow(_squares_sum(a), [k], [a], "the sum of squares", f"{name}[{k!r}]")
        if k in skip:
            out.append(g.copy())
            continue
        one_unit = units == "nfnets" and np.squeeze(g).ndim <= 1 and g.ndim > 0
        gg, ww = (g.reshape(-1, 1), w.reshape(-1, 1)) if one_unit else (g, w)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(adaptive_clip_grad(ww, gg, clipping, eps).reshape(g.shape))
    return pack_like(grads, keys, out)


def _squares_sum(a: np.ndarray) -> float:
    """``sum a_j^2`` in float64: inf exactly when some unit norm of AGC would overflow."""
    a64 = a.astype(np.float64).ravel()
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.dot(a64, a64))


def per_example_clip(
    per_example_grads,
    max_norm: float,
    noise_multiplier: float = 0.0,
    rng=None,
    return_norms: bool = False,
):
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
    keys, arrays = check_grads(per_example_grads, "per_example_grads", finite=True)
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
    aggregated = pack_like(per_example_grads, keys, out)
    return (aggregated, norms) if return_norms else aggregated
