"""The plan as preflight pushes it to XCom, and the gate timeout read back from it."""

from __future__ import annotations

from canary_operators.planner import Traffic, plan_gates, planned_gate_timeout
from tests.planner.web_release import spec_with, timeouts


def test_the_plan_round_trips_through_xcom_json():
    import json

    plan = plan_gates(spec_with(), None, None, Traffic(50, 0.01))
    pushed = json.loads(json.dumps(plan.to_dict()))
    assert planned_gate_timeout(pushed, 50) == timeouts(plan)[50]
    assert planned_gate_timeout(pushed, 10) is None and planned_gate_timeout(None, 50) is None
