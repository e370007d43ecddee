"""ShiftTraffic: set the canary's share of traffic to an absolute weight and verify it."""

from __future__ import annotations

import time

from airflow.sdk.exceptions import AirflowFailException

from canary_operators.operators.common import ReleaseOperator, build_router, require_ownership, run_conf_of, run_id_of
from canary_operators.status import heartbeat, record


class ShiftTraffic(ReleaseOperator):
    """Set the canary to ``weight`` percent (stable gets the rest) and read it back. Idempotent.

    Moves traffic only while this run owns the release's status record: a run the guard has
    rolled back (paused, stuck) must not push the canary up again when it resumes."""

    template_fields = ("weight",)
    ui_color = "#e6f4ea"

    def __init__(self, *, weight: int, **kwargs):
        from canary_operators.notify import step_notifiers

        kwargs.setdefault("on_success_callback", step_notifiers(kwargs["release"]) or None)  # the spec's "step" event
        super().__init__(**kwargs)
        self.weight = weight

    def run_step(self, context) -> dict:
        weight = int(self.weight)
        run = run_conf_of(context)
        if not run.takes_step(weight):
            self.log.info("step %d%% is not in this run's steps %s; traffic stays as it is", weight, run.steps)
            return {"weight": None, "skipped": True, "shifted_at": time.time()}
        if run.dry_run:
            self.log.info("dry run: would set the canary to %d%% of traffic; traffic stays as it is", weight)
            return {"weight": weight, "dry_run": True, "shifted_at": time.time()}
        require_ownership(self.release, context)
        record(self.release.name, self.log, phase="shifting", decision=f"{self.task_id}: moving the canary to {weight}%")
        applied = build_router(self.release, run).apply_verified(weight)
        actual = applied.weights.canary
        shifted_at = time.time()
        taken = heartbeat(self.release.name, run_id_of(context), self.log, phase="gating", weight=actual,
                          decision=f"{self.task_id}: canary at {actual}% (read back)")
        if taken:  # the guard reset the release while this shift ran: its reset stands
            raise AirflowFailException(f"{self.release.name}: stopped after the shift: {taken}")
        self.log.info("%s: canary now takes %d%% of traffic: %s", self.release.name, actual, applied.describe())
        return {"weight": actual, "shifted_at": shifted_at, "verified": applied.verified}
