"""The run report's derived values for a release across several targets (a task group per target)."""

from __future__ import annotations

from canary_operators.report.model import RunReport


def report(state: str, xcoms: dict) -> RunReport:
    return RunReport(dag_id="canary_shop", run_id="r1", release="shop", state=state, start=0.0, end=60.0, xcoms=xcoms)


def test_a_targets_task_stands_for_the_plain_task_id_the_report_reads():
    xcoms = {"eu.rollback": {"return_value": {"reason": "us.gate_20: error rate 30%", "traffic_changed": True,
                                              "seconds_to_stable": 0.02}},
             "us.rollback": {"return_value": {"reason": "us.gate_20: error rate 30%", "traffic_changed": True}},
             "eu.preflight": {"return_value": {"version": "v6"}}}
    run = report("failed", xcoms)
    assert run.xcom("rollback")["reason"].startswith("us.gate_20")
    assert run.outcome() == "ROLLED BACK"
    assert run.decided_by() == "us.gate_20: error rate 30%"
    assert run.rollback_latency() == 0.02
    assert run.xcom("preflight", "nothing_to_release") is None


def test_a_plain_task_id_wins_and_a_missing_one_is_none():
    run = report("success", {"rollback": {"return_value": {"promoted": True}}, "eu.rollback": {"return_value": {"x": 1}}})
    assert run.xcom("rollback") == {"promoted": True}
    assert run.xcom("promote") is None and run.outcome() == "PROMOTED"
