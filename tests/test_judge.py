"""The judge, as a specification with literal data. No Airflow, no backends."""

from __future__ import annotations

import math

import pytest

from canary_operators.judge import Outcome, Verdict, evaluate_check, judge
from canary_operators.measurement import ArmSample, Measurement
from canary_operators.spec import BusinessCheck, ErrorRateCheck, LatencyCheck, ResourceCheck

ERRORS = ErrorRateCheck(name="errors", kind="error_rate", max_increase_pp=0.5, min_requests=100)
P99 = LatencyCheck(name="p99", kind="latency", quantile=0.99, max_ratio=1.10, min_requests=100)
CHECKOUTS = BusinessCheck(name="checkouts", kind="business", metric="checkouts_total", min_ratio=0.9, min_requests=100)
CPU = ResourceCheck(name="cpu", kind="resource", resource="cpu", max_ratio=1.5, min_requests=0)


def m(name, canary, baseline, canary_n=1000.0, baseline_n=10000.0):
    return Measurement(
        check=name,
        canary=ArmSample(value=canary, requests=canary_n, query=f"canary:{name}"),
        baseline=ArmSample(value=baseline, requests=baseline_n, query=f"baseline:{name}"),
        window_seconds=60,
    )


# -- one check at a time ----------------------------------------------------------------------

def test_error_rate_within_tolerance_passes():
    r = evaluate_check(ERRORS, m("errors", 0.006, 0.002))  # +0.4 pp
    assert r.verdict is Verdict.PASS
    assert "error rate 0.60% vs baseline 0.20% (+0.40 pp <= 0.5 pp tolerance)" in r.reason


def test_error_rate_over_tolerance_fails_with_a_readable_reason():
    r = evaluate_check(ERRORS, m("errors", 0.029, 0.0021))
    assert r.verdict is Verdict.FAIL
    assert r.reason.startswith("error rate 2.90% vs baseline 0.21% (+2.69 pp > 0.5 pp tolerance)")
    assert (r.canary_query, r.baseline_query) == ("canary:errors", "baseline:errors")
    assert r.threshold == "canary - baseline <= 0.5 pp"


def test_error_rate_exactly_at_tolerance_passes():
    assert evaluate_check(ERRORS, m("errors", 0.007, 0.002)).verdict is Verdict.PASS


def test_latency_ratio():
    assert evaluate_check(P99, m("p99", 0.105, 0.100)).verdict is Verdict.PASS
    failed = evaluate_check(P99, m("p99", 0.150, 0.100))
    assert failed.verdict is Verdict.FAIL
    assert "p99 150.0 ms vs baseline 100.0 ms (ratio 1.5, max 1.1)" in failed.reason


def test_business_metric_lower_is_bad():
    assert evaluate_check(CHECKOUTS, m("checkouts", 0.095, 0.100)).verdict is Verdict.PASS
    assert evaluate_check(CHECKOUTS, m("checkouts", 0.050, 0.100)).verdict is Verdict.FAIL


def test_business_metric_with_both_bounds():
    both = BusinessCheck(name="b", kind="business", metric="x", min_ratio=0.9, max_ratio=1.1, min_requests=0)
    assert evaluate_check(both, m("b", 1.2, 1.0)).verdict is Verdict.FAIL
    assert evaluate_check(both, m("b", 0.8, 1.0)).verdict is Verdict.FAIL
    assert evaluate_check(both, m("b", 1.0, 1.0)).verdict is Verdict.PASS


def test_resource_ratio_ignores_request_counts_when_min_requests_is_zero():
    assert evaluate_check(CPU, m("cpu", 0.2, 0.1, canary_n=None, baseline_n=None)).verdict is Verdict.FAIL
    assert evaluate_check(CPU, m("cpu", 0.12, 0.1, canary_n=None, baseline_n=None)).verdict is Verdict.PASS


# -- edge cases, by name ----------------------------------------------------------------------

def test_zero_requests_is_no_data_not_a_pass():
    r = evaluate_check(ERRORS, m("errors", None, 0.002, canary_n=0))
    assert r.verdict is Verdict.NO_DATA


def test_too_few_requests_is_no_data_even_when_the_rate_looks_terrible():
    r = evaluate_check(ERRORS, m("errors", 0.5, 0.002, canary_n=20))
    assert r.verdict is Verdict.NO_DATA
    assert r.reason == "canary has 20 requests, needs 100"


def test_thin_baseline_is_no_data_too():
    assert evaluate_check(ERRORS, m("errors", 0.0, 0.0, baseline_n=50)).verdict is Verdict.NO_DATA


def test_absent_series_is_no_data():
    assert evaluate_check(P99, m("p99", None, 0.1)).verdict is Verdict.NO_DATA
    assert evaluate_check(P99, m("p99", 0.1, None)).reason == "no baseline data yet"


def test_nan_is_no_data():
    assert evaluate_check(P99, m("p99", math.nan, 0.1)).verdict is Verdict.NO_DATA


def test_missing_measurement_is_no_data():
    assert evaluate_check(P99, None).verdict is Verdict.NO_DATA


def test_identical_data_passes():
    assert evaluate_check(P99, m("p99", 0.1, 0.1)).verdict is Verdict.PASS
    assert evaluate_check(ERRORS, m("errors", 0.0, 0.0)).verdict is Verdict.PASS


def test_zero_baseline_ratio():
    zero = LatencyCheck(name="z", kind="latency", min_requests=0)
    assert evaluate_check(zero, m("z", 0.0, 0.0)).verdict is Verdict.PASS
    assert evaluate_check(zero, m("z", 0.01, 0.0)).verdict is Verdict.FAIL


# -- the gate decision --------------------------------------------------------------------------

CHECKS = [ERRORS, P99]


def test_all_pass_after_bake_advances():
    d = judge(CHECKS, {"errors": m("errors", 0.002, 0.002), "p99": m("p99", 0.1, 0.1)}, baked=True)
    assert d.outcome is Outcome.ADVANCE
    assert [c.verdict for c in d.checks] == [Verdict.PASS, Verdict.PASS]


def test_all_pass_during_bake_holds():
    d = judge(CHECKS, {"errors": m("errors", 0.002, 0.002), "p99": m("p99", 0.1, 0.1)}, baked=False)
    assert d.outcome is Outcome.HOLD and d.reason == "all checks pass; baking"


def test_a_failure_rolls_back_at_once_even_during_bake():
    d = judge(CHECKS, {"errors": m("errors", 0.03, 0.002), "p99": m("p99", 0.1, 0.1)}, baked=False)
    assert d.outcome is Outcome.ROLLBACK
    assert d.reason.startswith("errors: error rate 3.00% vs baseline 0.20%")


def test_a_failure_wins_over_missing_data():
    d = judge(CHECKS, {"errors": m("errors", 0.03, 0.002)}, baked=True)
    assert d.outcome is Outcome.ROLLBACK


def test_no_data_holds_after_bake():
    d = judge(CHECKS, {"errors": m("errors", 0.002, 0.002)}, baked=True)
    assert d.outcome is Outcome.HOLD
    assert d.reason == "p99: no measurement"


def test_nothing_at_all_holds():
    assert judge(CHECKS, {}, baked=True).outcome is Outcome.HOLD


def test_decision_serialises_for_xcom_and_logs_one_line():
    d = judge(CHECKS, {"errors": m("errors", 0.03, 0.002), "p99": m("p99", 0.1, 0.1)}, baked=True)
    as_dict = d.to_dict()
    assert as_dict["outcome"] == "rollback"
    assert as_dict["checks"][0]["verdict"] == "fail" and as_dict["checks"][0]["canary_value"] == 0.03
    line = d.log_line()
    assert "\n" not in line
    assert line.startswith("ROLLBACK: errors: error rate 3.00%")
    assert "canary query: canary:errors" in line and "[p99] pass" in line


def test_judge_imports_no_airflow():
    import subprocess
    import sys
    from pathlib import Path

    plugins = Path(__file__).resolve().parents[1] / "plugins"
    code = "import sys; import canary_operators.judge; print(any(m.startswith('airflow') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(plugins)})
    assert out.stdout.strip() == "False", out.stderr
