"""The metric gate's trigger: it round-trips through ``serialize()``, as the triggerer stores and rebuilds it."""

from __future__ import annotations

import importlib
import json

from tests.planner.web_release import RUN, spec_with


def test_the_trigger_round_trips_through_serialize():
    from canary_operators.triggers.metric_gate import MetricGateTrigger

    trigger = MetricGateTrigger(release=spec_with().model_dump(mode="json"), run=RUN.model_dump(mode="json"), weight=25,
                                shifted_at=1_700_000_000.0, poke_interval=30.0, rollout_started_at=1_699_999_000.0,
                                run_id="manual__v2", task_id="gate_25", gate_timeout=1800.0)
    classpath, kwargs = trigger.serialize()
    stored = json.loads(json.dumps(kwargs))  # what the triggerer keeps: JSON
    module, name = classpath.rsplit(".", 1)
    again = getattr(importlib.import_module(module), name)(**stored)
    assert type(again) is MetricGateTrigger
    assert again.serialize() == (classpath, kwargs)
    assert again._parsed() == trigger._parsed()  # the same release and run conf, validated again


def test_the_trigger_carries_the_planned_timeout_through_serialize():
    from canary_operators.triggers.metric_gate import MetricGateTrigger

    trigger = MetricGateTrigger(release={}, run={}, weight=50, shifted_at=1.0, poke_interval=30.0, gate_timeout=2400.0)
    path, kwargs = trigger.serialize()
    assert path == "canary_operators.triggers.metric_gate.MetricGateTrigger"
    assert MetricGateTrigger(**kwargs).gate_timeout == 2400.0
    assert MetricGateTrigger(**{**kwargs, "gate_timeout": None}).serialize()[1]["gate_timeout"] is None
