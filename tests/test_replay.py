"""Replay: the recorded looks of a gate judged again under a changed spec, on literal records."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from canary_operators.replay import render, replay, runs_of
from canary_operators.spec import parse_spec
from tests.conftest import load_module

SAMPLE = json.loads((Path(__file__).parent / "data" / "looks_sample.json").read_text())
SPEC = {"name": "checkout", "router": {"type": "haproxy", "conn_id": "c", "settings": {"backend": "w"}},
        "metrics": {"type": "prometheus", "conn_id": "p"}, "steps": [5, 25, 100], "bake_time": "60s",
        "gate_timeout": "10m", "sample_ratio": {"enabled": False},
        "checks": [{"name": "errors", "kind": "error_rate", "max_increase_pp": 0.5},
                   {"name": "p99_latency", "kind": "latency", "max_ratio": 1.2}],
        "promote": {"type": "command", "command": ["true"]}}


def spec(**changes):
    return parse_spec({**copy.deepcopy(SPEC), **changes}, "checkout.yaml")


def test_the_same_spec_decides_the_same_at_every_look():
    [gate] = replay(SAMPLE, spec())
    assert [(lk.decided, lk.would) for lk in gate.looks] == [("hold", "hold")] * 3 + [("rollback", "rollback")]
    assert not gate.changed


def test_a_looser_threshold_flips_the_rollback_into_a_hold():
    looser = spec(checks=[{"name": "errors", "kind": "error_rate", "max_increase_pp": 5},
                          {"name": "p99_latency", "kind": "latency", "max_ratio": 1.2}])
    [gate] = replay(SAMPLE, looser)
    assert gate.decided.n == 4 and gate.decided.decided == "rollback"
    assert gate.would is None and gate.changed  # it would still hold: no more looks were recorded
    assert gate.looks[-1].would == "hold"
    text = render([gate])
    assert "* " in text and "decided:    ROLLBACK at look 4 (35 s)" in text
    assert "would have: no decision in the recorded looks (held)" in text
    assert text.endswith("1 of 1 gates would have decided differently")


def test_a_stricter_alpha_or_threshold_can_roll_back_earlier():
    stricter = spec(checks=[{"name": "errors", "kind": "error_rate", "max_increase_pp": 0.1, "alpha": 0.4},
                            {"name": "p99_latency", "kind": "latency", "max_ratio": 1.2}])
    [gate] = replay(SAMPLE, stricter)
    assert (gate.would.would, gate.would.n, gate.would.t) == ("rollback", 3, 28.0) and gate.decided.n == 4
    assert "decided:    ROLLBACK at look 4 (35 s)\n  would have: ROLLBACK at look 3 (28 s)" in render([gate])


def test_a_longer_bake_time_holds_a_gate_that_advanced():
    advanced = copy.deepcopy(SAMPLE)
    look = advanced["looks"][-1]
    look.update(t=90.0, outcome="advance")
    for c in look["checks"]:  # a healthy canary at the last look: the same counts as the baseline
        c["observed"]["canary"] = dict(c["observed"]["baseline"])
    [same] = replay(advanced, spec(checks=[{"name": "errors", "kind": "error_rate", "max_increase_pp": 0.5}]))
    assert same.looks[-1].would == "advance"
    [longer] = replay(advanced, spec(bake_time="5m", checks=[{"name": "errors", "kind": "error_rate", "max_increase_pp": 0.5}]))
    assert longer.looks[-1].would == "hold" and "baking" in longer.looks[-1].reason


def test_a_check_the_record_never_measured_has_no_data():
    [gate] = replay(SAMPLE, spec(checks=[{"name": "cpu", "kind": "resource", "resource": "cpu"}]))
    assert all(lk.would == "hold" and "no measurement" in lk.reason for lk in gate.looks)


def test_exports_of_every_shape_are_read_and_anything_else_is_refused():
    run = {"dag_id": "canary_checkout", "run_id": "r1", "gates": {"gate_5": SAMPLE}}
    assert runs_of({"runs": [run]}) == [run] and runs_of(run) == [run]
    assert runs_of(SAMPLE)[0]["gates"] == {"gate_5": SAMPLE}
    with pytest.raises(ValueError, match="not a record of looks"):
        runs_of({"dag_runs": []})


def test_the_cli_replays_a_file_and_says_which_gates_changed(tmp_path, capsys):
    cli = load_module("include/scripts/replay.py", "replay_cli")
    records = tmp_path / "looks.json"
    records.write_text(json.dumps({"runs": [{"dag_id": "canary_checkout", "run_id": "r1", "gates": {"gate_5": SAMPLE}}]}))
    changed = tmp_path / "checkout.yaml"
    changed.write_text(yaml.safe_dump({**SPEC, "checks": [{"name": "errors", "kind": "error_rate", "max_increase_pp": 5}]}))
    assert cli.main(["--records", str(records), "--spec", str(changed)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("canary_checkout r1 gate_5 (5%)") and "1 of 1 gates would have decided differently" in out
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump({**SPEC, "bake_time": "soon"}))
    assert cli.main(["--records", str(records), "--spec", str(broken)]) == 2
    assert "bake_time" in capsys.readouterr().err
    assert cli.main(["--records", str(tmp_path / "missing.json"), "--spec", str(changed)]) == 2
