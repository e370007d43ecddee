"""Preflight: validate the run's conf, check both backends, require a safe start, and plan the gates."""

from __future__ import annotations

import time

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
from canary_operators.judge import amount_dispersion
from canary_operators.measurement import ArmSample, Measurement
from canary_operators.metrics import Scope
from canary_operators.planner import Plan, Traffic, plan_gates
from canary_operators.secrets import scrub_error
from canary_operators.spec import BusinessCheck, ErrorRateCheck, LatencyCheck, ReleaseSpec, RunConf, resolve_run_conf
from canary_operators.stats import quantile_bucket
from canary_operators.status import clear_stopped, read_status, write_status

PLAN_KEY = "plan"  # preflight's XCom: the evidence plan (Plan.to_dict); the gates read their timeouts
TRAFFIC_WINDOW = 600.0  # the live traffic the planner reads: the last 10 minutes
# Request and error counts per arm, as the sample-ratio check reads them (built-in query).
_TRAFFIC = ErrorRateCheck(name="planner_traffic", kind="error_rate", min_requests=0)


def read_traffic(release: ReleaseSpec, run: RunConf, now: float | None = None) -> Traffic:
    """Live traffic over the last 10 minutes (at 0% canary: all of it on stable). Never raises:
    traffic that cannot be read is unknown, and the gates keep the spec's timeouts. Each business
    check is measured on the stable arm too; one that cannot be is planned for min_requests alone."""
    scope = Scope(run.version, run.stable_version, TRAFFIC_WINDOW, now or time.time())
    try:
        provider = build_provider(release, run)
        m = provider.measure(_TRAFFIC, scope)
    except Exception as e:  # noqa: BLE001 - planning is advice; it never fails the run
        return Traffic(None, source=f"the metrics provider could not be read: {scrub_error(e)}")
    stable = m.baseline
    if not stable.requests or stable.events is None:
        return Traffic(None, source=f"no request or error counts for stable {run.stable_version} in the last "
                                    f"{TRAFFIC_WINDOW / 60:.0f} min")
    total = stable.requests + (m.canary.requests or 0.0)  # a canary left above 0% served some of it
    rates, dispersions, unmeasured, latency_buckets = {}, {}, {}, {}
    for check in release.checks:
        if isinstance(check, LatencyCheck) and not check.query:
            try:
                buckets = provider.measure(check, scope).baseline.buckets
                where = quantile_bucket(buckets, check.quantile) if buckets else None
                if where:
                    latency_buckets[check.name] = where
            except Exception:  # noqa: BLE001 - as above: only a warning is lost
                pass
        if isinstance(check, BusinessCheck) and not check.query:
            try:
                rates[check.name], dispersion = _business_baseline(check, provider.measure(check, scope).baseline)
                if dispersion is not None:
                    dispersions[check.name] = dispersion
            except _Unmeasurable as e:
                unmeasured[check.name] = str(e)
            except Exception as e:  # noqa: BLE001 - as above
                unmeasured[check.name] = f"not measured on stable: {scrub_error(e)}"
    return Traffic(total / TRAFFIC_WINDOW, stable.events / stable.requests,
                   source=f"stable {run.stable_version}, last {TRAFFIC_WINDOW / 60:.0f} min",
                   business_rates=rates, dispersions=dispersions, unmeasured=unmeasured,
                   latency_buckets=latency_buckets)


class _Unmeasurable(ValueError):
    """The stable arm answered, but with too little to plan a business check on."""


def _business_baseline(check: BusinessCheck, stable: ArmSample) -> tuple[float, float | None]:
    """The stable arm's events per request and, for an amount, its dispersion (Var/mean per request),
    as the judge measures it: ``amount_dispersion`` pools two arms, so the stable arm's periods are
    split into their first and second half. Raises _Unmeasurable when it cannot be measured."""
    if not stable.requests or not stable.events or stable.events <= 0:
        raise _Unmeasurable(f"no {check.metric or check.name} events in the last {TRAFFIC_WINDOW / 60:.0f} min")
    rate = stable.events / stable.requests
    if check.unit != "amount":
        return rate, None
    periods = tuple(stable.periods or ())
    halves = (periods[:len(periods) // 2], periods[len(periods) // 2:])

    def half(part) -> ArmSample:
        requests = stable.requests * len(part) / len(periods)
        events = sum(v for _, v in part) * stable.requests / len(periods)  # each period's amount per request
        return ArmSample(events / requests if requests else None, requests, stable.query, events=events, periods=part)

    dispersion = amount_dispersion(Measurement(check.name, half(halves[0]), half(halves[1]), TRAFFIC_WINDOW), 2) \
        if len(periods) >= 4 else None
    if dispersion is None:
        raise _Unmeasurable(f"{len(periods)} periods of {check.metric or check.name} amounts, too few to measure "
                         f"their spread")
    return rate, dispersion


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
        if self.release.plan != "off":
            context["ti"].xcom_push(key=PLAN_KEY, value=self._plan(run).to_dict())
        return run.model_dump()

    def _plan(self, run: RunConf) -> Plan:
        """The evidence plan at live traffic, in the log; the gates read their timeouts from it."""
        plan = plan_gates(self.release, run.steps, run.bake_time, read_traffic(self.release, run))
        for line in plan.lines:
            self.log.info("%s", line)
        for warning in plan.warnings:
            self.log.warning("evidence planner: %s", warning)
        return plan

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
                weight = router.restore().weights.canary
        elif weight > 0 and status.phase != "promoted":
            self.log.warning("adopting this run's own record (%s); the canary is at %d%% and goes back to 0%% first",
                             status.phase, weight)
            weight = router.restore().weights.canary
        clear_stopped(self.release.name, run_id)  # a cleared run, started again by hand
        write_status(status.advance(
            phase="idle", run_id=run_id, dag_id=self.release.dag_id, version=run.version,
            stable_version=run.stable_version, weight=weight, promote_done=(), spec=self.release.model_dump(mode="json"),
            decision=f"preflight: {'adopted its own record' if adopting else 'took the release'}; canary at {weight}%"))
        return weight
