"""End to end through REAL Airflow services: api-server, scheduler, dag-processor and triggerer.

Airflow starts once for this module (see ``tests/airflow_services.py``) with a private
AIRFLOW_HOME on SQLite, the repo's ``dags/`` and ``plugins/``, and one release spec (``e2e``)
for the demo stack (HAProxy + Prometheus + two demo services under steady load). The tests
talk to it only the way users do: the CI client (``include/ci/trigger_release.py``) and the
REST API v2. Traffic is read back from HAProxy itself.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
import yaml

from tests.airflow_services import AirflowServices, ReleaseApi
from tests.conftest import ADMIN_TOKEN, free_port, load_module, wait_until

RELEASE = "e2e"
DAG_ID = f"canary_{RELEASE}"
STABLE_VARIABLE = f"canary_stable_version__{RELEASE}"  # where Promote records the stable version
FINISHED = ("success", "failed")
OPTIONS = ["Promote", "Roll back", "Hold a bit longer"]

# Connection ids of the spec; their URIs point at the demo stack's ports.
HAPROXY, PROMETHEUS, CANARY_ADMIN, STABLE_ADMIN = "e2e_haproxy", "e2e_prometheus", "e2e_canary_admin", "e2e_stable_admin"

SPEC = {
    "name": RELEASE,
    "description": "End-to-end test release on the demo stack.",
    "stable_version": "v1",
    "router": {"type": "haproxy", "conn_id": HAPROXY, "settings": {"backend": "app"}},
    "metrics": {"type": "prometheus", "conn_id": PROMETHEUS, "settings": {"labels": {"job": "demo"}}},
    "steps": [10, 100],
    "bake_time": "5s",
    "settle_time": "1s",
    "gate_timeout": "60s",
    "poke_interval": "1s",
    "retries": 0,
    # Tolerant on purpose: a healthy build must pass in one bake, 30% 5xx must fail at once.
    # min_requests 100 (not 50): a pass needs ~120 canary requests anyway (4 s at 30 req/s), and
    # it keeps the broken build's rollback >= 4 s after the shift, clear of an Airflow 3.3.2 race
    # that fails a deferred task whose trigger fires before the scheduler has seen it defer
    # (see AirflowServices.wait_parked).
    "checks": [{"name": "errors", "kind": "error_rate", "max_increase_pp": 5, "min_requests": 100}],
    # sample_ratio is on: HAProxy must really send 10% to the canary. A wrong split must last 10 s
    # here (30 s by default), to keep the approval watch's routing test short.
    "sample_ratio": {"confirm_seconds": "10s"},
    "deploy": {"type": "webhook", "conn_id": CANARY_ADMIN, "endpoint": "/admin/deploy"},
    "promote": {"type": "webhook", "conn_id": STABLE_ADMIN, "endpoint": "/admin/deploy"},
    # Optional approval: the CI runs go without it, the approval tests ask with {"approval": true}.
    # Only the admin may answer; "ci" (an admin too, the CI client's kind of user) may not.
    "approval": {"before": [100], "timeout": "2m", "hold": "5s", "required": False, "approvers": ["admin"]},
}
APPROVER, NOT_APPROVER = "admin", "ci"


def test_fast_settings_are_real_airflow_options():
    """Airflow ignores an unknown AIRFLOW__SECTION__KEY without a word: check every one we set."""
    import importlib.util

    from tests.airflow_services import fast_settings

    config_yml = Path(importlib.util.find_spec("airflow").origin).parent / "config_templates" / "config.yml"
    sections = yaml.safe_load(config_yml.read_text())
    unknown = []
    for name in fast_settings(8080):
        if not name.startswith("AIRFLOW__"):
            continue
        section, key = name.removeprefix("AIRFLOW__").lower().split("__", 1)
        if key not in (sections.get(section) or {}).get("options", {}):
            unknown.append(name)
    assert not unknown, f"not options of the installed Airflow: {unknown}"


# ---------------------------------------------------------------------------------------------
# Airflow, once for the module


@pytest.fixture(scope="module")
def airflow(demo_stack, tmp_path_factory):
    """The four Airflow services, the DAG parsed; stopped (process group and task processes) at the end."""
    releases = tmp_path_factory.mktemp("releases")
    (releases / f"{RELEASE}.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
    host, admin_port = demo_stack.admin_address
    connections = {
        HAPROXY: {"conn_type": "generic", "host": host, "port": admin_port},
        PROMETHEUS: {"conn_type": "http", "host": "127.0.0.1", "port": demo_stack.prometheus_port},
        CANARY_ADMIN: {"conn_type": "http", "host": "127.0.0.1", "port": demo_stack.canary_port, "password": ADMIN_TOKEN},
        STABLE_ADMIN: {"conn_type": "http", "host": "127.0.0.1", "port": demo_stack.stable_port, "password": ADMIN_TOKEN},
    }
    env = {"CANARY_RELEASES_DIR": str(releases),
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{APPROVER}:admin,{NOT_APPROVER}:admin"}
    # Nothing here tests the guard (tests/test_safety_faults.py does): a sweep a minute would only
    # spend the suite's CPU on task processes.
    env["CANARY_GUARD_SCHEDULE"] = "1h"
    env.update({f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(fields) for conn_id, fields in connections.items()})
    services = AirflowServices(tmp_path_factory.mktemp("airflow-home"), api_port=free_port(), extra_env=env)
    services.start(timeout=180)  # raises with the tail of every component's log
    try:
        services.wait_for_dag(DAG_ID, timeout=120)
        yield services
    finally:
        services.stop()


@pytest.fixture(scope="module")
def api(airflow):
    return ReleaseApi(airflow, DAG_ID)


# ---------------------------------------------------------------------------------------------
# The demo stack, reset before each release


def canary_weight(stack) -> int:
    stable = int(stack.haproxy_command("get weight app/stable").split()[0])
    canary = int(stack.haproxy_command("get weight app/canary").split()[0])
    return round(canary * 100 / (stable + canary))


def version_of(url: str) -> str:
    return requests.get(url + "/version", timeout=2).json()["version"]


def deploy(url: str, version: str) -> None:
    requests.post(url + "/admin/deploy", json={"version": version},
                  headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=2).raise_for_status()


def reset(stack, api: ReleaseApi, unpause: bool = True) -> None:
    """No unfinished run; stable v1 with all traffic, canary v1 with none; no recorded promotion."""
    runs = api.get(f"/dags/{DAG_ID}/dagRuns", params={"limit": 100})["dag_runs"]
    for run in runs:
        if run["state"] not in FINISHED:  # left over by a failed test: it must not block the next runs
            api.request("PATCH", f"/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}", json={"state": "failed"})
    stack.haproxy_command("set server app/stable weight 100")
    stack.haproxy_command("set server app/canary weight 0")
    deploy(stack.stable_url, "v1")
    deploy(stack.canary_url, "v1")
    api.request("DELETE", f"/variables/{STABLE_VARIABLE}", ok=(204, 404))
    if unpause:
        api.request("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})


@pytest.fixture
def stack(demo_stack, api):
    reset(demo_stack, api)
    return demo_stack


# ---------------------------------------------------------------------------------------------
# The CI client


@pytest.fixture(scope="module")
def client():
    return load_module("include/ci/trigger_release.py", "trigger_release_e2e")


def run_client(client, airflow, *args: str) -> tuple[int, list[str]]:
    lines: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_API_URL", airflow.url)
        mp.setenv("AIRFLOW_USERNAME", "admin")
        mp.setenv("AIRFLOW_PASSWORD", airflow.admin_password)
        for name in ("GITHUB_SHA", "CI_COMMIT_SHA"):
            mp.delenv(name, raising=False)
        code = client.main(["--dag", DAG_ID, "--poll", "1", "--timeout", "240", *args], out=lines.append)
    # one printed item may hold several lines (a gate's verdict and its checks)
    return code, "\n".join(lines).splitlines()


def problems(airflow: AirflowServices, run_id: str, task_id: str) -> str:
    """The warnings and errors of a task's log (every try), for failure messages."""
    found = []
    for try_number in (1, 2, 3):
        log = airflow.task_log(DAG_ID, run_id, task_id, try_number)
        found += [f"[try {try_number}] {line[:1500]}" for line in log.splitlines()
                  if line.startswith(("error", "critical", "warning")) and "DeprecationWarning" not in line]
    return "\n".join(found) or "(no warnings or errors in the log)"


def line_with(lines: list[str], *parts: str) -> str:
    found = [line for line in lines if all(p in line for p in parts)]
    assert found, f"no line with {parts!r} in:\n" + "\n".join(lines)
    return found[0]


@pytest.fixture(scope="module")
def promoted_by_ci(airflow, api, demo_stack, client):
    """One release of v2 through the CI client, starting from a paused DAG, then the same CI job
    once more: (exit code, lines, run id, (exit code, lines, runs started) of the re-run)."""
    reset(demo_stack, api, unpause=False)
    api.request("PATCH", f"/dags/{DAG_ID}", json={"is_paused": True})  # as after the first deploy of the DAG
    commit = "3f2a9c41d07be5a1c2d3e4f5a6b7c8d9e0f1a2b3"
    code, lines = run_client(client, airflow, "--version", "v2", "--commit", commit)
    # The same CI job again (a re-run): it follows the same release instead of starting another.
    runs_before = api.get(f"/dags/{DAG_ID}/dagRuns")["total_entries"]
    again = run_client(client, airflow, "--version", "v2", "--commit", commit)
    again_started = api.get(f"/dags/{DAG_ID}/dagRuns")["total_entries"] - runs_before
    return code, lines, f"ci__v2__{commit[:12]}", (*again, again_started)


def test_ci_client_promotes_a_healthy_version(promoted_by_ci, api, demo_stack):
    code, lines, run_id, again = promoted_by_ci
    assert code == 0, "\n".join(lines) + api.mismatches(run_id)
    assert f"unpaused {DAG_ID}" in lines
    assert api.get(f"/dags/{DAG_ID}")["is_paused"] is False
    line_with(lines, f"triggered {DAG_ID} run {run_id}", '"version": "v2"')
    assert "shift_to_10: canary now takes 10% of traffic" in lines
    gate = line_with(lines, "gate_10: PASSED:")
    assert len(gate) > len("gate_10: PASSED: "), "the verdict carries the judge's reason"
    line_with(lines, "[errors] pass:", "error rate")
    line_with(lines, "[sample_ratio] pass:")
    assert "approve_100: success" in lines  # approval is optional in this spec and not asked for
    assert "promote: success" in lines and "complete_rollout: success" in lines
    assert "rollback: nothing to undo, the release was promoted" in lines  # the undo (a teardown) always runs
    assert lines[-1] == "PROMOTED v2"
    assert api.run(run_id)["state"] == "success"
    # The promote webhook moved v2 into the stable slot; the canary slot is back to 0%.
    assert canary_weight(demo_stack) == 0
    assert version_of(demo_stack.stable_url) == "v2"
    assert api.get(f"/variables/{STABLE_VARIABLE}")["value"] == "v2"
    # The re-run of the CI job found the run and reported the same outcome.
    assert again[0] == 0, again[1]
    assert f"run {run_id} already exists; following it" in again[1] and again[1][-1] == "PROMOTED v2", again[1]
    assert again[2] == 0, "the re-run started another run"


def test_gates_wait_deferred_in_the_triggerer(promoted_by_ci, api, airflow):
    code, lines, run_id, _ = promoted_by_ci
    assert "gate_10: deferred" in lines, "\n".join(lines)  # seen through the REST API while the run went on
    # The gate's log, as the API serves it, tells the same story: the task deferred, the trigger
    # looked in the triggerer until the bake time was over, then the task resumed on a worker.
    log = airflow.task_log(DAG_ID, run_id, "gate_10")
    events = [line for line in log.splitlines() if any(k in line for k in ("DEFERRED", "trigger", "Trigger", "gate at 10%"))]
    shown = "\n".join(e[:300] for e in events) or log[-3000:]
    order = [log.find("Pausing task as DEFERRED"), log.find("gate_10/-1/1 (ID"), log.find("Trigger fired event"),
             log.find("gate at 10% passed after")]
    assert all(i >= 0 for i in order) and order == sorted(order), shown
    assert "in the triggerer" in log[order[3]:], shown


def test_ci_client_rolls_back_a_broken_version(stack, client, airflow, api):
    commit = uuid.uuid4().hex
    code, lines = run_client(client, airflow, "--version", "broken", "--commit", commit)
    assert code == 1, "\n".join(lines) + api.mismatches(f"ci__broken__{commit[:12]}")
    assert "shift_to_10: canary now takes 10% of traffic" in lines
    gate = line_with(lines, "gate_10: FAILED:")
    assert "error rate" in gate, gate
    line_with(lines, "[errors] fail:", "error rate")
    rollback = line_with(lines, "rollback: traffic back on stable. Why:")
    assert "gate_10" in rollback and "error rate" in rollback, rollback
    assert "promote: upstream_failed" in lines
    final = lines[-1]
    assert final.startswith("ROLLED BACK broken: ") and "gate_10" in final and "error rate" in final, final
    assert canary_weight(stack) == 0
    assert version_of(stack.stable_url) == "v1"


def test_approval_through_the_rest_api_promotes(stack, api):
    run_id = api.trigger({"version": "v2", "stable_version": "v1", "approval": True}).json()["dag_run_id"]
    state = api.wait_for_question(run_id)
    # While it waits, the canary still takes 10% of traffic.
    assert canary_weight(stack) == 10 and state in ("awaiting_input", "deferred")
    hitl = api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/approve_100/-1/hitlDetails")
    assert hitl["options"] == OPTIONS
    assert hitl["defaults"] == ["Roll back"]
    assert hitl["response_received"] is False
    assert "100%" in hitl["subject"]
    assert "| gate | check | verdict |" in hitl["body"], hitl["body"]
    assert "| gate_10 | errors | pass |" in hitl["body"], hitl["body"]
    answer = api.request("PATCH", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/approve_100/-1/hitlDetails",
                         json={"chosen_options": ["Promote"]})
    assert answer.json()["chosen_options"] == ["Promote"]
    run = api.wait_run(run_id)
    assert run["state"] == "success", f"{api.states(run_id)}{api.mismatches(run_id)}"
    states = api.states(run_id)
    assert states["approve_100"] == "success" and states["promote"] == "success" and states["rollback"] == "success"
    assert api.xcom(run_id, "rollback")["promoted"] is True  # the undo ran and found nothing to undo
    assert api.xcom(run_id, "approve_100")["approved"] == "Promote"
    assert canary_weight(stack) == 0
    assert version_of(stack.stable_url) == "v2"


def test_only_the_specs_approvers_may_answer(stack, api, airflow):
    """``approval.approvers`` becomes Airflow's ``assigned_users``: the API refuses anyone else
    (HTTP 403), even an admin who triggered the release, and the question stays open."""
    run_id = api.trigger({"version": "v2", "stable_version": "v1", "approval": True}).json()["dag_run_id"]
    api.wait_for_question(run_id)
    hitl_path = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/approve_100/-1/hitlDetails"
    assert api.get(hitl_path)["assigned_users"] == [{"id": APPROVER, "name": APPROVER}]
    password = json.loads(airflow.password_file.read_text())[NOT_APPROVER]
    token = requests.post(f"{airflow.url}/auth/token", json={"username": NOT_APPROVER, "password": password},
                          timeout=10).json()["access_token"]
    refused = requests.patch(f"{airflow.url}/api/v2{hitl_path}", json={"chosen_options": ["Promote"]},
                             headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert refused.status_code == 403, refused.text
    assert "not a respondent" in refused.json()["detail"], refused.text
    hitl = api.get(hitl_path)
    assert hitl["response_received"] is False and canary_weight(stack) == 10
    # The approver answers.
    api.request("PATCH", hitl_path, json={"chosen_options": ["Roll back"]})
    run = api.wait_run(run_id)
    assert run["state"] == "failed", f"{api.states(run_id)}{api.mismatches(run_id)}"
    assert f"by {APPROVER}" in api.xcom(run_id, "rollback")["reason"]
    assert canary_weight(stack) == 0


def test_approval_answered_roll_back_fails_the_run_with_traffic_on_stable(stack, api):
    run_id = api.trigger({"version": "v2", "stable_version": "v1", "approval": True}).json()["dag_run_id"]
    api.wait_for_question(run_id)
    api.request("PATCH", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/approve_100/-1/hitlDetails",
                json={"chosen_options": ["Roll back"]})
    run = api.wait_run(run_id)
    states = api.states(run_id)
    assert run["state"] == "failed", f"{states}{api.mismatches(run_id)}"
    assert states["approve_100"] == "failed" and states["rollback"] == "success", states
    assert states["promote"] == "upstream_failed", states
    reason = api.xcom(run_id, "rollback")["reason"]
    assert "approve_100" in reason and "rolled back before 100%" in reason, reason
    assert canary_weight(stack) == 0
    assert version_of(stack.stable_url) == "v1"


def test_approval_keeps_watching_and_rolls_back_when_a_check_fails(stack, api):
    """While nobody has answered, the checks keep running: here HAProxy is changed behind the
    release's back (60% to the canary), the sample-ratio check fails, traffic goes back to
    stable, and the question is answered "Roll back" by the watch itself."""
    run_id = api.trigger({"version": "v2", "stable_version": "v1", "approval": True}).json()["dag_run_id"]
    api.wait_for_question(run_id)
    assert canary_weight(stack) == 10
    stack.haproxy_command("set server app/stable weight 40")
    stack.haproxy_command("set server app/canary weight 60")
    t0 = time.monotonic()
    deadline = t0 + 60
    while canary_weight(stack) != 0:
        assert time.monotonic() < deadline, f"the canary still takes {canary_weight(stack)}% while approve_100 waits"
        time.sleep(0.2)
    print(f"approval watch: routing broken → canary at 0% in {time.monotonic() - t0:.1f}s")
    run = api.wait_run(run_id)
    states = api.states(run_id)
    assert run["state"] == "failed" and states["approve_100"] == "failed", f"{states}{api.mismatches(run_id)}"
    assert states["promote"] == "upstream_failed" and states["complete_rollout"] == "failed", states
    reason = api.xcom(run_id, "rollback")["reason"]
    assert "approve_100" in reason and "sample_ratio" in reason, reason
    hitl = api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/approve_100/-1/hitlDetails")
    assert hitl["response_received"] is True and hitl["chosen_options"] == ["Roll back"], hitl
    assert version_of(stack.stable_url) == "v1"


def test_approval_hold_asks_again_after_the_hold_time(stack, api, airflow):
    run_id = api.trigger({"version": "v2", "stable_version": "v1", "approval": True}).json()["dag_run_id"]
    api.wait_for_question(run_id)
    hitl_path = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/approve_100/-1/hitlDetails"
    api.request("PATCH", hitl_path, json={"chosen_options": ["Hold a bit longer"]})
    held_at = time.monotonic()
    # The spec's hold is 5 s: the task waits that long, then asks again with a fresh question.
    deadline = held_at + 60
    while True:
        hitl = api.get(hitl_path)
        state = api.states(run_id)["approve_100"]
        if state in ("awaiting_input", "deferred") and not hitl["response_received"]:
            break
        assert state not in FINISHED and time.monotonic() < deadline, (
            f"approve_100 is {state} after 'Hold a bit longer' instead of asking again; its log:\n"
            + problems(airflow, run_id, "approve_100"))
        time.sleep(0.5)
    assert time.monotonic() - held_at >= 4.5, "asked again before the hold time was over"
    assert canary_weight(stack) == 10  # held: the canary keeps its step meanwhile
    assert hitl["options"] == OPTIONS and "| gate | check | verdict |" in hitl["body"]
    # The held task resumed (one more executor event) and parked again (another one).
    api.wait_for_question(run_id, parks=3)
    api.request("PATCH", hitl_path, json={"chosen_options": ["Promote"]})
    run = api.wait_run(run_id)
    assert run["state"] == "success", f"{api.states(run_id)}{api.mismatches(run_id)}"
    assert api.xcom(run_id, "approve_100")["approved"] == "Promote"
    assert canary_weight(stack) == 0 and version_of(stack.stable_url) == "v2"


def test_bad_conf_is_refused_with_400_naming_the_field(stack, api, client, airflow):
    before = api.get(f"/dags/{DAG_ID}/dagRuns")["total_entries"]
    answer = api.trigger({"version": 'v2" or 1'}, ok=(400,))
    assert "version" in answer.json()["detail"], answer.text
    answer = api.trigger({"version": "v2", "steps": [5, 30, 100]}, ok=(400,))
    assert "steps" in answer.json()["detail"], answer.text
    # The CI client says so and exits 2.
    code, lines = run_client(client, airflow, "--version", "v2", "--conf", '{"steps": [5, 30, 100]}', "--commit", "abc123")
    assert code == 2, lines
    line_with(lines, "error:", "HTTP 400", "steps")
    code, lines = run_client(client, airflow, "--version", 'v2" or 1', "--commit", "abc123")
    assert code == 2, lines
    line_with(lines, "error:", "HTTP 400", "version")
    code, lines = run_client(client, airflow, "--version", "v2", "--conf", "[5, 100]", "--commit", "abc123")
    assert code == 2, lines
    line_with(lines, "error:", "--conf")
    assert api.get(f"/dags/{DAG_ID}/dagRuns")["total_entries"] == before  # nothing was started
    # Conf that fits the form's schema but not the release (steps out of order) is refused by
    # preflight: the run fails, no traffic moves, and for CI that is an error (2), not a rollback.
    code, lines = run_client(client, airflow, "--version", "v2", "--conf", '{"steps": [100, 10]}', "--commit", "def456")
    assert code == 2, lines
    assert "preflight: failed" in lines, lines
    line_with(lines, "rollback: nothing to undo")
    line_with(lines, "error: v2 was not released", "conf.steps")
    assert canary_weight(stack) == 0
    assert version_of(stack.canary_url) == "v1"  # nothing was deployed


def test_one_run_at_a_time_per_release(stack, api, client, airflow):
    assert api.get(f"/dags/{DAG_ID}/details")["max_active_runs"] == 1
    dry = {"version": "v2", "stable_version": "v1", "dry_run": True}
    first = api.trigger(dry).json()["dag_run_id"]
    # The second comes from the CI client, which must wait patiently while its run is queued.
    commit = uuid.uuid4().hex
    second = f"ci__v2__{commit[:12]}"
    result: dict = {}

    def ci_job():
        result["code"], result["lines"] = run_client(client, airflow, "--version", "v2", "--commit", commit,
                                                     "--conf", json.dumps({"stable_version": "v1", "dry_run": True}))

    job = threading.Thread(target=ci_job, daemon=True)
    job.start()
    api.wait_run(first, states=("running", *FINISHED), timeout=60)
    wait_until(lambda: api.request("GET", f"/dags/{DAG_ID}/dagRuns/{second}", ok=()).status_code == 200, 30, "the CI run")
    # While the first runs, the second waits in the queue and none of its tasks started.
    looks = 0
    while True:
        second_run, second_tis = api.run(second), api.tis(second)
        if api.run(first)["state"] != "running":  # the first was still running when the second was read
            break
        assert second_run["state"] == "queued", (second_run, api.states(first))
        assert all(ti["start_date"] is None for ti in second_tis.values()), second_tis
        looks += 1
        time.sleep(1)
    assert looks >= 3, "the first run was over too soon to tell"
    job.join(timeout=120)
    assert not job.is_alive(), "the CI client did not finish"
    first_run, second_run = api.run(first), api.run(second)
    assert first_run["state"] == "success" and second_run["state"] == "success", (api.states(first), api.states(second))
    assert second_run["start_date"] >= first_run["end_date"]
    assert result["code"] == 0, result["lines"]
    assert "shift_to_10: dry run, would set the canary to 10% of traffic" in result["lines"], result["lines"]
    line_with(result["lines"], "gate_10: DRY RUN, the gate would ")  # a dry run's gate looks once and reports
    assert result["lines"][-1] == "DRY RUN of v2 complete: no traffic moved, nothing promoted (see the gates above)"
    assert canary_weight(stack) == 0  # dry runs move no traffic
    assert version_of(stack.canary_url) == "v1"  # and deploy nothing
