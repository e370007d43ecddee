"""The Kubernetes client (``clients/kubernetes.py``) against the fake API server, through the real
kubernetes client and the cncf provider's KubernetesHook: what each API error becomes, conflict
retries through ``clients.retrying``, and why every patch names its content type."""

from __future__ import annotations

import time

import pytest

from canary_operators.clients import retrying
from canary_operators.clients.kubernetes import (
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    KubernetesApi,
    deployment as deployment_resource,
    resource_version_guard,
    virtual_service as vs_resource,
)
from canary_operators.exceptions import HookError, HookRefused, RouterError, RouterRefused
from tests.k8s import deployment, k8s, virtual_service  # noqa: F401  (k8s is a fixture)

VS = vs_resource("shop", "web")


def route_weights(k8s, route: int = 1) -> list:
    return [d.get("weight") for d in k8s.api.get("VirtualService", "shop", "web")["spec"]["http"][route]["route"]]


@pytest.fixture
def slept(monkeypatch) -> list[float]:
    """The waits between conflict retries, recorded instead of slept."""
    waits: list[float] = []
    monkeypatch.setattr(retrying, "SLEEP", waits.append)
    return waits


def weights_patch(obj: dict, canary: int) -> tuple[list, str]:
    return [resource_version_guard(obj), {"op": "replace", "path": "/spec/http/1/route/0/weight", "value": 100 - canary},
            {"op": "replace", "path": "/spec/http/1/route/1/weight", "value": canary}], JSON_PATCH


# -- reads and writes ---------------------------------------------------------------------------

def test_get_and_patch_a_custom_object_and_a_built_in_kind(k8s):
    k8s.api.put(virtual_service())
    k8s.api.put(deployment(replicas=2))
    api = KubernetesApi(k8s.conn_id, label="t")
    assert api.get(VS)["metadata"]["name"] == "web"
    api.patch(VS, {"metadata": {"labels": {"team": "shop"}}}, MERGE_PATCH)
    assert k8s.api.get("VirtualService", "shop", "web")["metadata"]["labels"] == {"team": "shop"}
    dep = deployment_resource("shop", "web-canary")
    api.patch(dep, {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:v2"}]}}}}, STRATEGIC_MERGE_PATCH)
    images = [c["image"] for c in api.get(dep)["spec"]["template"]["spec"]["containers"]]
    assert images == ["web:v2", "registry.example/shipper:3"]  # the container named, the others kept
    assert [w.content_type for w in k8s.api.client_writes()] == [MERGE_PATCH, STRATEGIC_MERGE_PATCH]


def test_update_with_nothing_to_do_writes_nothing(k8s):
    k8s.api.put(virtual_service())
    obj = KubernetesApi(k8s.conn_id, label="t").update(VS, lambda obj: None)
    assert obj["metadata"]["name"] == "web" and k8s.api.client_writes(ok_only=False) == []


def test_a_conflict_is_reread_and_retried_with_a_short_backoff(k8s, slept):
    k8s.api.put(virtual_service())
    k8s.api.fail_next("PATCH", k8s.api.path("VirtualService", "shop", "web"), 409, times=2)
    KubernetesApi(k8s.conn_id, label="t").update(VS, lambda obj: weights_patch(obj, 10))
    assert route_weights(k8s) == [90, 10]
    assert slept == [0.05, 0.1]  # through clients.retrying: 0.05 s, doubled, at most 1 s


# -- errors: what each answer becomes ------------------------------------------------------------

def test_denied_and_not_found_are_refused_naming_the_object_and_the_rbac_rule(k8s):
    api = KubernetesApi(k8s.conn_id, label="istio")
    with pytest.raises(RouterRefused, match=r"istio: VirtualService shop/web not found \(HTTP 404\)"):
        api.get(VS)
    k8s.api.put(virtual_service())
    k8s.api.rules = [{"apiGroups": ["networking.istio.io"], "resources": ["virtualservices"], "verbs": ["get"]}]
    with pytest.raises(RouterRefused, match=r'forbidden to patch VirtualService shop/web: the connection\'s identity needs '
                                            r'RBAC verb "patch" on virtualservices in API group "networking.istio.io" in namespace shop'):
        api.patch(VS, {"metadata": {"labels": {"a": "b"}}}, MERGE_PATCH)


def test_refused_credentials_and_patches_are_refused(k8s):
    k8s.api.put(virtual_service())
    api = KubernetesApi(k8s.conn_id, label="t")
    k8s.api.fail_next("GET", k8s.api.path("VirtualService", "shop", "web"), 401)
    with pytest.raises(RouterRefused, match=r"refused the credentials of connection 't_k8s' \(HTTP 401\)"):
        api.get(VS)
    k8s.api.fail_next("PATCH", k8s.api.path("VirtualService", "shop", "web"), 400, message="bad body")
    with pytest.raises(RouterRefused, match=r"refused to patch VirtualService shop/web \(HTTP 400\): bad body"):
        api.patch(VS, {"metadata": {}}, MERGE_PATCH)


def test_server_errors_and_persistent_conflicts_stay_retryable(k8s, slept):
    k8s.api.put(virtual_service())
    api = KubernetesApi(k8s.conn_id, label="t")
    k8s.api.fail_next("GET", k8s.api.path("VirtualService", "shop", "web"), 503)
    with pytest.raises(RouterError, match=r"get VirtualService shop/web failed \(HTTP 503\)") as err:
        api.get(VS)
    assert not isinstance(err.value, RouterRefused)
    k8s.api.fail_next("PATCH", k8s.api.path("VirtualService", "shop", "web"), 409, times=3)
    with pytest.raises(RouterError, match="kept changing underneath us: 3 writes in a row hit a conflict") as err:
        api.update(VS, lambda obj: weights_patch(obj, 10), attempts=3)
    assert not isinstance(err.value, RouterRefused) and slept == [0.05, 0.1]


def test_actions_get_their_own_error_classes(k8s):
    api = KubernetesApi(k8s.conn_id, label="deploy k8s_deploy", error=HookError, refused=HookRefused)
    with pytest.raises(HookRefused, match=r"deploy k8s_deploy: Deployment shop/web-canary not found"):
        api.get(deployment_resource("shop", "web-canary"))


def test_a_strategic_merge_patch_of_a_custom_object_is_refused_before_sending(k8s):
    k8s.api.put(virtual_service())
    with pytest.raises(RouterRefused, match="is a custom resource: no strategic merge patch"):
        KubernetesApi(k8s.conn_id, label="t").patch(VS, {"metadata": {}}, STRATEGIC_MERGE_PATCH)
    assert k8s.api.client_writes(ok_only=False) == []


def test_the_fake_answers_with_the_real_servers_bodies(k8s):
    """What the classification above reads, as the kube-apiserver sends it (tests/k8s/recorded/ and its sources)."""
    import requests

    from tests.k8s import TOKEN

    k8s.api.put(virtual_service())
    url, headers = k8s.api.url + k8s.api.path("VirtualService", "shop", "web"), {"Authorization": f"Bearer {TOKEN}"}
    failure = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
    details = {"name": "web", "group": "networking.istio.io", "kind": "virtualservices"}
    stale = requests.patch(url, json={"metadata": {"resourceVersion": "1"}}, headers={**headers, "Content-Type": MERGE_PATCH}, timeout=5)
    assert (stale.status_code, stale.json()) == (409, {**failure, "message": 'Operation cannot be fulfilled on virtualservices.networking.istio.io '
                                                       '"web": the object has been modified; please apply your changes to the latest version and '
                                                       "try again", "reason": "Conflict", "details": details, "code": 409})
    k8s.api.rules = []
    assert requests.get(url, headers=headers, timeout=5).json() == {
        **failure, "message": 'virtualservices.networking.istio.io "web" is forbidden: User "system:serviceaccount:airflow:canary" cannot get '
                              'resource "virtualservices" in API group "networking.istio.io" in the namespace "shop"',
        "reason": "Forbidden", "details": details, "code": 403}
    k8s.api.served.discard("VirtualService")  # no CRD: Go's http.NotFound, not a Status
    gone = requests.get(url, headers=headers, timeout=5)
    assert (gone.status_code, gone.headers["Content-Type"], gone.text) == (404, "text/plain; charset=utf-8", "404 page not found\n")


# -- JSON patches that do not apply: a lost race or a wrong patch ---------------------------------

def test_a_patch_that_does_not_fit_an_unchanged_object_fails_at_once(k8s):
    """Same 422 as a lost race, but a re-read shows the object did not change: the patch is wrong,
    and retrying it cannot help."""
    k8s.api.put(virtual_service())
    api = KubernetesApi(k8s.conn_id, label="istio")
    wrong = [{"op": "replace", "path": "/spec/http/7/route/0/weight", "value": 10}]
    with pytest.raises(RouterRefused, match=r"could not apply our JSON patch to VirtualService shop/web \(HTTP 422 Invalid: "
                                          r"the server rejected .*has not changed since we read it .*/spec/http/7"):
        api.update(VS, lambda obj: (wrong, JSON_PATCH))
    assert [w.code for w in k8s.api.writes if w.actor == "client"] == [422]  # not retried


def test_a_lost_race_on_every_attempt_fails_as_a_conflict(k8s):
    """Someone writes between each of our reads and our patch: every re-read shows a new
    resourceVersion, so each 422 is a lost race, retried, until the attempts run out."""
    k8s.api.put(virtual_service())
    api = KubernetesApi(k8s.conn_id, label="istio")

    def build(obj):
        k8s.api.mutate("VirtualService", "shop", "web", lambda o: o["metadata"].setdefault("labels", {}).update(n=str(time.time())))
        return [resource_version_guard(obj), {"op": "replace", "path": "/spec/http/1/route/0/weight", "value": 90},
                {"op": "replace", "path": "/spec/http/1/route/1/weight", "value": 10}], JSON_PATCH

    with pytest.raises(RouterError, match=r"kept changing underneath us: 3 writes in a row hit a conflict"):
        api.update(VS, build, attempts=3)
    assert [w.code for w in k8s.api.writes if w.actor == "client"] == [422, 422, 422]
    assert route_weights(k8s) == [100, 0]


# -- what the real kubernetes client sends, and why every patch names its content type ----------

def test_client_sends_a_custom_object_list_body_as_merge_patch_unless_told(k8s):
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
    from kubernetes.client.exceptions import ApiException

    k8s.api.put(virtual_service())
    client = KubernetesHook(conn_id=k8s.conn_id).custom_object_client
    ops = [{"op": "add", "path": "/spec/http/1/route/0/weight", "value": 90},
           {"op": "add", "path": "/spec/http/1/route/1/weight", "value": 10}]
    with pytest.raises(ApiException) as err:
        client.patch_namespaced_custom_object("networking.istio.io", "v1", "shop", "virtualservices", "web", ops)
    assert err.value.status == 400 and k8s.api.writes[-1].content_type == MERGE_PATCH
    client.patch_namespaced_custom_object("networking.istio.io", "v1", "shop", "virtualservices", "web", ops,
                                          _content_type=JSON_PATCH)
    assert route_weights(k8s) == [90, 10]


def test_client_turns_a_json_patch_dict_body_into_a_strategic_merge_patch(k8s):
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
    from kubernetes.client.exceptions import ApiException

    k8s.api.put(virtual_service())
    client = KubernetesHook(conn_id=k8s.conn_id).custom_object_client
    with pytest.raises(ApiException) as err:
        client.patch_namespaced_custom_object("networking.istio.io", "v1", "shop", "virtualservices", "web",
                                              {"metadata": {"labels": {"a": "b"}}}, _content_type=JSON_PATCH)
    assert err.value.status == 415 and k8s.api.writes[-1].content_type == "application/strategic-merge-patch+json"
    with pytest.raises(RouterError, match="a JSON patch must be a list of operations"):
        KubernetesApi(k8s.conn_id, label="t").patch(VS, {"metadata": {}}, JSON_PATCH)
