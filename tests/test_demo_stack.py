"""End-to-end tests of the local demo stack (HAProxy + 2 services + Prometheus + loadgen).

Needs the haproxy and prometheus binaries; starts real processes on free ports.
Runs in about 20 s.
"""
from __future__ import annotations

import importlib.util
import os
import socket
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "test-admin-token"


def _load_stack_module():
    """Import include/demo/stack.py by path (no dependence on sys.path or a conftest)."""
    name = "demo_stack_under_test"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "include" / "demo" / "stack.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


stack_mod = _load_stack_module()


def _new_stack(workdir: Path, rps: int):
    ports = stack_mod.free_ports(5)
    return stack_mod.DemoStack(
        workdir=workdir,
        frontend_port=ports[0],
        admin_port=ports[1],
        stable_port=ports[2],
        canary_port=ports[3],
        prometheus_port=ports[4],
        admin_token=TOKEN,
        stable_version="v1",
        canary_version="v1",
        rps=rps,
        loadgen=True,
    )


@pytest.fixture(scope="module")
def http():
    with requests.Session() as s:
        s.trust_env = False  # never send 127.0.0.1 traffic through a proxy from the environment
        yield s


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    st = _new_stack(tmp_path_factory.mktemp("demo"), rps=200)
    with st:
        yield st


def _requests_total(http, base_url: str) -> float:
    """Sum of every http_requests_total sample on a service's /metrics page."""
    text = http.get(f"{base_url}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("http_requests_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _set_weights(stack, stable: int, canary: int) -> None:
    for server, weight in (("stable", stable), ("canary", canary)):
        answer = stack.haproxy_command(f"set server app/{server} weight {weight}")
        assert answer.strip() == "", f"HAProxy refused weight {weight} for {server}: {answer!r}"


def test_haproxy_runtime_weights(stack, http):
    try:
        _set_weights(stack, stable=50, canary=50)
        answer = stack.haproxy_command("get weight app/canary")
        assert int(answer.split()[0]) == 50, answer
        assert int(stack.haproxy_command("get weight app/stable").split()[0]) == 50

        # and the split really changed: the canary now gets traffic
        before = _requests_total(http, stack.canary_url)
        time.sleep(1.0)
        assert _requests_total(http, stack.canary_url) - before > 20
    finally:
        _set_weights(stack, stable=100, canary=0)
    assert int(stack.haproxy_command("get weight app/canary").split()[0]) == 0


def test_canary_weight_zero_gets_no_traffic(stack, http):
    _set_weights(stack, stable=100, canary=0)
    time.sleep(0.3)  # let requests already routed to the canary finish
    canary_before = _requests_total(http, stack.canary_url)
    stable_before = _requests_total(http, stack.stable_url)
    time.sleep(2.0)
    assert _requests_total(http, stack.canary_url) == canary_before
    # not vacuous: traffic was flowing to the stable server meanwhile (200 rps)
    assert _requests_total(http, stack.stable_url) - stable_before > 200


def test_admin_deploy_requires_token(stack, http):
    url = f"{stack.canary_url}/admin/deploy"
    body = {"version": "v2", "release_id": "ignored"}
    before = http.get(f"{stack.canary_url}/version", timeout=5).json()
    assert before["version"] != "v2"

    assert http.post(url, json=body, timeout=5).status_code == 401
    r = http.post(url, json=body, headers={"Authorization": "Bearer wrong-token"}, timeout=5)
    assert r.status_code == 401
    r = http.post(url, json=body, headers={"Authorization": TOKEN}, timeout=5)  # no "Bearer"
    assert r.status_code == 401
    assert http.get(f"{stack.canary_url}/version", timeout=5).json() == before  # unchanged

    auth = {"Authorization": f"Bearer {TOKEN}"}
    for bad in ("../etc", "", "-v2", "v" * 65, 42):
        r = http.post(url, json={"version": bad}, headers=auth, timeout=5)
        assert r.status_code == 400, bad

    r = http.post(url, json=body, headers=auth, timeout=5)
    assert r.status_code == 200
    assert r.json() == {"version": "v2", "track": "canary"}
    assert http.get(f"{stack.canary_url}/version", timeout=5).json() == {"version": "v2", "track": "canary"}
    # the stable instance was not touched
    assert http.get(f"{stack.stable_url}/version", timeout=5).json() == {"version": "v1", "track": "stable"}


def test_prometheus_has_per_version_series(stack, http):
    r = http.post(f"{stack.canary_url}/admin/deploy", json={"version": "v3"},
                  headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert r.status_code == 200
    _set_weights(stack, stable=50, canary=50)
    try:
        wanted = {("v1", "stable"), ("v3", "canary")}
        deadline = time.monotonic() + 15
        seen: dict = {}
        while time.monotonic() < deadline:
            resp = http.get(f"{stack.prometheus_url}/api/v1/query",
                            params={"query": "sum by (version, track) (http_requests_total)"}, timeout=5)
            assert resp.status_code == 200
            doc = resp.json()
            assert doc["status"] == "success"
            seen = {(s["metric"]["version"], s["metric"]["track"]): float(s["value"][1])
                    for s in doc["data"]["result"]}
            if all(seen.get(key, 0) > 0 for key in wanted):
                break
            time.sleep(0.5)
        assert all(seen.get(key, 0) > 0 for key in wanted), seen
        # every series carries the version label, and the stable one is the bulk of traffic
        assert seen[("v1", "stable")] > seen[("v3", "canary")]
    finally:
        _set_weights(stack, stable=100, canary=0)


def test_busy_port_fails_fast(stack, tmp_path):
    ports = stack_mod.free_ports(4)
    st = stack_mod.DemoStack(
        workdir=tmp_path, frontend_port=stack.frontend_port, admin_port=ports[0],
        stable_port=ports[1], canary_port=ports[2], prometheus_port=ports[3], admin_token=TOKEN)
    t0 = time.monotonic()
    with pytest.raises(stack_mod.StackError, match=str(stack.frontend_port)):
        st.start()
    assert time.monotonic() - t0 < 2
    assert st.processes == {}


def test_stop_leaves_no_process_and_frees_ports(tmp_path):
    st = _new_stack(tmp_path / "stop", rps=100)
    st.start()
    try:
        procs = dict(st.processes)
        assert set(procs) == {"stable", "canary", "haproxy", "prometheus", "loadgen"}
        assert all(p.poll() is None for p in procs.values())
        ports = [st.frontend_port, st.admin_port, st.stable_port, st.canary_port, st.prometheus_port]
    finally:
        st.stop()

    for name, proc in procs.items():
        assert proc.poll() is not None, f"{name} still running"
        with pytest.raises(ProcessLookupError):
            os.killpg(proc.pid, 0)  # nothing left in the child's process group either
    for port in ports:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        assert stack_mod.port_is_free(port), port
    # the load generator stopped cleanly and wrote its one-line summary
    summary = (st.workdir / "loadgen.log").read_text().strip().splitlines()
    assert len(summary) == 1 and summary[0].startswith("loadgen: "), summary
    st.stop()  # idempotent
