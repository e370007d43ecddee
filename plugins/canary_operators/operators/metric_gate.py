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
from canary_operators.looks import LOOKS_KEY, GateLooks, looks_ref
from canary_operators.operators.common import PREFLIGHT_TASK, RecordsFailure, run_conf_of, run_id_of, sibling_task_id
from canary_operators.operators.gate_evaluation import evaluate_gate, reset_to_stable
from canary_operators.operators.preflight import PLAN_KEY
from canary_operators.planner import planned_gate_timeout
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
        # With plan: adapt, the longest gate timeout the evidence planner may give (a deferred gate
        # waits only as long as its planned timeout needs).
        kwargs.setdefault("timeout", release.gate_task_timeout + GATE_TIMEOUT_MARGIN)
        kwargs.setdefault("mode", "reschedule" if release.gate_mode == "reschedule" else "poke")
        super().__init__(**kwargs)
        self.release = release
        self.weight = weight
        self.shift_task_id = shift_task_id
        self.deferrable = release.gate_mode == "deferrable"
        self._look_memory: dict[str, float] = {}  # what spans looks: outages, a failing split
        self._planned: tuple[float | None] | None = None  # this gate's planned timeout, once read
        # The per-look record in poke mode. In reschedule mode Airflow clears a task's XComs when it
        # starts again, so each reschedule's record holds its own looks only.
        self._looks: GateLooks | None = None

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
        ids = [sibling_task_id(context, f"shift_to_{w}") for w in self.release.gate_steps if w <= self.weight]
        shifts = context["ti"].xcom_pull(task_ids=ids) or []
        times = [s["shifted_at"] for s in shifts if isinstance(s, dict) and not s.get("skipped") and "shifted_at" in s]
        return min(times) if times else None

    def _gate_timeout(self, context) -> float | None:
        """This gate's timeout from preflight's evidence plan (plan: adapt), else None: the spec's."""
        if self._planned is None:
            timeout = None
            if self.release.plan == "adapt":
                plan = context["ti"].xcom_pull(task_ids=sibling_task_id(context, PREFLIGHT_TASK), key=PLAN_KEY)
                timeout = planned_gate_timeout(plan, self.weight)
                if timeout and timeout != self.release.gate_timeout:
                    self.log.info("gate at %d%%: timeout %.0fs from the evidence plan (spec %.0fs)",
                                  self.weight, timeout, self.release.gate_timeout)
            self._planned = (timeout,)
        return self._planned[0]

    def _trigger_timeout(self, gate_timeout: float | None) -> float:
        """How long a deferred gate may wait in the triggerer: its (planned) timeout, twice that
        when a check may hold, plus the margin; never beyond the task's own timeout."""
        holds = any("hold" in (c.on_no_data, c.on_error, c.on_inconclusive) for c in self.release.checks)
        planned = (2 if holds else 1) * (gate_timeout or self.release.gate_timeout) + GATE_TIMEOUT_MARGIN
        return min(self.timeout, planned)

    def _execute(self, context):
        run = run_conf_of(context)
        if not run.takes_step(self.weight):
            self.log.info("step %d%% is not in this run's steps %s; nothing to judge", self.weight, run.steps)
            return {"weight": self.weight, "outcome": "skipped", "reason": f"not in this run's steps {run.steps}"}
        shifted_at = self._shifted_at(context)
        gate_timeout = self._gate_timeout(context)
        if run.dry_run:
            look = evaluate_gate(self.release, run, self.weight, shifted_at, {}, self.log, self._rollout_started_at(context),
                                 gate_timeout=gate_timeout, name=self.task_id, look_number=1)
            evidence = {**look.evidence, "dry_run": True}
            context["ti"].xcom_push(key=EVIDENCE_KEY, value=evidence)
            self._record_look(context, shifted_at, look)
            self.log.info("dry run: the gate would %s now: %s", look.outcome.value, look.reason)
            return evidence
        if self.deferrable:
            from canary_operators.triggers.metric_gate import MetricGateTrigger

            self.defer(
                trigger=MetricGateTrigger(
                    release=self.release.model_dump(mode="json"), run=run.model_dump(mode="json"),
                    weight=self.weight, shifted_at=shifted_at, poke_interval=self.release.poke_interval,
                    rollout_started_at=self._rollout_started_at(context),
                    run_id=run_id_of(context), task_id=self.task_id, gate_timeout=gate_timeout,
                    dag_id=self.dag_id,
                ),
                method_name="execute_complete",
                timeout=timedelta(seconds=self._trigger_timeout(gate_timeout)),
            )
        return super().execute(context)

    def _record_look(self, context, shifted_at: float, look) -> None:
        """Add the look to this gate's per-look record and push the record (XCom key ``looks``)."""
        import time

        if self._looks is None:
            self._looks = GateLooks(gate=self.task_id, weight=self.weight, shifted_at=shifted_at)
        self._looks.add(look.evidence, look.observed, look.gate, time.time())
        context["ti"].xcom_push(key=LOOKS_KEY, value=self._looks.to_dict())

    def waited_too_long(self, kind: str) -> str:
        return (f"gate at {self.weight}% {kind} in the triggerer without a verdict (it may wait its gate timeout, "
                f"planned or the spec's, plus {GATE_TIMEOUT_MARGIN:g}s)")

    def execute_complete(self, context, event: dict):
        try:
            ti = context["ti"]
            ti.xcom_push(key=EVIDENCE_KEY, value=event["evidence"])
            if event.get("look_record"):
                ti.xcom_push(key=LOOKS_KEY, value=event["look_record"])
            if event["outcome"] == "rollback":
                ti.xcom_push(key=FAST_ROLLBACK_KEY, value=event["fast_rollback"])
                self.log.error("%s rolled back at %d%% after %d looks: %s", self.task_id, self.weight, event["looks"],
                               event["reason"])
                raise AirflowFailException(f"gate at {self.weight}% failed: {event['reason']}") from None
            self.log.info("gate at %d%% passed after %d looks in the triggerer: %s", self.weight, event["looks"], event["reason"])
            return event["evidence"]
        except BaseException as e:
            self.record_failure(context, e)
            raise

    def poke(self, context):
        from canary_operators.status import heartbeat

        run = run_conf_of(context)
        shifted_at = self._shifted_at(context)
        look = evaluate_gate(self.release, run, self.weight, shifted_at, self._look_memory,
                             self.log, self._rollout_started_at(context), gate_timeout=self._gate_timeout(context),
                             name=self.task_id, look_number=(self._looks._count if self._looks else 0) + 1)
        context["ti"].xcom_push(key=EVIDENCE_KEY, value=look.evidence)
        self._record_look(context, shifted_at, look)
        if look.outcome is Outcome.ROLLBACK:
            record = reset_to_stable(self.release, run, self.weight, f"{self.task_id}: {look.reason}", self.log,
                                     run_id_of(context), looks_ref(self.dag_id, run_id_of(context), self.task_id))
            context["ti"].xcom_push(key=FAST_ROLLBACK_KEY, value=record)
            raise AirflowFailException(f"gate at {self.weight}% failed: {look.reason}") from None
        why = heartbeat(self.release.name, run_id_of(context), self.log, phase="gating",
                        decision=f"{self.task_id}: {look.outcome.value}: {look.reason}"[:500],
                        looks_ref=looks_ref(self.dag_id, run_id_of(context), self.task_id))
        if why:
            raise AirflowFailException(f"gate at {self.weight}% stopped: {why}")
        if look.outcome is Outcome.ADVANCE:
            return PokeReturnValue(is_done=True, xcom_value=look.evidence)
        return False
