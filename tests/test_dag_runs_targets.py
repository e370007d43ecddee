"""One release across two targets, end to end: two HAProxy backends (eu, us) with two demo services
each and one Prometheus (tests/targets_stack.py), DAG runs through Airflow (``dag.test()``).

The fault is in one target only: version ``v6`` is healthy on eu's services and answers 30% 5xx on
us's (each target's services read their own build catalog), as a bad config in one region would.
"""

from __future__ import annotations

import json

import pytest
import yaml

from canary_operators.spec import parse_spec
from tests.conftest import ADMIN_TOKEN, ROOT, set_connection, xcom
from tests.targets_stack import TARGETS, targets_stack

FAULTY_IN_US = "v6"


@pytest.fixture(scope="module")
def two_targets(tmp_path_factory):
    work = tmp_path_factory.mktemp("targets-stack")
    catalog = (ROOT / "include" / "demo" / "versions.yaml").read_text()
    with targets_stack(work, catalogs={
        "eu": catalog,  # v6 is not listed: it behaves like the default, healthy build
        "us": catalog + f"\n{FAULTY_IN_US}: {{error_rate: 0.30, latency_ms: 3, checkout_rate: 0.10}}\n",
    }) as stack:
        yield stack


@pytest.fixture
def stack(two_targets, airflow_db, monkeypatch, tmp_path):
    two_targets.reset()
    set_connection(monkeypatch, "t_tg_haproxy", conn_type="generic", host="127.0.0.1", port=two_targets.admin_port)
    set_connection(monkeypatch, "t_tg_prometheus", conn_type="http", host="127.0.0.1", port=two_targets.prometheus_port)
    for t in TARGETS:
        for slot in ("stable", "canary"):
            set_connection(monkeypatch, f"t_tg_{t}_{slot}", conn_type="http", host="127.0.0.1",
                           port=two_targets.ports[t][slot], password=ADMIN_TOKEN)
    monkeypatch.setenv("CANARY_RELEASES_DIR", str(tmp_path))
    two_targets.releases_dir = tmp_path
    return two_targets


def target(name: str) -> dict:
    return {
        "name": name,
        "router": {"type": "haproxy", "conn_id": "t_tg_haproxy", "settings": {"backend": name}},
        "metrics": {"type": "prometheus", "conn_id": "t_tg_prometheus", "settings": {"labels": {"job": name}}},
        "deploy": {"type": "webhook", "conn_id": f"t_tg_{name}_canary", "endpoint": "/admin/deploy"},
        "promote": {"type": "webhook", "conn_id": f"t_tg_{name}_stable", "endpoint": "/admin/deploy"},
    }


def spec_for(name: str, **changes) -> dict:
    data = {
        "name": name,
        "stable_version": "v1",
        "steps": [20, 100],
        "bake_time": "4s",
        "settle_time": "1s",
        "gate_timeout": "40s",
        "poke_interval": "1s",
        "retries": 0,
        "plan": "off",
        "checks": [{"name": "errors", "kind": "error_rate", "max_increase_pp": 5, "min_requests": 40}],
        "targets": [target("eu"), target("us")],
    }
    data.update(changes)
    parse_spec(data, f"{name}.yaml")  # fail here, readably, if the test's spec is wrong
    return data


def run(spec: dict, conf: dict, releases_dir):
    from airflow.dag_processing.dagbag import DagBag

    (releases_dir / f"{spec['name']}.yaml").write_text(yaml.safe_dump(spec))
    bag = DagBag(str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    dag_run = bag.dags[f"canary_{spec['name']}"].test(run_conf=conf)
    return dag_run, {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


def record(release: str) -> dict | None:
    from airflow.models import Variable as VariableRow
    from airflow.utils.session import create_session

    from canary_operators.status import status_variable

    with create_session() as session:
        row = session.query(VariableRow).filter_by(key=status_variable(release)).one_or_none()
        return None if row is None else json.loads(row.val)


def variable(key: str) -> str | None:
    from airflow.models import Variable as VariableRow
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.query(VariableRow).filter_by(key=key).one_or_none()
        return None if row is None else row.val


def test_lockstep_promotes_both_targets_each_judged_on_its_own_data(stack):
    dag_run, states = run(spec_for("tg_lock_ok"), {"version": "v2"}, stack.releases_dir)
    assert dag_run.state == "success", states
    assert states["abort_all"] == "skipped"
    for t in TARGETS:
        assert all(states[f"{t}.{task}"] == "success" for task in ("preflight", "shift_to_20", "gate_20", "promote",
                                                                   "rollback", "complete_rollout")), states
        assert stack.canary_weight(t) == 0 and stack.version(t, "stable") == "v2"
        status = record(f"tg_lock_ok__{t}")
        assert status["phase"] == "promoted" and status["run_id"] == dag_run.run_id and status["weight"] == 0
        assert status["dag_id"] == "canary_tg_lock_ok"  # the guard asks the release's DAG about the run
        # each gate judged its own target's series: job="eu" or job="us" in its queries
        gate = xcom(dag_run, f"{t}.gate_20")
        assert gate["outcome"] == "advance"
        errors = next(c for c in gate["checks"] if c["check"] == "errors")
        assert f'job="{t}"' in errors["canary_query"] and errors["canary_requests"] >= 40
        split = next(c for c in gate["checks"] if c["check"] == "sample_ratio")
        assert 0.15 < split["canary_value"] < 0.25  # HAProxy sent ~20% of this target's traffic to its canary
    assert variable("canary_stable_version__tg_lock_ok__eu") == "v2"


def test_lockstep_with_a_fault_in_one_target_rolls_both_back(stack):
    dag_run, states = run(spec_for("tg_lock_bad"), {"version": FAULTY_IN_US}, stack.releases_dir)
    assert dag_run.state == "failed", states
    assert states["us.gate_20"] == "failed"
    assert states["abort_all"] == "success"
    aborted = xcom(dag_run, "abort_all")
    assert "us.gate_20" in aborted["reason"] and aborted["targets"]["eu"]["action"] == "stop"
    for t in TARGETS:
        assert states[f"{t}.promote"] in ("upstream_failed", "skipped"), states
        assert states[f"{t}.rollback"] == "success" and states[f"{t}.complete_rollout"] == "failed"
        assert stack.canary_weight(t) == 0 and stack.version(t, "stable") == "v1"
        status = record(f"tg_lock_bad__{t}")
        assert status["phase"] == "rolled_back" and status["weight"] == 0, status
        # the healthy target's undo names the failure in the other target
        assert "us.gate_20" in xcom(dag_run, f"{t}.rollback")["reason"]


def test_waves_abort_wave_rolls_back_only_the_failing_wave(stack):
    spec = spec_for("tg_waves_wave", strategy="waves", abort="wave")
    dag_run, states = run(spec, {"version": FAULTY_IN_US}, stack.releases_dir)
    assert dag_run.state == "failed", states
    assert states["eu.promote"] == "success" and states["eu.complete_rollout"] == "success"
    assert states["us.gate_20"] == "failed" and states["us.complete_rollout"] == "failed"
    assert states["abort_wave_1"] == "skipped" and states["abort_wave_2"] == "success"
    assert xcom(dag_run, "abort_wave_2")["targets"] == {"us": xcom(dag_run, "abort_wave_2")["targets"]["us"]}
    # eu, the first wave, stays promoted; us is back on its stable v1
    assert record("tg_waves_wave__eu")["phase"] == "promoted" and stack.version("eu", "stable") == FAULTY_IN_US
    assert record("tg_waves_wave__us")["phase"] == "rolled_back" and stack.version("us", "stable") == "v1"
    assert stack.canary_weight("eu") == 0 and stack.canary_weight("us") == 0


def test_waves_abort_all_also_undoes_the_promoted_first_wave(stack):
    spec = spec_for("tg_waves_all", strategy="waves", abort="all")
    dag_run, states = run(spec, {"version": FAULTY_IN_US}, stack.releases_dir)
    assert dag_run.state == "failed", states
    assert states["eu.promote"] == "success" and states["us.gate_20"] == "failed"
    assert states["abort_wave_2"] == "success"
    assert xcom(dag_run, "abort_wave_2")["targets"]["eu"]["action"] == "unpromote"
    # eu was promoted, then put back: its stable slot runs v1 again, and it is recorded so
    eu = record("tg_waves_all__eu")
    assert eu["phase"] == "rolled_back" and eu["weight"] == 0, eu
    assert xcom(dag_run, "eu.rollback")["restored_stable"]  # the promote action, with the previous version
    assert states["eu.complete_rollout"] == "failed"
    assert variable("canary_stable_version__tg_waves_all__eu") == "v1"
    for t in TARGETS:
        assert stack.version(t, "stable") == "v1" and stack.canary_weight(t) == 0


# -- the guard: a two-target release left half-way ------------------------------------------------

GONE_RUN = "ci__v2__gone"


@pytest.mark.parametrize("eu_phase, eu_weight, broken", [("promoted", 0, False), ("gating", 20, False), ("gating", 20, True)],
                         ids=["eu-promoted", "eu-mid-way", "spec-file-broken"])
def test_the_guard_reconciles_a_two_target_release_left_half_way(stack, in_task, eu_phase, eu_weight, broken):
    """The run that owned both targets is gone (deleted) with us at 20%, and eu either promoted or
    also at 20%: canary_guard's sweep, one task per target, puts every canary still above 0% back
    on stable and records it per target, and leaves a promoted target alone. When the spec file
    broke meanwhile, the one sweep of the file finds the targets the run recorded at preflight and
    guards each with the spec its record carries."""
    from airflow.sdk import Variable

    from canary_operators.dag_factory import GUARD_DAG_ID, build_dags
    from canary_operators.operators.guard_release import GuardRelease
    from canary_operators.operators.target_preflight import targets_variable
    from canary_operators.spec.targets import target_releases
    from canary_operators.status import ReleaseStatus, read_status, write_status
    from tests.fakes import FakeTI, fake_context

    spec = spec_for("tg_guard")
    (stack.releases_dir / "tg_guard.yaml").write_text(yaml.safe_dump(spec))
    released = target_releases(parse_spec(spec, "tg_guard.yaml"))
    for t, phase, weight in (("eu", eu_phase, eu_weight), ("us", "gating", 20)):
        stack.haproxy(f"set server {t}/stable weight {100 - weight}")
        stack.haproxy(f"set server {t}/canary weight {weight}")
        write_status(ReleaseStatus(release=f"tg_guard__{t}", phase=phase, run_id=GONE_RUN, dag_id="canary_tg_guard",
                                   version="v2", stable_version="v1", weight=weight, decision=f"{t}: as the run left it",
                                   spec=released[t].model_dump(mode="json")))
    Variable.set(targets_variable("tg_guard"), ["eu", "us"], serialize_json=True)  # as each target's preflight writes it
    if broken:
        (stack.releases_dir / "tg_guard.yaml").write_text("name: tg_guard\nsteps: [5, 120, 100]\n")

    sweeps = [kw for kw in build_dags(stack.releases_dir, only_dag_id=GUARD_DAG_ID)[GUARD_DAG_ID]
              .get_task("reconcile").expand_input.value if kw["release_name"].startswith("tg_guard")]
    if broken:  # the file's one sweep, by the records' specs
        assert [kw["release_name"] for kw in sweeps] == ["tg_guard"]
        swept = GuardRelease(task_id="reconcile", **sweeps[0]).execute(fake_context("scheduled__guard", FakeTI(runs={})))
        results = {r["release"]: r for r in swept["targets"]}
    else:
        assert [kw["release_name"] for kw in sweeps] == ["tg_guard__eu", "tg_guard__us"]  # one sweep per target
        results = {kw["release_name"]: GuardRelease(task_id="reconcile", **kw).execute(fake_context("scheduled__guard", FakeTI(runs={})))
                   for kw in sweeps}

    assert results["tg_guard__us"]["acted"] is True and stack.canary_weight("us") == 0
    us = read_status("tg_guard__us")
    assert us.phase == "rolled_back" and us.weight == 0 and us.decision.startswith("guard: canary at 20%")
    assert stack.canary_weight("eu") == 0
    if eu_phase == "promoted":
        assert results["tg_guard__eu"]["acted"] is False and read_status("tg_guard__eu").phase == "promoted"
    else:
        assert results["tg_guard__eu"]["acted"] is True and read_status("tg_guard__eu").phase == "rolled_back"
    # safe to sweep twice
    again = [GuardRelease(task_id="reconcile", **kw).execute(fake_context("scheduled__guard", FakeTI(runs={}))) for kw in sweeps]
    assert not any(r["acted"] for r in again)
    Variable.delete(targets_variable("tg_guard"))
