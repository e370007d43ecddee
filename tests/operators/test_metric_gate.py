"""MetricGate: the gate task reads its timeout from preflight's plan."""

from __future__ import annotations

from tests.planner.web_release import spec_with


class _TI:
    def __init__(self, plan):
        self.plan = plan

    def xcom_pull(self, task_ids, key="return_value"):
        return self.plan if (task_ids, key) == ("preflight", "plan") else None


def test_a_gate_reads_its_timeout_from_preflights_plan():
    from canary_operators.operators.metric_gate import GATE_TIMEOUT_MARGIN, MetricGate

    plan = {"gate_timeouts": {"50": 2400.0, "1": 900.0}}
    gate = MetricGate(task_id="gate_50", release=spec_with(), weight=50, shift_task_id="shift_to_50")
    assert gate._gate_timeout({"ti": _TI(plan)}) == 2400.0
    assert gate._trigger_timeout(2400.0) == 2400.0 + GATE_TIMEOUT_MARGIN
    assert gate.timeout == 3600 + GATE_TIMEOUT_MARGIN  # the static task timeout allows the cap
    no_plan = MetricGate(task_id="gate_50", release=spec_with(), weight=50, shift_task_id="shift_to_50")
    assert no_plan._gate_timeout({"ti": _TI(None)}) is None
    off = MetricGate(task_id="gate_50", release=spec_with(plan="off"), weight=50, shift_task_id="shift_to_50")
    assert off._gate_timeout({"ti": _TI(plan)}) is None and off.timeout == 900 + GATE_TIMEOUT_MARGIN
