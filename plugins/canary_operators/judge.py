"""The gate's decision: pure Python, no Airflow import, so it can be tested and replayed alone.

``judge(checks, measurements, baked)`` → ``Decision``. Edge cases come first, by name: a missing
measurement or a thin arm is NO_DATA (hold), never a pass. A failing check fails the gate at once,
even during the bake time; the gate passes only when every check passes after the bake time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from typing import Mapping, Sequence

from canary_operators.measurement import Measurement
from canary_operators.spec import BusinessCheck, ErrorRateCheck, LatencyCheck, ResourceCheck


class Verdict(str, Enum):
    PASS = "pass"
    FAIL = "fail"
    NO_DATA = "no_data"


class Outcome(str, Enum):
    ADVANCE = "advance"
    HOLD = "hold"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class CheckResult:
    check: str
    kind: str
    verdict: Verdict
    reason: str
    canary_value: float | None = None
    baseline_value: float | None = None
    canary_requests: float | None = None
    baseline_requests: float | None = None
    threshold: str = ""
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
        return d

    def log_line(self) -> str:
        """One readable line: the outcome, then per check its values, threshold, verdict and query."""
        parts = [f"{self.outcome.value.upper()}: {self.reason}"]
        for c in self.checks:
            parts.append(
                f"[{c.check}] {c.verdict.value}: {c.reason}"
                f" (canary query: {c.canary_query or '-'}; baseline query: {c.baseline_query or '-'})"
            )
        return " | ".join(parts)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.2f}%"


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _thin(check, m: Measurement) -> str | None:
    """Why this measurement cannot be judged yet, or None."""
    for arm_name, arm in (("canary", m.canary), ("baseline", m.baseline)):
        if arm.value is None:
            return f"no {arm_name} data yet"
        if check.min_requests and (arm.requests is None or arm.requests < check.min_requests):
            seen = "unknown" if arm.requests is None else f"{arm.requests:.0f}"
            return f"{arm_name} has {seen} requests, needs {check.min_requests}"
    return None


def _ratio_verdict(c: float, b: float, min_ratio: float | None, max_ratio: float | None) -> tuple[bool, str]:
    if b == 0:
        # A zero baseline makes any ratio infinite; only an equal canary is within bounds.
        ratio = 1.0 if c == 0 else float("inf")
    else:
        ratio = c / b
    bad_high = max_ratio is not None and ratio > max_ratio
    bad_low = min_ratio is not None and ratio < min_ratio
    return (not (bad_high or bad_low)), f"ratio {ratio:.3g}"


def evaluate_check(check, m: Measurement | None) -> CheckResult:
    """Judge one check. Pure: same inputs, same result."""
    base = dict(check=check.name, kind=check.kind)
    if m is None:
        return CheckResult(**base, verdict=Verdict.NO_DATA, reason="no measurement")
    base.update(
        canary_value=m.canary.value,
        baseline_value=m.baseline.value,
        canary_requests=m.canary.requests,
        baseline_requests=m.baseline.requests,
        canary_query=m.canary.query,
        baseline_query=m.baseline.query,
    )
    if isinstance(check, ErrorRateCheck):
        threshold = f"canary - baseline <= {check.max_increase_pp:g} pp"
    elif isinstance(check, BusinessCheck):
        bounds = [f">= {check.min_ratio:g}" if check.min_ratio else "", f"<= {check.max_ratio:g}" if check.max_ratio else ""]
        threshold = "canary/baseline " + " and ".join(b for b in bounds if b)
    else:
        threshold = f"canary/baseline <= {check.max_ratio:g}"
    base["threshold"] = threshold

    thin = _thin(check, m)
    if thin:
        return CheckResult(**base, verdict=Verdict.NO_DATA, reason=thin)

    c, b = m.canary.value, m.baseline.value
    n = f"(n={m.canary.requests:.0f} vs {m.baseline.requests:.0f})" if m.canary.requests is not None and m.baseline.requests is not None else ""
    if isinstance(check, ErrorRateCheck):
        increase_pp = (c - b) * 100
        ok = increase_pp <= check.max_increase_pp
        sign = "<=" if ok else ">"
        reason = f"error rate {_pct(c)} vs baseline {_pct(b)} ({increase_pp:+.2f} pp {sign} {check.max_increase_pp:g} pp tolerance) {n}"
    elif isinstance(check, LatencyCheck):
        ok, ratio = _ratio_verdict(c, b, None, check.max_ratio)
        label = f"p{int(check.quantile * 100)}"
        reason = f"{label} {c * 1000:.1f} ms vs baseline {b * 1000:.1f} ms ({ratio}, max {check.max_ratio:g}) {n}"
    elif isinstance(check, BusinessCheck):
        ok, ratio = _ratio_verdict(c, b, check.min_ratio, check.max_ratio)
        reason = f"{check.metric or 'value'} {_num(c)} vs baseline {_num(b)} ({ratio}; {threshold}) {n}"
    elif isinstance(check, ResourceCheck):
        ok, ratio = _ratio_verdict(c, b, None, check.max_ratio)
        reason = f"{check.resource} {_num(c)} vs baseline {_num(b)} ({ratio}, max {check.max_ratio:g})"
    else:  # pragma: no cover - the spec's discriminated union admits nothing else
        raise TypeError(f"unknown check kind {check.kind!r}")
    return CheckResult(**base, verdict=Verdict.PASS if ok else Verdict.FAIL, reason=reason.strip())


def judge(checks: Sequence, measurements: Mapping[str, Measurement | None], baked: bool) -> Decision:
    """Decide the gate: any failing check rolls back; all passing after the bake advances; else hold."""
    results = tuple(evaluate_check(check, measurements.get(check.name)) for check in checks)
    failed = [r for r in results if r.verdict is Verdict.FAIL]
    if failed:
        return Decision(Outcome.ROLLBACK, "; ".join(f"{r.check}: {r.reason}" for r in failed), results)
    waiting = [r for r in results if r.verdict is Verdict.NO_DATA]
    if waiting:
        return Decision(Outcome.HOLD, "; ".join(f"{r.check}: {r.reason}" for r in waiting), results)
    if not baked:
        return Decision(Outcome.HOLD, "all checks pass; baking", results)
    return Decision(Outcome.ADVANCE, "all checks pass after the bake time", results)
