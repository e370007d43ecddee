"""Promote in Flagger's order, the undo that decides from the record and the router, and a safe start.

Each test drives one operator's ``run_step`` with a fake router and fake actions that write into
one journal (so the order of what happened shows), a real status record in an Airflow Variable,
and the few parts of a task's context the operators read.
"""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from canary_operators import safety
from canary_operators.exceptions import HookError
from canary_operators.operators import preflight as preflight_module
from canary_operators.operators import promote as promote_module
from canary_operators.operators import rollback as rollback_module
from canary_operators.operators import shift_traffic as shift_module
from canary_operators.operators.preflight import Preflight
from canary_operators.operators.promote import Promote
from canary_operators.operators.rollback import Rollback
from canary_operators.operators.shift_traffic import ShiftTraffic
from canary_operators.spec import RunConf, parse_spec
from canary_operators.status import ReleaseStatus, read_status, write_status
from tests.fakes import FakeRouter, FakeTI, NativeRouter, down, fake_context, outage

RUN = "ci__v2__2026-11-30"
OTHER_RUN = "ci__v1b__2026-11-29"
SPEC = parse_spec({
    "name": "web",
    "stable_version": "v1",
    "router": {"type": "haproxy", "conn_id": "haproxy_web", "settings": {"backend": "web"}},
    "metrics": {"type": "prometheus", "conn_id": "prometheus_default", "settings": {"labels": {"job": "web"}}},
    "steps": [10, 50, 100],
    "promote": {"type": "command", "command": ["deploy", "web-stable", "{version}"]},
    "after_promote": {"type": "command", "command": ["scale", "web-canary", "0"]},
    "rollback": {"type": "command", "command": ["scale", "web-canary", "0"]},
    "rollback_deadline": "0.3s",  # only the test whose router stays down waits it out
}, "web.yaml")
V2 = RunConf(release="web", version="v2", stable_version="v1", steps=[10, 50, 100])


class World:
    """The fake router and the fake actions, writing into one journal."""

    def __init__(self):
        self.journal: list[tuple] = []
        self.router = FakeRouter(weight=0, journal=self.journal)
        self.failing_actions: set[str] = set()

    def run_action(self, action, phase: str, run: RunConf, endpoint_for) -> str:
        if phase in self.failing_actions:
            raise HookError(f"{phase} command 'scale web-canary 0' exited 1: deployment not found")
        self.journal.append((phase, run.version, self.router.weight))  # what ran, for which version, at what weight
        return f"ran {phase} for {run.version}"

    def build_router(self, release, run=None):
        return self.router


@pytest.fixture
def world(in_task, monkeypatch):
    world = World()
    for module in (promote_module, rollback_module, preflight_module, shift_module):
        monkeypatch.setattr(module, "build_router", world.build_router)
    for module in (promote_module, rollback_module):
        monkeypatch.setattr(module, "run_action", world.run_action)
    monkeypatch.setattr(preflight_module, "build_provider", lambda release, run=None: type(
        "Prometheus", (), {"check_online": lambda self: None})())
    monkeypatch.setattr(safety, "FAILURE_HOOKS", [lambda release, message: world.journal.append(("failure hook", message))])
    return world


def owned_by(run_id: str, phase: str, weight: int, **changes) -> ReleaseStatus:
    return write_status(ReleaseStatus(release="web", phase=phase, run_id=run_id, dag_id="canary_web", version="v2",
                                      stable_version="v1", weight=weight, **changes))


def context(run_id: str = RUN, failures=None, runs=None, preflight=V2, conf=None):
    ti = FakeTI(preflight=preflight.model_dump() if preflight else None, failures=failures, runs=runs or {run_id: "running"})
    return fake_context(run_id, ti, conf)


def promote(ctx=None):
    return Promote(task_id="promote", release=SPEC).run_step(ctx or context())


def undo(ctx=None):
    return Rollback(task_id="rollback", release=SPEC, watched_task_ids=["shift_to_10", "gate_10", "shift_to_50", "gate_50",
                                                                       "promote"]).run_step(ctx or context())


GATE_FAILED = [{"task": "gate_10", "error": "AirflowFailException: gate_10: rollback: error rate +29.6pp (limit 5pp)"}]


# -- promote ---------------------------------------------------------------------------------


def test_promote_runs_in_flaggers_order_and_never_puts_100_on_the_canary_slot(world):
    from airflow.sdk import Variable

    world.router.weight = 50
    owned_by(RUN, "gating", 50)

    result = promote()

    assert world.journal == [
        ("promote", "v2", 50),  # 1. the stable slot gets v2 while the canary keeps its last weight
        ("set", 0),  # 2. all traffic to the stable slot
        ("after_promote", "v2", 0),  # 3. then the canary is scaled down
    ]
    assert 100 not in world.router.sets()
    assert result["canary_weight"] == 0
    done = read_status("web")
    assert (done.phase, done.weight, done.run_id) == ("promoted", 0, RUN)
    assert done.promote_done == ("after_promote", "routed", "stable_slot")
    assert Variable.get("canary_stable_version__web") == "v2"


def test_a_router_that_promotes_natively_is_asked_to_and_gets_no_100(world):
    world.router = NativeRouter(weight=50, journal=world.journal)
    owned_by(RUN, "gating", 50)

    result = promote()

    assert world.journal == [("router.promote",), ("after_promote", "v2", 0)]
    assert world.router.sets() == []  # no apply(100), no apply(0): the router did it
    assert result["router"] == "alias points at the new version"
    assert read_status("web").phase == "promoted"


def test_a_retry_after_a_failed_after_promote_only_reruns_after_promote(world):
    world.router.weight = 50
    owned_by(RUN, "gating", 50)
    world.failing_actions = {"after_promote"}
    with pytest.raises(HookError):
        promote()
    assert read_status("web").phase == "promoted"  # traffic is on the new stable: that is a promotion
    assert read_status("web").promote_done == ("routed", "stable_slot")

    world.journal.clear()
    world.failing_actions = set()
    promote()  # the task's retry

    assert world.journal == [("after_promote", "v2", 0)]  # no second deploy, no traffic moved
    assert read_status("web").promote_done == ("after_promote", "routed", "stable_slot")


def test_a_retry_after_the_router_failed_routes_without_deploying_again(world):
    world.router.weight = 50
    world.router.handler = outage(failing_sets=1)
    owned_by(RUN, "gating", 50)
    with pytest.raises(Exception, match="unreachable"):
        promote()
    assert read_status("web").promote_done == ("stable_slot",)

    world.journal.clear()
    promote()

    assert world.journal == [("set", 0), ("after_promote", "v2", 0)]
    assert read_status("web").phase == "promoted"


def test_promote_moves_nothing_after_the_guard_took_the_release_over(world):
    world.router.weight = 0
    owned_by(RUN, "rolled_back", 0, decision="guard: canary at 50% and its run has made no progress for 900s")
    with pytest.raises(AirflowFailException, match="web: not moving traffic: the release was rolled back while this run waited"):
        promote()
    assert world.journal == []


def test_a_shift_moves_nothing_after_the_guard_took_the_release_over(world):
    owned_by(RUN, "rolled_back", 0, decision="guard: canary at 10% and its run has made no progress for 900s")
    with pytest.raises(AirflowFailException, match="not moving traffic"):
        ShiftTraffic(task_id="shift_to_50", release=SPEC, weight=50).run_step(context())
    assert world.journal == [] and world.router.weight == 0


# -- the undo ----------------------------------------------------------------------------------


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


# -- a safe start --------------------------------------------------------------------------------


def start(run_id: str = RUN, **conf):
    return Preflight(task_id="preflight", release=SPEC).run_step(context(run_id, preflight=None, conf={"version": "v2", **conf}))


@pytest.mark.parametrize("phase, weight, problem", [
    ("gating", 10, f"run {OTHER_RUN} is mid-way (gating, canary at 10%)"),
    ("rolled_back", 25, f"canary at 25% since run {OTHER_RUN} (rolled_back)"),
])
def test_preflight_refuses_a_canary_left_by_another_run_and_moves_nothing(world, phase, weight, problem):
    world.router.weight = weight
    theirs = owned_by(OTHER_RUN, phase, weight)

    with pytest.raises(AirflowFailException) as refused:
        start()

    assert str(refused.value) == (f'canary_web: {problem}; the guard resets it within a minute, or trigger with '
                                  f'{{"force_reset": true}}. Nothing was moved.')
    assert world.journal == [] and world.router.weight == weight
    assert read_status("web") == theirs


def test_preflight_with_force_reset_puts_the_canary_back_to_0_first(world):
    world.router.weight = 10
    owned_by(OTHER_RUN, "gating", 10)

    resolved = start(force_reset=True)

    assert world.journal == [("set", 0)]
    assert resolved["force_reset"] is True
    taken = read_status("web")
    assert (taken.phase, taken.run_id, taken.weight, taken.version) == ("idle", RUN, 0, "v2")


def test_a_cleared_and_rerun_run_adopts_its_own_record(world):
    owned_by(RUN, "rolled_back", 0, decision="rollback: gate_10: error rate")
    start()
    assert world.journal == []
    adopted = read_status("web")
    assert (adopted.phase, adopted.run_id) == ("idle", RUN)
    assert adopted.decision == "preflight: adopted its own record; canary at 0%"


def test_a_cleared_run_that_left_its_canary_up_adopts_it_and_puts_it_back_to_0_first(world):
    world.router.weight = 25
    owned_by(RUN, "gating", 25)
    start()
    assert world.journal == [("set", 0)]
    assert read_status("web").phase == "idle"


def test_a_release_after_a_finished_promotion_starts(world):
    owned_by(OTHER_RUN, "promoted", 0, promote_done=("after_promote", "routed", "stable_slot"))
    start()
    taken = read_status("web")
    assert (taken.run_id, taken.phase, taken.promote_done) == (RUN, "idle", ())
    assert taken.decision == "preflight: took the release; canary at 0%"
