#!/usr/bin/env python3
"""Steady HTTP load generator for the canary demo.

N threads share one schedule of request slots spaced 1/rps apart, so the
total rate stays near --rps even when one thread is stuck on a slow answer.
Each thread keeps one keep-alive connection (http.client) and reconnects
after any error. 5xx answers and refused connections are counted, never
fatal. It prints nothing until it stops (SIGTERM/SIGINT or --max-seconds),
then prints a single summary line.

Standard library only.
"""
from __future__ import annotations

import argparse
import http.client
import signal
import sys
import threading
import time
from collections import Counter
from urllib.parse import urlsplit

MAX_CATCH_UP = 1.0  # seconds of missed slots that may be sent in a burst


class Pacer:
    """Hands out send times spaced 1/rps apart, shared by all threads."""

    def __init__(self, rps: float) -> None:
        self.interval = 1.0 / rps
        self.lock = threading.Lock()
        self.next = time.monotonic()

    def take(self) -> float:
        with self.lock:
            now = time.monotonic()
            if self.next < now - MAX_CATCH_UP:
                self.next = now  # fell far behind: drop the backlog instead of bursting
            slot = self.next
            self.next += self.interval
            return slot


class Target:
    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"unsupported URL: {url!r}")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.timeout = timeout

    def connect(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        return cls(self.host, self.port, timeout=self.timeout)


def worker(target: Target, pacer: Pacer, stop: threading.Event, counts: Counter) -> None:
    conn = target.connect()
    try:
        while not stop.is_set():
            delay = pacer.take() - time.monotonic()
            if delay > 0 and stop.wait(delay):
                break
            try:
                conn.request("GET", target.path, headers={"User-Agent": "demo-loadgen"})
                resp = conn.getresponse()
                resp.read()  # drain so the connection can be reused
                counts[str(resp.status)] += 1
                if resp.will_close:
                    conn.close()
            except Exception as exc:  # noqa: BLE001 - never die on a bad answer
                counts[f"error:{type(exc).__name__}"] += 1
                conn.close()
                conn = target.connect()
                stop.wait(0.05)  # do not spin on a refused connection
    finally:
        conn.close()


def run(url: str, rps: float, threads: int, max_seconds: float, timeout: float = 5.0) -> str:
    target = Target(url, timeout)
    stop = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    pacer = Pacer(rps)
    per_thread = [Counter() for _ in range(threads)]
    pool = [
        threading.Thread(target=worker, args=(target, pacer, stop, per_thread[i]),
                         name=f"loadgen-{i}", daemon=True)
        for i in range(threads)
    ]
    started = time.monotonic()
    for t in pool:
        t.start()
    stop.wait(max_seconds)
    stop.set()
    deadline = time.monotonic() + timeout + 1.0
    for t in pool:
        t.join(max(0.0, deadline - time.monotonic()))
    elapsed = time.monotonic() - started

    total = Counter()
    for c in per_thread:
        total.update(c)
    sent = sum(total.values())
    by_status = " ".join(f"{k}={v}" for k, v in sorted(total.items())) or "none"
    return (f"loadgen: {sent} requests in {elapsed:.1f} s ({sent / elapsed:.1f}/s, "
            f"target {rps:g}/s) to {url}: {by_status}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Paced HTTP load generator (prints one summary line on stop).")
    p.add_argument("--url", required=True)
    p.add_argument("--rps", type=float, default=300.0, help="target total requests per second")
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--max-seconds", type=float, default=900.0, help="hard stop")
    p.add_argument("--timeout", type=float, default=5.0, help="per-request socket timeout")
    args = p.parse_args(argv)
    if args.rps <= 0 or args.threads < 1 or args.max_seconds <= 0:
        p.error("--rps, --threads and --max-seconds must be positive")
    print(run(args.url, args.rps, args.threads, args.max_seconds, args.timeout), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
