"""The guard's decision, pure: should an orphaned or stuck canary go back to stable?

A DAG run is one-shot, so ``canary_guard`` sweeps every release each minute, the way Flagger's
and Argo's controllers reconcile. It acts on a canary above 0% that no running run owns, or whose
owning run has not written its status record for longer than the release's ``stale_after`` (a
paused DAG, a deleted run, a lost triggerer). It never touches a live run that makes progress.
"""

from __future__ import annotations

from dataclasses import dataclass

from canary_operators.status import ReleaseStatus

ALIVE = ("running", "queued")


@dataclass(frozen=True)
class GuardVerdict:
    act: bool  # put traffic back on stable (when above 0%) and record rolled_back
    reason: str  # starts with "guard:" when it acts


def guard_verdict(status: ReleaseStatus, weight: int, owner_state: str | None, now: float,
                  stale_after: float, stopped_run: str | None = None) -> GuardVerdict:
    """``owner_state`` is the owning run's state, or None when there is no owner or it was deleted.
    ``stopped_run`` is the run the guard already stopped (its stop marker)."""
    owner = status.run_id
    alive = owner_state in ALIVE
    if status.phase == "promoted":
        return GuardVerdict(False, f"promoted by run {owner}; canary slot at {weight}%")
    if owner and owner == stopped_run and status.mid_way:
        # The stopped run's last write raced the guard's record: close it again, and undo any move.
        return GuardVerdict(True, f"guard: run {owner} was stopped by the guard but its record says "
                                  f"{status.phase} with the canary at {weight}%; closing it")
    silent = now - status.updated_at
    if weight == 0:
        if status.mid_way and not alive:
            return GuardVerdict(True, f"guard: run {owner} is {owner_state or 'gone'} and left the release "
                                      f"{status.phase}; the canary is at 0%, the record is closed")
        # A paused run whose gate already reset the canary: its undo never comes to close the
        # record. A stable slot that may hold the new version is left to that undo (it alone
        # knows the old version to put back), so such a record stays open.
        if status.mid_way and silent > stale_after and "stable_slot" not in status.promote_done:
            return GuardVerdict(True, f"guard: run {owner} has made no progress for {silent:.0f}s (limit "
                                      f"{stale_after:.0f}s) and left the release {status.phase}; the canary is "
                                      f"at 0%, the record is closed")
        return GuardVerdict(False, f"canary at 0% ({status.phase})")
    if not owner:
        return GuardVerdict(True, f"guard: canary at {weight}% and no run owns the release")
    if not alive:
        return GuardVerdict(True, f"guard: canary at {weight}% but its run {owner} is {owner_state or 'gone (deleted)'}")
    if silent > stale_after:
        return GuardVerdict(True, f"guard: canary at {weight}% and its run {owner} has made no progress for "
                                  f"{silent:.0f}s (limit {stale_after:.0f}s): paused, stuck, or no triggerer running")
    return GuardVerdict(False, f"run {owner} is {owner_state} and made progress {silent:.0f}s ago ({status.phase})")
