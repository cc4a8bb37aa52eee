"""The structural rules of nnref/ (issue 9), checked on the source with :mod:`ast`:

- no function longer than 60 lines of code (its docstring, blank and comment-only lines
  not counted), no module longer than 600 lines;
- no ``from X import _private`` across modules (the validation helpers of
  ``nnref._checks`` are the one shared private module);
- no import statement inside a function (an import hidden there is how cycles hide;
  the command line's one optional extra is loaded with ``importlib.import_module``);
- no import cycle among nnref's modules (a package counts as its ``__init__``);
- every public module, function, class and method has a docstring (a method overriding
  a documented method of an nnref base class inherits its docstring; a property's setter
  shares its getter's; the ``*_laws`` catalog builders of :mod:`nnref.laws` are documented
  by the statement of every law they return, which is what a student reads).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "nnref"
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 600


def _module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


MODULES = {}  # dotted name -> (path, is_package, source, tree)
for _path in sorted(PACKAGE.rglob("*.py")):
    _name, _is_pkg = _module_name(_path)
    _source = _path.read_text(encoding="utf-8")
    MODULES[_name] = (_path, _is_pkg, _source, ast.parse(_source, filename=str(_path)))


def _functions(tree: ast.AST):
    """Every function and method definition, nested ones included."""
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def code_lines(node: ast.AST, lines: list[str]) -> int:
    """Lines of ``node`` that hold code: not its docstring, not blank, not only a comment."""
    skip = set()
    body = getattr(node, "body", [])
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        skip = set(range(body[0].lineno, body[0].end_lineno + 1))
    count = 0
    for number in range(node.lineno, node.end_lineno + 1):
        text = lines[number - 1].strip()
        if number not in skip and text and not text.startswith("#"):
            count += 1
    return count


def _imported_module(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute name of the module a ``from ... import`` reads."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """Module -> the nnref modules it imports at import time."""
    graph = {}
    for name, (_, is_pkg, _, tree) in MODULES.items():
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                target = _imported_module(name, is_pkg, node)
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    deps.add(sub if sub in MODULES else target)
        graph[name] = {d for d in deps if d in MODULES and d != name}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


# ------------------------------------------------------------------------ the checks


def test_the_scan_sees_the_whole_package():
    assert {"nnref", "nnref.cli", "nnref.quant.qlayer", "nnref.clip.functions", "nnref.laws"} <= set(MODULES)
    assert len(MODULES) > 50


def test_no_function_over_60_lines_of_code():
    long = []
    for name, (_, _, source, tree) in MODULES.items():
        lines = source.splitlines()
        long += [f"{name}.{f.name} (line {f.lineno}): {code_lines(f, lines)} lines"
                 for f in _functions(tree) if code_lines(f, lines) > MAX_FUNCTION_LINES]
    assert not long, "functions over 60 lines of code:\n" + "\n".join(long)


def test_no_module_over_600_lines():
    big = [f"{name}: {len(source.splitlines())}" for name, (_, _, source, _) in MODULES.items()
           if len(source.splitlines()) > MAX_MODULE_LINES]
    assert not big, big


def test_no_private_name_imported_from_another_module():
    found = []
    for name, (_, is_pkg, _, tree) in MODULES.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = _imported_module(name, is_pkg, node)
                if target == "nnref._checks" or not target.startswith("nnref"):
                    continue
                found += [f"{name}: from {target} import {a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert not found, found


def test_no_import_statement_inside_a_function():
    hidden = [f"{name}.{f.name} (line {node.lineno})" for name, (_, _, _, tree) in MODULES.items()
              for f in _functions(tree) for node in ast.walk(f) if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert not hidden, hidden


def test_no_import_cycle():
    graph = import_graph()
    assert graph["nnref.cli"] >= {"nnref.pipeline", "nnref.course"}, "the scan follows relative imports"
    assert find_cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def _documented_methods() -> dict[str, tuple[list[str], set[str]]]:
    """Class name -> (base class names, names of its methods that have a docstring)."""
    out = {}
    for _, _, _, tree in MODULES.values():
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            bases = [b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in cls.bases]
            documented = {f.name for f in cls.body if isinstance(f, ast.FunctionDef) and ast.get_docstring(f)}
            out[cls.name] = (bases, documented)
    return out


def _inherits_doc(cls_bases: list[str], method: str, classes: dict) -> bool:
    seen, todo = set(), list(cls_bases)
    while todo:
        base = todo.pop()
        if base in seen or base not in classes:
            continue
        seen.add(base)
        if method in classes[base][1]:
            return True
        todo += classes[base][0]
    return False


def _is_setter(f: ast.FunctionDef) -> bool:
    return any(isinstance(d, ast.Attribute) and d.attr in ("setter", "deleter") for d in f.decorator_list)


def test_every_public_module_function_class_and_method_has_a_docstring():
    classes = _documented_methods()
    missing = []
    for name, (_, _, _, tree) in MODULES.items():
        if not ast.get_docstring(tree):
            missing.append(f"module {name}")
        for node in tree.body:
            if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) or node.name.startswith("_"):
                continue
            law_builder = name.startswith("nnref.laws.") and node.name.endswith("_laws")
            if not ast.get_docstring(node) and not law_builder:
                missing.append(f"{name}.{node.name}")
            if isinstance(node, ast.ClassDef):
                bases = classes[node.name][0]
                missing += [f"{name}.{node.name}.{f.name}" for f in node.body
                            if isinstance(f, ast.FunctionDef) and not f.name.startswith("_")
                            and not ast.get_docstring(f) and not _is_setter(f)
                            and not _inherits_doc(bases, f.name, classes)]
    assert not missing, "without a docstring:\n" + "\n".join(missing)


@pytest.mark.parametrize("source, expected", [
    ('def f():\n    """Doc\n    string."""\n\n    # why\n    x = 1\n    return x\n', 3),
    ("def f(): return 1\n", 1),
])
def test_code_lines_counts_code_only(source, expected):
    tree = ast.parse(source)
    assert code_lines(tree.body[0], source.splitlines()) == expected
