"""The judge's values: verdicts and outcomes, where the gate stands, and the frozen results that carry their reason."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Union

from canary_operators.measurement import Measurement


class Verdict(str, Enum):
    PASS = "pass"
    FAIL = "fail"
    NO_DATA = "no_data"
    INCONCLUSIVE = "inconclusive"
    ERROR = "error"
    IGNORED = "ignored"


HOLDING = (Verdict.NO_DATA, Verdict.INCONCLUSIVE, Verdict.ERROR)


class Outcome(str, Enum):
    ADVANCE = "advance"
    HOLD = "hold"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class ProviderFailure:
    """The provider raised for this check; ``exhausted`` once its policy must apply now: the backend
    has been down for ``max_provider_outage``, or it rejected the query (retrying cannot fix that)."""

    message: str
    exhausted: bool = False


@dataclass(frozen=True)
class Gate:
    """Where the gate stands: the weight it judges and how long it has been there."""

    weight: float  # percent of traffic set on the canary
    baked: bool  # the minimum bake time has passed
    timed_out: bool = False  # the gate timeout has passed: policies apply
    hard_timed_out: bool = False  # twice the gate timeout: even "hold" gives up
    # The last gate before promotion: a pass needs positive evidence (an inconclusive check holds).
    # Earlier gates, with limited exposure, advance after the bake time when nothing shows harm
    # and every inconclusive check's point estimate is within bounds.
    final: bool = True
    # The sample-ratio check: the share of requests the router says the canary should serve (None:
    # the weight), and for how long the split has already looked wrong on consecutive looks
    # (None: it did not at the previous look).
    expected_share: float | None = None
    split_failing_for: float | None = None


@dataclass(frozen=True)
class CheckResult:
    check: str
    kind: str
    verdict: Verdict
    reason: str
    critical: bool = True
    canary_value: float | None = None
    baseline_value: float | None = None
    canary_requests: float | None = None
    baseline_requests: float | None = None
    threshold: str = ""
    statistic: str = ""
    statistic_value: float | None = None
    p_value: float | None = None
    bounds: dict = field(default_factory=dict)
    # For an inconclusive check: does the point estimate sit within bounds? An earlier gate may
    # advance on such a check; one whose estimate looks bad keeps the canary at the low weight.
    estimate_within_bounds: bool | None = None
    canary_query: str = ""
    baseline_query: str = ""


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str
    checks: tuple[CheckResult, ...]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["outcome"] = self.outcome.value
        d["checks"] = list(d["checks"])  # a list stays a plain JSON list in XCom
        for c in d["checks"]:
            c["verdict"] = c["verdict"].value
            for key in ("statistic_value", "p_value"):
                if isinstance(c[key], float) and not math.isfinite(c[key]):
                    c[key] = None
        return d

    def log_line(self) -> str:
        """One readable line: the outcome, then per check its verdict, reason and queries."""
        parts = [f"{self.outcome.value.upper()}: {self.reason}"]
        for c in self.checks:
            parts.append(
                f"[{c.check}] {c.verdict.value}: {c.reason}"
                f" (canary query: {c.canary_query or '-'}; baseline query: {c.baseline_query or '-'})"
            )
        return " | ".join(parts)


Observed = Union[Measurement, ProviderFailure, None]
