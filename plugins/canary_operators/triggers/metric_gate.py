"""MetricGateTrigger: a gate's waiting loop, in the triggerer, holding no worker slot.

Each look runs in a thread of the triggers' own bounded pool (``threads.in_thread``) so the event
loop never blocks. On a failing verdict the trigger itself puts traffic back on stable before it
fires, keeping rollback fast.
Each look also writes the release's status record (the guard's progress clock) and stops when the
guard or another run has taken the release over. A user who marks the deferred task failed or
success cancels the trigger: ``on_kill`` then puts traffic back on stable at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator

from airflow.triggers.base import BaseTrigger, TriggerEvent

from canary_operators.triggers.threads import in_thread

log = logging.getLogger(__name__)


class MetricGateTrigger(BaseTrigger):
    def __init__(self, release: dict, run: dict, weight: int, shifted_at: float, poke_interval: float,
                 rollout_started_at: float | None = None, run_id: str | None = None, task_id: str | None = None,
                 gate_timeout: float | None = None, dag_id: str | None = None):
        super().__init__()
        self.dag_id = dag_id  # with run_id and task_id: where the per-look record goes
        self.gate_timeout = gate_timeout  # from the evidence plan; None: the spec's
        self.rollout_started_at = rollout_started_at
        self.release = release
        self.run_conf = run
        self.weight = weight
        self.shifted_at = shifted_at
        self.poke_interval = poke_interval
        self.run_id = run_id
        self.task_id = task_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "canary_operators.triggers.metric_gate.MetricGateTrigger",
            {"release": self.release, "run": self.run_conf, "weight": self.weight,
             "shifted_at": self.shifted_at, "poke_interval": self.poke_interval,
             "rollout_started_at": self.rollout_started_at, "run_id": self.run_id, "task_id": self.task_id,
             "gate_timeout": self.gate_timeout, "dag_id": self.dag_id},
        )

    def _parsed(self):
        from canary_operators.spec import ReleaseSpec, RunConf

        return ReleaseSpec.model_validate(self.release), RunConf.model_validate(self.run_conf)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        import time

        from canary_operators.judge import Outcome
        from canary_operators.looks import GateLooks, looks_ref
        from canary_operators.operators.gate_evaluation import evaluate_gate, reset_to_stable
        from canary_operators.status import heartbeat

        release, run = self._parsed()
        memory: dict[str, float] = {}  # what spans looks: outages, a failing split
        looks = 0
        name = self.task_id or "gate"
        record_of_looks = GateLooks(gate=name, weight=self.weight, shifted_at=self.shifted_at)  # kept across looks
        ref = looks_ref(self.dag_id, self.run_id, name) if self.dag_id and self.run_id else None
        while True:
            looks += 1
            look = await in_thread(evaluate_gate, release, run, self.weight, self.shifted_at,
                                     memory, log, self.rollout_started_at, gate_timeout=self.gate_timeout,
                                             name=name, look_number=looks)
            record_of_looks.add(look.evidence, look.observed, look.gate, time.time())
            if look.outcome is Outcome.ROLLBACK:
                record = await in_thread(reset_to_stable, release, run, self.weight,
                                         f"{self.task_id or 'gate'}: {look.reason}", log, self.run_id, ref)
                yield TriggerEvent({"outcome": "rollback", "reason": look.reason, "evidence": look.evidence,
                                    "fast_rollback": record, "looks": looks, "look_record": record_of_looks.to_dict()})
                return
            if self.run_id:
                why = await in_thread(heartbeat, release.name, self.run_id, log, phase="gating",
                                      decision=f"{self.task_id or 'gate'}: {look.outcome.value}: {look.reason}"[:500],
                                              **({"looks_ref": ref} if ref else {}))
                if why:
                    yield TriggerEvent({"outcome": "rollback", "reason": f"stopped: {why}", "evidence": look.evidence,
                                        "fast_rollback": {"reason": why}, "looks": looks,
                                        "look_record": record_of_looks.to_dict()})
                    return
            if look.outcome is Outcome.ADVANCE:
                yield TriggerEvent({"outcome": "advance", "reason": look.reason, "evidence": look.evidence, "looks": looks,
                                    "look_record": record_of_looks.to_dict()})
                return
            await asyncio.sleep(self.poke_interval)

    async def on_kill(self) -> None:
        """The user marked the deferred gate failed or success (or cleared it): nobody judges the
        canary any more, so it goes back to stable now. The undo task finishes the job."""
        from canary_operators.operators.gate_evaluation import reset_to_stable

        release, run = self._parsed()
        if run.dry_run:
            return
        await in_thread(reset_to_stable, release, run, self.weight,
                        f"{self.task_id or 'gate'}: the gate was stopped by a user action while it judged "
                        f"the canary at {self.weight}%", log, self.run_id, stale=True)
