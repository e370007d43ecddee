"""DAG structure for every spec in include/releases/, and import errors for bad specs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "include" / "releases").glob("*.yaml"))


def dagbag(releases_dir: Path | None = None, monkeypatch=None):
    from airflow.dag_processing.dagbag import DagBag

    if releases_dir is not None:
        monkeypatch.setenv("CANARY_RELEASES_DIR", str(releases_dir))
    return DagBag(str(ROOT / "dags"))


@pytest.fixture(scope="module")
def bag():
    return dagbag()


def test_every_spec_gives_one_dag_and_no_import_errors(bag):
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {f"canary_{p.stem}" for p in SPECS}


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_dag_shape(bag, path):
    from airflow.sdk import TriggerRule

    from canary_operators.spec import load_spec

    spec = load_spec(path)
    dag = bag.dags[spec.dag_id]
    main_path = ["preflight"] + (["deploy_canary"] if spec.deploy else [])
    for w in spec.gate_steps:
        main_path += [f"shift_to_{w}", f"gate_{w}"]
    main_path += ["promote", "complete_rollout"]
    assert sorted(dag.task_ids) == sorted(main_path + ["rollback"])

    # a single chain: each task's only upstream is the previous one
    for before, after in zip(main_path, main_path[1:]):
        assert dag.get_task(after).upstream_task_ids == {before}

    rollback = dag.get_task("rollback")
    assert rollback.trigger_rule == TriggerRule.ONE_FAILED
    assert rollback.upstream_task_ids == set(main_path[1:-1])  # every deploy, shift, gate, promote
    # complete_rollout keeps a rolled-back run failed; there is no all_done leaf
    assert {t.task_id for t in dag.leaves} == {"complete_rollout", "rollback"}
    for task in dag.tasks:
        assert task.trigger_rule in (TriggerRule.ALL_SUCCESS, TriggerRule.ONE_FAILED)
        assert not getattr(task, "soft_fail", False), f"{task.task_id} would turn a failed gate into a skip"
    assert dag.max_active_runs == 1
    assert dag.catchup is False
    gate = dag.get_task(f"gate_{spec.gate_steps[0]}")
    assert gate.poke_interval == spec.poke_interval
    assert gate.timeout > spec.gate_timeout  # the gate enforces its own timeout; this is a backstop


def test_steps_default_shape_for_web(bag):
    dag = bag.dags["canary_web"]
    assert [t for t in dag.topological_sort()][0].task_id == "preflight"
    assert {"shift_to_1", "gate_1", "shift_to_5", "gate_5", "shift_to_25", "gate_25", "shift_to_50", "gate_50"} <= set(dag.task_ids)
    assert "gate_100" not in dag.task_ids and "shift_to_100" not in dag.task_ids


def test_a_malformed_spec_is_an_import_error_and_the_others_still_load(tmp_path, monkeypatch):
    releases = tmp_path / "include" / "releases"
    releases.mkdir(parents=True)
    (tmp_path / "dags").mkdir()
    for path in SPECS:
        shutil.copy(path, releases)
    bad = (releases / "web.yaml").read_text().replace("steps: [1, 5, 25, 50, 100]", "steps: [1, 5, 120, 50, 100]")
    assert bad != (releases / "web.yaml").read_text()
    (releases / "web.yaml").write_text(bad)
    (releases / "broken.yaml").write_text("name: broken\nrouter: {type: nginx, conn_id: x}\nmetrics: {type: prometheus, conn_id: p}\n")

    bag = dagbag(releases, monkeypatch)
    good = {f"canary_{p.stem}" for p in SPECS} - {"canary_web"}
    assert set(bag.dag_ids) == good
    (message,) = bag.import_errors.values()
    assert "include/releases/web.yaml: steps[2]=120: must be a percentage, strictly increasing, ending at 100" in message
    assert "include/releases/broken.yaml: router.type=nginx: unknown router type 'nginx'; valid: haproxy" in message


def test_params_render_a_form(bag):
    dag = bag.dags["canary_demo"]
    params = dag.params
    assert set(params.keys()) == {"version", "stable_version"}
    assert params.get_param("version").schema["pattern"].startswith("^[A-Za-z0-9]")
    assert params.get_param("version").schema["title"] == "Version to release"
