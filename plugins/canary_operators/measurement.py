"""The one shape every metrics provider returns: a value and a request count per arm."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ArmSample:
    """One arm (canary or baseline) of one check over the gate's window.

    - ``value``: the check's value (an error ratio, a latency in seconds, …); None = no data.
    - ``requests``: requests the arm served in the window; None when unknown.
    - ``events``: for checks that are a count per request (5xx for error_rate, the metric's
      increase for business checks), that count, so ``value == events / requests``.
    - ``buckets``: for latency from a histogram, ``((upper_bound, cumulative_count), …)`` sorted
      by bound and ending with ``inf``; lets the judge put a confidence interval on a quantile.
    - ``periods``: for a check the provider reduces to one number per period (a percentile, a
      resource, a custom query, an amount per request), that number per period:
      ``((period_start_unix_seconds, value), …)``, oldest first, periods of equal length aligned
      across arms. The judge pairs the arms' periods by start time and tests them sequentially.
    """

    value: float | None
    requests: float | None
    query: str
    events: float | None = None
    buckets: tuple[tuple[float, float], ...] | None = None
    periods: tuple[tuple[float, float], ...] | None = None

    def __post_init__(self):
        # NaN and infinities are "no data", never a number to compare.
        for name in ("value", "requests", "events"):
            v = getattr(self, name)
            if v is not None and not math.isfinite(v):
                object.__setattr__(self, name, None)
        if self.buckets is not None:
            object.__setattr__(self, "buckets", tuple((float(le), float(c)) for le, c in self.buckets))
        if self.periods is not None:  # a period without a finite value is a gap: left out
            object.__setattr__(self, "periods", tuple((float(t), float(v)) for t, v in self.periods
                                                      if v is not None and math.isfinite(float(v))))


@dataclass(frozen=True)
class Measurement:
    """Canary and baseline for one check, over the same window."""

    check: str
    canary: ArmSample
    baseline: ArmSample
    window_seconds: float

    def to_dict(self) -> dict:
        return asdict(self)
