"""What a DAG file calls: the factory's DAGs for one folder of release specs, built the way a
DAG file must build them (never raising, and only the DAG a task needs)."""

from __future__ import annotations

import os
from pathlib import Path

from airflow.sdk import DAG, get_parsing_context

from canary_operators.dag_factory import FOLDER_ERRORS_DAG_ID, RELEASES_DIR_ENV, build_dags, build_invalid_dag, default_releases_dir


def release_dags(releases_dir: str | os.PathLike | None = None) -> dict[str, DAG]:
    """See ``canary_operators.release_dags``. With no folder given or set, and no project layout
    around the package (an installed wheel), the one DAG built says what to pass."""
    only_dag_id = get_parsing_context().dag_id
    folder = releases_dir or os.environ.get(RELEASES_DIR_ENV)
    if not folder and not default_releases_dir().is_dir():
        message = (f"(no folder): release_dags() was given no folder of release specs and {RELEASES_DIR_ENV} is "
                   f"not set; pass it in the DAG file, e.g. release_dags(\"/opt/airflow/releases\"), or set {RELEASES_DIR_ENV}")
        if only_dag_id not in (None, FOLDER_ERRORS_DAG_ID):
            return {}
        return {FOLDER_ERRORS_DAG_ID: build_invalid_dag(FOLDER_ERRORS_DAG_ID, message)}
    return build_dags(Path(folder) if folder else None, only_dag_id=only_dag_id)
