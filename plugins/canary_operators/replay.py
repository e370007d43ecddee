"""Replay: judge a run's recorded looks again under a changed spec, and say what would have been decided.

Pure (no Airflow import): the input is the per-look records (``looks.py``) as a run left them in
XCom, exported through the REST API or read from a JSON file; the spec is any ``ReleaseSpec``
(other thresholds, alpha, bake time, gate timeout, checks). Each look is judged with what was
measured then; the gate's clock is taken from the look's time since the shift, so a changed bake
time or gate timeout applies too. A check the record never measured judges as "no measurement".

A recorded gate ends at its decision, so a replay that would have gone on holding can only say
so: what happened after that was never measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from canary_operators.judge import Gate, judge
from canary_operators.looks import observed_from_dict


@dataclass(frozen=True)
class ReplayedLook:
    n: int
    t: float
    decided: str  # the outcome recorded
    would: str  # the outcome under the changed spec
    reason: str  # the changed spec's reason


@dataclass(frozen=True)
class ReplayedGate:
    dag_id: str
    run_id: str
    gate: str
    weight: int
    looks: tuple[ReplayedLook, ...]
    dropped: int = 0

    @property
    def decided(self) -> ReplayedLook | None:
        return _first_decision(self.looks, "decided")

    @property
    def would(self) -> ReplayedLook | None:
        return _first_decision(self.looks, "would")

    @property
    def changed(self) -> bool:
        a, b = self.decided, self.would
        return (a and (a.decided, a.n)) != (b and (b.would, b.n))


def _first_decision(looks: Iterable[ReplayedLook], field: str) -> ReplayedLook | None:
    return next((lk for lk in looks if getattr(lk, field) in ("advance", "rollback")), None)


def gate_for(look: dict, weight: int, spec) -> Gate:
    """The gate as it stood at ``look`` under ``spec``: baked and timed out from the look's time."""
    state = look.get("gate") or {}
    t = float(look.get("t") or 0.0)
    watching = bool(look.get("watching"))
    return Gate(weight=look.get("weight", weight), baked=t >= spec.bake_time,
                timed_out=not watching and t >= spec.gate_timeout, hard_timed_out=not watching and t >= 2 * spec.gate_timeout,
                final=spec.evidence_at == "every_gate" or bool(state.get("final", True)),
                expected_share=state.get("expected_share"), split_failing_for=state.get("split_failing_for"))


def replay_gate(record: dict, spec, dag_id: str = "", run_id: str = "") -> ReplayedGate:
    """Judge every recorded look of one gate under ``spec``."""
    queries = record.get("queries") or {}
    replayed = []
    for look in record.get("looks") or []:
        seen = {c["check"]: c.get("observed") for c in look.get("checks", [])}
        observed = {check.name: observed_from_dict(check.name, seen.get(check.name), queries.get(check.name))
                    for check in spec.checks}
        step_counts = observed_from_dict("sample_ratio", seen.get("sample_ratio")) if "sample_ratio" in seen else None
        decision = judge(spec.checks, observed, gate_for(look, record.get("weight", 0), spec), spec.sample_ratio,
                         spec.min_score, step_counts)
        replayed.append(ReplayedLook(n=int(look.get("n") or len(replayed) + 1), t=float(look.get("t") or 0.0),
                                     decided=look.get("outcome", "?"), would=decision.outcome.value, reason=decision.reason))
    return ReplayedGate(dag_id, run_id, record.get("gate", "?"), int(record.get("weight") or 0), tuple(replayed),
                        int(record.get("dropped") or 0))


def runs_of(data) -> list[dict]:
    """The runs in an export: ``{"runs": [{"dag_id", "run_id", "gates": {task_id: record}}]}``, one
    run's ``{"dag_id", "run_id", "gates": ...}``, a list of gate records, or one gate record."""
    if isinstance(data, dict) and "runs" in data:
        return list(data["runs"])
    if isinstance(data, dict) and "gates" in data:
        return [data]
    if isinstance(data, dict) and "looks" in data:
        data = [data]
    if isinstance(data, list) and all(isinstance(r, dict) and "looks" in r for r in data):
        return [{"dag_id": "", "run_id": "", "gates": {r.get("gate", f"gate_{i}"): r for i, r in enumerate(data)}}]
    raise ValueError("not a record of looks: expected {'runs': [...]}, a run {'gates': {...}}, or gate records "
                     "with 'looks'")


def replay(data, spec) -> list[ReplayedGate]:
    """Every gate of every run in ``data`` (see ``runs_of``), in the order the gates ran."""
    gates = []
    for run in runs_of(data):
        records = run.get("gates") or {}
        for task_id in sorted(records, key=lambda t: (records[t] or {}).get("shifted_at") or 0):
            if records[task_id]:
                gates.append(replay_gate(records[task_id], spec, run.get("dag_id", ""), run.get("run_id", "")))
    return gates


# -- side by side ---------------------------------------------------------------------------------

def _when(look: ReplayedLook | None, outcome_field: str) -> str:
    if look is None:
        return "no decision in the recorded looks (held)"
    return f"{getattr(look, outcome_field).upper()} at look {look.n} ({look.t:.0f} s)"


def render(gates: list[ReplayedGate], width: int = 100) -> str:
    """Per gate: each look's recorded and replayed outcome side by side, then when each decided."""
    out = []
    for g in gates:
        head = " ".join(p for p in (g.dag_id, g.run_id) if p)
        out.append(f"{head + ' ' if head else ''}{g.gate} ({g.weight}%)"
                   + (f" [{g.dropped} looks thinned out of the record]" if g.dropped else ""))
        out.append(f"  {'look':>4} {'t':>6}  {'decided':<9} {'would':<9} why (changed spec)")
        for lk in g.looks:
            mark = " " if lk.decided == lk.would else "*"
            why = lk.reason if len(lk.reason) <= width - 36 else lk.reason[: width - 37] + "…"
            out.append(f"{mark} {lk.n:>4} {lk.t:>5.0f}s  {lk.decided:<9} {lk.would:<9} {why}")
        out.append(f"  decided:    {_when(g.decided, 'decided')}")
        out.append(f"  would have: {_when(g.would, 'would')}" + ("" if g.changed else "  (the same)"))
        out.append("")
    changed = sum(1 for g in gates if g.changed)
    out.append(f"{changed} of {len(gates)} gates would have decided differently")
    return "\n".join(out)
