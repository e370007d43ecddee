"""No secret in any output: a recognisable secret is planted in every connection, each error path
(router, metrics, webhook, command) is driven through the operators' code path, and the failure
XCom, the raised error, the returned XCom, the status record and the log are searched for it."""

from __future__ import annotations

import http.server
import json
import logging
import sys

import pytest

from canary_operators import secrets
from canary_operators.actions import run_action
from canary_operators.endpoint import Endpoint
from canary_operators.operators.common import FAILURE_KEY, ReleaseOperator, build_provider, build_router, endpoint_for
from canary_operators.secrets import scrub, secrets_of
from canary_operators.spec import CommandHook, RunConf, WebhookHook, parse_spec
from tests.conftest import free_port, serve_http, set_connection

SECRET = "s3cr3t-PLANTED-7f9a"  # what every connection carries, somewhere
APP_KEY = "appkey-PLANTED-c0ffee"
RUN = RunConf(release="web", version="v2", stable_version="v1")
PLANTED = (SECRET, APP_KEY)


# -- the scrubber ----------------------------------------------------------------------------

def test_scrub_removes_registered_secrets_userinfo_and_auth_headers():
    secrets.remember(Endpoint(host="h", password=SECRET, extra={"application_key": APP_KEY, "region_name": "eu-west-1"}))
    text = (f"key {SECRET} app {APP_KEY} url https://bob:other-pass@prom.example/x "
            f"hdr Authorization: Basic Ym9iOnB3 then Bearer abc.def-ghi region eu-west-1")
    out = scrub(text)
    assert SECRET not in out and APP_KEY not in out and "other-pass" not in out and "Ym9iOnB3" not in out and "abc.def" not in out
    assert "https://bob:***@prom.example/x" in out and "eu-west-1" in out  # settings stay readable
    assert scrub({"a": [f"x{SECRET}", (SECRET,)], "n": 3}) == {"a": ["x***", ("***",)], "n": 3}


def test_secrets_of_an_endpoint():
    ep = Endpoint(host="admin:hostpass@127.0.0.1", login="bob", password="pw-12345",
                  extra={"application_key": "ak-123456", "nested": {"token": "tk-123456"}, "endpoint_url": "http://moto:5000",
                         "server": "https://u:kubepass@k8s", "region_name": "eu-west-1", "service": "checkout",
                         "kube_config_path": "/etc/kube", "kube_config": {"users": [{"user": {"client-key-data": "a2V5ZGF0YQ=="}}]}})
    # Settings (region, service, a path) are not secrets: masking them would blank ordinary words in every log.
    assert secrets_of(ep) == {"pw-12345", "bob:pw-12345", "Ym9iOnB3LTEyMzQ1", "hostpass", "ak-123456", "tk-123456", "kubepass",
                              "a2V5ZGF0YQ=="}


def test_connection_secrets_are_given_to_airflows_log_masker(monkeypatch):
    """Airflow masks a connection's password and sensitive-named extras; ours adds the rest."""
    from airflow.sdk.log import _secrets_masker

    set_connection(monkeypatch, "planted_dd", conn_type="http", host="https://ops:hostpass-PLANTED@api.example",
                   password=SECRET, extra={"application_key": APP_KEY})
    endpoint_for("planted_dd")
    logged = _secrets_masker().redact(f"api {SECRET} app {APP_KEY} host hostpass-PLANTED")
    assert SECRET not in logged and APP_KEY not in logged and "hostpass-PLANTED" not in logged



def test_a_gate_look_is_scrubbed_wherever_it_goes():
    """A gate's reason and evidence go to XCom, the status record and trigger events."""
    from canary_operators.judge import Outcome
    from canary_operators.operators.gate_evaluation import GateLook

    secrets.remember(Endpoint(host="h", password=SECRET))
    look = GateLook(Outcome.ROLLBACK, f"metrics backend rejected check errors: bad token {SECRET}",
                    {"reason": f"Bearer {SECRET}", "checks": [{"error": SECRET}], "weight": 10})
    assert SECRET not in look.reason and SECRET not in json.dumps(look.evidence) and look.evidence["weight"] == 10

# -- every error path, through the operators' code ----------------------------------------------

class _Echo(http.server.BaseHTTPRequestHandler):
    """A backend that answers every request with an error quoting the request's headers."""

    def _echo(self):
        if self.command == "POST":
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = dict(self.headers)
        if self.path.startswith("/api/v1/query"):  # Prometheus: a rejected query, quoting what it got
            status, body = 400, {"status": "error", "errorType": "bad_data", "error": f"bad query from {headers}"}
        elif self.path.startswith("/api/"):  # Datadog: its errors list
            status, body = 400, {"errors": [f"rejected {headers}"]}
        else:  # a webhook receiver that echoes what it was given, credentials first
            status, body = 500, {"refused": headers.get("Authorization"), "echo": headers}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _echo

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def echo_port():
    with serve_http(_Echo) as port:
        yield port


class _TI:
    def __init__(self):
        self.xcoms: dict = {}

    def xcom_push(self, key, value):
        self.xcoms[key] = value


class _Probe(ReleaseOperator):
    """A release task whose step is given: the operators' own failure recording and return path."""

    def __init__(self, *, step, **kwargs):
        super().__init__(**kwargs)
        self.step = step

    def run_step(self, context):
        return self.step()


def _spec(**changes):
    data = {"name": "web", "router": {"type": "haproxy", "conn_id": "planted_haproxy", "settings": {"backend": "web"}},
            "metrics": {"type": "prometheus", "conn_id": "planted_prometheus"}, "steps": [10, 100],
            "deploy": {"type": "command", "command": ["true"]}, "promote": {"type": "command", "command": ["true"]}}
    data.update(changes)
    return parse_spec(data, "web.yaml")


def _plant(monkeypatch, echo_port):
    """The secret in every connection, wherever that kind of connection keeps one."""
    set_connection(monkeypatch, "planted_haproxy", conn_type="generic", host=f"admin:{SECRET}@127.0.0.1", port=free_port())
    set_connection(monkeypatch, "planted_prometheus", conn_type="http", host="127.0.0.1", port=echo_port, password=SECRET)
    set_connection(monkeypatch, "planted_prometheus_userinfo", conn_type="http",
                   host=f"http://metrics:{SECRET}@127.0.0.1:{echo_port}")
    set_connection(monkeypatch, "planted_datadog", conn_type="http", host=f"http://127.0.0.1:{echo_port}",
                   password=SECRET, extra={"application_key": APP_KEY})
    set_connection(monkeypatch, "planted_webhook", conn_type="http", host="127.0.0.1", port=echo_port, password=SECRET)
    set_connection(monkeypatch, "planted_webhook_login", conn_type="http", host="127.0.0.1", port=echo_port,
                   login="deployer", password=SECRET)


def _paths():
    """name → a step that fails the way that backend fails, built as the operators build it."""
    checks = lambda prov: prov.check_online()  # noqa: E731
    return {
        "router": lambda: build_router(_spec(), RUN).check_online(),
        "metrics_prometheus_bearer": lambda: checks(build_provider(_spec(), RUN)),
        "metrics_prometheus_userinfo": lambda: checks(build_provider(
            _spec(metrics={"type": "prometheus", "conn_id": "planted_prometheus_userinfo"}), RUN)),
        "metrics_datadog": lambda: build_provider(_spec(metrics={"type": "datadog", "conn_id": "planted_datadog"}), RUN)
        .query("sum:x{version:v2}.as_count()", 0, 60, "sum"),
        "webhook_bearer": lambda: run_action(WebhookHook(type="webhook", conn_id="planted_webhook"), "deploy", RUN, endpoint_for),
        "webhook_basic": lambda: run_action(WebhookHook(type="webhook", conn_id="planted_webhook_login"), "deploy", RUN, endpoint_for),
        "command": lambda: run_action(CommandHook(type="command", command=[
            sys.executable, "-c", f"import sys; print('login failed with token {SECRET}', file=sys.stderr); sys.exit(4)"]),
            "deploy", RUN, endpoint_for),
    }


@pytest.mark.parametrize("path", list(_paths()))
def test_a_planted_secret_reaches_no_output(path, monkeypatch, echo_port, caplog, in_task):
    from canary_operators.status import read_status, record

    _plant(monkeypatch, echo_port)
    ti = _TI()
    task = _Probe(step=_paths()[path], task_id=f"probe_{path}", release=_spec())
    with caplog.at_level(logging.DEBUG), pytest.raises(Exception) as raised:
        task.execute({"ti": ti})
    failure = ti.xcoms[FAILURE_KEY]
    # What the rollback does with it: the decision in the status record quotes the failure, and the
    # raw error too (as a gate's reason does).
    record("web", task.log, phase="rolled_back", decision=f"{failure['error']} | raw: {raised.value}")
    outputs = {"raised": str(raised.value), "failure XCom": json.dumps(failure), "status record": read_status("web").model_dump_json(),
               "log": caplog.text}
    for where, text in outputs.items():
        for planted in PLANTED:
            assert planted not in text, f"{path}: the secret reached the {where}: {text}"
    assert failure["task"] == f"probe_{path}" and "***" in failure["error"], failure  # the backend did quote a secret
    # The error still says what failed.
    assert any(word in failure["error"] for word in ("haproxy", "prometheus", "datadog", "webhook", "command")), failure


def test_a_returned_xcom_is_scrubbed(monkeypatch, echo_port):
    _plant(monkeypatch, echo_port)
    endpoint_for("planted_webhook")
    task = _Probe(step=lambda: {"action": f"ran deploy --token {SECRET}"}, task_id="probe_return", release=_spec())
    assert task.execute({"ti": _TI()}) == {"action": "ran deploy --token ***"}


# -- a whole run through Airflow ---------------------------------------------------------------

from tests.test_shipped_backends import haproxy, http_stand_in  # noqa: E402,F401  (fixtures)


def test_a_run_whose_deploy_webhook_echoes_the_token_leaks_it_nowhere(airflow_db, haproxy, http_stand_in, echo_port,
                                                                    tmp_path, monkeypatch, capfd, caplog):
    """deploy fails on a receiver that echoes ``Bearer <password>``; the rollback runs. No XCom of
    the run, no canary Variable and no line of output holds the password."""
    import yaml
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models import Variable as VariableRow
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from tests.conftest import ROOT

    set_connection(monkeypatch, "t_s_haproxy", conn_type="generic", host="127.0.0.1", port=haproxy, password=SECRET)
    set_connection(monkeypatch, "t_s_prometheus", conn_type="http", host="127.0.0.1", port=http_stand_in, password=SECRET)
    set_connection(monkeypatch, "t_s_hook", conn_type="http", host="127.0.0.1", port=echo_port, password=SECRET)
    set_connection(monkeypatch, "t_s_promote", conn_type="http", host="127.0.0.1", port=http_stand_in, password=SECRET)
    monkeypatch.setenv("CANARY_RELEASES_DIR", str(tmp_path))
    spec = {"name": "t_secret", "stable_version": "v1", "steps": [10, 100], "retries": 0,
            "router": {"type": "haproxy", "conn_id": "t_s_haproxy", "settings": {"backend": "app"}},
            "metrics": {"type": "prometheus", "conn_id": "t_s_prometheus"},
            "deploy": {"type": "webhook", "conn_id": "t_s_hook", "endpoint": "/deploy"},
            "promote": {"type": "webhook", "conn_id": "t_s_promote", "endpoint": "/promote"}}
    parse_spec(spec, "t_secret.yaml")
    (tmp_path / "t_secret.yaml").write_text(yaml.safe_dump(spec))
    bag = DagBag(str(ROOT / "dags"))
    with caplog.at_level(logging.INFO):
        dag_run = bag.dags["canary_t_secret"].test(run_conf={"version": "v2"})
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert dag_run.state == "failed" and states["deploy_canary"] == "failed", states

    with create_session() as session:
        xcoms = {(row.task_id, row.key): XComModel.deserialize_value(row)
                 for row in session.query(XComModel).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id)}
        variables = {row.key: row.val for row in session.query(VariableRow).filter(VariableRow.key.startswith("canary_"))}
    failure = xcoms[("deploy_canary", FAILURE_KEY)]
    failure = json.loads(failure) if isinstance(failure, str) else failure
    assert "answered HTTP 500" in failure["error"] and "***" in failure["error"], failure
    out, err = capfd.readouterr()
    outputs = {"XComs": json.dumps({f"{t}.{k}": v for (t, k), v in xcoms.items()}, default=str), "Variables": json.dumps(variables), "stdout": out, "stderr": err,
               "log": caplog.text}
    assert "answered HTTP 500" in out + err + caplog.text  # the task's log was captured, with the error in it
    for where, text in outputs.items():
        assert SECRET not in text, f"the secret reached the {where}"
