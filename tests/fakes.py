"""Small fakes for the safety tests: a handler-driven traffic router and the slice of a task
instance our operators use. Fakes over deep mocks: each one behaves like the real thing, only
smaller, and keeps a journal that tests read in order."""

from __future__ import annotations

from types import SimpleNamespace

from pydantic import BaseModel

from canary_operators.exceptions import RouterError
from canary_operators.routers.base import TrafficRouter


class _NoSettings(BaseModel):
    pass


class FakeRouter(TrafficRouter):
    """A router whose backend is one number, the canary's weight.

    ``handler(call, percent)`` runs first on every call (``"set"`` or ``"get"``) and may raise, like a
    backend that is down, or return ``"ignore"`` to drop a set silently. Every weight that took, and
    every native promotion, goes into ``journal`` (shared with the fake actions, so order shows)."""

    type_name = "fake"
    settings_model = _NoSettings
    needs_connection = False

    def __init__(self, weight: int = 0, handler=None, journal: list | None = None):
        super().__init__({}, None)
        self.weight = weight
        self.handler = handler or (lambda call, percent: None)
        self.journal = journal if journal is not None else []

    def set_canary_weight(self, percent: int) -> None:
        if self.handler("set", percent) == "ignore":
            return
        self.weight = percent
        self.journal.append(("set", percent))

    def get_canary_weight(self) -> int:
        self.handler("get", None)
        return self.weight

    def sets(self) -> list[int]:
        return [entry[1] for entry in self.journal if entry[0] == "set"]


class NativeRouter(FakeRouter):
    """A router that promotes by itself (a Lambda alias, an Argo Rollout): the canary becomes stable."""

    promotes_natively = True

    def promote(self) -> str:
        self.journal.append(("router.promote",))
        self.weight = 0  # the new version is now the stable one; nothing is left "canary"
        return "alias points at the new version"


def outage(failing_sets: int, error: Exception | None = None):
    """A handler: the backend refuses the first ``failing_sets`` weight changes and is unreadable
    while it does; then it answers."""
    left = [failing_sets]
    error = error or RouterError("haproxy: admin socket ('127.0.0.1', 9999) unreachable: [Errno 111] Connection refused")

    def handler(call, percent):
        if left[0] > 0:
            if call == "set":
                left[0] -= 1
            raise error

    return handler


def down(call, percent):
    """A handler: the backend never answers."""
    raise RouterError("haproxy: admin socket ('127.0.0.1', 9999) unreachable: [Errno 111] Connection refused")


def run_not_found(dag_id: str, run_id: str) -> Exception:
    """What ``ti.get_dagrun_state`` raises in a worker for a run that does not exist (deleted)."""
    from airflow.sdk.exceptions import AirflowRuntimeError, ErrorType
    from airflow.sdk.execution_time.comms import ErrorResponse

    return AirflowRuntimeError(ErrorResponse(error=ErrorType.API_SERVER_ERROR, detail={
        "status_code": 404, "message": "Server returned error",
        "detail": {"detail": {"reason": "not_found",
                              "message": f"Dag run with dag_id '{dag_id}' and run_id '{run_id}' was not found"}}}))


class FakeTI:
    """The slice of a task instance the operators use: XCom reads and other runs' states.

    ``runs`` maps run_id to its state; a run not in it was deleted."""

    def __init__(self, preflight: dict | None = None, failures: list[dict] | None = None,
                 runs: dict[str, str] | None = None):
        self.preflight = preflight
        self.failures = failures or []
        self.runs = runs or {}
        self.pushed: list[tuple[str, object]] = []

    def xcom_pull(self, task_ids, key: str = "return_value"):
        if key == "failure":
            return list(self.failures)
        return self.preflight if task_ids == "preflight" else None

    def xcom_push(self, key: str, value) -> None:
        self.pushed.append((key, value))

    def get_dagrun_state(self, dag_id: str, run_id: str):
        """The run's state as a worker gets it: a ``DagRunState`` enum (whose ``str()`` is not the value)."""
        from airflow.sdk.api.datamodels._generated import DagRunState

        if run_id not in self.runs:
            raise run_not_found(dag_id, run_id)
        return DagRunState(self.runs[run_id])


def fake_context(run_id: str, ti: FakeTI | None = None, conf: dict | None = None) -> dict:
    """A task's context, as far as our operators read it."""
    return {"ti": ti or FakeTI(), "dag_run": SimpleNamespace(run_id=run_id, conf=conf or {})}
