"""Course mode: student versions of the tutorials, notebooks, and grading by the laws.

The tutorials (``tutorials/NN_*.py``, jupytext percent format) mark each graded exercise
with a code cell tagged ``exercise`` that binds nnref's own function::

    # %% tags=["exercise"]
    linear_backward = laws.reference("linear_backward")

* :func:`student_version` replaces that binding by a stub with the function's own
  signature and docstring and the body ``raise NotImplementedError``; everything else
  stays, so the student file runs as the tutorial does (its check cells then print
  failing reports until the student writes the function).
* :func:`percent_to_notebook` turns a percent-format script into an ``.ipynb`` (nbformat
  4.5 JSON, written with :mod:`json`): notebooks open in Jupyter without jupytext.
* :func:`grade` reads a student's ``.py`` or ``.ipynb`` (or a folder of them), runs only
  its imports, function definitions and exercise bindings (not its cells: no training),
  and checks every function named after an exercise with :func:`nnref.laws.check`.

Command line: ``python -m nnref exercises --out DIR``, ``python -m nnref check PATH``,
``python -m nnref notebooks`` (see :func:`add_exercises_arguments` and friends).
"""

from __future__ import annotations

import ast
import inspect
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnref import laws
from nnref._checks import check_int_in_range, describe
from nnref._files import as_path, atomic_write, check_writable_dir
from nnref.laws.core import show

__all__ = [
    "Cell", "parse_percent", "percent_to_notebook", "notebook_code", "stub_source", "student_version",
    "write_exercises", "write_tutorial_notebooks", "grade", "Grade", "tutorials_dir",
    "add_exercises_arguments", "run_exercises", "add_check_arguments", "run_check",
    "add_notebooks_arguments", "run_notebooks",
]

EXERCISE_TAG = "exercise"
_CELL = re.compile(r"^# %%(?P<md> \[markdown\])?(?P<meta>.*)$")
_BINDING = re.compile(r'^(?P<name>\w+) = (?:nnref\.)?laws\.reference\("(?P=name)"\)\s*$', re.M)


def tutorials_dir() -> Path:
    """The checkout's ``tutorials/`` folder (nnref is installed editable from its checkout)."""
    return Path(__file__).resolve().parent.parent / "tutorials"


# ---------------------------------------------------------------- percent format and notebooks

@dataclass
class Cell:
    """One cell of a percent-format script: ``kind`` is ``"markdown"`` or ``"code"``."""

    kind: str
    source: str
    tags: list


def _check_text(text) -> None:
    """Refuse a ``text`` that is not a str (bytes must be decoded first)."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected the script as a str, got {describe(text)}")


def _tutorial_files(source_dir) -> list:
    """The ``NN_name.py`` tutorials of ``source_dir`` (default: :func:`tutorials_dir`)."""
    folder = tutorials_dir() if source_dir is None else as_path(source_dir, "source_dir")
    if not folder.is_dir():
        raise ValueError(f"source_dir: expected a folder of tutorials, got {str(folder)!r}")
    files = sorted(folder.glob("[0-9][0-9]_*.py"))
    if not files:
        raise ValueError(f"source_dir: expected tutorials named NN_name.py in {str(folder)!r}, found none")
    return files


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically: a failed write leaves the old file."""
    data = text.encode("utf-8")
    atomic_write(path, lambda f: f.write(data))


def parse_percent(text: str) -> tuple[str, list]:
    """Split a jupytext percent-format script into its header and its cells.

    Parameters
    ----------
    text : str
        The script: an optional ``# ---`` YAML header, then cells opened by ``# %%``
        (code, optionally ``tags=["..."]``) or ``# %% [markdown]``.

    Returns
    -------
    header : str
        The header lines (empty if there is none).
    cells : list of Cell
        Markdown lines lose their leading ``# `` (``#`` alone is an empty line); leading
        and trailing blank lines of each cell are dropped; tags are kept.
    """
    _check_text(text)
    lines = text.splitlines()
    header = []
    if lines and lines[0] == "# ---":
        end = lines.index("# ---", 1)
        header, lines = lines[: end + 1], lines[end + 1:]
    raw = []  # (kind, tags, lines)
    for line in lines:
        m = _CELL.match(line)
        if m:
            tags = re.findall(r'"([^"]+)"', m.group("meta")) if "tags=" in m.group("meta") else []
            raw.append(("markdown" if m.group("md") else "code", tags, []))
        elif raw:
            raw[-1][2].append(_uncomment(line) if raw[-1][0] == "markdown" else line)
    return "\n".join(header), [Cell(kind, "\n".join(body).strip("\n"), tags) for kind, tags, body in raw]


def _uncomment(line: str) -> str:
    return line[2:] if line.startswith("# ") else ("" if line == "#" else line)


def percent_to_notebook(text: str) -> dict:
    """The notebook of a percent-format script.

    Parameters
    ----------
    text : str
        A jupytext percent-format script.

    Returns
    -------
    dict
        nbformat 4.5 JSON (cells with ids ``cell-000``, ...; code cells without outputs;
        tags in each cell's metadata; a Python 3 kernelspec), ready for :func:`json.dumps`.

    Notes
    -----
    Written with :mod:`json` only, so generating and opening the notebooks needs neither
    jupytext nor nbformat.
    """
    _, cells = parse_percent(text)
    out = []
    for i, cell in enumerate(cells):
        source = cell.source.splitlines(keepends=True)
        entry = {"cell_type": cell.kind, "id": f"cell-{i:03d}", "metadata": {"tags": cell.tags} if cell.tags else {},
                 "source": source}
        if cell.kind == "code":
            entry.update(execution_count=None, outputs=[])
        out.append(entry)
    meta = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"}}
    return {"cells": out, "metadata": meta, "nbformat": 4, "nbformat_minor": 5}


def notebook_json(text: str) -> str:
    """The ``.ipynb`` file's text for a percent-format script (stable: sorted, indented)."""
    return json.dumps(percent_to_notebook(text), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def notebook_code(nb: dict) -> str:
    """The code cells of a notebook as one script.

    Parameters
    ----------
    nb : dict
        A notebook as loaded by :func:`json.load`.

    Returns
    -------
    str
        The code cells joined by blank lines; IPython magics and shell lines (``%...``,
        ``!...``) are dropped.
    """
    if not isinstance(nb, dict) or not isinstance(nb.get("cells", []), list) or not all(
            isinstance(c, dict) for c in nb.get("cells", [])):
        raise TypeError(f"nb: expected a notebook dict with a list of cell dicts, got {describe(nb)}")
    chunks = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            src = cell.get("source", "")
            src = "".join(src) if isinstance(src, list) else src
            chunks.append("\n".join(ln for ln in src.splitlines() if not ln.lstrip().startswith(("%", "!"))))
    return "\n\n".join(chunks) + "\n"


# ---------------------------------------------------------------- student versions

def _default(value) -> str:
    if isinstance(value, type) and value.__module__ == "numpy":
        return f"np.{value.__name__}"
    return repr(value)


def stub_source(name: str) -> str:
    """The stub of an exercise, made from nnref's own function.

    Parameters
    ----------
    name : str
        One of :func:`nnref.laws.names`.

    Returns
    -------
    str
        ``def name(...)`` with the reference's parameters and defaults (annotations
        dropped), its docstring, and the body ``raise NotImplementedError(...)``.
    """
    fn = laws.reference(name)
    params = []
    for p in inspect.signature(fn).parameters.values():
        params.append(p.name if p.default is inspect.Parameter.empty else f"{p.name}={_default(p.default)}")
    doc = inspect.getdoc(fn) or ""
    quote = 'r"""' if "\\" in doc else '"""'
    body = "\n".join(("    " + ln) if ln else "" for ln in doc.splitlines())
    closing = '"""' if "\n" not in doc else '\n    """'  # a one-line docstring closes on its line
    return (f"def {name}({', '.join(params)}):\n    {quote}{body.lstrip()}{closing}\n"
            f"    raise NotImplementedError(\"{name}: write it (then: python -m nnref check this file)\")")


def student_version(text: str) -> str:
    """The student version of a tutorial.

    Parameters
    ----------
    text : str
        A tutorial in percent format.

    Returns
    -------
    str
        The same script with each ``name = laws.reference("name")`` line of a cell tagged
        ``exercise`` replaced by :func:`stub_source` of ``name``; every other line as is.
    """
    _check_text(text)
    out, in_exercise = [], False
    for line in text.splitlines():
        m = _CELL.match(line)
        if m:
            in_exercise = EXERCISE_TAG in re.findall(r'"([^"]+)"', m.group("meta"))
        b = _BINDING.match(line)
        if in_exercise and b:
            out.extend(stub_source(b.group("name")).splitlines())
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def exercise_names(text: str) -> list:
    """The exercises a tutorial binds in its exercise cells, in order."""
    return [m.group("name") for m in _BINDING.finditer(text)]


def write_exercises(out_dir, source_dir=None) -> list:
    """Write the student version of every tutorial that has exercises.

    Parameters
    ----------
    out_dir : path
        Created if missing; ``NN_name.py`` and ``NN_name.ipynb`` are written into it.
    source_dir : path, optional
        The tutorials (default: :func:`tutorials_dir`).

    Returns
    -------
    list of Path
        The files written (each atomically: a failed write leaves the previous file).

    Raises
    ------
    TypeError
        A path that is not a path.
    ValueError
        ``out_dir`` under a file or not writable; ``source_dir`` not a folder of tutorials.
    """
    files = _tutorial_files(source_dir)
    out_dir = check_writable_dir(out_dir, "out_dir")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in files:
        text = path.read_text()
        if not exercise_names(text):
            continue
        student = student_version(text)
        for target, content in ((out_dir / path.name, student),
                                (out_dir / (path.stem + ".ipynb"), notebook_json(student))):
            _write_text(target, content)
            written.append(target)
    return written


def write_tutorial_notebooks(source_dir=None) -> list:
    """Write ``NN_name.ipynb`` beside every tutorial ``NN_name.py`` (the committed notebooks).

    Parameters
    ----------
    source_dir : path, optional
        The tutorials (default: :func:`tutorials_dir`).

    Returns
    -------
    list of Path
        The notebooks written (each atomically).

    Raises
    ------
    TypeError
        ``source_dir`` not a path.
    ValueError
        ``source_dir`` not a folder of tutorials.
    """
    written = []
    for path in _tutorial_files(source_dir):
        target = path.with_suffix(".ipynb")
        _write_text(target, notebook_json(path.read_text()))
        written.append(target)
    return written


# ---------------------------------------------------------------- grading

@dataclass
class Grade:
    """One exercise found in a student's file: ``status`` is ``"passed"``, ``"failed"`` or
    ``"not attempted"``; ``report`` the laws' report when it was checked."""

    name: str
    path: Path
    status: str
    report: object = None
    error: str = ""

    def row(self) -> str:
        """One line of the ``check`` command's table (with the first failure for a failed grade)."""
        head = f"{self.name:<32} {self.path.name:<40} {self.status}"
        if self.status != "failed":
            return head
        if self.error:
            return f"{head}: {self.error}"
        first = self.report.failures[0]
        detail = [f"{head}: law '{first.law}' ({first.statement})", f"    {first.message}"]
        if first.inputs is not None:
            detail.append("    inputs:   " + show(first.inputs))
        if first.expected is not None or first.received is not None:
            detail.append("    expected: " + show(first.expected))
            detail.append("    received: " + show(first.received))
        return "\n".join(detail)


def _source(path: Path) -> str:
    text = path.read_text()
    return notebook_code(json.loads(text)) if path.suffix == ".ipynb" else text


def _is_stub(node: ast.FunctionDef) -> bool:
    body = node.body[1:] if (node.body and isinstance(node.body[0], ast.Expr)
                             and isinstance(node.body[0].value, ast.Constant)) else node.body
    if len(body) != 1 or not isinstance(body[0], ast.Raise) or body[0].exc is None:
        return False
    exc = body[0].exc.func if isinstance(body[0].exc, ast.Call) else body[0].exc
    return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"


def _definitions(tree: ast.Module, names: set) -> tuple[ast.Module, dict]:
    """The statements a grader runs (imports, defs, classes, constants, exercise bindings)
    and the exercises found, each ``True`` when attempted."""
    keep, found = [], {}
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.ClassDef)):
            keep.append(node)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            keep.append(node)
            if node.name in names:
                found[node.name] = not _is_stub(node)
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target = node.targets[0].id
            if target in names:
                keep.append(node)
                found[target] = True
            elif isinstance(node.value, ast.Constant):
                keep.append(node)
    return ast.Module(body=keep, type_ignores=[]), found


def grade_file(path, max_examples: int | None = None) -> list:
    """Check every exercise defined in one student file.

    Parameters
    ----------
    path : path
        A ``.py`` or ``.ipynb`` file.
    max_examples : int, optional
        Passed to :func:`nnref.laws.check`.

    Returns
    -------
    list of Grade
        One per exercise function (or exercise binding) the file defines, in course order.

    Notes
    -----
    Only the file's imports, function and class definitions, constant assignments and
    exercise bindings run; its other statements (training, plotting) do not.
    """
    path = Path(path)
    names = set(laws.names())
    try:
        tree = ast.parse(_source(path), filename=str(path))
    except (SyntaxError, ValueError) as exc:
        return [Grade("(file)", path, "failed", error=f"cannot be read: {type(exc).__name__}: {exc}")]
    module, found = _definitions(tree, names)
    namespace = {"__name__": "nnref_student_" + re.sub(r"\W", "_", path.stem), "np": np}
    try:
        exec(compile(module, str(path), "exec"), namespace)  # only imports and definitions
    except Exception as exc:  # a student's file that does not even define its functions
        return [Grade(n, path, "failed", error=f"{type(exc).__name__}: {exc}") for n in found]
    grades = []
    for name in sorted(found, key=laws.names().index):
        if not found[name]:
            grades.append(Grade(name, path, "not attempted"))
            continue
        report = laws.check(name, namespace[name], max_examples)
        grades.append(Grade(name, path, "passed" if report.passed else "failed", report))
    return grades


def grade(path, max_examples: int | None = None) -> list:
    """Grades of a student's ``.py`` / ``.ipynb`` file, or of every such file in a folder.

    In a folder holding both versions of a tutorial (``NN.py`` and ``NN.ipynb``, as
    ``exercises`` writes them) an exercise is graded in every file where it is attempted,
    and reported "not attempted" once when it is attempted in none.

    Raises
    ------
    TypeError
        ``path`` not a path; ``max_examples`` not an int.
    FileNotFoundError
        Nothing at ``path``.
    ValueError
        Not a ``.py``/``.ipynb`` file, or a folder without one; ``max_examples < 1``.
    """
    path = as_path(path, "path")
    if max_examples is not None:
        check_int_in_range(max_examples, "max_examples", 1, 10**6)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    files = sorted(p for p in path.iterdir() if p.suffix in (".py", ".ipynb")) if path.is_dir() else [path]
    if not files or any(p.suffix not in (".py", ".ipynb") for p in files):
        raise ValueError(f"path: expected a .py or .ipynb file or a folder holding some, got {str(path)!r}")
    grades = [g for f in files for g in grade_file(f, max_examples)]
    attempted = {g.name for g in grades if g.status != "not attempted"}
    kept, seen = [], set()
    for g in grades:
        if g.status == "not attempted" and (g.name in attempted or g.name in seen):
            continue
        seen.add(g.name)
        kept.append(g)
    order = {n: i for i, n in enumerate(laws.names())}
    return sorted(kept, key=lambda g: (order.get(g.name, -1), g.path.name))


# ---------------------------------------------------------------- command line

def add_exercises_arguments(parser) -> None:
    """Options of ``python -m nnref exercises``."""
    parser.add_argument("--out", required=True, help="folder for the student versions (.py and .ipynb)")
    parser.add_argument("--tutorials", default=None, help="tutorials folder (default: the checkout's)")


def run_exercises(args) -> int:
    """Write the student versions; print what was written."""
    written = write_exercises(args.out, args.tutorials)
    for p in written:
        print(p)
    source = Path(args.tutorials) if args.tutorials else tutorials_dir()
    n = sum(len(exercise_names((source / p.name).read_text())) for p in written if p.suffix == ".py")
    print(f"{n} graded exercises in {len(written) // 2} tutorials; check them with: python -m nnref check {args.out}")
    return 0


def add_check_arguments(parser) -> None:
    """Options of ``python -m nnref check``."""
    parser.add_argument("path", help="a student's .py or .ipynb, or a folder of them")
    parser.add_argument("--max-examples", type=int, default=None, help="examples per law (default: each law's own)")


def run_check(args) -> int:
    """Print one row per exercise; 0 only when something was attempted and all attempted pass."""
    path = Path(args.path)
    if not path.exists():
        print(f"path: {path} does not exist")
        return 2
    grades = grade(path, args.max_examples)
    for g in grades:
        print(g.row())
    attempted = [g for g in grades if g.status != "not attempted"]
    passed = sum(g.status == "passed" for g in attempted)
    print(f"{passed} passed, {len(attempted) - passed} failed, {len(grades) - len(attempted)} not attempted")
    return 0 if attempted and passed == len(attempted) else 1


def add_notebooks_arguments(parser) -> None:
    """Options of ``python -m nnref notebooks``."""
    parser.add_argument("--tutorials", default=None, help="tutorials folder (default: the checkout's)")


def run_notebooks(args) -> int:
    """Regenerate ``tutorials/NN_*.ipynb`` from the ``.py`` sources."""
    for p in write_tutorial_notebooks(args.tutorials):
        print(p)
    return 0
