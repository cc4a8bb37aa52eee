"""The ``.npz`` file format of a :class:`~nnref.quant.qmodel.QuantizedMLP` (no pickles).

Entries (format ``"nnref.QuantizedMLP"``, version 2):

- ``num_layers``, ``requantization``, ``rounding``;
- ``input.{scale,zero_point,meta,scheme}``: the input grid (``meta`` = qmin, qmax, bits,
  signed, narrow_range, axis, as int64; axis ``-2**31`` stands for None);
- per layer ``layerN.``: ``w_q`` (int8), ``bias_q`` (int32), ``activation``, ``m0``,
  ``shift``, ``act_range`` (derived values, checked on load), the grids ``w.*`` (its
  ``bits`` is the layer's own weight width) and ``out.*``; with a lookup table also
  ``pre.*`` and ``lut``; a leaky ReLU layer its slope ``alpha``.

This module converts between files and plain records (dicts of arrays and
:class:`~nnref.quant.qparams.QParams`); :meth:`QuantizedMLP.load` builds and checks the
layers.
"""

from __future__ import annotations

import os

import numpy as np

from nnref._checks import describe
from nnref._npz import read_archive, write_archive
from nnref.quant.qparams import QParams

__all__ = ["FORMAT", "FORMAT_VERSION", "check_path", "write_model", "read_model"]

FORMAT = "nnref.QuantizedMLP"
FORMAT_VERSION = 2  # 2: leaky ReLU layers store their slope (layerN.alpha)
_QP_META = ("qmin", "qmax", "bits", "signed", "narrow_range", "axis")
_NO_AXIS = -(2**31)  # stands for axis=None in the saved metadata
_TABLE_ACTIVATIONS = ("tanh", "sigmoid", "leaky_relu")


def check_path(path) -> str:
    """``path`` as a str if it is a str or an ``os.PathLike``, else raise ``TypeError``.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    str

    Raises
    ------
    TypeError
        Naming ``path``.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a str or os.PathLike file path, got {describe(path)}")
    return os.fspath(path)


def _qparams_arrays(prefix: str, qp: QParams) -> dict[str, np.ndarray]:
    meta = [qp.qmin, qp.qmax, qp.bits, int(qp.signed), int(qp.narrow_range),
            _NO_AXIS if qp.axis is None else qp.axis]
    return {
        f"{prefix}.scale": np.array(qp.scale),
        f"{prefix}.zero_point": np.array(qp.zero_point),
        f"{prefix}.meta": np.array(meta, dtype=np.int64),
        f"{prefix}.scheme": np.array(qp.scheme),
    }


def _layer_arrays(i: int, layer) -> dict[str, np.ndarray]:
    p = f"layer{i}."
    arrays = {
        p + "w_q": layer.w_q,
        p + "bias_q": layer.bias_q,
        p + "activation": np.array(layer.activation),
        p + "m0": layer.m0,
        p + "shift": layer.shift,
        p + "act_range": np.array([layer.act_min, layer.act_max], dtype=np.int32),
    }
    arrays.update(_qparams_arrays(p + "w", layer.w_qparams))
    arrays.update(_qparams_arrays(p + "out", layer.out_qparams))
    if layer.lut is not None:
        arrays.update(_qparams_arrays(p + "pre", layer.pre_qparams))
        arrays[p + "lut"] = layer.lut
    if layer.activation == "leaky_relu":
        if layer.alpha is None:
            raise ValueError(f"layers[{i}]: a leaky_relu layer needs its alpha to be saved "
                             f"(construct the QuantizedLayer with alpha=...), got None")
        arrays[p + "alpha"] = np.array(layer.alpha, dtype=np.float64)
    return arrays


def write_model(path, model) -> None:
    """Write a :class:`~nnref.quant.qmodel.QuantizedMLP` to ``path`` (see the module).

    Parameters
    ----------
    path : str or os.PathLike
    model : QuantizedMLP

    Raises
    ------
    TypeError
        ``path`` is not a path.
    ValueError
        A leaky ReLU layer without its slope.
    """
    path = check_path(path)
    arrays: dict[str, np.ndarray] = {
        "num_layers": np.array(len(model.layers)),
        "requantization": np.array(model.requantization),
        "rounding": np.array(model.rounding),
    }
    arrays.update(_qparams_arrays("input", model.input_qparams))
    for i, layer in enumerate(model.layers):
        arrays.update(_layer_arrays(i, layer))
    write_archive(path, FORMAT, FORMAT_VERSION, arrays)


class _Entries:
    """The arrays of an archive, recording which were read."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays, self.used = arrays, {"format", "format_version"}

    def __call__(self, key: str) -> np.ndarray:
        if key not in self.arrays:
            raise KeyError(f"missing entry {key!r}")
        self.used.add(key)
        return self.arrays[key]

    def qparams(self, prefix: str) -> QParams:
        """The :class:`QParams` stored under ``prefix``.

        Parameters
        ----------
        prefix : str

        Returns
        -------
        QParams
        """
        meta = self(f"{prefix}.meta")
        if meta.dtype != np.int64 or meta.shape != (len(_QP_META),):
            raise ValueError(f"{prefix}.meta: expected {len(_QP_META)} int64 values {_QP_META}, got {describe(meta)}")
        qmin, qmax, bits, signed, narrow, axis = (int(v) for v in meta)
        scale, zero_point = self(f"{prefix}.scale"), self(f"{prefix}.zero_point")
        if scale.dtype != np.float32 or zero_point.dtype != np.int32:
            raise ValueError(f"{prefix}: expected float32 scale and int32 zero_point, got "
                             f"{scale.dtype} and {zero_point.dtype}")
        return QParams(scale=scale, zero_point=zero_point, qmin=qmin, qmax=qmax, bits=bits,
                       signed=bool(signed), narrow_range=bool(narrow),
                       axis=None if axis == _NO_AXIS else axis, scheme=str(self(f"{prefix}.scheme")))

    def alpha(self, key: str) -> float:
        """A leaky ReLU slope: a finite float64 scalar >= 0.

        Parameters
        ----------
        key : str

        Returns
        -------
        float
        """
        a = self(key)
        if a.shape != () or a.dtype != np.float64 or not np.isfinite(a) or a < 0:
            raise ValueError(f"entry {key!r}: expected a finite float64 scalar >= 0, got {describe(a)}")
        return float(a)


def _layer_fields(entries: _Entries, i: int) -> dict:
    p = f"layer{i}."
    activation = str(entries(p + "activation"))
    fields = {"activation": activation, "w_q": entries(p + "w_q"), "bias_q": entries(p + "bias_q"),
              "w_qparams": entries.qparams(p + "w"), "out_qparams": entries.qparams(p + "out"),
              "m0": entries(p + "m0"), "shift": entries(p + "shift"), "act_range": entries(p + "act_range")}
    if activation in _TABLE_ACTIVATIONS:
        fields.update(pre_qparams=entries.qparams(p + "pre"), lut=entries(p + "lut"))
    if activation == "leaky_relu":
        fields["alpha"] = entries.alpha(p + "alpha")
    return fields


def read_model(path) -> dict:
    """Read the record of a model written by :func:`write_model`.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict
        ``input_qparams``, ``requantization``, ``rounding`` and ``layers``: one dict per
        layer (``w_q``, ``bias_q``, ``activation``, ``w_qparams``, ``out_qparams``, ``m0``,
        ``shift``, ``act_range`` and, where present, ``pre_qparams``, ``lut``, ``alpha``).

    Raises
    ------
    FileNotFoundError
        A missing file.
    TypeError
        ``path`` is not a path.
    ValueError
        Naming the file: not a readable archive, another format or version, missing or
        unexpected entries, malformed grids.
    """
    path = check_path(path)
    entries = _Entries(read_archive(path, FORMAT, FORMAT_VERSION, "QuantizedMLP"))
    try:
        n_layers = int(entries("num_layers"))
        record = {"requantization": str(entries("requantization")), "rounding": str(entries("rounding")),
                  "input_qparams": entries.qparams("input"),
                  "layers": [_layer_fields(entries, i) for i in range(n_layers)]}
    except (KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: inconsistent QuantizedMLP record ({exc})") from None
    extra = set(entries.arrays) - entries.used
    if extra:
        raise ValueError(f"{path}: unexpected entries {sorted(extra)}")
    return record
