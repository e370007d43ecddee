"""The triggers' own pool: bounded by [canary_operators] trigger_threads, context carried along,
and the gate's looks run on it rather than on asyncio's default executor."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest

import canary_operators.triggers.threads as threads


@pytest.fixture
def fresh_pool(monkeypatch):
    monkeypatch.setattr(threads, "_pool", None)
    yield monkeypatch
    if threads._pool is not None:
        threads._pool.shutdown()


def test_the_pool_is_bounded_by_the_setting(fresh_pool):
    fresh_pool.setenv("AIRFLOW__CANARY_OPERATORS__TRIGGER_THREADS", "3")
    lock, state = threading.Lock(), {"now": 0, "peak": 0}

    def blocking(i):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.03)
        with lock:
            state["now"] -= 1
        return i, threading.current_thread().name

    async def many():
        return await asyncio.gather(*(threads.in_thread(blocking, i) for i in range(10)))

    answers = asyncio.run(many())
    assert [i for i, _ in answers] == list(range(10))
    assert state["peak"] == 3
    assert {name.startswith("canary-trigger") for _, name in answers} == {True}


def test_the_default_and_a_bad_setting(fresh_pool):
    fresh_pool.delenv("AIRFLOW__CANARY_OPERATORS__TRIGGER_THREADS", raising=False)
    assert threads.configured_threads() == threads.DEFAULT_THREADS
    fresh_pool.setenv("AIRFLOW__CANARY_OPERATORS__TRIGGER_THREADS", "0")
    with pytest.raises(ValueError, match=r"\[canary_operators\] trigger_threads must be at least 1"):
        threads.pool()


def test_the_callers_context_goes_along(fresh_pool):
    who = contextvars.ContextVar("who", default="nobody")

    async def call():
        who.set("gate_25")
        return await threads.in_thread(who.get)

    assert asyncio.run(call()) == "gate_25"


def test_the_gates_looks_run_on_the_pool(fresh_pool):
    """MetricGateTrigger's look runs in one of our threads (not asyncio's default executor)."""
    import canary_operators.operators.gate_evaluation as gate_evaluation
    from canary_operators.judge import Outcome
    from canary_operators.operators.gate_evaluation import GateLook
    from canary_operators.triggers.metric_gate import MetricGateTrigger
    from tests.planner.web_release import RUN, spec_with

    seen = []

    def look(*args, **kwargs):
        seen.append(threading.current_thread().name)
        return GateLook(Outcome.ADVANCE, "passed", {})

    fresh_pool.setattr(gate_evaluation, "evaluate_gate", look)
    trigger = MetricGateTrigger(release=spec_with().model_dump(mode="json"), run=RUN.model_dump(mode="json"), weight=25,
                                shifted_at=time.time(), poke_interval=30.0)

    async def first_event():
        async for event in trigger.run():
            return event.payload

    assert asyncio.run(first_event())["outcome"] == "advance"
    assert len(seen) == 1 and seen[0].startswith("canary-trigger")
