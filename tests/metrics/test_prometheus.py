"""The Prometheus provider against a real Prometheus serving deterministic data (promtool blocks)."""

from __future__ import annotations

import http.server
import math
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
from tests.conftest import free_port, serve_http, wait_until

T_END = (int(time.time()) // 60) * 60 - 3600  # an hour ago, on a minute boundary
T_START = T_END - 600
STEP = 10
BUCKETS = ["0.01", "0.025", "0.05", "0.1", "0.25", "+Inf"]

# Per version: requests/s by code, the latency bucket everything lands in, checkouts/s, cpu s/s,
# revenue/s (an amount: 0.5 per request for v1, 0.25 for v3, none for v2).
ARMS = {
    "v1": {"codes": {"200": 99.8, "500": 0.2}, "bucket": "0.05", "checkouts": 10.0, "cpu": 0.1, "revenue": 50.0},  # baseline 0.2%
    "v2": {"codes": {"200": 10.0}, "bucket": "0.05", "checkouts": 1.0, "cpu": 0.01},  # healthy; no 5xx series
    "v3": {"codes": {"200": 9.7, "500": 0.3}, "bucket": "0.25", "checkouts": 0.5, "cpu": 0.03, "revenue": 2.5},  # faulty: 3%
}


def openmetrics() -> str:
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
            if "revenue" in arm:
                series.setdefault(f"revenue_total{{{sel}}}", []).append(f"{arm['revenue'] * elapsed} {t}")
        # v4: a canary new in the window, its counters already nonzero at their first scrape: 100
        # requests at T_END-200, then 10/s; a 5xx series first seen at T_END-50 with 5 errors.
        if t >= T_END - 200:
            series.setdefault('http_requests_total{job="demo",version="v4",code="200"}', []).append(f"{100 + 10 * (t - T_END + 200)} {t}")
        if t >= T_END - 50:
            series.setdefault('http_requests_total{job="demo",version="v4",code="500"}', []).append(f"5 {t}")
    # OpenMetrics wants each family's samples together; order within a family by time is enough.
    families = {"http_requests": [], "http_request_duration_seconds": [], "checkouts": [], "process_cpu_seconds": [], "revenue": []}
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


def test_a_new_series_is_counted_from_zero(prometheus):
    """v4's counters are nonzero at their first scrape; increase() alone misses its 5 errors."""
    p = provider(prometheus)
    assert p.query('sum(increase(http_requests_total{version="v4",code="500"}[300s])) or vector(0)', T_END) == 0
    m = p.measure(ERRORS, Scope("v4", "v1", window_seconds=300, end=T_END))
    assert m.canary.events == 5
    assert m.canary.requests == pytest.approx(2105)
    assert m.canary.value == pytest.approx(5 / 2105)
    assert m.baseline.requests == pytest.approx(30000, rel=0.01)  # old series: their increase, no more
    assert m.baseline.events == pytest.approx(60, rel=0.01)


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


PERIOD_STARTS = (T_END - 300, T_END - 240, T_END - 180, T_END - 120, T_END - 60)


def test_resource_periods_are_aligned_across_arms(prometheus):
    m = provider(prometheus, period_seconds=60).measure(ResourceCheck(name="cpu", kind="resource", resource="cpu"), SCOPE_BAD)
    assert tuple(t for t, _ in m.canary.periods) == tuple(t for t, _ in m.baseline.periods) == PERIOD_STARTS
    assert [v for _, v in m.canary.periods] == pytest.approx([0.03] * 5, rel=0.01)
    assert [v for _, v in m.baseline.periods] == pytest.approx([0.1] * 5, rel=0.01)
    assert m.canary.value == pytest.approx(0.03, rel=0.01)  # the whole window, as before


def test_custom_query_periods_put_the_period_in_place_of_the_window(prometheus):
    check = LatencyCheck(name="mean", kind="latency",
                         query="sum(rate(http_request_duration_seconds_sum{$selector}[$window])) / sum(rate(http_request_duration_seconds_count{$selector}[$window]))")
    m = provider(prometheus, period_seconds=60).measure(check, SCOPE_BAD)
    assert tuple(t for t, _ in m.canary.periods) == PERIOD_STARTS
    assert [v for _, v in m.canary.periods] == pytest.approx([0.03] * 5, rel=0.01)
    assert "[300s]" in m.canary.query  # the whole-window value is unchanged


def test_business_amount_per_request_per_period(prometheus):
    revenue = BusinessCheck(name="revenue", kind="business", metric="revenue_total", unit="amount", min_ratio=0.9)
    p = provider(prometheus, period_seconds=60)
    m = p.measure(revenue, SCOPE_BAD)
    assert m.canary.value == pytest.approx(0.25, rel=0.01) and m.baseline.value == pytest.approx(0.5, rel=0.01)
    assert tuple(t for t, _ in m.canary.periods) == tuple(t for t, _ in m.baseline.periods) == PERIOD_STARTS
    assert [v for _, v in m.canary.periods] == pytest.approx([0.25] * 5, rel=0.01)
    assert [v for _, v in m.baseline.periods] == pytest.approx([0.5] * 5, rel=0.01)
    # v2 serves requests but sold nothing: zero per period, not a gap; v9 served nothing: no periods.
    m = p.measure(revenue, Scope("v2", "v9", window_seconds=300, end=T_END))
    assert m.canary.periods == tuple((t, 0.0) for t in PERIOD_STARTS)
    assert m.baseline.periods == ()


def test_counts_and_built_in_latency_have_no_periods(prometheus):
    counted = BusinessCheck(name="c", kind="business", metric="checkouts_total", min_ratio=0.9)
    for check in (ERRORS, counted, LatencyCheck(name="p99", kind="latency")):
        m = provider(prometheus, period_seconds=60).measure(check, SCOPE_BAD)
        assert m.canary.periods is None and m.baseline.periods is None


def test_period_grid_is_aligned_capped_and_empty_for_a_short_window():
    p = provider(None, period_seconds=30)
    assert p.period_grid(Scope("v2", "v1", window_seconds=300, end=1000.5)) == (750, 990, 30)  # starts 720 … 960
    first, last, step = p.period_grid(Scope("v2", "v1", window_seconds=30 * 86400, end=1e9))
    assert step % 30 == 0 and first % step == 0 and (last - first) / step + 1 <= 1000
    assert p.period_grid(Scope("v2", "v1", window_seconds=20, end=1000.5)) is None
    with pytest.raises(ValueError, match="period_seconds"):
        provider(None, period_seconds=4)


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


@pytest.mark.parametrize("status, error", [(503, BackendUnavailable), (500, BackendUnavailable), (401, MetricsError),
                                           (400, MetricsError), (422, MetricsError)])
def test_http_errors(stub_server, status, error):
    _Stub.status = status
    endpoint = Endpoint(host="127.0.0.1", port=stub_server.server_port, password="s3cret-token")
    with pytest.raises(error) as err:
        provider(endpoint).check_online()
    assert type(err.value) is error
    assert "s3cret-token" not in str(err.value)
    assert _Stub.seen_headers[-1]["Authorization"] == "Bearer s3cret-token"


class _RateLimiting(http.server.BaseHTTPRequestHandler):
    """Answers HTTP 429 (with ``retry_after`` as Retry-After, if set) ``limited`` times, then a value."""

    limited = 0
    retry_after: str | None = "0"
    calls = 0

    def do_GET(self):
        cls = type(self)
        cls.calls += 1
        if cls.calls <= cls.limited:
            self.send_response(429)
            if cls.retry_after is not None:
                self.send_header("Retry-After", cls.retry_after)
            self.end_headers()
            return
        body = b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[0,"1"]}]}}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("retry_after", ["0", None])
def test_http_429_is_retried(retry_after):
    handler = type("Handler", (_RateLimiting,), {"limited": 2, "retry_after": retry_after, "calls": 0})
    with serve_http(handler) as port:
        provider(Endpoint(host="127.0.0.1", port=port)).check_online()
    assert handler.calls == 3


def test_http_429_past_the_budget_is_unavailable():
    handler = type("Handler", (_RateLimiting,), {"limited": 10**6, "retry_after": "60", "calls": 0})
    started = time.monotonic()
    with serve_http(handler) as port, pytest.raises(BackendUnavailable, match="429"):
        provider(Endpoint(host="127.0.0.1", port=port), rate_limit_budget_seconds=0.5).check_online()
    assert time.monotonic() - started < 2  # Retry-After: 60 is capped, and the budget holds
    assert handler.calls == 1  # the capped wait (2 s) would overrun the budget: no second try


# -- one measurement's queries at once ---------------------------------------------------------------

class _Slow(http.server.BaseHTTPRequestHandler):
    """Prometheus-shaped answers after a random delay, so answers come back out of order: each arm's
    requests, errors, bucket, latency and cpu values differ (by its version label). A batch
    (``label_replace(q, "canary_operators_query", "i", "", "") or …``) is answered query by query,
    each series labelled with its index. ``fail`` maps a query fragment to the answer (status,
    body) every request containing it gets instead, as Prometheus fails a whole request."""

    protocol_version = "HTTP/1.1"
    fail: dict[str, tuple[int, str]] = {}
    queries: list[str] = []
    in_flight = peak = 0
    lock = threading.Lock()

    @staticmethod
    def one(query: str, ranged: bool) -> list[dict]:
        arm = 1 if 'version="v2"' in query else 2  # canary v2, baseline v1
        if query.startswith("sum by (le)"):
            return [{"metric": {"le": le}, "value": [0, str(n * arm)]} for le, n in (("0.1", 50), ("+Inf", 100))]
        if ranged:
            return [{"metric": {}, "values": [[60 * i, str(0.1 * arm)] for i in range(1, 4)]}]
        value = 0.1 * arm if query.startswith(("histogram_quantile", "avg(rate")) else 10 * arm if "5.." in query else 1000 * arm
        return [{"metric": {}, "value": [0, str(value)]}]

    def do_GET(self):
        import json
        import random
        import re
        from urllib.parse import parse_qs, urlparse

        cls = type(self)
        url = urlparse(self.path)
        form = url.query if self.command == "GET" else self.rfile.read(int(self.headers["Content-Length"])).decode()
        query, ranged = parse_qs(form)["query"][0], url.path.endswith("query_range")
        with cls.lock:
            cls.queries.append(query)
            cls.in_flight += 1
            cls.peak = max(cls.peak, cls.in_flight)
        time.sleep(random.uniform(0.01, 0.06))
        with cls.lock:
            cls.in_flight -= 1
        status, body = next(((s, b) for fragment, (s, b) in cls.fail.items() if fragment in query), (200, None))
        if body is None:
            batch = re.findall(r'label_replace\((.*?), "canary_operators_query", "(\d+)", "", ""\)(?: or |$)', query)
            result = [{**series, "metric": {**series["metric"], "canary_operators_query": i}}
                      for sub, i in batch for series in cls.one(sub, ranged)] if batch else cls.one(query, ranged)
            body = json.dumps({"status": "success", "data": {"resultType": "matrix" if ranged else "vector", "result": result}})
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_POST = do_GET  # batches go in the body

    def log_message(self, *args):
        pass


def slow_prometheus(fail=None):
    handler = type("Handler", (_Slow,), {"fail": fail or {}, "queries": [], "in_flight": 0, "peak": 0,
                                         "lock": threading.Lock()})
    return handler, serve_http(handler)


LATENCY = LatencyCheck(name="p99", kind="latency", quantile=0.99, max_ratio=1.2)


CPU = ResourceCheck(name="cpu", kind="resource", resource="cpu", max_ratio=1.3)


def test_batched_concurrent_queries_are_attributed_to_their_arm_and_check():
    handler, server = slow_prometheus()
    with server as port:
        p = provider(Endpoint(host="127.0.0.1", port=port), period_seconds=60)
        errors, latency, cpu = p.measure(ERRORS, SCOPE_GOOD), p.measure(LATENCY, SCOPE_GOOD), p.measure(CPU, SCOPE_GOOD)
    assert (errors.canary.requests, errors.canary.events, errors.baseline.requests, errors.baseline.events) == (1000, 10, 2000, 20)
    assert errors.check == "errors" and latency.check == "p99" and cpu.check == "cpu"
    assert (latency.canary.value, latency.baseline.value) == (0.1, 0.2)
    assert latency.canary.buckets == ((0.1, 50.0), (math.inf, 100.0))
    assert latency.baseline.buckets == ((0.1, 100.0), (math.inf, 200.0))
    assert (latency.canary.requests, latency.baseline.requests) == (1000, 2000)
    assert (cpu.canary.value, cpu.baseline.value) == (0.1, 0.2)
    assert cpu.canary.periods == ((0.0, 0.1), (60.0, 0.1), (120.0, 0.1))
    assert {v for _, v in cpu.baseline.periods} == {0.2}
    # One request per kind and time: errors 1 (4 queries), latency 1 (the requests counts were
    # asked already), cpu 2 (instant and range) at the same time.
    assert len(handler.queries) == 4 and handler.peak == 2
    assert handler.queries[0].count("label_replace(") == 4 and handler.queries[1].count("label_replace(") == 4


def test_batches_answer_as_the_queries_one_by_one_on_a_real_prometheus(prometheus, monkeypatch):
    import canary_operators.metrics.prometheus as module

    checks = [ERRORS, LATENCY, CPU, BusinessCheck(name="revenue", kind="business", metric="revenue_total", unit="amount", min_ratio=0.9)]
    batched_provider = provider(prometheus)
    batched = [batched_provider.measure(check, SCOPE_BAD) for check in checks]
    fetched = []
    fetch = PrometheusProvider._fetch
    monkeypatch.setattr(PrometheusProvider, "_fetch", lambda self, path, params, method="GET": fetched.append(params["query"])
                        or fetch(self, path, params, method))
    again = [provider(prometheus).measure(check, SCOPE_BAD) for check in checks]
    assert again == batched and len(fetched) == 6 and all(" or label_replace(" in q for q in fetched)
    monkeypatch.setattr(PrometheusProvider, "_fetch_batch", lambda self, calls: [module._outcome(fetch, self, *c) for c in calls])
    assert [provider(prometheus).measure(check, SCOPE_BAD) for check in checks] == batched


def _sequential(calls):
    return {key: _outcome(call) for key, call in calls.items()}


def _outcome(call):
    try:
        return call()
    except Exception as e:  # noqa: BLE001
        return e


REJECTED = (400, '{"status":"error","errorType":"bad_data","error":"parse error"}')


@pytest.mark.parametrize("fail, error", [
    ({'code=~"5.."}': (503, "overloaded")}, BackendUnavailable),  # both arms' errors queries
    ({'version="v1"': (503, "")}, BackendUnavailable),  # the baseline arm only
    ({'version="v1",job="demo",code=~"5.."': REJECTED}, MetricsError),  # the baseline's errors query
    ({'version="v1"': (401, "")}, MetricsError),  # refused
    ({'version="v1"': (429, "")}, BackendUnavailable),  # rate limited past the budget
    ({'version="v2",job="demo",code=~"5.."': (503, ""), 'version="v1",job="demo"}': REJECTED}, BackendUnavailable),
])
def test_an_error_in_one_concurrent_query_maps_as_it_did_one_query_at_a_time(monkeypatch, fail, error):
    """The same error (kind and message) as when the queries went one after another, even when
    several fail differently: the first in the order they are read wins."""
    import canary_operators.metrics.prometheus as prometheus

    handler, server = slow_prometheus(fail)
    with server as port:
        endpoint = Endpoint(host="127.0.0.1", port=port)
        with pytest.raises(error) as concurrent:
            provider(endpoint, rate_limit_budget_seconds=0).measure(ERRORS, SCOPE_GOOD)
        monkeypatch.setattr(prometheus, "fetch_all", _sequential)
        with pytest.raises(Exception) as one_by_one:
            provider(endpoint, rate_limit_budget_seconds=0).measure(ERRORS, SCOPE_GOOD)
    assert type(concurrent.value) is type(one_by_one.value) is error
    assert str(concurrent.value) == str(one_by_one.value)


def test_an_error_is_not_kept_for_the_next_measurement():
    handler, server = slow_prometheus({'version="v1"': (503, "")})
    with server as port:
        p = provider(Endpoint(host="127.0.0.1", port=port))
        with pytest.raises(BackendUnavailable):
            p.measure(ERRORS, SCOPE_GOOD)
        handler.fail = {}
        assert p.measure(ERRORS, SCOPE_GOOD).baseline.requests == 2000


def test_a_batch_refused_on_the_way_is_asked_query_by_query():
    """A proxy that allows only GET (405 for the batch's POST): each query is asked on its own."""
    handler, server = slow_prometheus()

    def refuse(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(405)
        self.send_header("Content-Length", "0")
        self.end_headers()

    refuse_post = type("NoPost", (handler,), {"do_POST": refuse})
    with serve_http(refuse_post) as port:
        m = provider(Endpoint(host="127.0.0.1", port=port)).measure(ERRORS, SCOPE_GOOD)
    assert (m.canary.requests, m.canary.events, m.baseline.requests, m.baseline.events) == (1000, 10, 2000, 20)
    assert len(handler.queries) == 4 and not any("label_replace" in q for q in handler.queries)
