"""The README's commands and example stay true."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_ci_runs_exactly_the_readme_test_command():
    block = re.search(r"## The two commands.*?```bash\n(.*?)```", README, flags=re.S).group(1)
    install, test = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert install == "pip install -r requirements.txt && python -m nnref"
    ci = (ROOT / ".ci" / "run").read_text()
    assert test in ci.splitlines(), f"{test!r} must be a line of .ci/run"
    assert "-r requirements.txt" in ci


def test_the_python_example_runs(capsys):
    code = re.search(r"## A taste.*?```python\n(.*?)```", README, flags=re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "clipped" in printed


def test_every_figure_the_readme_shows_exists():
    for name in re.findall(r"\(figures/([\w.-]+\.png)\)", README):
        assert (ROOT / "figures" / name).is_file(), name
