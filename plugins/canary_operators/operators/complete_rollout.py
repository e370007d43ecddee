"""CompleteRollout: the run's last task. Verifies the final traffic split and sums up the release.

It is a leaf on purpose: the Rollback task is downstream of Promote, so without this leaf a
rolled-back run would end green. With it, a rollback leaves this task upstream_failed and the run
fails; only a promoted run succeeds.
"""

from __future__ import annotations

from canary_operators.exceptions import WeightNotApplied
from canary_operators.operators.common import ReleaseOperator, build_router, run_conf_of
from canary_operators.operators.metric_gate import EVIDENCE_KEY


class CompleteRollout(ReleaseOperator):
    """Read the weights back once more and return the release summary with every gate's evidence."""

    ui_color = "#ceead6"

    def __init__(self, *, promote_task_id: str, gate_task_ids: list[str], **kwargs):
        super().__init__(**kwargs)
        self.promote_task_id = promote_task_id
        self.gate_task_ids = gate_task_ids

    def run_step(self, context) -> dict:
        ti = context["ti"]
        run = run_conf_of(context)
        promoted = ti.xcom_pull(task_ids=self.promote_task_id) or {}
        gates = {gid: ti.xcom_pull(task_ids=gid) for gid in self.gate_task_ids}
        if run.dry_run:
            verdicts = {gid: (g or {}).get("outcome") for gid, g in gates.items()}
            self.log.info("dry run complete for %s %s: no traffic moved; the gates would have said %s", run.release, run.version, verdicts)
            return {"release": run.release, "version": run.version, "dry_run": True, "gates": gates}
        expected = promoted.get("canary_weight", 100)
        actual = build_router(self.release, run).get_canary_weight()
        if actual != expected:
            raise WeightNotApplied(f"after promotion the canary should take {expected}% but takes {actual}%")
        summary = {"release": run.release, "version": run.version, "previous_stable": run.stable_version,
                   "canary_weight": actual, "gates": gates}
        self.log.info("rollout complete: %s %s serves all traffic (canary slot at %d%%); gates passed: %s",
                      run.release, run.version, actual, ", ".join(gates) or "none")
        return summary
