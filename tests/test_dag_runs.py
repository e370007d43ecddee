"""Full DAG runs through Airflow against the real demo stack: HAProxy, Prometheus, two services.

Each test builds a DAG from a spec, runs it with ``dag.test()``, and asserts the run's state, the
task states and the traffic split read from HAProxy itself.
"""

from __future__ import annotations

import re

import http.server
import json
import threading
import time
from contextlib import contextmanager

import pytest
import requests

import yaml

from canary_operators.spec import parse_spec
from tests.conftest import ADMIN_TOKEN, ROOT, set_connection, xcom


def spec_for(name: str, **changes):
    data = {
        "name": name,
        "stable_version": "v1",
        "router": {"type": "haproxy", "conn_id": "t_haproxy", "settings": {"backend": "app"}},
        "metrics": {"type": "prometheus", "conn_id": "t_prometheus", "settings": {"labels": {"job": "demo"}}},
        "steps": [10, 50, 100],
        "bake_time": "5s",
        "settle_time": "1s",
        "gate_timeout": "40s",
        "poke_interval": "1s",
        "retries": 0,
        "checks": [
            {"name": "errors", "kind": "error_rate", "max_increase_pp": 5, "min_requests": 60},
            {"name": "p99", "kind": "latency", "quantile": 0.99, "max_ratio": 5, "min_requests": 60},
            {"name": "checkouts", "kind": "business", "metric": "checkouts_total", "min_ratio": 0.2, "min_requests": 60},
        ],
        "deploy": {"type": "webhook", "conn_id": "t_canary_admin", "endpoint": "/admin/deploy"},
        "promote": {"type": "webhook", "conn_id": "t_stable_admin", "endpoint": "/admin/deploy"},
    }
    data.update(changes)
    parse_spec(data, f"{name}.yaml")  # fail here, readably, if the test's spec is wrong
    return data


def canary_weight(stack) -> int:
    stable = int(stack.haproxy_command("get weight app/stable").split()[0])
    canary = int(stack.haproxy_command("get weight app/canary").split()[0])
    return round(canary * 100 / (stable + canary))


@contextmanager
def watch_traffic(stack, interval: float = 0.02):
    """Samples (canary weight, stable slot's version) from HAProxy and the stable service while the
    block runs, the weight read first: a sample with the weight at 0 after a promote's routing
    shows the version the stable slot already ran by then."""
    samples: list[tuple[int, str]] = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            try:
                weight = canary_weight(stack)
                samples.append((weight, version_of(stack.stable_url)))
            except Exception:  # noqa: BLE001 - a missed sample is only a gap
                pass
            time.sleep(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join(5)


def version_of(url: str) -> str:
    return requests.get(url + "/version", timeout=2).json()["version"]


def deploy(url: str, version: str) -> None:
    r = requests.post(url + "/admin/deploy", json={"version": version}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=2)
    r.raise_for_status()


@pytest.fixture
def stack(demo_stack, airflow_db, monkeypatch, tmp_path):
    """The shared stack reset to: stable v1 with all traffic, canary v1 with none."""
    demo_stack.haproxy_command("set server app/stable weight 100")
    demo_stack.haproxy_command("set server app/canary weight 0")
    deploy(demo_stack.stable_url, "v1")
    deploy(demo_stack.canary_url, "v1")
    host, admin_port = demo_stack.admin_address
    set_connection(monkeypatch, "t_haproxy", conn_type="generic", host=host, port=admin_port)
    set_connection(monkeypatch, "t_prometheus", conn_type="http", host="127.0.0.1", port=demo_stack.prometheus_port)
    set_connection(monkeypatch, "t_canary_admin", conn_type="http", host="127.0.0.1", port=demo_stack.canary_port, password=ADMIN_TOKEN)
    set_connection(monkeypatch, "t_stable_admin", conn_type="http", host="127.0.0.1", port=demo_stack.stable_port, password=ADMIN_TOKEN)
    # dag.test() loads DAGs from the dags folder, so each test's spec is a real file there.
    monkeypatch.setenv("CANARY_RELEASES_DIR", str(tmp_path))
    demo_stack.releases_dir = tmp_path
    return demo_stack


def status_record(release: str) -> dict | None:
    """The release's status record as the run left it, read from Airflow's database."""
    from airflow.models import Variable as VariableRow
    from airflow.utils.session import create_session

    from canary_operators.status import status_variable

    with create_session() as session:
        row = session.query(VariableRow).filter_by(key=status_variable(release)).one_or_none()
        return None if row is None else json.loads(row.val)


def run(spec: dict, conf: dict, releases_dir):
    from airflow.dag_processing.dagbag import DagBag

    (releases_dir / f"{spec['name']}.yaml").write_text(yaml.safe_dump(spec))
    bag = DagBag(str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags[f"canary_{spec['name']}"]
    dag_run = dag.test(run_conf=conf)
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    return dag_run, states


def test_healthy_canary_is_promoted_step_by_step(stack):
    with watch_traffic(stack) as samples:
        dag_run, states = run(spec_for("t_promote"), {"version": "v2"}, stack.releases_dir)
    assert dag_run.state == "success", states
    # the undo is a teardown: it runs, and after a promotion it does nothing
    assert states["rollback"] == "success"
    assert xcom(dag_run, "rollback")["traffic_changed"] is False and xcom(dag_run, "rollback")["promoted"] is True
    assert states["approve_100"] == "success" and xcom(dag_run, "approve_100")["asked"] is False  # nobody asked for approval
    assert all(states[t] == "success" for t in ("preflight", "deploy_canary", "shift_to_10", "gate_10", "shift_to_50", "gate_50", "promote", "complete_rollout"))
    # promoted: stable slot runs v2 and takes all traffic, canary slot is back to 0%
    assert version_of(stack.stable_url) == "v2"
    assert canary_weight(stack) == 0
    # Flagger's order: the canary slot never takes 100%; it kept its last weight until the stable
    # slot ran v2, and only then did traffic go back to the (new) stable slot
    weights = [w for w, _ in samples]
    assert 50 in weights and max(weights) == 50, sorted(set(weights))
    after_50 = samples[max(i for i, (w, _) in enumerate(samples) if w == 50) + 1:]
    assert after_50 and all(v == "v2" for w, v in after_50 if w == 0), after_50[:5]
    status = status_record("t_promote")
    assert status["phase"] == "promoted" and status["run_id"] == dag_run.run_id and status["weight"] == 0
    assert xcom(dag_run, "shift_to_50")["weight"] == 50
    gate = xcom(dag_run, "gate_10")
    assert gate["outcome"] == "advance" and {c["check"] for c in gate["checks"]} == {"errors", "p99", "checkouts", "sample_ratio"}
    # an earlier gate may advance with a check still inconclusive if its estimate looks fine;
    # the last gate before promotion needs every check to pass
    assert all(c["verdict"] in ("pass", "inconclusive") and c["canary_requests"] >= 60 for c in gate["checks"])
    last = xcom(dag_run, "gate_50")
    assert last["last_gate"] is True and all(c["verdict"] == "pass" for c in last["checks"])
    srm = next(c for c in gate["checks"] if c["check"] == "sample_ratio")
    # HAProxy's split is exact; one look's share also carries the two arms' scrape lag (7.4% seen
    # on a loaded machine), so this asks for ~10%, not for the tolerance the judge applies.
    assert 0.06 < srm["canary_value"] < 0.14
    assert xcom(dag_run, "complete_rollout")["version"] == "v2"
    assert re.fullmatch(r"PROMOTED v2 in (\d+ s|\d+m\d\ds|\d+h\d\dm)", note_of(dag_run)), note_of(dag_run)  # the listener's


def note_of(dag_run) -> str | None:
    """The run's note as the database holds it (set by the plugin's listener when the run ended)."""
    from sqlalchemy import select

    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        return session.scalar(select(DagRun).where(DagRun.dag_id == dag_run.dag_id, DagRun.run_id == dag_run.run_id)).note


def test_faulty_canary_is_rolled_back_at_the_first_gate(stack):
    spec = spec_for("t_rollback", checks=[{"name": "errors", "kind": "error_rate", "max_increase_pp": 5, "min_requests": 60}])
    dag_run, states = run(spec, {"version": "broken"}, stack.releases_dir)  # catalog: 30% 5xx
    assert dag_run.state == "failed", states
    assert states["gate_10"] == "failed"
    assert states["rollback"] == "success"
    assert states["shift_to_50"] == "upstream_failed" and states["promote"] == "upstream_failed"
    assert canary_weight(stack) == 0
    assert version_of(stack.stable_url) == "v1"
    fast = xcom(dag_run, "gate_10", "fast_rollback")
    assert fast["weight_after"] == 0 and fast["seconds_to_stable"] < 1.0
    rollback = xcom(dag_run, "rollback")
    assert rollback["canary_weight"] == 0
    assert "gate_10" in rollback["reason"] and "error rate" in rollback["reason"]
    evidence = xcom(dag_run, "gate_10", "evidence")
    assert evidence["outcome"] == "rollback" and evidence["checks"][0]["verdict"] == "fail"
    looks = xcom(dag_run, "gate_10", "looks")  # the per-look record, kept by the trigger across looks
    assert looks["gate"] == "gate_10" and looks["looks"][-1]["outcome"] == "rollback"
    assert looks["looks"][-1]["checks"][0]["observed"]["canary"]["events"] > 0 and "errors" in looks["queries"]
    assert re.fullmatch(r"ROLLED BACK broken at 10% after \d+ s: errors \d+\.\d\d% vs \d\.\d\d% \(\+\d+\.\d\d pp > 5 pp\)",
                        note_of(dag_run)), note_of(dag_run)


def test_no_data_is_never_a_pass_the_gate_times_out_and_rolls_back(stack):
    spec = spec_for("t_nodata", gate_timeout="6s",
                    metrics={"type": "prometheus", "conn_id": "t_prometheus", "settings": {"labels": {"job": "nothing-here"}}})
    dag_run, states = run(spec, {"version": "v2"}, stack.releases_dir)
    assert dag_run.state == "failed"
    assert states["gate_10"] == "failed" and states["rollback"] == "success"
    assert "no_data at the gate timeout" in xcom(dag_run, "rollback")["reason"]
    assert canary_weight(stack) == 0


class _PrometheusThatDies(http.server.BaseHTTPRequestHandler):
    """Answers the preflight's ``vector(1)``, then 503 for every real query: a backend going down."""

    def do_GET(self):
        ok = "vector%281%29" in self.path or "vector(1)" in self.path
        self.send_response(200 if ok else 503)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        body = {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, "1"]}]}}
        self.wfile.write(json.dumps(body).encode() if ok else b"down")

    def log_message(self, *args):
        pass


def test_metrics_backend_down_during_the_gate_rolls_back(stack, monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PrometheusThatDies)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        set_connection(monkeypatch, "t_prometheus", conn_type="http", host="127.0.0.1", port=server.server_port)
        dag_run, states = run(spec_for("t_promdown", max_provider_outage="3s"), {"version": "v2"}, stack.releases_dir)
    finally:
        server.shutdown()
    assert dag_run.state == "failed"
    assert states["gate_10"] == "failed" and states["rollback"] == "success"
    assert "answered HTTP 503 (down for" in xcom(dag_run, "rollback")["reason"]
    assert canary_weight(stack) == 0


def test_traffic_api_down_fails_preflight_and_moves_nothing(stack, monkeypatch):
    from tests.conftest import free_port

    set_connection(monkeypatch, "t_haproxy", conn_type="generic", host="127.0.0.1", port=free_port())
    dag_run, states = run(spec_for("t_routerdown"), {"version": "v2"}, stack.releases_dir)
    assert dag_run.state == "failed"
    assert states["preflight"] == "failed"
    assert states["rollback"] == "success"  # ran, and left traffic alone: preflight moved nothing
    rollback = xcom(dag_run, "rollback")
    assert rollback["traffic_changed"] is False and "unreachable" in rollback["reason"]
    assert version_of(stack.canary_url) == "v1"  # nothing was deployed


def test_conf_that_breaks_the_param_schema_is_refused_before_any_task(stack):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match="param version"):
        run(spec_for("t_badparam"), {"version": 'v2"} or vector(1)'}, stack.releases_dir)
    assert canary_weight(stack) == 0


def test_bad_conf_fails_preflight_naming_the_key(stack):
    dag_run, states = run(spec_for("t_badconf"), {"version": "v2", "colour": "red"}, stack.releases_dir)
    assert dag_run.state == "failed" and states["preflight"] == "failed"
    assert "conf.colour: unknown key" in xcom(dag_run, "rollback")["reason"]
    assert canary_weight(stack) == 0


def test_version_already_stable_is_skipped_not_failed(stack):
    dag_run, states = run(spec_for("t_same"), {"version": "v1"}, stack.releases_dir)
    assert states["preflight"] == "skipped"
    assert dag_run.state == "success"
    assert canary_weight(stack) == 0


def test_broken_routing_is_caught_by_the_sample_ratio_check(stack):
    # The spec swaps the servers: "10% to the canary" really sends 90% to it.
    swapped = {"type": "haproxy", "conn_id": "t_haproxy",
               "settings": {"backend": "app", "stable_server": "canary", "canary_server": "stable"}}
    # Seen through the swapped spec, the canary already takes 100%: no safe start, nothing moves.
    dag_run, states = run(spec_for("t_srm", router=swapped), {"version": "v2"}, stack.releases_dir)
    assert dag_run.state == "failed" and states["preflight"] == "failed", states
    assert states["deploy_canary"] == "upstream_failed" and states["rollback"] == "success"
    assert xcom(dag_run, "rollback")["traffic_changed"] is False
    assert "canary at 100%" in xcom(dag_run, "rollback")["reason"] and "force_reset" in xcom(dag_run, "rollback")["reason"]
    assert canary_weight(stack) == 0 and version_of(stack.canary_url) == "v1"  # HAProxy untouched, nothing deployed
    # force_reset puts "the canary" (really the stable server) to 0% first; the gate then catches the swap.
    # (A wrong split must last confirm_seconds, 30 s by default; 5 s keeps this test short.)
    dag_run, states = run(spec_for("t_srm", router=swapped, sample_ratio={"confirm_seconds": "5s"}),
                          {"version": "v2", "force_reset": True}, stack.releases_dir)
    assert dag_run.state == "failed" and states["preflight"] == "success" and states["gate_10"] == "failed", states
    evidence = xcom(dag_run, "gate_10", "evidence")
    srm = next(c for c in evidence["checks"] if c["check"] == "sample_ratio")
    assert srm["verdict"] == "fail" and srm["canary_value"] > 0.8
    assert "the routing does not do what was set" in xcom(dag_run, "rollback")["reason"]


def test_dry_run_decides_and_reports_but_moves_nothing(stack):
    dag_run, states = run(spec_for("t_dry"), {"version": "v2", "dry_run": True}, stack.releases_dir)
    assert dag_run.state == "success", states
    assert xcom(dag_run, "shift_to_10")["dry_run"] is True
    assert xcom(dag_run, "gate_10")["dry_run"] is True
    assert xcom(dag_run, "promote")["dry_run"] is True
    assert canary_weight(stack) == 0
    assert version_of(stack.canary_url) == "v1" and version_of(stack.stable_url) == "v1"  # no deploy, no promote


def test_steps_override_skips_steps_and_keeps_the_rest(stack):
    dag_run, states = run(spec_for("t_steps"), {"version": "v2", "steps": [50, 100]}, stack.releases_dir)
    assert dag_run.state == "success", states
    assert xcom(dag_run, "shift_to_10")["skipped"] is True
    assert xcom(dag_run, "gate_10")["outcome"] == "skipped"
    assert xcom(dag_run, "shift_to_50")["weight"] == 50
    assert xcom(dag_run, "gate_50")["outcome"] == "advance"


def test_poke_mode_gates_roll_back_the_same_way(stack):
    spec = spec_for("t_poke", gate_mode="poke", checks=[{"name": "errors", "kind": "error_rate", "max_increase_pp": 5, "min_requests": 60}])
    dag_run, states = run(spec, {"version": "broken"}, stack.releases_dir)
    assert dag_run.state == "failed" and states["gate_10"] == "failed" and states["rollback"] == "success"
    assert xcom(dag_run, "gate_10", "fast_rollback")["seconds_to_stable"] < 1.0
    assert canary_weight(stack) == 0
    assert xcom(dag_run, "gate_10", "looks")["looks"][-1]["outcome"] == "rollback"


def test_a_run_without_version_releases_the_candidate_variable(stack, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_T_CANDIDATE_VERSION", "v2")
    dag_run, states = run(spec_for("t_candidate", candidate_variable="t_candidate_version"), {}, stack.releases_dir)
    assert dag_run.state == "success", states
    assert xcom(dag_run, "preflight")["version"] == "v2"
    assert version_of(stack.stable_url) == "v2"
