"""Putting traffic back on stable against a time budget, and the one hook for when that fails.

``restore_stable`` retries with exponential backoff and jitter (tenacity) until the router reads
back 0% or the deadline passes: a traffic API that is away for a minute must not leave a bad
build serving users. ``report_unsafe`` is the single place a failed undo is announced; the
notification work hooks in here.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from canary_operators.exceptions import SpecError

log = logging.getLogger(__name__)

UNSAFE_PREFIX = "TRAFFIC NOT RESTORED:"
# Called as hook(release, message) after the ERROR line; notifications register here.
FAILURE_HOOKS: list[Callable[[str, str], None]] = []


def _notify_targets(release: str, message: str) -> None:
    """The spec's ``notify:`` targets that want ``traffic_not_restored`` (imported late: it needs Airflow)."""
    from canary_operators.notify import notify_traffic_not_restored

    notify_traffic_not_restored(release, message)


FAILURE_HOOKS.append(_notify_targets)


class TrafficNotRestored(RuntimeError):
    """The deadline passed and the router does not read back 0% for the canary."""

    def __init__(self, message: str, weight: int | None = None):
        super().__init__(message)
        self.weight = weight  # the canary's weight as last read, None when unreadable


def notify_failure(release: str, message: str, logger=None) -> None:
    """The single failure hook: log at ERROR and call every registered hook."""
    (logger or log).error(message)
    for hook in FAILURE_HOOKS:
        try:
            hook(release, message)
        except Exception:  # noqa: BLE001 - a broken notifier must not hide the failure itself
            (logger or log).exception("failure hook %r raised", hook)


def report_unsafe(release: str, weight: int | None, reason: str, logger=None) -> str:
    """Announce, through the failure hook, that traffic could not be restored. Returns the message."""
    shown = "unknown" if weight is None else f"{weight}%"
    message = f"{UNSAFE_PREFIX} {release}: the canary is still at {shown} of traffic: {reason}"
    notify_failure(release, message, logger)
    return message


def restore_stable(router, deadline_seconds: float, logger=None, sleep: Callable[[float], None] | None = None) -> dict:
    """Set the canary to 0% and read it back, retrying until ``deadline_seconds`` have passed.

    Returns ``{"weight_after": 0, "attempts": n, "seconds_to_stable": s}``. Raises
    ``TrafficNotRestored`` (with the last error and last weight read) when the budget runs out.
    A ``SpecError`` (the router is misconfigured) is not retried: no wait can fix it.
    """
    from tenacity import wait_exponential, wait_random

    from canary_operators.clients.retrying import retrying

    logger = logger or log
    started = time.monotonic()
    attempts = 0
    last_weight: list[int | None] = [None]

    def before_sleep(state):
        logger.warning("putting traffic back on stable failed (attempt %d, %.0fs of %.0fs): %s",
                       state.attempt_number, time.monotonic() - started, deadline_seconds, state.outcome.exception())

    # Jitter on top of the capped exponential, so many undos never retry in lockstep.
    backoff = wait_exponential(multiplier=0.5, max=15) + wait_random(0, 1)

    def wait(state) -> float:
        # Never sleep past the deadline: the last try comes at the deadline, not a backoff step later.
        return min(backoff(state), max(0.0, deadline_seconds - state.seconds_since_start))

    policy = retrying(retry_on=lambda e: not isinstance(e, SpecError), deadline=deadline_seconds, wait=wait,
                      sleep=sleep, before_sleep=before_sleep)
    try:
        for attempt in policy:
            with attempt:
                attempts = attempt.retry_state.attempt_number
                try:
                    weight = router.restore().weights.canary
                except Exception:
                    try:
                        last_weight[0] = router.get_canary_weight()
                    except Exception:  # noqa: BLE001 - the router may be unreachable altogether
                        pass
                    raise
    except Exception as e:
        raise TrafficNotRestored(
            f"gave up after {attempts} attempts in {time.monotonic() - started:.0f}s "
            f"(rollback_deadline {deadline_seconds:g}s): {type(e).__name__}: {e}", last_weight[0]) from e
    return {"weight_after": weight, "attempts": attempts, "seconds_to_stable": round(time.monotonic() - started, 3)}
