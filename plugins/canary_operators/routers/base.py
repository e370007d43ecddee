"""The traffic router contract: set and read the canary's share of traffic, in percent."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from pydantic import BaseModel

from canary_operators.endpoint import Endpoint
from canary_operators.exceptions import RouterError, WeightNotApplied


class TrafficRouter(ABC):
    """One backend that splits traffic between stable and canary.

    ``set_canary_weight`` sets absolute state (stable gets ``100 - percent``), so it is idempotent
    and safe to retry. ``apply`` sets, then reads back and fails if the weight did not take.
    """

    type_name: ClassVar[str]
    settings_model: ClassVar[type[BaseModel]]
    needs_connection: ClassVar[bool] = True

    def __init__(self, settings: dict, endpoint: Endpoint | None):
        self.settings = self.settings_model.model_validate(settings)
        self.endpoint = endpoint

    @abstractmethod
    def set_canary_weight(self, percent: int) -> None:
        """Send ``percent`` of traffic to the canary and the rest to stable. Idempotent."""

    @abstractmethod
    def get_canary_weight(self) -> int:
        """The canary's share of traffic as the backend reports it now, in percent."""

    def check_online(self) -> None:
        """Raise RouterError when the backend cannot be reached or is misconfigured."""
        self.get_canary_weight()

    def apply(self, percent: int) -> int:
        """Set the weight and verify it by reading it back. Returns the weight read back."""
        if not 0 <= percent <= 100:
            raise RouterError(f"canary weight {percent} is not a percentage")
        self.set_canary_weight(percent)
        actual = self.get_canary_weight()
        if actual != percent:
            raise WeightNotApplied(f"{self.type_name}: set canary weight {percent}% but it reads back {actual}%")
        return actual
