"""The machinery of the public laws: a law, an exercise, running them, and the report.

A *law* is a hypothesis strategy of keyword arguments (a case) and a ``verify(fn, case)``
that calls the function under test and raises :class:`LawViolation` (with the expected and
the received value) when the law does not hold. A *worked value* is a law with one fixed
case. :func:`run_law` searches for a failing case with :func:`hypothesis.find`
(derandomized, no example database, so every run gives the same report) and returns
hypothesis's shrunk counterexample. Nothing here ever raises because the function under
test is wrong: an exception inside it is a failed law, reported with its message.
"""

from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from hypothesis import HealthCheck, Phase, find, settings
from hypothesis.errors import NoSuchExample, Unsatisfiable

__all__ = [
    "Law",
    "Exercise",
    "LawViolation",
    "LawResult",
    "Report",
    "run_law",
    "run_exercise",
    "resolve",
    "show",
]


class LawViolation(AssertionError):
    """Raised by a law's ``verify`` when the function under test breaks the law.

    Parameters
    ----------
    message : str
        What went wrong, in words.
    expected, received : object, optional
        The value the law demands and the value the function returned.
    """

    def __init__(self, message: str, expected: Any = None, received: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.expected = expected
        self.received = received


@dataclass(frozen=True)
class Law:
    """One law (or one worked value) that a function must obey.

    Parameters
    ----------
    name : str
        Short identifier, unique within its exercise.
    statement : str
        The law in one sentence (shown in reports).
    cases : hypothesis strategy
        Strategy of ``dict`` keyword arguments; ``st.just(case)`` for a worked value.
    verify : callable
        ``verify(fn, case)``: calls ``fn`` and raises :class:`LawViolation` if the law fails.
    max_examples : int
        Examples searched by default (1 for a worked value).
    """

    name: str
    statement: str
    cases: Any
    verify: Callable[[Callable, dict], None]
    max_examples: int = 40


@dataclass(frozen=True)
class Exercise:
    """A named formula: its reference implementation, where it is taught, and its laws.

    Parameters
    ----------
    name : str
        The function's name (what a student's function must be called).
    tutorial : str
        Two-digit number of the tutorial that teaches it.
    reference : str
        ``"module:attribute"`` of nnref's implementation, imported when first asked for.
    summary : str
        One line: what the function computes.
    laws : tuple of Law
        Its laws and worked values, in the order they are reported.
    """

    name: str
    tutorial: str
    reference: str
    summary: str
    laws: tuple = field(default_factory=tuple)


@dataclass
class LawResult:
    """The outcome of one law: passed, or failed with the shrunk counterexample."""

    law: str
    statement: str
    passed: bool
    inputs: dict | None = None
    expected: Any = None
    received: Any = None
    message: str = ""

    def __str__(self) -> str:
        if self.passed:
            return f"  passed  {self.law}: {self.statement}"
        lines = [f"  FAILED  {self.law}: {self.statement}", f"          {self.message}"]
        if self.inputs is not None:
            lines.append("          inputs:   " + _indent(show(self.inputs)))
        if self.expected is not None or self.received is not None:
            lines.append("          expected: " + _indent(show(self.expected)))
            lines.append("          received: " + _indent(show(self.received)))
        return "\n".join(lines)


@dataclass
class Report:
    """Every law of one exercise run on one function. ``passed`` is True when all passed."""

    name: str
    results: list

    @property
    def passed(self) -> bool:
        """Whether every law and worked value held."""
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list:
        """The :class:`LawResult` of every law that failed."""
        return [r for r in self.results if not r.passed]

    def __str__(self) -> str:
        n_ok = sum(r.passed for r in self.results)
        head = f"{self.name}: {'passed' if self.passed else 'FAILED'} ({n_ok} of {len(self.results)} laws hold)"
        return "\n".join([head, *(str(r) for r in self.results)])


def _indent(text: str) -> str:
    return text.replace("\n", "\n" + " " * 20)


def show(value: Any) -> str:
    """A readable, exact rendering of law inputs and results (arrays with all digits)."""
    with np.printoptions(precision=17, threshold=60, edgeitems=4, linewidth=100):
        if isinstance(value, dict):
            return ", ".join(f"{k}={show(v)}" for k, v in value.items())
        if isinstance(value, np.ndarray):
            if value.ndim == 0:
                return f"np.{value.dtype}({value.item()!r})"
            return f"np.{value.dtype}({np.array2string(value, separator=', ')})"
        if isinstance(value, (list, tuple)):
            inner = ", ".join(show(v) for v in value)
            return f"[{inner}]" if isinstance(value, list) else f"({inner})"
        return repr(value)


def resolve(path: str) -> Callable:
    """Import ``"package.module:attribute"`` and return the attribute."""
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


class _Raised(Exception):
    """The function under test raised; carries its exception."""


def _guard(fn: Callable) -> Callable:
    def guarded(*args, **kwargs):
        try:
            with np.errstate(all="ignore"):  # a wrong function's NaN warnings are not the report
                return fn(*args, **kwargs)
        except Exception as exc:  # any exception of a student's function is a failed law
            raise _Raised(exc) from exc

    return guarded


def _outcome(fn: Callable, law: Law, case: dict) -> LawResult | None:
    """None if the law holds on ``case``; else the failed result (inputs copied before the call)."""
    inputs = copy.deepcopy(case)
    try:
        law.verify(_guard(fn), copy.deepcopy(case))
    except LawViolation as v:
        return LawResult(law.name, law.statement, False, inputs, v.expected, v.received, v.message)
    except _Raised as r:
        exc = r.args[0]
        return LawResult(law.name, law.statement, False, inputs, message=f"raised {type(exc).__name__}: {exc}")
    except Exception as exc:  # the result could not even be read (wrong type, shape, ...)
        msg = f"result unusable ({type(exc).__name__}: {exc})"
        return LawResult(law.name, law.statement, False, inputs, message=msg)
    return None


def _settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
    )


class _ShrinkBudgetSpent(Exception):
    """Stops hypothesis's shrinking after a fixed number of calls (the best case so far stays)."""


SHRINK_CALLS = 150
"""Calls allowed after the first failure to shrink the counterexample (keeps a wrong
function's report fast; the case reported is the smallest failing one found by then)."""


def run_law(fn: Callable, law: Law, max_examples: int | None = None, shrink_calls: int = SHRINK_CALLS) -> LawResult:
    """Search for a case where ``fn`` breaks ``law``; the shrunk one if found.

    ``shrink_calls`` bounds the calls spent shrinking after the first failure (0: report
    the first failing case as found).
    """
    n = law.max_examples if max_examples is None or law.max_examples == 1 else max(1, int(max_examples))
    state = {"failed": None, "calls_after": 0}

    def fails(case: dict) -> bool:
        if state["failed"] is not None:
            state["calls_after"] += 1
            if state["calls_after"] > shrink_calls:
                raise _ShrinkBudgetSpent
        result = _outcome(fn, law, case)
        if result is not None:
            state["failed"] = result
        return result is not None

    try:
        found = find(law.cases, fails, settings=_settings(n))
    except (NoSuchExample, Unsatisfiable):
        return LawResult(law.name, law.statement, True)
    except Exception:  # the shrink budget spent (hypothesis may wrap it as a flaky failure)
        if state["failed"] is None:
            raise
        return state["failed"]
    result = _outcome(fn, law, found)
    if result is None:  # flaky function (passes on a second call): report the case anyway
        return LawResult(law.name, law.statement, False, copy.deepcopy(found),
                         message="failed once on these inputs, then passed: the function is not deterministic")
    return result


def run_exercise(exercise: Exercise, fn: Callable, max_examples: int | None = None,
                 shrink_calls: int = SHRINK_CALLS, stop_at_first_failure: bool = False) -> Report:
    """Run every law of ``exercise`` on ``fn``; never raises for a wrong ``fn``.

    ``stop_at_first_failure`` leaves out the laws after the first that fails (for quick
    screening, e.g. of a catalogue of wrong implementations).
    """
    if not callable(fn):
        results = [LawResult(law.name, law.statement, False, message=f"not callable: {fn!r}") for law in exercise.laws]
        return Report(exercise.name, results)
    results = []
    for law in exercise.laws:
        results.append(run_law(fn, law, max_examples, shrink_calls))
        if stop_at_first_failure and not results[-1].passed:
            break
    return Report(exercise.name, results)
