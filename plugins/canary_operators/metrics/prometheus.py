"""Prometheus through its HTTP API (``/api/v1/query``, ``/api/v1/query_range``), with built-in
PromQL per check kind.

Counts (requests, errors, business events, latency buckets) are counted from zero for a series
that is new in the window: ``increase()`` needs two samples, so it would drop the first value of
every canary series and of a 5xx series that appears at the first error. A series counts as new
when it has no sample in the ``_SEEN_BEFORE`` before the window (a range, so a failed scrape's
staleness markers do not make a long-lived series look new).

Resource checks, custom ``query`` checks and business checks with ``unit: amount`` also get one
value per ``period_seconds`` (``ArmSample.periods``, from a range query on a grid aligned to the
period, so both arms get the same timestamps; at most ``_MAX_PERIODS`` periods, the period is
widened for longer windows). Through ``clients.http``, HTTP 429 is retried (``Retry-After``
honoured, capped) for up to ``rate_limit_budget_seconds``, then ``BackendUnavailable``.

One measurement's queries (up to 8: both arms' counts, values, buckets and periods) go out as at
most two POST requests (its instant queries in one, its range queries in another; each query
labelled with its index by ``label_replace`` and joined with ``or``), at the same time
(``metrics.base.fetch_all``), on the process's shared connections. A batch Prometheus rejects is
asked query by query. Answers are kept per provider instance (one look), so checks that share a
query (the requests count) ask it once. Errors surface in the order the queries were always
read, so each maps as before.

Arms (a version label, or ``arm_matchers``) and presets (``istio``, ``nginx_ingress``) are
set in ``metrics/prometheus_settings.py``. Label values from specs and conf are escaped here,
before they go into a query.
"""

from __future__ import annotations

import math
from string import Template
from typing import ClassVar

from canary_operators.clients.http import HttpClient, HttpError, RateLimit, Refused, Unavailable
from canary_operators.exceptions import BackendUnavailable, MetricsError
from canary_operators.measurement import ArmSample, Measurement
from canary_operators.metrics.base import MetricsProvider, Scope, fetch_all
from canary_operators.metrics.prometheus_settings import PRESETS, ArmMatchers, PrometheusSettings
from canary_operators.spec import BusinessCheck, ErrorRateCheck, LatencyCheck, ResourceCheck

__all__ = ["PRESETS", "ArmMatchers", "PrometheusProvider", "PrometheusSettings", "counted", "escape_label_value"]

# A counter series with no sample in this span before a window is new in the window.
_SEEN_BEFORE = "10m"
# Prometheus refuses range queries over 11,000 points; a sign test needs far fewer periods.
_MAX_PERIODS = 1000
_RETRY_AFTER_CAP = 2.0  # seconds; a longer Retry-After is cut to this, and the budget still holds
_BATCH_LABEL = "canary_operators_query"  # tells the queries of one batched request apart


def _outcome(fetch, *args):
    try:
        return fetch(*args)
    except (BackendUnavailable, MetricsError) as e:
        return e


def escape_label_value(value: str) -> str:
    """Escape a string for a PromQL double-quoted label value."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def counted(series: str, window: str) -> str:
    """Each counter series' increase over ``window``, a series new in the window counted from zero.

    ``increase`` needs two samples in the window, so it misses a new series' first value; a series
    with no sample in the ``_SEEN_BEFORE`` before the window counts its last value instead. Labels
    are kept (``and``, ``unless`` and ``or`` match on all labels but the name): aggregate the result.
    """
    seen = f"last_over_time({series}[{_SEEN_BEFORE}] offset {window})"
    return f"(increase({series}[{window}]) and {seen}) or (last_over_time({series}[{window}]) unless {seen})"


class PrometheusProvider(MetricsProvider):
    type_name: ClassVar[str] = "prometheus"
    settings_model = PrometheusSettings
    _http: HttpClient | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._answers: dict[tuple, dict] = {}  # (path, params) → data, for this instance's life (a look)
        self._failed: dict[tuple, Exception] = {}  # errors of the measurement under way

    # -- PromQL -----------------------------------------------------------------------------

    def selector(self, version: str, extra: str = "", arm: str | None = None) -> str:
        """The label matchers of one arm: its version (or its ``arm_matchers`` entry), ``labels``, ``extra``."""
        s = self.settings
        if s.arm_matchers is not None and arm is not None:
            matchers = [getattr(s.arm_matchers, arm)]
        else:
            matchers = [f'{s.version_label}="{escape_label_value(version)}"']
        matchers += [f'{k}="{escape_label_value(v)}"' for k, v in sorted(s.labels.items())]
        if extra:
            matchers.append(extra)
        return ",".join(matchers)

    def queries(self, check, version: str, window: str, arm: str | None = None) -> dict[str, str]:
        """The PromQL this provider runs for one arm of ``check``: {"value"|"requests"|"errors": query}."""
        s = self.settings
        sel = self.selector(version, arm=arm)
        requests = f"sum({counted(f'{s.requests_metric}{{{sel}}}', window)})"
        errors_sel = self.selector(version, f'{s.status_label}=~"{escape_label_value(s.error_status_regex)}"', arm=arm)
        out = {"requests": requests}
        if check.query:
            out["value"] = Template(check.query).safe_substitute(selector=sel, window=window)
        elif isinstance(check, ErrorRateCheck):
            # An absent 5xx series means no errors, not no data.
            out["errors"] = f"sum({counted(f'{s.requests_metric}{{{errors_sel}}}', window)}) or vector(0)"
        elif isinstance(check, LatencyCheck):
            out["buckets"] = f"sum by (le) ({counted(f'{s.latency_histogram}_bucket{{{sel}}}', window)})"
            out["value"] = f"histogram_quantile({check.quantile}, {out['buckets']})"
        elif isinstance(check, BusinessCheck):
            out["events"] = f"sum({counted(f'{check.metric}{{{sel}}}', window)})"
        elif isinstance(check, ResourceCheck):
            if check.resource == "cpu":
                out["value"] = f"avg(rate({s.cpu_metric}{{{sel}}}[{window}]))"
            else:
                out["value"] = f"avg(avg_over_time({s.memory_metric}{{{sel}}}[{window}]))"
        else:  # pragma: no cover
            raise MetricsError(f"prometheus: no query for check kind {check.kind!r}")
        return out

    def period_query(self, check, version: str, period: str, arm: str | None = None) -> str | None:
        """One arm's value per ``period`` for checks judged on periods (resource, custom query,
        business amount per request); None for the others."""
        q = self.queries(check, version, period, arm=arm)
        if check.query or isinstance(check, ResourceCheck):
            return q["value"]
        if isinstance(check, BusinessCheck) and check.unit == "amount":
            # No amount in a period that had requests is 0; a period without requests is left out.
            return f"({q['events']} or vector(0)) / ({q['requests']} > 0)"
        return None

    def period_grid(self, scope: Scope) -> tuple[int, int, int] | None:
        """``(first_end, last_end, step)``: the whole periods inside the window, on multiples of
        ``step``, so both arms get the same timestamps; None when the window holds none."""
        step = self.settings.period_seconds
        if scope.window_seconds / step > _MAX_PERIODS:
            step *= math.ceil(scope.window_seconds / step / _MAX_PERIODS)
        last = math.floor(scope.end / step) * step
        first = math.ceil((scope.end - scope.window_seconds) / step) * step + step
        return (first, last, step) if first <= last else None

    # -- HTTP -------------------------------------------------------------------------------

    @property
    def http(self) -> HttpClient:
        """The client (basic or bearer auth, 429 retried within the budget), built at the first query."""
        if self._http is None:
            self._http = HttpClient(self.endpoint, name="prometheus", timeout=self.settings.timeout_seconds,
                                    rate_limit=RateLimit(attempts=None, deadline=self.settings.rate_limit_budget_seconds,
                                                         max_wait=_RETRY_AFTER_CAP, first_wait=0.25), shared=True)
        return self._http

    @staticmethod
    def _key(path: str, params: dict) -> tuple:
        return path, tuple(sorted(params.items()))

    @staticmethod
    def _instant(promql: str, at: float) -> tuple[str, dict]:
        return "/api/v1/query", {"query": promql, "time": f"{at:.3f}"}

    @staticmethod
    def _range(promql: str, grid: tuple[int, int, int]) -> tuple[str, dict]:
        first, last, step = grid
        return "/api/v1/query_range", {"query": promql, "start": first, "end": last, "step": step}

    def _get(self, path: str, params: dict) -> dict:
        """One query's ``data``: fetched ahead by ``measure`` (its answer, or its error raised now), else asked now."""
        key = self._key(path, params)
        if key in self._answers:
            return self._answers[key]
        if key in self._failed:
            raise self._failed[key]
        return self._fetch(path, params)

    def _prefetch(self, requests: list[tuple[str, dict]]) -> None:
        """Ask every query not answered yet, those of one kind and time as one batch, the batches at
        the same time; keep answers and errors for ``_get``."""
        todo = {self._key(path, params): (path, params) for path, params in requests}
        batches: dict[tuple, list[tuple]] = {}
        for key, (path, params) in todo.items():
            if key not in self._answers:
                batches.setdefault((path, *sorted((k, v) for k, v in params.items() if k != "query")), []).append(key)
        calls = {tuple(keys): (lambda keys=keys: self._fetch_batch([todo[key] for key in keys])) for keys in batches.values()}
        for keys, outcome in fetch_all(calls).items():
            for key, answer in zip(keys, outcome if isinstance(outcome, list) else [outcome] * len(keys)):
                (self._failed if isinstance(answer, Exception) else self._answers)[key] = answer

    def _fetch_batch(self, calls: list[tuple[str, dict]]) -> list[dict | Exception]:
        """Queries of one kind and time (instant, or one range grid) in one request, each labelled
        with its index (``label_replace``) and joined with ``or``; one answer (or error) each.
        Prometheus still evaluates every query. A batch it rejects (one query may be wrong, or not
        a vector, or POST not allowed on the way) is asked query by query, so each error stays that
        query's own; an unavailable or refusing Prometheus fails them all alike."""
        if len(calls) == 1:
            return [self._fetch(*calls[0])]
        path, params = calls[0]
        batch = " or ".join(f'label_replace({p["query"]}, "{_BATCH_LABEL}", "{i}", "", "")' for i, (_, p) in enumerate(calls))
        try:
            data = self._fetch(path, {**params, "query": batch}, "POST")  # in the body: no URL length limit
            parts: list[list] = [[] for _ in calls]
            for series in data.get("result") or []:
                parts[int(series["metric"].pop(_BATCH_LABEL))].append(series)
            return [{"resultType": data.get("resultType"), "result": part} for part in parts]
        except (MetricsError, KeyError, ValueError, IndexError, AttributeError, TypeError):
            return [_outcome(self._fetch, *call) for call in calls]

    def _fetch(self, path: str, params: dict, method: str = "GET") -> dict:
        try:
            body = self.http.json(method, path, **({"params": params} if method == "GET" else {"data": params}))
        except Unavailable as e:
            raise BackendUnavailable(str(e)) from None
        except HttpError as e:  # refused, or a rejected query (Prometheus says why in JSON)
            body = None if isinstance(e, Refused) else e.body_json()
            if not isinstance(body, dict):  # a 2xx's error already says it lacks JSON
                raise MetricsError(str(e) if isinstance(e, Refused) or e.status < 300 else f"{e} without JSON") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error", body) if isinstance(body, dict) else body
            raise MetricsError(self.http.scrub(f"prometheus rejected {params.get('query')!r}: {error}"))
        return body["data"]

    def query_buckets(self, promql: str, at: float) -> tuple[tuple[float, float], ...] | None:
        """A ``sum by (le)`` bucket query → sorted ``((upper_bound, cumulative_count), …)``; None if empty."""
        data = self._get(*self._instant(promql, at))
        buckets = []
        for series in data.get("result") or []:
            le = series.get("metric", {}).get("le")
            if le is None:
                raise MetricsError(f"prometheus: {promql!r} returned a series without an le label")
            buckets.append((float(le), float(series["value"][1])))
        if not buckets or not math.isinf(max(buckets)[0]):
            return None
        return tuple(sorted(buckets))

    def query(self, promql: str, at: float) -> float | None:
        """One instant query → its single value; None when the result is empty or NaN."""
        data = self._get(*self._instant(promql, at))
        result = data.get("result")
        if data.get("resultType") == "scalar":
            raw = result[1]
        elif data.get("resultType") == "vector":
            if not result:
                return None
            if len(result) > 1:
                raise MetricsError(f"prometheus: {promql!r} returned {len(result)} series; the query must aggregate to one")
            raw = result[0]["value"][1]
        else:
            raise MetricsError(f"prometheus: {promql!r} returned a {data.get('resultType')}, expected a vector")
        value = float(raw)
        return value if math.isfinite(value) else None

    def query_periods(self, promql: str, grid: tuple[int, int, int] | None) -> tuple[tuple[float, float], ...]:
        """A per-period query over ``grid`` → ``((period_start, value), …)``, oldest first; () if empty."""
        if grid is None:
            return ()
        step = grid[2]
        data = self._get(*self._range(promql, grid))
        result = data.get("result") or []
        if data.get("resultType") != "matrix":
            raise MetricsError(f"prometheus: {promql!r} returned a {data.get('resultType')}, expected a matrix")
        if len(result) > 1:
            raise MetricsError(f"prometheus: {promql!r} returned {len(result)} series; the query must aggregate to one")
        if not result:
            return ()
        return tuple((float(t) - step, float(v)) for t, v in result[0]["values"])

    def check_online(self) -> None:
        if self.query("vector(1)", at=0) is None:  # time=0 is valid for a constant
            raise MetricsError("prometheus answered vector(1) with no data")

    def measure(self, check, scope: Scope) -> Measurement:
        window = f"{max(1, math.ceil(scope.window_seconds))}s"
        grid = self.period_grid(scope)
        period = f"{grid[2] if grid else self.settings.period_seconds}s"
        plans = {arm: (self.queries(check, version, window, arm=arm), self.period_query(check, version, period, arm=arm))
                 for arm, version in (("canary", scope.canary_version), ("baseline", scope.baseline_version))}
        ahead = []  # every query read below, in its order
        for q, period_query in plans.values():
            if period_query is not None and grid is not None:
                ahead.append(self._range(period_query, grid))
            ahead += [self._instant(q[name], scope.end) for name in ("requests", "errors", "events", "buckets", "value")
                      if name in q and not (name == "value" and ("errors" in q or "events" in q))]
        self._prefetch(ahead)
        try:
            return self._measured(check, scope, grid, plans)
        finally:
            self._failed.clear()  # errors are not kept past this measurement; answers are

    def _measured(self, check, scope: Scope, grid, plans) -> Measurement:
        arms = {}
        for arm, (q, period_query) in plans.items():
            periods = None if period_query is None else self.query_periods(period_query, grid)
            requests = self.query(q["requests"], scope.end)
            if "errors" in q or "events" in q:
                events_query = q.get("errors") or q["events"]
                events = self.query(events_query, scope.end)
                if events is None and requests:
                    events = 0.0  # the counter has no increase yet
                value = events / requests if requests and events is not None else None
                shown = f"({events_query}) / {q['requests']}"
                arms[arm] = ArmSample(value=value, requests=requests, events=events, query=shown, periods=periods)
            else:
                buckets = self.query_buckets(q["buckets"], scope.end) if "buckets" in q else None
                value = self.query(q["value"], scope.end)
                if self.settings.latency_unit == "ms" and isinstance(check, LatencyCheck) and not check.query:
                    value = None if value is None else value / 1000.0
                    buckets = None if buckets is None else tuple((le / 1000.0, count) for le, count in buckets)
                arms[arm] = ArmSample(value=value, requests=requests, query=q["value"], buckets=buckets, periods=periods)
        return Measurement(check=check.name, canary=arms["canary"], baseline=arms["baseline"], window_seconds=scope.window_seconds)
