"""Measuring quantization: error statistics, per-layer reports, int4 packing, model size.

- :func:`quantization_error`: MSE, largest absolute error and signal-to-quantization-noise
  ratio (SQNR) of an approximation of a reference tensor.
- :func:`weight_error_report` / :func:`activation_error_report`: those statistics per
  layer, for the weights of a model and for its activations in the fake-quantized
  simulation (:mod:`nnref.quant.qat`).
- :func:`pack_int4` / :func:`unpack_int4`: two signed 4-bit values per byte.
- :func:`model_size_bytes`: the bytes a model takes at a given precision, itemised.
- :func:`format_table`: an aligned plain-text table for printing the above.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from nnref._checks import as_float_array, as_int_array, check_finite, check_int_in_range, describe
from nnref.layers import Linear
from nnref.mlp import MLP
from nnref.quant.convert import WEIGHT_ROUNDING
from nnref.quant.ops import fake_quantize
from nnref.quant.qat import prepare_qat
from nnref.quant.qmodel import QuantizedMLP
from nnref.quant.qparams import QScheme, get_scheme

__all__ = [
    "QuantError",
    "quantization_error",
    "WeightErrorRow",
    "weight_error_report",
    "ActivationErrorRow",
    "activation_error_report",
    "pack_int4",
    "unpack_int4",
    "packed_size_bytes",
    "SizeBreakdown",
    "model_size_bytes",
    "parse_precision",
    "format_table",
]


# --------------------------------------------------------------------------- error statistics


class QuantError(NamedTuple):
    """Error of an approximation ``a`` of a reference ``r`` (see :func:`quantization_error`)."""

    mse: float
    max_abs: float
    sqnr_db: float


def quantization_error(reference, approx) -> QuantError:
    """Error statistics of ``approx`` against ``reference`` (same shape, finite, any float
    or integer dtype; computed in float64)::

        e       = reference - approx
        mse     = mean(e**2)
        max_abs = max |e|
        sqnr_db = 10 * log10( sum(reference**2) / sum(e**2) )

    ``sqnr_db`` is ``inf`` when ``e`` is all zero (including a zero reference) and
    ``-inf`` when the reference is all zero but ``e`` is not. SQNR is the standard figure
    of merit of a quantizer: uniform quantization of a full-scale signal gains about
    ``20 log10(2) = 6.02`` dB per bit (e.g. Gray & Neuhoff 1998, "Quantization", IEEE
    Trans. Inf. Theory 44(6), section I). It is computed as
    ``10 log10(S / N) + 20 log10(max|r| / max|e|)`` with ``S = sum((r / max|r|)**2)`` and
    ``N = sum((e / max|e|)**2)``, equal to the formula above but free of overflow and
    underflow for any finite input.

    Parameters
    ----------
    reference, approx : array_like of real
        Same shape, finite.

    Returns
    -------
    QuantError

    Raises
    ------
    TypeError, ValueError
        Naming the argument.
    """
    r = as_float_array(reference, "reference", dtype=np.float64)
    a = as_float_array(approx, "approx", dtype=np.float64)
    if a.shape != r.shape:
        raise ValueError(f"approx: expected the shape of reference {r.shape}, got {a.shape}")
    with np.errstate(over="ignore"):  # an overflowing difference is reported just below
        e = r - a
    max_abs = float(np.max(np.abs(e)))
    if not np.isfinite(max_abs):  # finite inputs whose difference overflows float64
        raise ValueError("approx: reference - approx overflows float64")
    with np.errstate(over="ignore"):  # |e| > 1e154: the MSE is honestly inf in float64
        mse = float(np.mean(e * e))
    if max_abs == 0:
        return QuantError(0.0, 0.0, math.inf)
    max_ref = float(np.max(np.abs(r)))
    if max_ref == 0:
        return QuantError(mse, max_abs, -math.inf)
    # Each sum of squares scaled by its own largest term lies in [1, size]: no overflow or
    # underflow, however large or tiny the values (the scales come back in the last term).
    signal = float(np.sum((r / max_ref) ** 2))
    noise = float(np.sum((e / max_abs) ** 2))
    sqnr = 10.0 * math.log10(signal / noise) + 20.0 * math.log10(max_ref / max_abs)
    return QuantError(mse, max_abs, sqnr)


# --------------------------------------------------------------------------- per-layer reports


class WeightErrorRow(NamedTuple):
    """One Linear layer's weight quantization error (see :func:`weight_error_report`)."""

    name: str
    shape: tuple
    bits: int
    mse: float
    max_abs: float
    sqnr_db: float
    scale_min: float
    scale_max: float


def _check_model(model, what: str = "an MLP") -> MLP:
    if not isinstance(model, MLP):
        raise TypeError(f"model: expected {what}, got {describe(model)}")
    return model


def weight_error_report(model: MLP, scheme: str | QScheme, bits: int | None = None,
                        rounding: str = WEIGHT_ROUNDING) -> list[WeightErrorRow]:
    """Per Linear layer, the error of fake-quantizing its weights with ``scheme``.

    For ``W_l`` (``(in, out)``): ``qp = scheme.for_tensor(W_l)`` (min-max range, per
    output channel for per-channel schemes), ``W_fq = fake_quantize(W_l, qp, rounding)``
    and the row holds :func:`quantization_error` ``(W_l, W_fq)`` plus the smallest and
    largest scale. ``rounding`` defaults to the converter's weight rounding
    (:data:`~nnref.quant.convert.WEIGHT_ROUNDING`, half away from zero, TensorFlow Lite's),
    so for a scheme the converter accepts ``W_fq`` is exactly the dequantized weights of
    :func:`~nnref.quant.convert.quantize_model`; ``"half_even"`` gives PyTorch's. ``scheme`` is a ``QScheme`` or preset name (``"tflite_int8_weights"``,
    ...); ``bits`` (2..16), if given, replaces the scheme's width. Biases are not
    reported: they become int32 with a far finer grid. Rows are named ``W1, W2, ...``.

    Parameters
    ----------
    model : MLP
    scheme : str or QScheme
    bits : int, optional
    rounding : {"half_away", "half_even"}

    Returns
    -------
    list of WeightErrorRow

    Raises
    ------
    TypeError, ValueError
        Naming the argument.
    """
    model = _check_model(model)
    s = get_scheme(scheme)
    if bits is not None:
        s = s.with_bits(check_int_in_range(bits, "bits", 2, 16))
    rows = []
    for i, lin in enumerate(model.linears, start=1):
        qp = s.for_tensor(lin.W)
        err = quantization_error(lin.W, fake_quantize(lin.W, qp, rounding))
        rows.append(WeightErrorRow(f"W{i}", lin.W.shape, s.bits, *err,
                                   float(qp.scale.min()), float(qp.scale.max())))
    return rows


class ActivationErrorRow(NamedTuple):
    """Error of one activation tensor of the simulation (see :func:`activation_error_report`)."""

    name: str
    shape: tuple
    mse: float
    max_abs: float
    sqnr_db: float


def _float_trace(model: MLP, x: np.ndarray) -> list[np.ndarray]:
    """``[x, h_1, ..., logits]`` of the float model (``h_l`` after the activation)."""
    h = as_float_array(x, "x", ndim=2)
    if h.shape[1] != model.in_features:
        raise ValueError(f"x: expected {model.in_features} features per example (shape (batch, "
                         f"{model.in_features})), got shape {h.shape}")
    with np.errstate(over="ignore"):
        h = h.astype(model.dtype, copy=False)
    check_finite(h, f"x (as the model's {model.dtype})")
    out = [h]
    for k, layer in enumerate(model.layers):
        h = layer.forward(h)
        nxt = model.layers[k + 1] if k + 1 < len(model.layers) else None
        if not (isinstance(layer, Linear) and nxt is not None):  # after act, or the logits
            out.append(h)
    return out


def activation_error_report(model: MLP, x, weight_bits: int = 8, act_bits: int = 8,
                            weight_scheme: str | QScheme = "tflite_int8_weights",
                            calibration_x=None) -> list[ActivationErrorRow]:
    """Per quantization point, the error of the simulated quantized model's activations.

    The simulation is ``prepare_qat(model, weight_bits, act_bits, weight_scheme)``,
    calibrated on ``calibration_x`` (default ``x``: min-max ranges over the whole batch)
    and put in eval mode. Rows, in order: ``"input"`` (``x`` vs its fake quantization),
    ``"layer 1"``, ..., ``"layer L (logits)"``: the float model's ``h_l`` (after the
    activation) vs the simulation's fake-quantized ``h_l``. Each row is
    :func:`quantization_error` over the whole batch; the error at layer l includes the
    error carried from the layers before it, i.e. it is the end-to-end error at that point.

    Parameters
    ----------
    model : MLP
    x : array_like of float, shape (B, in_features)
    weight_bits, act_bits : int
    weight_scheme : str or QScheme
    calibration_x : array_like of float, optional

    Returns
    -------
    list of ActivationErrorRow

    Raises
    ------
    TypeError, ValueError
        Naming the argument.
    """
    model = _check_model(model)
    qat = prepare_qat(model, weight_bits=weight_bits, act_bits=act_bits, weight_scheme=weight_scheme)
    qat.calibrate(x if calibration_x is None else calibration_x).eval()
    simulated = qat.forward_trace(x)
    reference = _float_trace(model, x)
    n = len(reference) - 1
    names = ["input"] + [f"layer {i}" for i in range(1, n)] + [f"layer {n} (logits)"]
    return [ActivationErrorRow(name, ref.shape, *quantization_error(ref, sim))
            for name, ref, sim in zip(names, reference, simulated)]


# --------------------------------------------------------------------------- int4 packing


def pack_int4(q) -> np.ndarray:
    """Pack signed 4-bit integers two per byte, low nibble first.

    ``q`` (any shape, any integer dtype, values in ``[-8, 7]``) is flattened in C order to
    ``v_0, v_1, ...``; byte ``i`` of the result is::

        (v_{2i} & 0xF) | ((v_{2i+1} & 0xF) << 4)          (uint8)

    i.e. each value's 4-bit two's complement, the earlier element in the low nibble (the
    layout of ONNX's INT4 tensors). An odd count leaves the last high nibble 0. Returns a
    1-D uint8 array of ``ceil(n / 2)`` bytes. Raises ``TypeError`` for a non-integer
    dtype and ``ValueError`` for values outside ``[-8, 7]``.

    Parameters
    ----------
    q : array_like of int
        Values in [-8, 7].

    Returns
    -------
    ndarray of uint8

    Raises
    ------
    TypeError, ValueError
        Naming the argument.
    """
    q = as_int_array(q, "q", allow_empty=True)
    if q.size and (q.min() < -8 or q.max() > 7):
        raise ValueError(f"q: expected values in [-8, 7] (signed 4-bit), got values in "
                         f"[{q.min()}, {q.max()}]")
    nibbles = (q.ravel().astype(np.int16) & 0xF).astype(np.uint8)  # two's complement, 4 bits
    if nibbles.size % 2:
        nibbles = np.append(nibbles, np.uint8(0))
    return (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8)


def unpack_int4(packed, n: int) -> np.ndarray:
    """Inverse of :func:`pack_int4`: the first ``n`` signed 4-bit values, as int8 ``(n,)``.

    Nibble ``j`` is ``packed[j // 2] & 0xF`` for even ``j`` and ``packed[j // 2] >> 4``
    for odd ``j``; a nibble ``u`` in [0, 15] stands for ``u - 16`` if ``u >= 8`` else
    ``u`` (sign extension). ``packed`` must be a 1-D uint8 array of exactly
    ``ceil(n / 2)`` bytes, and for odd ``n`` the unused last high nibble must be 0 (as
    ``pack_int4`` writes it): anything else is a mismatched length or a corrupt buffer.

    Parameters
    ----------
    packed : ndarray of uint8
    n : int
        The number of values.

    Returns
    -------
    ndarray of int8, shape (n,)

    Raises
    ------
    TypeError, ValueError
        Naming the argument.
    """
    packed = as_int_array(packed, "packed", dtype=np.uint8, ndim=1, allow_empty=True)
    n = check_int_in_range(n, "n", 0, 2**62)
    if packed.size != (n + 1) // 2:
        raise ValueError(f"packed: expected ceil(n / 2) = {(n + 1) // 2} bytes for n = {n}, "
                         f"got {packed.size}")
    if n % 2 and packed[-1] >> 4:
        raise ValueError(f"packed: the unused high nibble of the last byte must be 0 for odd "
                         f"n = {n}, got {int(packed[-1] >> 4)}")
    nibbles = np.empty(2 * packed.size, dtype=np.int16)
    nibbles[0::2] = packed & 0xF
    nibbles[1::2] = packed >> 4
    return (((nibbles[:n] ^ 8) - 8)).astype(np.int8)  # u - 16 if u >= 8: (u xor 8) - 8


# --------------------------------------------------------------------------- model size


def packed_size_bytes(n: int, bits: int) -> int:
    """Bytes to store ``n`` values of ``bits`` bits each, packed: ``ceil(n * bits / 8)``.

    Parameters
    ----------
    n : int
    bits : int

    Returns
    -------
    int
        ``ceil(n * bits / 8)``.
    """
    n = check_int_in_range(n, "n", 0, 2**62)
    bits = check_int_in_range(bits, "bits", 1, 64)
    return (n * bits + 7) // 8


_INT_PRECISION = re.compile(r"int([2-8])")
_FLOAT_BYTES = {"float32": 4, "float16": 2}


def parse_precision(precision: str) -> tuple[str, int]:
    """``("float", bytes)`` for ``"float32"``/``"float16"``, ``("int", bits)`` for
    ``"int2"`` ... ``"int8"``.

    Parameters
    ----------
    precision : str

    Returns
    -------
    tuple
        ``(kind, width)``.

    Raises
    ------
    ValueError
        Naming ``precision``.
    """
    if isinstance(precision, str):
        if precision in _FLOAT_BYTES:
            return "float", _FLOAT_BYTES[precision]
        m = _INT_PRECISION.fullmatch(precision)
        if m:
            return "int", int(m.group(1))
    raise ValueError(f"precision: expected 'float32', 'float16' or 'int2' ... 'int8', "
                     f"got {precision!r}")


@dataclass(frozen=True)
class SizeBreakdown:
    """Bytes of a stored model, by kind (see :func:`model_size_bytes`)."""

    precision: str
    weights: int
    biases: int
    weight_scales: int
    weight_zero_points: int
    activation_qparams: int

    @property
    def total(self) -> int:
        """Bytes of everything the stored model holds."""
        return (self.weights + self.biases + self.weight_scales + self.weight_zero_points
                + self.activation_qparams)


def _layer_widths(model, precision, n_layers: int) -> tuple[str, list[tuple[str, int]]]:
    """The precision label and one ``(kind, width)`` per layer."""
    if precision is None:
        if not isinstance(model, QuantizedMLP):
            raise ValueError("precision: expected 'float32', 'float16', 'int2' ... 'int8' or one "
                             "per layer, got None (only a QuantizedMLP knows its own widths)")
        precision = [f"int{b}" for b in model.weight_bits_per_layer]
    if not isinstance(precision, (list, tuple)):
        return precision, [parse_precision(precision)] * n_layers  # refuses a non-str
    if len(precision) != n_layers:
        raise ValueError(f"precision: expected {n_layers} precisions (one per layer), got {len(precision)}")
    widths = [parse_precision(p) for p in precision]
    if any(kind != "int" for kind, _ in widths) and len(set(precision)) > 1:
        raise ValueError(f"precision: per-layer precisions must all be 'int2' ... 'int8', got {list(precision)}")
    return ("/".join(precision) if len(set(precision)) > 1 else precision[0]), widths


def model_size_bytes(model, precision=None, per_channel: bool | None = None) -> SizeBreakdown:
    """Bytes needed to store ``model``'s parameters at ``precision``, itemised.

    For Linear layers with ``W_l`` of shape ``(in_l, out_l)``, ``L`` layers:

    - ``"float32"`` / ``"float16"``: weights and biases at 4 / 2 bytes each (TensorFlow
      Lite's float16 quantization stores biases in float16 too); nothing else.
    - ``"int{b}"``, b in 2..8: weights packed, ``ceil(in_l * out_l * b / 8)`` bytes per
      tensor (8 bits: one byte each; 4 bits: :func:`pack_int4`); biases int32, 4 bytes
      each; one float32 scale (4 bytes) and one zero point per output channel
      (``per_channel``) or per tensor; activation parameters (a float32 scale and a zero
      point) for the input and each layer's output, ``1 + L`` tensors.

    Parameters
    ----------
    model : MLP or QuantizedMLP
    precision : str or list of str, optional
        One precision for every layer, or one ``"int{b}"`` per layer (mixed widths,
        labelled ``"int4/int8/int8"``). None: a :class:`QuantizedMLP`'s own widths.
    per_channel : bool, optional
        Default True, or a :class:`QuantizedMLP`'s own choice. Ignored for floats.

    Returns
    -------
    SizeBreakdown

    Raises
    ------
    TypeError, ValueError
        Naming ``model``, ``precision`` or ``per_channel``.

    Notes
    -----
    The count is for ReLU models: a tanh, sigmoid or leaky-ReLU model converted by
    :func:`~nnref.quant.convert.quantize_model` also stores, per hidden layer, a 256-byte
    lookup table and the pre-activation scale and zero point (see
    :meth:`~nnref.quant.qmodel.QuantizedMLP.size_bytes`). Zero points are counted at 4
    bytes (int32, as nnref's ``QParams`` holds them); TensorFlow Lite stores int64, ONNX
    the quantized type. Requantization multipliers are not counted: engines derive them
    from the scales when loading.
    """
    if isinstance(model, QuantizedMLP):
        shapes = [layer.w_q.shape for layer in model.layers]
        own = model.layers[0].w_qparams.per_channel
    else:
        shapes = [lin.W.shape for lin in _check_model(model, "an MLP or a QuantizedMLP").linears]
        own = True
    label, widths = _layer_widths(model, precision, len(shapes))
    n_bias = sum(s[1] for s in shapes)
    if widths[0][0] == "float":
        width = widths[0][1]
        return SizeBreakdown(label, width * sum(a * b for a, b in shapes), width * n_bias, 0, 0, 0)
    per_channel = own if per_channel is None else per_channel
    if not isinstance(per_channel, (bool, np.bool_)):
        raise TypeError(f"per_channel: expected a bool, got {describe(per_channel)}")
    n_channels = sum(s[1] if per_channel else 1 for s in shapes)
    return SizeBreakdown(
        label,
        weights=sum(packed_size_bytes(a * b, w) for (a, b), (_, w) in zip(shapes, widths)),
        biases=4 * n_bias,
        weight_scales=4 * n_channels,
        weight_zero_points=4 * n_channels,
        activation_qparams=(4 + 4) * (1 + len(shapes)),
    )


# --------------------------------------------------------------------------- printing


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def format_table(rows, headers, floatfmt: str = ".4g", align=None) -> str:
    """An aligned plain-text table: header, a dashed rule, one line per row.

    Cells: strings as given, ``None`` as empty, integers with ``str``, floats with
    ``format(v, floatfmt)``. ``align`` is a string of ``"l"``/``"r"``, one per column;
    by default a column whose non-empty cells are all numbers is right-aligned, any
    other left-aligned. Every row must have ``len(headers)`` cells.

    Parameters
    ----------
    rows : sequence of sequence
    headers : sequence of str
    floatfmt : str
    align : str, optional

    Returns
    -------
    str

    Raises
    ------
    TypeError, ValueError
        Naming the argument.
    """
    for value, name in ((rows, "rows"), (headers, "headers")):
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise TypeError(f"{name}: expected a sequence, got {describe(value)}")
    if not isinstance(floatfmt, str):
        raise TypeError(f"floatfmt: expected a format string such as '.4g', got {describe(floatfmt)}")
    headers = [str(h) for h in headers]
    body = []
    for i, row in enumerate(rows):
        if isinstance(row, (str, bytes)) or not hasattr(row, "__iter__"):
            raise TypeError(f"rows[{i}]: expected a sequence of cells, got {describe(row)}")
        row = list(row)
        if len(row) != len(headers):
            raise ValueError(f"rows[{i}]: expected {len(headers)} cells (one per header), "
                             f"got {len(row)}")
        body.append(row)
    if align is None:
        right = [bool(body) and all(_is_number(row[j]) or row[j] is None for row in body)
                 for j in range(len(headers))]
    elif isinstance(align, str) and len(align) == len(headers) and set(align) <= {"l", "r"}:
        right = [a == "r" for a in align]
    else:
        raise ValueError(f"align: expected a string of {len(headers)} 'l'/'r' characters, "
                         f"got {align!r}")

    def cell(v) -> str:
        """One cell as text.

        Parameters
        ----------
        v : object

        Returns
        -------
        str
        """
        if v is None:
            return ""
        if isinstance(v, (float, np.floating)):
            return format(float(v), floatfmt)
        return str(v)

    text = [[cell(v) for v in row] for row in body]
    widths = [max([len(headers[j])] + [len(t[j]) for t in text]) for j in range(len(headers))]

    def line(cells) -> str:
        """One row of cells, padded and joined.

        Parameters
        ----------
        cells : list of str

        Returns
        -------
        str
        """
        parts = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)]
        return "  ".join(parts).rstrip()

    out = [line(headers), "  ".join("-" * w for w in widths)]
    out += [line(t) for t in text]
    return "\n".join(out)
