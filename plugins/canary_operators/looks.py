"""The per-look record of a gate: what each look measured, judged and decided, as compact JSON.

Pure (no Airflow import): the gate pushes it to XCom (key ``looks``), the report draws it, and
replay re-judges it. One record per gate::

    {"gate": "gate_5", "weight": 5, "shifted_at": 1764500000.0, "dropped": 0,
     "queries": {"errors": {"canary": "...", "baseline": "..."}},
     "looks": [{"n": 1, "at": ..., "t": 12.0, "weight": 5, "outcome": "hold", "reason": "...",
                "gate": {"baked": false, "timed_out": false, ...},
                "checks": [{"check": "errors", "kind": "error_rate", "verdict": "inconclusive", ...,
                            "observed": {"window_seconds": 12.0, "canary": {...}, "baseline": {...}}}]}]}

A check's fields are the judge's ``CheckResult`` (its queries moved once to ``queries``);
``observed`` is what the judge saw, so a look can be judged again: a ``Measurement`` of both arms
(value, requests, events, buckets, periods), ``{"error": ..., "exhausted": ...}`` for a provider
failure, or null for no measurement. Long gates are thinned (``GateLooks.add``): the first and the
last look and every change of verdict stay, the rest is thinned evenly, and ``dropped`` counts
what went.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from canary_operators.judge import Gate, Observed, ProviderFailure
from canary_operators.measurement import ArmSample, Measurement

LOOKS_KEY = "looks"  # the XCom key of a gate's record
MAX_LOOKS = 120  # a gate polled every 15 s keeps every look for half an hour
MAX_BYTES = 200_000  # well inside what an XCom in Airflow's database holds comfortably
_QUERY_FIELDS = ("canary_query", "baseline_query")
# The gate's state that a look was judged in; replay recomputes what a changed spec changes.
GATE_FIELDS = ("baked", "timed_out", "hard_timed_out", "final", "expected_share", "split_failing_for")


def observed_to_dict(observed: Observed) -> dict | None:
    """What the judge saw for one check, as JSON (queries left out: the record keeps them once)."""
    if observed is None:
        return None
    if isinstance(observed, ProviderFailure):
        return {"error": observed.message, "exhausted": observed.exhausted}
    arms = {}
    for name in ("canary", "baseline"):
        arm: ArmSample = getattr(observed, name)
        arms[name] = {k: v for k, v in (("value", arm.value), ("requests", arm.requests), ("events", arm.events),
                                        ("buckets", _pairs(arm.buckets)), ("periods", _pairs(arm.periods)))
                      if v is not None}
    return {"window_seconds": observed.window_seconds, **arms}


def observed_from_dict(check: str, data: dict | None, queries: dict | None = None) -> Observed:
    """The inverse of ``observed_to_dict``: what the judge can take again."""
    if data is None:
        return None
    if "error" in data:
        return ProviderFailure(data["error"], bool(data.get("exhausted")))
    queries = queries or {}

    def arm(name: str) -> ArmSample:
        a = data.get(name) or {}
        return ArmSample(value=a.get("value"), requests=a.get("requests"), query=queries.get(name, ""),
                         events=a.get("events"), buckets=_tuples(a.get("buckets")), periods=_tuples(a.get("periods")))

    return Measurement(check=check, canary=arm("canary"), baseline=arm("baseline"),
                       window_seconds=float(data.get("window_seconds") or 0.0))


def gate_state(gate: Gate) -> dict:
    return {name: getattr(gate, name) for name in GATE_FIELDS}


def look_record(evidence: dict, observed: dict[str, dict | None], gate: dict, at: float) -> dict:
    """One look as the record keeps it. ``evidence`` is the look's XCom evidence (``weight``,
    ``elapsed_seconds``, … and the judge's ``Decision.to_dict()``); ``observed`` is JSON per check
    (``observed_to_dict``); ``gate`` the gate's state (``gate_state``)."""
    checks = []
    for c in evidence.get("checks", []):
        entry = {k: v for k, v in c.items() if k not in _QUERY_FIELDS}
        entry["observed"] = observed.get(c["check"])
        checks.append(entry)
    record = {"at": round(at, 3), "t": evidence.get("elapsed_seconds"), "weight": evidence.get("weight"),
              "outcome": evidence.get("outcome"), "reason": evidence.get("reason", ""), "gate": gate, "checks": checks}
    if evidence.get("watching"):
        record["watching"] = True
    return record


def queries_of(evidence: dict) -> dict:
    """Each check's queries, from a look's evidence: ``{check: {"canary": ..., "baseline": ...}}``."""
    return {c["check"]: {"canary": c.get("canary_query", ""), "baseline": c.get("baseline_query", "")}
            for c in evidence.get("checks", []) if c.get("canary_query") or c.get("baseline_query")}


def _signature(look: dict) -> tuple:
    return look.get("outcome"), tuple((c.get("check"), c.get("verdict")) for c in look.get("checks", []))


@dataclass
class GateLooks:
    """A gate's looks, kept within ``max_looks`` and ``max_bytes`` (thinned as they come)."""

    gate: str
    weight: int
    shifted_at: float
    queries: dict = field(default_factory=dict)
    looks: list = field(default_factory=list)
    dropped: int = 0
    max_looks: int = MAX_LOOKS
    max_bytes: int = MAX_BYTES
    _count: int = 0
    _sizes: dict = field(default_factory=dict)  # look number -> its size as JSON, measured once

    def add(self, evidence: dict, observed: dict[str, dict | None], gate: dict, at: float) -> dict:
        """Record one look; returns its record."""
        for check, q in queries_of(evidence).items():
            self.queries.setdefault(check, q)
        self._count += 1
        record = json_safe({"n": self._count, **look_record(evidence, observed, gate, at)})
        self._sizes[self._count] = len(json.dumps(record, separators=(",", ":")))
        self.looks.append(record)
        self._thin()
        return record

    def to_dict(self) -> dict:
        return {"gate": self.gate, "weight": self.weight, "shifted_at": self.shifted_at, "dropped": self.dropped,
                "queries": self.queries, "looks": list(self.looks)}

    @classmethod
    def from_dict(cls, data: dict) -> "GateLooks":
        looks = list(data.get("looks") or [])
        return cls(gate=data["gate"], weight=data["weight"], shifted_at=data["shifted_at"],
                   queries=dict(data.get("queries") or {}), looks=looks, dropped=int(data.get("dropped") or 0),
                   _count=max((lk.get("n", 0) for lk in looks), default=0))

    def _too_big(self) -> bool:
        if len(self.looks) > self.max_looks:
            return True
        return len(self.looks) > 2 and sum(self._sizes.get(lk.get("n"), 0) for lk in self.looks) > self.max_bytes

    def _thin(self) -> None:
        """Drop every other look that repeats its predecessor's verdicts (first and last stay),
        until the record fits; if the changes alone do not fit, thin them evenly too."""
        while self._too_big():
            before = len(self.looks)
            self.looks = self._halve(keep_changes=True)
            if len(self.looks) == before:
                self.looks = self._halve(keep_changes=False)
            self.dropped += before - len(self.looks)
            if len(self.looks) == before:  # two looks that alone exceed the cap: keep them
                return

    def _halve(self, keep_changes: bool) -> list:
        kept, droppable_seen = [], 0
        last = len(self.looks) - 1
        for i, look in enumerate(self.looks):
            protected = i in (0, last) or (keep_changes and _signature(look) != _signature(self.looks[i - 1]))
            if protected:
                kept.append(look)
                continue
            droppable_seen += 1
            if droppable_seen % 2 == 0:  # every other one goes: the rest stays evenly spread
                kept.append(look)
        return kept


def _pairs(values) -> list | None:
    return None if values is None else [list(v) for v in values]


def json_safe(value):
    """Strict JSON (PostgreSQL's json type refuses ``Infinity``): a histogram's last bound
    ``inf`` becomes ``"+Inf"`` (as Prometheus writes it; ``float()`` reads it back), NaN null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _tuples(values) -> tuple | None:
    return None if values is None else tuple(tuple(v) for v in values)


# -- one readable line per look ------------------------------------------------------------------

_VERDICT_WORDS = {"no_data": "no data", "fail": "failed", "pass": "passes"}


def value_text(kind: str, value: float | None) -> str:
    """A check's value as people read it: a rate or share in %, a latency in ms."""
    if value is None:
        return "-"
    if kind in ("error_rate", "sample_ratio"):
        return f"{value * 100:.2f}%"
    if kind == "latency":
        return f"{value * 1000:.0f} ms"
    return f"{value:.4g}"


def _limit(threshold: str) -> float | None:
    """The number in the judge's threshold text (``canary - baseline <= 0.5 pp``), if any."""
    import re

    found = re.search(r"<=\s*([0-9.]+)", threshold or "")
    return float(found.group(1)) if found else None


def comparison_text(check: dict) -> str:
    """``3.23% vs 0.24% (+2.99 pp > 0.5 pp)``: canary against baseline, and against the threshold."""
    kind, c, b = check.get("kind", ""), check.get("canary_value"), check.get("baseline_value")
    text = f"{value_text(kind, c)} vs {value_text(kind, b)}"
    if c is None or b is None:
        return text
    limit = _limit(check.get("threshold", ""))
    if kind == "error_rate":
        diff = (c - b) * 100
        return text + (f" ({diff:+.2f} pp {'>' if diff > limit else '<='} {limit:g} pp)" if limit is not None
                       else f" ({diff:+.2f} pp)")
    if kind in ("latency", "business", "resource") and b:
        ratio = c / b
        return text + (f" (x{ratio:.2f} {'>' if ratio > limit else '<='} {limit:g})" if limit is not None
                       else f" (x{ratio:.2f})")
    return text


def check_text(check: dict) -> str:
    """``errors inconclusive (0.21% vs 0.18%, n=2850)``."""
    verdict = check.get("verdict", "")
    inner = [] if check.get("canary_value") is None else [f"{value_text(check.get('kind', ''), check.get('canary_value'))} "
                                                          f"vs {value_text(check.get('kind', ''), check.get('baseline_value'))}"]
    if check.get("canary_requests") is not None:
        inner.append(f"n={check['canary_requests']:.0f}")
    if verdict == "error":
        inner = [(check.get("reason") or "")[:80]]
    return f"{check.get('check')} {_VERDICT_WORDS.get(verdict, verdict)}" + (f" ({', '.join(inner)})" if inner else "")


def deciding_checks(look: dict) -> list[dict]:
    """The checks that explain a look's outcome: the failures of a rollback, the holding checks of a hold."""
    checks = look.get("checks", [])
    if look.get("outcome") == "rollback":
        failed = [c for c in checks if c.get("verdict") == "fail" and c.get("critical", True)]
        return failed or [c for c in checks if c.get("verdict") == "fail"]
    if look.get("outcome") == "hold":
        return [c for c in checks if c.get("verdict") in ("no_data", "inconclusive", "error")]
    return []


def look_line(gate: str, look: dict) -> str:
    """``gate_5 look 7 at 35s: HOLD – errors inconclusive (0.21% vs 0.18%, n=2850)``."""
    outcome = (look.get("outcome") or "?").upper()
    deciding = deciding_checks(look)
    if deciding:
        why = "; ".join(check_text(c) for c in deciding)
    else:
        passing = sum(1 for c in look.get("checks", []) if c.get("verdict") == "pass")
        reason = look.get("reason", "")
        why = reason if len(reason) <= 60 else f"{passing} of {len(look.get('checks', []))} checks pass"
    prefix = "watching" if look.get("watching") else f"look {look.get('n', '?')}"
    return f"{gate} {prefix} at {look.get('t') or 0:.0f}s: {outcome} – {why}"


def looks_ref(dag_id: str, run_id: str, task_id: str) -> dict:
    """Where a gate's record is, for the status record: the XCom ``looks`` of this task instance."""
    return {"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "key": LOOKS_KEY}
