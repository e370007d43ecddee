"""A small Datadog API on 127.0.0.1 for the provider tests: real paths, headers and response shapes.

It answers ``GET /api/v1/validate``, ``GET /api/v1/query`` and ``POST /api/v2/query/timeseries``
from an in-memory table keyed by ``(metric, version)``; a key may also carry the aggregator
(``"p99:trace.http.request"``), which wins over the bare metric. A table value is a list of
points (one series, ``None`` = a null point) or ``{"host:a": [...], "host:b": [...]}`` (one series
per host; a query without ``by {host}`` aggregates them point by point). Every row carries the
stub's ``tags`` plus ``version:<version>``; a query matches rows whose tags include all its filters.
It parses ``agg:metric{tag:value,...}`` with optional ``.as_count()``, ``.rollup([agg, ]N)`` and
`` by {tag}``; anything else is an HTTP 400 with Datadog's ``{"errors": [...]}`` body. Unknown
combinations give no series. The stored points are returned as they are (neither ``.as_count()``
nor the rollup's aggregator changes them); their timestamps are the rollup's grid when the query
has an interval (``.rollup(…, N)``, else v2's ``interval``): ``floor(from / N) * N`` and every N
seconds on, the same grid for every query with the same ``from`` and N. Without one, N is 20 s, as
Datadog's default rollup for a window of up to an hour.

It records every request it gets (``stub.requests``), and can be told to fail (``stub.fail``) or
be stopped (``stub.stop``).
"""

from __future__ import annotations

import http.server
import json
import re
import threading
from dataclasses import dataclass
from urllib.parse import parse_qs, urlparse

QUERY = re.compile(
    r"^(?P<agg>[a-z0-9]+):(?P<metric>[A-Za-z][A-Za-z0-9_.]*)\{(?P<scope>[^{}]*)\}"
    r"(?P<as_count>\.as_count\(\))?(?:\.rollup\((?:[a-z]+,\s*)?(?P<rollup>\d+)\))?(?:\s+by\s+\{(?P<by>[A-Za-z0-9_.]+)\})?$"
)


@dataclass
class Recorded:
    method: str
    path: str
    params: dict  # the URL's query parameters, one value each
    body: dict | None  # the JSON body of a POST
    headers: dict

    @property
    def query(self) -> str | None:
        if self.body:
            return self.body["data"]["attributes"]["queries"][0]["query"]
        return self.params.get("query")


class DatadogStub:
    def __init__(self, api_key: str, app_key: str, table: dict, tags: dict[str, str] | None = None):
        self.api_key, self.app_key = api_key, app_key
        self.table = table
        self.tags = dict(tags or {})
        self.requests: list[Recorded] = []
        self._failure: tuple[int, dict, dict] | None = None
        self._failures_left: int | None = None
        self._lock = threading.Lock()
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                stub._handle(self, "GET")

            def do_POST(self):
                stub._handle(self, "POST")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self._stopped = False
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    # -- control ----------------------------------------------------------------------------

    def fail(self, status: int | None, body: dict | None = None, headers: dict | None = None, times: int | None = None) -> None:
        """Answer the next ``times`` requests (every later one when None) with ``status`` (None: answer
        normally again)."""
        self._failure = None if status is None else (status, body or {"errors": [f"HTTP {status}"]}, headers or {})
        self._failures_left = times

    def stop(self) -> None:
        """Stop listening: the port refuses connections from now on. Safe to repeat."""
        if self._stopped:
            return
        self._stopped = True
        self.server.shutdown()
        self.server.server_close()

    @property
    def queries(self) -> list[str]:
        return [r.query for r in self.requests if r.query is not None]

    # -- serving ----------------------------------------------------------------------------

    def _handle(self, handler, method: str) -> None:
        url = urlparse(handler.path)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        body = None
        if method == "POST":
            length = int(handler.headers.get("Content-Length") or 0)
            body = json.loads(handler.rfile.read(length) or b"null")
        with self._lock:
            self.requests.append(Recorded(method, url.path, params, body, dict(handler.headers)))
        status, answer, headers = self._answer(method, url.path, params, body, handler.headers)
        data = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(data)

    def _answer(self, method, path, params, body, headers) -> tuple[int, dict, dict]:
        with self._lock:
            failure = self._failure
            if failure and self._failures_left is not None:
                self._failures_left -= 1
                if self._failures_left <= 0:
                    self._failure = None
        if failure:
            return failure
        needs_app_key = path != "/api/v1/validate"
        if not headers.get("DD-API-KEY") or (needs_app_key and not headers.get("DD-APPLICATION-KEY")):
            return 401, {"errors": ["Unauthorized"]}, {}
        if headers["DD-API-KEY"] != self.api_key or (needs_app_key and headers["DD-APPLICATION-KEY"] != self.app_key):
            return 403, {"errors": ["Forbidden"]}, {}
        if (method, path) == ("GET", "/api/v1/validate"):
            return 200, {"valid": True}, {}
        if (method, path) == ("GET", "/api/v1/query"):
            return self._v1(params)
        if (method, path) == ("POST", "/api/v2/query/timeseries"):
            return self._v2(body)
        return 404, {"errors": ["Not found"]}, {}

    def _series(self, query: str) -> list[tuple[str | None, list]] | None:
        """[(group tag or None, points)] for ``query``; None when it does not parse."""
        m = QUERY.match(query)
        if not m:
            return None
        filters = {}
        for item in filter(None, m["scope"].split(",")):
            if item == "*":
                continue
            key, _, value = item.partition(":")
            filters[key] = value
        rows = []
        for key, points in self.table.items():
            metric, version = key
            if metric not in (m["metric"], f"{m['agg']}:{m['metric']}"):
                continue
            row_tags = {**self.tags, "version": version}
            if all(row_tags.get(k) == v for k, v in filters.items()):
                rows.append((metric, points))
        # an aggregator-specific row ("p99:metric") wins over the bare metric
        specific = [points for metric, points in rows if ":" in metric]
        chosen = specific or [points for _, points in rows]
        groups: dict[str, list] = {}
        for points in chosen:
            for group, series in (points.items() if isinstance(points, dict) else [("", points)]):
                groups.setdefault(group, []).append(series)
        if m["by"]:
            return [(group, _combine(m["agg"], parts)) for group, parts in sorted(groups.items())]
        everything = [s for parts in groups.values() for s in parts]
        return [(None, _combine(m["agg"], everything))] if everything else []

    def _v1(self, params) -> tuple[int, dict, dict]:
        query, start, end = params.get("query", ""), int(params["from"]), int(params["to"])
        series = self._series(query)
        if series is None:
            return 400, {"errors": [f"Error parsing query: unable to parse {query}: Rule 'scope_expr' didn't match"]}, {}
        out = []
        m = QUERY.match(query)
        interval = int(m["rollup"]) if m["rollup"] else None
        for group, points in series:
            times = _times(start * 1000, end * 1000, len(points), interval)
            out.append({
                "aggr": m["agg"], "display_name": m["metric"], "metric": m["metric"], "expression": query,
                "scope": m["scope"] + (f",{group}" if group else ""), "tag_set": [group] if group else [],
                "start": times[0] if times else start * 1000, "end": times[-1] if times else end * 1000,
                "interval": interval or DEFAULT_INTERVAL, "length": len(points), "query_index": 0, "unit": None,
                "pointlist": [[t, v] for t, v in zip(times, points)],
            })
        return 200, {
            "status": "ok", "res_type": "time_series", "message": "", "error": None, "query": query,
            "from_date": start * 1000, "to_date": end * 1000, "group_by": [], "series": out,
        }, {}

    def _v2(self, body) -> tuple[int, dict, dict]:
        attributes = body["data"]["attributes"]
        query = attributes["queries"][0]["query"]
        series = self._series(query)
        if series is None:
            return 400, {"errors": [f"Error parsing query: unable to parse {query}"]}, {}
        length = max((len(points) for _, points in series), default=0)
        m = QUERY.match(query)
        interval = int(m["rollup"]) if m["rollup"] else (attributes["interval"] // 1000 if attributes.get("interval") else None)
        times = _times(attributes["from"], attributes["to"], length, interval)
        return 200, {"data": {"type": "timeseries_response", "id": "0", "attributes": {
            "series": [{"group_tags": [group] if group else [], "query_index": 0, "unit": None} for group, _ in series],
            "times": times,
            "values": [list(points) for _, points in series],
        }}}, {}


DEFAULT_INTERVAL = 20  # seconds: Datadog's rollup for a window of up to an hour when none is asked for


def _times(start_ms: int, end_ms: int, n: int, interval: int | None = None) -> list[int]:
    """``n`` timestamps (ms) on the ``interval`` (seconds) grid, from the bucket holding the start."""
    step = (interval or DEFAULT_INTERVAL) * 1000
    return [start_ms // step * step + i * step for i in range(n)]


def _combine(agg: str, series: list[list]) -> list:
    """Several series → one, point by point (nulls skipped), the way the aggregator would."""
    if len(series) == 1:
        return list(series[0])
    out = []
    for points in zip(*series):
        present = [p for p in points if p is not None]
        if not present:
            out.append(None)
        elif agg == "sum":
            out.append(sum(present))
        elif agg == "max":
            out.append(max(present))
        elif agg == "min":
            out.append(min(present))
        else:  # avg (and, crudely, percentiles)
            out.append(sum(present) / len(present))
    return out
