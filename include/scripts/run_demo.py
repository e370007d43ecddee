"""`make demo`: two real canary releases through Airflow on the embedded default.

HAProxy, Prometheus and two demo services run on 127.0.0.1 (ports from airflow_settings.yaml).
Airflow runs with a SQLite DB under a temporary AIRFLOW_HOME; each release is one
`airflow dags test canary_demo` run:

1. v3, a faulty build (about 3% 5xx against 0.2% on stable): rolled back at the first gate.
2. v2, a healthy build: promoted step by step to 100% and made the new stable.

Prints each release's gates, evidence and outcome, and the rollback latency; stops everything it
started, also on Ctrl-C or failure. Exits 0 only when both outcomes are as expected.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import requests
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / ".demo"
DAG_ID = "canary_demo"
FRONTEND_PORT = 18080
LOAD_RPS = 1000
ROLLBACK_LIMIT_SECONDS = 1.0
RELEASES = [
    {"version": "v3", "label": "faulty build (~3% 5xx vs 0.2% on stable)", "expect": "rolled back"},
    {"version": "v2", "label": "healthy build", "expect": "promoted"},
]


def say(message: str = "") -> None:
    print(message, flush=True)


def load_stack_module():
    spec = importlib.util.spec_from_file_location("demo_stack", ROOT / "include" / "demo" / "stack.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def demo_connections() -> dict[str, dict]:
    settings = yaml.safe_load((ROOT / "airflow_settings.yaml").read_text())
    return {c["conn_id"]: c for c in settings["airflow"]["connections"]}


def airflow_env(home: Path) -> dict[str, str]:
    from cryptography.fernet import Fernet

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__FERNET_KEY=Fernet.generate_key().decode(),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
    )
    env.pop("CANARY_RELEASES_DIR", None)
    return env


def run_logged(cmd: list[str], env: dict, log: Path) -> int:
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            return proc.wait()
        finally:
            if proc.poll() is None:  # Ctrl-C or an error here: do not leave the run behind
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()


def canary_weight(stack) -> int:
    stable = int(stack.haproxy_command("get weight app/stable").split()[0])
    canary = int(stack.haproxy_command("get weight app/canary").split()[0])
    return round(canary * 100 / (stable + canary))


def run_results(env: dict) -> list[dict]:
    """Every canary_demo run with its task states and XComs, read from the demo's Airflow DB."""
    code = r"""
import json
from airflow.models import DagRun
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
out = []
with create_session() as s:
    for dr in s.query(DagRun).filter_by(dag_id="canary_demo").order_by(DagRun.start_date):
        xcoms = {}
        for row in s.query(XComModel).filter_by(dag_id=dr.dag_id, run_id=dr.run_id):
            xcoms.setdefault(row.task_id, {})[row.key] = XComModel.deserialize_value(row)
        states = {ti.task_id: str(ti.state) for ti in dr.get_task_instances(session=s)}
        out.append({"run_id": dr.run_id, "state": str(dr.state), "conf": dr.conf, "states": states, "xcoms": xcoms,
                    "note": dr.note})
print(json.dumps(out, default=str))
"""
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"could not read the runs from Airflow's DB:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_report(env: dict, run_id: str, path: Path) -> str:
    """The run's canary report (what the "Canary report" tab of the run shows in Airflow's UI),
    rendered from the demo's Airflow DB into a file: the demo runs no API server to serve it."""
    code = r"""
import sys
from airflow.utils.session import create_session
from canary_operators.report import data, pages
with create_session() as session:
    report = data.load_run(session, sys.argv[1], sys.argv[2])
html = pages.render_run(report, pages.Links(airflow="http://localhost:8080", app="http://localhost:8080/canary-releases"))
open(sys.argv[3], "w").write(html)
"""
    done = subprocess.run([sys.executable, "-c", code, DAG_ID, run_id, str(path)], env=env, capture_output=True,
                          text=True, cwd=ROOT / "plugins")
    if done.returncode != 0:
        raise RuntimeError(f"could not render the report of {run_id}:\n{done.stderr[-2000:]}")
    return path.resolve().as_uri()


def say_notification(run: dict) -> None:
    """The run's one-line outcome (its note, set by the plugin's listener) and the notification a
    spec's ``notify:`` target would get for it (the demo sends none: it has no Slack or SMTP)."""
    sys.path.insert(0, str(ROOT / "plugins"))
    from canary_operators.notify import Message, event_of_outcome, report_url

    line = run.get("note") or "(no outcome note)"
    say(f"  outcome line (the run's note): {line}")
    event = event_of_outcome(line)
    if event is None:
        return
    message = Message(event, "demo", line, DAG_ID, run["run_id"], report_url(DAG_ID, run["run_id"], "http://localhost:8080"))
    say(f"  notification it would send ({event}): {message.title}")
    for text in message.text().splitlines()[1:]:
        say(f"      {text}")


def summarise(run: dict) -> tuple[str, float | None]:
    """Print one release's gates and outcome; return (outcome, seconds to stable or None)."""
    states, xcoms = run["states"], run["xcoms"]
    gates = sorted((t for t in states if t.startswith("gate_")), key=lambda t: int(t.split("_")[1]))
    for gate in gates:
        evidence = (xcoms.get(gate) or {}).get("evidence") or (xcoms.get(gate) or {}).get("return_value")
        if not evidence:
            say(f"    {gate:<8} {states[gate]}")
            continue
        say(f"    {gate:<8} {states[gate]:<8} after {evidence['elapsed_seconds']:.0f}s at {evidence['weight']}%: {evidence['outcome'].upper()}")
        for check in evidence["checks"]:
            say(f"             [{check['check']}] {check['verdict']}: {check['reason']}")
    seconds = None
    if run["state"] == "success" and states.get("complete_rollout") == "success":
        return "promoted", None
    undo = (xcoms.get("rollback") or {}).get("return_value") or {}
    if states.get("rollback") == "success" and undo.get("traffic_changed"):
        fast = next((x["fast_rollback"] for x in xcoms.values() if "fast_rollback" in x), None)
        say(f"    rollback: all traffic back on stable. Why: {undo.get('reason')}")
        if fast and "seconds_to_stable" in fast:
            seconds = fast["seconds_to_stable"]
            say(f"    rollback latency: failing verdict → canary at 0% (read back from HAProxy) in {seconds * 1000:.0f} ms")
        return "rolled back", seconds
    return f"run {run['state']}", None


def main() -> int:
    stack_module = load_stack_module()
    conns = demo_connections()
    token = conns["demo_canary_admin"]["conn_password"]
    if os.path.exists(WORK):
        shutil.rmtree(WORK)
    WORK.mkdir()
    home = Path(tempfile.mkdtemp(prefix="canary-demo-airflow-"))
    env = airflow_env(home)
    airflow = str(Path(sys.executable).with_name("airflow"))
    started = time.monotonic()
    stack = stack_module.DemoStack(
        workdir=WORK / "stack",
        frontend_port=FRONTEND_PORT,
        admin_port=int(conns["haproxy_demo"]["conn_port"]),
        stable_port=int(conns["demo_stable_admin"]["conn_port"]),
        canary_port=int(conns["demo_canary_admin"]["conn_port"]),
        prometheus_port=int(conns["prometheus_demo"]["conn_port"]),
        admin_token=token,
        rps=LOAD_RPS,
        loadgen_threads=16,
        loadgen_max_seconds=900,
    )
    failures: list[str] = []
    try:
        say(f"Starting the demo stack on 127.0.0.1: HAProxy :{FRONTEND_PORT}, Prometheus :{stack.prometheus_port}, "
            f"stable v1 :{stack.stable_port}, canary slot :{stack.canary_port}, load {LOAD_RPS} req/s ...")
        stack.start()
        say("Preparing Airflow (SQLite, temporary AIRFLOW_HOME) and loading airflow_settings.yaml ...")
        if run_logged([airflow, "db", "migrate"], env, WORK / "airflow-db-migrate.log") != 0:
            raise RuntimeError(f"airflow db migrate failed; see {WORK / 'airflow-db-migrate.log'}")
        if run_logged([sys.executable, str(ROOT / "include/scripts/load_airflow_settings.py")], env, WORK / "load-settings.log") != 0:
            raise RuntimeError(f"loading airflow_settings.yaml failed; see {WORK / 'load-settings.log'}")

        for number, release in enumerate(RELEASES, 1):
            say()
            say(f"Release {number}: {DAG_ID} version {release['version']}, {release['label']}; expected: {release['expect']}")
            say(f"  airflow dags test {DAG_ID} -c '{{\"version\": \"{release['version']}\"}}'  (log: .demo/release-{number}.log)")
            t0 = time.monotonic()
            code = run_logged([airflow, "dags", "test", DAG_ID, "-c", json.dumps({"version": release["version"]})],
                              env, WORK / f"release-{number}.log")
            run = run_results(env)[-1]
            outcome, seconds = summarise(run)
            say_notification(run)
            report = write_report(env, run["run_id"], WORK / f"report-{number}.html")
            say(f"  report: {report}")
            say(f"          (in Airflow's UI: the run's \"Canary report\" tab, "
                f"/canary-releases/runs/{DAG_ID}/{quote(run['run_id'], safe='')})")
            weight = canary_weight(stack)
            stable_version = requests.get(stack.stable_url + "/version", timeout=2).json()["version"]
            say(f"  outcome: {outcome.upper()} in {time.monotonic() - t0:.0f}s (airflow exit code {code}); "
                f"HAProxy now: canary {weight}%, stable {100 - weight}% running {stable_version}")
            if outcome != release["expect"]:
                failures.append(f"release {number} ({release['version']}): expected {release['expect']}, got {outcome}")
            if outcome == "rolled back" and (seconds is None or seconds > ROLLBACK_LIMIT_SECONDS):
                failures.append(f"release {number}: rollback latency {seconds}s exceeds {ROLLBACK_LIMIT_SECONDS}s")
            if weight != 0:
                failures.append(f"release {number}: the canary still takes {weight}% of traffic")
            expected_exit = 0 if release["expect"] == "promoted" else 1
            if code != expected_exit:
                failures.append(f"release {number}: airflow dags test exited {code}, expected {expected_exit}")
        if requests.get(stack.stable_url + "/version", timeout=2).json()["version"] != "v2":
            failures.append("after the demo the stable slot should run v2")
    except KeyboardInterrupt:
        say("\ninterrupted; stopping everything")
        return 130
    except Exception as e:  # noqa: BLE001 - report any failure plainly, then clean up
        failures.append(str(e))
    finally:
        stack.stop()
        shutil.rmtree(home, ignore_errors=True)
    say()
    if failures:
        say("DEMO FAILED:")
        for failure in failures:
            say(f"  - {failure}")
        say(f"  logs: .demo/")
        return 1
    say(f"Demo OK in {time.monotonic() - started:.0f}s: the faulty build was rolled back at the first gate, "
        "the healthy build was promoted to 100% and is the new stable. Everything started has been stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
