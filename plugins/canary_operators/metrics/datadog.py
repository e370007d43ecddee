"""Datadog through its HTTP API, v1 ``/api/v1/query`` or v2 ``/api/v2/query/timeseries``, with
built-in metric queries per check kind.

Arms are told apart by a version tag (``version_tag``, default ``version``) plus the spec's
``tags``. Tag names and values are validated against Datadog's tag rules before they go into a
query (no escaping exists in Datadog's query language), and lowercased, as Datadog stores them.

Datadog answers a query with a series of points over ``[end - window, end]``; each is reduced to
one number:

- counts (the ``sum:…{…}.as_count()`` queries: requests, errors, business events) are the sum
  of the non-null points, since ``.as_count()`` gives a count per interval;
- everything else (``avg:`` resources, ``p50/p95/p99:`` latency, custom queries) is the mean of
  the non-null points.

No series, or a series of only nulls, is no data (None). More than one series is an error: the
query must aggregate to one.

Connection: ``host`` is the API site (``https://api.datadoghq.com``, ``api.datadoghq.eu``; https
unless the host names a scheme), ``password`` is the API key, ``extra.application_key`` the
application key. Neither key is ever put into an exception or a log line.
"""

from __future__ import annotations

import math
import re
from string import Template
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from canary_operators.endpoint import Endpoint
from canary_operators.exceptions import BackendUnavailable, MetricsError
from canary_operators.measurement import ArmSample, Measurement
from canary_operators.metrics.base import MetricsProvider, Scope
from canary_operators.spec import BusinessCheck, ErrorRateCheck, LatencyCheck, ResourceCheck

# Datadog tags: start with a letter; then letters, digits and ``_ - : . /``; at most 200 characters.
# The key is the part before the first colon, so it has no colon itself. Values may start with a
# digit (``version:2024.11.1`` is a tag that starts with a letter).
TAG_KEY_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_\-./]{0,199}$")
TAG_VALUE_PATTERN = re.compile(r"^[A-Za-z0-9_\-:./]{1,200}$")
# Datadog metric names: start with a letter; then letters, digits, ``_`` and ``.``.
DD_METRIC_PATTERN = r"^[A-Za-z][A-Za-z0-9_.]{0,199}$"
_QUANTILE_AGGREGATOR = {0.5: "p50", 0.95: "p95", 0.99: "p99"}


def tag_key(key: str) -> str:
    """A tag name fit for a query, lowercased; ValueError naming it otherwise."""
    if not isinstance(key, str) or not TAG_KEY_PATTERN.fullmatch(key):
        raise ValueError(f"tag name {key!r} must start with a letter and use only letters, digits and _ - . /")
    return key.lower()


def tag_value(value: str) -> str:
    """A tag value fit for a query, lowercased; ValueError naming it otherwise."""
    if not isinstance(value, str) or not TAG_VALUE_PATTERN.fullmatch(value):
        raise ValueError(f"tag value {value!r} must be 1 to 200 letters, digits or _ - : . /")
    return value.lower()


class DatadogSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api: Literal["v1", "v2"] = "v2"
    version_tag: str = "version"
    tags: dict[str, str] = Field(default_factory=dict)  # extra tag filters, e.g. {service: web, env: prod}
    requests_metric: str = Field(default="trace.http.request.hits", pattern=DD_METRIC_PATTERN)
    errors_metric: str = Field(default="trace.http.request.errors", pattern=DD_METRIC_PATTERN)
    # A DISTRIBUTION metric, queried with the p50/p95/p99 aggregators. APM's latency distribution
    # is ``trace.<span name>``; ``trace.<span name>.duration`` is a gauge of total time and has no
    # percentiles.
    latency_metric: str = Field(default="trace.http.request", pattern=DD_METRIC_PATTERN)
    latency_unit: Literal["s", "ms"] = "s"  # the unit of latency_metric; values are returned in seconds
    cpu_metric: str = Field(default="container.cpu.usage", pattern=DD_METRIC_PATTERN)
    memory_metric: str = Field(default="container.memory.usage", pattern=DD_METRIC_PATTERN)
    timeout_seconds: float = Field(default=10.0, gt=0)

    @field_validator("version_tag")
    @classmethod
    def _version_tag(cls, key: str) -> str:
        return tag_key(key)

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: dict[str, str]) -> dict[str, str]:
        return {tag_key(k): tag_value(v) for k, v in tags.items()}


class DatadogProvider(MetricsProvider):
    type_name: ClassVar[str] = "datadog"
    settings_model = DatadogSettings

    def __init__(self, settings: dict, endpoint: Endpoint | None, *, conn_id: str | None = None, run=None):
        super().__init__(settings, endpoint, conn_id=conn_id, run=run)
        self._answers: dict[tuple, float | None] = {}

    # -- queries ----------------------------------------------------------------------------

    def selector(self, version: str) -> str:
        """The tag filter of one arm, e.g. ``version:v2,env:prod,service:web``."""
        s = self.settings
        try:
            version = tag_value(version)
        except ValueError as e:
            raise MetricsError(f"datadog: version {version!r} cannot be a tag value: {e}") from None
        return ",".join([f"{s.version_tag}:{version}"] + [f"{k}:{v}" for k, v in sorted(s.tags.items())])

    def queries(self, check, version: str, window_seconds: int) -> dict[str, str]:
        """The queries for one arm of ``check``: {"requests", and "events" (a count per request) or "value"}."""
        s = self.settings
        sel = self.selector(version)
        out = {"requests": f"sum:{s.requests_metric}{{{sel}}}.as_count()"}
        if check.query:
            out["value"] = Template(check.query).safe_substitute(selector=sel, window=str(window_seconds))
        elif isinstance(check, ErrorRateCheck):
            out["events"] = f"sum:{s.errors_metric}{{{sel}}}.as_count()"
        elif isinstance(check, LatencyCheck):
            out["value"] = f"{_QUANTILE_AGGREGATOR[check.quantile]}:{s.latency_metric}{{{sel}}}"
        elif isinstance(check, BusinessCheck):
            out["events"] = f"sum:{check.metric}{{{sel}}}.as_count()"
        elif isinstance(check, ResourceCheck):
            metric = s.cpu_metric if check.resource == "cpu" else s.memory_metric
            out["value"] = f"avg:{metric}{{{sel}}}"
        else:  # pragma: no cover
            raise MetricsError(f"datadog: no query for check kind {check.kind!r}")
        return out

    # -- HTTP -------------------------------------------------------------------------------

    def _keys(self) -> tuple[str, str]:
        ep = self.endpoint
        if ep is None or not ep.host:
            raise MetricsError("datadog: the connection has no host (the API site, e.g. https://api.datadoghq.com)")
        if not ep.password:
            raise MetricsError("datadog: the connection has no API key (set the connection's password)")
        app_key = (ep.extra or {}).get("application_key")
        if not app_key or not isinstance(app_key, str):
            raise MetricsError("datadog: the connection has no application key (set extra.application_key)")
        return ep.password, app_key

    def _scrub(self, text: object) -> str:
        """``text`` with any key replaced, for messages that quote what Datadog answered."""
        from canary_operators.secrets import scrub, secrets_of

        return scrub(str(text), secrets_of(self.endpoint))

    def _request(self, method: str, path: str, *, what: str, app_key: bool = True, **kwargs) -> dict:
        """One call to the API → its JSON body. ``what`` names the request in errors (a query or path)."""
        import requests

        api, app = self._keys()
        headers = {"DD-API-KEY": api, "Accept": "application/json"}
        if app_key:
            headers["DD-APPLICATION-KEY"] = app
        base = self.endpoint.base_url(default_scheme="https")
        where = self._scrub(base)  # a host may carry user:password@
        try:
            response = requests.request(method, base + path, headers=headers, timeout=self.settings.timeout_seconds, **kwargs)
        except requests.RequestException as e:
            raise BackendUnavailable(f"datadog at {where} unreachable: {type(e).__name__}") from None
        code = response.status_code
        if code == 429:
            reset = response.headers.get("X-RateLimit-Reset")
            when = f"; the limit resets in {reset}s" if reset and reset.strip().isdigit() else ""
            raise BackendUnavailable(f"datadog at {where} is rate limiting (HTTP 429){when}")
        if code >= 500:
            raise BackendUnavailable(f"datadog at {where} answered HTTP {code}")
        if code in (401, 403):
            raise MetricsError(f"Datadog refused the API/application key (HTTP {code})")
        try:
            body = response.json()
        except ValueError:
            raise MetricsError(f"datadog at {where} answered HTTP {code} without JSON") from None
        if code != 200:
            errors = body.get("errors") if isinstance(body, dict) else None
            detail = "; ".join(map(str, errors)) if isinstance(errors, list) else (errors or body)
            raise MetricsError(self._scrub(f"datadog rejected {what!r} (HTTP {code}): {detail}"))
        if not isinstance(body, dict):
            raise MetricsError(f"datadog at {where} answered {what!r} with {type(body).__name__}, expected an object")
        return body

    def _points_v1(self, query: str, start: float, end: float) -> list | None:
        body = self._request("GET", "/api/v1/query", what=query,
                             params={"from": int(start), "to": int(end), "query": query})
        if body.get("status") == "error" or body.get("error"):
            raise MetricsError(self._scrub(f"datadog rejected {query!r}: {body.get('error') or body}"))
        series = body.get("series") or []
        if len(series) > 1:
            raise MetricsError(f"datadog: {query!r} returned {len(series)} series; the query must aggregate to one series")
        return [point[1] for point in series[0].get("pointlist") or []] if series else None

    def _points_v2(self, query: str, start: float, end: float) -> list | None:
        request = {"data": {"type": "timeseries_request", "attributes": {
            "from": int(start * 1000), "to": int(end * 1000),
            "queries": [{"data_source": "metrics", "query": query, "name": "a"}],
            "formulas": [{"formula": "a"}],
        }}}
        body = self._request("POST", "/api/v2/query/timeseries", what=query, json=request)
        attributes = (body.get("data") or {}).get("attributes") or {}
        series, values = attributes.get("series") or [], attributes.get("values") or []
        if not series and body.get("errors"):
            raise MetricsError(self._scrub(f"datadog rejected {query!r}: {body['errors']}"))
        if len(series) > 1 or len(values) > 1:
            raise MetricsError(f"datadog: {query!r} returned {max(len(series), len(values))} series; the query must aggregate to one series")
        return list(values[0] or []) if series and values else None

    def query(self, query: str, start: float, end: float, reduce: Literal["sum", "mean"]) -> float | None:
        """One query over ``[start, end]`` (unix seconds) → one number; None when there is no data.

        Answers are kept per provider instance: checks that share a query over the same window (the
        requests count of every check) cost one API call, which matters under Datadog's rate limits.
        """
        key = (query, start, end, reduce)
        if key not in self._answers:
            points = (self._points_v1 if self.settings.api == "v1" else self._points_v2)(query, start, end)
            finite = [float(v) for v in points or [] if isinstance(v, (int, float)) and math.isfinite(v)]
            self._answers[key] = (sum(finite) if reduce == "sum" else sum(finite) / len(finite)) if finite else None
        return self._answers[key]

    def check_online(self) -> None:
        """Validate the API key (``/api/v1/validate``); both keys must be set. Read-only."""
        body = self._request("GET", "/api/v1/validate", what="/api/v1/validate", app_key=False)
        if body.get("valid") is not True:
            raise MetricsError(f"Datadog did not validate the API key: {self._scrub(body)}")

    def measure(self, check, scope: Scope) -> Measurement:
        start, end = scope.end - scope.window_seconds, scope.end
        window = max(1, math.ceil(scope.window_seconds))
        # Every query of both arms is built first, so a bad version or tag fails before any HTTP call.
        self._keys()
        plans = {"canary": self.queries(check, scope.canary_version, window),
                 "baseline": self.queries(check, scope.baseline_version, window)}
        arms = {}
        for arm, q in plans.items():
            requests = self.query(q["requests"], start, end, "sum")
            if "events" in q:
                events = self.query(q["events"], start, end, "sum")
                if events is None and requests is not None and isinstance(check, ErrorRateCheck):
                    events = 0.0  # Datadog has no errors series for a version without errors
                value = events / requests if requests and events is not None else None
                shown = f"{q['events']} / {q['requests']}"
                arms[arm] = ArmSample(value=value, requests=requests, events=events, query=shown)
            else:
                value = self.query(q["value"], start, end, "mean")
                if value is not None and isinstance(check, LatencyCheck) and not check.query and self.settings.latency_unit == "ms":
                    value /= 1000.0
                arms[arm] = ArmSample(value=value, requests=requests, query=q["value"])
        return Measurement(check=check.name, canary=arms["canary"], baseline=arms["baseline"], window_seconds=scope.window_seconds)
