"""Literal data for the judge's tests: checks, gates, and measurements built from counts, points or periods."""

from __future__ import annotations

import math

from canary_operators.judge import Gate
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
SRM = SampleRatioSpec()


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


GOOD = {"errors": counts("errors", 6, 3000, 40, 20000),
        "p99": point("p99", 0.00498, 0.00499, canary_buckets=histogram(1000), baseline_buckets=histogram(20000))}
