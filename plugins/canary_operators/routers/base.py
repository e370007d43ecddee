"""The traffic router contract (Flagger's router interface, Argo's VerifyWeight):

- ``set_canary_weight(p)``: send ``p`` percent to the canary and the rest to stable. Absolute
  state, so idempotent and safe to retry.
- ``get_weights()``: where the route sends traffic now, both sides and anything else, as the
  backend reports it; a third destination, or both sides at 0, shows instead of being rounded away.
- ``verify(p)``: does the data plane really route ``p``? True, False, or None when this router
  cannot tell. Re-reading the object just written is not verification.
- ``finalize()``: the route's resting state, all traffic on stable. The undo and the guard use it.
- ``promote()``: routers that make the canary the stable version by themselves (Lambda, Argo).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from canary_operators.backend import Backend
from canary_operators.exceptions import RouterError, WeightNotApplied


@dataclass(frozen=True)
class Weights:
    """The route's split in percent, as the backend reports it."""

    stable: int
    canary: int
    other: int = 0  # destinations that are neither (a third server, a mirror): the release never sets them

    def __str__(self) -> str:
        return f"stable {self.stable}%, canary {self.canary}%" + (f", elsewhere {self.other}%" if self.other else "")

    def is_split(self, percent: int) -> bool:
        """Exactly ``percent`` to the canary and the rest to stable."""
        return self.canary == percent and self.stable == 100 - percent and self.other == 0


@dataclass(frozen=True)
class Applied:
    """What ``apply`` found: the split read back, and whether the data plane was verified."""

    weights: Weights
    verified: bool | None  # None: this router cannot verify

    def describe(self) -> str:
        if self.verified is None:
            return f"{self.weights} (read back; this router cannot verify what the data plane does)"
        return f"{self.weights} (verified in the data plane)"


class TrafficRouter(Backend, ABC):
    """One backend that splits traffic between stable and canary."""

    # True when ``promote()`` makes the canary the stable version by itself (Lambda alias, Argo
    # Rollouts); every other router needs the spec's promote action to fill the stable slot.
    promotes_natively: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        reads = {name for klass in cls.__mro__ if klass is not TrafficRouter
                 for name in ("get_weights", "get_canary_weight") if name in vars(klass)}
        if not reads and not getattr(cls, "__abstractmethods__", None) and "Abstract" not in cls.__name__:
            raise TypeError(f"{cls.__name__} must implement get_weights()")

    @abstractmethod
    def set_canary_weight(self, percent: int) -> None:
        """Send ``percent`` of traffic to the canary and the rest to stable. Idempotent."""

    def get_weights(self) -> Weights:
        """Both sides as the backend reports them. Routers implement this (older ones implement
        ``get_canary_weight``, from which this derives the stable side)."""
        canary = self.get_canary_weight()
        return Weights(stable=100 - canary, canary=canary)

    def get_canary_weight(self) -> int:
        """The canary's share of traffic as the backend reports it now, in percent."""
        return self.get_weights().canary

    def verify(self, percent: int) -> bool | None:
        """Does the data plane route ``percent`` to the canary? None: this router cannot tell."""
        return None

    def finalize(self) -> None:
        """Back to the resting state: all traffic on stable. Idempotent."""
        self.set_canary_weight(0)

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
        self.get_weights()

    def apply_verified(self, percent: int) -> Applied:
        """Set the weight, read both sides back, and verify the data plane where the router can."""
        if not 0 <= percent <= 100:
            raise RouterError(f"canary weight {percent} is not a percentage")
        self.set_canary_weight(percent)
        return self._checked(percent, f"set canary weight {percent}%", f"route {percent}% to the canary")

    def restore(self) -> Applied:
        """``finalize`` and check it: all traffic back on stable, read back and verified where the
        router can. Every path that puts traffic back (the gate, the undo, the guard) uses this."""
        self.finalize()
        return self._checked(0, "put all traffic back on stable", "send everything to stable", verify_may_fail=True)

    def _checked(self, percent: int, did: str, meant: str, verify_may_fail: bool = False) -> Applied:
        """Read back what ``did`` wrote, then ask the data plane; either answer wrong raises.
        ``verify_may_fail``: once stable reads back 100%, a verification that errors (its API away)
        is "cannot verify", never a reason to call traffic unrestored."""
        weights = self.get_weights()
        if not weights.is_split(percent):
            raise WeightNotApplied(f"{self.type_name}: {did} but it reads back {weights}")
        try:
            verified = self.verify(percent)
        except RouterError:
            if not verify_may_fail:
                raise
            verified = None
        if verified is False:
            raise WeightNotApplied(f"{self.type_name}: the route reads back {weights}, but the data plane does not "
                                   f"{meant}")
        return Applied(weights, verified)

    def apply(self, percent: int) -> int:
        """``apply_verified`` for callers that need only the canary's weight read back."""
        return self.apply_verified(percent).weights.canary
