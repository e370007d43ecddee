"""Test set-up: a private AIRFLOW_HOME with SQLite, set before anything imports airflow."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_HOME = Path(tempfile.mkdtemp(prefix="canary-tests-airflow-"))
os.environ.update(
    AIRFLOW_HOME=str(_HOME),
    AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
    AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{_HOME}/airflow.db",
    AIRFLOW__CORE__EXECUTOR="LocalExecutor",
    # One key for this process and the airflow CLIs it starts, so secrets written by one are readable by the other.
    AIRFLOW__CORE__FERNET_KEY=__import__("cryptography.fernet").fernet.Fernet.generate_key().decode(),
)
os.environ.pop("CANARY_RELEASES_DIR", None)
sys.path.insert(0, str(ROOT / "plugins"))


def load_module(relative_path: str, name: str):
    """Import a script of the repo (include/...) by path."""
    spec = importlib.util.spec_from_file_location(name, ROOT / relative_path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def set_connection(monkeypatch, conn_id: str, **fields) -> None:
    """An Airflow connection through the environment, the way Airflow reads AIRFLOW_CONN_*."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


@pytest.fixture(scope="session")
def airflow_db():
    from airflow.utils import db

    db.initdb()
    return _HOME


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_http(handler_class):
    """A threaded HTTP server for ``handler_class`` on a free 127.0.0.1 port; yields the port."""
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_port
    finally:
        server.shutdown()


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:
            pass
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")


ADMIN_TOKEN = "test-admin-token"


@pytest.fixture(scope="session")
def demo_stack(tmp_path_factory):
    """The demo stack (HAProxy, two services, Prometheus, load) on free ports, for the whole session."""
    stack_module = load_module("include/demo/stack.py", "demo_stack_module")
    ports = stack_module.free_ports(5)
    stack = stack_module.DemoStack(
        workdir=tmp_path_factory.mktemp("demo-stack"),
        frontend_port=ports[0], admin_port=ports[1], stable_port=ports[2], canary_port=ports[3],
        prometheus_port=ports[4], admin_token=ADMIN_TOKEN, rps=300, loadgen_max_seconds=1800,
    )
    with stack:
        yield stack


@pytest.fixture(scope="session")
def moto_server():
    """moto's server on a free 127.0.0.1 port: real HTTP for boto3, through an endpoint_url."""
    import subprocess

    import requests

    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(url + "/moto-api/", timeout=1).status_code < 500, 20, "moto_server")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def point_aws_at_moto(monkeypatch, moto_url: str, conn_id: str = "aws_test") -> str:
    """Fake credentials and an Airflow AWS connection whose endpoint_url is moto's server."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    set_connection(monkeypatch, conn_id, conn_type="aws", login="testing", password="testing",
                   extra={"region_name": "eu-west-1", "endpoint_url": moto_url})
    return conn_id


@pytest.fixture
def aws_connection(moto_server, monkeypatch):
    """The Airflow connection ``aws_test`` pointing at moto's server, with fake credentials."""
    return point_aws_at_moto(monkeypatch, moto_server)


def xcom(dag_run, task_id: str, key: str = "return_value"):
    """One XCom of a ``dag.test()`` run, deserialised."""
    import json

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.query(XComModel).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id, key=key).one_or_none()
        if row is None:
            return None
        value = XComModel.deserialize_value(row)
        return json.loads(value) if isinstance(value, str) else value


@pytest.fixture(scope="session")
def _execution_api_comms(airflow_db):
    """Comms to Airflow's execution API, in-process, over the test database (what ``dag.test()`` uses)."""
    import os
    import uuid

    import psutil
    import structlog
    from airflow.sdk.execution_time.supervisor import InProcessSupervisorComms, InProcessTestSupervisor

    supervisor = InProcessTestSupervisor(id=uuid.uuid4(), pid=os.getpid(), process=psutil.Process(),
                                         process_log=structlog.get_logger(), client=InProcessTestSupervisor._api_client())
    supervisor.comms = InProcessSupervisorComms(supervisor=supervisor)
    return supervisor.comms


@pytest.fixture
def in_task(_execution_api_comms):
    """The test body runs as task code does: ``airflow.sdk.Variable`` reads and writes go through
    Airflow's execution API to the test database. The canary Variables it leaves are removed."""
    from airflow.models import Variable as VariableRow
    from airflow.sdk.execution_time.supervisor import set_supervisor_comms
    from airflow.utils.session import create_session

    with set_supervisor_comms(_execution_api_comms):
        yield
    with create_session() as session:
        session.query(VariableRow).filter(VariableRow.key.startswith("canary_")).delete(synchronize_session=False)


# Modules that hold a worker for minutes (Airflow services, CloudWatch's one-minute periods), from
# `--durations`. With `--no-loadscope-reorder` (the Makefile's; by default xdist orders modules by
# their number of tests), loadfile hands out modules in collection order, so these go first,
# longest first, and the short modules fill in around them instead of waiting behind a long one.
SLOW_MODULES = (  # seconds each took in a whole `make test` on 2 cores
    "test_safety_faults.py",  # 340
    "test_airflow_services.py",  # 200
    "test_dag_runs_aws.py",  # 140
    "test_report_ui.py",  # 140
    "test_dag_runs.py",  # 130
    "test_dag_runs_targets_aws.py",  # 130
    "test_dag_runs_lambda.py",  # 120
    "test_installed_wheel.py",  # 60-130
    "test_dag_runs_kubernetes.py",  # 80
    "test_dag_runs_targets.py",  # 80
    "test_spec_isolation_services.py",  # 40
    "test_load_airflow_settings.py",  # 20
)


def pytest_collection_modifyitems(session, config, items):
    def rank(item) -> int:
        name = item.path.name
        return SLOW_MODULES.index(name) if name in SLOW_MODULES else len(SLOW_MODULES)

    items.sort(key=rank)  # stable: the order within a module is kept
