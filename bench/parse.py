"""Benchmark: the DAG processor's work for a file of N release specs, ours against dag-factory 1.1.0.

    make bench-parse                                   # installs dag-factory (bench only), then runs this
    .venv/bin/python bench/parse.py --sizes 100 500 1000 --repeat 3

It writes N release specs (production-shaped: 5 steps, 6 checks, a promote action; 13 tasks; each
service its own business metric, so every spec's static plan is distinct), and for each the
equivalent dag-factory YAML: the same DAG ids, task ids
and edges (EmptyOperator tasks; the same param names and defaults, as plain values, since
dag-factory's YAML has no JSON-schema form). Each parse runs in a fresh process, as the DAG
processor forks one per file, and times what that process does: ``_parse_file`` (import the DAG
file, build the DAGs, ``DagSerialization.to_dict`` each) and the encoding of the result it sends
back. What the processor's manager has imported before it forks (the processor module, and the
file's own ``airflow`` imports) is imported first. The task-run parse is what the task runner does before a task starts: ``BundleDagBag`` of
the DAG file with ``get_parsing_context().dag_id`` set.

Ours is timed twice: "cold", every static plan new (the first parse after a deploy or an upgrade;
about 5 ms a spec), and "warm", plans read from the plan cache (every later parse).
CPU seconds are the figure judged ("on one core": the parse is single-threaded); wall seconds are
printed beside them. Paired runs (ours cold, ours warm, dag-factory), ``--repeat`` times; medians. It prints
figures and whether each target is met; the exit code does not depend on the targets.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DAG_FILE = ROOT / "dags" / "canary_releases.py"
DEPS = ROOT / ".bench" / "parse"  # where `make bench-parse` installs bench/requirements-parse.txt
INSTALL = "pip install --no-deps --target .bench/parse -r bench/requirements-parse.txt"  # what make bench-parse runs

TARGET_SERIALIZE_SECONDS = 25.0  # 1,000 specs, one core
TARGET_RATIO = 3.0  # dag-factory's time / ours, 1,000 specs
TARGET_TASK_RUN_SECONDS = 1.0  # a task run's parse with 1,000 specs present

# A fleet has a few distinct timing settings.
TIMINGS = [("5m", "20m"), ("2m", "10m"), ("10m", "30m"), ("1m", "15m")]
CHECKS = [
    {"name": "errors", "kind": "error_rate", "max_increase_pp": 0.5, "min_requests": 500},
    {"name": "p50", "kind": "latency", "quantile": 0.5, "max_ratio": 1.1},
    {"name": "p99", "kind": "latency", "quantile": 0.99, "max_ratio": 1.1},
    {"name": "conversion", "kind": "business", "metric": "<service>_conversions_total", "min_ratio": 0.95},
    {"name": "cpu", "kind": "resource", "resource": "cpu", "max_ratio": 1.3},
    {"name": "memory", "kind": "resource", "resource": "memory", "max_ratio": 1.3},
]
EMPTY = "airflow.providers.standard.operators.empty.EmptyOperator"


def release_spec(i: int) -> dict:
    name = f"svc-{i:04d}"
    bake, timeout = TIMINGS[i % len(TIMINGS)]
    return {
        "name": name, "description": f"Service {i} behind HAProxy, metrics in Prometheus.", "owner": f"team-{i % 20}",
        "tags": ["bench"], "schedule": None, "stable_version": "2024.11.1",
        "router": {"type": "haproxy", "conn_id": "haproxy_default",
                   "settings": {"backend": name, "stable_server": f"{name}-stable", "canary_server": f"{name}-canary"}},
        "metrics": {"type": "prometheus", "conn_id": "prometheus_default",
                    "settings": {"version_label": "version", "labels": {"job": name}}},
        "steps": [1, 5, 25, 50, 100], "bake_time": bake, "gate_timeout": timeout, "poke_interval": "30s",
        "checks": [{**c, "metric": f"{name.replace('-', '_')}_conversions_total"} if "metric" in c else c for c in CHECKS],
        "promote": {"type": "command", "command": ["kubectl", "set", "image", f"deployment/{name}", f"app=registry/{name}:{{version}}"]},
    }


def dag_factory_config(dag) -> dict:
    """The dag-factory YAML for one of our DAGs: its ids and edges, with EmptyOperator tasks."""
    tasks = {}
    for task in dag.tasks:
        tasks[task.task_id] = {"operator": EMPTY, **({"dependencies": sorted(task.upstream_task_ids)} if task.upstream_task_ids else {})}
    return {dag.dag_id: {
        "default_args": {"owner": dag.default_args["owner"], "retries": dag.default_args["retries"], "start_date": "2024-01-01"},
        "description": dag.description, "schedule": None, "catchup": False, "max_active_runs": 1, "tags": sorted(dag.tags),
        "params": {key: dag.params.get_param(key).value for key in dag.params},
        "tasks": tasks,
    }}


def write_fleet(work: Path, n: int) -> tuple[Path, Path]:
    """N spec files, and a dags folder whose one file loads the same N DAGs through dag-factory."""
    import yaml

    from canary_operators.dag_factory import build_dag
    from canary_operators.spec import parse_spec

    specs, yamls, dags = work / "specs", work / "dag-factory-yaml", work / "dag-factory-dags"
    for folder in (specs, yamls, dags):
        folder.mkdir(parents=True)
    shapes: dict = {}
    for i in range(n):
        data = release_spec(i)
        (specs / f"{data['name']}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        key = (data["bake_time"], data["gate_timeout"])
        if key not in shapes:  # ids, edges and param defaults depend only on the timings
            shapes[key] = dag_factory_config(build_dag(parse_spec(data, "bench")))
        (template,) = shapes[key].values()
        config = {f"canary_{data['name']}": {**template, "description": data["description"],
                                             "default_args": {**template["default_args"], "owner": data["owner"]}}}
        (yamls / f"{data['name']}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (dags / "dag_factory_releases.py").write_text(
        "from airflow.sdk import DAG  # noqa: F401 (the word DAG makes Airflow parse this file)\n"
        "from dagfactory import load_yaml_dags\n\n"
        f"load_yaml_dags(globals_dict=globals(), dags_folder={str(yamls)!r})\n"
    )
    return specs, dags / "dag_factory_releases.py"


# -- one parse, in a fresh process -------------------------------------------------------------


def child(kind: str, dag_file: Path, dag_id: str | None) -> None:
    """Runs in the measured process: parse ``dag_file`` as the DAG processor (or a task run) does."""
    import structlog

    log = structlog.get_logger()
    bundle = dag_file.parent
    if kind == "task-run":
        import airflow.sdk.execution_time.task_runner  # noqa: F401 - loaded before the task runner parses
        from airflow.dag_processing.dagbag import BundleDagBag

        os.environ["_AIRFLOW_PARSING_CONTEXT_DAG_ID"] = dag_id
        cpu, wall = time.process_time(), time.perf_counter()
        bag = BundleDagBag(dag_folder=str(dag_file), safe_mode=False, load_op_links=False,
                           bundle_path=bundle, bundle_name="dags-folder")
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(json.dumps({"cpu": cpu, "wall": wall, "dags": sorted(bag.dags), "import_errors": len(bag.import_errors)}))
        return
    from airflow.dag_processing.processor import DagFileParseRequest, _parse_file, _pre_import_airflow_modules
    from airflow.sdk.execution_time.comms import _RequestFrame

    _pre_import_airflow_modules(str(dag_file), log)  # the manager does this before it forks the file's process
    cpu, wall = time.process_time(), time.perf_counter()
    result = _parse_file(DagFileParseRequest(file=str(dag_file), bundle_path=bundle, bundle_name="dags-folder"), log)
    sent = _RequestFrame(id=0, body=result.model_dump()).as_bytes()  # what the child sends to the manager
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    edges = {}
    for lazy in result.serialized_dags:
        dag = lazy.data["dag"]
        edges[dag["dag_id"]] = sorted([t["__var"]["task_id"], d] for t in dag["tasks"] for d in t["__var"].get("downstream_task_ids", []))
    print(json.dumps({"cpu": cpu, "wall": wall, "dags": len(result.serialized_dags), "bytes": len(sent),
                      "import_errors": result.import_errors, "edges": edges}))


def measure(kind: str, dag_file: Path, specs: Path, home: Path, dag_id: str | None = None,
            plan_cache: Path | None = None) -> dict:
    """One parse in a fresh process. ``plan_cache``: the static plans' folder (a new one: cold)."""
    plan_cache = plan_cache or Path(tempfile.mkdtemp(prefix="plans-", dir=home))
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(dag_file.parent),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "CANARY_RELEASES_DIR": str(specs), "CANARY_PLAN_CACHE_DIR": str(plan_cache),
        # Lifted so that both finish and are measured: dag-factory's 1,000 DAGs take longer than the
        # default 30 s to import on a loaded machine.
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "0",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(DEPS)]),
        # dag-factory phones home unless told not to
        "AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY": "False", "SCARF_NO_ANALYTICS": "true", "DO_NOT_TRACK": "true",
    }
    argv = [sys.executable, __file__, "--child", kind, str(dag_file)] + ([dag_id] if dag_id else [])
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        raise SystemExit(f"{kind} parse failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


# -- the run -----------------------------------------------------------------------------------


def median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 1000])
    parser.add_argument("--repeat", type=int, default=3, help="paired runs per size (median)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, dag_file, *dag_id = args.child
        return child(kind, Path(dag_file), dag_id[0] if dag_id else None)

    sys.path.insert(0, str(ROOT / "plugins"))
    check = subprocess.run([sys.executable, "-c", "import dagfactory"], env={**os.environ, "PYTHONPATH": str(DEPS)},
                           capture_output=True)
    if check.returncode:
        raise SystemExit(f"dag-factory is not installed for the benchmark; run `make bench-parse`, or: {INSTALL}")
    started = time.monotonic()
    print(f"Parse benchmark: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, repeat {args.repeat} (medians). "
          "CPU s = one core's seconds for the processor's per-file work (build + serialize + encode).", flush=True)
    print(f"{'specs':>6} | {'ours cold CPU s':>15} | {'ours warm CPU s':>15} | {'dag-factory CPU s':>17} | "
          f"{'ratio cold':>10} | {'ratio warm':>10} | wall s: ours cold, warm, dag-factory", flush=True)
    results: dict[int, dict] = {}
    with tempfile.TemporaryDirectory(prefix="canary-parse-bench-") as tmp:
        tmp = Path(tmp)
        (tmp / "home").mkdir()
        for n in args.sizes:
            specs, df_file = write_fleet(tmp / f"n{n}", n)
            cold, warm, theirs = [], [], []
            for _ in range(args.repeat):
                plans = Path(tempfile.mkdtemp(prefix="plans-", dir=tmp / "home"))
                cold.append(measure("ours", DAG_FILE, specs, tmp / "home", plan_cache=plans))
                warm.append(measure("ours", DAG_FILE, specs, tmp / "home", plan_cache=plans))
                theirs.append(measure("dag-factory", df_file, specs, tmp / "home"))
            for runs, want, label in ((cold + warm, n + 1, "ours (+ canary_guard)"), (theirs, n, "dag-factory")):
                bad = [r for r in runs if r["dags"] != want or r["import_errors"]]
                if bad:
                    raise SystemExit(f"{label}, {n} specs: {bad[0]['dags']} DAGs (want {want}), import errors {bad[0]['import_errors']}")
            mine = {k: v for k, v in cold[0]["edges"].items() if k != "canary_guard"}
            same = mine == theirs[0]["edges"] and cold[0]["edges"] == warm[0]["edges"]
            r = results[n] = {"cold": median(cold, "cpu"), "warm": median(warm, "cpu"), "theirs": median(theirs, "cpu"), "same": same}
            print(f"{n:>6} | {r['cold']:>15.2f} | {r['warm']:>15.2f} | {r['theirs']:>17.2f} | "
                  f"{r['theirs'] / r['cold']:>9.2f}x | {r['theirs'] / r['warm']:>9.2f}x | "
                  f"{median(cold, 'wall'):.1f}, {median(warm, 'wall'):.1f}, {median(theirs, 'wall'):.1f}"
                  + ("" if same else "   (task ids or edges DIFFER)"), flush=True)
        n = max(args.sizes)
        specs, df_file = tmp / f"n{n}" / "specs", tmp / f"n{n}" / "dag-factory-dags" / "dag_factory_releases.py"
        dag_id = f"canary_{release_spec(n // 2)['name']}"
        task_ours = [measure("task-run", DAG_FILE, specs, tmp / "home", dag_id) for _ in range(args.repeat)]  # its plan new
        task_theirs = [measure("task-run", df_file, specs, tmp / "home", dag_id) for _ in range(args.repeat)]
        if task_ours[0]["dags"] != [dag_id] or task_ours[0]["import_errors"]:
            raise SystemExit(f"task-run parse built {task_ours[0]['dags'][:5]}, import errors {task_ours[0]['import_errors']}")
        task_cpu, task_wall = median(task_ours, "cpu"), median(task_ours, "wall")
        print(f"\nTask-run parse with {n} specs present ({dag_id} only): ours {task_cpu:.2f} s CPU ({task_wall:.2f} s wall); "
              f"dag-factory, which builds all {len(task_theirs[0]['dags'])}: {median(task_theirs, 'cpu'):.2f} s CPU "
              f"({median(task_theirs, 'wall'):.2f} s wall).")
        guard = [measure("task-run", DAG_FILE, specs, tmp / "home", "canary_guard") for _ in range(args.repeat)]
        if guard[0]["dags"] != ["canary_guard"] or guard[0]["import_errors"]:
            raise SystemExit(f"canary_guard's task-run parse built {guard[0]['dags'][:5]}, import errors {guard[0]['import_errors']}")
        guard_cpu, guard_wall = median(guard, "cpu"), median(guard, "wall")
        print(f"canary_guard's task-run parse (it lists the spec files for the release names it maps over; each "
              f"mapped task loads its own spec): {guard_cpu:.2f} s CPU ({guard_wall:.2f} s wall).")

    print("\nTargets:")
    if 1000 in results:
        r = results[1000]
        for when, key in (("every static plan new (cold)", "cold"), ("plans cached (warm)", "warm")):
            print(f"- 1,000 specs serialize in under {TARGET_SERIALIZE_SECONDS:g} s on one core, {when}: {r[key]:.2f} s CPU: "
                  f"{verdict(r[key] < TARGET_SERIALIZE_SECONDS)}")
            print(f"- at least {TARGET_RATIO:g}x faster than dag-factory 1.1.0 at 1,000 specs, {when}: "
                  f"{r['theirs'] / r[key]:.2f}x: {verdict(r['theirs'] / r[key] >= TARGET_RATIO)}")
    else:
        print("- the serialize and ratio targets are for 1,000 specs: run with --sizes ... 1000")
    label = f"{n:,} specs" if n == 1000 else f"{n:,} specs (the target is for 1,000)"
    print(f"- a task run's parse with {label} present under {TARGET_TASK_RUN_SECONDS:g} s: {task_cpu:.2f} s CPU "
          f"({task_wall:.2f} s wall): {verdict(task_cpu < TARGET_TASK_RUN_SECONDS and n >= 1000)}")
    print(f"- canary_guard's task-run parse, the same: {guard_cpu:.2f} s CPU ({guard_wall:.2f} s wall): "
          f"{verdict(guard_cpu < TARGET_TASK_RUN_SECONDS and n >= 1000)}")
    print(f"- same task ids and edges in both at every size: {'yes' if all(r['same'] for r in results.values()) else 'NO'}")
    print(f"\nRun time {time.monotonic() - started:.0f} s.")


if __name__ == "__main__":
    main()
