"""The Prometheus provider's settings: metric and label names, how the arms are told apart, presets.

Arms are told apart by a version label (``version_label``, default ``version``), or, with
``arm_matchers``, by one fixed label matcher per arm (for routers whose metrics label the backend
that served a request rather than its version). Label values from specs and conf are escaped
before they go into a query; label names and matchers are validated.

``preset`` fills in the defaults for a mesh's or ingress controller's own metrics (explicit
settings win; preset ``labels`` are merged under the spec's):

- ``istio``: ``istio_requests_total{reporter="destination"}`` by ``destination_version``, errors
  by ``response_code``, latency from ``istio_request_duration_milliseconds`` (in ms, so
  ``latency_unit: ms``: values and bucket bounds are divided by 1000).
- ``nginx_ingress``: ingress-nginx's ``nginx_ingress_controller_requests`` by ``status``, latency
  from ``nginx_ingress_controller_request_duration_seconds``. ingress-nginx labels a request that
  its canary Ingress served with ``canary="<backend>"`` and every other one with an empty
  ``canary``, both under the main Ingress's ``ingress`` label, so the arms are
  ``canary!=""`` and ``canary=""``; add ``labels: {ingress: <main ingress>, namespace: <ns>}``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from canary_operators.spec import METRIC_NAME_PATTERN

_LABEL = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
# One PromQL label matcher: name, operator, a double-quoted value with escapes.
_MATCHER = r'^[a-zA-Z_][a-zA-Z0-9_]*(=|!=|=~|!~)"(?:[^"\\\n]|\\.)*"$'

PRESETS: dict[str, dict[str, Any]] = {
    "istio": {
        "requests_metric": "istio_requests_total", "status_label": "response_code", "version_label": "destination_version",
        "latency_histogram": "istio_request_duration_milliseconds", "latency_unit": "ms", "labels": {"reporter": "destination"},
    },
    "nginx_ingress": {
        "requests_metric": "nginx_ingress_controller_requests", "status_label": "status",
        "latency_histogram": "nginx_ingress_controller_request_duration_seconds", "latency_unit": "s",
        "arm_matchers": {"canary": 'canary!=""', "baseline": 'canary=""'},
    },
}


class ArmMatchers(BaseModel):
    """One PromQL label matcher per arm, used instead of ``version_label="<version>"``."""

    model_config = ConfigDict(extra="forbid")
    canary: str = Field(pattern=_MATCHER)  # e.g. canary!=""
    baseline: str = Field(pattern=_MATCHER)  # e.g. canary=""


class PrometheusSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version_label: str = Field(default="version", pattern=_LABEL)
    labels: dict[str, str] = Field(default_factory=dict)  # extra exact matchers, e.g. {job: web}
    requests_metric: str = Field(default="http_requests_total", pattern=METRIC_NAME_PATTERN)
    status_label: str = Field(default="code", pattern=_LABEL)
    error_status_regex: str = "5.."
    latency_histogram: str = Field(default="http_request_duration_seconds", pattern=METRIC_NAME_PATTERN)
    cpu_metric: str = Field(default="process_cpu_seconds_total", pattern=METRIC_NAME_PATTERN)
    memory_metric: str = Field(default="process_resident_memory_bytes", pattern=METRIC_NAME_PATTERN)
    timeout_seconds: float = Field(default=5.0, gt=0)
    preset: Literal["istio", "nginx_ingress"] | None = None
    latency_unit: Literal["s", "ms"] = "s"  # the unit of latency_histogram; values are returned in seconds
    arm_matchers: ArmMatchers | None = None
    # Length of the per-period values of resource, custom-query and business amount checks; give
    # it at least two scrape intervals, or rate() over one period has too few samples.
    period_seconds: int = Field(default=30, ge=5)
    # How long to keep retrying while Prometheus answers HTTP 429.
    rate_limit_budget_seconds: float = Field(default=5.0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") in PRESETS:
            data = dict(data)
            for key, value in PRESETS[data["preset"]].items():
                if key == "labels":
                    data["labels"] = {**value, **(data.get("labels") or {})}
                else:
                    data.setdefault(key, value)
        return data

    @field_validator("labels")
    @classmethod
    def _label_names(cls, labels: dict[str, str]) -> dict[str, str]:
        for name in labels:
            if not re.fullmatch(_LABEL, name):
                raise ValueError(f"label name {name!r} must match {_LABEL}")
        return labels
