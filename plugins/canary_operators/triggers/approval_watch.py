"""ApprovalWatchTrigger: the approval's waiting loop, which keeps judging the canary meanwhile.

While ``approve_N`` waits for a person, the canary still serves the last step's traffic. This
trigger keeps looking at it the way the gate does (``evaluate_gate`` in watching mode, where only
a failing verdict counts and the gate timeouts never apply), and in the same loop:

- asking: checks for the person's answer and applies the timeout default, like Airflow's
  ``HITLTrigger`` (whose response and timeout handling it reuses);
- holding ("Hold a bit longer"): waits until ``hold_until``, then fires ``hold_over`` so the
  operator asks again.

Each look writes the status record (``awaiting_approval``, the guard's progress clock) and stops
when the guard or another run has taken the release over. A failing check puts traffic back on
stable first (within a second of the verdict when the router answers), then closes the question
with "Roll back" so it no longer waits for anyone, then fires.

Events (the operator's ``execute_complete``): an HITL payload (``chosen_options`` …), or a dict
with ``watch`` set to ``rollback`` (a check failed), ``stopped`` (taken over) or ``hold_over``.

A person's answer through the REST API resumes the deferred task directly in Airflow 3.3 (the
PATCH route resumes ``awaiting_input`` and ``deferred`` tasks alike), and the triggerer then
cancels this trigger as a "user action". So:

- when this trigger sees a person's answer, it stops looking and does not fire: a second resume
  would race the first (with SQLite, whose trigger ids are reused, an event from here even
  resumed the task's next deferral, and Airflow 3.3.2 then failed the task as "changed
  externally"). Only if it is still running ``answer_grace`` seconds later (the answer came while
  the task had not deferred yet, so the API did not resume it) does it deliver the answer itself;
- ``on_kill`` tells an answer (leave traffic alone: the operator acts on it) from "marked
  failed/success/cleared" (traffic to stable).

Answers written by a trigger (the timeout default, "Roll back" after a failing check) resume
nothing by themselves, so those events fire at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone
from typing import Any, AsyncIterator
from uuid import UUID

from airflow.providers.standard.triggers.hitl import HITLTrigger
from airflow.providers.standard.version_compat import AIRFLOW_V_3_3_PLUS
from airflow.triggers.base import TriggerEvent

from canary_operators.triggers.threads import in_thread

log = logging.getLogger(__name__)

CLASSPATH = "canary_operators.triggers.approval_watch.ApprovalWatchTrigger"
KILL_READ_ATTEMPTS = 3  # on_kill reads the answer this often before it assumes there is none
# Airflow 3.3+ resumes a deferred HITL task from the REST API when a person answers.
API_RESUMES_ANSWERED_TASKS = AIRFLOW_V_3_3_PLUS


def _utc(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=timezone.utc)


class ApprovalWatchTrigger(HITLTrigger):
    """Wait for a person (or until ``hold_until``) while judging the canary at ``weight``%."""

    def __init__(self, *, ti_id: str, options: list[str], release: dict, run: dict, weight: int,
                 shifted_at: float, poke_interval: float, params: dict | None = None,
                 defaults: list[str] | None = None, multiple: bool = False, timeout_at: float | None = None,
                 hold_until: float | None = None, roll_back_option: str = "Roll back", answer_grace: float = 30.0,
                 rollout_started_at: float | None = None, run_id: str | None = None, task_id: str | None = None):
        # HITLTrigger pops "value" out of each param dict: hand it copies.
        params = {k: dict(v) if isinstance(v, dict) else v for k, v in (params or {}).items()}
        super().__init__(ti_id=UUID(str(ti_id)), options=options, params=params, defaults=defaults,
                         multiple=multiple, timeout_datetime=_utc(timeout_at), poke_interval=poke_interval)
        self.timeout_at = timeout_at
        self.hold_until = hold_until
        self.roll_back_option = roll_back_option
        self.answer_grace = answer_grace
        self.release = release
        self.run_conf = run
        self.weight = weight
        self.shifted_at = shifted_at
        self.rollout_started_at = rollout_started_at
        self.run_id = run_id
        self.task_id = task_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            CLASSPATH,
            {"ti_id": str(self.ti_id), "options": self.options, "defaults": self.defaults,
             "params": {k: self.params.get_param(k).serialize() for k in self.params}, "multiple": self.multiple,
             "timeout_at": self.timeout_at, "hold_until": self.hold_until, "roll_back_option": self.roll_back_option,
             "answer_grace": self.answer_grace, "poke_interval": self.poke_interval, "release": self.release,
             "run": self.run_conf, "weight": self.weight, "shifted_at": self.shifted_at,
             "rollout_started_at": self.rollout_started_at, "run_id": self.run_id, "task_id": self.task_id},
        )

    @property
    def holding(self) -> bool:
        return self.hold_until is not None

    @property
    def name(self) -> str:
        return self.task_id or "approval"

    def _parsed(self):
        from canary_operators.spec import ReleaseSpec, RunConf

        return ReleaseSpec.model_validate(self.release), RunConf.model_validate(self.run_conf)

    async def _answer(self) -> TriggerEvent | None:
        """The person's answer or the timeout default (HITLTrigger's handling), or None. An
        unreachable API counts as no answer yet: the canary stays watched meanwhile."""
        try:
            if self.timeout_datetime and self.timeout_datetime < datetime.now(timezone.utc):
                return await self._handle_timeout()
            return await self._handle_response()
        except Exception as e:  # noqa: BLE001 - in 3.3 the API resumes the task itself anyway
            log.warning("%s: could not read the answer (will look again): %s", self.name, e)
            return None

    async def _after_a_persons_answer(self, event: TriggerEvent) -> TriggerEvent:
        """Wait for the triggerer to cancel this trigger (the API resumed the task with the
        answer); the event only if that has not happened within ``answer_grace`` seconds."""
        if not API_RESUMES_ANSWERED_TASKS:
            return event
        log.info("%s: a person answered; Airflow resumes the task with the answer, this watch ends", self.name)
        await asyncio.sleep(self.answer_grace)
        log.warning("%s: still waiting %gs after the answer: the task was not resumed by the API (answered "
                    "before it deferred?); resuming it from here", self.name, self.answer_grace)
        return event

    async def _close_question(self, reason: str) -> bool:
        """Record "Roll back" as the answer, so the question no longer waits for anyone. False
        when a person answered first (then the API resumes the task with that answer)."""
        from airflow.sdk.execution_time.hitl import get_hitl_detail_content_detail, update_hitl_detail_response

        try:
            await in_thread(update_hitl_detail_response, ti_id=self.ti_id,
                            chosen_options=[self.roll_back_option], params_input=self.params.dump())
            log.info("%s: answered %r on the question: %s", self.name, self.roll_back_option, reason)
            return True
        except Exception as e:  # noqa: BLE001 - e.g. 409: a person answered at the same moment
            log.warning("%s: could not close the question (%s); the task fails anyway", self.name, e)
        try:
            answer = await in_thread(get_hitl_detail_content_detail, ti_id=self.ti_id)
            return not (answer.response_received and answer.responded_by_user is not None)
        except Exception:  # noqa: BLE001 - cannot tell: fire, the task is most likely still deferred
            return True

    def _look(self, release, run, memory: dict[str, float]):
        """One watching look; an unexpected error counts like a metrics outage of the whole look."""
        from canary_operators.judge import Outcome
        from canary_operators.operators.gate_evaluation import GateLook, evaluate_gate

        try:
            look = evaluate_gate(release, run, self.weight, self.shifted_at, memory, log,
                                 self.rollout_started_at, watching=True)
            memory.pop("(look)", None)
            return look
        except Exception as e:  # noqa: BLE001
            now = time.time()
            down = now - memory.setdefault("(look)", now)
            log.warning("%s: could not evaluate the checks (failing for %.0fs of %.0fs allowed): %s",
                        self.name, down, release.max_provider_outage, e)
            if down >= release.max_provider_outage:
                reason = f"the checks could not be evaluated for {down:.0f}s: {type(e).__name__}: {e}"
                return GateLook(Outcome.ROLLBACK, reason, {"weight": self.weight, "watching": True,
                                                           "outcome": "rollback", "reason": reason, "checks": []})
            return GateLook(Outcome.HOLD, f"look failed: {e}", {"weight": self.weight, "watching": True})

    def _pause(self) -> float:
        """Until the next look, or until the hold or the answer's timeout ends, whichever is first."""
        end = self.hold_until if self.holding else self.timeout_at
        left = None if end is None else end - time.time()
        return min(self.poke_interval, left) if left is not None and left > 0 else self.poke_interval

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from canary_operators.judge import Outcome
        from canary_operators.operators.gate_evaluation import reset_to_stable
        from canary_operators.status import heartbeat

        release, run = self._parsed()
        memory: dict[str, float] = {}
        looks = 0
        waiting = f"holding until {_utc(self.hold_until):%H:%M:%S} UTC" if self.holding else "waiting for a person"
        while True:
            if self.holding:
                if time.time() >= self.hold_until:
                    yield TriggerEvent({"watch": "hold_over", "looks": looks})
                    return
            else:
                answer = await self._answer()
                if answer is not None:
                    if answer.payload.get("responded_by_user"):
                        answer = await self._after_a_persons_answer(answer)
                    yield answer
                    return
            looks += 1
            look = await in_thread(self._look, release, run, memory)
            if look.outcome is Outcome.ROLLBACK:
                verdict_at = time.monotonic()
                record = await in_thread(reset_to_stable, release, run, self.weight,
                                         f"{self.name}: {look.reason}", log, self.run_id)
                record["seconds_from_verdict"] = round(time.monotonic() - verdict_at, 3)
                event = TriggerEvent({"watch": "rollback", "reason": look.reason, "evidence": look.evidence,
                                      "fast_rollback": record, "looks": looks})
                if not self.holding and not await self._close_question(look.reason):
                    # A person answered first: the task resumes with that answer and finds the
                    # release rolling back in the status record.
                    event = await self._after_a_persons_answer(event)
                yield event
                return
            if self.run_id:
                why = await in_thread(
                    heartbeat, release.name, self.run_id, log, phase="awaiting_approval",
                    decision=f"{self.name}: {waiting}; canary at {self.weight}% watched: "
                             f"{look.outcome.value}: {look.reason}"[:500])
                if why:
                    yield TriggerEvent({"watch": "stopped", "reason": why, "evidence": look.evidence, "looks": looks})
                    return
            await asyncio.sleep(self._pause())

    async def on_kill(self) -> None:
        """The task was stopped from outside. In 3.3 a person's answer does that too (the API
        resumes the task directly): then leave traffic alone, the operator acts on the answer.
        Otherwise (marked failed or success, cleared) nobody watches the canary any more, so it
        goes back to stable now; the undo task finishes the job."""
        from airflow.sdk.execution_time.hitl import get_hitl_detail_content_detail

        from canary_operators.operators.gate_evaluation import reset_to_stable

        release, run = self._parsed()
        if run.dry_run:
            return
        if not self.holding:  # while holding, the question already holds the answer "Hold"
            for attempt in range(1, KILL_READ_ATTEMPTS + 1):
                try:
                    answer = await in_thread(get_hitl_detail_content_detail, ti_id=self.ti_id)
                except Exception as e:  # noqa: BLE001 - cannot tell: after a few tries the safe side is stable
                    log.warning("%s: could not read the answer (%d/%d): %s", self.name, attempt, KILL_READ_ATTEMPTS, e)
                    if attempt < KILL_READ_ATTEMPTS:
                        await asyncio.sleep(1.0)
                    continue
                if answer.response_received:
                    log.info("%s: answered %s; the task goes on with the answer", self.name, answer.chosen_options)
                    return
                break
        await in_thread(reset_to_stable, release, run, self.weight,
                        f"{self.name}: the approval was stopped by a user action while the canary "
                        f"was watched at {self.weight}%", log, self.run_id, stale=True)
