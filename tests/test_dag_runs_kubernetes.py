"""Full DAG runs through Airflow with each Kubernetes router, against the fake API server through
the real kubernetes client and the cncf provider's KubernetesHook.

The API server enforces the RBAC Role documented in docs/kubernetes.md, so these runs also check
that the Role is enough. Metrics come from a tiny Prometheus stand-in (the metrics side is not
under test here): every version gets 2000 requests, and version ``v3`` a fifth of them as 5xx.
Each test asserts the run's outcome and the exact sequence of writes the release made.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from canary_operators.spec import ReleaseSpec, parse_spec
from tests.conftest import ROOT, serve_http, set_connection, xcom
from tests.k8s import (
    deployment,
    http_route,
    ingress,
    k8s,  # noqa: F401  (a fixture)
    role_rules_from_docs,
    rollout,
    virtual_service,
)

HOST = "web.shop.svc.cluster.local"
ROUTERS = {
    "istio": {"namespace": "shop", "virtual_service": "web", "route": "primary",
              "stable_destination": {"host": HOST, "subset": "stable"}, "canary_destination": {"host": HOST, "subset": "canary"}},
    "gateway_api": {"namespace": "shop", "http_route": "web", "rule_name": "app", "stable_service": "web-stable", "canary_service": "web-canary"},
    "nginx_ingress": {"namespace": "shop", "canary_ingress": "web-canary"},
    "argo_rollouts": {"namespace": "shop", "rollout": "web", "poll_seconds": 0.05, "step_timeout_seconds": 10},
}
ACTIONS = {
    "deploy": {"type": "k8s_deploy", "conn_id": "t_k8s", "namespace": "shop", "deployment": "web-canary", "container": "web",
               "image": "registry.example/web:{version}", "replicas": 2, "timeout": 10},
    "promote": {"type": "k8s_deploy", "conn_id": "t_k8s", "namespace": "shop", "deployment": "web-stable", "container": "web",
                "image": "registry.example/web:{version}", "timeout": 10},
    "after_promote": {"type": "k8s_scale", "conn_id": "t_k8s", "namespace": "shop", "deployment": "web-canary", "replicas": 0, "timeout": 10},
    "rollback": {"type": "k8s_scale", "conn_id": "t_k8s", "namespace": "shop", "deployment": "web-canary", "replicas": 0, "timeout": 10},
}


def spec_for(name: str, router: str, **changes) -> dict:
    data = {
        "name": name,
        "stable_version": "v1",
        "router": {"type": router, "conn_id": "t_k8s", "settings": ROUTERS[router]},
        "metrics": {"type": "prometheus", "conn_id": "t_prom"},
        "steps": [10, 50, 100],
        "bake_time": "2s",
        "settle_time": "0.5s",
        "gate_timeout": "30s",
        "poke_interval": "0.5s",
        "retries": 0,
        "checks": [{"name": "errors", "kind": "error_rate", "max_increase_pp": 5, "min_requests": 50}],
        "sample_ratio": {"enabled": False},
    }
    if "gate_mode" in ReleaseSpec.model_fields:
        data["gate_mode"] = "poke"
    if router != "argo_rollouts":  # Argo's own controller runs the new revision
        data.update(ACTIONS)
    else:  # the deploy step starts the new revision, as `kubectl argo rollouts set image` in the shipped spec
        data["deploy"] = {"type": "webhook", "conn_id": "t_cd", "endpoint": "/deploy"}
    data.update(changes)
    parse_spec(data, f"{name}.yaml")  # fail here, readably, if the test's spec is wrong
    return data


class _Prometheus(http.server.BaseHTTPRequestHandler):
    """2000 requests per version; 5xx: 400 for v3, none for the others."""

    def do_GET(self):
        query = parse_qs(urlsplit(self.path).query).get("query", [""])[0]
        version = re.search(r'version="([^"]+)"', query)
        if query == "vector(1)":
            value = 1
        elif 'code=~"5.."' in query:
            value = 400 if version and version.group(1) == "v3" else 0
        else:
            value = 2000
        body = {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, str(value)]}]}}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def prometheus():
    with serve_http(_Prometheus) as port:
        yield port


@pytest.fixture
def cluster(k8s, airflow_db, prometheus, monkeypatch, tmp_path):
    """The fake cluster with both Deployments, enforcing the documented Role; specs in tmp_path."""
    import canary_operators.actions.kubernetes as actions

    monkeypatch.setattr(actions, "POLL_SECONDS", 0.05)
    k8s.api.rules = role_rules_from_docs((ROOT / "docs" / "kubernetes.md").read_text())
    k8s.api.put(deployment("web-stable", replicas=2))
    k8s.api.put(deployment("web-canary", replicas=0))
    set_connection(monkeypatch, "t_prom", conn_type="http", host="127.0.0.1", port=prometheus)
    releases = tmp_path / "releases"
    releases.mkdir()
    monkeypatch.setenv("CANARY_RELEASES_DIR", str(releases))
    k8s.releases_dir = releases
    return k8s


def run(spec: dict, conf: dict, releases_dir):
    from airflow.dag_processing.dagbag import DagBag

    (releases_dir / f"{spec['name']}.yaml").write_text(yaml.safe_dump(spec))
    bag = DagBag(str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    dag_run = bag.dags[f"canary_{spec['name']}"].test(run_conf=conf)
    return dag_run, {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


# What each router's object says the canary gets, read from a written object.
def istio_split(obj):
    return tuple(d["weight"] for d in obj["spec"]["http"][1]["route"])


def gateway_split(obj):
    return tuple(r["weight"] for r in obj["spec"]["rules"][1]["backendRefs"])


def nginx_weight(obj):
    return int(obj["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"])


SPLITS = {
    "istio": (virtual_service, "VirtualService", istio_split),
    "gateway_api": (http_route, "HTTPRoute", gateway_split),
    "nginx_ingress": (lambda: ingress(), "Ingress", nginx_weight),
}
# Promotion in Flagger's order: the canary keeps 50% while the stable slot gets v2, then all
# traffic goes to stable. The canary slot never gets 100%.
PROMOTED = {"istio": [(90, 10), (50, 50), (100, 0)], "gateway_api": [(90, 10), (50, 50), (100, 0)],
            "nginx_ingress": [10, 50, 0]}
ROLLED_BACK = {"istio": [(90, 10), (100, 0)], "gateway_api": [(90, 10), (100, 0)], "nginx_ingress": [10, 0]}


def deployment_writes(api) -> list[tuple[str, dict]]:
    return [(w.name, w.body) for w in api.client_writes("Deployment")]


def images(api) -> dict:
    return {name: (api.get("Deployment", "shop", name)["spec"]["template"]["spec"]["containers"][0]["image"],
                   api.get("Deployment", "shop", name)["spec"]["replicas"]) for name in ("web-stable", "web-canary")}


def container_patch(image: str, replicas: int | None = None) -> dict:
    spec: dict = {"template": {"spec": {"containers": [{"name": "web", "image": image}]}}}
    if replicas is not None:
        spec["replicas"] = replicas
    return {"spec": spec}


@pytest.mark.parametrize("router", ["istio", "gateway_api", "nginx_ingress"])
def test_healthy_canary_is_promoted_with_the_primary_canary_deployments(cluster, router):
    make, kind, split = SPLITS[router]
    original = cluster.api.put(make())
    dag_run, states = run(spec_for(f"k8s_promote_{router}", router), {"version": "v2"}, cluster.releases_dir)
    assert dag_run.state == "success", states
    assert states["rollback"] == "success" and states["complete_rollout"] == "success"
    assert xcom(dag_run, "rollback")["traffic_changed"] is False  # promoted: the undo ran and did nothing
    writes = cluster.api.client_writes(kind)
    assert [split(w.object) for w in writes] == PROMOTED[router]
    canary_share = (lambda w: w[1]) if router != "nginx_ingress" else (lambda w: w)
    assert max(canary_share(split(w.object)) for w in writes) == 50  # never 100% on the canary slot
    # the release's writes, in order: canary deployed, traffic, stable promoted, canary scaled down
    assert deployment_writes(cluster.api) == [
        ("web-canary", container_patch("registry.example/web:v2", replicas=2)),
        ("web-stable", container_patch("registry.example/web:v2")),
        ("web-canary", {"spec": {"replicas": 0}}),
    ]
    order = [(w.kind, w.name) for w in cluster.api.writes if w.actor == "client" and w.code == 200]
    # the stable slot runs v2 before traffic leaves the canary's 50%
    assert order == [("Deployment", "web-canary"), (kind, writes[0].name), (kind, writes[0].name),
                     ("Deployment", "web-stable"), (kind, writes[0].name), ("Deployment", "web-canary")]
    assert images(cluster.api) == {"web-stable": ("registry.example/web:v2", 2), "web-canary": ("registry.example/web:v2", 0)}
    final = cluster.api.get(kind, "shop", original["metadata"]["name"])
    mine = lambda obj: {k: v for k, v in obj.items() if k not in ("metadata", "status")}  # status: the controller's
    assert mine(final) == mine(original)
    assert xcom(dag_run, "complete_rollout")["canary_weight"] == 0
    assert xcom(dag_run, "shift_to_50")["weight"] == 50


@pytest.mark.parametrize("router", ["istio", "gateway_api", "nginx_ingress"])
def test_faulty_canary_is_rolled_back_and_scaled_down(cluster, router):
    make, kind, split = SPLITS[router]
    cluster.api.put(make())
    dag_run, states = run(spec_for(f"k8s_rollback_{router}", router), {"version": "v3"}, cluster.releases_dir)
    assert dag_run.state == "failed", states
    assert states["gate_10"] == "failed" and states["rollback"] == "success"
    assert states["shift_to_50"] == "upstream_failed" and states["promote"] == "upstream_failed"
    assert [split(w.object) for w in cluster.api.client_writes(kind)] == ROLLED_BACK[router]
    assert deployment_writes(cluster.api) == [
        ("web-canary", container_patch("registry.example/web:v3", replicas=2)),
        ("web-canary", {"spec": {"replicas": 0}}),
    ]
    assert images(cluster.api)["web-stable"] == ("registry.example/web:v1", 2)
    rollback = xcom(dag_run, "rollback")
    assert rollback["canary_weight"] == 0 and "gate_10" in rollback["reason"]
    assert "scaled 2 → 0" in rollback["action"]


def test_a_conflict_during_the_release_is_reread_and_retried(cluster):
    cluster.api.put(virtual_service())
    path = cluster.api.path("VirtualService", "shop", "web")
    cluster.api.fail_next("PATCH", path, 409)  # the first shift meets a concurrent write once

    def someone_edits_the_admin_route(obj):
        obj["spec"]["http"][0]["timeout"] = "5s"

    cluster.api.before_next("PATCH", path, lambda: cluster.api.mutate("VirtualService", "shop", "web", someone_edits_the_admin_route))
    dag_run, states = run(spec_for("k8s_conflict", "istio"), {"version": "v2"}, cluster.releases_dir)
    assert dag_run.state == "success", states
    assert [w.code for w in cluster.api.writes if w.actor == "client" and w.kind == "VirtualService"][:3] == [409, 422, 200]
    assert cluster.api.get("VirtualService", "shop", "web")["spec"]["http"][0]["timeout"] == "5s"
    assert [istio_split(w.object) for w in cluster.api.client_writes("VirtualService")] == PROMOTED["istio"]


def test_a_missing_object_fails_preflight_naming_it_and_moves_nothing(cluster):
    dag_run, states = run(spec_for("k8s_missing", "gateway_api"), {"version": "v2"}, cluster.releases_dir)
    assert dag_run.state == "failed" and states["preflight"] == "failed"
    rollback = xcom(dag_run, "rollback")
    assert rollback["traffic_changed"] is False
    assert "gateway_api: HTTPRoute shop/web not found (HTTP 404)" in rollback["reason"]
    assert cluster.api.client_writes() == []


# -- Argo Rollouts: the Rollout's own controller moves the traffic ---------------------------------

class _SetImage(http.server.BaseHTTPRequestHandler):
    """The deploy step's webhook: a new pod template on the Rollout (``kubectl argo rollouts set
    image``), which starts the update: the controller moves to the first setWeight and pauses."""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        self.server.deployed.append(body)
        self.server.start_update(body)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def argo(cluster, monkeypatch):
    """A Rollout with steps 10 → pause → 50 → pause, healthy on abc123; the run's deploy step
    starts its new revision def456. A safe start needs the canary at 0%, so the update must not
    start before the run."""
    cluster.api.put(rollout(steps=(10, 50)))
    cluster.api.controller_delay = 0.05
    cluster.before_run = len(cluster.api.writes)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SetImage)
    server.deployed = []
    server.start_update = lambda body: cluster.api.argo.start_update("shop", "web", "def456")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    set_connection(monkeypatch, "t_cd", conn_type="http", host="127.0.0.1", port=server.server_port)
    cluster.deployed = server.deployed
    yield cluster
    server.shutdown()


def rollout_writes(api) -> list[dict]:
    return [w.body["status"] for w in api.client_writes("Rollout")]


def test_argo_rollout_is_stepped_and_completed(argo):
    dag_run, states = run(spec_for("k8s_argo_promote", "argo_rollouts"), {"version": "v2"}, argo.releases_dir)
    assert dag_run.state == "success", states
    assert [d["version"] for d in argo.deployed] == ["v2"]  # the deploy step started the update, after preflight
    # shift_to_10: the update paused at 10% by itself (no write); shift_to_50: one resume;
    # promote: Argo's own full promotion, with no step to 100% on the canary first
    assert rollout_writes(argo.api) == [{"pauseConditions": None}, {"promoteFull": True}]
    weights = [w.object["status"]["canary"]["weights"]["canary"]["weight"] for w in argo.api.writes[argo.before_run:]
               if w.kind == "Rollout" and w.actor == "controller"]
    assert weights == [10, 50, 0]  # as the controller set them: 10%, 50% after the resume, then the canary became stable
    status = argo.api.get("Rollout", "shop", "web")["status"]
    assert status["stableRS"] == "def456" and status["phase"] == "Healthy"
    assert xcom(dag_run, "promote")["router"] == "rollout shop/web fully promoted (status.promoteFull): revision def456 is stable"
    assert xcom(dag_run, "complete_rollout")["canary_weight"] == 0


def test_faulty_argo_rollout_is_aborted(argo):
    dag_run, states = run(spec_for("k8s_argo_rollback", "argo_rollouts"), {"version": "v3"}, argo.releases_dir)
    assert dag_run.state == "failed" and states["gate_10"] == "failed" and states["rollback"] == "success", states
    assert rollout_writes(argo.api) == [{"abort": True}]  # the gate's fast reset; the rollback found it aborted
    status = argo.api.get("Rollout", "shop", "web")["status"]
    assert status["abort"] is True and status["phase"] == "Degraded" and status["stableRS"] == "abc123"
    assert xcom(dag_run, "rollback")["canary_weight"] == 0


def test_argo_rollout_aborted_by_someone_else_fails_the_release(argo):
    path = argo.api.path("Rollout", "shop", "web", "status")

    def someone_aborts():  # kubectl argo rollouts abort, just before our shift to 50%
        argo.api.mutate("Rollout", "shop", "web", lambda o: o["status"].update(abort=True))

    argo.api.before_next("PATCH", path, someone_aborts)
    dag_run, states = run(spec_for("k8s_argo_aborted", "argo_rollouts"), {"version": "v2"}, argo.releases_dir)
    assert dag_run.state == "failed", states
    assert states["gate_10"] == "success" and states["shift_to_50"] == "failed" and states["rollback"] == "success"
    reason = xcom(dag_run, "rollback")["reason"]
    assert "shift_to_50" in reason and "rollout shop/web was aborted by someone else while moving to 50%" in reason
    # shift tasks retry infrastructure errors with backoff, but no retry can undo someone's abort
    assert dag_run.get_task_instance("shift_to_50").try_number == 1
    assert argo.api.get("Rollout", "shop", "web")["status"]["stableRS"] == "abc123"
    assert [w.code for w in argo.api.writes if w.actor == "client"] == [409]  # our resume met the abort; nothing else written
