"""The Gateway API router against the fake API server, through the real kubernetes client."""

from __future__ import annotations

import copy

import pytest

from canary_operators.clients.kubernetes import JSON_PATCH
from canary_operators.exceptions import RouterError, WeightNotApplied
from canary_operators.routers import router_class
from canary_operators.routers.base import Weights
from tests.k8s import http_route, k8s  # noqa: F401  (k8s is a fixture)

SETTINGS = {"namespace": "shop", "http_route": "web", "stable_service": "web-stable", "canary_service": "web-canary"}


def router(k8s, **changes):
    return router_class("gateway_api")({**SETTINGS, **changes}, None, conn_id=k8s.conn_id)


def weights(k8s, rule: int = 1) -> list:
    return [r.get("weight") for r in k8s.api.get("HTTPRoute", "shop", "web")["spec"]["rules"][rule]["backendRefs"]]


def test_apply_sets_the_two_backend_refs_and_leaves_everything_else(k8s):
    original = k8s.api.put(http_route())
    r = router(k8s)  # the one rule that names both services is found by itself
    for percent in (1, 5, 25, 50, 100, 0):
        assert r.apply(percent) == percent
        assert weights(k8s) == [100 - percent, percent]
    writes = k8s.api.client_writes("HTTPRoute")
    assert [w.object["spec"]["rules"][1]["backendRefs"][1]["weight"] for w in writes] == [1, 5, 25, 50, 100, 0]
    assert all(w.content_type == JSON_PATCH and w.body[0]["path"] == "/metadata/resourceVersion" for w in writes)
    final = k8s.api.get("HTTPRoute", "shop", "web")
    expected = copy.deepcopy(original)
    for key in ("metadata", "status"):
        final.pop(key), expected.pop(key)
    assert final == expected  # weights back where they started; filters, other rules untouched
    assert all(w.subresource is None for w in writes)  # status is the controller's: never written


def test_rule_by_name_or_index(k8s):
    k8s.api.put(http_route())
    assert router(k8s, rule_name="app").apply(10) == 10
    assert router(k8s, rule_index=1).get_canary_weight() == 10
    with pytest.raises(RouterError, match="has no rule named 'api'"):
        router(k8s, rule_name="api").get_canary_weight()
    with pytest.raises(RouterError, match="has 2 rules; rule_index 5 does not exist"):
        router(k8s, rule_index=5).get_canary_weight()
    with pytest.raises(RouterError, match="rule static of HTTPRoute shop/web has no backendRef for the stable service web-stable"):
        router(k8s, rule_index=0).get_canary_weight()


def test_weights_are_relative_and_default_to_one(k8s):
    route = http_route()
    refs = route["spec"]["rules"][1]["backendRefs"]
    refs[0].pop("weight"), refs[1].pop("weight")  # both default to 1: an even split
    k8s.api.put(route)
    assert router(k8s).get_canary_weight() == 50


def test_another_backend_with_traffic_is_refused(k8s):
    route = http_route()
    route["spec"]["rules"][1]["backendRefs"].append({"name": "web-legacy", "port": 8080, "weight": 10})
    k8s.api.put(route)
    assert router(k8s).get_weights() == Weights(stable=91, canary=0, other=9)  # 100 : 0 : 10
    with pytest.raises(RouterError, match="also sends traffic to web-legacy"):
        router(k8s).apply(5)
    assert k8s.api.client_writes() == []


def test_a_backend_added_underneath_fails_the_read_back(k8s):
    k8s.api.put(http_route())
    path = k8s.api.path("HTTPRoute", "shop", "web")

    def someone_adds_a_backend(obj):
        obj["spec"]["rules"][1]["backendRefs"].append({"name": "web-legacy", "port": 8080, "weight": 100})

    k8s.api.before_next("PATCH", path, lambda: k8s.api.before_next(
        "GET", path, lambda: k8s.api.mutate("HTTPRoute", "shop", "web", someone_adds_a_backend)))
    with pytest.raises(WeightNotApplied, match=r"set canary weight 10% but it reads back stable 45%, canary 5%, elsewhere 50%"):
        router(k8s).apply(10)


def test_both_at_zero_shows_and_restore_puts_everything_on_stable(k8s):
    k8s.api.put(http_route())
    k8s.api.mutate("HTTPRoute", "shop", "web", lambda o: o["spec"]["rules"][1]["backendRefs"][0].update(weight=0))
    r = router(k8s)
    assert r.get_weights() == Weights(stable=0, canary=0)  # no traffic anywhere: shown, not an error
    assert r.restore().weights == Weights(stable=100, canary=0)
    assert weights(k8s) == [100, 0]


# -- verify: the gateway controller's word, at the route's current generation -------------------

def conditions(k8s, *conds, generation=None):
    """Set the controller's conditions on the route (at ``generation``, or the current one)."""
    def change(obj):
        gen = obj["metadata"]["generation"] if generation is None else generation
        obj["status"]["parents"][0]["conditions"] = [{**c, "observedGeneration": gen} for c in conds]
    k8s.api.mutate("HTTPRoute", "shop", "web", change)


ACCEPTED = {"type": "Accepted", "status": "True", "reason": "Accepted"}
RESOLVED = {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs"}


def test_verify_is_true_once_the_controller_accepted_the_new_generation(k8s):
    k8s.api.put(http_route())
    r = router(k8s)
    applied = r.apply_verified(10)  # the fake controller re-reports Accepted at the new generation
    assert applied.verified is True and "verified" in applied.describe()
    conditions(k8s, ACCEPTED, RESOLVED)
    assert r.verify(10) is True


def test_verify_is_false_when_the_controller_rejected_the_route(k8s):
    k8s.api.put(http_route())
    conditions(k8s, {"type": "Accepted", "status": "False", "reason": "NotAllowedByListeners", "message": "no listener allows it"})
    with pytest.raises(WeightNotApplied, match=r"reads back stable 90%, canary 10%, but the data plane does not route 10%"):
        router(k8s).apply_verified(10)
    assert weights(k8s) == [90, 10]  # written: the rollback's restore will put it back
    conditions(k8s, ACCEPTED, {"type": "ResolvedRefs", "status": "False", "reason": "BackendNotFound"})
    assert router(k8s).verify(10) is False


def test_verify_is_none_while_no_controller_reported_on_this_generation(k8s):
    route = http_route()
    del route["status"]
    k8s.api.put(route)
    r = router(k8s, verify_timeout_seconds=0.2)
    assert r.verify(0) is None  # no status.parents at all
    applied = r.apply_verified(10)
    assert applied.verified is None and "this router cannot verify" in applied.describe()

    k8s.api.put(http_route())
    conditions(k8s, ACCEPTED, generation=1)
    k8s.api.gateway_controller = False  # a controller that has not caught up with our write
    assert r.apply_verified(20).verified is None  # Accepted, but for generation 1: stale
    assert k8s.api.get("HTTPRoute", "shop", "web")["metadata"]["generation"] > 1
    conditions(k8s, {"type": "Accepted", "status": "Unknown", "reason": "Pending"})
    assert r.verify(20) is None


def test_missing_route_and_forbidden(k8s):
    with pytest.raises(RouterError, match=r"gateway_api: HTTPRoute shop/web not found \(HTTP 404\)"):
        router(k8s).get_canary_weight()
    k8s.api.put(http_route())
    k8s.api.fail_next("PATCH", k8s.api.path("HTTPRoute", "shop", "web"), 403)
    with pytest.raises(RouterError, match=r'needs RBAC verb "patch" on httproutes in API group "gateway.networking.k8s.io"'):
        router(k8s).apply(5)


def test_a_status_update_by_the_gateway_controller_in_between_is_retried(k8s):
    k8s.api.put(http_route())

    def controller_updates_status(obj):
        obj["status"]["parents"][0]["conditions"].append({"type": "ResolvedRefs", "status": "True"})

    k8s.api.before_next("PATCH", k8s.api.path("HTTPRoute", "shop", "web"),
                        lambda: k8s.api.mutate("HTTPRoute", "shop", "web", controller_updates_status))
    assert router(k8s).apply(25) == 25
    assert [w.code for w in k8s.api.writes if w.actor == "client"] == [422, 200]
    assert len(k8s.api.get("HTTPRoute", "shop", "web")["status"]["parents"][0]["conditions"]) == 2


def test_settings_are_validated():
    cls = router_class("gateway_api").settings_model
    with pytest.raises(ValueError, match="not both"):
        cls.model_validate({**SETTINGS, "rule_index": 0, "rule_name": "app"})
    with pytest.raises(ValueError, match="must differ"):
        cls.model_validate({**SETTINGS, "canary_service": "web-stable"})


def test_the_fake_keeps_versions_like_an_api_server(k8s):
    """A patch with a stale resourceVersion is a 409; generation moves with the spec only; no-op writes change nothing."""
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
    from kubernetes.client.exceptions import ApiException

    k8s.api.gateway_controller = False  # only the client writes here
    first = k8s.api.put(http_route())
    client = KubernetesHook(conn_id=k8s.conn_id).custom_object_client
    coords = ("gateway.networking.k8s.io", "v1", "shop", "httproutes", "web")
    guarded = {"metadata": {"labels": {"team": "web"}, "resourceVersion": first["metadata"]["resourceVersion"]}}
    after_label = client.patch_namespaced_custom_object(*coords, guarded)
    assert int(after_label["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    assert after_label["metadata"]["generation"] == first["metadata"]["generation"]  # metadata only
    with pytest.raises(ApiException) as err:
        client.patch_namespaced_custom_object(*coords, guarded)  # still carries the old resourceVersion
    assert err.value.status == 409 and "the object has been modified" in str(err.value.body)
    same = client.patch_namespaced_custom_object(*coords, {"metadata": {"labels": {"team": "web"}}})
    assert same["metadata"]["resourceVersion"] == after_label["metadata"]["resourceVersion"]  # a no-op write
    moved = client.patch_namespaced_custom_object(*coords, {"spec": {"hostnames": ["www.example.com"]}})
    assert moved["metadata"]["generation"] == first["metadata"]["generation"] + 1
    with pytest.raises(ApiException) as err:
        client.patch_namespaced_custom_object(*coords, {"spec": {}}, _content_type="application/strategic-merge-patch+json")
    assert err.value.status == 415
