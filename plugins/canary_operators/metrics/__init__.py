"""Metrics providers, one backend per file, behind an explicit registry keyed by type name."""

from __future__ import annotations

from canary_operators.exceptions import SpecError
from canary_operators.metrics.base import MetricsProvider, Scope
from canary_operators.metrics.cloudwatch import CloudWatchProvider
from canary_operators.metrics.datadog import DatadogProvider
from canary_operators.metrics.prometheus import PrometheusProvider

PROVIDERS: dict[str, type[MetricsProvider]] = {cls.type_name: cls for cls in (PrometheusProvider, DatadogProvider, CloudWatchProvider)}


def provider_class(type_name: str) -> type[MetricsProvider]:
    """The provider class for ``type_name``; an unknown name is an error listing the valid ones."""
    try:
        return PROVIDERS[type_name]
    except KeyError:
        raise SpecError(f"unknown metrics provider type {type_name!r}; valid: {', '.join(sorted(PROVIDERS))}") from None


__all__ = ["MetricsProvider", "PROVIDERS", "Scope", "provider_class"]
