"""Deploy/promote/rollback actions: commands and webhooks, against a real local HTTP server."""

from __future__ import annotations

import http.server
import json
import sys
import threading

import pytest

from canary_operators.actions import run_action
from canary_operators.endpoint import Endpoint
from canary_operators.exceptions import HookError
from canary_operators.spec import CommandHook, RunConf, WebhookHook

RUN = RunConf(release="web", version="v2", stable_version="v1")


def test_command_gets_the_versions_as_arguments_and_environment(tmp_path):
    out = tmp_path / "out.txt"
    script = f"import os,sys; open({str(out)!r},'w').write(' '.join(sys.argv[1:]) + ' ' + os.environ['CANARY_VERSION'])"
    action = CommandHook(type="command", command=[sys.executable, "-c", script, "{release}", "{version}", "{stable_version}"])
    assert run_action(action, "deploy", RUN, lambda _: None).startswith("ran ")
    assert out.read_text() == "web v2 v1 v2"


def test_failing_command_says_why():
    action = CommandHook(type="command", command=[sys.executable, "-c", "import sys; print('image not found', file=sys.stderr); sys.exit(3)"])
    with pytest.raises(HookError, match="deploy command .* exited 3: image not found"):
        run_action(action, "deploy", RUN, lambda _: None)


def test_missing_command_and_timeout():
    with pytest.raises(HookError, match="command not found: no-such-binary-here"):
        run_action(CommandHook(type="command", command=["no-such-binary-here"]), "deploy", RUN, lambda _: None)
    slow = CommandHook(type="command", command=[sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.5)
    with pytest.raises(HookError, match="timed out after 0.5s"):
        run_action(slow, "promote", RUN, lambda _: None)


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
    with pytest.raises(HookError, match=r"deploy webhook http://127\.0\.0\.1:\d+/ refused the credentials \(HTTP 401\): nope"):
        run_action(WebhookHook(type="webhook", conn_id="h"), "deploy", RUN, lambda _: webhook_server)


def test_webhook_unreachable():
    from tests.conftest import free_port

    dead = Endpoint(host="127.0.0.1", port=free_port())
    with pytest.raises(HookError, match="unreachable"):
        run_action(WebhookHook(type="webhook", conn_id="h", timeout=1), "deploy", RUN, lambda _: dead)
