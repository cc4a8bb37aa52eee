"""Where an engine's int8 values differ from nnref's, layer by layer, and why.

:func:`compare` runs a model file on an engine path, keeping every intermediate tensor
the engine exposes, and replays each stage in nnref **from the engine's own input to
that stage**, so a difference is charged to the stage that made it, not to the ones it
propagates into:

- ``input``: the engine's QUANTIZE / QuantizeLinear against nnref's quantization of the
  same floats under each input rounding of :data:`~nnref.quant.profiles.INPUT_ROUNDINGS`
  (a ``.tflite`` graph with an int8 input has no QUANTIZE: nnref quantizes ``x`` with the
  engine path's rule and feeds the integers);
- ``layer l``: the engine's requantized int8 output of FULLY_CONNECTED / QLinearConv
  against nnref's, from the same int8 input and so the same int32 accumulators, under
  every rounding profile of :mod:`nnref.quant.profiles`;
- ``layer l table``: a TANH / LOGISTIC / Gather output against the layer's lookup table
  applied to the engine's own requantized values;
- ``logits``: the engine's int8 logits against nnref's end to end from the float input,
  per profile, each with the engine path's input rounding
  (:data:`~nnref.quant.profiles.ENGINE_INPUT_ROUNDINGS`).

On LiteRT's default path the XNNPACK delegate runs the whole graph and exposes only its
output; :func:`~nnref.interop.run_litert` observes each intermediate by making it the
graph output of a patched copy of the model (one run per tensor).

A profile *explains* a stage when it reproduces every value of it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from nnref._checks import as_float_array, describe
from nnref.interop.engines import ENGINES, LITERT_PATHS, run_litert, run_onnxruntime
from nnref.interop.onnx_io import read_onnx
from nnref.interop.tflite_io import read_tflite
from nnref.quant import QuantizedMLP
from nnref.quant.grid import FLOAT32_MAX
from nnref.quant.profiles import (
    ENGINE_INPUT_ROUNDINGS,
    INPUT_ROUNDINGS,
    PROFILES,
    model_profile,
    profile_forward,
    profile_multipliers,
    profile_requantized,
    quantize_input_as,
)

__all__ = ["Mismatch", "Stage", "CompareReport", "compare"]

#: How many differing values a report details.
MAX_DETAILS = 8


@dataclass(frozen=True)
class Mismatch:
    """One differing int8 value of a layer: where, the integers behind it, every profile's value."""

    layer: int
    row: int
    col: int
    acc: int
    m0: int
    shift: int
    multiplier: float
    engine: int
    profiles: dict

    def __str__(self) -> str:
        values = "  ".join(f"{p} {v}" for p, v in self.profiles.items())
        return (f"layer {self.layer} [{self.row}, {self.col}]: acc {self.acc}  m0 {self.m0}  shift {self.shift}"
                f"  acc*M = {self.acc * self.multiplier:.9f}  engine {self.engine}  |  nnref {values}")


@dataclass(frozen=True)
class Stage:
    """One compared stage: how many values, how many differ from nnref's reference
    profile, and how many each profile gets wrong (``per_profile``; empty for a table)."""

    name: str
    values: int
    differ: int
    per_profile: dict = field(default_factory=dict)

    @property
    def explained_by(self) -> tuple:
        """The profiles that reproduce every value of the stage."""
        return tuple(p for p, n in self.per_profile.items() if n == 0)


@dataclass(frozen=True)
class CompareReport:
    """What :func:`compare` found; ``str(report)`` is the readable account."""

    model_path: str
    engine: str
    reference: str
    n_inputs: int
    stages: tuple
    mismatches: tuple

    @property
    def agree(self) -> bool:
        """Whether the engine and nnref's reference profile agree on every value."""
        return all(s.differ == 0 for s in self.stages)

    @property
    def unexplained(self) -> tuple:
        """Stages with differences that no profile reproduces (tables have no profile)."""
        return tuple(s.name for s in self.stages if s.differ and not s.explained_by)

    def __str__(self) -> str:
        name = os.path.basename(self.model_path)
        total = sum(s.values for s in self.stages)
        if self.agree:
            return (f"{self.engine} agrees with nnref ({self.reference}) on all {total:,} int8 values "
                    f"of {name} ({self.n_inputs} inputs; {', '.join(s.name for s in self.stages)})")
        lines = [f"{self.engine} vs nnref ({self.reference}) on {name}, {self.n_inputs} inputs",
                 f"{'stage':<24} {'values':>9} {'differ':>7}  explained by  (differing values per profile)"]
        for s in self.stages:
            per = ", ".join(f"{p} {n}" for p, n in s.per_profile.items())
            expl = ", ".join(s.explained_by) or ("-" if s.per_profile else "(table)")
            lines.append(f"{s.name:<24} {s.values:>9,} {s.differ:>7,}  {expl}" + (f"  ({per})" if per else ""))
        if self.mismatches:
            lines.append(f"first differing values (nnref {self.reference}):")
            lines += [f"  {m}" for m in self.mismatches]
        lines.append("unexplained: " + (", ".join(self.unexplained) if self.unexplained else "none"))
        return "\n".join(lines)


def _run(model_path: str, x: np.ndarray, engine: str):
    """``(model, x_q, quantized by the engine?, [(requantized, output) or None per layer],
    int8 logits)``."""
    if engine in LITERT_PATHS:
        info = read_tflite(model_path)
        wanted = [info.quantized_input_tensor] + [t for pair in info.layer_tensors for t in pair]
        own = info.input_tensor != info.quantized_input_tensor  # a QUANTIZE in the graph
        feed = x if own else quantize_input_as(info.model, x, ENGINE_INPUT_ROUNDINGS[engine])  # int8 input
        out = run_litert(model_path, feed, engine, tensors=wanted)
        layers = [(out[a], out[b]) if a in out else None for a, b in info.layer_tensors]
        logits = out[info.layer_tensors[-1][1]] if layers[-1] is not None else out[info.output_tensor]
        return info.model, out.get(info.quantized_input_tensor), own, layers, logits
    info = read_onnx(model_path)
    out = run_onnxruntime(model_path, x)
    flat = lambda name: out[name].reshape(len(x), -1)  # noqa: E731 - (B, N, 1, 1) -> (B, N)
    layers = [(flat(a), flat(b)) for a, b in info.layer_names]
    return info.model, flat(info.quantized_input_name), True, layers, layers[-1][1]


def _int8_logits(model: QuantizedMLP, logits: np.ndarray) -> np.ndarray:
    """The engine's logits as int8: read back from the float output of a DEQUANTIZE
    (``s * (q - zp)`` is strictly increasing in ``q``, so rounding recovers ``q``)."""
    if logits.dtype == np.int8:
        return logits
    qp = model.output_qparams
    q = np.clip(np.rint(logits.astype(np.float64) / float(qp.scale)) + int(qp.zero_point), -128, 127)
    return q.astype(np.int8)


def _layer_stage(model, l: int, h, requantized, reference: str, limit: int):
    layer = model.layers[l]
    acc = layer.trace(h)["acc_bias"]
    values = {p: profile_requantized(layer, acc, p) for p in PROFILES}
    per = {p: int(np.count_nonzero(v != requantized)) for p, v in values.items()}
    stage = Stage(f"layer {l}", int(requantized.size), per[reference], per)
    details, (m0, shift) = [], profile_multipliers(layer, reference)  # the engine's own multiplier
    for row, col in np.argwhere(values[reference] != requantized)[:limit]:
        details.append(Mismatch(l, int(row), int(col), int(acc[row, col]), int(m0[col]), int(shift[col]),
                                float(layer.real_multiplier[col]), int(requantized[row, col]),
                                {p: int(v[row, col]) for p, v in values.items()}))
    return stage, details


def compare(model_path, x, engine: str | None = None, max_details: int = MAX_DETAILS) -> CompareReport:
    """Run ``model_path`` on ``engine`` and account for every int8 value nnref computes
    differently (see the module docstring for the stages).

    Parameters
    ----------
    model_path : str or os.PathLike
        A ``.tflite`` file (:func:`~nnref.interop.read_tflite`) or an ``.onnx`` file
        written by :func:`~nnref.interop.to_onnx`.
    x : array_like, shape (B, features)
        Float inputs.
    engine : {"litert_reference", "litert_optimized", "litert_default", "onnxruntime"}, optional
        Default: ``"litert_default"`` for ``.tflite``, ``"onnxruntime"`` for ``.onnx``.
    max_details : int
        How many differing layer values to detail (:class:`Mismatch`).

    Returns
    -------
    CompareReport
        Per stage, the values compared, how many differ from nnref's reference profile
        (the model's own: ``"single"`` for a ``.tflite`` model, TensorFlow Lite's
        integer-only arithmetic; ``"float32"`` for an ONNX one), and per profile
        (LiteRT's reference kernels are ``"float64"``: the same values as ``"single"``
        except within ~1e-8 of a tie).

    Raises
    ------
    TypeError
        ``model_path`` not a path; ``x`` not numeric; ``max_details`` not an int.
    FileNotFoundError
        No such file.
    ValueError
        An engine that does not run this file type; ``x`` of the wrong shape, not finite
        or beyond float32; ``max_details < 0``; unreadable models (see
        :func:`~nnref.interop.read_tflite`, :func:`~nnref.interop.read_onnx`).
    """
    if not isinstance(model_path, (str, os.PathLike)):
        raise TypeError(f"model_path: expected a .tflite or .onnx file path, got {describe(model_path)}")
    path = os.fspath(model_path)
    is_tflite = path.endswith(".tflite")
    engine = engine or ("litert_default" if is_tflite else "onnxruntime")
    if engine not in ENGINES or (engine in LITERT_PATHS) != is_tflite:
        raise ValueError(f"engine: expected one of {ENGINES} that runs {os.path.basename(path)!r} "
                         f"(LiteRT for .tflite, onnxruntime for .onnx), got {engine!r}")
    x = as_float_array(x, "x", ndim=2)
    big = float(np.max(np.abs(x))) if x.size else 0.0
    if big > FLOAT32_MAX:  # the engines take float32: the cast would make these infinite
        raise ValueError(f"x: expected values within float32's range (|x| <= {FLOAT32_MAX:.4g}), got |x| up to {big:.4g}")
    if isinstance(max_details, bool) or not isinstance(max_details, (int, np.integer)):
        raise TypeError(f"max_details: expected an int >= 0, got {describe(max_details)}")
    if max_details < 0:
        raise ValueError(f"max_details: expected an int >= 0, got {describe(max_details)}")
    model, x_q, engine_quantized, layers, logits = _run(path, x, engine)
    reference = model_profile(model)
    stages, details = [], []
    own_input = "half_even" if reference == "float32" else "half_away"  # the file's own engine
    if x_q is not None and engine_quantized:
        per = {r: int(np.count_nonzero(quantize_input_as(model, x, r) != x_q)) for r in INPUT_ROUNDINGS}
        stages.append(Stage("input", int(x_q.size), per[own_input], per))
    h = x_q
    for l, pair in enumerate(layers):
        if pair is None:
            break
        per_layer = -(-max_details // len(layers))  # details spread over the layers
        stage, found = _layer_stage(model, l, h, pair[0], reference, min(per_layer, max_details - len(details)))
        stages.append(stage)
        details += found
        h = pair[1]
        if model.layers[l].lut is not None:
            table = model.layers[l].lut[pair[0].astype(np.intp) + 128]
            stages.append(Stage(f"layer {l} table", int(h.size), int(np.count_nonzero(table != h))))
    logits = _int8_logits(model, logits)
    x_engine = quantize_input_as(model, x, ENGINE_INPUT_ROUNDINGS[engine])  # the engine path's own rule
    per = {p: int(np.count_nonzero(profile_forward(model, x_engine, p) != logits)) for p in PROFILES}
    stages.append(Stage("logits (end to end)", int(logits.size), per[reference], per))
    return CompareReport(path, engine, reference, int(x.shape[0]), tuple(stages), tuple(details))
