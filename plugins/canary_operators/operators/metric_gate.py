"""MetricGate: compare canary and baseline until the judge says advance or roll back.

Holds while data is thin or inconclusive; at the gate timeout each check's policy decides ("no
data" is never a pass). On a failing
verdict it sets the canary's weight to 0 itself before failing, so traffic is back on stable
within a second; the Rollback task then does the full, idempotent cleanup.
"""

from __future__ import annotations

import time

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowFailException

from canary_operators.exceptions import BackendUnavailable, MetricsError
from canary_operators.judge import Gate, Outcome, ProviderFailure, judge
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
        # Backstop only: the judge applies the timeout policies itself, measured from the shift;
        # a check with a "hold" policy may keep the gate waiting up to twice the gate timeout.
        kwargs.setdefault("timeout", 2 * release.gate_timeout + 60)
        kwargs.setdefault("mode", "poke")
        super().__init__(**kwargs)
        self.release = release
        self.weight = weight
        self.shift_task_id = shift_task_id
        self._provider_errors: dict[str, int] = {}  # consecutive failures per check

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
        release = self.release
        now = time.time()
        elapsed = now - shifted["shifted_at"]
        # Leave out the first seconds after the shift: scrapes still straddle the change.
        window = max(0.0, elapsed - release.settle_time)
        scope = Scope(run.version, run.stable_version, window_seconds=window, end=now)
        provider = build_provider(release, run)

        observed = {}
        for check in release.checks:
            if window <= 0:
                observed[check.name] = None
                continue
            try:
                observed[check.name] = provider.measure(check, scope)
                self._provider_errors.pop(check.name, None)
            except BackendUnavailable as e:
                count = self._provider_errors[check.name] = self._provider_errors.get(check.name, 0) + 1
                self.log.warning("metrics backend unavailable for %s (%d/%d): %s", check.name, count, release.max_provider_errors, e)
                observed[check.name] = ProviderFailure(f"{e} ({count} times in a row)", exhausted=count >= release.max_provider_errors)
            except MetricsError as e:  # a rejected query is a spec or auth problem: retrying cannot fix it
                self._fail(context, f"metrics backend rejected check {check.name}: {e}", None)

        gate = Gate(
            weight=self.weight,
            baked=elapsed >= release.bake_time,
            timed_out=elapsed >= release.gate_timeout,
            hard_timed_out=elapsed >= 2 * release.gate_timeout,
        )
        decision = judge(release.checks, observed, gate, release.sample_ratio, release.min_score)
        evidence = {"weight": self.weight, "elapsed_seconds": round(elapsed, 1), "window_seconds": round(window, 1), **decision.to_dict()}
        ti.xcom_push(key=EVIDENCE_KEY, value=evidence)
        self.log.info("gate at %d%% after %.0fs: %s", self.weight, elapsed, decision.log_line())
        if decision.outcome is Outcome.ROLLBACK:
            self._fail(context, decision.reason, evidence)
        if decision.outcome is Outcome.ADVANCE:
            return PokeReturnValue(is_done=True, xcom_value=evidence)
        return False

    def _fail(self, context, reason: str, evidence) -> None:
        """Put traffic back on stable now, record how fast, then fail without retries."""
        started = time.monotonic()
        record = {"reason": reason, "weight_before": self.weight}
        try:
            record["weight_after"] = build_router(self.release, run_conf_of(context)).apply(0)
            record["seconds_to_stable"] = round(time.monotonic() - started, 3)
            self.log.error("gate failed at %d%%; canary set to 0%% in %.3fs: %s",
                           self.weight, record["seconds_to_stable"], reason)
        except Exception as e:  # the Rollback task retries the traffic reset
            record["error"] = f"{type(e).__name__}: {e}"
            self.log.error("gate failed at %d%% and the fast reset to stable failed (%s): %s", self.weight, e, reason)
        context["ti"].xcom_push(key=FAST_ROLLBACK_KEY, value=record)
        raise AirflowFailException(f"gate at {self.weight}% failed: {reason}")
