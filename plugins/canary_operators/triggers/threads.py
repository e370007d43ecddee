"""The triggers' own bounded thread pool for their blocking work (a look, a status write, an undo).

``asyncio.to_thread`` runs on the loop's default executor: min(32, CPUs + 4) threads (6 on 2
cores), shared with every other trigger in the triggerer. Hundreds of gates then queue behind one
another there and each look comes late. This pool is ours alone, sized for a triggerer's load:
``[canary_operators] trigger_threads`` (``AIRFLOW__CANARY_OPERATORS__TRIGGER_THREADS``), default
``DEFAULT_THREADS``. A look, and the status write after it, hold a thread for their wall time,
mostly waiting (on the metrics backend, and on the triggerer's supervisor for every Variable and
connection), so the threads needed are about looks per second × seconds a look and its write take:
500 gates at a 30 s ``poke_interval`` need 6 threads at 0.35 s, but 33 on a loaded machine where
each took 2 s (``bench/gates.py``); the default leaves room for that. Idle threads are not made:
the pool starts them only as work queues up.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

T = TypeVar("T")
DEFAULT_THREADS = 64
_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def configured_threads() -> int:
    from airflow.configuration import conf

    threads = conf.getint("canary_operators", "trigger_threads", fallback=DEFAULT_THREADS)
    if threads < 1:
        raise ValueError(f"[canary_operators] trigger_threads must be at least 1, not {threads}")
    return threads


def pool() -> ThreadPoolExecutor:
    """The process's pool, made at first use (a triggerer process is one event loop)."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=configured_threads(), thread_name_prefix="canary-trigger")
        return _pool


async def in_thread(fn: Callable[..., T], /, *args, **kwargs) -> T:
    """``await asyncio.to_thread(fn, ...)`` on our pool: the context (logging) goes along, as there."""
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(pool(), call)
