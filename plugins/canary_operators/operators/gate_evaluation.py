"""One look of a gate, shared by MetricGate's poke mode and its trigger (deferrable mode).

Measures every check over the step's window, asks the judge, and on a failing verdict puts
traffic back on stable at once. Blocking I/O: the trigger calls it through asyncio.to_thread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from canary_operators.exceptions import BackendUnavailable, MetricsError
from canary_operators.judge import Gate, Outcome, ProviderFailure, judge
from canary_operators.looks import gate_state, look_line, look_record, observed_to_dict
from canary_operators.measurement import Measurement
from canary_operators.metrics import Scope
from canary_operators.operators.common import build_provider, build_router
from canary_operators.secrets import scrub, scrub_error
from canary_operators.spec import ErrorRateCheck, ReleaseSpec, RunConf


@dataclass(frozen=True)
class GateLook:
    outcome: Outcome
    reason: str
    evidence: dict
    # What the judge saw per check (``looks.observed_to_dict``) and the gate's state, for the per-look record.
    observed: dict = field(default_factory=dict)
    gate: dict = field(default_factory=dict)

    def __post_init__(self):  # a look's reason and evidence go to XCom, the status record and trigger events
        object.__setattr__(self, "reason", scrub(self.reason))
        object.__setattr__(self, "evidence", scrub(self.evidence))
        object.__setattr__(self, "observed", scrub(self.observed))


SPLIT_FAILING = "(split failing since)"
SPLIT_REFERENCE_CANARY, SPLIT_REFERENCE_BASELINE = "(split reference: canary)", "(split reference: baseline)"

# Request counts over one step's window, for the sample-ratio check.
_STEP_COUNTS = ErrorRateCheck(name="sample_ratio", kind="error_rate", min_requests=0)


def is_last_gate(release: ReleaseSpec, run: RunConf, weight: int) -> bool:
    return weight == max(s for s in (run.steps or release.steps) if s < 100)


def evaluate_gate(release: ReleaseSpec, run: RunConf, weight: int, shifted_at: float,
                  memory: dict[str, float], log=None, rollout_started_at: float | None = None,
                  watching: bool = False, gate_timeout: float | None = None, name: str = "gate",
                  look_number: int | None = None) -> GateLook:
    """Look once. ``memory`` carries what spans looks (mutated): per check, since when its metrics
    backend has been down; under ``SPLIT_FAILING``, since when the traffic split has looked wrong.

    The checks use the window since the rollout's first shift: the canary runs the same version
    at every step, so evidence keeps accumulating. The sample-ratio check uses this step alone.

    ``watching``: the step's gate has passed and the canary waits at ``weight`` (for a person).
    Only a failing verdict matters then, so the gate timeouts never apply: no-data and
    inconclusive checks keep holding however long the wait. A backend down for
    ``max_provider_outage`` still follows the check's ``on_error`` policy, as in the gate.

    ``gate_timeout``: this gate's timeout when the evidence planner lengthened it (else the spec's).
    ``name``, ``look_number``: how the look's one log line names it (``gate_5 look 7 at 35s: HOLD – …``).
    """
    now = time.time()
    elapsed = now - shifted_at
    started = min(shifted_at, rollout_started_at or shifted_at)
    window = max(0.0, now - started - release.settle_time)  # scrapes still straddle the first shift
    step_window = max(0.0, elapsed - release.settle_time)
    scope = Scope(run.version, run.stable_version, window_seconds=window, end=now)
    provider = build_provider(release, run)
    observed = {}
    for check in release.checks:
        if window <= 0:
            observed[check.name] = None
            continue
        try:
            observed[check.name] = provider.measure(check, scope)
            memory.pop(check.name, None)
        except BackendUnavailable as e:
            down = now - memory.setdefault(check.name, now)
            if log:
                log.warning("metrics backend unavailable for %s (down for %.0fs of %.0fs allowed): %s",
                            check.name, down, release.max_provider_outage, e)
            observed[check.name] = ProviderFailure(f"{e} (down for {down:.0f}s)",
                                                   exhausted=down >= release.max_provider_outage)
        except MetricsError as e:  # a rejected query: retrying cannot fix it, so on_error decides now
            memory.pop(check.name, None)
            observed[check.name] = ProviderFailure(f"the query was rejected: {e}", exhausted=True)
    step_counts = None
    if release.sample_ratio.enabled and step_window > 0:
        try:
            step_counts = since_reference(
                provider.measure(_STEP_COUNTS, Scope(run.version, run.stable_version, step_window, now)), memory,
                release.sample_ratio.min_requests)
        except (BackendUnavailable, MetricsError):
            step_counts = None  # the checks above already count provider errors
    bake = run.bake_time if run.bake_time is not None else release.bake_time
    timeout = gate_timeout or release.gate_timeout
    failing_since = memory.get(SPLIT_FAILING)
    gate = Gate(weight=weight, baked=elapsed >= bake, timed_out=not watching and elapsed >= timeout,
                hard_timed_out=not watching and elapsed >= 2 * timeout,
                final=release.evidence_at == "every_gate" or is_last_gate(release, run, weight),
                expected_share=_expected_share(release, run, weight, log) if release.sample_ratio.enabled else None,
                split_failing_for=None if failing_since is None else now - failing_since)
    decision = judge(release.checks, observed, gate, release.sample_ratio, release.min_score, step_counts)
    split = next((c for c in decision.checks if c.kind == "sample_ratio"), None)
    if split is not None and split.bounds.get("rejects"):
        memory.setdefault(SPLIT_FAILING, now)
    else:
        memory.pop(SPLIT_FAILING, None)
    evidence = {"weight": weight, "elapsed_seconds": round(elapsed, 1), "window_seconds": round(window, 1),
                "last_gate": gate.final, **({"watching": True} if watching else {}), **decision.to_dict()}
    seen = {check_name: observed_to_dict(o) for check_name, o in observed.items()}
    if split is not None:
        seen[split.check] = observed_to_dict(step_counts)
    look = GateLook(decision.outcome, decision.reason, evidence, seen, gate_state(gate))
    if log:  # one short line; the full record goes to XCom (key "looks")
        log.info("%s", look_line(name, {"n": look_number, **look_record(look.evidence, look.observed, look.gate, now)}))
    return look


def since_reference(step: Measurement, memory: dict[str, float], min_requests: float = 0) -> Measurement:
    """The step's request counts since the first look that had both arms' counts, once those
    reach ``min_requests`` (until then, the counts since the step's start).

    ``increase()`` over the step's window loses whatever an arm's missed scrapes at the window's
    start hid, for as long as the window starts there: a fixed loss that skews the split. Counted
    from a later reference look (the first with requests on both arms), that loss is in both
    readings and cancels, and so does a Prometheus restart. Until then, and for a canary with no
    series at all, the cumulative counts are judged, so that the judge can name what it sees and a
    gate never advances unchecked; a split that looks wrong then must still last ``confirm_seconds``.
    """
    canary, baseline = step.canary.requests, step.baseline.requests
    if SPLIT_REFERENCE_CANARY not in memory:
        if not canary or not baseline:  # an arm not (yet) seen: no reference to count from
            return step
        memory[SPLIT_REFERENCE_CANARY], memory[SPLIT_REFERENCE_BASELINE] = canary, baseline
    if canary is None or baseline is None:
        return step
    arms = [replace(arm, requests=max(0.0, arm.requests - memory[key]), events=None, value=None)
            for arm, key in ((step.canary, SPLIT_REFERENCE_CANARY), (step.baseline, SPLIT_REFERENCE_BASELINE))]
    if arms[0].requests + arms[1].requests < max(min_requests, 1):
        return step
    return replace(step, canary=arms[0], baseline=arms[1])


def _expected_share(release: ReleaseSpec, run: RunConf, weight: int, log) -> float | None:
    """The share of requests the router says the canary should serve (Argo: by replicas)."""
    try:
        return build_router(release, run).expected_share(weight)
    except Exception as e:  # noqa: BLE001 - the split is then judged against the weight alone
        if log:
            log.warning("could not read the canary's expected share of requests from the router: %s", e)
        return None


def reset_to_stable(release: ReleaseSpec, run: RunConf, weight: int, reason: str, log=None,
                    run_id: str | None = None, looks_ref: dict | None = None, stale: bool = False) -> dict:
    """Put all traffic back on stable now, in one attempt (the undo retries against its deadline);
    return what happened and how fast. With ``run_id``, record it while that run owns the release.

    ``stale``: the caller may act late (a trigger the triggerer cancels seconds after its run was
    marked): when another run owns the release by then, its canary is that run's to judge, and
    this one touches nothing. A record that cannot be read resets anyway."""
    from canary_operators.status import heartbeat, read_status

    if stale and run_id:
        try:
            status = read_status(release.name)
        except Exception as e:  # noqa: BLE001 - cannot tell: the safe side is stable
            status = None
            if log:
                log.warning("could not read the status record before the reset (%s); resetting", scrub_error(e))
        if status is not None and status.run_id and not status.owned_by(run_id):
            if log:
                log.warning("not resetting the canary: run %s owns %s now, not this run %s (%s)",
                            status.run_id, release.name, run_id, reason)
            return {"reason": reason, "weight_before": weight, "skipped": f"owned by run {status.run_id}"}
    started = time.monotonic()
    record = {"reason": reason, "weight_before": weight}
    try:
        record["weight_after"] = build_router(release, run).restore().weights.canary
        record["seconds_to_stable"] = round(time.monotonic() - started, 3)
        if log:
            log.error("canary at %d%% set to 0%% in %.3fs: %s", weight, record["seconds_to_stable"], reason)
    except Exception as e:  # the undo task retries the traffic reset against its deadline
        record["error"] = scrub_error(e)
        if log:
            log.error("the fast reset to stable at %d%% failed (%s); the undo keeps trying: %s", weight, e, reason)
    if run_id:
        heartbeat(release.name, run_id, log, phase="rolling_back", weight=record.get("weight_after"), decision=reason,
                  **({"looks_ref": looks_ref} if looks_ref else {}))
    return record
