"""The release spec's documented defaults and the values it derives."""

from __future__ import annotations

from canary_operators.spec import DEFAULT_STEPS, ErrorRateCheck, LatencyCheck, parse_spec
from tests.spec.minimal import MINIMAL, spec_with


def test_minimal_spec_gets_the_documented_defaults():
    spec = parse_spec(MINIMAL, "web.yaml")
    assert spec.steps == DEFAULT_STEPS == [1, 5, 25, 50, 100]
    assert spec.gate_steps == [1, 5, 25, 50]
    assert spec.dag_id == "canary_web"
    error_rate, latency = spec.checks
    assert isinstance(error_rate, ErrorRateCheck) and error_rate.max_increase_pp == 0.5
    assert isinstance(latency, LatencyCheck) and latency.quantile == 0.99 and latency.max_ratio == 1.10
    assert spec.bake_time == 300 and spec.gate_timeout == 900


def test_durations_accept_units():
    spec = parse_spec(spec_with(bake_time="1m30s", gate_timeout="1h", poke_interval=5), "web.yaml")
    assert (spec.bake_time, spec.gate_timeout, spec.poke_interval) == (90, 3600, 5)


def test_safety_defaults_and_derived_timeouts():
    spec = parse_spec(MINIMAL, "web.yaml")
    assert spec.rollback_deadline == 900
    assert parse_spec(spec_with(rollback_deadline="5m"), "web.yaml").rollback_deadline == 300
    # Without approval a run may still ask before 100% (conf adds it); with approval, at the spec's points.
    assert spec.approval_points == [100]
    assert parse_spec(spec_with(approval={"before": [25, 100]}), "web.yaml").approval_points == [25, 100]
    # A gate waits at most gate_timeout, or twice that when a check may hold; with plan: adapt (the
    # default), the longest timeout the evidence planner may give it.
    never_holds = [{"name": "e", "kind": "error_rate", "on_no_data": "rollback", "on_error": "rollback",
                    "on_inconclusive": "rollback"}]
    assert parse_spec(spec_with(checks=never_holds, plan="off"), "web.yaml").gate_task_timeout == spec.gate_timeout
    holds = [{**never_holds[0], "on_no_data": "hold"}]
    assert parse_spec(spec_with(checks=holds, plan="off"), "web.yaml").gate_task_timeout == 2 * spec.gate_timeout
    assert parse_spec(spec_with(checks=holds), "web.yaml").gate_task_timeout == 2 * spec.plan_max_gate_timeout
