"""The integer-only MLP at run time: int8 in, int8 logits out.

:class:`QuantizedMLP` quantizes a float input once (TensorFlow Lite's QUANTIZE), runs its
:class:`~nnref.quant.qlayer.QuantizedLayer` s one after the other, and takes an integer
argmax. It is built by :func:`~nnref.quant.convert.quantize_model` or read by
:meth:`QuantizedMLP.load` (file format: :mod:`nnref.quant.qformat`).
"""

from __future__ import annotations

import numpy as np

from nnref._checks import as_float_array, check_labels, describe
from nnref.mlp import MLP
from nnref.quant.qformat import read_model, write_model
from nnref.quant.checks import check_act_qparams, check_choice, check_finite_parameters
from nnref.quant.lut import FIXED_OUTPUT_QPARAMS, LUT_ACTIVATIONS, build_lut
from nnref.quant.ops import dequantize, quantize_half_away_into, quantize_input_int8
from nnref.quant.qlayer import METHODS, QuantizedLayer
from nnref.quant.qparams import QParams

__all__ = ["QuantizedMLP"]

_FLOAT32_OVERFLOW = 2.0**128 - 2.0**103  # the smallest float64 that rounds to float32 inf
_BLOCK_VALUES = 2**17  # input values per row block (512 KiB of float32): cache-resident passes


def _check_layers(layers, input_qparams: QParams) -> list[QuantizedLayer]:
    """Layers that chain: widths and grids match, one requantization and rounding."""
    if not isinstance(layers, (list, tuple)) or not layers or not all(isinstance(l, QuantizedLayer) for l in layers):
        raise TypeError(f"layers: expected a non-empty list of QuantizedLayer, got {describe(layers)}")
    previous, width = input_qparams, layers[0].in_features
    for i, layer in enumerate(layers):
        if layer.in_features != width:
            raise ValueError(f"layers[{i}]: expected {width} inputs (the previous layer's outputs), got {layer.in_features}")
        if layer.in_qparams != previous:
            raise ValueError(f"layers[{i}]: in_qparams {layer.in_qparams!r} differ from the previous output's {previous!r}")
        if (layer.requantization, layer.rounding) != (layers[0].requantization, layers[0].rounding):
            raise ValueError(f"layers[{i}]: every layer must use the same requantization and rounding")
        previous, width = layer.out_qparams, layer.out_features
    return list(layers)


class QuantizedMLP:
    """An integer-only MLP: int8 activations, int8 (or fewer-bit) weights, int32 biases.

    Parameters
    ----------
    layers : list of QuantizedLayer
        Layer ``l``'s ``in_qparams`` is layer ``l - 1``'s ``out_qparams``.
    input_qparams : QParams
        The first layer's input grid (per-tensor int8).
    method : {"auto", "int"}
        How the int8 matrix products run: ``"auto"`` through float BLAS where provably
        exact (bit-identical, 10-100x faster: numpy has no integer BLAS), ``"int"`` in
        integer arithmetic only. Methods taking ``method=None`` use this attribute.

    Notes
    -----
    "No float operation after the input is quantized" holds for ``method="int"`` with
    ``requantization="fixed_point"``; ``"auto"`` computes the exact integer products with
    float operations; ``requantization="float"`` applies the multiplier in float32
    (onnxruntime's arithmetic). Layers may have different weight bit widths.
    """

    def __init__(self, layers: list[QuantizedLayer], input_qparams: QParams, method: str = "auto") -> None:
        self.input_qparams = check_act_qparams(input_qparams, "input_qparams")
        self.layers = _check_layers(layers, self.input_qparams)
        self.method = method

    # ------------------------------------------------------------------ attributes
    @property
    def method(self) -> str:
        """``"auto"`` or ``"int"``: the default product method."""
        return self._method

    @method.setter
    def method(self, value: str) -> None:
        self._method = check_choice(value, "method", METHODS)

    @property
    def layer_sizes(self) -> list[int]:
        """``[in_features, out_0, ..., out_{L-1}]``."""
        return [self.layers[0].in_features] + [layer.out_features for layer in self.layers]

    @property
    def in_features(self) -> int:
        """The number of input features."""
        return self.layers[0].in_features

    @property
    def n_outputs(self) -> int:
        """The number of logits."""
        return self.layers[-1].out_features

    @property
    def output_qparams(self) -> QParams:
        """The logits' grid."""
        return self.layers[-1].out_qparams

    @property
    def requantization(self) -> str:
        """``"fixed_point"`` or ``"float"``."""
        return self.layers[0].requantization

    @property
    def rounding(self) -> str:
        """``"single"`` or ``"double"``."""
        return self.layers[0].rounding

    @property
    def activation(self) -> str:
        """The hidden layers' activation (``"none"`` for a single-layer model)."""
        return self.layers[0].activation if len(self.layers) > 1 else "none"

    @property
    def weight_bits_per_layer(self) -> list[int]:
        """Each layer's weight bit width."""
        return [layer.weight_bits for layer in self.layers]

    @property
    def weight_bits(self) -> int | tuple[int, ...]:
        """The weight bit width: an int if every layer has the same, else one per layer."""
        bits = self.weight_bits_per_layer
        return bits[0] if len(set(bits)) == 1 else tuple(bits)

    # ------------------------------------------------------------------ checks
    def _resolve_method(self, method) -> str:
        return self._method if method is None else check_choice(method, "method", METHODS)

    def _check_x_q(self, x_q) -> np.ndarray:
        if not isinstance(x_q, np.ndarray) or x_q.dtype != np.int8:
            raise TypeError(
                f"x_q: expected an int8 array (quantize floats with quantize_input first), got {describe(x_q)}"
            )
        if x_q.ndim != 2 or x_q.shape[1] != self.in_features or x_q.shape[0] == 0:
            raise ValueError(f"x_q: expected shape (B, {self.in_features}) with B >= 1, got shape {x_q.shape}")
        return x_q

    def _check_x(self, x) -> np.ndarray:
        x = as_float_array(x, "x", ndim=2)
        if x.shape[1] != self.in_features:
            raise ValueError(f"x: expected shape (B, {self.in_features}), got shape {x.shape}")
        if x.dtype.itemsize > 4 and x.size:  # the input tensor is float32: refuse what becomes inf
            big = float(np.abs(x).max())
            if big >= _FLOAT32_OVERFLOW:
                raise ValueError(f"x: values overflow float32, the model's input type (largest |value| "
                                 f"{big:g}; float32 holds up to {float(np.finfo(np.float32).max):g})")
        return x

    # ------------------------------------------------------------------ inference
    def quantize_input(self, x) -> np.ndarray:
        """Quantize float inputs to int8 with ``input_qparams`` (TensorFlow Lite QUANTIZE).

        Formula (``reference_ops::AffineQuantize``; float32 arithmetic, ``std::round``)::

            x_q = clamp(round_half_away(float32(x) / float32(s_in)) + zp_in, -128, 127)

        i.e. :func:`~nnref.quant.ops.quantize_affine` (``"half_away"``), computed by its
        fast twin :func:`~nnref.quant.ops.quantize_input_int8`.

        Parameters
        ----------
        x : array_like of float, shape (B, in_features)
            Finite.

        Returns
        -------
        ndarray of int8, shape (B, in_features)

        Raises
        ------
        TypeError, ValueError
            Non-numeric, non-finite or wrongly shaped ``x``.
        """
        x = self._check_x(x)
        qp = self.input_qparams
        return quantize_input_int8(x, qp.scale, int(qp.zero_point), _BLOCK_VALUES)

    def _run(self, x_q: np.ndarray, method: str, x_exact: np.ndarray | None = None) -> np.ndarray:
        h = self.layers[0].apply(x_q, method, x_exact)
        for layer in self.layers[1:]:
            h = layer.apply(h, method)
        return h

    def forward_int(self, x_q: np.ndarray, trace: bool = False, method: str | None = None):
        """int8 inputs to int8 logits, with integer arithmetic only.

        Each layer runs :func:`~nnref.quant.kernels.linear_int8` (``method="int"``) or its
        bitwise-equal fast twin :func:`~nnref.quant.kernels.linear_int8_fast` (``"auto"``),
        then its lookup table if any (:meth:`QuantizedLayer.apply`).

        Parameters
        ----------
        x_q : ndarray of int8, shape (B, in_features)
            From :meth:`quantize_input`.
        trace : bool
            Also return one dict per layer with every integer intermediate
            (:meth:`QuantizedLayer.trace`).
        method : {"auto", "int"} or None
            None: the model's :attr:`method`.

        Returns
        -------
        ndarray of int8, shape (B, n_outputs), or tuple
            ``(logits, records)`` with ``trace=True``.

        Raises
        ------
        TypeError
            ``x_q`` not an int8 array.
        ValueError
            Wrong shape, an unknown method.
        """
        method = self._resolve_method(method)
        h = self._check_x_q(x_q)
        if not trace and method == "int":
            return self._run(h, method)
        if not trace:  # float-BLAS products: convert the input block by block, in cache
            return self._blocks(lambda rows: self._run(h[rows], method), h.shape[0], h.shape[1])
        records = []
        for layer in self.layers:
            records.append(layer.trace(h, method))
            h = records[-1]["y"]
        return h, records

    def _blocks(self, run, n_rows: int, width: int) -> np.ndarray:
        """``run(rows)`` over row blocks of about ``_BLOCK_VALUES`` inputs, concatenated."""
        step = max(1, _BLOCK_VALUES // max(1, width))
        out = np.empty((n_rows, self.n_outputs), dtype=np.int8)
        for start in range(0, n_rows, step):
            out[start:start + step] = run(slice(start, start + step))
        return out

    def _logits(self, x: np.ndarray, method: str) -> np.ndarray:
        """int8 logits of checked float ``x``: quantized block by block, straight into the
        first product (the int8 values, held exactly as floats, are not stored)."""
        qp, first = self.input_qparams, self.layers[0]
        zp = int(qp.zero_point)
        step = max(1, _BLOCK_VALUES // x.shape[1])
        buf = np.empty((2, min(step, x.shape[0]), x.shape[1]), dtype=np.float32)

        def run(rows: slice) -> np.ndarray:
            """The int8 logits of one row block.

            Parameters
            ----------
            rows : slice

            Returns
            -------
            ndarray of int8
            """
            xb = x[rows]
            v = quantize_half_away_into(xb, qp.scale, zp, -128, 127, buf[0, :len(xb)], buf[1, :len(xb)])
            if method == "auto" and first._blas_dtype == np.float32:
                return self._run(None, method, v)  # v holds the int8 values exactly
            return self._run(v.astype(np.int8), method)

        return self._blocks(run, x.shape[0], x.shape[1])

    def predict(self, x, method: str | None = None) -> np.ndarray:
        """Predicted classes: quantize ``x``, run the integer network, integer argmax.

        Parameters
        ----------
        x : array_like of float, shape (B, in_features)
            Finite.
        method : {"auto", "int"} or None

        Returns
        -------
        ndarray of int64, shape (B,)
            ``argmax_j logits_q[:, j]`` (ties: the first index). Dequantizing is monotone,
            so this is also the argmax of the dequantized logits.
        """
        method = self._resolve_method(method)
        return np.argmax(self._logits(self._check_x(x), method), axis=1).astype(np.int64)

    def dequantized_logits(self, x, method: str | None = None) -> np.ndarray:
        """``s_out * (logits_q - zp_out)`` as float32, shape (B, n_outputs).

        Parameters
        ----------
        x : array_like of float, shape (B, in_features)
        method : {"auto", "int"} or None

        Returns
        -------
        ndarray of float32, shape (B, n_outputs)
        """
        method = self._resolve_method(method)
        return dequantize(self._logits(self._check_x(x), method), self.output_qparams)

    def accuracy(self, x, y, method: str | None = None) -> float:
        """Fraction of examples whose predicted class equals the label ``y`` (B,) int.

        Parameters
        ----------
        x : array_like of float, shape (B, in_features)
        y : array_like of int, shape (B,)
        method : {"auto", "int"} or None

        Returns
        -------
        float
        """
        pred = self.predict(x, method)
        labels = check_labels(y, pred.shape[0], self.n_outputs, "y")
        return float(np.mean(pred == labels))

    def compare(self, float_model: MLP, x, y) -> dict:
        """How far the integer model is from ``float_model`` on ``(x, y)``.

        Returns
        -------
        dict of str to float
            ``float_accuracy``, ``int_accuracy``, ``agreement`` (same class), and
            ``max_logit_error``, ``mean_logit_error`` (``|float - dequantized int|``, logit
            units), ``n``.

        Parameters
        ----------
        float_model : MLP
            Of the same layer sizes.
        x : array_like of float, shape (B, in_features)
        y : array_like of int, shape (B,)
        """
        if not isinstance(float_model, MLP):
            raise TypeError(f"float_model: expected an nnref.mlp.MLP, got {describe(float_model)}")
        if list(float_model.layer_sizes) != self.layer_sizes:
            raise ValueError(f"float_model: expected layer sizes {self.layer_sizes}, got {float_model.layer_sizes}")
        check_finite_parameters(float_model, "float_model")
        x = self._check_x(x)
        labels = check_labels(y, x.shape[0], self.n_outputs, "y")
        logits_f = float_model.forward(x).astype(np.float64)
        logits_q = self._logits(x, self.method)
        pred_f, pred_q = np.argmax(logits_f, axis=1), np.argmax(logits_q, axis=1)
        err = np.abs(logits_f - dequantize(logits_q, self.output_qparams).astype(np.float64))
        return {
            "float_accuracy": float(np.mean(pred_f == labels)),
            "int_accuracy": float(np.mean(pred_q == labels)),
            "agreement": float(np.mean(pred_f == pred_q)),
            "max_logit_error": float(err.max()),
            "mean_logit_error": float(err.mean()),
            "n": int(x.shape[0]),
        }

    # ------------------------------------------------------------------ size and display
    def size_bytes(self) -> int:
        """Bytes the integer runtime holds: the layers' sizes plus the input grid (8 bytes).

        Weights below 8 bits count as packed. This includes constants an engine derives
        at load time (m0, shift, clamp bounds); :func:`nnref.quant.report.model_size_bytes`
        counts only what a stored model file holds.
        """
        return 8 + sum(layer.size_bytes() for layer in self.layers)

    def _weights_text(self) -> str:
        bits = self.weight_bits
        kind = f"int{bits}" if isinstance(bits, int) else "/".join(f"int{b}" for b in bits)
        per = "per-channel" if self.layers[0].w_qparams.per_channel else "per-tensor"
        return f"{kind} {per} weights"

    def __repr__(self) -> str:
        req = self.requantization + (f"/{self.rounding}" if self.requantization == "fixed_point" else "")
        return (f"QuantizedMLP({self.layer_sizes}, activation={self.activation!r}, "
                f"{self._weights_text()}, int8 activations, {req}, {self.size_bytes():,} bytes)")

    def summary(self) -> str:
        """A table of the layers: shape, activation, grids, multipliers and clamp bounds."""
        def grid(qp: QParams) -> str:
            """One grid as text.

            Parameters
            ----------
            qp : QParams

            Returns
            -------
            str
            """
            return f"s={float(qp.scale):.4g} zp={int(qp.zero_point)}"

        lines = [repr(self), f"  input            {grid(self.input_qparams)}"]
        for i, layer in enumerate(self.layers):
            s_w = layer.w_qparams.scale
            lines.append(
                f"  layer {i}: {layer.in_features:>4} -> {layer.out_features:<4} {layer.activation:<10} "
                f"w int{layer.weight_bits} s_w in [{s_w.min():.3g}, {s_w.max():.3g}]  "
                f"M in [{layer.real_multiplier.min():.3g}, {layer.real_multiplier.max():.3g}]  "
                f"clamp [{layer.act_min}, {layer.act_max}]"
                + (f"  pre {grid(layer.pre_qparams)} + LUT" if layer.lut is not None else "")
                + f"  out {grid(layer.out_qparams)}  {layer.size_bytes():,} B"
            )
        return "\n".join(lines)

    # ------------------------------------------------------------------ save / load
    def save(self, path) -> None:
        """Write the model to an ``.npz`` file (no pickles; :mod:`nnref.quant.qformat`).

        Every stored array of every layer, the parameters of every grid, and the derived
        m0/shift/clamp bounds, which :meth:`load` recomputes and checks.

        Parameters
        ----------
        path : str or os.PathLike

        Raises
        ------
        TypeError
            ``path`` not a path.
        """
        write_model(path, self)

    @classmethod
    def load(cls, path, method: str = "auto") -> QuantizedMLP:
        """Read a model written by :meth:`save` (``allow_pickle=False``).

        Raises
        ------
        FileNotFoundError
            A missing file.
        ValueError
            Naming the file, for anything else wrong: not an npz, another format or
            version, missing or unexpected entries, wrong dtypes or shapes, grids that do
            not chain, stored m0/shift/clamp bounds that disagree with the stored scales, a
            lookup table that differs from the one :func:`build_lut` rebuilds, or a
            tanh/sigmoid output grid other than :data:`FIXED_OUTPUT_QPARAMS`.

        Parameters
        ----------
        path : str or os.PathLike
        method : {"auto", "int"}

        Returns
        -------
        QuantizedMLP
        """
        record = read_model(path)
        try:
            layers, in_qp = [], record["input_qparams"]
            for i, fields in enumerate(record["layers"]):
                layer = _layer_from_record(i, fields, in_qp, record["requantization"], record["rounding"])
                layers.append(layer)
                in_qp = layer.out_qparams
            return cls(layers, record["input_qparams"], method=method)
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}: inconsistent QuantizedMLP record ({exc})") from None


def _layer_from_record(i: int, fields: dict, in_qp: QParams, requantization: str, rounding: str) -> QuantizedLayer:
    """A layer rebuilt from its stored fields, checked against what the scales imply."""
    p, activation = f"layer{i}.", fields["activation"]
    layer = QuantizedLayer(fields["w_q"], fields["bias_q"], fields["w_qparams"], in_qp, fields["out_qparams"],
                           activation, fields.get("pre_qparams"), fields.get("lut"), requantization,
                           rounding, alpha=fields.get("alpha"), name=f"layer {i}")
    fixed = FIXED_OUTPUT_QPARAMS.get(activation)
    if fixed is not None and layer.out_qparams != fixed:
        raise ValueError(f"{p}out: a {activation} layer's output grid is fixed at {fixed!r}, got {layer.out_qparams!r}")
    if activation in LUT_ACTIVATIONS and not np.array_equal(
            layer.lut, build_lut(activation, layer.pre_qparams, layer.out_qparams, layer.alpha or 0.0)):
        raise ValueError(f"{p}lut: the stored table differs from the {activation} table rebuilt from the stored grids")
    derived = {"m0": layer.m0, "shift": layer.shift,
               "act_range": np.array([layer.act_min, layer.act_max], dtype=np.int32)}
    for name, value in derived.items():
        stored = fields[name]
        if stored.dtype != value.dtype or not np.array_equal(stored, value):
            raise ValueError(f"{p + name}: stored values disagree with those derived from the stored scales")
    return layer
