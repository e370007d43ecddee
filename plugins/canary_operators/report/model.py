"""What a report page shows, as plain values (pure): ``data`` fills them from Airflow, ``pages`` draws them.

The run's outcome, who or what decided it, and the rollback latency are derived here from the
tasks' XComs, so the rules can be tested with literal data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from canary_operators.report.charts import decision_look


@dataclass(frozen=True)
class TaskRow:
    task_id: str
    state: str | None
    try_number: int
    start: float | None  # epoch seconds
    end: float | None


@dataclass(frozen=True)
class RunReport:
    dag_id: str
    run_id: str
    release: str
    state: str | None
    start: float | None
    end: float | None
    version: str | None = None
    stable_version: str | None = None
    note: str | None = None
    run_type: str = ""
    triggered_by: str = ""  # the user who triggered it, or how (the API, a schedule)
    conf: dict = field(default_factory=dict)
    gates: tuple[dict, ...] = ()  # each gate's per-look record (XCom "looks"), in task order
    xcoms: dict = field(default_factory=dict)  # {task_id: {key: value}} of the tasks this report reads
    tasks: tuple[TaskRow, ...] = ()
    status: dict | None = None  # the release's status record, when this run owns it

    # -- derived -----------------------------------------------------------------------------------
    def xcom(self, task_id: str, key: str = "return_value"):
        """A task's XCom. In a release across several targets a task is one per target (``rollback``
        is ``eu.rollback``, ``us.rollback``): then the first target's that has it."""
        if task_id in self.xcoms:
            return (self.xcoms.get(task_id) or {}).get(key)
        for full_id in sorted(self.xcoms):
            if full_id.rpartition(".")[2] == task_id and (self.xcoms[full_id] or {}).get(key) is not None:
                return self.xcoms[full_id][key]
        return None

    def task(self, task_id: str) -> TaskRow | None:
        return next((t for t in self.tasks if t.task_id == task_id), None)

    @property
    def duration(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return max(0.0, self.end - self.start)

    def failed_gate(self) -> dict | None:
        """The gate record whose decision was a rollback, if any."""
        return next((g for g in self.gates if (decision_look(g) or {}).get("outcome") == "rollback"), None)

    def outcome(self) -> str:
        """PROMOTED, ROLLED BACK, FAILED (nothing was moved), DRY RUN, NOTHING TO RELEASE, or the run's state."""
        state = (self.state or "").lower()
        if state not in ("success", "failed"):
            return (state or "unknown").upper().replace("_", " ")
        if self.conf.get("dry_run") or (self.xcom("rollback") or {}).get("dry_run"):
            return "DRY RUN"
        if self.xcom("preflight", "nothing_to_release"):
            return "NOTHING TO RELEASE"
        if state == "success":
            return "PROMOTED"
        rollback = self.xcom("rollback") or {}
        if rollback.get("traffic_changed") or self.failed_gate() is not None or any(
                self.xcom(g.get("gate", ""), "fast_rollback") for g in self.gates):
            return "ROLLED BACK"
        return "FAILED"

    def decided_by(self) -> str:
        """Who or what decided the outcome, in one line."""
        gate = self.failed_gate()
        if gate is not None:
            look = decision_look(gate) or {}
            return f"{gate.get('gate')} at {gate.get('weight')}%, {look.get('t') or 0:.0f}s after the shift: {look.get('reason', '')}"
        approvals = [v for task_id, x in sorted(self.xcoms.items()) if task_id.startswith("approve_")
                     for v in [x.get("return_value")] if isinstance(v, dict) and v.get("asked")]
        for answer in approvals:
            who = answer.get("by") or "someone"
            if answer.get("approved") == "Promote" and self.outcome() == "PROMOTED":
                return f"approved by {who}"
            if answer.get("approved") and answer.get("approved") != "Promote":
                return f"{answer['approved']!s} by {who}"
        rollback = self.xcom("rollback") or {}
        if rollback.get("reason"):
            return str(rollback["reason"])
        if self.outcome() == "PROMOTED":
            passed = [g.get("gate") for g in self.gates if (decision_look(g) or {}).get("outcome") == "advance"]
            return "every gate passed" + (f" ({', '.join(map(str, passed))})" if passed else "")
        failure = next((x.get("failure") for x in self.xcoms.values() if isinstance(x.get("failure"), dict)), None)
        if failure:
            return f"{failure.get('task')}: {failure.get('error')}"
        return ""

    def rollback_latency(self) -> float | None:
        """Seconds from the failing verdict to the canary read back at 0%: the gate's own fast reset,
        else the undo task's restore."""
        for g in self.gates:
            fast = self.xcom(str(g.get("gate", "")), "fast_rollback")
            if isinstance(fast, dict) and fast.get("seconds_to_stable") is not None:
                return float(fast["seconds_to_stable"])
        rollback = self.xcom("rollback") or {}
        if rollback.get("seconds_to_stable") is not None:
            return float(rollback["seconds_to_stable"])
        return None

    def weight_points(self) -> list[dict]:
        """The canary's weight over the run: each shift as set and as read back, then the undo or
        promotion. ``target`` is the task group of a release across several targets ('' for one)."""
        points = [{"at": self.start, "set": 0, "read": None, "label": "", "target": ""}] if self.start is not None else []
        by_task = {t.task_id: t for t in self.tasks}
        for t in self.tasks:
            target, _, name = t.task_id.rpartition(".")
            if not name.startswith("shift_to_"):
                continue
            result = self.xcom(t.task_id) or {}
            if result.get("skipped") or result.get("dry_run"):
                continue
            try:
                set_to = int(name.removeprefix("shift_to_"))
            except ValueError:
                continue
            at = result.get("shifted_at") or t.end
            if at is not None:
                points.append({"at": at, "set": set_to, "read": result.get("weight"), "label": "", "target": target})
        for g in self.gates:
            gate = str(g.get("gate", ""))
            fast = self.xcom(gate, "fast_rollback")
            look = decision_look(g) or {}
            if isinstance(fast, dict) and look.get("at"):
                at = look["at"] + float(fast.get("seconds_to_stable") or 0)
                points.append({"at": at, "set": 0, "read": fast.get("weight_after"), "label": f"rollback ({gate})",
                               "target": gate.rpartition(".")[0]})
        for task_id, t in by_task.items():
            target, _, name = task_id.rpartition(".")
            result = self.xcom(task_id) or {}
            if name == "rollback" and result.get("traffic_changed") and t.end is not None:
                labelled = any(p["label"] and p["target"] == target for p in points)
                points.append({"at": t.end, "set": 0, "read": result.get("canary_weight"),
                               "label": "" if labelled else "rollback", "target": target})
            if name == "promote" and t.state == "success" and t.end is not None and not result.get("dry_run"):
                points.append({"at": t.end, "set": 0, "read": 0, "label": "promoted", "target": target})
        return points


@dataclass(frozen=True)
class RunRow:
    run_id: str
    state: str | None
    start: float | None
    note: str | None = None


@dataclass(frozen=True)
class ReleaseRow:
    release: str
    dag_id: str
    error: str = ""  # the spec does not load: why
    phase: str = "idle"
    status_weight: int | None = None
    status_run: str | None = None
    decision: str = ""
    router: str = ""  # the router's read: "canary 5%, stable 95%", or why it could not be read
    router_ok: bool = False
    runs: tuple[RunRow, ...] = ()

    def last_outcome(self) -> str:
        finished = next((r for r in self.runs if r.state in ("success", "failed")), None)
        if finished is None:
            return "no finished run"
        return (finished.note or "").splitlines()[0] if finished.note else finished.state.upper()
