"""The traffic-split check (sample ratio), as a specification with literal data."""

from __future__ import annotations

from canary_operators.judge import Gate, Verdict, sample_ratio
from canary_operators.measurement import ArmSample, Measurement
from tests.judge.data import SRM, counts


def test_sample_ratio_matches_the_weight():
    r = sample_ratio(SRM, counts("errors", 0, 500, 0, 9500), Gate(weight=5, baked=True))
    assert r.verdict is Verdict.PASS


def test_sample_ratio_mismatch_fails_naming_the_routing_once_it_lasts():
    skewed = counts("errors", 0, 1500, 0, 8500)
    first = sample_ratio(SRM, skewed, Gate(weight=5, baked=True))
    assert first.verdict is Verdict.INCONCLUSIVE and first.bounds["rejects"] is True
    assert "holding: it must last 30s of consecutive looks to count (0s so far)" in first.reason
    r = sample_ratio(SRM, skewed, Gate(weight=5, baked=True, split_failing_for=31))
    assert r.verdict is Verdict.FAIL
    assert r.reason.startswith("canary served 15.00% of 10000 requests at weight 5% (allowed 4.00%..6.00%")
    assert "the routing does not do what was set, for 31s of consecutive looks" in r.reason


def test_one_missing_scrape_at_the_window_start_is_not_a_routing_verdict():
    # The measured fault: the stable arm's /metrics answered 503 for 6 s across the step's window
    # start, so increase() lost those seconds of stable requests and the canary "served 34.29%".
    # At the next looks the window has grown and the share is back within tolerance.
    looks = [(343, 657), (500, 9_000), (600, 11_400)]  # canary, stable requests per look
    failing_for = None
    verdicts = []
    for i, (canary, stable) in enumerate(looks):
        r = sample_ratio(SRM, counts("step", 0, canary, 0, stable), Gate(weight=5, baked=True, split_failing_for=failing_for))
        verdicts.append(r.verdict)
        failing_for = (failing_for or 0) + 10 if r.bounds.get("rejects") else None
    assert verdicts == [Verdict.INCONCLUSIVE, Verdict.PASS, Verdict.PASS]


def test_a_canary_with_traffic_but_no_series_is_caught():
    no_series = Measurement("step", ArmSample(value=None, requests=None, query="c"),
                            ArmSample(value=0.0, requests=6000, events=0, query="b"), 60)
    first = sample_ratio(SRM, no_series, Gate(weight=5, baked=True))
    assert first.verdict is Verdict.INCONCLUSIVE
    r = sample_ratio(SRM, no_series, Gate(weight=5, baked=True, split_failing_for=30))
    assert r.verdict is Verdict.FAIL
    assert "no request series at all while it has 5% of traffic and the baseline served 6000 requests" in r.reason
    assert "wrong version label, or the canary is not scraped" in r.reason
    few = Measurement("step", no_series.canary, ArmSample(value=0.0, requests=200, events=0, query="b"), 60)
    assert sample_ratio(SRM, few, Gate(weight=5, baked=True, split_failing_for=30)).verdict is Verdict.IGNORED


def test_sample_ratio_uses_the_share_the_router_expects():
    # Argo Rollouts without traffic routing: 3 canary pods of 10 serve 30% whatever setWeight says.
    by_replicas = counts("step", 0, 3000, 0, 7000)
    assert sample_ratio(SRM, by_replicas, Gate(weight=20, baked=True, expected_share=0.3)).verdict is Verdict.PASS
    assert sample_ratio(SRM, by_replicas, Gate(weight=20, baked=True, split_failing_for=60)).verdict is Verdict.FAIL


def test_sample_ratio_waits_for_counts():
    r = sample_ratio(SRM, counts("errors", 0, 5, 0, 95), Gate(weight=5, baked=True))
    assert r.verdict is Verdict.IGNORED
