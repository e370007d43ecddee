"""The Airflow plugin object: what this package adds to Airflow itself (UI views, listeners).

Found two ways: from the project layout through ``plugins/canary_releases_plugin.py``, and from an
installed package through the ``airflow.plugins`` entry point. Each part is contributed by its own
module; this file only lists them.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from canary_operators import listeners
from canary_operators.report import mount as report


class CanaryReleasesPlugin(AirflowPlugin):
    name = "canary_releases"
    fastapi_apps: list = [report.FASTAPI_APP]
    external_views: list = list(report.EXTERNAL_VIEWS)
    listeners: list = [listeners]
