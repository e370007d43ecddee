"""Registers the canary-releases plugin from this project's plugins/ folder (the package itself is
in .airflowignore, so Airflow imports only this file)."""

from canary_operators.plugin import CanaryReleasesPlugin  # noqa: F401 - Airflow finds it by its class
