"""The metrics provider contract: canary and baseline data for one check, in one shape."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from pydantic import BaseModel

from canary_operators.endpoint import Endpoint
from canary_operators.measurement import Measurement


@dataclass(frozen=True)
class Scope:
    """Which versions to compare, and over what window ending when."""

    canary_version: str
    baseline_version: str
    window_seconds: float
    end: float  # unix seconds


class MetricsProvider(ABC):
    """A metrics backend. Both calls are read-only and safe to repeat.

    ``measure`` returns None values for an arm with no data (the judge holds); it raises
    ``BackendUnavailable`` when the backend is down and ``MetricsError`` when it rejects the query.
    """

    type_name: ClassVar[str]
    settings_model: ClassVar[type[BaseModel]]
    needs_connection: ClassVar[bool] = True

    def __init__(self, settings: dict, endpoint: Endpoint | None, *, conn_id: str | None = None, run=None):
        """``endpoint`` is the connection's parts; ``conn_id`` its id, for backends that build an
        Airflow hook (AWS, Kubernetes); ``run`` the run's ``RunConf`` (versions), when known."""
        self.settings = self.settings_model.model_validate(settings)
        self.endpoint = endpoint
        self.conn_id = conn_id
        self.run = run

    @abstractmethod
    def check_online(self) -> None:
        """Raise BackendUnavailable or MetricsError when the backend cannot answer queries."""

    @abstractmethod
    def measure(self, check, scope: Scope) -> Measurement:
        """Canary and baseline data for ``check`` over ``scope``."""
