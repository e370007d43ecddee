"""The DAG of a release with targets: a task group per target, the lockstep barrier, the waves'
order, the group aborts and each target's teardowns."""

from __future__ import annotations

import pytest

from canary_operators.spec import parse_spec
from tests.spec.test_targets import BASE, haproxy, prometheus


def dag_of(**changes):
    from canary_operators.dag_factory import build_dag

    return build_dag(parse_spec({**BASE, **changes}, "shop.yaml"), source="shop.yaml")


def ups(dag, task_id: str) -> set[str]:
    return dag.get_task(task_id).upstream_task_ids


def test_lockstep_moves_every_target_to_each_step_together():
    from airflow.sdk import TriggerRule

    dag = dag_of()
    assert dag.dag_id == "canary_shop" and "targets" in dag.tags
    per_target = ["preflight", "shift_to_5", "gate_5", "shift_to_50", "gate_50", "approve_100", "promote", "rollback", "complete_rollout"]
    assert sorted(dag.task_ids) == sorted([f"{t}.{task}" for t in ("eu", "us") for task in per_target] + ["abort_all"])
    assert set(dag.task_group_dict) == {"eu", "us"}
    # the barrier: no target moves on before every target's gate at the step before passed
    assert ups(dag, "eu.shift_to_50") == ups(dag, "us.shift_to_50") == {"eu.gate_5", "us.gate_5"}
    assert ups(dag, "us.shift_to_5") == {"eu.preflight", "us.preflight"}
    assert ups(dag, "eu.promote") == {"eu.approve_100", "us.approve_100"}  # every target approved before any promotes
    assert ups(dag, "eu.gate_50") == {"eu.shift_to_50"}
    # one group abort, as soon as anything fails, over every target
    abort = dag.get_task("abort_all")
    assert abort.trigger_rule == TriggerRule.ONE_FAILED and set(abort.scope) == {"eu", "us"}
    work = {t for t in dag.task_ids if not t.endswith(("rollback", "complete_rollout")) and t != "abort_all"}
    assert abort.upstream_task_ids == work
    assert {s.name for s in abort.scope.values()} == {"shop__eu", "shop__us"}


def test_each_target_has_its_own_undo_and_verdict_after_everything():
    dag = dag_of()
    work = {t for t in dag.task_ids if not t.endswith(("rollback", "complete_rollout"))}
    for t in ("eu", "us"):
        rollback, complete = dag.get_task(f"{t}.rollback"), dag.get_task(f"{t}.complete_rollout")
        assert rollback.is_teardown and rollback.upstream_task_ids == work  # after every task, abort_all included
        assert rollback.release.name == f"shop__{t}" and set(rollback.watched_task_ids) == work - {"abort_all"}
        assert complete.is_teardown and complete.on_failure_fail_dagrun
        assert complete.upstream_task_ids == {f"{t}.promote", f"{t}.rollback"}
        assert complete.gate_task_ids == [f"{t}.gate_5", f"{t}.gate_50"]
    assert {t.task_id for t in dag.leaves} == {"eu.complete_rollout", "us.complete_rollout"}
    for task in dag.tasks:  # every operator works on its own target's spec
        if "." in task.task_id:
            assert task.release.name == "shop__" + task.task_id.split(".")[0]


@pytest.mark.parametrize("abort, scope_2", [("wave", {"us"}), ("all", {"eu", "us"})])
def test_waves_go_one_after_another_and_abort_their_scope(abort, scope_2):
    dag = dag_of(strategy="waves", abort=abort, targets=[
        {"name": "eu", "router": haproxy("eu"), "metrics": prometheus("eu")},
        {"name": "us", "router": haproxy("us"), "metrics": prometheus("us"), "steps": [50, 100]}])
    assert ups(dag, "us.preflight") == {"eu.promote"}  # the second wave starts when the first is promoted
    assert ups(dag, "eu.shift_to_50") == {"eu.gate_5"}  # within a wave, a target goes through its own steps
    assert "us.shift_to_5" not in dag.task_ids  # the later wave's own, shorter steps
    assert set(dag.get_task("abort_wave_1").scope) == {"eu"}
    assert set(dag.get_task("abort_wave_2").scope) == scope_2
    assert dag.get_task("abort_wave_2").upstream_task_ids == {t for t in dag.task_ids if t.startswith("us.")
                                                             and not t.endswith(("rollback", "complete_rollout"))}


def test_the_task_ids_read_as_target_dot_step():
    dag = dag_of()
    assert {t.task_id for t in dag.roots} == {"eu.preflight", "us.preflight"}
    # each target's preflight also records the release's targets, for the guard of a broken file
    assert dag.get_task("us.preflight").target_names == ["eu", "us"]
    assert dag.get_task("eu.shift_to_50").weight == 50
