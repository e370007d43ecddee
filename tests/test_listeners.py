"""The plugin's listener on a real Airflow database: the run's note is set through the caller's
session, as the scheduler calls it (the run attached to its session, which commits afterwards)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

SAMPLE = json.loads((Path(__file__).parent / "data" / "looks_sample.json").read_text())


@pytest.fixture(scope="module")
def finished_run(airflow_db, tmp_path_factory):
    """A run of a small DAG with a release's task ids, in the test database (as the dag-processor and
    the scheduler would have left it)."""
    from datetime import datetime, timezone

    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.dagbag import DBDagBag
    from airflow.utils.session import create_session
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    folder = tmp_path_factory.mktemp("listener_dags")
    (folder / "canary_t_listener.py").write_text(
        "from airflow.sdk import DAG\nfrom airflow.providers.standard.operators.empty import EmptyOperator\n"
        "with DAG('canary_t_listener', schedule=None):\n"
        "    for task in ('preflight', 'gate_5', 'rollback'):\n        EmptyOperator(task_id=task)\n")
    from airflow.dag_processing.bundles.manager import DagBundlesManager

    DagBundlesManager().sync_bundles_to_db()  # the "dags-folder" bundle row the DAG refers to
    bag = DagBag(dag_folder=str(folder), bundle_path=folder)
    sync_bag_to_db(bag, "dags-folder", None)
    with create_session() as session:
        dag = DBDagBag().get_latest_version_of_dag("canary_t_listener", session=session)
        run = dag.create_dagrun(run_id="manual__listener", run_type=DagRunType.MANUAL, state="running",
                                triggered_by=DagRunTriggeredByType.TEST, run_after=datetime.now(timezone.utc),
                                logical_date=None, data_interval=None, session=session)
        return run.dag_id, run.run_id


def _attached(session, dag_id: str, run_id: str):
    from sqlalchemy import select

    from airflow.models.dagrun import DagRun

    run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
    run.dag = SimpleNamespace(task_ids=["preflight", "gate_5", "rollback"])  # what the scheduler sets
    return run


def _note(dag_id: str, run_id: str) -> str | None:
    from airflow.utils.session import create_session

    with create_session() as session:
        return _attached(session, dag_id, run_id).note


def test_a_failed_run_gets_its_outcome_through_the_schedulers_session(finished_run):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from canary_operators import listeners

    dag_id, run_id = finished_run
    with create_session() as session:
        for task, key, value in (("preflight", "return_value", {"version": "v3", "stable_version": "v2"}),
                                 ("gate_5", "looks", SAMPLE),
                                 ("gate_5", "failure", {"task": "gate_5", "error": "gate at 5% failed: …"})):
            XComModel.set(key, value, dag_id=dag_id, task_id=task, run_id=run_id, session=session)
    with create_session() as session:  # the scheduler's session: the hook only changes the attached run
        run = _attached(session, dag_id, run_id)
        run.state = "failed"
        run.note = "deploying the hotfix for INC-42"  # someone's own note stays first
        listeners.on_dag_run_failed(dag_run=run, msg="task_failure")
    assert _note(dag_id, run_id) == ("deploying the hotfix for INC-42\n"
                                     "ROLLED BACK v3 at 5% after 35 s: errors 3.23% vs 0.24% (+2.99 pp > 0.5 pp)")


def test_a_run_that_starts_gets_a_readable_note_unless_it_has_one(finished_run):
    from airflow.utils.session import create_session

    from canary_operators import listeners

    dag_id, run_id = finished_run
    with create_session() as session:
        run = _attached(session, dag_id, run_id)
        run.note, run.conf = None, {"version": "v7"}
        listeners.on_dag_run_running(dag_run=run, msg="started")
    assert _note(dag_id, run_id).startswith("RELEASING v7 (started by ")
    with create_session() as session:
        run = _attached(session, dag_id, run_id)
        run.note = "mine"
        listeners.on_dag_run_running(dag_run=run, msg="started")
    assert _note(dag_id, run_id) == "mine"


def test_other_dags_runs_are_left_alone(finished_run):
    from airflow.utils.session import create_session

    from canary_operators import listeners

    dag_id, run_id = finished_run
    with create_session() as session:
        run = _attached(session, dag_id, run_id)
        run.dag, run.note = SimpleNamespace(task_ids=["extract", "load"]), "theirs"
        listeners.on_dag_run_success(dag_run=run, msg="success")
    assert _note(dag_id, run_id) == "theirs"
