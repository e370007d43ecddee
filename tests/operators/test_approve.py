"""``approval.approvers``: who may answer an approval, passed to Airflow's HITL ``assigned_users``.

The refusal of anyone else is Airflow's API at work (HTTP 403); it is shown with real services in
``tests/test_airflow_services.py::test_only_the_specs_approvers_may_answer``.
"""

from __future__ import annotations

import pytest

from canary_operators.exceptions import SpecError
from canary_operators.spec import parse_spec

SPEC = {
    "name": "web",
    "router": {"type": "haproxy", "conn_id": "h", "settings": {"backend": "app"}},
    "metrics": {"type": "prometheus", "conn_id": "p"},
    "promote": {"type": "command", "command": ["deploy-stable", "{version}"]},
    "steps": [10, 100],
}


def approve_step(approval):
    from canary_operators.operators.approve import ApproveStep

    spec = parse_spec({**SPEC, "approval": approval}, "web.yaml")
    return ApproveStep(task_id="approve_100", release=spec, weight=100, gate_task_ids=["gate_10"])


def test_approvers_become_the_questions_assigned_users():
    step = approve_step({"before": [100], "approvers": ["alice", "bob"]})
    assert step.assigned_users == [{"id": "alice", "name": "alice"}, {"id": "bob", "name": "bob"}]


def test_without_approvers_anyone_allowed_to_edit_the_dag_may_answer():
    assert approve_step({"before": [100]}).assigned_users is None


@pytest.mark.parametrize("approvers", [[""], "alice", [["alice"]], [None]])
def test_bad_approvers_are_spec_errors(approvers):
    with pytest.raises(SpecError, match="approvers"):
        parse_spec({**SPEC, "approval": {"before": [100], "approvers": approvers}}, "web.yaml")
