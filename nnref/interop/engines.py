"""Run a model on an engine and keep its intermediate tensors.

- **LiteRT** (``ai-edge-litert``): three kernel sets, chosen with the interpreter's op
  resolver: ``"litert_reference"`` (``BUILTIN_REF``: the reference kernels),
  ``"litert_optimized"`` (``BUILTIN_WITHOUT_DEFAULT_DELEGATES``: the optimized kernels,
  no delegate) and ``"litert_default"`` (``BUILTIN``: the default path, where the XNNPACK
  delegate takes the whole graph). ``experimental_preserve_all_tensors`` keeps every
  intermediate tensor for the first two. A delegate computes its partition internally
  and hands back only the graph's outputs, so on the default path each wanted tensor is
  made *the* graph output of a copy of the model (the one int32 of the subgraph's
  ``outputs`` vector rewritten in memory) and the model is run once per tensor: the
  delegate then has to produce exactly that tensor, with the same kernels.
- **onnxruntime**: every intermediate value is added to the graph's outputs (a copy of
  the model, in memory), so one run returns them all.
"""

from __future__ import annotations

import os
import struct

import numpy as np
import onnx
import onnxruntime as ort
import tflite
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from nnref._checks import as_float_array, as_int_array, describe
from nnref._files import as_path, read_file_bytes

__all__ = ["LITERT_PATHS", "ENGINES", "check_engine_input", "run_litert", "run_onnxruntime"]

#: LiteRT kernel sets by name: (op resolver, whether intermediates are observable).
LITERT_PATHS = {
    "litert_reference": (OpResolverType.BUILTIN_REF, True),
    "litert_optimized": (OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES, True),
    "litert_default": (OpResolverType.BUILTIN, False),
}
#: Every engine path :func:`nnref.interop.compare` runs.
ENGINES = (*LITERT_PATHS, "onnxruntime")


def _with_output(data: bytes, tensor: int) -> bytes:
    """A copy of the model ``data`` whose (single) graph output is tensor ``tensor``."""
    sub = tflite.Model.GetRootAs(data, 0).Subgraphs(0)
    if sub.OutputsLength() != 1:
        raise ValueError(f"expected one graph output to redirect, got {sub.OutputsLength()}")
    pos = sub._tab.Vector(sub._tab.Offset(8))  # SubGraph.outputs: field 2, vtable slot 8
    patched = bytearray(data)
    patched[pos:pos + 4] = struct.pack("<i", tensor)
    return bytes(patched)


def check_engine_input(x, dtype, features: int) -> np.ndarray:
    """``x`` as the engine's input of ``dtype``, ``(B, features)``, without a lossy cast.

    Parameters
    ----------
    x : array_like
        The input.
    dtype : numpy dtype
        The model's input type: float32, or an integer type (int8) for a model without a
        QUANTIZE.
    features : int
        The input width the model expects.

    Returns
    -------
    numpy.ndarray
        ``(B, features)`` of ``dtype``.

    Raises
    ------
    TypeError
        A non-numeric ``x``; floats for an integer input.
    ValueError
        A shape other than ``(B, features)`` with ``B >= 1``; NaN or infinity; values
        beyond the input type's range (a cast would make them infinite or wrap them).
    """
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        x = as_int_array(x, "x")
    else:
        x = as_float_array(x, "x", finite=True)
    if x.ndim != 2 or x.shape[1] != features or x.shape[0] == 0:
        raise ValueError(f"x: expected shape (B, {features}) with B >= 1, got {describe(x)}")
    info = np.iinfo(dtype) if dtype.kind in "iu" else np.finfo(dtype)
    lo, hi = (x.min(), x.max()) if x.size else (0, 0)
    if lo < info.min or hi > info.max:
        raise ValueError(f"x: expected values within the model's {dtype} input range [{info.min}, {info.max}], "
                         f"got values in [{lo}, {hi}]")
    return x.astype(dtype, copy=False)


def _invoke(content: bytes, resolver, preserve: bool, x: np.ndarray) -> Interpreter:
    """An interpreter that has run ``x`` (checked against the model's input)."""
    it = Interpreter(model_content=content, experimental_op_resolver_type=resolver,
                     experimental_preserve_all_tensors=preserve, num_threads=1)
    inp = it.get_input_details()[0]
    x = check_engine_input(x, inp["dtype"], int(inp["shape"][-1]))
    it.resize_tensor_input(inp["index"], list(x.shape))
    it.allocate_tensors()
    it.set_tensor(inp["index"], x)
    it.invoke()
    return it


def _check_tensors(tensors, n: int) -> list[int]:
    """``tensors`` as a list of tensor indices in ``[0, n)``."""
    if isinstance(tensors, (str, bytes)) or not isinstance(tensors, (list, tuple, range, np.ndarray)):
        raise TypeError(f"tensors: expected a sequence of tensor indices, got {describe(tensors)}")
    out = []
    for t in tensors:
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)):
            raise TypeError(f"tensors: expected integer tensor indices, got {describe(t)}")
        if not 0 <= t < n:
            raise ValueError(f"tensors: expected indices in [0, {n - 1}] (the model's tensors), got {int(t)}")
        out.append(int(t))
    return out


def run_litert(path, x, engine: str = "litert_reference", tensors=()) -> dict[int, np.ndarray]:
    """Run a ``.tflite`` model on LiteRT and return its tensors by index.

    Parameters
    ----------
    path : str or os.PathLike
        The model (one input of shape ``(batch, features)``; the batch is resized to ``x``'s).
    x : array_like, shape (B, features)
        The input, cast to the input tensor's dtype (float32 or int8).
    engine : {"litert_reference", "litert_optimized", "litert_default"}
        The kernel set (:data:`LITERT_PATHS`).
    tensors : sequence of int
        On ``"litert_default"``, the intermediate tensors to observe (one run each, see
        the module docstring); the other paths return every tensor anyway.

    Returns
    -------
    dict of int to numpy.ndarray
        The tensors LiteRT keeps, copied: all of them for the reference and optimized
        kernels; the input, the graph output and ``tensors`` on the default path.

    Raises
    ------
    TypeError
        ``path`` not a path; ``x`` not numeric (or floats for an int8 input);
        ``tensors`` not a sequence of ints.
    FileNotFoundError
        No such file.
    ValueError
        An unknown engine; a file LiteRT cannot read (named); ``x`` of the wrong shape,
        not finite or beyond the input type's range; a tensor index out of range.
    """
    if engine not in LITERT_PATHS:
        raise ValueError(f"engine: expected one of {tuple(LITERT_PATHS)}, got {engine!r}")
    resolver, preserve = LITERT_PATHS[engine]
    path, data = read_file_bytes(path, "path")
    try:
        it = Interpreter(model_content=data, num_threads=1)
    except ValueError as exc:
        raise ValueError(f"{path}: LiteRT cannot read this model ({' '.join(str(exc).split())})") from None
    tensors = _check_tensors(tensors, len(it.get_tensor_details()))
    it = _invoke(data, resolver, preserve, x)
    if preserve:
        wanted = [t["index"] for t in it.get_tensor_details()]
    else:
        wanted = [it.get_input_details()[0]["index"]] + [d["index"] for d in it.get_output_details()]
    out = {}
    for idx in wanted:
        try:
            out[idx] = np.array(it.get_tensor(idx))
        except ValueError:  # a tensor without data (e.g. freed by the runtime)
            continue
    for idx in tensors if not preserve else ():
        if idx not in out:
            out[idx] = np.array(_invoke(_with_output(data, idx), resolver, False, x).get_tensor(idx))
    return out


def _with_all_outputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose graph outputs also list every node output."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    inferred = onnx.shape_inference.infer_shapes(model)
    known = {v.name: v for v in inferred.graph.value_info}
    present = {o.name for o in model.graph.output}
    for node in model.graph.node:
        for name in node.output:
            if name and name not in present:  # untyped when shape inference does not know the op
                model.graph.output.append(known.get(name, onnx.ValueInfoProto(name=name)))
                present.add(name)
    return model


def run_onnxruntime(path, x) -> dict[str, np.ndarray]:
    """Run an ONNX model on onnxruntime's CPU provider and return every value by name.

    Parameters
    ----------
    path : str or os.PathLike
        The model (one float32 input of shape ``(batch, features)``).
    x : array_like, shape (B, features)

    Returns
    -------
    dict of str to numpy.ndarray
        The input and every node output (each added as a graph output to a copy of the
        model in memory).

    Raises
    ------
    TypeError
        ``path`` not a path; ``x`` not numeric.
    FileNotFoundError
        No such file.
    ValueError
        A file that is not an ONNX model (named); ``x`` not ``(B, features)``, not
        finite or beyond float32.
    """
    path = os.fspath(as_path(path, "path"))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        model = _with_all_outputs(onnx.load(path, load_external_data=False))
    except Exception as exc:  # protobuf raises several types for a foreign file
        raise ValueError(f"{path}: not an ONNX model ({type(exc).__name__}: {exc})") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception types (Fail, InvalidGraph, ...)
        raise ValueError(f"{path}: onnxruntime cannot run this model ({' '.join(str(exc).split())})") from None
    name, shape = sess.get_inputs()[0].name, sess.get_inputs()[0].shape
    if len(shape) != 2 or not isinstance(shape[1], int):
        raise ValueError(f"{path}: expected one input of shape (batch, features), got {shape}")
    x = check_engine_input(x, np.float32, shape[1])
    names = [o.name for o in sess.get_outputs()]
    values = sess.run(names, {name: x})
    return {name: x, **dict(zip(names, values))}
