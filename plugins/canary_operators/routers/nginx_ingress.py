"""ingress-nginx: the canary Ingress's ``canary-weight`` annotation.

ingress-nginx splits traffic between a main Ingress and a second Ingress for the same host and
path that carries ``nginx.ingress.kubernetes.io/canary: "true"``; that one gets
``nginx.ingress.kubernetes.io/canary-weight`` percent of the requests (out of
``canary-weight-total``, 100 unless set). The main Ingress is not touched.

``set_canary_weight(p)`` merge-patches exactly those two annotations (strings, as Kubernetes
requires), so every other annotation and field stays as it is, whoever wrote it. ``0`` writes
``"0"``: the canary Ingress stays in place, and gets no traffic.

Header and cookie rules (``canary-by-header``, ``canary-by-cookie``) take precedence over the
weight in ingress-nginx; requests they match are not part of the split.

- ``get_weights``: canary ``canary-weight`` over ``canary-weight-total``, stable the rest of that
  total, each as a percentage; a weight above its total shows as such (stable below 0).
- ``verify``: None. ingress-nginx does not publish what its NGINX configuration holds through the
  Kubernetes API, so this router cannot see its data plane.
- ``finalize``: ``canary-weight: "0"``: the canary Ingress stays, with no traffic.

RBAC: ``get`` and ``patch`` on ``ingresses`` in API group ``networking.k8s.io``.
"""

from __future__ import annotations

from functools import cached_property
from typing import ClassVar

from pydantic import Field

from canary_operators.clients.kubernetes import DNS_SUBDOMAIN, MERGE_PATCH, KubernetesApi, KubernetesSettings, ingress
from canary_operators.exceptions import RouterError
from canary_operators.routers.base import TrafficRouter, Weights

PREFIX = "nginx.ingress.kubernetes.io/"
CANARY = PREFIX + "canary"
WEIGHT = PREFIX + "canary-weight"
WEIGHT_TOTAL = PREFIX + "canary-weight-total"


class NginxIngressSettings(KubernetesSettings):
    canary_ingress: str = Field(pattern=DNS_SUBDOMAIN)


class NginxIngressRouter(TrafficRouter):
    type_name: ClassVar[str] = "nginx_ingress"
    settings_model = NginxIngressSettings

    @cached_property
    def api(self) -> KubernetesApi:
        return KubernetesApi(self.conn_id, label="nginx_ingress", timeout=self.settings.timeout_seconds)

    @property
    def resource(self):
        return ingress(self.settings.namespace, self.settings.canary_ingress)

    def _total(self, annotations: dict) -> int:
        raw = annotations.get(WEIGHT_TOTAL, "100")
        if not str(raw).isdigit() or int(raw) == 0:
            raise RouterError(f"nginx_ingress: {self.resource} has {WEIGHT_TOTAL}={raw!r}; it must be a positive integer")
        return int(raw)

    def get_weights(self) -> Weights:
        annotations = (self.api.get(self.resource).get("metadata") or {}).get("annotations") or {}
        if annotations.get(CANARY) != "true":
            raise RouterError(f'nginx_ingress: {self.resource} is not a canary Ingress: annotation {CANARY} is '
                              f'{annotations.get(CANARY)!r}, not "true"; ingress-nginx would not split traffic to it')
        raw = annotations.get(WEIGHT, "0")
        if not str(raw).isdigit():
            raise RouterError(f"nginx_ingress: {self.resource} has {WEIGHT}={raw!r}; it must be an integer")
        total, weight = self._total(annotations), int(raw)
        return Weights(stable=round((total - weight) * 100 / total), canary=round(weight * 100 / total))

    def verify(self, percent: int) -> None:
        """None: the Kubernetes API does not show what ingress-nginx loaded into NGINX."""
        return None

    def set_canary_weight(self, percent: int) -> None:
        def build(obj: dict):
            annotations = (obj.get("metadata") or {}).get("annotations") or {}
            total = self._total(annotations)
            wanted = {CANARY: "true", WEIGHT: str(round(percent * total / 100))}
            if all(annotations.get(k) == v for k, v in wanted.items()):
                return None
            return {"metadata": {"annotations": wanted}}, MERGE_PATCH

        self.api.update(self.resource, build, attempts=self.settings.conflict_attempts)
