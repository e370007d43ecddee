"""The one-line outcome of a run, composed from its records (the tasks' XComs). Pure: no Airflow import.

    ROLLED BACK v3 at 5% after 35 s: errors 3.23% vs 0.24% (+2.99 pp > 0.5 pp)
    PROMOTED v11 in 6m12s, approved by alice
    ABORTED (tooling): preflight: the traffic API at 127.0.0.1:8404 is unreachable
    REFUSED: conf.colour: unknown key

A bad build (a check failed, a person rolled back) reads differently from the tooling failing
(a router or metrics backend down, a spec error), so nobody debugs a build that was never judged.
The listener sets it as the DAG run's note; notifications and the report show the same line.
"""

from __future__ import annotations

from dataclasses import dataclass

from canary_operators.looks import comparison_text, deciding_checks

UNSAFE_PREFIX = "TRAFFIC NOT RESTORED:"  # as safety.UNSAFE_PREFIX (kept apart: safety imports tenacity)
MAX_LENGTH = 300  # a note is shown in the run's header: one line


@dataclass(frozen=True)
class RunFacts:
    """What the run itself says, besides its tasks' records."""

    state: str  # "success", "failed", "running"
    conf: dict | None = None
    duration_seconds: float | None = None


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def split_by_group(records: dict[str, dict]) -> dict[str, dict[str, dict]]:
    """``{"eu.gate_5": …}`` → ``{"eu": {"gate_5": …}}``; tasks outside a group under ``""``."""
    groups: dict[str, dict[str, dict]] = {}
    for task_id, keys in records.items():
        group, _, base = task_id.rpartition(".")
        groups.setdefault(group, {})[base] = keys
    return groups


def compose(records: dict[str, dict], run: RunFacts) -> str:
    """The run's one line. ``records``: task id → {XCom key → value}, as the run left them."""
    groups = split_by_group(records)
    shared = groups.pop("", {})
    if not groups:
        return _clip(_one(shared, run))
    lines = [f"{name}: {_one({**shared, **tasks}, run)}" for name, tasks in sorted(groups.items())]
    return _clip("; ".join(lines))


def _clip(line: str) -> str:
    line = " ".join(line.split())
    return line if len(line) <= MAX_LENGTH else line[: MAX_LENGTH - 1] + "…"


def _version(tasks: dict, run: RunFacts) -> str:
    resolved = (tasks.get("preflight") or {}).get("return_value") or {}
    return str(resolved.get("version") or (run.conf or {}).get("version") or "?")


def _gate_ids(tasks: dict) -> list[str]:
    return sorted((t for t in tasks if t.startswith(("gate_", "approve_"))), key=lambda t: int(t.rsplit("_", 1)[1])
                  if t.rsplit("_", 1)[1].isdigit() else 0)


def _failures(tasks: dict) -> list[dict]:
    return [keys["failure"] for keys in tasks.values() if isinstance(keys.get("failure"), dict)]


def _one(tasks: dict, run: RunFacts) -> str:
    version = _version(tasks, run)
    preflight = tasks.get("preflight") or {}
    if preflight.get("nothing_to_release"):
        return f"NOTHING TO RELEASE: {preflight['nothing_to_release']}"
    rollback = (tasks.get("rollback") or {}).get("return_value") or {}
    failures = _failures(tasks)
    unsafe = next((f["error"] for f in failures if UNSAFE_PREFIX in str(f.get("error"))), None)
    if unsafe:
        return str(unsafe)[str(unsafe).index(UNSAFE_PREFIX):]
    resolved = preflight.get("return_value") or {}
    if resolved.get("dry_run") or (tasks.get("complete_rollout") or {}).get("return_value", {}).get("dry_run"):
        return _dry_run(tasks, version)
    promoted = (tasks.get("promote") or {}).get("return_value")
    if promoted and run.state == "success":
        return _promoted(tasks, version, run)
    rolled = _rolled_back_by_a_check(tasks, version)
    if rolled:
        return rolled
    by_person = next((f for f in failures if "rolled back before" in str(f.get("error"))), None)
    if by_person:
        return f"ROLLED BACK {version}: {by_person['error']}"
    first = _first_failure(tasks)
    if first is not None:
        task, error = first.get("task", "?"), str(first.get("error", ""))
        if task.rpartition(".")[2] in ("preflight", "spec_error") and ("conf" in error or "spec" in error.lower()):
            return f"REFUSED: {error}"
        return f"ABORTED (tooling): {task}: {error}"
    if rollback.get("reason"):
        return f"STOPPED {version} before promotion: {rollback['reason']}"
    if run.state == "success":
        return f"PROMOTED {version} in {duration_text(run.duration_seconds)}"
    return f"FAILED {version}: see the run's tasks"


def _first_failure(tasks: dict) -> dict | None:
    """The failure that ended the run: preflight's first, then the steps in order."""
    order = ["spec_error", "preflight", "deploy_canary", *sorted(t for t in tasks if t.startswith("shift_to_")),
             *_gate_ids(tasks), "promote", "rollback", "complete_rollout"]
    for task in order:
        failure = (tasks.get(task) or {}).get("failure")
        if isinstance(failure, dict):
            return failure
    return None


def _rolled_back_by_a_check(tasks: dict, version: str) -> str | None:
    """``ROLLED BACK v3 at 5% after 35 s: errors 3.23% vs 0.24% (+2.99 pp > 0.5 pp)``, when a
    check failed (not the metrics backend: that is the tooling)."""
    for task in _gate_ids(tasks):
        keys = tasks[task]
        record = keys.get("looks") or {}
        look = (record.get("looks") or [None])[-1] or keys.get("evidence") or {}
        if look.get("outcome") != "rollback":
            continue
        weight = look.get("weight", record.get("weight"))
        after = look.get("t", look.get("elapsed_seconds"))
        failed = deciding_checks(look)
        broken = [c for c in failed if "metrics backend" in str(c.get("reason", ""))]
        if failed and len(broken) == len(failed):
            return f"ABORTED (tooling): {task}: " + "; ".join(f"{c['check']}: {c.get('reason', '')}" for c in broken)
        what = "; ".join(_failed_text(c) for c in failed) or look.get("reason", "")
        when = f" after {duration_text(after)}" if after is not None else ""
        return f"ROLLED BACK {version} at {weight}%{when}: {what}"
    return None


def _failed_text(check: dict) -> str:
    """``errors 3.23% vs 0.24% (+2.99 pp > 0.5 pp)``; the judge's reason when a value is missing (no data)."""
    if check.get("canary_value") is None or check.get("baseline_value") is None:
        return f"{check.get('check')}: {check.get('reason', '')}"
    return f"{check.get('check')} {comparison_text(check)}"


def _promoted(tasks: dict, version: str, run: RunFacts) -> str:
    approvers = [str(v["return_value"].get("by")) for t, v in tasks.items() if t.startswith("approve_")
                 and isinstance(v.get("return_value"), dict) and v["return_value"].get("asked")]
    line = f"PROMOTED {version} in {duration_text(run.duration_seconds)}"
    return line + (f", approved by {', '.join(dict.fromkeys(approvers))}" if approvers else "")


def _dry_run(tasks: dict, version: str) -> str:
    verdicts = []
    for task in _gate_ids(tasks):
        evidence = tasks[task].get("evidence") or tasks[task].get("return_value") or {}
        if isinstance(evidence, dict) and evidence.get("outcome"):
            verdicts.append(f"{task} {evidence['outcome']}")
    return f"DRY RUN {version}: nothing moved" + (f"; the gates would say {', '.join(verdicts)}" if verdicts else "")
