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

- ``get_weights``: each backendRef's weight over the rule's total, rounded each on its own:
  backendRefs other than the two services show as "elsewhere", and a rule whose weights are all 0
  reads as 0% everywhere.
- ``verify``: what the gateway controllers report in ``status.parents[].conditions``. Every parent
  must have ``Accepted`` ``True`` (and ``ResolvedRefs`` not ``False``) with ``observedGeneration``
  equal to the route's ``metadata.generation``: that controller has taken this very spec. A
  condition ``False`` at this generation (the controller rejected the route, or a backend does not
  resolve) is False. Until every parent has reported on this generation it waits up to
  ``verify_timeout_seconds``, then answers None; a route with no ``status.parents`` at all (no
  controller reports on it) is None at once. This is
  the controller's word that it programmed the route, not a measurement of the data plane.
- ``finalize``: stable 100, canary 0.

RBAC: ``get`` and ``patch`` on ``httproutes`` in API group ``gateway.networking.k8s.io``.
"""

from __future__ import annotations

import logging
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
from canary_operators.clients.retrying import WaitTimedOut, wait_until
from canary_operators.exceptions import RouterError
from canary_operators.routers.base import TrafficRouter, Weights

log = logging.getLogger(__name__)


class GatewayApiSettings(KubernetesSettings):
    http_route: str = Field(pattern=DNS_SUBDOMAIN)
    rule_index: int | None = Field(default=None, ge=0)
    rule_name: str | None = Field(default=None, pattern=DNS_LABEL)
    stable_service: str = Field(pattern=DNS_LABEL)
    canary_service: str = Field(pattern=DNS_LABEL)
    # How long verify waits for the gateway controllers to report on the route's new generation.
    verify_timeout_seconds: float = Field(default=10.0, ge=0, le=600)

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

    def get_weights(self) -> Weights:
        _, refs, stable, canary = self._refs(self.api.get(self.resource))
        weights = [self._weight(r) for r in refs]
        total = sum(weights)
        if total == 0:
            return Weights(stable=0, canary=0)  # nothing takes traffic: shown, never rounded to a split
        others = sum(w for j, w in enumerate(weights) if j not in (stable, canary))
        return Weights(stable=round(weights[stable] * 100 / total), canary=round(weights[canary] * 100 / total),
                       other=round(others * 100 / total))

    def verify(self, percent: int) -> bool | None:
        """True when every gateway controller accepted the route at its current generation, False
        when one rejected it then, None when they have not all reported within the timeout."""
        answers: list[str] = []

        def probe() -> bool | None:
            verdict, why = self._accepted(self.api.get(self.resource))
            answers[:] = [why]
            return verdict

        first = self.api.get(self.resource)
        if not ((first.get("status") or {}).get("parents")):
            # No controller reports on this route at all: nothing to wait for (and an undo must
            # not wait on a report that will never come).
            log.info("gateway_api: cannot verify %s: no gateway controller reports on it (no status.parents)",
                     self.resource)
            return None
        try:
            verdict = wait_until(probe, timeout=self.settings.verify_timeout_seconds, interval=0.5,
                                 what=f"the gateway controllers to report on {self.resource}")
        except WaitTimedOut:
            log.info("gateway_api: cannot verify %s: %s", self.resource, answers[-1])
            return None
        log.info("gateway_api: %s: %s", self.resource, answers[-1])
        return verdict

    def _accepted(self, obj: dict) -> tuple[bool | None, str]:
        generation = (obj.get("metadata") or {}).get("generation")
        parents = (obj.get("status") or {}).get("parents") or []
        if not parents:
            return None, "no gateway controller has reported on it (no status.parents)"
        waiting = []
        for parent in parents:
            who = f"{parent.get('controllerName') or 'a controller'} (parent {(parent.get('parentRef') or {}).get('name')})"
            current = {c.get("type"): c for c in parent.get("conditions") or [] if c.get("observedGeneration") == generation}
            for kind in ("Accepted", "ResolvedRefs"):
                condition = current.get(kind) or {}
                if condition.get("status") == "False":
                    return False, (f"{who} reports {kind} False at generation {generation}: "
                                   f"{condition.get('reason')}: {condition.get('message') or ''}".rstrip(": "))
            if (current.get("Accepted") or {}).get("status") != "True":
                waiting.append(who)
        if waiting:
            return None, f"{', '.join(waiting)} has not accepted generation {generation} yet"
        return True, f"every gateway controller accepted generation {generation}"

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
