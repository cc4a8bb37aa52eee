"""Half-precision training: float16 and bfloat16 with float32 master weights, loss
scaling and stochastic rounding.

The recipe of Micikevicius et al. 2018 (*Mixed Precision Training*, ICLR,
arXiv:1710.03740), as PyTorch's automatic mixed precision runs it:

1. the optimizer keeps **float32 master weights**; each step copies them, rounded, into
   the low-precision working weights;
2. forward and backward run in the low format: every layer's output and every gradient
   is rounded to it, while the products inside a layer accumulate in float32 (what GPU
   tensor cores do with float16 inputs and a float32 accumulator);
3. the loss gradient is multiplied by a **loss scale** ``S`` before the backward pass, so
   small gradients land in float16's range instead of underflowing to zero, and the
   float32 gradients are divided by ``S`` again before the optimizer sees them;
4. **dynamic** loss scaling (PyTorch ``torch.amp.GradScaler``): a step whose gradients hold
   an inf or NaN is skipped and ``S`` halves; after 2000 finite steps in a row ``S``
   doubles; ``S`` starts at ``2**16``;
5. gradient clipping acts on the *unscaled* gradients (PyTorch: ``scaler.unscale_`` before
   ``clip_grad_norm_``).

float16 (IEEE binary16) has 10 stored significand bits and 5 exponent bits: largest finite
65504, smallest normal ``2**-14``, smallest subnormal ``2**-24`` (about 6e-8). bfloat16
keeps float32's 8 exponent bits and 7 stored significand bits: the range of float32, the
precision of about two decimal digits. numpy has no bfloat16 type, so it is emulated in
float32 arrays whose low 16 bits are zero (:func:`round_to_bfloat16`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._checks import (
    as_float_array,
    as_rng,
    check_grads,
    check_int_in_range,
    check_labels,
    check_positive,
    describe,
)
from .layers import Linear
from .mlp import MLP, loss_from_logits

__all__ = [
    "FORMATS",
    "bfloat16_bits",
    "round_to_bfloat16",
    "round_to_format",
    "stochastic_round",
    "stochastic_round_float16",
    "loss_scale_update",
    "GradScaler",
    "scaled_step",
    "half_loss_and_grads",
    "gradient_underflow",
    "HalfHistory",
    "fit_half",
]

FORMATS = ("float32", "float16", "bfloat16")
FLOAT16_MAX = float(np.finfo(np.float16).max)


# --------------------------------------------------------------------------- rounding


def bfloat16_bits(bits: np.ndarray) -> np.ndarray:
    """Round float32 bit patterns to bfloat16, nearest even; return the float32 patterns.

    Formula (the rounding of Intel's and Google's bfloat16 conversion instructions), on
    the uint32 pattern ``u`` of a finite float32::

        lsb     = (u >> 16) & 1                      the last bit bfloat16 keeps
        rounded = (u + 0x7FFF + lsb) & 0xFFFF0000    round half to even on the top 16 bits

    A carry out of the significand correctly bumps the exponent (the largest finite values
    round to infinity). NaN would be mangled (its payload may sit in the dropped bits), so
    NaN patterns become quiet NaNs ``(u | 0x00400000) & 0xFFFF0000``; infinity is kept by the
    formula itself.

    Parameters
    ----------
    bits : ndarray of uint32, any shape

    Returns
    -------
    ndarray of uint32, the same shape, low 16 bits zero.

    References
    ----------
    Intel, *BFLOAT16 - Hardware Numerics Definition* (2018), round to nearest even; Kalamkar
    et al., *A Study of BFLOAT16 for Deep Learning Training*, arXiv:1905.12322.
    """
    lsb = (bits >> np.uint32(16)) & np.uint32(1)
    rounded = (bits + np.uint32(0x7FFF) + lsb) & np.uint32(0xFFFF0000)
    is_nan = (bits & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    quiet = (bits | np.uint32(0x00400000)) & np.uint32(0xFFFF0000)
    return np.where(is_nan, quiet, rounded).astype(np.uint32)


def round_to_bfloat16(x) -> np.ndarray:
    """``x`` rounded to bfloat16 (nearest even), returned as float32 with the low 16 bits 0.

    Parameters
    ----------
    x : float32 array-like, any shape (inf and NaN allowed: they are kept)

    Returns
    -------
    ndarray of float32: :func:`bfloat16_bits` applied to ``x``'s bit pattern.

    Raises
    ------
    TypeError
        If ``x`` is not float32 (round float64 to float32 first: bfloat16 is defined as a
        truncation of the float32 pattern).
    """
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise TypeError(f"x: expected a float32 array, got {describe(x)}")
    with np.errstate(over="ignore"):
        return bfloat16_bits(np.ascontiguousarray(x).view(np.uint32)).view(np.float32)


def round_to_format(x: np.ndarray, fmt: str) -> np.ndarray:
    """``x`` (float32) rounded to ``fmt`` and returned as float32: ``"float32"`` returns
    ``x``; ``"float16"`` rounds through ``numpy.float16`` (nearest even, overflow to inf,
    gradual underflow to subnormals then 0); ``"bfloat16"`` is :func:`round_to_bfloat16`.

    Raises
    ------
    TypeError
        ``x`` not a real numeric array.
    ValueError
        If ``fmt`` is not one of :data:`FORMATS`.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt: expected one of {FORMATS}, got {fmt!r}")
    with np.errstate(over="ignore"):  # float64 beyond float32 becomes inf, as the format would
        x = as_float_array(x, "x", dtype=np.float32, finite=False, allow_empty=True)
    if fmt == "float32":
        return x
    if fmt == "float16":
        with np.errstate(over="ignore"):  # overflow to inf is the point: the scaler sees it
            return x.astype(np.float16).astype(np.float32)
    if fmt == "bfloat16":
        return round_to_bfloat16(x.astype(np.float32, copy=False))
    raise ValueError(f"fmt: expected one of {FORMATS}, got {fmt!r}")


def stochastic_round_plain(x: np.ndarray, step: float, u: np.ndarray) -> np.ndarray:
    """Stochastic rounding to the grid ``step * Z`` given uniforms ``u`` in [0, 1).

    Formula (Gupta et al. 2015, eq. 3): with ``lo = floor(x / step) * step``,

        round(x) = lo + step   with probability (x - lo) / step,   lo   otherwise,

    so ``E[round(x)] = x``: the rounding is unbiased. Here ``u < (x - lo) / step`` draws it.

    References
    ----------
    S. Gupta, A. Agrawal, K. Gopalakrishnan, P. Narayanan, *Deep Learning with Limited
    Numerical Precision*, ICML 2015, arXiv:1502.02551.
    """
    q = x / step
    lo = np.floor(q)
    return (lo + (u < q - lo)) * step


def stochastic_round(x, step: float, seed=0) -> np.ndarray:
    """Round ``x`` to multiples of ``step`` stochastically (unbiased); see
    :func:`stochastic_round_plain`.

    Parameters
    ----------
    x : finite float array-like, any shape (float64 recommended: the arithmetic is in its dtype)
    step : positive float, the grid spacing (``2**-f`` for a fixed-point format with ``f``
        fractional bits)
    seed : int or numpy.random.Generator, the source of the uniform draws

    Returns
    -------
    ndarray of ``x``'s float dtype, every entry a multiple of ``step``.
    """
    x = as_float_array(x, "x", allow_empty=True)
    step = check_positive(step, "step")
    u = as_rng(seed).random(x.shape)
    return stochastic_round_plain(x, step, u).astype(x.dtype, copy=False)


def stochastic_round_float16_plain(x: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Stochastic rounding of float64 ``x`` to float16 given uniforms ``u`` in [0, 1).

    ``lo`` is the largest float16 ``<= x`` and ``hi`` the next float16 up; the result is
    ``hi`` with probability ``(x - lo) / (hi - lo)``, else ``lo`` (Gupta et al. 2015, eq. 3,
    on float16's non-uniform grid). ``E[result] = x``. ``|x| <= 65504`` is assumed.
    """
    near = x.astype(np.float16)
    lo = np.where(near.astype(np.float64) > x, np.nextafter(near, np.float16(-np.inf)), near)
    hi = np.nextafter(lo, np.float16(np.inf))
    width = hi.astype(np.float64) - lo.astype(np.float64)
    p = np.where(np.isfinite(width), (x - lo.astype(np.float64)) / width, 0.0)
    return np.where(u < p, hi, lo).astype(np.float16)


def stochastic_round_float16(x, seed=0) -> np.ndarray:
    """Round ``x`` to float16 stochastically (unbiased); see :func:`stochastic_round_float16_plain`.

    Used for low-precision weight updates: ``w16 + update`` rounded to nearest loses every
    update smaller than half a float16 spacing, rounded stochastically it is kept in
    expectation.

    Parameters
    ----------
    x : finite float array-like with ``|x| <= 65504`` (computed in float64)
    seed : int or numpy.random.Generator

    Returns
    -------
    ndarray of float16, the shape of ``x``.

    Raises
    ------
    ValueError
        If an entry is non-finite or beyond float16's largest finite value.
    """
    x = as_float_array(x, "x", dtype=np.float64, allow_empty=True)
    if x.size and np.max(np.abs(x)) > FLOAT16_MAX:
        raise ValueError(f"x: expected |x| <= {FLOAT16_MAX} (float16's range), got max |x| = {np.max(np.abs(x))}")
    return stochastic_round_float16_plain(x, as_rng(seed).random(x.shape))


# --------------------------------------------------------------------------- loss scaling


def loss_scale_update(scale: float, growth_tracker: int, found_inf: bool, growth_factor: float = 2.0,
                      backoff_factor: float = 0.5, growth_interval: int = 2000) -> tuple[float, int]:
    """One update of the dynamic loss scale: returns ``(scale, growth_tracker)``.

    PyTorch ``GradScaler.update`` (``_amp_update_scale_``)::

        a step with inf or NaN:   scale <- scale * backoff_factor;  tracker <- 0
        a finite step:            tracker <- tracker + 1, and when it reaches growth_interval:
                                  scale <- scale * growth_factor (kept only if finite);  tracker <- 0

    The step whose gradients were non-finite is skipped by the caller (the optimizer never
    sees it). ``growth_tracker`` counts the finite steps since the last change.

    References
    ----------
    PyTorch documentation, *torch.amp.GradScaler* (defaults ``init_scale=2**16``,
    ``growth_factor=2``, ``backoff_factor=0.5``, ``growth_interval=2000``); Micikevicius et
    al. 2018, section 3.2.

    Parameters
    ----------
    scale : float, the current loss scale
    growth_tracker : int, finite steps since the last change
    found_inf : bool, whether this step's gradients held an inf or NaN
    growth_factor, backoff_factor : floats
    growth_interval : int

    Returns
    -------
    (scale, growth_tracker) : float, int
    """
    if found_inf:
        return scale * backoff_factor, 0
    growth_tracker += 1
    if growth_tracker == growth_interval:
        grown = scale * growth_factor
        return (grown if np.isfinite(grown) else scale), 0
    return scale, growth_tracker


class GradScaler:
    """Loss scaling with PyTorch ``GradScaler``'s rules; ``dynamic=False`` keeps ``scale`` fixed
    (static loss scaling) but still skips non-finite steps.

    Parameters
    ----------
    init_scale : positive float, default ``2**16``
    growth_factor, backoff_factor : floats, > 1 and in (0, 1) (defaults 2 and 0.5)
    growth_interval : positive int, default 2000 finite steps
    dynamic : bool, default True

    Attributes
    ----------
    scale : float, the current loss scale
    growth_tracker : int, finite steps since the scale last changed
    scales, skipped : lists, per :meth:`update` call, the scale used and whether the step
        was skipped
    """

    def __init__(self, init_scale: float = 2.0**16, growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000, dynamic: bool = True):
        self.scale = check_positive(init_scale, "init_scale")
        self.growth_factor = check_positive(growth_factor, "growth_factor")
        self.backoff_factor = check_positive(backoff_factor, "backoff_factor")
        if self.growth_factor <= 1 or self.backoff_factor >= 1:
            raise ValueError(f"growth_factor, backoff_factor: expected > 1 and < 1, got "
                             f"{growth_factor}, {backoff_factor}")
        self.growth_interval = check_int_in_range(growth_interval, "growth_interval", 1, 10**12)
        if not isinstance(dynamic, bool):
            raise TypeError(f"dynamic: expected a bool, got {describe(dynamic)}")
        self.dynamic = dynamic
        self.growth_tracker = 0
        self.scales: list[float] = []
        self.skipped: list[bool] = []

    def unscale(self, grads: dict) -> tuple[dict, bool]:
        """``({name: float32(g) * (1 / scale)}, found_inf)``: the true gradients, and whether
        any entry is inf or NaN (PyTorch multiplies by the float32 reciprocal)."""
        if not isinstance(grads, dict):
            raise TypeError(f"grads: expected a dict name -> array, got {describe(grads)}")
        keys, arrays = check_grads(grads, "grads")  # inf and NaN allowed: they are what is looked for
        inv = np.float32(1.0 / self.scale)
        out = {k: g.astype(np.float32) * inv for k, g in zip(keys, arrays)}
        found_inf = not all(np.isfinite(g).all() for g in out.values())
        return out, found_inf

    def update(self, found_inf: bool) -> None:
        """Record the step (scale used, skipped or not), then :func:`loss_scale_update`."""
        self.scales.append(self.scale)
        self.skipped.append(bool(found_inf))
        if self.dynamic:
            self.scale, self.growth_tracker = loss_scale_update(
                self.scale, self.growth_tracker, bool(found_inf), self.growth_factor,
                self.backoff_factor, self.growth_interval)

    def __repr__(self) -> str:
        kind = "dynamic" if self.dynamic else "static"
        return f"GradScaler({kind}, scale={self.scale:g}, growth_interval={self.growth_interval})"


def _check_step_parts(optimizer, scaler, grad_transform) -> None:
    """Refuse an optimizer without ``step``, a scaler that is not a GradScaler, a
    ``grad_transform`` that is not callable."""
    if not callable(getattr(optimizer, "step", None)):
        raise TypeError(f"optimizer: expected an optimizer with a step(params, grads) method "
                        f"(nnref.optim.SGD, Adam), got {describe(optimizer)}")
    if not isinstance(scaler, GradScaler):
        raise TypeError(f"scaler: expected a GradScaler, got {describe(scaler)}")
    if grad_transform is not None and not callable(grad_transform):
        raise TypeError(f"grad_transform: expected a callable (grads, params) -> grads or None, "
                        f"got {describe(grad_transform)}")


def scaled_step(optimizer, params: dict, scaled_grads: dict, scaler: GradScaler, grad_transform=None) -> bool:
    """One optimizer step from loss-scaled gradients; returns whether it was skipped.

    PyTorch's ``scaler.unscale_(opt)``, ``clip_grad_norm_`` (here ``grad_transform``),
    ``scaler.step(opt)``, ``scaler.update()``, in that order: the gradients are unscaled
    (:meth:`GradScaler.unscale`); if any entry is inf or NaN the optimizer is not called
    (``params`` and its state are untouched); otherwise ``grad_transform(grads, params)``
    then ``optimizer.step(params, grads)``. Finally :meth:`GradScaler.update`.

    Parameters
    ----------
    optimizer : an nnref optimizer
    params : dict name -> float32 master array (updated in place)
    scaled_grads : dict name -> gradients of ``scale * loss``
    scaler : GradScaler
    grad_transform : callable ``(grads, params) -> grads`` or None

    Returns
    -------
    bool, True if the step was skipped

    Raises
    ------
    TypeError
        ``optimizer`` without ``step``; ``params``/``scaled_grads`` not matching dicts; a
        ``scaler`` or ``grad_transform`` of the wrong type; a transform result that is not a
        dict of the same keys.
    ValueError
        A transform result holding NaN or infinity (refused before the optimizer step).
    """
    _check_step_parts(optimizer, scaler, grad_transform)
    if not isinstance(params, dict):
        raise TypeError(f"params: expected a dict name -> float32 array, got {describe(params)}")
    if not isinstance(scaled_grads, dict) or set(scaled_grads) != set(params):
        raise TypeError(f"scaled_grads: expected a dict with the keys of params {sorted(params)}, "
                        f"got {describe(scaled_grads)}")
    grads, found_inf = scaler.unscale(scaled_grads)
    if not found_inf:
        if grad_transform is not None:
            grads = grad_transform(grads, params)
            if not isinstance(grads, dict) or set(grads) != set(params):
                raise TypeError(f"grad_transform: returned {describe(grads)}, expected a dict with the keys "
                                f"of params {sorted(params)} (not applied)")
            check_grads(grads, "grad_transform: returned grads", finite=True)
        optimizer.step(params, grads)
    scaler.update(found_inf)
    return found_inf


# --------------------------------------------------------------------------- forward / backward


def _check_model(model) -> MLP:
    if not isinstance(model, MLP) or model.dtype != np.float32:
        raise TypeError(f"model: expected a float32 nnref MLP (the master weights), got {describe(model)}")
    return model


def _load_working_weights(work: MLP, master: MLP, fmt: str) -> None:
    for w_lin, m_lin in zip(work.linears, master.linears):
        w_lin.W[...] = round_to_format(m_lin.W, fmt)
        w_lin.b[...] = round_to_format(m_lin.b, fmt)


def half_loss_and_grads(work: MLP, x: np.ndarray, y: np.ndarray, fmt: str, scale: float = 1.0,
                        record: list | None = None):
    """Loss and *scaled* gradients of one batch with every activation and gradient rounded
    to ``fmt``.

    Forward: ``h_0 = r(x)``, ``h_l = r(layer_l(h_{l-1}))`` with ``r`` =
    :func:`round_to_format` (each layer computes in float32 from ``fmt`` inputs, rounds
    once). Loss: softmax cross-entropy in float32 from the rounded logits (Micikevicius et
    al.: reductions in float32). Backward: ``g = r(S * dL/dlogits)``, then every layer's
    ``dW``, ``db`` and input gradient rounded by ``r``.

    Parameters
    ----------
    work : float32 MLP whose weights are already ``fmt`` values (the working copy)
    x : (B, in) float32; y : (B,) int labels
    fmt : one of :data:`FORMATS`; scale : the loss scale ``S`` (> 0)
    record : optional list; for every gradient tensor of the backward pass, in order
        (``dL/dlogits``, then per layer ``dW``, ``db`` and the input gradient), the triple
        ``(kind, nonzero entries before rounding, entries the rounding flushed to zero)``
        is appended, ``kind`` ``"parameter"`` (dW, db) or ``"activation"``

    Returns
    -------
    (loss, grads) : float loss (unscaled), dict of float32 gradients of ``S * loss``
        (possibly inf/NaN: overflow is reported, not raised).
    """
    def r(a: np.ndarray, kind: str) -> np.ndarray:  # round; count what it flushed to 0
        out = round_to_format(a, fmt)
        if record is not None:
            record.append((kind, int(np.count_nonzero(a)), int(np.count_nonzero((a != 0) & (out == 0)))))
        return out

    h = round_to_format(x, fmt)
    for layer in work.layers:
        h = round_to_format(layer.forward(h), fmt)
    loss, dlogits = loss_from_logits(h.astype(np.float32), y)
    with np.errstate(over="ignore", invalid="ignore"):
        g = r((dlogits * np.float32(scale)).astype(np.float32), "activation")
        for k, layer in enumerate(reversed(work.layers)):
            if isinstance(layer, Linear):
                g = layer.backward(g, input_grad=k < len(work.layers) - 1)
                layer.dW, layer.db = r(layer.dW, "parameter"), r(layer.db, "parameter")
            else:
                g = layer.backward(g)
            g = None if g is None else r(g, "activation")
    return loss, work.grads


def gradient_underflow(model: MLP, x, y, fmt: str = "float16", scale: float = 1.0) -> dict[str, float]:
    """Fraction of gradient entries that rounding to ``fmt`` flushes to zero when the loss is
    scaled by ``scale``: the gradients loss scaling exists to save.

    Counted where they happen: every gradient tensor of :func:`half_loss_and_grads`'s
    backward pass (``dL/dlogits``, activation gradients, ``dW``, ``db``), as computed from
    ``fmt`` inputs, before and after its rounding to ``fmt``. An entry underflows if it is
    nonzero before and zero after (below half of float16's smallest subnormal ``2**-24``).

    Parameters
    ----------
    model : float32 MLP; x : (B, in); y : (B,) labels; fmt : one of :data:`FORMATS`;
    scale : positive loss scale

    Returns
    -------
    dict with ``"parameter"`` (``dW``, ``db``), ``"activation"`` (``dL/dlogits`` and the
    activation gradients) and ``"all"``: each flushed entries / nonzero entries, in [0, 1].
    """
    model = _check_model(model)
    x = model.check_input(x, "x")  # float32: 2-D, the model's width, finite within float32
    y = check_labels(y, x.shape[0], model.n_outputs, "y")
    check_positive(scale, "scale")
    if fmt not in FORMATS:
        raise ValueError(f"fmt: expected one of {FORMATS}, got {fmt!r}")
    work, record = model.copy(), []
    _load_working_weights(work, model, fmt)
    half_loss_and_grads(work, x, y, fmt, scale, record=record)
    out = {}
    for kind in ("parameter", "activation", "all"):
        rows = [(n, f) for k, n, f in record if kind in (k, "all")]
        out[kind] = sum(f for _, f in rows) / max(sum(n for n, _ in rows), 1)
    return out


# --------------------------------------------------------------------------- training


@dataclass
class HalfHistory:
    """What :func:`fit_half` measured: per step ``loss``, ``scale`` (the loss scale used)
    and ``skipped``; per epoch ``train_acc``; ``fmt``."""

    fmt: str
    loss: list = field(default_factory=list)
    scale: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    train_acc: list = field(default_factory=list)

    @property
    def n_skipped(self) -> int:
        """How many steps were skipped for non-finite gradients."""
        return int(np.sum(self.skipped))


def fit_half(model: MLP, optimizer, x, y, epochs: int, batch_size: int, fmt: str = "float16",
             scaler: GradScaler | None = None, grad_transform=None, seed=0) -> HalfHistory:
    """Mixed-precision training of ``model`` (float32 master weights, updated in place).

    Each step: working weights ``= r(master)``; :func:`half_loss_and_grads` with the
    scaler's scale; :func:`scaled_step` (unscale; skip the step if a gradient is
    non-finite, else ``grad_transform``, e.g. a clipper, on the *unscaled* gradients, and
    ``optimizer.step(master, grads)``; update the scale). Without a scaler the scale is a
    static 1 and non-finite steps are still skipped.

    Parameters
    ----------
    model : float32 MLP; optimizer : an nnref optimizer; x (N, in), y (N,) int labels
    epochs, batch_size : positive ints; fmt : one of :data:`FORMATS`
    scaler : GradScaler or None; grad_transform : callable ``(grads, params) -> grads`` or None
    seed : int or Generator, drives the batch order

    Returns
    -------
    HalfHistory
    """
    model = _check_model(model)
    if fmt not in FORMATS:
        raise ValueError(f"fmt: expected one of {FORMATS}, got {fmt!r}")
    x = model.check_input(x, "x")  # float32: 2-D, the model's width, finite within float32
    y = check_labels(y, x.shape[0], model.n_outputs, "y")
    epochs = check_int_in_range(epochs, "epochs", 1, 10**9)
    batch_size = check_int_in_range(batch_size, "batch_size", 1, 10**9)
    if scaler is not None and not isinstance(scaler, GradScaler):
        raise TypeError(f"scaler: expected a GradScaler or None, got {describe(scaler)}")
    scaler = GradScaler(1.0, dynamic=False) if scaler is None else scaler
    _check_step_parts(optimizer, scaler, grad_transform)
    rng, work, hist = as_rng(seed), model.copy(), HalfHistory(fmt)
    master = model.params
    for _ in range(epochs):
        order = rng.permutation(x.shape[0])
        for start in range(0, x.shape[0], batch_size):
            idx = order[start:start + batch_size]
            _load_working_weights(work, model, fmt)
            scale = scaler.scale
            loss, grads = half_loss_and_grads(work, x[idx], y[idx], fmt, scale)
            hist.loss.append(loss)
            hist.scale.append(scale)
            hist.skipped.append(scaled_step(optimizer, master, grads, scaler, grad_transform))
        hist.train_acc.append(model.accuracy(x, y))
    return hist
