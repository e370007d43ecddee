"""The static plan's cache: a plan is read back only for the same planned fields and the same code;
a changed spec plans again, and a broken or missing cache only costs time."""

from __future__ import annotations

import pytest
import yaml

from canary_operators import dag_params
from canary_operators.spec import parse_spec
from tests.spec.minimal import spec_with


def spec(**changes):
    return parse_spec(spec_with(**changes), "web.yaml")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh cache folder, and no plan kept in this process."""
    folder = tmp_path / "plans"
    monkeypatch.setenv(dag_params.PLAN_CACHE_ENV, str(folder))
    dag_params._static_plan.cache_clear()
    yield folder
    dag_params._static_plan.cache_clear()


def planner_fails(monkeypatch):
    """From now on, planning raises: a text returned after this came from the cache."""
    def fail(release):
        raise AssertionError("planned again")

    monkeypatch.setattr(dag_params, "form_text", fail)
    dag_params._static_plan.cache_clear()


def test_a_plan_is_kept_and_read_back_without_planning(cache, monkeypatch):
    text = dag_params.static_plan(spec())
    assert text.startswith("Evidence planner") and len(list(cache.glob("*.txt"))) == 1
    planner_fails(monkeypatch)
    assert dag_params.static_plan(spec()) == text


def test_a_changed_spec_plans_again(cache, monkeypatch):
    before = dag_params.static_plan(spec(gate_timeout="20m"))
    after = dag_params.static_plan(spec(gate_timeout="40m"))
    assert before != after and "timeout 40.0 min" in after
    planner_fails(monkeypatch)
    assert dag_params.static_plan(spec(gate_timeout="30m")) == ""  # not in the cache: no stale plan, no plan
    assert dag_params.static_plan(spec(gate_timeout="40m")) == after


def test_changed_code_plans_again(cache, monkeypatch):
    dag_params.static_plan(spec())
    planner_fails(monkeypatch)
    monkeypatch.setattr(dag_params, "_code_fingerprint", lambda: "another version of the planner")
    assert dag_params.static_plan(spec()) == ""


def test_a_broken_cache_entry_or_folder_only_costs_a_new_plan(cache, tmp_path, monkeypatch):
    text = dag_params.static_plan(spec())
    (entry,) = cache.glob("*.txt")
    entry.write_bytes(b"\xff\xfe not text")
    dag_params._static_plan.cache_clear()
    assert dag_params.static_plan(spec()) == text
    assert entry.read_text() == text  # rewritten
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv(dag_params.PLAN_CACHE_ENV, str(blocked / "plans"))  # cannot be created
    dag_params._static_plan.cache_clear()
    assert dag_params.static_plan(spec()) == text


def test_a_changed_spec_file_changes_its_dag(cache, tmp_path):
    from canary_operators.dag_factory import build_dags

    releases = tmp_path / "releases"
    releases.mkdir()
    path = releases / "web.yaml"
    path.write_text(yaml.safe_dump(spec_with(gate_timeout="20m")))
    before = build_dags(releases)["canary_web"]
    path.write_text(yaml.safe_dump(spec_with(gate_timeout="40m")))
    after = build_dags(releases)["canary_web"]
    assert "timeout 40.0 min" in after.params.get_param("steps").description
    assert "timeout 40.0 min" in after.doc_md and "timeout 40.0 min" not in before.doc_md
