"""A check's policy and the gate's decision, as a specification with literal data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from canary_operators.judge import Gate, Outcome, ProviderFailure, Verdict, evaluate_check, judge
from tests.judge.data import BAKED, BAKING, ERRORS, GOOD, HARD_TIMEOUT, P99, SRM, TIMED_OUT, counts, periods


# -- policies -----------------------------------------------------------------------------------------

def test_no_data_holds_until_the_timeout_then_the_policy_applies():
    assert evaluate_check(ERRORS, None, BAKED).verdict is Verdict.NO_DATA
    failed = evaluate_check(ERRORS, None, TIMED_OUT)
    assert failed.verdict is Verdict.FAIL and failed.reason == "no_data at the gate timeout: no measurement"
    ignored = ERRORS.model_copy(update={"on_no_data": "ignore"})
    assert evaluate_check(ignored, None, TIMED_OUT).verdict is Verdict.IGNORED
    held = ERRORS.model_copy(update={"on_no_data": "hold"})
    assert evaluate_check(held, None, TIMED_OUT).verdict is Verdict.NO_DATA
    assert evaluate_check(held, None, HARD_TIMEOUT).verdict is Verdict.FAIL


def test_inconclusive_at_timeout_follows_on_inconclusive():
    m = counts("errors", 3, 300, 40, 20000)
    assert evaluate_check(ERRORS, m, TIMED_OUT).verdict is Verdict.FAIL
    assert evaluate_check(ERRORS.model_copy(update={"on_inconclusive": "ignore"}), m, TIMED_OUT).verdict is Verdict.IGNORED


def test_provider_errors_hold_until_exhausted():
    assert evaluate_check(ERRORS, ProviderFailure("HTTP 503"), BAKED).verdict is Verdict.ERROR
    failed = evaluate_check(ERRORS, ProviderFailure("HTTP 503 (down for 61s)", exhausted=True), BAKED)
    assert failed.verdict is Verdict.FAIL and "error by on_error: metrics backend error: HTTP 503" in failed.reason
    ignore = ERRORS.model_copy(update={"on_error": "ignore"})
    assert evaluate_check(ignore, ProviderFailure("x", exhausted=True), BAKED).verdict is Verdict.IGNORED


# -- the gate decision ----------------------------------------------------------------------------------

def test_all_pass_after_bake_advances():
    d = judge([ERRORS, P99], GOOD, BAKED)
    assert d.outcome is Outcome.ADVANCE
    assert [c.verdict for c in d.checks] == [Verdict.PASS, Verdict.PASS]


def test_all_pass_during_bake_holds():
    d = judge([ERRORS, P99], GOOD, BAKING)
    assert d.outcome is Outcome.HOLD and d.reason == "all checks pass; baking"


def test_a_failure_rolls_back_at_once_even_during_bake():
    d = judge([ERRORS, P99], {**GOOD, "errors": counts("errors", 30, 1000, 40, 20000)}, BAKING)
    assert d.outcome is Outcome.ROLLBACK and d.reason.startswith("errors: error rate 3.00% vs baseline 0.20%")


def test_a_failure_wins_over_missing_data():
    assert judge([ERRORS, P99], {"errors": counts("errors", 30, 1000, 40, 20000)}, BAKED).outcome is Outcome.ROLLBACK


def test_missing_data_holds():
    d = judge([ERRORS, P99], {"errors": GOOD["errors"]}, BAKED)
    assert d.outcome is Outcome.HOLD and d.reason == "p99: no measurement"
    assert judge([ERRORS, P99], {}, BAKED).outcome is Outcome.HOLD


def test_sample_ratio_mismatch_rolls_back_the_gate():
    skewed = {**GOOD, "errors": counts("errors", 30, 6000, 40, 20000)}
    d = judge([ERRORS, P99], skewed, Gate(weight=5, baked=True, split_failing_for=40), SRM)
    assert d.outcome is Outcome.ROLLBACK and "sample_ratio" in d.reason


def test_non_critical_failure_counts_towards_the_score():
    soft = P99.model_copy(update={"critical": False})
    slow = {**GOOD, "p99": periods("p99", [0.2] * 14, [0.1] * 14)}
    assert judge([ERRORS, soft], slow, BAKED).outcome is Outcome.ROLLBACK  # min_score 1.0 by default
    assert judge([ERRORS, soft], slow, BAKED, min_score=0.0).outcome is Outcome.ADVANCE


def test_judge_imports_no_airflow():
    plugins = Path(__file__).resolve().parents[2] / "plugins"
    code = "import sys; import canary_operators.judge; print(any(m.startswith('airflow') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(plugins)})
    assert out.stdout.strip() == "False", out.stderr


# -- evidence at the last gate --------------------------------------------------------------------

UNSETTLED = {"errors": counts("errors", 1, 300, 40, 20000), "p99": GOOD["p99"]}  # inconclusive, looks fine


def test_an_earlier_gate_advances_when_nothing_shows_harm():
    d = judge([ERRORS, P99], UNSETTLED, Gate(weight=5, baked=True, final=False))
    assert d.outcome is Outcome.ADVANCE
    assert "errors must still be settled by evidence at the last gate" in d.reason


def test_the_last_gate_holds_until_the_evidence_settles():
    d = judge([ERRORS, P99], UNSETTLED, Gate(weight=50, baked=True, final=True))
    assert d.outcome is Outcome.HOLD and d.reason.startswith("errors: error rate 0.33%")


def test_an_earlier_gate_holds_while_the_estimate_looks_bad():
    leaning_bad = {**UNSETTLED, "errors": counts("errors", 6, 300, 200, 20000)}  # 2% vs 1%: +1 pp, not yet proven
    d = judge([ERRORS, P99], leaning_bad, Gate(weight=5, baked=True, final=False))
    assert d.outcome is Outcome.HOLD and d.checks[0].estimate_within_bounds is False


def test_an_earlier_gate_still_waits_for_data_and_still_fails_on_evidence():
    assert judge([ERRORS, P99], {"p99": GOOD["p99"]}, Gate(weight=5, baked=True, final=False)).outcome is Outcome.HOLD
    bad = {**GOOD, "errors": counts("errors", 30, 1000, 40, 20000)}
    assert judge([ERRORS, P99], bad, Gate(weight=5, baked=True, final=False)).outcome is Outcome.ROLLBACK


def test_sample_ratio_uses_the_step_counts_when_given():
    skewed_step = counts("step", 0, 3000, 0, 7000)  # 30% at a 5% weight
    d = judge([ERRORS, P99], GOOD, Gate(weight=5, baked=True, split_failing_for=30), SRM, step_counts=skewed_step)
    assert d.outcome is Outcome.ROLLBACK and d.reason.startswith("sample_ratio: canary served 30.00%")
