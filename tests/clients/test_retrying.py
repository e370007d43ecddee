"""The one retry and wait helper: attempts, deadlines, what is retried, and waits that end."""

from __future__ import annotations

import pytest

from canary_operators.clients import retrying as retrying_module
from canary_operators.clients.retrying import WaitTimedOut, pause, retrying, wait_until


class Flaky(Exception):
    pass


def test_retries_what_it_is_told_and_gives_up_with_the_last_error():
    slept, calls = [], []

    def call():
        calls.append(1)
        raise Flaky(f"attempt {len(calls)}")

    with pytest.raises(Flaky, match="attempt 3"):
        retrying(retry_on=Flaky, attempts=3, first_wait=1, sleep=slept.append)(call)
    assert len(calls) == 3 and len(slept) == 2 and slept[0] <= slept[1]


def test_does_not_retry_other_errors():
    calls = []

    def call():
        calls.append(1)
        raise ValueError("a wrong spec")

    with pytest.raises(ValueError):
        retrying(retry_on=Flaky, attempts=5, sleep=lambda s: None)(call)
    assert calls == [1]


def test_a_predicate_chooses_what_is_retried():
    calls = []

    def call():
        calls.append(1)
        if len(calls) < 3:
            raise Flaky("busy")
        return "done"

    policy = retrying(retry_on=lambda e: isinstance(e, Flaky) and "busy" in str(e), attempts=5, sleep=lambda s: None)
    assert policy(call) == "done" and len(calls) == 3


def test_a_policy_needs_a_limit():
    with pytest.raises(ValueError):
        retrying(retry_on=Flaky)


def test_wait_until_returns_the_first_value_and_times_out_naming_what_it_waited_for():
    values = iter([None, None, "ready"])
    slept = []
    assert wait_until(lambda: next(values), timeout=10, interval=2, what="x", sleep=slept.append) == "ready"
    assert slept == [2, 2]
    now = [0.0]

    def sleep(s):
        now[0] += s

    with pytest.raises(WaitTimedOut, match="waiting for the rollout to settle"):
        wait_until(lambda: None, timeout=5, interval=2, what="the rollout to settle", sleep=sleep, clock=lambda: now[0])
    assert now[0] == 5


def test_pause_waits_once_through_the_one_sleep_and_not_at_all_for_zero(monkeypatch):
    slept = []
    monkeypatch.setattr(retrying_module, "SLEEP", slept.append)
    pause(1.5)
    pause(0)
    assert slept == [1.5]
