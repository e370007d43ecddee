"""What every canary operator shares: resolving backends from connections, the run's conf, and
recording why a task failed so the rollback can report it."""

from __future__ import annotations

from airflow.sdk import BaseOperator

from canary_operators.endpoint import Endpoint
from canary_operators.exceptions import HookRefused, RouterRefused, SpecError
from canary_operators.metrics import provider_class
from canary_operators.routers import router_class
from canary_operators.secrets import scrub, scrub_error, scrub_in_place
from canary_operators.spec import ReleaseSpec, RunConf

PREFLIGHT_TASK = "preflight"
FAILURE_KEY = "failure"
NOTHING_TO_RELEASE_KEY = "nothing_to_release"  # preflight's reason for skipping the run


def stable_version_variable(release: str) -> str:
    """The Airflow Variable where Promote records the version now running as stable."""
    return f"canary_stable_version__{release}"


def endpoint_for(conn_id: str | None) -> Endpoint | None:
    if not conn_id:
        return None
    from airflow.sdk import BaseHook

    return Endpoint.from_connection(BaseHook.get_connection(conn_id))


def build_router(release: ReleaseSpec, run: RunConf | None = None):
    spec = release.router
    return router_class(spec.type)(spec.settings, endpoint_for(spec.conn_id), conn_id=spec.conn_id, run=run)


def build_provider(release: ReleaseSpec, run: RunConf | None = None):
    spec = release.metrics
    return provider_class(spec.type)(spec.settings, endpoint_for(spec.conn_id), conn_id=spec.conn_id, run=run)


def sibling_task_id(context, task_id: str) -> str:
    """``task_id`` beside the running task: in a release with targets each target's tasks are in
    its task group (``eu.gate_5`` → ``eu.preflight``); without targets, ``task_id`` itself."""
    own = getattr(context["ti"], "task_id", None)
    if not isinstance(own, str):
        return task_id
    group, dot, _ = own.rpartition(".")
    return f"{group}{dot}{task_id}"


def run_id_of(context) -> str:
    return context["dag_run"].run_id


def run_conf_from_status(status) -> RunConf | None:
    """The versions a status record names, for building a router when no preflight result is at hand."""
    if not status.version or not status.stable_version:
        return None
    return RunConf(release=status.release, version=status.version, stable_version=status.stable_version)


def require_ownership(release: ReleaseSpec, context) -> None:
    """Fail (no retry) when the guard or another run has taken this release over: this run must
    not move traffic again."""
    from airflow.sdk.exceptions import AirflowFailException

    from canary_operators.status import read_status, read_stopped_run, taken_over

    why = taken_over(read_status(release.name), run_id_of(context), read_stopped_run(release.name))
    if why:
        raise AirflowFailException(f"{release.name}: not moving traffic: {why}")


def run_conf_of(context) -> RunConf:
    """The run's versions as preflight resolved them."""
    resolved = context["ti"].xcom_pull(task_ids=sibling_task_id(context, PREFLIGHT_TASK))
    if not resolved:
        raise SpecError("preflight left no resolved conf; it must run first")
    return RunConf.model_validate(resolved)


class RecordsFailure:
    """Mixin: push ``failure`` (task and error) to XCom when the task fails, for the rollback."""

    def record_failure(self, context, error: BaseException) -> None:
        from airflow.sdk.exceptions import AirflowSkipException

        if isinstance(error, AirflowSkipException) or type(error).__name__ in (
                "TaskDeferred", "AirflowRescheduleException", "TaskAwaitingInput"):  # waiting, not failing
            return
        try:
            context["ti"].xcom_push(key=FAILURE_KEY, value={"task": self.task_id, "error": scrub_error(error)})
        except Exception:  # recording must never hide the real error
            self.log.warning("could not record the failure reason of %s", self.task_id)

    def resume_execution(self, next_method, next_kwargs, context):
        """A trigger that timed out or was lost fails the task for good (no retry), with the reason
        ``waited_too_long`` gives, recorded for the undo and the CI client."""
        from airflow.sdk.exceptions import (
            AirflowFailException,
            AirflowSensorTimeout,
            TaskDeferralError,
            TaskDeferralTimeout,
        )

        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except AirflowFailException:
            raise
        # A sensor turns a trigger timeout into AirflowSensorTimeout before it gets here.
        except (TaskDeferralTimeout, TaskDeferralError, AirflowSensorTimeout) as e:
            kind = "was lost" if isinstance(e, TaskDeferralError) else "timed out"
            error = AirflowFailException(f"{self.waited_too_long(kind)} (is a triggerer running?): {e}")
            self.record_failure(context, error)
            raise error from None

    def waited_too_long(self, kind: str) -> str:
        return f"{self.task_id}: its wait in the triggerer {kind}"


class ReleaseOperator(RecordsFailure, BaseOperator):
    """A task of one release: holds the spec; ``execute`` records why it failed, for the rollback.

    Subclasses implement ``run_step(context)``.
    """

    def __init__(self, *, release: ReleaseSpec, **kwargs):
        super().__init__(**kwargs)
        self.release = release

    def execute(self, context):
        try:
            return scrub(self.run_step(context))  # the XCom it becomes is never masked by Airflow
        except (RouterRefused, HookRefused) as e:  # retrying cannot fix it: fail now, not after every retry's backoff
            from airflow.sdk.exceptions import AirflowFailException

            self.record_failure(context, e)
            scrub_in_place(e)  # the cause is logged with the traceback
            raise AirflowFailException(scrub_error(e)) from e
        except BaseException as e:
            self.record_failure(context, e)
            scrub_in_place(e)  # what Airflow logs and shows as the task's error
            raise

    def run_step(self, context):  # pragma: no cover - abstract
        raise NotImplementedError
