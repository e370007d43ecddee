"""A broken spec beside good ones, on a REAL dag-processor and api-server (no scheduler needed).

With one import error, a real dag-processor marks every DAG of ``dags/canary_releases.py`` stale
and the REST API lists none of them; a ``DagBag`` in a test does not show that. Here the broken
spec must become its own visible placeholder DAG whose description and doc name the file and the
field, while the good DAGs and ``canary_guard`` stay listed, not stale, and triggerable, also when
a spec breaks while the dag-processor is running.
"""

from __future__ import annotations

import copy
import time
import uuid

import pytest
import yaml

from tests.airflow_services import AirflowServices, free_port
from tests.spec.test_corpus import GOOD

GOOD_NAMES = ("alpha", "beta", "gamma")


def good_spec(name: str) -> str:
    spec = copy.deepcopy(GOOD)
    spec["name"] = name
    spec["router"]["settings"]["backend"] = name
    return yaml.safe_dump(spec, sort_keys=False)


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    releases = tmp_path_factory.mktemp("releases")
    for name in GOOD_NAMES:
        (releases / f"{name}.yaml").write_text(good_spec(name))
    (releases / "broken.yaml").write_text(good_spec("broken").replace("steps:\n- 10\n- 100", "steps: [5, 120, 100]"))
    (releases / "latin1.yaml").write_bytes(good_spec("latin1").encode() + b"# caf\xe9\n")
    services = AirflowServices(
        tmp_path_factory.mktemp("airflow-home"), api_port=free_port(),
        extra_env={"CANARY_RELEASES_DIR": str(releases), "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3"},
        components=("api-server", "dag-processor"),
    )
    services.start()
    try:
        yield services, releases
    finally:
        services.stop()


def get(services, path: str, **params) -> dict:
    answer = services.api().get(f"{services.url}{path}", params=params, timeout=10)
    answer.raise_for_status()
    return answer.json()


def listed(services) -> dict[str, dict]:
    return {d["dag_id"]: d for d in get(services, "/api/v2/dags", limit=100)["dags"]}


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def test_good_dags_stay_listed_and_the_broken_spec_shows_its_error(airflow):
    services, _ = airflow
    expected = {f"canary_{n}" for n in GOOD_NAMES} | {"canary_guard", "canary_broken", "canary_latin1"}
    dags = wait_for(lambda: (d := listed(services)) and expected <= set(d) and d, 90, f"{sorted(expected)} listed")

    assert get(services, "/api/v2/importErrors")["total_entries"] == 0
    for name in GOOD_NAMES:
        assert dags[f"canary_{name}"]["is_stale"] is False and "invalid-spec" not in [t["name"] for t in dags[f"canary_{name}"]["tags"]]

    broken = get(services, "/api/v2/dags/canary_broken/details")
    assert {t["name"] for t in broken["tags"]} == {"canary", "invalid-spec"}
    assert "broken.yaml: steps[1]=120: must be a percentage" in broken["description"]
    assert "broken.yaml: steps[1]=120: must be a percentage" in broken["doc_md"]
    latin1 = get(services, "/api/v2/dags/canary_latin1/details")
    assert "latin1.yaml: (file): not UTF-8: byte 0xe9" in latin1["description"]

    # the guard still sweeps every valid release
    tasks = get(services, "/api/v2/dags/canary_guard/tasks")["tasks"]
    assert [t["task_id"] for t in tasks] == ["reconcile"]


def test_a_good_dag_is_triggerable_beside_the_broken_spec(airflow):
    services, _ = airflow
    wait_for(lambda: "canary_alpha" in listed(services), 90, "canary_alpha listed")
    run_id = f"manual__{uuid.uuid4().hex[:8]}"
    answer = services.api().post(f"{services.url}/api/v2/dags/canary_alpha/dagRuns", timeout=10,
                                 json={"logical_date": None, "dag_run_id": run_id, "conf": {"version": "v2"}})
    assert answer.status_code == 200, answer.text
    assert get(services, f"/api/v2/dags/canary_alpha/dagRuns/{run_id}")["conf"] == {"version": "v2"}


def test_a_spec_that_breaks_while_running_hides_no_other_dag(airflow):
    services, releases = airflow
    wait_for(lambda: "canary_gamma" in listed(services), 90, "canary_gamma listed")
    (releases / "gamma.yaml").write_text(good_spec("gamma") + "checks: []\ncheck: {}\n")

    def gamma_broken():
        dag = get(services, "/api/v2/dags/canary_gamma")
        return "INVALID RELEASE SPEC" in (dag["description"] or "") and dag

    gamma = wait_for(gamma_broken, 90, "canary_gamma re-parsed as invalid")
    assert "gamma.yaml: check: unknown field" in gamma["description"] or "gamma.yaml: checks" in gamma["description"]
    dags = listed(services)
    for dag_id in ("canary_alpha", "canary_beta", "canary_guard", "canary_broken"):
        assert dag_id in dags and dags[dag_id]["is_stale"] is False
    assert get(services, "/api/v2/importErrors")["total_entries"] == 0
