"""Every sentence the judge writes: one function per classifier, per policy and per decision.

Text only: the numbers come from the classifiers (``classifiers``, ``traffic_split``) and the
decision (``decide``); nothing here changes a verdict.
"""

from __future__ import annotations

from canary_operators.judge.verdicts import CheckResult, Verdict
from canary_operators.measurement import Measurement
from canary_operators.spec import BusinessCheck, ErrorRateCheck

# -- numbers ------------------------------------------------------------------------------------


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.2f}%"


def num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def p_text(p: float | None) -> str:
    if p is None:
        return "n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def sizes(m: Measurement) -> str:
    """`` (n=canary vs baseline)``, or nothing when a count is unknown."""
    if m.canary.requests is None or m.baseline.requests is None:
        return ""
    return f" (n={m.canary.requests:.0f} vs {m.baseline.requests:.0f})"


def edges(bucket: tuple[float, float]) -> str:
    return f"({bucket[0]:g} s, {bucket[1]:g} s]"


def threshold(check) -> str:
    if isinstance(check, ErrorRateCheck):
        return f"canary - baseline <= {check.max_increase_pp:g} pp"
    if isinstance(check, BusinessCheck):
        bounds = [f">= {check.min_ratio:g}" if check.min_ratio else "", f"<= {check.max_ratio:g}" if check.max_ratio else ""]
        return "canary/baseline " + " and ".join(b for b in bounds if b)
    return f"canary/baseline <= {check.max_ratio:g}"


# -- before any statistic -----------------------------------------------------------------------

def backend_error(message: str) -> str:
    return f"metrics backend error: {message}"


NO_MEASUREMENT = "no measurement"


def no_arm_data(arm: str) -> str:
    return f"no {arm} data yet"


def too_few_requests(arm: str, requests: float | None, needed: int) -> str:
    seen = "unknown" if requests is None else f"{requests:.0f}"
    return f"{arm} has {seen} requests, needs {needed}"


# -- per check kind (each head is left open: its sentence closes the parenthesis) ----------------

def error_rate_head(check: ErrorRateCheck, m: Measurement, periods: bool = False) -> str:
    c, b = m.canary.value, m.baseline.value
    head = f"error rate {pct(c)} vs baseline {pct(b)}"
    return f"{head} ({(c - b) * 100:+.2f} pp; tolerance {check.max_increase_pp:g} pp" if periods else head


def error_rate(check: ErrorRateCheck, m: Measurement, verdict: Verdict, p_above: float, p_within: float) -> str:
    head, tolerance = error_rate_head(check, m), check.max_increase_pp
    increase = f"{(m.canary.value - m.baseline.value) * 100:+.2f} pp"
    if verdict is Verdict.FAIL:
        return f"{head} ({increase} > {tolerance:g} pp tolerance; anytime-valid {p_text(p_above)}){sizes(m)}"
    if verdict is Verdict.PASS:
        return f"{head} ({increase}, within {tolerance:g} pp tolerance; anytime-valid {p_text(p_within)}){sizes(m)}"
    return (f"{head} ({increase}; not conclusive yet: {p_text(p_above)} for above, "
            f"{p_text(p_within)} for within {tolerance:g} pp){sizes(m)}")


def quantile_label(check) -> str:
    return f"p{round(check.quantile * 100)}"


def latency_head(check, m: Measurement, ratio: float) -> str:
    c, b = m.canary.value, m.baseline.value
    return (f"{quantile_label(check)} {c * 1000:.1f} ms vs baseline {b * 1000:.1f} ms "
            f"(ratio {ratio:.3g}, max {check.max_ratio:g}")


def no_histogram(head: str) -> str:
    return f"{head}; a histogram has no observations)"


def latency_buckets(check, m: Measurement, head: str, verdict: Verdict, canary_at: tuple, baseline_at: tuple,
                    lowest: float, resolved: bool, lowest_at_resolution: float) -> str:
    label = quantile_label(check)
    where = (f"{label} in {edges(canary_at)} for both" if canary_at == baseline_at
             else f"canary {label} in {edges(canary_at)}, baseline in {edges(baseline_at)}")
    if verdict is Verdict.FAIL:
        return (f"{head}; {where}: even the most favourable bucket edges of the {1 - check.alpha:.0%} "
                f"intervals give {lowest:.3g}){sizes(m)}")
    if verdict is Verdict.PASS:
        why = ("the buckets place it within the maximum" if resolved else
               f"the buckets cannot resolve a ratio of {check.max_ratio:g} here (it may be as low as {lowest_at_resolution:.3g})")
        return f"{head}; {where}: {why}){sizes(m)}"
    return f"{head}; {where}: above the maximum but within noise, lowest plausible ratio {lowest:.3g}){sizes(m)}"


def point_estimate_only(m: Measurement, head: str) -> str:
    return (f"{head}; point estimate only: the provider gave no per-period values to test, "
            f"so this check cannot fail by itself){sizes(m)}")


def too_few_periods(check, head: str, pairs: int) -> str:
    return f"{head}; {pairs} paired periods, needs {check.min_periods})"


def paired_periods(m: Measurement, head: str, bad: str, verdict: Verdict, exceeding: int, pairs: int, p: float) -> str:
    counted = f"{exceeding} of {pairs} paired periods {bad}"
    if verdict is Verdict.FAIL:
        return f"{head}; {counted}, anytime-valid {p_text(p)}){sizes(m)}"
    if verdict is Verdict.PASS:
        return f"{head}; {counted}){sizes(m)}"
    return f"{head}; {counted}: most, but not conclusively yet, {p_text(p)}){sizes(m)}"


def business_head(check: BusinessCheck, m: Measurement, ratio: float) -> str:
    return (f"{check.metric or 'value'} {num(m.canary.value)} vs baseline {num(m.baseline.value)} per request "
            f"(ratio {ratio:.3g}; {threshold(check)}")


def no_spread(check, m: Measurement, head: str) -> str:
    return f"{head}; an amount needs {check.min_periods} periods per arm to measure its spread){sizes(m)}"


def business(m: Measurement, head: str, verdict: Verdict, p: float, dispersion: float | None) -> str:
    how = "" if dispersion is None else f"; spread {dispersion:.3g} per unit"
    if verdict is Verdict.FAIL:
        return f"{head}; anytime-valid {p_text(p)}{how}){sizes(m)}"
    if verdict is Verdict.PASS:
        return f"{head}{how}){sizes(m)}"
    return f"{head}; out of bounds but within noise, {p_text(p)}{how}){sizes(m)}"


def resource_head(check, m: Measurement, ratio: float) -> str:
    return (f"{check.resource} {num(m.canary.value)} vs baseline {num(m.baseline.value)} per instance "
            f"(ratio {ratio:.3g}, max {check.max_ratio:g}")


# -- the traffic split --------------------------------------------------------------------------

def split_allowed(low: float, high: float) -> str:
    return f"canary share within {low:.2%}..{high:.2%} of requests"


SPLIT_TOO_FEW = "not enough request counts to check the split yet"


def split(weight: float, canary: float, baseline: float, low: float, high: float, p: float, rejects: bool,
          unobserved: bool) -> str:
    if unobserved:
        return (f"the canary has no request series at all while it has {weight:g}% of traffic and the baseline "
                f"served {baseline:.0f} requests: likely a wrong version label, or the canary is not scraped")
    total = canary + baseline
    share = canary / total if total else 0.0
    reason = f"canary served {share:.2%} of {total:.0f} requests at weight {weight:g}% (allowed {low:.2%}..{high:.2%}"
    return reason + (f"; anytime-valid {p_text(p)})" if rejects else ")")


def split_failed(reason: str, unobserved: bool, lasted: float) -> str:
    what = "" if unobserved else ": the routing does not do what was set"
    return f"{reason}{what}, for {lasted:.0f}s of consecutive looks"


def split_unconfirmed(reason: str, confirm_seconds: float, lasted: float) -> str:
    return (f"{reason}; holding: it must last {confirm_seconds:g}s of consecutive looks to count "
            f"({lasted:.0f}s so far), since a missed scrape can skew a short window")


# -- policies and the decision ------------------------------------------------------------------

def ignored_by_policy(reason: str) -> str:
    return f"{reason}; ignored by policy"


def failed_by_policy(verdict: Verdict, reason: str, by_on_error: bool) -> str:
    return f"{verdict.value} {'by on_error' if by_on_error else 'at the gate timeout'}: {reason}"


def listed(results) -> str:
    """``check: reason`` for each result, joined with ``; ``."""
    return "; ".join(f"{r.check}: {r.reason}" for r in results)


def low_score(score: float, min_score: float, failed: list[CheckResult]) -> str:
    return f"score {score:.0%} < {min_score:.0%}: " + listed(failed)


def baking(unsettled: list[str]) -> str:
    return "no check fails; baking" if unsettled else "all checks pass; baking"


def advancing(unsettled: list[str]) -> str:
    if unsettled:
        return (f"no check shows harm after the bake time; {', '.join(unsettled)} "
                "must still be settled by evidence at the last gate before promotion")
    return "all checks pass after the bake time"
