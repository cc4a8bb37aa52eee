"""Every tutorial runs as a plain script, under Agg, and writes its figures.

The tutorials run as subprocesses (as a student runs them: ``python tutorials/NN.py``),
two at a time on the 2-core CI machine, with ``NNREF_FIGURES_DIR`` pointing at a
temporary folder so the committed ``figures/`` is not touched. Each PNG a tutorial writes
must also be committed in ``figures/`` (the gallery is produced by code, and stays in
step with it).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))
TIME_LIMIT_S = 60


def _run(path: Path, out_dir: Path) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MPLBACKEND="Agg", NNREF_FIGURES_DIR=str(out_dir))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(path)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=4 * TIME_LIMIT_S)
    return {"proc": proc, "seconds": time.perf_counter() - t0, "out": out_dir}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    base = tmp_path_factory.mktemp("tutorial_figures")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {p.name: pool.submit(_run, p, base / p.stem) for p in TUTORIALS}
        return {name: f.result() for name, f in futures.items()}


def test_there_are_seven_tutorials_numbered_in_order():
    numbers = [int(p.name[:2]) for p in TUTORIALS]
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(numbers) >= 7


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_is_a_jupytext_percent_notebook(path):
    text = path.read_text()
    assert text.startswith("# ---\n# jupyter:"), "jupytext header first"
    assert "format_name: percent" in text
    markdown = re.findall(r"^# %% \[markdown\]", text, flags=re.M)
    code = re.findall(r"^# %%\s*$", text, flags=re.M)
    assert len(markdown) >= 5 and len(code) >= 5, "steps alternate text and code"
    assert re.search(r"\$\$?[^$]*\\[a-zA-Z]+", text), "the markdown cells carry equations in LaTeX"
    assert re.search(r"^# #+ .*Summary", text, flags=re.M | re.I), "ends with a summary"
    assert re.search(r"^# #+ .*Exercises", text, flags=re.M | re.I), "and exercises"
    assert "plt.show(" not in text


def declared_figures(path: Path) -> set[str]:
    """The figures a tutorial's first cell says it writes (its "**Figures written**" list)."""
    header = re.search(r"\*\*Figures? written\*\*(.*?)(?:\n#\s*\n|\n# %%)", path.read_text(), flags=re.S)
    assert header, f"{path.name}: the first cell lists the figures it writes"
    return set(re.findall(r"`(\d\d_[\w-]+\.png)`", header.group(1)))


def test_every_committed_tutorial_figure_has_its_tutorial():
    declared = set().union(*(declared_figures(p) for p in TUTORIALS))
    committed = {p.name for p in (ROOT / "figures").glob("[0-9][0-9]_*.png")}
    assert committed == declared, f"orphans: {committed - declared}, missing: {declared - committed}"


def test_a_tutorial_runs_from_inside_the_tutorials_folder(tmp_path):
    """As a student opening it in Jupyter would: the working directory is tutorials/."""
    env = dict(os.environ, MPLBACKEND="Agg", NNREF_FIGURES_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, TUTORIALS[0].name], cwd=ROOT / "tutorials", env=env,
                          capture_output=True, text=True, timeout=4 * TIME_LIMIT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {p.name for p in tmp_path.glob("*.png")} == declared_figures(TUTORIALS[0])


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs_and_writes_its_figures(results, path):
    r = results[path.name]
    proc = r["proc"]
    assert proc.returncode == 0, f"{path.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert r["seconds"] < TIME_LIMIT_S, f"{path.name} took {r['seconds']:.1f} s"
    written = sorted(p.name for p in r["out"].glob("*.png"))
    assert set(written) == declared_figures(path), "writes exactly the figures its first cell lists"
    prefix = path.name[:2] + "_"
    assert all(name.startswith(prefix) for name in written), written
    committed = {p.name for p in (ROOT / "figures").glob("*.png")}
    missing = [name for name in written if name not in committed]
    assert not missing, f"figures not committed in figures/ (regenerate them): {missing}"
    for name in written:
        assert (r["out"] / name).stat().st_size > 5000, f"{name} looks empty"


def test_course_guide_quotes_what_the_tutorials_print(results):
    """tutorials/COURSE.md's expected outputs are lines the tutorials print (07's QAT
    numbers depend on the machine's BLAS, as the guide says, and are not compared)."""
    guide = (ROOT / "tutorials" / "COURSE.md").read_text()
    rows = re.findall(r"^\| (\d\d) \| [\d.]+ \| [\d.]+ \| (.*) \|$", guide, flags=re.M)
    assert [num for num, _ in rows] == [p.name[:2] for p in TUTORIALS]
    for num, quotes in rows:
        if num == "07":
            continue
        out = results[next(p.name for p in TUTORIALS if p.name.startswith(num))]["proc"].stdout
        lines = re.findall(r"`([^`]+)`", quotes)
        assert lines
        for line in lines:
            assert line in out, f"COURSE.md quotes {line!r} for tutorial {num}; it does not print it"
