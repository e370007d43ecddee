"""DeployCanary: start the release's version in the canary slot, as the spec's ``deploy`` says."""

from __future__ import annotations

from canary_operators.actions import run_action
from canary_operators.operators.common import ReleaseOperator, endpoint_for, require_ownership, run_conf_of
from canary_operators.status import record


class DeployCanary(ReleaseOperator):
    """Run the spec's deploy action (a command or a webhook) with the version. Idempotent if the action is."""

    ui_color = "#fff4e5"

    def run_step(self, context) -> dict:
        run = run_conf_of(context)
        if run.dry_run:
            self.log.info("dry run: would run the deploy action (%s) for %s", self.release.deploy.type, run.version)
            return {"version": run.version, "dry_run": True}
        require_ownership(self.release, context)
        record(self.release.name, self.log, phase="deploying", decision=f"deploy_canary: starting {run.version}")
        done = run_action(self.release.deploy, "deploy", run, endpoint_for)
        self.log.info("deployed %s %s to the canary: %s", run.release, run.version, done)
        return {"version": run.version, "action": done}
