"""Istio: the weights of two destinations in one HTTP route of a VirtualService.

The route (``spec.http[]``, chosen by its ``name``, or the only one) must already list both
destinations, as in::

    http:
      - name: primary
        route:
          - destination: {host: web.shop.svc.cluster.local, subset: stable}
            weight: 100
          - destination: {host: web.shop.svc.cluster.local, subset: canary}
            weight: 0

``set_canary_weight(p)`` writes stable ``100 - p`` and canary ``p`` (integers, summing to 100)
in one JSON patch guarded by ``test`` ops on the resourceVersion and on both destinations, so
other routes, other fields and concurrent edits are never overwritten: a conflict re-reads and
retries. Other destinations in the route must have weight 0 (the router owns only its two).

- ``get_weights``: the two destinations' weights as written (Istio weights are percentages;
  a lone destination without a weight takes 100); other destinations show as "elsewhere". Weights
  that do not sum to 100, or are all 0, show as they are.
- ``verify``: None. Istio's API does not say what the Envoy sidecars and gateways were sent, so
  this router cannot see its data plane (re-reading the VirtualService would prove nothing).
- ``finalize``: stable 100, canary 0.

RBAC: ``get`` and ``patch`` on ``virtualservices`` in API group ``networking.istio.io``.
"""

from __future__ import annotations

from functools import cached_property
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from canary_operators.clients.kubernetes import (
    DNS_SUBDOMAIN,
    JSON_PATCH,
    KubernetesApi,
    KubernetesSettings,
    resource_version_guard,
    unchanged,
    virtual_service,
)
from canary_operators.exceptions import RouterError
from canary_operators.routers.base import TrafficRouter, Weights


class Destination(BaseModel):
    """Matches a route destination by ``host`` (as written in the VirtualService) and ``subset``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    host: str = Field(min_length=1)
    subset: str | None = None

    def matches(self, destination: dict) -> bool:
        return destination.get("host") == self.host and (self.subset is None or destination.get("subset") == self.subset)

    def __str__(self) -> str:
        return self.host + (f" subset {self.subset}" if self.subset else "")


class IstioSettings(KubernetesSettings):
    virtual_service: str = Field(pattern=DNS_SUBDOMAIN)
    route: str | None = None  # the http route's name; needed when the VirtualService has more than one
    stable_destination: Destination
    canary_destination: Destination

    @model_validator(mode="after")
    def _distinct(self):
        if self.stable_destination == self.canary_destination:
            raise ValueError("stable_destination and canary_destination must differ")
        return self


class IstioRouter(TrafficRouter):
    type_name: ClassVar[str] = "istio"
    settings_model = IstioSettings

    @cached_property
    def api(self) -> KubernetesApi:
        return KubernetesApi(self.conn_id, label="istio", timeout=self.settings.timeout_seconds)

    @property
    def resource(self):
        return virtual_service(self.settings.namespace, self.settings.virtual_service)

    # -- reading ----------------------------------------------------------------------------

    def _route(self, obj: dict) -> tuple[int, dict]:
        routes = (obj.get("spec") or {}).get("http") or []
        name = self.settings.route
        if name is not None:
            for i, route in enumerate(routes):
                if route.get("name") == name:
                    return i, route
            names = ", ".join(repr(r.get("name")) for r in routes) or "none"
            raise RouterError(f"istio: {self.resource} has no http route named {name!r} (its routes: {names})")
        if len(routes) != 1:
            names = ", ".join(repr(r.get("name")) for r in routes) or "none"
            raise RouterError(f"istio: {self.resource} has {len(routes)} http routes ({names}); "
                              "set router.settings.route to the one that splits stable and canary")
        return 0, routes[0]

    def _destinations(self, obj: dict) -> tuple[int, dict, int, int]:
        """(route index, route, stable index, canary index) in ``spec.http[i].route``."""
        i, route = self._route(obj)
        destinations = route.get("route") or []
        found = {}
        for role, wanted in (("stable", self.settings.stable_destination), ("canary", self.settings.canary_destination)):
            hits = [j for j, d in enumerate(destinations) if wanted.matches(d.get("destination") or {})]
            if len(hits) != 1:
                what = "no destination" if not hits else f"{len(hits)} destinations (add a subset to tell them apart)"
                raise RouterError(f"istio: route {route.get('name') or i} of {self.resource} has {what} matching the "
                                  f"{role} destination {wanted}")
            found[role] = hits[0]
        if found["stable"] == found["canary"]:
            raise RouterError(f"istio: the stable and canary destinations match the same entry of route {route.get('name') or i}")
        return i, route, found["stable"], found["canary"]

    @staticmethod
    def _weight(destination: dict, alone: bool) -> int:
        weight = destination.get("weight")
        if weight is None:
            return 100 if alone else 0  # Istio: a lone destination takes everything
        return int(weight)

    def get_weights(self) -> Weights:
        _, route, stable, canary = self._destinations(self.api.get(self.resource))
        destinations = route["route"]
        weights = [self._weight(d, len(destinations) == 1) for d in destinations]
        others = sum(w for j, w in enumerate(weights) if j not in (stable, canary))
        return Weights(stable=weights[stable], canary=weights[canary], other=others)

    def verify(self, percent: int) -> None:
        """None: the Kubernetes API does not show what Envoy was programmed with."""
        return None

    # -- writing ----------------------------------------------------------------------------

    def set_canary_weight(self, percent: int) -> None:
        def build(obj: dict):
            i, route, stable, canary = self._destinations(obj)
            destinations = route["route"]
            others = [d.get("destination", {}).get("host") for j, d in enumerate(destinations)
                      if j not in (stable, canary) and self._weight(d, False) > 0]
            if others:
                raise RouterError(f"istio: route {route.get('name') or i} of {self.resource} also sends traffic to "
                                  f"{', '.join(map(str, others))}; this router sets only its stable and canary destinations")
            if destinations[stable].get("weight") == 100 - percent and destinations[canary].get("weight") == percent:
                return None
            base = f"/spec/http/{i}/route"
            ops = [
                resource_version_guard(obj),
                unchanged(f"{base}/{stable}/destination", destinations[stable]["destination"]),
                unchanged(f"{base}/{canary}/destination", destinations[canary]["destination"]),
                {"op": "add", "path": f"{base}/{stable}/weight", "value": 100 - percent},
                {"op": "add", "path": f"{base}/{canary}/weight", "value": percent},
            ]
            return ops, JSON_PATCH

        self.api.update(self.resource, build, attempts=self.settings.conflict_attempts)
