"""MetricGateTrigger: a gate's waiting loop, in the triggerer, holding no worker slot.

Each look runs in a thread (``asyncio.to_thread``) so the event loop never blocks. On a failing
verdict the trigger itself puts traffic back on stable before it fires, keeping rollback fast.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator

from airflow.triggers.base import BaseTrigger, TriggerEvent

log = logging.getLogger(__name__)


class MetricGateTrigger(BaseTrigger):
    def __init__(self, release: dict, run: dict, weight: int, shifted_at: float, poke_interval: float,
                 rollout_started_at: float | None = None):
        super().__init__()
        self.rollout_started_at = rollout_started_at
        self.release = release
        self.run_conf = run
        self.weight = weight
        self.shifted_at = shifted_at
        self.poke_interval = poke_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "canary_operators.triggers.metric_gate.MetricGateTrigger",
            {"release": self.release, "run": self.run_conf, "weight": self.weight,
             "shifted_at": self.shifted_at, "poke_interval": self.poke_interval,
             "rollout_started_at": self.rollout_started_at},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from canary_operators.judge import Outcome
        from canary_operators.operators.gate_evaluation import evaluate_gate, reset_to_stable
        from canary_operators.spec import ReleaseSpec, RunConf

        release = ReleaseSpec.model_validate(self.release)
        run = RunConf.model_validate(self.run_conf)
        provider_errors: dict[str, int] = {}
        looks = 0
        while True:
            looks += 1
            look = await asyncio.to_thread(evaluate_gate, release, run, self.weight, self.shifted_at,
                                             provider_errors, log, self.rollout_started_at)
            if look.outcome is Outcome.ROLLBACK:
                record = await asyncio.to_thread(reset_to_stable, release, run, self.weight, look.reason, log)
                yield TriggerEvent({"outcome": "rollback", "reason": look.reason, "evidence": look.evidence,
                                    "fast_rollback": record, "looks": looks})
                return
            if look.outcome is Outcome.ADVANCE:
                yield TriggerEvent({"outcome": "advance", "reason": look.reason, "evidence": look.evidence, "looks": looks})
                return
            await asyncio.sleep(self.poke_interval)
