"""Activations as int8 -> int8 lookup tables (TensorFlow Lite's TANH and LOGISTIC kernels).

A smooth activation between two int8 grids has only 256 possible inputs, so an integer
runtime evaluates it once per input value at conversion time and looks the result up at
run time. :func:`build_lut` builds that table; :data:`FIXED_OUTPUT_QPARAMS` are the output
grids TensorFlow Lite's int8 spec fixes for sigmoid and tanh.
"""

from __future__ import annotations

import numpy as np

from nnref._checks import check_nonnegative
from nnref.quant.checks import check_act_qparams, check_choice
from nnref.quant.ops import round_half_away
from nnref.quant.qparams import QParams

__all__ = ["LUT_ACTIVATIONS", "FIXED_OUTPUT_QPARAMS", "int8_qparams", "build_lut", "lookup"]

#: Activations applied as an int8 -> int8 lookup table after requantization.
LUT_ACTIVATIONS = ("tanh", "sigmoid", "leaky_relu")
_QMIN, _QMAX = -128, 127


def int8_qparams(scale: float, zero_point: int) -> QParams:
    """Per-tensor int8 activation parameters ``(scale, zero_point)``, q in [-128, 127].

    Parameters
    ----------
    scale : float
    zero_point : int

    Returns
    -------
    QParams
    """
    return QParams(scale=np.float32(scale), zero_point=np.int32(zero_point), qmin=_QMIN, qmax=_QMAX,
                   bits=8, signed=True)


#: TensorFlow Lite's int8 quantization spec fixes the output parameters of LOGISTIC
#: (scale 1/256, zero point -128: the grid [0, 255/256]) and TANH (scale 1/128, zero point 0:
#: [-1, 127/128]); its kernels refuse others. nnref uses them too, so a sigmoid or tanh
#: layer's calibrated output range is not used.
FIXED_OUTPUT_QPARAMS: dict[str, QParams] = {
    "sigmoid": int8_qparams(1.0 / 256.0, -128),
    "tanh": int8_qparams(1.0 / 128.0, 0),
}


def _activation_fn(kind: str, alpha: float):
    """The float32 activation TensorFlow Lite's table builder evaluates."""
    if kind == "tanh":
        return np.tanh
    if kind == "sigmoid":
        one = np.float32(1.0)
        return lambda v: one / (one + np.exp(-v))  # TFLite: 1.0f / (1.0f + std::exp(-value))
    a = np.float32(alpha)
    return lambda v: np.where(v > 0, v, v * a)


def build_lut(activation: str, in_qparams: QParams, out_qparams: QParams, alpha: float = 0.01) -> np.ndarray:
    """An int8 -> int8 lookup table of ``activation`` between two per-tensor quantizations.

    Formula (TensorFlow Lite ``PopulateLookupTable`` in ``kernels/activations.cc``, used by
    its int8 TANH and LOGISTIC kernels), all in float32, for every int8 ``q``::

        real         = s_in * (q - zp_in)
        y            = f(real)                  tanh, 1 / (1 + exp(-real)), or leaky ReLU
        lut[q + 128] = clamp(round_half_away(y * (1 / s_out)) + zp_out, -128, 127)

    Parameters
    ----------
    activation : {"tanh", "sigmoid", "leaky_relu"}
    in_qparams, out_qparams : QParams
        Per-tensor int8.
    alpha : float
        The leaky ReLU slope, finite and >= 0 (ignored otherwise).

    Returns
    -------
    ndarray of int8, shape (256,), read-only
        Indexed by ``q + 128`` (TensorFlow Lite indexes by the byte's unsigned pattern).

    Raises
    ------
    TypeError, ValueError
        An unknown activation, grids that are not per-tensor int8.

    Notes
    -----
    ``f`` is numpy's float32 function, which may differ in the last bit from the C
    library's ``tanhf``/``expf``, so an entry at an exact rounding tie could differ by one
    from TensorFlow Lite's. For leaky ReLU the table is nnref's choice: TensorFlow Lite's
    int8 LEAKY_RELU kernel applies two fixed-point multipliers instead, which can differ
    from the table by one at rounding ties.
    """
    check_choice(activation, "activation", LUT_ACTIVATIONS)
    check_act_qparams(in_qparams, "in_qparams")
    check_act_qparams(out_qparams, "out_qparams")
    alpha = check_nonnegative(alpha, "alpha")
    q = np.arange(_QMIN, _QMAX + 1, dtype=np.int32)
    real = in_qparams.scale * (q - in_qparams.zero_point).astype(np.float32)  # float32
    with np.errstate(over="ignore"):  # exp(-real) may overflow to inf: sigmoid is then 0
        y = _activation_fn(activation, alpha)(real).astype(np.float32)
    rescaled = round_half_away(y * (np.float32(1.0) / out_qparams.scale))  # float32
    table = np.clip(rescaled + np.float32(out_qparams.zero_point), _QMIN, _QMAX).astype(np.int8)
    table.setflags(write=False)
    return table


def lookup(lut: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``lut[q + 128]``: apply a table from :func:`build_lut` to int8 values (plain).

    Parameters
    ----------
    lut : ndarray of int8, shape (256,)
    q : ndarray of int8

    Returns
    -------
    ndarray of int8, ``q``'s shape
    """
    return lut[q.astype(np.intp) + 128]
