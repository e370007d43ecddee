"""Promote: send all traffic to the canary, make it the new stable, and record the version."""

from __future__ import annotations

from airflow.sdk import Variable

from canary_operators.actions import run_action
from canary_operators.operators.common import (
    ReleaseOperator,
    build_router,
    endpoint_for,
    run_conf_of,
    stable_version_variable,
)


class Promote(ReleaseOperator):
    """Shift to 100%. With a ``promote`` action: run it (stable now runs the new version), then
    route everything back to the stable slot. Records the version as the release's stable one."""

    ui_color = "#d2e3fc"

    def run_step(self, context) -> dict:
        run = run_conf_of(context)
        if run.dry_run:
            self.log.info("dry run: would promote %s %s to 100%% and make it the stable version", run.release, run.version)
            return {"version": run.version, "previous_stable": run.stable_version, "dry_run": True}
        router = build_router(self.release, run)
        router.apply(100)
        result = {"version": run.version, "previous_stable": run.stable_version, "canary_weight": 100}
        native = router.promote()
        if native is not None:
            result["router"] = native
            result["canary_weight"] = router.get_canary_weight()
            where = f"the router's own promotion ({native})"
        if self.release.promote is not None:
            result["action"] = run_action(self.release.promote, "promote", run, endpoint_for)
            if native is None:
                result["canary_weight"] = router.apply(0)
                where = "the stable slot (canary slot back to 0%)"
        elif native is None:
            where = "the canary slot at 100% (no promote action: the stable slot still runs the old version)"
        if self.release.after_promote is not None:
            result["after_promote"] = run_action(self.release.after_promote, "after_promote", run, endpoint_for)
        Variable.set(stable_version_variable(run.release), run.version)
        self.log.info("promoted %s %s: it now serves all traffic from %s", run.release, run.version, where)
        return result
