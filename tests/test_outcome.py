"""The one-line outcome, composed from literal records of a run (its tasks' XComs)."""

from __future__ import annotations

import json
from pathlib import Path

from canary_operators.outcome import RunFacts, compose, duration_text

SAMPLE = json.loads((Path(__file__).parent / "data" / "looks_sample.json").read_text())
PREFLIGHT = {"preflight": {"return_value": {"release": "checkout", "version": "v3", "stable_version": "v2"}}}
FAILED, SUCCESS = RunFacts("failed"), RunFacts("success", duration_seconds=372)


def test_a_rollback_by_a_check_names_the_weight_the_time_and_the_numbers():
    records = {**PREFLIGHT, "gate_5": {"looks": SAMPLE, "failure": {"task": "gate_5", "error": "gate at 5% failed: …"}},
               "rollback": {"return_value": {"reason": "gate_5: …", "canary_weight": 0}}}
    assert compose(records, FAILED) == "ROLLED BACK v3 at 5% after 35 s: errors 3.23% vs 0.24% (+2.99 pp > 0.5 pp)"


def test_a_promotion_names_the_duration_and_who_approved():
    records = {**PREFLIGHT, "promote": {"return_value": {"version": "v3"}},
               "approve_100": {"return_value": {"approved": "Promote", "asked": True, "by": "alice"}},
               "approve_50": {"return_value": {"approved": None, "asked": False}}}
    assert compose(records, SUCCESS) == "PROMOTED v3 in 6m12s, approved by alice"
    del records["approve_100"]
    assert compose(records, SUCCESS) == "PROMOTED v3 in 6m12s"


def test_a_metrics_backend_that_is_down_is_the_tooling_not_a_bad_build():
    look = {"outcome": "rollback", "weight": 10, "t": 70.0, "checks": [
        {"check": "errors", "kind": "error_rate", "verdict": "fail", "critical": True,
         "reason": "metrics backend error: prometheus at http://p:9090 answered HTTP 503 (down for 61s)"}]}
    records = {**PREFLIGHT, "gate_10": {"evidence": look, "failure": {"task": "gate_10", "error": "…"}}}
    line = compose(records, FAILED)
    assert line.startswith("ABORTED (tooling): gate_10: errors: metrics backend error: prometheus")


def test_a_router_that_is_down_at_preflight_is_the_tooling():
    records = {"preflight": {"failure": {"task": "preflight", "error": "haproxy at 127.0.0.1:9999 is unreachable"}},
               "rollback": {"return_value": {"reason": "preflight: haproxy …", "traffic_changed": False}}}
    assert compose(records, FAILED) == "ABORTED (tooling): preflight: haproxy at 127.0.0.1:9999 is unreachable"


def test_a_refused_conf_is_refused():
    records = {"preflight": {"failure": {"task": "preflight", "error": "conf.colour: unknown key"}}}
    assert compose(records, FAILED) == "REFUSED: conf.colour: unknown key"


def test_traffic_not_restored_wins_over_everything_else():
    records = {**PREFLIGHT, "gate_5": {"looks": SAMPLE},
               "rollback": {"failure": {"task": "rollback", "error": "TRAFFIC NOT RESTORED: checkout: the canary is "
                                                                     "still at 5% of traffic: gave up after 9 attempts"}}}
    assert compose(records, FAILED).startswith("TRAFFIC NOT RESTORED: checkout: the canary is still at 5%")


def test_a_person_who_rolls_back_is_named():
    records = {**PREFLIGHT, "approve_50": {"failure": {"task": "approve_50", "error": "rolled back before 50% by bob"}}}
    assert compose(records, FAILED) == "ROLLED BACK v3: rolled back before 50% by bob"


def test_nothing_to_release_and_a_dry_run():
    assert compose({"preflight": {"nothing_to_release": "v2 is already stable"}}, SUCCESS) == \
        "NOTHING TO RELEASE: v2 is already stable"
    dry = {"preflight": {"return_value": {"version": "v3", "dry_run": True}},
           "gate_5": {"evidence": {"outcome": "advance"}}, "gate_25": {"evidence": {"outcome": "rollback"}}}
    assert compose(dry, SUCCESS) == "DRY RUN v3: nothing moved; the gates would say gate_5 advance, gate_25 rollback"


def test_a_release_with_targets_gets_one_clause_per_target():
    records = {"eu.preflight": PREFLIGHT["preflight"], "eu.gate_5": {"looks": SAMPLE},
               "us.preflight": PREFLIGHT["preflight"],
               "us.shift_to_5": {"failure": {"task": "us.shift_to_5", "error": "the router did not apply 5%"}}}
    assert compose(records, FAILED) == ("eu: ROLLED BACK v3 at 5% after 35 s: errors 3.23% vs 0.24% (+2.99 pp > 0.5 pp); "
                                        "us: ABORTED (tooling): us.shift_to_5: the router did not apply 5%")


def test_durations_read_like_a_person_writes_them():
    assert [duration_text(s) for s in (35, 372, 7322, None)] == ["35 s", "6m12s", "2h02m", "?"]


def test_no_data_at_the_gate_timeout_quotes_the_judge():
    look = {"outcome": "rollback", "weight": 10, "t": 900.0, "checks": [
        {"check": "errors", "kind": "error_rate", "verdict": "fail", "critical": True, "canary_value": None,
         "reason": "no_data at the gate timeout: no canary data yet"}]}
    assert compose({**PREFLIGHT, "gate_10": {"evidence": look}}, FAILED) == \
        "ROLLED BACK v3 at 10% after 15m00s: errors: no_data at the gate timeout: no canary data yet"
