"""The validity benchmark's pieces on a tiny configuration: a few runs per scenario, a couple of seconds."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT))

from bench.simulator import prometheus_increase  # noqa: E402
from bench.validity import RUNNERS, scenarios  # noqa: E402

SCENARIOS = {s.key: s for s in scenarios(healthy_reps=4, regression_reps=4)}


def runs(key: str, n: int = 4):
    s = SCENARIOS[key]
    return [RUNNERS[s.runner](dict(s.params), f"{key}-{i}") for i in range(n)]


def test_straddled_bucket_never_fails_while_a_x3_regression_does():
    # true p99 ratio exactly 1.10 = max_ratio, p99s either side of the 250 ms bound, 50% weight
    assert [r.fail_at for r in runs("hist-tol-50", 3)] == [None, None, None]
    detected = runs("hist-x3")
    assert all(r.fail_at is not None and r.fail_at <= 900 for r in detected)


def test_canary_without_series_is_caught_within_a_minute_and_a_scrape_gap_is_not():
    assert all(r.fail_at is not None and r.fail_at <= 60 for r in runs("sr-noseries"))
    assert all(r.fail_at is None for r in runs("sr-gap"))


def test_dollars_and_cents_give_the_same_verdicts():
    assert not any(r.disagreed for r in runs("am-tol", 3))


def test_increase_extrapolates_like_prometheus():
    counter = list(range(0, 1000, 10))  # 10 requests a second
    every_5s = [1.0 + 5 * k for k in range(19)]
    # samples at 6..26 in (5, 26]: 200 counted over 20 s, extrapolated by 1 s at the start -> 210
    assert prometheus_increase(counter, every_5s, 5, 26) == pytest.approx(210)
    # the first sample after the window start 6 s late: only half an interval is extrapolated
    late = [s for s in every_5s if not 5 <= s < 11]
    assert prometheus_increase(counter, late, 5, 26) == pytest.approx(150 * 17.5 / 15)
    assert prometheus_increase(counter, every_5s, 5, 9) is None  # one sample: no series
