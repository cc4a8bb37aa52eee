"""Quantization: parameters, observers, fake quantization, fixed-point arithmetic and
integer-only kernels.

Modules (one idea each; every formula is a plain function beside its checked version):

- :mod:`~nnref.quant.grid`: ``QParams`` (scale and zero point) and ``qrange``;
- :mod:`~nnref.quant.qparams`: choosing parameters (``affine_qparams``,
  ``symmetric_qparams``, ``choose_qparams``), schemes and TensorFlow Lite presets;
- :mod:`~nnref.quant.ops`: quantize, dequantize, fake quantization and its
  straight-through backward (``quantize_affine`` ...);
- :mod:`~nnref.quant.observers`: calibration observers (min-max, moving average,
  per channel, percentile, MSE search);
- :mod:`~nnref.quant.fixed_point`: TensorFlow Lite / gemmlowp fixed-point arithmetic
  (``srdhm``, ``rdbpot``, ``mbqm_single``, ``mbqm_double``);
- :mod:`~nnref.quant.matmul`: int8 x int8 -> int32 products (``matmul_centred``);
- :mod:`~nnref.quant.kernels`: requantization and TFLite's FullyConnected
  (``requantize_fixed_point``, ``linear_int8`` and its fast twin);
- :mod:`~nnref.quant.qlinear`: ONNX's QLinearMatMul (``requantize_float``);
- :mod:`~nnref.quant.checks`: the kernels' argument checks;
- :mod:`~nnref.quant.calibrate`: run a float model over data and observe every layer;
- :mod:`~nnref.quant.lut`: activations as int8 lookup tables;
- :mod:`~nnref.quant.qlayer`, :mod:`~nnref.quant.qmodel`, :mod:`~nnref.quant.qformat`:
  the integer-only layer and model at run time, and their file format;
- :mod:`~nnref.quant.convert`: a float MLP -> the integer-only :class:`QuantizedMLP`;
- :mod:`~nnref.quant.qat_layers`, :mod:`~nnref.quant.qat`: quantization-aware training
  (fake quantization + STE);
- :mod:`~nnref.quant.half`: float16 evaluation;
- :mod:`~nnref.quant.report`: quantization error, model sizes, int4 packing, tables.
"""

from .fixed_point import (
    mbqm_double,
    mbqm_single,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    rdbpot,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
    srdhm,
)
from .kernels import (
    activation_range,
    exact_float_dtype,
    linear_int8,
    linear_int8_fast,
    matmul_centred,
    matmul_int32,
    matmul_int32_direct,
    matmul_int32_expanded,
    qlinear_matmul,
    qlinear_multiplier,
    quantized_linear,
    requantize,
    requantize_fixed_point,
    requantize_float,
)
from .observers import (
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MSEObserver,
    MSESearch,
    Observer,
    PercentileObserver,
    PerChannelMinMaxObserver,
)
from .ops import (
    FakeQuantize,
    dequantize,
    dequantize_affine,
    fake_quantize,
    fake_quantize_affine,
    fake_quantize_affine_backward,
    fake_quantize_backward,
    fake_quantize_with_mask,
    quantize,
    quantize_affine,
    round_half_away,
    round_half_even,
)
from .qparams import (  # noqa: I001 - qparams/ops/observers before the modules using them
    SCHEMES,
    TFLITE_INT8_ACTIVATIONS,
    TFLITE_INT8_WEIGHTS,
    TFLITE_INT8_WEIGHTS_PER_TENSOR,
    QParams,
    QScheme,
    affine_qparams,
    choose_qparams,
    get_scheme,
    qrange,
    symmetric_qparams,
    symmetric_zero_point,
)

__all__ = [
    "QParams", "QScheme", "qrange", "choose_qparams", "symmetric_zero_point", "get_scheme",
    "SCHEMES", "TFLITE_INT8_WEIGHTS", "TFLITE_INT8_WEIGHTS_PER_TENSOR", "TFLITE_INT8_ACTIVATIONS",
    "round_half_even", "round_half_away", "quantize", "dequantize", "fake_quantize",
    "fake_quantize_with_mask", "fake_quantize_backward", "FakeQuantize",
    "Observer", "MinMaxObserver", "MovingAverageMinMaxObserver", "PerChannelMinMaxObserver",
    "PercentileObserver", "MSEObserver", "MSESearch",
    "quantize_multiplier", "saturating_rounding_doubling_high_mul", "rounding_divide_by_pot",
    "multiply_by_quantized_multiplier",
    "matmul_int32", "matmul_int32_direct", "matmul_int32_expanded", "exact_float_dtype",
    "requantize", "activation_range", "quantized_linear", "qlinear_matmul",
    # the plain formulas
    "affine_qparams", "symmetric_qparams", "quantize_affine", "dequantize_affine",
    "fake_quantize_affine", "fake_quantize_affine_backward", "srdhm", "rdbpot", "mbqm_single",
    "mbqm_double", "matmul_centred", "requantize_fixed_point", "linear_int8", "linear_int8_fast",
    "qlinear_multiplier", "requantize_float",
]

# Modules built on the ones above (imported last: they import them).
from .calibrate import Calibration, calibrate  # noqa: E402
from .convert import (  # noqa: E402
    QuantizedLayer,
    QuantizedMLP,
    build_lut,
    quantize_bias,
    quantize_model,
    quantize_weights,
)
from .half import float16_accuracy, float16_forward, float16_predict, to_float16  # noqa: E402
from .qat import ActivationFakeQuantize, QATLinear, QATMLP, prepare_qat  # noqa: E402
from .report import (  # noqa: E402
    format_table,
    model_size_bytes,
    pack_int4,
    quantization_error,
    unpack_int4,
    weight_error_report,
    activation_error_report,
)

__all__ += [
    "Calibration", "calibrate",
    "QuantizedLayer", "QuantizedMLP", "build_lut", "quantize_bias", "quantize_model", "quantize_weights",
    "to_float16", "float16_forward", "float16_predict", "float16_accuracy",
    "prepare_qat", "QATMLP", "QATLinear", "ActivationFakeQuantize",
    "quantization_error", "weight_error_report", "activation_error_report", "model_size_bytes",
    "pack_int4", "unpack_int4", "format_table",
]
