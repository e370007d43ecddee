"""Three ways to drive the same rollout over a simulated ``Stream``.

Each strategy starts the canary at the first step at t = 0, decides at its own cadence and
returns a ``Result``: the outcome (promoted | rolled_back | timed_out), when (seconds since the
canary first got traffic), the bad requests served by the canary before traffic went back to
stable (= canary error responses over [0, decision)), and the canary's requests over that time.
"Promoted" is the moment the last gate below 100% passes (the promotion itself is the same for
every strategy and not counted).

- ``run_ours``: this project's judge (``canary_operators.judge.judge``), called the way
  ``MetricGate.poke`` calls it: every poke interval, over the step's window from the shift plus
  ``settle_time`` to now, with ``Gate(weight, baked, timed_out, hard_timed_out)``. With
  ``plan: adapt`` each gate's timeout comes from the evidence planner, as preflight plans it.
- ``run_flagger``: Flagger's canary analysis, from its docs and scheduler (fluxcd/flagger
  pkg/controller/scheduler.go, scheduler_metrics.go): every ``interval`` the builtin checks run
  over the last ``interval``; a failed check (including "no values found") increments
  ``failedChecks`` (never reset during the analysis) and holds the weight; a passing analysis moves
  to the next ``stepWeights`` entry, or promotes at ``maxWeight``; the rollback happens at the
  first tick that finds ``failedChecks >= threshold`` (so one interval after the last failure).
  Checks look at the canary only, against absolute thresholds.
- ``run_fixed``: a fixed bake per step, then one fixed-horizon test over the bake window: a
  one-sided two-proportion z-test of "canary error rate > baseline + tolerance" and a p99 ratio
  from the window's histograms. Pass: next step; fail: rollback.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist

from canary_operators.judge import Gate, Outcome, judge
from canary_operators.measurement import ArmSample, Measurement
from canary_operators.planner import Plan, Traffic, plan_gates
from canary_operators.spec import BackendSpec, ErrorRateCheck, LatencyCheck, ReleaseSpec, SampleRatioSpec
from canary_operators.stats import histogram_quantile

from bench.simulator import ArmWindow, Stream

MAX_SECONDS = 4 * 3600  # a run that has not decided by then is "timed_out"


@dataclass(frozen=True)
class Result:
    outcome: str  # promoted | rolled_back | timed_out
    seconds: int
    bad: int  # canary error responses before the decision
    canary_requests: int
    weight: float  # the weight being judged when the decision fell
    at_timeout: bool = False  # ours: the rollback came from a timeout policy, not from evidence


def _result(stream: Stream, outcome: str, t: int, weight: float, at_timeout: bool = False) -> Result:
    bad, requests = stream.canary_totals(t)
    return Result(outcome, t, bad, requests, weight, at_timeout)


# -- ours -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class OursConfig:
    poke_interval: int = 10
    bake_time: int = 60  # min bake: no advance before
    gate_timeout: int = 900  # policies apply; twice this, even "hold" gives up
    settle_time: int = 5
    max_increase_pp: float = 0.5
    alpha: float = 0.01
    pass_alpha: float = 0.05
    p99_max_ratio: float = 1.2
    min_requests: int = 100
    on_no_data: str = "rollback"
    on_inconclusive: str = "rollback"
    evidence_at: str = "last_gate"
    sample_ratio: SampleRatioSpec = field(default_factory=SampleRatioSpec)
    plan: str = "adapt"  # the evidence planner, as preflight applies it (spec default)
    plan_max_gate_timeout: int = 3600

    def checks(self) -> tuple:
        policies = dict(on_no_data=self.on_no_data, on_inconclusive=self.on_inconclusive)
        return (
            ErrorRateCheck(name="errors", kind="error_rate", max_increase_pp=self.max_increase_pp, alpha=self.alpha,
                           pass_alpha=self.pass_alpha, min_requests=self.min_requests, **policies),
            LatencyCheck(name="p99", kind="latency", quantile=0.99, max_ratio=self.p99_max_ratio, alpha=self.alpha,
                         min_requests=self.min_requests, **policies),
        )

    def describe(self) -> str:
        return (f"poke {self.poke_interval}s, min bake {self.bake_time}s, gate timeout {self.gate_timeout}s "
                f"(hard {2 * self.gate_timeout}s), settle {self.settle_time}s; errors: +{self.max_increase_pp:g} pp, "
                f"alpha {self.alpha:g}, pass_alpha {self.pass_alpha:g}; p99 ratio <= {self.p99_max_ratio:g} "
                f"(alpha {self.alpha:g}); min_requests {self.min_requests}; on_no_data={self.on_no_data}, "
                f"on_inconclusive={self.on_inconclusive}; evidence needed at {self.evidence_at.replace('_', ' ')}; sample ratio +-{self.sample_ratio.tolerance:.0%} "
                f"(alpha {self.sample_ratio.alpha:g}); plan: {self.plan}"
                + (f" (gate timeouts up to {self.plan_max_gate_timeout}s)" if self.plan == "adapt" else ""))

    def release(self, steps: list[int]) -> ReleaseSpec:
        """The spec these settings stand for, for the evidence planner."""
        return ReleaseSpec(name="bench", router=BackendSpec(type="bench"), metrics=BackendSpec(type="bench"),
                           steps=steps, bake_time=self.bake_time, gate_timeout=self.gate_timeout,
                           poke_interval=self.poke_interval, evidence_at=self.evidence_at, plan=self.plan,
                           plan_max_gate_timeout=self.plan_max_gate_timeout, settle_time=self.settle_time,
                           checks=list(self.checks()), sample_ratio=self.sample_ratio)


PREFLIGHT_WINDOW = 600  # preflight reads the stable arm's traffic over the last 10 minutes


def plan_for(stream: Stream, steps: list[int], cfg: OursConfig) -> Plan:
    """The plan preflight would make: the mean total rate over the 10 minutes before the rollout
    (all of it on stable) and the baseline's error rate."""
    rps = sum(stream.rate(t) for t in range(-PREFLIGHT_WINDOW, 0)) / PREFLIGHT_WINDOW
    return plan_gates(cfg.release(steps), steps, cfg.bake_time, Traffic(rps, stream.arms["baseline"].error_rate))


def measurements(win: dict[str, ArmWindow], seconds: float) -> dict[str, Measurement]:
    """What the Prometheus provider would return for the two checks over this window."""
    c, b = win["canary"], win["baseline"]

    def errors(w: ArmWindow) -> ArmSample:
        return ArmSample(value=w.errors / w.requests if w.requests else None, requests=float(w.requests),
                         events=float(w.errors), query="sim:errors")

    def latency(w: ArmWindow) -> ArmSample:
        return ArmSample(value=histogram_quantile(w.buckets, 0.99), requests=float(w.requests), query="sim:p99",
                         buckets=w.buckets if w.requests else None)

    return {
        "errors": Measurement("errors", errors(c), errors(b), seconds),
        "p99": Measurement("p99", latency(c), latency(b), seconds),
    }


def run_ours(stream: Stream, steps: list[int], cfg: OursConfig = OursConfig()) -> Result:
    """As MetricGate does (operators/gate_evaluation.py): the checks use the window since the first
    shift, the sample-ratio check this step's window; only the last gate needs evidence to pass."""
    checks = cfg.checks()
    t = 0
    gate_steps = [s for s in steps if s < 100]
    plan = plan_for(stream, steps, cfg) if cfg.plan != "off" else None
    started = 0
    for weight in gate_steps:
        shifted = t
        timeout = (plan.gate_timeout(weight) if plan else None) or cfg.gate_timeout
        while True:
            t += cfg.poke_interval
            if t > MAX_SECONDS:
                return _result(stream, "timed_out", t, weight)
            stream.advance(t, weight)
            elapsed = t - shifted
            window = max(0, t - started - cfg.settle_time)
            step_window = max(0, elapsed - cfg.settle_time)
            if window > 0:
                observed = measurements(stream.window(t - window, t), window)
            else:
                observed = {check.name: None for check in checks}
            step_counts = measurements(stream.window(t - step_window, t), step_window)["errors"] if step_window > 0 else None
            gate = Gate(weight=weight, baked=elapsed >= cfg.bake_time, timed_out=elapsed >= timeout,
                        hard_timed_out=elapsed >= 2 * timeout,
                        final=cfg.evidence_at == "every_gate" or weight == gate_steps[-1])
            decision = judge(checks, observed, gate, cfg.sample_ratio, 1.0, step_counts)
            if decision.outcome is Outcome.ROLLBACK:
                return _result(stream, "rolled_back", t, weight, "at the gate timeout" in decision.reason)
            if decision.outcome is Outcome.ADVANCE:
                break
    return _result(stream, "promoted", t, steps[-2] if len(steps) > 1 else steps[-1])


# -- Flagger ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FlaggerConfig:
    interval: int = 60  # analysis.interval, and each metric's interval (the query window)
    threshold: int = 5  # analysis.threshold: failed checks before rollback
    success_rate_min: float = 98.5  # request-success-rate thresholdRange.min (percent)
    duration_max_ms: float = 500.0  # request-duration thresholdRange.max (ms, p99)

    def describe(self) -> str:
        return (f"interval {self.interval}s (metric windows {self.interval}s), threshold {self.threshold}, "
                f"stepWeights = the rollout's steps below 100, maxWeight = the last of them; "
                f"request-success-rate min {self.success_rate_min:g}%, request-duration (p99) max "
                f"{self.duration_max_ms:.0f} ms; failedChecks cumulative; no values = failed check")


def flagger_checks_pass(win: ArmWindow, cfg: FlaggerConfig) -> bool:
    """runBuiltinMetricChecks on the canary's last interval."""
    if win.requests <= 0:
        return False  # ErrNoValuesFound: "Halt advancement", counted as a failed check
    success = 100.0 * (win.requests - win.errors) / win.requests
    if success < cfg.success_rate_min:
        return False
    p99 = histogram_quantile(win.buckets, 0.99)
    if p99 is None:
        return False
    return p99 * 1000.0 <= cfg.duration_max_ms


def run_flagger(stream: Stream, steps: list[int], cfg: FlaggerConfig = FlaggerConfig()) -> Result:
    weights = [s for s in steps if s < 100] or [100]
    i, failed, t = 0, 0, 0
    while True:
        t += cfg.interval
        weight = weights[i]
        if t > MAX_SECONDS:
            return _result(stream, "timed_out", t, weight)
        stream.advance(t, weight)
        if failed >= cfg.threshold:
            return _result(stream, "rolled_back", t, weight)
        if not flagger_checks_pass(stream.window(t - cfg.interval, t)["canary"], cfg):
            failed += 1
            continue
        if i + 1 < len(weights):
            i += 1
        else:
            return _result(stream, "promoted", t, weight)


# -- fixed bake + fixed-horizon test ----------------------------------------------------------------

@dataclass(frozen=True)
class FixedConfig:
    bake_time: int = 300
    settle_time: int = 5
    max_increase_pp: float = 0.5
    alpha: float = 0.05
    p99_max_ratio: float = 1.2

    def describe(self) -> str:
        return (f"bake {self.bake_time}s per step, then one test over the bake (minus {self.settle_time}s settle): "
                f"one-sided two-proportion z-test canary > baseline + {self.max_increase_pp:g} pp at alpha "
                f"{self.alpha:g} (z > {NormalDist().inv_cdf(1 - self.alpha):.3f}), and histogram p99 ratio "
                f"<= {self.p99_max_ratio:g}")


def fixed_test_passes(win: dict[str, ArmWindow], cfg: FixedConfig) -> bool:
    c, b = win["canary"], win["baseline"]
    if c.requests <= 0 or b.requests <= 0:
        return False  # nothing to test: not a pass
    pc, pb = c.errors / c.requests, b.errors / b.requests
    diff = pc - pb - cfg.max_increase_pp / 100
    se = math.sqrt(pc * (1 - pc) / c.requests + pb * (1 - pb) / b.requests)
    z = diff / se if se > 0 else math.copysign(math.inf, diff) if diff else 0.0
    if z > NormalDist().inv_cdf(1 - cfg.alpha):
        return False
    cq, bq = histogram_quantile(c.buckets, 0.99), histogram_quantile(b.buckets, 0.99)
    if cq is None or bq is None:
        return False
    ratio = cq / bq if bq > 0 else (1.0 if cq == 0 else math.inf)
    return ratio <= cfg.p99_max_ratio


def run_fixed(stream: Stream, steps: list[int], cfg: FixedConfig = FixedConfig()) -> Result:
    t = 0
    for weight in [s for s in steps if s < 100]:
        shifted = t
        t = shifted + cfg.bake_time
        stream.advance(t, weight)
        if not fixed_test_passes(stream.window(shifted + cfg.settle_time, t), cfg):
            return _result(stream, "rolled_back", t, weight)
    return _result(stream, "promoted", t, steps[-2] if len(steps) > 1 else steps[-1])
