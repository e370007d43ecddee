"""Amazon CloudWatch through ``GetMetricData``, with built-in metrics per check kind for three sources.

Sources and arms (``settings.source``):

- ``alb``: an Application Load Balancer's target groups in ``AWS/ApplicationELB``, dimensions
  ``LoadBalancer`` + ``TargetGroup``. The arms are the target groups (the ALB slot model): canary =
  ``canary_target_group``, baseline = ``stable_target_group``; the versions are not used.
  ``RequestCount`` (Sum) → requests, ``HTTPCode_Target_5XX_Count`` (Sum) → errors,
  ``TargetResponseTime`` (pNN, seconds) → latency.
- ``lambda``: the versions behind a weighted alias in ``AWS/Lambda``. Lambda publishes per-version
  metrics of alias invocations with the dimensions ``FunctionName``, ``Resource`` =
  ``function:alias`` and ``ExecutedVersion``; canary = the run's version, baseline = the stable one.
  ``Invocations`` (Sum) → requests, ``Errors`` (Sum) → errors, ``Duration`` (pNN, ms → s) → latency.
- ``custom``: any namespace; the arm is the value of ``version_dimension``, next to the fixed
  ``dimensions``. ``requests_metric``, ``errors_metric`` (Sum) and ``latency_metric`` (pNN, in
  ``latency_unit``).

Business checks count ``check.metric`` (Sum) in ``business_namespace`` (default: the source's
namespace) with the arm's dimensions; value = events / requests (with ``unit: amount``, the metric
sums amounts, and ``periods`` holds amount / requests per period). Resource checks average
``cpu_metric`` / ``memory_metric`` in ``cpu_namespace`` (default ``AWS/ECS``: ``CPUUtilization``,
``MemoryUtilization``, in percent) with ``ClusterName`` = ``cluster`` and ``ServiceName`` =
``canary_service`` / ``stable_service``.

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

Settings and versions are only ever passed as API parameters, never into an expression; they are
still validated against CloudWatch's rules (dimension values: 1..1024 printable ASCII characters)
so a typo fails naming its field instead of silently matching no metric. ARNs given where
CloudWatch wants an ARN suffix (``app/…``, ``targetgroup/…``) or a function name are shortened.

Errors: throttling is retried by botocore (standard mode, 3 attempts in all, exponential backoff
with jitter); throttling that lasts, 5xx, timeouts and connection errors → ``BackendUnavailable``
(the gate counts it as an outage, measured in time); access denied → ``MetricsError`` naming
``cloudwatch:GetMetricData``, the only IAM action this provider needs; any other rejection
(``InvalidParameter…``, ``ValidationError``) → ``MetricsError`` with CloudWatch's message.

Connection: an Airflow AWS connection (``conn_id``), read through ``AwsBaseHook``. Connect and read
timeouts default to ``timeout_seconds`` with 3 standard-mode attempts; the connection's
``extra.config_kwargs`` override both.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from canary_operators.exceptions import BackendUnavailable, MetricsError
from canary_operators.measurement import ArmSample, Measurement
from canary_operators.metrics.base import MetricsProvider, Scope
from canary_operators.spec import BusinessCheck, ErrorRateCheck, LatencyCheck, ResourceCheck

NAMESPACE_PATTERN = re.compile(r"^[A-Za-z0-9.\-_/#: ]{1,255}$")
LOAD_BALANCER_PATTERN = re.compile(r"^app/[A-Za-z0-9-]{1,32}/[0-9a-f]{1,64}$")
TARGET_GROUP_PATTERN = re.compile(r"^targetgroup/[A-Za-z0-9-]{1,32}/[0-9a-f]{1,64}$")
FUNCTION_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ALIAS_PATTERN = re.compile(r"^(?!\d+$)[A-Za-z0-9_-]{1,128}$")
MAX_DIMENSIONS = 30
MAX_PAGES = 20

_SOURCE_NAMESPACE = {"alb": "AWS/ApplicationELB", "lambda": "AWS/Lambda"}
# requests, errors, latency metric and the latency metric's unit, per built-in source
_SOURCE_METRICS = {
    "alb": ("RequestCount", "HTTPCode_Target_5XX_Count", "TargetResponseTime", "s"),
    "lambda": ("Invocations", "Errors", "Duration", "ms"),
}
_QUANTILE_STAT = {0.5: "p50", 0.95: "p95", 0.99: "p99"}
_THROTTLED = {"Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded",
              "TooManyRequestsException", "RequestThrottled", "RequestThrottledException",
              "SlowDown", "LimitExceededException"}
_TRANSIENT = {"InternalFailure", "InternalServiceError", "InternalServiceFault", "InternalError",
              "ServiceUnavailable", "ServiceUnavailableException", "RequestTimeout",
              "RequestTimeoutException", "ExpiredToken", "ExpiredTokenException", "RequestExpired"}
_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException",
           "InvalidClientTokenId", "SignatureDoesNotMatch", "MissingAuthenticationToken", "OptInRequired"}


# -- CloudWatch's naming rules ----------------------------------------------------------------


def _printable_ascii(value: Any, what: str, max_len: int) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= max_len:
        raise ValueError(f"{what} must be 1 to {max_len} characters")
    if any(not " " <= ch <= "~" for ch in value) or not value.strip():
        raise ValueError(f"{what} must be printable ASCII (no control characters) and not blank")
    return value


def dimension_value(value: Any) -> str:
    """A valid CloudWatch dimension value; ValueError otherwise."""
    return _printable_ascii(value, "a dimension value", 1024)


def dimension_name(value: Any) -> str:
    """A valid CloudWatch dimension name; ValueError otherwise."""
    _printable_ascii(value, "a dimension name", 255)
    if value.startswith(":"):
        raise ValueError("a dimension name cannot start with ':'")
    return value


def metric_name(value: Any) -> str:
    """A valid CloudWatch metric name; ValueError otherwise."""
    return _printable_ascii(value, "a metric name", 255)


def namespace(value: Any) -> str:
    """A valid CloudWatch namespace; ValueError otherwise."""
    if not isinstance(value, str) or not NAMESPACE_PATTERN.fullmatch(value) or value.startswith(":") or not value.strip():
        raise ValueError("a namespace must be 1 to 255 of A-Z a-z 0-9 . - _ / # : and space, not starting with ':'")
    return value


def _load_balancer(value: str) -> str:
    if isinstance(value, str) and value.startswith("arn:") and ":loadbalancer/" in value:
        value = value.split(":loadbalancer/", 1)[1]  # CloudWatch's dimension is the ARN's suffix
    if not LOAD_BALANCER_PATTERN.fullmatch(dimension_value(value)):
        raise ValueError("must be the ALB's ARN suffix app/<name>/<id> (or its ARN)")
    return value


def _target_group(value: str) -> str:
    if isinstance(value, str) and value.startswith("arn:") and ":targetgroup/" in value:
        value = "targetgroup/" + value.split(":targetgroup/", 1)[1]
    if not TARGET_GROUP_PATTERN.fullmatch(dimension_value(value)):
        raise ValueError("must be the target group's ARN suffix targetgroup/<name>/<id> (or its ARN)")
    return value


def _function_name(value: str) -> str:
    if isinstance(value, str) and value.startswith("arn:") and ":function:" in value:
        value = value.split(":function:", 1)[1].split(":", 1)[0]
    if not isinstance(value, str) or not FUNCTION_NAME_PATTERN.fullmatch(value):
        raise ValueError("must be a Lambda function name (1 to 64 of A-Z a-z 0-9 _ -) or its ARN")
    return value


def _alias(value: str) -> str:
    if not isinstance(value, str) or not ALIAS_PATTERN.fullmatch(value):
        raise ValueError("must be a Lambda alias name (1 to 128 of A-Z a-z 0-9 _ -, not only digits)")
    return value


def _dimensions(value: dict) -> dict:
    for k, v in value.items():
        dimension_name(k)
        try:
            dimension_value(v)
        except ValueError as e:
            raise ValueError(f"{k}: {e}") from None
    if len(value) >= MAX_DIMENSIONS:
        raise ValueError(f"at most {MAX_DIMENSIONS - 1} fixed dimensions (CloudWatch allows {MAX_DIMENSIONS} with the version's)")
    return value


# The source each source-specific field belongs to, the ones it needs, and each field's own rule.
_FIELD_SOURCE = {
    "load_balancer": "alb", "stable_target_group": "alb", "canary_target_group": "alb",
    "function_name": "lambda", "alias": "lambda",
    "namespace": "custom", "requests_metric": "custom", "errors_metric": "custom", "latency_metric": "custom",
    "latency_unit": "custom", "version_dimension": "custom", "dimensions": "custom",
}
_REQUIRED = {"load_balancer", "stable_target_group", "canary_target_group", "function_name", "alias",
             "namespace", "requests_metric", "version_dimension"}
_FIELD_RULE = {
    "load_balancer": _load_balancer, "stable_target_group": _target_group, "canary_target_group": _target_group,
    "function_name": _function_name, "alias": _alias, "namespace": namespace,
    "requests_metric": metric_name, "errors_metric": metric_name, "latency_metric": metric_name,
    "version_dimension": dimension_name, "dimensions": _dimensions,
    "business_namespace": namespace, "cpu_namespace": namespace, "cpu_metric": metric_name,
    "memory_metric": metric_name, "cluster": dimension_value, "stable_service": dimension_value,
    "canary_service": dimension_value,
}


class CloudWatchSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: Literal["alb", "lambda", "custom"]
    # alb: the ARN suffixes CloudWatch uses as dimension values
    load_balancer: str | None = Field(default=None, validate_default=True)  # app/my-alb/50dc6c495c0c9188
    stable_target_group: str | None = Field(default=None, validate_default=True)  # targetgroup/web-stable/…
    canary_target_group: str | None = Field(default=None, validate_default=True)
    # lambda: the function and the weighted alias that splits traffic between two versions
    function_name: str | None = Field(default=None, validate_default=True)
    alias: str | None = Field(default=None, validate_default=True)
    # custom
    namespace: str | None = Field(default=None, validate_default=True)
    requests_metric: str | None = Field(default=None, validate_default=True)
    errors_metric: str | None = Field(default=None, validate_default=True)
    latency_metric: str | None = Field(default=None, validate_default=True)
    latency_unit: Literal["s", "ms"] | None = Field(default=None, validate_default=True)  # default s
    version_dimension: str | None = Field(default=None, validate_default=True)
    dimensions: dict[str, str] = Field(default_factory=dict, validate_default=True)
    # business checks: where check.metric lives (default: the source's namespace)
    business_namespace: str | None = None
    # resource checks: an ECS service per arm
    cpu_namespace: str = "AWS/ECS"
    cpu_metric: str = "CPUUtilization"
    memory_metric: str = "MemoryUtilization"
    cluster: str | None = None
    stable_service: str | None = None
    canary_service: str | None = None
    # the window: whole periods, lag_seconds back from the gate's end
    period: int = Field(default=60, ge=60, le=86400)
    lag_seconds: float = Field(default=120.0, ge=0, le=3600)
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)

    @field_validator(*_FIELD_SOURCE)
    @classmethod
    def _per_source(cls, value, info: ValidationInfo):
        field, source = info.field_name, info.data.get("source")
        owner = _FIELD_SOURCE[field]
        if value is None or value == {}:
            if source == owner and field in _REQUIRED:
                raise ValueError(f"required when source is {owner}")
            return value
        if source is not None and source != owner:
            raise ValueError(f"only used when source is {owner}, not {source}")
        rule = _FIELD_RULE.get(field)
        return rule(value) if rule else value

    @field_validator("dimensions")
    @classmethod
    def _version_is_not_fixed(cls, value: dict, info: ValidationInfo) -> dict:
        if info.data.get("version_dimension") in value:
            raise ValueError(f"{info.data['version_dimension']} is the version_dimension; it cannot also be fixed")
        return value

    @field_validator("business_namespace", "cpu_namespace", "cpu_metric", "memory_metric",
                     "cluster", "stable_service", "canary_service")
    @classmethod
    def _names(cls, value, info: ValidationInfo):
        return value if value is None else _FIELD_RULE[info.field_name](value)

    @field_validator("period")
    @classmethod
    def _standard_resolution(cls, value: int) -> int:
        if value % 60:
            raise ValueError("must be a multiple of 60 seconds (CloudWatch's standard resolution)")
        return value


# -- the provider -----------------------------------------------------------------------------


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
        return {
            "Id": self.id,
            "MetricStat": {
                "Metric": {"Namespace": self.namespace, "MetricName": self.metric,
                           "Dimensions": [{"Name": k, "Value": v} for k, v in self.dims]},
                "Period": self.period,
                "Stat": self.stat,
            },
            "ReturnData": True,
        }

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
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
        from botocore.config import Config

        hook = AwsBaseHook(aws_conn_id=self.conn_id, client_type="cloudwatch")
        t = self.settings.timeout_seconds
        ours = Config(connect_timeout=t, read_timeout=t, retries={"mode": "standard", "total_max_attempts": 3})
        try:
            return hook.get_client_type(region_name=hook.region_name, config=ours.merge(hook.config))
        except Exception as e:
            translated = self._translate(e, "creating the client")
            if translated is e:
                raise
            raise translated from None

    def _translate(self, error: Exception, operation: str) -> Exception:
        """A botocore error → BackendUnavailable (retry) or MetricsError (retrying cannot fix it);
        any other exception is returned as it is."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            NoCredentialsError,
            NoRegionError,
            ParamValidationError,
            PartialCredentialsError,
        )

        conn = f"connection {self.conn_id!r}" if self.conn_id else "the default AWS credentials"
        if isinstance(error, ClientError):
            err = error.response.get("Error") or {}
            code, message = str(err.get("Code") or ""), str(err.get("Message") or "")
            status = (error.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0
            if code in _THROTTLED or status == 429:
                return BackendUnavailable(f"cloudwatch is throttling {operation} ({code or status}); retry later")
            if code in _TRANSIENT or status >= 500:
                return BackendUnavailable(f"cloudwatch failed {operation} ({code or 'HTTP'} {status}): {message}".rstrip(": "))
            if code in _DENIED or "AccessDenied" in code or status in (401, 403):
                return MetricsError(f"cloudwatch denied {operation} to {conn}: it needs the IAM permission "
                                    f"cloudwatch:GetMetricData ({code}: {message})")
            return MetricsError(f"cloudwatch rejected {operation} ({code or status}): {message}")
        if isinstance(error, (NoCredentialsError, PartialCredentialsError)):
            return MetricsError(f"cloudwatch: {conn} has no usable AWS credentials: {error}")
        if isinstance(error, (NoRegionError, ParamValidationError)):
            return MetricsError(f"cloudwatch: {operation}: {error}")
        if isinstance(error, BotoCoreError):  # endpoint unreachable, connect/read timeouts, closed connections
            return BackendUnavailable(f"cloudwatch unreachable during {operation}: {type(error).__name__}: {error}")
        return error

    def fetch(self, series: list[_Series], start: float, stop: float) -> dict[str, list[tuple[float, float]]]:
        """One ``GetMetricData`` over ``[start, stop)`` → ``{id: [(unix seconds, value), …]}`` by time,
        every ``NextToken`` page merged. Read-only."""
        request = {"MetricDataQueries": [s.query() for s in series], "StartTime": _utc(start), "EndTime": _utc(stop),
                   "ScanBy": "TimestampAscending"}
        points: dict[str, list[tuple[float, float]]] = {s.id: [] for s in series}
        for _ in range(MAX_PAGES):
            try:
                page = self.client.get_metric_data(**request)
            except Exception as e:
                translated = self._translate(e, "GetMetricData")
                if translated is e:
                    raise
                raise translated from None
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

    def source_namespace(self) -> str:
        s = self.settings
        return s.namespace if s.source == "custom" else _SOURCE_NAMESPACE[s.source]

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
        ns, dims, p = self.source_namespace(), self.arm_dimensions(arm, version), s.period
        if s.source == "custom":
            requests_metric, errors_metric, latency_metric, unit = s.requests_metric, s.errors_metric, s.latency_metric, s.latency_unit or "s"
        else:
            requests_metric, errors_metric, latency_metric, unit = _SOURCE_METRICS[s.source]
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
        requests_metric = s.requests_metric if s.source == "custom" else _SOURCE_METRICS[s.source][0]
        stop = math.floor(time.time() / s.period) * s.period
        self.fetch([_Series("online", self.source_namespace(), requests_metric, dims, "Sum", s.period)],
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
