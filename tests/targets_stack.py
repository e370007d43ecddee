"""Two release targets on one machine: one HAProxy with two backends (``eu`` and ``us``), each with a
stable and a canary demo service behind its own frontend, one Prometheus scraping all four (job
``eu`` or ``us``), and a load generator per frontend. Built from the demo's own service and load
generator (include/demo/), so the shared demo stack stays as it is.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.conftest import ADMIN_TOKEN, ROOT, free_port, wait_until

DEMO = ROOT / "include" / "demo"
TARGETS = ("eu", "us")

HAPROXY = """
global
    stats socket ipv4@127.0.0.1:{admin} level admin
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
{sections}
"""
SECTION = """
frontend {name}
    bind 127.0.0.1:{front}
    default_backend {name}
backend {name}
    balance roundrobin
    server stable 127.0.0.1:{stable} weight 100
    server canary 127.0.0.1:{canary} weight 0
"""
PROMETHEUS = """
global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}
scrape_configs:
{jobs}
"""
JOB = """  - job_name: {name}
    static_configs: [{{targets: ["127.0.0.1:{stable}", "127.0.0.1:{canary}"]}}]
"""


class TargetsStack:
    def __init__(self, workdir: Path, rps: int = 150, catalogs: dict[str, str] | None = None):
        self.workdir = workdir
        self.catalogs = catalogs or {}  # per target: the build catalog its services read (versions.yaml)
        self.rps = rps
        self.admin_port = free_port()
        self.prometheus_port = free_port()
        self.ports = {t: {"front": free_port(), "stable": free_port(), "canary": free_port()} for t in TARGETS}
        self.procs: list[subprocess.Popen] = []

    def url(self, target: str, slot: str) -> str:
        return f"http://127.0.0.1:{self.ports[target][slot]}"

    def haproxy(self, command: str) -> str:
        with socket.create_connection(("127.0.0.1", self.admin_port), timeout=5) as s:
            s.sendall(command.encode() + b"\n")
            chunks = []
            while data := s.recv(65536):
                chunks.append(data)
        return b"".join(chunks).decode()

    def canary_weight(self, target: str) -> int:
        stable = int(self.haproxy(f"get weight {target}/stable").split()[0])
        canary = int(self.haproxy(f"get weight {target}/canary").split()[0])
        return round(canary * 100 / (stable + canary))

    def version(self, target: str, slot: str) -> str:
        return requests.get(self.url(target, slot) + "/version", timeout=2).json()["version"]

    def deploy(self, target: str, slot: str, version: str) -> None:
        requests.post(self.url(target, slot) + "/admin/deploy", json={"version": version},
                      headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=2).raise_for_status()

    def reset(self) -> None:
        """Stable v1 with all traffic, canary v1 with none, in both targets."""
        for t in TARGETS:
            self.haproxy(f"set server {t}/stable weight 100")
            self.haproxy(f"set server {t}/canary weight 0")
            self.deploy(t, "stable", "v1")
            self.deploy(t, "canary", "v1")

    def _spawn(self, name: str, argv: list[str], env: dict | None = None) -> None:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - the process owns it until stop
        self.procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           env=env, start_new_session=True))

    def start(self) -> "TargetsStack":
        import os

        env = {**os.environ, "DEMO_ADMIN_TOKEN": ADMIN_TOKEN}
        sections = "".join(SECTION.format(name=t, **p) for t, p in self.ports.items())
        (self.workdir / "haproxy.cfg").write_text(HAPROXY.format(admin=self.admin_port, sections=sections))
        jobs = "".join(JOB.format(name=t, **p) for t, p in self.ports.items())
        (self.workdir / "prometheus.yml").write_text(PROMETHEUS.format(jobs=jobs))
        for t, p in self.ports.items():
            catalog = DEMO / "versions.yaml"
            if t in self.catalogs:
                catalog = self.workdir / f"versions-{t}.yaml"
                catalog.write_text(self.catalogs[t])
            for slot in ("stable", "canary"):
                self._spawn(f"{t}-{slot}", [sys.executable, str(DEMO / "service.py"), "--port", str(p[slot]),
                                            "--version", "v1", "--track", slot, "--catalog", str(catalog)], env)
        haproxy = subprocess.run(["sh", "-c", "command -v haproxy || echo /usr/sbin/haproxy"], capture_output=True, text=True).stdout.strip()
        self._spawn("haproxy", [haproxy, "-db", "-f", str(self.workdir / "haproxy.cfg")])
        prometheus = subprocess.run(["sh", "-c", "command -v prometheus || echo /usr/bin/prometheus"], capture_output=True, text=True).stdout.strip()
        self._spawn("prometheus", [prometheus, f"--config.file={self.workdir / 'prometheus.yml'}",
                                   f"--storage.tsdb.path={self.workdir / 'prom-data'}",
                                   f"--web.listen-address=127.0.0.1:{self.prometheus_port}", "--log.level=warn"])
        for t, p in self.ports.items():
            for slot in ("stable", "canary"):
                wait_until(lambda u=self.url(t, slot): requests.get(u + "/healthz", timeout=1).ok, 20, f"{t} {slot} service")
            wait_until(lambda u=self.url(t, "front"): requests.get(u + "/healthz", timeout=1).ok, 20, f"{t} frontend")
        for t in TARGETS:
            self._spawn(f"{t}-loadgen", [sys.executable, str(DEMO / "loadgen.py"), "--url", self.url(t, "front") + "/",
                                         "--rps", str(self.rps), "--threads", "4", "--max-seconds", "1200"])
        query = f"http://127.0.0.1:{self.prometheus_port}/api/v1/query"
        wait_until(lambda: len(requests.get(query, params={"query": "sum by (job) (http_requests_total)"},
                                            timeout=2).json()["data"]["result"]) == 2, 40, "Prometheus to scrape both targets")
        time.sleep(3)  # a few scrapes of stable traffic before the first release
        return self

    def stop(self) -> None:
        import os
        import signal

        for proc in reversed(self.procs):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@contextmanager
def targets_stack(workdir: Path, **kwargs):
    stack = TargetsStack(workdir, **kwargs)
    try:
        yield stack.start()
    finally:
        stack.stop()
