"""Putting traffic back on stable against a time budget, and the one failure hook when that fails.

The router is a handler-driven fake; the clock is a fake that only the injected ``sleep`` moves
(and a slow backend, when a test says so), so a 15-minute budget runs in milliseconds.
"""

from __future__ import annotations

import logging
import random
import time

import pytest

from canary_operators import safety
from canary_operators.exceptions import RouterError, SpecError
from canary_operators.safety import UNSAFE_PREFIX, TrafficNotRestored, report_unsafe, restore_stable
from tests.fakes import FakeRouter, down, outage

LOG = logging.getLogger("test_safety")


class Clock:
    """Monotonic time that moves only when someone sleeps or a call takes time."""

    def __init__(self):
        self.now = 50_000.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(time, "monotonic", clock.monotonic)  # what tenacity and restore_stable read
    random.seed(20261130)  # the jitter is random; keep each run the same
    return clock


def slow(handler, clock: Clock, seconds: float):
    """The handler, but every call takes ``seconds`` (an admin socket that times out)."""
    def timed(call, percent):
        clock.now += seconds
        return handler(call, percent)
    return timed


# -- restore_stable ------------------------------------------------------------------------------


def test_restores_at_once_when_the_router_answers(clock):
    router = FakeRouter(weight=10)
    assert restore_stable(router, 900, LOG, sleep=clock.sleep) == {"weight_after": 0, "attempts": 1, "seconds_to_stable": 0.0}
    assert router.sets() == [0]
    assert clock.waits == []


def test_rides_out_an_outage_with_growing_jittered_waits(clock, caplog):
    router = FakeRouter(weight=10, handler=outage(failing_sets=6))
    with caplog.at_level(logging.WARNING, logger="test_safety"):
        result = restore_stable(router, 900, LOG, sleep=clock.sleep)

    assert result["weight_after"] == 0 and result["attempts"] == 7
    assert router.weight == 0 and router.sets() == [0]
    # Exponential from 0.5 s (0.5, 1, 2, 4, 8, 15 at most), each plus up to 1 s of jitter.
    bases = [0.5, 1, 2, 4, 8, 15]
    assert len(clock.waits) == 6
    for wait, base in zip(clock.waits, bases):
        assert base <= wait <= base + 1, clock.waits
    assert any(wait - base > 0.01 for wait, base in zip(clock.waits, bases)), "no jitter"
    assert clock.waits[-1] > clock.waits[2] > clock.waits[0]
    assert result["seconds_to_stable"] == pytest.approx(sum(clock.waits), abs=0.001)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 6
    assert warnings[0].startswith("putting traffic back on stable failed (attempt 1, 0s of 900s): ")
    assert "Connection refused" in warnings[0]


def test_waits_never_exceed_the_deadline_budget(clock):
    router = FakeRouter(weight=10, handler=down)
    with pytest.raises(TrafficNotRestored):
        restore_stable(router, 20, LOG, sleep=clock.sleep)
    assert sum(clock.waits) <= 20, clock.waits
    # ... and the budget is used: the last try comes at the deadline, not a backoff step early.
    assert sum(clock.waits) == pytest.approx(20)


def test_gives_up_after_the_deadline_with_the_last_weight_read(clock):
    # The admin API takes the command but the weight does not change: it reads back 10% each time.
    router = FakeRouter(weight=10, handler=lambda call, percent: "ignore" if call == "set" else None)
    started = clock.now
    with pytest.raises(TrafficNotRestored) as failed:
        restore_stable(router, 60, LOG, sleep=clock.sleep)

    assert failed.value.weight == 10
    message = str(failed.value)
    assert message.startswith("gave up after ") and "(rollback_deadline 60s)" in message
    assert "WeightNotApplied: fake: put all traffic back on stable but it reads back stable 90%, canary 10%" in message
    assert clock.now - started <= 60 + 1
    assert len(clock.waits) >= 5  # it kept trying for the whole minute


def test_a_router_that_is_slow_and_down_gives_up_near_the_deadline(clock):
    router = FakeRouter(weight=25, handler=slow(down, clock, seconds=3.0))  # every call times out after 3 s
    started = clock.now
    with pytest.raises(TrafficNotRestored) as failed:
        restore_stable(router, 60, LOG, sleep=clock.sleep)
    assert failed.value.weight is None  # unreadable: the caller says "unknown", never a guess
    assert "RouterError: haproxy: admin socket" in str(failed.value)
    # Waits stay inside the budget; only the last attempt's own calls (6 s) may run past it.
    assert sum(clock.waits) <= 60
    assert clock.now - started <= 60 + 6


def test_a_misconfigured_router_is_not_retried(clock):
    router = FakeRouter(weight=10, handler=lambda call, percent: (_ for _ in ()).throw(
        SpecError("router.settings.backend: no backend named 'webb'")))
    with pytest.raises(TrafficNotRestored) as failed:
        restore_stable(router, 900, LOG, sleep=clock.sleep)
    assert clock.waits == []
    assert "gave up after 1 attempts" in str(failed.value)
    assert "SpecError: router.settings.backend: no backend named 'webb'" in str(failed.value)
    assert isinstance(failed.value.__cause__, SpecError)


def test_the_last_error_is_kept_as_the_cause(clock):
    router = FakeRouter(weight=10, handler=down)
    with pytest.raises(TrafficNotRestored) as failed:
        restore_stable(router, 5, LOG, sleep=clock.sleep)
    assert isinstance(failed.value.__cause__, RouterError)


# -- report_unsafe and the failure hooks ---------------------------------------------------------


@pytest.fixture
def hooks(monkeypatch):
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(safety, "FAILURE_HOOKS", [lambda release, message: calls.append((release, message))])
    return calls


def test_report_unsafe_logs_one_error_line_and_calls_every_hook(hooks, monkeypatch, caplog):
    second: list[str] = []
    safety.FAILURE_HOOKS.append(lambda release, message: second.append(release))
    with caplog.at_level(logging.ERROR, logger="test_safety"):
        message = report_unsafe("web", 10, "gave up after 31 attempts in 900s", LOG)

    assert message == "TRAFFIC NOT RESTORED: web: the canary is still at 10% of traffic: gave up after 31 attempts in 900s"
    assert UNSAFE_PREFIX == "TRAFFIC NOT RESTORED:"
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [message]
    assert hooks == [("web", message)]
    assert second == ["web"]


def test_report_unsafe_with_an_unreadable_weight_says_unknown(hooks):
    message = report_unsafe("web", None, "admin socket unreachable", LOG)
    assert message.startswith("TRAFFIC NOT RESTORED: web: the canary is still at unknown of traffic")
    assert hooks == [("web", message)]


def test_a_hook_that_raises_does_not_hide_the_failure(hooks, caplog):
    def broken_pager(release, message):
        raise ConnectionError("pager API down")

    safety.FAILURE_HOOKS.insert(0, broken_pager)
    with caplog.at_level(logging.ERROR, logger="test_safety"):
        message = report_unsafe("web", 50, "gave up", LOG)  # does not raise

    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == message  # the ERROR line comes first, whatever the hooks do
    assert any(line.startswith("failure hook") and "raised" in line for line in lines)
    assert hooks == [("web", message)]  # the hook after the broken one still ran


def test_a_verification_that_errors_after_stable_reads_back_100_is_not_unrestored_traffic():
    from canary_operators.exceptions import RouterError
    from canary_operators.routers.base import TrafficRouter

    class VerifyAway(TrafficRouter):
        type_name = "verify_away"
        settings_model = None
        weight = 30

        def __init__(self):
            pass

        def set_canary_weight(self, percent):
            self.weight = percent

        def get_canary_weight(self):
            return self.weight

        def verify(self, percent):
            raise RouterError("status API unreachable")

    router = VerifyAway()
    assert router.restore().verified is None and router.weight == 0
    with pytest.raises(RouterError, match="status API unreachable"):  # a shift still needs its answer
        router.apply_verified(10)
