"""A :class:`~nnref.quant.QuantizedMLP` to ONNX and back.

:func:`to_onnx` writes one of two standard encodings of the same integer model (opset 13,
the default ``ai.onnx`` domain only):

- ``format="qoperator"``: ``QuantizeLinear`` on the float input, then per layer one
  ``QLinearConv`` with a 1x1 kernel (weights ``(N, K, 1, 1)`` int8, per-channel or
  per-tensor scales, zero point 0, and the int32 bias ``B``), then ``DequantizeLinear``.
  ``QLinearMatMul`` has no bias input, and adding the bias after it would requantize
  twice; ``QLinearConv`` adds ``B`` to the int32 accumulator before its one float
  requantization, which is the layer's arithmetic. Activations sit at ``(B, K, 1, 1)``
  between a ``Reshape`` of the float input and one of the float output.
- ``format="qdq"``: float operators between ``DequantizeLinear`` / ``QuantizeLinear`` pairs
  (``Conv`` on dequantized int8 weights and int32 bias); onnxruntime's graph optimizer
  fuses each ``DequantizeLinear -> Conv -> QuantizeLinear`` into the same
  ``QLinearConv`` (the default optimization level), so the integers are the same.

In both, a ReLU whose clamp is narrower than the int8 range is an int8 ``Clip``, and a
tanh / sigmoid / leaky ReLU table is a ``Gather`` from its 256 entries indexed by the
int8 value cast to int32 (negative indices count from the end, so the table is stored
in the unsigned byte order TensorFlow Lite uses). onnxruntime requantizes in float32,
ties to even (``QLinearConv`` through MLAS), so the file run by onnxruntime computes
nnref's ``requantization="float"`` path bit for bit (profile ``"float32"`` of
:mod:`nnref.quant.profiles`). ``metadata_props`` keep what ONNX has no field for (the
weight bit width and range, the activation names), so :func:`from_onnx` gives back the
same parameters.

:func:`read_onnx` also reads onnxruntime's own static quantization of an MLP
(``quantize_static`` with int8 activations and weights): QOperator files, where each
Linear layer is ``com.microsoft.QGemm`` with the int32 bias (bit for bit nnref's float
path, as QLinearConv), and QDQ files with ``Gemm`` between DequantizeLinear and
QuantizeLinear. Its ReLUs are absent from the file (folded into the output grid, zero
point -128), so those layers read as ``activation="none"``: the same clamp.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from nnref._checks import describe
from nnref._files import as_path, atomic_write
from nnref.quant import QParams, QuantizedLayer, QuantizedMLP
from nnref.quant.checks import check_choice
from nnref.quant.qlayer import REQUANTIZATIONS

__all__ = ["FORMATS", "ONNXMLP", "to_onnx", "read_onnx", "from_onnx"]

FORMATS = ("qoperator", "qdq")
OPSET = 13
_META = "nnref."


def _act_qp(scale, zp) -> QParams:
    return QParams(scale=np.float32(scale), zero_point=np.int32(zp), qmin=-128, qmax=127, bits=8, signed=True)


class _Builder:
    """Collects nodes and initializers with unique, readable names."""

    def __init__(self):
        self.nodes, self.inits = [], []

    def const(self, name: str, value: np.ndarray) -> str:
        """Add an initializer; return its name."""
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list, output: str, **attrs) -> str:
        """Add a node named after its one output; return the output's name."""
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def grid(self, prefix: str, qp: QParams) -> list[str]:
        """A per-tensor grid as a float32 scale and an int8 zero point initializer."""
        return [self.const(prefix + ".scale", np.float32(qp.scale)),
                self.const(prefix + ".zero_point", np.int8(qp.zero_point))]


def _weight_grid(b: _Builder, p: str, layer: QuantizedLayer) -> list[str]:
    w_qp = layer.w_qparams
    scale = np.asarray(w_qp.scale, np.float32)
    return [b.const(p + "w_q", layer.w_q.T.reshape(layer.out_features, layer.in_features, 1, 1)),
            b.const(p + "w.scale", scale), b.const(p + "w.zero_point", np.zeros(scale.shape, np.int8))]


def _activation_nodes(b: _Builder, p: str, layer: QuantizedLayer, v: str, fmt: str) -> str:
    """The clamp (if narrower than int8) and the table (if any) after a requantized ``v``."""
    if (layer.act_min, layer.act_max) != (-128, 127):
        v = b.node("Clip", [v, b.const(p + "act_min", np.int8(layer.act_min)),
                            b.const(p + "act_max", np.int8(layer.act_max))], p + "clamped")
    if layer.lut is not None:
        table = np.roll(layer.lut, -128)  # index q (negative from the end) -> lut[q + 128]
        idx = b.node("Cast", [v], p + "index", to=TensorProto.INT32)
        v = b.node("Gather", [b.const(p + "table", table), idx], p + "output", axis=0)
    return v


def _layer_nodes(b: _Builder, i: int, layer: QuantizedLayer, x: str, x_grid: list, fmt: str) -> str:
    p = f"layer{i}."
    lin_grid = b.grid(p + "requantized", layer.linear_qparams)
    w, ws, wz = _weight_grid(b, p, layer)
    bias = b.const(p + "bias_q", layer.bias_q)
    if fmt == "qoperator":
        v = b.node("QLinearConv", [x, *x_grid, w, ws, wz, *lin_grid, bias], p + "requantized")
    else:
        xf = b.node("DequantizeLinear", [x, *x_grid], p + "x_float")
        wf = b.node("DequantizeLinear", [w, ws, wz], p + "w_float", axis=0)
        bias_scale = np.asarray(layer.in_qparams.scale * layer.w_qparams.scale, np.float32)  # float32 product
        bs = b.const(p + "bias.scale", bias_scale)
        bf = b.node("DequantizeLinear", [bias, bs, b.const(p + "bias.zero_point", np.zeros(bias_scale.shape, np.int32))],
                    p + "bias_float", axis=0)
        y = b.node("Conv", [xf, wf, bf], p + "conv")
        v = b.node("QuantizeLinear", [y, *lin_grid], p + "requantized")
    return _activation_nodes(b, p, layer, v, fmt)


def _metadata(model: QuantizedMLP) -> dict[str, str]:
    meta = {_META + "format": "QuantizedMLP", _META + "num_layers": str(len(model.layers))}
    for i, layer in enumerate(model.layers):
        w = layer.w_qparams
        meta[f"{_META}layer{i}.activation"] = layer.activation
        meta[f"{_META}layer{i}.weight_bits"] = str(w.bits)
        meta[f"{_META}layer{i}.weight_narrow_range"] = str(int(w.narrow_range))
        if layer.alpha is not None:
            meta[f"{_META}layer{i}.alpha"] = repr(layer.alpha)
    return meta


def to_onnx(qmodel: QuantizedMLP, path, format: str = "qoperator") -> None:
    """Write ``qmodel`` as an ONNX model that onnxruntime runs bit for bit as nnref's
    ``requantization="float"`` path.

    Parameters
    ----------
    qmodel : QuantizedMLP
        Any nnref integer model (its requantization setting does not matter: ONNX's is
        float32; see the module docstring for the graph).
    path : str or os.PathLike
        The ``.onnx`` file to write.
    format : {"qoperator", "qdq"}
        QOperator (``QLinearConv``) or QDQ (``DequantizeLinear``/``Conv``/``QuantizeLinear``).

    Returns
    -------
    None

    Raises
    ------
    TypeError
        ``qmodel`` not a QuantizedMLP; ``path`` not a path.
    ValueError
        An unknown format.
    OSError
        The file cannot be written; it is replaced atomically
        (:func:`nnref._files.atomic_write`), so a failed write leaves any previous file.
    """
    if not isinstance(qmodel, QuantizedMLP):
        raise TypeError(f"qmodel: expected a QuantizedMLP, got {describe(qmodel)}")
    path = as_path(path, "path")
    if format not in FORMATS:
        raise ValueError(f"format: expected one of {FORMATS}, got {format!r}")
    b = _Builder()
    x_grid = b.grid("input", qmodel.input_qparams)
    x4 = b.node("Reshape", ["x", b.const("input.shape", np.array([-1, qmodel.in_features, 1, 1], np.int64))], "x_4d")
    v = b.node("QuantizeLinear", [x4, *x_grid], "x_q")
    for i, layer in enumerate(qmodel.layers):
        v = _layer_nodes(b, i, layer, v, x_grid, format)
        x_grid = b.grid(f"layer{i}.output", layer.out_qparams)
    y = b.node("DequantizeLinear", [v, *x_grid], "logits_4d")
    b.node("Reshape", [y, b.const("output.shape", np.array([-1, qmodel.n_outputs], np.int64))], "logits")
    graph = helper.make_graph(
        b.nodes, "nnref_quantized_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", qmodel.in_features])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", qmodel.n_outputs])], b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="nnref")
    helper.set_model_props(model, _metadata(qmodel))
    onnx.checker.check_model(model)
    content = model.SerializeToString()
    atomic_write(path, lambda f: f.write(content))


@dataclass(frozen=True)
class ONNXMLP:
    """An ONNX MLP as nnref reads it: the model and the names of its values.

    Attributes
    ----------
    model : QuantizedMLP
        The integer model (``requantization`` as asked of :func:`read_onnx`).
    path : str
    input_name, output_name : str
        The graph's float input and output.
    quantized_input_name : str
        The int8 input of the first layer.
    layer_names : tuple of (str, str)
        Per layer, the requantized int8 value and the layer's output (after the clamp
        and table; the same name without them).
    """

    model: QuantizedMLP
    path: str
    input_name: str
    output_name: str
    quantized_input_name: str
    layer_names: tuple


_ONNX_OPS = ("QuantizeLinear", "DequantizeLinear", "Reshape", "QLinearConv", "Conv", "Gemm", "Clip", "Cast", "Gather")
#: Operators of onnxruntime's own domain that read as nnref layers (its static quantization
#: writes a Linear layer as QGemm, with the int32 bias and one float requantization).
_MS_OPS = ("QGemm",)


def _kn(i: int, node, w: np.ndarray, r) -> np.ndarray:
    """Weights as (K, N): from a 1x1 convolution's (N, K, 1, 1) or a Gemm's B (transB aware)."""
    if node.op_type in ("QLinearConv", "Conv"):
        if w.ndim != 4 or w.shape[2:] != (1, 1):
            r.fail(i, node, f"expected 1x1 weights (N, K, 1, 1), got {describe(w)}")
        return w[:, :, 0, 0].T
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0 or w.ndim != 2:
        r.fail(i, node, f"expected Gemm(x, B, C) with transA=0, alpha=beta=1 and 2-D B, got {attrs}")
    return w.T if attrs.get("transB", 0) else w


class _Reader:
    """Walks the node chain of a graph :func:`to_onnx` wrote, layer by layer."""

    def __init__(self, path: str, model: onnx.ModelProto):
        self.path, self.graph = path, model.graph
        self.inits = {t.name: numpy_helper.to_array(t) for t in self.graph.initializer}
        self.meta = {p.key: p.value for p in model.metadata_props}
        self.consts = {}  # DequantizeLinear of an initializer: name -> (q, scale, zero point)
        self.layers, self.names, self.pending = [], [], None
        self.grid = None  # the int8 grid of the current value

    def fail(self, i: int, node, why: str):
        """Raise ValueError naming the file, the node index, its operator and name."""
        raise ValueError(f"{self.path}: node {i} ({node.op_type} {node.name!r}): {why}")

    def const(self, i: int, node, name: str) -> np.ndarray:
        """The initializer ``name`` (a node input that must be constant)."""
        if name not in self.inits:
            self.fail(i, node, f"expected input {name!r} to be a constant (an initializer)")
        return self.inits[name]

    def read_grid(self, i: int, node, s: str, z: str):
        """A per-tensor int8 activation grid from a scale and a zero point input."""
        scale, zp = self.const(i, node, s), self.const(i, node, z)
        if zp.dtype != np.int8 or scale.dtype != np.float32 or scale.shape != () or zp.shape != ():
            self.fail(i, node, f"expected a per-tensor float32 scale and int8 zero point, got "
                               f"{describe(scale)} and {describe(zp)} (nnref's activations are int8 per tensor)")
        return _act_qp(scale, zp)

    def start_layer(self, i, node, in_qp, w, ws, wz, lin_qp, bias):
        """Finish the previous layer (its output grid is ``in_qp``) and open a new one with
        weights ``w`` (K, N)."""
        if w.dtype != np.int8 or w.ndim != 2 or np.any(wz != 0):
            self.fail(i, node, f"expected int8 weights with zero point 0, got {describe(w)} "
                               f"(zero points {np.unique(wz).tolist()[:4]})")
        if bias.dtype != np.int32:
            self.fail(i, node, f"expected an int32 bias, got {describe(bias)}")
        if in_qp != self.grid and (self.pending is None or self.pending["lut"] is None):
            self.fail(i, node, "its input grid differs from the previous output's")
        self.finish_layer(i, node, in_qp)
        self.pending = dict(w=np.ascontiguousarray(w), ws=ws, bias=bias, in_qp=in_qp,
                            lin_qp=lin_qp, act=(-128, 127), lut=None, req=node.output[0])
        self.grid = lin_qp

    def finish_layer(self, i, node, out_qp):
        """Build the open layer as a QuantizedLayer with output grid ``out_qp``."""
        if self.pending is None:
            return
        p, n = self.pending, len(self.layers)
        self.layers.append(_make_layer(self, n, p, out_qp))
        self.names.append((p["req"], p.get("out", p["req"])))
        self.pending = None


def _make_layer(r: _Reader, n: int, p: dict, out_qp: QParams) -> QuantizedLayer:
    """A QuantizedLayer from a parsed layer ``p`` whose output grid is ``out_qp``."""
    meta = lambda key, default: r.meta.get(f"{_META}layer{n}.{key}", default)  # noqa: E731
    bits = int(meta("weight_bits", "8"))
    narrow = bool(int(meta("weight_narrow_range", str(int(int(p["w"].min()) > -2 ** (bits - 1))))))
    ws = np.asarray(p["ws"], np.float32)
    per_channel = ws.ndim == 1
    qmin = -(2 ** (bits - 1)) + int(narrow)
    w_qp = QParams(scale=ws if per_channel else ws.reshape(()), zero_point=np.zeros(ws.shape, np.int32).reshape(ws.shape),
                   qmin=qmin, qmax=2 ** (bits - 1) - 1, bits=bits, signed=True, axis=-1 if per_channel else None,
                   scheme="symmetric", narrow_range=narrow)
    act = meta("activation", None)
    if p["lut"] is not None:
        lut = np.roll(p["lut"], 128)  # back to lut[q + 128]
        pre_qp = p["lin_qp"]
        act = act or {(1 / 128, 0): "tanh", (1 / 256, -128): "sigmoid"}.get(
            (float(out_qp.scale), int(out_qp.zero_point)))
        if act not in ("tanh", "sigmoid", "leaky_relu"):
            raise ValueError(f"{r.path}: layer {n}: a lookup table of unknown activation (no nnref metadata)")
        alpha = float(meta("alpha", "nan")) if act == "leaky_relu" else None
        return QuantizedLayer(p["w"], p["bias"], w_qp, p["in_qp"], out_qp, act, pre_qp, lut,
                              requantization=r.requantization, alpha=alpha)
    if out_qp != p["lin_qp"]:
        raise ValueError(f"{r.path}: layer {n}: its output grid {p['lin_qp']!r} differs from the grid "
                         f"the next node reads {out_qp!r}")
    act = act or ("none" if p["act"] == (-128, 127) else "relu")
    layer = QuantizedLayer(p["w"], p["bias"], w_qp, p["in_qp"], out_qp, act, requantization=r.requantization)
    if (layer.act_min, layer.act_max) != p["act"]:
        raise ValueError(f"{r.path}: layer {n}: the clamp {p['act']} is not the {act} clamp "
                         f"{(layer.act_min, layer.act_max)} of the output grid")
    return layer


def _walk(r: _Reader, i: int, node) -> None:
    """Advance the chain by one node (see the module docstring for the patterns)."""
    op, ins = node.op_type, list(node.input)
    if op == "DequantizeLinear" and ins[0] in r.inits:
        r.consts[node.output[0]] = tuple(r.const(i, node, n) for n in ins[:3])
        return
    if ins[1 if op == "Gather" else 0] != r.cur:
        r.fail(i, node, f"expected to read {r.cur!r} (the chain QuantizeLinear -> layers -> DequantizeLinear)")
    if op == "Reshape":
        pass
    elif op == "QuantizeLinear" and r.grid is None:
        r.grid, r.x_q = r.read_grid(i, node, ins[1], ins[2]), node.output[0]
    elif op in ("QLinearConv", "QGemm"):
        if len(ins) != 9 or not ins[6 if op == "QGemm" else 8]:
            r.fail(i, node, "expected 9 inputs, with the int32 bias")
        order = (3, 4, 5, 8, 6, 7) if op == "QLinearConv" else (3, 4, 5, 6, 7, 8)  # w, scale, zp, bias, y grid
        w, ws, wz, bias = (r.const(i, node, ins[k]) for k in order[:4])
        r.start_layer(i, node, r.read_grid(i, node, ins[1], ins[2]), _kn(i, node, w, r), ws, wz,
                      r.read_grid(i, node, ins[order[4]], ins[order[5]]), bias)
    elif op == "DequantizeLinear":
        r.dq_grid = r.read_grid(i, node, ins[1], ins[2])
    elif op in ("Conv", "Gemm"):
        if len(ins) != 3 or ins[1] not in r.consts or ins[2] not in r.consts:
            r.fail(i, node, f"expected {op}(x, DequantizeLinear(int8 w), DequantizeLinear(int32 bias))")
        (w, ws, wz), bias = r.consts[ins[1]], r.consts[ins[2]][0]
        r.conv = (_kn(i, node, w, r), ws, wz, bias)
    elif op == "QuantizeLinear":
        w, ws, wz, bias = r.conv
        r.start_layer(i, node, r.dq_grid, w, ws, wz, r.read_grid(i, node, ins[1], ins[2]), bias)
    elif op == "Clip" and r.pending is not None:
        r.pending["act"] = (int(r.const(i, node, ins[1])), int(r.const(i, node, ins[2])))
        r.pending["out"] = node.output[0]
    elif op == "Cast" and r.pending is not None:
        pass
    elif op == "Gather" and r.pending is not None:
        table = r.const(i, node, ins[0])
        if table.dtype != np.int8 or table.shape != (256,):
            r.fail(i, node, f"expected a (256,) int8 table, got {describe(table)}")
        r.pending["lut"], r.pending["out"] = table, node.output[0]
    else:
        r.fail(i, node, "unexpected here")
    r.cur = node.output[0]


def read_onnx(path, requantization: str = "float") -> ONNXMLP:
    """Read an ONNX MLP written by :func:`to_onnx` (either format) or by onnxruntime's
    ``quantize_static`` (QGemm, or QDQ around Gemm; see the module docstring).

    Parameters
    ----------
    path : str or os.PathLike
    requantization : {"float", "fixed_point"}
        The :class:`~nnref.quant.QuantizedMLP`'s requantization: ``"float"`` (default)
        is what onnxruntime computes on this graph.

    Returns
    -------
    ONNXMLP

    Raises
    ------
    TypeError
        ``path`` is not a path.
    FileNotFoundError
        No such file.
    ValueError
        An unknown ``requantization``; naming the file: not an ONNX model (or a damaged
        one); initializers in external files; an operator outside the ``ai.onnx`` set
        :func:`to_onnx` writes (named with its node index); uint8 or per-channel
        activations; weights that are not int8 with zero point 0; a chain that is not the
        one :func:`to_onnx` writes.
    """
    path = os.fspath(as_path(path, "path"))
    check_choice(requantization, "requantization", REQUANTIZATIONS)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        # No external data: nnref's files are self-contained, and a tensor stored
        # elsewhere would have the reader open other files.
        model = onnx.load(path, load_external_data=False)
    except Exception as exc:  # protobuf raises several types for a foreign file
        raise ValueError(f"{path}: not an ONNX model ({type(exc).__name__}: {exc})") from None
    try:
        return _read_graph(path, model, requantization)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        if isinstance(exc, ValueError) and str(exc).startswith(f"{path}: "):
            raise
        # A damaged value deep in the graph (an attribute, a shape, a grid the layer
        # refuses): say which file holds it.
        raise ValueError(f"{path}: corrupt or unsupported ONNX model ({type(exc).__name__}: {exc})") from None


def _read_graph(path: str, model: onnx.ModelProto, requantization: str) -> ONNXMLP:
    """The chain walk of :func:`read_onnx` on a loaded model."""
    g = model.graph
    external = [t.name for t in g.initializer if t.data_location == TensorProto.EXTERNAL]
    if external:
        raise ValueError(f"{path}: initializers {external[:4]} are stored in external files; "
                         f"nnref reads self-contained ONNX files")
    if len(g.input) != 1 or len(g.output) != 1 or not g.node:
        raise ValueError(f"{path}: expected one input, one output and some nodes, got "
                         f"{len(g.input)} inputs, {len(g.output)} outputs, {len(g.node)} nodes")
    r = _Reader(path, model)
    r.requantization, r.cur, r.x_q = requantization, g.input[0].name, None
    for i, node in enumerate(g.node):
        standard = node.domain in ("", "ai.onnx") and node.op_type in _ONNX_OPS
        if not (standard or (node.domain == "com.microsoft" and node.op_type in _MS_OPS)):
            r.fail(i, node, f"operator {node.domain + '.' if node.domain else ''}{node.op_type} is not "
                            f"supported; nnref reads {', '.join(_ONNX_OPS)} and com.microsoft.QGemm")
        _walk(r, i, node)
    if r.pending is None or not hasattr(r, "dq_grid") or r.cur != g.output[0].name:
        raise ValueError(f"{path}: expected QuantizeLinear, layers, then DequantizeLinear and the graph output")
    r.finish_layer(len(g.node), g.node[-1], r.dq_grid)
    qmodel = QuantizedMLP(r.layers, r.layers[0].in_qparams)
    return ONNXMLP(qmodel, path, g.input[0].name, g.output[0].name, r.x_q, tuple(r.names))


def from_onnx(path, requantization: str = "float") -> QuantizedMLP:
    """The :class:`~nnref.quant.QuantizedMLP` of an ONNX file written by :func:`to_onnx`.

    Parameters
    ----------
    path : str or os.PathLike
    requantization : {"float", "fixed_point"}
        See :func:`read_onnx`.

    Returns
    -------
    QuantizedMLP
        ``read_onnx(path, requantization).model``: run by nnref it equals onnxruntime on
        ``path`` bit for bit; ``from_onnx`` of ``to_onnx(m)`` has ``m``'s weights, biases,
        grids, activations and tables exactly.

    Raises
    ------
    TypeError
        ``path`` not a path.
    FileNotFoundError, ValueError
        See :func:`read_onnx`.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a file path, got {describe(path)}")
    return read_onnx(path, requantization).model
