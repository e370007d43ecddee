"""The Prometheus provider against a real Prometheus serving deterministic data (promtool blocks)."""

from __future__ import annotations

import http.server
import subprocess
import threading
import time

import pytest
import requests

from canary_operators.endpoint import Endpoint
from canary_operators.exceptions import BackendUnavailable, MetricsError
from canary_operators.metrics import Scope, provider_class
from canary_operators.metrics.prometheus import PrometheusProvider, escape_label_value
from canary_operators.spec import BusinessCheck, ErrorRateCheck, LatencyCheck, ResourceCheck
from tests.conftest import free_port, wait_until

T_END = (int(time.time()) // 60) * 60 - 3600  # an hour ago, on a minute boundary
T_START = T_END - 600
STEP = 10
BUCKETS = ["0.01", "0.025", "0.05", "0.1", "0.25", "+Inf"]

# Per version: requests/s by code, the latency bucket everything lands in, checkouts/s, cpu s/s.
ARMS = {
    "v1": {"codes": {"200": 99.8, "500": 0.2}, "bucket": "0.05", "checkouts": 10.0, "cpu": 0.1},  # baseline 0.2%
    "v2": {"codes": {"200": 10.0}, "bucket": "0.05", "checkouts": 1.0, "cpu": 0.01},  # healthy; no 5xx series
    "v3": {"codes": {"200": 9.7, "500": 0.3}, "bucket": "0.25", "checkouts": 0.5, "cpu": 0.03},  # faulty: 3%
}


def openmetrics() -> str:
    lines = ["# TYPE http_requests counter", "# TYPE http_request_duration_seconds histogram",
             "# TYPE checkouts counter", "# TYPE process_cpu_seconds counter"]
    series: dict[str, list[str]] = {}
    for t in range(T_START, T_END + 1, STEP):
        elapsed = t - T_START
        for version, arm in ARMS.items():
            sel = f'job="demo",version="{version}"'
            total = 0.0
            for code, rate in arm["codes"].items():
                series.setdefault(f"http_requests_total{{{sel},code=\"{code}\"}}", []).append(f"{rate * elapsed} {t}")
                total += rate * elapsed
            for le in BUCKETS:
                inside = le == "+Inf" or float(le) >= float(arm["bucket"])
                series.setdefault(f"http_request_duration_seconds_bucket{{{sel},le=\"{le}\"}}", []).append(f"{total if inside else 0} {t}")
            series.setdefault(f"http_request_duration_seconds_count{{{sel}}}", []).append(f"{total} {t}")
            series.setdefault(f"http_request_duration_seconds_sum{{{sel}}}", []).append(f"{total * 0.03} {t}")
            series.setdefault(f"checkouts_total{{{sel}}}", []).append(f"{arm['checkouts'] * elapsed} {t}")
            series.setdefault(f"process_cpu_seconds_total{{{sel}}}", []).append(f"{arm['cpu'] * elapsed} {t}")
    # OpenMetrics wants each family's samples together; order within a family by time is enough.
    families = {"http_requests": [], "http_request_duration_seconds": [], "checkouts": [], "process_cpu_seconds": []}
    for name, points in series.items():
        family = next(f for f in sorted(families, key=len, reverse=True) if name.startswith(f))
        families[family] += [f"{name} {p}" for p in points]
    out = []
    for family, samples in families.items():
        kind = "histogram" if family == "http_request_duration_seconds" else "counter"
        out.append(f"# TYPE {family} {kind}")
        out += samples
    out.append("# EOF")
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    work = tmp_path_factory.mktemp("prometheus")
    data = work / "data"
    (work / "metrics.om").write_text(openmetrics())
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(work / "metrics.om"), str(data)],
                   check=True, capture_output=True)
    (work / "prometheus.yml").write_text("global: {scrape_interval: 15s}\nscrape_configs: []\n")
    port = free_port()
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={data}",
         "--storage.tsdb.retention.time=100y", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=open(work / "prometheus.log", "w"),
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: requests.get(url + "/-/ready", timeout=1).ok, 30, "prometheus ready")
        yield Endpoint(host="127.0.0.1", port=port)
    finally:
        proc.terminate()
        proc.wait(10)


def provider(endpoint, **settings) -> PrometheusProvider:
    return provider_class("prometheus")({"labels": {"job": "demo"}, **settings}, endpoint)


SCOPE_BAD = Scope(canary_version="v3", baseline_version="v1", window_seconds=300, end=T_END)
SCOPE_GOOD = Scope(canary_version="v2", baseline_version="v1", window_seconds=300, end=T_END)
ERRORS = ErrorRateCheck(name="errors", kind="error_rate")


def test_error_rate_per_version(prometheus):
    m = provider(prometheus).measure(ERRORS, SCOPE_BAD)
    assert m.canary.requests == pytest.approx(3000, rel=0.01)
    assert m.canary.value == pytest.approx(0.03, rel=0.01)
    assert m.baseline.value == pytest.approx(0.002, rel=0.01)
    assert m.baseline.requests == pytest.approx(30000, rel=0.01)
    assert 'version="v3"' in m.canary.query and 'version="v1"' in m.baseline.query


def test_absent_5xx_series_means_zero_errors_not_no_data(prometheus):
    m = provider(prometheus).measure(ERRORS, SCOPE_GOOD)
    assert m.canary.value == 0.0
    assert m.canary.events == 0.0 and m.canary.requests == pytest.approx(3000, rel=0.01)


def test_latency_quantile_from_histogram(prometheus):
    p99 = LatencyCheck(name="p99", kind="latency", quantile=0.99)
    m = provider(prometheus).measure(p99, SCOPE_BAD)
    assert 0.1 < m.canary.value <= 0.25  # v3 lands in the (0.1, 0.25] bucket
    assert 0.025 < m.baseline.value <= 0.05


def test_business_metric_is_per_request(prometheus):
    check = BusinessCheck(name="c", kind="business", metric="checkouts_total", min_ratio=0.9)
    m = provider(prometheus).measure(check, SCOPE_BAD)
    assert m.canary.value == pytest.approx(0.05, rel=0.01)
    assert m.baseline.value == pytest.approx(0.1, rel=0.01)


def test_cpu_resource(prometheus):
    m = provider(prometheus).measure(ResourceCheck(name="cpu", kind="resource", resource="cpu"), SCOPE_BAD)
    assert m.canary.value == pytest.approx(0.03, rel=0.01)
    assert m.baseline.value == pytest.approx(0.1, rel=0.01)


def test_unknown_version_is_no_data(prometheus):
    m = provider(prometheus).measure(ERRORS, Scope("v9", "v1", 300, T_END))
    assert m.canary.value is None and m.canary.requests is None
    assert m.baseline.value is not None


def test_custom_query_fills_selector_and_window(prometheus):
    check = LatencyCheck(name="mean", kind="latency",
                         query="sum(rate(http_request_duration_seconds_sum{$selector}[$window])) / sum(rate(http_request_duration_seconds_count{$selector}[$window]))")
    m = provider(prometheus).measure(check, SCOPE_BAD)
    assert m.canary.value == pytest.approx(0.03, rel=0.01)
    assert '{version="v3",job="demo"}[300s]' in m.canary.query


def test_label_values_are_escaped_not_injected(prometheus):
    hostile = provider(prometheus, labels={"job": 'demo"} or vector(1) or up{job="'})
    m = hostile.measure(ERRORS, SCOPE_BAD)
    assert m.canary.value is None  # no series has that job label; nothing injected
    assert r'job="demo\"} or vector(1) or up{job=\""' in m.canary.query


def test_escape_label_value():
    assert escape_label_value('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_check_online(prometheus):
    provider(prometheus).check_online()


def test_a_bad_custom_query_is_a_metrics_error(prometheus):
    check = LatencyCheck(name="bad", kind="latency", query="sum(rate(x{$selector}[$window]")
    with pytest.raises(MetricsError, match="prometheus rejected"):
        provider(prometheus).measure(check, SCOPE_BAD)


def test_a_query_returning_many_series_is_rejected(prometheus):
    check = LatencyCheck(name="many", kind="latency", query="rate(http_requests_total{$selector}[$window])")
    with pytest.raises(MetricsError, match="must aggregate to one"):
        provider(prometheus).measure(check, SCOPE_BAD)


def test_backend_down_is_unavailable():
    with pytest.raises(BackendUnavailable, match="unreachable"):
        provider(Endpoint(host="127.0.0.1", port=free_port())).measure(ERRORS, SCOPE_BAD)


class _Stub(http.server.BaseHTTPRequestHandler):
    status = 503
    seen_headers: list = []

    def do_GET(self):
        _Stub.seen_headers.append(dict(self.headers))
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status":"error","error":"overloaded"}')

    def log_message(self, *args):
        pass


@pytest.fixture
def stub_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.mark.parametrize("status, error", [(503, BackendUnavailable), (500, BackendUnavailable), (401, MetricsError)])
def test_http_errors(stub_server, status, error):
    _Stub.status = status
    endpoint = Endpoint(host="127.0.0.1", port=stub_server.server_port, password="s3cret-token")
    with pytest.raises(error) as err:
        provider(endpoint).check_online()
    assert type(err.value) is error
    assert "s3cret-token" not in str(err.value)
    assert _Stub.seen_headers[-1]["Authorization"] == "Bearer s3cret-token"
