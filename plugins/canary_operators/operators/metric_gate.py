"""MetricGate: compare canary and baseline until the judge says advance or roll back.

Holds while data is thin or inconclusive; at the gate timeout each check's policy decides ("no
data" is never a pass). On a failing verdict it sets the canary's weight to 0 itself before
failing, so traffic is back on stable within a second; the Rollback task then does the full,
idempotent cleanup.

Modes (spec ``gate_mode``): ``deferrable`` (default) waits in the triggerer and holds no worker
slot; ``poke`` and ``reschedule`` wait on a worker. All use the same look (``gate_evaluation``).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowFailException

from canary_operators.judge import Outcome
from canary_operators.operators.common import RecordsFailure, run_conf_of, run_id_of
from canary_operators.operators.gate_evaluation import evaluate_gate, reset_to_stable
from canary_operators.spec import ReleaseSpec

EVIDENCE_KEY = "evidence"
FAST_ROLLBACK_KEY = "fast_rollback"
GATE_TIMEOUT_MARGIN = 30.0  # seconds past the gate's own timeout before Airflow stops waiting for it


class MetricGate(RecordsFailure, BaseSensorOperator):
    """Gate the step at ``weight``%: pass after the bake time when every check passes."""

    ui_color = "#fce8e6"

    def __init__(self, *, release: ReleaseSpec, weight: int, shift_task_id: str, **kwargs):
        kwargs.setdefault("poke_interval", release.poke_interval)
        # The judge applies the timeout policies itself, measured from the shift. This bounds the
        # exposure when nobody judges (no triggerer running): the trigger times out and the task
        # fails, and the undo puts traffic back.
        kwargs.setdefault("timeout", release.gate_task_timeout + GATE_TIMEOUT_MARGIN)
        kwargs.setdefault("mode", "reschedule" if release.gate_mode == "reschedule" else "poke")
        super().__init__(**kwargs)
        self.release = release
        self.weight = weight
        self.shift_task_id = shift_task_id
        self.deferrable = release.gate_mode == "deferrable"
        self._look_memory: dict[str, float] = {}  # what spans looks: outages, a failing split

    def execute(self, context):
        try:
            return self._execute(context)
        except BaseException as e:
            self.record_failure(context, e)
            raise

    def _shifted_at(self, context) -> float:
        shifted = context["ti"].xcom_pull(task_ids=self.shift_task_id) or {}
        if "shifted_at" not in shifted:
            raise AirflowFailException(f"{self.shift_task_id} left no shift time; cannot gate")
        return shifted["shifted_at"]

    def _rollout_started_at(self, context) -> float | None:
        """When this run first moved traffic: the earliest shift that was not skipped."""
        ids = [f"shift_to_{w}" for w in self.release.gate_steps if w <= self.weight]
        shifts = context["ti"].xcom_pull(task_ids=ids) or []
        times = [s["shifted_at"] for s in shifts if isinstance(s, dict) and not s.get("skipped") and "shifted_at" in s]
        return min(times) if times else None

    def _execute(self, context):
        run = run_conf_of(context)
        if not run.takes_step(self.weight):
            self.log.info("step %d%% is not in this run's steps %s; nothing to judge", self.weight, run.steps)
            return {"weight": self.weight, "outcome": "skipped", "reason": f"not in this run's steps {run.steps}"}
        shifted_at = self._shifted_at(context)
        if run.dry_run:
            look = evaluate_gate(self.release, run, self.weight, shifted_at, {}, self.log, self._rollout_started_at(context))
            evidence = {**look.evidence, "dry_run": True}
            context["ti"].xcom_push(key=EVIDENCE_KEY, value=evidence)
            self.log.info("dry run: the gate would %s now: %s", look.outcome.value, look.reason)
            return evidence
        if self.deferrable:
            from canary_operators.triggers.metric_gate import MetricGateTrigger

            self.defer(
                trigger=MetricGateTrigger(
                    release=self.release.model_dump(mode="json"), run=run.model_dump(mode="json"),
                    weight=self.weight, shifted_at=shifted_at, poke_interval=self.release.poke_interval,
                    rollout_started_at=self._rollout_started_at(context),
                    run_id=run_id_of(context), task_id=self.task_id,
                ),
                method_name="execute_complete",
                timeout=timedelta(seconds=self.timeout),
            )
        return super().execute(context)

    def waited_too_long(self, kind: str) -> str:
        return f"gate at {self.weight}% {kind} in the triggerer after {self.timeout:g}s without a verdict"

    def execute_complete(self, context, event: dict):
        try:
            ti = context["ti"]
            ti.xcom_push(key=EVIDENCE_KEY, value=event["evidence"])
            if event["outcome"] == "rollback":
                ti.xcom_push(key=FAST_ROLLBACK_KEY, value=event["fast_rollback"])
                raise AirflowFailException(f"gate at {self.weight}% failed: {event['reason']}")
            self.log.info("gate at %d%% passed after %d looks in the triggerer: %s", self.weight, event["looks"], event["reason"])
            return event["evidence"]
        except BaseException as e:
            self.record_failure(context, e)
            raise

    def poke(self, context):
        from canary_operators.status import heartbeat

        run = run_conf_of(context)
        look = evaluate_gate(self.release, run, self.weight, self._shifted_at(context), self._look_memory,
                             self.log, self._rollout_started_at(context))
        context["ti"].xcom_push(key=EVIDENCE_KEY, value=look.evidence)
        if look.outcome is Outcome.ROLLBACK:
            record = reset_to_stable(self.release, run, self.weight, f"{self.task_id}: {look.reason}", self.log,
                                     run_id_of(context))
            context["ti"].xcom_push(key=FAST_ROLLBACK_KEY, value=record)
            raise AirflowFailException(f"gate at {self.weight}% failed: {look.reason}")
        why = heartbeat(self.release.name, run_id_of(context), self.log, phase="gating",
                        decision=f"{self.task_id}: {look.outcome.value}: {look.reason}"[:500])
        if why:
            raise AirflowFailException(f"gate at {self.weight}% stopped: {why}")
        if look.outcome is Outcome.ADVANCE:
            return PokeReturnValue(is_done=True, xcom_value=look.evidence)
        return False
