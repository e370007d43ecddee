"""Canary releases from Airflow: release specs, traffic routers, metrics providers, a judge, operators.

Layout: ``spec`` (validated release specs), ``routers/`` (move traffic), ``metrics/`` (measure both
arms), ``judge`` (pure decision), ``operators/`` (thin Airflow operators), ``dag_factory`` (spec → DAG).

A DAG file needs one line (the word "Airflow" must appear in the file, or the DAG processor skips it)::

    # Airflow DAGs: one canary release per spec in /opt/airflow/releases
    from canary_operators import release_dags; globals().update(release_dags("/opt/airflow/releases"))

Importing this package is cheap: nothing of Airflow is imported until ``release_dags`` is called.
"""

__version__ = "0.1.0"  # the package's one version (pyproject.toml reads it); semver, see CHANGELOG.md


def release_dags(releases_dir=None):
    """Every release spec's DAG and ``canary_guard``, by dag_id, for a DAG file's ``globals()``.

    The folder: ``releases_dir``, else ``$CANARY_RELEASES_DIR``, else the project's
    ``include/releases``. A task builds only its own DAG (Airflow's parsing context)."""
    from canary_operators.dag_file import release_dags as build

    return build(releases_dir)
