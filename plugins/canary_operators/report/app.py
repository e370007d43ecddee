"""The report's routes, behind the api-server's own authentication and DAG permissions.

Mounted at ``/canary-releases`` (``mount.FASTAPI_APP``). The user comes from the same JWT the
UI and the REST API use (the ``_token`` cookie of a UI session, or an ``Authorization: Bearer``
header): no token is 401, a user who may not read the DAG's runs (or any DAG, for the index) is
403, exactly as for Airflow's own endpoints.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag

from canary_operators.report import data, pages
from canary_operators.report.mount import URL_PREFIX

app = FastAPI(title="Canary releases report", docs_url=None, redoc_url=None, openapi_url=None)


def links_for(request: Request) -> pages.Links:
    """Links that work behind a base_url path: the mount's root_path ends with our prefix."""
    app_root = request.scope.get("root_path", "") or URL_PREFIX
    airflow_root = app_root[: -len(URL_PREFIX)] if app_root.endswith(URL_PREFIX) else ""
    return pages.Links(airflow=airflow_root, app=app_root)


@app.get("/", response_class=HTMLResponse, dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.RUN))])
def index(request: Request, user: GetUserDep, session: SessionDep) -> HTMLResponse:
    from airflow.api_fastapi.app import get_auth_manager

    readable = get_auth_manager().get_authorized_dag_ids(user=user, method="GET")
    rows, hidden = data.load_index(session, lambda dag_id: dag_id in readable)
    return HTMLResponse(pages.render_index(rows, links_for(request), hidden))


@app.get("/runs/{dag_id}/{run_id:path}", response_class=HTMLResponse,
         dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.RUN)),
                       Depends(requires_access_dag("GET", DagAccessEntity.XCOM))])
def run_report(dag_id: str, run_id: str, request: Request, session: SessionDep) -> HTMLResponse:
    report = data.load_run(session, dag_id, run_id)
    if report is None:
        raise HTTPException(status_code=404, detail=f"no run {run_id!r} of DAG {dag_id!r}")
    return HTMLResponse(pages.render_run(report, links_for(request)))

