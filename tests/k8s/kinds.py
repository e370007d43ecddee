"""The kinds the fake API server serves, and what a real cluster's validation refuses of them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.k8s.answers import bad_request, invalid
from tests.k8s.patches import JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    plural: str
    kind: str
    custom: bool  # a CRD: no strategic merge patch
    status: bool = True  # has a /status subresource

    @property
    def resource(self) -> str:
        return f"{self.plural}.{self.group}"

    @property
    def accepted(self) -> str:
        """The patch types its PATCH handler takes, in the server's order (recorded/README.md)."""
        smp = "" if self.custom else f"{STRATEGIC_MERGE_PATCH}, "
        return f"{JSON_PATCH}, {MERGE_PATCH}, {smp}application/apply-patch+yaml"


VIRTUAL_SERVICE = Kind("networking.istio.io", "v1", "virtualservices", "VirtualService", custom=True, status=False)
HTTP_ROUTE = Kind("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute", custom=True)
ROLLOUT = Kind("argoproj.io", "v1alpha1", "rollouts", "Rollout", custom=True)
INGRESS = Kind("networking.k8s.io", "v1", "ingresses", "Ingress", custom=False)
DEPLOYMENT = Kind("apps", "v1", "deployments", "Deployment", custom=False)
KINDS = {(k.group, k.version, k.plural): k for k in (VIRTUAL_SERVICE, HTTP_ROUTE, ROLLOUT, INGRESS, DEPLOYMENT)}
KINDS_BY_NAME = {k.kind: k for k in KINDS.values()}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate(kind: Kind, obj: dict) -> None:
    """What the CRD schemas, Istio's validating webhook and the built-in validation refuse."""
    annotations = obj.get("metadata", {}).get("annotations") or {}
    if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
        raise bad_request("json: cannot unmarshal number into Go struct field ObjectMeta.metadata.annotations of type string")
    errors: list[tuple[str, Any, str]] = []
    if kind is VIRTUAL_SERVICE:
        for i, route in enumerate(obj.get("spec", {}).get("http") or []):
            destinations = route.get("route") or []
            for j, dest in enumerate(destinations):
                if "weight" in dest and not (_is_int(dest["weight"]) and 0 <= dest["weight"] <= 100):
                    errors.append((f"spec.http[{i}].route[{j}].weight", dest["weight"], "must be an integer in 0..100"))
            if len(destinations) > 1 and not errors and (total := sum(d.get("weight", 0) for d in destinations)) != 100:
                raise bad_request('admission webhook "validation.istio.io" denied the request: configuration is invalid: '
                                  f"total destination weight {total} != 100")
    elif kind is HTTP_ROUTE:
        for i, rule in enumerate(obj.get("spec", {}).get("rules") or []):
            for j, ref in enumerate(rule.get("backendRefs") or []):
                if "weight" in ref and not (_is_int(ref["weight"]) and 0 <= ref["weight"] <= 1000000):
                    errors.append((f"spec.rules[{i}].backendRefs[{j}].weight", ref["weight"], "must be an integer in 0..1000000"))
    elif kind is DEPLOYMENT:
        replicas = obj.get("spec", {}).get("replicas", 1)
        if not (_is_int(replicas) and replicas >= 0):
            errors.append(("spec.replicas", replicas, "must be greater than or equal to 0"))
    if errors:
        raise invalid(kind, obj["metadata"]["name"], errors)
