"""One gate look against a metrics backend that fails: an outage is measured in time, a rejected
query follows the check's ``on_error`` policy. The provider is built the way the operators build it,
and talks HTTP to a local stand-in. A gate times out at the planner's timeout when it has one."""

from __future__ import annotations

import http.server
import json
import time

import pytest

from canary_operators.judge import Outcome
from canary_operators.measurement import ArmSample, Measurement
from canary_operators.operators.gate_evaluation import evaluate_gate
from canary_operators.spec import RunConf, parse_spec
from tests.conftest import free_port, serve_http, set_connection
from tests.planner.web_release import spec_with

RUN = RunConf(release="web", version="v2", stable_version="v1")


class _Prometheus(http.server.BaseHTTPRequestHandler):
    status = 400  # set per test

    def do_GET(self):
        body = {"status": "error", "errorType": "bad_data", "error": "parse error at char 5"}
        data = json.dumps(body).encode()
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def prometheus(monkeypatch):
    class Handler(_Prometheus):
        pass

    with serve_http(Handler) as port:
        set_connection(monkeypatch, "looks_prometheus", conn_type="http", host="127.0.0.1", port=port)
        set_connection(monkeypatch, "looks_haproxy", conn_type="generic", host="127.0.0.1", port=free_port())
        yield Handler


def _spec(on_error="rollback", **changes):
    data = {"name": "web", "router": {"type": "haproxy", "conn_id": "looks_haproxy", "settings": {"backend": "web"}},
            "metrics": {"type": "prometheus", "conn_id": "looks_prometheus"}, "steps": [10, 100],
            "sample_ratio": {"enabled": False}, "settle_time": "1s", "bake_time": "2s",
            "checks": [{"name": "errors", "kind": "error_rate", "on_error": on_error}],
            "deploy": {"type": "command", "command": ["true"]}, "promote": {"type": "command", "command": ["true"]}}
    data.update(changes)
    return parse_spec(data, "web.yaml")


def test_a_rejected_query_rolls_back_by_default_through_on_error(prometheus):
    look = evaluate_gate(_spec(), RUN, 10, time.time() - 30, {})
    assert look.outcome is Outcome.ROLLBACK
    assert "errors: error by on_error: metrics backend error: the query was rejected" in look.reason


def test_a_rejected_query_of_an_ignored_check_does_not_roll_back(prometheus):
    look = evaluate_gate(_spec(on_error="ignore"), RUN, 10, time.time() - 30, {})
    assert look.outcome is not Outcome.ROLLBACK
    assert look.evidence["checks"][0]["verdict"] == "ignored"


def test_an_outage_is_measured_in_time_not_looks(prometheus):
    prometheus.status = 503
    memory: dict[str, float] = {}
    spec = _spec(max_provider_outage="60s")
    for _ in range(5):  # five fast looks in a row: still within the outage allowance
        assert evaluate_gate(spec, RUN, 10, time.time() - 30, memory).outcome is Outcome.HOLD
    memory["errors"] = time.time() - 61  # the same outage, a minute later
    look = evaluate_gate(spec, RUN, 10, time.time() - 30, memory)
    assert look.outcome is Outcome.ROLLBACK and "(down for 61s)" in look.reason


def test_the_split_is_counted_from_the_first_look_that_saw_both_arms():
    from canary_operators.measurement import ArmSample, Measurement
    from canary_operators.operators.gate_evaluation import since_reference

    def step(canary, baseline):
        return Measurement("split", ArmSample(None, canary, "c"), ArmSample(None, baseline, "b"), 10)

    memory: dict = {}
    assert since_reference(step(90, 0), memory, 200) == step(90, 0) and memory == {}  # the stable arm not seen yet
    first = since_reference(step(100, 400), memory, 200)  # a gap hid ~5 s of stable requests: 20% "served"
    assert first == step(100, 400)  # nothing counted since the reference yet: the step's counts, held by confirm_seconds
    later = since_reference(step(400, 3_100), memory, 200)  # the same hidden loss is in both readings
    assert (later.canary.requests, later.baseline.requests) == (300, 2_700)  # 10%, as routed
    no_series = since_reference(step(None, 5_000), memory, 200)
    assert no_series.canary.requests is None and no_series.baseline.requests == 5_000


# -- the gate uses the planned timeout -----------------------------------------------------------

def test_evaluate_gate_times_out_at_the_planned_value(monkeypatch):
    from canary_operators.operators import gate_evaluation

    thin = lambda check, scope: Measurement(check.name, ArmSample(0.0, 10.0, "c", events=0.0),  # noqa: E731
                                            ArmSample(0.01, 5000.0, "b", events=50.0), scope.window_seconds)
    monkeypatch.setattr(gate_evaluation, "build_provider", lambda release, run: type("P", (), {"measure": staticmethod(thin)})())
    spec = spec_with(checks=[{"name": "errors", "kind": "error_rate"}], sample_ratio={"enabled": False})
    shifted = time.time() - 1000  # past the spec's 900 s, within a planned 1,800 s
    assert gate_evaluation.evaluate_gate(spec, RUN, 50, shifted, {}).outcome is Outcome.ROLLBACK
    look = gate_evaluation.evaluate_gate(spec, RUN, 50, shifted, {}, gate_timeout=1800.0)
    assert look.outcome is Outcome.HOLD and "needs 100" in look.reason


# -- a late reset (a cancelled trigger's on_kill) ------------------------------------------------

@pytest.mark.parametrize(("owner", "reset"), [
    ("old_run", True),   # still this run's: back to stable
    (None, True),        # no record: back to stable
    ("new_run", False),  # another run started since: its canary is not this run's to touch
])
def test_a_late_reset_leaves_a_canary_another_run_owns_now(in_task, monkeypatch, owner, reset):
    from canary_operators.operators import gate_evaluation
    from canary_operators.status import ReleaseStatus, write_status
    from tests.fakes import FakeRouter

    router = FakeRouter(weight=10)
    monkeypatch.setattr(gate_evaluation, "build_router", lambda release, run=None: router)
    if owner:
        write_status(ReleaseStatus(release="web", phase="gating", run_id=owner, dag_id="canary_web",
                                   version="v2", stable_version="v1", weight=10))
    record = gate_evaluation.reset_to_stable(_spec(), RUN, 10, "gate_10: stopped by a user action",
                                             run_id="old_run", stale=True)
    assert router.weight == (0 if reset else 10), record
    assert ("skipped" in record) is (not reset)


def test_a_late_reset_that_cannot_read_the_record_resets(in_task, monkeypatch):
    from canary_operators.operators import gate_evaluation
    from canary_operators import status
    from tests.fakes import FakeRouter

    router = FakeRouter(weight=10)
    monkeypatch.setattr(gate_evaluation, "build_router", lambda release, run=None: router)
    monkeypatch.setattr(status, "read_status", lambda name: (_ for _ in ()).throw(RuntimeError("api-server down")))
    gate_evaluation.reset_to_stable(_spec(), RUN, 10, "gate_10: stopped", run_id="old_run", stale=True)
    assert router.weight == 0
