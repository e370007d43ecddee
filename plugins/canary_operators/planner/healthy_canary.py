"""What an unlucky healthy canary shows: the counts expected over a rollout's cumulative window, with
its events ``PESSIMISM_Z`` standard deviations on the bad side and the baseline's on the other."""

from __future__ import annotations

import math
from typing import Sequence

from canary_operators.measurement import ArmSample, Measurement
from canary_operators.spec import BusinessCheck

# A healthy canary is planned as an unlucky one: its events (errors, checkouts, an amount in units
# of its dispersion) this many standard deviations on the bad side of their expectation, the
# baseline's as many on the other (about the 90th percentile of each).
PESSIMISM_Z = 1.28


def expected_requests(schedule: Sequence[tuple[float, float]], start: float, end: float, rps: float) -> tuple[float, float]:
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


def healthy(check, canary: float, baseline: float, rate: float, bad: int = 1, dispersion: float | None = None,
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


def unlucky_sides(check) -> tuple[int, ...]:
    """The bad sides of a check: 1 (more events are bad), -1 (fewer), or both."""
    if not isinstance(check, BusinessCheck):
        return (1,)
    return tuple(side for side, bound in ((-1, check.min_ratio), (1, check.max_ratio)) if bound is not None)

