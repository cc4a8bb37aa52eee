"""Read an int8 fully connected TensorFlow Lite model into a :class:`~nnref.quant.QuantizedMLP`.

A ``.tflite`` file is a FlatBuffer (schema ``tensorflow/lite/schema/schema.fbs``): a list
of tensors (shape, type, quantization parameters, an optional constant buffer) and a list
of operators, each naming its input and output tensors. The converter writes a full-int8
MLP as the chain ::

    [QUANTIZE] -> FULLY_CONNECTED [-> TANH | LOGISTIC] -> ... -> FULLY_CONNECTED -> [DEQUANTIZE]

with int8 activations (per tensor), int8 symmetric weights stored ``(out, in)`` (per
output channel, ``quantized_dimension`` 0, or per tensor), int32 biases, and ReLU or
ReLU6 fused into the FULLY_CONNECTED as a clamp. :func:`read_tflite` checks every one of
these facts, names the operator (and its index) or the tensor it refuses, and builds the
layers through :class:`~nnref.quant.QuantizedLayer`'s public constructor, which derives
the multipliers as LiteRT's reference FULLY_CONNECTED does, ``double(s_in) *
double(s_w) / double(s_out)`` per channel and per tensor (order ``"double"`` of
:func:`~nnref.quant.qlayer.tflite_real_multiplier`; LiteRT's optimized kernels take a
per-tensor multiplier in the ``"float32_product"`` order, which the ``"double_up"``
profile of :mod:`nnref.quant.profiles` follows).
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass

import numpy as np
import tflite

from nnref._checks import describe
from nnref._files import read_file_bytes
from nnref.quant import QParams, QuantizedLayer, QuantizedMLP, activation_range, build_lut
from nnref.quant.convert import FIXED_OUTPUT_QPARAMS

__all__ = ["SUPPORTED_OPERATORS", "TFLiteMLP", "read_tflite", "from_tflite"]

#: The operators :func:`read_tflite` accepts (anything else is refused by name).
SUPPORTED_OPERATORS = ("QUANTIZE", "FULLY_CONNECTED", "TANH", "LOGISTIC", "DEQUANTIZE")
_OP = tflite.BuiltinOperator
_TYPE_NAMES = {v: k for k, v in vars(tflite.TensorType).items() if not k.startswith("_")}
_ACT = tflite.ActivationFunctionType
_FUSED = {_ACT.NONE: "none", _ACT.RELU: "relu", _ACT.RELU6: "relu6"}
_LUT_OPS = {_OP.TANH: "tanh", _OP.LOGISTIC: "sigmoid"}


@dataclass(frozen=True)
class TFLiteMLP:
    """A ``.tflite`` MLP as nnref reads it: the model and where its tensors are.

    Attributes
    ----------
    model : QuantizedMLP
        The integer model (fixed-point requantization, single rounding: TensorFlow
        Lite's integer-only arithmetic, which LiteRT's reference kernels, computing in
        double, match except within ~1e-8 of a tie; profile ``"float64"`` of
        :mod:`nnref.quant.profiles` is theirs exactly).
    path : str
        The file read.
    input_tensor, output_tensor : int
        The graph's input and output tensor indices (float32 with QUANTIZE / DEQUANTIZE,
        int8 without).
    quantized_input_tensor : int
        The int8 tensor the first FULLY_CONNECTED reads.
    layer_tensors : tuple of (int, int)
        For each layer, the FULLY_CONNECTED's output tensor and the layer's output
        tensor (the TANH / LOGISTIC output, or the same index without one).
    operators : tuple of str
        The operator names in execution order.
    """

    model: QuantizedMLP
    path: str
    input_tensor: int
    output_tensor: int
    quantized_input_tensor: int
    layer_tensors: tuple
    operators: tuple


def _op_name(code: int) -> str:
    """The schema's name of a builtin operator code."""
    return tflite.BUILTIN_OPCODE2NAME.get(code, f"builtin code {code}")


class _Graph:
    """Typed access to subgraph 0 of a parsed model, with errors naming tensors."""

    def __init__(self, path: str, data: bytes):
        self.path, self.data = path, data
        if len(data) < 8 or not tflite.Model.ModelBufferHasIdentifier(data, 0):
            raise ValueError(f"{path}: not a TensorFlow Lite model (no 'TFL3' FlatBuffer identifier "
                             f"in its first 8 bytes; got {data[:8]!r})")
        try:
            self.model = tflite.Model.GetRootAs(data, 0)
            n_sub = self.model.SubgraphsLength()
            self.sub = self.model.Subgraphs(0) if n_sub else None
        except Exception as exc:  # a corrupt FlatBuffer fails in many ways: name the file
            raise ValueError(f"{path}: unreadable TensorFlow Lite FlatBuffer ({exc})") from None
        if n_sub != 1:
            raise ValueError(f"{path}: expected one subgraph (an MLP), got {n_sub}")

    def op_code(self, op) -> int:
        """The builtin operator code (the larger of the two fields: schema v3a)."""
        code = self.model.OperatorCodes(op.OpcodeIndex())
        return max(code.BuiltinCode(), code.DeprecatedBuiltinCode())

    def tensor(self, index: int):
        """Tensor ``index`` of subgraph 0, checked in range."""
        if not 0 <= index < self.sub.TensorsLength():
            raise ValueError(f"{self.path}: tensor index {index} out of range")
        return self.sub.Tensors(index)

    def describe(self, index: int) -> str:
        """``tensor N 'name'`` for error messages."""
        t = self.tensor(index)
        return f"tensor {index} {t.Name().decode(errors='replace')!r}"

    def check_type(self, index: int, want: str, where: str) -> None:
        """Raise ValueError unless tensor ``index`` has TensorType ``want``."""
        got = _TYPE_NAMES.get(self.tensor(index).Type(), str(self.tensor(index).Type()))
        if got != want:
            raise ValueError(f"{self.path}: {where}: {self.describe(index)} has type {got}; "
                             f"nnref reads {want} here")

    def qparams(self, index: int):
        """``(scale float32, zero_point int64, quantized_dimension)`` of a tensor."""
        q = self.tensor(index).Quantization()
        if q is None or q.ScaleLength() == 0:
            raise ValueError(f"{self.path}: {self.describe(index)} has no quantization parameters")
        return (q.ScaleAsNumpy().astype(np.float32), q.ZeroPointAsNumpy().astype(np.int64),
                q.QuantizedDimension())

    def activation_qparams(self, index: int, where: str) -> QParams:
        """The per-tensor int8 QParams of an activation tensor."""
        self.check_type(index, "INT8", where)
        scale, zp, _ = self.qparams(index)
        if scale.shape != (1,) or zp.shape != (1,):
            raise ValueError(f"{self.path}: {where}: {self.describe(index)} is quantized per channel "
                             f"({scale.size} scales); nnref's activations are per tensor")
        return QParams(scale=scale[0], zero_point=np.int32(zp[0]), qmin=-128, qmax=127, bits=8,
                       signed=True)

    def constant(self, index: int, dtype, where: str) -> np.ndarray:
        """A constant tensor's data (little-endian, in the FlatBuffer or after it)."""
        t = self.tensor(index)
        buf = self.model.Buffers(t.Buffer())
        if buf.Offset() > 1:  # large models keep constants after the FlatBuffer
            raw = np.frombuffer(self.data, np.uint8, count=buf.Size(), offset=buf.Offset())
        else:
            raw = buf.DataAsNumpy() if buf.DataLength() else np.zeros(0, np.uint8)
        shape = tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        if raw.size != math.prod(shape) * np.dtype(dtype).itemsize:  # Python ints: no wrap-around
            raise ValueError(f"{self.path}: {where}: {self.describe(index)} should be a constant of "
                             f"shape {shape}, got a buffer of {raw.size} bytes")
        return np.frombuffer(raw.tobytes(), dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype).reshape(shape)


def _weights(g: _Graph, w_idx: int, b_idx: int, where: str):
    """``(w_q (in, out) int8, bias_q (out,) int32, w_qparams)`` of a FULLY_CONNECTED."""
    g.check_type(w_idx, "INT8", where + " weights")
    w = g.constant(w_idx, np.int8, where + " weights")
    if w.ndim != 2:
        raise ValueError(f"{g.path}: {where}: weights {g.describe(w_idx)} have shape {w.shape}; expected (out, in)")
    n = w.shape[0]
    scale, zp, axis = g.qparams(w_idx)
    if np.any(zp != 0):
        raise ValueError(f"{g.path}: {where}: weights {g.describe(w_idx)} have nonzero zero points; "
                         f"nnref's weights are symmetric (zero point 0, TensorFlow Lite's int8 spec)")
    if scale.size not in (1, n) or (scale.size == n > 1 and axis != 0):
        raise ValueError(f"{g.path}: {where}: weights {g.describe(w_idx)}: expected 1 scale or {n} along "
                         f"the output axis 0, got {scale.size} along axis {axis}")
    narrow = int(w.min()) >= -127
    per_tensor = scale.size == 1  # LiteRT: per channel only when there is more than one scale
    w_qp = QParams(scale=scale[0] if per_tensor else scale,
                   zero_point=np.int32(0) if per_tensor else np.zeros(n, np.int32),
                   qmin=-127 if narrow else -128, qmax=127, bits=8, signed=True,
                   axis=None if per_tensor else -1, scheme="symmetric", narrow_range=narrow)
    if b_idx < 0:
        bias = np.zeros(n, np.int32)
    else:
        g.check_type(b_idx, "INT32", where + " bias")
        bias = g.constant(b_idx, np.int32, where + " bias")
        if bias.shape != (n,):
            raise ValueError(f"{g.path}: {where}: bias {g.describe(b_idx)} has shape {bias.shape}; expected ({n},)")
    return np.ascontiguousarray(w.T), bias, w_qp


def _fused_activation(g: _Graph, op, where: str, out_qp: QParams) -> str:
    """The nnref activation of a FULLY_CONNECTED's fused activation (and its options checked)."""
    opts = op.BuiltinOptions()
    if opts is None:  # no options table: every field at its default (NONE)
        return "none"
    fc = tflite.FullyConnectedOptions()
    fc.Init(opts.Bytes, opts.Pos)
    code = fc.FusedActivationFunction()
    if code not in _FUSED:
        name = {v: k for k, v in vars(_ACT).items() if not k.startswith("_")}.get(code, code)
        raise ValueError(f"{g.path}: {where}: fused activation {name} is not supported "
                         f"(nnref reads NONE, RELU and RELU6)")
    if fc.WeightsFormat() != 0 or fc.AsymmetricQuantizeInputs():
        raise ValueError(f"{g.path}: {where}: shuffled weights or hybrid (asymmetric input) "
                         f"quantization are not supported")
    kind = _FUSED[code]
    if kind == "relu6":
        scale, zp = float(out_qp.scale), int(out_qp.zero_point)
        if activation_range("relu6", scale, zp) != activation_range("relu", scale, zp):
            raise ValueError(f"{g.path}: {where}: fused RELU6 clamps at "
                             f"{activation_range('relu6', scale, zp)} inside the int8 range: "
                             f"nnref's QuantizedLayer has no ReLU6 clamp (only ReLU's)")
        kind = "relu"  # the same clamp: the grid ends at or below 6
    return kind


def _layer(g: _Graph, ops: list, i: int, x_idx: int, in_qp: QParams):
    """Parse the FULLY_CONNECTED at ``ops[i]`` (and a TANH/LOGISTIC after it): returns
    ``(layer, next op index, fc output tensor, layer output tensor)``."""
    op, where = ops[i], f"operator {i} (FULLY_CONNECTED)"
    inputs = [int(v) for v in op.InputsAsNumpy()]
    if len(inputs) not in (2, 3) or inputs[0] != x_idx:
        raise ValueError(f"{g.path}: {where}: expected inputs (x, weights[, bias]) with x = the previous "
                         f"output tensor {x_idx}, got {inputs}")
    w_q, bias, w_qp = _weights(g, inputs[1], inputs[2] if len(inputs) == 3 else -1, where)
    fc_out = int(op.OutputsAsNumpy()[0])
    fc_qp = g.activation_qparams(fc_out, where + " output")
    act = _fused_activation(g, op, where, fc_qp)
    pre_qp, lut, out_qp, out_idx, nxt = None, None, fc_qp, fc_out, i + 1
    if nxt < len(ops) and g.op_code(ops[nxt]) in _LUT_OPS:
        code, where2 = g.op_code(ops[nxt]), f"operator {nxt} ({_op_name(g.op_code(ops[nxt]))})"
        if act != "none" or int(ops[nxt].InputsAsNumpy()[0]) != fc_out:
            raise ValueError(f"{g.path}: {where2}: expected to read the un-activated output of operator {i}")
        act, pre_qp = _LUT_OPS[code], fc_qp
        out_idx = int(ops[nxt].OutputsAsNumpy()[0])
        out_qp = g.activation_qparams(out_idx, where2 + " output")
        if out_qp != FIXED_OUTPUT_QPARAMS[act]:
            raise ValueError(f"{g.path}: {where2}: output grid {out_qp!r} differs from TensorFlow Lite's "
                             f"fixed {FIXED_OUTPUT_QPARAMS[act]!r}")
        lut = build_lut(act, pre_qp, out_qp)
        nxt += 1
    layer = QuantizedLayer(w_q, bias, w_qp, in_qp, out_qp, act, pre_qp, lut)
    return layer, nxt, fc_out, out_idx


def _check_supported(g: _Graph, ops: list) -> None:
    """Refuse the first operator outside :data:`SUPPORTED_OPERATORS`, by index and name."""
    for i, op in enumerate(ops):
        name = _op_name(g.op_code(op))
        if name not in SUPPORTED_OPERATORS:
            raise ValueError(f"{g.path}: operator {i} ({name}) is not supported; nnref reads "
                             f"{', '.join(SUPPORTED_OPERATORS)}")


def read_tflite(path) -> TFLiteMLP:
    """Read an int8 fully connected ``.tflite`` model and say where its tensors are.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.tflite`` file: one subgraph, the operator chain of the module docstring.

    Returns
    -------
    TFLiteMLP
        The :class:`~nnref.quant.QuantizedMLP` (``requantization="fixed_point"``,
        ``rounding="single"``: TensorFlow Lite's integer-only arithmetic, equal to LiteRT's
        reference kernels but within ~1e-8 of a tie) and the tensor indices
        :func:`nnref.interop.compare` reads.

    Raises
    ------
    TypeError
        ``path`` is not a path.
    FileNotFoundError
        No such file.
    ValueError
        Naming the file: a folder; not a ``.tflite`` FlatBuffer; more than one subgraph; an operator outside
        :data:`SUPPORTED_OPERATORS` (named with its index); a tensor of another type than
        nnref reads (int8 activations and weights, int32 bias, float32 graph input/output);
        per-channel activations; nonzero weight zero points; a fused activation other
        than NONE, RELU or RELU6 (and a RELU6 whose clamp falls inside the int8 range);
        operators that do not form one chain.
    """
    path, data = read_file_bytes(path, "path")
    try:
        return _read(_Graph(path, data))
    except (IndexError, struct.error, TypeError, AttributeError) as exc:  # offsets past the end
        raise ValueError(f"{path}: corrupt TensorFlow Lite FlatBuffer ({type(exc).__name__}: {exc})") from None
    except ValueError as exc:
        if str(exc).startswith(f"{path}: "):
            raise
        # A value the layer constructor refuses (a negative scale, a zero point out of
        # range, a buffer past the end): say which file holds it.
        raise ValueError(f"{path}: {exc}") from None


def _read(g: _Graph) -> TFLiteMLP:
    """The chain walk of :func:`read_tflite` on a parsed graph."""
    path = g.path
    ops = [g.sub.Operators(i) for i in range(g.sub.OperatorsLength())]
    _check_supported(g, ops)
    names = tuple(_op_name(g.op_code(op)) for op in ops)
    if "FULLY_CONNECTED" not in names:
        raise ValueError(f"{path}: no FULLY_CONNECTED operator (operators: {list(names)})")
    graph_in = int(g.sub.InputsAsNumpy()[0]) if g.sub.InputsLength() == 1 else None
    if graph_in is None:
        raise ValueError(f"{path}: expected one graph input, got {g.sub.InputsLength()}")
    i, x_idx = 0, graph_in
    if names[0] == "QUANTIZE":
        g.check_type(graph_in, "FLOAT32", "operator 0 (QUANTIZE) input")
        if int(ops[0].InputsAsNumpy()[0]) != graph_in:
            raise ValueError(f"{path}: operator 0 (QUANTIZE): expected to read the graph input")
        i, x_idx = 1, int(ops[0].OutputsAsNumpy()[0])
    q_in, in_qp = x_idx, g.activation_qparams(x_idx, "the first FULLY_CONNECTED's input")
    layers, tensors, first_qp = [], [], in_qp
    while i < len(ops) and names[i] == "FULLY_CONNECTED":
        layer, i, fc_out, x_idx = _layer(g, ops, i, x_idx, in_qp)
        layers.append(layer)
        tensors.append((fc_out, x_idx))
        in_qp = layer.out_qparams
    out_idx = x_idx
    if i < len(ops) and names[i] == "DEQUANTIZE" and int(ops[i].InputsAsNumpy()[0]) == x_idx:
        out_idx = int(ops[i].OutputsAsNumpy()[0])
        g.check_type(out_idx, "FLOAT32", f"operator {i} (DEQUANTIZE) output")
        i += 1
    if i != len(ops):
        raise ValueError(f"{path}: operator {i} ({names[i]}) does not continue the chain "
                         f"[QUANTIZE] FULLY_CONNECTED [TANH|LOGISTIC] ... [DEQUANTIZE]")
    if g.sub.OutputsLength() != 1 or int(g.sub.OutputsAsNumpy()[0]) != out_idx:
        raise ValueError(f"{path}: expected the graph output to be tensor {out_idx} (the last operator's)")
    return TFLiteMLP(QuantizedMLP(layers, first_qp), path, graph_in, out_idx, q_in, tuple(tensors), names)


def from_tflite(path) -> QuantizedMLP:
    """The :class:`~nnref.quant.QuantizedMLP` stored in an int8 ``.tflite`` file.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    QuantizedMLP
        ``read_tflite(path).model``: ``forward_int`` gives LiteRT's reference kernels'
        int8 outputs bit for bit on every digits image, every intermediate; they part only
        where ``acc * M`` lies within ~1e-8 of a tie, and there
        ``profile_forward(model, x_q, "float64")`` (:mod:`nnref.quant.profiles`) still
        does (both checked in ``tests/test_interop_tflite.py``).

    Raises
    ------
    TypeError
        ``path`` not a path.
    FileNotFoundError, ValueError
        See :func:`read_tflite`.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a file path, got {describe(path)}")
    return read_tflite(path).model
