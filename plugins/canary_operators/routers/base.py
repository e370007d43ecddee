"""The traffic router contract: set and read the canary's share of traffic, in percent."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from canary_operators.backend import Backend
from canary_operators.exceptions import RouterError, WeightNotApplied


class TrafficRouter(Backend, ABC):
    """One backend that splits traffic between stable and canary.

    ``set_canary_weight`` sets absolute state (stable gets ``100 - percent``), so it is idempotent
    and safe to retry. ``apply`` sets, then reads back and fails if the weight did not take.
    """

    # True when ``promote()`` makes the canary the stable version by itself (Lambda alias, Argo
    # Rollouts); every other router needs the spec's promote action to fill the stable slot.
    promotes_natively: ClassVar[bool] = False

    @abstractmethod
    def set_canary_weight(self, percent: int) -> None:
        """Send ``percent`` of traffic to the canary and the rest to stable. Idempotent."""

    @abstractmethod
    def get_canary_weight(self) -> int:
        """The canary's share of traffic as the backend reports it now, in percent."""

    def promote(self) -> str | None:
        """Make the canary the stable version natively (a Lambda alias, an Argo Rollout), with all
        traffic on it. Returns what it did, or None when the router has no such notion (the
        default): then the spec's promote action moves the version into the stable slot."""
        return None

    def expected_share(self, percent: int) -> float:
        """The share of requests the canary should serve at ``percent``, for the sample-ratio check.
        A weight-based router serves ``percent``; one that splits by replicas overrides this."""
        return percent / 100

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
