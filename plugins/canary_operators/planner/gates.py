"""``plan_gates``: per gate of a run, when a healthy canary can decide at the live traffic, and the timeout it gets."""

from __future__ import annotations

import math
from typing import Sequence

from canary_operators.judge import Gate, Verdict, evaluate_check
from canary_operators.planner.healthy_canary import expected_requests, healthy, unlucky_sides
from canary_operators.planner.plan import GatePlan, Plan, Traffic
from canary_operators.spec import BusinessCheck, ErrorRateCheck, LatencyCheck

# The planned timeout is the needed time times this: the unlucky canary still passes before it.
# Picked with bench/judge.py (low-traffic A/A and 1% -> 3% scenarios).
MARGIN = 1.25
HORIZON = 30 * 24 * 3600.0  # beyond this a gate is taken as never settling
# An amount's periods, when the metrics settings give no period_seconds: the longest default
# (Datadog, CloudWatch); fewer periods widen the judge's bound on the dispersion, so this errs long.
DEFAULT_PERIOD_SECONDS = 60.0
MAX_PERIODS = 1000  # the providers' cap on periods per window


def _first(predicate, lo: float = 0.0, resolution: float = 0.005, horizon: float = HORIZON) -> float | None:
    """The first time from which ``predicate`` holds (to the second, or ``resolution`` relative
    for long times; rounded up), or None before ``horizon``. ``predicate`` must hold from ``lo`` on."""
    if predicate(lo):
        return math.ceil(lo)
    hi = max(lo, 1.0)
    while not predicate(hi):
        if hi >= horizon:
            return None
        lo, hi = hi, min(horizon, hi * 2)
    while hi - lo > max(1.0, hi * resolution):
        mid = (lo + hi) / 2
        if predicate(mid):
            hi = mid
        else:
            lo = mid
    return math.ceil(hi)


def _advances(result, evidence: bool) -> bool:
    """Would the judge let the gate advance on this check? The last gate needs a pass; an earlier
    one also advances on an inconclusive check whose point estimate is within bounds."""
    if result.verdict is Verdict.PASS:
        return True
    return not evidence and result.verdict is Verdict.INCONCLUSIVE and bool(result.estimate_within_bounds)


def _planned(check, traffic: Traffic) -> bool:
    if check.query:
        return False
    if isinstance(check, ErrorRateCheck):
        return True
    return (isinstance(check, BusinessCheck) and (traffic.business_rates.get(check.name) or 0) > 0
            and (check.unit != "amount" or (traffic.dispersions.get(check.name) or 0) > 0))


def _period_seconds(release) -> float:
    value = (getattr(release.metrics, "settings", None) or {}).get("period_seconds")
    return float(value) if isinstance(value, (int, float)) and value > 0 else DEFAULT_PERIOD_SECONDS


# -- the plan -------------------------------------------------------------------------------------

def minutes(seconds: float | None) -> str:
    if seconds is None:
        return "longer than planned for"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _rps(x: float) -> str:
    return f"{x:.3g} req/s"


def plan_gates(release, steps: Sequence[int] | None, bake_time: float | None, traffic: Traffic,
               resolution: float = 0.005, judge_early_gates: bool = True, horizon: float = HORIZON) -> Plan:
    """Per gate of this run, when it can decide at ``traffic``, and the timeout it gets.

    ``resolution``: of long times, relative. ``judge_early_gates`` False plans only the gates
    that need evidence with the judge, and ``horizon`` is the longest time worked out (cheaper:
    the trigger form's static plan)."""
    steps = [s for s in (steps or release.steps) if s < 100]
    bake = release.bake_time if bake_time is None else bake_time
    spec_timeout = release.gate_timeout
    if release.plan == "off" or not traffic.known:
        gates = tuple(GatePlan(w, None, None, None, spec_timeout, _needs_evidence(release, steps, w)) for w in steps)
        if release.plan == "off":
            return Plan("off", traffic, gates, ("evidence planner off: gate timeouts as the spec says",))
        why = f"live traffic unknown ({traffic.source or 'no data'})"
        return Plan(release.plan, traffic, gates, (f"evidence planner: {why}; gate timeouts as the spec says "
                                                   f"({spec_timeout:g} s)",),
                    (f"{why}: the gates keep the spec's {spec_timeout:g} s timeout, however long they need",))
    rps, rate = traffic.requests_per_second, traffic.error_rate
    min_requests = max((c.min_requests for c in release.checks), default=0)
    planned = [c for c in release.checks if _planned(c, traffic)]
    settle = release.settle_time
    period = _period_seconds(release)
    adapt = release.plan == "adapt"
    cap = max(spec_timeout, release.plan_max_gate_timeout)
    lines = [f"evidence planner ({release.plan}): {_rps(rps)} in total, baseline errors {rate:.2%}"
             + (f" ({traffic.source})" if traffic.source else "")]
    for c in release.checks:
        if isinstance(c, BusinessCheck) and c in planned:
            rate_c = traffic.business_rates[c.name]
            spread = f", dispersion {traffic.dispersions[c.name]:.3g} per unit" if c.unit == "amount" else ""
            lines.append(f"business check {c.name}: baseline {rate_c:.4g} per request{spread}")
        elif isinstance(c, BusinessCheck):
            why = ("a custom query gives no counts" if c.query
                   else traffic.unmeasured.get(c.name) or "its baseline was not measured")
            lines.append(f"business check {c.name}: planned for min_requests alone ({why})")
    warnings: list[str] = _bucket_warnings(release, traffic)
    gates = []
    schedule: list[tuple[float, float]] = []
    shifted = 0.0
    for weight in steps:
        schedule.append((shifted, weight))
        evidence = _needs_evidence(release, steps, weight)

        def counts(s: float) -> tuple[float, float]:
            return expected_requests(schedule, settle, shifted + s, rps)

        enough = _first(lambda s: min(counts(s)) >= min_requests)
        needed = None if enough is None else max(bake, enough)
        if needed is not None and planned and (evidence or judge_early_gates):
            gate = Gate(weight=weight, baked=True, final=evidence)

            def advances(s: float) -> bool:
                canary, baseline = counts(s)
                k = min(MAX_PERIODS, int((shifted + s - settle) // period))
                return all(_advances(evaluate_check(c, healthy(
                    c, canary, baseline, traffic.business_rates[c.name] if isinstance(c, BusinessCheck) else rate,
                    side, traffic.dispersions.get(c.name) if getattr(c, "unit", "") == "amount" else None, k),
                    gate), evidence) for c in planned for side in unlucky_sides(c))

            settled = _first(advances, needed, resolution, horizon)
            needed = None if settled is None else max(needed, settled)
        timeout = spec_timeout
        if adapt:
            timeout = cap if needed is None else min(cap, max(spec_timeout, math.ceil(needed * MARGIN)))
        gates.append(GatePlan(weight, rps * weight / 100, None if enough is None else float(enough),
                              None if needed is None else float(needed), float(timeout), evidence))
        what = "a healthy canary passes with evidence" if evidence else "a healthy canary advances"
        reached = "reached already" if enough is not None and enough <= 1 else f"after {minutes(enough)}"
        line = (f"at {weight}%: {_rps(rps * weight / 100)} to the canary; min_requests {min_requests} {reached}; "
                f"{what} within {minutes(needed)}; gate timeout {minutes(timeout)}")
        if timeout != spec_timeout:
            line += f" (spec {minutes(spec_timeout)}, lengthened)"
        lines.append(line)
        if needed is None or needed * MARGIN > timeout:
            limit = (f"even the cap plan_max_gate_timeout ({minutes(cap)})" if adapt
                     else f"gate_timeout ({minutes(timeout)})")
            warnings.append(
                f"at {weight}%: a healthy canary needs up to {minutes(needed)} here, and {limit} is not enough "
                f"to be sure of it, so healthy canaries may be rolled back at the timeout; raise "
                + ("plan_max_gate_timeout or gate_timeout" if adapt else "gate_timeout (or set plan: adapt)")
                + ", widen the tolerance (max_increase_pp"
                + (", a business check's min_ratio/max_ratio"
                   if any(isinstance(c, BusinessCheck) for c in planned) else "")
                + "), or drop early low-weight steps")
        # Later gates are planned as if this step advanced at its earliest (bake and min_requests
        # met): less evidence carried over, so their plan errs on the long side.
        shifted += min(timeout, max(bake, enough if enough is not None else timeout))
    return Plan(release.plan, traffic, tuple(gates), tuple(lines), tuple(warnings))


def _bucket_warnings(release, traffic: Traffic) -> list[str]:
    """A latency check whose histogram buckets around the stable quantile are coarser than its
    max_ratio cannot see a regression below that coarseness: the judge never fails on what the
    buckets cannot resolve."""
    out = []
    for c in release.checks:
        lower, upper = traffic.latency_buckets.get(c.name, (0.0, math.inf))
        if isinstance(c, LatencyCheck) and lower > 0 and math.isfinite(upper) and upper / lower > c.max_ratio:
            out.append(f"latency check {c.name}: stable's p{round(c.quantile * 100)} lies in ({lower:g} s, {upper:g} s], "
                       f"so a regression smaller than x{upper / lower:.3g} there cannot be shown (max_ratio "
                       f"{c.max_ratio:g}); add histogram buckets between {lower:g} s and {upper:g} s")
    return out


def _needs_evidence(release, steps: Sequence[int], weight: int) -> bool:
    return release.evidence_at == "every_gate" or weight == max(steps)

