"""Promote in Flagger's order: the new version into the stable slot, all traffic to stable, then
scale the canary down. The canary slot never gets 100% unless the router promotes natively."""

from __future__ import annotations

from airflow.sdk import Variable

from canary_operators.actions import run_action
from canary_operators.operators.common import (
    ReleaseOperator,
    build_router,
    endpoint_for,
    require_ownership,
    run_conf_of,
    stable_version_variable,
)
from canary_operators.status import read_status, record


class Promote(ReleaseOperator):
    """1. roll the new version into the stable slot (the spec's promote action) while the canary
    keeps its last weight; 2. route everything to stable; 3. ``after_promote`` (scale the canary
    down). Routers that promote natively (Lambda alias, Argo Rollouts) do 1 and 2 themselves.

    Idempotent: each step done is recorded in the status record, and a retry skips it. The
    release counts as promoted once traffic is on the new stable, so a failing ``after_promote``
    fails the run but is never undone by a rollback."""

    ui_color = "#d2e3fc"

    def run_step(self, context) -> dict:
        run = run_conf_of(context)
        if run.dry_run:
            self.log.info("dry run: would promote %s %s and make it the stable version", run.release, run.version)
            return {"version": run.version, "previous_stable": run.stable_version, "dry_run": True}
        name = self.release.name
        done = set(read_status(name).promote_done)
        if "routed" not in done:
            require_ownership(self.release, context)
        result = {"version": run.version, "previous_stable": run.stable_version}
        router = build_router(self.release, run)
        if "routed" not in done:
            record(name, self.log, phase="promoting", decision=f"promote: {run.version} into the stable slot")
            if router.promotes_natively:
                result["router"] = router.promote()
                where = f"the router's own promotion ({result['router']})"
            else:
                if "stable_slot" not in done:
                    result["action"] = run_action(self.release.promote, "promote", run, endpoint_for)
                    done.add("stable_slot")
                    record(name, self.log, strict=True, promote_done=tuple(sorted(done)),
                           decision=f"promote: the stable slot runs {run.version}; routing all traffic to it")
                router.restore()
                where = "the stable slot (canary slot back to 0%)"
            done.add("routed")
            Variable.set(stable_version_variable(name), run.version)
            result["canary_weight"] = router.get_canary_weight()
            record(name, self.log, phase="promoted", weight=result["canary_weight"], promote_done=tuple(sorted(done)),
                   decision=f"promote: {run.version} serves all traffic from {where}")
            self.log.info("promoted %s %s: it now serves all traffic from %s", name, run.version, where)
        else:
            result["canary_weight"] = router.get_canary_weight()
            self.log.info("promote retried: %s %s already serves all traffic; only after_promote is left", name, run.version)
        if self.release.after_promote is not None and "after_promote" not in done:
            result["after_promote"] = run_action(self.release.after_promote, "after_promote", run, endpoint_for)
            done.add("after_promote")
            record(name, self.log, promote_done=tuple(sorted(done)), decision="promote: after_promote done")
        return result
