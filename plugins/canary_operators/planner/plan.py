"""The plan's values: the live traffic it is made for, and per gate when it can decide and its timeout."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class Traffic:
    """Live traffic before the rollout: total requests per second and the baseline's error rate.
    None: unknown (the provider is down or has no data).

    ``business_rates``: per business check (by name), the baseline's events per request;
    ``dispersions``: per ``unit: amount`` check, the amount's Var/mean per request. A business
    check missing from them is planned for its ``min_requests`` alone; ``unmeasured`` says why."""

    requests_per_second: float | None
    error_rate: float | None = None
    source: str = ""
    business_rates: Mapping[str, float] = field(default_factory=dict)
    dispersions: Mapping[str, float] = field(default_factory=dict)
    unmeasured: Mapping[str, str] = field(default_factory=dict)  # business check name -> why
    # Per latency check from a histogram: the stable arm's bucket (lower, upper edge) holding the
    # check's quantile. A check cannot resolve a ratio finer than upper / lower there.
    latency_buckets: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def known(self) -> bool:
        return bool(self.requests_per_second) and self.requests_per_second > 0 and self.error_rate is not None


@dataclass(frozen=True)
class GatePlan:
    weight: int
    canary_rps: float | None  # requests per second the canary gets at this weight
    min_requests_seconds: float | None  # since the shift, until every check has min_requests
    needed_seconds: float | None  # since the shift, until a healthy canary advances; None: never
    gate_timeout: float  # what the gate applies
    evidence: bool  # this gate needs positive evidence to pass


@dataclass(frozen=True)
class Plan:
    mode: str  # off | warn | adapt
    traffic: Traffic
    gates: tuple[GatePlan, ...]
    lines: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    def gate_timeout(self, weight: int) -> float | None:
        return next((g.gate_timeout for g in self.gates if g.weight == weight), None)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["gates"], d["lines"], d["warnings"] = list(d["gates"]), list(d["lines"]), list(d["warnings"])
        d["traffic"] = {**d["traffic"], "business_rates": dict(self.traffic.business_rates),
                        "dispersions": dict(self.traffic.dispersions), "unmeasured": dict(self.traffic.unmeasured)}
        d["gate_timeouts"] = {str(g.weight): g.gate_timeout for g in self.gates}  # what the gates read
        return d


def planned_gate_timeout(plan: Mapping | None, weight: int) -> float | None:
    """This gate's timeout from a plan as pushed to XCom (``Plan.to_dict``); None: no plan."""
    if not isinstance(plan, Mapping):
        return None
    value = (plan.get("gate_timeouts") or {}).get(str(weight))
    return float(value) if isinstance(value, (int, float)) and value > 0 else None
