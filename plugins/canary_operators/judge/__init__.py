"""The gate's decision: pure Python, no Airflow import, so it can be tested, benchmarked and replayed.

``judge(checks, measurements, gate)`` → ``Decision``. A pipeline of small stages (after Kayenta):

1. edge cases first, by name: a provider failure, no data, or too few requests (``decide``,
   ``classifiers.classify``);
2. classify each check by its kind, ``classify(check, measurement) -> CheckResult``
   (``classifiers``), always with a statistic that holds under continuous looks:
   - counts per request (errors, business counts): anytime-valid e-values;
   - quantiles from histograms: anytime-valid intervals in bucket edges, so a difference the
     buckets cannot resolve never fails;
   - one number per period (a percentile from Datadog or CloudWatch, a resource, a custom query,
     an amount such as revenue): a sequential sign test on paired periods; a point estimate
     alone can hold a gate but never fail it;
   - the traffic split (``traffic_split``): an e-value on the canary's share, which must keep
     failing for ``confirm_seconds`` of consecutive looks (a missed scrape skews one short window);
3. the check's policy when a condition lasts until the gate must decide (the timeout) (``decide``);
4. the decision (``decide.judge``): a failing critical check rolls back at once, even during the
   bake time; the gate advances only when every check passes after the minimum bake; otherwise
   it holds.

"No data" is never a pass. Every result is a frozen value (``verdicts``) that carries its reason;
every sentence is written in ``reasons``.
"""

from canary_operators.judge.classifiers import amount_dispersion, classify
from canary_operators.judge.decide import apply_policy, evaluate_check, judge
from canary_operators.judge.traffic_split import sample_ratio
from canary_operators.judge.verdicts import (
    HOLDING,
    CheckResult,
    Decision,
    Gate,
    Observed,
    Outcome,
    ProviderFailure,
    Verdict,
)

__all__ = [
    "HOLDING", "CheckResult", "Decision", "Gate", "Observed", "Outcome", "ProviderFailure", "Verdict",
    "amount_dispersion", "apply_policy", "classify", "evaluate_check", "judge", "sample_ratio",
]
