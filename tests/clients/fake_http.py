"""A tiny fake transport for ``clients.http``: a ``requests`` adapter that answers from a handler.

Mount it on a client's session (``FakeTransport(handler).mount(client)``); ``handler(request)``
gets the ``PreparedRequest`` and returns ``answer(...)`` or raises (``requests.ConnectTimeout``...).
Every request is kept in ``sent``, with the keyword arguments the adapter got (``timeout``).
"""

from __future__ import annotations

import json
from typing import Callable

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict


def answer(status: int = 200, body=None, headers: dict | None = None) -> tuple[int, bytes, dict]:
    """An answer: a dict or list body is sent as JSON, a str as text."""
    if isinstance(body, (dict, list)):
        data, headers = json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})}
    else:
        data = (body or "").encode()
    return status, data, headers or {}


class FakeTransport(BaseAdapter):
    def __init__(self, handler: Callable[[requests.PreparedRequest], tuple[int, bytes, dict]]):
        super().__init__()
        self.handler = handler
        self.sent: list[tuple[requests.PreparedRequest, dict]] = []

    def mount(self, client) -> "FakeTransport":
        for prefix in ("http://", "https://"):
            client.session.mount(prefix, self)
        return self

    def send(self, request, **kwargs):
        self.sent.append((request, kwargs))
        status, data, headers = self.handler(request)
        response = requests.Response()
        response.status_code, response._content, response.url, response.request = status, data, request.url, request
        response.headers = CaseInsensitiveDict(headers)
        response.encoding = "utf-8"
        return response

    def close(self):
        pass
