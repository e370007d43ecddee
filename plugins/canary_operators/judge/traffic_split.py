"""The sample-ratio check: does the canary's share of requests match the weight the router was told?"""

from __future__ import annotations

import math

from canary_operators import stats
from canary_operators.judge import reasons
from canary_operators.judge.verdicts import CheckResult, Gate, Observed, Verdict
from canary_operators.measurement import Measurement
from canary_operators.spec import SampleRatioSpec


def sample_ratio(spec: SampleRatioSpec, step: Observed, gate: Gate) -> CheckResult | None:
    """Does the canary's share of requests at this step match what the router was told?

    ``step`` holds both arms' request counts over this step's window. A mismatch means the routing
    is broken, but only when it lasts: a missed scrape skews a short window's counts, so a
    rejecting look fails the check only after the split has looked wrong for ``confirm_seconds``
    of consecutive looks (``gate.split_failing_for``). A canary with no series at all while the
    baseline served ``unobserved_after`` requests is taken as serving unobserved.
    """
    if not spec.enabled or not 0 < gate.weight < 100:
        return None
    expected = gate.expected_share if gate.expected_share is not None else gate.weight / 100
    low, high = expected * (1 - spec.tolerance), min(1.0, expected * (1 + spec.tolerance))
    base = dict(check="sample_ratio", kind="sample_ratio", critical=True, threshold=reasons.split_allowed(low, high))
    canary = baseline = None
    if isinstance(step, Measurement):
        canary, baseline = step.canary.requests, step.baseline.requests
    unobserved = canary is None and baseline is not None and baseline >= spec.unobserved_after
    if unobserved:
        canary = 0.0
    if canary is None or baseline is None or canary + baseline < spec.min_requests:
        return CheckResult(**base, verdict=Verdict.IGNORED, reason=reasons.SPLIT_TOO_FEW)
    total = canary + baseline
    share = canary / total if total else 0.0
    log_e = max(stats.bernoulli_log_e(canary, total, high, "greater"), stats.bernoulli_log_e(canary, total, low, "less"))
    p = stats.p_value(log_e, 2)
    rejects = log_e >= math.log(2 / spec.alpha)
    common = dict(base, canary_requests=canary, baseline_requests=baseline, canary_value=share, baseline_value=expected,
                  statistic="log e-value (share outside tolerance)", statistic_value=log_e, p_value=p,
                  bounds={"rejects": rejects, "failing_for_seconds": gate.split_failing_for if rejects else None})
    reason = reasons.split(gate.weight, canary, baseline, low, high, p, rejects, unobserved)
    if not rejects:
        return CheckResult(**common, verdict=Verdict.PASS, reason=reason)
    lasted = gate.split_failing_for or 0.0
    if lasted >= spec.confirm_seconds:
        return CheckResult(**common, verdict=Verdict.FAIL, reason=reasons.split_failed(reason, unobserved, lasted))
    return CheckResult(**common, verdict=Verdict.INCONCLUSIVE, estimate_within_bounds=False,
                       reason=reasons.split_unconfirmed(reason, spec.confirm_seconds, lasted))
