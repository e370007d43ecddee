"""The production stack, end to end: PostgreSQL, the CeleryExecutor with two workers on Redis, a
triggerer, a dag-processor, the scheduler and the api-server (see ``tests/production_services.py``).

This module runs in ``make test-production`` (``.ci/run`` calls it after ``make test``), not in
``make test``: starting PostgreSQL, Redis, two workers and Airflow would take the suite past its
10 minutes on two cores.

The releases are the ones ``tests/test_airflow_services.py`` runs on the LocalExecutor and SQLite,
with the same spec, the same CI client and the same assertions (its test functions are called
here), plus the status record each leaves. Then five releases of five different services run at
once, three healthy and two broken, and each must end as it would alone.
"""

from __future__ import annotations

import json
import time

import pytest
import yaml

from tests import test_airflow_services as local_run
from tests.airflow_services import ReleaseApi
from tests.conftest import ADMIN_TOKEN
from tests.production_services import (WORKERS, PostgresServer, ProductionStackError, RedisServer, ServiceFleet,
                                       production_airflow, tasks_executed, wait_for_workers)
# The LocalExecutor module's fixtures, used here against this module's ``airflow``.
from tests.test_airflow_services import api, client, promoted_by_ci, stack  # noqa: F401

FLEET = {"fleet_a": "v2", "fleet_b": "broken", "fleet_c": "v2", "fleet_d": "broken", "fleet_e": "v2"}


def fleet_spec(name: str) -> dict:
    """The LocalExecutor test's spec, for one service of the fleet; 50% first, as each service gets
    only 40 requests per second (the demo stack gets 300)."""
    spec = {**local_run.SPEC, "name": name, "steps": [50, 100],
            "router": {"type": "haproxy", "conn_id": "fleet_haproxy", "settings": {"backend": name}},
            "metrics": {"type": "prometheus", "conn_id": "fleet_prometheus", "settings": {"labels": {"job": name}}},
            "deploy": {"type": "webhook", "conn_id": f"{name}_canary_admin", "endpoint": "/admin/deploy"},
            "promote": {"type": "webhook", "conn_id": f"{name}_stable_admin", "endpoint": "/admin/deploy"}}
    spec.pop("approval")
    return spec


@pytest.fixture(scope="module")
def postgres():
    with PostgresServer() as server:  # raises with the reason and its log when it cannot start
        yield server


@pytest.fixture(scope="module")
def redis_server():
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    with ServiceFleet(tmp_path_factory.mktemp("fleet"), list(FLEET), admin_token=ADMIN_TOKEN) as services:
        yield services


@pytest.fixture(scope="module")
def airflow(demo_stack, fleet, postgres, redis_server, tmp_path_factory):
    """Replaces the LocalExecutor module's ``airflow``: the same releases and connections, on the
    production stack."""
    releases = tmp_path_factory.mktemp("releases")
    (releases / f"{local_run.RELEASE}.yaml").write_text(yaml.safe_dump(local_run.SPEC, sort_keys=False))
    for name in FLEET:
        (releases / f"{name}.yaml").write_text(yaml.safe_dump(fleet_spec(name), sort_keys=False))
    host, admin_port = demo_stack.admin_address
    connections = {
        local_run.HAPROXY: {"conn_type": "generic", "host": host, "port": admin_port},
        local_run.PROMETHEUS: {"conn_type": "http", "host": "127.0.0.1", "port": demo_stack.prometheus_port},
        local_run.CANARY_ADMIN: {"conn_type": "http", "host": "127.0.0.1", "port": demo_stack.canary_port, "password": ADMIN_TOKEN},
        local_run.STABLE_ADMIN: {"conn_type": "http", "host": "127.0.0.1", "port": demo_stack.stable_port, "password": ADMIN_TOKEN},
        "fleet_haproxy": {"conn_type": "generic", "host": "127.0.0.1", "port": fleet.admin_port},
        "fleet_prometheus": {"conn_type": "http", "host": "127.0.0.1", "port": fleet.prometheus_port},
    }
    for name in FLEET:
        for track in ("canary", "stable"):
            connections[f"{name}_{track}_admin"] = {"conn_type": "http", "host": "127.0.0.1",
                                                     "port": fleet.ports[name][track], "password": ADMIN_TOKEN}
    env = {"CANARY_RELEASES_DIR": str(releases),
           # The guard sweeps every 5 minutes instead of every minute: six guard tasks a minute
           # (one per spec) would compete for the two cores; no test here relies on the guard.
           "CANARY_GUARD_SCHEDULE": "5m",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{local_run.APPROVER}:admin,{local_run.NOT_APPROVER}:admin"}
    env.update({f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(fields) for conn_id, fields in connections.items()})
    services = production_airflow(tmp_path_factory.mktemp("airflow-home"), postgres, redis_server, extra_env=env)
    # Generous: on a busy 2-core machine the api-server alone took two minutes to start.
    services.start(timeout=480)  # raises with the tail of every component's log
    try:
        wait_for_workers(services, timeout=240)
        for dag_id in (local_run.DAG_ID, *(f"canary_{name}" for name in FLEET)):
            services.wait_for_dag(dag_id, timeout=300)
        yield services
    finally:
        services.stop()


def test_a_postgres_that_cannot_start_fails_with_the_reason(postgres):
    """No silent skip: a server that cannot start raises with its own words (here: the port is taken)."""
    with pytest.raises(ProductionStackError) as failed:
        PostgresServer(port=postgres.port).start(timeout=60)
    assert f"PostgreSQL on 127.0.0.1:{postgres.port} exited" in str(failed.value), failed.value
    assert "could not bind" in str(failed.value) or "in use" in str(failed.value), failed.value


def test_airflow_runs_on_postgres_and_celery(airflow, postgres):
    """What the other tests run on: the metadata is in PostgreSQL, and the scheduler's executor is Celery."""
    health = airflow.api().get(f"{airflow.url}/api/v2/monitor/health", timeout=30).json()
    assert {k: v["status"] for k, v in health.items() if isinstance(v, dict) and "status" in v} == {
        "metadatabase": "healthy", "scheduler": "healthy", "triggerer": "healthy", "dag_processor": "healthy"}, health
    dags = {row[0] for row in postgres.query("SELECT dag_id FROM dag")}
    assert {local_run.DAG_ID, "canary_guard", *(f"canary_{name}" for name in FLEET)} <= dags
    scheduler_log = (airflow.logs / "scheduler.log").read_text(errors="replace")
    assert "Loaded executor: :CeleryExecutor:" in scheduler_log, scheduler_log[-3000:]


def test_ci_client_promotes_a_healthy_version(promoted_by_ci, api, demo_stack):
    local_run.test_ci_client_promotes_a_healthy_version(promoted_by_ci, api, demo_stack)
    record = api.status()
    run_id = promoted_by_ci[2]
    assert (record["phase"], record["weight"], record["version"], record["stable_version"], record["run_id"]) == (
        "promoted", 0, "v2", "v1", run_id), record
    assert record["promote_done"] == ["routed", "stable_slot"], record  # the spec has no after_promote


def test_gates_wait_deferred_in_the_triggerer(promoted_by_ci, api, airflow):
    local_run.test_gates_wait_deferred_in_the_triggerer(promoted_by_ci, api, airflow)


def test_ci_client_rolls_back_a_broken_version(stack, client, airflow, api):
    local_run.test_ci_client_rolls_back_a_broken_version(stack, client, airflow, api)
    record = api.status()
    assert (record["phase"], record["weight"], record["version"]) == ("rolled_back", 0, "broken"), record
    assert record["decision"].startswith("rollback: ") and "gate_10" in record["decision"], record


def test_five_releases_of_different_services_at_once(airflow, fleet):
    """Five services released together: the healthy ones promoted, the broken ones rolled back,
    each exactly as alone; the runs overlap in time, and both Celery workers ran tasks."""
    apis = {name: ReleaseApi(airflow, f"canary_{name}") for name in FLEET}
    runs = {}
    for name, version in FLEET.items():
        apis[name].pause(False)
        runs[name] = apis[name].trigger({"version": version, "stable_version": "v1"}).json()["dag_run_id"]
    finished = {name: apis[name].wait_run(run_id, timeout=240) for name, run_id in runs.items()}

    problems = []
    for name, version in FLEET.items():
        api, run_id, run = apis[name], runs[name], finished[name]
        states, record = api.states(run_id), api.status()
        healthy = version == "v2"
        expected = {
            "run": "success" if healthy else "failed",
            "promote": "success" if healthy else "upstream_failed",
            "gate_50": "success" if healthy else "failed",
            "rollback": "success",
            "complete_rollout": "success" if healthy else "failed",
            "phase": "promoted" if healthy else "rolled_back",
            "canary weight": 0,
            "stable slot runs": "v2" if healthy else "v1",
            "record weight": 0,
            "record owner": run_id,
        }
        got = {
            "run": run["state"], "promote": states.get("promote"), "gate_50": states.get("gate_50"),
            "rollback": states.get("rollback"), "complete_rollout": states.get("complete_rollout"),
            "phase": record.get("phase"), "canary weight": fleet.canary_weight(name),
            "stable slot runs": fleet.version(name, "stable"), "record weight": record.get("weight"),
            "record owner": record.get("run_id"),
        }
        if got != expected:
            problems.append(f"{name} ({version}): expected {expected}\n  got {got}\n  tasks {states}{api.mismatches(run_id)}")
        if not healthy:
            reason = (api.xcom(run_id, "rollback") or {}).get("reason") or ""
            if "gate_50" not in reason or "error rate" not in reason:
                problems.append(f"{name}: the rollback's reason does not name the failing gate and check: {reason!r}")
    assert not problems, "\n".join(problems)

    # At once: every run started before any of them ended.
    starts = [run["start_date"] for run in finished.values()]
    ends = [run["end_date"] for run in finished.values()]
    assert max(starts) < min(ends), f"the runs did not overlap: starts {sorted(starts)}, ends {sorted(ends)}"
    # Both Celery workers ran some of the releases' tasks.
    executed = {worker: tasks_executed(airflow, worker, "canary_fleet_") for worker in WORKERS}
    assert all(executed.values()), f"the releases' tasks per Celery worker: {executed}"
    print(f"five releases at once: tasks per Celery worker {executed}; runs "
          + ", ".join(f"{name} {run['state']} in {run['duration']:.0f}s" for name, run in finished.items()
                      if run.get("duration") is not None))
