"""The Istio router against the fake API server, through the real kubernetes client and the cncf
provider's KubernetesHook (an Airflow connection with ``kube_config_path``)."""

from __future__ import annotations

import copy

import pytest

from canary_operators.clients.kubernetes import JSON_PATCH, KubernetesApi, virtual_service as vs_resource
from canary_operators.exceptions import RouterError, WeightNotApplied
from canary_operators.routers import router_class
from canary_operators.routers.base import Weights
from tests.k8s import k8s, virtual_service  # noqa: F401  (k8s is a fixture)

HOST = "web.shop.svc.cluster.local"
SETTINGS = {
    "namespace": "shop", "virtual_service": "web", "route": "primary",
    "stable_destination": {"host": HOST, "subset": "stable"},
    "canary_destination": {"host": HOST, "subset": "canary"},
}


def router(k8s, **changes):
    return router_class("istio")({**SETTINGS, **changes}, None, conn_id=k8s.conn_id)


def route_weights(k8s, route: int = 1) -> list:
    return [d.get("weight") for d in k8s.api.get("VirtualService", "shop", "web")["spec"]["http"][route]["route"]]


def without_weights(obj: dict) -> dict:
    obj = copy.deepcopy(obj)
    obj.pop("metadata")
    for route in obj["spec"]["http"]:
        for d in route.get("route", []):
            d.pop("weight", None)
    return obj


def test_apply_sets_both_weights_in_one_guarded_json_patch_and_reads_back(k8s):
    original = k8s.api.put(virtual_service())
    r = router(k8s)
    assert r.get_canary_weight() == 0
    for percent in (1, 5, 25, 50, 100, 0):
        assert r.apply(percent) == percent
        assert route_weights(k8s) == [100 - percent, percent]
    writes = k8s.api.client_writes("VirtualService")
    assert [w.object["spec"]["http"][1]["route"][1]["weight"] for w in writes] == [1, 5, 25, 50, 100, 0]
    first = writes[0]
    assert first.content_type == JSON_PATCH
    assert first.body[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": original["metadata"]["resourceVersion"]}
    assert {op["op"] for op in first.body} == {"test", "add"}
    assert all(op["path"].startswith("/spec/http/1/route/") for op in first.body[1:])
    # every written object is valid: integer weights summing to 100; nothing else changed
    for w in writes:
        weights = [d["weight"] for d in w.object["spec"]["http"][1]["route"]]
        assert all(type(x) is int for x in weights) and sum(weights) == 100
        assert without_weights(w.object) == without_weights(original)
        assert w.object["metadata"]["annotations"] == {"owner": "web-team"}


def test_apply_is_idempotent_and_writes_nothing_when_already_set(k8s):
    k8s.api.put(virtual_service(canary_weight=25))
    assert router(k8s).apply(25) == 25
    assert k8s.api.client_writes() == []


def test_the_only_http_route_needs_no_name(k8s):
    vs = virtual_service()
    vs["spec"]["http"] = vs["spec"]["http"][1:]
    k8s.api.put(vs)
    assert router(k8s, route=None).apply(10) == 10
    assert route_weights(k8s, 0) == [90, 10]


def test_several_routes_and_no_route_name_is_a_clear_error(k8s):
    k8s.api.put(virtual_service())
    with pytest.raises(RouterError, match=r"has 2 http routes \('admin', 'primary'\); set router.settings.route"):
        router(k8s, route=None).get_canary_weight()
    with pytest.raises(RouterError, match=r"has no http route named 'main' \(its routes: 'admin', 'primary'\)"):
        router(k8s, route="main").get_canary_weight()


def test_destinations_are_matched_by_host_and_subset(k8s):
    k8s.api.put(virtual_service())
    with pytest.raises(RouterError, match="has no destination matching the canary destination web.shop.svc.cluster.local subset preview"):
        router(k8s, canary_destination={"host": HOST, "subset": "preview"}).get_canary_weight()
    with pytest.raises(RouterError, match=r"has 2 destinations \(add a subset to tell them apart\) matching the stable"):
        router(k8s, stable_destination={"host": HOST}).get_canary_weight()


def test_a_third_destination_with_traffic_is_refused_and_nothing_is_written(k8s):
    vs = virtual_service()
    vs["spec"]["http"][1]["route"] = [
        {"destination": {"host": HOST, "subset": "stable"}, "weight": 80},
        {"destination": {"host": HOST, "subset": "canary"}, "weight": 0},
        {"destination": {"host": "mirror.shop.svc.cluster.local"}, "weight": 20},
    ]
    k8s.api.put(vs)
    assert router(k8s).get_weights() == Weights(stable=80, canary=0, other=20)
    with pytest.raises(RouterError, match="also sends traffic to mirror.shop.svc.cluster.local"):
        router(k8s).apply(10)
    assert k8s.api.client_writes() == []


def test_a_third_destination_added_underneath_fails_the_read_back(k8s):
    k8s.api.put(virtual_service())
    path = k8s.api.path("VirtualService", "shop", "web")

    def someone_adds_a_mirror(obj):
        obj["spec"]["http"][1]["route"][0]["weight"] = 80
        obj["spec"]["http"][1]["route"].append({"destination": {"host": "mirror.shop.svc.cluster.local"}, "weight": 10})

    # right after our write, before the read-back
    k8s.api.before_next("PATCH", path, lambda: k8s.api.before_next(
        "GET", path, lambda: k8s.api.mutate("VirtualService", "shop", "web", someone_adds_a_mirror)))
    with pytest.raises(WeightNotApplied, match=r"set canary weight 10% but it reads back stable 80%, canary 10%, elsewhere 10%"):
        router(k8s).apply(10)


def test_weights_are_shown_as_written_even_when_they_make_no_split(k8s):
    k8s.api.put(virtual_service())
    k8s.api.mutate("VirtualService", "shop", "web", lambda o: [d.update(weight=0) for d in o["spec"]["http"][1]["route"]])
    assert router(k8s).get_weights() == Weights(stable=0, canary=0)  # shown, not an error or a rounded split
    assert str(router(k8s).get_weights()) == "stable 0%, canary 0%"
    k8s.api.mutate("VirtualService", "shop", "web", lambda o: o["spec"]["http"][1]["route"][0].update(weight=70))
    assert router(k8s).get_weights() == Weights(stable=70, canary=0)  # not 100 once normalised


def test_verify_cannot_see_envoy_and_finalize_puts_everything_on_stable(k8s):
    k8s.api.put(virtual_service(canary_weight=25))
    r = router(k8s)
    assert r.verify(25) is None
    applied = r.apply_verified(50)
    assert applied.verified is None and "this router cannot verify" in applied.describe()
    r.finalize()
    assert route_weights(k8s) == [100, 0]
    assert r.restore().weights == Weights(stable=100, canary=0)


def test_missing_virtual_service_is_named(k8s):
    with pytest.raises(RouterError, match=r"istio: VirtualService shop/web not found \(HTTP 404\)"):
        router(k8s).get_canary_weight()


def test_missing_crd_says_so(k8s):
    k8s.api.served.discard("VirtualService")  # its paths answer 404 page not found, as without the CRD
    with pytest.raises(RouterError, match=r"does not serve virtualservices.networking.istio.io/v1 \(is the CRD installed\?\)"):
        router(k8s).get_canary_weight()


def test_forbidden_names_the_missing_rbac_rule(k8s):
    k8s.api.put(virtual_service())
    k8s.api.rules = [{"apiGroups": ["networking.istio.io"], "resources": ["virtualservices"], "verbs": ["get"]}]
    assert router(k8s).get_canary_weight() == 0  # reading is allowed
    with pytest.raises(RouterError, match=r'forbidden to patch VirtualService shop/web: the connection\'s identity needs RBAC verb '
                                          r'"patch" on virtualservices in API group "networking.istio.io" in namespace shop \(HTTP 403'):
        router(k8s).apply(10)


def test_a_change_underneath_is_reread_and_retried_keeping_the_other_change(k8s):
    k8s.api.put(virtual_service())
    path = k8s.api.path("VirtualService", "shop", "web")

    def someone_edits_the_admin_route(obj):
        obj["spec"]["http"][0]["timeout"] = "5s"

    k8s.api.before_next("PATCH", path, lambda: k8s.api.mutate("VirtualService", "shop", "web", someone_edits_the_admin_route))
    assert router(k8s).apply(10) == 10
    attempts = [w.code for w in k8s.api.writes if w.actor == "client"]
    assert attempts == [422, 200]  # the resourceVersion test failed once, then the re-read patch went through
    final = k8s.api.get("VirtualService", "shop", "web")
    assert final["spec"]["http"][0]["timeout"] == "5s" and route_weights(k8s) == [90, 10]


def test_a_failed_test_op_gets_the_real_servers_answer(k8s):
    """The kube-apiserver's answer to a JSON patch that does not apply (handlers/patch.go:
    NewGenericServerResponse(422, ...)): the fake must give exactly this, or the router's
    conflict handling is tested against an answer no cluster sends."""
    import requests

    from tests.k8s import TOKEN

    k8s.api.put(virtual_service())
    url = k8s.api.url + k8s.api.path("VirtualService", "shop", "web")
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": JSON_PATCH}
    for ops in ([{"op": "test", "path": "/metadata/resourceVersion", "value": "stale"}],
                [{"op": "replace", "path": "/spec/http/7/route/0/weight", "value": 1}]):  # a missing member
        answer = requests.patch(url, json=ops, headers=headers, timeout=5)
        assert answer.status_code == 422
        assert answer.json() == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                 "message": "the server rejected our request due to an error in our request",
                                 "reason": "Invalid", "details": {}, "code": 422}


def test_a_409_is_retried_and_a_persistent_one_fails_clearly(k8s):
    k8s.api.put(virtual_service())
    path = k8s.api.path("VirtualService", "shop", "web")
    k8s.api.fail_next("PATCH", path, 409)
    assert router(k8s).apply(10) == 10
    k8s.api.fail_next("PATCH", path, 409, times=5)
    with pytest.raises(RouterError, match=r"VirtualService shop/web kept changing underneath us: 5 writes in a row hit a conflict"):
        router(k8s, conflict_attempts=5).apply(20)
    assert route_weights(k8s) == [90, 10]


def test_the_fake_refuses_invalid_weights_like_istio_would(k8s):
    """So the tests above would catch a router that writes weights not summing to 100."""
    k8s.api.put(virtual_service())
    api = KubernetesApi(k8s.conn_id, label="t")
    half = [{"op": "add", "path": "/spec/http/1/route/0/weight", "value": 50}]
    with pytest.raises(RouterError, match="total destination weight 50 != 100"):
        api.patch(vs_resource("shop", "web"), half, JSON_PATCH)
    floats = [{"op": "add", "path": "/spec/http/1/route/0/weight", "value": 95.5},
              {"op": "add", "path": "/spec/http/1/route/1/weight", "value": 4.5}]
    with pytest.raises(RouterError, match=r"HTTP 422\).*weight: Invalid value: 95.5: must be an integer"):
        api.patch(vs_resource("shop", "web"), floats, JSON_PATCH)


def test_settings_are_validated():
    cls = router_class("istio").settings_model
    with pytest.raises(ValueError, match="must differ"):
        cls.model_validate({**SETTINGS, "canary_destination": SETTINGS["stable_destination"]})
    with pytest.raises(ValueError, match="namespace"):
        cls.model_validate({**SETTINGS, "namespace": "Shop"})
    with pytest.raises(ValueError, match="colour"):
        cls.model_validate({**SETTINGS, "colour": "blue"})
