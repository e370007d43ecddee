#!/usr/bin/env python3
"""Start a canary release from CI through Airflow's REST API and follow it live.

    AIRFLOW_API_URL=https://airflow.example.com AIRFLOW_USERNAME=ci AIRFLOW_PASSWORD=... \\
        python include/ci/trigger_release.py --dag canary_web --version "$GIT_SHA_SHORT"

1. gets a JWT from /auth/token (credentials from the environment, never from arguments);
2. unpauses the DAG if needed;
3. triggers POST /api/v2/dags/{dag}/dagRuns with conf {version, ...} and a run id derived from
   the commit, so a re-run of the same CI job follows the same release instead of starting another;
4. prints each step as it happens: the weight, each gate's verdict and reason;
5. reads the outcome from the release's status record (Variable ``canary_status__<release>``),
   never from the run's state alone: a run marked success by hand is not a promotion;
6. exits 0 when this run promoted the release (or there was nothing to release, or a dry run
   finished), 1 when it was rolled back, 2 on an error or a timeout: Airflow unreachable, bad
   credentials, conf refused (HTTP 400) or refused by preflight (no traffic moved), a rollback
   that did not finish (traffic not restored), or the run still going after --timeout.

Only the standard library and requests.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

import requests

PROMOTED, ROLLED_BACK, ERROR = 0, 1, 2
FINISHED = {"success", "failed"}


class ClientError(Exception):
    """Anything that is not a release outcome: bad credentials, bad conf, timeouts."""


class Airflow:
    """The few REST calls the client needs, with a bearer token."""

    def __init__(self, url: str, username: str, password: str, timeout: float = 30):
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.timeout = timeout
        try:
            answer = self.session.post(f"{self.url}/auth/token", json={"username": username, "password": password}, timeout=timeout)
        except requests.RequestException as e:
            raise ClientError(f"cannot reach Airflow at {self.url}: {type(e).__name__}") from None
        if answer.status_code not in (200, 201):
            raise ClientError(f"Airflow refused the credentials of {username!r} (HTTP {answer.status_code})")
        self.session.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        try:
            return self.session.request(method, f"{self.url}/api/v2{path}", timeout=self.timeout, **kwargs)
        except requests.RequestException as e:
            raise ClientError(f"{method} {path} failed: {type(e).__name__}") from None

    def json(self, method: str, path: str, ok=(200,), **kwargs) -> dict:
        answer = self.call(method, path, **kwargs)
        if answer.status_code not in ok:
            raise ClientError(f"{method} {path}: HTTP {answer.status_code}: {_detail(answer)}")
        return answer.json()

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value"):
        answer = self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
                           params={"deserialize": "true", "stringify": "false"})
        if answer.status_code != 200:
            return None
        value = answer.json().get("value")
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value


def _detail(answer: requests.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:500]
    detail = body.get("detail", body)
    return json.dumps(detail) if not isinstance(detail, str) else detail


def run_id_for(version: str, commit: str | None) -> str:
    """``ci__<version>__<commit12>``: one release per commit and version.

    Characters that Airflow refuses in a run id (``[scheduler] allowed_run_id_pattern`` is
    ``^[A-Za-z0-9_.~:+-]+$``) are replaced by ``_``, so that a bad version is refused by the
    DAG's ``version`` param, with a message naming it, and not as a bad run id."""
    suffix = re.sub(r"[^A-Za-z0-9]", "", commit or "")[:12] or time.strftime("%Y%m%dT%H%M%S")
    return f"ci__{re.sub(r'[^A-Za-z0-9_.~:+-]', '_', version)[:100]}__{suffix}"


def describe(task_id: str, state: str, api: Airflow, dag_id: str, run_id: str) -> str:
    """One line for a task that reached ``state``, with the weight or the gate's verdict."""
    if task_id.startswith("shift_to_") and state == "success":
        shifted = api.xcom(dag_id, run_id, task_id) or {}
        if shifted.get("skipped"):
            return f"{task_id}: skipped by this run's steps"
        if shifted.get("dry_run"):
            return f"{task_id}: dry run, would set the canary to {shifted.get('weight', '?')}% of traffic"
        return f"{task_id}: canary now takes {shifted.get('weight', '?')}% of traffic"
    if task_id.startswith("gate_") and state in ("success", "failed"):
        evidence = api.xcom(dag_id, run_id, task_id, "evidence") or api.xcom(dag_id, run_id, task_id) or {}
        if evidence.get("outcome") == "skipped":
            return f"{task_id}: skipped by this run's steps"
        verdict = "PASSED" if state == "success" else "FAILED"
        if evidence.get("dry_run"):  # a dry run's gate looks once and reports; it never holds or fails
            verdict = f"DRY RUN, the gate would {evidence.get('outcome', '?')} now"
        lines = [f"{task_id}: {verdict}: {evidence.get('reason', '')}"]
        for check in evidence.get("checks", []):
            lines.append(f"    [{check['check']}] {check['verdict']}: {check['reason']}")
        return "\n".join(lines)
    if task_id == "rollback" and state == "success":
        rolled = api.xcom(dag_id, run_id, task_id) or {}
        if rolled.get("promoted"):
            return "rollback: nothing to undo, the release was promoted"
        if rolled.get("traffic_changed") is False:
            return f"rollback: nothing to undo, this run moved no traffic. Why: {rolled.get('reason', 'see the task log')}"
        return f"rollback: traffic back on stable. Why: {rolled.get('reason', 'see the task log')}"
    if task_id.startswith("approve_") and state in ("awaiting_input", "deferred"):
        return (f"{task_id}: waiting for a person: answer in the Airflow UI (Required Actions) or with PATCH "
                f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails")
    return f"{task_id}: {state}"


def follow(api: Airflow, dag_id: str, run_id: str, timeout: float, poll: float, out=print) -> str:
    """Print task changes until the run finishes; return its final state."""
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while True:
        run = api.json("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        tasks = api.json("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
        for ti in sorted(tasks.get("task_instances", []), key=lambda t: t.get("start_date") or "~"):
            state = ti.get("state")
            if state and seen.get(ti["task_id"]) != state:
                seen[ti["task_id"]] = state
                if state in ("running", "deferred", "awaiting_input", "up_for_retry", "success", "failed", "skipped",
                             "upstream_failed"):
                    out(describe(ti["task_id"], state, api, dag_id, run_id))
        if run["state"] in FINISHED:
            return run["state"]
        if time.monotonic() > deadline:
            raise ClientError(f"run {run_id} still {run['state']} after {timeout:g}s")
        time.sleep(poll)


def main(argv: list[str] | None = None, out=print) -> int:
    parser = argparse.ArgumentParser(description="Trigger a canary release and follow it.")
    parser.add_argument("--dag", required=True, help="the release DAG, e.g. canary_web")
    parser.add_argument("--version", required=True, help="the version to release")
    parser.add_argument("--conf", default="{}", help="more conf as JSON, e.g. '{\"steps\": [25, 100]}'")
    parser.add_argument("--commit", default=os.environ.get("GITHUB_SHA") or os.environ.get("CI_COMMIT_SHA"),
                        help="commit the run id is derived from (default: $GITHUB_SHA or $CI_COMMIT_SHA)")
    parser.add_argument("--run-id", help="explicit run id (default: derived from version and commit)")
    parser.add_argument("--api-url", default=os.environ.get("AIRFLOW_API_URL", "http://localhost:8080"))
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to follow the run")
    parser.add_argument("--poll", type=float, default=5, help="seconds between looks")
    args = parser.parse_args(argv)

    username, password = os.environ.get("AIRFLOW_USERNAME"), os.environ.get("AIRFLOW_PASSWORD")
    if not username or not password:
        out("error: set AIRFLOW_USERNAME and AIRFLOW_PASSWORD")
        return ERROR
    try:
        extra = json.loads(args.conf)
    except ValueError as e:
        out(f"error: --conf is not JSON: {e}")
        return ERROR
    if not isinstance(extra, dict):
        out(f"error: --conf must be a JSON object, got {type(extra).__name__}")
        return ERROR
    conf = {**extra, "version": args.version}
    run_id = args.run_id or run_id_for(args.version, args.commit)
    try:
        api = Airflow(args.api_url, username, password)
        dag = api.json("GET", f"/dags/{args.dag}")
        if dag.get("is_paused"):
            api.json("PATCH", f"/dags/{args.dag}", json={"is_paused": False})
            out(f"unpaused {args.dag}")
        answer = api.call("POST", f"/dags/{args.dag}/dagRuns", json={"logical_date": None, "dag_run_id": run_id, "conf": conf})
        if answer.status_code == 409:
            out(f"run {run_id} already exists; following it")
        elif answer.status_code != 200:
            raise ClientError(f"Airflow refused the run (HTTP {answer.status_code}): {_detail(answer)}")
        else:
            out(f"triggered {args.dag} run {run_id} with conf {json.dumps(conf)}")
        state = follow(api, args.dag, run_id, args.timeout, args.poll, out)
        return outcome(api, args.dag, run_id, args.version, state, out)
    except ClientError as e:
        out(f"error: {e}")
        return ERROR


def release_record(api: Airflow, dag_id: str) -> dict | None:
    """The release's status record, or None when it cannot be read (none yet, or no permission)."""
    release = dag_id.removeprefix("canary_")
    answer = api.call("GET", f"/variables/canary_status__{release}")
    if answer.status_code != 200:
        return None
    try:
        value = answer.json().get("value")
        record = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def outcome(api: Airflow, dag_id: str, run_id: str, version: str, state: str, out=print) -> int:
    """The exit code of a finished run, with a last line that says what happened."""
    preflight = api.xcom(dag_id, run_id, "preflight")
    if state == "success" and preflight is None:
        out("nothing to release: the version is already stable")
        return PROMOTED
    if state == "success" and isinstance(preflight, dict) and preflight.get("dry_run"):
        out(f"DRY RUN of {version} complete: no traffic moved, nothing promoted (see the gates above)")
        return PROMOTED
    record = release_record(api, dag_id)
    tis = api.json("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100}).get("task_instances", [])
    states = {ti["task_id"]: ti.get("state") for ti in tis}
    ours = record is not None and record.get("run_id") == run_id
    if record is None:
        out("warning: cannot read the release's status record (Variable canary_status__…); judging from the tasks")
        promoted = states.get("promote") == "success" and states.get("complete_rollout") == "success"
    else:
        promoted = ours and record.get("phase") == "promoted"
    if promoted:
        if state != "success":
            out(f"warning: {version} was promoted, but the run ended {state}: see the Airflow UI (e.g. after_promote)")
        out(f"PROMOTED {version}")
        return PROMOTED
    if ours and record.get("phase") == "unsafe":
        out(f"error: TRAFFIC NOT RESTORED for {version}: {record.get('decision', '')}: check the traffic split now")
        return ERROR
    if state == "success":  # marked success by hand: the undo ran, nothing was promoted
        out(f"warning: the run ended success but {version} was NOT promoted "
            f"(release record: {(record or {}).get('phase', 'unknown')})")
    rollback_state = next((ti.get("state") for ti in tis if ti["task_id"] == "rollback"), None)
    rolled = api.xcom(dag_id, run_id, "rollback") or {}
    reason = rolled.get("reason", "see the Airflow UI")
    if rollback_state != "success":
        if rollback_state in ("failed", "upstream_failed", "up_for_retry"):
            # The rollback did not finish: traffic may still be on the canary.
            out(f"error: ROLLBACK FAILED for {version} (rollback task {rollback_state}): check the traffic split now")
        else:  # e.g. the last check after promotion failed, or someone marked the run failed
            out(f"error: the run of {version} failed without a rollback (rollback task {rollback_state}): see the Airflow UI")
        return ERROR
    if preflight is None or rolled.get("traffic_changed") is False:
        # Preflight refused the run (bad conf, router or metrics unreachable): nothing was released.
        out(f"error: {version} was not released, preflight failed and no traffic moved: {reason}")
        return ERROR
    out(f"ROLLED BACK {version}: {reason}")
    return ROLLED_BACK


if __name__ == "__main__":
    sys.exit(main())
