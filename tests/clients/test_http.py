"""The one HTTP client: auth kinds, timeouts, the status mapping, HTTP 429, and no secret in any error."""

from __future__ import annotations

import base64
import http.server
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate

import pytest
import requests

from canary_operators.clients.http import HttpClient, HttpError, RateLimit, Refused, Rejected, Unavailable, retry_after
from canary_operators.endpoint import Endpoint
from tests.clients.fake_http import FakeTransport, answer
from tests.conftest import serve_http

TOKEN, PASSWORD, API_KEY, APP_KEY = "tok-3f9a1c", "pw-77c2e8", "api-51d0aa", "app-9be4f1"
OK = answer(200, {"ok": True})


def client(endpoint=None, handler=lambda request: OK, **kwargs) -> tuple[HttpClient, FakeTransport, list]:
    """A client on the fake transport; its waits are recorded in the returned list, not slept."""
    waits: list[float] = []
    http = HttpClient(endpoint or Endpoint(host="metrics.example", port=9090, password=TOKEN), name="svc",
                      timeout=kwargs.pop("timeout", 5.0), sleep=waits.append, **kwargs)
    return http, FakeTransport(handler).mount(http), waits


def sequence(*answers):
    """A handler giving ``answers`` in turn, the last one from then on."""
    left = list(answers)
    return lambda request: left.pop(0) if len(left) > 1 else left[0]


# -- auth, timeout, reuse ---------------------------------------------------------------------------

def test_a_password_alone_is_a_bearer_token():
    http, fake, _ = client()
    assert http.json("GET", "/api/v1/query", params={"query": "up"}) == {"ok": True}
    [(request, kwargs)] = fake.sent
    assert request.url == "http://metrics.example:9090/api/v1/query?query=up"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}" and kwargs["timeout"] == 5.0


def test_a_login_is_basic_auth():
    http, fake, _ = client(Endpoint(host="https://hooks.example", login="deployer", password=PASSWORD))
    http.request("POST", "/deploy", json={"phase": "deploy"})
    [(request, _)] = fake.sent
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(f"deployer:{PASSWORD}".encode()).decode()
    assert request.body == b'{"phase": "deploy"}' and request.headers["Content-Type"] == "application/json"


def test_api_key_headers_replace_the_password_and_a_call_may_leave_one_out():
    endpoint = Endpoint(host="api.datadoghq.com", password=API_KEY, extra={"application_key": APP_KEY})
    http, fake, _ = client(endpoint, api_key_headers={"DD-API-KEY": API_KEY, "DD-APPLICATION-KEY": APP_KEY},
                           default_scheme="https")
    http.request("GET", "/api/v2/query")
    http.request("GET", "/api/v1/validate", headers={"DD-APPLICATION-KEY": None})
    (first, _), (second, _) = fake.sent
    assert first.url.startswith("https://api.datadoghq.com/")
    assert (first.headers["DD-API-KEY"], first.headers["DD-APPLICATION-KEY"]) == (API_KEY, APP_KEY)
    assert "Authorization" not in first.headers
    assert second.headers["DD-API-KEY"] == API_KEY and "DD-APPLICATION-KEY" not in second.headers


def test_no_credentials_no_auth_header_and_a_call_may_set_its_timeout():
    http, fake, _ = client(Endpoint(host="metrics.example"))
    http.request("GET", "/", timeout=1.5)
    [(request, kwargs)] = fake.sent
    assert "Authorization" not in request.headers and kwargs["timeout"] == 1.5


def test_one_session_for_the_clients_life():
    http, fake, _ = client()
    session = http.session
    http.request("GET", "/a")
    http.request("GET", "/b")
    assert http.session is session and len(fake.sent) == 2
    with http:
        pass  # closing is safe, and closes the session's adapters


# -- one session per (connection, process) ----------------------------------------------------------

class _CountingServer(http.server.BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1; counts the TCP connections it accepts (one handler per connection)
    and the requests in flight at once."""

    protocol_version = "HTTP/1.1"
    connections = in_flight = peak = 0
    delay = 0.0
    auth: list = []
    lock = threading.Lock()

    def setup(self):
        super().setup()
        with self.lock:
            type(self).connections += 1

    def do_GET(self):
        cls = type(self)
        with cls.lock:
            cls.in_flight += 1
            cls.peak = max(cls.peak, cls.in_flight)
            cls.auth.append(self.headers.get("Authorization"))
        time.sleep(cls.delay)
        with cls.lock:
            cls.in_flight -= 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "11")
        self.end_headers()
        self.wfile.write(b'{"ok":true}')

    def log_message(self, *args):
        pass


@pytest.fixture
def counting_server():
    handler = type("Counting", (_CountingServer,), {"connections": 0, "in_flight": 0, "peak": 0, "auth": [],
                                                    "lock": threading.Lock()})
    with serve_http(handler) as port:
        yield handler, port


def look(endpoint, shared=True, **kwargs) -> HttpClient:
    """A provider's client, as one look builds it."""
    return HttpClient(endpoint, name="prometheus", timeout=5.0, shared=shared, **kwargs)


def test_shared_clients_reuse_the_processes_connections_across_looks(counting_server):
    handler, port = counting_server
    endpoint = Endpoint(host="127.0.0.1", port=port, password=TOKEN)
    for _ in range(5):  # five looks, each with its own client, three queries each
        http = look(endpoint)
        for _ in range(3):
            assert http.json("GET", "/api/v1/query") == {"ok": True}
        http.close()  # a shared session outlives its client
    assert handler.connections == 1
    assert handler.auth == [f"Bearer {TOKEN}"] * 15


def test_unshared_clients_open_their_own_connections(counting_server):
    handler, port = counting_server
    for _ in range(3):
        with look(Endpoint(host="127.0.0.1", port=port), shared=False) as http:
            http.request("GET", "/")
    assert handler.connections == 3


def test_other_credentials_get_another_session(counting_server):
    handler, port = counting_server
    a, b = look(Endpoint(host="127.0.0.1", port=port, password="a")), look(Endpoint(host="127.0.0.1", port=port, login="u", password="b"))
    assert a.session is not b.session and a.session is look(Endpoint(host="127.0.0.1", port=port, password="a")).session
    a.request("GET", "/")
    b.request("GET", "/")
    assert handler.auth == ["Bearer a", "Basic " + base64.b64encode(b"u:b").decode()]


def test_a_shared_session_keeps_at_most_its_pool_of_connections(counting_server, monkeypatch):
    """Threads beyond the pool wait for a connection instead of opening more."""
    import canary_operators.clients.http as http_module

    handler, port = counting_server
    handler.delay = 0.05
    monkeypatch.setattr(http_module, "POOL_SIZE", 3)
    http = look(Endpoint(host="127.0.0.1", port=port, schema="http", login="pool-test"))
    with ThreadPoolExecutor(max_workers=12) as threads:
        assert list(threads.map(lambda _: http.json("GET", "/"), range(36))) == [{"ok": True}] * 36
    assert handler.peak == 3 and handler.connections == 3


# -- the status mapping ------------------------------------------------------------------------------

@pytest.mark.parametrize("status, kind, reason", [
    (500, Unavailable, "answered HTTP 500"), (503, Unavailable, "answered HTTP 503"), (408, Unavailable, "answered HTTP 408"),
    (401, Refused, r"refused the credentials \(HTTP 401\)"), (403, Refused, r"refused the credentials \(HTTP 403\)"),
    (400, Rejected, "answered HTTP 400"), (422, Rejected, "answered HTTP 422"), (404, HttpError, "answered HTTP 404"),
])
def test_status_mapping(status, kind, reason):
    http, fake, waits = client(handler=lambda request: answer(status, {"error": "why"}))
    with pytest.raises(HttpError, match=rf"^svc at http://metrics\.example:9090 {reason}$") as err:
        http.request("GET", "/q")
    assert type(err.value) is kind and err.value.status == status
    assert err.value.body_json() == {"error": "why"}
    assert len(fake.sent) == 1 and waits == []  # only 429 is retried


@pytest.mark.parametrize("failure", [requests.ConnectTimeout, requests.ReadTimeout, requests.ConnectionError])
def test_timeouts_and_connection_errors_are_unavailable(failure):
    def handler(request):
        raise failure(f"cannot reach {request.url}")

    http, _, _ = client(handler=handler)
    with pytest.raises(Unavailable, match=rf"^svc at http://metrics\.example:9090 unreachable: {failure.__name__}$") as err:
        http.request("GET", "/q")
    assert err.value.status is None and err.value.body == ""


def test_a_2xx_without_json_is_an_error_when_json_was_asked_for():
    http, _, _ = client(handler=lambda request: answer(200, "<html>login</html>"))
    assert http.request("GET", "/").text == "<html>login</html>"
    with pytest.raises(HttpError, match="answered HTTP 200 without JSON") as err:
        http.json("GET", "/")
    assert type(err.value) is HttpError and err.value.body == "<html>login</html>"


# -- HTTP 429 -----------------------------------------------------------------------------------------

def test_429_waits_what_retry_after_asks_then_answers():
    http, fake, waits = client(handler=sequence(answer(429, headers={"Retry-After": "3"}),
                                                answer(429, headers={"Retry-After": "3"}), OK))
    assert http.json("GET", "/q") == {"ok": True}
    assert waits == [3.0, 3.0] and len(fake.sent) == 3


def test_429_without_retry_after_backs_off_then_is_unavailable():
    http, fake, waits = client(handler=lambda request: answer(429), rate_limit=RateLimit(attempts=4, max_wait=1.5))
    with pytest.raises(Unavailable, match=r"^svc at \S+ is rate limiting \(HTTP 429\); gave up after 4 attempts$") as err:
        http.request("GET", "/q")
    assert waits == [0.5, 1.0, 1.5] and len(fake.sent) == 4 and err.value.status == 429


def test_datadogs_reset_header_is_honoured_and_capped():
    http, _, waits = client(handler=lambda request: answer(429, headers={"X-RateLimit-Reset": "3600"}),
                            rate_limit=RateLimit(attempts=3, max_wait=5))
    with pytest.raises(Unavailable, match="the limit resets in 3600s; gave up after 3 attempts"):
        http.request("GET", "/q")
    assert waits == [5.0, 5.0]


def test_a_deadline_starts_no_wait_that_would_pass_it():
    http, fake, waits = client(handler=lambda request: answer(429, headers={"Retry-After": "60"}),
                               rate_limit=RateLimit(attempts=None, deadline=0.5, max_wait=2.0))
    with pytest.raises(Unavailable, match=r"gave up after 1 attempt within 0.5s$"):
        http.request("GET", "/q")
    assert waits == [] and len(fake.sent) == 1


def test_retry_after_reads_seconds_and_dates():
    assert retry_after("3") == 3.0 and retry_after(None) is None and retry_after("soon") is None
    assert 5 < retry_after(formatdate(time.time() + 10, usegmt=True)) <= 10


# -- secrets ------------------------------------------------------------------------------------------

ENDPOINTS = {  # name: (endpoint, client arguments, the secrets it holds)
    "bearer": (Endpoint(host="metrics.example", password=TOKEN), {}, [TOKEN]),
    "basic": (Endpoint(host="metrics.example", login="deployer", password=PASSWORD), {},
              [PASSWORD, f"deployer:{PASSWORD}"]),
    "userinfo": (Endpoint(host=f"http://metrics:{PASSWORD}@metrics.example"), {}, [PASSWORD]),
    "api keys": (Endpoint(host="api.example", password=API_KEY, extra={"application_key": APP_KEY}),
                 {"api_key_headers": {"DD-API-KEY": API_KEY, "DD-APPLICATION-KEY": APP_KEY}}, [API_KEY, APP_KEY]),
}


@pytest.mark.parametrize("name", list(ENDPOINTS))
@pytest.mark.parametrize("status", [None, 400, 401, 404, 429, 500])
def test_no_secret_reaches_an_error(name, status):
    """The backend echoes the URL, every header it got and the endpoint's secrets: none reaches the error."""
    endpoint, kwargs, secrets = ENDPOINTS[name]

    def handler(request):
        echoed = f"{request.url} {dict(request.headers)} {' '.join(secrets)}"
        if status is None:
            raise requests.ConnectionError(echoed)
        return answer(status, {"error": echoed}, {"Retry-After": "0"})

    http, _, _ = client(endpoint, handler, **kwargs)
    with pytest.raises(HttpError) as err:
        http.request("GET", "/q")
    e = err.value
    for text in (str(e), repr(e), e.reason, e.body, e.where, repr(http)):
        for secret in secrets:
            assert secret not in text, f"{name}, HTTP {status}: {text}"
    if status is not None:
        assert "***" in e.body  # the answer is still quoted, with the credentials blanked
