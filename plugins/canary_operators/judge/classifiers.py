"""Classify one check: ``classify(check, measurement) -> CheckResult``, one classifier per check kind.

Edge cases first, by name: an arm with no data or too few requests is ``NO_DATA``. Then the kind's
statistic (``stats``), always one that holds under continuous looks:

- ``error_rate``: anytime-valid e-values on the counts, one for "above the tolerance", one for "within";
- ``latency``: from histograms, anytime-valid intervals in bucket edges (``latency_from_buckets``),
  so a difference the buckets cannot resolve never fails;
- ``business``: counts per request as e-values; an amount (revenue) in units of its dispersion;
- ``resource``, and any check the provider gives as one number per period (a percentile from
  Datadog or CloudWatch, a custom query): a sequential sign test on paired periods
  (``paired_periods``); a point estimate alone can hold a gate but never fail it.

The sentences come from ``reasons``; the check's policies are applied afterwards (``decide``).
"""

from __future__ import annotations

import math

from canary_operators import stats
from canary_operators.judge import reasons
from canary_operators.judge.verdicts import CheckResult, Verdict
from canary_operators.measurement import Measurement
from canary_operators.spec import BusinessCheck, ErrorRateCheck, LatencyCheck, ResourceCheck


def result(check, m: Measurement | None, verdict: Verdict, reason: str, **statistics) -> CheckResult:
    """A check's result: what the check is, what was measured (if anything), and the verdict."""
    measured = {} if m is None else dict(
        canary_value=m.canary.value, baseline_value=m.baseline.value, canary_requests=m.canary.requests,
        baseline_requests=m.baseline.requests, canary_query=m.canary.query, baseline_query=m.baseline.query)
    return CheckResult(check=check.name, kind=check.kind, critical=check.critical, threshold=reasons.threshold(check),
                       verdict=verdict, reason=reason, **measured, **statistics)


def ratio(c: float, b: float) -> float:
    if b == 0:
        return 1.0 if c == 0 else math.inf  # only an equal canary is within bounds of a zero baseline
    return c / b


def classify(check, m: Measurement) -> CheckResult:
    """Judge one check's measurement by its kind; too little data is ``NO_DATA``, never a pass."""
    for arm_name, arm in (("canary", m.canary), ("baseline", m.baseline)):
        if arm.value is None:
            return result(check, m, Verdict.NO_DATA, reasons.no_arm_data(arm_name))
        if check.min_requests and (arm.requests is None or arm.requests < check.min_requests):
            return result(check, m, Verdict.NO_DATA, reasons.too_few_requests(arm_name, arm.requests, check.min_requests))
    return CLASSIFIERS[type(check)](check, m)


def error_rate(check: ErrorRateCheck, m: Measurement) -> CheckResult:
    c, b = m.canary, m.baseline
    tolerance = check.max_increase_pp / 100
    if c.events is None or b.events is None:  # a custom query gives only the ratio: test its periods
        return paired_periods(check, m, lambda cv, bv: cv - bv > tolerance,
                              reasons.error_rate_head(check, m, periods=True), "above the tolerance")
    # Fail: evidence the canary's rate exceeds the baseline's upper bound + tolerance.
    _, baseline_upper = stats.poisson_rate_bounds(b.events, b.requests, check.alpha / 2)
    fail_e = stats.poisson_log_e(c.events, c.requests, baseline_upper + tolerance, "greater")
    # Pass: evidence it stays below the baseline's lower bound + tolerance.
    baseline_lower, _ = stats.poisson_rate_bounds(b.events, b.requests, check.pass_alpha / 2)
    pass_e = stats.poisson_log_e(c.events, c.requests, baseline_lower + tolerance, "less")
    bounds = {"baseline_rate": [baseline_lower, baseline_upper],
              "fail_if_canary_above": baseline_upper + tolerance, "pass_if_canary_below": baseline_lower + tolerance}
    p_above, p_within = stats.p_value(fail_e, 2), stats.p_value(pass_e, 2)
    above = dict(statistic="log e-value (canary above tolerance)", statistic_value=fail_e, p_value=p_above, bounds=bounds)
    if fail_e >= math.log(2 / check.alpha):
        verdict, found = Verdict.FAIL, above
    elif pass_e >= math.log(2 / check.pass_alpha):
        verdict, found = Verdict.PASS, dict(statistic="log e-value (canary within tolerance)", statistic_value=pass_e,
                                            p_value=p_within, bounds=bounds)
    else:
        verdict, found = Verdict.INCONCLUSIVE, dict(above, estimate_within_bounds=c.value - b.value <= tolerance)
    return result(check, m, verdict, reasons.error_rate(check, m, verdict, p_above, p_within), **found)


def latency(check: LatencyCheck, m: Measurement) -> CheckResult:
    head = reasons.latency_head(check, m, ratio(m.canary.value, m.baseline.value))
    if m.canary.buckets and m.baseline.buckets:
        return latency_from_buckets(check, m, head)
    return paired_periods(check, m, lambda cv, bv: ratio(cv, bv) > check.max_ratio, head, "above the maximum")


def latency_from_buckets(check: LatencyCheck, m: Measurement, head: str) -> CheckResult:
    """Judge in bucket edges: a histogram knows each quantile only to its bucket, so the check
    never fails on a difference the buckets cannot resolve (interpolated values would)."""
    canary_iv = stats.quantile_interval(m.canary.buckets, check.quantile, check.alpha / 2)
    baseline_iv = stats.quantile_interval(m.baseline.buckets, check.quantile, check.alpha / 2)
    canary_at = stats.quantile_bucket(m.canary.buckets, check.quantile)
    baseline_at = stats.quantile_bucket(m.baseline.buckets, check.quantile)
    if not (canary_iv and baseline_iv and canary_at and baseline_at):
        return result(check, m, Verdict.NO_DATA, reasons.no_histogram(head))
    lowest = ratio(canary_iv[0], baseline_iv[1])  # the most favourable ends of the intervals
    lowest_at_resolution = ratio(canary_at[0], baseline_at[1])  # the point buckets' nearest edges
    resolved = ratio(canary_at[1], baseline_at[0]) <= check.max_ratio
    label = reasons.quantile_label(check)
    bounds = {f"canary_{label}": list(canary_iv), f"baseline_{label}": list(baseline_iv),
              f"canary_{label}_bucket": list(canary_at), f"baseline_{label}_bucket": list(baseline_at)}
    found = dict(statistic="lowest ratio of the bucket-edge confidence intervals", statistic_value=lowest, bounds=bounds)
    if lowest > check.max_ratio:
        verdict = Verdict.FAIL
    elif lowest_at_resolution <= check.max_ratio:
        verdict = Verdict.PASS
    else:
        verdict, found = Verdict.INCONCLUSIVE, dict(found, estimate_within_bounds=False)
    why = reasons.latency_buckets(check, m, head, verdict, canary_at, baseline_at, lowest, resolved, lowest_at_resolution)
    return result(check, m, verdict, why, **found)


def _period_pairs(m: Measurement) -> list[tuple[float, float]]:
    """The two arms' per-period values, paired by period start; periods one arm lacks are left out."""
    if not m.canary.periods or not m.baseline.periods:
        return []
    baseline = dict(m.baseline.periods)
    return [(value, baseline[t]) for t, value in m.canary.periods if t in baseline]


def paired_periods(check, m: Measurement, exceeds, head: str, bad: str) -> CheckResult:
    """A check the provider gives as one number per period: a sequential sign test on the pairs.

    Fails on evidence that most periods exceed the bound (so a single noisy look cannot fail it);
    passes once ``min_periods`` pairs are in and at most half exceed it.
    """
    pairs = _period_pairs(m)
    if not pairs:
        return result(check, m, Verdict.INCONCLUSIVE, reasons.point_estimate_only(m, head), statistic="point estimate",
                      estimate_within_bounds=not exceeds(m.canary.value, m.baseline.value))
    exceeding = sum(1 for cv, bv in pairs if exceeds(cv, bv))
    log_e = stats.sign_test_log_e(exceeding, len(pairs))
    p = stats.p_value(log_e)
    found = dict(statistic="log e-value (sign test on paired periods)", statistic_value=log_e, p_value=p,
                 bounds={"periods": len(pairs), "periods_exceeding": exceeding})
    if log_e >= math.log(1 / check.alpha):  # one test, so Ville's bound needs 1/alpha
        verdict = Verdict.FAIL
    elif len(pairs) < check.min_periods:
        return result(check, m, Verdict.NO_DATA, reasons.too_few_periods(check, head, len(pairs)))
    elif 2 * exceeding <= len(pairs):
        verdict = Verdict.PASS
    else:
        verdict, found = Verdict.INCONCLUSIVE, dict(found, estimate_within_bounds=False)
    return result(check, m, verdict, reasons.paired_periods(m, head, bad, verdict, exceeding, len(pairs), p), **found)


def business(check: BusinessCheck, m: Measurement) -> CheckResult:
    c, b = m.canary, m.baseline
    head = reasons.business_head(check, m, ratio(c.value, b.value))

    def out_of_bounds(cv: float, bv: float) -> bool:
        r = ratio(cv, bv)
        return (check.min_ratio is not None and r < check.min_ratio) or (check.max_ratio is not None and r > check.max_ratio)

    if c.events is None or b.events is None or c.requests is None or b.requests is None:
        # A custom query gives one ratio per period, no counts: judge the periods in pairs.
        return paired_periods(check, m, out_of_bounds, head, "out of bounds")
    scale, dispersion = 1.0, None
    if check.unit == "amount":
        # An amount is not a count: its variance depends on its unit and on how amounts spread. As
        # amount / dispersion it is a count again (quasi-Poisson), whatever the unit.
        scale = dispersion = amount_dispersion(m, check.min_periods)
        if dispersion is None:
            return result(check, m, Verdict.NO_DATA, reasons.no_spread(check, m, head))
    c_events, b_events = c.events / scale, b.events / scale
    lower, upper = stats.poisson_rate_bounds(b_events, b.requests, check.alpha / 2)
    evidence = []
    if check.min_ratio is not None:  # lower is bad
        evidence.append(stats.poisson_log_e(c_events, c.requests, check.min_ratio * lower, "less"))
    if check.max_ratio is not None:  # higher is bad
        evidence.append(stats.poisson_log_e(c_events, c.requests, check.max_ratio * upper, "greater"))
    fail_e = max(evidence)
    p = stats.p_value(fail_e, 2)
    found = dict(statistic="log e-value (canary out of bounds)", statistic_value=fail_e, p_value=p,
                 bounds={"baseline_rate": [lower * scale, upper * scale],
                         **({} if dispersion is None else {"dispersion": dispersion})})
    if fail_e >= math.log(2 / check.alpha):
        verdict = Verdict.FAIL
    elif not out_of_bounds(c.value, b.value):
        verdict = Verdict.PASS
    else:
        verdict, found = Verdict.INCONCLUSIVE, dict(found, estimate_within_bounds=False)
    return result(check, m, verdict, reasons.business(m, head, verdict, p, dispersion), **found)


def amount_dispersion(m: Measurement, min_periods: int) -> float | None:
    """How much an amount spreads per request: Var/mean of the amount, from the per-period values.

    With ``k`` periods of ``n`` requests each and mean ``mu`` per request, a quasi-Poisson amount has
    per-period means of variance ``phi * mu / n``; pooled over both arms, and taken at the upper end
    of its 95% range (a chi-square bound), so that a few periods cannot understate the spread.
    """
    sums, degrees = 0.0, 0
    for arm in (m.canary, m.baseline):
        values = [v for _, v in arm.periods or ()]
        if len(values) < max(2, min_periods) or not arm.requests or not arm.events or arm.events <= 0:
            return None
        mu = arm.events / arm.requests
        per_period = arm.requests / len(values)
        mean = sum(values) / len(values)
        sums += sum((v - mean) ** 2 for v in values) * per_period / mu
        degrees += len(values) - 1
    phi = sums / degrees
    return max(phi * degrees / stats.chi2_lower(degrees, 0.05), 1e-12)


def resource(check: ResourceCheck, m: Measurement) -> CheckResult:
    head = reasons.resource_head(check, m, ratio(m.canary.value, m.baseline.value))
    return paired_periods(check, m, lambda cv, bv: ratio(cv, bv) > check.max_ratio, head, "above the maximum")


CLASSIFIERS = {ErrorRateCheck: error_rate, LatencyCheck: latency, BusinessCheck: business, ResourceCheck: resource}
