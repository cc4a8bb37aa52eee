"""Calibration: run the float model on sample inputs and record the range of every tensor
that the integer model will have to represent.

Post-training quantization needs, besides the weights, a scale and zero point for each
activation tensor. They come from watching the float network on representative inputs
(TensorFlow Lite's ``representative_dataset``; PyTorch's ``prepare`` + calibration pass;
Jacob et al. 2018, arXiv 1712.05877, section 3): one observer per tensor, fed batch by
batch, then ``observer.qparams(...)`` turns each observed range into a ``QParams``.

For an MLP with Linear layers ``l = 0 .. L-1`` the tensors are::

    h_0 = x                      the model input                 -> Calibration.input
    z_l = h_l @ W_l + b_l        Linear l's output, before act   -> Calibration.preactivations[l]
    h_{l+1} = act(z_l)           after the activation            -> Calibration.outputs[l]
                                 (for the last layer: the logits z_{L-1})

``outputs[l]`` is exactly what enters Linear ``l + 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnref._checks import as_float_array, check_finite, check_int_in_range, describe
from nnref.layers import Linear
from nnref.mlp import MLP
from nnref.quant.checks import check_finite_parameters
from nnref.quant.observers import MinMaxObserver, Observer

__all__ = ["Calibration", "calibrate"]


@dataclass
class Calibration:
    """The observers of one calibration pass (see the module docstring for the tensors).

    Fields:
        input:          observer of the model input ``x``.
        outputs:        ``outputs[l]`` observed Linear layer ``l``'s output after its
                        activation (the next layer's input; for the last layer the logits).
        preactivations: ``preactivations[l]`` observed ``z_l``, Linear ``l``'s output
                        before the activation (equal to ``outputs[l]``'s data for the last
                        layer, which has no activation).
    """

    input: Observer
    outputs: list[Observer]
    preactivations: list[Observer]

    @property
    def num_layers(self) -> int:
        """The number of Linear layers observed."""
        return len(self.outputs)

    def __repr__(self) -> str:
        def rng(o: Observer) -> str:  # per-channel observers: the widest channel range
            """The observed range of one observer, as text.

            Parameters
            ----------
            o : Observer

            Returns
            -------
            str
            """
            return f"[{float(np.min(o.min_val)):.4g}, {float(np.max(o.max_val)):.4g}]" if o.count else "[]"

        lines = [f"Calibration({type(self.input).__name__}, {self.input.count} input values)",
                 f"  input        {rng(self.input)}"]
        for i, (z, h) in enumerate(zip(self.preactivations, self.outputs)):
            lines.append(f"  layer {i}: z {rng(z)}  output {rng(h)}")
        return "\n".join(lines)


def _new_observer(observer, name: str = "observer") -> Observer:
    if not callable(observer):
        raise TypeError(
            f"{name}: expected a zero-argument observer factory (an Observer class or a "
            f"lambda), got {describe(observer)}"
        )
    obs = observer()
    if not isinstance(obs, Observer):
        raise TypeError(
            f"{name}: expected the factory to return an nnref.quant Observer, got {describe(obs)}"
        )
    return obs


def calibrate(model: MLP, x, observer=MinMaxObserver, batch_size: int = 512) -> Calibration:
    """Observe the input, every pre-activation and every layer output of ``model`` on ``x``.

    Runs the float model forward only, ``batch_size`` rows at a time, in order. For each
    batch ``x_b``::

        input.observe(x_b);  h = x_b
        for each Linear l:   z = h @ W_l + b_l         preactivations[l].observe(z)
                             h = act_l(z)  (the model's own activation layers; none last)
                             outputs[l].observe(h)

    Parameters
    ----------
    model : MLP
        Its parameters are read, never changed (they must be finite); its layers' forward
        caches are overwritten, as by ``model.forward``.
    x : array_like of float, shape (N, in_features)
        Finite calibration inputs (cast to the model's dtype, as :meth:`MLP.forward` does;
        values that overflow it are refused).
    observer : callable
        A zero-argument factory called once per tensor (``MinMaxObserver``,
        ``lambda: MovingAverageMinMaxObserver(0.1)``, ...); every call must return a new
        :class:`~nnref.quant.observers.Observer`.
    batch_size : int
        Rows per forward pass, >= 1. With min-max observers the result does not depend on
        it (min and max are associative); with moving-average ones it does (the average is
        over batches), as in PyTorch.

    Returns
    -------
    Calibration
        One input observer and ``len(model.linears)`` output and pre-activation observers.

    Raises
    ------
    TypeError
        ``model`` not an MLP, ``observer`` not a factory of observers, ``x`` not numeric,
        ``batch_size`` not an int.
    ValueError
        ``x`` not 2-D, with the wrong number of features, empty, non-finite or overflowing
        the model's dtype; a non-finite parameter (the layer and parameter named);
        ``batch_size < 1``; NaN or inf reaching an observer.
    """
    if not isinstance(model, MLP):
        raise TypeError(f"model: expected an nnref.mlp.MLP, got {describe(model)}")
    x = as_float_array(x, "x", ndim=2)
    if x.shape[1] != model.in_features:
        raise ValueError(
            f"x: expected {model.in_features} features per example (shape (N, "
            f"{model.in_features})), got shape {x.shape}"
        )
    batch_size = check_int_in_range(batch_size, "batch_size", 1, 2**62)
    check_finite_parameters(model)  # else a NaN would surface as an activation's
    with np.errstate(over="ignore"):
        x = x.astype(model.dtype, copy=False)
    check_finite(x, f"x (as the model's {model.dtype})")
    n_layers = len(model.linears)
    cal = Calibration(
        input=_new_observer(observer),
        outputs=[_new_observer(observer) for _ in range(n_layers)],
        preactivations=[_new_observer(observer) for _ in range(n_layers)],
    )
    for start in range(0, x.shape[0], batch_size):
        h = x[start:start + batch_size]
        cal.input.observe(h)
        layer_index = -1
        for layer in model.layers:
            if isinstance(layer, Linear):
                if layer_index >= 0:
                    cal.outputs[layer_index].observe(h)
                layer_index += 1
                h = layer.forward(h)
                cal.preactivations[layer_index].observe(h)
            else:
                h = layer.forward(h)
        cal.outputs[layer_index].observe(h)  # the logits
    return cal
