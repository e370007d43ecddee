"""A seeded simulator of canary and baseline request streams, one-second ticks, standard library only.

Every second:

1. total requests ~ Poisson(rate(t)), where rate(t) follows a traffic profile (steady, bursty,
   diurnal; see ``Traffic``);
2. the canary's share ~ Binomial(total, weight / 100), the baseline (stable) gets the rest;
3. per arm, errors ~ Binomial(requests, error_rate);
4. per arm, latencies are lognormal (a median and a log-space sigma; a latency regression
   multiplies every latency by ``latency_factor``) and only their counts per histogram bucket are
   drawn: Multinomial(requests, bucket probabilities), as sequential conditional binomials.

Counts are kept per second (prefix sums), so any window can be summed the way Prometheus'
``increase(x[window])`` does, and ``window()`` returns cumulative ``le`` buckets ending at +Inf.

Speed: there is no per-request loop. Draws are exact for small counts and approximated for large
ones, which keeps a full rollout (thousands of seconds) well under a second:

- Poisson(λ): exact inversion for λ < 30; normal approximation N(λ, λ) rounded and clipped at 0
  above (error of a few per cent in the tails at λ = 30, less as λ grows);
- Binomial(n, p): exact inversion when n·min(p, 1-p) < 20; normal approximation N(np, np(1-p))
  rounded and clipped to [0, n] above;
- Multinomial: per request (exact) when n ≤ 12; otherwise sequential conditional binomials with
  the approximation above, so the bucket counts always add up to the arm's requests exactly.

"Same streams": every second draws from its own ``random.Random`` seeded by (seed, second), and
total traffic is drawn before the split. So every strategy run on a seed sees the same total
traffic, bursts and diurnal phase, and while two strategies hold the same weight they see exactly
the same requests, errors and latencies (common random numbers).
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Callable

# Prometheus-style histogram bucket upper bounds (seconds), as in http_request_duration_seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, math.inf)
NB = len(BUCKETS)

_EXACT_POISSON = 30.0
_EXACT_BINOMIAL = 20.0
_EXACT_MULTINOMIAL = 12


# -- random draws ---------------------------------------------------------------------------------

def poisson(rng: random.Random, lam: float) -> int:
    """Poisson(lam): exact inversion below 30, normal approximation above."""
    if lam <= 0:
        return 0
    if lam < _EXACT_POISSON:
        u = rng.random()
        k, pmf = 0, math.exp(-lam)
        cdf = pmf
        while u > cdf and pmf > 0:
            k += 1
            pmf *= lam / k
            cdf += pmf
        return k
    return max(0, int(round(rng.gauss(lam, math.sqrt(lam)))))


def binomial(rng: random.Random, n: int, p: float) -> int:
    """Binomial(n, p): exact inversion when n·min(p, 1-p) < 20, normal approximation above."""
    if n <= 0 or p <= 0:
        return 0
    if p >= 1:
        return n
    if p > 0.5:
        return n - binomial(rng, n, 1 - p)
    mean = n * p
    if mean < _EXACT_BINOMIAL:
        q = 1 - p
        ratio = p / q
        pmf = math.exp(n * math.log(q))
        cdf = pmf
        u = rng.random()
        k = 0
        while u > cdf and k < n:
            pmf *= ratio * (n - k) / (k + 1)
            k += 1
            cdf += pmf
        return k
    x = int(round(rng.gauss(mean, math.sqrt(mean * (1 - p)))))
    return min(n, max(0, x))


def multinomial(rng: random.Random, n: int, probs: tuple[float, ...], cum: tuple[float, ...]) -> list[int]:
    """Counts of n draws over len(probs) cells. ``cum`` is the cumulative of ``probs``."""
    out = [0] * len(probs)
    if n <= 0:
        return out
    if n <= _EXACT_MULTINOMIAL:  # per request: exact and cheap for a handful
        last = len(probs) - 1
        for _ in range(n):
            out[min(last, bisect.bisect_right(cum, rng.random()))] += 1
        return out
    left, mass = n, 1.0
    for i, p in enumerate(probs[:-1]):
        if left <= 0:
            break
        if p > 0:
            k = binomial(rng, left, min(1.0, p / mass)) if mass > 0 else 0
            out[i] = k
            left -= k
        mass -= p
    out[-1] += max(0, left)
    return out


def normal_cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


# -- arms -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Arm:
    """One version's behaviour: an error rate and a lognormal latency (median, sigma in log space)."""

    error_rate: float = 0.01
    latency_median: float = 0.05  # seconds
    latency_sigma: float = 0.6
    latency_factor: float = 1.0  # a latency regression multiplies every latency

    def bucket_probs(self) -> tuple[float, ...]:
        """Probability of each (non-cumulative) bucket: (prev_bound, bound]."""
        median = self.latency_median * self.latency_factor
        cdf = [normal_cdf(math.log(b / median) / self.latency_sigma) if math.isfinite(b) else 1.0 for b in BUCKETS]
        return tuple(c - p for c, p in zip(cdf, [0.0] + cdf[:-1]))

    def quantile(self, q: float) -> float:
        """The true q-quantile of the latency (seconds)."""
        z = NormalDist().inv_cdf(q)
        return self.latency_median * self.latency_factor * math.exp(self.latency_sigma * z)

    def prometheus_quantile(self, q: float) -> float:
        """What Prometheus' histogram_quantile returns with unlimited data (interpolated in buckets)."""
        from canary_operators.stats import histogram_quantile

        cum, total = [], 0.0
        for bound, p in zip(BUCKETS, self.bucket_probs()):
            total += p
            cum.append((bound, total * 1e9))
        return histogram_quantile(tuple(cum), q)


# -- traffic profiles -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Traffic:
    """Total requests per second over time.

    - ``steady``: ``rps`` every second;
    - ``bursty``: ``rps``, times ``burst_factor`` during bursts of 8-12 s that start every 45-75 s
      (uniform; first burst within the first minute);
    - ``diurnal``: ``rps × (1 + amplitude·sin(2π t / period + phase))``, i.e. 0.3×..1.7× for
      amplitude 0.7; the phase is drawn per seed, so runs start anywhere on the cycle.
    """

    kind: str = "steady"
    rps: float = 200.0
    burst_factor: float = 5.0
    amplitude: float = 0.7
    period: float = 3600.0

    def build(self, seed: int) -> Callable[[int], float]:
        rng = random.Random(f"traffic-{seed}")
        if self.kind == "steady":
            return lambda t: self.rps
        if self.kind == "diurnal":
            phase = rng.uniform(0, 2 * math.pi)
            return lambda t: self.rps * (1 + self.amplitude * math.sin(2 * math.pi * t / self.period + phase))
        if self.kind == "bursty":
            return _Bursts(rng, self.rps, self.burst_factor)
        raise ValueError(f"unknown traffic profile {self.kind!r}")

    def label(self) -> str:
        if self.kind == "steady":
            return f"{self.rps:g} rps"
        if self.kind == "bursty":
            return f"{self.rps:g} rps, {self.burst_factor:g}x bursts"
        return f"{self.rps:g} rps x{1 - self.amplitude:.1f}..{1 + self.amplitude:.1f}"


class _Bursts:
    def __init__(self, rng: random.Random, rps: float, factor: float):
        self.rng, self.rps, self.factor = rng, rps, factor
        self.starts: list[int] = []
        self.ends: list[int] = []
        self._next = int(rng.uniform(0, 60))

    def __call__(self, t: int) -> float:
        while self._next <= t:  # extend the burst schedule lazily
            self.starts.append(self._next)
            self.ends.append(self._next + int(round(self.rng.uniform(8, 12))))
            self._next += int(round(self.rng.uniform(45, 75)))
        i = bisect.bisect_right(self.starts, t) - 1
        return self.rps * self.factor if i >= 0 and t < self.ends[i] else self.rps


# -- the stream -------------------------------------------------------------------------------------

@dataclass
class ArmWindow:
    """One arm's counts over a window: requests, errors, cumulative (le, count) buckets ending at +Inf."""

    requests: int
    errors: int
    buckets: tuple[tuple[float, float], ...]


@dataclass
class _ArmCounts:
    requests: list[int] = field(default_factory=lambda: [0])  # prefix sums: [t] = total over [0, t)
    errors: list[int] = field(default_factory=lambda: [0])
    buckets: list[list[int]] = field(default_factory=lambda: [[0] * NB])


class Stream:
    """Canary and baseline request counts, one second at a time, at the weight the strategy sets.

    ``advance(t, weight)`` simulates the seconds up to (not including) ``t`` at ``weight`` percent;
    ``window(t0, t1)`` sums the seconds [t0, t1) per arm.
    """

    def __init__(self, traffic: Traffic, canary: Arm, baseline: Arm, seed: int):
        self.seed = seed
        self.rate = traffic.build(seed)
        self.arms = {"canary": canary, "baseline": baseline}
        self._probs = {}
        for name, arm in self.arms.items():
            probs = arm.bucket_probs()
            cum, total = [], 0.0
            for p in probs:
                total += p
                cum.append(total)
            self._probs[name] = (probs, tuple(cum))
        self.counts = {"canary": _ArmCounts(), "baseline": _ArmCounts()}
        self.weights: list[float] = []  # the weight set during each second

    @property
    def now(self) -> int:
        return len(self.weights)

    def advance(self, t: int, weight: float) -> None:
        while self.now < t:
            self._second(self.now, weight)

    def _second(self, t: int, weight: float) -> None:
        rng = random.Random(self.seed * 1_000_003 + t)
        total = poisson(rng, self.rate(t))
        n_canary = binomial(rng, total, weight / 100)
        for name, n in (("canary", n_canary), ("baseline", total - n_canary)):
            arm, c = self.arms[name], self.counts[name]
            errors = binomial(rng, n, arm.error_rate)
            per_bucket = multinomial(rng, n, *self._probs[name])
            c.requests.append(c.requests[-1] + n)
            c.errors.append(c.errors[-1] + errors)
            prev = c.buckets[-1]
            c.buckets.append([a + b for a, b in zip(prev, per_bucket)])
        self.weights.append(weight)

    def window(self, t0: int, t1: int) -> dict[str, ArmWindow]:
        """Counts per arm over seconds [t0, t1) (Prometheus increase() over that range)."""
        t0, t1 = max(0, t0), min(t1, self.now)
        out = {}
        for name, c in self.counts.items():
            per_bucket = [b - a for a, b in zip(c.buckets[t0], c.buckets[t1])] if t1 > t0 else [0] * NB
            running, cumulative = 0, []
            for bound, k in zip(BUCKETS, per_bucket):
                running += k
                cumulative.append((bound, float(running)))
            out[name] = ArmWindow(
                requests=c.requests[t1] - c.requests[t0] if t1 > t0 else 0,
                errors=c.errors[t1] - c.errors[t0] if t1 > t0 else 0,
                buckets=tuple(cumulative),
            )
        return out

    def canary_totals(self, t: int) -> tuple[int, int]:
        """(canary errors, canary requests) served over [0, t)."""
        c = self.counts["canary"]
        t = min(t, self.now)
        return c.errors[t], c.requests[t]


# -- provider shapes for the validity benchmark (bench/validity.py) -----------------------------------

_STD_NORMAL = NormalDist()


def sample_quantile(rng: random.Random, arm: Arm, n: int, q: float) -> float | None:
    """The nearest-rank q-quantile of ``n`` latencies drawn from ``arm``, as a provider computes one
    per period (Datadog's, CloudWatch's p99): drawn exactly in O(1), since the k-th smallest of n
    uniforms is Beta(k, n + 1 - k) and the latency is the arm's quantile function at it. None: n = 0."""
    if n <= 0:
        return None
    k = max(1, math.ceil(q * n))
    u = min(max(rng.betavariate(k, n + 1 - k), 1e-15), 1 - 1e-15)
    return arm.latency_median * arm.latency_factor * math.exp(arm.latency_sigma * _STD_NORMAL.inv_cdf(u))


def lognormal_sum(rng: random.Random, k: int, mean: float, sigma: float) -> float:
    """The sum of ``k`` lognormal amounts with the given mean and log-space sigma: exact up to 30
    terms, a normal approximation (k × mean, k × variance) above, clipped at 0."""
    if k <= 0:
        return 0.0
    mu = math.log(mean) - sigma * sigma / 2
    if k <= 30:
        return sum(rng.lognormvariate(mu, sigma) for _ in range(k))
    variance = (math.exp(sigma * sigma) - 1) * mean * mean
    return max(0.0, rng.gauss(k * mean, math.sqrt(k * variance)))


def prometheus_increase(counter: list[int], sample_times: list[float], start: float, end: float) -> float | None:
    """``increase(x[end - start])`` evaluated at ``end``, as Prometheus computes it (extrapolatedRate):
    from the samples in (start, end] of a counter whose value at time ``s`` is ``counter[int(s)]``;
    the difference between the first and last sample is extrapolated to the window's edges, by at
    most half an average scrape interval where the nearest sample is more than 1.1 intervals from
    the edge, and never below a zero counter. Fewer than two samples: None (no series)."""
    lo = bisect.bisect_right(sample_times, start)
    hi = bisect.bisect_right(sample_times, end)
    if hi - lo < 2:
        return None
    first_t, last_t = sample_times[lo], sample_times[hi - 1]
    first_v, last_v = counter[int(first_t)], counter[int(last_t)]
    result, sampled = last_v - first_v, last_t - first_t
    average = sampled / (hi - lo - 1)
    to_start, to_end = first_t - start, end - last_t
    if to_start >= 1.1 * average:
        to_start = average / 2
    if result > 0 and first_v >= 0:
        to_start = min(to_start, sampled * first_v / result)  # a counter does not go below zero
    if to_end >= 1.1 * average:
        to_end = average / 2
    return result * (sampled + to_start + to_end) / sampled
