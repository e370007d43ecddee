"""The k8s_deploy and k8s_scale actions against the fake API server, through the real client."""

from __future__ import annotations

import pytest

from canary_operators.clients.kubernetes import MERGE_PATCH, STRATEGIC_MERGE_PATCH
from canary_operators.actions import run_action
from canary_operators.exceptions import HookError, SpecError
from canary_operators.spec import K8sDeployHook, K8sScaleHook, RunConf, parse_spec
from tests.k8s import deployment, k8s  # noqa: F401  (k8s is a fixture)

RUN = RunConf(release="web", version="v2", stable_version="v1")


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch):
    import canary_operators.actions.kubernetes as module

    monkeypatch.setattr(module, "POLL_SECONDS", 0.02)


def deploy(k8s, **changes) -> K8sDeployHook:
    fields = {"type": "k8s_deploy", "conn_id": k8s.conn_id, "namespace": "shop", "deployment": "web-canary",
              "container": "web", "image": "registry.example/web:{version}", "timeout": 5}
    return K8sDeployHook.model_validate({**fields, **changes})


def scale(k8s, **changes) -> K8sScaleHook:
    fields = {"type": "k8s_scale", "conn_id": k8s.conn_id, "namespace": "shop", "deployment": "web-canary", "timeout": 5}
    return K8sScaleHook.model_validate({**fields, **changes})


def containers(k8s, name="web-canary") -> dict:
    obj = k8s.api.get("Deployment", "shop", name)
    return {c["name"]: c["image"] for c in obj["spec"]["template"]["spec"]["containers"]}


def test_deploy_sets_one_containers_image_scales_and_waits_until_ready(k8s):
    k8s.api.put(deployment(replicas=0))
    k8s.api.controller_delay = 0.1
    done = run_action(deploy(k8s, replicas=2), "deploy", RUN, None)
    assert done.startswith("Deployment shop/web-canary container web: image registry.example/web:v1 → registry.example/web:v2; "
                           "replicas 0 → 2; 2 of 2 replicas ready after")
    assert containers(k8s) == {"web": "registry.example/web:v2", "log-shipper": "registry.example/shipper:3"}
    [write] = k8s.api.client_writes("Deployment")
    assert write.content_type == STRATEGIC_MERGE_PATCH
    assert write.body == {"spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "web", "image": "registry.example/web:v2"}]}}}}
    obj = k8s.api.get("Deployment", "shop", "web-canary")
    assert obj["spec"]["template"]["spec"]["containers"][0]["ports"] == [{"containerPort": 8080}]  # merged by name, not replaced
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"] == 2


def test_deploy_is_idempotent(k8s):
    k8s.api.put(deployment(image="registry.example/web:v2"))
    done = run_action(deploy(k8s), "promote", RUN, None)
    assert "already runs registry.example/web:v2; 2 of 2 replicas ready" in done
    assert k8s.api.client_writes() == []


def test_deploy_fills_in_every_placeholder(k8s):
    k8s.api.put(deployment(name="web-stable"))
    run_action(deploy(k8s, deployment="web-stable", image="registry.example/{release}:{version}-from-{stable_version}"), "promote", RUN, None)
    assert containers(k8s, "web-stable")["web"] == "registry.example/web:v2-from-v1"


def test_unknown_container_and_missing_deployment_are_named(k8s):
    with pytest.raises(HookError, match=r"deploy k8s_deploy: Deployment shop/web-canary not found \(HTTP 404\)"):
        run_action(deploy(k8s), "deploy", RUN, None)
    k8s.api.put(deployment())
    with pytest.raises(HookError, match="Deployment shop/web-canary has no container 'app'; its containers: web, log-shipper"):
        run_action(deploy(k8s, container="app"), "deploy", RUN, None)


def test_a_deployment_that_never_gets_ready_times_out_saying_what_is_missing(k8s):
    k8s.api.put(deployment())
    k8s.api.deployment_behaviour["web-canary"] = "stuck"
    with pytest.raises(HookError, match=r"deploy k8s_deploy: Deployment shop/web-canary not ready after 0.3s: 2 old replicas still running"):
        run_action(deploy(k8s, timeout=0.3), "deploy", RUN, None)


def test_a_failed_rollout_fails_at_once(k8s):
    k8s.api.put(deployment())
    k8s.api.deployment_behaviour["web-canary"] = "failed"
    with pytest.raises(HookError, match=r"the rollout failed: ReplicaSet \"web-canary-new\" has timed out progressing"):
        run_action(deploy(k8s, timeout=60), "deploy", RUN, None)


def test_no_wait(k8s):
    k8s.api.put(deployment())
    k8s.api.deployment_behaviour["web-canary"] = "stuck"
    assert run_action(deploy(k8s, wait=False), "deploy", RUN, None).endswith("image registry.example/web:v1 → registry.example/web:v2")


def test_scale_down_merge_patches_replicas_and_waits(k8s):
    k8s.api.put(deployment(replicas=3))
    assert run_action(scale(k8s), "rollback", RUN, None).startswith("Deployment shop/web-canary scaled 3 → 0; 0 of 0 replicas ready")
    [write] = k8s.api.client_writes("Deployment")
    assert (write.content_type, write.body) == (MERGE_PATCH, {"spec": {"replicas": 0}})
    assert run_action(scale(k8s), "rollback", RUN, None).startswith("Deployment shop/web-canary already at 0 replicas")
    assert len(k8s.api.client_writes("Deployment")) == 1


def test_forbidden_names_the_rbac_rule(k8s):
    k8s.api.put(deployment())
    k8s.api.rules = [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}]
    with pytest.raises(HookError, match=r'rollback k8s_scale: forbidden to patch Deployment shop/web-canary: .*verb "patch" on '
                                        r'deployments in API group "apps" in namespace shop'):
        run_action(scale(k8s), "rollback", RUN, None)


def test_a_connection_that_does_not_exist_is_a_hook_error():
    action = K8sScaleHook(type="k8s_scale", conn_id="t_no_such_k8s", namespace="shop", deployment="web")
    with pytest.raises(HookError, match="cannot build a Kubernetes client from connection 't_no_such_k8s'"):
        run_action(action, "rollback", RUN, None)


@pytest.mark.parametrize(
    "action, expected",
    [
        ({"type": "k8s_deploy", "namespace": "shop", "deployment": "web", "container": "web", "image": "r/web:{tag}"},
         "deploy.image=r/web:{tag}: unknown placeholder {tag}; use {version}, {stable_version} or {release}"),
        ({"type": "k8s_deploy", "namespace": "Shop", "deployment": "web", "container": "web", "image": "r/web:{version}"},
         "deploy.namespace=Shop: String should match pattern"),
        ({"type": "k8s_scale", "namespace": "shop", "deployment": "web", "replicas": -1}, "deploy.replicas=-1: Input should be greater than or equal to 0"),
        ({"type": "k8s_scale", "namespace": "shop"}, "deploy.deployment: Field required"),
    ],
)
def test_bad_action_specs_name_the_field(action, expected):
    spec = {"name": "web", "router": {"type": "haproxy", "conn_id": "h", "settings": {"backend": "app"}},
            "metrics": {"type": "prometheus", "conn_id": "p"}, "deploy": action}
    with pytest.raises(SpecError) as err:
        parse_spec(spec, "web.yaml")
    assert expected in str(err.value)
