"""One status record per release (Argo Rollouts' ``status``): every step writes it, every reader trusts it.

The record says which run owns the release, how far it got (``phase``), the canary's last known
weight and the last decision. The undo, the guard, preflight and the CI client decide from it
(and from the router's own weights), never from which task happened to fail.

It is stored in an Airflow Variable per release (``canary_status__<name>``), so it survives task
retries, triggerer restarts and deleted runs, and it is read and written only through Airflow's
public interface. ``ReleaseStatus`` itself is pure; ``read_status``/``write_status`` do the I/O.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Phase = Literal["idle", "deploying", "shifting", "gating", "awaiting_approval", "promoting", "promoted",
                "rolling_back", "rolled_back", "unsafe"]
# A run in one of these phases is mid-way: it may have moved traffic and not put it back yet.
MID_WAY: frozenset[str] = frozenset({"deploying", "shifting", "gating", "awaiting_approval", "promoting", "rolling_back"})
# Steps of a promotion, in Flagger's order; a retried promote skips the ones already done.
PROMOTE_STEPS = ("stable_slot", "routed", "after_promote")


def status_variable(release: str) -> str:
    return f"canary_status__{release}"


def stop_variable(release: str) -> str:
    """The guard's stop marker: the run it took the release from. Only the guard writes it, so a
    run's heartbeat that races the guard's record write cannot erase it (Variables have no
    compare-and-set)."""
    return f"canary_stopped__{release}"


class ReleaseStatus(BaseModel):
    """The release's state as its last writer left it. Immutable: ``advance`` returns a new one."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    release: str
    phase: Phase = "idle"
    run_id: str | None = None  # the owning run
    dag_id: str | None = None
    version: str | None = None
    stable_version: str | None = None
    weight: int | None = None  # the canary's weight as last set or read back, in percent
    decision: str = ""  # the last decision and its reason, e.g. "gate_10: rollback: error rate …"
    promote_done: tuple[str, ...] = ()  # PROMOTE_STEPS already done by the owning run
    # Where the current gate's per-look record is (XCom key "looks"): {dag_id, run_id, task_id}.
    looks_ref: dict | None = None
    # The spec the owning run released with: the guard falls back to it if the file breaks.
    spec: dict | None = None
    updated_at: float = Field(default_factory=time.time)  # epoch seconds; the guard's progress clock

    def advance(self, **changes) -> "ReleaseStatus":
        """A copy with ``changes`` and a fresh ``updated_at``."""
        return self.model_copy(update={**changes, "updated_at": time.time()})

    @property
    def mid_way(self) -> bool:
        return self.phase in MID_WAY

    def owned_by(self, run_id: str | None) -> bool:
        return run_id is not None and self.run_id == run_id

    def describe(self) -> str:
        weight = "unknown" if self.weight is None else f"{self.weight}%"
        return f"{self.release}: {self.phase} (canary {weight}, run {self.run_id or '-'}): {self.decision or 'no decision yet'}"


def read_status(release: str) -> ReleaseStatus:
    """The release's record; an ``idle`` record with no owner when none was written yet."""
    from airflow.sdk import Variable

    raw = Variable.get(status_variable(release), default=None, deserialize_json=True)
    if not raw:
        return ReleaseStatus(release=release, updated_at=0.0)
    return ReleaseStatus.model_validate({**raw, "release": release})


def write_status(status: ReleaseStatus) -> ReleaseStatus:
    from airflow.sdk import Variable

    from canary_operators.secrets import scrub

    # The decision quotes errors; a Variable is shown in the UI and is not masked unless its name looks secret.
    Variable.set(status_variable(status.release), scrub(status.model_dump(mode="json")), serialize_json=True,
                 description="Canary release status record (written by canary_operators; do not edit by hand)")
    return status


def record(release: str, log=None, strict: bool = False, **changes) -> ReleaseStatus | None:
    """Read, change, write. Unless ``strict``, never raises: a lost status write must not fail a
    gate or an undo, whose real work is the traffic. Returns the written record, or None."""
    try:
        return write_status(read_status(release).advance(**changes))
    except Exception as e:  # noqa: BLE001 - logged; the caller's own work goes on
        if strict:
            raise
        if log:
            log.warning("could not write the status record of %s: %s", release, e)
        return None


def read_stopped_run(release: str) -> str | None:
    """The run the guard last stopped for this release, if any."""
    from airflow.sdk import Variable

    raw = Variable.get(stop_variable(release), default=None, deserialize_json=True)
    return (raw or {}).get("run_id")


def mark_stopped(release: str, run_id: str, reason: str) -> None:
    """Written by the guard before it moves traffic: from now on ``run_id`` may not write or shift."""
    from airflow.sdk import Variable

    Variable.set(stop_variable(release), {"run_id": run_id, "reason": reason[:500], "at": time.time()},
                 serialize_json=True, description="Canary guard's stop marker (written by canary_operators)")


def clear_stopped(release: str, run_id: str) -> None:
    """A run started again by hand (cleared) takes its release back: its stop marker goes."""
    from airflow.sdk import Variable

    if read_stopped_run(release) == run_id:
        Variable.delete(stop_variable(release))


def taken_over(status: ReleaseStatus, run_id: str, stopped_run: str | None = None) -> str | None:
    """Why this run may no longer move traffic (another run or the guard took the release over),
    or None when it still owns it. ``stopped_run`` is the guard's stop marker."""
    if stopped_run is not None and stopped_run == run_id:
        return f"the guard stopped this run: {status.decision or 'see canary_guard'}"
    if not status.owned_by(run_id):
        return f"the release is now owned by run {status.run_id or '(none)'}, not this run {run_id}"
    if status.phase in ("rolled_back", "unsafe", "rolling_back"):
        return f"the release was {status.phase.replace('_', ' ')} while this run waited: {status.decision}"
    return None


def heartbeat(release: str, run_id: str, log=None, **changes) -> str | None:
    """A step's progress write: if this run still owns the release, record ``changes``; else
    return why not (the caller stops moving traffic). A failed read or write returns None: the
    gate goes on, and the guard's staleness clock is the only thing that suffers."""
    try:
        current = read_status(release)
        why = taken_over(current, run_id, read_stopped_run(release))
        if why:
            return why
        write_status(current.advance(**changes))
        # The guard marks a run stopped before it writes its record. If the marker is here now, that
        # record may have landed between our read and our write and been overwritten: stop anyway
        # (the guard's next sweep closes the record again).
        if read_stopped_run(release) == run_id:
            return taken_over(read_status(release), run_id, run_id)
    except Exception as e:  # noqa: BLE001
        if log:
            log.warning("could not write the status record of %s: %s", release, e)
    return None
