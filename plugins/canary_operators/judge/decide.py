"""The last stages: a check's policy once a condition lasts until the gate must decide, then the gate's outcome."""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

from canary_operators.judge import reasons
from canary_operators.judge.classifiers import classify, result
from canary_operators.judge.traffic_split import sample_ratio
from canary_operators.judge.verdicts import HOLDING, CheckResult, Decision, Gate, Observed, Outcome, ProviderFailure, Verdict
from canary_operators.measurement import Measurement
from canary_operators.spec import SampleRatioSpec


def apply_policy(check, found: CheckResult, gate: Gate, exhausted: bool = False) -> CheckResult:
    """A holding verdict that lasts until the gate must decide becomes what the check's policy says.
    ``exhausted``: the provider's failure must follow ``on_error`` now, before the gate timeout."""
    verdict = found.verdict
    if verdict not in HOLDING:
        return found
    if verdict is Verdict.ERROR:
        policy, due = check.on_error, exhausted or gate.timed_out
    elif verdict is Verdict.NO_DATA:
        policy, due = check.on_no_data, gate.timed_out
    else:
        policy, due = check.on_inconclusive, gate.timed_out
    if not due:
        return found
    if policy == "ignore":
        return dataclasses.replace(found, verdict=Verdict.IGNORED, reason=reasons.ignored_by_policy(found.reason))
    if policy == "rollback" or gate.hard_timed_out:
        by_on_error = verdict is Verdict.ERROR and not gate.timed_out
        return dataclasses.replace(found, verdict=Verdict.FAIL, reason=reasons.failed_by_policy(verdict, found.reason, by_on_error))
    return found  # hold: keep waiting, up to twice the gate timeout


def evaluate_check(check, observed: Observed, gate: Gate | None = None) -> CheckResult:
    """Judge one check. Pure: same inputs, same result."""
    gate = gate or Gate(weight=0, baked=True)
    if isinstance(observed, ProviderFailure):
        found = result(check, None, Verdict.ERROR, reasons.backend_error(observed.message))
        return apply_policy(check, found, gate, exhausted=observed.exhausted)
    if observed is None:
        return apply_policy(check, result(check, None, Verdict.NO_DATA, reasons.NO_MEASUREMENT), gate)
    return apply_policy(check, classify(check, observed), gate)


def _first_counts(measurements: Mapping[str, Observed]) -> Observed:
    return next((m for m in measurements.values() if isinstance(m, Measurement) and m.canary.requests is not None), None)


def judge(checks: Sequence, measurements: Mapping[str, Observed], gate: Gate,
          sample_ratio_spec: SampleRatioSpec | None = None, min_score: float = 1.0,
          step_counts: Observed | str = "from measurements") -> Decision:
    """Decide the gate: advance, hold, or roll back.

    ``step_counts``: request counts over this step's window alone, for the sample-ratio check
    (the checks themselves may use a longer window); None: not known yet. By default the first
    measurement with counts is used.
    """
    results = [evaluate_check(check, measurements.get(check.name), gate) for check in checks]
    srm_counts = _first_counts(measurements) if step_counts == "from measurements" else step_counts
    srm = sample_ratio(sample_ratio_spec, srm_counts, gate) if sample_ratio_spec else None
    if srm is not None:
        results.append(srm)
    results = tuple(results)

    critical_failures = [r for r in results if r.verdict is Verdict.FAIL and r.critical]
    if critical_failures:
        return Decision(Outcome.ROLLBACK, reasons.listed(critical_failures), results)
    holding = [r for r in results if r.verdict in HOLDING
               and (gate.final or r.verdict is not Verdict.INCONCLUSIVE or not r.estimate_within_bounds)]
    if holding:
        return Decision(Outcome.HOLD, reasons.listed(holding), results)
    unsettled = [r.check for r in results if r.verdict is Verdict.INCONCLUSIVE]
    scored = [r for r in results if not r.critical and r.verdict in (Verdict.PASS, Verdict.FAIL)]
    failed = [r for r in scored if r.verdict is Verdict.FAIL]
    if scored and (len(scored) - len(failed)) / len(scored) < min_score:
        return Decision(Outcome.ROLLBACK, reasons.low_score((len(scored) - len(failed)) / len(scored), min_score, failed),
                        results)
    if not gate.baked:
        return Decision(Outcome.HOLD, reasons.baking(unsettled), results)
    return Decision(Outcome.ADVANCE, reasons.advancing(unsettled), results)
