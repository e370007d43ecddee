"""Benchmark: does every gate check fail a healthy canary at a rate <= its alpha under continuous looks?

    .venv/bin/python bench/validity.py               # full run: 1,000 runs per A/A and at-tolerance row
    .venv/bin/python bench/validity.py --quick       # ~100 runs per row, a smoke test
    .venv/bin/python bench/validity.py --only sample # some groups (a substring of the group's key)

Each check kind is fed the data the way its provider shape delivers it (histogram buckets from
Prometheus, one value per 60 s period from Datadog or CloudWatch, cumulative counts, request
counts through Prometheus' ``increase()``), and judged by ``canary_operators.judge`` exactly as a
gate looks: every 10 s over a 15 min gate, on the cumulative window from the shift + 5 s settle to
the look. Per scenario it prints, with 95% Wilson intervals:

- A/A and at exactly the tolerance: the false-fail rate (a FAIL verdict at any look), and apart
  from it how many runs ended the 15 min inconclusive (and of those, with the estimate out of
  bounds): a gate timeout with ``on_inconclusive: rollback`` would roll those back;
- a clear regression: the detection rate (FAIL within 15 min) and the mean time to it.

Then a power table (the anytime error-rate test against a fixed-horizon z-test), a target line
per row (false fails <= alpha, upper CI <= 2 alpha), and the run time. The verdicts come from
``evaluate_check`` with ``Gate(timed_out=False)``, so only evidence fails a check, never a policy.
Figures only: the exit code does not depend on the targets.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import NormalDist

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT / "plugins", ROOT):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from bench.judge import wilson  # noqa: E402
from bench.simulator import (  # noqa: E402
    BUCKETS,
    Arm,
    binomial,
    lognormal_sum,
    multinomial,
    poisson,
    prometheus_increase,
    sample_quantile,
)
from canary_operators.judge import Gate, Verdict, evaluate_check, sample_ratio  # noqa: E402
from canary_operators.measurement import ArmSample, Measurement  # noqa: E402
from canary_operators.spec import (  # noqa: E402
    BusinessCheck,
    ErrorRateCheck,
    LatencyCheck,
    ResourceCheck,
    SampleRatioSpec,
)
from canary_operators.stats import histogram_quantile  # noqa: E402

LOOK_EVERY = 10  # seconds between looks
GATE_SECONDS = 900  # the gate timeout: looks at 10, 20, ..., 900 s after the shift
SETTLE = 5  # the window starts 5 s after the shift
RPS = 200.0
ALPHA = 0.01
Z99 = NormalDist().inv_cdf(0.99)


def looks(end: int = GATE_SECONDS) -> range:
    return range(LOOK_EVERY, end + 1, LOOK_EVERY)


def arm_with_p99(p99: float, sigma: float = 0.6) -> Arm:
    """A lognormal latency whose true p99 is ``p99`` seconds."""
    return Arm(latency_median=p99 / math.exp(sigma * Z99), latency_sigma=sigma)


@dataclass(frozen=True)
class Run:
    fail_at: float | None = None  # seconds after the shift of the first FAIL verdict
    inconclusive: bool = False  # at the last look (15 min)
    out_of_bounds: bool = False  # ... with the estimate out of bounds
    requests: float = 0.0  # canary requests at the first FAIL (power rows)
    disagreed: bool = False  # dollars vs cents gave different verdicts at some look
    rejected: bool = False  # sample ratio: some look rejected the split (held by confirm_seconds)


def _end(fail_at, result, requests: float = 0.0, disagreed: bool = False, rejected: bool = False) -> Run:
    if fail_at is not None:
        return Run(fail_at=fail_at, requests=requests, disagreed=disagreed, rejected=rejected)
    inconclusive = result is not None and result.verdict is Verdict.INCONCLUSIVE
    return Run(inconclusive=inconclusive, out_of_bounds=inconclusive and result.estimate_within_bounds is False,
               disagreed=disagreed, rejected=rejected)


def _gate(weight: float) -> Gate:
    return Gate(weight=weight, baked=True)


# -- histogram latency (Prometheus buckets) ------------------------------------------------------------

def run_histogram(p: dict, seed: str) -> Run:
    """Both arms' cumulative bucket counts since the window start, as ``increase(..._bucket[w])``
    gives them (counts drawn per 10 s block: a sum of Poisson seconds is Poisson)."""
    rng = random.Random(seed)
    canary, baseline = arm_with_p99(p["canary_p99"]), arm_with_p99(p["baseline_p99"])
    probs = {}
    for name, arm in (("canary", canary), ("baseline", baseline)):
        ps, cum, total = arm.bucket_probs(), [], 0.0
        for x in ps:
            total += x
            cum.append(total)
        probs[name] = (ps, tuple(cum))
    counts = {"canary": [0] * len(BUCKETS), "baseline": [0] * len(BUCKETS)}
    check = LatencyCheck(name="p99", kind="latency", quantile=0.99, max_ratio=p["max_ratio"], alpha=ALPHA)
    gate, w, since, result = _gate(p["weight"]), p["weight"] / 100, SETTLE, None
    for t in looks():
        total = poisson(rng, p["rps"] * (t - since))
        since = t
        n_canary = binomial(rng, total, w)
        for name, n in (("canary", n_canary), ("baseline", total - n_canary)):
            counts[name] = [a + b for a, b in zip(counts[name], multinomial(rng, n, *probs[name]))]
        arms = []
        for name in ("canary", "baseline"):
            running, cumulative = 0, []
            for bound, k in zip(BUCKETS, counts[name]):
                running += k
                cumulative.append((bound, float(running)))
            cumulative = tuple(cumulative)
            arms.append(ArmSample(value=histogram_quantile(cumulative, 0.99), requests=float(running),
                                  query="", buckets=cumulative if running else None))
        result = evaluate_check(check, Measurement("p99", arms[0], arms[1], t - SETTLE), gate)
        if result.verdict is Verdict.FAIL:
            return _end(t, result)
    return _end(None, result)


# -- one value per period (Datadog, CloudWatch) ----------------------------------------------------------

class Periods:
    """Per-period values over the window [shift + 5 s, look), on ``period`` s periods aligned to the clock
    (the shift falls at a random second of a period). ``partial``: Datadog's shape, where the
    first and the in-progress period hold only the part inside the window; the in-progress one is
    drawn anew at each look from its requests so far (independent redraws: pessimistic, a real
    growing period changes less). Otherwise CloudWatch's shape: whole periods inside the window only."""

    def __init__(self, rng: random.Random, partial: bool, draw, period: int = 60):
        self.rng, self.partial, self.draw = rng, partial, draw  # draw(rng, seconds) -> (canary, baseline, req_c, req_b)
        self.period = period
        self.shift = rng.randrange(self.period)  # the shift's second within its period, clock time
        self.done: list[tuple[float, tuple]] = []  # finished periods: (start, values)
        self.requests = [0.0, 0.0]
        self.totals = [0.0, 0.0]  # sum of value x requests: the window's amount, for amounts

    def at(self, t: int) -> tuple[tuple, tuple, float, float]:
        """(canary periods, baseline periods, canary requests, baseline requests) at look ``t``."""
        start, now = self.shift + SETTLE, self.shift + t
        first = start // self.period * self.period
        if not self.partial and first < start:
            first += self.period
        next_start = first + self.period * len(self.done)
        while next_start + self.period <= now:  # periods that finished since the last look
            covered = next_start + self.period - max(next_start, start)
            values = self.draw(self.rng, covered)
            self.done.append((next_start, values))
            self.requests[0] += values[2]
            self.requests[1] += values[3]
            self.totals[0] += (values[0] or 0.0) * values[2]
            self.totals[1] += (values[1] or 0.0) * values[3]
            next_start += self.period
        periods = list(self.done)
        requests, self.last_totals = list(self.requests), list(self.totals)
        if self.partial and now > max(next_start, start):  # the in-progress period
            values = self.draw(self.rng, now - max(next_start, start))
            periods.append((next_start, values))
            requests[0] += values[2]
            requests[1] += values[3]
            self.last_totals[0] += (values[0] or 0.0) * values[2]
            self.last_totals[1] += (values[1] or 0.0) * values[3]
        canary = tuple((s, v[0]) for s, v in periods if v[0] is not None and v[1] is not None)
        baseline = tuple((s, v[1]) for s, v in periods if v[0] is not None and v[1] is not None)
        return canary, baseline, requests[0], requests[1]


def _period_sample(periods: tuple, requests: float, total: float | None = None) -> ArmSample:
    """One arm as a provider gives it; ``total``: an amount's sum over the window (``events``)."""
    if total is not None:
        return ArmSample(value=total / requests if requests else None, requests=requests, query="", periods=periods,
                         events=total)
    value = statistics.fmean(v for _, v in periods) if periods else None
    return ArmSample(value=value, requests=requests, query="", periods=periods)


def _run_periods(check, p: dict, seed: str, draw, scale: float | None = None) -> Run:
    """Look every 10 s at the per-period values; ``scale``: also judge the values times ``scale``
    (cents for dollars) on the same data, and record whether any verdict differed."""
    rng = random.Random(seed)
    periods = Periods(rng, p.get("partial", False), draw, p.get("period", 60))
    gate, result, disagreed = _gate(p["weight"]), None, False
    for t in looks():
        c, b, rc, rb = periods.at(t)
        tc, tb = periods.last_totals if scale is not None else (None, None)  # amounts carry their totals
        result = evaluate_check(check, Measurement(check.name, _period_sample(c, rc, tc), _period_sample(b, rb, tb),
                                                   t - SETTLE), gate)
        if scale is not None:
            scaled = [tuple((s, v * scale) for s, v in arm) for arm in (c, b)]
            other = evaluate_check(check, Measurement(check.name, _period_sample(scaled[0], rc, tc * scale),
                                                      _period_sample(scaled[1], rb, tb * scale), t - SETTLE), gate)
            disagreed = disagreed or other.verdict is not result.verdict
        if result.verdict is Verdict.FAIL:
            return _end(t, result, disagreed=disagreed)
    return _end(None, result, disagreed=disagreed)


def _split(rng: random.Random, p: dict, seconds: float) -> tuple[int, int]:
    total = poisson(rng, p["rps"] * seconds)
    n_canary = binomial(rng, total, p["weight"] / 100)
    return n_canary, total - n_canary


def run_period_percentiles(p: dict, seed: str) -> Run:
    canary, baseline = arm_with_p99(p["canary_p99"]), arm_with_p99(p["baseline_p99"])

    def draw(rng, seconds):
        nc, nb = _split(rng, p, seconds)
        return sample_quantile(rng, canary, nc, 0.99), sample_quantile(rng, baseline, nb, 0.99), nc, nb

    check = LatencyCheck(name="p99", kind="latency", quantile=0.99, max_ratio=p["max_ratio"], alpha=ALPHA)
    return _run_periods(check, p, seed, draw)


def run_resource(p: dict, seed: str) -> Run:
    """CPU per instance, the mean over each period: lognormal noise per arm and period (sigma
    ``noise``) on a load factor both arms share (sigma 0.2)."""
    def draw(rng, seconds):
        nc, nb = _split(rng, p, seconds)
        load = p["cpu"] * math.exp(rng.gauss(0, 0.2))
        return (load * p["ratio"] * math.exp(rng.gauss(0, p["noise"])), load * math.exp(rng.gauss(0, p["noise"])),
                nc, nb)

    check = ResourceCheck(name="cpu", kind="resource", resource="cpu", max_ratio=p["max_ratio"], alpha=ALPHA)
    return _run_periods(check, p, seed, draw)


def run_amounts(p: dict, seed: str) -> Run:
    """Revenue per request per period: purchases ~ Binomial(requests, conversion), each a lognormal
    amount; judged in dollars and again in cents on the same data."""
    def draw(rng, seconds):
        nc, nb = _split(rng, p, seconds)
        values = []
        for n, conversion in ((nc, p["conversion"] * p["ratio"]), (nb, p["conversion"])):
            amount = lognormal_sum(rng, binomial(rng, n, conversion), p["mean_amount"], p["amount_sigma"])
            values.append(amount / n if n else None)
        return values[0], values[1], nc, nb

    check = BusinessCheck(name="revenue", kind="business", metric="revenue", unit="amount",
                          min_ratio=p["min_ratio"], alpha=ALPHA)
    return _run_periods(check, p, seed, draw, scale=100.0)


# -- counts (error rate, business counts) ----------------------------------------------------------------

def _run_counts(check, p: dict, seed: str, canary_rate: float, baseline_rate: float, end: int = GATE_SECONDS) -> Run:
    """Cumulative requests and events per arm (``increase()`` over the window), an event per
    request ~ Bernoulli(rate), looked at every 10 s until a FAIL or ``end``."""
    rng = random.Random(seed)
    gate, since, result = _gate(p["weight"]), SETTLE, None
    req, ev = [0, 0], [0, 0]
    for t in looks(end):
        nc, nb = _split(rng, p, t - since)
        since = t
        for i, (n, rate) in enumerate(((nc, canary_rate), (nb, baseline_rate))):
            req[i] += n
            ev[i] += binomial(rng, n, rate)
        arms = [ArmSample(value=ev[i] / req[i] if req[i] else None, requests=float(req[i]), query="",
                          events=float(ev[i])) for i in (0, 1)]
        result = evaluate_check(check, Measurement(check.name, arms[0], arms[1], t - SETTLE), gate)
        if result.verdict is Verdict.FAIL:
            return _end(t, result, requests=req[0])
    return _end(None, result, requests=req[0])


def _error_check(p: dict) -> ErrorRateCheck:
    return ErrorRateCheck(name="errors", kind="error_rate", max_increase_pp=p["max_increase_pp"], alpha=ALPHA)


def run_error_rate(p: dict, seed: str) -> Run:
    return _run_counts(_error_check(p), p, seed, p["baseline_rate"] + p["increase_pp"] / 100, p["baseline_rate"],
                       p.get("end", GATE_SECONDS))


def run_business_counts(p: dict, seed: str) -> Run:
    check = BusinessCheck(name="checkouts", kind="business", metric="checkouts", unit="count",
                          min_ratio=p["min_ratio"], alpha=ALPHA)
    return _run_counts(check, p, seed, p["conversion"] * p["ratio"], p["conversion"])


# -- sample ratio (request counts through increase()) -----------------------------------------------------

def run_sample_ratio(p: dict, seed: str) -> Run:
    """Per-second requests per arm; each arm's counter scraped every ``scrape`` s (a random phase per
    arm); the step's counts are ``increase()`` over [shift + 5 s, look] from those samples. A gap
    drops an arm's samples in [window start, window start + gap) and puts its first sample after
    the gap exactly ``gap`` s after the window start. ``split_failing_for`` is tracked across looks
    as ``operators/gate_evaluation.py`` does."""
    rng = random.Random(seed)
    spec = SampleRatioSpec()
    counters = {"canary": [0], "baseline": [10_000_000]}  # the stable version has served for long
    for _ in range(GATE_SECONDS + 1):
        nc, nb = _split(rng, p, 1)
        counters["canary"].append(counters["canary"][-1] + nc)
        counters["baseline"].append(counters["baseline"][-1] + nb)
    scrape, gap = p["scrape"], p["gap"]
    samples = {}
    for arm in ("canary", "baseline"):
        if arm in p["gap_arms"]:
            times = [SETTLE + gap + scrape * k for k in range(-40, 400)]
            times = [s for s in times if not SETTLE <= s < SETTLE + gap]
        else:
            phase = rng.uniform(0, scrape)
            times = [phase + scrape * k for k in range(400)]
        samples[arm] = [s for s in times if 0 <= s <= GATE_SECONDS]
    failing_since, result, rejected = None, None, False
    for t in looks():
        canary = None if p["no_canary_series"] else prometheus_increase(counters["canary"], samples["canary"], SETTLE, t)
        baseline = prometheus_increase(counters["baseline"], samples["baseline"], SETTLE, t)
        step = Measurement("requests", ArmSample(value=None, requests=canary, query=""),
                           ArmSample(value=None, requests=baseline, query=""), t - SETTLE)
        gate = Gate(weight=p["weight"], baked=True,
                    split_failing_for=None if failing_since is None else t - failing_since)
        result = sample_ratio(spec, step, gate)
        rejected = rejected or bool(result.bounds.get("rejects"))
        if result.verdict is Verdict.FAIL:
            return _end(t, result, rejected=rejected)
        if result.bounds.get("rejects"):
            failing_since = t if failing_since is None else failing_since
        else:
            failing_since = None
    return _end(None, result, rejected=rejected)


RUNNERS = {"histogram": run_histogram, "period_percentiles": run_period_percentiles, "resource": run_resource,
           "amounts": run_amounts, "error_rate": run_error_rate, "business_counts": run_business_counts,
           "sample_ratio": run_sample_ratio}


# -- scenarios -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scenario:
    group: str  # the check kind and provider shape
    key: str
    label: str  # the literal parameters
    kind: str  # "healthy" (A/A, at tolerance: any FAIL is false) | "regression" | "detect"
    runner: str
    params: tuple  # sorted (name, value) pairs
    reps: int
    alpha: float = ALPHA


def _scenario(group, key, label, kind, runner, reps, alpha=ALPHA, **params) -> Scenario:
    return Scenario(group, key, label, kind, runner, tuple(sorted(params.items())), reps, alpha)


GROUPS = {
    "histogram": "Latency from histogram buckets (Prometheus, le 5ms..2.5s,+Inf), p99, judged in bucket edges",
    "period_percentiles": "Latency as one p99 per 60 s period per arm (Datadog/CloudWatch), sign test on paired periods",
    "resource": "Resource (cpu per instance, one mean per 60 s period), sign test on paired periods",
    "business_counts": "Business count (checkouts per request, Poisson test on counts)",
    "amounts": "Business amount (revenue per request per 60 s period), in dollars and in cents",
    "error_rate": "Error rate (counts, anytime-valid Poisson test)",
    "sample_ratio": "Sample ratio (request counts via Prometheus increase(), scrape every 5 s, confirm 30 s)",
}


def scenarios(healthy_reps: int = 1000, regression_reps: int = 200) -> list[Scenario]:
    h, r = healthy_reps, regression_reps
    s = []
    # histogram latency
    base = dict(rps=RPS)
    s += [
        _scenario("histogram", "hist-aa", "A/A: p99 202 ms both, 5% weight, max_ratio 1.10", "healthy", "histogram", h,
                  canary_p99=0.202, baseline_p99=0.202, weight=5, max_ratio=1.10, **base),
        _scenario("histogram", "hist-tol-5", "true p99 ratio 1.10 = max_ratio 1.10, canary 262 ms / baseline 238 ms "
                  "(straddling 250 ms), 5% weight", "healthy", "histogram", h,
                  canary_p99=0.25 * math.sqrt(1.1), baseline_p99=0.25 / math.sqrt(1.1), weight=5, max_ratio=1.10, **base),
        _scenario("histogram", "hist-tol-50", "same at 50% weight", "healthy", "histogram", h,
                  canary_p99=0.25 * math.sqrt(1.1), baseline_p99=0.25 / math.sqrt(1.1), weight=50, max_ratio=1.10, **base),
        _scenario("histogram", "hist-105", "true ratio 1.05 (max 1.10), canary 102.5 ms / baseline 97.6 ms "
                  "(straddling 100 ms), 50% weight", "healthy", "histogram", h,
                  canary_p99=0.1 * math.sqrt(1.05), baseline_p99=0.1 / math.sqrt(1.05), weight=50, max_ratio=1.10, **base),
        _scenario("histogram", "hist-x3", "regression x3: p99 606 ms vs 202 ms, 5% weight, max_ratio 1.10",
                  "regression", "histogram", r, canary_p99=0.606, baseline_p99=0.202, weight=5, max_ratio=1.10, **base),
    ]
    # per-period percentiles
    for partial, shape in ((False, "whole periods (CloudWatch)"), (True, "partial edge periods (Datadog)")):
        tag = "dd" if partial else "cw"
        s += [
            _scenario("period_percentiles", f"pp-{tag}-aa", f"A/A: p99 202 ms both, 5% weight, max_ratio 1.2; {shape}",
                      "healthy", "period_percentiles", h, canary_p99=0.202, baseline_p99=0.202, weight=5, max_ratio=1.2,
                      partial=partial, **base),
            _scenario("period_percentiles", f"pp-{tag}-tol", f"true p99 ratio 1.2 = max_ratio 1.2 (242 vs 202 ms); {shape}",
                      "healthy", "period_percentiles", h, canary_p99=0.202 * 1.2, baseline_p99=0.202, weight=5,
                      max_ratio=1.2, partial=partial, **base),
            _scenario("period_percentiles", f"pp-{tag}-x15", f"regression x1.5 (303 vs 202 ms), max_ratio 1.2; {shape}",
                      "regression", "period_percentiles", r, canary_p99=0.202 * 1.5, baseline_p99=0.202, weight=5,
                      max_ratio=1.2, partial=partial, **base),
        ]
    s.append(_scenario("period_percentiles", "pp-cw-x5", "regression x5 (1.01 s vs 202 ms), max_ratio 1.2; whole "
                       "periods (CloudWatch): the fastest a sign test on 60 s periods can fail", "regression",
                       "period_percentiles", r, canary_p99=0.202 * 5, baseline_p99=0.202, weight=5, max_ratio=1.2,
                       partial=False, **base))
    # resource
    res = dict(cpu=0.4, noise=0.1, weight=5, max_ratio=1.5, **base)
    s += [
        _scenario("resource", "res-aa", "A/A: 0.4 cores both, per-arm noise sigma 0.1, shared load sigma 0.2, "
                  "max_ratio 1.5", "healthy", "resource", h, ratio=1.0, **res),
        _scenario("resource", "res-tol", "true ratio 1.5 = max_ratio 1.5", "healthy", "resource", h, ratio=1.5, **res),
        _scenario("resource", "res-x2", "regression x2 (max_ratio 1.5)", "regression", "resource", r, ratio=2.0, **res),
    ]
    # business counts
    bc = dict(conversion=0.03, weight=5, min_ratio=0.9, **base)
    s += [
        _scenario("business_counts", "bc-aa", "A/A: 3% checkouts per request, 5% weight, min_ratio 0.9", "healthy",
                  "business_counts", h, ratio=1.0, **bc),
        _scenario("business_counts", "bc-tol", "10% drop = min_ratio 0.9", "healthy", "business_counts", h, ratio=0.9, **bc),
        _scenario("business_counts", "bc-30", "30% drop (min_ratio 0.9)", "regression", "business_counts", r, ratio=0.7, **bc),
    ]
    # business amounts
    am = dict(conversion=0.03, mean_amount=40.0, amount_sigma=1.0, weight=5, min_ratio=0.9, **base)
    s += [
        _scenario("amounts", "am-aa", "A/A: 3% buy per request, amounts lognormal mean $40 sigma 1.0, 5% weight, "
                  "min_ratio 0.9, 60 s periods", "healthy", "amounts", h, ratio=1.0, **am),
        _scenario("amounts", "am-tol", "10% drop = min_ratio 0.9 (10% fewer purchases)", "healthy", "amounts", h,
                  ratio=0.9, **am),
        _scenario("amounts", "am-30", "30% drop (min_ratio 0.9)", "regression", "amounts", r, ratio=0.7, **am),
        _scenario("amounts", "am-aa-50", "A/A at 50% weight", "healthy", "amounts", h, ratio=1.0, **{**am, "weight": 50}),
        _scenario("amounts", "am-tol-30s", "10% drop = min_ratio 0.9, 30 s periods (Prometheus' default)", "healthy",
                  "amounts", h, ratio=0.9, period=30, **am),
    ]
    # error rate
    er = dict(baseline_rate=0.01, max_increase_pp=0.5, weight=5, **base)
    s += [
        _scenario("error_rate", "er-aa", "A/A: 1% both, 5% weight, +0.5 pp tolerance", "healthy", "error_rate", h,
                  increase_pp=0.0, **er),
        _scenario("error_rate", "er-tol", "+0.5 pp = the tolerance (1.5% vs 1%)", "healthy", "error_rate", h,
                  increase_pp=0.5, **er),
        _scenario("error_rate", "er-low-aa", "A/A at low traffic: 1% of 20 rps", "healthy", "error_rate", h,
                  increase_pp=0.0, **{**er, "weight": 1, "rps": 20.0}),
    ]
    # sample ratio
    sr = dict(weight=5, scrape=5.0, gap=6.0, no_canary_series=False, **base)
    s += [
        _scenario("sample_ratio", "sr-aa", "A/A: 5% weight, scrapes every 5 s at random phases", "healthy",
                  "sample_ratio", h, gap_arms=(), **sr),
        _scenario("sample_ratio", "sr-gap", "stable arm misses the scrape at the window start: first sample "
                  "6 s after it", "healthy", "sample_ratio", h, gap_arms=("baseline",), **sr),
        _scenario("sample_ratio", "sr-restart", "Prometheus restart: both arms' first sample 6 s after the window "
                  "start", "healthy", "sample_ratio", h, gap_arms=("baseline", "canary"), **sr),
        _scenario("sample_ratio", "sr-noseries", "canary has no series at all (wrong version label)", "detect",
                  "sample_ratio", r, gap_arms=(), **{**sr, "no_canary_series": True}),
    ]
    return s


def power_scenarios(reps: int) -> list[Scenario]:
    er = dict(baseline_rate=0.01, max_increase_pp=0.5, weight=5, rps=RPS, end=4 * 3600)
    return [_scenario("power", f"pow-{pp:g}", f"+{pp:g} pp", "power", "error_rate", reps, increase_pp=pp, **er)
            for pp in (1.0, 2.5, 9.0)]


# -- running ---------------------------------------------------------------------------------------------

def _batch(args) -> tuple[str, list[Run]]:
    scenario, start, stop = args
    run = RUNNERS[scenario.runner]
    params = dict(scenario.params)
    return scenario.key, [run(params, f"{scenario.key}-{i}") for i in range(start, stop)]


def run_all(all_scenarios: list[Scenario], jobs: int) -> dict[str, list[Run]]:
    tasks = [(s, i, min(i + 25, s.reps)) for s in all_scenarios for i in range(0, s.reps, 25)]
    results: dict[str, list[Run]] = {s.key: [] for s in all_scenarios}
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for key, runs in pool.map(_batch, tasks):
                results[key].extend(runs)
    else:
        for task in tasks:
            key, runs = _batch(task)
            results[key].extend(runs)
    return results


# -- the fixed-horizon comparison --------------------------------------------------------------------------

def fixed_horizon(baseline: float, increase_pp: float, tolerance_pp: float, weight: float, alpha: float,
                  power: float, reps: int = 2000) -> tuple[int, float]:
    """Canary requests for a one-sided two-proportion z-test of "canary > baseline + tolerance" at
    ``alpha`` to have ``power``, the baseline getting (100 - weight) / weight times as many; and the
    power it has at that size, simulated (``reps`` runs)."""
    pc, pb, delta = baseline + increase_pp / 100, baseline, tolerance_pp / 100
    k = (100 - weight) / weight
    z = NormalDist().inv_cdf(1 - alpha) + NormalDist().inv_cdf(power)
    n = math.ceil(z * z * (pc * (1 - pc) + pb * (1 - pb) / k) / (pc - pb - delta) ** 2)
    rng, hits, crit = random.Random(f"fixed-{increase_pp}"), 0, NormalDist().inv_cdf(1 - alpha)
    for _ in range(reps):
        nb = round(n * k)
        xc, xb = binomial(rng, n, pc), binomial(rng, nb, pb)
        qc, qb = xc / n, xb / nb
        se = math.sqrt(qc * (1 - qc) / n + qb * (1 - qb) / nb)
        hits += se > 0 and (qc - qb - delta) / se > crit
    return n, hits / reps


def _quantile(xs: list[float], q: float, n: int) -> float:
    """The q-quantile over n runs, of which ``xs`` (sorted) detected; inf if fewer than q·n did."""
    i = math.ceil(q * n) - 1
    return xs[i] if i < len(xs) else math.inf


# -- printing ----------------------------------------------------------------------------------------------

def _pct(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{k}/{n} = {100 * k / n:.2f}% [{100 * lo:.2f}%, {100 * hi:.2f}%]"


def print_rows(all_scenarios: list[Scenario], results: dict[str, list[Run]]) -> list[str]:
    """Print each group's rows; return the target lines."""
    targets, group = [], None
    for s in all_scenarios:
        runs = results[s.key]
        n = len(runs)
        fails = [r for r in runs if r.fail_at is not None]
        if s.group != group:
            group = s.group
            print(f"\n{GROUPS[group]}")
        print(f"  {s.key:<12} {s.label}  (alpha {s.alpha:g}, {n} runs)")
        inconclusive = sum(r.inconclusive for r in runs)
        out = sum(r.out_of_bounds for r in runs)
        tail = f"; inconclusive at 15 min: {inconclusive} (estimate out of bounds: {out})"
        if s.runner == "sample_ratio" and s.kind == "healthy":
            tail += f"; runs with a look that rejected the split (held by confirm_seconds): {sum(r.rejected for r in runs)}"
        if s.runner == "amounts":
            tail += f"; dollars vs cents differed in {sum(r.disagreed for r in runs)} runs"
        if s.kind == "healthy":
            print(f"    false fail {_pct(len(fails), n)}{tail}")
            lo, hi = wilson(len(fails), n)
            rate_met = len(fails) / n <= s.alpha
            if n >= 1000:
                verdict = "met" if rate_met and hi <= 2 * s.alpha else "MISSED"
                ci = f"upper CI {100 * hi:.2f}% <= {200 * s.alpha:g}%"
            else:  # 0 of 100 already has an upper CI of 3.7%: the CI target needs the full run
                verdict = "met" if rate_met else "MISSED"
                ci = f"upper CI {100 * hi:.2f}% (judged at 1,000 runs only; {n} here)"
            line = f"  {s.key:<12} false fail {100 * len(fails) / n:.2f}% <= {100 * s.alpha:g}%, {ci}: {verdict}"
            if inconclusive / n > s.alpha:  # not a FAIL, but the timeout policy would roll these back
                lo, hi = wilson(out, n)
                line += (f"; timeout rollbacks above alpha: {100 * out / n:.1f}% [{100 * lo:.1f}%, {100 * hi:.1f}%] "
                         f"out of bounds (held at any gate), {100 * inconclusive / n:.1f}% inconclusive (held at "
                         f"the last gate)")
            targets.append(line)
        else:
            times = [r.fail_at for r in fails]
            when = (f"; time to FAIL mean {statistics.fmean(times):.0f} s, median {statistics.median(times):.0f} s, "
                    f"max {max(times):.0f} s" if times else "")
            print(f"    detected {_pct(len(fails), n)}{when}{tail}")
            if s.kind == "detect":
                met = len(fails) == n and max(times) <= 60
                targets.append(f"  {s.key:<12} detected in every run within 60 s: {'met' if met else 'MISSED'}"
                               f" ({len(fails)}/{n}, latest {max(times) if times else math.inf:.0f} s)")
    return targets


def print_power(power: list[Scenario], results: dict[str, list[Run]]) -> None:
    print("\nPower: error rate at 5% weight of 200 rps (canary 10 req/s), baseline 1%, tolerance +0.5 pp, alpha 0.01;"
          "\nours looks every 10 s up to 4 h; fixed = one-sided two-proportion z-test of canary > baseline + 0.5 pp,"
          "\nsized for the power named (its simulated power in brackets). Requests are the canary's.")
    print(f"  {'regression':<10} {'ours: median req (time)':>26} {'80% by req (time)':>24} {'mean req':>9}"
          f" {'fixed 50%':>16} {'fixed 80%':>16} {'cost 50%':>9} {'cost 80%':>9} {'in 15 min':>10}")
    for s in power:
        p = dict(s.params)
        runs = results[s.key]
        n = len(runs)
        reqs = sorted(r.requests for r in runs if r.fail_at is not None)
        times = sorted(r.fail_at for r in runs if r.fail_at is not None)
        med, p80 = _quantile(reqs, 0.5, n), _quantile(reqs, 0.8, n)
        tmed, t80 = _quantile(times, 0.5, n), _quantile(times, 0.8, n)
        f50, pw50 = fixed_horizon(p["baseline_rate"], p["increase_pp"], p["max_increase_pp"], p["weight"], ALPHA, 0.5)
        f80, pw80 = fixed_horizon(p["baseline_rate"], p["increase_pp"], p["max_increase_pp"], p["weight"], ALPHA, 0.8)
        rate = p["rps"] * p["weight"] / 100
        in15 = sum(t <= GATE_SECONDS for t in times)
        mean = statistics.fmean(reqs) if len(reqs) == n else math.inf
        print(f"  {s.label:<10} {f'{med:.0f} ({tmed:.0f} s)':>26} {f'{p80:.0f} ({t80:.0f} s)':>24} {mean:>9.0f}"
              f" {f'{f50} ({f50 / rate:.0f} s) [{pw50:.0%}]':>16} {f'{f80} ({f80 / rate:.0f} s) [{pw80:.0%}]':>16}"
              f" {med / f50:>8.2f}x {p80 / f80:>8.2f}x {f'{in15}/{n}':>10}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about 100 runs per row, for a smoke test")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: all CPUs)")
    parser.add_argument("--only", nargs="*", default=None, help="groups whose key contains one of these")
    args = parser.parse_args(argv)
    started = time.monotonic()
    healthy, regression, power_reps = (100, 50, 50) if args.quick else (1000, 200, 200)
    all_scenarios = scenarios(healthy, regression)
    power = power_scenarios(power_reps)
    if args.only is not None:
        all_scenarios = [s for s in all_scenarios if any(o in s.group for o in args.only)]
        power = power if any(o in "power" for o in args.only) else []
    # The longest rows first, so the pool stays busy to the end.
    ordered = sorted(all_scenarios + power, key=lambda s: (s.kind != "power", s.runner != "histogram"))
    results = run_all(ordered, args.jobs)
    print(f"Validity of every check under continuous looks: a look every {LOOK_EVERY} s over a {GATE_SECONDS // 60} min "
          f"gate, cumulative window from the shift + {SETTLE} s; {RPS:g} req/s total unless stated; alpha {ALPHA:g}; "
          "95% Wilson intervals. A FAIL verdict at any look counts; inconclusive runs are counted apart "
          "(a gate timeout would roll those back).")
    targets = print_rows(all_scenarios, results)
    if power:
        print_power(power, results)
    if targets:
        print("\nTargets (false fails <= alpha, upper CI <= 2 alpha at 1,000 runs)")
        for line in targets:
            print(line)
    print(f"\nRun time: {time.monotonic() - started:.1f} s wall with {args.jobs} worker process(es)"
          f"{' (--quick: ~100 runs a row, figures are rough)' if args.quick else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
