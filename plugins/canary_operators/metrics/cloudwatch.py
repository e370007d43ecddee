"""Amazon CloudWatch through ``GetMetricData``, with built-in metrics per check kind for three sources.

Sources, arms and the metrics of each check kind: ``metrics/cloudwatch_settings.py``.

The window. CloudWatch publishes with a delay, so the window is ``[end - window - lag, end - lag]``
shrunk to whole ``period``s (``lag_seconds``, default 120; ``period``, default 60, a multiple of 60:
standard resolution). A window holding no whole period is no data, and so is an arm whose newest
period has no requests datapoint yet: a partly published window is never judged.

One ``GetMetricData`` call per arm per check holds every query it needs (``NextToken`` pages are
merged). Sums add the datapoints of every period; averages are the mean of the period averages;
percentiles are asked for as one datapoint whose period is the whole window, so CloudWatch
computes the percentile over every sample of the window (a mean of per-minute p99s would not be
a p99).

Periods. For checks judged per period (latency percentiles, resources, business amounts) the
sample's ``periods`` holds one value per ``period``: ``(period start, value)``. Both arms ask for the
same whole-period window, so CloudWatch's datapoints start on the same grid and the judge pairs
them by start time. A percentile gets a second query in the same call (``latency_periods``, the
same stat per ``period``); a period without a datapoint is left out. A business amount is the
period's Sum over its requests; periods without requests are left out, and a period with requests
but no amount datapoint counts 0 (as the window's total does).

``check.query`` is rejected: CloudWatch has no query language to run per arm (metric math works on
metrics named elsewhere in the request, and ``$selector`` has no meaning there), so a custom query
would be a silent trap; measure raises ``MetricsError``. Use ``source: custom`` instead.

Errors, classified by ``clients.aws``: botocore retries throttling (standard mode, 3 attempts in
all, with backoff and jitter); throttling that lasts, 5xx, timeouts and connection errors →
``BackendUnavailable`` (the gate counts it as an outage, measured in time); access denied →
``MetricsError`` naming ``cloudwatch:GetMetricData``, the only IAM action this provider needs; any
other rejection → ``MetricsError`` with CloudWatch's message.

Connection: an Airflow AWS connection (``conn_id``) through ``clients.aws.aws_client``. Connect and
read timeouts default to ``timeout_seconds``; the connection's ``extra.config_kwargs`` override
them and the attempts.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from typing import ClassVar, Literal

from canary_operators.clients.aws import aws_client, classify
from canary_operators.clients.aws_names import dimension_value, metric_name
from canary_operators.exceptions import BackendUnavailable, MetricsError
from canary_operators.measurement import ArmSample, Measurement
from canary_operators.metrics.base import MetricsProvider, Scope
from canary_operators.metrics.cloudwatch_settings import CloudWatchSettings
from canary_operators.spec import BusinessCheck, ErrorRateCheck, LatencyCheck, ResourceCheck

MAX_PAGES = 20
_QUANTILE_STAT = {0.5: "p50", 0.95: "p95", 0.99: "p99"}


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def _iso(ts: float) -> str:
    return _utc(ts).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class _Series:
    """One metric of one arm: what to ask CloudWatch for, and how it reads in a Measurement."""

    id: str  # the MetricDataQuery Id: a lowercase letter first
    namespace: str
    metric: str
    dims: list[tuple[str, str]]
    stat: str  # Sum, Average, p50, p95, p99
    period: int
    unit: Literal["s", "ms"] = "s"  # of a latency series; values are returned in seconds

    def query(self) -> dict:
        metric = {"Namespace": self.namespace, "MetricName": self.metric,
                  "Dimensions": [{"Name": k, "Value": v} for k, v in self.dims]}
        return {"Id": self.id, "MetricStat": {"Metric": metric, "Period": self.period, "Stat": self.stat}, "ReturnData": True}

    def __str__(self) -> str:  # how the series reads in ArmSample.query
        dims = ",".join(f"{k}={v}" for k, v in self.dims)
        return f"{self.namespace} {self.metric} {self.stat}{{{dims}}}"


class CloudWatchProvider(MetricsProvider):
    type_name: ClassVar[str] = "cloudwatch"
    settings_model = CloudWatchSettings

    # -- AWS --------------------------------------------------------------------------------

    @cached_property
    def client(self):
        """The boto3 CloudWatch client of the connection (built once per provider)."""
        try:
            return aws_client(self.conn_id, "cloudwatch", attempts=3, timeout=self.settings.timeout_seconds)
        except Exception as e:
            raise self._translate(e, "creating the client") from None

    def _translate(self, error: Exception, operation: str) -> Exception:
        """An AWS error, classified by ``clients.aws``: throttled, transient or unreachable →
        BackendUnavailable (hold and retry); denied, not found, invalid → MetricsError (retrying
        cannot fix it). Any other exception is returned as it is."""
        failure = classify(error, "cloudwatch:GetMetricData")
        if failure is None:
            return error
        code, status, message = failure.code, failure.status, failure.message
        conn = f"connection {self.conn_id!r}" if self.conn_id else "the default AWS credentials"
        if failure.kind == "throttled":
            return BackendUnavailable(f"cloudwatch is throttling {operation} ({code or status}); retry later")
        if failure.kind in ("transient", "failed") and not code:  # endpoint unreachable, timeouts, closed connections
            return BackendUnavailable(f"cloudwatch unreachable during {operation}: {type(error).__name__}: {message}")
        if failure.kind == "transient":
            return BackendUnavailable(f"cloudwatch failed {operation} ({code or 'HTTP'} {status}): {message}".rstrip(": "))
        if failure.kind == "denied" and not code:
            return MetricsError(f"cloudwatch: {conn} has no usable AWS credentials: {message}")
        if failure.kind == "denied":
            return MetricsError(f"cloudwatch denied {operation} to {conn}: it needs the IAM permission "
                                f"{failure.needs} ({code}: {message})")
        if not code:  # no region, a request botocore refuses to send
            return MetricsError(f"cloudwatch: {operation}: {message}")
        return MetricsError(f"cloudwatch rejected {operation} ({code or status}): {message}")

    def fetch(self, series: list[_Series], start: float, stop: float) -> dict[str, list[tuple[float, float]]]:
        """One ``GetMetricData`` over ``[start, stop)`` → ``{id: [(unix seconds, value), …]}`` by time,
        every ``NextToken`` page merged. Read-only."""
        request = {"MetricDataQueries": [s.query() for s in series], "StartTime": _utc(start), "EndTime": _utc(stop),
                   "ScanBy": "TimestampAscending"}
        points: dict[str, list[tuple[float, float]]] = {s.id: [] for s in series}
        for _ in range(MAX_PAGES):
            try:
                page = self.client.get_metric_data(**request)
            except Exception as e:  # an error that is not AWS's comes back as it is
                raise self._translate(e, "GetMetricData") from None
            for result in page.get("MetricDataResults") or []:
                status = result.get("StatusCode")
                messages = "; ".join(m.get("Value", "") for m in result.get("Messages") or [])
                if status == "Forbidden":
                    raise MetricsError(f"cloudwatch: GetMetricData of {result.get('Id')} forbidden: {messages}; "
                                       "it needs the IAM permission cloudwatch:GetMetricData")
                if status == "InternalError":
                    raise BackendUnavailable(f"cloudwatch: GetMetricData of {result.get('Id')} failed inside CloudWatch: {messages}")
                stamps, values = result.get("Timestamps") or [], result.get("Values") or []
                points.setdefault(result["Id"], []).extend(
                    (ts.timestamp() if isinstance(ts, datetime) else float(ts), float(v)) for ts, v in zip(stamps, values)
                )
            token = page.get("NextToken")
            if not token:
                return {k: sorted(v) for k, v in points.items()}
            request["NextToken"] = token
        raise MetricsError(f"cloudwatch: GetMetricData still paginating after {MAX_PAGES} pages; shorten the window")

    # -- what to ask for --------------------------------------------------------------------

    def window(self, scope: Scope) -> tuple[int, int] | None:
        """``[start, stop)`` in unix seconds: the gate's window moved ``lag_seconds`` back and shrunk
        to whole periods; None when it holds no whole period."""
        p, lag = self.settings.period, self.settings.lag_seconds
        stop = math.floor((scope.end - lag) / p) * p
        start = math.ceil((scope.end - lag - scope.window_seconds) / p) * p
        return (start, stop) if stop - start >= p else None

    def arm_dimensions(self, arm: Literal["canary", "baseline"], version: str) -> list[tuple[str, str]]:
        """The dimensions that pick one arm's series out of the source's namespace."""
        s = self.settings
        if s.source == "alb":
            return [("LoadBalancer", s.load_balancer),
                    ("TargetGroup", s.canary_target_group if arm == "canary" else s.stable_target_group)]
        try:
            dimension_value(version)
        except ValueError as e:
            raise MetricsError(f"cloudwatch: {arm} version {version!r} cannot be a dimension value: {e}") from None
        if s.source == "lambda":
            return [("FunctionName", s.function_name), ("Resource", f"{s.function_name}:{s.alias}"),
                    ("ExecutedVersion", version)]
        return sorted(s.dimensions.items()) + [(s.version_dimension, version)]

    def plan(self, check, arm: Literal["canary", "baseline"], version: str, span: int) -> dict[str, _Series]:
        """The series one arm of ``check`` needs: always ``requests``, then ``events`` (a count or amount
        per request), ``latency`` (one datapoint over ``span``) with ``latency_periods`` (one per
        period), or ``resource``."""
        s = self.settings
        if check.query:
            raise MetricsError(f"cloudwatch: check {check.name} sets query, which CloudWatch cannot run per arm "
                               "(it has no query language, only metric math over named metrics); remove query and "
                               "use the built-in metrics, or source: custom with your own metric names")
        ns, dims, p = s.source_namespace(), self.arm_dimensions(arm, version), s.period
        requests_metric, errors_metric, latency_metric, unit = s.source_metrics()
        out = {"requests": _Series("requests", ns, requests_metric, dims, "Sum", p)}
        if isinstance(check, ErrorRateCheck):
            if not errors_metric:
                raise MetricsError(f"cloudwatch: check {check.name} (error_rate) needs settings.errors_metric")
            out["events"] = _Series("events", ns, errors_metric, dims, "Sum", p)
        elif isinstance(check, LatencyCheck):
            if not latency_metric:
                raise MetricsError(f"cloudwatch: check {check.name} (latency) needs settings.latency_metric")
            stat = _QUANTILE_STAT[check.quantile]
            out["latency"] = _Series("latency", ns, latency_metric, dims, stat, span, unit)
            out["latency_periods"] = _Series("latency_periods", ns, latency_metric, dims, stat, p, unit)
        elif isinstance(check, BusinessCheck):
            try:
                metric = metric_name(check.metric)
            except ValueError as e:
                raise MetricsError(f"cloudwatch: check {check.name}: metric {check.metric!r}: {e}") from None
            out["events"] = _Series("events", s.business_namespace or ns, metric, dims, "Sum", p)
        elif isinstance(check, ResourceCheck):
            missing = [f for f in ("cluster", "stable_service", "canary_service") if not getattr(s, f)]
            if missing:
                raise MetricsError(f"cloudwatch: resource check {check.name} needs settings cluster, stable_service "
                                   f"and canary_service (missing: {', '.join(missing)})")
            service = s.canary_service if arm == "canary" else s.stable_service
            metric = s.cpu_metric if check.resource == "cpu" else s.memory_metric
            out["resource"] = _Series("resource", s.cpu_namespace, metric,
                                      [("ClusterName", s.cluster), ("ServiceName", service)], "Average", p)
        else:  # pragma: no cover
            raise MetricsError(f"cloudwatch: no metrics for check kind {check.kind!r}")
        return out

    # -- the contract -----------------------------------------------------------------------

    def check_online(self) -> None:
        """One small ``GetMetricData`` (the requests metric over the last five periods): proves the
        endpoint answers and the credentials hold cloudwatch:GetMetricData. Read-only."""
        s = self.settings
        if s.source == "alb":
            dims = self.arm_dimensions("baseline", "")
        elif s.source == "lambda":
            dims = [("FunctionName", s.function_name), ("Resource", f"{s.function_name}:{s.alias}")]
        else:
            dims = sorted(s.dimensions.items())
        requests_metric = s.source_metrics()[0]
        stop = math.floor(time.time() / s.period) * s.period
        self.fetch([_Series("online", self.settings.source_namespace(), requests_metric, dims, "Sum", s.period)],
                   stop - 5 * s.period, stop)

    def measure(self, check, scope: Scope) -> Measurement:
        window = self.window(scope)
        span = (window[1] - window[0]) if window else self.settings.period
        # Both arms are planned first, so a bad version or setting fails before any call.
        plans = {"canary": self.plan(check, "canary", scope.canary_version, span),
                 "baseline": self.plan(check, "baseline", scope.baseline_version, span)}
        arms = {}
        for arm, plan in plans.items():
            if window is None:  # shorter than one period: nothing whole to judge yet
                arms[arm] = ArmSample(value=None, requests=None, query=self._shown(check, plan, None))
                continue
            points = self.fetch(list(plan.values()), *window)
            arms[arm] = self._sample(check, plan, points, window)
        return Measurement(check=check.name, canary=arms["canary"], baseline=arms["baseline"],
                           window_seconds=scope.window_seconds)

    def _shown(self, check, plan: dict[str, _Series], window: tuple[int, int] | None) -> str:
        when = f" over [{_iso(window[0])}, {_iso(window[1])})" if window else " (window shorter than one period)"
        if "events" in plan:
            return f"{plan['events']} / {plan['requests']}{when}"
        other = plan.get("latency") or plan.get("resource")
        return f"{other}{when}"

    def _sample(self, check, plan: dict[str, _Series], points: dict, window: tuple[int, int]) -> ArmSample:
        shown = self._shown(check, plan, window)
        requests_points = points.get("requests") or []
        newest = window[1] - self.settings.period
        if not any(abs(ts - newest) < 1 for ts, _ in requests_points):
            # No datapoint yet for the newest period: CloudWatch has not published it (or the arm had
            # no traffic then). Either way the window is incomplete: no data, never a pass.
            return ArmSample(value=None, requests=None, query=shown)
        requests = sum(v for _, v in requests_points)
        if "events" in plan:
            event_points = points.get("events") or []
            if event_points:
                events = sum(v for _, v in event_points)
            else:
                # ALB publishes no 5xx series for a target group without errors: that is 0 errors.
                # A business metric without datapoints stays no data: CloudWatch cannot tell "none
                # happened" from "wrong metric name".
                events = 0.0 if isinstance(check, ErrorRateCheck) else None
            value = events / requests if requests > 0 and events is not None else None
            periods = None
            if isinstance(check, BusinessCheck) and check.unit == "amount" and events is not None:
                amounts = dict(event_points)
                periods = tuple((ts, amounts.get(ts, 0.0) / r) for ts, r in requests_points if r > 0) or None
            return ArmSample(value=value, requests=requests, events=events, query=shown, periods=periods)
        if "latency" in plan:
            values = [v for _, v in points.get("latency") or []]
            if len(values) > 1:
                raise MetricsError(f"cloudwatch: {plan['latency']} returned {len(values)} datapoints for one "
                                   "window-long period; expected one")
            divisor = 1000.0 if plan["latency"].unit == "ms" else 1.0  # values are returned in seconds
            value = values[0] / divisor if values else None
            periods = tuple((ts, v / divisor) for ts, v in points.get("latency_periods") or []) or None
            return ArmSample(value=value, requests=requests, query=shown, periods=periods)
        resource = points.get("resource") or []
        value = sum(v for _, v in resource) / len(resource) if resource else None
        return ArmSample(value=value, requests=requests, query=shown, periods=tuple(resource) or None)
