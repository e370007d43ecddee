"""GroupAbort: a failure in one target stops every target in its abort scope, at once.

It runs as soon as any watched task fails (``one_failed``), while the other targets' gates may
still be judging. For each target in scope that this run took (``targets.plan.group_abort_action``):

- mid-way: its status record goes to ``rolling_back``, so its gate's next look, its next shift and
  its promote stop (they move traffic only while the run owns a live record); then its canary is
  set to 0% once, right away;
- promoted by this run (an earlier wave, with ``abort: all``): its record goes back to
  ``rolling_back`` with the stable slot marked as holding the new version, and the stable-version
  Variable back to the previous version, so the target's undo puts the previous version back into
  the stable slot (the promote action with the old version), as after a partial promote.

Each target's own ``rollback`` teardown then finishes the job (retries against its deadline, the
``rollback`` action, the final record). Variables have no compare-and-set, so a gate's heartbeat
may overwrite the record in the same millisecond: the record is read again a second later and
written again. Even then the canary is already at 0%, and the undo runs regardless.
"""

from __future__ import annotations

import time

from airflow.sdk import Variable
from airflow.sdk.exceptions import AirflowSkipException

from canary_operators.operators.common import (
    FAILURE_KEY,
    ReleaseOperator,
    build_router,
    run_conf_from_status,
    run_id_of,
    stable_version_variable,
)
from canary_operators.clients.retrying import pause
from canary_operators.routers import router_class
from canary_operators.secrets import scrub_error
from canary_operators.spec import ReleaseSpec
from canary_operators.status import read_status, record
from canary_operators.targets.plan import group_abort_action

STOPPED = ("rolling_back", "rolled_back", "unsafe")
RECHECK_SECONDS = 1.0


class GroupAbort(ReleaseOperator):
    """Stop every target in ``scope`` (target name → its spec) after a failure in ``watched_task_ids``."""

    ui_color = "#f28b82"

    def __init__(self, *, scope: dict[str, ReleaseSpec], watched_task_ids: list[str], **kwargs):
        super().__init__(**kwargs)
        self.scope = scope
        self.watched_task_ids = watched_task_ids

    def run_step(self, context) -> dict:
        found = context["ti"].xcom_pull(task_ids=self.watched_task_ids, key=FAILURE_KEY) or []
        reason = "; ".join(f"{f['task']}: {f['error']}" for f in found if f) or "a task of the release failed"
        decision = f"{self.task_id}: group abort: {reason}"[:500]
        run_id = run_id_of(context)
        actions = {name: group_abort_action(read_status(spec.name), run_id) for name, spec in self.scope.items()}
        if all(a == "none" for a in actions.values()):
            raise AirflowSkipException(f"no target in {sorted(self.scope)} was moved by this run; nothing to abort")
        notes: dict[str, str] = {}
        for name, action in actions.items():
            spec = self.scope[name]
            if action == "stop":
                # A promote under way may have put the new version into the stable slot already: keep
                # that known, so the target's undo puts the previous version back (as Rollback does
                # for a record it finds "promoting").
                promoting = read_status(spec.name).phase == "promoting"
                record(spec.name, self.log, phase="rolling_back", decision=decision,
                       **({"promote_done": ("stable_slot",)} if promoting else {}))
            elif action == "unpromote":
                note = self._unpromote(spec, decision)
                if note:
                    notes[name] = note
        result = {"reason": reason, "targets": {}}
        for name, action in actions.items():
            result["targets"][name] = {"action": action, **(self._reset(self.scope[name]) if action != "none" else {}),
                                       **({"note": notes[name]} if name in notes else {})}
        pause(RECHECK_SECONDS)
        for name, action in actions.items():
            spec = self.scope[name]
            if action == "stop" and read_status(spec.name).phase not in STOPPED:
                self.log.warning("%s: a heartbeat overwrote the abort; writing it again", spec.name)
                record(spec.name, self.log, phase="rolling_back", decision=decision)
        self.log.error("group abort of %s: %s", ", ".join(f"{n} ({a})" for n, a in actions.items()), reason)
        return result

    def _unpromote(self, spec: ReleaseSpec, decision: str) -> str | None:
        """Returns why the promotion stays, when it cannot be undone."""
        status = read_status(spec.name)
        if router_class(spec.router.type).promotes_natively:
            # The router made the version live itself (a Lambda alias, an Argo Rollout): there is no
            # stable slot to put the old version back into, so it stays promoted, loudly.
            note = (f"promoted by the router itself ({spec.router.type}); the group abort cannot undo that; "
                    f"release {status.stable_version} again to go back")
            self.log.error("%s: %s", spec.name, note)
            return note
        record(spec.name, self.log, strict=True, phase="rolling_back", promote_done=("stable_slot",),
               decision=f"{decision} (undoing its promotion of {status.version})"[:500])
        if status.stable_version:
            Variable.set(stable_version_variable(spec.name), status.stable_version)
        return None

    def _reset(self, spec: ReleaseSpec) -> dict:
        """The canary to 0% in one attempt; the target's undo retries against its deadline."""
        started = time.monotonic()
        try:
            weight = build_router(spec, run_conf_from_status(read_status(spec.name))).restore().weights.canary
            return {"weight_after": weight, "seconds_to_stable": round(time.monotonic() - started, 3)}
        except Exception as e:  # noqa: BLE001 - the undo keeps trying
            self.log.error("%s: the fast reset failed (%s); its undo keeps trying", spec.name, e)
            return {"error": scrub_error(e)}
