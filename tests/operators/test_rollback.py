"""The undo, which decides from the status record and the router.

Each test drives ``Rollback.run_step`` with the fake router and actions of ``tests/operators/release_world.py``.
"""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from canary_operators.exceptions import HookError
from canary_operators.status import read_status
from tests.fakes import down
from tests.operators.release_world import GATE_FAILED, OTHER_RUN, RUN, V2, context, owned_by, undo
from tests.operators.release_world import world  # noqa: F401  (world is a fixture)


def test_the_undo_after_a_promotion_does_nothing(world):
    owned_by(RUN, "promoted", 0, promote_done=("after_promote", "routed", "stable_slot"))
    result = undo()
    assert world.journal == []
    assert result["promoted"] is True and result["traffic_changed"] is False
    assert read_status("web").phase == "promoted"


def test_the_undo_after_a_failed_after_promote_does_nothing(world):
    owned_by(RUN, "promoted", 0, promote_done=("routed", "stable_slot"))
    undo(context(failures=[{"task": "promote", "error": "HookError: after_promote command exited 1"}]))
    assert world.journal == []
    assert read_status("web").phase == "promoted"


def test_the_undo_after_a_partial_promote_puts_the_old_version_back_in_the_stable_slot_first(world):
    world.router.weight = 50
    owned_by(RUN, "promoting", 50, promote_done=("stable_slot",))

    result = undo(context(failures=[{"task": "promote", "error": "RouterError: haproxy: admin socket unreachable"}]))

    assert world.journal == [
        ("promote", "v1", 50),  # the previous stable version back into the stable slot
        ("set", 0),  # then traffic back on it
        ("rollback", "v2", 0),  # then the spec's rollback action
    ]
    assert result["restored_stable"] == "ran promote for v1"
    closed = read_status("web")
    assert (closed.phase, closed.weight, closed.promote_done) == ("rolled_back", 0, ())


def test_the_undo_after_a_promote_action_that_failed_half_way_restores_the_stable_slot(world):
    # The promote action failed (a rollout that timed out), so "stable_slot" was never recorded,
    # but the stable slot may already run v2: restoring v1 is idempotent, leaving v2 is not safe.
    world.router.weight = 50
    owned_by(RUN, "promoting", 50, promote_done=())

    undo(context(failures=[{"task": "promote", "error": "HookError: promote command timed out after 300s"}]))

    assert world.journal[:2] == [("promote", "v1", 50), ("set", 0)]
    assert read_status("web").phase == "rolled_back"


def test_a_retried_undo_still_restores_the_stable_slot_when_the_first_restore_failed(world):
    world.router.weight = 50
    owned_by(RUN, "promoting", 50, promote_done=())
    world.failing_actions = {"promote"}
    with pytest.raises(HookError):
        undo()
    assert read_status("web").promote_done == ("stable_slot",)  # the undo's retry must still know

    world.failing_actions = set()
    undo()  # the teardown's retry

    assert world.journal == [("promote", "v1", 50), ("set", 0), ("rollback", "v2", 0)]
    assert read_status("web").promote_done == ()


def test_the_undo_of_an_unpromoted_run_puts_traffic_back_then_runs_the_rollback_action(world):
    world.router.weight = 10
    owned_by(RUN, "gating", 10)

    result = undo(context(failures=GATE_FAILED))

    assert world.journal == [("set", 0), ("rollback", "v2", 0)]
    assert result["canary_weight"] == 0 and result["traffic_changed"] is True
    assert result["reason"] == "gate_10: AirflowFailException: gate_10: rollback: error rate +29.6pp (limit 5pp)"
    closed = read_status("web")
    assert (closed.phase, closed.weight) == ("rolled_back", 0)
    assert closed.decision == f"rollback: {result['reason']}"


def test_the_undo_of_a_run_marked_failed_by_hand_says_so(world):
    world.router.weight = 10
    owned_by(RUN, "gating", 10)
    result = undo(context(failures=[]))
    assert world.journal == [("set", 0), ("rollback", "v2", 0)]
    assert result["reason"].startswith("the run ended before promotion (marked failed or success by hand")


def test_the_undo_of_a_run_that_does_not_own_the_release_leaves_the_live_owner_alone(world):
    world.router.weight = 10
    theirs = owned_by(OTHER_RUN, "gating", 10)
    preflight_refused = [{"task": "preflight", "error": "AirflowFailException: canary_web: run ... is mid-way"}]

    result = undo(context(preflight=None, failures=preflight_refused, runs={RUN: "running", OTHER_RUN: "running"}))

    assert world.journal == [] and world.router.weight == 10
    assert result["traffic_changed"] is False
    assert read_status("web") == theirs


def test_the_undo_of_a_run_that_does_not_own_the_release_leaves_an_orphan_to_the_guard(world):
    world.router.weight = 10
    theirs = owned_by(OTHER_RUN, "gating", 10)

    result = undo(context(preflight=None, failures=[], runs={RUN: "running"}))  # OTHER_RUN was deleted

    assert world.journal == [] and world.router.weight == 10  # this run moved nothing; canary_guard resets it
    assert result["traffic_changed"] is False
    assert read_status("web") == theirs


def test_the_undo_of_a_dry_run_moves_nothing(world):
    world.router.weight = 10
    owned_by(RUN, "gating", 10)
    result = undo(context(preflight=V2.model_copy(update={"dry_run": True})))
    assert world.journal == [] and result["dry_run"] is True


def test_the_undo_fails_loudly_when_traffic_cannot_be_restored_by_the_deadline(world):
    world.router.weight = 10
    world.router.handler = lambda call, percent: "ignore" if call == "set" else None  # reads 10% whatever it is told
    owned_by(RUN, "gating", 10)

    with pytest.raises(AirflowFailException) as failed:
        undo(context(failures=GATE_FAILED))

    message = str(failed.value)
    assert message.startswith("TRAFFIC NOT RESTORED: web: the canary is still at 10% of traffic: gave up after ")
    assert "rollback_deadline 0.3s" in message and "gate_10" in message
    assert ("failure hook", message) in world.journal
    assert ("rollback", "v2", 10) not in world.journal  # no scale-down of a canary that still serves
    unsafe = read_status("web")
    assert (unsafe.phase, unsafe.weight) == ("unsafe", 10)
    assert unsafe.decision.startswith("TRAFFIC NOT RESTORED:")


def test_the_undo_with_the_router_unreachable_says_the_weight_is_unknown(world):
    world.router.weight = 10
    world.router.handler = down
    owned_by(RUN, "gating", 10)
    with pytest.raises(AirflowFailException, match=r"^TRAFFIC NOT RESTORED: web: the canary is still at unknown of traffic"):
        undo(context(failures=GATE_FAILED))
    assert read_status("web").phase == "unsafe"
