"""The CI client (``include/ci/trigger_release.py``) against a tiny fake Airflow REST API.

The fake speaks the few paths the client uses. A test scripts the run as a list of looks (run
state and task states per look of the client), the XComs and the status record, and can break
the server: 5xx answers, a stopped server (connection refused), or a login page instead of JSON.
What each exit code means is specified here, with literal data.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import pytest

from tests.conftest import ROOT, free_port, load_module

DAG = "canary_web"
RUN = "ci__v2__abc123"
CLIENT = ROOT / "include" / "ci" / "trigger_release.py"
SCHEMA_DUMP = ("Invalid input for param steps: 30 is not one of [10, 100]\n\nFailed validating 'enum' in "
               "schema['items']:\n    {'enum': [10, 100], 'type': 'integer'}\n\nOn instance[1]:\n    30")


@pytest.fixture(scope="module")
def client():
    return load_module("include/ci/trigger_release.py", "trigger_release_unit")


class FakeAirflow:
    """Airflow's REST API as the client sees it. ``looks``: one (run state, {task: state}) per GET
    of the run; the last one repeats. ``xcoms``: {(task, key): value}. ``record``: the status record."""

    def __init__(self, looks, xcoms=None, record=None, port=None, records=None):
        self.looks = list(looks)
        self.xcoms = dict(xcoms or {})
        self.record = record
        self.records = dict(records or {})  # more status records by release name: a release's targets (web__eu)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.trigger_answer = (200, {"dag_run_id": RUN})
        self.token_answer = (201, {"access_token": "token-1"})
        self.fail_next: list[int] = []  # HTTP statuses for the next API requests
        self.hold = threading.Event()  # while not set, the run stays at its first look
        self.hold.set()
        self.requests: list[str] = []
        self.server = None

    # -- the server -------------------------------------------------------------------------
    def start(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status, body, content_type="application/json"):
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null") if length else None
                path = urlparse(self.path).path
                fake.requests.append(f"{method} {path}")
                status, answer = fake.route(method, path, body, self.headers.get("Authorization"))
                if isinstance(answer, str):
                    self._answer(status, answer, "text/html")
                else:
                    self._answer(status, answer)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_PATCH(self):
                self._handle("PATCH")

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    # -- the API ----------------------------------------------------------------------------
    def route(self, method, path, body, auth):
        if path == "/auth/token" and method == "POST":
            return self.token_answer
        if not auth or not auth.startswith("Bearer "):
            return 401, {"detail": "Not authenticated"}
        if self.fail_next:
            return self.fail_next.pop(0), {"detail": "Database error"}
        api = path.removeprefix("/api/v2")
        if api == f"/dags/{DAG}":
            return 200, {"dag_id": DAG, "is_paused": False}
        if api == f"/dags/{DAG}/dagRuns" and method == "POST":
            return self.trigger_answer
        if api == f"/dags/{DAG}/dagRuns/{RUN}":
            if self.hold.is_set() and len(self.looks) > 1:
                state, tasks = self.looks.pop(0)
            else:
                state, tasks = self.looks[0]
            self.tasks = tasks
            return 200, {"dag_run_id": RUN, "state": state}
        if api == f"/dags/{DAG}/dagRuns/{RUN}/taskInstances":
            tis = [{"task_id": t, "state": s, "start_date": f"2026-11-30T10:00:{i:02d}Z"}
                   for i, (t, s) in enumerate(getattr(self, "tasks", self.looks[0][1]).items())]
            return 200, {"task_instances": tis, "total_entries": len(tis)}
        if api.startswith(f"/dags/{DAG}/dagRuns/{RUN}/taskInstances/") and "/xcomEntries/" in api:
            task, key = api.split("/taskInstances/")[1].split("/xcomEntries/")
            if (task, key) in self.xcoms:
                return 200, {"key": key, "value": self.xcoms[(task, key)]}
            return 404, {"detail": "XCom entry not found"}
        if api == "/variables/canary_status__web":
            if self.record is None:
                return 404, {"detail": "not found"}
            return 200, {"key": "canary_status__web", "value": json.dumps(self.record)}
        if api.removeprefix("/variables/canary_status__") in self.records:
            return 200, {"key": api.removeprefix("/variables/"), "value": json.dumps(self.records[api.removeprefix("/variables/canary_status__")])}
        return 404, {"detail": f"no route {method} {api}"}


def run(client, fake, *args, timeout="20"):
    lines: list[str] = []
    env = {"AIRFLOW_USERNAME": "ci", "AIRFLOW_PASSWORD": "s3cret-pw"}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        mp.setattr(client, "FIRST_DELAY", 0.05)
        mp.setattr(client, "MAX_DELAY", 0.2)
        code = client.main(["--dag", DAG, "--version", "v2", "--run-id", RUN, "--api-url", fake.url,
                            "--poll", "0.01", "--timeout", timeout, *args], out=lines.append)
    return code, "\n".join(lines).splitlines()


RUNNING = ("running", {"preflight": "success", "shift_to_10": "success", "gate_10": "deferred"})
GATE_FAILS = {"preflight": "success", "shift_to_10": "success", "gate_10": "failed", "promote": "upstream_failed",
              "rollback": "success", "complete_rollout": "upstream_failed"}
FAILING_CHECK = {"check": "errors", "verdict": "fail",
                 "reason": "error rate 36.67% vs baseline 0.37% (+36.29 pp > 5 pp tolerance; anytime-valid p < 0.001)"}
ROLLED = {"reason": "gate_10: AirflowFailException: gate at 10% failed: errors: error rate 36.67%", "traffic_changed": True}
RECORD_ROLLED = {"release": "web", "run_id": RUN, "phase": "rolled_back", "weight": 0}


@pytest.fixture
def fake():
    servers = []

    def make(*args, **kwargs):
        servers.append(FakeAirflow(*args, **kwargs).start())
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


# -- exit codes -------------------------------------------------------------------------------


def test_promoted_is_0(client, fake):
    server = fake([RUNNING, ("success", {"preflight": "success", "promote": "success", "rollback": "success",
                                         "complete_rollout": "success"})],
                  xcoms={("preflight", "return_value"): {"version": "v2"}, ("rollback", "return_value"): {"promoted": True}},
                  record={"release": "web", "run_id": RUN, "phase": "promoted"})
    code, lines = run(client, server)
    assert code == 0, lines
    assert lines[-1] == "PROMOTED v2"


def test_a_gate_that_failed_on_the_canarys_data_is_1(client, fake):
    server = fake([RUNNING, ("failed", GATE_FAILS)],
                  xcoms={("preflight", "return_value"): {"version": "v2"}, ("rollback", "return_value"): ROLLED,
                         ("gate_10", "evidence"): {"outcome": "rollback", "reason": "errors", "checks": [FAILING_CHECK]},
                         ("gate_10", "failure"): {"task": "gate_10", "error": "AirflowFailException: gate at 10% failed"}},
                  record=RECORD_ROLLED)
    code, lines = run(client, server)
    assert code == 1, lines
    assert lines[-1].startswith("ROLLED BACK v2: gate_10"), lines


@pytest.mark.parametrize("who, said", [("alice", "alice chose Roll back"),
                                       ("the timeout default", "nobody approved before the approval timeout")])
def test_a_person_who_chose_roll_back_is_1(client, fake, who, said):
    tasks = {"preflight": "success", "shift_to_10": "success", "gate_10": "success", "approve_100": "failed",
             "rollback": "success"}
    server = fake([("failed", tasks)],
                  xcoms={("preflight", "return_value"): {"version": "v2"}, ("rollback", "return_value"): ROLLED,
                         ("approve_100", "failure"): {"task": "approve_100",
                                                      "error": f"AirflowFailException: rolled back before 100% by {who}"}},
                  record=RECORD_ROLLED)
    code, lines = run(client, server)
    assert code == 1, lines
    assert lines[-1].startswith("ROLLED BACK v2"), lines
    assert said in client.rollback_cause(client.Airflow(server.url, "ci", "pw"), DAG, RUN,
                                         [{"task_id": t, "state": s} for t, s in tasks.items()])[1]


def test_a_run_ended_by_hand_is_a_persons_decision_1(client, fake):
    tasks = {"preflight": "success", "shift_to_10": "success", "gate_10": "skipped", "rollback": "success",
             "complete_rollout": "failed"}
    server = fake([("failed", tasks)],
                  xcoms={("preflight", "return_value"): {"version": "v2"}, ("rollback", "return_value"): ROLLED},
                  record=RECORD_ROLLED)
    code, lines = run(client, server)
    assert code == 1, lines


@pytest.mark.parametrize("evidence, failure, said", [
    # the metrics backend stayed down: the judge's policy turned "error" into fail, no verdict on the canary
    ({"outcome": "rollback", "checks": [{"check": "errors", "verdict": "fail",
                                         "reason": "error after repeated errors: metrics backend error: HTTP 503"}]},
     {"task": "gate_10", "error": "AirflowFailException: gate at 10% failed: errors: error after repeated errors"},
     "error after repeated errors"),
    ({"outcome": "rollback", "checks": [{"check": "errors", "verdict": "fail",
                                         "reason": "no_data at the gate timeout: no measurement"}]},
     {"task": "gate_10", "error": "AirflowFailException: gate at 10% failed: no_data"}, "no_data"),
    ({"outcome": "rollback", "checks": [{"check": "errors", "verdict": "fail",
                                         "reason": "error by on_error: metrics backend error: the query was rejected: HTTP 400"}]},
     {"task": "gate_10", "error": "AirflowFailException: gate at 10% failed: errors: error by on_error"}, "by on_error"),
    # a rejected query: a spec or auth problem
    ({"outcome": "rollback", "checks": [], "reason": "metrics backend rejected check errors: HTTP 400"},
     {"task": "gate_10", "error": "AirflowFailException: gate at 10% failed: metrics backend rejected check errors"},
     "rejected"),
    # the gate's wait was lost in the triggerer: no evidence at all
    (None, {"task": "gate_10", "error": "AirflowFailException: gate at 10% was lost in the triggerer"}, "was lost"),
    # the task process died: nothing recorded
    (None, None, "failed without recording why"),
])
def test_a_rollback_without_a_verdict_is_2(client, fake, evidence, failure, said):
    xcoms = {("preflight", "return_value"): {"version": "v2"}, ("rollback", "return_value"): ROLLED}
    if evidence is not None:
        xcoms[("gate_10", "evidence")] = evidence
    if failure is not None:
        xcoms[("gate_10", "failure")] = failure
    server = fake([("failed", GATE_FAILS)], xcoms=xcoms, record=RECORD_ROLLED)
    code, lines = run(client, server)
    assert code == 2, lines
    assert lines[-1].startswith("error: v2 was rolled back without a verdict"), lines
    assert said in lines[-1], lines


def test_a_shift_that_failed_is_2(client, fake):
    tasks = {"preflight": "success", "shift_to_10": "failed", "rollback": "success"}
    server = fake([("failed", tasks)],
                  xcoms={("preflight", "return_value"): {"version": "v2"}, ("rollback", "return_value"): ROLLED,
                         ("shift_to_10", "failure"): {"task": "shift_to_10", "error": "RouterUnavailable: HTTP 503"}},
                  record=RECORD_ROLLED)
    code, lines = run(client, server)
    assert code == 2 and "shift_to_10: RouterUnavailable" in lines[-1], lines


def test_traffic_not_restored_is_2(client, fake):
    server = fake([("failed", {**GATE_FAILS, "rollback": "failed"})],
                  xcoms={("preflight", "return_value"): {"version": "v2"}},
                  record={**RECORD_ROLLED, "phase": "unsafe", "decision": "TRAFFIC NOT RESTORED"})
    code, lines = run(client, server)
    assert code == 2 and "TRAFFIC NOT RESTORED" in lines[-1], lines


# -- tooling failures: one line, exit 2, never a traceback ------------------------------------



# -- a release across several targets: a task group per target (eu.gate_10), a record per target ----

TARGET_TASKS = ("preflight", "shift_to_10", "gate_10", "promote", "rollback", "complete_rollout")


def target_states(**by_target) -> dict:
    states = {"abort_all": by_target.pop("abort_all", "skipped")}
    for target, changes in by_target.items():
        states.update({f"{target}.{t}": changes.get(t, "success") for t in TARGET_TASKS})
    return states


def target_record(target: str, phase: str) -> dict:
    return {"release": f"web__{target}", "run_id": RUN, "phase": phase, "weight": 0}


def test_a_release_promoted_to_every_target_is_0(client, fake):
    server = fake([RUNNING, ("success", target_states(eu={}, us={}))],
                  xcoms={(f"{t}.preflight", "return_value"): {"version": "v2"} for t in ("eu", "us")},
                  records={"web__eu": target_record("eu", "promoted"), "web__us": target_record("us", "promoted")})
    code, lines = run(client, server)
    assert code == 0, lines
    assert lines[-1] == "PROMOTED v2 to every target: eu, us"


def test_a_fault_in_one_target_rolls_back_the_release_1(client, fake):
    rolled = {"reason": "us.gate_10: AirflowFailException: gate at 10% failed: errors: error rate 36.67%", "traffic_changed": True}
    server = fake([RUNNING, ("failed", target_states(
                      abort_all="success", eu={"promote": "upstream_failed", "complete_rollout": "failed"},
                      us={"gate_10": "failed", "promote": "upstream_failed", "complete_rollout": "failed"}))],
                  xcoms={("eu.preflight", "return_value"): {"version": "v2"}, ("us.preflight", "return_value"): {"version": "v2"},
                         ("eu.rollback", "return_value"): rolled, ("us.rollback", "return_value"): rolled,
                         ("us.gate_10", "evidence"): {"outcome": "rollback", "reason": "errors", "checks": [FAILING_CHECK]}},
                  records={"web__eu": target_record("eu", "rolled_back"), "web__us": target_record("us", "rolled_back")})
    code, lines = run(client, server)
    assert code == 1, lines
    assert lines[-1].startswith("ROLLED BACK v2: us.gate_10"), lines
    assert any(line.startswith("us.gate_10: FAILED") for line in lines), lines  # followed as it happened


def test_a_later_wave_rolled_back_says_which_targets_stay_promoted_1(client, fake):
    server = fake([RUNNING, ("failed", target_states(
                      eu={}, us={"gate_10": "failed", "promote": "upstream_failed", "complete_rollout": "failed"}))],
                  xcoms={("eu.preflight", "return_value"): {"version": "v2"}, ("us.preflight", "return_value"): {"version": "v2"},
                         ("us.rollback", "return_value"): ROLLED,
                         ("us.gate_10", "evidence"): {"outcome": "rollback", "reason": "errors", "checks": [FAILING_CHECK]}},
                  records={"web__eu": target_record("eu", "promoted"), "web__us": target_record("us", "rolled_back")})
    code, lines = run(client, server)
    assert code == 1, lines
    assert lines[-1].startswith("ROLLED BACK v2 (eu stays promoted): gate_10"), lines


def test_a_target_whose_undo_failed_is_2(client, fake):
    server = fake([RUNNING, ("failed", target_states(
                      eu={"promote": "upstream_failed", "rollback": "failed", "complete_rollout": "failed"},
                      us={"gate_10": "failed", "promote": "upstream_failed", "complete_rollout": "failed"}))],
                  xcoms={("eu.preflight", "return_value"): {"version": "v2"}},
                  records={"web__eu": target_record("eu", "rolling_back"), "web__us": target_record("us", "rolled_back")})
    code, lines = run(client, server)
    assert code == 2, lines
    assert "ROLLBACK FAILED for v2 in eu (rollback task failed)" in lines[-1], lines


def test_a_refused_conf_is_one_line_naming_the_field(client, fake):
    server = fake([RUNNING])
    server.trigger_answer = (400, {"detail": SCHEMA_DUMP})
    code, lines = run(client, server, "--conf", '{"steps": [10, 30, 100]}')
    assert code == 2
    assert lines == ["error: Airflow refused the run (HTTP 400): Invalid input for param steps: 30 is not one of [10, 100]"]


def test_a_validation_error_list_is_one_line(client, fake):
    server = fake([RUNNING])
    server.trigger_answer = (422, {"detail": [{"loc": ["body", "conf"], "msg": "Input should be a valid dictionary"}]})
    code, lines = run(client, server)
    assert code == 2 and lines == ["error: Airflow refused the run (HTTP 422): conf: Input should be a valid dictionary"]


def test_a_login_page_instead_of_json_is_2_without_a_traceback(client, fake):
    server = fake([RUNNING])
    server.token_answer = (200, "<html><body>Sign in to the proxy</body></html>")
    code, lines = run(client, server)
    assert code == 2
    assert len(lines) == 1 and "not JSON (text/html)" in lines[0] and "AIRFLOW_API_URL" in lines[0], lines


def test_refused_credentials_are_2(client, fake):
    server = fake([RUNNING])
    server.token_answer = (401, {"detail": "Invalid credentials"})
    code, lines = run(client, server)
    assert code == 2 and lines == ["error: Airflow refused the credentials of 'ci' (HTTP 401)"], lines


def test_an_api_answer_that_is_not_json_is_2(client, fake):
    server = fake([RUNNING])
    server.route_orig = server.route
    server.route = lambda m, p, b, a: (200, "<html>maintenance</html>") if p.endswith(RUN) else server.route_orig(m, p, b, a)
    code, lines = run(client, server)
    assert code == 2 and "not JSON" in lines[-1], lines


def test_a_run_still_going_at_the_timeout_is_2(client, fake):
    server = fake([RUNNING])
    code, lines = run(client, server, timeout="0.5")
    assert code == 2 and "still running when the --timeout ran out" in lines[-1], lines


def test_unreachable_airflow_is_retried_until_the_timeout_then_2(client):
    server = FakeAirflow([RUNNING])  # never started: connection refused
    t0 = time.monotonic()
    code, lines = run(client, server, timeout="1")
    assert code == 2
    assert 0.8 < time.monotonic() - t0 < 5
    assert any(line.startswith("Airflow unavailable (POST /auth/token: ConnectionError)") for line in lines), lines
    assert lines[-1].startswith("error: POST /auth/token: Airflow unavailable (ConnectionError) until the --timeout"), lines


def test_a_bug_in_the_client_is_one_line_and_2(client, fake, monkeypatch):
    server = fake([RUNNING])
    monkeypatch.setattr(client, "follow", lambda *a, **k: {}["boom"])
    code, lines = run(client, server)
    assert code == 2 and lines[-1] == "error: the CI client failed: KeyError: 'boom'", lines


# -- following through outages ----------------------------------------------------------------


def test_5xx_answers_are_retried(client, fake):
    server = fake([RUNNING, ("success", {"preflight": "success", "promote": "success", "rollback": "success"})],
                  xcoms={("preflight", "return_value"): {"version": "v2"}},
                  record={"release": "web", "run_id": RUN, "phase": "promoted"})
    server.fail_next = [503, 500, 502]
    code, lines = run(client, server)
    assert code == 0, lines
    assert sum("Airflow unavailable" in line and "HTTP 50" in line for line in lines) == 3, lines
    assert any(line.startswith("Airflow answers again") for line in lines), lines


def test_the_run_is_followed_through_an_api_server_restart(client, fake):
    """The api-server goes away mid-run (connection refused) and comes back on the same port with
    new tokens: the client waits, logs in again, and reports the outcome."""
    finished = ("success", {"preflight": "success", "gate_10": "success", "promote": "success", "rollback": "success"})
    server = fake([RUNNING, RUNNING, finished], xcoms={("preflight", "return_value"): {"version": "v2"}},
                  record={"release": "web", "run_id": RUN, "phase": "promoted"})
    server.hold.clear()  # the run stays at its first look until the restart is over
    result = {}

    def ci_job():
        result["code"], result["lines"] = run(client, server)

    job = threading.Thread(target=ci_job, daemon=True)
    job.start()
    deadline = time.monotonic() + 10
    while not any(r.endswith("/taskInstances") for r in server.requests):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    server.stop()
    time.sleep(1.0)  # refused meanwhile
    server.token_answer = (201, {"access_token": "token-after-restart"})
    restarted = FakeAirflow(server.looks, server.xcoms, server.record, port=server.port)
    restarted.route_orig = restarted.route
    # the old token is no longer valid after the restart
    restarted.route = lambda m, p, b, a: ((401, {"detail": "expired"}) if a == "Bearer token-1"
                                          else restarted.route_orig(m, p, b, a))
    restarted.token_answer = (201, {"access_token": "token-after-restart"})
    restarted.start()
    try:
        job.join(timeout=15)
        assert not job.is_alive()
        assert result["code"] == 0, result["lines"]
        assert any("Airflow unavailable" in line and "ConnectionError" in line for line in result["lines"]), result["lines"]
        assert "POST /auth/token" in restarted.requests  # logged in again
        assert result["lines"][-1] == "PROMOTED v2"
    finally:
        restarted.stop()


def test_a_lost_answer_to_the_trigger_follows_the_run_already_started(client, fake):
    """A 5xx after the run was created: the retried POST gets 409 and the client follows it."""
    server = fake([("success", {"preflight": "success", "promote": "success", "rollback": "success"})],
                  xcoms={("preflight", "return_value"): {"version": "v2"}},
                  record={"release": "web", "run_id": RUN, "phase": "promoted"})
    answers = [(502, {"detail": "Bad Gateway"}), (409, {"detail": "exists"})]
    server.trigger_answer_orig = server.route
    server.route = lambda m, p, b, a: (answers.pop(0) if m == "POST" and p.endswith("/dagRuns") and answers
                                       else server.trigger_answer_orig(m, p, b, a))
    code, lines = run(client, server)
    assert code == 0 and f"run {RUN} already exists; following it" in lines, lines


# -- output reaches a pipe as it happens ------------------------------------------------------


def test_every_line_reaches_a_pipe_as_it_happens(fake):
    """The client as CI runs it: a subprocess whose stdout is a pipe, without PYTHONUNBUFFERED.
    Each line must arrive while the run is still going, not when the process ends."""
    server = fake([RUNNING, ("success", {"preflight": "success", "promote": "success", "rollback": "success"})],
                  xcoms={("preflight", "return_value"): {"version": "v2"}},
                  record={"release": "web", "run_id": RUN, "phase": "promoted"})
    server.hold.clear()  # the run stays running until the test has read the live lines
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env.update(AIRFLOW_USERNAME="ci", AIRFLOW_PASSWORD="pw")
    proc = subprocess.Popen([sys.executable, str(CLIENT), "--dag", DAG, "--version", "v2", "--run-id", RUN,
                             "--api-url", server.url, "--poll", "0.05", "--timeout", "30"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    got: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [got.put(line.rstrip("\n")) for line in proc.stdout], daemon=True).start()
    try:
        live = []
        while not any(line.startswith("gate_10: deferred") for line in live):
            live.append(got.get(timeout=10))  # raises queue.Empty if the lines sit in a buffer
        assert proc.poll() is None, "the client ended before the run did"
        assert live[0] == f"triggered {DAG} run {RUN} with conf {json.dumps({'version': 'v2'})}", live
        server.hold.set()
        assert proc.wait(timeout=20) == 0
        rest = []
        while not got.empty() or proc.stdout and not proc.stdout.closed and len(rest) < 1:
            try:
                rest.append(got.get(timeout=2))
            except queue.Empty:
                break
        assert "PROMOTED v2" in rest, live + rest
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_password_never_reaches_the_output_even_when_echoed(client, fake):
    server = fake([RUNNING])
    server.token_answer = (400, {"detail": "login failed for ci with password s3cret-pw"})
    code, lines = run(client, server, timeout="0.5")
    assert code == 2
    assert lines == ["error: POST /auth/token: HTTP 400: login failed for ci with password ***"], lines


def test_the_bearer_token_never_reaches_the_output_even_when_echoed(client, fake):
    server = fake([RUNNING])
    server.token_answer = (201, {"access_token": "jwt-planted-token-42"})
    server.trigger_answer = (400, {"detail": "refused; you sent Authorization: Bearer jwt-planted-token-42"})
    code, lines = run(client, server, timeout="0.5")
    assert code == 2
    assert not any("jwt-planted-token-42" in line for line in lines), lines
    assert any("Bearer ***" in line for line in lines), lines
