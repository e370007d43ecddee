"""Many specs on the DAG processor's own path: one file of 200 specs (and a broken one) parses and
serializes with no import error, and each DAG carries its trigger form once, on the DAG.

Times are bench/parse.py's business; these tests check what the speed must not change.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
FORM = {"version", "stable_version", "steps", "bake_time", "dry_run", "approval", "force_reset"}


def spec(i: int) -> dict:
    name = f"svc-{i:03d}"
    return {
        "name": name,
        "router": {"type": "haproxy", "conn_id": "haproxy_default", "settings": {"backend": name}},
        "metrics": {"type": "prometheus", "conn_id": "prometheus_default", "settings": {"labels": {"job": name}}},
        "steps": [1, 5, 25, 50, 100],
        "bake_time": ["1m", "5m"][i % 2],
        "gate_timeout": "20m",
        "promote": {"type": "command", "command": ["deploy-stable", name, "{version}"]},
    }


@pytest.fixture(scope="module")
def web_dag():
    from canary_operators.dag_factory import build_dags

    return build_dags(ROOT / "include" / "releases", only_dag_id="canary_web")["canary_web"]


def test_the_trigger_form_is_on_the_dag_and_no_task_carries_a_copy(web_dag):
    assert set(web_dag.params) == FORM
    assert web_dag.params.get_param("steps").schema["items"]["enum"] == [1, 5, 25, 50, 100]
    assert [t.task_id for t in web_dag.tasks if t.params] == []


def test_a_task_still_reads_and_validates_the_form(web_dag):
    from airflow.sdk.definitions.param import process_params
    from airflow.sdk.exceptions import ParamValidationError

    gate = web_dag.get_task("gate_1")
    params = process_params(web_dag, gate, {"version": "2024.12.1"}, suppress_exception=False)
    assert params["version"] == "2024.12.1" and params["dry_run"] is False and params["steps"] is None
    with pytest.raises(ParamValidationError, match="steps"):
        process_params(web_dag, gate, {"version": "2024.12.1", "steps": [5, 25]}, suppress_exception=False)


def test_the_serialized_dag_keeps_the_form_once(web_dag):
    from airflow.serialization.serialized_objects import DagSerialization

    data = DagSerialization.to_dict(web_dag)
    assert {name for name, _ in data["dag"]["params"]} == FORM
    assert [t["__var"]["task_id"] for t in data["dag"]["tasks"] if "params" in t["__var"]] == []
    server_side = DagSerialization.from_dict(data)  # what the API server validates a run's conf against
    assert server_side.params.get_param("steps").schema == web_dag.params.get_param("steps").schema
    assert server_side.params.get_param("version").schema["section"] == "Release"


PARSE = textwrap.dedent("""
    import json, sys
    from pathlib import Path

    import structlog
    from airflow.dag_processing.processor import DagFileParseRequest, _parse_file

    dag_file = Path(sys.argv[1])
    result = _parse_file(DagFileParseRequest(file=str(dag_file), bundle_path=dag_file.parent, bundle_name="dags-folder"),
                         structlog.get_logger())
    tasks = {d.data["dag"]["dag_id"]: len(d.data["dag"]["tasks"]) for d in result.serialized_dags}
    print(json.dumps({"tasks": tasks, "import_errors": result.import_errors}))
""")


def test_the_dag_processor_parses_200_specs_in_one_file(tmp_path):
    """The processor's own parse function, in a process of its own, within its per-file timeout."""
    from airflow.configuration import conf

    releases = tmp_path / "releases"
    releases.mkdir()
    for i in range(200):
        (releases / f"svc-{i:03d}.yaml").write_text(yaml.safe_dump(spec(i)))
    (releases / "broken.yaml").write_text(yaml.safe_dump({**spec(0), "name": "broken", "steps": [5, 120, 100]}))
    env = {**__import__("os").environ, "CANARY_RELEASES_DIR": str(releases), "PYTHONPATH": str(ROOT / "plugins")}
    done = subprocess.run([sys.executable, "-c", PARSE, str(ROOT / "dags" / "canary_releases.py")], env=env,
                          capture_output=True, text=True, timeout=conf.getint("dag_processor", "dag_file_processor_timeout"))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["import_errors"] == {}
    tasks = result["tasks"]
    assert set(tasks) == {f"canary_svc-{i:03d}" for i in range(200)} | {"canary_guard", "canary_broken"}
    assert {tasks[f"canary_svc-{i:03d}"] for i in range(200)} == {13}  # preflight, 4 shifts, 4 gates, approve_100, promote, rollback, complete_rollout
    assert tasks["canary_broken"] == 1
