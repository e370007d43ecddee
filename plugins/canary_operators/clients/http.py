"""One HTTP client per endpoint, for Prometheus, Datadog and webhooks: a ``requests.Session`` with
the connection's auth and a timeout, one status mapping, HTTP 429 retried, every message scrubbed.

Errors, drawn once::

    HttpError          another answer outside 2xx (404, 409...), or a 2xx without the JSON asked for
    ├── Unavailable    unreachable, timed out, 5xx, 408, or 429 past the rate-limit budget: retry later
    ├── Refused        401/403: the credentials are refused; retrying cannot fix it
    └── Rejected       400/422: the request is wrong; retrying cannot fix it

Each error carries ``status`` (None when no answer came), ``reason`` (``answered HTTP 503``...),
``body`` (the answer's text, scrubbed whole, so it may be quoted or cut) and ``where`` (the base
URL, scrubbed); its message is ``"<name> at <where> <reason>"``. Callers map them to their own
errors (``BackendUnavailable``/``MetricsError``, ``HookError``).

Auth from the connection (``Endpoint``): ``api_key_headers`` when given (Datadog's ``DD-API-KEY``);
else a login is basic auth; else a password is ``Authorization: Bearer``. A host's ``user:pass@``
is sent as basic auth by requests itself. A request may drop a session header by passing it as None.

Connections: with ``shared=True`` (the metrics providers, built anew for every look) the session
is the process's one for that base URL and those credentials (``shared_session``): its
connections are kept open across looks and gates, at most ``POOL_SIZE`` per host, and a thread
that finds them all busy waits for one rather than opening more. ``requests`` sessions are used
from several threads here only for plain requests; nothing mounts or changes a shared session.

The I/O seam is the session's transport: tests mount a ``requests`` adapter on ``client.session``
(``tests/clients/fake_http.py``), so no server is needed.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from canary_operators.clients.retrying import retrying
from canary_operators.endpoint import Endpoint
from canary_operators.secrets import scrub, secrets_of


class HttpError(Exception):
    """An answer outside 2xx that is none of the kinds below, or a 2xx without the JSON asked for."""

    def __init__(self, message: str, *, status: int | None = None, reason: str = "", body: str = "", where: str = ""):
        super().__init__(message)
        self.status, self.reason, self.body, self.where = status, reason or message, body, where

    def body_json(self) -> Any:
        """The answer's body parsed as JSON (scrubbed); None when it is not JSON."""
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None


class Unavailable(HttpError):
    """Unreachable, timed out, 5xx, 408, or still rate limited (429) after the budget: retry later."""


class Refused(HttpError):
    """HTTP 401/403: the credentials are refused."""


class Rejected(HttpError):
    """HTTP 400/422: the server rejected the request itself."""


@dataclass(frozen=True)
class RateLimit:
    """How HTTP 429 is retried: ``attempts`` tries in all and/or until ``deadline`` seconds (no wait
    starts that would pass it). Each wait is what the server asks (``Retry-After``, else Datadog's
    ``X-RateLimit-Reset``), else ``first_wait`` doubling per try; never more than ``max_wait``."""

    attempts: int | None = 3
    deadline: float | None = None
    max_wait: float = 10.0
    first_wait: float = 0.5


class _RateLimited(Exception):
    def __init__(self, asked: float | None, body: str):
        self.asked, self.body = asked, body


def retry_after(header: str | None) -> float | None:
    """A ``Retry-After`` header (seconds or an HTTP date) → seconds from now; None if absent or unreadable."""
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        return max(0.0, parsedate_to_datetime(header).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def asked_wait(headers) -> float | None:
    """How long a 429 answer asks to wait: ``Retry-After``, else ``X-RateLimit-Reset`` in seconds (Datadog)."""
    asked = retry_after(headers.get("Retry-After"))
    if asked is None:
        reset = (headers.get("X-RateLimit-Reset") or "").strip()
        asked = float(reset) if reset.isdigit() else None
    return asked


POOL_SIZE = 32  # connections kept per host by a shared session; more threads than this wait for one
_shared: dict[tuple, Any] = {}
_shared_lock = threading.Lock()


def _new_session(endpoint: Endpoint, api_key_headers: dict[str, str] | None, pool_size: int | None = None,
                 base: str | None = None):
    import requests

    session = requests.Session()
    if pool_size:
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, pool_block=True)
        for prefix in ("http://", "https://"):
            session.mount(prefix, adapter)
        # The environment's proxies and CA bundle, read once rather than at every request (a
        # quarter of a request's CPU); credentials come from the connection, never from ~/.netrc.
        session.proxies.update(requests.utils.get_environ_proxies(base or ""))
        session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        session.trust_env = False
    if api_key_headers:
        session.headers.update(api_key_headers)
    elif endpoint.login:
        session.auth = (endpoint.login, endpoint.password or "")
    elif endpoint.password:
        session.headers["Authorization"] = f"Bearer {endpoint.password}"
    return session


def shared_session(endpoint: Endpoint, base: str, api_key_headers: dict[str, str] | None = None):
    """The process's session for ``base`` with these credentials (kept in memory only, never shown)."""
    key = (base, endpoint.login, endpoint.password, tuple(sorted((api_key_headers or {}).items())))
    with _shared_lock:
        if key not in _shared:
            _shared[key] = _new_session(endpoint, api_key_headers, POOL_SIZE, base)
        return _shared[key]


class HttpClient:
    """One endpoint's API, its session kept (and its connections reused) for the client's life, or
    for the process's with ``shared=True``. Calls are as idempotent as the requests made; only 429
    (nothing was done) is retried."""

    def __init__(self, endpoint: Endpoint, *, name: str, timeout: float, api_key_headers: dict[str, str] | None = None,
                 rate_limit: RateLimit = RateLimit(), default_scheme: str = "http",
                 sleep: Callable[[float], None] | None = None, shared: bool = False):
        self.name, self.timeout, self.rate_limit, self.sleep, self.shared = name, timeout, rate_limit, sleep, shared
        self.base = endpoint.base_url(default_scheme)
        self._secrets = secrets_of(endpoint) | {v for v in (api_key_headers or {}).values() if v}
        self.where = scrub(self.base, self._secrets)  # a host may carry user:password@
        self.session = (shared_session(endpoint, self.base, api_key_headers) if shared
                        else _new_session(endpoint, api_key_headers))

    def __repr__(self) -> str:
        return f"HttpClient({self.name!r} at {self.where!r})"

    def close(self) -> None:
        if not self.shared:  # a shared session outlives its clients
            self.session.close()

    def __enter__(self) -> "HttpClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def scrub(self, text: object) -> str:
        """``text`` with this endpoint's secrets (and any credential) blanked: for messages that quote answers."""
        return scrub(str(text), self._secrets)

    def error(self, kind: type[HttpError], reason: str, status: int | None = None, body: str = "") -> HttpError:
        return kind(self.scrub(f"{self.name} at {self.where} {reason}"), status=status, reason=self.scrub(reason),
                    body=self.scrub(body), where=self.where)

    # -- calls ------------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs):
        """One call (``requests`` keyword arguments) → its 2xx ``Response``; an ``HttpError`` otherwise."""
        rl, tries = self.rate_limit, []

        def once():
            tries.append(1)
            response = self._send(method, path, **kwargs)
            if response.status_code == 429:
                raise _RateLimited(asked_wait(response.headers), response.text)
            return response

        def wait(state) -> float:
            asked = state.outcome.exception().asked
            return min(rl.max_wait, asked if asked is not None else rl.first_wait * 2 ** (state.attempt_number - 1))

        stop = None
        if rl.deadline is not None:  # no wait starts that would pass the deadline
            from tenacity import stop_after_attempt, stop_before_delay

            stop = stop_before_delay(rl.deadline)
            if rl.attempts is not None:
                stop = stop | stop_after_attempt(rl.attempts)
        try:
            response = retrying(retry_on=_RateLimited, attempts=rl.attempts, stop=stop, wait=wait,
                                sleep=self.sleep)(once)
        except _RateLimited as e:
            resets = f"; the limit resets in {round(e.asked, 1):g}s" if e.asked is not None else ""
            gave_up = f"; gave up after {len(tries)} attempt{'s' if len(tries) > 1 else ''}"
            within = f" within {rl.deadline:g}s" if rl.deadline is not None else ""
            raise self.error(Unavailable, f"is rate limiting (HTTP 429){resets}{gave_up}{within}", 429,
                             e.body) from None
        self._raise_for(response)
        return response

    def json(self, method: str, path: str, **kwargs) -> Any:
        """``request``, then the answer's JSON body; ``HttpError`` when a 2xx answer is not JSON."""
        response = self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise self.error(HttpError, f"answered HTTP {response.status_code} without JSON", response.status_code,
                             response.text) from None

    def _send(self, method: str, path: str, **kwargs):
        import requests

        kwargs.setdefault("timeout", self.timeout)
        try:
            return self.session.request(method, self.base + path, **kwargs)
        except requests.RequestException as e:  # its text may quote the URL: only its kind is shown
            raise self.error(Unavailable, f"unreachable: {type(e).__name__}") from None

    def _raise_for(self, response) -> None:
        code = response.status_code
        if code < 300:
            return
        if code >= 500 or code == 408:
            kind, reason = Unavailable, f"answered HTTP {code}"
        elif code in (401, 403):
            kind, reason = Refused, f"refused the credentials (HTTP {code})"
        else:
            kind, reason = (Rejected if code in (400, 422) else HttpError), f"answered HTTP {code}"
        raise self.error(kind, reason, code, response.text)
