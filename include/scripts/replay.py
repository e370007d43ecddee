"""Replay a run's gate decisions under a changed spec: what was decided, and what would have been.

    # from an exported file (no Airflow needed)
    python include/scripts/replay.py --records looks.json --spec changed.yaml
    # export a run's records through Airflow's REST API (and replay them, with --spec)
    python include/scripts/replay.py --api http://airflow:8080 --dag-id canary_checkout \\
        --run-id manual__2026-11-30T10:00:00+00:00 --export looks.json [--spec changed.yaml]
    # every recorded run of the release (the newest --limit runs)
    python include/scripts/replay.py --api http://airflow:8080 --dag-id canary_checkout --spec changed.yaml

The API needs a token: ``--token`` or ``AIRFLOW_API_TOKEN``, or ``AIRFLOW_API_USERNAME`` and
``AIRFLOW_API_PASSWORD`` to get one from ``/auth/token``. Exits 0 when the replay ran, 1 when
any gate would have decided differently (handy in CI for a proposed spec change), 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "plugins"))

from canary_operators.looks import LOOKS_KEY  # noqa: E402
from canary_operators.replay import render, replay  # noqa: E402


class ApiError(RuntimeError):
    pass


def _session(api: str, token: str | None):
    import requests

    session = requests.Session()
    if not token:
        user, password = os.environ.get("AIRFLOW_API_USERNAME"), os.environ.get("AIRFLOW_API_PASSWORD")
        if not (user and password):
            raise ApiError("no token: pass --token, or set AIRFLOW_API_TOKEN, or AIRFLOW_API_USERNAME and AIRFLOW_API_PASSWORD")
        answer = session.post(f"{api}/auth/token", json={"username": user, "password": password}, timeout=30)
        if answer.status_code not in (200, 201):
            raise ApiError(f"{api}/auth/token answered HTTP {answer.status_code}")
        token = answer.json()["access_token"]
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def _get(session, url: str, **params):
    answer = session.get(url, params=params, timeout=60)
    if answer.status_code == 404:
        return None
    if answer.status_code in (401, 403):
        raise ApiError(f"{url.split('?')[0]} answered HTTP {answer.status_code}: the token is refused or may not read this DAG")
    if answer.status_code != 200:
        raise ApiError(f"{url.split('?')[0]} answered HTTP {answer.status_code}: {answer.text[:200]}")
    return answer.json()


def export_runs(api: str, token: str | None, dag_id: str, run_id: str | None, limit: int = 20) -> dict:
    """The ``looks`` XComs of one run (or of the newest ``limit`` runs), through the REST API."""
    api = api.rstrip("/")
    session = _session(api, token)
    base = f"{api}/api/v2/dags/{quote(dag_id, safe='')}/dagRuns"
    if run_id:
        run_ids = [run_id]
    else:
        listed = _get(session, base, limit=limit, order_by="-run_after") or {}
        run_ids = [r["dag_run_id"] for r in listed.get("dag_runs", [])]
    runs = []
    for rid in run_ids:
        entries = _get(session, f"{base}/{quote(rid, safe='')}/taskInstances/~/xcomEntries", xcom_key=LOOKS_KEY,
                       limit=1000) or {}
        gates = {}
        for entry in entries.get("xcom_entries", []):
            task = entry["task_id"]
            one = _get(session, f"{base}/{quote(rid, safe='')}/taskInstances/{quote(task, safe='')}/xcomEntries/"
                                f"{LOOKS_KEY}", map_index=entry.get("map_index", -1)) or {}
            value = one.get("value")
            gates[task] = json.loads(value) if isinstance(value, str) else value
        runs.append({"dag_id": dag_id, "run_id": rid, "gates": gates})
    return {"runs": runs}


def changed_spec(path: Path):
    """A spec to replay with. Validated like any spec, but its file may be named anything (it is no
    DAG): ``web-looser.yaml`` may hold ``name: web``."""
    import yaml

    from canary_operators.exceptions import SpecError
    from canary_operators.spec import parse_spec, read_spec_text

    try:
        data = yaml.safe_load(read_spec_text(path, str(path)))
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML: {getattr(e, 'problem', e)}") from None
    return parse_spec(data, str(path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--records", type=Path, help="a JSON file of exported records")
    source.add_argument("--api", help="Airflow's base URL, to export the records through the REST API")
    parser.add_argument("--dag-id", help="with --api: the release's DAG id")
    parser.add_argument("--run-id", help="with --api: one run (default: the newest --limit runs)")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--token", default=os.environ.get("AIRFLOW_API_TOKEN"))
    parser.add_argument("--export", type=Path, help="write the exported records to this JSON file")
    parser.add_argument("--spec", type=Path, help="the changed release spec (YAML) to judge the looks with")
    args = parser.parse_args(argv)

    from canary_operators.exceptions import SpecError

    try:
        if args.api:
            if not args.dag_id:
                parser.error("--api needs --dag-id")
            data = export_runs(args.api, args.token, args.dag_id, args.run_id, args.limit)
            if args.export:
                args.export.write_text(json.dumps(data, indent=1))
                print(f"wrote the records of {len(data['runs'])} run(s) to {args.export}", flush=True)
        else:
            data = json.loads(args.records.read_text())
        if not args.spec:
            if not args.export:
                parser.error("give --spec to replay (or --export to only export)")
            return 0
        gates = replay(data, changed_spec(args.spec))
    except (ApiError, SpecError, ValueError, OSError) as e:
        print(f"replay: {e}", file=sys.stderr, flush=True)
        return 2
    print(render(gates), flush=True)
    return 1 if any(g.changed for g in gates) else 0


if __name__ == "__main__":
    sys.exit(main())
