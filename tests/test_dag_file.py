"""``canary_operators.release_dags``: the one line of a DAG file, from the source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

# The DAG file a user writes (README, "Install into your Airflow"); tests/test_installed_wheel.py
# parses the same text with an installed wheel.
DAG_FILE = """\
# Airflow DAGs: one canary release per spec in {releases}
from canary_operators import release_dags; globals().update(release_dags("{releases}"))
"""


@pytest.fixture
def releases(tmp_path, monkeypatch):
    """A folder with the demo's spec, and no CANARY_RELEASES_DIR or parsing context set."""
    monkeypatch.delenv("CANARY_RELEASES_DIR", raising=False)
    monkeypatch.delenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", raising=False)
    monkeypatch.delenv("_AIRFLOW_PARSING_CONTEXT_TASK_ID", raising=False)
    folder = tmp_path / "releases"
    folder.mkdir()
    shutil.copy(ROOT / "include" / "releases" / "demo.yaml", folder / "demo.yaml")
    return folder


def test_a_folder_gives_its_release_dags_and_the_guard(releases):
    from canary_operators import release_dags

    assert sorted(release_dags(releases)) == ["canary_demo", "canary_guard"]
    assert sorted(release_dags(str(releases))) == ["canary_demo", "canary_guard"]


def test_the_argument_wins_over_canary_releases_dir_which_wins_over_the_project(releases, tmp_path, monkeypatch):
    from canary_operators import release_dags

    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(ROOT / "include" / "releases" / "web.yaml", other / "web.yaml")
    monkeypatch.setenv("CANARY_RELEASES_DIR", str(other))
    assert "canary_demo" in release_dags(releases) and "canary_web" not in release_dags(releases)
    assert "canary_web" in release_dags() and "canary_demo" not in release_dags()
    monkeypatch.delenv("CANARY_RELEASES_DIR")
    project = {f"canary_{p.stem}" for p in (ROOT / "include" / "releases").glob("*.yaml")}
    assert set(release_dags()) == project | {"canary_guard"}


def test_a_task_builds_only_its_own_dag(releases, monkeypatch):
    from canary_operators import release_dags

    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "canary_demo")
    assert list(release_dags(releases)) == ["canary_demo"]
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "canary_guard")
    assert list(release_dags(releases)) == ["canary_guard"]


def test_no_folder_outside_the_project_layout_is_one_dag_that_says_what_to_pass(releases, tmp_path, monkeypatch):
    """An installed wheel has no include/releases beside it: the DAG file must name the folder."""
    from canary_operators import dag_file, release_dags

    monkeypatch.setattr(dag_file, "default_releases_dir", lambda: tmp_path / "site-packages" / "include" / "releases")
    dags = release_dags()
    assert list(dags) == ["canary_invalid_release_specs"]
    assert "release_dags() was given no folder of release specs and CANARY_RELEASES_DIR is not set" in dags[
        "canary_invalid_release_specs"].doc_md
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "canary_demo")
    assert release_dags() == {}  # a task of another DAG builds nothing


def test_a_missing_folder_is_one_dag_naming_it(tmp_path):
    from canary_operators import release_dags

    dags = release_dags(tmp_path / "nope")
    assert list(dags) == ["canary_invalid_release_specs"]
    assert f"{tmp_path / 'nope'}: (folder): the releases folder does not exist" in dags["canary_invalid_release_specs"].doc_md


def test_importing_the_package_imports_nothing_of_airflow():
    """A DAG file's import must stay cheap; the factory is imported when release_dags is called."""
    code = "import sys, canary_operators; print(sorted(m for m in sys.modules if m.split('.')[0] in ('airflow', 'pydantic', 'yaml')))"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_documented_dag_file_is_one_airflow_parses(tmp_path):
    """The DAG processor skips a file without the words "airflow" and "dag" (safe mode): the
    lines the README and the package's docstring show carry both, as does the project's file."""
    from airflow.utils.file import might_contain_dag_via_default_heuristic

    import canary_operators

    documented = DAG_FILE.format(releases="/opt/airflow/releases")
    assert documented in (ROOT / "README.md").read_text()
    assert "\n".join("    " + line for line in documented.splitlines()) in canary_operators.__doc__
    (tmp_path / "canary.py").write_text(documented)
    (tmp_path / "without_the_comment.py").write_text(DAG_FILE.format(releases="/srv/releases").splitlines()[1])
    assert might_contain_dag_via_default_heuristic(str(tmp_path / "canary.py"))
    assert not might_contain_dag_via_default_heuristic(str(tmp_path / "without_the_comment.py"))
    assert might_contain_dag_via_default_heuristic(str(ROOT / "dags" / "canary_releases.py"))
