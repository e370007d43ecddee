"""Canary releases from Airflow: release specs, traffic routers, metrics providers, a judge, operators.

Layout: ``spec`` (validated release specs), ``routers/`` (move traffic), ``metrics/`` (measure both
arms), ``judge`` (pure decision), ``operators/`` (thin Airflow operators), ``dag_factory`` (spec → DAG).
"""
