"""Preflight: validate the run's conf, check both backends, and require a safe start."""

from __future__ import annotations

from airflow.sdk import Variable
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from canary_operators.exceptions import SpecError
from canary_operators.operators.common import (
    NOTHING_TO_RELEASE_KEY,
    ReleaseOperator,
    build_provider,
    build_router,
    run_id_of,
    stable_version_variable,
)
from canary_operators.spec import resolve_run_conf
from canary_operators.status import read_status, write_status


class Preflight(ReleaseOperator):
    """Resolve what this run releases, check both backends, and take ownership of the release.

    A safe start needs the canary at 0% (read from the router) and no other run mid-way in the
    release's status record. Otherwise it fails and moves nothing, unless the conf says
    ``force_reset``. A cleared and re-run run adopts its own record."""

    ui_color = "#e8f0fe"

    def run_step(self, context) -> dict:
        conf = dict(context["dag_run"].conf or {})
        last_promoted = Variable.get(stable_version_variable(self.release.name), default=None)
        candidate = None
        if self.release.candidate_variable and not conf.get("version"):
            candidate = Variable.get(self.release.candidate_variable, default=None)
            self.log.info("candidate version from Variable %s: %s", self.release.candidate_variable, candidate)
        try:
            run = resolve_run_conf(self.release, conf, last_promoted, candidate)
        except SpecError as e:
            raise AirflowFailException(f"bad conf for {self.release.dag_id}: {e}") from None
        if run.version == run.stable_version:
            why = f"{run.version} is already the stable version"
            context["ti"].xcom_push(key=NOTHING_TO_RELEASE_KEY, value=why)
            raise AirflowSkipException(f"nothing to release: {why}")
        router = build_router(self.release, run)
        router.check_online()  # RouterError: retried
        if hasattr(router, "check_release_steps"):  # routers with steps of their own (Argo Rollouts)
            router.check_release_steps(self.release.steps)
        weight = router.get_canary_weight()
        build_provider(self.release, run).check_online()  # BackendUnavailable: retried
        if not run.dry_run:
            weight = self._safe_start(context, run, router, weight)
        self.log.info(
            "preflight ok: release %s version %s against stable %s; %s router answers (canary at %d%%), %s answers",
            run.release, run.version, run.stable_version, self.release.router.type, weight, self.release.metrics.type,
        )
        return run.model_dump()

    def _safe_start(self, context, run, router, weight: int) -> int:
        run_id = run_id_of(context)
        status = read_status(self.release.name)
        adopting = status.owned_by(run_id)
        if not adopting:
            problem = None
            if status.mid_way:
                problem = f"run {status.run_id} is mid-way ({status.phase}, canary at {weight}%)"
            elif weight > 0:
                problem = f"canary at {weight}% since run {status.run_id or '(unknown)'} ({status.phase})"
            if problem and not run.force_reset:
                raise AirflowFailException(
                    f"{self.release.dag_id}: {problem}; the guard resets it within a minute, or trigger with "
                    f'{{"force_reset": true}}. Nothing was moved.')
            if problem:
                self.log.warning("force_reset: %s; putting the canary back to 0%% before this release", problem)
                weight = router.apply(0)
        elif weight > 0 and status.phase != "promoted":
            self.log.warning("adopting this run's own record (%s); the canary is at %d%% and goes back to 0%% first",
                             status.phase, weight)
            weight = router.apply(0)
        write_status(status.advance(
            phase="idle", run_id=run_id, dag_id=self.release.dag_id, version=run.version,
            stable_version=run.stable_version, weight=weight, promote_done=(), spec=self.release.model_dump(mode="json"),
            decision=f"preflight: {'adopted its own record' if adopting else 'took the release'}; canary at {weight}%"))
        return weight
