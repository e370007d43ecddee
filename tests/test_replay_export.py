"""Replay's export through Airflow's REST API: a real API app (Airflow's own, served by uvicorn on
127.0.0.1) over the test database, a token from ``/auth/token``, a run's ``looks`` XComs."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import free_port, load_module

SAMPLE = json.loads((Path(__file__).parent / "data" / "looks_sample.json").read_text())
DAG_ID = "canary_t_replay_export"
SPEC = {"name": "t_replay_export", "router": {"type": "haproxy", "conn_id": "c", "settings": {"backend": "w"}},
        "metrics": {"type": "prometheus", "conn_id": "p"}, "steps": [5, 25, 100], "bake_time": "60s",
        "sample_ratio": {"enabled": False}, "promote": {"type": "command", "command": ["true"]},
        "checks": [{"name": "errors", "kind": "error_rate", "max_increase_pp": 5},
                   {"name": "p99_latency", "kind": "latency", "max_ratio": 1.2}]}


@pytest.fixture(scope="module")
def recorded_run(airflow_db, tmp_path_factory):
    """A run whose gate_5 left the sample record, as the dag-processor and a worker would leave it."""
    from datetime import datetime, timezone

    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.dagbag import DBDagBag
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    folder = tmp_path_factory.mktemp("replay_dags")
    (folder / "dag.py").write_text(
        "from airflow.sdk import DAG\nfrom airflow.providers.standard.operators.empty import EmptyOperator\n"
        f"with DAG({DAG_ID!r}, schedule=None):\n    EmptyOperator(task_id='gate_5')\n")
    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(DagBag(dag_folder=str(folder), bundle_path=folder), "dags-folder", None)
    with create_session() as session:
        dag = DBDagBag().get_latest_version_of_dag(DAG_ID, session=session)
        run = dag.create_dagrun(run_id="manual__2026-11-30T10:00:00+00:00", run_type=DagRunType.MANUAL, state="failed",
                                triggered_by=DagRunTriggeredByType.TEST, run_after=datetime.now(timezone.utc),
                                logical_date=None, data_interval=None, session=session)
        XComModel.set("looks", SAMPLE, dag_id=DAG_ID, task_id="gate_5", run_id=run.run_id, session=session)
        return run.run_id


@pytest.fixture(scope="module")
def api_server(recorded_run, airflow_db):
    """Airflow's API app on a free port; yields (base URL, admin password)."""
    import os

    import uvicorn

    os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = "admin:admin"
    from airflow.api_fastapi.app import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app("core"), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/api/v2/monitor/health", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            time.sleep(0.2)
    passwords = json.loads((Path(airflow_db) / "simple_auth_manager_passwords.json.generated").read_text())
    yield url, passwords["admin"]
    server.should_exit = True
    thread.join(10)
    os.environ.pop("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", None)


def test_a_runs_looks_are_exported_with_a_token_and_replayed(api_server, recorded_run, tmp_path, monkeypatch, capsys):
    url, password = api_server
    cli = load_module("include/scripts/replay.py", "replay_cli_export")
    monkeypatch.setenv("AIRFLOW_API_USERNAME", "admin")
    monkeypatch.setenv("AIRFLOW_API_PASSWORD", password)
    exported, looser = tmp_path / "looks.json", tmp_path / "looser.yaml"
    looser.write_text(yaml.safe_dump(SPEC))
    code = cli.main(["--api", url, "--dag-id", DAG_ID, "--run-id", recorded_run, "--export", str(exported),
                     "--spec", str(looser)])
    out, err = capsys.readouterr()
    assert json.loads(exported.read_text()) == {"runs": [{"dag_id": DAG_ID, "run_id": recorded_run,
                                                          "gates": {"gate_5": SAMPLE}}]}
    assert code == 1 and "1 of 1 gates would have decided differently" in out, err[-2000:]  # 5 pp: no rollback
    # Every recorded run of the release (the newest --limit), without --run-id:
    assert cli.main(["--api", url, "--dag-id", DAG_ID, "--export", str(exported)]) == 0
    assert [r["run_id"] for r in json.loads(exported.read_text())["runs"]] == [recorded_run]


def test_a_refused_token_is_a_clear_error_not_an_empty_export(api_server, recorded_run, tmp_path, capsys):
    url, _ = api_server
    cli = load_module("include/scripts/replay.py", "replay_cli_refused")
    assert cli.main(["--api", url, "--token", "not-a-token", "--dag-id", DAG_ID, "--run-id", recorded_run,
                     "--export", str(tmp_path / "x.json")]) == 2
    assert "answered HTTP 403: the token is refused" in capsys.readouterr().err
