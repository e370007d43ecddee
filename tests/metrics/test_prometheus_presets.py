"""Prometheus presets for Istio's and ingress-nginx's own metrics: the PromQL they generate, and
the millisecond histograms of Istio read back in seconds."""

from __future__ import annotations

import http.server
import json
import threading
from urllib.parse import parse_qs, urlsplit

import pytest

from canary_operators.endpoint import Endpoint
from canary_operators.metrics import Scope, provider_class
from canary_operators.metrics.prometheus import counted
from canary_operators.spec import ErrorRateCheck, LatencyCheck

ERRORS = ErrorRateCheck(name="errors", kind="error_rate")
P99 = LatencyCheck(name="p99", kind="latency", quantile=0.99)


def provider(endpoint=None, **settings):
    return provider_class("prometheus")(settings, endpoint)


def test_no_preset_keeps_the_queries_as_they_were():
    q = provider(labels={"job": "web"}).queries(ERRORS, "v2", "60s", arm="canary")
    # Each count is increase() for series seen before the window, and the last value of new ones.
    requests = 'http_requests_total{version="v2",job="web"}'
    errors = 'http_requests_total{version="v2",job="web",code=~"5.."}'
    assert q == {
        "requests": f"sum((increase({requests}[60s]) and last_over_time({requests}[10m] offset 60s))"
                    f" or (last_over_time({requests}[60s]) unless last_over_time({requests}[10m] offset 60s)))",
        "errors": f"sum((increase({errors}[60s]) and last_over_time({errors}[10m] offset 60s))"
                  f" or (last_over_time({errors}[60s]) unless last_over_time({errors}[10m] offset 60s))) or vector(0)",
    }
    assert provider().settings.latency_unit == "s" and provider().settings.arm_matchers is None


def test_istio_preset_queries_destination_metrics_by_version():
    p = provider(preset="istio", labels={"destination_service_name": "web", "destination_service_namespace": "shop"})
    sel = 'destination_version="v2",destination_service_name="web",destination_service_namespace="shop",reporter="destination"'
    assert p.queries(ERRORS, "v2", "60s", arm="canary") == {
        "requests": "sum(" + counted(f"istio_requests_total{{{sel}}}", "60s") + ")",
        "errors": "sum(" + counted(f'istio_requests_total{{{sel},response_code=~"5.."}}', "60s") + ") or vector(0)",
    }
    latency = p.queries(P99, "v1", "60s", arm="baseline")
    bucket = ('istio_request_duration_milliseconds_bucket{destination_version="v1",destination_service_name="web",'
              'destination_service_namespace="shop",reporter="destination"}')
    assert latency["buckets"] == f"sum by (le) ({counted(bucket, '60s')})"
    assert latency["value"] == f"histogram_quantile(0.99, {latency['buckets']})"


def test_explicit_settings_win_over_the_preset():
    s = provider(preset="istio", version_label="version", labels={"reporter": "source"}, latency_unit="s").settings
    assert (s.version_label, s.labels, s.latency_unit, s.requests_metric) == ("version", {"reporter": "source"}, "s", "istio_requests_total")


def test_nginx_preset_tells_the_arms_apart_by_the_canary_label():
    p = provider(preset="nginx_ingress", labels={"ingress": "web", "namespace": "shop"})
    canary, baseline = (p.queries(ERRORS, v, "30s", arm=a) for v, a in (("v2", "canary"), ("v1", "baseline")))
    nginx = 'nginx_ingress_controller_requests{canary!="",ingress="web",namespace="shop"'
    assert canary["requests"] == "sum(" + counted(nginx + "}", "30s") + ")"
    assert canary["errors"] == "sum(" + counted(nginx + ',status=~"5.."}', "30s") + ") or vector(0)"
    assert baseline["requests"] == "sum(" + counted(nginx.replace('canary!=""', 'canary=""') + "}", "30s") + ")"
    assert "nginx_ingress_controller_request_duration_seconds_bucket{canary!=\"\"" in p.queries(P99, "v2", "30s", arm="canary")["buckets"]


def test_arm_matchers_are_configurable_and_validated():
    p = provider(preset="nginx_ingress", arm_matchers={"canary": 'ingress="web-canary"', "baseline": 'ingress="web"'})
    assert p.selector("v2", arm="canary") == 'ingress="web-canary"'
    for bad in ('ingress="web"} or vector(1) or x{a="', 'ingress=web', 'bad-name="x"', 'a="b",c="d"'):
        with pytest.raises(ValueError, match="arm_matchers.canary"):
            provider(arm_matchers={"canary": bad, "baseline": 'canary=""'})
    with pytest.raises(ValueError, match="preset"):
        provider(preset="linkerd")
    with pytest.raises(ValueError, match="latency_unit"):
        provider(latency_unit="us")


# -- ms → s, against a tiny Prometheus that answers by query --------------------------------------

class _Prometheus(http.server.BaseHTTPRequestHandler):
    """Bucket bounds in ms (as Istio exports them); 90% of requests under 5 ms, all under 50 ms."""

    def do_GET(self):
        url = urlsplit(self.path)
        query = parse_qs(url.query)["query"][0]
        if url.path == "/api/v1/query_range":  # a custom query's periods: 45 in each
            result = {"resultType": "matrix", "result": [{"metric": {}, "values": [[990, "45"]]}]}
        elif query.startswith("histogram_quantile"):
            result = {"resultType": "vector", "result": [{"metric": {}, "value": [0, "45"]}]}
        elif query.startswith("sum by (le)"):
            result = {"resultType": "vector", "result": [
                {"metric": {"le": le}, "value": [0, count]} for le, count in (("5", "900"), ("50", "1000"), ("+Inf", "1000"))]}
        else:
            result = {"resultType": "vector", "result": [{"metric": {}, "value": [0, "1000"]}]}
        body = json.dumps({"status": "success", "data": result}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def prometheus():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Prometheus)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Endpoint(host="127.0.0.1", port=server.server_port)
    server.shutdown()


def test_istio_latency_in_milliseconds_is_returned_in_seconds(prometheus):
    m = provider(prometheus, preset="istio").measure(P99, Scope("v2", "v1", window_seconds=60, end=1000.0))
    for arm in (m.canary, m.baseline):
        assert arm.value == pytest.approx(0.045)
        assert arm.buckets == ((0.005, 900.0), (0.05, 1000.0), (float("inf"), 1000.0))
        assert arm.requests == 1000.0


def test_latency_in_seconds_and_custom_queries_are_not_converted(prometheus):
    scope = Scope("v2", "v1", window_seconds=60, end=1000.0)
    m = provider(prometheus, preset="nginx_ingress").measure(P99, scope)
    assert m.canary.value == 45 and m.canary.buckets[0] == (5.0, 900.0)
    custom = LatencyCheck(name="p99", kind="latency", query="histogram_quantile(0.99, sum by (le) (rate(x_bucket{$selector}[$window])))")
    assert provider(prometheus, preset="istio").measure(custom, scope).canary.value == 45
