"""The one shape every metrics provider returns: a value and a request count per arm."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ArmSample:
    """One arm (canary or baseline) of one check over the gate's window.

    ``value`` is None when the backend has no data for this arm. ``requests`` is the number of
    requests the arm served in the window (None when unknown); ``errors`` the 5xx among them.
    """

    value: float | None
    requests: float | None
    query: str
    errors: float | None = None

    def __post_init__(self):
        # NaN and infinities are "no data", never a number to compare.
        for name in ("value", "requests", "errors"):
            v = getattr(self, name)
            if v is not None and not math.isfinite(v):
                object.__setattr__(self, name, None)


@dataclass(frozen=True)
class Measurement:
    """Canary and baseline for one check, over the same window."""

    check: str
    canary: ArmSample
    baseline: ArmSample
    window_seconds: float

    def to_dict(self) -> dict:
        return asdict(self)
