"""Datadog through its HTTP API, v1 ``/api/v1/query`` or v2 ``/api/v2/query/timeseries``, with
built-in metric queries per check kind.

Arms are told apart by a version tag (``version_tag``, default ``version``) plus the spec's
``tags``. Tag names and values are validated against Datadog's tag rules before they go into a
query (no escaping exists in Datadog's query language), and lowercased, as Datadog stores them.

Datadog answers a query with a series of points over ``[end - window, end]``. Both arms ask for the
same ``from``/``to`` and the built-in queries end in an explicit rollup of ``period_seconds``
(default 60): ``.as_count().rollup(sum, P)`` for counts, ``.rollup(P)`` for the ``p50/p95/p99:``
distribution percentiles (they take no aggregator), ``.rollup(avg, P)`` for ``avg:`` resources;
v2 requests also carry ``interval``, so a custom query without a rollup of its own lands on the
same grid too (v1 has no such parameter: there it gets Datadog's default interval for the window,
still the same for both arms). Each answer is reduced to one number:

- counts (the ``sum:…{…}.as_count()`` queries: requests, errors, business events) are the sum
  of the non-null points, since ``.as_count()`` gives a count per interval;
- everything else (``avg:`` resources, ``p50/p95/p99:`` latency, custom queries) is the mean of
  the non-null points, and its points are also the sample's ``periods``
  (``(unix seconds, value)``, nulls left out);
- a business check with ``unit: amount`` also gets ``periods``: per interval, amount / requests,
  intervals without requests left out (an interval with requests but no amount point is 0).

No series, or a series of only nulls, is no data (None). More than one series is an error: the
query must aggregate to one.

Errors (through ``clients.http``): HTTP 429 is retried (``rate_limit_attempts``, default 3, waiting
what ``X-RateLimit-Reset`` says or an exponential backoff, each wait at most
``rate_limit_max_wait_seconds``), then ``BackendUnavailable``, like 5xx, 408 and connection errors;
a rejected query (400, 422, an error in a 200 answer) and refused keys are ``MetricsError``.

Queries go one after another (Datadog counts its rate limits per request, and a look that meets
an error asks nothing more), on the process's shared connections (``HttpClient(shared=True)``).

Connection: ``host`` is the API site (``https://api.datadoghq.com``, ``api.datadoghq.eu``; https
unless the host names a scheme), ``password`` is the API key, ``extra.application_key`` the
application key. Neither key is ever put into an exception or a log line.
"""

from __future__ import annotations

import math
import re
from string import Template
from typing import Callable, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

import canary_operators.clients.retrying as retry_helper
from canary_operators.clients.http import HttpClient, HttpError, RateLimit, Refused, Unavailable
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
Points = list[tuple[float, float]]  # [(unix seconds, value)], oldest first, nulls left out


def _total(points: Points | None) -> float | None:
    return sum(v for _, v in points) if points else None


def _mean(points: Points | None) -> float | None:
    return sum(v for _, v in points) / len(points) if points else None


def _finite(t, v) -> bool:
    return (isinstance(t, (int, float)) and isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(t) and math.isfinite(v))


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
    # The rollup interval of every built-in query: both arms' points land on the same grid.
    period_seconds: int = Field(default=60, ge=1, le=86400)
    # HTTP 429: attempts in all, and the longest single wait between them.
    rate_limit_attempts: int = Field(default=3, ge=1, le=10)
    rate_limit_max_wait_seconds: float = Field(default=10.0, ge=0, le=60)

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
    _http: HttpClient | None = None

    def __init__(self, settings: dict, endpoint: Endpoint | None, *, conn_id: str | None = None, run=None):
        super().__init__(settings, endpoint, conn_id=conn_id, run=run)
        self._answers: dict[tuple, Points | None] = {}
        self.sleep: Callable[[float], None] | None = None  # how a 429 waits (None: the retry helper's); tests record it

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
        sel, p = self.selector(version), s.period_seconds
        out = {"requests": f"sum:{s.requests_metric}{{{sel}}}.as_count().rollup(sum, {p})"}
        if check.query:  # the user's own text, left as written (it may carry its own rollup)
            out["value"] = Template(check.query).safe_substitute(selector=sel, window=str(window_seconds))
        elif isinstance(check, ErrorRateCheck):
            out["events"] = f"sum:{s.errors_metric}{{{sel}}}.as_count().rollup(sum, {p})"
        elif isinstance(check, LatencyCheck):  # a distribution's percentile takes a rollup interval only
            out["value"] = f"{_QUANTILE_AGGREGATOR[check.quantile]}:{s.latency_metric}{{{sel}}}.rollup({p})"
        elif isinstance(check, BusinessCheck):
            out["events"] = f"sum:{check.metric}{{{sel}}}.as_count().rollup(sum, {p})"
        elif isinstance(check, ResourceCheck):
            metric = s.cpu_metric if check.resource == "cpu" else s.memory_metric
            out["value"] = f"avg:{metric}{{{sel}}}.rollup(avg, {p})"
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

    @property
    def http(self) -> HttpClient:
        """This provider's client: both keys as headers (checked first), HTTP 429 retried
        ``rate_limit_attempts`` times, each wait at most ``rate_limit_max_wait_seconds``."""
        if self._http is None:
            api, app = self._keys()
            s = self.settings
            self._http = HttpClient(self.endpoint, name="datadog", timeout=s.timeout_seconds, default_scheme="https",
                                    api_key_headers={"DD-API-KEY": api, "DD-APPLICATION-KEY": app},
                                    rate_limit=RateLimit(attempts=s.rate_limit_attempts, max_wait=s.rate_limit_max_wait_seconds),
                                    sleep=lambda seconds: (self.sleep or retry_helper.SLEEP)(seconds), shared=True)
        return self._http

    def _request(self, method: str, path: str, *, what: str, app_key: bool = True, **kwargs) -> dict:
        """One call to the API → its JSON object. ``what`` names the request in errors (a query or path)."""
        http = self.http
        # A header set to None is left out of this call (``check_online`` sends the API key alone).
        kwargs["headers"] = {"Accept": "application/json", **({} if app_key else {"DD-APPLICATION-KEY": None})}
        try:
            body = http.json(method, path, **kwargs)
        except Unavailable as e:
            raise BackendUnavailable(str(e)) from None
        except Refused as e:
            raise MetricsError(f"Datadog refused the API/application key (HTTP {e.status})") from None
        except HttpError as e:  # a rejected query (or another answer): Datadog lists why in JSON
            answer = e.body_json()
            if answer is None:  # a 2xx's error already says it
                raise MetricsError(str(e) if e.status < 300 else f"{e} without JSON") from None
            errors = answer.get("errors") if isinstance(answer, dict) else None
            detail = "; ".join(map(str, errors)) if isinstance(errors, list) else (errors or answer)
            raise MetricsError(http.scrub(f"datadog rejected {what!r} (HTTP {e.status}): {detail}")) from None
        if not isinstance(body, dict):
            raise MetricsError(f"datadog at {http.where} answered {what!r} with {type(body).__name__}, expected an object")
        return body

    def _points_v1(self, query: str, start: float, end: float) -> Points | None:
        body = self._request("GET", "/api/v1/query", what=query,
                             params={"from": int(start), "to": int(end), "query": query})
        if body.get("status") == "error" or body.get("error"):
            raise MetricsError(self.http.scrub(f"datadog rejected {query!r}: {body.get('error') or body}"))
        series = body.get("series") or []
        if len(series) > 1:
            raise MetricsError(f"datadog: {query!r} returned {len(series)} series; the query must aggregate to one series")
        if not series:
            return None
        pairs = [p for p in series[0].get("pointlist") or [] if isinstance(p, list) and len(p) >= 2]
        return [(t / 1000.0, float(v)) for t, v, *_ in pairs if _finite(t, v)]

    def _points_v2(self, query: str, start: float, end: float) -> Points | None:
        request = {"data": {"type": "timeseries_request", "attributes": {
            "from": int(start * 1000), "to": int(end * 1000), "interval": self.settings.period_seconds * 1000,
            "queries": [{"data_source": "metrics", "query": query, "name": "a"}],
            "formulas": [{"formula": "a"}],
        }}}
        body = self._request("POST", "/api/v2/query/timeseries", what=query, json=request)
        attributes = (body.get("data") or {}).get("attributes") or {}
        series, values = attributes.get("series") or [], attributes.get("values") or []
        if not series and body.get("errors"):
            raise MetricsError(self.http.scrub(f"datadog rejected {query!r}: {body['errors']}"))
        if len(series) > 1 or len(values) > 1:
            raise MetricsError(f"datadog: {query!r} returned {max(len(series), len(values))} series; the query must aggregate to one series")
        if not series or not values:
            return None
        times, points = attributes.get("times") or [], values[0] or []
        if len(times) != len(points):
            raise MetricsError(f"datadog answered {query!r} with {len(times)} times for {len(points)} values")
        return [(t / 1000.0, float(v)) for t, v in zip(times, points) if _finite(t, v)]

    def points(self, query: str, start: float, end: float) -> Points | None:
        """One query over ``[start, end]`` (unix seconds) → its non-null points ``[(unix seconds,
        value)]``, oldest first; None when there is no series.

        Answers are kept per provider instance: checks that share a query over the same window (the
        requests count of every check) cost one API call, which matters under Datadog's rate limits.
        """
        key = (query, start, end)
        if key not in self._answers:
            points = (self._points_v1 if self.settings.api == "v1" else self._points_v2)(query, start, end)
            self._answers[key] = sorted(points) if points is not None else None
        return self._answers[key]

    def query(self, query: str, start: float, end: float, reduce: Literal["sum", "mean"]) -> float | None:
        """One query over ``[start, end]`` → one number (the sum or mean of its points); None when no data."""
        points = self.points(query, start, end)
        return _total(points) if reduce == "sum" else _mean(points)

    def check_online(self) -> None:
        """Validate the API key (``/api/v1/validate``); both keys must be set. Read-only."""
        body = self._request("GET", "/api/v1/validate", what="/api/v1/validate", app_key=False)
        if body.get("valid") is not True:
            raise MetricsError(f"Datadog did not validate the API key: {self.http.scrub(body)}")

    def measure(self, check, scope: Scope) -> Measurement:
        start, end = scope.end - scope.window_seconds, scope.end
        window = max(1, math.ceil(scope.window_seconds))
        # Every query of both arms is built first, so a bad version or tag fails before any HTTP call.
        self._keys()
        plans = {"canary": self.queries(check, scope.canary_version, window),
                 "baseline": self.queries(check, scope.baseline_version, window)}
        amount = isinstance(check, BusinessCheck) and check.unit == "amount"
        arms = {}
        for arm, q in plans.items():
            requests_points = self.points(q["requests"], start, end)
            requests = _total(requests_points)
            if "events" in q:
                event_points = self.points(q["events"], start, end)
                events = _total(event_points)
                if events is None and requests is not None and isinstance(check, ErrorRateCheck):
                    events = 0.0  # Datadog has no errors series for a version without errors
                value = events / requests if requests and events is not None else None
                periods = None
                if amount and events is not None:  # amount per request, per interval that had requests
                    amounts = dict(event_points)
                    periods = tuple((t, amounts.get(t, 0.0) / r) for t, r in requests_points or [] if r > 0) or None
                shown = f"{q['events']} / {q['requests']}"
                arms[arm] = ArmSample(value=value, requests=requests, events=events, query=shown, periods=periods)
            else:
                points = self.points(q["value"], start, end) or []
                if isinstance(check, LatencyCheck) and not check.query and self.settings.latency_unit == "ms":
                    points = [(t, v / 1000.0) for t, v in points]
                arms[arm] = ArmSample(value=_mean(points), requests=requests, query=q["value"],
                                      periods=tuple(points) or None)
        return Measurement(check=check.name, canary=arms["canary"], baseline=arms["baseline"], window_seconds=scope.window_seconds)
