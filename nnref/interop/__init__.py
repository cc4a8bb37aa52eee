"""nnref as an engine's oracle: int8 models in from TensorFlow Lite and ONNX, out to ONNX,
and a layer-by-layer account of where an engine differs and why.

Needs the optional extra ``interop`` (``pip install nnref[interop]``: onnx, onnxruntime,
the ``tflite`` FlatBuffer parser and LiteRT's interpreter ``ai-edge-litert``); the rest
of nnref does not. The rounding profiles themselves are pure numpy, in
:mod:`nnref.quant.profiles`.

- :func:`from_tflite` / :func:`read_tflite`: an int8 ``.tflite`` MLP -> ``QuantizedMLP``;
- :func:`to_onnx`, :func:`from_onnx` / :func:`read_onnx`: to ONNX (QOperator or QDQ) and back;
- :func:`run_litert`, :func:`run_onnxruntime`: run an engine keeping its intermediates;
- :func:`compare`: where the engine's int8 values differ from nnref's, and which rounding
  profile explains them; ``python -m nnref compare MODEL --data digits`` prints it.
"""

import importlib.util

#: import name -> pip package of every dependency of the extra.
REQUIRED = {"onnx": "onnx", "onnxruntime": "onnxruntime", "tflite": "tflite", "ai_edge_litert": "ai-edge-litert"}
_missing = [pip for module, pip in REQUIRED.items() if importlib.util.find_spec(module) is None]
if _missing:
    raise ImportError(f"nnref.interop needs the optional extra: pip install nnref[interop] "
                      f"(missing: {', '.join(_missing)}; or pip install {' '.join(_missing)})")

from nnref.interop.compare import CompareReport, Mismatch, Stage, compare  # noqa: E402
from nnref.interop.engines import ENGINES, LITERT_PATHS, run_litert, run_onnxruntime  # noqa: E402
from nnref.interop.onnx_io import FORMATS, ONNXMLP, from_onnx, read_onnx, to_onnx  # noqa: E402
from nnref.interop.tflite_io import SUPPORTED_OPERATORS, TFLiteMLP, from_tflite, read_tflite  # noqa: E402

__all__ = [
    "REQUIRED", "from_tflite", "read_tflite", "TFLiteMLP", "SUPPORTED_OPERATORS",
    "to_onnx", "from_onnx", "read_onnx", "ONNXMLP", "FORMATS",
    "run_litert", "run_onnxruntime", "ENGINES", "LITERT_PATHS",
    "compare", "CompareReport", "Stage", "Mismatch",
]
