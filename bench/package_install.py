"""What tests/test_installed_wheel.py costs, step by step: wall time and CPU time (user + sys of
the step's processes; CPU is what a busy machine cannot hide).

    .venv/bin/python bench/package_install.py              # build, twine, uv cold and warm, Airflow CLIs
    .venv/bin/python bench/package_install.py --with-pip   # also a pip install into a fresh venv, for comparison

"Cold" is uv with an empty cache of its own (everything downloaded); "warm" is uv's usual cache
after that, as on a machine that ran the tests before. The release itself (``airflow dags test``
against the demo stack) is left to the test: it mostly waits on the gate.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
EXTRAS = "[amazon,kubernetes,slack,smtp]"


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def step(rows: list, name: str, cmd: list, **kwargs) -> subprocess.CompletedProcess:
    wall, cpu = time.monotonic(), children_cpu()
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    rows.append((name, time.monotonic() - wall, children_cpu() - cpu))
    if done.returncode != 0:
        sys.exit(f"{name} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--with-pip", action="store_true", help="also time pip (with its cache) into a fresh venv")
    args = parser.parse_args()
    rows: list[tuple[str, float, float]] = []
    base_python = getattr(sys, "_base_executable", sys.executable)
    with tempfile.TemporaryDirectory(prefix="canary-package-bench-") as tmp:
        tmp = Path(tmp)
        step(rows, "python -m build (sdist, wheel from it)", [sys.executable, "-m", "build", "--no-isolation", "--outdir", tmp / "dist", ROOT])
        wheel = next((tmp / "dist").glob("*.whl"))
        step(rows, "twine check (both)", [BIN / "twine", "check", "--strict", *sorted((tmp / "dist").iterdir())])
        for label, cache in (("cold", tmp / "uv-cache"), ("warm", None)):
            env = {**os.environ, **({"UV_CACHE_DIR": str(cache)} if cache else {})}
            venv = tmp / f"venv-{label}"
            step(rows, f"uv venv + pip install ({label} cache)", ["sh", "-c",
                 f'"{BIN / "uv"}" venv -q --python "{base_python}" "{venv}" && "{BIN / "uv"}" pip install -q --python '
                 f'"{venv / "bin" / "python"}" "{wheel}{EXTRAS}" -c "{ROOT / "constraints.txt"}"'], env=env)
        if args.with_pip:
            venv = tmp / "venv-pip"
            step(rows, "python -m venv + pip install (pip's cache)", ["sh", "-c",
                 f'"{base_python}" -m venv "{venv}" && "{venv / "bin" / "pip"}" install -q --disable-pip-version-check '
                 f'"{wheel}{EXTRAS}" -c "{ROOT / "constraints.txt"}"'])
        venv = tmp / "venv-warm"
        home = tmp / "home"
        (home / "dags").mkdir(parents=True)
        releases = tmp / "releases"
        releases.mkdir()
        (releases / "demo.yaml").write_text((ROOT / "include" / "releases" / "demo.yaml").read_text())
        (home / "dags" / "canary_releases.py").write_text(
            f'# Airflow DAGs\nfrom canary_operators import release_dags; globals().update(release_dags("{releases}"))\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CANARY_")) and k != "PYTHONPATH"}
        env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", AIRFLOW_HOME=str(home),
                   AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"), AIRFLOW__CORE__PLUGINS_FOLDER=str(home / "plugins"),
                   AIRFLOW__CORE__LOAD_EXAMPLES="False", AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db")
        airflow = venv / "bin" / "airflow"
        step(rows, "python: import canary_operators, release_dags()", [venv / "bin" / "python", "-c",
             "import canary_operators; canary_operators.release_dags()"], env=env, cwd=tmp)
        step(rows, "airflow db migrate", [airflow, "db", "migrate"], env=env, cwd=tmp)
        listed = step(rows, "airflow dags list --local", [airflow, "dags", "list", "--local", "-o", "json"], env=env, cwd=tmp)
        step(rows, "airflow plugins", [airflow, "plugins", "-o", "json"], env=env, cwd=tmp)
        step(rows, "airflow version (Airflow's start-up alone)", [airflow, "version"], env=env, cwd=tmp)
        dag_ids = sorted(d["dag_id"] for line in listed.stdout.splitlines() if line.startswith("[{") for d in json.loads(line))
    print(f"{'step':<52} {'wall s':>7} {'CPU s':>7}")
    for name, wall, cpu in rows:
        print(f"{name:<52} {wall:7.1f} {cpu:7.1f}")
    print(f"(DAGs parsed: {', '.join(dag_ids)}; load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
