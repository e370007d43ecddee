"""The HAProxy runtime-API client: what it raises when the socket is not there (the router tests
run it against a real HAProxy)."""

from __future__ import annotations

import pytest

from canary_operators.clients.haproxy import HAProxyRuntimeApi
from canary_operators.endpoint import Endpoint
from canary_operators.exceptions import RouterError, RouterRefused
from tests.conftest import free_port


def test_a_connection_without_an_address_is_refused_for_good():
    with pytest.raises(RouterRefused, match="needs host and port, or extra.socket"):
        HAProxyRuntimeApi(Endpoint(), 1.0).command("show info")


def test_an_unreachable_socket_may_be_retried():
    with pytest.raises(RouterError, match="unreachable") as raised:
        HAProxyRuntimeApi(Endpoint(host="127.0.0.1", port=free_port()), 1.0).command("show info")
    assert not isinstance(raised.value, RouterRefused)
    with pytest.raises(RouterError) as raised:
        HAProxyRuntimeApi(Endpoint(extra={"socket": "/nonexistent/admin.sock"}), 1.0).command("show info")
    assert "unreachable" in str(raised.value)
