"""The anytime-valid tests' statistical claims, checked by fixed-seed simulation and properties."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from canary_operators import stats
from canary_operators.judge import Gate, Verdict, evaluate_check
from canary_operators.measurement import ArmSample, Measurement
from canary_operators.spec import ErrorRateCheck


def poisson(rng: random.Random, mean: float) -> int:
    """Knuth for small means, normal approximation for large ones."""
    if mean > 50:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def test_false_alarm_rate_stays_under_alpha_across_repeated_looks():
    """Under the null (rate exactly at the boundary), looking after every batch of 50 requests,
    for 200 looks, the share of runs that ever reject stays under alpha."""
    rng = random.Random(20261127)
    alpha, rate0, runs, looks, batch = 0.05, 0.01, 400, 200, 50
    rejected = 0
    for _ in range(runs):
        events = exposure = 0
        for _ in range(looks):
            events += poisson(rng, rate0 * batch)
            exposure += batch
            if stats.poisson_log_e(events, exposure, rate0, "greater") >= math.log(1 / alpha):
                rejected += 1
                break
    assert rejected / runs <= alpha, f"{rejected}/{runs} runs rejected a true null"


def test_false_alarm_rate_for_the_less_direction():
    rng = random.Random(7)
    alpha, rate0, runs = 0.05, 0.02, 300
    rejected = 0
    for _ in range(runs):
        events = exposure = 0
        for _ in range(150):
            events += poisson(rng, rate0 * 40)
            exposure += 40
            if stats.poisson_log_e(events, exposure, rate0, "less") >= math.log(1 / alpha):
                rejected += 1
                break
    assert rejected / runs <= alpha


def test_error_rate_judge_rarely_rolls_back_a_healthy_canary_when_looking_often():
    """A/A at 1% errors: canary and baseline identical, judged every 10 s at 5% of 200 rps."""
    rng = random.Random(11)
    check = ErrorRateCheck(name="errors", kind="error_rate", max_increase_pp=0.5, min_requests=50)
    runs, false_rollbacks = 100, 0
    for _ in range(runs):
        ce = cn = be = bn = 0
        for _ in range(90):  # 15 minutes of looks
            cn_step, bn_step = poisson(rng, 100), poisson(rng, 1900)
            ce, cn = ce + poisson(rng, cn_step * 0.01), cn + cn_step
            be, bn = be + poisson(rng, bn_step * 0.01), bn + bn_step
            m = Measurement("errors", ArmSample(ce / cn, cn, "c", events=ce), ArmSample(be / bn, bn, "b", events=be), 10)
            if evaluate_check(check, m, Gate(weight=5, baked=False)).verdict is Verdict.FAIL:
                false_rollbacks += 1
                break
    assert false_rollbacks / runs <= check.alpha


def test_a_clear_regression_is_caught_within_a_stated_number_of_requests():
    """1% → 3% errors against a 0.5 pp tolerance: caught within 4,000 canary requests in 95% of
    runs, and within 2,500 in half of them (the bound pays for the baseline's own uncertainty)."""
    rng = random.Random(3)
    check = ErrorRateCheck(name="errors", kind="error_rate", max_increase_pp=0.5, min_requests=50)
    needed = []
    for _ in range(100):
        ce = cn = be = bn = 0
        caught = None
        while cn < 5000 and caught is None:
            ce, cn = ce + poisson(rng, 50 * 0.03), cn + 50
            be, bn = be + poisson(rng, 950 * 0.01), bn + 950
            m = Measurement("errors", ArmSample(ce / cn, cn, "c", events=ce), ArmSample(be / bn, bn, "b", events=be), 10)
            if evaluate_check(check, m, Gate(weight=5, baked=False)).verdict is Verdict.FAIL:
                caught = cn
        needed.append(caught or math.inf)
    needed.sort()
    assert needed[94] <= 4000, f"95th percentile: {needed[94]} requests"
    assert needed[49] <= 2500, f"median: {needed[49]} requests"


def test_the_demo_regression_is_caught_with_fewer_requests_than_the_threshold_rule_needed():
    """The demo's faulty build (3% vs 0.2%): the threshold rule waited for 1,000 requests."""
    check = ErrorRateCheck(name="errors", kind="error_rate", max_increase_pp=0.5, min_requests=100)
    for n in (100, 200, 300, 400, 500, 600, 700):
        m = Measurement("errors", ArmSample(0.03, n, "c", events=0.03 * n), ArmSample(0.002, 20 * n, "b", events=0.04 * n), 10)
        if evaluate_check(check, m, Gate(weight=5, baked=False)).verdict is Verdict.FAIL:
            break
    assert n < 1000


# -- properties -------------------------------------------------------------------------------------

counts = st.floats(min_value=0, max_value=1e6, allow_nan=False)
rates = st.floats(min_value=1e-6, max_value=0.9, allow_nan=False)


@given(events=counts, exposure=st.floats(min_value=1, max_value=1e7), rate0=rates)
def test_e_values_are_finite_numbers_or_infinity(events, exposure, rate0):
    for direction in ("greater", "less"):
        value = stats.poisson_log_e(events, exposure, rate0, direction)
        assert not math.isnan(value)


@given(events=st.integers(0, 5000), exposure=st.integers(1, 200000), rate0=rates)
def test_more_events_never_weaken_evidence_of_a_higher_rate(events, exposure, rate0):
    assert stats.poisson_log_e(events + 1, exposure, rate0, "greater") >= stats.poisson_log_e(events, exposure, rate0, "greater")


@settings(max_examples=60)
@given(events=st.integers(0, 2000), exposure=st.integers(1, 200000))
def test_rate_bounds_contain_the_estimate(events, exposure):
    lower, upper = stats.poisson_rate_bounds(events, exposure, 0.01)
    estimate = events / exposure
    assert 0 <= lower <= estimate <= upper


def test_a_bound_tolerance_stops_the_bisection_early_and_only_inside_its_block():
    """The evidence planner bisects the rate bounds to a relative tolerance; the judge (the default)
    to the last bit, the same bounds as always."""
    exact = stats.poisson_rate_bounds(37, 12_000, 0.05)
    with stats.bound_tolerance(1e-4):
        coarse = stats.poisson_rate_bounds(37, 12_000, 0.05)
    assert coarse != exact
    assert all(0 <= c - e <= 1e-4 * e for c, e in zip(coarse, exact))  # the same end of the bracket as without
    assert stats.poisson_rate_bounds(37, 12_000, 0.05) == exact
    assert exact == (0.0017226128487693249, 0.004992607225383824)  # as before the tolerance existed


@given(share=st.floats(0.01, 0.99), trials=st.integers(1, 100000))
def test_proportion_interval_is_ordered_and_contains_p(share, trials):
    lo, hi = stats.proportion_interval(share, trials, 0.01)
    assert 0 <= lo <= share <= hi <= 1


@given(st.lists(st.integers(0, 1000), min_size=1, max_size=8), st.sampled_from([0.5, 0.95, 0.99]))
def test_histogram_quantile_stays_within_the_buckets(increments, q):
    bounds = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0][: len(increments)]
    cumulative, total = [], 0
    for bound, inc in zip(bounds, increments):
        total += inc
        cumulative.append((bound, float(total)))
    cumulative.append((math.inf, float(total)))
    value = stats.histogram_quantile(tuple(cumulative), q)
    if total == 0:
        assert value is None
    else:
        assert 0 <= value <= bounds[-1]


@given(st.integers(0, 10000), st.integers(0, 10000))
def test_identical_arms_never_fail_the_error_rate_check(errors, extra):
    n = errors + extra + 100
    check = ErrorRateCheck(name="e", kind="error_rate", min_requests=0)
    m = Measurement("e", ArmSample(errors / n, n, "c", events=errors), ArmSample(errors / n, n, "b", events=errors), 10)
    assert evaluate_check(check, m, Gate(weight=5, baked=True)).verdict is not Verdict.FAIL


def test_quantile_interval_is_in_bucket_edges():
    from canary_operators.stats import quantile_bucket, quantile_interval

    buckets = ((0.1, 9_800.0), (0.25, 9_950.0), (0.5, 10_000.0), (float("inf"), 10_000.0))
    assert quantile_bucket(buckets, 0.99) == (0.1, 0.25)
    lo, hi = quantile_interval(buckets, 0.99, 0.01)
    assert lo in (0.0, 0.1) and hi in (0.25, 0.5)  # edges, never a value interpolated inside a bucket
    assert quantile_bucket(((1.0, 0.0), (float("inf"), 5.0)), 0.5) == (1.0, float("inf"))


def test_sign_test_needs_most_pairs_to_exceed():
    from canary_operators.stats import sign_test_log_e

    assert sign_test_log_e(7, 14) < 0  # half exceeding is no evidence at all
    assert sign_test_log_e(14, 14) > math.log(2 / 0.01)
    assert sign_test_log_e(13, 14) < sign_test_log_e(14, 14)
