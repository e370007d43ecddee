"""The ingress-nginx router against the fake API server, through the real kubernetes client."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from canary_operators.clients.kubernetes import MERGE_PATCH
from canary_operators.exceptions import RouterError, WeightNotApplied
from canary_operators.routers import router_class
from canary_operators.routers.base import Weights
from tests.k8s import ingress, k8s  # noqa: F401  (k8s is a fixture)

SETTINGS = {"namespace": "shop", "canary_ingress": "web-canary"}
WEIGHT = "nginx.ingress.kubernetes.io/canary-weight"


def router(k8s, **changes):
    return router_class("nginx_ingress")({**SETTINGS, **changes}, None, conn_id=k8s.conn_id)


def annotations(k8s) -> dict:
    return k8s.api.get("Ingress", "shop", "web-canary")["metadata"]["annotations"]


def test_apply_merge_patches_only_the_two_canary_annotations_as_strings(k8s):
    original = k8s.api.put(ingress(extra_annotations={"nginx.ingress.kubernetes.io/proxy-body-size": "8m"}))
    r = router(k8s)
    for percent in (1, 5, 25, 50, 100, 0):
        assert r.apply(percent) == percent
        assert annotations(k8s)[WEIGHT] == str(percent)
    writes = k8s.api.client_writes("Ingress")
    assert [w.body for w in writes][0] == {"metadata": {"annotations": {
        "nginx.ingress.kubernetes.io/canary": "true", WEIGHT: "1"}}}
    assert all(w.content_type == MERGE_PATCH for w in writes)
    final = k8s.api.get("Ingress", "shop", "web-canary")
    assert final["spec"] == original["spec"]
    assert final["metadata"]["annotations"] == original["metadata"]["annotations"]  # back at "0", others kept


def test_an_ingress_not_yet_marked_canary_is_refused_on_read_and_fixed_on_write(k8s):
    obj = ingress(canary_weight=None)
    del obj["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary"]
    k8s.api.put(obj)
    with pytest.raises(RouterError, match='is not a canary Ingress: annotation nginx.ingress.kubernetes.io/canary is None, not "true"'):
        router(k8s).get_canary_weight()
    assert router(k8s).apply(0) == 0
    assert annotations(k8s)["nginx.ingress.kubernetes.io/canary"] == "true" and annotations(k8s)[WEIGHT] == "0"


def test_weight_total_is_respected(k8s):
    k8s.api.put(ingress(extra_annotations={"nginx.ingress.kubernetes.io/canary-weight-total": "1000"}))
    assert router(k8s).apply(5) == 5
    assert annotations(k8s)[WEIGHT] == "50"


def test_weights_are_the_canary_weight_and_the_rest_of_its_total(k8s):
    k8s.api.put(ingress(canary_weight=50, extra_annotations={"nginx.ingress.kubernetes.io/canary-weight-total": "1000"}))
    assert router(k8s).get_weights() == Weights(stable=95, canary=5)
    k8s.api.mutate("Ingress", "shop", "web-canary", lambda o: o["metadata"]["annotations"].update({WEIGHT: "1200"}))
    assert router(k8s).get_weights() == Weights(stable=-20, canary=120)  # above its total: shown as such
    assert router(k8s).apply(100) == 100  # written back into its total
    assert annotations(k8s)[WEIGHT] == "1000"


def test_a_total_changed_underneath_fails_the_read_back(k8s):
    k8s.api.put(ingress())
    path = k8s.api.path("Ingress", "shop", "web-canary")
    total = {"nginx.ingress.kubernetes.io/canary-weight-total": "200"}
    k8s.api.before_next("PATCH", path, lambda: k8s.api.before_next(
        "GET", path, lambda: k8s.api.mutate("Ingress", "shop", "web-canary", lambda o: o["metadata"]["annotations"].update(total))))
    with pytest.raises(WeightNotApplied, match=r"set canary weight 10% but it reads back stable 95%, canary 5%"):
        router(k8s).apply(10)


def test_verify_cannot_see_nginx_and_finalize_leaves_the_canary_ingress_at_0(k8s):
    k8s.api.put(ingress(canary_weight=30))
    r = router(k8s)
    assert r.verify(30) is None
    assert r.restore().verified is None
    assert annotations(k8s)[WEIGHT] == "0" and annotations(k8s)["nginx.ingress.kubernetes.io/canary"] == "true"


def test_idempotent_and_bad_annotation(k8s):
    k8s.api.put(ingress(canary_weight=10))
    assert router(k8s).apply(10) == 10
    assert k8s.api.client_writes() == []
    k8s.api.mutate("Ingress", "shop", "web-canary", lambda o: o["metadata"]["annotations"].update({WEIGHT: "ten"}))
    with pytest.raises(RouterError, match="canary-weight='ten'; it must be an integer"):
        router(k8s).get_canary_weight()


def test_missing_ingress_forbidden_and_conflicts(k8s):
    with pytest.raises(RouterError, match=r"nginx_ingress: Ingress shop/web-canary not found \(HTTP 404\)"):
        router(k8s).get_canary_weight()
    k8s.api.put(ingress())
    k8s.api.rules = [{"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": ["get"]}]
    with pytest.raises(RouterError, match=r'forbidden to patch Ingress shop/web-canary: .*verb "patch" on ingresses in API group "networking.k8s.io"'):
        router(k8s).apply(5)
    k8s.api.rules = None
    k8s.api.fail_next("PATCH", k8s.api.path("Ingress", "shop", "web-canary"), 409)
    assert router(k8s).apply(5) == 5


def test_the_fake_refuses_a_number_as_annotation_like_kubernetes(k8s):
    from canary_operators.clients.kubernetes import KubernetesApi, ingress as ingress_resource

    k8s.api.put(ingress())
    with pytest.raises(RouterError, match="HTTP 400.*cannot unmarshal number"):
        KubernetesApi(k8s.conn_id, label="t").patch(ingress_resource("shop", "web-canary"),
                                                     {"metadata": {"annotations": {WEIGHT: 5}}}, MERGE_PATCH)


def test_an_unreachable_api_server_is_a_router_error(tmp_path, monkeypatch):
    from tests.conftest import free_port, set_connection
    from tests.k8s import FakeKubeApi

    api = FakeKubeApi()
    api._server = SimpleNamespace(server_port=free_port())  # a kubeconfig pointing at a port nobody listens on
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig.yaml")
    set_connection(monkeypatch, "t_k8s_down", conn_type="kubernetes", extra={"kube_config_path": str(kubeconfig)})
    r = router_class("nginx_ingress")({**SETTINGS, "timeout_seconds": 2}, None, conn_id="t_k8s_down")
    with pytest.raises(RouterError, match=r"nginx_ingress: Kubernetes API server http://127.0.0.1:\d+ unreachable \(get Ingress shop/web-canary\)"):
        r.get_canary_weight()
