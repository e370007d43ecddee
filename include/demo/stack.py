#!/usr/bin/env python3
"""Start and stop the local canary demo stack.

    HAProxy frontend --(weights)--+--> stable service.py
                                  +--> canary service.py
    Prometheus scrapes both services every second.
    loadgen.py sends steady traffic to the HAProxy frontend.

Everything listens on 127.0.0.1 only and runs as child processes (each in its
own session/process group) with logs in the work dir. Use it as a context
manager::

    with DemoStack(workdir=tmp, frontend_port=..., admin_port=..., stable_port=...,
                   canary_port=..., prometheus_port=..., admin_token="...") as stack:
        stack.haproxy_command("set server app/canary weight 5")

or from the shell (runs until SIGTERM/SIGINT)::

    python include/demo/stack.py --workdir .demo --admin-token TOKEN

Standard library only.
"""
from __future__ import annotations

import argparse
import atexit
import http.client
import json
import os
import shutil
import signal
import socket
import string
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
SERVICE_PY = HERE / "service.py"
LOADGEN_PY = HERE / "loadgen.py"
CATALOG = HERE / "versions.yaml"
HAPROXY_TMPL = HERE / "haproxy.cfg.tmpl"
PROMETHEUS_TMPL = HERE / "prometheus.yml.tmpl"

HOST = "127.0.0.1"
TOKEN_ENV = "DEMO_ADMIN_TOKEN"
_SBIN = os.pathsep.join(["/usr/local/sbin", "/usr/sbin", "/sbin"])  # haproxy lives in sbin on Debian
_UNIX_PATH_MAX = 107  # sun_path is 108 bytes including the trailing NUL


class StackError(RuntimeError):
    """The demo stack could not be started (message says what and why)."""


# ---------------------------------------------------------------------------
# port helpers
# ---------------------------------------------------------------------------
def free_port(host: str = HOST) -> int:
    """A TCP port that is free on `host` right now (racy by nature; fine for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_ports(n: int, host: str = HOST) -> list[int]:
    """`n` distinct free ports (all sockets are held open until every port is picked)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_is_free(port: int, host: str = HOST) -> bool:
    """True if a server could listen on host:port now.

    SO_REUSEADDR is set, like haproxy, Prometheus and http.server do, so sockets
    left in TIME_WAIT by a previous run do not count as "busy".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


# ---------------------------------------------------------------------------
# small HTTP helper (http.client: no proxies from the environment, no deps)
# ---------------------------------------------------------------------------
def _http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 8192))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _find_binary(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path=_SBIN)
    if not path:
        raise StackError(f"{name} is not installed (not found on PATH or in {_SBIN})")
    return path


class _Child:
    __slots__ = ("name", "proc", "log_path", "log_file")

    def __init__(self, name: str, proc: subprocess.Popen, log_path: Path, log_file) -> None:
        self.name = name
        self.proc = proc
        self.log_path = log_path
        self.log_file = log_file


# ---------------------------------------------------------------------------
# the stack
# ---------------------------------------------------------------------------
class DemoStack:
    """HAProxy + two demo services + Prometheus (+ load generator) as child processes."""

    def __init__(
        self,
        workdir: Path,
        frontend_port: int,
        admin_port: int,
        stable_port: int,
        canary_port: int,
        prometheus_port: int,
        admin_token: str,
        stable_version: str = "v1",
        canary_version: str = "v1",
        rps: float = 300,
        loadgen: bool = True,
        *,
        loadgen_threads: int = 8,
        loadgen_max_seconds: float = 900,
        ready_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        if not admin_token:
            raise ValueError("admin_token must not be empty")
        self.workdir = Path(workdir).resolve()
        self.frontend_port = int(frontend_port)
        self.admin_port = int(admin_port)
        self.stable_port = int(stable_port)
        self.canary_port = int(canary_port)
        self.prometheus_port = int(prometheus_port)
        self.admin_token = admin_token
        self.stable_version = stable_version
        self.canary_version = canary_version
        self.rps = rps
        self.loadgen = loadgen
        self.loadgen_threads = loadgen_threads
        self.loadgen_max_seconds = loadgen_max_seconds
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self._children: list[_Child] = []
        self._lock = threading.Lock()
        self._started = False

    def __repr__(self) -> str:
        return (f"DemoStack(frontend={self.frontend_url}, prometheus={self.prometheus_url}, "
                f"admin={HOST}:{self.admin_port}, workdir={str(self.workdir)!r})")

    # -- addresses ---------------------------------------------------------
    @property
    def frontend_url(self) -> str:
        return f"http://{HOST}:{self.frontend_port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://{HOST}:{self.prometheus_port}"

    @property
    def stable_url(self) -> str:
        return f"http://{HOST}:{self.stable_port}"

    @property
    def canary_url(self) -> str:
        return f"http://{HOST}:{self.canary_port}"

    @property
    def admin_address(self) -> tuple[str, int]:
        return (HOST, self.admin_port)

    @property
    def haproxy_socket_path(self) -> Path:
        return self.workdir / "haproxy.sock"

    @property
    def processes(self) -> dict[str, subprocess.Popen]:
        """Child processes by name: stable, canary, haproxy, prometheus, loadgen."""
        return {c.name: c.proc for c in self._children}

    def log_path(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    # -- runtime API / queries ---------------------------------------------
    def haproxy_command(self, cmd: str, timeout: float = 5.0) -> str:
        """Send one HAProxy runtime-API command over the TCP admin socket; return the answer."""
        if "\n" in cmd or "\r" in cmd:
            raise ValueError("one command per call (no newlines)")
        with socket.create_connection(self.admin_address, timeout=timeout) as s:
            s.sendall(cmd.encode("utf-8") + b"\n")
            chunks = []
            while True:  # non-interactive mode: HAProxy answers, then closes
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
        return b"".join(chunks).decode("utf-8", "replace")

    def prometheus_query(self, expr: str, timeout: float = 5.0) -> list[dict]:
        """Instant query against the stack's Prometheus; returns data.result."""
        status, body = _http_get(self.prometheus_port, "/api/v1/query?query=" + quote(expr, safe=""),
                                 timeout=timeout)
        doc = json.loads(body)
        if status != 200 or doc.get("status") != "success":
            raise StackError(f"Prometheus query {expr!r} failed: HTTP {status}: {doc.get('error', body[:200])}")
        return doc["data"]["result"]

    # -- lifecycle -----------------------------------------------------------
    def __enter__(self) -> "DemoStack":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> "DemoStack":
        """Start every process and block until the stack is ready (or raise StackError)."""
        if self._started:
            raise StackError("stack already started")
        self._started = True
        self._check_ports()
        haproxy_bin = _find_binary("haproxy")
        prometheus_bin = _find_binary("prometheus")
        self.workdir.mkdir(parents=True, exist_ok=True)
        if len(str(self.haproxy_socket_path).encode()) > _UNIX_PATH_MAX:
            raise StackError(f"unix socket path too long for HAProxy ({_UNIX_PATH_MAX} bytes max): "
                             f"{self.haproxy_socket_path}; use a shorter workdir")
        atexit.register(self.stop)
        try:
            self._write_configs()
            self._check_haproxy_config(haproxy_bin)
            deadline = time.monotonic() + self.ready_timeout

            base_env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
            svc_env = dict(base_env, **{TOKEN_ENV: self.admin_token})
            for track, port, version in (("stable", self.stable_port, self.stable_version),
                                         ("canary", self.canary_port, self.canary_version)):
                self._spawn(track, [sys.executable, str(SERVICE_PY), "--port", str(port),
                                    "--version", version, "--track", track,
                                    "--admin-token-env", TOKEN_ENV, "--catalog", str(CATALOG)],
                            svc_env)
            self._spawn("haproxy", [haproxy_bin, "-db", "-f", str(self.workdir / "haproxy.cfg")], base_env)
            # Prometheus starts last among the servers but before the waits: it needs ~6 s
            # before the first scrape lands, so let that clock run while we wait for the rest.
            self._spawn("prometheus", [
                prometheus_bin,
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'prom-data'}",
                f"--web.listen-address={HOST}:{self.prometheus_port}",
                "--storage.tsdb.retention.time=1d",
                "--log.level=warn",
            ], base_env)

            for track, port in (("stable", self.stable_port), ("canary", self.canary_port)):
                self._wait(f"{track} service /healthz on port {port}",
                           lambda port=port: _http_get(port, "/healthz")[0] == 200, deadline, [track])
            self._wait(f"HAProxy frontend on port {self.frontend_port}",
                       lambda: _http_get(self.frontend_port, "/healthz")[0] == 200, deadline,
                       ["haproxy", "stable"])
            self._wait(f"HAProxy admin socket on port {self.admin_port} (show info)",
                       lambda: "Name: HAProxy" in self.haproxy_command("show info", timeout=2.0),
                       deadline, ["haproxy"])
            if self.loadgen:
                self._spawn("loadgen", [sys.executable, str(LOADGEN_PY), "--url", self.frontend_url + "/",
                                        "--rps", str(self.rps), "--threads", str(self.loadgen_threads),
                                        "--max-seconds", str(self.loadgen_max_seconds)], base_env)
            self._wait(f"Prometheus /-/ready on port {self.prometheus_port}",
                       lambda: _http_get(self.prometheus_port, "/-/ready")[0] == 200, deadline,
                       ["prometheus"])
            self._wait("Prometheus to have scraped both services (sum(http_requests_total))",
                       self._prometheus_has_data, deadline, ["prometheus", "stable", "canary"])
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every child (SIGTERM to its process group, SIGKILL after stop_timeout). Idempotent."""
        with self._lock:
            children, self._children = self._children, []
        try:
            atexit.unregister(self.stop)
        except Exception:  # noqa: BLE001 - interpreter shutting down
            pass
        if not children:
            return
        # The load generator first, so its summary line is not full of refused connections.
        loadgen = [c for c in children if c.name == "loadgen"]
        others = [c for c in reversed(children) if c.name != "loadgen"]
        self._terminate(loadgen, timeout=self.stop_timeout)
        self._terminate(others, timeout=self.stop_timeout)
        for c in children:
            try:
                c.log_file.close()
            except OSError:
                pass

    def failed_processes(self) -> dict[str, int]:
        """Children that exited on their own: {name: returncode} (loadgen ending cleanly is not a failure)."""
        out = {}
        for c in list(self._children):
            rc = c.proc.poll()
            if rc is not None and not (c.name == "loadgen" and rc == 0):
                out[c.name] = rc
        return out

    # -- internals -------------------------------------------------------------
    def _check_ports(self) -> None:
        named = {
            "frontend_port": self.frontend_port,
            "admin_port": self.admin_port,
            "stable_port": self.stable_port,
            "canary_port": self.canary_port,
            "prometheus_port": self.prometheus_port,
        }
        seen: dict[int, str] = {}
        for name, port in named.items():
            if not 0 < port < 65536:
                raise StackError(f"{name}={port} is not a valid TCP port")
            if port in seen:
                raise StackError(f"{name} and {seen[port]} are both {port}; every port must differ")
            seen[port] = name
        busy = [f"{port} ({name})" for name, port in named.items() if not port_is_free(port)]
        if busy:
            raise StackError(f"port already in use on {HOST}: {', '.join(busy)}")

    def _write_configs(self) -> None:
        values = {
            "admin_port": self.admin_port,
            "socket_path": str(self.haproxy_socket_path),
            "frontend_port": self.frontend_port,
            "stable_port": self.stable_port,
            "canary_port": self.canary_port,
            "prometheus_port": self.prometheus_port,
        }
        for tmpl, out in ((HAPROXY_TMPL, "haproxy.cfg"), (PROMETHEUS_TMPL, "prometheus.yml")):
            text = string.Template(tmpl.read_text(encoding="utf-8")).substitute(values)
            (self.workdir / out).write_text(text, encoding="utf-8")
        # Old TSDB data from an earlier run would show up in queries (lookback 5 min).
        shutil.rmtree(self.workdir / "prom-data", ignore_errors=True)

    def _check_haproxy_config(self, haproxy_bin: str) -> None:
        res = subprocess.run([haproxy_bin, "-c", "-q", "-f", str(self.workdir / "haproxy.cfg")],
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        if res.returncode != 0:
            raise StackError(f"HAProxy rejected {self.workdir / 'haproxy.cfg'}:\n"
                             f"{(res.stdout + res.stderr).strip()}")

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        log_path = self.log_path(name)
        log_file = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log_file,
                                    stderr=subprocess.STDOUT, cwd=self.workdir, env=env,
                                    start_new_session=True)
        except OSError as exc:
            log_file.close()
            raise StackError(f"could not start {name}: {exc}") from exc
        with self._lock:
            self._children.append(_Child(name, proc, log_path, log_file))

    def _child(self, name: str) -> _Child | None:
        return next((c for c in self._children if c.name == name), None)

    def _wait(self, what: str, check, deadline: float, watch: list[str]) -> None:
        last_error = None
        while True:
            for name in watch:
                c = self._child(name)
                if c is not None and c.proc.poll() is not None:
                    raise StackError(f"{name} exited with code {c.proc.returncode} while waiting for "
                                     f"{what}; last lines of {c.log_path}:\n{_tail(c.log_path)}")
            try:
                if check():
                    return
                last_error = None
            except (OSError, http.client.HTTPException, ValueError, StackError) as exc:
                last_error = exc
            if time.monotonic() >= deadline:
                logs = "\n".join(f"--- last lines of {c.log_path}:\n{_tail(c.log_path)}"
                                 for c in map(self._child, watch) if c is not None)
                detail = f" (last error: {last_error!r})" if last_error else ""
                raise StackError(f"timed out after {self.ready_timeout:g} s waiting for {what}{detail}\n{logs}")
            time.sleep(0.1)

    def _prometheus_has_data(self) -> bool:
        if not self.prometheus_query("sum(http_requests_total)"):
            return False
        up = self.prometheus_query('count(up{job="demo"} == 1)')
        return bool(up) and float(up[0]["value"][1]) >= 2

    def _terminate(self, children: list[_Child], timeout: float) -> None:
        for c in children:
            _signal_group(c.proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for c in children:
            try:
                c.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(c.proc, signal.SIGKILL)
                try:
                    c.proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
            # Anything the child left behind in its process group goes too.
            _signal_group(c.proc, signal.SIGKILL)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    # start_new_session=True made the child the leader of a group with pgid == its pid.
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run the local canary demo stack until SIGTERM/SIGINT.")
    p.add_argument("--workdir", type=Path, required=True, help="configs, logs, Prometheus data")
    p.add_argument("--frontend-port", type=int, default=18080)
    p.add_argument("--admin-port", type=int, default=18081)
    p.add_argument("--stable-port", type=int, default=18091)
    p.add_argument("--canary-port", type=int, default=18092)
    p.add_argument("--prometheus-port", type=int, default=19090)
    p.add_argument("--admin-token", default=os.environ.get(TOKEN_ENV),
                   help=f"bearer token for POST /admin/deploy (default: ${TOKEN_ENV})")
    p.add_argument("--stable-version", default="v1")
    p.add_argument("--canary-version", default="v1")
    p.add_argument("--rps", type=float, default=300)
    p.add_argument("--no-loadgen", action="store_true")
    p.add_argument("--loadgen-max-seconds", type=float, default=900)
    p.add_argument("--ready-timeout", type=float, default=30.0)
    args = p.parse_args(argv)
    if not args.admin_token:
        p.error(f"--admin-token (or ${TOKEN_ENV}) is required")

    stopping = threading.Event()
    ready = False

    def _on_signal(signum: int, frame: object) -> None:
        if not ready:
            raise KeyboardInterrupt  # abort start(); it stops what it already started
        stopping.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    stack = DemoStack(
        workdir=args.workdir, frontend_port=args.frontend_port, admin_port=args.admin_port,
        stable_port=args.stable_port, canary_port=args.canary_port,
        prometheus_port=args.prometheus_port, admin_token=args.admin_token,
        stable_version=args.stable_version, canary_version=args.canary_version, rps=args.rps,
        loadgen=not args.no_loadgen, loadgen_max_seconds=args.loadgen_max_seconds,
        ready_timeout=args.ready_timeout,
    )
    try:
        with stack:
            ready = True
            print(f"demo stack ready: frontend={stack.frontend_url} prometheus={stack.prometheus_url} "
                  f"admin={HOST}:{stack.admin_port} socket={stack.haproxy_socket_path} "
                  f"logs={stack.workdir}", flush=True)
            while not stopping.wait(0.5):
                failed = stack.failed_processes()
                if failed:
                    print(f"demo stack: child process exited unexpectedly: {failed}; "
                          f"see the logs in {stack.workdir}", file=sys.stderr, flush=True)
                    return 1
    except StackError as exc:
        print(f"demo stack failed to start: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
