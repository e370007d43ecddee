"""The status record per release: one Airflow Variable that every step writes and every reader trusts."""

from __future__ import annotations

import logging

import pytest

from canary_operators import status as status_module
from canary_operators.status import MID_WAY, ReleaseStatus, heartbeat, read_status, record, status_variable, taken_over, write_status

LOG = logging.getLogger("test_status")


def gating(**changes) -> ReleaseStatus:
    """A release mid-way: run ci__v2 owns it, the canary is at 10%, its gate is waiting."""
    fields = dict(release="web", phase="gating", run_id="ci__v2", dag_id="canary_web", version="v2",
                  stable_version="v1", weight=10, decision="shift_to_10: canary at 10% (read back)")
    return ReleaseStatus(**{**fields, **changes})


# -- the record in an Airflow Variable ---------------------------------------------------------


def test_a_record_round_trips_through_an_airflow_variable(in_task):
    from airflow.sdk import Variable

    written = gating(promote_done=("stable_slot",), updated_at=1_700_000_000.5)
    write_status(written)

    assert read_status("web") == written
    # The Variable is plain JSON under a well-known key, readable by anything that reads Variables.
    stored = Variable.get("canary_status__web", deserialize_json=True)
    assert stored["phase"] == "gating" and stored["run_id"] == "ci__v2" and stored["weight"] == 10
    assert stored["promote_done"] == ["stable_slot"]
    assert status_variable("web") == "canary_status__web"


def test_records_of_two_releases_are_apart(in_task):
    write_status(gating())
    write_status(gating(release="api", run_id="ci__api_v7", weight=25))
    assert read_status("web").run_id == "ci__v2"
    assert read_status("api").run_id == "ci__api_v7" and read_status("api").weight == 25


def test_a_missing_record_is_idle_with_no_owner(in_task):
    missing = read_status("never_released")
    assert missing.release == "never_released"
    assert missing.phase == "idle" and missing.run_id is None and missing.weight is None
    assert missing.updated_at == 0.0  # never made progress: the guard's clock reads "long ago"
    assert not missing.mid_way
    assert not missing.owned_by(None) and not missing.owned_by("ci__v2")


def test_record_merges_changes_into_the_stored_record_and_stamps_progress(in_task):
    write_status(gating(updated_at=1_000.0))
    written = record("web", LOG, phase="rolled_back", weight=0, decision="rollback: gate_10: error rate")
    assert written == read_status("web")
    assert (written.phase, written.weight, written.run_id, written.version) == ("rolled_back", 0, "ci__v2", "v2")
    assert written.updated_at > 1_000.0


def test_record_never_raises_unless_strict(monkeypatch, caplog):
    def store_is_down(status):
        raise RuntimeError("execution API unreachable")

    monkeypatch.setattr(status_module, "write_status", store_is_down)
    with caplog.at_level(logging.WARNING, logger="test_status"):
        assert record("web", LOG, phase="gating") is None
    assert "could not write the status record of web: execution API unreachable" in caplog.text
    assert record("web", phase="gating") is None  # no logger: still quiet, still no exception
    with pytest.raises(RuntimeError, match="execution API unreachable"):
        record("web", LOG, strict=True, promote_done=("stable_slot",))


# -- the value itself --------------------------------------------------------------------------


def test_advance_returns_a_new_record_and_leaves_the_old_one():
    before = gating(updated_at=1_000.0)
    after = before.advance(phase="awaiting_approval")
    assert before.phase == "gating" and before.updated_at == 1_000.0
    assert after.phase == "awaiting_approval" and after.updated_at > 1_000.0
    with pytest.raises(Exception):
        before.phase = "promoted"  # frozen


@pytest.mark.parametrize("phase, mid_way", [
    ("idle", False), ("deploying", True), ("shifting", True), ("gating", True), ("awaiting_approval", True),
    ("promoting", True), ("rolling_back", True), ("promoted", False), ("rolled_back", False), ("unsafe", False),
])
def test_which_phases_are_mid_way(phase, mid_way):
    assert gating(phase=phase).mid_way is mid_way
    assert (phase in MID_WAY) is mid_way


def test_describe_is_one_readable_line():
    assert gating().describe() == "web: gating (canary 10%, run ci__v2): shift_to_10: canary at 10% (read back)"
    assert ReleaseStatus(release="web").describe() == "web: idle (canary unknown, run -): no decision yet"


# -- taken over: may this run still move traffic? ------------------------------------------------


@pytest.mark.parametrize("phase", ["idle", "deploying", "shifting", "gating", "awaiting_approval", "promoting"])
def test_the_owning_run_may_go_on(phase):
    assert taken_over(gating(phase=phase), "ci__v2") is None


def test_another_run_owns_the_release():
    assert taken_over(gating(run_id="ci__v3"), "ci__v2") == "the release is now owned by run ci__v3, not this run ci__v2"
    assert taken_over(gating(run_id=None), "ci__v2") == "the release is now owned by run (none), not this run ci__v2"


@pytest.mark.parametrize("phase, said", [
    ("rolled_back", "rolled back"), ("unsafe", "unsafe"), ("rolling_back", "rolling back"),
])
def test_the_guard_or_the_undo_took_over_the_runs_own_record(phase, said):
    why = taken_over(gating(phase=phase, decision="guard: canary at 10% and its run ci__v2 has made no progress"), "ci__v2")
    assert why == f"the release was {said} while this run waited: guard: canary at 10% and its run ci__v2 has made no progress"


# -- heartbeat: a step's progress write ----------------------------------------------------------


def test_heartbeat_of_the_owner_records_progress(in_task):
    write_status(gating(updated_at=1_000.0))
    assert heartbeat("web", "ci__v2", LOG, phase="gating", decision="gate_10: hold: 40 of 60 requests") is None
    now = read_status("web")
    assert now.updated_at > 1_000.0 and now.decision == "gate_10: hold: 40 of 60 requests"
    assert now.run_id == "ci__v2" and now.weight == 10


def test_heartbeat_of_another_run_says_why_and_writes_nothing(in_task):
    owned_by_v3 = write_status(gating(run_id="ci__v3", updated_at=1_000.0))
    why = heartbeat("web", "ci__v2", LOG, phase="gating", decision="gate_10: hold")
    assert why == "the release is now owned by run ci__v3, not this run ci__v2"
    assert read_status("web") == owned_by_v3


@pytest.mark.parametrize("phase", ["rolled_back", "unsafe"])
def test_heartbeat_after_the_guard_rolled_back_says_why_and_writes_nothing(in_task, phase):
    closed = write_status(gating(phase=phase, weight=0, decision="guard: run ci__v2 is paused", updated_at=1_000.0))
    why = heartbeat("web", "ci__v2", LOG, phase="gating", decision="gate_10: advance")
    assert why is not None and why.startswith(f"the release was {phase.replace('_', ' ')} while this run waited")
    assert read_status("web") == closed  # the guard's verdict stands; the gate does not reopen it


def test_heartbeat_that_cannot_write_lets_the_gate_go_on(in_task, monkeypatch, caplog):
    write_status(gating())

    def store_is_down(status):
        raise RuntimeError("execution API unreachable")

    monkeypatch.setattr(status_module, "write_status", store_is_down)
    with caplog.at_level(logging.WARNING, logger="test_status"):
        assert heartbeat("web", "ci__v2", LOG, phase="gating") is None
    assert "could not write the status record of web" in caplog.text


# -- the guard's stop marker: a heartbeat racing the guard's write cannot undo the guard ----------


def test_a_run_the_guard_stopped_is_taken_over_whatever_its_record_says():
    assert taken_over(gating(), "ci__v2", stopped_run="ci__v2").startswith("the guard stopped this run")
    assert taken_over(gating(), "ci__v2", stopped_run="ci__v1") is None  # an older run's marker


def test_heartbeat_that_raced_the_guards_record_write_still_stops(in_task, monkeypatch):
    """The guard marks the run stopped, then writes rolled_back; the trigger read 'gating' just
    before that write and writes 'gating' over it. The heartbeat must still say stop."""
    write_status(gating())
    real_write = status_module.write_status

    def guard_lands_between_read_and_write(status):
        status_module.mark_stopped("web", "ci__v2", "guard: no progress")
        real_write(gating(phase="rolled_back", weight=0, decision="guard: no progress"))
        return real_write(status)  # the heartbeat's stale 'gating' overwrites the guard's record

    monkeypatch.setattr(status_module, "write_status", guard_lands_between_read_and_write)
    why = heartbeat("web", "ci__v2", LOG, phase="gating", decision="gate_10: hold")
    assert why is not None and why.startswith("the guard stopped this run"), why
    monkeypatch.setattr(status_module, "write_status", real_write)
    # Every later heartbeat refuses before writing, and a cleared run (preflight) takes it back.
    assert heartbeat("web", "ci__v2", LOG, phase="gating").startswith("the guard stopped this run")
    status_module.clear_stopped("web", "ci__v2")
    assert heartbeat("web", "ci__v2", LOG, phase="gating") is None
