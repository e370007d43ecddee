"""ApproveStep: ask a person before a step (e.g. before 100%), with the gates' evidence so far.

The options are Promote (or Continue), Roll back, and Hold a bit longer. No answer within the
spec's approval timeout counts as Roll back. With ``approval.approvers``, only those users may
answer (Airflow's ``assigned_users``: the API answers anyone else HTTP 403).

While it waits, the canary keeps serving the last step's traffic, so it stays judged: the task
defers to ``ApprovalWatchTrigger``, which looks at the checks the way the gate does (only a
failing verdict counts; the gate timeouts do not apply), writes the status record as the guard's
progress clock, and watches for the answer. A failing check puts traffic back on stable at once,
answers "Roll back" on the question, and fails the task with the check's reason. Holding watches
too. A person's answer through the REST API resumes the deferred task directly (Airflow 3.3
accepts answers for ``deferred`` as well as ``awaiting_input`` tasks). Before going on, the answer
"Promote"/"Continue" is checked once more: this run must still own the release and the checks
must not fail now.

When this run has moved no traffic yet (no gate step below this one), there is nothing to watch
and Airflow's own wait is used (``awaiting_input`` in 3.3, no triggerer needed).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk.exceptions import AirflowFailException

from canary_operators.judge import Outcome
from canary_operators.operators.common import RecordsFailure, run_conf_of, run_id_of, sibling_task_id
from canary_operators.operators.gate_evaluation import evaluate_gate, reset_to_stable
from canary_operators.operators.metric_gate import EVIDENCE_KEY, FAST_ROLLBACK_KEY, GATE_TIMEOUT_MARGIN
from canary_operators.spec import ReleaseSpec, RunConf
from canary_operators.status import heartbeat

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

        from canary_operators.notify import approval_notifiers

        approval = release.approval or ApprovalSpec()  # conf may add approval to a spec without one
        kwargs.setdefault("notifiers", approval_notifiers(release))  # the spec's "approval_needed" event
        super().__init__(
            subject=f"{release.name}: approve the step to {weight}%?",
            options=[self.go, ROLL_BACK, HOLD],
            defaults=[ROLL_BACK],  # taken when nobody answers in time: traffic goes back to stable
            response_timeout=timedelta(seconds=approval.timeout),
            # Airflow's API refuses (HTTP 403) an answer from anyone else; the simple auth manager's
            # user id is the username.
            assigned_users=[{"id": user, "name": user} for user in approval.approvers] or None,
            **kwargs,
        )
        self.release = release
        self.approval = approval
        self.weight = weight
        self.gate_task_ids = gate_task_ids

    # -- where the canary waits -------------------------------------------------------------

    def watched_weight(self, run: RunConf) -> int | None:
        """The canary's weight while this asks: the last gate step below this one that the run
        takes; None when the run has moved no traffic yet."""
        taken = [w for w in self.release.gate_steps if w < self.weight and run.takes_step(w)]
        return max(taken) if taken else None

    def _watch(self, context, run: RunConf) -> dict | None:
        """The watched step's weight, shift time and the rollout's first shift; None: nothing to watch."""
        weight = self.watched_weight(run)
        if weight is None or run.dry_run:
            return None
        shifts = {w: context["ti"].xcom_pull(task_ids=sibling_task_id(context, f"shift_to_{w}")) or {}
                  for w in self.release.gate_steps if w <= weight and run.takes_step(w)}
        times = [s["shifted_at"] for s in shifts.values() if not s.get("skipped") and "shifted_at" in s]
        if "shifted_at" not in shifts[weight] or shifts[weight].get("skipped"):
            raise AirflowFailException(f"shift_to_{weight} left no shift time; cannot watch the canary while asking")
        return {"weight": weight, "shifted_at": shifts[weight]["shifted_at"], "rollout_started_at": min(times)}

    # -- asking -------------------------------------------------------------------------------

    def execute(self, context):
        try:
            return self._ask(context)
        except BaseException as e:
            self.record_failure(context, e)
            raise

    def _ask(self, context):
        run = run_conf_of(context)
        if not run.approval or run.dry_run or not run.takes_step(self.weight):
            why = "dry run" if run.dry_run else "approval not requested for this run" if not run.approval else "step skipped"
            self.log.info("not asking before %d%%: %s", self.weight, why)
            return {"approved": None, "asked": False, "why": why}
        taken = heartbeat(self.release.name, run_id_of(context), self.log, phase="awaiting_approval",
                          decision=f"{self.task_id}: waiting for a person")
        if taken:
            raise AirflowFailException(f"not asking before {self.weight}%: {taken}")
        gates = {gid: context["ti"].xcom_pull(task_ids=gid, key=EVIDENCE_KEY) for gid in self.gate_task_ids}
        watch = self._watch(context, run)
        watched = (f" Meanwhile the canary at {watch['weight']}% stays watched: a failing check rolls back at once."
                   if watch else "")
        self.body = (
            f"Release **{run.release}** version **{run.version}** (stable: {run.stable_version}) is ready to go "
            f"to **{self.weight}%**. Evidence from the gates so far:\n\n{evidence_table(gates)}\n\n"
            f"No answer within {self.approval.timeout:g}s rolls back.{watched}"
        )
        if watch is None:
            return super().execute(context)  # nothing to watch: Airflow's own wait
        from airflow.sdk.execution_time.hitl import upsert_hitl_detail

        # What HITLOperator.execute does before it waits, then wait in the watch trigger instead.
        upsert_hitl_detail(ti_id=context["task_instance"].id, options=self.options, subject=self.subject,
                           body=self.body, defaults=self.defaults, multiple=self.multiple,
                           params=self.serialized_params, assigned_users=self.assigned_users)
        timeout_at = time.time() + self.response_timeout.total_seconds()
        self.hitl_summary_extra["timeout_datetime"] = datetime.fromtimestamp(timeout_at, timezone.utc).isoformat()
        for notifier in self.notifiers:
            notifier(context)
        self.log.info("waiting for a person up to %gs; the canary at %d%% is watched every %gs meanwhile",
                      self.approval.timeout, watch["weight"], self.release.poke_interval)
        self._defer_watch(context, run, watch, timeout_at=timeout_at)

    def _defer_watch(self, context, run: RunConf, watch: dict, *, timeout_at: float | None = None,
                     hold_until: float | None = None):
        from canary_operators.triggers.approval_watch import ApprovalWatchTrigger

        end = hold_until if hold_until is not None else timeout_at
        self.defer(
            trigger=ApprovalWatchTrigger(
                ti_id=str(context["task_instance"].id), options=self.options, params=self.serialized_params,
                defaults=self.defaults, multiple=self.multiple, timeout_at=timeout_at, hold_until=hold_until,
                roll_back_option=ROLL_BACK, release=self.release.model_dump(mode="json"),
                run=run.model_dump(mode="json"), poke_interval=self.release.poke_interval,
                run_id=run_id_of(context), task_id=self.task_id, **watch,
            ),
            method_name="execute_complete",
            # Bounds the wait when no triggerer runs: the trigger itself ends it at ``end``.
            timeout=timedelta(seconds=max(0.0, end - time.time()) + GATE_TIMEOUT_MARGIN + 2 * self.release.poke_interval),
        )

    # -- the answer -----------------------------------------------------------------------------

    def execute_complete(self, context, event):
        try:
            return self._complete(context, event)
        except BaseException as e:
            self.record_failure(context, e)
            raise

    def _complete(self, context, event: dict):
        run = run_conf_of(context)
        watch = self._watch(context, run)
        at = f"the canary at {watch['weight']}%" if watch else "the canary"
        kind = event.get("watch")
        if kind == "hold_over":
            self.log.info("the hold is over; asking again")
            return self._ask(context)
        if kind == "rollback":
            context["ti"].xcom_push(key=EVIDENCE_KEY, value=event["evidence"])
            context["ti"].xcom_push(key=FAST_ROLLBACK_KEY, value=event["fast_rollback"])
            raise AirflowFailException(f"rolled back while waiting for approval of {self.weight}%: a check failed "
                                       f"with {at} (traffic back on stable): {event['reason']}")
        if kind == "stopped":
            raise AirflowFailException(f"stopped waiting for approval of {self.weight}%: {event['reason']}")
        result = super().execute_complete(context, event)
        chosen = result["chosen_options"][0]
        who = result.get("responded_by_user") or {}
        who = who.get("name") or who.get("id") or "the timeout default"
        if chosen == ROLL_BACK:
            reset_to_stable(self.release, run, watch["weight"] if watch else 0, f"{self.task_id}: {who} chose to roll back",
                            self.log, run_id_of(context))
            raise AirflowFailException(f"rolled back before {self.weight}% by {who}")
        if chosen == HOLD:
            self.log.info("%s asked to hold; asking again in %gs", who, self.approval.hold)
            if watch is not None:
                self._defer_watch(context, run, watch, hold_until=time.time() + self.approval.hold)
            from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

            self.defer(trigger=TimeDeltaTrigger(timedelta(seconds=self.approval.hold)), method_name="ask_again")
        self._confirm(context, run, watch, who)
        self.log.info("%s approved the step to %d%%", who, self.weight)
        return {"approved": chosen, "asked": True, "by": who}

    def _confirm(self, context, run: RunConf, watch: dict | None, who: str) -> None:
        """Before going on: the checks must not fail now (the answer may have come between two
        looks), and this run must still own the release."""
        if watch is not None:
            look = evaluate_gate(self.release, run, watch["weight"], watch["shifted_at"], {}, self.log,
                                 watch["rollout_started_at"], watching=True)
            if look.outcome is Outcome.ROLLBACK:
                fast = reset_to_stable(self.release, run, watch["weight"], f"{self.task_id}: {look.reason}", self.log,
                                       run_id_of(context))
                context["ti"].xcom_push(key=EVIDENCE_KEY, value=look.evidence)
                context["ti"].xcom_push(key=FAST_ROLLBACK_KEY, value=fast)
                raise AirflowFailException(f"{who} approved the step to {self.weight}%, but a check fails with the "
                                           f"canary at {watch['weight']}% (traffic back on stable): {look.reason}")
        taken = heartbeat(self.release.name, run_id_of(context), self.log, phase="awaiting_approval",
                          decision=f"{self.task_id}: {who} approved the step to {self.weight}%")
        if taken:
            raise AirflowFailException(f"{who} approved the step to {self.weight}%, but {taken}")

    def waited_too_long(self, kind: str) -> str:
        return f"the approval's watch of the canary {kind} in the triggerer"

    def ask_again(self, context, event=None):
        return self.execute(context)
