"""compare(): every differing value of an engine path accounted for by a named profile;
one line when the engine agrees; the command line; nnref without the extra."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from nnref.cli import main
from nnref.data import load_digits
from nnref.interop import compare, from_tflite, to_onnx
from nnref.quant.profiles import ENGINE_PROFILES, PROFILES

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TFLITE = ["digits_relu_per_channel", "digits_relu_per_tensor", "digits_tanh", "digits_sigmoid", "digits_relu_int8_io"]


@pytest.fixture(scope="module")
def digits():
    return load_digits()[0]


@pytest.mark.parametrize("name", TFLITE)
def test_every_optimized_kernel_difference_is_explained_by_a_profile(name, digits):
    report = compare(FIXTURES / f"{name}.tflite", digits, "litert_optimized")
    layers = [s for s in report.stages if s.name.startswith("layer") and s.per_profile]
    assert len(layers) == 2 and report.unexplained == ()
    assert sum(s.differ for s in layers) > 0  # the optimized kernels do differ from the reference ...
    for stage in layers:  # ... and the measured profile reproduces every value of every layer
        assert ENGINE_PROFILES["litert_optimized"] in stage.explained_by
        assert stage.per_profile["single"] == stage.differ
    tables = [s for s in report.stages if s.name.endswith("table")]
    assert all(s.differ == 0 for s in tables)
    for m in report.mismatches:  # each detail: the engine's value is the double_up one, not single's
        assert m.engine == m.profiles["double_up"] != m.profiles["single"]
        assert set(m.profiles) == set(PROFILES)
    text = str(report)
    assert "double_up" in text and "acc*M" in text and "unexplained: none" in text


@pytest.mark.parametrize("name", ["digits_relu_per_channel", "digits_tanh"])  # every fixture: test_interop_tflite
def test_reference_kernels_agree_in_one_line(name, digits):
    report = compare(FIXTURES / f"{name}.tflite", digits, "litert_reference")
    assert report.agree and report.mismatches == ()
    assert "\n" not in str(report) and "agrees with nnref (single)" in str(report)


@pytest.mark.parametrize("name", ["digits_relu_per_tensor", "digits_sigmoid"])  # every fixture: test_interop_tflite
def test_default_path_is_explained_by_the_float32_profile(name, digits):
    report = compare(FIXTURES / f"{name}.tflite", digits)  # default: litert_default (XNNPACK)
    assert report.engine == "litert_default"
    layers = [s.name for s in report.stages if s.per_profile and s.name != "input"]
    assert layers == ["layer 0", "layer 1", "logits (end to end)"]
    for stage in report.stages:
        assert not stage.per_profile or "float32" in stage.explained_by or "reciprocal_half_even" in stage.explained_by
    assert report.unexplained == ()


def test_onnxruntime_on_an_exported_model_agrees(digits, tmp_path):
    to_onnx(from_tflite(FIXTURES / "digits_tanh.tflite"), tmp_path / "m.onnx")
    report = compare(tmp_path / "m.onnx", digits[:300])
    assert report.engine == "onnxruntime" and report.reference == "float32" and report.agree
    assert [s.name for s in report.stages] == ["input", "layer 0", "layer 0 table", "layer 1", "logits (end to end)"]


def test_bad_arguments(digits):
    with pytest.raises(ValueError, match="engine"):
        compare(FIXTURES / "digits_tanh.tflite", digits[:2], "onnxruntime")
    with pytest.raises(ValueError, match="x"):
        compare(FIXTURES / "digits_tanh.tflite", digits[:2, :10], "litert_reference")
    with pytest.raises(TypeError, match="model_path"):
        compare(None, digits[:2])
    with pytest.raises(ValueError, match="max_details"):
        compare(FIXTURES / "digits_tanh.tflite", digits[:2], max_details=-1)


def test_the_compare_command(capsys):
    status = main(["compare", str(FIXTURES / "digits_relu_per_tensor.tflite"), "--data", "digits",
                   "--engine", "litert_optimized", "--details", "2"])
    out = capsys.readouterr().out
    assert status == 0
    assert "litert_optimized vs nnref (single)" in out and out.count("  layer ") == 2
    with pytest.raises(SystemExit) as exc:  # checked before any work: one line, status 2
        main(["compare", str(FIXTURES / "missing.tflite")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("nnref: error: model:") and err.count("\n") == 1


def test_nnref_imports_without_the_extra_and_interop_names_it(monkeypatch, capsys):
    for module in ("onnx", "ai_edge_litert"):
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    for name in [n for n in sys.modules if n.startswith("nnref.interop")]:
        monkeypatch.delitem(sys.modules, name)
    import nnref.quant.profiles  # noqa: F401 - the profiles need no extra

    with pytest.raises(ImportError, match=r"pip install nnref\[interop\].*missing: onnx, ai-edge-litert"):
        import nnref.interop  # noqa: F401
    with pytest.raises(SystemExit) as exc:
        main(["compare", "model.tflite"])
    assert exc.value.code == 2
    assert "pip install nnref[interop]" in capsys.readouterr().err


README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_the_readme_compare_block_is_what_the_command_prints(capsys):
    block = README.split("## nnref as an engine's oracle")[1].split("```\n")[2]  # the output block
    main(["compare", "tests/fixtures/digits_relu_per_channel.tflite", "--data", "digits",
          "--engine", "litert_optimized", "--details", "4"])
    assert capsys.readouterr().out.strip() == block.strip()


def test_the_readme_engine_table_is_what_compare_measures(digits, tmp_path):
    path = FIXTURES / "digits_relu_per_channel.tflite"
    to_onnx(from_tflite(path), tmp_path / "m.onnx")
    section = README.split("## nnref as an engine's oracle")[1].split("## Figures")[0]
    for engine in ("litert_reference", "litert_optimized", "litert_default", "onnxruntime"):
        report = compare(tmp_path / "m.onnx" if engine == "onnxruntime" else path, digits, engine)
        logits = report.stages[-1]
        row = next(line for line in section.splitlines() if line.startswith(f"| `{engine}` |"))
        assert f"`{ENGINE_PROFILES[engine]}`" in row and ENGINE_PROFILES[engine] in logits.explained_by
        assert row.endswith(f"| {logits.per_profile['float64']:,} of {logits.values:,} |")
