"""The approval keeps watching: ``approve_N`` and its ``ApprovalWatchTrigger`` against the real demo stack.

HAProxy, Prometheus and the two demo services are real. What the triggerer's supervisor would do
(the status record's Variable and the HITL question, both behind the Execution API) is played by
``FakeExecutionAPI``, a small in-memory stand-in installed as ``SUPERVISOR_COMMS``: the trigger,
Airflow's own HITL and Variable functions and the status record all run unchanged on top of it.

The operator runs with a small fake task instance (XComs in a dict); its ``defer`` hands over the
trigger, which each test round-trips through ``serialize()`` and runs on an asyncio loop, the way
the triggerer would, then feeds the event back to ``execute_complete``.

The metrics tell the arms apart by the slot (``track``) rather than by version, so that deploying
``broken`` (30% 5xx) into the canary slot while the approval waits shows up as the canary going bad.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import threading
import time
from datetime import datetime, timezone
from uuid import UUID, uuid4

import pytest

from canary_operators.spec import RunConf, parse_spec
from tests.conftest import set_connection
from tests.test_dag_runs import canary_weight, deploy

RELEASE = "t_watch"
RUN_ID = "manual__watch"

SPEC = {
    "name": RELEASE,
    "stable_version": "v1",
    "router": {"type": "haproxy", "conn_id": "t_haproxy", "settings": {"backend": "app"}},
    "metrics": {"type": "prometheus", "conn_id": "t_prometheus",
                "settings": {"labels": {"job": "demo"},
                             "arm_matchers": {"canary": 'track="canary"', "baseline": 'track="stable"'}}},
    "steps": [10, 50, 100],
    "bake_time": "2s",
    "settle_time": "1s",
    # Shorter than the tests' waits: a gate would have timed out (and rolled back on the
    # never-settled check below) long before the approval is answered.
    "gate_timeout": "3s",
    "poke_interval": "1s",
    "retries": 0,
    "checks": [
        {"name": "errors", "kind": "error_rate", "max_increase_pp": 5, "min_requests": 60},
        # Never enough requests: "no data" for ever. At a gate's timeout that is a rollback.
        {"name": "checkouts", "kind": "business", "metric": "checkouts_total", "min_ratio": 0.2,
         "min_requests": 1_000_000_000},
    ],
    # sample_ratio is on: deploying "broken" into the canary slot starts new series (arms told
    # apart by slot), which are counted from zero, so the split stays right and "errors" decides.
    "approval": {"before": [100], "timeout": "2m", "hold": "2s"},
    "promote": {"type": "webhook", "conn_id": "t_stable_admin", "endpoint": "/admin/deploy"},  # not run here
}


# ---------------------------------------------------------------------------------------------
# Fakes: the Execution API behind the supervisor, and a task instance


class FakeExecutionAPI:
    """Answers the supervisor messages a trigger or task sends (``SUPERVISOR_COMMS.send``) the way
    the Execution API would: Variables, and one HITL question per task instance. Thread-safe:
    triggers call it from worker threads."""

    def __init__(self):
        self.variables: dict[str, str] = {}
        self.questions: dict[UUID, dict] = {}
        self.puts: list[tuple[float, str]] = []  # (when, key) of every Variable write
        self._lock = threading.Lock()

    def send(self, msg):
        from airflow.sdk.api.datamodels._generated import HITLDetailResponse
        from airflow.sdk.exceptions import AirflowRuntimeError, ErrorType
        from airflow.sdk.execution_time.comms import ErrorResponse, OKResponse, VariableResult

        kind = type(msg).__name__
        with self._lock:
            if kind == "GetVariable":
                if msg.key not in self.variables:
                    return ErrorResponse(error=ErrorType.VARIABLE_NOT_FOUND, detail={"key": msg.key})
                return VariableResult(key=msg.key, value=self.variables[msg.key])
            if kind == "PutVariable":
                self.variables[msg.key] = msg.value
                self.puts.append((time.time(), msg.key))
                return OKResponse(ok=True)
            if kind == "GetConnection":  # the tests' connections come from the environment
                return ErrorResponse(error=ErrorType.CONNECTION_NOT_FOUND, detail={"conn_id": msg.conn_id})
            if kind == "CreateHITLDetailPayload":  # upsert: a new question, or the old one without its answer
                q = self.questions.setdefault(msg.ti_id, {})
                q.update(options=list(msg.options), defaults=msg.defaults, subject=msg.subject, body=msg.body,
                         response_received=False, chosen_options=None, responded_by_user=None, responded_at=None,
                         params_input={})
                return None
            if kind in ("GetHITLDetailResponse", "UpdateHITLDetail"):
                q = self.questions.get(msg.ti_id)
                if q is None:
                    raise AirflowRuntimeError(ErrorResponse(error=ErrorType.GENERIC_ERROR, detail={"status_code": 404}))
                if kind == "UpdateHITLDetail":
                    if q["response_received"]:
                        raise AirflowRuntimeError(ErrorResponse(error=ErrorType.GENERIC_ERROR, detail={"status_code": 409}))
                    q.update(response_received=True, chosen_options=list(msg.chosen_options), responded_by_user=None,
                             responded_at=datetime.now(timezone.utc), params_input=msg.params_input)
                return HITLDetailResponse(**{k: q[k] for k in ("response_received", "chosen_options", "responded_by_user",
                                                              "responded_at", "params_input")})
            return None  # MaskSecret and the like

    def answer(self, ti_id: UUID, option: str, user: str) -> None:
        """A person answers through the REST API (PATCH …/hitlDetails)."""
        with self._lock:
            q = self.questions[ti_id]
            assert not q["response_received"], "the API answers 409 to a second answer"
            q.update(response_received=True, chosen_options=[option], responded_by_user={"id": user, "name": user},
                     responded_at=datetime.now(timezone.utc))

    def status(self) -> dict:
        with self._lock:
            return json.loads(self.variables[f"canary_status__{RELEASE}"])

    def heartbeats_since(self, when: float) -> int:
        with self._lock:
            return sum(1 for t, key in self.puts if t >= when and key == f"canary_status__{RELEASE}")


class FakeTI:
    """What the operator uses of a task instance: its id and XComs."""

    def __init__(self, xcoms: dict[tuple[str, str], object]):
        self.id = uuid4()
        self.xcoms = dict(xcoms)

    def xcom_pull(self, task_ids, key: str = "return_value"):
        if isinstance(task_ids, (list, tuple)):
            return [self.xcoms.get((t, key)) for t in task_ids]
        return self.xcoms.get((task_ids, key))

    def xcom_push(self, key: str, value) -> None:
        self.xcoms[("approve_100", key)] = value


class FakeDagRun:
    run_id = RUN_ID


# ---------------------------------------------------------------------------------------------
# Set-up: the canary at 50% after gate_50 passed, approve_100 about to ask


@pytest.fixture
def api(monkeypatch):
    from airflow.sdk.execution_time import task_runner

    fake = FakeExecutionAPI()
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", fake, raising=False)
    return fake


@pytest.fixture
def stack(demo_stack, monkeypatch):
    """Stable v1 and a healthy canary v2 in the canary slot, which takes 50% of the traffic."""
    deploy(demo_stack.stable_url, "v1")
    deploy(demo_stack.canary_url, "v2")
    host, admin_port = demo_stack.admin_address
    set_connection(monkeypatch, "t_haproxy", conn_type="generic", host=host, port=admin_port)
    set_connection(monkeypatch, "t_prometheus", conn_type="http", host="127.0.0.1", port=demo_stack.prometheus_port)
    demo_stack.haproxy_command("set server app/stable weight 90")
    demo_stack.haproxy_command("set server app/canary weight 10")
    demo_stack.shifted = {10: time.time()}
    time.sleep(0.2)
    demo_stack.haproxy_command("set server app/stable weight 50")
    demo_stack.haproxy_command("set server app/canary weight 50")
    demo_stack.shifted[50] = time.time()
    yield demo_stack
    deploy(demo_stack.canary_url, "v1")
    demo_stack.haproxy_command("set server app/canary weight 0")
    demo_stack.haproxy_command("set server app/stable weight 100")


def make_step(stack, api, **spec_changes):
    """approve_100 of a run at gate_50's end, its context, and the status record that run left."""
    from canary_operators.operators.approve import ApproveStep
    from canary_operators.status import ReleaseStatus, write_status

    spec = parse_spec({**SPEC, **spec_changes}, f"{RELEASE}.yaml")
    run = RunConf(release=RELEASE, version="v2", stable_version="v1", steps=[10, 50, 100], approval=True)
    write_status(ReleaseStatus(release=RELEASE, phase="gating", run_id=RUN_ID, dag_id=spec.dag_id, version="v2",
                               stable_version="v1", weight=50, decision="gate_50: advance"))
    ti = FakeTI({
        ("preflight", "return_value"): run.model_dump(mode="json"),
        ("shift_to_10", "return_value"): {"weight": 10, "shifted_at": stack.shifted[10]},
        ("shift_to_50", "return_value"): {"weight": 50, "shifted_at": stack.shifted[50]},
        ("gate_10", "evidence"): {"checks": [{"check": "errors", "verdict": "pass", "canary_value": 0.002,
                                             "baseline_value": 0.002, "reason": "fine"}]},
    })
    step = ApproveStep(task_id="approve_100", release=spec, weight=100, gate_task_ids=["gate_10", "gate_50"])
    return step, {"ti": ti, "task_instance": ti, "dag_run": FakeDagRun()}


def deferred(call, *args):
    """The trigger a task deferred to, as the triggerer would rebuild it from ``serialize()``."""
    from airflow.sdk.exceptions import TaskDeferred

    with pytest.raises(TaskDeferred) as deferral:
        call(*args)
    assert deferral.value.method_name == "execute_complete"
    return rebuilt(deferral.value.trigger), deferral.value.timeout


def rebuilt(trigger):
    classpath, kwargs = trigger.serialize()
    kwargs = json.loads(json.dumps(kwargs))  # JSON-serialisable, and what the triggerer stores
    module, name = classpath.rsplit(".", 1)
    again = getattr(importlib.import_module(module), name)(**kwargs)
    assert again.serialize() == (classpath, kwargs)
    return again


def resume_payload(api, ti_id) -> dict:
    """The event the REST API resumes an answered task with (``HITLDetail.as_resume_event_payload``)."""
    q = api.questions[ti_id]
    return {"chosen_options": q["chosen_options"], "params_input": q["params_input"] or {},
            "responded_at": q["responded_at"], "responded_by_user": q["responded_by_user"], "timedout": False}


async def first_event(trigger, within: float):
    """The trigger's first event, or None if it has none within ``within`` seconds (then it is stopped)."""
    events = trigger.run()
    try:
        return await asyncio.wait_for(events.__anext__(), within)
    except asyncio.TimeoutError:
        return None
    finally:
        await events.aclose()


async def until(predicate, within: float, what: str):
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {within:g}s waiting for {what}"
        await asyncio.sleep(0.1)


# ---------------------------------------------------------------------------------------------


def test_the_trigger_round_trips_through_serialize():
    from canary_operators.triggers.approval_watch import ApprovalWatchTrigger

    spec = parse_spec(SPEC, f"{RELEASE}.yaml")
    run = RunConf(release=RELEASE, version="v2", stable_version="v1", approval=True)
    trigger = ApprovalWatchTrigger(
        ti_id=str(uuid4()), options=["Promote", "Roll back", "Hold a bit longer"], defaults=["Roll back"],
        params={}, timeout_at=time.time() + 60, release=spec.model_dump(mode="json"), run=run.model_dump(mode="json"),
        weight=50, shifted_at=time.time(), rollout_started_at=time.time() - 5, poke_interval=1.0,
        run_id=RUN_ID, task_id="approve_100")
    again = rebuilt(trigger)
    assert again.serialize()[0] == "canary_operators.triggers.approval_watch.ApprovalWatchTrigger"
    assert again.timeout_datetime == trigger.timeout_datetime and not again.holding
    held = rebuilt(ApprovalWatchTrigger(**{**trigger.serialize()[1], "timeout_at": None, "hold_until": time.time() + 5}))
    assert held.holding and held.timeout_datetime is None


def test_a_healthy_canary_keeps_waiting_watched_and_heartbeats(stack, api):
    from canary_operators.judge import Outcome
    from canary_operators.operators.gate_evaluation import evaluate_gate

    step, context = make_step(stack, api)
    trigger, timeout = deferred(step.execute, context)
    assert trigger.weight == 50 and trigger.shifted_at == stack.shifted[50]
    assert trigger.rollout_started_at == stack.shifted[10]
    assert timeout.total_seconds() > 120  # the approval timeout plus a margin, when no triggerer runs
    question = api.questions[context["ti"].id]
    assert question["options"] == ["Promote", "Roll back", "Hold a bit longer"] and not question["response_received"]
    assert "stays watched" in question["body"]

    started = time.time()
    event = asyncio.run(first_event(trigger, within=6))
    assert event is None, event.payload  # still waiting: no answer, no failing check
    assert canary_weight(stack) == 50
    assert api.heartbeats_since(started) >= 4
    status = api.status()
    assert status["phase"] == "awaiting_approval" and status["run_id"] == RUN_ID
    assert status["updated_at"] >= time.time() - 2.5  # fresh: the guard's progress clock
    assert "approve_100: waiting for a person; canary at 50% watched" in status["decision"], status["decision"]

    # Past twice the gate timeout, "checkouts" has no data: a gate would roll back; the watch holds.
    spec, run = step.release, RunConf.model_validate(context["ti"].xcom_pull("preflight"))
    as_gate = evaluate_gate(spec, run, 50, stack.shifted[50], {}, None, stack.shifted[10])
    watching = evaluate_gate(spec, run, 50, stack.shifted[50], {}, None, stack.shifted[10], watching=True)
    assert as_gate.outcome is Outcome.ROLLBACK and "no_data at the gate timeout" in as_gate.reason
    assert watching.outcome is Outcome.HOLD and watching.evidence["watching"] is True


def test_a_canary_that_goes_bad_while_waiting_is_rolled_back_and_ends_the_approval(stack, api):
    from airflow.sdk.exceptions import AirflowFailException

    step, context = make_step(stack, api)
    trigger, _ = deferred(step.execute, context)

    async def scenario():
        watch = asyncio.ensure_future(first_event(trigger, within=90))
        t0 = time.time()
        await until(lambda: api.heartbeats_since(t0) >= 2, 15, "two healthy looks")
        assert not watch.done()
        await asyncio.to_thread(deploy, stack.canary_url, "broken")  # 30% 5xx from now on
        broken_at = time.monotonic()
        event = await watch
        return event, time.monotonic() - broken_at

    event, seconds = asyncio.run(scenario())
    print(f"\nbroken canary at 50% while approve_100 waited: rolled back {seconds:.1f}s after the bad deploy, "
          f"traffic on stable {event.payload['fast_rollback']['seconds_to_stable']:.3f}s after the verdict")
    assert event is not None and event.payload["watch"] == "rollback"
    assert seconds < 20
    fast = event.payload["fast_rollback"]
    assert fast["weight_after"] == 0 and fast["seconds_to_stable"] < 1.0 and fast["seconds_from_verdict"] < 1.5
    assert canary_weight(stack) == 0  # read from HAProxy
    assert "errors: error rate" in event.payload["reason"]
    # The question no longer waits: the watch answered it "Roll back" (no person).
    question = api.questions[context["ti"].id]
    assert question["response_received"] and question["chosen_options"] == ["Roll back"]
    assert question["responded_by_user"] is None
    status = api.status()
    assert status["phase"] == "rolling_back" and status["weight"] == 0
    assert status["decision"].startswith("approve_100: ") and "errors: error rate" in status["decision"]

    # The task fails, naming the check and why; the undo and the CI client read that failure.
    with pytest.raises(AirflowFailException, match=r"a check failed with the canary at 50%.*errors: error rate") as failed:
        step.execute_complete(context, event.payload)
    failure = context["ti"].xcom_pull("approve_100", "failure")
    assert failure["task"] == "approve_100" and str(failed.value) in failure["error"]
    assert context["ti"].xcom_pull("approve_100", "fast_rollback")["weight_after"] == 0
    assert context["ti"].xcom_pull("approve_100", "evidence")["outcome"] == "rollback"


def test_a_persons_answer_is_left_to_the_api_and_the_step_goes_on(stack, api):
    """Airflow 3.3 resumes the deferred task from the REST API itself (``update_hitl_detail`` calls
    ``handle_event_submit`` for ``deferred`` tasks) and then cancels the trigger. The trigger stops
    looking and fires nothing: a second resume would race the first."""
    step, context = make_step(stack, api)
    trigger, _ = deferred(step.execute, context)

    async def scenario():
        watch = asyncio.ensure_future(first_event(trigger, within=4))
        t0 = time.time()
        await until(lambda: api.heartbeats_since(t0) >= 2, 15, "two looks")
        api.answer(context["ti"].id, "Promote", "alice")
        answered = time.time()
        event = await watch  # the triggerer would cancel it about now
        await trigger.on_kill()  # as the triggerer does on that cancel: the answer is there, traffic stays
        return event, answered

    event, answered = asyncio.run(scenario())
    assert event is None, event.payload
    assert api.heartbeats_since(answered + 1.5) == 0  # no more looks once answered
    assert canary_weight(stack) == 50
    result = step.execute_complete(context, resume_payload(api, context["ti"].id))
    assert result == {"approved": "Promote", "asked": True, "by": "alice"}
    assert canary_weight(stack) == 50  # approving moves nothing; promote does
    assert api.status()["decision"] == "approve_100: alice approved the step to 100%"


def test_an_answer_the_api_did_not_deliver_is_delivered_after_the_grace(stack, api):
    """Answered while the task still ran (before it deferred): the API recorded the answer but
    resumed nothing, so the trigger delivers it once ``answer_grace`` has passed."""
    from canary_operators.triggers.approval_watch import ApprovalWatchTrigger

    step, context = make_step(stack, api)
    trigger, _ = deferred(step.execute, context)
    trigger = ApprovalWatchTrigger(**{**trigger.serialize()[1], "answer_grace": 1.0})
    api.answer(context["ti"].id, "Promote", "alice")
    started = time.monotonic()
    event = asyncio.run(first_event(trigger, within=10))
    assert event.payload["chosen_options"] == ["Promote"] and event.payload["responded_by_user"]["name"] == "alice"
    assert 1.0 <= time.monotonic() - started < 4
    assert step.execute_complete(context, event.payload)["approved"] == "Promote"


def test_an_approval_given_as_the_canary_goes_bad_is_refused(stack, api):
    """The answer can come between two looks: before going on, the step looks once more."""
    from airflow.sdk.exceptions import AirflowFailException

    step, context = make_step(stack, api)
    deferred(step.execute, context)
    deploy(stack.canary_url, "broken")
    time.sleep(5)  # Prometheus has scraped the errors; the next look of the watch would see them
    api.answer(context["ti"].id, "Promote", "alice")
    with pytest.raises(AirflowFailException, match=r"alice approved the step to 100%, but a check fails with the "
                                                   r"canary at 50% \(traffic back on stable\): .*errors: error rate"):
        step.execute_complete(context, resume_payload(api, context["ti"].id))
    assert canary_weight(stack) == 0
    assert api.status()["phase"] == "rolling_back"
    assert "errors: error rate" in context["ti"].xcom_pull("approve_100", "failure")["error"]


def test_no_answer_in_time_takes_the_default_and_rolls_back(stack, api):
    from airflow.sdk.exceptions import AirflowFailException

    step, context = make_step(stack, api, approval={"before": [100], "timeout": "3s", "hold": "2s"})
    trigger, _ = deferred(step.execute, context)
    started = time.monotonic()
    event = asyncio.run(first_event(trigger, within=15))
    assert event is not None and event.payload["chosen_options"] == ["Roll back"], event
    assert event.payload["timedout"] is True and event.payload["responded_by_user"] is None
    assert 2.5 < time.monotonic() - started < 6
    question = api.questions[context["ti"].id]
    assert question["response_received"] and question["chosen_options"] == ["Roll back"]
    with pytest.raises(AirflowFailException, match="rolled back before 100% by the timeout default"):
        step.execute_complete(context, event.payload)
    assert canary_weight(stack) == 0
    assert api.status()["phase"] == "rolling_back"


def test_holding_keeps_watching_then_asks_again(stack, api):
    step, context = make_step(stack, api)
    deferred(step.execute, context)
    api.answer(context["ti"].id, "Hold a bit longer", "bob")

    held, _ = deferred(step.execute_complete, context, resume_payload(api, context["ti"].id))
    assert held.holding and held.weight == 50
    started = time.time()
    event = asyncio.run(first_event(held, within=10))
    assert event.payload["watch"] == "hold_over"
    assert 1.5 < time.time() - started < 4  # the spec's hold is 2 s
    assert api.heartbeats_since(started) >= 1 and canary_weight(stack) == 50  # watched while held

    again, _ = deferred(step.execute_complete, context, event.payload)
    assert not again.holding and again.timeout_at > time.time() + 100
    assert not api.questions[context["ti"].id]["response_received"]  # a fresh question


def test_stopping_the_task_by_hand_puts_traffic_back_on_stable(stack, api):
    """Marked failed or success while waiting, no answer recorded: on_kill resets at once."""
    step, context = make_step(stack, api)
    trigger, _ = deferred(step.execute, context)
    asyncio.run(trigger.on_kill())
    assert canary_weight(stack) == 0
    status = api.status()
    assert status["phase"] == "rolling_back" and "stopped by a user action" in status["decision"]


def test_a_release_taken_over_while_waiting_stops_the_watch_without_moving_traffic(stack, api):
    from canary_operators.status import record

    step, context = make_step(stack, api)
    trigger, _ = deferred(step.execute, context)
    record(RELEASE, None, strict=True, run_id="scheduled__other", phase="deploying")
    event = asyncio.run(first_event(trigger, within=10))
    assert event.payload["watch"] == "stopped" and "scheduled__other" in event.payload["reason"]
    assert canary_weight(stack) == 50  # not this run's to move any more
