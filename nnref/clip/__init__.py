"""Gradient clipping: by value, by norm, by global norm, adaptive (AGC), per example
(DP-SGD) and AutoClip, plus callable clippers for ``fit(..., grad_transform=...)``.

The package, by job:

* :mod:`nnref.clip.formulas`: each rule as a plain function, the arithmetic alone
  (``clip_grads_by_value``, ``clip_grad_by_norm``, ``clip_grads_by_global_norm``,
  ``adaptive_clip_grad``): what to read first;
* :mod:`nnref.clip.norms`: L2 and p-norms that stay right at the extremes of the
  floating-point range, and ``grad_norms`` (per-tensor and global L2 norms);
* :mod:`nnref.clip.functions`: the checked functions on dicts or lists of gradients
  (``global_norm``, ``clip_by_value``, ``clip_by_norm``, ``clip_by_global_norm``,
  ``adaptive_clip``, ``per_example_clip``);
* :mod:`nnref.clip.clippers`: ``Value``, ``Norm``, ``GlobalNorm``, ``Adaptive``,
  ``AutoClip``, whose ``clip`` method returns a ``ClipResult``.

Every name is available as ``nnref.clip.<name>``. Norms: ``||g||_p = (sum_j
|g_j|^p)^(1/p)`` and ``||g||_inf = max_j |g_j|``.
"""

from .clippers import Adaptive, AutoClip, Clipper, ClipResult, GlobalNorm, Norm, Value
from .formulas import adaptive_clip_grad, clip_grad_by_norm, clip_grads_by_global_norm, clip_grads_by_value
from .functions import (
    AGC_UNITS,
    NonFiniteNormError,
    adaptive_clip,
    clip_by_global_norm,
    clip_by_norm,
    clip_by_value,
    clip_coef,
    global_norm,
    per_example_clip,
    scale_grads,
    tensor_norms,
)
from .norms import GradNorms, global_l2_norm, grad_norms, l2_norm, p_norm

__all__ = [
    "clip_grads_by_value",
    "clip_grad_by_norm",
    "clip_grads_by_global_norm",
    "adaptive_clip_grad",
    "l2_norm",
    "p_norm",
    "global_l2_norm",
    "GradNorms",
    "grad_norms",
    "NonFiniteNormError",
    "AGC_UNITS",
    "tensor_norms",
    "global_norm",
    "clip_coef",
    "scale_grads",
    "clip_by_value",
    "clip_by_norm",
    "clip_by_global_norm",
    "adaptive_clip",
    "per_example_clip",
    "ClipResult",
    "Clipper",
    "Value",
    "Norm",
    "GlobalNorm",
    "Adaptive",
    "AutoClip",
]
