"""Rollback: all traffic back to stable at once, read back, run the rollback action, say why."""

from __future__ import annotations

from canary_operators.actions import run_action
from canary_operators.operators.common import (
    FAILURE_KEY,
    PREFLIGHT_TASK,
    ReleaseOperator,
    build_router,
    endpoint_for,
    run_conf_of,
)


class Rollback(ReleaseOperator):
    """Set the canary to 0% (stable 100%) and verify. Idempotent: safe to retry or re-run.

    Runs with trigger rule ``one_failed``. If preflight failed, this run moved no traffic and
    there is nothing to undo, so traffic is left as it was.
    """

    ui_color = "#f28b82"

    def __init__(self, *, watched_task_ids: list[str], **kwargs):
        super().__init__(**kwargs)
        self.watched_task_ids = watched_task_ids

    def failures(self, context) -> list[dict]:
        ids = [PREFLIGHT_TASK, *self.watched_task_ids]
        found = context["ti"].xcom_pull(task_ids=ids, key=FAILURE_KEY)
        return [f for f in (found or []) if f]

    def run_step(self, context) -> dict:
        failures = self.failures(context)
        reason = "; ".join(f"{f['task']}: {f['error']}" for f in failures) or "an upstream task failed without a recorded reason"
        if context["ti"].xcom_pull(task_ids=PREFLIGHT_TASK) is None:
            self.log.warning("preflight did not pass, so this run moved no traffic; nothing to roll back. Why: %s", reason)
            return {"canary_weight": None, "reason": reason, "traffic_changed": False}
        run = run_conf_of(context)
        if run.dry_run:
            self.log.warning("dry run: would roll back %s %s to stable. Why: %s", run.release, run.version, reason)
            return {"canary_weight": None, "reason": reason, "traffic_changed": False, "dry_run": True}
        weight = build_router(self.release, run).apply(0)
        result = {"version": run.version, "stable_version": run.stable_version, "canary_weight": weight, "reason": reason}
        if self.release.rollback is not None:
            result["action"] = run_action(self.release.rollback, "rollback", run, endpoint_for)
        self.log.error("rolled back %s %s: all traffic on stable %s (canary read back at %d%%). Why: %s",
                       run.release, run.version, run.stable_version, weight, reason)
        return result
