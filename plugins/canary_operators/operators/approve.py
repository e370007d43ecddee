"""ApproveStep: ask a person before a step (e.g. before 100%), with the gates' evidence so far.

Airflow's human-in-the-loop operator (standard provider) parks the task until someone answers
in the UI or through the REST API. The options are Promote (or Continue), Roll back, and Hold a
bit longer. No answer within the spec's approval timeout counts as Roll back.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk.exceptions import AirflowFailException

from canary_operators.operators.common import RecordsFailure, run_conf_of
from canary_operators.operators.gate_evaluation import reset_to_stable
from canary_operators.operators.metric_gate import EVIDENCE_KEY
from canary_operators.spec import ReleaseSpec

ROLL_BACK = "Roll back"
HOLD = "Hold a bit longer"


def evidence_table(gates: dict[str, dict | None]) -> str:
    """The gates' evidence as a Markdown table, one row per check."""
    rows = ["| gate | check | verdict | canary | baseline | reason |", "|---|---|---|---|---|---|"]
    for gate_id, evidence in gates.items():
        if not evidence:
            rows.append(f"| {gate_id} | | not run | | | |")
            continue
        for c in evidence.get("checks", []):
            reason = str(c.get("reason", "")).replace("|", "/")
            rows.append(f"| {gate_id} | {c['check']} | {c['verdict']} | {_fmt(c.get('canary_value'))} | "
                        f"{_fmt(c.get('baseline_value'))} | {reason} |")
    return "\n".join(rows)


def _fmt(value) -> str:
    return "" if value is None else f"{value:.4g}"


class ApproveStep(RecordsFailure, HITLOperator):
    ui_color = "#fef7e0"

    def __init__(self, *, release: ReleaseSpec, weight: int, gate_task_ids: list[str], **kwargs):
        self.go = "Promote" if weight == 100 else "Continue"
        from canary_operators.spec import ApprovalSpec

        approval = release.approval or ApprovalSpec()  # conf may add approval to a spec without one
        super().__init__(
            subject=f"{release.name}: approve the step to {weight}%?",
            options=[self.go, ROLL_BACK, HOLD],
            defaults=[ROLL_BACK],  # taken when nobody answers in time: traffic goes back to stable
            response_timeout=timedelta(seconds=approval.timeout),
            **kwargs,
        )
        self.release = release
        self.approval = approval
        self.weight = weight
        self.gate_task_ids = gate_task_ids

    def execute(self, context):
        run = run_conf_of(context)
        if not run.approval or run.dry_run or not run.takes_step(self.weight):
            why = "dry run" if run.dry_run else "approval not requested for this run" if not run.approval else "step skipped"
            self.log.info("not asking before %d%%: %s", self.weight, why)
            return {"approved": None, "asked": False, "why": why}
        from canary_operators.status import record

        record(self.release.name, self.log, phase="awaiting_approval", decision=f"{self.task_id}: waiting for a person")
        gates = {gid: context["ti"].xcom_pull(task_ids=gid, key=EVIDENCE_KEY) for gid in self.gate_task_ids}
        self.body = (
            f"Release **{run.release}** version **{run.version}** (stable: {run.stable_version}) is ready to go "
            f"to **{self.weight}%**. Evidence from the gates so far:\n\n{evidence_table(gates)}\n\n"
            f"No answer within {self.approval.timeout:g}s rolls back."
        )
        return super().execute(context)

    def execute_complete(self, context, event):
        try:
            result = super().execute_complete(context, event)
            chosen = result["chosen_options"][0]
            who = result.get("responded_by_user") or {}
            who = who.get("name") or who.get("id") or "the timeout default"
            if chosen == ROLL_BACK:
                run = run_conf_of(context)
                reset_to_stable(self.release, run, self.weight, f"{who} chose to roll back", self.log)
                raise AirflowFailException(f"rolled back before {self.weight}% by {who}")
            if chosen == HOLD:
                from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

                self.log.info("%s asked to hold; asking again in %gs", who, self.approval.hold)
                self.defer(trigger=TimeDeltaTrigger(timedelta(seconds=self.approval.hold)), method_name="ask_again")
            self.log.info("%s approved the step to %d%%", who, self.weight)
            return {"approved": chosen, "asked": True, "by": who}
        except BaseException as e:
            self.record_failure(context, e)
            raise

    def ask_again(self, context, event=None):
        return self.execute(context)
