"""The judge's cleaning on the real demo stack (HAProxy, two services, Prometheus scraping every
second, load), through gate looks built as the operators build them:

- a scrape gap on the stable arm across the step's window start is no verdict about routing: the
  split is counted from the first look that saw both arms, so the requests the gap hid cancel out,
  and the first looks' skew must last `confirm_seconds`. (Counted from the window's start with
  `confirm_seconds: 0`, the first looks read "canary served 30.55% … at weight 10%" and rolled back.)
- a canary that has traffic but no series (its metrics under another version label) is caught.
"""

from __future__ import annotations

import time

import requests

from canary_operators.judge import Outcome
from canary_operators.operators.common import build_router
from canary_operators.operators.gate_evaluation import SPLIT_FAILING, evaluate_gate
from canary_operators.spec import RunConf, parse_spec
from tests.conftest import ADMIN_TOKEN, set_connection


def _spec(**changes):
    data = {"name": "web", "router": {"type": "haproxy", "conn_id": "rm_haproxy",
                                      "settings": {"backend": "app", "stable_server": "stable", "canary_server": "canary"}},
            "metrics": {"type": "prometheus", "conn_id": "rm_prometheus", "settings": {"labels": {"job": "demo"}}},
            "steps": [10, 100], "settle_time": "2s", "bake_time": "5s", "poke_interval": "2s",
            "checks": [{"name": "errors", "kind": "error_rate", "max_increase_pp": 5, "min_requests": 100}],
            "deploy": {"type": "command", "command": ["true"]}, "promote": {"type": "command", "command": ["true"]}}
    data.update(changes)
    return parse_spec(data, "web.yaml")


def _admin(url: str, path: str, body: dict) -> None:
    answer = requests.post(url + path, json=body, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=5)
    answer.raise_for_status()


def _connect(monkeypatch, stack):
    """Connections to the shared stack, with v1 in the stable slot and v2 in the canary slot
    (other tests on this stack may have promoted or broken something)."""
    _admin(stack.stable_url, "/admin/deploy", {"version": "v1"})
    _admin(stack.canary_url, "/admin/deploy", {"version": "v2"})
    host, admin_port = stack.admin_address
    set_connection(monkeypatch, "rm_haproxy", conn_type="generic", host=host, port=admin_port)
    set_connection(monkeypatch, "rm_prometheus", conn_type="http", host="127.0.0.1", port=stack.prometheus_port)


def _looks(spec, run, seconds: float, memory: dict) -> list:
    shifted_at = time.time()
    looks = []
    while time.time() - shifted_at < seconds:
        look = evaluate_gate(spec, run, 10, shifted_at, memory)
        looks.append(look)
        if look.outcome is Outcome.ROLLBACK:
            break
        time.sleep(2)
    return looks


def _split(look) -> dict:
    return next(c for c in look.evidence["checks"] if c["check"] == "sample_ratio")


def test_a_scrape_gap_at_the_window_start_is_not_a_routing_verdict(demo_stack, monkeypatch):
    _connect(monkeypatch, demo_stack)
    # confirm_seconds 10 s rather than 30 s keeps the test short: the skew the gap leaves in the
    # step's cumulative counts lasts ~30 s, so counting them would fail this within 20 s.
    spec, run = _spec(sample_ratio={"confirm_seconds": "10s"}), RunConf(release="web", version="v2", stable_version="v1")
    router = build_router(spec, run)
    try:
        router.apply(10)
        # The stable arm's /metrics answers 503 across the step's window start, Prometheus up.
        _admin(demo_stack.stable_url, "/admin/metrics-outage", {"seconds": 6})
        looks = _looks(spec, run, 15, {})
    finally:
        router.apply(0)
    outcomes = [(round(look.evidence["elapsed_seconds"]), look.outcome.value, _split(look)["verdict"]) for look in looks
                if "checks" in look.evidence and any(c["check"] == "sample_ratio" for c in look.evidence["checks"])]
    assert all(look.outcome is not Outcome.ROLLBACK for look in looks), [look.reason for look in looks][-1]
    assert outcomes and outcomes[-1][2] == "pass", outcomes  # the split was judged, and is right


def test_a_canary_with_traffic_but_no_series_is_caught(demo_stack, monkeypatch):
    _connect(monkeypatch, demo_stack)
    # The release names v9, but the canary reports its metrics as v2: to the gate, it has no series.
    spec = _spec(sample_ratio={"confirm_seconds": "4s"})
    run = RunConf(release="web", version="v9", stable_version="v1")
    router = build_router(spec, run)
    memory: dict = {}
    try:
        router.apply(10)
        looks = _looks(spec, run, 40, memory)
    finally:
        router.apply(0)
    last = looks[-1]
    assert last.outcome is Outcome.ROLLBACK, [look.reason for look in looks]
    assert "no request series at all while it has 10% of traffic" in last.reason
    assert "wrong version label, or the canary is not scraped" in last.reason
    assert last.evidence["elapsed_seconds"] < 60 and SPLIT_FAILING in memory


def test_the_metrics_outage_endpoint_needs_the_admin_token(demo_stack):
    url = demo_stack.stable_url + "/admin/metrics-outage"
    assert requests.post(url, json={"seconds": 5}, timeout=5).status_code == 401
    assert requests.post(url, json={"seconds": 5}, headers={"Authorization": "Bearer wrong"}, timeout=5).status_code == 401
    bad = requests.post(url, json={"seconds": -1}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=5)
    assert bad.status_code == 400
    assert requests.get(demo_stack.stable_url + "/metrics", timeout=5).status_code == 200
