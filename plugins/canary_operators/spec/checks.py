"""The checks a gate judges (one model per ``kind``), and the traffic-split check every gate runs."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from canary_operators.spec.fields import Duration, _Strict

Policy = Literal["rollback", "hold", "ignore"]


class _Check(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    min_requests: int = Field(default=100, ge=0)
    # Replaces the built-in query. ``$selector`` and ``$window`` are filled per arm.
    query: str | None = None
    # False-rollback rate of this check's anytime-valid test, however often the gate looks.
    alpha: float = Field(default=0.01, gt=0, lt=0.5)
    # A critical check that fails rolls back at once; non-critical ones count towards min_score.
    critical: bool = True
    # Checks whose provider gives one number per period (a percentile, a resource, a custom query,
    # an amount) are judged by a sequential test on paired periods; it needs this many first.
    min_periods: int = Field(default=3, ge=1)
    # What to do when a condition lasts until the gate decides (the gate timeout, a metrics
    # backend down for max_provider_outage, or a query the backend rejects): rollback (fail the
    # gate), hold (wait up to twice the gate timeout), or ignore (leave this check out).
    on_no_data: Policy = "rollback"
    on_error: Policy = "rollback"
    on_inconclusive: Policy = "rollback"


class ErrorRateCheck(_Check):
    kind: Literal["error_rate"]
    max_increase_pp: float = Field(default=0.5, ge=0, le=100)
    # A pass needs evidence that the canary is within the tolerance; the chance of passing a
    # canary that is in fact beyond it is at most pass_alpha.
    pass_alpha: float = Field(default=0.05, gt=0, lt=0.5)


class LatencyCheck(_Check):
    kind: Literal["latency"]
    quantile: Literal[0.5, 0.95, 0.99] = 0.99
    max_ratio: float = Field(default=1.10, gt=0)


class BusinessCheck(_Check):
    """A counter per version, compared per request (e.g. checkouts per request)."""

    kind: Literal["business"]
    # Prometheus names, or Datadog's dotted ones (checkout.completed)
    metric: str | None = Field(default=None, pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:.]*$")
    min_ratio: float | None = Field(default=None, gt=0)
    max_ratio: float | None = Field(default=None, gt=0)
    # count: the metric counts events (checkouts), so per request it is a Poisson rate.
    # amount: it sums amounts (revenue in any unit); judged on paired per-period ratios, so the
    # unit (dollars or cents) cannot change the verdict.
    unit: Literal["count", "amount"] = "count"


class ResourceCheck(_Check):
    kind: Literal["resource"]
    resource: Literal["cpu", "memory"]
    max_ratio: float = Field(default=1.5, gt=0)


Check = Annotated[
    Union[ErrorRateCheck, LatencyCheck, BusinessCheck, ResourceCheck], Field(discriminator="kind")
]


class SampleRatioSpec(_Strict):
    """The canary's share of requests must match the weight that was set (± tolerance, relative)."""

    enabled: bool = True
    tolerance: float = Field(default=0.2, gt=0, lt=1)  # 0.2: at 5% weight, 4%..6% is fine
    alpha: float = Field(default=0.001, gt=0, lt=0.5)
    min_requests: int = Field(default=200, ge=0)
    # A failing split must last this long over consecutive looks: one missed scrape at the
    # window's start skews a short window's counts, and a gap in scraping says nothing of routing.
    confirm_seconds: Duration = Field(default=30.0, ge=0)
    # Baseline requests in the step with the canary showing none at all, before the canary is
    # taken for unobserved (wrong version label, not scraped): roll back.
    unobserved_after: int = Field(default=300, ge=1)


def default_checks() -> list:
    return [ErrorRateCheck(name="error_rate", kind="error_rate"), LatencyCheck(name="p99", kind="latency")]
