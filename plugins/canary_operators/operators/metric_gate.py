"""MetricGate: compare canary and baseline until the judge says advance or roll back.

Holds while data is thin; fails at the gate timeout ("no data" is never a pass). On a failing
verdict it sets the canary's weight to 0 itself before failing, so traffic is back on stable
within a second; the Rollback task then does the full, idempotent cleanup.
"""

from __future__ import annotations

import time

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowFailException

from canary_operators.exceptions import BackendUnavailable, MetricsError
from canary_operators.judge import Outcome, judge
from canary_operators.metrics import Scope
from canary_operators.operators.common import RecordsFailure, build_provider, build_router, run_conf_of
from canary_operators.spec import ReleaseSpec

EVIDENCE_KEY = "evidence"
FAST_ROLLBACK_KEY = "fast_rollback"


class MetricGate(RecordsFailure, BaseSensorOperator):
    """Gate the step at ``weight``%: pass after the bake time when every check passes."""

    ui_color = "#fce8e6"

    def __init__(self, *, release: ReleaseSpec, weight: int, shift_task_id: str, **kwargs):
        kwargs.setdefault("poke_interval", release.poke_interval)
        # Backstop only: the gate enforces release.gate_timeout itself, measured from the shift.
        kwargs.setdefault("timeout", release.gate_timeout + 60)
        kwargs.setdefault("mode", "poke")
        super().__init__(**kwargs)
        self.release = release
        self.weight = weight
        self.shift_task_id = shift_task_id
        self._provider_errors = 0

    def execute(self, context):
        try:
            return super().execute(context)
        except BaseException as e:
            self.record_failure(context, e)
            raise

    def poke(self, context):
        ti = context["ti"]
        run = run_conf_of(context)
        shifted = ti.xcom_pull(task_ids=self.shift_task_id) or {}
        if "shifted_at" not in shifted:
            raise AirflowFailException(f"{self.shift_task_id} left no shift time; cannot gate")
        now = time.time()
        elapsed = now - shifted["shifted_at"]
        scope = Scope(run.version, run.stable_version, window_seconds=elapsed, end=now)
        provider = build_provider(self.release)

        measurements, unavailable = {}, None
        for check in self.release.checks:
            try:
                measurements[check.name] = provider.measure(check, scope)
            except BackendUnavailable as e:
                unavailable = e
                break
            except MetricsError as e:
                self._fail(context, f"metrics backend rejected check {check.name}: {e}", None)
        if unavailable is not None:
            self._provider_errors += 1
            self.log.warning("metrics backend unavailable (%d/%d): %s",
                             self._provider_errors, self.release.max_provider_errors, unavailable)
            if self._provider_errors >= self.release.max_provider_errors:
                self._fail(context, f"metrics backend unavailable {self._provider_errors} times in a row: {unavailable}", None)
            return self._hold_or_timeout(context, elapsed, f"metrics backend unavailable: {unavailable}", None)
        self._provider_errors = 0

        decision = judge(self.release.checks, measurements, baked=elapsed >= self.release.bake_time)
        evidence = {"weight": self.weight, "elapsed_seconds": round(elapsed, 1), **decision.to_dict()}
        ti.xcom_push(key=EVIDENCE_KEY, value=evidence)
        self.log.info("gate at %d%% after %.0fs: %s", self.weight, elapsed, decision.log_line())
        if decision.outcome is Outcome.ROLLBACK:
            self._fail(context, decision.reason, evidence)
        if decision.outcome is Outcome.ADVANCE:
            return PokeReturnValue(is_done=True, xcom_value=evidence)
        return self._hold_or_timeout(context, elapsed, decision.reason, evidence)

    def _hold_or_timeout(self, context, elapsed: float, reason: str, evidence):
        if elapsed >= self.release.gate_timeout:
            self._fail(context, f"no verdict after {self.release.gate_timeout:g}s at {self.weight}%: {reason}", evidence)
        return False

    def _fail(self, context, reason: str, evidence) -> None:
        """Put traffic back on stable now, record how fast, then fail without retries."""
        started = time.monotonic()
        record = {"reason": reason, "weight_before": self.weight}
        try:
            record["weight_after"] = build_router(self.release).apply(0)
            record["seconds_to_stable"] = round(time.monotonic() - started, 3)
            self.log.error("gate failed at %d%%; canary set to 0%% in %.3fs: %s",
                           self.weight, record["seconds_to_stable"], reason)
        except Exception as e:  # the Rollback task retries the traffic reset
            record["error"] = f"{type(e).__name__}: {e}"
            self.log.error("gate failed at %d%% and the fast reset to stable failed (%s): %s", self.weight, e, reason)
        context["ti"].xcom_push(key=FAST_ROLLBACK_KEY, value=record)
        raise AirflowFailException(f"gate at {self.weight}% failed: {reason}")
