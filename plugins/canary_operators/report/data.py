"""What the report shows, read in the api-server process from Airflow's database (ORM, read-only).

A run: the DAG run, its task instances, the XComs the canary tasks push (per-look records,
shifts, fast rollbacks, the undo's result, approvals, failures) and the release's status record.
The index: every release DAG Airflow knows (tag ``canary``), its status record, its last runs,
and the router's read of the live weights, built the way the operators build it, with a short
time limit.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from canary_operators.report.model import ReleaseRow, RunReport, RunRow, TaskRow

log = logging.getLogger(__name__)

LOOKS_KEY = "looks"  # a gate's per-look record (canary_operators.looks)
# The XComs a report reads, besides the per-look records: the tasks' results and what they leave for the undo.
KEYS = (LOOKS_KEY, "return_value", "fast_rollback", "failure", "nothing_to_release")
ROUTER_TIMEOUT = 3.0  # seconds: the index must not hang on a router that does not answer
RUNS_SHOWN = 10
_router_pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="canary-report-router")


def release_of(dag_id: str) -> str:
    return dag_id.removeprefix("canary_")


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _decoded(value):
    """An XCom or Variable value as JSON data (XComs may hold a JSON string)."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def read_status(session: Session, release: str) -> dict | None:
    from airflow.models.variable import Variable

    from canary_operators.status import status_variable

    row = session.scalar(select(Variable).where(Variable.key == status_variable(release)))
    if row is None:
        return None
    value = _decoded(row.val)
    return value if isinstance(value, dict) else None


def load_run(session: Session, dag_id: str, run_id: str) -> RunReport | None:
    """The run's report, or None when there is no such run."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel

    run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
    if run is None:
        return None
    tis = session.scalars(select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
                          .order_by(TaskInstance.start_date.is_(None), TaskInstance.start_date, TaskInstance.task_id)).all()
    tasks = tuple(TaskRow(ti.task_id, ti.state, int(ti.try_number or 0), _epoch(ti.start_date), _epoch(ti.end_date))
                  for ti in tis if ti.map_index in (-1, None))
    xcoms: dict[str, dict] = {}
    rows = session.scalars(select(XComModel).where(XComModel.dag_id == dag_id, XComModel.run_id == run_id,
                                                   XComModel.key.in_(KEYS))).all()
    for row in rows:
        try:
            value = _decoded(XComModel.deserialize_value(row))
        except Exception as e:  # noqa: BLE001 - one unreadable XCom must not hide the rest of the report
            log.warning("canary report: XCom %s/%s of %s %s unreadable: %s", row.task_id, row.key, dag_id, run_id, e)
            continue
        xcoms.setdefault(row.task_id, {})[row.key] = value
    gates = tuple(sorted((x[LOOKS_KEY] for x in xcoms.values() if isinstance(x.get(LOOKS_KEY), dict)),
                         key=lambda g: (g.get("weight") if isinstance(g.get("weight"), (int, float)) else 0, str(g.get("gate")))))
    conf = run.conf if isinstance(run.conf, dict) else {}
    resolved = (xcoms.get("preflight") or {}).get("return_value") or {}
    status = read_status(session, release_of(dag_id))
    rollback = (xcoms.get("rollback") or {}).get("return_value") or {}
    return RunReport(
        dag_id=dag_id, run_id=run_id, release=release_of(dag_id), state=run.state,
        start=_epoch(run.start_date), end=_epoch(run.end_date),
        version=resolved.get("version") or conf.get("version") or rollback.get("version"),
        stable_version=resolved.get("stable_version") or conf.get("stable_version") or rollback.get("stable_version"),
        note=run.note, run_type=str(run.run_type or ""),
        triggered_by=run.triggering_user_name or (run.triggered_by.value if run.triggered_by else ""),
        conf=conf, gates=gates, xcoms=xcoms, tasks=tasks,
        status=status if status and status.get("run_id") == run_id else None,
    )


def _runs(session: Session, dag_id: str) -> tuple[RunRow, ...]:
    from airflow.models.dagrun import DagRun

    runs = session.scalars(select(DagRun).where(DagRun.dag_id == dag_id)
                           .order_by(DagRun.run_after.desc(), DagRun.id.desc()).limit(RUNS_SHOWN)).all()
    return tuple(RunRow(r.run_id, r.state, _epoch(r.start_date), r.note) for r in runs)


def read_router(spec, status: dict | None) -> tuple[bool, str]:
    """The router's live weights, built as the operators build it; (False, why) when it cannot be read in time."""
    if spec.router is None:
        return False, "no router in the spec"
    future = _router_pool.submit(_router_weights, spec, status)
    try:
        return True, str(future.result(timeout=ROUTER_TIMEOUT))
    except concurrent.futures.TimeoutError:
        return False, f"router unreachable: no answer from {spec.router.type} within {ROUTER_TIMEOUT:g}s"
    except Exception as e:  # noqa: BLE001 - shown on the page, the index goes on
        from canary_operators.secrets import scrub_error

        return False, f"router unreachable: {scrub_error(e)}"


def _router_weights(spec, status: dict | None):
    from airflow.models.connection import Connection

    from canary_operators.endpoint import Endpoint
    from canary_operators.routers import router_class
    from canary_operators.spec import RunConf

    endpoint = None
    if spec.router.conn_id:  # the api-server reads connections from its own secrets backends
        endpoint = Endpoint.from_connection(Connection.get_connection_from_secrets(spec.router.conn_id))
    run = None
    if status and status.get("version") and status.get("stable_version"):
        run = RunConf(release=spec.name, version=status["version"], stable_version=status["stable_version"])
    router = router_class(spec.router.type)(spec.router.settings, endpoint, conn_id=spec.router.conn_id, run=run)
    return router.get_weights()


def canary_dags(session: Session) -> list:
    """The release DAGs Airflow knows (tag ``canary``, not the guard), whatever folder their specs are in."""
    from airflow.models.dag import DagModel, DagTag

    tagged = select(DagTag.dag_id).where(DagTag.name == "canary")
    guards = select(DagTag.dag_id).where(DagTag.name == "guard")
    return list(session.scalars(select(DagModel).where(DagModel.dag_id.in_(tagged), DagModel.dag_id.not_in(guards),
                                                       DagModel.is_stale.is_(False)).order_by(DagModel.dag_id)))


def specs_by_dag_id() -> dict:
    """The specs the api-server can read (``CANARY_RELEASES_DIR``, else the project's folder), by DAG id."""
    import os
    from pathlib import Path

    from canary_operators.dag_factory import RELEASES_DIR_ENV, default_releases_dir, spec_files
    from canary_operators.spec.loading import load_spec

    folder = Path(os.environ.get(RELEASES_DIR_ENV) or default_releases_dir())
    if not folder.is_dir():
        return {}
    specs = {}
    for path in spec_files(folder)[0]:
        try:
            spec = load_spec(path)
        except Exception:  # noqa: BLE001 - its DAG shows the error (an invalid-spec DAG)
            continue
        specs[spec.dag_id] = spec
    return specs


def load_index(session: Session, may_read) -> tuple[list[ReleaseRow], int]:
    """Every release DAG the user may read (``may_read(dag_id)``), and how many were left out. The
    router is built from the spec file when the api-server can read it, else from the spec the
    release's last run recorded in its status record."""
    from canary_operators.dag_factory import INVALID_TAG
    from canary_operators.spec import ReleaseSpec
    from canary_operators.spec.targets import target_releases

    specs = specs_by_dag_id()
    rows: list[ReleaseRow] = []
    hidden = 0
    for dag in canary_dags(session):
        if not may_read(dag.dag_id):
            hidden += 1
            continue
        if INVALID_TAG in {t.name for t in dag.tags}:
            rows.append(ReleaseRow(release=release_of(dag.dag_id), dag_id=dag.dag_id,
                                   error=str(dag.description or "the release spec does not load")))
            continue
        runs = _runs(session, dag.dag_id)
        spec = specs.get(dag.dag_id)
        # A release across several targets keeps a status record and a router per target: a row each.
        releases = list(target_releases(spec).values()) if spec is not None and spec.targets else [spec]
        for release in releases:
            name = release.name if release is not None else release_of(dag.dag_id)
            status = read_status(session, name) or {}
            if release is None and status.get("spec"):
                try:
                    release = ReleaseSpec.model_validate(status["spec"])
                except Exception:  # noqa: BLE001 - then there is no router to read
                    release = None
            ok, router = read_router(release, status) if release is not None else (
                False, "router not read: the API server cannot read this release's spec (set CANARY_RELEASES_DIR)")
            rows.append(ReleaseRow(release=name, dag_id=dag.dag_id, phase=str(status.get("phase") or "idle"),
                                   status_weight=status.get("weight"), status_run=status.get("run_id"),
                                   decision=str(status.get("decision") or ""), router=router, router_ok=ok, runs=runs))
    return rows, hidden
