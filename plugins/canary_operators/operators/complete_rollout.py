"""CompleteRollout: the run's verdict. A teardown that runs after the undo, however the run ended.

It is the only task whose state decides the run's state (``on_failure_fail_dagrun``). It succeeds
when this run promoted the release (the weights read back as promotion left them), when there was
nothing to release, or when a dry run went all the way through; otherwise it fails, naming why.
So a rolled-back run ends failed, also one a user marked failed or success by hand.
"""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowFailException

from canary_operators.exceptions import WeightNotApplied
from canary_operators.operators.common import (
    NOTHING_TO_RELEASE_KEY,
    PREFLIGHT_TASK,
    ReleaseOperator,
    build_router,
    run_conf_of,
    run_id_of,
    sibling_task_id,
)
from canary_operators.operators.metric_gate import EVIDENCE_KEY
from canary_operators.status import read_status


class CompleteRollout(ReleaseOperator):
    """Check the run promoted the release, read the weights back once more, and sum it up."""

    ui_color = "#ceead6"

    def __init__(self, *, promote_task_id: str, gate_task_ids: list[str], **kwargs):
        super().__init__(**kwargs)
        self.promote_task_id = promote_task_id
        self.gate_task_ids = gate_task_ids

    def run_step(self, context) -> dict:
        ti = context["ti"]
        nothing = ti.xcom_pull(task_ids=sibling_task_id(context, PREFLIGHT_TASK), key=NOTHING_TO_RELEASE_KEY)
        if nothing:
            self.log.info("nothing to release: %s", nothing)
            return {"release": self.release.name, "nothing_to_release": nothing}
        promoted = ti.xcom_pull(task_ids=self.promote_task_id)
        if not promoted:
            rolled = ti.xcom_pull(task_ids=sibling_task_id(context, "rollback")) or {}
            why = rolled.get("reason") or read_status(self.release.name).decision or "see the run's tasks"
            raise AirflowFailException(f"{self.release.name} was not promoted by this run: {why}")
        run = run_conf_of(context)
        gates = {gid: ti.xcom_pull(task_ids=gid, key=EVIDENCE_KEY) or ti.xcom_pull(task_ids=gid) for gid in self.gate_task_ids}
        if run.dry_run:
            verdicts = {gid: (g or {}).get("outcome") for gid, g in gates.items()}
            self.log.info("dry run complete for %s %s: no traffic moved; the gates would have said %s", run.release, run.version, verdicts)
            return {"release": run.release, "version": run.version, "dry_run": True, "gates": gates}
        status = read_status(self.release.name)
        if not (status.owned_by(run_id_of(context)) and status.phase == "promoted"):
            raise AirflowFailException(f"{self.release.name}: promote ran, but the release record says {status.describe()}")
        expected = promoted.get("canary_weight", 0)
        actual = build_router(self.release, run).get_canary_weight()
        if actual != expected:
            raise WeightNotApplied(f"after promotion the canary should take {expected}% but takes {actual}%")
        summary = {"release": run.release, "version": run.version, "previous_stable": run.stable_version,
                   "canary_weight": actual, "gates": gates}
        self.log.info("rollout complete: %s %s serves all traffic (canary slot at %d%%); gates passed: %s",
                      run.release, run.version, actual, ", ".join(gates) or "none")
        return summary
