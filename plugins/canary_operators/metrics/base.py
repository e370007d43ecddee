"""The metrics provider contract: canary and baseline data for one check, in one shape."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from canary_operators.backend import Backend
from canary_operators.measurement import Measurement


@dataclass(frozen=True)
class Scope:
    """Which versions to compare, and over what window ending when."""

    canary_version: str
    baseline_version: str
    window_seconds: float
    end: float  # unix seconds


class MetricsProvider(Backend, ABC):
    """A metrics backend. Both calls are read-only and safe to repeat.

    ``measure`` returns None values for an arm with no data (the judge holds); it raises
    ``BackendUnavailable`` when the backend is down and ``MetricsError`` when it rejects the query.
    """

    @abstractmethod
    def check_online(self) -> None:
        """Raise BackendUnavailable or MetricsError when the backend cannot answer queries."""

    @abstractmethod
    def measure(self, check, scope: Scope) -> Measurement:
        """Canary and baseline data for ``check`` over ``scope``."""
