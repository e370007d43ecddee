"""The guard: ``canary_guard`` puts canaries that no live run owns back on stable, and never touches
a live run that makes progress.

First the verdict as a table, then the DAG, then one sweep against the demo stack's real HAProxy.
"""

from __future__ import annotations

import shutil
import time
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from canary_operators import safety
from canary_operators.dag_factory import GUARD_DAG_ID, build_dags, guard_schedule
from canary_operators.guard import guard_verdict
from canary_operators.spec import parse_spec
from canary_operators.status import ReleaseStatus, read_status, write_status
from tests.conftest import ROOT, set_connection
from tests.fakes import FakeTI, fake_context

NOW = 100_000.0
STALE_AFTER = 140.0  # the release's silence limit


def record(phase: str, run_id: str | None = "ci__v2", silent: float = 5.0) -> ReleaseStatus:
    return ReleaseStatus(release="web", phase=phase, run_id=run_id, dag_id="canary_web" if run_id else None,
                         version="v2", stable_version="v1", updated_at=NOW - silent)


# -- guard_verdict: the decision, as a table -----------------------------------------------------

ACT = True
LEAVE = False
VERDICTS = [
    # phase,              owner,    weight, owner's state, silent for, verdict
    ("promoted",          "ci__v2", 0,   "success", 5,      LEAVE),  # promoted: nothing is canary any more
    ("promoted",          "ci__v2", 100, None,      10_000, LEAVE),  # a native router may read 100% after promotion
    ("idle",              None,     0,   None,      10_000, LEAVE),  # never released
    ("rolled_back",       "ci__v2", 0,   "failed",  10_000, LEAVE),  # closed and at 0%: nothing to do
    ("idle",              "ci__v2", 0,   "success", 10_000, LEAVE),  # preflight took it, then the run was skipped
    ("gating",            "ci__v2", 0,   "running", 5,      LEAVE),  # gating at 0% (a skipped step): live
    ("rolling_back",      "ci__v2", 0,   "running", 141,    ACT),    # the gate reset it, then the DAG was paused: no undo comes
    ("gating",            "ci__v2", 0,   "running", 141,    ACT),    # ... or any mid-way record silent at 0%
    ("rolling_back",      "ci__v2", 0,   "running", 140,    LEAVE),  # at the limit, not past it
    ("gating",            "ci__v2", 0,   "failed",  5,      ACT),    # 0%, but the record says mid-way: close it
    ("shifting",          "ci__v2", 0,   None,      5,      ACT),    # ... also when the run was deleted
    ("awaiting_approval", "ci__v2", 0,   "success", 5,      ACT),    # ... and when it was marked success by hand
    ("idle",              None,     10,  None,      10_000, ACT),    # a canary at 10% that no run owns
    ("gating",            "ci__v2", 10,  "failed",  5,      ACT),    # marked failed while its gate waited
    ("gating",            "ci__v2", 10,  "success", 5,      ACT),    # marked success: that is not a promotion
    ("gating",            "ci__v2", 10,  None,      5,      ACT),    # deleted
    ("unsafe",            "ci__v2", 10,  "failed",  5,      ACT),    # the undo gave up: the guard keeps trying
    ("rolled_back",       "ci__v2", 25,  "failed",  5,      ACT),    # recorded as rolled back, yet traffic is on the canary
    ("gating",            "ci__v2", 10,  "running", 141,    ACT),    # running but silent past stale_after: paused, stuck
    ("awaiting_approval", "ci__v2", 50,  "queued",  10_000, ACT),    # queued for ever counts as stuck too
    ("gating",            "ci__v2", 10,  "running", 140,    LEAVE),  # at the limit, not past it
    ("gating",            "ci__v2", 10,  "running", 5,      LEAVE),  # live and making progress
    ("awaiting_approval", "ci__v2", 50,  "running", 5,      LEAVE),
    ("promoting",         "ci__v2", 50,  "running", 5,      LEAVE),
    ("shifting",          "ci__v2", 25,  "running", 5,      LEAVE),
    ("deploying",         "ci__v2", 10,  "queued",  5,      LEAVE),  # queued for a retry, within the limit
    ("rolling_back",      "ci__v2", 10,  "running", 5,      LEAVE),  # its own undo is at work
]


@pytest.mark.parametrize("phase, owner, weight, owner_state, silent, act", VERDICTS,
                         ids=[f"{r[0]}-{r[2]}%-{r[3]}-{r[4]}s" for r in VERDICTS])
def test_guard_verdict(phase, owner, weight, owner_state, silent, act):
    verdict = guard_verdict(record(phase, owner, silent), weight, owner_state, NOW, STALE_AFTER)
    assert verdict.act is act, verdict.reason
    # Every acting reason says who acted, so the status record and the report can tell.
    assert verdict.reason.startswith("guard:") is act, verdict.reason


@pytest.mark.parametrize("phase, weight", [("gating", 0), ("gating", 10), ("shifting", 25), ("rolling_back", 0)])
def test_a_stopped_run_whose_write_raced_the_guard_is_closed_again(phase, weight):
    """The run's last heartbeat overwrote the guard's rolled_back; it still heartbeats, so the
    record is never stale. The stop marker is what the next sweep acts on."""
    verdict = guard_verdict(record(phase, "ci__v2", 1.0), weight, "running", NOW, STALE_AFTER, stopped_run="ci__v2")
    assert verdict.act and "was stopped by the guard" in verdict.reason, verdict.reason
    # Another run's marker changes nothing for a live run making progress.
    assert not guard_verdict(record(phase, "ci__v3", 1.0), weight, "running", NOW, STALE_AFTER, stopped_run="ci__v2").act


def test_a_silent_record_at_zero_whose_stable_slot_holds_the_new_version_is_left_to_its_undo():
    """Traffic is all on the stable slot, which a partial promote gave v2: only the run's undo knows
    to put v1 back, so the guard must not close the record and hide that."""
    half_promoted = record("promoting", "ci__v2", 10_000).model_copy(update={"promote_done": ("stable_slot",)})
    assert not guard_verdict(half_promoted, 0, "running", NOW, STALE_AFTER).act


def test_guard_reasons_say_what_was_wrong():
    def reason(status, weight, state):
        return guard_verdict(status, weight, state, NOW, STALE_AFTER).reason

    assert reason(record("idle", None), 10, None) == "guard: canary at 10% and no run owns the release"
    assert reason(record("gating"), 10, "failed") == "guard: canary at 10% but its run ci__v2 is failed"
    assert reason(record("gating"), 10, None) == "guard: canary at 10% but its run ci__v2 is gone (deleted)"
    assert reason(record("gating", silent=600), 10, "running") == (
        "guard: canary at 10% and its run ci__v2 has made no progress for 600s (limit 140s): "
        "paused, stuck, or no triggerer running")
    assert reason(record("gating"), 0, None) == (
        "guard: run ci__v2 is gone and left the release gating; the canary is at 0%, the record is closed")


def test_live_runs_with_progress_are_never_touched_in_any_mid_way_phase():
    for phase in ("idle", "deploying", "shifting", "gating", "awaiting_approval", "promoting", "rolling_back"):
        for weight in (0, 1, 10, 50, 99):
            for state in ("running", "queued"):
                assert not guard_verdict(record(phase, silent=STALE_AFTER), weight, state, NOW, STALE_AFTER).act


# -- the schedule and the DAG --------------------------------------------------------------------


@pytest.mark.parametrize("value, schedule", [
    (None, "* * * * *"),
    ("", "* * * * *"),
    ("  ", "* * * * *"),
    ("30s", timedelta(seconds=30)),
    ("2m", timedelta(minutes=2)),
    ("*/5 * * * *", "*/5 * * * *"),
    ("@hourly", "@hourly"),
])
def test_guard_schedule(value, schedule):
    assert guard_schedule(value) == schedule


def releases_with_a_broken_spec(tmp_path: Path) -> Path:
    for name in ("web.yaml", "demo.yaml"):
        shutil.copy(ROOT / "include" / "releases" / name, tmp_path)
    (tmp_path / "broken.yaml").write_text("name: broken\nrouter: {type: haproxy}\n")  # no metrics
    return tmp_path


def test_the_guard_dag_maps_one_reconcile_task_per_spec_file_broken_ones_too(tmp_path, monkeypatch):
    monkeypatch.delenv("CANARY_GUARD_SCHEDULE", raising=False)
    dags = build_dags(releases_with_a_broken_spec(tmp_path))

    assert set(dags) == {"canary_web", "canary_demo", GUARD_DAG_ID, "canary_broken"}  # the broken spec's placeholder
    assert "invalid-spec" in dags["canary_broken"].tags
    guard = dags[GUARD_DAG_ID]
    assert guard.max_active_runs == 1  # safe to run twice, never at once
    assert guard.is_paused_upon_creation is False  # a guard that starts paused guards nothing
    assert guard.catchup is False
    assert guard.schedule == "* * * * *"
    assert guard.task_ids == ["reconcile"]
    reconcile = guard.get_task("reconcile")
    assert type(reconcile).__name__ == "MappedOperator"
    assert reconcile.expand_input.value == [
        {"release_name": "broken", "spec_path": str(tmp_path / "broken.yaml")},  # guarded by its recorded spec
        {"release_name": "demo", "spec_path": str(tmp_path / "demo.yaml")},
        {"release_name": "web", "spec_path": str(tmp_path / "web.yaml")},
    ]


def test_the_guard_schedule_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CANARY_GUARD_SCHEDULE", "30s")
    assert build_dags(releases_with_a_broken_spec(tmp_path))[GUARD_DAG_ID].schedule == timedelta(seconds=30)


def test_the_guard_covers_every_spec_of_the_project(monkeypatch):
    monkeypatch.delenv("CANARY_RELEASES_DIR", raising=False)
    from canary_operators.spec import load_spec
    from canary_operators.spec.targets import release_names

    names = sorted(n for p in (ROOT / "include" / "releases").glob("*.yaml") for n in release_names(load_spec(p)))
    reconcile = build_dags()[GUARD_DAG_ID].get_task("reconcile")
    assert [kwargs["release_name"] for kwargs in reconcile.expand_input.value] == names


def test_a_guard_task_parses_only_the_guard(tmp_path):
    assert set(build_dags(releases_with_a_broken_spec(tmp_path), only_dag_id=GUARD_DAG_ID)) == {GUARD_DAG_ID}
    assert set(build_dags(releases_with_a_broken_spec(tmp_path), only_dag_id="canary_web")) == {"canary_web"}


def mapped(dag) -> list[dict]:
    return dag.get_task("reconcile").expand_input.value


def test_a_guard_task_run_maps_the_same_tasks_without_reading_any_spec_in_full(tmp_path, monkeypatch):
    """The guard's task run lists the releases from the files (no spec loaded and validated, so it
    stays cheap with 1,000 specs) and gets the mapped tasks the full parse scheduled, broken files,
    several targets, and a broken spec with targets (guarded per target, by their records) too."""
    releases = releases_with_a_broken_spec(tmp_path)
    shutil.copy(ROOT / "include" / "releases" / "web-regions.yaml", releases)
    broken_targets = (ROOT / "include" / "releases" / "shop-lockstep.yaml").read_text().replace("steps:", "steps: [1, 200]\nold_steps:", 1)
    (releases / "shop-lockstep.yaml").write_text(broken_targets)
    (releases / "garbled.yaml").write_text("targets: [{name: eu}, {name: eu}\n")  # not even YAML: its name
    full = build_dags(releases)
    assert "invalid-spec" in full["canary_shop-lockstep"].tags and "invalid-spec" in full["canary_garbled"].tags

    import canary_operators.dag_factory as dag_factory

    def no_loading(path):
        raise AssertionError(f"the guard's task run loaded {path}")

    monkeypatch.setattr(dag_factory, "load_spec", no_loading)
    guard_only = build_dags(releases, only_dag_id=GUARD_DAG_ID)
    assert mapped(guard_only[GUARD_DAG_ID]) == mapped(full[GUARD_DAG_ID])
    assert [kwargs["release_name"] for kwargs in mapped(full[GUARD_DAG_ID])] == [
        "broken", "demo", "garbled", "shop-lockstep__blue", "shop-lockstep__green", "web", "web-regions__eu", "web-regions__us"]


# -- one sweep against the demo stack's real HAProxy ----------------------------------------------

RUN = "ci__v2__2026-11-30"
SPEC = {
    "name": "t_guard",
    "stable_version": "v1",
    "router": {"type": "haproxy", "conn_id": "t_haproxy", "settings": {"backend": "app"}},
    "metrics": {"type": "prometheus", "conn_id": "t_prometheus", "settings": {"labels": {"job": "demo"}}},
    "steps": [10, 50, 100],
    "bake_time": "5s",
    "settle_time": "1s",
    "gate_timeout": "40s",
    "promote": {"type": "webhook", "conn_id": "t_stable_admin", "endpoint": "/admin/deploy"},
}


def haproxy_canary_weight(stack) -> int:
    """The canary's share as HAProxy itself reports it."""
    stable = int(stack.haproxy_command("get weight app/stable").split()[0])
    canary = int(stack.haproxy_command("get weight app/canary").split()[0])
    return round(canary * 100 / (stable + canary))


@pytest.fixture
def canary_at_10(demo_stack, in_task, monkeypatch, tmp_path):
    """HAProxy at 90/10 and a status record that says run RUN put the canary there and is gating."""
    host, admin_port = demo_stack.admin_address
    set_connection(monkeypatch, "t_haproxy", conn_type="generic", host=host, port=admin_port)
    (tmp_path / "t_guard.yaml").write_text(yaml.safe_dump(SPEC))
    demo_stack.haproxy_command("set server app/stable weight 90")
    demo_stack.haproxy_command("set server app/canary weight 10")
    write_status(ReleaseStatus(release="t_guard", phase="gating", run_id=RUN, dag_id="canary_t_guard", version="v2",
                               stable_version="v1", weight=10, decision="shift_to_10: canary at 10% (read back)"))
    hooks: list[tuple[str, str]] = []
    monkeypatch.setattr(safety, "FAILURE_HOOKS", [lambda release, message: hooks.append((release, message))])
    yield {"spec_path": str(tmp_path / "t_guard.yaml"), "hooks": hooks}
    demo_stack.haproxy_command("set server app/stable weight 100")
    demo_stack.haproxy_command("set server app/canary weight 0")


def sweep(spec_path: str, runs: dict[str, str]) -> dict:
    from canary_operators.operators.guard_release import GuardRelease

    guard = GuardRelease(task_id="reconcile", release_name="t_guard", spec_path=spec_path)
    return guard.execute(fake_context("scheduled__guard", FakeTI(runs=runs)))


def test_a_spec_broken_mid_release_is_guarded_by_the_spec_its_run_recorded(demo_stack, canary_at_10):
    """Someone breaks the file while its canary serves: the release DAG becomes a placeholder, so
    the guard is all that is left, and it works from the spec the run recorded at preflight."""
    recorded = parse_spec(SPEC, "t_guard.yaml").model_dump(mode="json")
    write_status(read_status("t_guard").advance(spec=recorded))
    Path(canary_at_10["spec_path"]).write_text("name: t_guard\nsteps: [5, 120, 100]\n")

    result = sweep(canary_at_10["spec_path"], {RUN: "failed"})

    assert result["acted"] is True and haproxy_canary_weight(demo_stack) == 0
    assert read_status("t_guard").phase == "rolled_back"


def test_a_broken_spec_without_a_recorded_spec_is_reported_not_guessed(demo_stack, canary_at_10):
    Path(canary_at_10["spec_path"]).write_text("name: t_guard\nsteps: [5, 120, 100]\n")

    result = sweep(canary_at_10["spec_path"], {RUN: "failed"})

    assert result == {"release": "t_guard", "acted": False, "reason": "spec broken and no recorded spec"}
    assert haproxy_canary_weight(demo_stack) == 10


@pytest.mark.parametrize("runs, why", [
    ({RUN: "failed"}, f"guard: canary at 10% but its run {RUN} is failed"),
    ({}, f"guard: canary at 10% but its run {RUN} is gone (deleted)"),
], ids=["owner-failed", "owner-deleted"])
def test_the_guard_puts_an_orphaned_canary_back_on_stable(demo_stack, canary_at_10, runs, why):
    assert haproxy_canary_weight(demo_stack) == 10

    result = sweep(canary_at_10["spec_path"], runs)

    assert haproxy_canary_weight(demo_stack) == 0
    assert result == {"release": "t_guard", "acted": True, "weight": 0, "reason": why}
    closed = read_status("t_guard")
    assert (closed.phase, closed.weight, closed.decision) == ("rolled_back", 0, why)
    assert closed.run_id == RUN  # the record still says whose release it was
    assert canary_at_10["hooks"] == [("t_guard", f"{why}; canary now at 0% (read back)")]

    # Safe to run twice: the next sweep finds nothing to do and says nothing.
    again = sweep(canary_at_10["spec_path"], runs)
    assert again["acted"] is False and haproxy_canary_weight(demo_stack) == 0
    assert read_status("t_guard") == closed
    assert len(canary_at_10["hooks"]) == 1


def test_the_guard_puts_back_a_canary_whose_live_run_went_silent(demo_stack, canary_at_10):
    write_status(read_status("t_guard").model_copy(update={"updated_at": time.time() - 600}))  # paused ten minutes ago
    result = sweep(canary_at_10["spec_path"], {RUN: "running"})
    assert result["acted"] is True and result["reason"].startswith(f"guard: canary at 10% and its run {RUN} has made no progress")
    assert haproxy_canary_weight(demo_stack) == 0
    assert read_status("t_guard").phase == "rolled_back"


def test_the_guard_leaves_a_live_run_that_makes_progress(demo_stack, canary_at_10):
    before = read_status("t_guard")
    result = sweep(canary_at_10["spec_path"], {RUN: "running"})
    assert result["acted"] is False and result["weight"] == 10
    assert haproxy_canary_weight(demo_stack) == 10
    assert read_status("t_guard") == before  # not even a write
    assert canary_at_10["hooks"] == []


# -- the owner's state: a deleted run is not an API blip ------------------------------------------


class _TI:
    def __init__(self, error: Exception):
        self.error = error

    def get_dagrun_state(self, dag_id, run_id):
        raise self.error


def _server_error(status: int) -> Exception:
    """The error the execution API client raises in-process (``dag.test()``, ``airflow dags test``)."""
    import httpx
    from airflow.sdk.api.client import ServerResponseError

    request = httpx.Request("GET", f"http://in-process.invalid./dag-runs/canary_web/{RUN}/state")
    detail = {"detail": {"reason": "not_found", "message": f"Dag run with dag_id 'canary_web' and run_id '{RUN}' was not found"}}
    return ServerResponseError.from_response(httpx.Response(status, json=detail if status == 404 else {"detail": "boom"},
                                                            request=request))


def test_owner_state_of_a_deleted_run_is_none_in_a_worker_and_in_process():
    from canary_operators.operators.guard_release import owner_state
    from tests.fakes import run_not_found

    assert owner_state({"ti": _TI(run_not_found("canary_web", RUN))}, "canary_web", RUN) is None
    assert owner_state({"ti": _TI(_server_error(404))}, "canary_web", RUN) is None
    assert owner_state({"ti": FakeTI(runs={RUN: "running"})}, "canary_web", RUN) == "running"
    assert owner_state({"ti": FakeTI()}, None, None) is None


def test_owner_state_does_not_take_an_api_blip_for_a_deleted_run():
    from canary_operators.operators.guard_release import owner_state

    with pytest.raises(Exception):
        owner_state({"ti": _TI(_server_error(503))}, "canary_web", RUN)
    with pytest.raises(ConnectionError):
        owner_state({"ti": _TI(ConnectionError("execution API unreachable"))}, "canary_web", RUN)
