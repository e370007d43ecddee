"""The Datadog provider against a local stub of Datadog's API (v1 and v2), with literal data."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from canary_operators.endpoint import Endpoint
from canary_operators.exceptions import BackendUnavailable, MetricsError, SpecError
from canary_operators.metrics import PROVIDERS, Scope, provider_class
from canary_operators.metrics.datadog import DatadogProvider, DatadogSettings
from canary_operators.spec import BusinessCheck, ErrorRateCheck, LatencyCheck, ResourceCheck, load_spec, parse_spec
from tests.conftest import free_port
from tests.metrics.datadog_stub import DatadogStub

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "dd-api-0123456789abcdef"
APP_KEY = "dd-app-fedcba9876543210"
END = 1_700_000_000
WINDOW = 300

# Per (metric, version): the points Datadog holds in the window (None = a null point).
TABLE = {
    # v1, the baseline: 20000 hits, 40 errors → 0.2%
    ("trace.http.request.hits", "v1"): [5000, 5000, None, 5000, 5000],
    ("trace.http.request.errors", "v1"): [10, 10, None, 20],
    ("p99:trace.http.request", "v1"): [0.2, 0.3],
    ("p50:trace.http.request", "v1"): [0.05, 0.07],
    ("checkouts", "v1"): [1000, 1000],
    ("container.cpu.usage", "v1"): {"host:a": [0.1, 0.3], "host:b": [0.3, 0.1]},
    ("container.memory.usage", "v1"): [2.0e8, 4.0e8],
    ("web.latency.ms", "v1"): [250.0],
    ("revenue", "v1"): [100.0, None, 300.0, 200.0],  # cents; the 3rd interval has no requests, the 5th no amount
    # v2, the faulty canary: 1000 hits, 30 errors → 3%
    ("trace.http.request.hits", "v2"): [250, 250, 250, 250],
    ("trace.http.request.errors", "v2"): [10, None, 20],
    ("p99:trace.http.request", "v2"): [0.5, None, 0.7],
    ("p50:trace.http.request", "v2"): [0.1],
    ("checkouts", "v2"): [20, 30],
    ("container.cpu.usage", "v2"): {"host:c": [0.4, 0.5]},
    ("container.memory.usage", "v2"): [5.0e8],
    ("web.latency.ms", "v2"): [400.0, 600.0],
    ("revenue", "v2"): [10.0, 20.0, 30.0, 40.0],
    # v3: healthy, 1000 hits and no errors series at all
    ("trace.http.request.hits", "v3"): [400, 600],
    # v4: a series of only nulls
    ("trace.http.request.hits", "v4"): [None, None, None],
}
TAGS = {"service": "web", "env": "prod"}
SEL_V1 = "version:v1,env:prod,service:web"
SEL_V2 = "version:v2,env:prod,service:web"

# The stub puts points on the rollup's grid: the 60 s bucket holding the window's start, then every 60 s.
GRID = [(END - WINDOW) // 60 * 60 + 60 * i for i in range(6)]

ERRORS = ErrorRateCheck(name="errors", kind="error_rate")
P99 = LatencyCheck(name="p99", kind="latency", quantile=0.99)
SCOPE = Scope(canary_version="v2", baseline_version="v1", window_seconds=WINDOW, end=END)


@pytest.fixture
def stub():
    server = DatadogStub(API_KEY, APP_KEY, TABLE, tags=TAGS)
    yield server
    server.stop()


@pytest.fixture(params=["v1", "v2"])
def api(request):
    return request.param


def endpoint(stub, api_key=API_KEY, app_key=APP_KEY) -> Endpoint:
    extra = {"application_key": app_key} if app_key else {}
    return Endpoint(host="http://127.0.0.1", port=stub.port, password=api_key, extra=extra)


def provider(stub, api="v2", ep=None, **settings) -> DatadogProvider:
    """A provider whose rate-limit waits are recorded in ``.waits`` instead of slept."""
    p = provider_class("datadog")({"api": api, "tags": TAGS, **settings}, ep or endpoint(stub))
    p.waits = []
    p.sleep = p.waits.append
    return p


# -- values per check kind -------------------------------------------------------------------

def test_registered_by_type_name():
    assert PROVIDERS["datadog"] is DatadogProvider


def test_error_rate_per_version(stub, api):
    m = provider(stub, api).measure(ERRORS, SCOPE)
    assert (m.canary.requests, m.canary.events) == (1000, 30)
    assert m.canary.value == pytest.approx(0.03)
    assert (m.baseline.requests, m.baseline.events) == (20000, 40)
    assert m.baseline.value == pytest.approx(0.002)
    assert m.canary.buckets is None and m.window_seconds == WINDOW and m.check == "errors"
    assert m.canary.query == (f"sum:trace.http.request.errors{{{SEL_V2}}}.as_count().rollup(sum, 60)"
                              f" / sum:trace.http.request.hits{{{SEL_V2}}}.as_count().rollup(sum, 60)")
    assert stub.queries == [
        f"sum:trace.http.request.hits{{{SEL_V2}}}.as_count().rollup(sum, 60)",
        f"sum:trace.http.request.errors{{{SEL_V2}}}.as_count().rollup(sum, 60)",
        f"sum:trace.http.request.hits{{{SEL_V1}}}.as_count().rollup(sum, 60)",
        f"sum:trace.http.request.errors{{{SEL_V1}}}.as_count().rollup(sum, 60)",
    ]


def test_v1_request_shape(stub):
    provider(stub, "v1").measure(ERRORS, SCOPE)
    first = stub.requests[0]
    assert (first.method, first.path) == ("GET", "/api/v1/query")
    assert first.params == {"from": str(END - WINDOW), "to": str(END), "query": f"sum:trace.http.request.hits{{{SEL_V2}}}.as_count().rollup(sum, 60)"}
    assert first.headers["DD-API-KEY"] == API_KEY and first.headers["DD-APPLICATION-KEY"] == APP_KEY


def test_v2_request_shape(stub):
    provider(stub, "v2").measure(ERRORS, SCOPE)
    first = stub.requests[0]
    assert (first.method, first.path, first.params) == ("POST", "/api/v2/query/timeseries", {})
    assert first.body == {"data": {"type": "timeseries_request", "attributes": {
        "from": (END - WINDOW) * 1000, "to": END * 1000, "interval": 60_000,
        "queries": [{"data_source": "metrics", "query": f"sum:trace.http.request.hits{{{SEL_V2}}}.as_count().rollup(sum, 60)", "name": "a"}],
        "formulas": [{"formula": "a"}],
    }}}
    assert first.headers["DD-API-KEY"] == API_KEY and first.headers["DD-APPLICATION-KEY"] == APP_KEY


def test_absent_errors_series_means_zero_errors_not_no_data(stub, api):
    m = provider(stub, api).measure(ERRORS, Scope("v3", "v1", WINDOW, END))
    assert (m.canary.value, m.canary.events, m.canary.requests) == (0.0, 0.0, 1000)


@pytest.mark.parametrize("version", ["v9", "v4"], ids=["unknown-version", "only-null-points"])
def test_no_data_is_none(stub, api, version):
    m = provider(stub, api).measure(ERRORS, Scope(version, "v1", WINDOW, END))
    assert (m.canary.value, m.canary.requests, m.canary.events) == (None, None, None)
    assert m.baseline.value == pytest.approx(0.002)


def test_other_tags_filter_too(stub, api):
    m = provider(stub, api, tags={"service": "checkout"}).measure(ERRORS, SCOPE)
    assert m.canary.value is None and m.baseline.value is None


def test_latency_quantile_is_the_mean_of_points_in_seconds(stub, api):
    m = provider(stub, api).measure(P99, SCOPE)
    assert m.canary.value == pytest.approx(0.6)  # (0.5 + 0.7) / 2, the null skipped
    assert m.baseline.value == pytest.approx(0.25)
    assert m.canary.requests == 1000 and m.baseline.requests == 20000
    assert m.canary.query == f"p99:trace.http.request{{{SEL_V2}}}.rollup(60)"
    p50 = provider(stub, api).measure(LatencyCheck(name="p50", kind="latency", quantile=0.5), SCOPE)
    assert (p50.canary.value, p50.baseline.value) == (pytest.approx(0.1), pytest.approx(0.06))
    assert p50.baseline.query == f"p50:trace.http.request{{{SEL_V1}}}.rollup(60)"


def test_checks_in_one_poke_share_the_requests_query(stub, api):
    p = provider(stub, api)
    p.measure(ERRORS, SCOPE)
    p.measure(P99, SCOPE)
    assert stub.queries == [
        f"sum:trace.http.request.hits{{{SEL_V2}}}.as_count().rollup(sum, 60)",
        f"sum:trace.http.request.errors{{{SEL_V2}}}.as_count().rollup(sum, 60)",
        f"sum:trace.http.request.hits{{{SEL_V1}}}.as_count().rollup(sum, 60)",
        f"sum:trace.http.request.errors{{{SEL_V1}}}.as_count().rollup(sum, 60)",
        f"p99:trace.http.request{{{SEL_V2}}}.rollup(60)",
        f"p99:trace.http.request{{{SEL_V1}}}.rollup(60)",
    ]
    p.measure(ERRORS, Scope("v2", "v1", WINDOW + 30, END + 30))  # the next poke: a new window, asked again
    assert len(stub.queries) == 10


def test_latency_in_milliseconds_is_converted_to_seconds(stub, api):
    m = provider(stub, api, latency_metric="web.latency.ms", latency_unit="ms").measure(P99, SCOPE)
    assert m.canary.value == pytest.approx(0.5)
    assert m.baseline.value == pytest.approx(0.25)


def test_business_metric_is_per_request(stub, api):
    check = BusinessCheck(name="conversion", kind="business", metric="checkouts", min_ratio=0.9)
    m = provider(stub, api).measure(check, SCOPE)
    assert (m.canary.events, m.canary.value) == (50, pytest.approx(0.05))
    assert (m.baseline.events, m.baseline.value) == (2000, pytest.approx(0.1))
    assert m.canary.query == f"sum:checkouts{{{SEL_V2}}}.as_count().rollup(sum, 60) / sum:trace.http.request.hits{{{SEL_V2}}}.as_count().rollup(sum, 60)"


def test_resources_average_hosts_then_points(stub, api):
    cpu = provider(stub, api).measure(ResourceCheck(name="cpu", kind="resource", resource="cpu"), SCOPE)
    assert cpu.canary.value == pytest.approx(0.45)
    assert cpu.baseline.value == pytest.approx(0.2)
    assert cpu.baseline.query == f"avg:container.cpu.usage{{{SEL_V1}}}.rollup(avg, 60)"
    memory = provider(stub, api).measure(ResourceCheck(name="mem", kind="resource", resource="memory"), SCOPE)
    assert (memory.canary.value, memory.baseline.value) == (pytest.approx(5e8), pytest.approx(3e8))
    assert memory.canary.query == f"avg:container.memory.usage{{{SEL_V2}}}.rollup(avg, 60)"


def test_custom_query_fills_selector_and_window(stub, api):
    check = ResourceCheck(name="mem", kind="resource", resource="memory",
                          query="max:container.memory.usage{$selector}.rollup(max, $window)")
    m = provider(stub, api).measure(check, Scope("v2", "v1", 299.2, END))
    assert m.canary.query == f"max:container.memory.usage{{{SEL_V2}}}.rollup(max, 300)"
    assert m.canary.value == pytest.approx(5e8)
    assert stub.queries[1] == m.canary.query and stub.queries[3] == m.baseline.query


# -- periods: one number per rollup interval, on one grid for both arms -----------------------------

def test_latency_periods_are_the_points_on_one_grid_with_nulls_left_out(stub, api):
    m = provider(stub, api).measure(P99, SCOPE)
    assert m.canary.periods == ((GRID[0], 0.5), (GRID[2], 0.7))  # the null interval is left out
    assert m.baseline.periods == ((GRID[0], 0.2), (GRID[1], 0.3))
    assert GRID[0] % 60 == 0  # both arms on the same 60 s grid: the judge pairs them by start time
    ms = provider(stub, api, latency_metric="web.latency.ms", latency_unit="ms").measure(P99, SCOPE)
    assert ms.canary.periods == ((GRID[0], 0.4), (GRID[1], 0.6))  # in seconds, like the value
    assert ms.baseline.periods == ((GRID[0], 0.25),)


def test_the_rollup_interval_is_a_setting(stub, api):
    m = provider(stub, api, period_seconds=120).measure(P99, SCOPE)
    first = (END - WINDOW) // 120 * 120
    assert m.canary.query == f"p99:trace.http.request{{{SEL_V2}}}.rollup(120)"
    assert m.canary.periods == ((first, 0.5), (first + 240, 0.7))
    assert [t for t, _ in m.baseline.periods] == [first, first + 120]
    if api == "v2":
        assert {r.body["data"]["attributes"]["interval"] for r in stub.requests} == {120_000}


def test_resource_and_custom_query_periods(stub, api):
    cpu = provider(stub, api).measure(ResourceCheck(name="cpu", kind="resource", resource="cpu"), SCOPE)
    assert cpu.canary.periods == ((GRID[0], 0.4), (GRID[1], 0.5))
    assert cpu.baseline.periods == ((GRID[0], pytest.approx(0.2)), (GRID[1], pytest.approx(0.2)))  # hosts averaged
    check = ErrorRateCheck(name="errors", kind="error_rate", query="avg:trace.http.request.errors{$selector}")
    custom = provider(stub, api).measure(check, SCOPE)
    # A custom query is sent as written: v2 still asks for the 60 s interval; v1 gets Datadog's default
    # interval for the window (20 s in the stub), the same for both arms.
    step = 60 if api == "v2" else 20
    grid = [(END - WINDOW) // step * step + step * i for i in range(4)]
    assert custom.canary.periods == ((grid[0], 10.0), (grid[2], 20.0))
    assert custom.baseline.periods == ((grid[0], 10.0), (grid[1], 10.0), (grid[3], 20.0))
    assert custom.canary.events is None  # a custom query gives only the value: the judge tests its periods


def test_business_amount_periods_are_amount_per_request(stub, api):
    check = BusinessCheck(name="revenue", kind="business", metric="revenue", min_ratio=0.9, unit="amount")
    m = provider(stub, api).measure(check, SCOPE)
    # canary: 10, 20, 30, 40 over 250 requests an interval
    assert m.canary.periods == tuple((GRID[i], pytest.approx(v)) for i, v in enumerate([0.04, 0.08, 0.12, 0.16]))
    assert (m.canary.events, m.canary.requests, m.canary.value) == (100, 1000, pytest.approx(0.1))
    # baseline: hits 5000, 5000, null, 5000, 5000; amounts 100, null, 300, 200: an interval without
    # requests is left out, one with requests but no amount is 0
    assert m.baseline.periods == ((GRID[0], 0.02), (GRID[1], 0.0), (GRID[3], 0.04), (GRID[4], 0.0))
    assert (m.baseline.events, m.baseline.value) == (600, pytest.approx(0.03))
    count = provider(stub, api).measure(BusinessCheck(name="conversion", kind="business", metric="checkouts", min_ratio=0.9), SCOPE)
    assert count.canary.periods is None  # a count is judged on events / requests, not periods


def test_no_periods_for_counts_or_without_data(stub, api):
    assert provider(stub, api).measure(ERRORS, SCOPE).canary.periods is None
    m = provider(stub, api).measure(P99, Scope("v9", "v1", WINDOW, END))
    assert (m.canary.value, m.canary.periods) == (None, None)
    amount = BusinessCheck(name="revenue", kind="business", metric="revenue", min_ratio=0.9, unit="amount")
    m = provider(stub, api).measure(amount, Scope("v3", "v1", WINDOW, END))  # v3 has requests, no revenue series
    assert (m.canary.value, m.canary.events, m.canary.periods) == (None, None, None)


def test_several_series_must_aggregate_to_one(stub, api):
    check = ResourceCheck(name="cpu", kind="resource", resource="cpu", query="avg:container.cpu.usage{$selector} by {host}")
    with pytest.raises(MetricsError, match="returned 2 series; the query must aggregate to one series") as err:
        provider(stub, api).measure(check, SCOPE)  # the canary has one host, the baseline two
    assert type(err.value) is MetricsError


def test_a_bad_custom_query_is_a_metrics_error_with_datadogs_text(stub, api):
    check = LatencyCheck(name="bad", kind="latency", query="avg:trace.http.request{$selector")
    with pytest.raises(MetricsError) as err:
        provider(stub, api).measure(check, SCOPE)
    assert type(err.value) is MetricsError
    assert "HTTP 400" in str(err.value) and "Error parsing query" in str(err.value)
    assert f"avg:trace.http.request{{{SEL_V2}" in str(err.value)


# -- tags and versions are validated, never injected -------------------------------------------

HOSTILE_VERSIONS = ["v2}", "v2,service:other", "v2 OR version:v1", 'v2"', "v2+build", "*", "!v1", "v2{x}", "", "a" * 201]


@pytest.mark.parametrize("version", HOSTILE_VERSIONS)
def test_hostile_versions_are_rejected_before_any_request(stub, api, version):
    for scope in (Scope(version, "v1", WINDOW, END), Scope("v2", version, WINDOW, END)):
        with pytest.raises(MetricsError) as err:
            provider(stub, api).measure(ERRORS, scope)
        assert type(err.value) is MetricsError
        assert f"version {version!r}" in str(err.value)
    assert stub.requests == []


def test_versions_like_release_numbers_are_fine_and_lowercased(stub):
    p = provider(stub)
    assert p.selector("2024.11.1") == "version:2024.11.1,env:prod,service:web"
    assert p.selector("V2-RC.1") == "version:v2-rc.1,env:prod,service:web"


@pytest.mark.parametrize("tags, bad", [
    ({"service": 'web"} OR *'}, "'web\"} OR *'"),
    ({"service": "web,env:dev"}, None),  # a comma would add a filter
    ({"service": "web dev"}, "'web dev'"),
    ({"9service": "web"}, "'9service'"),
    ({"ser:vice": "web"}, "'ser:vice'"),
    ({"service": ""}, "''"),
    ({"service": "web!"}, "'web!'"),
])
def test_bad_tags_fail_in_the_settings_model(tags, bad):
    with pytest.raises(ValidationError) as err:
        DatadogSettings.model_validate({"tags": tags})
    assert err.value.errors()[0]["loc"][0] == "tags"
    if bad:
        assert bad in str(err.value)


def test_settings_defaults_normalise_and_forbid_unknown_fields():
    s = DatadogSettings.model_validate({"tags": {"Service": "Web"}})
    assert s.tags == {"service": "web"}
    assert (s.api, s.version_tag, s.latency_unit) == ("v2", "version", "s")
    assert (s.requests_metric, s.errors_metric, s.latency_metric) == ("trace.http.request.hits", "trace.http.request.errors", "trace.http.request")
    assert (s.cpu_metric, s.memory_metric) == ("container.cpu.usage", "container.memory.usage")
    assert (s.period_seconds, s.rate_limit_attempts, s.rate_limit_max_wait_seconds) == (60, 3, 10.0)
    for bad in ({"colour": "blue"}, {"api": "v3"}, {"version_tag": "ver sion"}, {"requests_metric": "hits{*}"}, {"latency_unit": "us"},
                {"period_seconds": 0}, {"rate_limit_attempts": 0}, {"rate_limit_max_wait_seconds": -1}):
        with pytest.raises(ValidationError):
            DatadogSettings.model_validate(bad)


# -- keys ---------------------------------------------------------------------------------------

def test_missing_keys_are_named_before_any_request(stub):
    cases = [
        (endpoint(stub, api_key=None), "has no API key (set the connection's password)"),
        (endpoint(stub, app_key=None), "has no application key (set extra.application_key)"),
        (Endpoint(password=API_KEY, extra={"application_key": APP_KEY}), "has no host"),
    ]
    for ep, message in cases:
        for call in (lambda p: p.measure(ERRORS, SCOPE), lambda p: p.check_online()):
            with pytest.raises(MetricsError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
                call(provider(stub, ep=ep))
            assert type(err.value) is MetricsError
    assert stub.requests == []


def test_keys_never_appear_in_errors_or_reprs(stub, api):
    p = provider(stub, api)
    errors = []
    for status, body in [(400, {"errors": [f"bad request from {API_KEY} / {APP_KEY}"]}), (403, None), (500, None), (429, None)]:
        stub.fail(status, body)
        with pytest.raises(MetricsError) as err:
            p.measure(ERRORS, SCOPE)
        errors.append(err.value)
    stub.fail(None)
    with pytest.raises(MetricsError) as err:
        provider(stub, api, ep=endpoint(stub, app_key="wrong-" + APP_KEY)).measure(ERRORS, SCOPE)
    errors.append(err.value)
    with pytest.raises(MetricsError) as err:
        p.measure(ERRORS, Scope('v2"}', "v1", WINDOW, END))
    errors.append(err.value)
    stub.stop()
    with pytest.raises(BackendUnavailable) as err:
        p.measure(ERRORS, SCOPE)
    errors.append(err.value)
    assert "***" in str(errors[0])  # Datadog's text is quoted, with the keys blanked out
    for e in errors:
        for text in (str(e), repr(e)):
            assert API_KEY not in text and APP_KEY not in text
    for text in (repr(p), repr(p.endpoint), repr(p.settings), str(p.settings.model_dump())):
        assert API_KEY not in text and APP_KEY not in text


# -- errors -------------------------------------------------------------------------------------

@pytest.mark.parametrize("status, error, message", [
    (500, BackendUnavailable, "answered HTTP 500"),
    (503, BackendUnavailable, "answered HTTP 503"),
    (429, BackendUnavailable, r"rate limiting \(HTTP 429\); the limit resets in 7s"),
    (401, MetricsError, r"Datadog refused the API/application key \(HTTP 401\)"),
    (403, MetricsError, r"Datadog refused the API/application key \(HTTP 403\)"),
    (408, BackendUnavailable, "answered HTTP 408"),
    (400, MetricsError, r"datadog rejected 'sum:trace.http.request.hits\{version:v2,env:prod,service:web\}.as_count\(\).rollup\(sum, 60\)' \(HTTP 400\): Query too big"),
    (422, MetricsError, r"datadog rejected 'sum:trace.http.request.hits\{version:v2,env:prod,service:web\}.as_count\(\).rollup\(sum, 60\)' \(HTTP 422\): Query too big"),
])
def test_http_errors(stub, api, status, error, message):
    stub.fail(status, {"errors": ["Query too big"]} if status in (400, 422) else None, {"X-RateLimit-Reset": "7"} if status == 429 else None)
    with pytest.raises(error, match=message) as err:
        provider(stub, api).measure(ERRORS, SCOPE)
    assert type(err.value) is error


def test_rate_limiting_is_retried_waiting_what_datadog_says(stub, api):
    stub.fail(429, headers={"X-RateLimit-Reset": "7"}, times=2)
    p = provider(stub, api)
    m = p.measure(ERRORS, SCOPE)
    assert m.canary.value == pytest.approx(0.03) and m.baseline.value == pytest.approx(0.002)
    assert p.waits == [7.0, 7.0]
    assert stub.queries[:3] == [f"sum:trace.http.request.hits{{{SEL_V2}}}.as_count().rollup(sum, 60)"] * 3


def test_rate_limiting_that_lasts_is_backend_unavailable_after_backoff(stub, api):
    stub.fail(429)  # no X-RateLimit-Reset: exponential backoff
    p = provider(stub, api, rate_limit_attempts=4)
    with pytest.raises(BackendUnavailable, match=r"rate limiting \(HTTP 429\); gave up after 4 attempts") as err:
        p.measure(ERRORS, SCOPE)
    assert type(err.value) is BackendUnavailable
    assert p.waits == [0.5, 1.0, 2.0] and len(stub.requests) == 4
    stub.fail(429, headers={"X-RateLimit-Reset": "3600"})  # a long reset waits at most the cap
    p = provider(stub, api, rate_limit_max_wait_seconds=5)
    with pytest.raises(BackendUnavailable, match="the limit resets in 3600s; gave up after 3 attempts"):
        p.measure(ERRORS, SCOPE)
    assert p.waits == [5.0, 5.0]


def test_other_errors_are_not_retried(stub, api):
    for status in (400, 422, 403, 500):
        stub.fail(status)
        p, before = provider(stub, api), len(stub.requests)
        with pytest.raises(MetricsError):
            p.measure(ERRORS, SCOPE)
        assert p.waits == [] and len(stub.requests) == before + 1


def test_a_wrong_application_key_is_refused(stub, api):
    with pytest.raises(MetricsError, match=r"refused the API/application key \(HTTP 403\)") as err:
        provider(stub, api, ep=endpoint(stub, app_key="not-the-key")).measure(ERRORS, SCOPE)
    assert type(err.value) is MetricsError


def test_an_error_status_in_a_200_answer_is_a_metrics_error(stub):
    stub.fail(200, {"status": "error", "error": "Rule 'scope_expr' didn't match", "series": []})
    with pytest.raises(MetricsError, match="scope_expr") as err:
        provider(stub, "v1").measure(ERRORS, SCOPE)
    assert type(err.value) is MetricsError
    stub.fail(200, {"errors": "query timed out"})
    with pytest.raises(MetricsError, match="query timed out") as err:
        provider(stub, "v2").measure(ERRORS, SCOPE)
    assert type(err.value) is MetricsError


def test_backend_down_is_unavailable(stub, api):
    stub.stop()
    with pytest.raises(BackendUnavailable, match="unreachable: ConnectionError") as err:
        provider(stub, api).measure(ERRORS, SCOPE)
    assert type(err.value) is BackendUnavailable


def test_a_host_without_scheme_is_reached_over_https(stub):
    ep = Endpoint(host="127.0.0.1", port=stub.port, password=API_KEY, extra={"application_key": APP_KEY})
    with pytest.raises(BackendUnavailable, match=r"datadog at https://127\.0\.0\.1:\d+ unreachable"):
        provider(stub, ep=ep, timeout_seconds=2).check_online()


# -- check_online ---------------------------------------------------------------------------------

def test_check_online_validates_the_api_key(stub, api):
    provider(stub, api).check_online()
    [request] = stub.requests
    assert (request.method, request.path) == ("GET", "/api/v1/validate")
    assert request.headers["DD-API-KEY"] == API_KEY
    assert "DD-APPLICATION-KEY" not in request.headers


def test_check_online_with_a_bad_api_key(stub):
    with pytest.raises(MetricsError, match=r"refused the API/application key \(HTTP 403\)") as err:
        provider(stub, ep=endpoint(stub, api_key="not-the-key")).check_online()
    assert type(err.value) is MetricsError


def test_check_online_when_down_is_unavailable():
    ep = Endpoint(host="http://127.0.0.1", port=free_port(), password=API_KEY, extra={"application_key": APP_KEY})
    with pytest.raises(BackendUnavailable):
        provider_class("datadog")({}, ep).check_online()


# -- specs ------------------------------------------------------------------------------------------

MINIMAL = {
    "name": "checkout",
    "router": {"type": "haproxy", "conn_id": "h", "settings": {"backend": "app"}},
    "metrics": {"type": "datadog", "conn_id": "datadog_default",
                "settings": {"api": "v1", "tags": {"service": "checkout", "env": "prod"}, "latency_unit": "ms"}},
    "promote": {"type": "command", "command": ["deploy-stable", "{version}"]},  # haproxy cannot promote by itself
}


def test_a_datadog_spec_validates():
    spec = parse_spec(MINIMAL, "checkout.yaml")
    assert spec.metrics.type == "datadog"


@pytest.mark.parametrize("settings, expected", [
    ({"tags": {"service": "checkout}"}}, "checkout.yaml: metrics.settings.tags: tag value 'checkout}'"),
    ({"tags": {"bad name": "x"}}, "checkout.yaml: metrics.settings.tags: tag name 'bad name'"),
    ({"api": "v3"}, "checkout.yaml: metrics.settings.api=v3: Input should be 'v1' or 'v2'"),
    ({"colour": "blue"}, "checkout.yaml: metrics.settings.colour: unknown field"),
])
def test_a_bad_datadog_setting_names_the_field(settings, expected):
    data = {**MINIMAL, "metrics": {**MINIMAL["metrics"], "settings": settings}}
    with pytest.raises(SpecError) as err:
        parse_spec(data, "checkout.yaml")
    assert expected in str(err.value)


def test_a_datadog_spec_needs_a_connection():
    data = {**MINIMAL, "metrics": {"type": "datadog"}}
    with pytest.raises(SpecError, match="metrics.conn_id: required by datadog"):
        parse_spec(data, "checkout.yaml")


def test_the_example_spec_builds_its_queries():
    spec = load_spec(ROOT / "include" / "releases" / "checkout-datadog.yaml")
    p = provider_class(spec.metrics.type)(spec.metrics.settings, None)
    sel = "version:2024.11.1,env:prod,service:checkout"
    errors, p99, conversion = spec.checks
    assert p.queries(errors, "2024.11.1", 300) == {
        "requests": f"sum:trace.http.request.hits{{{sel}}}.as_count().rollup(sum, 60)",
        "events": f"sum:trace.http.request.errors{{{sel}}}.as_count().rollup(sum, 60)",
    }
    assert p.queries(p99, "2024.11.1", 300)["value"] == f"p99:trace.http.request{{{sel}}}.rollup(60)"
    assert p.queries(conversion, "2024.11.1", 300)["value"] == (
        f"sum:checkout.completed{{{sel}}}.as_count() / sum:trace.http.request.hits{{{sel}}}.as_count()")
