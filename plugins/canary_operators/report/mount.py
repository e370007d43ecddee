"""How the report plugs into Airflow: the FastAPI app under the api-server, a tab on every DAG run
page and an entry in the nav. Light on purpose: every Airflow process imports the plugin, and
only the api-server serves it, so the FastAPI app itself is imported on its first request."""

from __future__ import annotations

import importlib

URL_PREFIX = "/canary-releases"


class LazyApp:
    """An ASGI app that imports ``module:attribute`` on its first call and hands every call to it."""

    def __init__(self, target: str):
        self.target = target
        self._app = None

    async def __call__(self, scope, receive, send):
        if self._app is None:
            module, _, attribute = self.target.partition(":")
            self._app = getattr(importlib.import_module(module), attribute)
        await self._app(scope, receive, send)


FASTAPI_APP = {"app": LazyApp("canary_operators.report.app:app"), "url_prefix": URL_PREFIX,
               "name": "Canary releases report"}

# Relative hrefs: the UI resolves them against its <base href>, so they work under a base_url path too.
# The UI fills in {DAG_ID} and {RUN_ID} (URL-encoded) for a view on the DAG run page.
EXTERNAL_VIEWS = [
    {"name": "Canary releases", "href": URL_PREFIX.lstrip("/") + "/", "destination": "nav",
     "url_route": "canary-releases"},
    {"name": "Canary report", "href": URL_PREFIX.lstrip("/") + "/runs/{DAG_ID}/{RUN_ID}", "destination": "dag_run",
     "url_route": "canary-report"},
]
