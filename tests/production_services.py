"""The production stack for end-to-end tests: PostgreSQL, Redis and Airflow on the CeleryExecutor.

``PostgresServer`` and ``RedisServer`` run Debian's ``postgresql-15`` and ``redis-server`` as
child processes of the test, in a fresh temporary directory, on free 127.0.0.1 ports, with a
password each; no system service is used. PostgreSQL refuses to run as root: when the test runs
as root, the server runs as the ``postgres`` account that Debian's package creates (through
``subprocess``'s ``user=``), otherwise as the current user.

``production_airflow`` builds the ``AirflowServices`` of ``tests/airflow_services.py`` on them:
metadata database on PostgreSQL, CeleryExecutor with Redis as the broker and PostgreSQL as the
result backend, two Celery workers, and the scheduler, dag-processor, triggerer and api-server.

``ServiceFleet`` is the demo stack for several services at once: one HAProxy with a frontend and
a ``stable``/``canary`` backend per service, two demo services per service, one Prometheus with a
job per service, and a load generator per service.

Every start-up failure raises with the reason and the tail of the server's log: nothing is skipped.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from tests.airflow_services import AirflowServices, free_port, tail

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "include" / "demo"
DB_USER = DB_NAME = "airflow"
SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")  # haproxy and redis-server live in sbin on some systems


class ProductionStackError(RuntimeError):
    """A server of the production stack did not come up; the message says why, with its log."""


def _binary(name: str, package: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN))
    if not found:
        raise ProductionStackError(f"{name} not found: install the Debian package {package} "
                                   f"(make test-production does: include/scripts/install_packages.sh)")
    return found


def _stop(proc: subprocess.Popen | None, first: int = signal.SIGTERM, timeout: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    for sig in (first, signal.SIGKILL):
        try:
            proc.send_signal(sig)
            proc.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return


def _wait(what: str, ready, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ProductionStackError(f"{what} exited with code {proc.returncode} during start-up; its log:\n{tail(log)}")
        try:
            if ready():
                return
        except Exception as e:  # noqa: BLE001 - not up yet; the last error is reported on timeout
            last = f"{type(e).__name__}: {e}"
        time.sleep(0.2)
    raise ProductionStackError(f"{what} not ready after {timeout:g}s (last error: {last or 'none'}); its log:\n{tail(log)}")


# ---------------------------------------------------------------------------------------------
# PostgreSQL


def postgres_bin_dir() -> Path:
    """Debian's PostgreSQL server binaries (``postgresql-15``; the newest installed major)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise ProductionStackError("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres): install the "
                                   "Debian package postgresql-15 (make test-production does)")
    return Path(found[-1]).parent


def postgres_account() -> pwd.struct_passwd | None:
    """Whom the server runs as: None for the current user; as root, Debian's ``postgres`` account."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise ProductionStackError("running as root, and PostgreSQL refuses to run as root; the account 'postgres' "
                                   "that Debian's postgresql package creates is missing (reinstall postgresql-15)") from None


class PostgresServer:
    """A throw-away PostgreSQL cluster: initdb in a temp dir, one server process, one database."""

    def __init__(self, port: int | None = None, password: str = "canary-pg-password"):
        self.port = port or free_port()
        self.password = password
        self.dir: Path | None = None
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the database (psycopg2, Airflow's default driver for PostgreSQL)."""
        return f"postgresql+psycopg2://{DB_USER}:{self.password}@127.0.0.1:{self.port}/{DB_NAME}"

    @property
    def log(self) -> Path:
        return self.dir / "postgres.log"

    def start(self, timeout: float = 60) -> "PostgresServer":
        bin_dir = postgres_bin_dir()
        account = postgres_account()
        run_as = {} if account is None else {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        # Not under pytest's basetemp: its directories are private to the current user (0700).
        self.dir = Path(tempfile.mkdtemp(prefix="canary-pg-"))
        password_file = self.dir / "password"
        password_file.write_text(self.password + "\n")
        if account is not None:
            for path in (self.dir, password_file):
                os.chown(path, account.pw_uid, account.pw_gid)
        init = subprocess.run([str(bin_dir / "initdb"), "-D", str(self.dir / "data"), "-U", DB_USER, "--pwfile",
                               str(password_file), "--auth", "scram-sha-256", "-E", "UTF8", "--no-sync"],
                              capture_output=True, text=True, cwd=self.dir, timeout=120, **run_as)
        if init.returncode != 0:
            raise ProductionStackError(f"initdb exited {init.returncode}:\n{(init.stdout + init.stderr)[-3000:]}")
        # Durability is not under test: no fsync. No Unix socket either (its default directory is the system's).
        settings = {"listen_addresses": "127.0.0.1", "port": str(self.port), "unix_socket_directories": "",
                    "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "max_connections": "200"}
        args = [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([str(bin_dir / "postgres"), "-D", str(self.dir / "data"), *args], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.dir,
                                         start_new_session=True, **run_as)
        try:
            _wait(f"PostgreSQL on 127.0.0.1:{self.port}", self._serves_our_cluster, self.proc, self.log, timeout)
            conn = self._connect("postgres")
            conn.autocommit = True
            conn.cursor().execute(f"CREATE DATABASE {DB_NAME}")
            conn.close()
        except BaseException:
            self.stop()
            raise
        return self

    def _serves_our_cluster(self) -> bool:
        """Whoever answers on the port is this cluster, not another server that holds the port."""
        conn = self._connect("postgres")
        try:
            with conn.cursor() as cursor:
                cursor.execute("SHOW data_directory")
                return os.path.realpath(cursor.fetchone()[0]) == os.path.realpath(self.dir / "data")
        finally:
            conn.close()

    def _connect(self, dbname: str):
        import psycopg2

        return psycopg2.connect(host="127.0.0.1", port=self.port, user=DB_USER, password=self.password,
                                dbname=dbname, connect_timeout=3)

    def query(self, sql: str, *params) -> list[tuple]:
        conn = self._connect(DB_NAME)
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall()
        finally:
            conn.close()

    def stop(self) -> None:
        # SIGINT is PostgreSQL's fast shutdown; SIGTERM would wait for every client to leave.
        _stop(self.proc, signal.SIGINT)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# ---------------------------------------------------------------------------------------------
# Redis


class RedisServer:
    """A throw-away Redis (the Celery broker): no persistence, a password, 127.0.0.1 only."""

    def __init__(self, port: int | None = None, password: str = "canary-redis-password"):
        self.port = port or free_port()
        self.password = password
        self.dir: Path | None = None
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30) -> "RedisServer":
        binary = _binary("redis-server", "redis-server")
        self.dir = Path(tempfile.mkdtemp(prefix="canary-redis-"))
        log = self.dir / "redis.log"
        # The password goes through stdin as a config file, not the command line (ps shows that).
        config = (f"bind 127.0.0.1\nport {self.port}\nrequirepass {self.password}\nsave \"\"\nappendonly no\n"
                  f"dir {self.dir}\nlogfile {log}\ndaemonize no\n")
        self.proc = subprocess.Popen([binary, "-"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT, cwd=self.dir, start_new_session=True)
        self.proc.stdin.write(config.encode())
        self.proc.stdin.close()
        try:
            _wait(f"Redis on 127.0.0.1:{self.port}", self.ping, self.proc, log, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def ping(self) -> bool:
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=2).ping()

    def stop(self) -> None:
        _stop(self.proc)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# ---------------------------------------------------------------------------------------------
# Airflow on them

WORKERS = ("celery-worker-1", "celery-worker-2")
WORKER_CONCURRENCY = 4


def production_settings(postgres: PostgresServer, redis_server: RedisServer) -> dict[str, str]:
    """The settings that differ from the LocalExecutor run: database, executor, broker, workers."""
    return {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.url,
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": redis_server.url,
        # Celery's result backend on the metadata database, as Airflow's docs recommend.
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + postgres.url.replace("+psycopg2", ""),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
        # Room for the five releases at once: each runs one task at a time, gates wait deferred.
        "AIRFLOW__CORE__PARALLELISM": str(2 * WORKER_CONCURRENCY),
        # A task's first call to the API server must not time out while the machine is busy (5 s
        # by default): the worker then reports the task failed before it ran.
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
    }


def production_airflow(home: Path, postgres: PostgresServer, redis_server: RedisServer,
                       extra_env: dict[str, str] | None = None) -> AirflowServices:
    """The four Airflow services plus two Celery workers (not started yet)."""
    workers = {name: ["celery", "worker", "--celery-hostname", f"{name}@%h", "--skip-serve-logs",
                      "--concurrency", str(WORKER_CONCURRENCY)] for name in WORKERS}
    return AirflowServices(home, api_port=free_port(), extra_env={**production_settings(postgres, redis_server),
                                                                  **(extra_env or {})},
                           components=("api-server", "scheduler", "dag-processor", "triggerer", *WORKERS),
                           commands=workers)


def wait_for_workers(services: AirflowServices, timeout: float = 120) -> None:
    """Until each Celery worker says it is ready (they do not report to Airflow's health endpoint)."""
    deadline = time.monotonic() + timeout
    for name in WORKERS:
        log = services.logs / f"{name}.log"
        while " ready." not in (log.read_text(errors="replace") if log.exists() else ""):
            if services.procs[name].poll() is not None or time.monotonic() > deadline:
                raise ProductionStackError(f"Celery worker {name} not ready (exit code {services.procs[name].returncode});"
                                           f" its log:\n{tail(log)}")
            time.sleep(0.5)


def tasks_executed(services: AirflowServices, name: str, dag_id_prefix: str) -> int:
    """How many tasks of DAGs whose id starts with ``dag_id_prefix`` a Celery worker ran, from its log."""
    log = services.logs / f"{name}.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    return sum(1 for line in text.splitlines() if "Executing workload in Celery" in line and f"dag_id={dag_id_prefix}" in line)


# ---------------------------------------------------------------------------------------------
# Several demo services at once

HAPROXY_HEAD = """global
    stats socket ipv4@127.0.0.1:$admin_port level admin
    stats timeout 30s
    maxconn 4096

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
"""
HAPROXY_SERVICE = """
frontend web_$name
    bind 127.0.0.1:$frontend_port
    default_backend $name

backend $name
    balance roundrobin
    server stable 127.0.0.1:$stable_port weight 100
    server canary 127.0.0.1:$canary_port weight 0
"""


class ServiceFleet:
    """N demo services behind one HAProxy (backend ``<name>``) and one Prometheus (job ``<name>``)."""

    def __init__(self, workdir: Path, names: list[str], admin_token: str, rps: float = 40):
        self.workdir = Path(workdir)
        self.names = list(names)
        self.admin_token = admin_token
        self.rps = rps
        ports = iter(free_ports(3 * len(names) + 2))
        self.admin_port, self.prometheus_port = next(ports), next(ports)
        self.ports = {name: {"frontend": next(ports), "stable": next(ports), "canary": next(ports)} for name in names}
        self.procs: dict[str, subprocess.Popen] = {}

    def url(self, name: str, track: str) -> str:
        return f"http://127.0.0.1:{self.ports[name][track]}"

    def haproxy_command(self, cmd: str) -> str:
        import socket

        with socket.create_connection(("127.0.0.1", self.admin_port), timeout=5) as s:
            s.sendall(cmd.encode() + b"\n")
            chunks = []
            while data := s.recv(65536):
                chunks.append(data)
        return b"".join(chunks).decode()

    def canary_weight(self, name: str) -> int:
        stable = int(self.haproxy_command(f"get weight {name}/stable").split()[0])
        canary = int(self.haproxy_command(f"get weight {name}/canary").split()[0])
        return round(canary * 100 / (stable + canary))

    def version(self, name: str, track: str) -> str:
        return requests.get(self.url(name, track) + "/version", timeout=2).json()["version"]

    def start(self, timeout: float = 60) -> "ServiceFleet":
        self.workdir.mkdir(parents=True, exist_ok=True)
        haproxy, prometheus = _binary("haproxy", "haproxy"), _binary("prometheus", "prometheus")
        config = string.Template(HAPROXY_HEAD).substitute(admin_port=self.admin_port)
        config += "".join(string.Template(HAPROXY_SERVICE).substitute(name=n, frontend_port=p["frontend"], stable_port=p["stable"],
                                                                      canary_port=p["canary"]) for n, p in self.ports.items())
        (self.workdir / "haproxy.cfg").write_text(config)
        jobs = "".join(f"  - job_name: {n}\n    static_configs:\n      - targets: ['127.0.0.1:{p['stable']}', '127.0.0.1:{p['canary']}']\n"
                       for n, p in self.ports.items())
        (self.workdir / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n" + jobs)
        env = {**os.environ, "DEMO_ADMIN_TOKEN": self.admin_token}
        try:
            for name, ports in self.ports.items():
                for track in ("stable", "canary"):
                    self._spawn(f"{name}-{track}", [sys.executable, str(DEMO / "service.py"), "--port", str(ports[track]),
                                                    "--version", "v1", "--track", track, "--admin-token-env", "DEMO_ADMIN_TOKEN",
                                                    "--catalog", str(DEMO / "versions.yaml")], env)
            self._spawn("haproxy", [haproxy, "-db", "-f", str(self.workdir / "haproxy.cfg")], env)
            self._spawn("prometheus", [prometheus, f"--config.file={self.workdir / 'prometheus.yml'}",
                                       f"--storage.tsdb.path={self.workdir / 'prom-data'}", "--log.level=warn",
                                       f"--web.listen-address=127.0.0.1:{self.prometheus_port}"], env)
            for name, ports in self.ports.items():
                self._wait(f"{name} through HAProxy", lambda p=ports["frontend"]: requests.get(f"http://127.0.0.1:{p}/healthz", timeout=1).ok,
                           "haproxy", timeout)
                self._spawn(f"{name}-loadgen", [sys.executable, str(DEMO / "loadgen.py"), "--url", self.url(name, "frontend") + "/",
                                                "--rps", str(self.rps), "--threads", "2", "--max-seconds", "1800"], env)
            self._wait("Prometheus scraping every service", self._all_scraped, "prometheus", timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _all_scraped(self) -> bool:
        answer = requests.get(f"http://127.0.0.1:{self.prometheus_port}/api/v1/query",
                              params={"query": "count(up == 1)"}, timeout=2).json()
        result = answer["data"]["result"]
        return bool(result) and int(float(result[0]["value"][1])) == 2 * len(self.names)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        with open(self.workdir / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                cwd=self.workdir, env=env, start_new_session=True)

    def _wait(self, what: str, ready, process: str, timeout: float) -> None:
        _wait(what, ready, self.procs[process], self.workdir / f"{process}.log", timeout)

    def stop(self) -> None:
        for proc in self.procs.values():
            _stop(proc, timeout=10)
        self.procs.clear()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (the sockets are held until all are picked)."""
    import socket

    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
