"""The CloudWatch provider: counts and averages against moto's server over real HTTP (through the
Airflow connection ``aws_test``); percentiles, errors and pagination with botocore's Stubber, which
checks every request and response against CloudWatch's real service model; botocore's own retries
of throttling through a ``before-send`` hook that answers as a throttling CloudWatch would, in
front of moto.

moto cannot serve percentiles (a ``p99`` stat crashes its server with HTTP 500) and ignores the
namespace once dimensions are given, so each moto test uses target groups, versions and services
of its own.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

import pytest
from botocore.stub import Stubber

from canary_operators.exceptions import BackendUnavailable, MetricsError, SpecError
from canary_operators.metrics import PROVIDERS, Scope, provider_class
from canary_operators.metrics.cloudwatch import CloudWatchProvider, CloudWatchSettings
from canary_operators.spec import BusinessCheck, ErrorRateCheck, LatencyCheck, ResourceCheck, parse_spec
from tests.conftest import free_port, set_connection

# The gate's end: a whole minute ten minutes ago, so every point below is "within the last hour".
END = int(time.time()) // 60 * 60 - 600
MIN = 60
LB = "app/web-alb/50dc6c495c0c9188"

ERRORS = ErrorRateCheck(name="errors", kind="error_rate")
P99 = LatencyCheck(name="p99", kind="latency", quantile=0.99)
P95 = LatencyCheck(name="p95", kind="latency", quantile=0.95)
CHECKOUTS = BusinessCheck(name="checkouts", kind="business", metric="CheckoutCompleted", min_ratio=0.9)
CPU = ResourceCheck(name="cpu", kind="resource", resource="cpu")
MEMORY = ResourceCheck(name="memory", kind="resource", resource="memory")


def scope(window: float = 5 * MIN, end: float = END, canary: str = "v2", baseline: str = "v1") -> Scope:
    return Scope(canary_version=canary, baseline_version=baseline, window_seconds=window, end=end)


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def target_groups() -> tuple[str, str]:
    """A fresh (stable, canary) pair of target group dimension values."""
    return (f"targetgroup/web-stable/{uuid.uuid4().hex[:16]}", f"targetgroup/web-canary/{uuid.uuid4().hex[:16]}")


def alb_provider(conn_id: str, stable: str, canary: str, **settings) -> CloudWatchProvider:
    base = {"source": "alb", "load_balancer": LB, "stable_target_group": stable, "canary_target_group": canary,
            "lag_seconds": 0}
    return CloudWatchProvider({**base, **settings}, None, conn_id=conn_id)


def put(provider: CloudWatchProvider, namespace: str, metric: str, dims: dict, points: dict[float, float]) -> None:
    """Publish ``{timestamp: value}`` through the provider's own client (moto keeps them)."""
    provider.client.put_metric_data(Namespace=namespace, MetricData=[
        {"MetricName": metric, "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
         "Timestamp": utc(ts), "Value": value}
        for ts, value in points.items()
    ])


def per_minute(values: list[float], last: float = END - MIN) -> dict[float, float]:
    """``values`` at 5 s past each minute, the last one in the minute that starts at ``last``."""
    first = last - (len(values) - 1) * MIN
    return {first + i * MIN + 5: v for i, v in enumerate(values)}


def alb_dims(tg: str) -> dict:
    return {"LoadBalancer": LB, "TargetGroup": tg}


# -- against moto's server, real HTTP through the Airflow connection -------------------------------------


def test_alb_error_rate_counts_each_target_group_exactly(aws_connection):
    stable, canary = target_groups()
    provider = alb_provider(aws_connection, stable, canary)
    put(provider, "AWS/ApplicationELB", "RequestCount", alb_dims(canary), per_minute([100, 100, 100, 100, 100]))
    put(provider, "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", alb_dims(canary), per_minute([2, 0, 3], END - 3 * MIN))
    put(provider, "AWS/ApplicationELB", "RequestCount", alb_dims(stable), per_minute([400, 400, 400, 400, 400]))
    put(provider, "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", alb_dims(stable), per_minute([1, 1, 1, 1, 0]))

    m = provider.measure(ERRORS, scope())

    assert (m.canary.requests, m.canary.events, m.canary.value) == (500, 5, 0.01)
    assert (m.baseline.requests, m.baseline.events, m.baseline.value) == (2000, 4, 0.002)
    assert m.check == "errors" and m.window_seconds == 300
    assert canary in m.canary.query and "HTTPCode_Target_5XX_Count Sum" in m.canary.query
    assert stable in m.baseline.query and "RequestCount Sum" in m.baseline.query


def test_the_window_leaves_out_points_before_it_and_from_its_end_on(aws_connection):
    stable, canary = target_groups()
    provider = alb_provider(aws_connection, stable, canary)
    for tg in (stable, canary):
        put(provider, "AWS/ApplicationELB", "RequestCount", alb_dims(tg),
            {END - 6 * MIN + 30: 7000, **per_minute([10, 10, 10, 10, 10]), END: 9000, END + 30: 9000})
        put(provider, "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", alb_dims(tg),
            {END - 5 * MIN - 1: 500, END - 2 * MIN + 59: 1, END + 1: 500})

    m = provider.measure(ERRORS, scope())

    for arm in (m.canary, m.baseline):
        assert (arm.requests, arm.events, arm.value) == (50, 1, 0.02)


def test_lag_moves_the_window_back(aws_connection):
    stable, canary = target_groups()
    provider = alb_provider(aws_connection, stable, canary, lag_seconds=120)
    for tg in (stable, canary):
        # The lagged window is [END - 7 min, END - 2 min); the last two minutes are not published yet.
        put(provider, "AWS/ApplicationELB", "RequestCount", alb_dims(tg),
            {**per_minute([20, 20, 20, 20, 20], END - 3 * MIN), **per_minute([1000, 1000])})

    m = provider.measure(ERRORS, scope())

    assert (m.canary.requests, m.canary.events, m.canary.value) == (100, 0, 0)
    assert "over [" in m.canary.query


def test_an_absent_5xx_series_is_zero_errors_not_no_data(aws_connection):
    stable, canary = target_groups()
    provider = alb_provider(aws_connection, stable, canary)
    for tg in (stable, canary):
        put(provider, "AWS/ApplicationELB", "RequestCount", alb_dims(tg), per_minute([300, 300]))

    m = provider.measure(ERRORS, scope())

    assert (m.canary.requests, m.canary.events, m.canary.value) == (600, 0.0, 0.0)
    assert (m.baseline.requests, m.baseline.events, m.baseline.value) == (600, 0.0, 0.0)


def test_a_target_group_without_metrics_is_no_data(aws_connection):
    stable, canary = target_groups()
    provider = alb_provider(aws_connection, stable, canary)
    put(provider, "AWS/ApplicationELB", "RequestCount", alb_dims(stable), per_minute([300, 300, 300]))

    m = provider.measure(ERRORS, scope())

    assert (m.canary.value, m.canary.requests, m.canary.events) == (None, None, None)
    assert (m.baseline.requests, m.baseline.value) == (900, 0.0)


def test_a_newest_period_not_published_yet_is_no_data(aws_connection):
    stable, canary = target_groups()
    provider = alb_provider(aws_connection, stable, canary)
    put(provider, "AWS/ApplicationELB", "RequestCount", alb_dims(stable), per_minute([300, 300, 300, 300, 300]))
    # The canary's last minute is missing: the window is incomplete, whatever the earlier minutes say.
    put(provider, "AWS/ApplicationELB", "RequestCount", alb_dims(canary), per_minute([300, 300, 300, 300], END - 2 * MIN))

    m = provider.measure(ERRORS, scope())

    assert (m.canary.value, m.canary.requests) == (None, None)
    assert (m.baseline.value, m.baseline.requests) == (0.0, 1500)


def test_lambda_arms_are_the_versions_behind_the_alias(aws_connection):
    fn = f"checkout-{uuid.uuid4().hex[:8]}"
    provider = CloudWatchProvider({"source": "lambda", "function_name": fn, "alias": "live", "lag_seconds": 0},
                                  None, conn_id=aws_connection)

    def dims(version, resource=f"{fn}:live"):
        return {"FunctionName": fn, "Resource": resource, "ExecutedVersion": version}

    put(provider, "AWS/Lambda", "Invocations", dims("7"), per_minute([50, 50, 50]))
    put(provider, "AWS/Lambda", "Errors", dims("7"), per_minute([0, 3, 2]))
    put(provider, "AWS/Lambda", "Invocations", dims("6"), per_minute([950, 950, 950]))
    put(provider, "AWS/Lambda", "Errors", dims("6"), per_minute([1, 0, 2]))
    # Another alias's invocations of version 7 are not this alias's traffic.
    put(provider, "AWS/Lambda", "Invocations", dims("7", f"{fn}:beta"), per_minute([5000, 5000, 5000]))

    m = provider.measure(ERRORS, scope(canary="7", baseline="6"))

    assert (m.canary.requests, m.canary.events, m.canary.value) == (150, 5, 5 / 150)
    assert (m.baseline.requests, m.baseline.events, m.baseline.value) == (2850, 3, 3 / 2850)
    assert f"Resource={fn}:live,ExecutedVersion=7" in m.canary.query


def test_business_check_counts_the_metric_per_request(aws_connection):
    stable, canary = target_groups()
    provider = alb_provider(aws_connection, stable, canary, business_namespace="Shop")
    put(provider, "AWS/ApplicationELB", "RequestCount", alb_dims(canary), per_minute([100, 100]))
    put(provider, "AWS/ApplicationELB", "RequestCount", alb_dims(stable), per_minute([1000, 1000]))
    put(provider, "Shop", "CheckoutCompleted", alb_dims(canary), per_minute([4, 6]))
    put(provider, "Shop", "CheckoutCompleted", alb_dims(stable), per_minute([120, 80]))

    m = provider.measure(CHECKOUTS, scope())

    assert (m.canary.requests, m.canary.events, m.canary.value) == (200, 10, 0.05)
    assert (m.baseline.requests, m.baseline.events, m.baseline.value) == (2000, 200, 0.1)
    assert m.canary.query.startswith("Shop CheckoutCompleted Sum{")


def test_a_business_metric_without_datapoints_is_no_data(aws_connection):
    stable, canary = target_groups()
    provider = alb_provider(aws_connection, stable, canary)
    for tg in (stable, canary):
        put(provider, "AWS/ApplicationELB", "RequestCount", alb_dims(tg), per_minute([100, 100]))

    m = provider.measure(CHECKOUTS, scope())

    assert (m.canary.requests, m.canary.events, m.canary.value) == (200, None, None)


def test_resource_checks_average_each_arms_ecs_service(aws_connection):
    stable, canary = target_groups()
    tag = uuid.uuid4().hex[:8]
    provider = alb_provider(aws_connection, stable, canary, cluster=f"prod-{tag}",
                            stable_service=f"web-stable-{tag}", canary_service=f"web-canary-{tag}")
    for tg in (stable, canary):
        put(provider, "AWS/ApplicationELB", "RequestCount", alb_dims(tg), per_minute([100, 100, 100]))
    ecs = {arm: {"ClusterName": f"prod-{tag}", "ServiceName": f"web-{arm}-{tag}"} for arm in ("stable", "canary")}
    put(provider, "AWS/ECS", "CPUUtilization", ecs["canary"], per_minute([30, 40, 50]))
    put(provider, "AWS/ECS", "CPUUtilization", ecs["stable"], per_minute([20, 20, 20]))
    put(provider, "AWS/ECS", "MemoryUtilization", ecs["canary"], per_minute([60, 70]))
    put(provider, "AWS/ECS", "MemoryUtilization", ecs["stable"], per_minute([50, 50]))

    cpu = provider.measure(CPU, scope())
    memory = provider.measure(MEMORY, scope())

    assert (cpu.canary.value, cpu.baseline.value) == (40, 20)
    assert (cpu.canary.requests, cpu.baseline.requests) == (300, 300)
    assert (memory.canary.value, memory.baseline.value) == (65, 50)
    assert f"ServiceName=web-canary-{tag}" in cpu.canary.query
    # one average per minute, on the same grid for both arms; minutes without a datapoint left out
    assert cpu.canary.periods == ((END - 3 * MIN, 30), (END - 2 * MIN, 40), (END - MIN, 50))
    assert cpu.baseline.periods == ((END - 3 * MIN, 20), (END - 2 * MIN, 20), (END - MIN, 20))
    assert memory.canary.periods == ((END - 2 * MIN, 60), (END - MIN, 70))
    assert cpu.canary.events is None


def test_business_amount_periods_are_amount_per_request(aws_connection):
    stable, canary = target_groups()
    provider = alb_provider(aws_connection, stable, canary, business_namespace="Shop")
    revenue = BusinessCheck(name="revenue", kind="business", metric="RevenueCents", min_ratio=0.9, unit="amount")
    put(provider, "AWS/ApplicationELB", "RequestCount", alb_dims(canary), per_minute([100, 100, 100]))
    put(provider, "Shop", "RevenueCents", alb_dims(canary), per_minute([500, 1000, 1500]))
    # The baseline's first minute has no requests datapoint (left out), its third no amount (0).
    put(provider, "AWS/ApplicationELB", "RequestCount", alb_dims(stable), per_minute([1000, 1000], END - MIN))
    put(provider, "Shop", "RevenueCents", alb_dims(stable), per_minute([9000, 4000], END - 2 * MIN))

    m = provider.measure(revenue, scope())

    assert m.canary.periods == ((END - 3 * MIN, 5.0), (END - 2 * MIN, 10.0), (END - MIN, 15.0))
    assert (m.canary.events, m.canary.requests, m.canary.value) == (3000, 300, 10.0)
    assert m.baseline.periods == ((END - 2 * MIN, 4.0), (END - MIN, 0.0))
    assert (m.baseline.events, m.baseline.requests, m.baseline.value) == (13000, 2000, 6.5)
    counted = provider.measure(CHECKOUTS, scope())  # a count: judged on events / requests, no periods
    assert counted.canary.periods is None


def test_custom_source_picks_arms_by_the_version_dimension(aws_connection):
    service = f"web-{uuid.uuid4().hex[:8]}"
    provider = CloudWatchProvider({
        "source": "custom", "namespace": "Acme/Web", "requests_metric": "Requests", "errors_metric": "Errors5xx",
        "version_dimension": "Version", "dimensions": {"Service": service, "Env": "prod"}, "lag_seconds": 0,
    }, None, conn_id=aws_connection)
    for version, requests, errors in (("v2", [250, 250], [5, 5]), ("v1", [500, 500], [1, 0])):
        dims = {"Env": "prod", "Service": service, "Version": version}
        put(provider, "Acme/Web", "Requests", dims, per_minute(requests))
        put(provider, "Acme/Web", "Errors5xx", dims, per_minute(errors))

    m = provider.measure(ERRORS, scope())

    assert (m.canary.requests, m.canary.events, m.canary.value) == (500, 10, 0.02)
    assert (m.baseline.requests, m.baseline.events, m.baseline.value) == (1000, 1, 0.001)


def _cbor_text(text: str) -> bytes:
    data = text.encode()
    return (bytes([0x60 + len(data)]) if len(data) < 24 else bytes([0x78, len(data)])) + data


class _Body:
    def __init__(self, data: bytes):
        self.data = data

    def stream(self, **kwargs):
        yield self.data


def throttle(provider: CloudWatchProvider, times: int) -> list:
    """Answer the next ``times`` GetMetricData requests the way a throttling CloudWatch does (HTTP 400,
    ``{"__type": "Throttling", "message": ...}`` in the protocol botocore chose: JSON or CBOR),
    before they reach moto; then let them through. Returns the requests sent, retries included."""
    import json

    from botocore.awsrequest import AWSResponse

    cbor = b"\xa2" + _cbor_text("__type") + _cbor_text("Throttling") + _cbor_text("message") + _cbor_text("Rate exceeded")
    sent = []

    def before_send(request, **kwargs):
        sent.append(request)
        if len(sent) > times:
            return None
        headers = {"x-amzn-query-error": "Throttling;Sender"}
        content_type = request.headers.get("Content-Type") or b""
        if b"cbor" in (content_type if isinstance(content_type, bytes) else content_type.encode()):
            headers.update({"smithy-protocol": "rpc-v2-cbor", "Content-Type": "application/cbor"})
            return AWSResponse(request.url, 400, headers, _Body(cbor))
        headers["Content-Type"] = "application/x-amz-json-1.0"
        body = json.dumps({"__type": "Throttling", "message": "Rate exceeded"}).encode()
        return AWSResponse(request.url, 400, headers, _Body(body))

    provider.client.meta.events.register("before-send.cloudwatch.GetMetricData", before_send)
    return sent


@pytest.fixture
def backoffs(monkeypatch):
    """botocore's retry delays, recorded and not slept."""
    from botocore.retries import standard

    delays = []
    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount",
                        lambda self, context: delays.append(context.attempt_number) or 0)
    return delays


def test_throttling_is_retried_with_backoff(aws_connection, backoffs):
    stable, canary = target_groups()
    provider = alb_provider(aws_connection, stable, canary)
    for tg in (stable, canary):
        put(provider, "AWS/ApplicationELB", "RequestCount", alb_dims(tg), per_minute([100, 100]))
    sent = throttle(provider, 2)

    m = provider.measure(ERRORS, scope())

    assert (m.canary.requests, m.baseline.requests) == (200, 200)
    assert len(sent) == 4 and backoffs == [1, 2]  # the canary's call tried three times, the baseline's once


def test_throttling_that_lasts_is_backend_unavailable(aws_connection, backoffs):
    stable, canary = target_groups()
    provider = alb_provider(aws_connection, stable, canary)
    sent = throttle(provider, 99)

    with pytest.raises(BackendUnavailable, match=r"cloudwatch is throttling GetMetricData \(Throttling\)") as raised:
        provider.measure(ERRORS, scope())
    assert type(raised.value) is BackendUnavailable
    assert len(sent) == 3 and backoffs == [1, 2]  # standard mode: 3 attempts, backing off between them


def test_check_online_against_moto(aws_connection):
    stable, canary = target_groups()
    alb_provider(aws_connection, stable, canary).check_online()


def test_an_unreachable_endpoint_is_backend_unavailable(monkeypatch, aws_connection):
    set_connection(monkeypatch, "aws_down", conn_type="aws", login="testing", password="testing",
                   extra={"region_name": "eu-west-1", "endpoint_url": f"http://127.0.0.1:{free_port()}",
                          "config_kwargs": {"retries": {"max_attempts": 1}}})
    stable, canary = target_groups()
    provider = alb_provider("aws_down", stable, canary)
    with pytest.raises(BackendUnavailable, match="unreachable"):
        provider.check_online()
    with pytest.raises(BackendUnavailable, match="unreachable"):
        provider.measure(ERRORS, scope())


# -- window edge cases that make no call -----------------------------------------------------------------


@pytest.fixture
def stubbed(aws_connection):
    """A provider factory whose client is wrapped in a Stubber (no response queued unless added)."""
    made = []

    def make(settings: dict) -> tuple[CloudWatchProvider, Stubber]:
        provider = CloudWatchProvider(settings, None, conn_id=aws_connection)
        stubber = Stubber(provider.client)
        stubber.activate()
        made.append(stubber)
        return provider, stubber

    yield make
    for stubber in made:
        stubber.assert_no_pending_responses()
        stubber.deactivate()


ALB = {"source": "alb", "load_balancer": LB, "stable_target_group": "targetgroup/web-stable/6d0ecf831eec9f09",
       "canary_target_group": "targetgroup/web-canary/7d0ecf831eec9f09", "lag_seconds": 0}


@pytest.mark.parametrize("window, end", [(59, END), (90, END + 45), (100, END + 50)])
def test_a_window_without_a_whole_period_is_no_data_and_asks_nothing(stubbed, window, end):
    provider, _ = stubbed(ALB)  # nothing queued: any call would fail the test

    m = provider.measure(ERRORS, scope(window=window, end=end))

    assert (m.canary.value, m.canary.requests, m.baseline.value, m.baseline.requests) == (None, None, None, None)
    assert "shorter than one period" in m.canary.query


def test_the_window_is_whole_periods_inside_the_lagged_window():
    provider = CloudWatchProvider({**ALB, "lag_seconds": 120, "period": 300}, None, conn_id="unused")
    end = 1_700_000_130  # 1_700_000_100 is a multiple of 300
    assert provider.window(scope(window=900, end=end)) == (1_699_999_200, 1_699_999_800)
    # 500 s is longer than one period, but no whole aligned 5 minutes fit in it.
    assert provider.window(scope(window=500, end=end)) is None


# -- percentiles, errors and pagination through botocore's Stubber ----------------------------------------


def query(id, namespace, metric, dims, stat, period):
    return {"Id": id, "ReturnData": True, "MetricStat": {
        "Metric": {"Namespace": namespace, "MetricName": metric, "Dimensions": [{"Name": k, "Value": v} for k, v in dims]},
        "Period": period, "Stat": stat}}


def result(id, points: dict[float, float]):
    return {"Id": id, "Label": id, "StatusCode": "Complete",
            "Timestamps": [utc(ts) for ts in points], "Values": list(points.values())}


FIVE_MINUTES = {END - 5 * MIN + i * MIN: 100.0 for i in range(5)}  # one requests datapoint per minute


def test_alb_p99_asks_one_window_long_datapoint_and_one_per_period(stubbed):
    provider, stubber = stubbed(ALB)
    minutes = sorted(FIVE_MINUTES)
    per_period = {  # the canary's third minute has no datapoint
        ALB["canary_target_group"]: {minutes[0]: 0.4, minutes[1]: 0.5, minutes[3]: 0.45, minutes[4]: 0.35},
        ALB["stable_target_group"]: {t: 0.3 for t in minutes},
    }
    for tg, p99 in ((ALB["canary_target_group"], 0.42), (ALB["stable_target_group"], 0.3)):
        dims = [("LoadBalancer", LB), ("TargetGroup", tg)]
        stubber.add_response("get_metric_data", {"MetricDataResults": [
            result("requests", FIVE_MINUTES), result("latency", {END - 5 * MIN: p99}),
            result("latency_periods", per_period[tg])]}, {
            "MetricDataQueries": [query("requests", "AWS/ApplicationELB", "RequestCount", dims, "Sum", 60),
                                  query("latency", "AWS/ApplicationELB", "TargetResponseTime", dims, "p99", 300),
                                  query("latency_periods", "AWS/ApplicationELB", "TargetResponseTime", dims, "p99", 60)],
            "StartTime": utc(END - 5 * MIN), "EndTime": utc(END), "ScanBy": "TimestampAscending"})

    m = provider.measure(P99, scope())

    assert (m.canary.value, m.canary.requests) == (0.42, 500)
    assert (m.baseline.value, m.baseline.requests) == (0.3, 500)
    assert "TargetResponseTime p99{" in m.canary.query
    assert m.canary.periods == ((minutes[0], 0.4), (minutes[1], 0.5), (minutes[3], 0.45), (minutes[4], 0.35))
    assert m.baseline.periods == tuple((t, 0.3) for t in minutes)  # the same grid: pairs by start time


def test_lambda_duration_p95_is_converted_from_ms_to_seconds(stubbed):
    provider, stubber = stubbed({"source": "lambda", "function_name": "checkout", "alias": "live", "lag_seconds": 0})
    for version, ms in (("7", 250.0), ("6", 180.0)):
        dims = [("FunctionName", "checkout"), ("Resource", "checkout:live"), ("ExecutedVersion", version)]
        stubber.add_response("get_metric_data", {"MetricDataResults": [
            result("requests", FIVE_MINUTES), result("latency", {END - 5 * MIN: ms}),
            result("latency_periods", {END - 2 * MIN: ms - 10, END - MIN: ms + 10})]}, {
            "MetricDataQueries": [query("requests", "AWS/Lambda", "Invocations", dims, "Sum", 60),
                                  query("latency", "AWS/Lambda", "Duration", dims, "p95", 300),
                                  query("latency_periods", "AWS/Lambda", "Duration", dims, "p95", 60)],
            "StartTime": utc(END - 5 * MIN), "EndTime": utc(END), "ScanBy": "TimestampAscending"})

    m = provider.measure(P95, scope(canary="7", baseline="6"))

    assert (m.canary.value, m.baseline.value) == (0.25, 0.18)
    assert m.canary.periods == ((END - 2 * MIN, 0.24), (END - MIN, 0.26))  # ms → s, like the value
    assert m.baseline.periods == ((END - 2 * MIN, 0.17), (END - MIN, 0.19))


def test_custom_latency_in_ms_and_a_latency_without_datapoints(stubbed):
    provider, stubber = stubbed({"source": "custom", "namespace": "Acme/Web", "requests_metric": "Requests",
                                 "latency_metric": "LatencyMs", "latency_unit": "ms", "version_dimension": "Version",
                                 "lag_seconds": 0})
    stubber.add_response("get_metric_data", {"MetricDataResults": [
        result("requests", FIVE_MINUTES), result("latency", {END - 5 * MIN: 1200.0})]})
    stubber.add_response("get_metric_data", {"MetricDataResults": [result("requests", FIVE_MINUTES), result("latency", {})]})

    m = provider.measure(P99, scope())

    assert (m.canary.value, m.baseline.value, m.baseline.requests) == (1.2, None, 500)
    assert (m.canary.periods, m.baseline.periods) == (None, None)  # no latency_periods datapoints


def test_pages_are_merged_by_next_token(stubbed):
    provider, stubber = stubbed(ALB)
    minutes = sorted(FIVE_MINUTES)
    expected = {"MetricDataQueries": [
        query("requests", "AWS/ApplicationELB", "RequestCount",
              [("LoadBalancer", LB), ("TargetGroup", ALB["canary_target_group"])], "Sum", 60),
        query("events", "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count",
              [("LoadBalancer", LB), ("TargetGroup", ALB["canary_target_group"])], "Sum", 60)],
        "StartTime": utc(END - 5 * MIN), "EndTime": utc(END), "ScanBy": "TimestampAscending"}
    stubber.add_response("get_metric_data", {"NextToken": "page-2", "MetricDataResults": [
        {**result("requests", {t: 100.0 for t in minutes[:3]}), "StatusCode": "PartialData"},
        {**result("events", {minutes[1]: 2.0}), "StatusCode": "PartialData"}]}, expected)
    stubber.add_response("get_metric_data", {"MetricDataResults": [
        result("requests", {t: 300.0 for t in minutes[3:]}), result("events", {minutes[4]: 4.0})]},
        {**expected, "NextToken": "page-2"})
    stubber.add_response("get_metric_data", {"MetricDataResults": [
        result("requests", FIVE_MINUTES), result("events", {})]})

    m = provider.measure(ERRORS, scope())

    assert (m.canary.requests, m.canary.events, m.canary.value) == (900, 6, 6 / 900)
    assert (m.baseline.requests, m.baseline.events) == (500, 0)


@pytest.mark.parametrize("code, status", [("Throttling", 400), ("ThrottlingException", 400),
                                          ("InternalServiceError", 500), ("ServiceUnavailable", 503)])
def test_throttling_and_5xx_are_backend_unavailable(stubbed, code, status):
    provider, stubber = stubbed(ALB)
    stubber.add_client_error("get_metric_data", code, "Rate exceeded", http_status_code=status)

    with pytest.raises(BackendUnavailable) as raised:
        provider.measure(ERRORS, scope())
    assert code in str(raised.value)


def test_access_denied_is_a_metrics_error_naming_the_permission(stubbed):
    provider, stubber = stubbed(ALB)
    stubber.add_client_error("get_metric_data", "AccessDenied", "User: arn:aws:iam::123456789012:user/gate is not "
                             "authorized to perform: cloudwatch:GetMetricData", http_status_code=403)

    with pytest.raises(MetricsError) as raised:
        provider.measure(ERRORS, scope())
    assert type(raised.value) is MetricsError
    assert "needs the IAM permission cloudwatch:GetMetricData" in str(raised.value)
    assert "'aws_test'" in str(raised.value)


def test_check_online_access_denied_is_a_metrics_error(stubbed):
    provider, stubber = stubbed(ALB)
    stubber.add_client_error("get_metric_data", "AccessDeniedException", "not authorized", http_status_code=400)

    with pytest.raises(MetricsError, match="cloudwatch:GetMetricData") as raised:
        provider.check_online()
    assert type(raised.value) is MetricsError


def test_an_invalid_parameter_is_a_metrics_error_with_cloudwatchs_message(stubbed):
    provider, stubber = stubbed(ALB)
    stubber.add_client_error("get_metric_data", "InvalidParameterValue", "The value p99.9.9 for parameter Stat is not valid.")

    with pytest.raises(MetricsError, match="InvalidParameterValue.*p99.9.9 for parameter Stat") as raised:
        provider.measure(P99, scope())
    assert type(raised.value) is MetricsError


def test_a_forbidden_result_is_a_metrics_error(stubbed):
    provider, stubber = stubbed(ALB)
    stubber.add_response("get_metric_data", {"MetricDataResults": [
        {"Id": "requests", "StatusCode": "Forbidden", "Messages": [{"Code": "Forbidden", "Value": "no access to account"}]}]})

    with pytest.raises(MetricsError, match="no access to account") as raised:
        provider.measure(ERRORS, scope())
    assert type(raised.value) is MetricsError


def test_a_custom_query_is_rejected_before_any_call(stubbed):
    provider, _ = stubbed(ALB)
    check = ErrorRateCheck(name="errors", kind="error_rate", query="SUM(METRICS())")

    with pytest.raises(MetricsError, match="check errors sets query") as raised:
        provider.measure(check, scope())
    assert type(raised.value) is MetricsError


def test_a_version_that_cannot_be_a_dimension_value_is_rejected(stubbed):
    provider, _ = stubbed({"source": "lambda", "function_name": "checkout", "alias": "live", "lag_seconds": 0})

    with pytest.raises(MetricsError, match="canary version 'v2\\\\n' cannot be a dimension value"):
        provider.measure(ERRORS, scope(canary="v2\n"))


def test_resource_checks_need_the_ecs_settings(stubbed):
    provider, _ = stubbed({**ALB, "cluster": "prod"})

    with pytest.raises(MetricsError, match="missing: stable_service, canary_service"):
        provider.measure(CPU, scope())


def test_custom_checks_need_their_metric_settings(stubbed):
    provider, _ = stubbed({"source": "custom", "namespace": "Acme/Web", "requests_metric": "Requests",
                           "version_dimension": "Version"})

    with pytest.raises(MetricsError, match="needs settings.errors_metric"):
        provider.measure(ERRORS, scope())
    with pytest.raises(MetricsError, match="needs settings.latency_metric"):
        provider.measure(P99, scope())


# -- registry and spec validation ------------------------------------------------------------------------


def test_the_registry_knows_cloudwatch():
    assert provider_class("cloudwatch") is CloudWatchProvider is PROVIDERS["cloudwatch"]
    assert CloudWatchProvider.needs_connection
    with pytest.raises(SpecError, match="valid: cloudwatch, datadog, prometheus"):
        provider_class("cloudwatch-logs")


def spec(settings: dict) -> dict:
    return {"name": "web", "router": {"type": "haproxy", "conn_id": "h", "settings": {"backend": "app"}},
            "metrics": {"type": "cloudwatch", "conn_id": "aws_test", "settings": settings},
            "promote": {"type": "command", "command": ["deploy-stable", "{version}"]}}  # haproxy cannot promote by itself


def test_a_cloudwatch_spec_validates_and_arns_become_dimension_values():
    settings = {**{k: v for k, v in ALB.items() if k != "lag_seconds"}, "canary_target_group": "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web-canary/7d0ecf831eec9f09",
                "load_balancer": "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/web-alb/50dc6c495c0c9188"}
    loaded = parse_spec(spec(settings), "web.yaml")
    assert loaded.metrics.type == "cloudwatch"
    parsed = CloudWatchSettings.model_validate(loaded.metrics.settings)
    assert parsed.canary_target_group == "targetgroup/web-canary/7d0ecf831eec9f09"
    assert parsed.load_balancer == LB
    assert (parsed.period, parsed.lag_seconds, parsed.cpu_namespace) == (60, 120, "AWS/ECS")
    lam = parse_spec(spec({"source": "lambda", "function_name": "arn:aws:lambda:eu-west-1:123456789012:function:checkout",
                           "alias": "live"}), "web.yaml")
    assert CloudWatchSettings.model_validate(lam.metrics.settings).function_name == "checkout"


@pytest.mark.parametrize("settings, message", [
    ({**ALB, "load_balancer": "my-alb"}, "metrics.settings.load_balancer=my-alb: must be the ALB's ARN suffix app/<name>/<id>"),
    ({**ALB, "canary_target_group": None}, "metrics.settings.canary_target_group: required when source is alb"),
    ({**ALB, "function_name": "checkout"}, "metrics.settings.function_name=checkout: only used when source is lambda, not alb"),
    ({"source": "lambda", "function_name": "checkout"}, "metrics.settings.alias: required when source is lambda"),
    ({"source": "lambda", "function_name": "checkout", "alias": "7"}, "metrics.settings.alias=7: must be a Lambda alias name"),
    ({"source": "custom", "namespace": "Acme/Web", "requests_metric": "Requests", "version_dimension": "Version",
      "dimensions": {"Service": "web\tprod"}}, "metrics.settings.dimensions: Service: a dimension value must be printable ASCII"),
    ({"source": "custom", "namespace": ":Acme", "requests_metric": "Requests", "version_dimension": "Version"},
     "metrics.settings.namespace=:Acme: a namespace must be"),
    ({**ALB, "cluster": "x" * 1025}, f"metrics.settings.cluster={'x' * 1025}: a dimension value must be 1 to 1024 characters"),
    ({"source": "custom", "namespace": "Acme/Web", "requests_metric": "Requests", "version_dimension": "Version",
      "dimensions": {"Version": "v1"}}, "metrics.settings.dimensions: Version is the version_dimension; it cannot also be fixed"),
    ({**ALB, "period": 90}, "metrics.settings.period=90: must be a multiple of 60 seconds"),
    ({**ALB, "latency_unit": "ms"}, "metrics.settings.latency_unit=ms: only used when source is custom, not alb"),
    ({**ALB, "window": 60}, "metrics.settings.window: unknown field"),
    ({"load_balancer": LB}, "metrics.settings.source: Field required"),
])
def test_a_bad_setting_fails_naming_its_field(settings, message):
    with pytest.raises(SpecError) as raised:
        parse_spec(spec(settings), "web.yaml")
    assert message in str(raised.value)
