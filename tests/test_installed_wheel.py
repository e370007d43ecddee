"""The pip package as a user installs it, not the source tree.

Builds the sdist and the wheel (``python -m build``, the wheel from the sdist), checks both with
``twine check``, installs the wheel with its extras into a fresh venv with Airflow from
constraints.txt, and then, with a temporary AIRFLOW_HOME whose DAGs folder holds only the
one-line DAG file and whose plugins folder does not exist: the DAGs parse, ``airflow plugins``
lists the plugin from its entry point, and one release runs to promotion against the demo stack
with ``airflow dags test``.

The venv comes from uv: 1 s of CPU on a warm cache (3 s cold, everything downloaded), where pip
with its cache took 57 s of CPU for the same install (``bench/package_install.py``). What is left
is Airflow's own start-up, about 5 s of CPU per CLI, so the checks that need no database run
while the release waits on its gate.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.conftest import ADMIN_TOKEN, ROOT
from tests.test_dag_file import DAG_FILE
from tests.test_dag_runs import canary_weight, deploy, spec_for, version_of

DIST_NAME = "airflow_canary_releases"
BIN = Path(sys.executable).parent


def run(cmd: list, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """Run a command; fail with its output when it exits non-zero."""
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} exited {done.returncode}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    """The sdist and the wheel, built as ``python -m build`` builds them (the wheel from the sdist),
    with the build backend pinned in requirements.txt instead of one downloaded per build."""
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT], timeout=180)
    built = {"sdist": list(out.glob(f"{DIST_NAME}-*.tar.gz")), "wheel": list(out.glob(f"{DIST_NAME}-*-py3-none-any.whl"))}
    assert all(len(paths) == 1 for paths in built.values()), built
    return {kind: paths[0] for kind, paths in built.items()}


def test_the_sdist_and_the_wheel_pass_twine_check(dist):
    done = run([BIN / "twine", "check", "--strict", dist["sdist"], dist["wheel"]], timeout=60)
    assert done.stdout.count("PASSED") == 2, done.stdout


def test_the_version_is_the_packages_one_version(dist):
    import canary_operators

    assert dist["wheel"].name == f"{DIST_NAME}-{canary_operators.__version__}-py3-none-any.whl"
    assert f"## [{canary_operators.__version__}]" in (ROOT / "CHANGELOG.md").read_text()


def test_every_file_of_the_package_is_in_the_wheel_with_the_entry_point(dist):
    """Templates and static files land by pattern: whatever is in the package folder is shipped."""
    source = ROOT / "plugins" / "canary_operators"
    expected = {str(p.relative_to(source.parent)) for p in source.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        names = wheel.namelist()
        info = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        entry_points = wheel.read(info).decode()
    assert {n for n in names if n.startswith("canary_operators/")} == expected
    assert "[airflow.plugins]\ncanary_releases = canary_operators.plugin:CanaryReleasesPlugin" in entry_points


@pytest.fixture(scope="module")
def venv(dist, tmp_path_factory) -> Path:
    """A fresh venv with the wheel and its extras, every other version from constraints.txt."""
    path = tmp_path_factory.mktemp("wheel-venv") / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    run([BIN / "uv", "venv", "--quiet", "--python", base_python, path], timeout=60)
    run([BIN / "uv", "pip", "install", "--quiet", "--python", path / "bin" / "python",
         f"{dist['wheel']}[amazon,kubernetes,slack,smtp]", "-c", ROOT / "constraints.txt"], timeout=600)
    return path


def installed_env(venv: Path, home: Path, stack) -> dict[str, str]:
    """The environment of a user's Airflow: nothing of this repo (no PYTHONPATH, no plugins
    folder, no CANARY_RELEASES_DIR), connections to the demo stack."""
    from cryptography.fernet import Fernet

    host, admin_port = stack.admin_address
    connections = {
        "t_haproxy": {"conn_type": "generic", "host": host, "port": admin_port},
        "t_prometheus": {"conn_type": "http", "host": "127.0.0.1", "port": stack.prometheus_port},
        "t_canary_admin": {"conn_type": "http", "host": "127.0.0.1", "port": stack.canary_port, "password": ADMIN_TOKEN},
        "t_stable_admin": {"conn_type": "http", "host": "127.0.0.1", "port": stack.stable_port, "password": ADMIN_TOKEN},
    }
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "_AIRFLOW", "CANARY_")) and k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(venv),
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(home / "plugins"),  # does not exist
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__FERNET_KEY=Fernet.generate_key().decode(),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
        **{f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(fields) for conn_id, fields in connections.items()},
    )
    return env


def json_output(stdout: str):
    """The JSON document an ``airflow ... -o json`` command printed on one line, among log lines."""
    lines = [line for line in stdout.splitlines() if line.startswith(("[{", "[]", "{"))]
    assert lines, f"no JSON in:\n{stdout[-3000:]}"
    return json.loads(lines[-1])


# One python process in the venv: where the package comes from, that importing it imports no
# Airflow, and what release_dags() builds with no folder given (no include/releases beside a wheel).
INSTALLED_CHECK = """
import json, sys
import canary_operators
cheap = not any(m.split(".")[0] == "airflow" for m in sys.modules)
dags = canary_operators.release_dags()
print(json.dumps({"file": canary_operators.__file__, "cheap": cheap,
                  "dags": {dag_id: dag.doc_md for dag_id, dag in dags.items()}}))
"""


def test_the_installed_wheel_parses_lists_its_plugin_and_promotes_a_release(venv, demo_stack, tmp_path):
    home = tmp_path / "airflow-home"
    (home / "dags").mkdir(parents=True)
    releases = tmp_path / "releases"
    releases.mkdir()
    (releases / "t_wheel.yaml").write_text(yaml.safe_dump(spec_for("t_wheel", steps=[50, 100])))
    (home / "dags" / "canary_releases.py").write_text(DAG_FILE.format(releases=releases))
    env = installed_env(venv, home, demo_stack)
    airflow = venv / "bin" / "airflow"
    demo_stack.haproxy_command("set server app/stable weight 100")
    demo_stack.haproxy_command("set server app/canary weight 0")
    deploy(demo_stack.stable_url, "v1")
    deploy(demo_stack.canary_url, "v1")

    def release() -> subprocess.CompletedProcess:
        run([airflow, "db", "migrate"], timeout=180, env=env, cwd=tmp_path)
        return subprocess.run([str(airflow), "dags", "test", "canary_t_wheel", "-c", json.dumps({"version": "v2"})],
                              env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)

    # The release mostly waits on its gate: the checks below run meanwhile (they need no database).
    with ThreadPoolExecutor(1) as pool:
        released = pool.submit(release)
        found = json.loads(run([venv / "bin" / "python", "-c", INSTALLED_CHECK], timeout=120, env=env, cwd=tmp_path).stdout.splitlines()[-1])
        listed = run([airflow, "dags", "list", "--local", "-o", "json"], timeout=120, env=env, cwd=tmp_path)
        plugins = json_output(run([airflow, "plugins", "-o", "json"], timeout=120, env=env, cwd=tmp_path).stdout)
        test_run = released.result()

    assert Path(found["file"]).is_relative_to(venv), found["file"]  # the wheel, not the source tree
    assert found["cheap"] is True
    assert list(found["dags"]) == ["canary_invalid_release_specs"]
    assert "release_dags() was given no folder of release specs" in found["dags"]["canary_invalid_release_specs"]
    assert sorted(d["dag_id"] for d in json_output(listed.stdout)) == ["canary_guard", "canary_t_wheel"], listed.stderr[-3000:]
    ours = [p for p in plugins if p["name"] == "canary_releases"]
    assert len(ours) == 1 and "airflow-canary-releases" in str(ours[0].get("source")), plugins

    with sqlite3.connect(home / "airflow.db") as db:
        states = dict(db.execute("SELECT task_id, state FROM task_instance WHERE dag_id='canary_t_wheel'"))
        run_state = db.execute("SELECT state FROM dag_run WHERE dag_id='canary_t_wheel'").fetchone()
    assert test_run.returncode == 0 and run_state == ("success",), (
        f"exit {test_run.returncode}, run {run_state}, tasks {states}\n{test_run.stdout[-5000:]}\n{test_run.stderr[-3000:]}")
    assert states["promote"] == "success" and states["complete_rollout"] == "success", states
    assert canary_weight(demo_stack) == 0
    assert version_of(demo_stack.stable_url) == "v2"
