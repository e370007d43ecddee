"""The webhook action, against a real local HTTP server."""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from canary_operators.actions import run_action
from canary_operators.endpoint import Endpoint
from canary_operators.exceptions import HookError, HookRefused
from canary_operators.spec import RunConf, WebhookHook

RUN = RunConf(release="web", version="v2", stable_version="v1")


class _Webhook(http.server.BaseHTTPRequestHandler):
    received: list = []
    status = 200
    first: list = []  # statuses answered before ``status``, one per request

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Webhook.received.append((self.path, self.headers.get("Authorization"), body))
        status = _Webhook.first.pop(0) if _Webhook.first else _Webhook.status
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(b"nope" if status >= 300 else b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Webhook.received.clear()
    yield Endpoint(host="127.0.0.1", port=server.server_port, password="hook-token")
    server.shutdown()


def test_webhook_posts_the_release_with_the_connection_token(webhook_server):
    _Webhook.status = 200
    action = WebhookHook(type="webhook", conn_id="hooks", endpoint="/deploy")
    seen = []
    done = run_action(action, "deploy", RUN, lambda conn_id: seen.append(conn_id) or webhook_server)
    assert seen == ["hooks"] and done.endswith("→ 200")
    assert _Webhook.received == [("/deploy", "Bearer hook-token",
                                  {"release": "web", "version": "v2", "stable_version": "v1", "phase": "deploy"})]


def test_webhook_error_status_is_a_hook_error_without_the_token(webhook_server):
    _Webhook.status = 500
    with pytest.raises(HookError, match="answered HTTP 500: nope") as err:
        run_action(WebhookHook(type="webhook", conn_id="h"), "promote", RUN, lambda _: webhook_server)
    assert "hook-token" not in str(err.value)


def test_webhook_rate_limited_is_retried(webhook_server):
    _Webhook.status, _Webhook.first[:] = 200, [429, 429]
    assert run_action(WebhookHook(type="webhook", conn_id="h"), "deploy", RUN, lambda _: webhook_server).endswith("→ 200")
    assert len(_Webhook.received) == 3


def test_webhook_refused_credentials_say_so(webhook_server):
    _Webhook.status = 401
    with pytest.raises(HookRefused, match=r"deploy webhook http://127\.0\.0\.1:\d+/ refused the credentials \(HTTP 401\): nope"):
        run_action(WebhookHook(type="webhook", conn_id="h"), "deploy", RUN, lambda _: webhook_server)


@pytest.mark.parametrize("status, retried", [(400, False), (422, False), (403, False), (500, True), (503, True)])
def test_only_what_a_retry_may_fix_is_left_to_airflow_retries(webhook_server, status, retried):
    _Webhook.status = status
    with pytest.raises(HookError) as err:
        run_action(WebhookHook(type="webhook", conn_id="h"), "deploy", RUN, lambda _: webhook_server)
    assert isinstance(err.value, HookRefused) is not retried  # HookRefused: the operator fails at once


def test_webhook_unreachable():
    from tests.conftest import free_port

    dead = Endpoint(host="127.0.0.1", port=free_port())
    with pytest.raises(HookError, match="unreachable"):
        run_action(WebhookHook(type="webhook", conn_id="h", timeout=1), "deploy", RUN, lambda _: dead)
