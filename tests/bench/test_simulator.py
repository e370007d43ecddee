"""The benchmark's simulator and strategies: right counts, right shapes, sane decisions. Fast (< 10 s)."""

from __future__ import annotations

import math
import random
import statistics
import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT))

from bench.simulator import BUCKETS, Arm, Stream, Traffic, binomial, multinomial, poisson  # noqa: E402
from bench.strategies import (  # noqa: E402
    FixedConfig,
    FlaggerConfig,
    OursConfig,
    run_fixed,
    run_flagger,
    run_ours,
)
from canary_operators.stats import histogram_quantile  # noqa: E402

STEADY = Traffic("steady", 200)


@pytest.mark.parametrize("lam", [0.2, 3.0, 25.0, 200.0])
def test_poisson_mean_and_variance(lam):
    rng = random.Random(1)
    xs = [poisson(rng, lam) for _ in range(20000)]
    assert statistics.fmean(xs) == pytest.approx(lam, rel=0.03, abs=0.01)
    assert statistics.pvariance(xs) == pytest.approx(lam, rel=0.06, abs=0.02)


@pytest.mark.parametrize("n,p", [(5, 0.01), (200, 0.01), (200, 0.3), (5000, 0.03), (100, 0.9)])
def test_binomial_mean_and_variance(n, p):
    rng = random.Random(2)
    xs = [binomial(rng, n, p) for _ in range(20000)]
    assert all(0 <= x <= n for x in xs)
    assert statistics.fmean(xs) == pytest.approx(n * p, rel=0.03, abs=0.01)
    assert statistics.pvariance(xs) == pytest.approx(n * p * (1 - p), rel=0.06, abs=0.01)


@pytest.mark.parametrize("n", [7, 5000])
def test_multinomial_adds_up_and_matches_the_probabilities(n):
    rng = random.Random(3)
    probs = Arm().bucket_probs()
    cum = tuple(itertools_accumulate(probs))
    totals = [0] * len(probs)
    for _ in range(3000):
        counts = multinomial(rng, n, probs, cum)
        assert sum(counts) == n and min(counts) >= 0
        totals = [a + b for a, b in zip(totals, counts)]
    for got, p in zip(totals, probs):
        assert got / (3000 * n) == pytest.approx(p, abs=0.01)


def itertools_accumulate(xs):
    total = 0.0
    for x in xs:
        total += x
        yield total


def test_counts_error_rates_and_canary_share_over_a_long_run():
    stream = Stream(STEADY, Arm(error_rate=0.03), Arm(error_rate=0.01), seed=7)
    stream.advance(3000, weight=10)
    w = stream.window(0, 3000)
    c, b = w["canary"], w["baseline"]
    assert c.requests + b.requests == pytest.approx(200 * 3000, rel=0.01)
    assert c.requests / (c.requests + b.requests) == pytest.approx(0.10, abs=0.003)
    assert c.errors / c.requests == pytest.approx(0.03, abs=0.002)
    assert b.errors / b.requests == pytest.approx(0.01, abs=0.0005)


def test_low_traffic_uses_the_exact_small_count_draws_and_still_matches():
    stream = Stream(Traffic("steady", 20), Arm(), Arm(), seed=8)
    stream.advance(20000, weight=1)
    c = stream.window(0, 20000)["canary"]
    assert c.requests == pytest.approx(20 * 20000 * 0.01, rel=0.05)  # 0.2 canary requests a second


def test_buckets_are_cumulative_end_at_total_and_give_the_expected_p99():
    stream = Stream(STEADY, Arm(latency_factor=3.0), Arm(), seed=9)
    stream.advance(1200, weight=50)
    for name, arm in (("canary", Arm(latency_factor=3.0)), ("baseline", Arm())):
        win = stream.window(100, 1200)[name]
        bounds = [le for le, _ in win.buckets]
        counts = [n for _, n in win.buckets]
        assert tuple(bounds) == BUCKETS and math.isinf(bounds[-1])
        assert all(a <= b for a, b in zip(counts, counts[1:]))
        assert counts[-1] == win.requests > 0
        assert histogram_quantile(win.buckets, 0.99) == pytest.approx(arm.prometheus_quantile(0.99), rel=0.05)
    assert Arm(latency_factor=3.0).quantile(0.99) == pytest.approx(3 * Arm().quantile(0.99))


def test_windows_sum_like_increase_and_the_same_seed_gives_the_same_stream():
    a = Stream(STEADY, Arm(), Arm(), seed=10)
    b = Stream(STEADY, Arm(), Arm(), seed=10)
    other_weight = Stream(STEADY, Arm(), Arm(), seed=10)
    a.advance(300, 5)
    b.advance(300, 5)
    other_weight.advance(300, 50)
    assert a.window(0, 300) == b.window(0, 300)
    whole, first, second = a.window(0, 300), a.window(0, 120), a.window(120, 300)
    for arm in ("canary", "baseline"):
        assert whole[arm].requests == first[arm].requests + second[arm].requests
        assert whole[arm].errors == first[arm].errors + second[arm].errors
    # total traffic is drawn before the split: the same whatever weight a strategy sets
    total = lambda s: sum(w.requests for w in s.window(0, 300).values())  # noqa: E731
    assert total(a) == total(other_weight)


def test_bursty_and_diurnal_profiles():
    bursty = Traffic("bursty", 200, burst_factor=5).build(seed=1)
    rates = [bursty(t) for t in range(3600)]
    in_burst = sum(r == 1000 for r in rates) / len(rates)
    assert 0.10 < in_burst < 0.25  # ~10 s every ~60 s
    diurnal = Traffic("diurnal", 200, amplitude=0.7, period=3600).build(seed=1)
    rates = [diurnal(t) for t in range(3600)]
    assert min(rates) == pytest.approx(60, abs=1) and max(rates) == pytest.approx(340, abs=1)


def test_a_full_rollout_simulates_well_under_a_second():
    import time

    started = time.perf_counter()
    stream = Stream(Traffic("bursty", 200), Arm(), Arm(), seed=11)
    for i, weight in enumerate([1, 5, 25, 50]):
        stream.advance(300 * (i + 1), weight)
    assert time.perf_counter() - started < 0.5


BROKEN = Arm(error_rate=0.5)
FLAGGER = FlaggerConfig(success_rate_min=98.5, duration_max_ms=1.2 * Arm().prometheus_quantile(0.99) * 1000)


@pytest.mark.parametrize("run", [
    lambda s: run_ours(s, [1, 5, 25, 50, 100], OursConfig()),
    lambda s: run_flagger(s, [1, 5, 25, 50, 100], FLAGGER),
    lambda s: run_fixed(s, [1, 5, 25, 50, 100], FixedConfig()),
], ids=["ours", "flagger", "fixed"])
def test_every_strategy_rolls_back_a_broken_canary_at_the_first_step(run):
    result = run(Stream(STEADY, BROKEN, Arm(), seed=12))
    assert result.outcome == "rolled_back" and result.weight == 1
    assert 0 < result.bad <= result.canary_requests


def test_ours_rolls_back_a_broken_canary_on_evidence_as_soon_as_it_has_min_requests():
    # 1% of 200 rps: the 100 requests min_requests asks for take ~50 s (+ 5 s settle)
    result = run_ours(Stream(STEADY, BROKEN, Arm(), seed=13), [1, 5, 25, 50, 100], OursConfig())
    assert result.seconds <= 90 and not result.at_timeout
    assert 100 <= result.canary_requests <= 200


@pytest.mark.parametrize("run", [
    lambda s: run_ours(s, [1, 5, 25, 50, 100], OursConfig()),  # the defaults
    lambda s: run_ours(s, [50, 100], OursConfig(evidence_at="every_gate")),  # enough traffic to prove it healthy
    lambda s: run_flagger(s, [1, 5, 25, 50, 100], FLAGGER),
    lambda s: run_fixed(s, [1, 5, 25, 50, 100], FixedConfig()),
], ids=["ours", "ours-at-50", "flagger", "fixed"])
def test_every_strategy_promotes_a_healthy_canary_with_a_fixed_seed(run):
    result = run(Stream(STEADY, Arm(), Arm(), seed=14))
    assert result.outcome == "promoted"
