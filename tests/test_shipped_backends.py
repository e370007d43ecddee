"""Every shipped spec (include/releases/) builds its router, metrics provider and actions exactly as
the operators build them (``operators.common.build_router``/``build_provider`` with Airflow
connections, ``actions.run_action``), and passes preflight's checks against a local stand-in.

Stand-ins: a real HAProxy (the HAProxy routers), a Prometheus stand-in answering ``vector(1)``,
the Datadog stub, moto's server (AWS), the local Kubernetes API server, a fake ``kubectl`` on
PATH (command actions) and a tiny HTTP receiver (webhooks). Where a stand-in cannot serve a spec,
the test says so with an assertion about what was built and how the check failed (web-alb's
fixed ARNs cannot exist in moto, which makes its own).
"""

from __future__ import annotations

import http.server
import io
import json
import os
import socket
import subprocess
import zipfile
from pathlib import Path

import pytest

from canary_operators.actions import run_action
from canary_operators.exceptions import RouterError
from canary_operators.operators.common import build_provider, build_router, endpoint_for
from canary_operators.spec import RunConf, load_spec
from canary_operators.spec.targets import target_releases
from tests.conftest import ROOT, free_port, point_aws_at_moto, serve_http, set_connection, wait_until
from tests.k8s import FakeKubeApi, deployment, http_route, ingress, rollout, virtual_service
from tests.metrics.datadog_stub import DatadogStub

SPECS = sorted((ROOT / "include" / "releases").glob("*.yaml"))
# A spec with targets is checked once per target, as the operators build it (spec.targets).
TARGETS = [(p, t.name) for p in SPECS for t in load_spec(p).targets] + [(p, None) for p in SPECS if not load_spec(p).targets]
AWS_REGIONS = {"aws_default": "eu-west-1", "aws_eu_west_1": "eu-west-1", "aws_us_east_1": "us-east-1"}
ACTION_PHASES = ("deploy", "promote", "after_promote", "rollback")

HAPROXY = """
global
    stats socket ipv4@127.0.0.1:{admin_port} level admin
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend web
    bind 127.0.0.1:{front_port}
    default_backend app
{backends}
"""
# backend: (stable server, canary server), as the shipped HAProxy specs name them
HAPROXY_BACKENDS = {"app": ("stable", "canary"), "web": ("web-stable", "web-canary"),
                    "checkout": ("checkout-stable", "checkout-canary"),
                    "shop-blue": ("stable", "canary"), "shop-green": ("stable", "canary")}


def test_every_shipped_spec_is_covered():
    assert {p.name for p in SPECS} == {
        "api-lambda.yaml", "checkout-datadog.yaml", "demo.yaml", "web-alb.yaml", "web-k8s-argo-rollouts.yaml",
        "web-k8s-gateway-api.yaml", "web-k8s-istio.yaml", "web-k8s-nginx-ingress.yaml", "web.yaml",
        "web-regions.yaml", "shop-lockstep.yaml"}, \
        "a new shipped spec needs its stand-ins here"


class _Http(http.server.BaseHTTPRequestHandler):
    """Prometheus' ``/api/v1/query`` (always ``1``) and any webhook POST (``200``)."""

    def _answer(self, body: dict):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._answer({"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, "1"]}]}})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer({"ok": True})

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def http_stand_in():
    with serve_http(_Http) as port:
        yield port


@pytest.fixture(scope="module")
def haproxy(tmp_path_factory):
    work = tmp_path_factory.mktemp("haproxy")
    admin_port = free_port()
    backends = "\n".join(f"backend {b}\n    server {s} 127.0.0.1:{free_port()} weight 100\n"
                         f"    server {c} 127.0.0.1:{free_port()} weight 0" for b, (s, c) in HAPROXY_BACKENDS.items())
    (work / "haproxy.cfg").write_text(HAPROXY.format(admin_port=admin_port, front_port=free_port(), backends=backends))
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(work / "haproxy.cfg")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: socket.create_connection(("127.0.0.1", admin_port), 0.5).close() or True, 10, "haproxy admin")
        yield admin_port
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def datadog():
    stub = DatadogStub(api_key="dd-api-key", app_key="dd-app-key", table={}, tags={"service": "checkout", "env": "prod"})
    yield stub
    stub.stop()


@pytest.fixture(scope="module")
def aws_world(moto_server):
    """In moto: the function ``api`` with its alias ``live`` (api-lambda.yaml), and the ECS cluster
    ``web`` with services ``web-canary`` and ``web-stable`` running container ``web`` (web-alb.yaml)."""
    import boto3

    kw = dict(endpoint_url=moto_server, region_name="eu-west-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    role = boto3.client("iam", **kw).create_role(RoleName="shipped-api", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("handler.py", "def main(event, context):\n    return 1\n")
    lambdas = boto3.client("lambda", **kw)
    lambdas.create_function(FunctionName="api", Runtime="python3.12", Role=role, Handler="handler.main",
                            Code={"ZipFile": buf.getvalue()}, Publish=True)
    lambdas.update_function_code(FunctionName="api", ZipFile=buf.getvalue())
    lambdas.publish_version(FunctionName="api")
    lambdas.create_alias(FunctionName="api", Name="live", FunctionVersion="1")
    for region in sorted(set(AWS_REGIONS.values())):  # web-regions.yaml: the same cluster in each region
        ecs = boto3.client("ecs", **{**kw, "region_name": region})
        ecs.create_cluster(clusterName="web")
        td = ecs.register_task_definition(family="web", networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256",
                                          memory="512", containerDefinitions=[{"name": "web", "image": "registry.example/web:v1"}])
        for service in ("web-canary", "web-stable"):
            ecs.create_service(cluster="web", serviceName=service, taskDefinition=td["taskDefinition"]["taskDefinitionArn"], desiredCount=2)
            ecs.update_service(cluster="web", service=service, desiredCount=2)  # moto: the tasks "start"
    return moto_server


@pytest.fixture
def stand_ins(tmp_path, monkeypatch, http_stand_in, haproxy, datadog, aws_world):
    """Every connection the shipped specs name, pointed at its stand-in; a fake kubectl on PATH."""
    for conn_id in ("haproxy_web", "haproxy_demo", "haproxy_checkout", "haproxy_shop"):
        set_connection(monkeypatch, conn_id, conn_type="generic", host="127.0.0.1", port=haproxy)
    for conn_id in ("prometheus_default", "prometheus_demo", "demo_canary_admin", "demo_stable_admin",
                    "shop_blue_canary_admin", "shop_blue_stable_admin", "shop_green_canary_admin", "shop_green_stable_admin"):
        set_connection(monkeypatch, conn_id, conn_type="http", host="127.0.0.1", port=http_stand_in, password="admin-token")
    set_connection(monkeypatch, "datadog_default", conn_type="http", host=f"http://127.0.0.1:{datadog.port}",
                   password="dd-api-key", extra={"application_key": "dd-app-key"})
    point_aws_at_moto(monkeypatch, aws_world, conn_id="aws_default")
    for conn_id, region in AWS_REGIONS.items():
        if conn_id != "aws_default":
            set_connection(monkeypatch, conn_id, conn_type="aws", login="testing", password="testing",
                           extra={"region_name": region, "endpoint_url": aws_world})
    import canary_operators.actions.ecs as ecs_actions

    monkeypatch.setattr(ecs_actions, "POLL_SECONDS", 0.05)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text("#!/bin/sh\necho \"kubectl $*\" >> \"$KUBECTL_LOG\"\n")
    (bin_dir / "kubectl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("KUBECTL_LOG", str(tmp_path / "kubectl.log"))
    with FakeKubeApi() as api:
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig.yaml")
        set_connection(monkeypatch, "kubernetes_default", conn_type="kubernetes", extra={"kube_config_path": str(kubeconfig)})
        for obj in (virtual_service(), http_route(), ingress(), rollout(),
                    deployment("web-stable", replicas=2), deployment("web-canary", replicas=0)):
            api.put(obj)
        yield {"k8s": api, "kubectl_log": tmp_path / "kubectl.log", "moto": aws_world}


def _run_conf(spec) -> RunConf:
    if spec.router.type == "lambda_alias":  # versions are the function's published version numbers
        return RunConf(release=spec.name, version="2", stable_version="1")
    return RunConf(release=spec.name, version="v2", stable_version="v1")


@pytest.mark.parametrize(("path", "target"), TARGETS, ids=[p.stem + (f"[{t}]" if t else "") for p, t in TARGETS])
def test_shipped_spec_builds_and_passes_preflight(path: Path, target: str | None, stand_ins):
    spec = load_spec(path)
    if target:
        spec = target_releases(spec)[target]
    run = _run_conf(spec)

    router = build_router(spec, run)
    assert type(router).type_name == spec.router.type and router.conn_id == spec.router.conn_id and router.run is run
    provider = build_provider(spec, run)
    assert type(provider).type_name == spec.metrics.type and provider.conn_id == spec.metrics.conn_id and provider.run is run

    if spec.router.type == "alb":
        # moto makes its own ARNs, so the shipped spec's listener cannot exist there: the router is
        # built, reaches moto through the connection, and names what it did not find.
        with pytest.raises(RouterError, match="listener"):
            router.check_online()
    else:
        router.check_online()
    provider.check_online()

    for phase in ACTION_PHASES:
        action = getattr(spec, phase, None)
        if action is None:
            continue
        done = run_action(action, phase, run, endpoint_for)
        assert isinstance(done, str) and done, (phase, action.type)
        if action.type == "command":
            assert f":{run.version}" in stand_ins["kubectl_log"].read_text()
    if spec.deploy is not None and spec.deploy.type == "k8s_deploy":  # what the actions did, read from the API server
        api = stand_ins["k8s"]
        assert api.get("Deployment", "shop", "web-stable")["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/web:v2"
        assert api.get("Deployment", "shop", "web-canary")["spec"]["replicas"] == 0
    if spec.deploy is not None and spec.deploy.type == "ecs_deploy":  # what the actions did, read from moto
        import boto3

        ecs = boto3.client("ecs", endpoint_url=stand_ins["moto"], region_name=AWS_REGIONS[spec.deploy.conn_id],
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        services = {s["serviceName"]: s for s in ecs.describe_services(cluster="web", services=["web-canary", "web-stable"])["services"]}
        stable_td = ecs.describe_task_definition(taskDefinition=services["web-stable"]["taskDefinition"])["taskDefinition"]
        assert stable_td["containerDefinitions"][0]["image"].endswith("/web:v2")  # promoted
        assert services["web-canary"]["desiredCount"] == 0  # after_promote / rollback scaled it down
