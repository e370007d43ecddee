"""DAG structure for every spec in include/releases/, and import errors for bad specs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from canary_operators.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "include" / "releases").glob("*.yaml"))
# Specs with targets have a task group per target; their shape is tested in tests/targets/test_dag.py.
SINGLE_TARGET_SPECS = [p for p in SPECS if not load_spec(p).targets]


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
    assert set(bag.dag_ids) == {f"canary_{p.stem}" for p in SPECS} | {"canary_guard"}


def guarded_releases(dag) -> list[str]:
    """The release names ``canary_guard`` maps one ``reconcile`` task over."""
    return [kwargs["release_name"] for kwargs in dag.get_task("reconcile").expand_input.value]


def test_the_guard_dag_maps_one_reconcile_task_per_release(bag):
    from canary_operators.spec import load_spec
    from canary_operators.spec.targets import release_names

    guard = bag.dags["canary_guard"]
    assert guard.task_ids == ["reconcile"]
    assert guard.max_active_runs == 1 and guard.catchup is False
    # one per release, and one per target of a release with targets (web-regions__eu, ...)
    assert sorted(guarded_releases(guard)) == sorted(n for p in SPECS for n in release_names(load_spec(p)))


@pytest.mark.parametrize("path", SINGLE_TARGET_SPECS, ids=lambda p: p.stem)
def test_dag_shape(bag, path):
    from airflow.sdk import TriggerRule

    from canary_operators.spec import load_spec

    from canary_operators.operators.rollback import ROLLBACK_POOL, ROLLBACK_PRIORITY

    spec = load_spec(path)
    dag = bag.dags[spec.dag_id]
    main_path = ["preflight"] + (["deploy_canary"] if spec.deploy else [])
    for w in spec.steps:
        if w in spec.approval_points:  # approve_100 exists even without spec approval: conf may add it
            main_path.append(f"approve_{w}")
        if w < 100:
            main_path += [f"shift_to_{w}", f"gate_{w}"]
    main_path += ["promote"]
    assert "approve_100" in main_path
    assert sorted(dag.task_ids) == sorted(main_path + ["rollback", "complete_rollout"])

    # a single chain: each task's only upstream is the previous one
    for before, after in zip(main_path, main_path[1:]):
        assert dag.get_task(after).upstream_task_ids == {before}

    # the undo is a teardown after every task of the chain, so Airflow runs it however the run ends
    rollback = dag.get_task("rollback")
    assert rollback.is_teardown and not rollback.is_setup
    assert rollback.trigger_rule == TriggerRule.ALL_DONE_SETUP_SUCCESS
    assert rollback.upstream_task_ids == set(main_path)  # preflight, every deploy, shift, gate, approve, promote
    assert rollback.pool == ROLLBACK_POOL == "canary_rollback"
    assert rollback.priority_weight == ROLLBACK_PRIORITY == 10000 and rollback.weight_rule == "absolute"
    assert rollback.execution_timeout.total_seconds() > spec.rollback_deadline  # the deadline, not Airflow, stops it
    # complete_rollout, after the undo, is the run's verdict and its only leaf: a rolled-back run ends failed
    complete = dag.get_task("complete_rollout")
    assert complete.is_teardown and complete.on_failure_fail_dagrun
    assert complete.upstream_task_ids == {"promote", "rollback"}
    assert {t.task_id for t in dag.leaves} == {"complete_rollout"}
    assert dag.get_task("complete_rollout").get_flat_relative_ids(upstream=True) == set(dag.task_ids) - {"complete_rollout"}
    for task in dag.tasks:
        if task.task_id not in ("rollback", "complete_rollout"):
            assert task.trigger_rule == TriggerRule.ALL_SUCCESS and not task.is_teardown, task.task_id
        assert not getattr(task, "soft_fail", False), f"{task.task_id} would turn a failed gate into a skip"
    assert dag.max_active_runs == 1
    assert dag.catchup is False
    for w in spec.gate_steps:  # infrastructure blips are ridden out with backoff
        for task in (dag.get_task(f"shift_to_{w}"), dag.get_task(f"gate_{w}")):
            assert task.retries >= 4 and task.retry_exponential_backoff, task.task_id
    gate = dag.get_task(f"gate_{spec.gate_steps[0]}")
    assert gate.poke_interval == spec.poke_interval
    # the gate enforces its own timeout; the task's is a backstop that bounds the exposure with no triggerer
    assert spec.gate_timeout < gate.timeout <= spec.gate_task_timeout + 60


def test_steps_default_shape_for_web(bag):
    dag = bag.dags["canary_web"]
    assert [t for t in dag.topological_sort()][0].task_id == "preflight"
    assert {"shift_to_1", "gate_1", "shift_to_5", "gate_5", "shift_to_25", "gate_25", "shift_to_50", "gate_50"} <= set(dag.task_ids)
    assert "gate_100" not in dag.task_ids and "shift_to_100" not in dag.task_ids


def test_a_malformed_spec_is_its_own_placeholder_dag_and_the_others_still_load(tmp_path, monkeypatch):
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
    assert bag.import_errors == {}  # the factory file never raises: a real dag-processor would hide every DAG
    good = {f"canary_{p.stem}" for p in SPECS} - {"canary_web"}
    assert set(bag.dag_ids) == good | {"canary_guard", "canary_web", "canary_broken"}
    # the guard sweeps every release file, broken ones with the spec their last run recorded
    from canary_operators.spec import load_spec
    from canary_operators.spec.targets import release_names

    released = [n for p in SPECS if p.name != "web.yaml" for n in release_names(load_spec(p))]  # a target each
    assert sorted(guarded_releases(bag.dags["canary_guard"])) == sorted(released + ["web", "broken"])
    web = bag.dags["canary_web"]
    assert web.tags == {"canary", "invalid-spec"} and web.task_ids == ["spec_error"]
    message = "include/releases/web.yaml: steps[2]=120: must be a percentage, strictly increasing, ending at 100"
    assert message in web.description and message in web.doc_md and message in web.get_task("spec_error").error
    from canary_operators.routers import ROUTERS

    valid = ", ".join(sorted(ROUTERS))
    assert f"include/releases/broken.yaml: router.type=nginx: unknown router type 'nginx'; valid: {valid}" in bag.dags["canary_broken"].doc_md


def test_params_render_a_form_with_sections(bag):
    params = bag.dags["canary_demo"].params
    assert set(params.keys()) == {"version", "stable_version", "steps", "bake_time", "dry_run", "approval", "force_reset"}
    version = params.get_param("version").schema
    assert version["pattern"].startswith("^[A-Za-z0-9]") and version["title"] == "Version to release"
    assert version["section"] == "Release"
    assert params.get_param("steps").schema["items"]["enum"] == [5, 25, 50, 100]
    assert params.get_param("bake_time").schema["minimum"] == 20  # demo.yaml's bake_time: conf may only lengthen it
    for safety in ("dry_run", "approval", "force_reset"):
        assert params.get_param(safety).schema["section"] == "Safety"
    # demo.yaml asks for no approval: the form may add it, and it is off unless asked for
    assert params["approval"] is False and "enum" not in params.get_param("approval").schema
    assert params["force_reset"] is False


@pytest.mark.parametrize(
    "conf, bad_param",
    [
        ({"version": 'v2" or 1'}, "version"),
        ({"steps": [5, 30, 100]}, "steps"),  # 30 is not one of the spec's steps
        ({"steps": [5, 25]}, "steps"),  # must contain 100
        ({"steps": [100]}, "steps"),  # no gate before 100%
        ({"bake_time": 100000}, "bake_time"),
        ({"bake_time": 19}, "bake_time"),  # shorter than demo.yaml's 20s
        ({"force_reset": "yes"}, "force_reset"),
        ({"dry_run": "yes"}, "dry_run"),
    ],
)
def test_bad_conf_breaks_the_param_schema(bag, conf, bad_param):
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    params = ParamsDict(bag.dags["canary_demo"].params)
    with pytest.raises(ParamValidationError, match=bad_param):
        params.update(conf)
        params.validate()


def test_approval_adds_a_human_step_before_promotion(tmp_path, monkeypatch):
    from airflow.sdk import TriggerRule

    releases = tmp_path / "include" / "releases"
    releases.mkdir(parents=True)
    (tmp_path / "dags").mkdir()
    text = (ROOT / "include" / "releases" / "demo.yaml").read_text()
    (releases / "demo.yaml").write_text(text + "approval: {before: [50, 100], timeout: 10m, hold: 1m}\n")
    dag = dagbag(releases, monkeypatch).dags["canary_demo"]
    assert dag.get_task("approve_50").upstream_task_ids == {"gate_25"}
    assert dag.get_task("shift_to_50").upstream_task_ids == {"approve_50"}
    assert dag.get_task("approve_100").upstream_task_ids == {"gate_50"}
    assert dag.get_task("promote").upstream_task_ids == {"approve_100"}
    assert {"approve_50", "approve_100"} <= dag.get_task("rollback").upstream_task_ids
    approve = dag.get_task("approve_100")
    assert approve.options == ["Promote", "Roll back", "Hold a bit longer"]
    assert approve.defaults == ["Roll back"]  # no answer in time rolls back
    assert approve.response_timeout.total_seconds() == 600
    assert dag.get_task("rollback").trigger_rule == TriggerRule.ALL_DONE_SETUP_SUCCESS
    assert dag.get_task("rollback").is_teardown

    # the spec requires approval: the form cannot switch it off
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    assert dag.params["approval"] is True and dag.params.get_param("approval").schema["enum"] == [True]
    params = ParamsDict(dag.params)
    with pytest.raises(ParamValidationError, match="approval"):
        params.update({"approval": False})
        params.validate()


def test_version_is_required_by_the_form_when_the_spec_has_no_default(bag):
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    params = ParamsDict(bag.dags["canary_web"].params)  # web.yaml: no default_version, no candidate
    with pytest.raises(ParamValidationError, match="version"):
        params.validate()
    params.update({"version": "2024.12.1"})
    assert params.validate()["version"] == "2024.12.1"


def test_parsing_the_dags_loads_no_heavy_sdk():
    """Every task re-parses the DAG file: boto3 and kubernetes stay out of module level."""
    import subprocess
    import sys

    code = (
        "import sys; sys.path.insert(0, 'plugins'); import canary_operators.dag_factory as f; f.build_dags(); "
        "print(sorted(m for m in ('boto3', 'botocore', 'kubernetes', 'kubernetes_asyncio') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stderr[-2000:]
