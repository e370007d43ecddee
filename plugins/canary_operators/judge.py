"""The gate's decision: pure Python, no Airflow import, so it can be tested, benchmarked and replayed.

``judge(checks, measurements, gate)`` → ``Decision``. A pipeline of small steps:

1. edge cases first, by name: a provider failure, no data, or too few requests;
2. each check's statistic (``stats``), always one that holds under continuous looks:
   - counts per request (errors, business counts): anytime-valid e-values;
   - quantiles from histograms: anytime-valid intervals in bucket edges, so a difference the
     buckets cannot resolve never fails;
   - one number per period (a percentile from Datadog or CloudWatch, a resource, a custom query,
     an amount such as revenue): a sequential sign test on paired periods; a point estimate
     alone can hold a gate but never fail it;
   - the traffic split: an e-value on the canary's share, which must keep failing for
     ``confirm_seconds`` of consecutive looks (a missed scrape skews one short window);
3. the check's policy when a condition lasts until the gate must decide (the timeout);
4. the decision: a failing critical check rolls back at once, even during the bake time; the
   gate advances only when every check passes after the minimum bake; otherwise it holds.

"No data" is never a pass. Every result is a frozen value that carries its reason.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Mapping, Sequence, Union

from canary_operators import stats
from canary_operators.measurement import Measurement
from canary_operators.spec import (
    BusinessCheck,
    ErrorRateCheck,
    LatencyCheck,
    ResourceCheck,
    SampleRatioSpec,
)


class Verdict(str, Enum):
    PASS = "pass"
    FAIL = "fail"
    NO_DATA = "no_data"
    INCONCLUSIVE = "inconclusive"
    ERROR = "error"
    IGNORED = "ignored"


HOLDING = (Verdict.NO_DATA, Verdict.INCONCLUSIVE, Verdict.ERROR)


class Outcome(str, Enum):
    ADVANCE = "advance"
    HOLD = "hold"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class ProviderFailure:
    """The provider raised for this check; ``exhausted`` once its policy must apply now: the backend
    has been down for ``max_provider_outage``, or it rejected the query (retrying cannot fix that)."""

    message: str
    exhausted: bool = False


@dataclass(frozen=True)
class Gate:
    """Where the gate stands: the weight it judges and how long it has been there."""

    weight: float  # percent of traffic set on the canary
    baked: bool  # the minimum bake time has passed
    timed_out: bool = False  # the gate timeout has passed: policies apply
    hard_timed_out: bool = False  # twice the gate timeout: even "hold" gives up
    # The last gate before promotion: a pass needs positive evidence (an inconclusive check holds).
    # Earlier gates, with limited exposure, advance after the bake time when nothing shows harm
    # and every inconclusive check's point estimate is within bounds.
    final: bool = True
    # The sample-ratio check: the share of requests the router says the canary should serve (None:
    # the weight), and for how long the split has already looked wrong on consecutive looks
    # (None: it did not at the previous look).
    expected_share: float | None = None
    split_failing_for: float | None = None


@dataclass(frozen=True)
class CheckResult:
    check: str
    kind: str
    verdict: Verdict
    reason: str
    critical: bool = True
    canary_value: float | None = None
    baseline_value: float | None = None
    canary_requests: float | None = None
    baseline_requests: float | None = None
    threshold: str = ""
    statistic: str = ""
    statistic_value: float | None = None
    p_value: float | None = None
    bounds: dict = field(default_factory=dict)
    # For an inconclusive check: does the point estimate sit within bounds? An earlier gate may
    # advance on such a check; one whose estimate looks bad keeps the canary at the low weight.
    estimate_within_bounds: bool | None = None
    canary_query: str = ""
    baseline_query: str = ""


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str
    checks: tuple[CheckResult, ...]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["outcome"] = self.outcome.value
        d["checks"] = list(d["checks"])  # a list stays a plain JSON list in XCom
        for c in d["checks"]:
            c["verdict"] = c["verdict"].value
            for key in ("statistic_value", "p_value"):
                if isinstance(c[key], float) and not math.isfinite(c[key]):
                    c[key] = None
        return d

    def log_line(self) -> str:
        """One readable line: the outcome, then per check its verdict, reason and queries."""
        parts = [f"{self.outcome.value.upper()}: {self.reason}"]
        for c in self.checks:
            parts.append(
                f"[{c.check}] {c.verdict.value}: {c.reason}"
                f" (canary query: {c.canary_query or '-'}; baseline query: {c.baseline_query or '-'})"
            )
        return " | ".join(parts)


Observed = Union[Measurement, ProviderFailure, None]


# -- formatting ---------------------------------------------------------------------------------

def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.2f}%"


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _n(m: Measurement) -> str:
    if m.canary.requests is None or m.baseline.requests is None:
        return ""
    return f" (n={m.canary.requests:.0f} vs {m.baseline.requests:.0f})"


def _ratio(c: float, b: float) -> float:
    if b == 0:
        return 1.0 if c == 0 else math.inf  # only an equal canary is within bounds of a zero baseline
    return c / b


def _threshold(check) -> str:
    if isinstance(check, ErrorRateCheck):
        return f"canary - baseline <= {check.max_increase_pp:g} pp"
    if isinstance(check, BusinessCheck):
        bounds = [f">= {check.min_ratio:g}" if check.min_ratio else "", f"<= {check.max_ratio:g}" if check.max_ratio else ""]
        return "canary/baseline " + " and ".join(b for b in bounds if b)
    return f"canary/baseline <= {check.max_ratio:g}"


# -- one check ------------------------------------------------------------------------------------

def _thin(check, m: Measurement) -> str | None:
    """Why this measurement cannot be judged yet, or None."""
    for arm_name, arm in (("canary", m.canary), ("baseline", m.baseline)):
        if arm.value is None:
            return f"no {arm_name} data yet"
        if check.min_requests and (arm.requests is None or arm.requests < check.min_requests):
            seen = "unknown" if arm.requests is None else f"{arm.requests:.0f}"
            return f"{arm_name} has {seen} requests, needs {check.min_requests}"
    return None


def _error_rate(check: ErrorRateCheck, m: Measurement) -> dict:
    c, b = m.canary, m.baseline
    tolerance = check.max_increase_pp / 100
    increase = f"{(c.value - b.value) * 100:+.2f} pp"
    head = f"error rate {_pct(c.value)} vs baseline {_pct(b.value)}"
    if c.events is None or b.events is None:  # a custom query gives only the ratio: test its periods
        return _paired_periods(check, m, lambda cv, bv: cv - bv > tolerance,
                               f"{head} ({increase}; tolerance {check.max_increase_pp:g} pp", "above the tolerance")
    # Fail: evidence the canary's rate exceeds the baseline's upper bound + tolerance.
    _, baseline_upper = stats.poisson_rate_bounds(b.events, b.requests, check.alpha / 2)
    fail_e = stats.poisson_log_e(c.events, c.requests, baseline_upper + tolerance, "greater")
    # Pass: evidence it stays below the baseline's lower bound + tolerance.
    baseline_lower, _ = stats.poisson_rate_bounds(b.events, b.requests, check.pass_alpha / 2)
    pass_e = stats.poisson_log_e(c.events, c.requests, baseline_lower + tolerance, "less")
    bounds = {"baseline_rate": [baseline_lower, baseline_upper],
              "fail_if_canary_above": baseline_upper + tolerance, "pass_if_canary_below": baseline_lower + tolerance}
    if fail_e >= math.log(2 / check.alpha):
        p = stats.p_value(fail_e, 2)
        return dict(verdict=Verdict.FAIL, statistic="log e-value (canary above tolerance)", statistic_value=fail_e,
                    p_value=p, bounds=bounds,
                    reason=f"{head} ({increase} > {check.max_increase_pp:g} pp tolerance; anytime-valid {_p(p)}){_n(m)}")
    if pass_e >= math.log(2 / check.pass_alpha):
        p = stats.p_value(pass_e, 2)
        return dict(verdict=Verdict.PASS, statistic="log e-value (canary within tolerance)", statistic_value=pass_e,
                    p_value=p, bounds=bounds,
                    reason=f"{head} ({increase}, within {check.max_increase_pp:g} pp tolerance; anytime-valid {_p(p)}){_n(m)}")
    return dict(verdict=Verdict.INCONCLUSIVE, statistic="log e-value (canary above tolerance)", statistic_value=fail_e,
                p_value=stats.p_value(fail_e, 2), bounds=bounds, estimate_within_bounds=c.value - b.value <= tolerance,
                reason=f"{head} ({increase}; not conclusive yet: {_p(stats.p_value(fail_e, 2))} for above, "
                       f"{_p(stats.p_value(pass_e, 2))} for within {check.max_increase_pp:g} pp){_n(m)}")


def _latency(check: LatencyCheck, m: Measurement) -> dict:
    c, b = m.canary.value, m.baseline.value
    ratio = _ratio(c, b)
    label = f"p{round(check.quantile * 100)}"
    head = f"{label} {c * 1000:.1f} ms vs baseline {b * 1000:.1f} ms (ratio {ratio:.3g}, max {check.max_ratio:g}"
    if m.canary.buckets and m.baseline.buckets:
        return _latency_from_buckets(check, m, label, head)
    return _paired_periods(check, m, lambda cv, bv: _ratio(cv, bv) > check.max_ratio, head, "above the maximum")


def _edges(bucket: tuple[float, float]) -> str:
    return f"({bucket[0]:g} s, {bucket[1]:g} s]"


def _latency_from_buckets(check: LatencyCheck, m: Measurement, label: str, head: str) -> dict:
    """Judge in bucket edges: a histogram knows each quantile only to its bucket, so the check
    never fails on a difference the buckets cannot resolve (interpolated values would)."""
    canary_iv = stats.quantile_interval(m.canary.buckets, check.quantile, check.alpha / 2)
    baseline_iv = stats.quantile_interval(m.baseline.buckets, check.quantile, check.alpha / 2)
    canary_at = stats.quantile_bucket(m.canary.buckets, check.quantile)
    baseline_at = stats.quantile_bucket(m.baseline.buckets, check.quantile)
    if not (canary_iv and baseline_iv and canary_at and baseline_at):
        return dict(verdict=Verdict.NO_DATA, reason=f"{head}; a histogram has no observations)")
    lowest = _ratio(canary_iv[0], baseline_iv[1])  # the most favourable ends of the intervals
    lowest_at_resolution = _ratio(canary_at[0], baseline_at[1])  # the point buckets' nearest edges
    bounds = {f"canary_{label}": list(canary_iv), f"baseline_{label}": list(baseline_iv),
              f"canary_{label}_bucket": list(canary_at), f"baseline_{label}_bucket": list(baseline_at)}
    common = dict(statistic="lowest ratio of the bucket-edge confidence intervals", statistic_value=lowest, bounds=bounds)
    where = (f"{label} in {_edges(canary_at)} for both" if canary_at == baseline_at
             else f"canary {label} in {_edges(canary_at)}, baseline in {_edges(baseline_at)}")
    if lowest > check.max_ratio:
        return dict(**common, verdict=Verdict.FAIL,
                    reason=f"{head}; {where}: even the most favourable bucket edges of the {1 - check.alpha:.0%} "
                           f"intervals give {lowest:.3g}){_n(m)}")
    if lowest_at_resolution <= check.max_ratio:
        resolved = _ratio(canary_at[1], baseline_at[0]) <= check.max_ratio
        why = ("the buckets place it within the maximum" if resolved else
               f"the buckets cannot resolve a ratio of {check.max_ratio:g} here (it may be as low as {lowest_at_resolution:.3g})")
        return dict(**common, verdict=Verdict.PASS, reason=f"{head}; {where}: {why}){_n(m)}")
    return dict(**common, verdict=Verdict.INCONCLUSIVE, estimate_within_bounds=False,
                reason=f"{head}; {where}: above the maximum but within noise, lowest plausible ratio {lowest:.3g}){_n(m)}")


def _period_pairs(m: Measurement) -> list[tuple[float, float]]:
    """The two arms' per-period values, paired by period start; periods one arm lacks are left out."""
    if not m.canary.periods or not m.baseline.periods:
        return []
    baseline = dict(m.baseline.periods)
    return [(value, baseline[t]) for t, value in m.canary.periods if t in baseline]


def _paired_periods(check, m: Measurement, exceeds, head: str, bad: str) -> dict:
    """A check the provider gives as one number per period: a sequential sign test on the pairs.

    Fails on evidence that most periods exceed the bound (so a single noisy look cannot fail it);
    passes once ``min_periods`` pairs are in and at most half exceed it.
    """
    pairs = _period_pairs(m)
    if not pairs:
        return dict(verdict=Verdict.INCONCLUSIVE, estimate_within_bounds=not exceeds(m.canary.value, m.baseline.value),
                    statistic="point estimate",
                    reason=f"{head}; point estimate only: the provider gave no per-period values to test, "
                           f"so this check cannot fail by itself){_n(m)}")
    exceeding = sum(1 for cv, bv in pairs if exceeds(cv, bv))
    log_e = stats.sign_test_log_e(exceeding, len(pairs))
    p = stats.p_value(log_e)
    common = dict(statistic="log e-value (sign test on paired periods)", statistic_value=log_e, p_value=p,
                  bounds={"periods": len(pairs), "periods_exceeding": exceeding})
    counted = f"{exceeding} of {len(pairs)} paired periods {bad}"
    if log_e >= math.log(1 / check.alpha):  # one test, so Ville's bound needs 1/alpha
        return dict(**common, verdict=Verdict.FAIL, reason=f"{head}; {counted}, anytime-valid {_p(p)}){_n(m)}")
    if len(pairs) < check.min_periods:
        return dict(verdict=Verdict.NO_DATA, reason=f"{head}; {len(pairs)} paired periods, needs {check.min_periods})")
    if 2 * exceeding <= len(pairs):
        return dict(**common, verdict=Verdict.PASS, reason=f"{head}; {counted}){_n(m)}")
    return dict(**common, verdict=Verdict.INCONCLUSIVE, estimate_within_bounds=False,
                reason=f"{head}; {counted}: most, but not conclusively yet, {_p(p)}){_n(m)}")


def _business(check: BusinessCheck, m: Measurement) -> dict:
    c, b = m.canary, m.baseline
    ratio = _ratio(c.value, b.value)
    name = check.metric or "value"
    head = f"{name} {_num(c.value)} vs baseline {_num(b.value)} per request (ratio {ratio:.3g}; {_threshold(check)}"
    def out_of_bounds(cv: float, bv: float) -> bool:
        r = _ratio(cv, bv)
        return (check.min_ratio is not None and r < check.min_ratio) or (check.max_ratio is not None and r > check.max_ratio)

    in_bounds = not out_of_bounds(c.value, b.value)
    if c.events is None or b.events is None or c.requests is None or b.requests is None:
        # A custom query gives one ratio per period, no counts: judge the periods in pairs.
        return _paired_periods(check, m, out_of_bounds, head, "out of bounds")
    scale, how = 1.0, ""
    if check.unit == "amount":
        # An amount is not a count: its variance depends on its unit and on how amounts spread. As
        # amount / dispersion it is a count again (quasi-Poisson), whatever the unit.
        scale = amount_dispersion(m, check.min_periods)
        if scale is None:
            return dict(verdict=Verdict.NO_DATA, reason=f"{head}; an amount needs {check.min_periods} periods per arm "
                                                        f"to measure its spread){_n(m)}")
        how = f"; spread {scale:.3g} per unit"
    c_events, b_events = c.events / scale, b.events / scale
    lower, upper = stats.poisson_rate_bounds(b_events, b.requests, check.alpha / 2)
    evidence = []
    if check.min_ratio is not None:  # lower is bad
        evidence.append(stats.poisson_log_e(c_events, c.requests, check.min_ratio * lower, "less"))
    if check.max_ratio is not None:  # higher is bad
        evidence.append(stats.poisson_log_e(c_events, c.requests, check.max_ratio * upper, "greater"))
    fail_e = max(evidence)
    p = stats.p_value(fail_e, 2)
    common = dict(statistic="log e-value (canary out of bounds)", statistic_value=fail_e, p_value=p,
                  bounds={"baseline_rate": [lower * scale, upper * scale], **({"dispersion": scale} if how else {})})
    if fail_e >= math.log(2 / check.alpha):
        return dict(**common, verdict=Verdict.FAIL, reason=f"{head}; anytime-valid {_p(p)}{how}){_n(m)}")
    if in_bounds:
        return dict(**common, verdict=Verdict.PASS, reason=f"{head}{how}){_n(m)}")
    return dict(**common, verdict=Verdict.INCONCLUSIVE, estimate_within_bounds=False,
                reason=f"{head}; out of bounds but within noise, {_p(p)}{how}){_n(m)}")


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


def _resource(check: ResourceCheck, m: Measurement) -> dict:
    ratio = _ratio(m.canary.value, m.baseline.value)
    head = (f"{check.resource} {_num(m.canary.value)} vs baseline {_num(m.baseline.value)} per instance "
            f"(ratio {ratio:.3g}, max {check.max_ratio:g}")
    return _paired_periods(check, m, lambda cv, bv: _ratio(cv, bv) > check.max_ratio, head, "above the maximum")


_MEASURE = {ErrorRateCheck: _error_rate, LatencyCheck: _latency, BusinessCheck: _business, ResourceCheck: _resource}


def _apply_policy(check, result: dict, gate: Gate) -> dict:
    """A holding verdict that lasts until the gate must decide becomes what the check's policy says."""
    verdict = result["verdict"]
    if verdict not in HOLDING:
        return result
    if verdict is Verdict.ERROR:
        policy, due = check.on_error, result.pop("exhausted", False) or gate.timed_out
    elif verdict is Verdict.NO_DATA:
        policy, due = check.on_no_data, gate.timed_out
    else:
        policy, due = check.on_inconclusive, gate.timed_out
    if not due:
        return result
    if policy == "ignore":
        return {**result, "verdict": Verdict.IGNORED, "reason": f"{result['reason']}; ignored by policy"}
    if policy == "rollback" or gate.hard_timed_out:
        when = "at the gate timeout" if verdict is not Verdict.ERROR or gate.timed_out else "by on_error"
        return {**result, "verdict": Verdict.FAIL, "reason": f"{verdict.value} {when}: {result['reason']}"}
    return result  # hold: keep waiting, up to twice the gate timeout


def evaluate_check(check, observed: Observed, gate: Gate | None = None) -> CheckResult:
    """Judge one check. Pure: same inputs, same result."""
    gate = gate or Gate(weight=0, baked=True)
    base = dict(check=check.name, kind=check.kind, critical=check.critical, threshold=_threshold(check))
    if isinstance(observed, ProviderFailure):
        result = dict(verdict=Verdict.ERROR, reason=f"metrics backend error: {observed.message}", exhausted=observed.exhausted)
    elif observed is None:
        result = dict(verdict=Verdict.NO_DATA, reason="no measurement")
    else:
        m = observed
        base.update(canary_value=m.canary.value, baseline_value=m.baseline.value, canary_requests=m.canary.requests,
                    baseline_requests=m.baseline.requests, canary_query=m.canary.query, baseline_query=m.baseline.query)
        thin = _thin(check, m)
        result = dict(verdict=Verdict.NO_DATA, reason=thin) if thin else _MEASURE[type(check)](check, m)
    result = _apply_policy(check, result, gate)
    result.pop("exhausted", None)
    return CheckResult(**base, **result)


def sample_ratio(spec: SampleRatioSpec, step: Observed, gate: Gate) -> CheckResult | None:
    """Does the canary's share of requests at this step match what the router was told?

    ``step`` holds both arms' request counts over this step's window. A mismatch means the routing
    is broken, but only when it lasts: a missed scrape skews a short window's counts, so a
    rejecting look fails the check only after the split has looked wrong for ``confirm_seconds``
    of consecutive looks (``gate.split_failing_for``). A canary with no series at all while the
    baseline served ``unobserved_after`` requests is taken as serving unobserved.
    """
    if not spec.enabled or not 0 < gate.weight < 100:
        return None
    expected = gate.expected_share if gate.expected_share is not None else gate.weight / 100
    low, high = expected * (1 - spec.tolerance), min(1.0, expected * (1 + spec.tolerance))
    base = dict(check="sample_ratio", kind="sample_ratio", critical=True,
                threshold=f"canary share within {low:.2%}..{high:.2%} of requests")
    canary = baseline = None
    if isinstance(step, Measurement):
        canary, baseline = step.canary.requests, step.baseline.requests
    unobserved = canary is None and baseline is not None and baseline >= spec.unobserved_after
    if unobserved:
        canary = 0.0
    if canary is None or baseline is None or canary + baseline < spec.min_requests:
        return CheckResult(**base, verdict=Verdict.IGNORED, reason="not enough request counts to check the split yet")
    total = canary + baseline
    share = canary / total if total else 0.0
    log_e = max(stats.bernoulli_log_e(canary, total, high, "greater"), stats.bernoulli_log_e(canary, total, low, "less"))
    p = stats.p_value(log_e, 2)
    rejects = log_e >= math.log(2 / spec.alpha)
    common = dict(base, canary_requests=canary, baseline_requests=baseline, canary_value=share, baseline_value=expected,
                  statistic="log e-value (share outside tolerance)", statistic_value=log_e, p_value=p,
                  bounds={"rejects": rejects, "failing_for_seconds": gate.split_failing_for if rejects else None})
    if unobserved:
        reason = (f"the canary has no request series at all while it has {gate.weight:g}% of traffic and the baseline "
                  f"served {baseline:.0f} requests: likely a wrong version label, or the canary is not scraped")
    else:
        reason = (f"canary served {share:.2%} of {total:.0f} requests at weight {gate.weight:g}% "
                  f"(allowed {low:.2%}..{high:.2%}")
        reason += f"; anytime-valid {_p(p)})" if rejects else ")"
    if not rejects:
        return CheckResult(**common, verdict=Verdict.PASS, reason=reason)
    lasted = gate.split_failing_for or 0.0
    if lasted >= spec.confirm_seconds:
        what = "" if unobserved else ": the routing does not do what was set"
        return CheckResult(**common, verdict=Verdict.FAIL, reason=f"{reason}{what}, for {lasted:.0f}s of consecutive looks")
    return CheckResult(**common, verdict=Verdict.INCONCLUSIVE, estimate_within_bounds=False,
                       reason=f"{reason}; holding: it must last {spec.confirm_seconds:g}s of consecutive looks to count "
                              f"({lasted:.0f}s so far), since a missed scrape can skew a short window")


def _first_counts(measurements: Mapping[str, Observed]) -> Observed:
    return next((m for m in measurements.values() if isinstance(m, Measurement) and m.canary.requests is not None), None)


def judge(checks: Sequence, measurements: Mapping[str, Observed], gate: Gate,
          sample_ratio_spec: SampleRatioSpec | None = None, min_score: float = 1.0,
          step_counts: Observed | str = "from measurements") -> Decision:
    """Decide the gate: advance, hold, or roll back.

    ``step_counts``: request counts over this step's window alone, for the sample-ratio check
    (the checks themselves may use a longer window); None: not known yet. By default the first
    measurement with counts is used.
    """
    results = [evaluate_check(check, measurements.get(check.name), gate) for check in checks]
    srm_counts = _first_counts(measurements) if step_counts == "from measurements" else step_counts
    srm = sample_ratio(sample_ratio_spec, srm_counts, gate) if sample_ratio_spec else None
    if srm is not None:
        results.append(srm)
    results = tuple(results)

    critical_failures = [r for r in results if r.verdict is Verdict.FAIL and r.critical]
    if critical_failures:
        return Decision(Outcome.ROLLBACK, "; ".join(f"{r.check}: {r.reason}" for r in critical_failures), results)
    holding = [r for r in results if r.verdict in HOLDING
               and (gate.final or r.verdict is not Verdict.INCONCLUSIVE or not r.estimate_within_bounds)]
    if holding:
        return Decision(Outcome.HOLD, "; ".join(f"{r.check}: {r.reason}" for r in holding), results)
    unsettled = [r.check for r in results if r.verdict is Verdict.INCONCLUSIVE]
    scored = [r for r in results if not r.critical and r.verdict in (Verdict.PASS, Verdict.FAIL)]
    failed = [r for r in scored if r.verdict is Verdict.FAIL]
    if scored and (len(scored) - len(failed)) / len(scored) < min_score:
        return Decision(Outcome.ROLLBACK, f"score {(len(scored) - len(failed)) / len(scored):.0%} < {min_score:.0%}: "
                        + "; ".join(f"{r.check}: {r.reason}" for r in failed), results)
    if not gate.baked:
        return Decision(Outcome.HOLD, "no check fails; baking" if unsettled else "all checks pass; baking", results)
    if unsettled:
        return Decision(Outcome.ADVANCE, f"no check shows harm after the bake time; {', '.join(unsettled)} "
                        "must still be settled by evidence at the last gate before promotion", results)
    return Decision(Outcome.ADVANCE, "all checks pass after the bake time", results)
