"""Each check kind classified, as a specification with literal data. No Airflow, no backends."""

from __future__ import annotations

import math

import pytest

from canary_operators.judge import Verdict, evaluate_check
from canary_operators.measurement import ArmSample, Measurement
from canary_operators.spec import BusinessCheck, LatencyCheck
from tests.judge.data import BAKED, CHECKOUTS, CPU, ERRORS, P99, counts, histogram, periods, point


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
