"""The metrics provider contract: canary and baseline data for one check, in one shape; and the
bounded pool on which a provider runs one measurement's queries at the same time."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Hashable, TypeVar

from canary_operators.backend import Backend
from canary_operators.measurement import Measurement


@dataclass(frozen=True)
class Scope:
    """Which versions to compare, and over what window ending when."""

    canary_version: str
    baseline_version: str
    window_seconds: float
    end: float  # unix seconds


class MetricsProvider(Backend, ABC):
    """A metrics backend. Both calls are read-only and safe to repeat.

    ``measure`` returns None values for an arm with no data (the judge holds); it raises
    ``BackendUnavailable`` when the backend is down and ``MetricsError`` when it rejects the query.
    """

    @abstractmethod
    def check_online(self) -> None:
        """Raise BackendUnavailable or MetricsError when the backend cannot answer queries."""

    @abstractmethod
    def measure(self, check, scope: Scope) -> Measurement:
        """Canary and baseline data for ``check`` over ``scope``."""


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
# Queries in flight at once in one process, over all looks; equal to the HTTP client's connections
# per host (clients.http.POOL_SIZE), so no query waits for a connection that a thread cannot use.
QUERY_THREADS = 32
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def query_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=QUERY_THREADS, thread_name_prefix="canary-query")
        return _pool


def fetch_all(calls: dict[K, Callable[[], V]]) -> dict[K, V | Exception]:
    """Run ``calls`` at the same time on the query pool → each one's answer, or the error it raised
    (kept, not raised, so the caller raises the one its own order meets first, as before).
    A single call runs in the caller's thread. The calls must not wait on this pool themselves."""
    if len(calls) <= 1:
        return {key: _outcome(call) for key, call in calls.items()}
    futures = {key: query_pool().submit(_outcome, call) for key, call in calls.items()}
    return {key: future.result() for key, future in futures.items()}


def _outcome(call: Callable[[], V]) -> V | Exception:
    try:
        return call()
    except Exception as e:  # noqa: BLE001 - handed back to the caller, which raises it in its order
        return e
