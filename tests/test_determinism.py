"""The same seed gives the same bits, end to end; the integer path never wraps.

Runs the recipe twice in one process (fit with clipping, post-training quantization, float
and integer predictions) and compares every array bit for bit, then checks the integer
model's int32 accumulators against Python integers on inputs at the ends of the int8 range.
"""

from __future__ import annotations

import numpy as np

from nnref import clip
from nnref.data import load_digits, train_test_split
from nnref.mlp import MLP
from nnref.optim import Adam
from nnref.quant import quantize_model
from nnref.train import fit


def _recipe(seed: int) -> dict:
    x, y = load_digits()
    x_tr, x_te, y_tr, _ = train_test_split(x, y, test_fraction=0.2, seed=seed)
    model = MLP([64, 32, 10], seed=seed)
    hist = fit(model, Adam(1e-2), x_tr[:400], y_tr[:400], epochs=2, batch_size=32, seed=seed,
               grad_transform=clip.GlobalNorm(1.0), verbose=False)
    qmodel = quantize_model(model, x_tr[:200])
    x_q = qmodel.quantize_input(x_te)
    return {
        "params": model.params,
        "loss": np.array(hist.loss),
        "grad_norm": np.array(hist.grad_norm),
        "w_q": [layer.w_q for layer in qmodel.layers],
        "bias_q": [layer.bias_q for layer in qmodel.layers],
        "m0": [layer.m0 for layer in qmodel.layers],
        "float_logits": model.forward(x_te),
        "predict": model.predict(x_te),
        "int8_logits": qmodel.forward_int(x_q),
        "int8_predict": qmodel.predict(x_te),
        "x_q": x_q,
        "qmodel": qmodel,
    }


def _same_bits(a, b, where: str) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _same_bits(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b)):
            _same_bits(u, v, f"{where}[{i}]")
    else:
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert a.tobytes() == b.tobytes(), f"{where}: different bits"


def test_same_seed_same_bits_for_fit_quantize_model_and_predict():
    first, second = _recipe(3), _recipe(3)
    for key in first:
        if key != "qmodel":
            _same_bits(first[key], second[key], key)
    other = _recipe(4)
    assert first["params"]["W1"].tobytes() != other["params"]["W1"].tobytes(), "the seed is used"


def test_integer_accumulators_equal_python_integers_at_the_int8_extremes():
    qmodel = _recipe(3)["qmodel"]
    rng = np.random.default_rng(0)
    x_q = rng.choice(np.array([-128, 127], np.int8), size=(64, qmodel.in_features))
    _, records = qmodel.forward_int(x_q, trace=True)
    h = x_q
    for layer, rec in zip(qmodel.layers, records):
        zp = int(layer.in_qparams.zero_point)
        exact = [[sum((int(h[i, k]) - zp) * int(layer.w_q[k, j]) for k in range(h.shape[1])) + int(layer.bias_q[j])
                  for j in range(layer.out_features)] for i in range(h.shape[0])]
        acc = rec["acc_bias"]
        assert acc.dtype == np.int32
        assert acc.astype(np.int64).tolist() == exact, "an int32 accumulator wrapped or differs"
        assert all(-(2**31) <= v <= 2**31 - 1 for row in exact for v in row)
        h = rec["y"]
        assert h.dtype == np.int8
