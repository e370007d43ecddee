"""The parse benchmark's fleet: its specs load, and its dag-factory YAML has our DAGs' ids and edges
(so the comparison is on the same shape). Needs no dag-factory: it reads the YAML it wrote."""

from __future__ import annotations

import sys

import yaml

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT))

from bench.parse import write_fleet  # noqa: E402


def test_the_dag_factory_yaml_has_our_dag_ids_task_ids_and_edges(tmp_path):
    from canary_operators.dag_factory import build_dags

    specs, dag_file = write_fleet(tmp_path, 5)
    ours = {dag_id: dag for dag_id, dag in build_dags(specs).items() if dag_id != "canary_guard"}
    theirs = {}
    for path in sorted((tmp_path / "dag-factory-yaml").glob("*.yaml")):
        theirs.update(yaml.safe_load(path.read_text()))
    assert set(ours) == set(theirs) == {f"canary_svc-{i:04d}" for i in range(5)}
    for dag_id, dag in ours.items():
        tasks = theirs[dag_id]["tasks"]
        assert len(tasks) == 13
        assert {(t, up) for t, conf in tasks.items() for up in conf.get("dependencies", [])} == {
            (task.task_id, up) for task in dag.tasks for up in task.upstream_task_ids}
        assert set(theirs[dag_id]["params"]) == set(dag.params)
        assert theirs[dag_id]["default_args"]["owner"] == dag.default_args["owner"]
    assert "load_yaml_dags" in dag_file.read_text() and "DAG" in dag_file.read_text()
