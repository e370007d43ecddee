"""The CloudWatch provider's settings: the source and its fields, the namespaces and metrics of
business and resource checks, and the window's period and lag.

Sources and arms (``settings.source``):

- ``alb``: an Application Load Balancer's target groups in ``AWS/ApplicationELB``, dimensions
  ``LoadBalancer`` + ``TargetGroup``. The arms are the target groups (the ALB slot model): canary =
  ``canary_target_group``, baseline = ``stable_target_group``; the versions are not used.
  ``RequestCount`` (Sum) → requests, ``HTTPCode_Target_5XX_Count`` (Sum) → errors,
  ``TargetResponseTime`` (pNN, seconds) → latency.
- ``lambda``: the versions behind a weighted alias in ``AWS/Lambda``. Lambda publishes per-version
  metrics of alias invocations with the dimensions ``FunctionName``, ``Resource`` =
  ``function:alias`` and ``ExecutedVersion``; canary = the run's version, baseline = the stable one.
  ``Invocations`` (Sum) → requests, ``Errors`` (Sum) → errors, ``Duration`` (pNN, ms → s) → latency.
- ``custom``: any namespace; the arm is the value of ``version_dimension``, next to the fixed
  ``dimensions``. ``requests_metric``, ``errors_metric`` (Sum) and ``latency_metric`` (pNN, in
  ``latency_unit``).

Business checks count ``check.metric`` (Sum) in ``business_namespace`` (default: the source's
namespace) with the arm's dimensions; value = events / requests (with ``unit: amount``, the metric
sums amounts, and ``periods`` holds amount / requests per period). Resource checks average
``cpu_metric`` / ``memory_metric`` in ``cpu_namespace`` (default ``AWS/ECS``: ``CPUUtilization``,
``MemoryUtilization``, in percent) with ``ClusterName`` = ``cluster`` and ``ServiceName`` =
``canary_service`` / ``stable_service``.

Settings and versions are only ever passed as API parameters, never into an expression; they are
still validated against CloudWatch's rules (``clients.aws_names``; dimension values: 1..1024
printable ASCII characters) so a typo fails naming its field instead of silently matching no metric. ARNs given where
CloudWatch wants an ARN suffix (``app/…``, ``targetgroup/…``) or a function name are shortened.

Each source-specific field is required when its source needs it, and refused with another source.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from canary_operators.clients.aws_names import (
    alias_name,
    dimension_name,
    dimension_value,
    dimensions,
    function_name,
    load_balancer_suffix,
    metric_name,
    namespace,
    target_group_suffix,
)

# The source each source-specific field belongs to, the ones it needs, and each field's own rule.
_FIELD_SOURCE = {
    "load_balancer": "alb", "stable_target_group": "alb", "canary_target_group": "alb",
    "function_name": "lambda", "alias": "lambda",
    "namespace": "custom", "requests_metric": "custom", "errors_metric": "custom", "latency_metric": "custom",
    "latency_unit": "custom", "version_dimension": "custom", "dimensions": "custom",
}
_REQUIRED = {"load_balancer", "stable_target_group", "canary_target_group", "function_name", "alias",
             "namespace", "requests_metric", "version_dimension"}
_FIELD_RULE = {
    "load_balancer": load_balancer_suffix, "stable_target_group": target_group_suffix,
    "canary_target_group": target_group_suffix, "function_name": function_name, "alias": alias_name, "namespace": namespace,
    "requests_metric": metric_name, "errors_metric": metric_name, "latency_metric": metric_name,
    "version_dimension": dimension_name, "dimensions": dimensions,
    "business_namespace": namespace, "cpu_namespace": namespace, "cpu_metric": metric_name,
    "memory_metric": metric_name, "cluster": dimension_value, "stable_service": dimension_value,
    "canary_service": dimension_value,
}


_SOURCE_NAMESPACE = {"alb": "AWS/ApplicationELB", "lambda": "AWS/Lambda"}
# requests, errors, latency metric and the latency metric's unit, per built-in source
_SOURCE_METRICS = {
    "alb": ("RequestCount", "HTTPCode_Target_5XX_Count", "TargetResponseTime", "s"),
    "lambda": ("Invocations", "Errors", "Duration", "ms"),
}


class CloudWatchSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: Literal["alb", "lambda", "custom"]
    # alb: the ARN suffixes CloudWatch uses as dimension values
    load_balancer: str | None = Field(default=None, validate_default=True)  # app/my-alb/50dc6c495c0c9188
    stable_target_group: str | None = Field(default=None, validate_default=True)  # targetgroup/web-stable/…
    canary_target_group: str | None = Field(default=None, validate_default=True)
    # lambda: the function and the weighted alias that splits traffic between two versions
    function_name: str | None = Field(default=None, validate_default=True)
    alias: str | None = Field(default=None, validate_default=True)
    # custom
    namespace: str | None = Field(default=None, validate_default=True)
    requests_metric: str | None = Field(default=None, validate_default=True)
    errors_metric: str | None = Field(default=None, validate_default=True)
    latency_metric: str | None = Field(default=None, validate_default=True)
    latency_unit: Literal["s", "ms"] | None = Field(default=None, validate_default=True)  # default s
    version_dimension: str | None = Field(default=None, validate_default=True)
    dimensions: dict[str, str] = Field(default_factory=dict, validate_default=True)
    # business checks: where check.metric lives (default: the source's namespace)
    business_namespace: str | None = None
    # resource checks: an ECS service per arm
    cpu_namespace: str = "AWS/ECS"
    cpu_metric: str = "CPUUtilization"
    memory_metric: str = "MemoryUtilization"
    cluster: str | None = None
    stable_service: str | None = None
    canary_service: str | None = None
    # the window: whole periods, lag_seconds back from the gate's end
    period: int = Field(default=60, ge=60, le=86400)
    lag_seconds: float = Field(default=120.0, ge=0, le=3600)
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)

    @field_validator(*_FIELD_SOURCE)
    @classmethod
    def _per_source(cls, value, info: ValidationInfo):
        field, source = info.field_name, info.data.get("source")
        owner = _FIELD_SOURCE[field]
        if value is None or value == {}:
            if source == owner and field in _REQUIRED:
                raise ValueError(f"required when source is {owner}")
            return value
        if source is not None and source != owner:
            raise ValueError(f"only used when source is {owner}, not {source}")
        rule = _FIELD_RULE.get(field)
        return rule(value) if rule else value

    @field_validator("dimensions")
    @classmethod
    def _version_is_not_fixed(cls, value: dict, info: ValidationInfo) -> dict:
        if info.data.get("version_dimension") in value:
            raise ValueError(f"{info.data['version_dimension']} is the version_dimension; it cannot also be fixed")
        return value

    @field_validator("business_namespace", "cpu_namespace", "cpu_metric", "memory_metric",
                     "cluster", "stable_service", "canary_service")
    @classmethod
    def _names(cls, value, info: ValidationInfo):
        return value if value is None else _FIELD_RULE[info.field_name](value)

    @field_validator("period")
    @classmethod
    def _standard_resolution(cls, value: int) -> int:
        if value % 60:
            raise ValueError("must be a multiple of 60 seconds (CloudWatch's standard resolution)")
        return value

    def source_namespace(self) -> str:
        """Where the source's requests, errors and latency live."""
        return self.namespace if self.source == "custom" else _SOURCE_NAMESPACE[self.source]

    def source_metrics(self) -> tuple[str, str | None, str | None, str]:
        """The requests, errors and latency metrics, and the latency's unit."""
        if self.source == "custom":
            return self.requests_metric, self.errors_metric, self.latency_metric, self.latency_unit or "s"
        return _SOURCE_METRICS[self.source]
