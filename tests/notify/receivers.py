"""Local receivers for notification tests: an HTTP server that records what is POSTed (a Slack
incoming webhook, a generic webhook), and an SMTP server (aiosmtpd) that records the mails."""

from __future__ import annotations

import contextlib
import http.server
import json

from tests.conftest import serve_http


@contextlib.contextmanager
def http_receiver(status: int = 200, body: bytes = b"ok"):
    """Yields (port, received): every request's path, headers and JSON body."""
    received: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(data or b"null")})
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    with serve_http(Handler) as port:
        yield port, received


@contextlib.contextmanager
def smtp_receiver():
    """Yields (port, messages): each accepted mail as an ``email.message.Message``."""
    import email

    from aiosmtpd.controller import Controller

    from tests.conftest import free_port

    messages: list = []

    class Recorder:
        async def handle_DATA(self, server, session, envelope):
            msg = email.message_from_bytes(envelope.content)
            msg["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
            messages.append(msg)
            return "250 OK"

    port = free_port()
    controller = Controller(Recorder(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, messages
    finally:
        controller.stop()
