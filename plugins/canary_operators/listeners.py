"""Airflow listener: the one-line outcome as the DAG run's note, and a readable note when a run starts.

Tasks in Airflow 3 have no database access, so the note is set here. In Airflow 3.3 the dag-run
hooks are called by ``DagRun.notify_dagrun_state_changed`` from ``DagRun.update_state`` in the
scheduler (and from the REST API when a run is marked by hand), with the run attached to the
caller's database session, which commits after the hook: setting ``dag_run.note`` there is
enough, and the tasks' XComs are read through that same session.

Only runs of canary release DAGs are touched (those with a ``preflight`` or ``spec_error`` task).
A note someone wrote (through the UI or the trigger request) is kept: the outcome goes under it.
"""

from __future__ import annotations

import logging

from airflow.listeners import hookimpl

log = logging.getLogger(__name__)

STARTED_PREFIX = "RELEASING "  # our note while a run is under way; replaced by the outcome


def _is_release_run(dag_run) -> bool:
    dag = getattr(dag_run, "dag", None)
    ids = getattr(dag, "task_ids", None) or []
    return any(t.rpartition(".")[2] in ("preflight", "spec_error") for t in ids)


def run_records(dag_run, session) -> dict[str, dict]:
    """Every XCom of the run: task id → {key → value}."""
    from sqlalchemy import select

    from airflow.models.xcom import XComModel

    rows = session.execute(select(XComModel).where(XComModel.dag_id == dag_run.dag_id,
                                                   XComModel.run_id == dag_run.run_id)).scalars()
    records: dict[str, dict] = {}
    for row in rows:
        records.setdefault(row.task_id, {})[row.key] = XComModel.deserialize_value(row)
    if _spec_error_failed(dag_run, session):
        records.setdefault("spec_error", {})["failure"] = {"task": "spec_error", "error": "the release spec is invalid "
                                                           "(see the spec_error task's log)"}
    return records


def _spec_error_failed(dag_run, session) -> bool:
    from sqlalchemy import select

    from airflow.models.taskinstance import TaskInstance

    state = session.scalar(select(TaskInstance.state).where(
        TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id, TaskInstance.task_id == "spec_error"))
    return str(getattr(state, "value", state)) == "failed"


def _duration(dag_run) -> float | None:
    start, end = getattr(dag_run, "start_date", None), getattr(dag_run, "end_date", None)
    if start is None:
        return None
    if end is None:
        from datetime import datetime, timezone

        end = datetime.now(timezone.utc)
    return (end - start).total_seconds()


def outcome_of(dag_run, session) -> str:
    from canary_operators.outcome import RunFacts, compose

    state = str(getattr(dag_run.state, "value", dag_run.state))
    return compose(run_records(dag_run, session), RunFacts(state=state, conf=dag_run.conf or {},
                                                           duration_seconds=_duration(dag_run)))


def _set_note(dag_run, line: str) -> None:
    current = dag_run.note or ""
    if current and not current.startswith(STARTED_PREFIX) and line not in current:
        line = f"{current}\n{line}"  # someone's own note stays first
    dag_run.note = line[:1000]  # the note column's size


def _finished(dag_run) -> None:
    from sqlalchemy.orm import object_session

    try:
        if not _is_release_run(dag_run):
            return
        session = object_session(dag_run)
        if session is not None:  # the scheduler's (or the API's) session: it commits after the hook
            line = outcome_of(dag_run, session)
            _set_note(dag_run, line)
        else:  # a run object outside any session (``dag.test()``): write through a session of our own
            line = _set_note_in_own_session(dag_run)
        _notify_finished(dag_run, line)
    except Exception:  # noqa: BLE001 - a note must never disturb the scheduler
        log.exception("could not set the outcome note of %s", getattr(dag_run, "run_id", "?"))


def _set_note_in_own_session(dag_run) -> str:
    """Never used where the caller holds the run's row locked (the scheduler passes an attached run)."""
    from sqlalchemy import select

    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        attached = session.scalar(select(DagRun).where(DagRun.dag_id == dag_run.dag_id, DagRun.run_id == dag_run.run_id))
        line = outcome_of(dag_run, session)  # the caller's object has the new state; the database may not yet
        _set_note(attached, line)
    return line


def _notify_finished(dag_run, line: str) -> None:
    """Tell the spec's notification targets how the run ended (``promoted`` or ``rollback``)."""
    from canary_operators.notify import send_run_outcome

    send_run_outcome(dag_run.dag_id, dag_run.run_id, line)


@hookimpl
def on_dag_run_running(dag_run, msg: str):
    """A readable note from the start: the version being released, and who or what started it."""
    try:
        if not _is_release_run(dag_run) or dag_run.note:
            return
        conf = dag_run.conf or {}
        version = conf.get("version") or "the candidate version"
        by = getattr(dag_run, "triggering_user_name", None) or str(getattr(dag_run.run_type, "value", dag_run.run_type))
        dag_run.note = f"{STARTED_PREFIX}{version} (started by {by})"
        from canary_operators.notify import send_run_started

        send_run_started(dag_run.dag_id, dag_run.run_id, f"started releasing {version} (by {by})")
    except Exception:  # noqa: BLE001
        log.exception("could not set the start note of %s", getattr(dag_run, "run_id", "?"))


@hookimpl
def on_dag_run_success(dag_run, msg: str):
    _finished(dag_run)


@hookimpl
def on_dag_run_failed(dag_run, msg: str):
    _finished(dag_run)
