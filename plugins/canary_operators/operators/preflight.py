"""Preflight: validate the run's conf and check that the router and the metrics backend answer."""

from __future__ import annotations

from airflow.sdk import Variable
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from canary_operators.exceptions import SpecError
from canary_operators.operators.common import ReleaseOperator, build_provider, build_router, stable_version_variable
from canary_operators.spec import resolve_run_conf


class Preflight(ReleaseOperator):
    """Resolve what this run releases and check both backends. Changes nothing."""

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
            raise AirflowSkipException(f"nothing to release: {run.version} is already the stable version")
        router = build_router(self.release, run)
        router.check_online()  # RouterError: retried
        if hasattr(router, "check_release_steps"):  # routers with steps of their own (Argo Rollouts)
            router.check_release_steps(self.release.steps)
        weight = router.get_canary_weight()
        build_provider(self.release, run).check_online()  # BackendUnavailable: retried
        self.log.info(
            "preflight ok: release %s version %s against stable %s; %s router answers (canary at %d%%), %s answers",
            run.release, run.version, run.stable_version, self.release.router.type, weight, self.release.metrics.type,
        )
        return run.model_dump()
