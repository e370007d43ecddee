#!/usr/bin/env python3
"""Demo web service for the canary-release demo stack.

One process is one instance ("stable" or "canary" track) running one build
("version") at a time. How a build behaves (error rate, latency, checkout
rate) comes from versions.yaml. The version can be switched at runtime via an
authenticated admin endpoint, which is what a "deploy" does in the demo.

Endpoints:
    GET  /healthz         200 "ok"
    GET  /metrics         Prometheus text exposition (hand written)
    GET  /version         {"version": ..., "track": ...}
    POST /admin/deploy    {"version": "v2"} with "Authorization: Bearer <token>"
    POST /admin/metrics-outage  {"seconds": 6}, same token: /metrics answers 503 that long
                          (a scrape gap, for fault tests; traffic is served as usual)
    GET  <anything else>  the "app": latency, random 500s, checkouts

Counters are kept per version label, so after a deploy the old version's
series stay (frozen) and new series start at zero.

Only the standard library and PyYAML are used.
"""
from __future__ import annotations

import argparse
import hmac
import json
import os
import random
import re
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
DEFAULT_CATALOG = HERE / "versions.yaml"

DEFAULT_BEHAVIOUR = {"error_rate": 0.002, "latency_ms": 3.0, "checkout_rate": 0.1}
VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
TRACKS = ("stable", "canary")
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
MAX_BODY = 64 * 1024
JITTER = 0.2  # +-20% around latency_ms


def valid_version(value: object) -> bool:
    return isinstance(value, str) and VERSION_RE.fullmatch(value) is not None


def load_catalog(path: Path) -> dict[str, dict[str, float]]:
    """Read versions.yaml into {version: behaviour}; the "default" entry is optional."""
    with open(path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of version -> behaviour")
    default = dict(DEFAULT_BEHAVIOUR)
    if isinstance(raw.get("default"), dict):
        default.update(_clean(raw["default"], "default"))
    catalog = {"default": default}
    for name, spec in raw.items():
        if name == "default":
            continue
        entry = dict(default)
        if spec is not None:
            if not isinstance(spec, dict):
                raise ValueError(f"{path}: version {name!r}: expected a mapping")
            entry.update(_clean(spec, str(name)))
        catalog[str(name)] = entry
    return catalog


def _clean(spec: dict, name: str) -> dict[str, float]:
    out = {}
    for key in ("error_rate", "latency_ms", "checkout_rate"):
        if key in spec:
            value = float(spec[key])
            if value < 0 or (key != "latency_ms" and value > 1):
                raise ValueError(f"version {name!r}: {key}={value} out of range")
            out[key] = value
    return out


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _le(bound: float) -> str:
    return repr(float(bound))  # 0.001, 0.0025, ..., 1.0, 2.5


class Series:
    """All counters of one version (the track is fixed per process)."""

    __slots__ = ("codes", "buckets", "duration_sum", "duration_count", "checkouts")

    def __init__(self) -> None:
        # 200 and 500 start at zero so rate()/increase() see the first errors.
        self.codes: dict[str, int] = {"200": 0, "500": 0}
        self.buckets = [0] * (len(BUCKETS) + 1)  # non-cumulative; last is +Inf
        self.duration_sum = 0.0
        self.duration_count = 0
        self.checkouts = 0


class AppState:
    def __init__(self, version: str, track: str, catalog_path: Path, admin_token: str) -> None:
        self.lock = threading.Lock()
        self.track = track
        self.catalog_path = catalog_path
        self.catalog = load_catalog(catalog_path)
        self.admin_token = admin_token
        self.version = version
        self.series: dict[str, Series] = {version: Series()}
        self.started = time.time()
        self.metrics_down_until = 0.0

    # -- behaviour ---------------------------------------------------------
    def current(self) -> tuple[str, dict[str, float]]:
        with self.lock:
            version = self.version
            behaviour = self.catalog.get(version) or self.catalog["default"]
        return version, behaviour

    def deploy(self, version: str) -> None:
        try:  # pick up catalog edits on each deploy; keep the old one if broken
            catalog = load_catalog(self.catalog_path)
        except Exception as exc:  # noqa: BLE001
            print(f"service: keeping previous catalog: {exc}", file=sys.stderr, flush=True)
            catalog = None
        with self.lock:
            if catalog is not None:
                self.catalog = catalog
            self.version = version
            self.series.setdefault(version, Series())

    # -- metrics -----------------------------------------------------------
    def observe(self, version: str, code: int, seconds: float, checkout: bool) -> None:
        idx = len(BUCKETS)
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                idx = i
                break
        with self.lock:
            s = self.series.get(version)
            if s is None:
                s = self.series[version] = Series()
            key = str(code)
            s.codes[key] = s.codes.get(key, 0) + 1
            s.buckets[idx] += 1
            s.duration_sum += seconds
            s.duration_count += 1
            if checkout:
                s.checkouts += 1

    def render_metrics(self) -> str:
        with self.lock:
            current = self.version
            snap = {
                v: (dict(s.codes), list(s.buckets), s.duration_sum, s.duration_count, s.checkouts)
                for v, s in self.series.items()
            }
        track = _label(self.track)
        lines: list[str] = []
        add = lines.append

        add("# HELP http_requests_total HTTP requests answered by the app, by status code.")
        add("# TYPE http_requests_total counter")
        for v, (codes, _, _, _, _) in snap.items():
            for code in sorted(codes):
                add(f'http_requests_total{{version="{_label(v)}",track="{track}",code="{code}"}} {codes[code]}')

        add("# HELP http_request_duration_seconds Time spent answering app requests.")
        add("# TYPE http_request_duration_seconds histogram")
        for v, (_, buckets, dsum, dcount, _) in snap.items():
            lbl = f'version="{_label(v)}",track="{track}"'
            cumulative = 0
            for bound, n in zip(BUCKETS, buckets):
                cumulative += n
                add(f'http_request_duration_seconds_bucket{{{lbl},le="{_le(bound)}"}} {cumulative}')
            cumulative += buckets[-1]
            add(f'http_request_duration_seconds_bucket{{{lbl},le="+Inf"}} {cumulative}')
            add(f"http_request_duration_seconds_sum{{{lbl}}} {dsum!r}")
            add(f"http_request_duration_seconds_count{{{lbl}}} {dcount}")

        add("# HELP checkouts_total Checkouts completed (the business metric).")
        add("# TYPE checkouts_total counter")
        for v, (_, _, _, _, checkouts) in snap.items():
            add(f'checkouts_total{{version="{_label(v)}",track="{track}"}} {checkouts}')

        cur = f'version="{_label(current)}",track="{track}"'
        t = os.times()
        add("# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.")
        add("# TYPE process_cpu_seconds_total counter")
        add(f"process_cpu_seconds_total{{{cur}}} {t.user + t.system!r}")
        add("# HELP process_resident_memory_bytes Resident memory size in bytes.")
        add("# TYPE process_resident_memory_bytes gauge")
        add(f"process_resident_memory_bytes{{{cur}}} {_rss_bytes()}")
        add("# HELP app_info The version this instance currently runs (always 1).")
        add("# TYPE app_info gauge")
        add(f"app_info{{{cur}}} 1")
        return "\n".join(lines) + "\n"


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource  # fallback: peak RSS (kB on Linux)

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = "demo-service"
    sys_version = ""
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024  # headers + body leave in one send (flushed per request)
    timeout = 120  # idle keep-alive connections are closed after this many seconds

    state: AppState  # set on the subclass built in make_server()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # quiet

    def version_string(self) -> str:
        return self.server_version

    # -- helpers -----------------------------------------------------------
    def _send(self, code: int, body: bytes | str, ctype: str = "text/plain; charset=utf-8",
              close: bool = False) -> None:
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, code: int, obj: object, close: bool = False) -> None:
        self._send(code, json.dumps(obj) + "\n", "application/json", close=close)

    def _path(self) -> str:
        return self.path.split("?", 1)[0]

    # -- routes ------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802
        path = self._path()
        if path == "/healthz":
            self._send(200, "ok\n")
        elif path == "/metrics":
            if time.time() < self.state.metrics_down_until:
                self._send(503, "metrics unavailable (a planned outage)\n")
            else:
                self._send(200, self.state.render_metrics(), "text/plain; version=0.0.4; charset=utf-8")
        elif path == "/version":
            version, _ = self.state.current()
            self._json(200, {"version": version, "track": self.state.track})
        else:
            self._app()

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def do_POST(self) -> None:  # noqa: N802
        length = self.headers.get("Content-Length")
        try:
            n = int(length) if length is not None else 0
        except ValueError:
            self._json(400, {"error": "bad Content-Length"}, close=True)
            return
        if n < 0 or n > MAX_BODY:
            self._json(413, {"error": "body too large"}, close=True)
            return
        body = self.rfile.read(n) if n else b""
        if self._path() not in ("/admin/deploy", "/admin/metrics-outage"):
            self._json(404, {"error": "not found"})
            return
        if not self._authorized():
            return
        if self._path() == "/admin/metrics-outage":
            self._metrics_outage(body)
        else:
            self._deploy(body)

    def _metrics_outage(self, body: bytes) -> None:
        try:
            seconds = float(json.loads(body.decode("utf-8") or "null")["seconds"])
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError):
            self._json(400, {"error": 'body must be {"seconds": <number>}'})
            return
        if not 0 <= seconds <= 600:
            self._json(400, {"error": "seconds must be within 0..600"})
            return
        self.state.metrics_down_until = time.time() + seconds
        self._json(200, {"metrics_down_for": seconds, "track": self.state.track})

    def _authorized(self) -> bool:
        token = self.state.admin_token
        given = self.headers.get("Authorization", "")
        expected = f"Bearer {token}"
        if not token or not hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8")):
            self.send_response(401)
            payload = b'{"error": "unauthorized"}\n'
            self.send_header("WWW-Authenticate", 'Bearer realm="demo-admin"')
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return False
        return True

    def _deploy(self, body: bytes) -> None:
        try:
            data = json.loads(body.decode("utf-8") or "null")
        except (UnicodeDecodeError, json.JSONDecodeError):
            self._json(400, {"error": "body must be JSON"})
            return
        version = data.get("version") if isinstance(data, dict) else None
        if not valid_version(version):
            self._json(400, {"error": "version must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"})
            return
        self.state.deploy(version)
        self._json(200, {"version": version, "track": self.state.track})

    def _app(self) -> None:
        start = time.perf_counter()
        version, b = self.state.current()
        delay = b["latency_ms"] / 1000.0 * random.uniform(1 - JITTER, 1 + JITTER)
        if delay > 0:
            time.sleep(delay)
        failed = random.random() < b["error_rate"]
        checkout = (not failed) and random.random() < b["checkout_rate"]
        code = 500 if failed else 200
        self.state.observe(version, code, time.perf_counter() - start, checkout)
        if failed:
            self._send(500, f"internal error ({version})\n")
        else:
            self._send(200, f"hello from {version} ({self.state.track})\n")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # the default listen backlog of 5 drops bursts of new connections

    def handle_error(self, request: object, client_address: object) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return  # HAProxy resets idle keep-alive connections; that is normal
        print(f"service: error while handling a request from {client_address}: {exc!r}",
              file=sys.stderr, flush=True)


def make_server(port: int, version: str, track: str, catalog: Path, admin_token: str,
                host: str = "127.0.0.1") -> Server:
    state = AppState(version, track, catalog, admin_token)
    handler = type("BoundHandler", (Handler,), {"state": state})
    return Server((host, port), handler)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--version", default="v1", help="initial version")
    p.add_argument("--track", choices=TRACKS, default="stable")
    p.add_argument("--admin-token-env", default="DEMO_ADMIN_TOKEN",
                   help="name of the env var holding the admin bearer token")
    p.add_argument("--catalog", type=Path, default=DEFAULT_CATALOG, help="versions.yaml")
    args = p.parse_args(argv)
    if not valid_version(args.version):
        p.error(f"invalid --version {args.version!r}")

    server = make_server(args.port, args.version, args.track, args.catalog,
                         os.environ.get(args.admin_token_env, ""))

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
