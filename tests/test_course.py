"""Course mode: student versions, notebooks, and grading with ``python -m nnref check``."""

from __future__ import annotations

import ast
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nnref import course, laws
from nnref.cli import main

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    assert main(["exercises", "--out", str(out)]) == 0
    return out


def _bodies_of_reference(name: str) -> list[str]:
    """The reference's code lines (docstring left out), as a student must not see them."""
    src = inspect.getsource(laws.reference(name))
    node = ast.parse(src).body[0]
    body = node.body[1:] if isinstance(node.body[0], ast.Expr) else node.body
    lines = src.splitlines()
    code = [lines[i].split("#")[0].strip() for b in body for i in range(b.lineno - 1, b.end_lineno)]
    return [ln for ln in code if len(ln) > 12]


def test_there_are_at_least_fifteen_graded_exercises_across_the_tutorials():
    found = [n for p in TUTORIALS for n in course.exercise_names(p.read_text())]
    assert len(found) >= 15 and len(set(found)) == len(found)
    assert set(found) == set(laws.names()), "every law set is an exercise somewhere, and only those"


def test_fresh_exercises_are_all_not_attempted_and_exit_nonzero(student_dir, capsys):
    written = sorted(p.name for p in student_dir.iterdir())
    with_exercises = [p for p in TUTORIALS if course.exercise_names(p.read_text())]
    assert written == sorted([p.name for p in with_exercises] + [p.stem + ".ipynb" for p in with_exercises])
    capsys.readouterr()
    assert main(["check", str(student_dir)]) == 1
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.split() and ln.split()[0] in laws.names()]
    assert len(rows) == len(laws.names())
    assert all(ln.endswith("not attempted") for ln in rows)


def _replace_stubs_by_reference_calls(path: Path) -> None:
    def call(m):
        name = m.group(1)
        args = ", ".join(inspect.signature(laws.reference(name)).parameters)
        return f'    return laws.reference("{name}")({args})'

    text = re.sub(r'^    raise NotImplementedError\("(\w+): .*$', call, path.read_text(), flags=re.M)
    path.write_text(text)


def test_stubs_replaced_by_reference_calls_all_pass_exit_zero(student_dir, tmp_path, capsys):
    for p in student_dir.glob("*.py"):
        target = tmp_path / p.name
        target.write_text(p.read_text())
        _replace_stubs_by_reference_calls(target)
    capsys.readouterr()
    assert main(["check", str(tmp_path), "--max-examples", "8"]) == 0
    out = capsys.readouterr().out
    assert out.count(" passed\n") == len(laws.names())
    assert f"{len(laws.names())} passed, 0 failed, 0 not attempted" in out


def test_student_versions_hold_no_solution_text(student_dir):
    for p in student_dir.glob("*.py"):
        text = p.read_text()
        assert "laws.reference(" not in text, f"{p.name} binds nnref's solution"
        for name in course.exercise_names((ROOT / "tutorials" / p.name).read_text()):
            assert f"def {name}(" in text
            for line in _bodies_of_reference(name):
                assert line not in text, f"{p.name}: solution line of {name}: {line!r}"


def test_stub_has_the_references_signature_and_docstring():
    for name in laws.names():
        namespace = {"np": __import__("numpy")}
        exec(course.stub_source(name), namespace)
        stub, ref = namespace[name], laws.reference(name)
        assert inspect.signature(stub) == inspect.signature(ref).replace(
            parameters=[p.replace(annotation=inspect.Parameter.empty) for p in inspect.signature(ref).parameters.values()],
            return_annotation=inspect.Signature.empty)
        assert inspect.getdoc(stub) == inspect.getdoc(ref)
        with pytest.raises(NotImplementedError, match=name):
            stub(*[None] * sum(p.default is inspect.Parameter.empty for p in inspect.signature(ref).parameters.values()))


def test_student_version_changes_only_the_exercise_cells():
    for p in TUTORIALS:
        text = p.read_text()
        _, tutorial = course.parse_percent(text)
        _, student = course.parse_percent(course.student_version(text))
        assert len(tutorial) == len(student)
        for a, b in zip(tutorial, student):
            assert (a.source == b.source) != ("exercise" in a.tags), a.source


def test_student_notebook_runs_top_to_bottom_from_its_folder(student_dir, tmp_path):
    """Everything else runs as in the tutorial; the check cell reports the stubs. The
    notebook's code cells run as one script, from the notebook's own folder."""
    env = dict(os.environ, MPLBACKEND="Agg", NNREF_FIGURES_DIR=str(tmp_path))
    nb = json.loads((student_dir / (TUTORIALS[0].stem + ".ipynb")).read_text())
    script = student_dir / "notebook_cells.py"
    script.write_text(course.notebook_code(nb))
    try:
        proc = subprocess.run([sys.executable, script.name], cwd=student_dir, env=env, capture_output=True,
                              text=True, timeout=240)
    finally:
        script.unlink()
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "linear_backward: FAILED" in proc.stdout
    assert "NotImplementedError: linear_backward: write it" in proc.stdout


def test_check_grades_a_notebook_and_reports_the_failed_law(tmp_path, capsys):
    text = course.student_version(TUTORIALS[0].read_text())
    good = "def relu_backward(x, grad_out):\n    return grad_out * (x > 0)\n"
    bad = "def leaky_relu_backward(x, grad_out, alpha):\n    return np.where(x >= 0, grad_out, alpha * grad_out)\n"
    nb = course.percent_to_notebook(text + "\n# %%\n" + good + "\n# %%\n" + bad)
    path = tmp_path / "mine.ipynb"
    path.write_text(json.dumps(nb))
    capsys.readouterr()
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^relu_backward .* passed$", out, flags=re.M)
    assert "leaky_relu_backward" in out and "failed: law 'slopes'" in out
    assert "inputs:" in out and "expected:" in out and "received:" in out
    assert re.search(r"^linear_backward .* not attempted$", out, flags=re.M)


def test_check_runs_definitions_only_not_cells(tmp_path, capsys):
    path = tmp_path / "student.py"
    path.write_text("import numpy as np\nraise SystemExit('cells must not run')\nSLOPE = 0\n"
                    "def relu_backward(x, grad_out):\n    return grad_out * (x > SLOPE)\n")
    assert main(["check", str(path)]) == 0
    assert "relu_backward" in capsys.readouterr().out


def test_check_refuses_a_missing_path_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["check", str(tmp_path / "nothing.py")])
    assert exc.value.code == 2
    assert capsys.readouterr().err.startswith("nnref: error: path: ")


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_committed_notebook_equals_its_percent_source(path):
    """tutorials/NN.ipynb is generated by `python -m nnref notebooks`; regenerate after editing."""
    nb_path = path.with_suffix(".ipynb")
    assert nb_path.exists(), f"missing {nb_path.name}: run python -m nnref notebooks"
    assert nb_path.read_text() == course.notebook_json(path.read_text()), f"{nb_path.name} is stale"


def test_notebook_is_valid_nbformat_and_keeps_code_and_text():
    text = TUTORIALS[0].read_text()
    nb = course.percent_to_notebook(text)
    assert nb["nbformat"] == 4 and nb["nbformat_minor"] == 5
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    ids = [c["id"] for c in nb["cells"]]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"[a-zA-Z0-9-_]{1,64}", i) for i in ids)
    for cell in nb["cells"]:
        assert set(cell) >= {"cell_type", "id", "metadata", "source"}
        assert all(isinstance(s, str) for s in cell["source"])
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
    _, cells = course.parse_percent(text)
    assert [c["cell_type"] for c in nb["cells"]] == [c.kind for c in cells]
    markdown = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    assert "# 01 · Manual backprop" in markdown and "$y = xW + b$" in markdown
    code = course.notebook_code(nb)
    compile(code, "notebook", "exec")
    assert "import numpy as np" in code and "# %%" not in code


def test_readme_course_mode_example_prints_what_it_shows(capsys):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Course mode"):]
    code, shown = re.search(r"```python\n(.*?)```\n\n```\n(.*?)```", section, flags=re.S).groups()
    exec(compile(code, "README.md", "exec"), {})
    assert capsys.readouterr().out == shown
