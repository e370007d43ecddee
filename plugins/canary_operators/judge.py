"""The gate's decision: pure Python, no Airflow import, so it can be tested, benchmarked and replayed.

``judge(checks, measurements, gate)`` → ``Decision``. A pipeline of small steps:

1. edge cases first, by name: a provider failure, no data, or too few requests;
2. each check's statistic (``stats``): anytime-valid e-values for counts, a confidence interval
   for histogram quantiles, a plain ratio where the provider gives only one number;
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
    """The provider raised for this check; ``exhausted`` once it failed max_provider_errors times in a row."""

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
    if c.events is None or b.events is None:  # a custom query gives only the ratio: compare points
        ok = c.value - b.value <= tolerance
        word = "<=" if ok else ">"
        return dict(verdict=Verdict.PASS if ok else Verdict.FAIL,
                    reason=f"{head} ({increase} {word} {check.max_increase_pp:g} pp tolerance; point estimate){_n(m)}")
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
        canary_iv = stats.quantile_interval(m.canary.buckets, check.quantile, check.alpha / 2)
        baseline_iv = stats.quantile_interval(m.baseline.buckets, check.quantile, check.alpha / 2)
        if canary_iv and baseline_iv:
            lowest_ratio = _ratio(canary_iv[0], baseline_iv[1])
            bounds = {f"canary_{label}": list(canary_iv), f"baseline_{label}": list(baseline_iv)}
            common = dict(statistic="lowest ratio in the confidence intervals", statistic_value=lowest_ratio, bounds=bounds)
            if lowest_ratio > check.max_ratio:
                return dict(**common, verdict=Verdict.FAIL,
                            reason=f"{head}; even the most favourable ends of the {1 - check.alpha:.0%} intervals give {lowest_ratio:.3g}){_n(m)}")
            if ratio <= check.max_ratio:
                return dict(**common, verdict=Verdict.PASS, reason=f"{head}){_n(m)}")
            return dict(**common, verdict=Verdict.INCONCLUSIVE, estimate_within_bounds=False,
                        reason=f"{head}; above the maximum but within noise: lowest plausible ratio {lowest_ratio:.3g}){_n(m)}")
    ok = ratio <= check.max_ratio
    return dict(verdict=Verdict.PASS if ok else Verdict.FAIL, statistic="ratio", statistic_value=ratio,
                reason=f"{head}; point estimate, the provider has no histogram){_n(m)}")


def _business(check: BusinessCheck, m: Measurement) -> dict:
    c, b = m.canary, m.baseline
    ratio = _ratio(c.value, b.value)
    name = check.metric or "value"
    head = f"{name} {_num(c.value)} vs baseline {_num(b.value)} per request (ratio {ratio:.3g}; {_threshold(check)}"
    in_bounds = not ((check.min_ratio is not None and ratio < check.min_ratio) or (check.max_ratio is not None and ratio > check.max_ratio))
    if c.events is None or b.events is None or c.requests is None or b.requests is None:
        return dict(verdict=Verdict.PASS if in_bounds else Verdict.FAIL, statistic="ratio", statistic_value=ratio,
                    reason=f"{head}; point estimate){_n(m)}")
    lower, upper = stats.poisson_rate_bounds(b.events, b.requests, check.alpha / 2)
    evidence = []
    if check.min_ratio is not None:  # lower is bad
        evidence.append(stats.poisson_log_e(c.events, c.requests, check.min_ratio * lower, "less"))
    if check.max_ratio is not None:  # higher is bad
        evidence.append(stats.poisson_log_e(c.events, c.requests, check.max_ratio * upper, "greater"))
    fail_e = max(evidence)
    p = stats.p_value(fail_e, 2)
    common = dict(statistic="log e-value (canary out of bounds)", statistic_value=fail_e, p_value=p,
                  bounds={"baseline_rate": [lower, upper]})
    if fail_e >= math.log(2 / check.alpha):
        return dict(**common, verdict=Verdict.FAIL, reason=f"{head}; anytime-valid {_p(p)}){_n(m)}")
    if in_bounds:
        return dict(**common, verdict=Verdict.PASS, reason=f"{head}){_n(m)}")
    return dict(**common, verdict=Verdict.INCONCLUSIVE, estimate_within_bounds=False,
                reason=f"{head}; out of bounds but within noise, {_p(p)}){_n(m)}")


def _resource(check: ResourceCheck, m: Measurement) -> dict:
    ratio = _ratio(m.canary.value, m.baseline.value)
    ok = ratio <= check.max_ratio
    return dict(verdict=Verdict.PASS if ok else Verdict.FAIL, statistic="ratio", statistic_value=ratio,
                reason=f"{check.resource} {_num(m.canary.value)} vs baseline {_num(m.baseline.value)} per instance "
                       f"(ratio {ratio:.3g}, max {check.max_ratio:g})")


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
        when = "at the gate timeout" if verdict is not Verdict.ERROR or gate.timed_out else "after repeated errors"
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
    """Does the canary's share of requests at this step match the weight that was set?

    ``step`` holds both arms' request counts over this step's window. A mismatch means the
    routing is broken.
    """
    if not spec.enabled or not 0 < gate.weight < 100:
        return None
    counts = None
    if isinstance(step, Measurement) and step.canary.requests is not None and step.baseline.requests is not None:
        counts = (step.canary.requests, step.baseline.requests)
    expected = gate.weight / 100
    low, high = expected * (1 - spec.tolerance), expected * (1 + spec.tolerance)
    base = dict(check="sample_ratio", kind="sample_ratio", critical=True,
                threshold=f"canary share within {low:.2%}..{high:.2%} of requests")
    if counts is None or sum(counts) < spec.min_requests:
        return CheckResult(**base, verdict=Verdict.IGNORED, reason="not enough request counts to check the split yet")
    canary, total = counts[0], counts[0] + counts[1]
    share = canary / total if total else 0.0
    log_e = max(stats.bernoulli_log_e(canary, total, high, "greater"), stats.bernoulli_log_e(canary, total, low, "less"))
    p = stats.p_value(log_e, 2)
    common = dict(base, canary_requests=counts[0], baseline_requests=counts[1], canary_value=share, baseline_value=expected,
                  statistic="log e-value (share outside tolerance)", statistic_value=log_e, p_value=p)
    reason = f"canary served {share:.2%} of {total:.0f} requests at weight {gate.weight:g}% (allowed {low:.2%}..{high:.2%}"
    if log_e >= math.log(2 / spec.alpha):
        return CheckResult(**common, verdict=Verdict.FAIL, reason=f"{reason}; anytime-valid {_p(p)}): the routing does not do what was set")
    return CheckResult(**common, verdict=Verdict.PASS, reason=f"{reason})")


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
