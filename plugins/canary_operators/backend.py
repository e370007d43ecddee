"""What every router and metrics provider shares: a type name, validated settings, a connection."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from canary_operators.endpoint import Endpoint


class Backend:
    type_name: ClassVar[str]  # the name specs use (router.type, metrics.type)
    settings_model: ClassVar[type[BaseModel]]  # validates the spec's settings block
    needs_connection: ClassVar[bool] = True

    def __init__(self, settings: dict, endpoint: Endpoint | None, *, conn_id: str | None = None, run=None):
        """``endpoint`` is the connection's parts; ``conn_id`` its id, for backends that build an
        Airflow hook (AWS, Kubernetes); ``run`` the run's ``RunConf`` (versions), when known."""
        self.settings = self.settings_model.model_validate(settings)
        self.endpoint = endpoint
        self.conn_id = conn_id
        self.run = run
