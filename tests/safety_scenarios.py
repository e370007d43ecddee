"""Faults against the safety invariant, on real Airflow services, HAProxy and Prometheus.

Each scenario starts a release of the ``safety`` spec, injects one fault while a gate judges the
canary at 10%, and measures the time until HAProxy's own admin API reads the canary at 0%. The
router reaches HAProxy through ``TcpForwarder``, so a scenario can make the traffic API
unreachable while everything else keeps running.

``tests/test_safety_faults.py`` runs the quick ones and asserts their bounds;
``bench/safety.py`` runs all of them (also the minute-long outages) and prints the table that the
README's "When things fail" section quotes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml

from tests.airflow_services import FINISHED, AirflowServices, ReleaseApi, descendants

RELEASE = "safety"
DAG_ID = f"canary_{RELEASE}"
GUARD_DAG_ID = "canary_guard"
GUARD_EVERY = 5  # seconds between guard sweeps in these runs (CANARY_GUARD_SCHEDULE)
HAPROXY, PROMETHEUS, CANARY_ADMIN, STABLE_ADMIN = "safety_haproxy", "safety_prometheus", "safety_canary_admin", "safety_stable_admin"


def spec(**changes) -> dict:
    data = {
        "name": RELEASE,
        "description": "Fault-injection release on the demo stack.",
        "stable_version": "v1",
        "router": {"type": "haproxy", "conn_id": HAPROXY, "settings": {"backend": "app"}},
        "metrics": {"type": "prometheus", "conn_id": PROMETHEUS, "settings": {"labels": {"job": "demo"}}},
        "steps": [10, 100],
        "bake_time": "5s",
        "settle_time": "1s",
        "gate_timeout": "20s",  # a deferred gate nobody judges fails 20 s + 30 s margin after it deferred
        "poke_interval": "1s",
        "retries": 0,
        "retry_delay": "2s",
        "rollback_deadline": "120s",
        "stale_after": "20s",  # the guard's limit for a run that writes no progress
        "checks": [{"name": "errors", "kind": "error_rate", "max_increase_pp": 5, "min_requests": 100}],
        # sample_ratio is on (the default): a healthy canary must not be reset by it, whatever the
        # fault does to the scrapes (new series are counted from zero; a wrong split must last).
        "deploy": {"type": "webhook", "conn_id": CANARY_ADMIN, "endpoint": "/admin/deploy", "timeout": "5s"},
        "promote": {"type": "webhook", "conn_id": STABLE_ADMIN, "endpoint": "/admin/deploy", "timeout": "5s"},
    }
    data.update(changes)
    return data


class TcpForwarder:
    """127.0.0.1:port → target, stoppable: a traffic API that goes away and comes back."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> "TcpForwarder":
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Refuse new connections and cut the open ones."""
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._open = self._open, set()
        for s in [listener, *sockets]:
            if s is None:
                continue
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close(), upstream.close()
                    return
                self._open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass


@dataclass(frozen=True)
class Measured:
    case: str
    seconds_to_safe: float  # from the fault until HAProxy read the canary at 0%
    bound: float
    note: str = ""

    def line(self) -> str:
        return f"time-to-safe [{self.case}]: {self.seconds_to_safe:.1f}s (bound {self.bound:g}s) {self.note}".rstrip()


class SafetyLab:
    """Airflow (api-server, scheduler, dag-processor, triggerer) + the demo stack + a forwarder."""

    def __init__(self, services: AirflowServices, stack, forwarder: TcpForwarder):
        self.services = services
        self.stack = stack
        self.forwarder = forwarder
        self.api = ReleaseApi(services, DAG_ID)
        self.guard = ReleaseApi(services, GUARD_DAG_ID)

    # -- set-up ---------------------------------------------------------------------------------
    @classmethod
    def start(cls, stack, home: Path, releases: Path, extra_env: dict | None = None, spec_changes: dict | None = None):
        from tests.airflow_services import free_port

        forwarder = TcpForwarder(stack.admin_address).start()
        (releases / f"{RELEASE}.yaml").write_text(yaml.safe_dump(spec(**(spec_changes or {})), sort_keys=False))
        connections = {
            HAPROXY: {"conn_type": "generic", "host": "127.0.0.1", "port": forwarder.port},
            PROMETHEUS: {"conn_type": "http", "host": "127.0.0.1", "port": stack.prometheus_port},
            CANARY_ADMIN: {"conn_type": "http", "host": "127.0.0.1", "port": stack.canary_port, "password": stack.admin_token},
            STABLE_ADMIN: {"conn_type": "http", "host": "127.0.0.1", "port": stack.stable_port, "password": stack.admin_token},
        }
        env = {"CANARY_RELEASES_DIR": str(releases), "CANARY_GUARD_SCHEDULE": f"{GUARD_EVERY}s", **(extra_env or {})}
        env.update({f"AIRFLOW_CONN_{c.upper()}": json.dumps(fields) for c, fields in connections.items()})
        services = AirflowServices(home, api_port=free_port(), extra_env=env)
        services.start(timeout=180)
        try:
            services.wait_for_dag(DAG_ID, timeout=120)
            services.wait_for_dag(GUARD_DAG_ID, timeout=60)
        except BaseException:
            services.stop()
            forwarder.stop()
            raise
        return cls(services, stack, forwarder)

    def stop(self) -> None:
        self.services.stop()
        self.forwarder.stop()

    # -- observation ----------------------------------------------------------------------------
    def canary_weight(self) -> int:
        """Read from HAProxy's own admin API (not through the forwarder)."""
        stable = int(self.stack.haproxy_command("get weight app/stable").split()[0])
        canary = int(self.stack.haproxy_command("get weight app/canary").split()[0])
        return round(canary * 100 / (stable + canary))

    def version_of(self, url: str) -> str:
        return requests.get(url + "/version", timeout=2).json()["version"]

    def deploy(self, url: str, version: str) -> None:
        requests.post(url + "/admin/deploy", json={"version": version},
                      headers={"Authorization": f"Bearer {self.stack.admin_token}"}, timeout=2).raise_for_status()

    def pause_guard(self, timeout: float = 60) -> None:
        """Pause the guard and wait out a sweep already under way, which pausing does not stop."""
        self.guard.pause(True)
        deadline = time.monotonic() + timeout
        while self.guard.get(f"/dags/{GUARD_DAG_ID}/dagRuns",
                             params={"limit": 1, "state": ["queued", "running"]})["total_entries"]:
            assert time.monotonic() < deadline, "a guard sweep never finished after the pause"
            time.sleep(0.3)

    def guard_runs(self) -> int:
        return self.guard.get(f"/dags/{GUARD_DAG_ID}/dagRuns", params={"limit": 1})["total_entries"]

    def wait_safe(self, case: str, since: float, bound: float, note: str = "") -> Measured:
        """Poll HAProxy until the canary reads 0%; fail with the run's story past ``bound``."""
        while True:
            if self.canary_weight() == 0:
                return Measured(case, time.monotonic() - since, bound, note)
            if time.monotonic() - since > bound:
                raise AssertionError(f"[{case}] the canary still takes {self.canary_weight()}% of traffic "
                                     f"{bound:g}s after the fault; status record: {self.api.status()}\n"
                                     f"{self.services.log_tails(15)}")
            time.sleep(0.1)

    def wait_record(self, what: str, predicate, timeout: float = 30) -> dict:
        """The status record once ``predicate(record)`` holds: the guard and the undo write it just
        after they put traffic back, so a reader that saw 0% may be a moment early."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.api.status()
            if predicate(status):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"the status record never showed {what}: {status}")
            time.sleep(0.3)

    def mark(self, run_id: str, state: str) -> None:
        """Mark a run failed or success, as a user does in the UI or through the REST API."""
        self.api.request("PATCH", f"/dags/{DAG_ID}/dagRuns/{run_id}", json={"state": state})

    def task_state(self, run_id: str, task_id: str) -> str | None:
        return self.api.states(run_id).get(task_id)

    # -- releases -------------------------------------------------------------------------------
    def reset(self, guard: bool = True) -> None:
        """No unfinished run, stable v1 with all traffic, canary v1 with none, no record; the guard
        on, or paused for a scenario that proves the run's own undo (its sweeps are the suite's
        costliest task processes, and it could mask an undo that failed)."""
        self.api.pause(False)  # a paused DAG runs no teardown: unfinished runs would never end
        unfinished = [run["dag_run_id"] for run in self.api.get(f"/dags/{DAG_ID}/dagRuns", params={"limit": 100})["dag_runs"]
                      if run["state"] not in FINISHED]
        for run_id in unfinished:
            self.mark(run_id, "failed")
        for run_id in unfinished:
            self.api.wait_run(run_id, timeout=90)
        if self.services.stopped:
            raise AssertionError(f"components left stopped by an earlier scenario: {self.services.stopped}")
        self.stack.haproxy_command("set server app/stable weight 100")
        self.stack.haproxy_command("set server app/canary weight 0")
        self.deploy(self.stack.stable_url, "v1")
        self.deploy(self.stack.canary_url, "v1")
        for variable in (f"canary_status__{RELEASE}", f"canary_stable_version__{RELEASE}"):
            self.api.request("DELETE", f"/variables/{variable}", ok=(204, 404))
        self.api.pause(False)
        if guard:
            self.guard.pause(False)
        else:
            self.pause_guard()

    def start_release(self, version: str = "v2", conf: dict | None = None, gate_state: str = "deferred") -> str:
        """Trigger a run and wait until its gate judges the canary at 10%."""
        run_id = f"safety__{uuid.uuid4().hex[:10]}"
        self.api.trigger({"version": version, **(conf or {})}, run_id=run_id)
        self.api.wait_task(run_id, "gate_10", (gate_state,), timeout=90)
        deadline = time.monotonic() + 10
        while self.canary_weight() != 10:
            assert time.monotonic() < deadline, f"canary at {self.canary_weight()}% while gate_10 is {gate_state}"
            time.sleep(0.1)
        return run_id


# ---------------------------------------------------------------------------------------------
# The scenarios. Each asserts what the system must do and returns the measured time to safe.


def marked_failed(lab: SafetyLab) -> Measured:
    run_id = lab.start_release(conf={"bake_time": 18})
    t0 = time.monotonic()
    lab.mark(run_id, "failed")
    measured = lab.wait_safe("run marked failed", t0, 30)
    run = lab.api.wait_run(run_id, timeout=60)
    assert run["state"] == "failed", run
    assert lab.task_state(run_id, "rollback") == "success", lab.api.states(run_id)
    status = lab.wait_record("the undo", lambda r: r.get("phase") == "rolled_back")
    assert status["run_id"] == run_id and status["weight"] == 0, status
    assert lab.version_of(lab.stack.stable_url) == "v1"
    return measured


def marked_success(lab: SafetyLab, client) -> Measured:
    run_id = lab.start_release(conf={"bake_time": 18})
    t0 = time.monotonic()
    lab.mark(run_id, "success")
    measured = lab.wait_safe("run marked success", t0, 30)
    run = lab.api.wait_run(run_id, timeout=60)
    # Airflow sets the run's state after the teardowns, from complete_rollout: not promoted, so failed.
    assert run["state"] == "failed", run
    states = lab.api.states(run_id)
    assert states["rollback"] == "success" and states["complete_rollout"] == "failed", states
    status = lab.api.status()
    assert status["run_id"] == run_id and status["phase"] == "rolled_back", status
    assert lab.version_of(lab.stack.stable_url) == "v1"
    # The CI client reads the record, not the run's state: even told "success", it says not promoted.
    for told in ("success", run["state"]):
        lines: list[str] = []
        api = client.Airflow(lab.services.url, "admin", lab.services.admin_password)
        code = client.outcome(api, DAG_ID, run_id, "v2", told, out=lines.append)
        assert code == client.ROLLED_BACK, lines
        assert lines[-1].startswith("ROLLED BACK v2"), lines
        assert not any(line.startswith("PROMOTED") for line in lines), lines
    return measured


def paused(lab: SafetyLab) -> Measured:
    run_id = lab.start_release()  # bake 5 s: the gate passes, then nothing runs while paused
    t0 = time.monotonic()
    lab.api.pause(True)
    limit = 5 + 20 + 2 * GUARD_EVERY + 30  # bake + stale_after + two sweeps + a sweep's own run
    measured = lab.wait_safe("DAG paused", t0, limit)
    # When the gate reset the canary itself (it timed out) before the pause, no undo comes: the guard
    # closes the record once it is silent past stale_after (20 s), at its next sweep.
    status = lab.wait_record("the guard's reset", lambda r: r.get("phase") == "rolled_back",
                             timeout=20 + 2 * GUARD_EVERY + 30)
    assert status["decision"].startswith("guard:") and "no progress" in status["decision"], status
    # Unpaused, the run must not push the canary up again: promote refuses, the run fails.
    lab.api.pause(False)
    run = lab.api.wait_run(run_id, timeout=90)
    assert run["state"] == "failed", (run, lab.api.states(run_id))
    assert lab.canary_weight() == 0 and lab.version_of(lab.stack.stable_url) == "v1"
    return measured


def deleted(lab: SafetyLab) -> Measured:
    run_id = lab.start_release(conf={"bake_time": 18})
    t0 = time.monotonic()
    # Airflow refuses to delete a running run (409), and a run marked failed stays running until
    # its teardowns are done. So users mark it failed, then delete it as soon as Airflow lets them.
    lab.mark(run_id, "failed")
    deadline = time.monotonic() + 60
    # (500: SQLite is briefly locked by the scheduler; a production database would not say so.)
    while lab.api.request("DELETE", f"/dags/{DAG_ID}/dagRuns/{run_id}", ok=(204, 409, 500)).status_code != 204:
        assert time.monotonic() < deadline, "the run never became deletable"
        time.sleep(0.2)
    measured = lab.wait_safe("run deleted", t0, 30 + 2 * GUARD_EVERY)
    assert lab.api.request("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}", ok=()).status_code == 404
    # The release's record outlives the run: it still says what happened, and why.
    status = lab.api.status()
    assert status["run_id"] == run_id and status["phase"] == "rolled_back" and status["weight"] == 0, status
    return measured


def triggerer_stopped(lab: SafetyLab) -> Measured:
    run_id = lab.start_release(conf={"bake_time": 18})
    sweeps = lab.guard_runs()
    t0 = time.monotonic()
    lab.services.stop_component("triggerer")
    try:
        measured = lab.wait_safe("triggerer stopped for good", t0, 20 + 2 * GUARD_EVERY + 30)
        # The gate nobody judges fails at its timeout (20 s + 30 s), and says why.
        run = lab.api.wait_run(run_id, timeout=120)
        assert run["state"] == "failed", run
        reason = (lab.api.xcom(run_id, "rollback") or {}).get("reason", "")
        assert "timed out in the triggerer" in reason, reason
        assert lab.guard_runs() > sweeps
    finally:
        lab.services.start_component("triggerer")
        lab.services.wait_healthy(90)
    return measured


def cleared_and_rerun(lab: SafetyLab) -> Measured:
    run_id = lab.start_release(version="broken")
    run = lab.api.wait_run(run_id, timeout=90)
    assert run["state"] == "failed" and lab.canary_weight() == 0
    lab.api.request("POST", f"/dags/{DAG_ID}/clearTaskInstances",
                    json={"dry_run": False, "dag_run_id": run_id, "only_failed": False, "reset_dag_runs": True})
    lab.api.wait_task(run_id, "gate_10", ("deferred", "running", "failed"), timeout=90)
    t0 = time.monotonic()
    run = lab.api.wait_run(run_id, states=("failed", "success"), timeout=120)
    measured = lab.wait_safe("rolled-back run cleared and run again", t0, 30)
    assert run["state"] == "failed", (run, lab.api.states(run_id))
    status = lab.api.status()
    assert status["run_id"] == run_id and status["phase"] == "rolled_back", status
    rollback = lab.api.xcom(run_id, "rollback") or {}
    assert rollback.get("traffic_changed") is True and "gate_10" in rollback.get("reason", ""), rollback
    return measured


def second_release_refused(lab: SafetyLab, client) -> Measured:
    """A canary left at 10% (here by hand): preflight refuses and nothing moves; the guard
    resets it; ``force_reset`` starts the release anyway."""
    lab.pause_guard()
    lab.stack.haproxy_command("set server app/stable weight 90")
    lab.stack.haproxy_command("set server app/canary weight 10")
    lines: list[str] = []
    with _client_env(lab):
        code = client.main(["--dag", DAG_ID, "--version", "v2", "--commit", uuid.uuid4().hex, "--poll", "1",
                            "--timeout", "120"], out=lines.append)
    assert code == client.ERROR, lines
    assert any("canary at 10%" in line and "force_reset" in line for line in lines), lines
    assert lab.canary_weight() == 10, "preflight moved traffic"
    assert lab.version_of(lab.stack.canary_url) == "v1", "preflight deployed into a slot that serves traffic"
    t0 = time.monotonic()
    lab.guard.pause(False)
    measured = lab.wait_safe("orphaned canary (guard)", t0, 3 * GUARD_EVERY + 30)
    lab.wait_record("the guard's reset", lambda r: r.get("decision", "").startswith("guard:"))
    # force_reset: put back to 0% first, then release.
    lab.pause_guard()
    lab.stack.haproxy_command("set server app/stable weight 90")
    lab.stack.haproxy_command("set server app/canary weight 10")
    run_id = f"safety__{uuid.uuid4().hex[:10]}"
    lab.api.trigger({"version": "v2", "force_reset": True}, run_id=run_id)
    run = lab.api.wait_run(run_id, timeout=120)
    lab.guard.pause(False)
    assert run["state"] == "success", lab.api.states(run_id)
    assert lab.api.status()["phase"] == "promoted" and lab.canary_weight() == 0
    assert lab.version_of(lab.stack.stable_url) == "v2"
    return measured


def admin_api_down(lab: SafetyLab, outage: float = 60) -> Measured:
    """The traffic API unreachable for a minute while a bad build sits at 10%."""
    run_id = lab.start_release(version="broken")
    t0 = time.monotonic()
    lab.forwarder.stop()
    try:
        lab.api.wait_task(run_id, "gate_10", ("failed",), timeout=60)  # the verdict comes; the reset cannot
        assert lab.canary_weight() == 10
        time.sleep(max(0.0, outage - (time.monotonic() - t0)))
        assert lab.canary_weight() == 10, "traffic moved while the admin API was unreachable?"
    finally:
        lab.forwarder.start()
    back = time.monotonic()
    measured = lab.wait_safe(f"traffic API unreachable {outage:g}s", t0, outage + 30,
                             note=f"({time.monotonic() - back:.1f}s after it came back)")
    run = lab.api.wait_run(run_id, timeout=60)
    assert run["state"] == "failed"
    rollback = lab.api.xcom(run_id, "rollback") or {}
    assert rollback.get("attempts", 0) > 1, rollback
    return measured


def api_server_down(lab: SafetyLab, outage: float = 40) -> Measured:
    """The api-server away for 40 s during a gate on a healthy canary: promoted, not rolled back."""
    run_id = lab.start_release(conf={"bake_time": 10})
    t0 = time.monotonic()
    lab.services.stop_component("api-server")
    time.sleep(outage)
    lab.services.start_component("api-server")
    lab.services.wait_healthy(120)
    run = lab.api.wait_run(run_id, timeout=300)
    assert run["state"] == "success", (lab.api.states(run_id), lab.api.xcom(run_id, "rollback"))
    assert lab.api.status()["phase"] == "promoted"
    measured = lab.wait_safe(f"api-server down {outage:g}s, healthy canary", t0, outage + 240, note="(promoted)")
    assert lab.version_of(lab.stack.stable_url) == "v2"
    return measured


def gate_task_killed(lab: SafetyLab) -> Measured:
    """SIGKILL the process of a gate that waits on a worker (poke mode)."""
    run_id = lab.start_release(conf={"bake_time": 15}, gate_state="running")
    victims = _task_processes(lab, run_id, "gate_10")
    assert victims, f"no process runs gate_10: {lab.api.tis(run_id).get('gate_10')}"
    t0 = time.monotonic()
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    run = lab.api.wait_run(run_id, timeout=240)
    measured = lab.wait_safe("gate task SIGKILLed (poke mode)", t0, 240, note=f"(run {run['state']})")
    assert lab.api.status()["phase"] in ("promoted", "rolled_back")
    return measured


def _task_processes(lab: SafetyLab, run_id: str, task_id: str) -> list[int]:
    """The task's own process, as Airflow records it (the task instance's ``pid``), and its children."""
    deadline = time.monotonic() + 20
    while True:
        pid = lab.api.tis(run_id).get(task_id, {}).get("pid")
        if pid:
            return [pid, *descendants(pid)]
        if time.monotonic() > deadline:
            return []
        time.sleep(0.2)


class _client_env:
    """The CI client's environment for this Airflow."""

    def __init__(self, lab: SafetyLab):
        self.values = {"AIRFLOW_API_URL": lab.services.url, "AIRFLOW_USERNAME": "admin",
                       "AIRFLOW_PASSWORD": lab.services.admin_password}

    def __enter__(self):
        self.saved = {k: os.environ.get(k) for k in self.values}
        os.environ.update(self.values)

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
