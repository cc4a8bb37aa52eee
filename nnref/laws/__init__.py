"""Public laws: check any implementation of nnref's formulas, nnref's own or a student's.

Every formula a course asks students to write (backward passes, the loss gradient,
optimizer updates, clipping, scale and zero point, quantization, fixed-point arithmetic,
the int8 layer) has hypothesis strategies, laws and exact worked values here, runnable
against any callable with the same signature::

    from nnref import laws
    laws.names()                                  # the exercises, in course order
    laws.reference("linear_backward")             # nnref's own function
    report = laws.check("linear_backward", my_linear_backward)
    print(report)                                 # one line per law; counterexamples
    report.passed

``check`` runs each law with :func:`hypothesis.find` (derandomized, no example database):
the same function gets the same report on every run, and a failing law shows
hypothesis's shrunk counterexample (inputs, expected, received). A function that raises
fails the law with its message; ``check`` itself never raises for a wrong function.
Requires hypothesis (installed by ``requirements.txt``).
"""

from __future__ import annotations

from nnref._checks import check_int_in_range, describe
from nnref.laws.catalog import EXERCISES
from nnref.laws.core import Exercise, Law, LawResult, LawViolation, Report, resolve, run_exercise

__all__ = ["names", "reference", "check", "exercise", "Exercise", "Law", "LawResult", "LawViolation", "Report"]


def names() -> list[str]:
    """The exercise names in course order.

    Returns
    -------
    list of str
        Tutorial 01's first; each is the name of the function a student writes.
    """
    return [e.name for e in EXERCISES]


def exercise(name: str) -> Exercise:
    """The exercise called ``name``.

    Parameters
    ----------
    name : str
        One of :func:`names`.

    Returns
    -------
    Exercise
        Its tutorial, reference path, summary and laws.

    Raises
    ------
    TypeError
        For a ``name`` that is not a str.
    ValueError
        For an unknown name (the message lists the names).
    """
    if not isinstance(name, str):
        raise TypeError(f"name: expected a str, one of {names()}, got {describe(name)}")
    for e in EXERCISES:
        if e.name == name:
            return e
    raise ValueError(f"name: expected one of {names()}, got {name!r}")


def reference(name: str):
    """nnref's own implementation of ``name``.

    Parameters
    ----------
    name : str
        One of :func:`names`.

    Returns
    -------
    callable
        The plain function (imported on first use).
    """
    ex = exercise(name)
    return resolve(ex.reference)


def check(name: str, fn, max_examples: int | None = None) -> Report:
    """Run every law and worked value of ``name`` on ``fn``.

    Parameters
    ----------
    name : str
        One of :func:`names`.
    fn : callable
        The implementation to check, with the signature of ``reference(name)``.
    max_examples : int, optional
        Examples searched per law (default: each law's own count, chosen so that all
        checks of all exercises take well under a minute). Worked values run once.

    Returns
    -------
    Report
        ``.passed``; ``.results``, one :class:`LawResult` per law (passed, or failed with
        the shrunk counterexample); a readable ``str()``.

    Raises
    ------
    TypeError
        ``name`` not a str; ``max_examples`` not an int.
    ValueError
        An unknown ``name``; ``max_examples < 1``. Never for a wrong ``fn`` (even one that
        is not callable, as a student's unfinished ``name = None``): what it gets wrong is
        the report.
    """
    ex = exercise(name)
    if max_examples is not None:
        max_examples = check_int_in_range(max_examples, "max_examples", 1, 10**6)
    return run_exercise(ex, fn, max_examples)
