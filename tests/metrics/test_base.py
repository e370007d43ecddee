"""fetch_all: a measurement's queries at once on a bounded pool, each answer or error under its key."""

from __future__ import annotations

import threading
import time

import pytest

import canary_operators.metrics.base as base
from canary_operators.exceptions import BackendUnavailable


@pytest.fixture
def small_pool(monkeypatch):
    monkeypatch.setattr(base, "QUERY_THREADS", 3)
    monkeypatch.setattr(base, "_pool", None)
    yield
    base._pool.shutdown()


def test_calls_run_together_but_never_more_than_the_pool(small_pool):
    lock, state = threading.Lock(), {"now": 0, "peak": 0}

    def call(i):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.02)
        with lock:
            state["now"] -= 1
        return i * 10

    answers = base.fetch_all({f"q{i}": (lambda i=i: call(i)) for i in range(12)})
    assert answers == {f"q{i}": i * 10 for i in range(12)}
    assert state["peak"] == 3


def test_an_error_is_handed_back_under_its_key_and_the_others_still_answer(small_pool):
    down = BackendUnavailable("prometheus at http://p answered HTTP 503")

    def fail():
        raise down

    answers = base.fetch_all({"a": lambda: 1, "b": fail, "c": lambda: 3})
    assert answers == {"a": 1, "b": down, "c": 3}


def test_a_single_call_runs_in_the_callers_thread():
    assert base.fetch_all({"only": lambda: threading.current_thread().name}) == {"only": threading.current_thread().name}
