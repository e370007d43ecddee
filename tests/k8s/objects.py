"""Objects as a cluster would hold them before a release, and the RBAC rules of the documented Role."""

from __future__ import annotations

import yaml


def virtual_service(name="web", namespace="shop", canary_weight=0) -> dict:
    return {
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": name, "namespace": namespace, "annotations": {"owner": "web-team"}},
        "spec": {
            "hosts": ["web.example.com"], "gateways": ["shop/public"],
            "http": [
                {"name": "admin", "match": [{"uri": {"prefix": "/admin"}}],
                 "route": [{"destination": {"host": "web-admin.shop.svc.cluster.local"}}]},
                {"name": "primary", "retries": {"attempts": 3},
                 "route": [
                     {"destination": {"host": "web.shop.svc.cluster.local", "subset": "stable", "port": {"number": 80}}, "weight": 100 - canary_weight},
                     {"destination": {"host": "web.shop.svc.cluster.local", "subset": "canary", "port": {"number": 80}}, "weight": canary_weight},
                 ]},
            ],
        },
    }


def http_route(name="web", namespace="shop", canary_weight=0) -> dict:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "web"}},
        "spec": {
            "parentRefs": [{"name": "public", "namespace": "infra"}],
            "hostnames": ["web.example.com"],
            "rules": [
                {"name": "static", "matches": [{"path": {"type": "PathPrefix", "value": "/static"}}],
                 "backendRefs": [{"name": "cdn-proxy", "port": 80}]},
                {"name": "app", "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                 "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"add": [{"name": "x-route", "value": "app"}]}}],
                 "backendRefs": [{"name": "web-stable", "port": 8080, "weight": 100 - canary_weight},
                                 {"name": "web-canary", "port": 8080, "weight": canary_weight}]},
            ],
        },
        "status": {"parents": [{"parentRef": {"name": "public"}, "controllerName": "example.com/gateway",
                                "conditions": [{"type": "Accepted", "status": "True"}]}]},
    }


def ingress(name="web-canary", namespace="shop", canary_weight: int | None = 0, extra_annotations: dict | None = None) -> dict:
    annotations = {"kubernetes.io/ingress.class": "nginx", "nginx.ingress.kubernetes.io/canary": "true", **(extra_annotations or {})}
    if canary_weight is not None:
        annotations["nginx.ingress.kubernetes.io/canary-weight"] = str(canary_weight)
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {"ingressClassName": "nginx", "rules": [{"host": "web.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web-canary", "port": {"number": 80}}}}]}}]},
    }


def rollout(name="web", namespace="shop", steps=(10, 50), pod_hash="abc123", final_weight: int | None = None) -> dict:
    """An Argo Rollout at rest on revision ``pod_hash``, with ``setWeight: w`` + ``pause: {}`` per step."""
    canary_steps: list[dict] = []
    for w in steps:
        canary_steps += [{"setWeight": w}, {"pause": {}}]
    if final_weight is not None:
        canary_steps.append({"setWeight": final_weight})
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 4, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "web", "image": "registry.example/web:v1"}]}},
            "strategy": {"canary": {"canaryService": f"{name}-canary", "stableService": f"{name}-stable",
                                    "trafficRouting": {"istio": {"virtualService": {"name": name}}},
                                    "steps": canary_steps}},
        },
        "status": {"currentPodHash": pod_hash, "stableRS": pod_hash, "currentStepIndex": len(canary_steps),
                   "phase": "Healthy", "canary": {"weights": {"canary": {"weight": 0}, "stable": {"weight": 100}}}},
    }


def deployment(name="web-canary", namespace="shop", image="registry.example/web:v1", replicas=2) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [
                {"name": "web", "image": image, "ports": [{"containerPort": 8080}]},
                {"name": "log-shipper", "image": "registry.example/shipper:3"}]}},
        },
        "status": {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
                   "readyReplicas": replicas, "availableReplicas": replicas},
    }


def role_rules_from_docs(markdown: str) -> list[dict]:
    """The rules of the first ``kind: Role`` YAML block in a Markdown document."""
    for block in markdown.split("```yaml")[1:]:
        text = block.split("```")[0]
        for doc in yaml.safe_load_all(text):
            if isinstance(doc, dict) and doc.get("kind") == "Role":
                return doc["rules"]
    raise ValueError("no Role in the document")
