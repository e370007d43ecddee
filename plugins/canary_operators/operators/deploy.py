"""DeployCanary: start the release's version in the canary slot, as the spec's ``deploy`` says."""

from __future__ import annotations

from airflow.sdk import BaseOperator

from canary_operators.actions import run_action
from canary_operators.operators.common import RecordsFailure, endpoint_for, run_conf_of
from canary_operators.spec import ReleaseSpec


class DeployCanary(RecordsFailure, BaseOperator):
    """Run the spec's deploy action (a command or a webhook) with the version. Idempotent if the action is."""

    ui_color = "#fff4e5"

    def __init__(self, *, release: ReleaseSpec, **kwargs):
        super().__init__(**kwargs)
        self.release = release

    def execute(self, context) -> dict:
        try:
            run = run_conf_of(context)
            if run.dry_run:
                self.log.info("dry run: would run the deploy action (%s) for %s", self.release.deploy.type, run.version)
                return {"version": run.version, "dry_run": True}
            done = run_action(self.release.deploy, "deploy", run, endpoint_for)
            self.log.info("deployed %s %s to the canary: %s", run.release, run.version, done)
            return {"version": run.version, "action": done}
        except BaseException as e:
            self.record_failure(context, e)
            raise
