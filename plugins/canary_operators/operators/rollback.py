"""Rollback, the undo: a teardown task, so Airflow runs it however the run ends.

It decides from the release's status record and the router's own weights, not from which task
failed:

- promoted by this run: nothing to undo;
- not owned by this run (preflight refused, or never ran): this run moved nothing, hands off;
  an orphan that another run left is the guard's to reset;
- owned by this run: after a partial promote, first the previous stable version back into the stable
  slot; then the canary to 0% (stable 100%), read back, retried against ``rollback_deadline``;
  then the spec's ``rollback`` action (when this run deployed anything).

When the deadline passes with traffic not restored, it logs ``TRAFFIC NOT RESTORED:``, calls the
failure hook, records ``unsafe`` and fails the run.
"""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowFailException

from canary_operators.actions import run_action
from canary_operators.operators.common import (
    FAILURE_KEY,
    PREFLIGHT_TASK,
    ReleaseOperator,
    build_router,
    endpoint_for,
    run_conf_from_status,
    run_id_of,
    sibling_task_id,
)
from canary_operators.safety import TrafficNotRestored, report_unsafe, restore_stable
from canary_operators.spec import RunConf
from canary_operators.status import read_status, record

ROLLBACK_POOL = "canary_rollback"
ROLLBACK_PRIORITY = 10_000  # above any gate or shift, so waiting tasks never starve the undo


def owner_alive(context, dag_id: str | None, run_id: str | None) -> bool:
    """Whether the run that owns the record is still running (a deleted run is not)."""
    if not dag_id or not run_id:
        return False
    try:
        state = context["ti"].get_dagrun_state(dag_id=dag_id, run_id=run_id)
        return str(getattr(state, "value", state)) in ("running", "queued")
    except Exception:  # noqa: BLE001 - not found: the run was deleted
        return False


class Rollback(ReleaseOperator):
    """Undo whatever this run left unpromoted. Idempotent: safe to retry or re-run."""

    ui_color = "#f28b82"

    def __init__(self, *, watched_task_ids: list[str], **kwargs):
        super().__init__(**kwargs)
        self.watched_task_ids = watched_task_ids

    def failures(self, context) -> list[dict]:
        ids = [sibling_task_id(context, PREFLIGHT_TASK), *self.watched_task_ids]
        found = context["ti"].xcom_pull(task_ids=ids, key=FAILURE_KEY)
        return [f for f in (found or []) if f]

    def run_step(self, context) -> dict:
        failures = self.failures(context)
        reason = "; ".join(f"{f['task']}: {f['error']}" for f in failures) or (
            "the run ended before promotion (marked failed or success by hand, or a task was stopped)")
        run_id = run_id_of(context)
        status = read_status(self.release.name)
        resolved = context["ti"].xcom_pull(task_ids=sibling_task_id(context, PREFLIGHT_TASK))
        run = RunConf.model_validate(resolved) if resolved else None
        if run is not None and run.dry_run:
            self.log.warning("dry run: nothing was moved, nothing to undo. Why it ended: %s", reason)
            return {"canary_weight": None, "reason": reason, "traffic_changed": False, "dry_run": True}
        owned = status.owned_by(run_id)
        if status.phase == "promoted":
            who = "this run" if owned else f"run {status.run_id}"
            self.log.info("%s %s was promoted by %s; nothing to undo. Why this run ended: %s",
                          status.release, status.version, who, reason if not owned else "promoted")
            return {"canary_weight": status.weight, "promoted": owned, "traffic_changed": False,
                    "reason": "" if owned else reason}
        if owned:
            return self._undo(status, run or run_conf_from_status(status), reason)
        # Not ours: this run moved no traffic (preflight refused or never ran). Whatever another run
        # left behind is the guard's to reset, not this run's undo.
        owner = status.run_id or "(no run)"
        alive = " (still running)" if owner_alive(context, status.dag_id, status.run_id) else ""
        self.log.warning("this run does not own %s (owner: %s%s); it moved no traffic, nothing to undo. Why it ended: %s",
                         self.release.name, owner, alive, reason)
        return {"canary_weight": None, "reason": reason, "traffic_changed": False}

    def _undo(self, status, run: RunConf, reason: str) -> dict:
        """Undo this run's release (it owns the record)."""
        name = self.release.name
        router = build_router(self.release, run)
        # A promote that began and did not route may have put the new version into the stable slot,
        # also when its action failed half-way (a rollout that timed out): restoring is idempotent.
        done = status.promote_done
        restore_slot = ("routed" not in done and ("stable_slot" in done or status.phase == "promoting")
                        and self.release.promote is not None and not router.promotes_natively)
        # Keep "stable_slot" in the record until it is restored, for a retried undo.
        record(name, self.log, phase="rolling_back", decision=f"rollback: {reason}"[:500],
               **({"promote_done": ("stable_slot",)} if restore_slot else {}))
        result: dict = {"version": run.version, "stable_version": run.stable_version, "reason": reason}
        if restore_slot:
            # A partial promote put the new version into the stable slot: put the old one back first.
            restore = run.model_copy(update={"version": run.stable_version})
            result["restored_stable"] = run_action(self.release.promote, "promote", restore, endpoint_for)
            record(name, self.log, promote_done=(), decision=f"rollback: stable slot back on {run.stable_version}")
        try:
            restored = restore_stable(router, self.release.rollback_deadline, self.log)
        except TrafficNotRestored as e:
            message = report_unsafe(name, e.weight, f"{e}. Why it was rolled back: {reason}", self.log)
            record(name, self.log, phase="unsafe", weight=e.weight, decision=message[:500])
            raise AirflowFailException(message) from None
        result.update(canary_weight=restored["weight_after"], attempts=restored["attempts"],
                      seconds_to_stable=restored["seconds_to_stable"], traffic_changed=True)
        if self.release.rollback is not None and status.phase != "idle":
            result["action"] = run_action(self.release.rollback, "rollback", run, endpoint_for)
        record(name, self.log, phase="rolled_back", weight=restored["weight_after"], decision=f"rollback: {reason}"[:500])
        self.log.error("rolled back %s %s: all traffic on stable %s (canary read back at %d%%). Why: %s",
                       name, run.version, run.stable_version, restored["weight_after"], reason)
        return result
