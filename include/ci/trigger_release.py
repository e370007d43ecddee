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
   finished); 1 only when a gate or a person decided to roll back (a check failed on the
   canary's data, someone chose *Roll back* or ended the run by hand, or nobody approved in
   time); 2 when the tooling failed: Airflow unreachable until --timeout, bad credentials, an
   answer that is not JSON, conf refused (HTTP 400) or refused by preflight (no traffic moved),
   a rollback without a verdict (metrics backend down, a gate's wait lost or timed out, a task
   that crashed), a rollback that did not finish (traffic not restored), or the run still going
   after --timeout.

Every line is flushed as it is printed (CI logs are pipes). Connection errors, timeouts and
HTTP 5xx are retried with backoff until --timeout, so the client follows a run through an
api-server restart. It never prints a traceback.

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
TRANSIENT = {500, 502, 503, 504}  # and every connection error or timeout: retried until the deadline
FIRST_DELAY, MAX_DELAY = 1.0, 15.0  # backoff between retries, in seconds
REQUEST_TIMEOUT = 30.0
# The judge turns a holding verdict into "fail" when the gate must decide (judge.decide.apply_policy,
# reason "<verdict> at the gate timeout: ..." or "error by on_error: ...", which older versions
# worded "error after repeated errors: ..."). A check that
# failed only because the metrics backend erred or had no data is no verdict on the canary.
NO_VERDICT = re.compile(r"(error|no_data) (at the gate timeout|by on_error|after repeated errors):")
PERSON = re.compile(r"rolled back before \d+% by (.+)$")  # operators/approve.py


class ClientError(Exception):
    """Anything that is not a release outcome: bad credentials, bad conf, timeouts."""


def say(line: str) -> None:
    """Print one line now: CI logs are pipes, and a pipe is block-buffered unless flushed."""
    try:
        print(line, flush=True)
    except BrokenPipeError:  # the reader has gone; nothing to tell it
        pass


SECRETS: set[str] = set()  # the password at start, the bearer token after login


def scrubbed(out, *secrets: str):
    """``out`` with every secret (these and any added to ``SECRETS`` later) replaced by ``***``,
    should a server echo one back."""
    SECRETS.update(s for s in secrets if s and len(s) >= 4)

    def write(line: str) -> None:
        for secret in sorted(SECRETS, key=len, reverse=True):
            line = line.replace(secret, "***")
        out(line)
    return write


class Airflow:
    """The few REST calls the client needs, with a bearer token.

    Every request rides out connection errors, timeouts and HTTP 5xx (an api-server restart,
    a locked database) with backoff until ``deadline`` (time.monotonic()); an expired token is
    renewed once. Anything else is returned, or raised as ClientError."""

    def __init__(self, url: str, username: str, password: str, timeout: float = REQUEST_TIMEOUT,
                 deadline: float | None = None, out=say):
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.timeout = timeout
        self.deadline = deadline if deadline is not None else time.monotonic() + 300
        self.out = out
        self._credentials = (username, password)
        self.login()

    def login(self) -> None:
        username, password = self._credentials
        self.session.headers.pop("Authorization", None)
        answer = self._send("POST", f"{self.url}/auth/token", "/auth/token", renew=False,
                            json={"username": username, "password": password})
        if answer.status_code in (401, 403):
            raise ClientError(f"Airflow refused the credentials of {username!r} (HTTP {answer.status_code})")
        if answer.status_code not in (200, 201):
            raise ClientError(f"POST /auth/token: HTTP {answer.status_code}: {_detail(answer)}")
        token = _json(answer, "POST /auth/token")
        if not isinstance(token, dict) or not isinstance(token.get("access_token"), str):
            raise ClientError("POST /auth/token answered JSON without an access_token: is AIRFLOW_API_URL Airflow's API server?")
        self.session.headers["Authorization"] = f"Bearer {token['access_token']}"
        if len(token["access_token"]) >= 4:
            SECRETS.add(token["access_token"])

    def _send(self, method: str, url: str, what: str, renew: bool = True, **kwargs) -> requests.Response:
        delay, renewed, down_since = FIRST_DELAY, not renew, None
        while True:
            left = self.deadline - time.monotonic()
            try:
                answer = self.session.request(method, url, timeout=max(1.0, min(self.timeout, left)), **kwargs)
            except requests.RequestException as e:
                problem = type(e).__name__
            else:
                if answer.status_code == 401 and not renewed:  # the token expired (or the server's key changed)
                    renewed = True
                    self.login()
                    continue
                if answer.status_code not in TRANSIENT:
                    if down_since is not None:
                        self.out(f"Airflow answers again after {time.monotonic() - down_since:.0f}s")
                    return answer
                problem = f"HTTP {answer.status_code}"
            down_since = down_since if down_since is not None else time.monotonic()
            if time.monotonic() + delay > self.deadline:
                raise ClientError(f"{method} {what}: Airflow unavailable ({problem}) until the --timeout ran out")
            self.out(f"Airflow unavailable ({method} {what}: {problem}); retrying in {delay:g}s")
            time.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        return self._send(method, f"{self.url}/api/v2{path}", path, **kwargs)

    def json(self, method: str, path: str, ok=(200,), **kwargs) -> dict:
        answer = self.call(method, path, **kwargs)
        if answer.status_code not in ok:
            raise ClientError(f"{method} {path}: HTTP {answer.status_code}: {_detail(answer)}")
        body = _json(answer, f"{method} {path}")
        if not isinstance(body, dict):
            raise ClientError(f"{method} {path} answered {type(body).__name__}, not a JSON object")
        return body

    def optional(self, path: str, **kwargs):
        """GET ``path`` as JSON, or None when it is missing, forbidden or not JSON."""
        answer = self.call("GET", path, **kwargs)
        if answer.status_code != 200:
            return None
        try:
            return answer.json()
        except ValueError:
            return None

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value"):
        body = self.optional(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
                             params={"deserialize": "true", "stringify": "false"})
        value = body.get("value") if isinstance(body, dict) else None
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value


def _json(answer: requests.Response, what: str):
    try:
        return answer.json()
    except ValueError:
        kind = answer.headers.get("Content-Type", "no content type").split(";")[0]
        raise ClientError(f"{what} answered HTTP {answer.status_code} that is not JSON ({kind}): is AIRFLOW_API_URL "
                          "Airflow's API server, not a proxy or login page?") from None


def _detail(answer: requests.Response) -> str:
    """The server's reason, on one line: the first line of a message (Airflow's param errors carry
    the whole JSON schema after it), or ``field: message`` per validation error."""
    try:
        body = answer.json()
    except ValueError:
        return " ".join(answer.text[:300].split()) or "(empty answer)"
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list):  # FastAPI's validation errors: [{"loc": [...], "msg": ...}, ...]
        detail = "; ".join(f"{'.'.join(str(p) for p in d.get('loc', [])[1:]) or 'body'}: {d.get('msg', d)}"
                           if isinstance(d, dict) else str(d) for d in detail)
    elif not isinstance(detail, str):
        detail = json.dumps(detail)
    lines = [line.strip() for line in detail.strip().splitlines() if line.strip()]
    return (lines[0] if lines else "(no detail)")[:500]


def run_id_for(version: str, commit: str | None) -> str:
    """``ci__<version>__<commit12>``: one release per commit and version.

    Characters that Airflow refuses in a run id (``[scheduler] allowed_run_id_pattern`` is
    ``^[A-Za-z0-9_.~:+-]+$``) are replaced by ``_``, so that a bad version is refused by the
    DAG's ``version`` param, with a message naming it, and not as a bad run id."""
    suffix = re.sub(r"[^A-Za-z0-9]", "", commit or "")[:12] or time.strftime("%Y%m%dT%H%M%S")
    return f"ci__{re.sub(r'[^A-Za-z0-9_.~:+-]', '_', version)[:100]}__{suffix}"


def describe(task_id: str, state: str, api: Airflow, dag_id: str, run_id: str) -> str:
    """One line for a task that reached ``state``, with the weight or the gate's verdict. A release
    across several targets has a task group per target (``eu.gate_25``)."""
    name = task_id.rpartition(".")[2]
    if name.startswith("shift_to_") and state == "success":
        shifted = api.xcom(dag_id, run_id, task_id) or {}
        if shifted.get("skipped"):
            return f"{task_id}: skipped by this run's steps"
        if shifted.get("dry_run"):
            return f"{task_id}: dry run, would set the canary to {shifted.get('weight', '?')}% of traffic"
        return f"{task_id}: canary now takes {shifted.get('weight', '?')}% of traffic"
    if name.startswith("gate_") and state in ("success", "failed"):
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
    if name == "rollback" and state == "success":
        rolled = api.xcom(dag_id, run_id, task_id) or {}
        if rolled.get("promoted"):
            return f"{task_id}: nothing to undo, the release was promoted"
        if rolled.get("traffic_changed") is False:
            return f"{task_id}: nothing to undo, this run moved no traffic. Why: {rolled.get('reason', 'see the task log')}"
        return f"{task_id}: traffic back on stable. Why: {rolled.get('reason', 'see the task log')}"
    if name.startswith("approve_") and state in ("awaiting_input", "deferred"):
        return (f"{task_id}: waiting for a person: answer in the Airflow UI (Required Actions) or with PATCH "
                f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails")
    return f"{task_id}: {state}"


def follow(api: Airflow, dag_id: str, run_id: str, deadline: float, poll: float, out=say) -> str:
    """Print task changes until the run finishes; return its final state. ``deadline`` is a
    time.monotonic() value."""
    seen: dict[str, str] = {}
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
        if run.get("state") in FINISHED:
            return run["state"]
        if time.monotonic() + poll > deadline:
            raise ClientError(f"run {run_id} still {run.get('state')} when the --timeout ran out; it goes on in Airflow, "
                              "and a re-run of this job follows it")
        time.sleep(poll)


def main(argv: list[str] | None = None, out=say) -> int:
    """The exit code; never raises (a traceback in CI would read as a failed release)."""
    out = scrubbed(out, os.environ.get("AIRFLOW_PASSWORD") or "")
    try:
        return _main(argv, out)
    except ClientError as e:
        out(f"error: {e}")
    except Exception as e:  # noqa: BLE001 - a bug here must still end in a clear line and code 2
        out(f"error: the CI client failed: {type(e).__name__}: {e}")
    return ERROR


def _main(argv: list[str] | None, out) -> int:
    parser = argparse.ArgumentParser(description="Trigger a canary release and follow it.")
    parser.add_argument("--dag", required=True, help="the release DAG, e.g. canary_web")
    parser.add_argument("--version", required=True, help="the version to release")
    parser.add_argument("--conf", default="{}", help="more conf as JSON, e.g. '{\"steps\": [25, 100]}'")
    parser.add_argument("--commit", default=os.environ.get("GITHUB_SHA") or os.environ.get("CI_COMMIT_SHA"),
                        help="commit the run id is derived from (default: $GITHUB_SHA or $CI_COMMIT_SHA)")
    parser.add_argument("--run-id", help="explicit run id (default: derived from version and commit)")
    parser.add_argument("--api-url", default=os.environ.get("AIRFLOW_API_URL", "http://localhost:8080"))
    parser.add_argument("--timeout", type=float, default=3600,
                        help="seconds to follow the run, Airflow outages included")
    parser.add_argument("--poll", type=float, default=5, help="seconds between looks")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse has printed the usage and the problem to stderr
        return ERROR if e.code else PROMOTED
    deadline = time.monotonic() + args.timeout

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
    api = Airflow(args.api_url, username, password, deadline=deadline, out=out)
    dag = api.json("GET", f"/dags/{args.dag}")
    if dag.get("is_paused"):
        api.json("PATCH", f"/dags/{args.dag}", json={"is_paused": False})
        out(f"unpaused {args.dag}")
    # Retried on 5xx and lost answers: the run id makes a repeated POST answer 409, never a second run.
    answer = api.call("POST", f"/dags/{args.dag}/dagRuns", json={"logical_date": None, "dag_run_id": run_id, "conf": conf})
    if answer.status_code == 409:
        out(f"run {run_id} already exists; following it")
    elif answer.status_code != 200:
        raise ClientError(f"Airflow refused the run (HTTP {answer.status_code}): {_detail(answer)}")
    else:
        out(f"triggered {args.dag} run {run_id} with conf {json.dumps(conf)}")
    state = follow(api, args.dag, run_id, deadline, args.poll, out)
    return outcome(api, args.dag, run_id, args.version, state, out)


def release_record(api: Airflow, dag_id: str, target: str | None = None) -> dict | None:
    """The release's status record (or one target's, ``canary_status__<release>__<target>``), or
    None when it cannot be read (none yet, or no permission)."""
    release = dag_id.removeprefix("canary_") + (f"__{target}" if target else "")
    body = api.optional(f"/variables/canary_status__{release}")
    value = body.get("value") if isinstance(body, dict) else None
    try:
        record = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _start(ti: dict) -> str:
    return ti.get("start_date") or ti.get("end_date") or "~"


def rollback_cause(api: Airflow, dag_id: str, run_id: str, tis: list[dict]) -> tuple[bool, str]:
    """Who rolled the release back: ``(True, why)`` when a gate or a person decided, ``(False, why)``
    when the tooling failed (no verdict on the canary).

    A gate decided when its evidence (XCom ``evidence``) has outcome ``rollback`` and a check
    that failed on the canary's data. A person decided by choosing *Roll back* (or by letting the
    approval time out, whose default is *Roll back*), or by ending the run by hand: then no task
    before the undo failed. Anything else that failed (a task's ``failure`` XCom: a metrics
    backend down, a gate's wait lost or timed out, a router error, a crashed task) is tooling."""
    failed = sorted((ti for ti in tis if ti.get("state") == "failed"
                     and ti["task_id"].rpartition(".")[2] not in ("rollback", "complete_rollout")), key=_start)
    if not failed:
        return True, "the run was ended by hand before promotion"
    for ti in failed:
        task_id = ti["task_id"]
        if not task_id.rpartition(".")[2].startswith(("gate_", "approve_")):  # eu.gate_25 in a release with targets
            continue
        evidence = api.xcom(dag_id, run_id, task_id, "evidence")
        if isinstance(evidence, dict) and evidence.get("outcome") == "rollback":
            failing = [c for c in evidence.get("checks") or [] if isinstance(c, dict) and c.get("verdict") == "fail"
                       and not NO_VERDICT.match(str(c.get("reason", "")))]
            if failing:
                return True, f"{task_id}: " + "; ".join(f"{c.get('check')}: {c.get('reason', '')}" for c in failing)
        failure = api.xcom(dag_id, run_id, task_id, "failure")
        person = PERSON.search(str(failure.get("error", ""))) if isinstance(failure, dict) else None
        if person:
            who = person.group(1).strip()
            if who == "the timeout default":
                return True, f"{task_id}: nobody approved before the approval timeout (the default is Roll back)"
            return True, f"{task_id}: {who} chose Roll back"
    first = failed[0]["task_id"]
    failure = api.xcom(dag_id, run_id, first, "failure")
    if isinstance(failure, dict) and failure.get("error"):
        return False, f"{first}: {failure['error']}"
    return False, f"{first} failed without recording why (its process may have been lost): see its log"


def outcome(api: Airflow, dag_id: str, run_id: str, version: str, state: str, out=say) -> int:
    """The exit code of a finished run, with a last line that says what happened."""
    tis = api.json("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100}).get("task_instances", [])
    targets = sorted({ti["task_id"].split(".")[0] for ti in tis if "." in ti["task_id"]})
    if targets:  # a release across several targets: a task group each
        return targets_outcome(api, dag_id, run_id, version, state, tis, targets, out)
    preflight = api.xcom(dag_id, run_id, "preflight")
    if state == "success" and preflight is None:
        out("nothing to release: the version is already stable")
        return PROMOTED
    if state == "success" and isinstance(preflight, dict) and preflight.get("dry_run"):
        out(f"DRY RUN of {version} complete: no traffic moved, nothing promoted (see the gates above)")
        return PROMOTED
    record = release_record(api, dag_id)
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
    rolled = api.xcom(dag_id, run_id, "rollback")
    rolled = rolled if isinstance(rolled, dict) else {}
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
    decided, why = rollback_cause(api, dag_id, run_id, tis)
    if not decided:
        out(f"error: {version} was rolled back without a verdict on it (the tooling failed; traffic is back on "
            f"stable): {why}")
        return ERROR
    out(f"ROLLED BACK {version}: {reason}")
    return ROLLED_BACK



def targets_outcome(api: Airflow, dag_id: str, run_id: str, version: str, state: str, tis: list[dict],
                    targets: list[str], out=say) -> int:
    """The exit code of a release across several targets (a task group each): 0 only when every
    target was promoted; 1 when a gate or a person decided to roll back; 2 when the tooling failed
    or a target's traffic may not be restored."""
    preflights = [api.xcom(dag_id, run_id, f"{target}.preflight") for target in targets]
    if state == "success" and all(p is None for p in preflights):
        out("nothing to release: the version is already stable in every target")
        return PROMOTED
    if state == "success" and any(isinstance(p, dict) and p.get("dry_run") for p in preflights):
        out(f"DRY RUN of {version} complete: no traffic moved, nothing promoted (see the gates above)")
        return PROMOTED
    states = {ti["task_id"]: ti.get("state") for ti in tis}
    promoted, unsafe, undo_failed, reasons = [], [], [], []
    for target in targets:
        record = release_record(api, dag_id, target)
        ours = record is not None and record.get("run_id") == run_id
        if record is None:
            done = states.get(f"{target}.promote") == "success" and states.get(f"{target}.complete_rollout") == "success"
        else:
            done = ours and record.get("phase") == "promoted"
        if done:
            promoted.append(target)
            continue
        if ours and record.get("phase") == "unsafe":
            unsafe.append(f"{target}: {record.get('decision', '')}")
        if states.get(f"{target}.rollback") != "success":
            undo_failed.append(f"{target} (rollback task {states.get(f'{target}.rollback')})")
        rolled = api.xcom(dag_id, run_id, f"{target}.rollback")
        if isinstance(rolled, dict) and rolled.get("reason"):
            reasons.append(rolled["reason"])
    if len(promoted) == len(targets):
        out(f"PROMOTED {version} to every target: {', '.join(targets)}")
        return PROMOTED
    if unsafe:
        out(f"error: TRAFFIC NOT RESTORED for {version}: {'; '.join(unsafe)}: check the traffic split now")
        return ERROR
    if undo_failed:
        out(f"error: ROLLBACK FAILED for {version} in {', '.join(undo_failed)}: check the traffic split now")
        return ERROR
    kept = f" ({', '.join(promoted)} stays promoted)" if promoted else ""
    decided, why = rollback_cause(api, dag_id, run_id, tis)
    if not decided:
        out(f"error: {version} was rolled back without a verdict on it (the tooling failed; traffic is back on "
            f"stable){kept}: {why}")
        return ERROR
    out(f"ROLLED BACK {version}{kept}: {reasons[0] if reasons else why}")
    return ROLLED_BACK

if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        say("interrupted: the run goes on in Airflow; a re-run of this job follows it")
        sys.exit(130)
