"""Choosing the precision of each layer: weight statistics, measured sensitivity, and
:func:`choose_bit_widths` under a size or an accuracy budget.

Two kinds of evidence, the two the recipe names:

- **statistics of the parameters**, before any data is seen: range, standard deviation,
  the crest factor ``max|w| / rms(w)`` (how much of a uniform grid the largest weights
  waste), the fraction of outliers beyond 3 standard deviations, the excess kurtosis
  (heavy tails), and the signal-to-quantization-noise ratio at each bit width, measured
  and as the uniform-quantizer formula predicts it from the crest factor;
- **the model's measured performance**: the held-out loss and accuracy when only one
  layer's weights are quantized to ``b`` bits (the rest float), for every layer and ``b``
  (the per-layer sensitivity of Dong et al. 2019, HAWQ, measured directly instead of via
  the Hessian).

:func:`choose_bit_widths` combines the sensitivities (assumed additive across layers) into
a search over every assignment of bits 2..8 that fits the budget, then measures the best
few jointly and keeps the best measured one. :func:`quantize_model_mixed` builds the
integer-only :class:`~nnref.quant.convert.QuantizedMLP` with those per-layer weight bits
(int8 activations).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from nnref._checks import check_int_in_range, check_labels, describe
from nnref.mlp import MLP
from nnref.quant.convert import QuantizedMLP, quantize_model, quantize_weights
from nnref.quant.layerwise import check_weight_scheme
from nnref.quant.ops import dequantize
from nnref.quant.report import packed_size_bytes
from nnref.train import evaluate

__all__ = [
    "excess_kurtosis",
    "crest_factor",
    "outlier_fraction",
    "sqnr_db",
    "predicted_sqnr_db",
    "min_bits_for_sqnr",
    "LayerStats",
    "layer_statistics",
    "bits_from_statistics",
    "quantize_layer_weights",
    "Sensitivity",
    "layer_sensitivity",
    "mixed_size_bytes",
    "BitChoice",
    "choose_bit_widths",
    "quantize_model_mixed",
]

BIT_CHOICES = tuple(range(2, 9))
_MAX_ASSIGNMENTS = 200_000


# --------------------------------------------------------------------------- statistics


def excess_kurtosis(w: np.ndarray) -> float:
    """``E[(w - mu)^4] / sigma^4 - 3``: 0 for a Gaussian, > 0 for heavy tails (a few large
    weights), -1.2 for a uniform distribution. ``w`` any shape, float; at least 2 distinct
    values (else NaN)."""
    d = w.astype(np.float64).ravel() - w.mean(dtype=np.float64)
    var = np.mean(d * d)
    return float(np.mean(d**4) / var**2 - 3.0) if var > 0 else float("nan")


def crest_factor(w: np.ndarray) -> float:
    """``max|w| / rms(w)`` with ``rms(w) = sqrt(mean(w^2))``: the peak-to-average ratio
    that sets a symmetric max-scaled quantizer's step relative to the signal."""
    w = w.astype(np.float64)
    return float(np.max(np.abs(w)) / np.sqrt(np.mean(w * w)))


def outlier_fraction(w: np.ndarray, k: float = 3.0) -> float:
    """Fraction of entries with ``|w - mean| > k * std`` (0.27% for a Gaussian at k = 3)."""
    w = w.astype(np.float64)
    return float(np.mean(np.abs(w - w.mean()) > k * w.std()))


def sqnr_db(w: np.ndarray, w_hat: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio ``10 log10(sum w^2 / sum (w - w_hat)^2)`` in dB
    (inf when ``w_hat == w``)."""
    w, w_hat = w.astype(np.float64), w_hat.astype(np.float64)
    noise = np.sum((w - w_hat) ** 2)
    return float("inf") if noise == 0 else float(10 * np.log10(np.sum(w * w) / noise))


def predicted_sqnr_db(bits: int, crest: float) -> float:
    """SQNR of a symmetric narrow-range ``bits``-bit quantizer scaled to ``max|w|``, from the
    crest factor alone.

    Formula: the step is ``Delta = max|w| / (2**(bits-1) - 1)`` and the rounding error,
    uniform on ``[-Delta/2, Delta/2]``, has power ``Delta^2 / 12``, so

        SQNR = 10 log10(12 rms^2 / Delta^2) = 10.79 + 20 log10(2**(bits-1) - 1) - 20 log10(crest)

    about 6.02 dB per bit, minus the crest factor in dB (Widrow & Kollar, *Quantization
    Noise*, 2008, ch. 4; the "6 dB per bit" rule). Valid when the step is small against the
    spread of the weights (it overestimates at 2 bits).
    """
    return 10 * math.log10(12.0) + 20 * math.log10(2 ** (bits - 1) - 1) - 20 * math.log10(crest)


def min_bits_for_sqnr(crest: float, target_db: float, max_bits: int = 16) -> int:
    """The fewest bits (2..``max_bits``) whose :func:`predicted_sqnr_db` reaches ``target_db``
    for a tensor of crest factor ``crest``; ``max_bits`` if none does.

    Formula: the smallest ``b`` with ``10.79 + 20 log10(2**(b-1) - 1) - 20 log10(crest) >=
    target_db``: a data-free choice from the statistics alone (each extra bit buys about 6 dB).
    """
    for b in range(2, max_bits + 1):
        if predicted_sqnr_db(b, crest) >= target_db:
            return b
    return max_bits


@dataclass(frozen=True)
class LayerStats:
    """Statistics of one weight matrix (see :func:`layer_statistics`)."""

    name: str
    shape: tuple
    min: float
    max: float
    std: float
    crest_factor: float
    outlier_fraction: float
    kurtosis: float
    sqnr_db: dict          # bits -> measured SQNR (dB) with the given scheme
    predicted_sqnr_db: dict  # bits -> :func:`predicted_sqnr_db` (per-tensor formula)


def _check_model(model) -> MLP:
    if not isinstance(model, MLP):
        raise TypeError(f"model: expected an nnref MLP, got {describe(model)}")
    return model


def _real(value, name: str) -> float:
    """``value`` as a finite float (any sign), or a TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a real number, got {describe(value)}")
    if not np.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value}")
    return float(value)


def _check_bits_list(bits, name: str = "bits") -> tuple[int, ...]:
    if isinstance(bits, (int, np.integer)) or not isinstance(bits, (list, tuple, range)) or not bits:
        raise TypeError(f"{name}: expected a non-empty sequence of bit widths 2..8, got {describe(bits)}")
    return tuple(check_int_in_range(b, name, 2, 8) for b in bits)


def quantize_layer_weights(W: np.ndarray, bits: int, weight_scheme="tflite_int8_weights") -> np.ndarray:
    """``W`` quantized to ``bits`` bits and dequantized (what the integer model multiplies
    by, in real units): ``dequantize(*quantize_weights(W, weight_scheme, bits))``.

    Parameters
    ----------
    W : finite float array (in, out)
    bits : int in 2..8
    weight_scheme : a symmetric signed weight scheme name or QScheme

    Returns
    -------
    ndarray of ``W``'s dtype and shape, on the ``bits``-bit grid
    """
    w_q, qp = quantize_weights(W, weight_scheme, bits)
    return dequantize(w_q, qp).astype(W.dtype)


def layer_statistics(model: MLP, bits=(2, 3, 4, 8), weight_scheme="tflite_int8_weights") -> list[LayerStats]:
    """Per weight matrix ``W1, W2, ...``: range, std, crest factor, outlier fraction,
    kurtosis and SQNR at each of ``bits`` (measured with ``weight_scheme``, per channel by
    default, and predicted per tensor by :func:`predicted_sqnr_db`).

    Parameters
    ----------
    model : nnref MLP
    bits : sequence of ints in 2..8
    weight_scheme : a symmetric signed weight scheme name or QScheme

    Returns
    -------
    list of LayerStats, one per weight matrix
    """
    model = _check_model(model)
    bits = _check_bits_list(bits)
    check_weight_scheme(weight_scheme, 8)
    rows = []
    for l, lin in enumerate(model.linears, start=1):
        W, crest = lin.W, crest_factor(lin.W)
        rows.append(LayerStats(
            f"W{l}", W.shape, float(W.min()), float(W.max()), float(W.std()), crest,
            outlier_fraction(W), excess_kurtosis(W),
            {b: sqnr_db(W, quantize_layer_weights(W, b, weight_scheme)) for b in bits},
            {b: predicted_sqnr_db(b, crest) for b in bits}))
    return rows


def bits_from_statistics(model: MLP, target_db: float = 20.0, weight_scheme="tflite_int8_weights") -> tuple[int, ...]:
    """Per-layer weight bits from the weights alone: for each matrix the fewest bits in
    2..8 whose *measured* SQNR (with ``weight_scheme``) reaches ``target_db`` (8 if none).

    Needs no data, and says nothing about how much the loss cares (see
    :func:`layer_sensitivity`); a layer with outliers (high crest factor) gets more bits.

    Parameters
    ----------
    model : nnref MLP
    target_db : float, the SQNR every layer must reach
    weight_scheme : a symmetric signed weight scheme name or QScheme

    Returns
    -------
    tuple of int, one per Linear layer
    """
    model = _check_model(model)
    target_db = _real(target_db, "target_db")
    check_weight_scheme(weight_scheme, 8)
    out = []
    for lin in model.linears:
        ok = [b for b in BIT_CHOICES if sqnr_db(lin.W, quantize_layer_weights(lin.W, b, weight_scheme)) >= target_db]
        out.append(ok[0] if ok else BIT_CHOICES[-1])
    return tuple(out)


# --------------------------------------------------------------------------- sensitivity


@dataclass(frozen=True)
class Sensitivity:
    """Held-out loss and accuracy with one layer quantized at a time.

    ``loss[l, j]`` and ``accuracy[l, j]`` are those of the model with only layer ``l``'s
    weights at ``bits[j]`` bits; ``base_loss``, ``base_accuracy`` those of the float model.
    ``delta_loss = loss - base_loss`` is the cost :func:`choose_bit_widths` adds up.
    """

    bits: tuple
    loss: np.ndarray       # (L, len(bits))
    accuracy: np.ndarray   # (L, len(bits))
    base_loss: float
    base_accuracy: float

    @property
    def delta_loss(self) -> np.ndarray:
        """``loss - base_loss``: the held-out loss increase, per layer and bit width."""
        return self.loss - self.base_loss

    @property
    def delta_accuracy(self) -> np.ndarray:
        """``accuracy - base_accuracy``, per layer and bit width."""
        return self.accuracy - self.base_accuracy


def _with_bits(model: MLP, bits_per_layer, weight_scheme) -> MLP:
    """A copy of ``model`` with layer l's weights quantized to ``bits_per_layer[l]`` (None: float)."""
    new = model.copy()
    for lin, b in zip(new.linears, bits_per_layer):
        if b is not None:
            lin.W = quantize_layer_weights(lin.W, b, weight_scheme)
    return new


def _check_data(model: MLP, x, y) -> tuple[np.ndarray, np.ndarray]:
    x = model.check_input(x, "x")  # 2-D, the model's width, finite within its dtype
    return x, check_labels(y, x.shape[0], model.n_outputs, "y")


def layer_sensitivity(model: MLP, x, y, bits=BIT_CHOICES, weight_scheme="tflite_int8_weights") -> Sensitivity:
    """Measure every layer at every bit width on held-out ``(x, y)`` (one layer quantized,
    weights only, the others float): ``L * len(bits)`` evaluations.

    Parameters
    ----------
    model : float MLP; x (N, in), y (N,) int labels: held-out data (not the test set)
    bits : bit widths to try (2..8); weight_scheme : a symmetric weight scheme

    Returns
    -------
    Sensitivity
    """
    model = _check_model(model)
    x, y = _check_data(model, x, y)
    bits = _check_bits_list(bits)
    n = len(model.linears)
    loss, acc = np.zeros((n, len(bits))), np.zeros((n, len(bits)))
    for l in range(n):
        for j, b in enumerate(bits):
            loss[l, j], acc[l, j] = evaluate(_with_bits(model, [b if i == l else None for i in range(n)],
                                                        weight_scheme), x, y)
    base_loss, base_acc = evaluate(model, x, y)
    return Sensitivity(bits, loss, acc, base_loss, base_acc)


# --------------------------------------------------------------------------- sizes and the choice


def mixed_size_bytes(model: MLP, bits, per_channel: bool = True) -> int:
    """Bytes of the stored integer model with layer ``l``'s weights at ``bits[l]`` bits:
    :func:`nnref.quant.report.model_size_bytes`'s count with per-layer widths (packed
    weights ``ceil(in * out * b / 8)``, int32 biases, a float32 scale and a 4-byte zero point
    per channel, 8 bytes of activation parameters for the input and each layer's output).

    Parameters
    ----------
    model : nnref MLP
    bits : sequence of ints in 2..8, one per Linear layer
    per_channel : bool

    Returns
    -------
    int, bytes
    """
    model = _check_model(model)
    bits = _check_bits_list(bits)
    shapes = [lin.W.shape for lin in model.linears]
    if len(bits) != len(shapes):
        raise ValueError(f"bits: expected one width per layer ({len(shapes)}), got {len(bits)}")
    total = 8 * (1 + len(shapes))
    for (k, n), b in zip(shapes, bits):
        total += packed_size_bytes(k * n, b) + 4 * n + 8 * (n if per_channel else 1)
    return total


@dataclass(frozen=True)
class BitChoice:
    """What :func:`choose_bit_widths` chose and why.

    ``bits``: per layer; ``size_bytes``: :func:`mixed_size_bytes`; ``predicted_delta_loss``:
    the sum of the chosen layers' measured single-layer loss increases; ``loss``,
    ``accuracy``: measured with all layers quantized together (weights only);
    ``n_feasible``: assignments within the budget; ``evaluated``: ``(bits, loss, accuracy)``
    of every assignment measured jointly; ``sensitivity``: the table it started from.
    """

    bits: tuple
    size_bytes: int
    predicted_delta_loss: float
    loss: float
    accuracy: float
    n_feasible: int
    evaluated: tuple
    sensitivity: Sensitivity


def _assignments(n_layers: int, choices: tuple) -> list[tuple]:
    if len(choices) ** n_layers > _MAX_ASSIGNMENTS:
        raise ValueError(f"candidates: {len(choices)} widths for {n_layers} layers give "
                         f"{len(choices) ** n_layers} assignments > {_MAX_ASSIGNMENTS}; pass fewer")
    return list(itertools.product(choices, repeat=n_layers))


def choose_bit_widths(model: MLP, x, y, size_budget: int | None = None, max_accuracy_drop: float | None = None,
                      candidates=BIT_CHOICES, n_eval: int = 8, weight_scheme="tflite_int8_weights") -> BitChoice:
    """Per-layer weight bit widths (2..8) under a size budget or an accuracy budget.

    Method (sensitivity-guided exhaustive search, measured on held-out ``(x, y)``):

    1. :func:`layer_sensitivity`: ``dL[l, b]``, the held-out loss increase with only layer
       ``l`` at ``b`` bits;
    2. every assignment ``(b_1, ..., b_L)`` of ``candidates`` is scored by the predicted
       loss increase ``sum_l dL[l, b_l]`` (first order: layer errors add up);
    3. ``size_budget`` (bytes, :func:`mixed_size_bytes`): among the assignments that fit,
       the ``n_eval`` best predicted are quantized together and measured; the lowest
       measured loss wins (ties: the smaller size). ``max_accuracy_drop`` (a fraction,
       e.g. 0.01): assignments are measured from the smallest up (ties by prediction) and
       the first whose held-out accuracy is within the drop of the float model's wins.

    Exactly one budget must be given. Raises ``ValueError`` if nothing fits.

    Returns
    -------
    BitChoice
    """
    model = _check_model(model)
    x, y = _check_data(model, x, y)
    if (size_budget is None) == (max_accuracy_drop is None):
        raise ValueError(f"size_budget, max_accuracy_drop: expected exactly one, got {size_budget!r}, {max_accuracy_drop!r}")
    choices = _check_bits_list(candidates, "candidates")
    n_eval = check_int_in_range(n_eval, "n_eval", 1, 10**6)
    sens = layer_sensitivity(model, x, y, choices, weight_scheme)
    col = {b: j for j, b in enumerate(choices)}
    scored = [(float(sum(sens.delta_loss[l, col[b]] for l, b in enumerate(a))), mixed_size_bytes(model, a), a)
              for a in _assignments(len(model.linears), choices)]
    if size_budget is not None:
        size_budget = check_int_in_range(size_budget, "size_budget", 1, 2**62)
        feasible = sorted(s for s in scored if s[1] <= size_budget)
        if not feasible:
            raise ValueError(f"size_budget: no assignment fits {size_budget} bytes (smallest "
                             f"{min(s[1] for s in scored)})")
        shortlist = feasible[:n_eval]
    else:
        drop = float(max_accuracy_drop)
        if not 0 <= drop < 1:
            raise ValueError(f"max_accuracy_drop: expected a fraction in [0, 1), got {max_accuracy_drop!r}")
        feasible = sorted(scored, key=lambda s: (s[1], s[0]))
        shortlist = feasible
    evaluated = []
    for pred, size, a in shortlist:
        loss, acc = evaluate(_with_bits(model, a, weight_scheme), x, y)
        evaluated.append((a, loss, acc, pred, size))
        if max_accuracy_drop is not None and acc >= sens.base_accuracy - drop:
            break
    if max_accuracy_drop is not None:
        best = evaluated[-1]
    else:
        best = min(evaluated, key=lambda e: (e[1], e[4]))
    return BitChoice(best[0], best[4], best[3], best[1], best[2], len(feasible),
                     tuple((e[0], e[1], e[2]) for e in evaluated), sens)


# --------------------------------------------------------------------------- the integer model


def quantize_model_mixed(model: MLP, calibration_x, bits, weight_scheme="tflite_int8_weights",
                         **kwargs) -> QuantizedMLP:
    """The integer-only model with layer ``l``'s weights at ``bits[l]`` bits (int8 activations).

    :func:`~nnref.quant.convert.quantize_model` with its per-layer ``bits``: calibration
    and activation grids as for any conversion, each layer's weights quantized at
    ``bits[l]`` and its bias to the matching weight scale.

    Parameters
    ----------
    model : float nnref MLP
    calibration_x : (N, in) representative inputs
    bits : sequence of ints in 2..8, one per Linear layer
    weight_scheme : a symmetric signed weight scheme name or QScheme
    **kwargs : passed to ``quantize_model`` (``activation_observer``, ``requantization``, ``rounding``, ...)

    Returns
    -------
    QuantizedMLP
    """
    model = _check_model(model)
    bits = _check_bits_list(bits)
    if len(bits) != len(model.linears):
        raise ValueError(f"bits: expected one width per layer ({len(model.linears)}), got {len(bits)}")
    return quantize_model(model, calibration_x, weight_scheme=weight_scheme, bits=list(bits), **kwargs)
