"""The README's "Beyond round-to-nearest" table against benchmarks/ptq_toolbox.py.

The whole benchmark costs about 20 s of CPU (AdaRound and three fine-tunings per bit width
and seed), too much for the suite; these tests recompute its round-to-nearest, equalization
and bias-correction cells for seed 0 (well under a second after training) and check each
against the quoted min..max over the seeds, and check the quoted findings against the
quoted table.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
CELL = re.compile(r"(\d+\.\d\d) \((\d+\.\d\d)\.\.(\d+\.\d\d)\)")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("ptq_toolbox", ROOT / "benchmarks" / "ptq_toolbox.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["ptq_toolbox"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quoted():
    """``{(method, weights): [(mean, min, max) per bit width]}`` from the README's block."""
    start = README.index("## Beyond round-to-nearest")
    begin = README.index("```\n", start) + 4
    block = README[begin:README.index("\n```", begin)]
    rows = {}
    for line in block.splitlines():
        cells = [tuple(map(float, m)) for m in CELL.findall(line)]
        if len(cells) == 3:
            label = CELL.split(line)[0].strip()
            method, _, weights = label.rpartition("  ")
            rows[(method.strip(), weights.strip()) if method else (label, "")] = cells
    return block, rows


def test_the_readme_block_has_every_method_of_the_benchmark(bench, quoted):
    _, rows = quoted
    assert set(bench.METHODS) | {("float32", "float32")} <= set(rows)
    assert all((name, "") in rows for name in bench.ACT_METHODS)


def test_seed_0s_rounding_cells_lie_in_the_quoted_ranges(bench, quoted):
    _, rows = quoted
    model, x_tr, x_te, _, y_te = bench.train_float_model(0)
    f32 = 100 * model.accuracy(x_te, y_te)
    assert rows[("float32", "float32")][0][1] <= f32 <= rows[("float32", "float32")][0][2]
    for i, bits in enumerate(bench.BITS):
        for key, qm in bench.rounding_methods(model, x_tr, bits).items():
            acc = 100 * qm.accuracy(x_te, y_te)
            mean, lo, hi = rows[key][i]
            assert lo - 0.005 <= acc <= hi + 0.005, (key, bits, acc, rows[key][i])
            assert lo <= mean <= hi


def test_the_quoted_findings_follow_from_the_quoted_table(quoted):
    block, rows = quoted
    mean = {k: [c[0] for c in v] for k, v in rows.items()}  # int4, int3, int2
    f32, rtn2, ada2 = mean[("float32", "float32")][2], mean[("RTN", "per-channel")][2], mean[("AdaRound", "per-channel")][2]
    lost, back = f32 - rtn2, ada2 - rtn2
    assert f"loses {lost:.2f} points; AdaRound (no retraining) recovers {back:.2f}" in block
    assert back >= lost / 2
    t4, c4 = mean[("RTN", "per-tensor")][0], mean[("CLE + BC", "per-tensor")][0]
    assert f"round-to-nearest {t4:.2f}%, CLE + bias correction {c4:.2f}%" in block and c4 > t4
    lsq2, qat2 = mean[("LSQ", "per-channel")][2], mean[("QAT", "per-channel")][2]
    assert f"LSQ {lsq2:.2f}% vs QAT {qat2:.2f}%" in block and lsq2 >= qat2
    assert "NO" not in block
    np.testing.assert_allclose(mean[("float32", "float32")], [f32] * 3)
