"""nnref.laws: every exercise's laws pass nnref's own function, fail a stub, and catch the
catalogue of realistic wrong implementations (tests/wrong_implementations.py); the report
is readable, deterministic, and never raises for a wrong function."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from nnref import laws
from nnref.laws import catalog, core
from wrong_implementations import WRONG

NAMES = laws.names()
CASES = [(name, label) for name in NAMES for label in WRONG[name]]
CATALOGUE_EXAMPLES = 25  # per law, for the wrong implementations (worked values always run)


def test_names_are_in_course_order_and_cover_the_required_exercises():
    tutorials = [laws.exercise(n).tutorial for n in NAMES]
    assert tutorials == sorted(tutorials)
    required = {"linear_backward", "relu_backward", "leaky_relu_backward", "cross_entropy_loss_and_grad",
                "sgd_update", "adam_update", "clip_grads_by_value", "clip_grads_by_global_norm",
                "adaptive_clip_grad", "affine_qparams", "symmetric_qparams", "quantize_affine",
                "fake_quantize_affine_backward", "srdhm", "rdbpot", "mbqm_single", "linear_int8"}
    assert required <= set(NAMES)
    assert len(set(NAMES)) == len(NAMES) >= 15


def test_unknown_name_is_a_value_error_naming_the_choices():
    with pytest.raises(ValueError, match="linear_backward"):
        laws.check("linear_backwards", lambda *a: None)


@pytest.mark.parametrize("name", NAMES)
def test_reference_passes_every_law(name):
    report = laws.check(name, laws.reference(name))
    assert report.passed, str(report)
    assert len(report.results) == len(laws.exercise(name).laws) >= 2
    assert any(r.law.startswith("worked value") for r in report.results), "every exercise has a worked value"


@pytest.mark.parametrize("name", NAMES)
def test_stub_fails_every_law_with_its_message(name):
    def stub(*args, **kwargs):
        raise NotImplementedError("write me")

    # the first failing example is enough here (no shrinking: a stub fails every case)
    report = core.run_exercise(laws.exercise(name), stub, 5, shrink_calls=0)
    assert not report.passed and str(report).startswith(f"{name}: FAILED")
    assert all(not r.passed and "NotImplementedError: write me" in r.message for r in report.results)


@pytest.mark.parametrize("name, label", CASES, ids=[f"{n}: {lab}" for n, lab in CASES])
def test_catalogue_wrong_implementation_is_caught(name, label):
    # Screening: stop at the first failing law, without shrinking (check() itself runs all).
    report = core.run_exercise(laws.exercise(name), WRONG[name][label], CATALOGUE_EXAMPLES,
                               shrink_calls=0, stop_at_first_failure=True)
    assert not report.passed, f"{name}: {label!r} passed every law"
    failure = report.failures[0]
    assert failure.inputs is not None and failure.message


def test_catalogue_has_at_least_three_wrong_implementations_per_exercise():
    assert set(WRONG) == set(NAMES)
    assert all(len(v) >= 3 for v in WRONG.values())


def test_reference_signature_matches_the_laws_calls():
    """Each reference has the parameter names the exercise stubs will show."""
    for name in NAMES:
        sig = inspect.signature(laws.reference(name))
        assert list(sig.parameters), name
        assert laws.reference(name).__doc__, f"{name}: the stub's docstring comes from the reference"


def test_report_shows_the_shrunk_counterexample():
    def no_eps(grads, max_norm, eps=1e-6):
        total = float(np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads)))
        coef = min(max_norm / total, 1.0) if total else 1.0
        return [g * coef for g in grads], total

    report = laws.check("clip_grads_by_global_norm", no_eps)
    text = str(report)
    assert text.startswith("clip_grads_by_global_norm: FAILED")
    failed = [r for r in report.results if not r.passed]
    assert [r.law for r in failed] == ["PyTorch's rule", "worked value: total exactly max_norm = 5 is still "
                                       "scaled by 5 / (5 + 1e-6)", "worked value: [3, 4] and [0, 0, 12]: total 13, "
                                       "scaled by 5 / 13.000001"]
    worked = failed[1]
    np.testing.assert_array_equal(worked.received[0] if isinstance(worked.received, list) else worked.received,
                                  np.array([3.0]))
    assert "expected:" in text and "received:" in text and "inputs:" in text
    assert "passed  float32 range" in text


def test_check_is_deterministic():
    wrong = WRONG["leaky_relu_backward"]["slope 1 at x = 0"]
    first = str(laws.check("leaky_relu_backward", wrong))
    assert "FAILED" in first and first == str(laws.check("leaky_relu_backward", wrong))


@pytest.mark.parametrize("bad", [None, 42, "text", lambda *a, **k: None, lambda *a, **k: (1, 2, 3, 4, 5)])
def test_never_raises_for_a_wrong_function(bad):
    for name in ("linear_backward", "clip_grads_by_global_norm", "affine_qparams", "srdhm"):
        report = laws.check(name, bad, max_examples=3)
        assert not report.passed
        assert str(report)


def test_a_hand_written_function_passes():
    """The laws check any implementation, not only nnref's (the README's example)."""
    def relu_backward(x, grad_out):
        return np.where(x > 0, grad_out, 0.0)

    assert laws.check("relu_backward", relu_backward).passed


def test_every_reference_is_nnrefs_own_plain_function_of_that_name():
    """One source of truth: the laws check the library's own formula functions."""
    for ex in catalog.EXERCISES:
        assert ex.reference.startswith("nnref.") and ex.reference.endswith(":" + ex.name)
        assert not ex.reference.startswith("nnref.laws")
        fn = laws.reference(ex.name)
        assert callable(fn) and fn.__name__ == ex.name and fn is core.resolve(ex.reference)
