"""GuardRelease: one release's sweep in ``canary_guard`` (one mapped task per spec, so one router
that is down never fails the others)."""

from __future__ import annotations

import time
from pathlib import Path

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from canary_operators.guard import GuardVerdict, guard_verdict
from canary_operators.operators.common import build_router, run_conf_from_status
from canary_operators.safety import TrafficNotRestored, notify_failure, report_unsafe, restore_stable
from canary_operators.spec import ReleaseSpec, RunConf, load_spec
from canary_operators.status import mark_stopped, read_status, read_stopped_run, record

GUARD_RESTORE_BUDGET = 45.0  # seconds per sweep; the next sweep tries again


def owner_state(context, dag_id: str | None, run_id: str | None) -> str | None:
    """The owning run's state; None when there is none or it was deleted."""
    if not dag_id or not run_id:
        return None
    try:
        state = context["ti"].get_dagrun_state(dag_id=dag_id, run_id=run_id)
        return str(getattr(state, "value", state))  # a DagRunState enum or its string
    except Exception as e:
        # A worker gets the 404 inside AirflowRuntimeError's text; in-process (dag.test) the client's
        # ServerResponseError says only "Server returned error", with the status on its response.
        if getattr(getattr(e, "response", None), "status_code", None) == 404:
            return None
        if "404" in str(e) or "not found" in str(e).lower() or "NOT_FOUND" in str(e):
            return None
        raise


class GuardRelease(BaseOperator):
    """Read the router's weight and the status record; put an orphaned canary back on stable."""

    ui_color = "#fde2e4"

    def __init__(self, *, release_name: str, spec_path: str, **kwargs):
        super().__init__(**kwargs)
        self.release_name = release_name
        self.spec_path = spec_path

    def execute(self, context) -> dict:
        spec = self._spec()
        if spec is None:
            from canary_operators.operators.target_preflight import recorded_targets

            targets = recorded_targets(self.release_name)
            if targets:  # a release across several targets whose file broke: each target by its recorded spec
                return self._reconcile_targets(context, targets)
            return {"release": self.release_name, "acted": False, "reason": "spec broken and no recorded spec"}
        return self._reconcile(context, spec)

    def _reconcile_targets(self, context, targets: list[str]) -> dict:
        from canary_operators.spec.targets import target_release_name

        results, errors = [], []
        for target in targets:
            name = target_release_name(self.release_name, target)
            recorded = read_status(name).spec
            if not recorded:
                results.append({"release": name, "acted": False, "reason": "no recorded spec"})
                continue
            try:
                results.append(self._reconcile(context, ReleaseSpec.model_validate(recorded)))
            except Exception as e:  # noqa: BLE001 - one target's router down must not leave the others unguarded
                errors.append(f"{name}: {e}")
        if errors:
            raise AirflowFailException("; ".join(errors))
        return {"release": self.release_name, "acted": any(r["acted"] for r in results), "targets": results}

    def _reconcile(self, context, spec: ReleaseSpec) -> dict:
        status = read_status(spec.name)
        run = run_conf_from_status(status) or self._fallback_run(spec)
        if run is None:
            self.log.info("%s: no version is known yet (no run has recorded one); nothing to check", spec.name)
            return {"release": spec.name, "acted": False, "reason": "no version known"}
        router = build_router(spec, run)
        weight = router.get_canary_weight()
        # The record is read after the weight: a run records that it owns the release before it
        # moves traffic, so a canary set by a starting run is never taken for an orphan.
        status = read_status(spec.name)
        state = owner_state(context, status.dag_id, status.run_id)
        verdict = guard_verdict(status, weight, state, time.time(), spec.silence_limit, read_stopped_run(spec.name))
        if verdict.act and read_status(spec.name).updated_at != status.updated_at:
            verdict = GuardVerdict(False, "the record changed while the guard looked; the next sweep decides")
        if not verdict.act:
            self.log.info("%s: %s", spec.name, verdict.reason)
            return {"release": spec.name, "acted": False, "weight": weight, "reason": verdict.reason}
        if status.run_id:  # before any move: the run's next heartbeat or shift sees it and stops
            mark_stopped(spec.name, status.run_id, verdict.reason)
        if weight > 0:
            try:
                restored = restore_stable(router, min(GUARD_RESTORE_BUDGET, spec.rollback_deadline), self.log)
            except TrafficNotRestored as e:
                message = report_unsafe(spec.name, e.weight, f"{verdict.reason}; {e}", self.log)
                record(spec.name, self.log, phase="unsafe", weight=e.weight, decision=message[:500])
                raise AirflowFailException(message) from None
            weight = restored["weight_after"]
        record(spec.name, self.log, phase="rolled_back", weight=weight, decision=verdict.reason[:500])
        notify_failure(spec.name, f"{verdict.reason}; canary now at {weight}% (read back)", self.log)
        return {"release": spec.name, "acted": True, "weight": weight, "reason": verdict.reason}

    def _spec(self) -> ReleaseSpec | None:
        """The spec file's release (or the target's, ``<release>__<target>``); if the file is broken
        (edited mid-release) or no longer has the target, the spec its last run recorded, so a
        canary that run left serving is still guarded."""
        try:
            spec = load_spec(Path(self.spec_path))
            if spec.targets:  # one sweep per target, each by its own spec and record
                from canary_operators.spec.targets import target_releases

                spec = next(r for r in target_releases(spec).values() if r.name == self.release_name)
            return spec
        except Exception as e:  # noqa: BLE001 - any broken file: fall back to the recorded spec
            recorded = read_status(self.release_name).spec
            if not recorded:
                self.log.warning("%s: the spec file is broken and no run recorded a spec; nothing to guard: %s",
                                 self.release_name, e)
                return None
            self.log.warning("%s: the spec file is broken (%s); guarding with the spec its last run recorded",
                             self.release_name, e)
            return ReleaseSpec.model_validate(recorded)

    @staticmethod
    def _fallback_run(spec) -> RunConf | None:
        version = spec.default_version or spec.stable_version
        if not version or not spec.stable_version:
            return None
        return RunConf(release=spec.name, version=version, stable_version=spec.stable_version)
