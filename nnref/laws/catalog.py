"""The exercises in course order: name, tutorial, nnref's implementation, laws.

``reference`` is nnref's plain formula function (``"module:attribute"``), imported on
first use: the arithmetic only, without the checks of the public API around it.
"""

from __future__ import annotations

from nnref.laws import beyond, clipping, compression, converter, integer, optimizers, quantization, training
from nnref.laws.core import Exercise

__all__ = ["EXERCISES"]

_T = [  # name, tutorial, reference, summary, laws
    ("linear_backward", "01", "nnref.layers", "dx, dW, db of y = x W + b", training.linear_backward_laws),
    ("relu_backward", "01", "nnref.layers", "dx = g [x > 0]", training.relu_backward_laws),
    ("leaky_relu_forward", "01", "nnref.layers", "y = x if x > 0 else alpha x", training.leaky_relu_forward_laws),
    ("leaky_relu_backward", "01", "nnref.layers", "dx = g if x > 0 else alpha g", training.leaky_relu_backward_laws),
    ("tanh_backward", "01", "nnref.layers", "dx = g (1 - y^2)", training.tanh_backward_laws),
    ("sigmoid_backward", "01", "nnref.layers", "dx = g y (1 - y)", training.sigmoid_backward_laws),
    ("cross_entropy_loss_and_grad", "01", "nnref.losses", "mean softmax cross-entropy and (p - y) / B",
     training.cross_entropy_laws),
    ("sgd_update", "02", "nnref.optim", "PyTorch SGD: momentum, dampening, Nesterov, weight decay",
     optimizers.sgd_laws),
    ("adam_update", "02", "nnref.optim", "PyTorch Adam at the parameter's own step", optimizers.adam_laws),
    ("clip_grads_by_value", "03", "nnref.clip", "clip every entry to [min, max]", clipping.clip_value_laws),
    ("clip_grad_by_norm", "03", "nnref.clip", "TensorFlow clip_by_norm", clipping.clip_norm_laws),
    ("clip_grads_by_global_norm", "03", "nnref.clip", "PyTorch clip_grad_norm_ (eps, clamp at 1)",
     clipping.clip_global_norm_laws),
    ("adaptive_clip_grad", "03", "nnref.clip", "AGC, unit by unit", clipping.agc_laws),
    ("affine_qparams", "04", "nnref.quant.qparams", "affine scale and zero point", quantization.affine_laws),
    ("symmetric_qparams", "04", "nnref.quant.qparams", "symmetric scale (TFLite and PyTorch)",
     quantization.symmetric_laws),
    ("quantize_affine", "04", "nnref.quant.ops", "clip(round(x / s) + z), both roundings", quantization.quantize_laws),
    ("dequantize_affine", "04", "nnref.quant.ops", "s (q - z) in float32", quantization.dequantize_laws),
    ("fake_quantize_affine_backward", "04", "nnref.quant.ops", "the straight-through estimator",
     quantization.ste_laws),
    ("quantize_bias", "05", "nnref.quant", "the int32 bias, as TFLite's converter computes it",
     converter.quantize_bias_laws),
    ("quantize_multiplier", "05", "nnref.quant.fixed_point", "M = m0 2^(shift - 31), TFLite's QuantizeMultiplier",
     converter.quantize_multiplier_laws),
    ("srdhm", "05", "nnref.quant.fixed_point", "saturating rounding doubling high multiply", integer.srdhm_laws),
    ("rdbpot", "05", "nnref.quant.fixed_point", "rounding divide by a power of two", integer.rdbpot_laws),
    ("mbqm_single", "05", "nnref.quant.fixed_point", "multiply by the quantized multiplier, one rounding",
     integer.mbqm_single_laws),
    ("mbqm_double", "05", "nnref.quant.fixed_point", "the same with two roundings (gemmlowp)",
     integer.mbqm_double_laws),
    ("matmul_centred", "05", "nnref.quant.matmul", "int32 matmul with zero points", integer.matmul_laws),
    ("requantize_fixed_point", "05", "nnref.quant.kernels", "int32 -> int8, integers only",
     integer.requantize_laws),
    ("linear_int8", "05", "nnref.quant.kernels", "the int8 Linear layer (TFLite FullyConnected)",
     integer.linear_int8_laws),
    ("qlinear_multiplier", "05", "nnref.quant.qlinear", "onnxruntime's float32 multiplier",
     integer.qlinear_multiplier_laws),
    ("requantize_float", "05", "nnref.quant.qlinear", "onnxruntime's float requantization",
     integer.requantize_float_laws),
    ("rectified_sigmoid", "08", "nnref.quant.adaround", "AdaRound's h(V), stretched and clipped",
     beyond.rectified_sigmoid_laws),
    ("adaround_regularizer", "08", "nnref.quant.adaround", "sum of 1 - |2h - 1|^beta",
     beyond.adaround_regularizer_laws),
    ("equalization_scales", "08", "nnref.quant.equalize", "cross-layer equalization's sqrt(r1 r2) / r2",
     beyond.equalization_scales_laws),
    ("lsq_grad", "08", "nnref.quant.lsq", "LSQ's gradients for the value and the step", beyond.lsq_grad_laws),
    ("pact_backward", "08", "nnref.quant.lsq", "PACT's gradients for the input and the clip", beyond.pact_backward_laws),
    ("bfloat16_bits", "09", "nnref.halfprec", "float32 bits rounded to bfloat16, nearest even",
     compression.bfloat16_bits_laws),
    ("stochastic_round_plain", "09", "nnref.halfprec", "unbiased rounding to a grid, given the uniforms",
     compression.stochastic_round_laws),
    ("loss_scale_update", "09", "nnref.halfprec", "PyTorch's dynamic loss scale, one step",
     compression.loss_scale_update_laws),
    ("magnitude_mask_plain", "10", "nnref.prune", "keep-mask without the n smallest |w|",
     compression.magnitude_mask_laws),
    ("centroid_grads", "10", "nnref.prune", "the shared values' gradient", compression.centroid_grads_laws),
    ("binary_weights", "11", "nnref.quant.binary", "XNOR-Net's sign and per-column scale",
     compression.binary_weights_laws),
    ("binary_weight_grad", "11", "nnref.quant.binary", "the latent weights' straight-through gradient",
     compression.binary_weight_grad_laws),
    ("xnor_dot", "11", "nnref.quant.binary", "a +-1 dot product by XOR and popcount", compression.xnor_dot_laws),
]

EXERCISES = tuple(Exercise(name, tut, f"{module}:{name}", summary, laws()) for name, tut, module, summary, laws in _T)
