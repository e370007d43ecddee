"""The per-look record: literal looks in, compact JSON out; thinning keeps the first, the last and
every change of verdict; what the judge saw round-trips so a look can be judged again."""

from __future__ import annotations

import json
from pathlib import Path

from canary_operators.judge import ProviderFailure, judge, Gate
from canary_operators.looks import GateLooks, look_line, observed_from_dict, observed_to_dict
from canary_operators.measurement import ArmSample, Measurement
from canary_operators.spec import parse_spec

SAMPLE = Path(__file__).parent / "data" / "looks_sample.json"


def _evidence(outcome: str, verdict: str, t: float, c=0.01, b=0.01, n=1000) -> dict:
    return {"weight": 5, "elapsed_seconds": t, "window_seconds": t, "last_gate": False, "outcome": outcome,
            "reason": f"errors: {verdict}", "checks": [
                {"check": "errors", "kind": "error_rate", "verdict": verdict, "reason": "r", "critical": True,
                 "canary_value": c, "baseline_value": b, "canary_requests": n, "baseline_requests": 9000,
                 "threshold": "canary - baseline <= 0.5 pp", "statistic": "", "statistic_value": None,
                 "p_value": None, "bounds": {}, "estimate_within_bounds": None,
                 "canary_query": "rate{v=\"v3\"}", "baseline_query": "rate{v=\"v2\"}"}]}


def test_a_look_keeps_the_checks_and_moves_the_queries_to_the_gate():
    looks = GateLooks(gate="gate_5", weight=5, shifted_at=1000.0)
    looks.add(_evidence("hold", "inconclusive", 12.0), {"errors": None}, {"baked": False}, 1012.0)
    record = looks.to_dict()
    assert record["queries"] == {"errors": {"canary": 'rate{v="v3"}', "baseline": 'rate{v="v2"}'}}
    look = record["looks"][0]
    assert (look["n"], look["at"], look["t"], look["weight"], look["outcome"]) == (1, 1012.0, 12.0, 5, "hold")
    assert "canary_query" not in look["checks"][0] and look["checks"][0]["observed"] is None
    assert json.loads(json.dumps(record)) == record


def test_thinning_keeps_first_last_and_every_change_and_counts_what_went():
    looks = GateLooks(gate="gate_5", weight=5, shifted_at=0.0, max_looks=10)
    verdicts = ["no_data"] * 20 + ["inconclusive"] * 20 + ["fail"]
    for i, v in enumerate(verdicts):
        outcome = "rollback" if v == "fail" else "hold"
        looks.add(_evidence(outcome, v, float(i)), {}, {}, float(i))
    kept = [lk["n"] for lk in looks.looks]
    assert len(kept) <= 10
    assert kept[0] == 1 and kept[-1] == 41 and 21 in kept  # first, last, the change to inconclusive
    assert looks.dropped == 41 - len(kept)
    assert kept == sorted(kept)


def test_thinning_respects_the_byte_cap():
    looks = GateLooks(gate="g", weight=5, shifted_at=0.0, max_bytes=5_000)
    for i in range(50):
        looks.add(_evidence("hold", "inconclusive", float(i)), {}, {}, float(i))
    assert len(json.dumps(looks.looks)) <= 5_000 and looks.dropped > 0


def test_the_record_is_strict_json_and_a_histograms_inf_bound_comes_back():
    m = Measurement("lat", ArmSample(0.3, 100.0, "q1", buckets=((0.1, 10.0), (float("inf"), 100.0))),
                    ArmSample(0.2, 900.0, "q2", buckets=((0.1, 50.0), (float("inf"), 900.0))), 60.0)
    looks = GateLooks(gate="g", weight=5, shifted_at=0.0)
    evidence = _evidence("hold", "inconclusive", 1.0)
    evidence["checks"][0]["bounds"] = {"canary_quantile": [0.25, float("inf")]}
    looks.add(evidence, {"errors": observed_to_dict(m)}, {}, 1.0)
    text = json.dumps(looks.to_dict(), allow_nan=False)  # raises on Infinity or NaN
    observed = json.loads(text)["looks"][0]["checks"][0]["observed"]
    assert observed["canary"]["buckets"][-1] == ["+Inf", 100.0]
    assert observed_from_dict("lat", observed, {"canary": "q1", "baseline": "q2"}) == m


def test_observed_round_trips_for_the_judge():
    m = Measurement("lat", ArmSample(0.3, 100.0, "q1", buckets=((0.1, 10.0), (float("inf"), 100.0))),
                    ArmSample(0.2, 900.0, "q2", periods=((0.0, 0.2), (60.0, 0.25))), 60.0)
    back = observed_from_dict("lat", json.loads(json.dumps(observed_to_dict(m))), {"canary": "q1", "baseline": "q2"})
    assert back == m
    failure = observed_from_dict("x", observed_to_dict(ProviderFailure("down", exhausted=True)))
    assert failure == ProviderFailure("down", True)
    assert observed_from_dict("x", None) is None


def test_the_log_line_is_short_and_names_the_deciding_check():
    looks = GateLooks(gate="gate_5", weight=5, shifted_at=0.0)
    look = looks.add(_evidence("hold", "inconclusive", 35.0, c=0.0021, b=0.0018, n=2850), {}, {}, 35.0)
    for _ in range(6):
        look = looks.add(_evidence("hold", "inconclusive", 35.0, c=0.0021, b=0.0018, n=2850), {}, {}, 35.0)
    assert look_line("gate_5", look) == "gate_5 look 7 at 35s: HOLD – errors inconclusive (0.21% vs 0.18%, n=2850)"


def test_the_committed_sample_is_a_rolled_back_gate_that_the_judge_decides_again():
    sample = json.loads(SAMPLE.read_text())
    assert sample["looks"][-1]["outcome"] == "rollback" and sample["dropped"] == 0
    spec = parse_spec({"name": "checkout", "router": {"type": "haproxy", "conn_id": "c", "settings": {"backend": "w"}},
                       "metrics": {"type": "prometheus", "conn_id": "p"}, "steps": [5, 25, 100],
                       "sample_ratio": {"enabled": False},
                       "checks": [{"name": "errors", "kind": "error_rate", "max_increase_pp": 0.5},
                                  {"name": "p99_latency", "kind": "latency", "max_ratio": 1.2}],
                       "deploy": {"type": "command", "command": ["true"]},
                       "promote": {"type": "command", "command": ["true"]}}, "checkout.yaml")
    for look in sample["looks"]:
        observed = {c["check"]: observed_from_dict(c["check"], c["observed"], sample["queries"].get(c["check"]))
                    for c in look["checks"]}
        again = judge(spec.checks, observed, Gate(weight=5, **look["gate"]), spec.sample_ratio)
        assert again.outcome.value == look["outcome"]
