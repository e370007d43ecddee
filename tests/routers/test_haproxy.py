"""The HAProxy router against a real HAProxy, through its runtime API (TCP and UNIX sockets)."""

from __future__ import annotations

import socket
import subprocess

import pytest

from canary_operators.endpoint import Endpoint
from canary_operators.exceptions import RouterError, WeightNotApplied
from canary_operators.routers import ROUTERS, router_class
from canary_operators.routers.base import TrafficRouter, Weights
from tests.conftest import free_port, wait_until

CONFIG = """
global
    stats socket ipv4@127.0.0.1:{admin_port} level admin
    stats socket {sock} level admin
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend web
    bind 127.0.0.1:{front_port}
    default_backend app
backend app
    server stable 127.0.0.1:{dead_port} weight 100
    server canary 127.0.0.1:{dead_port} weight 0
    server mirror 127.0.0.1:{dead_port} weight 0
"""


@pytest.fixture(scope="module")
def haproxy(tmp_path_factory):
    work = tmp_path_factory.mktemp("haproxy")
    admin_port, sock = free_port(), work / "admin.sock"
    (work / "haproxy.cfg").write_text(
        CONFIG.format(admin_port=admin_port, sock=sock, front_port=free_port(), dead_port=free_port())
    )
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(work / "haproxy.cfg")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: socket.create_connection(("127.0.0.1", admin_port), 0.5).close() or True, 10, "haproxy admin")
        yield {"tcp": Endpoint(host="127.0.0.1", port=admin_port), "unix": Endpoint(extra={"socket": str(sock)})}
    finally:
        proc.terminate()
        proc.wait(10)


def router(endpoint, **settings):
    return router_class("haproxy")({"backend": "app", **settings}, endpoint)


def raw_weights(endpoint) -> tuple[int, int]:
    servers = router(endpoint)._servers()
    return servers["stable"][0], servers["canary"][0]


@pytest.mark.parametrize("via", ["tcp", "unix"])
def test_apply_sets_both_servers_and_reads_back(haproxy, via):
    r = router(haproxy[via])
    for percent in (1, 5, 25, 50, 100, 0):
        assert r.apply(percent) == percent
        assert raw_weights(haproxy[via]) == (100 - percent, percent)


def test_apply_is_idempotent(haproxy):
    r = router(haproxy["tcp"])
    assert r.apply(25) == 25
    assert r.apply(25) == 25
    assert raw_weights(haproxy["tcp"]) == (75, 25)
    r.apply(0)


def test_unknown_backend_is_a_clear_error(haproxy):
    with pytest.raises(RouterError, match="haproxy: set weight of nope/stable failed: No such backend"):
        router(haproxy["tcp"], backend="nope").apply(10)


def test_unknown_server_is_a_clear_error(haproxy):
    with pytest.raises(RouterError, match="app/ghost failed"):
        router(haproxy["tcp"], canary_server="ghost").apply(10)


def test_admin_socket_down_is_a_router_error():
    with pytest.raises(RouterError, match="unreachable"):
        router(Endpoint(host="127.0.0.1", port=free_port())).get_canary_weight()


def test_connection_without_address_is_a_router_error():
    with pytest.raises(RouterError, match="needs host and port, or extra.socket"):
        router(Endpoint()).get_canary_weight()


def test_both_weights_zero_shows_instead_of_being_rounded_away(haproxy):
    r = router(haproxy["tcp"])
    r._set("stable", 0)
    r._set("canary", 0)
    try:
        assert r.get_weights() == Weights(stable=0, canary=0)
        assert str(r.get_weights()) == "stable 0%, canary 0%"
        assert r.apply(0) == 0  # recovers: stable is set first
        assert r.get_weights() == Weights(stable=100, canary=0)
    finally:
        r._set("stable", 100)


def test_a_third_server_shows_as_elsewhere_and_fails_the_read_back(haproxy):
    r = router(haproxy["tcp"])
    r._set("mirror", 25)
    try:
        assert r.get_weights() == Weights(stable=80, canary=0, other=20)
        with pytest.raises(WeightNotApplied, match="reads back stable 72%, canary 8%, elsewhere 20%"):
            r.apply(10)
    finally:
        r._set("mirror", 0)
        r.apply(0)


def test_verify_asks_the_data_plane_a_server_in_maintenance_takes_nothing(haproxy):
    r = router(haproxy["tcp"])
    assert r.apply_verified(10).verified is True
    r._command("disable server app/canary")  # maintenance: weight 10 kept, no traffic
    try:
        assert r.get_weights() == Weights(stable=90, canary=10)  # what was set
        assert r.verify(10) is False and r.verify(0) is True
        with pytest.raises(WeightNotApplied, match="the data plane does not route 10% to the canary"):
            r.apply(10)
    finally:
        r._command("enable server app/canary")
        r.apply(0)


def test_registry_fails_loudly_and_lists_valid_names():
    assert "haproxy" in ROUTERS
    with pytest.raises(ValueError, match="unknown router type 'traefik'; valid: " + ", ".join(sorted(ROUTERS))):
        router_class("traefik")


class _StuckRouter(TrafficRouter):
    """A fake whose weight never changes, like a load balancer that ignores writes."""

    type_name = "stuck"
    settings_model = type(router(Endpoint()).settings)

    def set_canary_weight(self, percent):
        pass

    def get_canary_weight(self):
        return 7


def test_apply_fails_when_the_weight_does_not_take():
    with pytest.raises(WeightNotApplied, match="set canary weight 50% but it reads back stable 93%, canary 7%"):
        _StuckRouter({"backend": "app"}, None).apply(50)


def test_apply_rejects_non_percentages():
    with pytest.raises(RouterError, match="not a percentage"):
        _StuckRouter({"backend": "app"}, None).apply(101)
