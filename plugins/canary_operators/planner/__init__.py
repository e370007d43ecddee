"""The evidence planner: how long each gate needs at the live traffic, before the rollout starts.

``plan_gates(release, steps, bake_time, traffic)`` → ``Plan``. Pure Python, no Airflow import.

At low traffic the last gate before promotion (the one that needs positive evidence) cannot get
it within the spec's ``gate_timeout``, and ``on_inconclusive: rollback`` then rolls back healthy
canaries. The planner works out, per gate:

- when the cumulative window reaches every check's ``min_requests`` (until then the judge holds);
- when the judge itself (``judge.evaluate_check``) would let a healthy canary (the baseline's
  rates) advance, fed the counts expected over the cumulative rollout window, on the unlucky side
  (``PESSIMISM_Z`` standard deviations of the canary's events on the bad side, the baseline's on
  the other: more canary errors; fewer checkouts under ``min_ratio``, more under ``max_ratio``,
  each side planned when both are set); bisected over time. The last gate before promotion needs
  a pass (positive evidence); an earlier gate advances once no check shows harm, which at low
  weight needs enough requests for the canary's point estimate to sit within the tolerance;
- the gate timeout: the spec's, or with ``plan: adapt``
  ``min(plan_max_gate_timeout, max(gate_timeout, needed × MARGIN))``.

Planned from the traffic: ``error_rate`` and ``business`` checks without a custom query. A business
check needs the baseline's rate (events per request, ``Traffic.business_rates``) and, for
``unit: amount``, its dispersion (``Traffic.dispersions``: Var/mean of the amount per request, as
``judge.amount_dispersion`` measures it). An amount is planned in units of its dispersion, where
amount / dispersion is a Poisson count, and scaled back; the judge, which measures the dispersion
from per-period values, is fed periods that spread by that dispersion (one per ``period_seconds`` of
the metrics settings, 60 s if unset), so it also needs ``min_periods`` of them and widens its bound
on few periods as it will at the gate. A business check preflight could not measure, and the other
checks (latency buckets, per-period values) settle with their data and are planned for their
``min_requests`` alone. Unknown traffic leaves every timeout as the spec says.

``plan`` holds the values (``Traffic``, ``Plan``), ``healthy_canary`` the unlucky healthy canary's
expected counts, ``gates`` ``plan_gates`` itself, and ``form`` the static plan in the trigger form.
"""

from canary_operators.planner.form import FORM_ERROR_RATE, FORM_RATES, form_text
from canary_operators.planner.gates import DEFAULT_PERIOD_SECONDS, HORIZON, MARGIN, MAX_PERIODS, plan_gates
from canary_operators.planner.healthy_canary import PESSIMISM_Z
from canary_operators.planner.plan import GatePlan, Plan, Traffic, planned_gate_timeout

__all__ = [
    "DEFAULT_PERIOD_SECONDS", "FORM_ERROR_RATE", "FORM_RATES", "HORIZON", "MARGIN", "MAX_PERIODS", "PESSIMISM_Z",
    "GatePlan", "Plan", "Traffic", "form_text", "plan_gates", "planned_gate_timeout",
]
