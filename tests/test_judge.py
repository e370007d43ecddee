"""The judge, as a specification with literal data. No Airflow, no backends."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from canary_operators.judge import Gate, Outcome, ProviderFailure, Verdict, evaluate_check, judge, sample_ratio
from canary_operators.measurement import ArmSample, Measurement
from canary_operators.spec import BusinessCheck, ErrorRateCheck, LatencyCheck, ResourceCheck, SampleRatioSpec

ERRORS = ErrorRateCheck(name="errors", kind="error_rate", max_increase_pp=0.5, min_requests=100)
P99 = LatencyCheck(name="p99", kind="latency", quantile=0.99, max_ratio=1.10, min_requests=100)
CHECKOUTS = BusinessCheck(name="checkouts", kind="business", metric="checkouts_total", min_ratio=0.9, min_requests=100)
CPU = ResourceCheck(name="cpu", kind="resource", resource="cpu", max_ratio=1.5, min_requests=0)
BAKED = Gate(weight=5, baked=True)
BAKING = Gate(weight=5, baked=False)
TIMED_OUT = Gate(weight=5, baked=True, timed_out=True)
HARD_TIMEOUT = Gate(weight=5, baked=True, timed_out=True, hard_timed_out=True)


def counts(name, canary_events, canary_n, baseline_events, baseline_n):
    """A count-per-request measurement (errors, conversions)."""
    return Measurement(
        check=name,
        canary=ArmSample(value=canary_events / canary_n if canary_n else None, requests=canary_n, events=canary_events, query=f"canary:{name}"),
        baseline=ArmSample(value=baseline_events / baseline_n if baseline_n else None, requests=baseline_n, events=baseline_events, query=f"baseline:{name}"),
        window_seconds=60,
    )


def point(name, canary, baseline, canary_n=1000.0, baseline_n=10000.0, canary_buckets=None, baseline_buckets=None):
    """A single-number measurement (latency, resource), optionally with histogram buckets."""
    return Measurement(
        check=name,
        canary=ArmSample(value=canary, requests=canary_n, query=f"canary:{name}", buckets=canary_buckets),
        baseline=ArmSample(value=baseline, requests=baseline_n, query=f"baseline:{name}", buckets=baseline_buckets),
        window_seconds=60,
    )


def periods(name, canary_values, baseline_values, canary_n=1000.0, baseline_n=10000.0, period=60):
    """One number per period per arm (a percentile, a resource, an amount), aligned by start time."""
    def arm(values, n, who):
        series = tuple((1_700_000_000 + i * period, v) for i, v in enumerate(values))
        return ArmSample(value=sum(values) / len(values), requests=n, query=f"{who}:{name}", periods=series)
    return Measurement(check=name, canary=arm(canary_values, canary_n, "canary"),
                       baseline=arm(baseline_values, baseline_n, "baseline"), window_seconds=period * len(canary_values))


def histogram(n, share_fast=1.0):
    """n samples: share_fast of them in (2.5 ms, 5 ms], the rest in (25 ms, 50 ms]."""
    fast = n * share_fast
    return ((0.0025, 0.0), (0.005, fast), (0.01, fast), (0.025, fast), (0.05, n), (math.inf, n))


# -- error rate: an anytime-valid test against baseline + tolerance --------------------------------

def test_error_rate_regression_fails_with_a_readable_reason():
    r = evaluate_check(ERRORS, counts("errors", 29, 1000, 42, 20000), BAKED)
    assert r.verdict is Verdict.FAIL
    assert r.reason.startswith("error rate 2.90% vs baseline 0.21% (+2.69 pp > 0.5 pp tolerance; anytime-valid p < 0.001)")
    assert (r.canary_query, r.baseline_query) == ("canary:errors", "baseline:errors")
    assert r.threshold == "canary - baseline <= 0.5 pp"
    assert r.bounds["baseline_rate"][0] < 0.0021 < r.bounds["baseline_rate"][1]
    assert r.statistic.startswith("log e-value") and r.statistic_value > math.log(2 / ERRORS.alpha)


def test_error_rate_equal_to_baseline_passes_once_there_is_evidence():
    assert evaluate_check(ERRORS, counts("errors", 1, 500, 40, 20000), BAKED).verdict is Verdict.INCONCLUSIVE
    passed = evaluate_check(ERRORS, counts("errors", 6, 3000, 40, 20000), BAKED)
    assert passed.verdict is Verdict.PASS
    assert "within 0.5 pp tolerance; anytime-valid p =" in passed.reason


def test_a_small_noisy_excess_is_inconclusive_not_a_rollback():
    # 3 errors in 300 requests (1%) looks like +0.8 pp, but is well within noise
    r = evaluate_check(ERRORS, counts("errors", 3, 300, 40, 20000), BAKED)
    assert r.verdict is Verdict.INCONCLUSIVE
    assert "not conclusive yet" in r.reason


def test_all_errors_fails():
    assert evaluate_check(ERRORS, counts("errors", 100, 100, 40, 20000), BAKED).verdict is Verdict.FAIL


def test_custom_error_query_without_counts_cannot_fail_on_one_point():
    r = evaluate_check(ERRORS, point("errors", 0.03, 0.002), BAKED)
    assert r.verdict is Verdict.INCONCLUSIVE and r.estimate_within_bounds is False
    assert "point estimate only" in r.reason and "cannot fail by itself" in r.reason


def test_custom_error_query_is_judged_on_its_periods():
    bad = evaluate_check(ERRORS, periods("errors", [0.03] * 14, [0.002] * 14), BAKED)
    assert bad.verdict is Verdict.FAIL and "14 of 14 paired periods above the tolerance" in bad.reason
    fine = evaluate_check(ERRORS, periods("errors", [0.004, 0.001, 0.002], [0.002] * 3), BAKED)
    assert fine.verdict is Verdict.PASS


# -- latency: confidence intervals from histogram buckets ----------------------------------------

def test_latency_regression_from_buckets_fails():
    m = point("p99", 0.049, 0.005, canary_buckets=histogram(1000, 0.5), baseline_buckets=histogram(20000))
    r = evaluate_check(P99, m, BAKED)
    assert r.verdict is Verdict.FAIL
    assert "canary p99 in (0.025 s, 0.05 s], baseline in (0.0025 s, 0.005 s]: even the most favourable bucket edges" in r.reason
    assert r.bounds["canary_p99"] == [0.025, 0.05] and r.bounds["baseline_p99"] == [0.0025, 0.005]


def test_same_latency_from_buckets_passes():
    m = point("p99", 0.00498, 0.00499, canary_buckets=histogram(1000), baseline_buckets=histogram(20000))
    assert evaluate_check(P99, m, BAKED).verdict is Verdict.PASS


def test_a_tail_that_may_be_noise_is_inconclusive():
    # 1.5% slow requests on 200 samples: p99 lands in the slow bucket, but 3 samples prove little
    m = point("p99", 0.03, 0.005, canary_n=200, canary_buckets=histogram(200, 0.985), baseline_buckets=histogram(20000))
    assert evaluate_check(P99, m, BAKED).verdict is Verdict.INCONCLUSIVE


# The measured defect: the interval ends were interpolated inside buckets, so arms on either side
# of the 250 ms bound with a true p99 ratio of exactly 1.10 failed 98.5% of the time at 50% weight.
BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def cumulative(counts_per_bucket):
    total, out = 0.0, []
    for bound, count in zip(BOUNDS + (math.inf,), counts_per_bucket):
        total += count
        out.append((bound, total))
    return tuple(out)


def test_p99_straddling_a_bucket_bound_within_tolerance_never_fails():
    # 200,000 requests per arm. Baseline: 1.2% in (0.1, 0.25], so its p99 sits just under 250 ms;
    # canary: 1.2% in (0.25, 0.5], so its p99 sits just over it. Interpolation made that ~2x.
    baseline = cumulative([0, 0, 0, 0, 197_600, 2_400, 0, 0, 0, 0])
    canary = cumulative([0, 0, 0, 0, 197_600, 0, 2_400, 0, 0, 0])
    m = point("p99", 0.292, 0.229, canary_n=200_000, baseline_n=200_000, canary_buckets=canary, baseline_buckets=baseline)
    r = evaluate_check(P99, m, BAKED)
    assert r.verdict is Verdict.PASS
    assert "canary p99 in (0.25 s, 0.5 s], baseline in (0.1 s, 0.25 s]: the buckets cannot resolve a ratio of 1.1" in r.reason
    assert r.statistic_value <= 1.0  # the lowest ratio the bucket edges allow


def test_p99_in_the_same_bucket_says_so():
    same = cumulative([0, 0, 0, 0, 98_000, 2_000, 0, 0, 0, 0])
    r = evaluate_check(P99, point("p99", 0.2, 0.11, canary_buckets=same, baseline_buckets=same), BAKED)
    assert r.verdict is Verdict.PASS and "p99 in (0.1 s, 0.25 s] for both" in r.reason


def test_p99_two_buckets_apart_fails_on_edges():
    baseline = cumulative([0, 0, 0, 0, 99_000, 1_000, 0, 0, 0, 0])  # p99 in (0.1, 0.25]
    canary = cumulative([0, 0, 0, 0, 97_000, 1_000, 0, 2_000, 0, 0])  # p99 in (0.5, 1.0]
    r = evaluate_check(P99, point("p99", 0.75, 0.2, canary_buckets=canary, baseline_buckets=baseline), BAKED)
    assert r.verdict is Verdict.FAIL and r.statistic_value == pytest.approx(0.5 / 0.25)


def test_latency_without_buckets_is_judged_on_paired_periods():
    # One p99 per period, as Datadog and CloudWatch give it. A single look at a point never fails.
    assert evaluate_check(P99, point("p99", 0.150, 0.100), BAKED).verdict is Verdict.INCONCLUSIVE
    noisy_but_equal = [0.09, 0.12, 0.10, 0.13, 0.08, 0.10]
    aa = evaluate_check(P99, periods("p99", noisy_but_equal, [0.1] * 6), BAKED)
    assert aa.verdict is Verdict.PASS and "2 of 6 paired periods above the maximum" in aa.reason
    slower = evaluate_check(P99, periods("p99", [0.15] * 14, [0.1] * 14), BAKED)
    assert slower.verdict is Verdict.FAIL and "14 of 14 paired periods above the maximum" in slower.reason
    assert evaluate_check(P99, periods("p99", [0.15] * 5, [0.1] * 5), BAKED).verdict is Verdict.INCONCLUSIVE


def test_periods_are_paired_by_start_time_and_gaps_left_out():
    m = periods("p99", [0.15] * 14, [0.1] * 14)
    baseline = ArmSample(value=0.1, requests=1e4, query="b", periods=m.baseline.periods[::2])  # every other period missing
    r = evaluate_check(P99, Measurement("p99", m.canary, baseline, 840), BAKED)
    assert r.bounds == {"periods": 7, "periods_exceeding": 7} and r.verdict is not Verdict.FAIL


def test_too_few_periods_is_no_data():
    r = evaluate_check(P99, periods("p99", [0.1, 0.1], [0.1, 0.1]), BAKED)
    assert r.verdict is Verdict.NO_DATA and "2 paired periods, needs 3" in r.reason


# -- business and resource ---------------------------------------------------------------------------

def test_checkouts_halved_fails_lower_is_bad():
    r = evaluate_check(CHECKOUTS, counts("checkouts", 50, 1000, 2000, 20000), BAKED)
    assert r.verdict is Verdict.FAIL and "(ratio 0.5; canary/baseline >= 0.9; anytime-valid p = 0.006)" in r.reason


def test_checkouts_equal_pass():
    assert evaluate_check(CHECKOUTS, counts("checkouts", 100, 1000, 2000, 20000), BAKED).verdict is Verdict.PASS


def test_checkouts_slightly_low_on_few_requests_is_inconclusive():
    assert evaluate_check(CHECKOUTS, counts("checkouts", 8, 100, 2000, 20000), BAKED).verdict is Verdict.INCONCLUSIVE


def test_business_higher_is_bad():
    refunds = BusinessCheck(name="refunds", kind="business", metric="refunds_total", max_ratio=1.2, min_requests=0)
    assert evaluate_check(refunds, counts("refunds", 100, 1000, 200, 20000), BAKED).verdict is Verdict.FAIL
    assert evaluate_check(refunds, counts("refunds", 10, 1000, 200, 20000), BAKED).verdict is Verdict.PASS


def test_resource_ratio_on_periods():
    assert evaluate_check(CPU, periods("cpu", [0.2] * 14, [0.1] * 14, None, None), BAKED).verdict is Verdict.FAIL
    assert evaluate_check(CPU, periods("cpu", [0.12] * 5, [0.1] * 5, None, None), BAKED).verdict is Verdict.PASS
    # One spike is one period, not a rollback.
    spike = evaluate_check(CPU, periods("cpu", [0.1, 0.9, 0.1, 0.1], [0.1] * 4, None, None), BAKED)
    assert spike.verdict is Verdict.PASS


REVENUE = BusinessCheck(name="revenue", kind="business", metric="revenue_total", unit="amount", min_ratio=0.9, min_requests=100)


def amounts(canary_per_period, baseline_per_period, canary_n=6000.0, baseline_n=60000.0, scale=1.0):
    """Revenue per request per period and the window's totals, in a unit ``scale`` times smaller."""
    def arm(values, n, who):
        values = [v * scale for v in values]
        series = tuple((1_700_000_000 + i * 60, v) for i, v in enumerate(values))
        total = sum(values) / len(values) * n
        return ArmSample(value=total / n, requests=n, events=total, query=f"{who}:revenue", periods=series)
    return Measurement("revenue", arm(canary_per_period, canary_n, "canary"), arm(baseline_per_period, baseline_n, "baseline"), 600)


# Revenue per request per period: skewed (a few big baskets), mean 1. The baseline has 10x the
# requests per period, so its per-period values spread sqrt(10)x less.
SKEWED = [0.85, 0.80, 1.45, 0.90, 0.82, 1.30, 0.88, 0.86, 1.20, 0.94]
STABLE = [1 + (v - 1) / 10 ** 0.5 for v in SKEWED]


@pytest.mark.parametrize("scale", [1, 100])  # dollars, cents
def test_an_amount_gives_the_same_verdict_in_any_unit(scale):
    # The defect, pinned: as Poisson counts, a 10% drop was "inconclusive" in dollars and
    # "fail, p = 8.8e-16" in cents. An amount is scaled by its measured spread first.
    same = evaluate_check(REVENUE, amounts(SKEWED, STABLE[3:] + STABLE[:3], scale=scale), BAKED)
    assert same.verdict is Verdict.PASS and "spread" in same.reason
    dropped = evaluate_check(REVENUE, amounts([v * 0.85 for v in SKEWED], STABLE, scale=scale), BAKED)
    assert dropped.verdict is Verdict.INCONCLUSIVE  # 15% down, past the bound, but within this spread
    halved = evaluate_check(REVENUE, amounts([v * 0.5 for v in SKEWED], STABLE, scale=scale), BAKED)
    assert halved.verdict is Verdict.FAIL
    assert halved.bounds["dispersion"] == pytest.approx(
        evaluate_check(REVENUE, amounts([v * 0.5 for v in SKEWED], STABLE), BAKED).bounds["dispersion"] * scale)


def test_an_amount_is_judged_on_its_mean_not_its_median():
    # Most periods below 0.9x, yet revenue per request is the same: the mean is what counts.
    canary = [0.85] * 8 + [1.2] * 6
    r = evaluate_check(REVENUE, amounts(canary, [sum(canary) / 14] * 14), BAKED)
    assert r.verdict is Verdict.PASS


def test_an_amount_without_periods_cannot_be_judged():
    cents = counts("revenue", 900_000, 10_000, 1_000_000, 10_000)
    r = evaluate_check(REVENUE, cents, BAKED)
    assert r.verdict is Verdict.NO_DATA and "an amount needs 3 periods per arm to measure its spread" in r.reason


# -- edge cases, by name ---------------------------------------------------------------------------

def test_zero_requests_is_no_data_not_a_pass():
    assert evaluate_check(ERRORS, counts("errors", 0, 0, 40, 20000), BAKED).verdict is Verdict.NO_DATA


def test_too_few_requests_is_no_data_even_when_the_rate_looks_terrible():
    r = evaluate_check(ERRORS, counts("errors", 10, 20, 40, 20000), BAKED)
    assert r.verdict is Verdict.NO_DATA and r.reason == "canary has 20 requests, needs 100"


def test_absent_and_nan_series_are_no_data():
    assert evaluate_check(P99, point("p99", None, 0.1), BAKED).verdict is Verdict.NO_DATA
    assert evaluate_check(P99, point("p99", 0.1, None), BAKED).reason == "no baseline data yet"
    assert evaluate_check(P99, point("p99", math.nan, 0.1), BAKED).verdict is Verdict.NO_DATA
    assert evaluate_check(P99, None, BAKED).verdict is Verdict.NO_DATA


def test_identical_data_passes():
    assert evaluate_check(P99, periods("p99", [0.1] * 3, [0.1] * 3), BAKED).verdict is Verdict.PASS
    assert evaluate_check(ERRORS, counts("errors", 0, 5000, 0, 50000), BAKED).verdict is Verdict.PASS


def test_zero_baseline_ratio():
    zero = LatencyCheck(name="z", kind="latency", min_requests=0)
    assert evaluate_check(zero, periods("z", [0.0] * 3, [0.0] * 3), BAKED).verdict is Verdict.PASS
    assert evaluate_check(zero, periods("z", [0.01] * 14, [0.0] * 14), BAKED).verdict is Verdict.FAIL


def test_counters_that_reset_give_no_negative_counts():
    # Prometheus' increase() absorbs resets; a negative count from elsewhere must not pass as evidence
    r = evaluate_check(ERRORS, counts("errors", -5, 1000, 40, 20000), BAKED)
    assert r.verdict in (Verdict.PASS, Verdict.INCONCLUSIVE)


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


# -- sample ratio --------------------------------------------------------------------------------------

SRM = SampleRatioSpec()


def test_sample_ratio_matches_the_weight():
    r = sample_ratio(SRM, counts("errors", 0, 500, 0, 9500), Gate(weight=5, baked=True))
    assert r.verdict is Verdict.PASS


def test_sample_ratio_mismatch_fails_naming_the_routing_once_it_lasts():
    skewed = counts("errors", 0, 1500, 0, 8500)
    first = sample_ratio(SRM, skewed, Gate(weight=5, baked=True))
    assert first.verdict is Verdict.INCONCLUSIVE and first.bounds["rejects"] is True
    assert "holding: it must last 30s of consecutive looks to count (0s so far)" in first.reason
    r = sample_ratio(SRM, skewed, Gate(weight=5, baked=True, split_failing_for=31))
    assert r.verdict is Verdict.FAIL
    assert r.reason.startswith("canary served 15.00% of 10000 requests at weight 5% (allowed 4.00%..6.00%")
    assert "the routing does not do what was set, for 31s of consecutive looks" in r.reason


def test_one_missing_scrape_at_the_window_start_is_not_a_routing_verdict():
    # The measured fault: the stable arm's /metrics answered 503 for 6 s across the step's window
    # start, so increase() lost those seconds of stable requests and the canary "served 34.29%".
    # At the next looks the window has grown and the share is back within tolerance.
    looks = [(343, 657), (500, 9_000), (600, 11_400)]  # canary, stable requests per look
    failing_for = None
    verdicts = []
    for i, (canary, stable) in enumerate(looks):
        r = sample_ratio(SRM, counts("step", 0, canary, 0, stable), Gate(weight=5, baked=True, split_failing_for=failing_for))
        verdicts.append(r.verdict)
        failing_for = (failing_for or 0) + 10 if r.bounds.get("rejects") else None
    assert verdicts == [Verdict.INCONCLUSIVE, Verdict.PASS, Verdict.PASS]


def test_a_canary_with_traffic_but_no_series_is_caught():
    no_series = Measurement("step", ArmSample(value=None, requests=None, query="c"),
                            ArmSample(value=0.0, requests=6000, events=0, query="b"), 60)
    first = sample_ratio(SRM, no_series, Gate(weight=5, baked=True))
    assert first.verdict is Verdict.INCONCLUSIVE
    r = sample_ratio(SRM, no_series, Gate(weight=5, baked=True, split_failing_for=30))
    assert r.verdict is Verdict.FAIL
    assert "no request series at all while it has 5% of traffic and the baseline served 6000 requests" in r.reason
    assert "wrong version label, or the canary is not scraped" in r.reason
    few = Measurement("step", no_series.canary, ArmSample(value=0.0, requests=200, events=0, query="b"), 60)
    assert sample_ratio(SRM, few, Gate(weight=5, baked=True, split_failing_for=30)).verdict is Verdict.IGNORED


def test_sample_ratio_uses_the_share_the_router_expects():
    # Argo Rollouts without traffic routing: 3 canary pods of 10 serve 30% whatever setWeight says.
    by_replicas = counts("step", 0, 3000, 0, 7000)
    assert sample_ratio(SRM, by_replicas, Gate(weight=20, baked=True, expected_share=0.3)).verdict is Verdict.PASS
    assert sample_ratio(SRM, by_replicas, Gate(weight=20, baked=True, split_failing_for=60)).verdict is Verdict.FAIL


def test_sample_ratio_waits_for_counts():
    r = sample_ratio(SRM, counts("errors", 0, 5, 0, 95), Gate(weight=5, baked=True))
    assert r.verdict is Verdict.IGNORED


# -- the gate decision ----------------------------------------------------------------------------------

GOOD = {"errors": counts("errors", 6, 3000, 40, 20000),
        "p99": point("p99", 0.00498, 0.00499, canary_buckets=histogram(1000), baseline_buckets=histogram(20000))}


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


def test_decision_serialises_for_xcom_and_logs_one_line():
    d = judge([ERRORS, P99], {**GOOD, "errors": counts("errors", 30, 1000, 40, 20000)}, BAKED)
    as_dict = d.to_dict()
    assert as_dict["outcome"] == "rollback"
    assert isinstance(as_dict["checks"], list)
    first = as_dict["checks"][0]
    assert first["verdict"] == "fail" and first["canary_value"] == 0.03 and first["p_value"] < 0.001
    assert first["bounds"]["baseline_rate"][0] < first["bounds"]["baseline_rate"][1]
    line = d.log_line()
    assert "\n" not in line and line.startswith("ROLLBACK: errors: error rate 3.00%")
    assert "canary query: canary:errors" in line and "[p99] pass" in line


def test_judge_imports_no_airflow():
    plugins = Path(__file__).resolve().parents[1] / "plugins"
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
