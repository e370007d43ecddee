"""Traffic routers, one backend per file, behind an explicit registry keyed by type name."""

from __future__ import annotations

from canary_operators.exceptions import SpecError
from canary_operators.routers.alb import ALBRouter
from canary_operators.routers.argo_rollouts import ArgoRolloutsRouter
from canary_operators.routers.base import TrafficRouter
from canary_operators.routers.gateway_api import GatewayApiRouter
from canary_operators.routers.haproxy import HAProxyRouter
from canary_operators.routers.istio import IstioRouter
from canary_operators.routers.lambda_alias import LambdaAliasRouter
from canary_operators.routers.nginx_ingress import NginxIngressRouter

ROUTERS: dict[str, type[TrafficRouter]] = {
    cls.type_name: cls
    for cls in (HAProxyRouter, ALBRouter, LambdaAliasRouter, IstioRouter, GatewayApiRouter, NginxIngressRouter, ArgoRolloutsRouter)
}


def router_class(type_name: str) -> type[TrafficRouter]:
    """The router class for ``type_name``; an unknown name is an error listing the valid ones."""
    try:
        return ROUTERS[type_name]
    except KeyError:
        raise SpecError(f"unknown router type {type_name!r}; valid: {', '.join(sorted(ROUTERS))}") from None
