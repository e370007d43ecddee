"""The evidence planner: how long each gate needs at the live traffic, before the rollout starts.

``plan_gates(release, steps, bake_time, traffic)`` → ``Plan``. Pure Python, no Airflow import.

At low traffic the last gate before promotion (the one that needs positive evidence) cannot get
it within the spec's ``gate_timeout``, and ``on_inconclusive: rollback`` then rolls back healthy
canaries. The planner works out, per gate:

- when the cumulative window reaches every check's ``min_requests`` (until then the judge holds);
- when the judge itself (``judge.evaluate_check``) would let a healthy canary (the baseline's
  rates) advance, fed the counts expected over the cumulative rollout window, on the unlucky side
  (``PESSIMISM_Z`` standard deviations of the canary's events on the bad side, the baseline's on
  the other: more canary errors; fewer checkouts under ``min_ratio``, more under ``max_ratio``,
  each side planned when both are set); bisected over time. The last gate before promotion needs
  a pass (positive evidence); an earlier gate advances once no check shows harm, which at low
  weight needs enough requests for the canary's point estimate to sit within the tolerance;
- the gate timeout: the spec's, or with ``plan: adapt``
  ``min(plan_max_gate_timeout, max(gate_timeout, needed × MARGIN))``.

Planned from the traffic: ``error_rate`` and ``business`` checks without a custom query. A business
check needs the baseline's rate (events per request, ``Traffic.business_rates``) and, for
``unit: amount``, its dispersion (``Traffic.dispersions``: Var/mean of the amount per request, as
``judge.amount_dispersion`` measures it). An amount is planned in units of its dispersion, where
amount / dispersion is a Poisson count, and scaled back; the judge, which measures the dispersion
from per-period values, is fed periods that spread by that dispersion (one per ``period_seconds`` of
the metrics settings, 60 s if unset), so it also needs ``min_periods`` of them and widens its bound
on few periods as it will at the gate. A business check preflight could not measure, and the other
checks (latency buckets, per-period values) settle with their data and are planned for their
``min_requests`` alone. Unknown traffic leaves every timeout as the spec says.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

from canary_operators.judge import Gate, Verdict, evaluate_check
from canary_operators.measurement import ArmSample, Measurement
from canary_operators.spec import BusinessCheck, ErrorRateCheck, LatencyCheck

# A healthy canary is planned as an unlucky one: its events (errors, checkouts, an amount in units
# of its dispersion) this many standard deviations on the bad side of their expectation, the
# baseline's as many on the other (about the 90th percentile of each).
PESSIMISM_Z = 1.28
# The planned timeout is the needed time times this: the unlucky canary still passes before it.
# Picked with bench/judge.py (low-traffic A/A and 1% -> 3% scenarios).
MARGIN = 1.25
HORIZON = 30 * 24 * 3600.0  # beyond this a gate is taken as never settling
# The static plan in the trigger form: total requests per second, at this baseline error rate.
FORM_RATES = (1.0, 10.0, 100.0)
FORM_ERROR_RATE = 0.01
# An amount's periods, when the metrics settings give no period_seconds: the longest default
# (Datadog, CloudWatch); fewer periods widen the judge's bound on the dispersion, so this errs long.
DEFAULT_PERIOD_SECONDS = 60.0
MAX_PERIODS = 1000  # the providers' cap on periods per window


@dataclass(frozen=True)
class Traffic:
    """Live traffic before the rollout: total requests per second and the baseline's error rate.
    None: unknown (the provider is down or has no data).

    ``business_rates``: per business check (by name), the baseline's events per request;
    ``dispersions``: per ``unit: amount`` check, the amount's Var/mean per request. A business
    check missing from them is planned for its ``min_requests`` alone; ``unmeasured`` says why."""

    requests_per_second: float | None
    error_rate: float | None = None
    source: str = ""
    business_rates: Mapping[str, float] = field(default_factory=dict)
    dispersions: Mapping[str, float] = field(default_factory=dict)
    unmeasured: Mapping[str, str] = field(default_factory=dict)  # business check name -> why
    # Per latency check from a histogram: the stable arm's bucket (lower, upper edge) holding the
    # check's quantile. A check cannot resolve a ratio finer than upper / lower there.
    latency_buckets: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def known(self) -> bool:
        return bool(self.requests_per_second) and self.requests_per_second > 0 and self.error_rate is not None


@dataclass(frozen=True)
class GatePlan:
    weight: int
    canary_rps: float | None  # requests per second the canary gets at this weight
    min_requests_seconds: float | None  # since the shift, until every check has min_requests
    needed_seconds: float | None  # since the shift, until a healthy canary advances; None: never
    gate_timeout: float  # what the gate applies
    evidence: bool  # this gate needs positive evidence to pass


@dataclass(frozen=True)
class Plan:
    mode: str  # off | warn | adapt
    traffic: Traffic
    gates: tuple[GatePlan, ...]
    lines: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    def gate_timeout(self, weight: int) -> float | None:
        return next((g.gate_timeout for g in self.gates if g.weight == weight), None)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["gates"], d["lines"], d["warnings"] = list(d["gates"]), list(d["lines"]), list(d["warnings"])
        d["traffic"] = {**d["traffic"], "business_rates": dict(self.traffic.business_rates),
                        "dispersions": dict(self.traffic.dispersions), "unmeasured": dict(self.traffic.unmeasured)}
        d["gate_timeouts"] = {str(g.weight): g.gate_timeout for g in self.gates}  # what the gates read
        return d


def planned_gate_timeout(plan: Mapping | None, weight: int) -> float | None:
    """This gate's timeout from a plan as pushed to XCom (``Plan.to_dict``); None: no plan."""
    if not isinstance(plan, Mapping):
        return None
    value = (plan.get("gate_timeouts") or {}).get(str(weight))
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


# -- expected counts --------------------------------------------------------------------------------

def _requests(schedule: Sequence[tuple[float, float]], start: float, end: float, rps: float) -> tuple[float, float]:
    """(canary, baseline) requests over [start, end) of the rollout, with ``schedule`` the
    (shift time, weight %) of each step so far."""
    canary = total = 0.0
    for i, (at, weight) in enumerate(schedule):
        until = schedule[i + 1][0] if i + 1 < len(schedule) else math.inf
        lo, hi = max(at, start), min(until, end)
        if hi > lo:
            canary += (hi - lo) * rps * weight / 100
            total += (hi - lo) * rps
    return canary, total - canary


def _unlucky(expected: float, sign: int) -> float:
    """A Poisson count ``PESSIMISM_Z`` standard deviations above (``sign`` 1) or below (-1) ``expected``."""
    return max(0.0, expected + sign * PESSIMISM_Z * math.sqrt(expected))


def _periods(requests: float, events: float, dispersion: float, k: int) -> tuple[tuple[float, float], ...]:
    """``k`` per-period amounts per request, mean ``events / requests``, whose spread the judge reads
    as ``dispersion`` (before its bound on few periods): half of them ``d`` above the mean, half below."""
    mu = events / requests
    pairs = k // 2
    # per-period means of n = requests / k requests vary by dispersion * mu / n around mu
    d = math.sqrt(dispersion * mu * k / requests * (k - 1) / (2 * pairs)) if pairs and requests else 0.0
    values = [mu + d] * pairs + [mu - d] * pairs + [mu] * (k - 2 * pairs)
    return tuple((i * 60.0, v) for i, v in enumerate(values))


def _healthy(check, canary: float, baseline: float, rate: float, bad: int = 1, dispersion: float | None = None,
             periods: int = 0) -> Measurement:
    """What an unlucky healthy canary shows: the baseline's rate, its events ``PESSIMISM_Z`` standard
    deviations on the bad side (``bad`` 1: more is bad, -1: fewer), the baseline's on the other.
    ``dispersion``: an amount, counted in units of it (Poisson there), scaled back, over ``periods``."""
    scale = dispersion or 1.0
    c_events = _unlucky(canary * rate / scale, bad) * scale
    b_events = _unlucky(baseline * rate / scale, -bad) * scale

    def arm(requests: float, events: float) -> ArmSample:
        spread = _periods(requests, events, dispersion, periods) if dispersion and requests and events else None
        return ArmSample(value=events / requests if requests else None, requests=requests, events=events,
                         query="plan", periods=spread)

    return Measurement(check.name, arm(canary, c_events), arm(baseline, b_events), 0.0)


def _unlucky_sides(check) -> tuple[int, ...]:
    """The bad sides of a check: 1 (more events are bad), -1 (fewer), or both."""
    if not isinstance(check, BusinessCheck):
        return (1,)
    return tuple(side for side, bound in ((-1, check.min_ratio), (1, check.max_ratio)) if bound is not None)


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

def _minutes(seconds: float | None) -> str:
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
            return _requests(schedule, settle, shifted + s, rps)

        enough = _first(lambda s: min(counts(s)) >= min_requests)
        needed = None if enough is None else max(bake, enough)
        if needed is not None and planned and (evidence or judge_early_gates):
            gate = Gate(weight=weight, baked=True, final=evidence)

            def advances(s: float) -> bool:
                canary, baseline = counts(s)
                k = min(MAX_PERIODS, int((shifted + s - settle) // period))
                return all(_advances(evaluate_check(c, _healthy(
                    c, canary, baseline, traffic.business_rates[c.name] if isinstance(c, BusinessCheck) else rate,
                    side, traffic.dispersions.get(c.name) if getattr(c, "unit", "") == "amount" else None, k),
                    gate), evidence) for c in planned for side in _unlucky_sides(c))

            settled = _first(advances, needed, resolution, horizon)
            needed = None if settled is None else max(needed, settled)
        timeout = spec_timeout
        if adapt:
            timeout = cap if needed is None else min(cap, max(spec_timeout, math.ceil(needed * MARGIN)))
        gates.append(GatePlan(weight, rps * weight / 100, None if enough is None else float(enough),
                              None if needed is None else float(needed), float(timeout), evidence))
        what = "a healthy canary passes with evidence" if evidence else "a healthy canary advances"
        reached = "reached already" if enough is not None and enough <= 1 else f"after {_minutes(enough)}"
        line = (f"at {weight}%: {_rps(rps * weight / 100)} to the canary; min_requests {min_requests} {reached}; "
                f"{what} within {_minutes(needed)}; gate timeout {_minutes(timeout)}")
        if timeout != spec_timeout:
            line += f" (spec {_minutes(spec_timeout)}, lengthened)"
        lines.append(line)
        if needed is None or needed * MARGIN > timeout:
            limit = (f"even the cap plan_max_gate_timeout ({_minutes(cap)})" if adapt
                     else f"gate_timeout ({_minutes(timeout)})")
            warnings.append(
                f"at {weight}%: a healthy canary needs up to {_minutes(needed)} here, and {limit} is not enough "
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


def form_text(release) -> str:
    """A short static plan for the trigger form: the last gate's timeout at a few traffic levels."""
    parts = []
    for rps in FORM_RATES:
        plan = plan_gates(release, None, None, Traffic(rps, FORM_ERROR_RATE), resolution=0.05, judge_early_gates=False,
                          horizon=4 * max(release.gate_timeout, release.plan_max_gate_timeout))
        last = plan.gates[-1]
        note = " (not enough)" if any(w.startswith(f"at {last.weight}%") for w in plan.warnings) else ""
        needs = _minutes(last.needed_seconds) if last.needed_seconds is not None else "more than 4 times the cap"
        parts.append(f"{rps:g} req/s: needs {needs}, timeout {_minutes(last.gate_timeout)}{note}")
    return (f"Evidence planner ({release.plan}), last gate at {plan.gates[-1].weight}% with {FORM_ERROR_RATE:.0%} "
            f"baseline errors: " + "; ".join(parts) + ".")
