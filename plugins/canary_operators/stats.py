"""Anytime-valid tests for the judge: mixture e-values that stay valid however often a gate looks.

A gate looks every poke interval and may stop at any look, so fixed-sample p-values would inflate
false rollbacks. Instead every test here is a likelihood-ratio mixture (a test martingale under
its null): by Ville's inequality, the chance it *ever* reaches 1/α under the null is at most α.
This is the construction of Lindon & Malek (NeurIPS 2022) for count data, with a discrete mixture
over alternatives instead of a Dirichlet prior, which keeps it closed-form and pure Python.

- Counts per request (errors, conversions) are Poisson with exposure = requests. The per-request
  likelihood ratio of a Poisson alternative is a supermartingale for Bernoulli data too, so the
  same test holds for 0/1 outcomes.
- A share (the canary's fraction of requests, for the sample-ratio check) is Bernoulli.

Pure Python, no Airflow import.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Iterator, Literal

Direction = Literal["greater", "less"]

# Alternatives as multiples of the null rate (or odds). Equal weights; the mixture pays log(7).
# Fine steps near 1 give tight bounds on large baselines; coarse ones catch big regressions fast.
UP = (1.05, 1.1, 1.25, 1.5, 2.0, 3.0, 6.0)
DOWN = (0.95, 0.9, 0.8, 0.65, 0.5, 0.3, 0.1)
# (log r, r - 1) per alternative, worked out once: the planner evaluates these tests ~10^4 times a spec.
_UP_TERMS = tuple((math.log(r), r - 1) for r in UP)
_DOWN_TERMS = tuple((math.log(r), r - 1) for r in DOWN)


def _logmeanexp(terms: list[float]) -> float:
    top = max(terms)
    if top == -math.inf:
        return -math.inf
    return top + math.log(sum([math.exp(t - top) for t in terms]) / len(terms))


def poisson_log_e(events: float, exposure: float, rate0: float, direction: Direction) -> float:
    """log e-value against H0 ``rate <= rate0`` (direction "greater") or ``rate >= rate0`` ("less").

    ``events`` counted over ``exposure`` (requests). Large values are evidence against H0.
    """
    events, exposure = max(0.0, events), max(0.0, exposure)
    if rate0 <= 0:
        if direction == "greater":
            return math.inf if events > 0 else 0.0
        return 0.0  # "rate >= 0" can never be rejected
    alternatives = _UP_TERMS if direction == "greater" else _DOWN_TERMS
    return _logmeanexp([events * log_r - r_1 * rate0 * exposure for log_r, r_1 in alternatives])


def bernoulli_log_e(successes: float, trials: float, p0: float, direction: Direction) -> float:
    """log e-value against H0 ``p <= p0`` ("greater") or ``p >= p0`` ("less"); alternatives on the odds scale."""
    x, n = max(0.0, successes), max(0.0, trials)
    x = min(x, n)
    if not 0 < p0 < 1:
        return 0.0
    odds0 = p0 / (1 - p0)
    terms = []
    for r in UP if direction == "greater" else DOWN:
        p = odds0 * r / (1 + odds0 * r)
        terms.append(x * math.log(p / p0) + (n - x) * math.log((1 - p) / (1 - p0)))
    return _logmeanexp(terms)


# How close the rate bounds' bisection gets, relative: 0 (the judge) halves 60 times, to the last
# bit. The evidence planner, whose text shows a few significant figures, needs far less.
_BOUND_TOLERANCE: contextvars.ContextVar[float] = contextvars.ContextVar("bound_tolerance", default=0.0)


@contextlib.contextmanager
def bound_tolerance(relative: float) -> Iterator[None]:
    """Within this block, ``poisson_rate_bounds`` stops bisecting once its bracket is within
    ``relative`` of itself (it returns the same end of the bracket as without)."""
    token = _BOUND_TOLERANCE.set(relative)
    try:
        yield
    finally:
        _BOUND_TOLERANCE.reset(token)


def _bisect(predicate, lo: float, hi: float, iterations: int = 60) -> float:
    """The boundary between predicate False (at lo) and True (at hi), in log space when positive."""
    tolerance = _BOUND_TOLERANCE.get()
    for _ in range(iterations):
        if tolerance and lo > 0 and hi <= lo * (1 + tolerance):
            break
        mid = math.sqrt(lo * hi) if lo > 0 else (lo + hi) / 2
        if predicate(mid):
            hi = mid
        else:
            lo = mid
    return hi


def poisson_rate_bounds(events: float, exposure: float, alpha: float) -> tuple[float, float]:
    """Anytime-valid (1 - alpha) confidence interval for a Poisson rate per unit of exposure.

    The rates not rejected by either one-sided test at alpha/2. With no exposure: (0, inf).
    """
    if exposure <= 0:
        return 0.0, math.inf
    threshold = math.log(2 / alpha)
    guess = max(events, 1.0) / exposure
    # upper: the smallest rate whose "rate >= r" test rejects
    hi = guess
    while poisson_log_e(events, exposure, hi, "less") < threshold:
        hi *= 2
    upper = _bisect(lambda r: poisson_log_e(events, exposure, r, "less") >= threshold, guess / 2 if events else 0.0, hi)
    # lower: the largest rate whose "rate <= r" test rejects
    if events <= 0:
        return 0.0, upper
    lo = guess
    while lo > 1e-15 and poisson_log_e(events, exposure, lo, "greater") < threshold:
        lo /= 2
    if lo <= 1e-15:
        return 0.0, upper
    lower = _bisect(lambda r: poisson_log_e(events, exposure, r, "greater") < threshold, lo, guess * 2)
    return lower, upper


def proportion_interval(p: float, trials: float, alpha: float) -> tuple[float, float]:
    """Where an observed fraction of ``trials`` Bernoulli(p) outcomes stays, anytime, with prob. 1 - alpha.

    Used for quantiles: the fraction of samples at or below the true q-quantile is such a fraction.
    """
    if trials <= 0:
        return 0.0, 1.0
    threshold = math.log(2 / alpha)

    def rejects(f: float, direction: Direction) -> bool:
        return bernoulli_log_e(f * trials, trials, p, direction) >= threshold

    hi = 1.0 if not rejects(1.0, "greater") else _bisect_linear(lambda f: rejects(f, "greater"), p, 1.0)
    lo = 0.0 if not rejects(0.0, "less") else 1 - _bisect_linear(lambda g: rejects(1 - g, "less"), 1 - p, 1.0)
    return lo, hi


def _bisect_linear(predicate, lo: float, hi: float, iterations: int = 50) -> float:
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if predicate(mid):
            hi = mid
        else:
            lo = mid
    return hi


def p_value(log_e: float, tests: int = 1) -> float:
    """An anytime-valid p-value from an e-value (Ville): 1/e, times ``tests`` for a union bound."""
    if log_e == math.inf:
        return 0.0
    return min(1.0, tests * math.exp(-log_e)) if log_e > -700 else 1.0


def histogram_quantile(buckets: tuple[tuple[float, float], ...], q: float) -> float | None:
    """Prometheus-style quantile from cumulative buckets ``((upper_bound, count), …, (inf, total))``."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return prev_bound  # in the +Inf bucket: the highest finite bound, as Prometheus does
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


def quantile_bucket(buckets, q: float) -> tuple[float, float] | None:
    """The bucket ``(lower_edge, upper_edge]`` that holds the sample at rank ``q`` of a histogram.

    All a histogram can say about that sample: it is above the lower edge and at most the upper
    one (``inf`` for the +Inf bucket). Interpolating inside the bucket would invent precision.
    """
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = max(q, 1e-12) * buckets[-1][1]
    lower = 0.0
    for bound, count in buckets:
        if count >= rank:
            return lower, bound
        lower = bound
    return lower, math.inf


def quantile_interval(buckets, q: float, alpha: float) -> tuple[float, float] | None:
    """Anytime-valid interval for the true q-quantile behind a histogram, in bucket edges.

    The fraction of samples at or below the true quantile is Bernoulli(q) data, so the true
    quantile lies between the samples at ranks ``lo_q`` and ``hi_q`` of ``proportion_interval``;
    each of those is known only to its bucket, so the interval runs from the lower edge of the
    first bucket to the upper edge of the second. It bounds the true quantile, not an
    interpolated one.
    """
    if not buckets or buckets[-1][1] <= 0:
        return None
    lo_q, hi_q = proportion_interval(q, buckets[-1][1], alpha)
    return quantile_bucket(buckets, lo_q)[0], quantile_bucket(buckets, min(hi_q, 1.0))[1]


def chi2_lower(degrees: int, alpha: float) -> float:
    """The lower ``alpha`` quantile of a chi-square with ``degrees`` degrees of freedom (Wilson-Hilferty)."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf(alpha)
    k = float(degrees)
    return max(1e-9, k * (1 - 2 / (9 * k) + z * math.sqrt(2 / (9 * k))) ** 3)


# Alternatives for the sign test: the chance a pair exceeds the bound. Up to 0.99, so that a clear
# regression, where nearly every pair exceeds, is shown in 10 pairs at alpha 0.01 (log 2 per pair
# is the most any pair can give).
_SIGN_ALTERNATIVES = (0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def sign_test_log_e(exceeding: int, pairs: int) -> float:
    """log e-value against H0 "a pair exceeds the bound with probability <= 1/2".

    For checks judged on paired periods (one number per period per arm): under H0 the bound is at
    least the median of the pairs' comparison, so exceedances are at most fair coin flips. Valid
    whatever the metric's distribution or unit, and anytime-valid over a growing run of periods.
    """
    x, n = max(0, exceeding), max(0, pairs)
    x = min(x, n)
    return _logmeanexp([x * math.log(p / 0.5) + (n - x) * math.log((1 - p) / 0.5) for p in _SIGN_ALTERNATIVES])
