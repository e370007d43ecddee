"""Gateway API: the weights of two ``backendRefs`` in one rule of an HTTPRoute.

The rule is chosen by ``rule_name`` (``spec.rules[].name``), by ``rule_index``, or else it is the
only rule whose backendRefs name both services. Both backendRefs must already be there::

    rules:
      - backendRefs:
          - {name: web-stable, port: 8080, weight: 100}
          - {name: web-canary, port: 8080, weight: 0}

``set_canary_weight(p)`` writes stable ``100 - p`` and canary ``p`` in one JSON patch guarded by
``test`` ops on the resourceVersion and on both backendRefs' names, so other rules, other
backendRefs, filters and concurrent edits are never overwritten; a conflict (the gateway
controller updating ``status``, someone editing the route) re-reads and retries. Gateway API
weights are relative (a missing weight is 1), so the canary's share is its weight over the
rule's total, and other backendRefs in the rule must have weight 0.

RBAC: ``get`` and ``patch`` on ``httproutes`` in API group ``gateway.networking.k8s.io``.
"""

from __future__ import annotations

from functools import cached_property
from typing import ClassVar

from pydantic import Field, model_validator

from canary_operators.clients.kubernetes import (
    DNS_LABEL,
    DNS_SUBDOMAIN,
    JSON_PATCH,
    KubernetesApi,
    KubernetesSettings,
    http_route,
    resource_version_guard,
    unchanged,
)
from canary_operators.exceptions import RouterError
from canary_operators.routers.base import TrafficRouter


class GatewayApiSettings(KubernetesSettings):
    http_route: str = Field(pattern=DNS_SUBDOMAIN)
    rule_index: int | None = Field(default=None, ge=0)
    rule_name: str | None = Field(default=None, pattern=DNS_LABEL)
    stable_service: str = Field(pattern=DNS_LABEL)
    canary_service: str = Field(pattern=DNS_LABEL)

    @model_validator(mode="after")
    def _consistent(self):
        if self.rule_index is not None and self.rule_name is not None:
            raise ValueError("set rule_index or rule_name, not both")
        if self.stable_service == self.canary_service:
            raise ValueError("stable_service and canary_service must differ")
        return self


def _is_service(ref: dict, name: str) -> bool:
    return ref.get("name") == name and ref.get("kind", "Service") == "Service" and ref.get("group", "") in ("", "core")


class GatewayApiRouter(TrafficRouter):
    type_name: ClassVar[str] = "gateway_api"
    settings_model = GatewayApiSettings

    @cached_property
    def api(self) -> KubernetesApi:
        return KubernetesApi(self.conn_id, label="gateway_api", timeout=self.settings.timeout_seconds)

    @property
    def resource(self):
        return http_route(self.settings.namespace, self.settings.http_route)

    def _rule(self, obj: dict) -> tuple[int, dict]:
        s = self.settings
        rules = (obj.get("spec") or {}).get("rules") or []
        if s.rule_name is not None:
            for i, rule in enumerate(rules):
                if rule.get("name") == s.rule_name:
                    return i, rule
            raise RouterError(f"gateway_api: {self.resource} has no rule named {s.rule_name!r}")
        if s.rule_index is not None:
            if s.rule_index >= len(rules):
                raise RouterError(f"gateway_api: {self.resource} has {len(rules)} rules; rule_index {s.rule_index} does not exist")
            return s.rule_index, rules[s.rule_index]
        both = [i for i, rule in enumerate(rules)
                if any(_is_service(r, s.stable_service) for r in rule.get("backendRefs") or [])
                and any(_is_service(r, s.canary_service) for r in rule.get("backendRefs") or [])]
        if len(both) != 1:
            raise RouterError(f"gateway_api: {len(both)} rules of {self.resource} send to both {s.stable_service} and "
                              f"{s.canary_service}; set router.settings.rule_name or rule_index")
        return both[0], rules[both[0]]

    def _refs(self, obj: dict) -> tuple[int, list, int, int]:
        """(rule index, backendRefs, stable index, canary index)."""
        i, rule = self._rule(obj)
        refs = rule.get("backendRefs") or []
        found = {}
        for role, name in (("stable", self.settings.stable_service), ("canary", self.settings.canary_service)):
            hits = [j for j, r in enumerate(refs) if _is_service(r, name)]
            if len(hits) != 1:
                what = "no backendRef" if not hits else f"{len(hits)} backendRefs"
                raise RouterError(f"gateway_api: rule {rule.get('name') or i} of {self.resource} has {what} for the "
                                  f"{role} service {name}")
            found[role] = hits[0]
        return i, refs, found["stable"], found["canary"]

    @staticmethod
    def _weight(ref: dict) -> int:
        return int(ref.get("weight", 1))  # the Gateway API default

    def get_canary_weight(self) -> int:
        i, refs, _, canary = self._refs(self.api.get(self.resource))
        total = sum(self._weight(r) for r in refs)
        if total == 0:
            raise RouterError(f"gateway_api: every backendRef of rule {i} in {self.resource} has weight 0")
        return round(self._weight(refs[canary]) * 100 / total)

    def set_canary_weight(self, percent: int) -> None:
        def build(obj: dict):
            i, refs, stable, canary = self._refs(obj)
            others = [r.get("name") for j, r in enumerate(refs) if j not in (stable, canary) and self._weight(r) > 0]
            if others:
                raise RouterError(f"gateway_api: rule {i} of {self.resource} also sends traffic to {', '.join(others)}; "
                                  "this router sets only its stable and canary backendRefs")
            if refs[stable].get("weight") == 100 - percent and refs[canary].get("weight") == percent:
                return None
            base = f"/spec/rules/{i}/backendRefs"
            ops = [
                resource_version_guard(obj),
                unchanged(f"{base}/{stable}/name", refs[stable]["name"]),
                unchanged(f"{base}/{canary}/name", refs[canary]["name"]),
                {"op": "add", "path": f"{base}/{stable}/weight", "value": 100 - percent},
                {"op": "add", "path": f"{base}/{canary}/weight", "value": percent},
            ]
            return ops, JSON_PATCH

        self.api.update(self.resource, build, attempts=self.settings.conflict_attempts)
