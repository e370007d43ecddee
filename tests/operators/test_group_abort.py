"""GroupAbort: what a failure in one target does to the others, per their status records, with
fake routers and the real records (Airflow Variables)."""

from __future__ import annotations

import pytest

from canary_operators.operators import group_abort as group_abort_module
from canary_operators.operators.common import stable_version_variable
from canary_operators.operators.group_abort import GroupAbort
from canary_operators.spec import parse_spec
from canary_operators.spec.targets import target_releases
from canary_operators.status import ReleaseStatus, read_status, write_status
from tests.fakes import FakeRouter, FakeTI, NativeRouter, down, fake_context

RUN = "ci__v6__1"
SPEC = parse_spec({
    "name": "shop",
    "stable_version": "v1",
    "steps": [20, 100],
    "promote": {"type": "command", "command": ["deploy-stable", "{version}"]},
    "targets": [{"name": t, "router": {"type": "haproxy", "conn_id": "h", "settings": {"backend": t}},
                 "metrics": {"type": "prometheus", "conn_id": "p"}} for t in ("eu", "us", "ap")],
}, "shop.yaml")
TARGETS = target_releases(SPEC)
FAILED = [{"task": "us.gate_20", "error": "AirflowFailException: gate at 20% failed: errors: error rate 30%"}]


@pytest.fixture
def routers(in_task, monkeypatch):
    routers = {t: FakeRouter(weight=20) for t in TARGETS}
    monkeypatch.setattr(group_abort_module, "build_router", lambda release, run=None: routers[release.name.split("__")[1]])
    monkeypatch.setattr(group_abort_module, "RECHECK_SECONDS", 0.0)
    return routers


def owned(target: str, phase: str, run_id: str = RUN, **changes) -> None:
    write_status(ReleaseStatus(release=f"shop__{target}", phase=phase, run_id=run_id, dag_id="canary_shop",
                               version="v6", stable_version="v1", weight=20, **changes))


def abort(scope=("eu", "us", "ap")) -> dict:
    task = GroupAbort(task_id="abort_all", release=SPEC, scope={t: TARGETS[t] for t in scope},
                      watched_task_ids=["eu.gate_20", "us.gate_20"])
    return task.run_step(fake_context(RUN, FakeTI(failures=FAILED)))


def test_every_target_this_run_moved_is_stopped_and_set_to_zero(routers):
    owned("eu", "gating")
    owned("us", "rolled_back")  # its own gate failed and reset it already
    owned("ap", "gating", run_id="another-run")  # not this run's: hands off

    result = abort()

    assert {t: r["action"] for t, r in result["targets"].items()} == {"eu": "stop", "us": "none", "ap": "none"}
    assert result["targets"]["eu"]["weight_after"] == 0 and routers["eu"].weight == 0
    assert routers["ap"].weight == 20 and routers["us"].weight == 20  # nothing touched where nothing was ours to stop
    eu = read_status("shop__eu")
    assert eu.phase == "rolling_back" and eu.decision.startswith("abort_all: group abort: us.gate_20: ")
    assert read_status("shop__ap").phase == "gating"
    assert "us.gate_20" in result["reason"]


def test_a_promoted_target_is_set_up_for_its_undo_to_put_the_previous_version_back(routers, in_task):
    from airflow.sdk import Variable

    owned("eu", "promoted", promote_done=("after_promote", "routed", "stable_slot"))
    Variable.set(stable_version_variable("shop__eu"), "v6")
    owned("us", "gating")

    result = abort(scope=("eu", "us"))

    assert result["targets"]["eu"]["action"] == "unpromote"
    eu = read_status("shop__eu")
    # as after a partial promote: the undo restores the stable slot with the previous version
    assert eu.phase == "rolling_back" and eu.promote_done == ("stable_slot",)
    assert Variable.get(stable_version_variable("shop__eu")) == "v1"


def test_a_promote_under_way_keeps_the_stable_slot_to_restore(routers):
    owned("eu", "promoting")
    owned("us", "gating")
    abort(scope=("eu", "us"))
    assert read_status("shop__eu").promote_done == ("stable_slot",)


def test_a_native_promotion_cannot_be_undone_and_says_so(routers, monkeypatch):
    owned("eu", "promoted", promote_done=("routed",))
    owned("us", "gating")
    monkeypatch.setattr(group_abort_module, "router_class", lambda type_name: NativeRouter)
    result = abort(scope=("eu", "us"))
    assert read_status("shop__eu").phase == "promoted"
    assert "cannot undo that" in result["targets"]["eu"]["note"]


def test_a_router_that_is_down_leaves_the_reset_to_the_undo(routers):
    owned("eu", "gating")
    routers["eu"].handler = down
    result = abort(scope=("eu",))
    assert "error" in result["targets"]["eu"] and read_status("shop__eu").phase == "rolling_back"


def test_nothing_moved_by_this_run_is_a_skip(routers):
    from airflow.sdk.exceptions import AirflowSkipException

    owned("eu", "gating", run_id="another-run")
    with pytest.raises(AirflowSkipException, match="nothing to abort"):
        abort(scope=("eu", "us"))
