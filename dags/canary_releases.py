"""One canary-release DAG per spec in include/releases/*.yaml (see plugins/canary_operators)."""

from airflow.sdk import get_parsing_context

from canary_operators.dag_factory import build_dags

globals().update(build_dags(only_dag_id=get_parsing_context().dag_id))
