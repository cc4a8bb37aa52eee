"""Quantization: parameters, observers, fake quantization, fixed-point arithmetic and
integer-only kernels.

Modules (one idea each):

- :mod:`~nnref.quant.qparams`: scale and zero point, schemes and TensorFlow Lite presets;
- :mod:`~nnref.quant.ops`: quantize, dequantize, fake quantization and its
  straight-through backward;
- :mod:`~nnref.quant.observers`: calibration observers (min-max, moving average,
  per channel, percentile, MSE search);
- :mod:`~nnref.quant.fixed_point`: TensorFlow Lite / gemmlowp fixed-point arithmetic;
- :mod:`~nnref.quant.kernels`: int8 x int8 -> int32 matmul, requantization, TFLite's
  FullyConnected and ONNX's QLinearMatMul.
"""

from .fixed_point import (
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)
from .kernels import (
    activation_range,
    exact_float_dtype,
    matmul_int32,
    matmul_int32_direct,
    matmul_int32_expanded,
    qlinear_matmul,
    quantized_linear,
    requantize,
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
    fake_quantize,
    fake_quantize_backward,
    fake_quantize_with_mask,
    quantize,
    round_half_away,
    round_half_even,
)
from .qparams import (
    SCHEMES,
    TFLITE_INT8_ACTIVATIONS,
    TFLITE_INT8_WEIGHTS,
    TFLITE_INT8_WEIGHTS_PER_TENSOR,
    QParams,
    QScheme,
    choose_qparams,
    get_scheme,
    qrange,
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
]
