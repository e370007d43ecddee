"""One way to wait and to retry, for every client, router, action and the undo: tenacity, set up here.

- ``retrying(...)``: a ``tenacity.Retrying`` with exponential backoff and jitter, stopped by a
  number of attempts and/or a deadline, retrying only what ``retry_on`` accepts. Call it with the
  function (``retrying(...)(fn, *args)``) or iterate it; the last error is re-raised when it gives up.
- ``wait_until(probe, ...)``: poll ``probe()`` until it returns something other than None, or the
  timeout passes (``WaitTimedOut``). For rollouts, deployments and services settling.
- ``pause(seconds)``: one plain wait, for a step that checks once more a moment later.

Every wait in the package goes through ``SLEEP`` here, so tests can make waiting instant and this
is the one place ``time.sleep`` appears.
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")
SLEEP: Callable[[float], None] = time.sleep


class WaitTimedOut(TimeoutError):
    """``wait_until`` ran out of time; the message says what it waited for and what it saw last."""


def retrying(*, retry_on: type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool] = Exception,
             attempts: int | None = None, deadline: float | None = None, first_wait: float = 0.5,
             max_wait: float = 10.0, jitter: float | None = None, wait=None, sleep: Callable[[float], None] | None = None,
             before_sleep=None, stop=None):
    """A ``tenacity.Retrying`` over one policy. ``wait``: a tenacity wait that replaces the backoff
    (e.g. one that honours Retry-After); ``stop``: a tenacity stop that replaces ``attempts`` and
    ``deadline`` (e.g. ``stop_before_delay``, which starts no wait that would pass the deadline).
    At least one of ``attempts``, ``deadline`` and ``stop`` is given."""
    from tenacity import (
        Retrying,
        retry_if_exception,
        retry_if_exception_type,
        stop_after_attempt,
        stop_after_delay,
        stop_never,
        wait_exponential,
        wait_random,
    )

    if attempts is None and deadline is None and stop is None:
        raise ValueError("retrying() needs attempts, a deadline, or both")
    if stop is None:
        stop = stop_never
        if attempts is not None:
            stop = stop_after_attempt(attempts)
        if deadline is not None:
            stop = stop_after_delay(deadline) if stop is stop_never else stop | stop_after_delay(deadline)
    if wait is None:
        wait = wait_exponential(multiplier=first_wait, max=max_wait)
        if jitter:
            wait = wait + wait_random(0, jitter)
    retry = (retry_if_exception(retry_on) if callable(retry_on) and not isinstance(retry_on, type)
             else retry_if_exception_type(retry_on))
    return Retrying(stop=stop, wait=wait, retry=retry, reraise=True, sleep=sleep or (lambda s: SLEEP(s)),
                    before_sleep=before_sleep)


def pause(seconds: float) -> None:
    """Wait ``seconds`` once (through ``SLEEP``)."""
    if seconds > 0:
        SLEEP(seconds)


def wait_until(probe: Callable[[], T | None], *, timeout: float, interval: float, what: str,
               sleep: Callable[[float], None] | None = None, clock: Callable[[], float] = time.monotonic) -> T:
    """Call ``probe`` every ``interval`` seconds until it returns a value (not None); raise
    ``WaitTimedOut`` naming ``what`` after ``timeout`` seconds. ``probe`` may raise to stop early."""
    pause = sleep or (lambda s: SLEEP(s))
    end = clock() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        left = end - clock()
        if left <= 0:
            raise WaitTimedOut(f"gave up after {timeout:g}s waiting for {what}")
        pause(min(interval, left))
