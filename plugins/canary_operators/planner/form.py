"""The static plan in the trigger form: the last gate's timeout at a few traffic levels, from the spec alone."""

from __future__ import annotations

from canary_operators import stats
from canary_operators.planner.gates import minutes, plan_gates
from canary_operators.planner.plan import Traffic

# Total requests per second, at this baseline error rate.
FORM_RATES = (1.0, 10.0, 100.0)
FORM_ERROR_RATE = 0.01
# The judge's rate bounds to this relative precision, not to the last bit: the form shows times to
# two or three figures, and the bounds' bisection was most of a cold parse (~18 ms a plan; under 5 ms with this).
FORM_BOUND_TOLERANCE = 1e-4


def form_text(release) -> str:
    """A short static plan for the trigger form: the last gate's timeout at a few traffic levels."""
    parts = []
    for rps in FORM_RATES:
        with stats.bound_tolerance(FORM_BOUND_TOLERANCE):
            plan = plan_gates(release, None, None, Traffic(rps, FORM_ERROR_RATE), resolution=0.05,
                              judge_early_gates=False, horizon=4 * max(release.gate_timeout, release.plan_max_gate_timeout))
        last = plan.gates[-1]
        note = " (not enough)" if any(w.startswith(f"at {last.weight}%") for w in plan.warnings) else ""
        needs = minutes(last.needed_seconds) if last.needed_seconds is not None else "more than 4 times the cap"
        parts.append(f"{rps:g} req/s: needs {needs}, timeout {minutes(last.gate_timeout)}{note}")
    return (f"Evidence planner ({release.plan}), last gate at {plan.gates[-1].weight}% with {FORM_ERROR_RATE:.0%} "
            f"baseline errors: " + "; ".join(parts) + ".")
