"""Airflow DAGs: one canary release per spec in include/releases/*.yaml, and canary_guard.

``CANARY_RELEASES_DIR`` points it at another folder. An installed package's DAG file is the same
line with the folder: ``release_dags("/opt/airflow/releases")`` (see plugins/canary_operators).
"""

from canary_operators import release_dags

globals().update(release_dags())
