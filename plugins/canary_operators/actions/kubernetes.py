"""Kubernetes actions on Deployments: deploy a version (a container's image), or scale.

They fit the primary/canary model (as in Flagger): two Deployments, e.g. ``web-stable`` and
``web-canary``, behind the router's two destinations (Istio subsets, Gateway API backendRefs,
the main and the canary Ingress)::

    deploy:        {type: k8s_deploy, namespace: shop, deployment: web-canary, container: web,
                    image: "registry.example/web:{version}", replicas: 2}
    promote:       {type: k8s_deploy, namespace: shop, deployment: web-stable, container: web,
                    image: "registry.example/web:{version}"}
    after_promote: {type: k8s_scale, namespace: shop, deployment: web-canary, replicas: 0}
    rollback:      {type: k8s_scale, namespace: shop, deployment: web-canary, replicas: 0}

The Promote and Rollback operators move the traffic first, so the canary is scaled down only
once no traffic goes to it.

``k8s_deploy`` sends one strategic merge patch that names the container (so other containers
and every other field stay as they are) and, when asked, ``spec.replicas``. ``k8s_scale`` sends a
merge patch of ``spec.replicas``. Both are idempotent: a Deployment already in that state is
not written. Both then wait, unless ``wait: false``, until the Deployment controller reports the
new generation rolled out: ``status.observedGeneration >= metadata.generation``,
``updatedReplicas``, ``readyReplicas`` and ``replicas`` all equal to ``spec.replicas``. A
``ProgressDeadlineExceeded`` condition fails at once; otherwise the ``timeout`` does, with what
the Deployment is still missing.

RBAC: ``get`` and ``patch`` on ``deployments`` in API group ``apps``.
"""

from __future__ import annotations

import time

from canary_operators.clients.kubernetes import MERGE_PATCH, STRATEGIC_MERGE_PATCH, KubernetesApi, deployment
from canary_operators.clients.retrying import WaitTimedOut, wait_until
from canary_operators.exceptions import HookError, HookRefused
from canary_operators.spec import K8sDeployHook, K8sScaleHook

# Seconds between reads while waiting; never more than a tenth of the action's timeout. Tests shorten it.
POLL_SECONDS = 2.0


def _api(conn_id: str, label: str) -> KubernetesApi:
    return KubernetesApi(conn_id, label=label, error=HookError, refused=HookRefused)


def _fill(template: str, fields: dict, label: str) -> str:
    try:
        return template.format(**fields)
    except (KeyError, IndexError, ValueError) as e:
        raise HookRefused(f"{label}: cannot fill in image {template!r}: {e}") from None


def run_k8s_deploy(action: K8sDeployHook, fields: dict, endpoint_for=None) -> str:
    """Point ``action.container`` of ``action.deployment`` at ``action.image`` and wait until ready."""
    label = f"{fields['phase']} k8s_deploy"
    image = _fill(action.image, fields, label)
    api = _api(action.conn_id, label)
    res = deployment(action.namespace, action.deployment)
    changed: list[str] = []

    def build(obj: dict):
        spec = obj.get("spec") or {}
        containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
        names = [c.get("name") for c in containers]
        if action.container not in names:
            raise HookRefused(f"{label}: {res} has no container {action.container!r}; its containers: {', '.join(map(str, names))}")
        current = containers[names.index(action.container)].get("image")
        patch: dict = {}
        changed.clear()
        if current != image:
            patch["template"] = {"spec": {"containers": [{"name": action.container, "image": image}]}}
            changed.append(f"image {current} → {image}")
        if action.replicas is not None and spec.get("replicas", 1) != action.replicas:
            patch["replicas"] = action.replicas
            changed.append(f"replicas {spec.get('replicas', 1)} → {action.replicas}")
        return ({"spec": patch}, STRATEGIC_MERGE_PATCH) if patch else None

    api.update(res, build)
    done = f"{res} container {action.container}: " + ("; ".join(changed) if changed else f"already runs {image}")
    if action.wait:
        done += _wait_until_ready(api, res, action.timeout, label)
    return done


def run_k8s_scale(action: K8sScaleHook, fields: dict, endpoint_for=None) -> str:
    """Set ``action.deployment``'s replicas and wait until it has settled there."""
    label = f"{fields['phase']} k8s_scale"
    api = _api(action.conn_id, label)
    res = deployment(action.namespace, action.deployment)
    before: list[int] = []

    def build(obj: dict):
        replicas = (obj.get("spec") or {}).get("replicas", 1)
        before[:] = [replicas]
        return None if replicas == action.replicas else ({"spec": {"replicas": action.replicas}}, MERGE_PATCH)

    api.update(res, build)
    done = f"{res} scaled {before[0]} → {action.replicas}" if before[0] != action.replicas else f"{res} already at {action.replicas} replicas"
    if action.wait:
        done += _wait_until_ready(api, res, action.timeout, label)
    return done


def rollout_state(obj: dict) -> tuple[bool, str]:
    """(done, what is missing) for a Deployment, as ``kubectl rollout status`` judges it."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    wanted = spec.get("replicas", 1)
    generation, observed = meta.get("generation", 0), status.get("observedGeneration", 0)
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return False, f"the rollout failed: {condition.get('message') or 'ProgressDeadlineExceeded'}"
    if observed < generation:
        return False, f"the Deployment controller has not seen generation {generation} yet (observed {observed})"
    updated, ready, total = status.get("updatedReplicas", 0), status.get("readyReplicas", 0), status.get("replicas", 0)
    if updated < wanted:
        return False, f"{updated} of {wanted} replicas updated"
    if total > updated:
        return False, f"{total - updated} old replicas still running"
    if ready < wanted:
        return False, f"{ready} of {wanted} replicas ready"
    return True, f"{ready} of {wanted} replicas ready"


def _wait_until_ready(api: KubernetesApi, res, timeout: float, label: str) -> str:
    started = time.monotonic()
    last = [""]

    def rolled_out() -> str | None:
        done, why = rollout_state(api.get(res))
        last[0] = why
        if done:
            return f"; {why} after {time.monotonic() - started:.1f}s"
        if why.startswith("the rollout failed"):
            raise HookError(f"{label}: {res}: {why}")
        return None

    try:
        return wait_until(rolled_out, timeout=timeout, interval=max(0.01, min(POLL_SECONDS, timeout / 10)),
                          what=f"{res} to roll out")
    except WaitTimedOut:
        raise HookError(f"{label}: {res} not ready after {timeout:g}s: {last[0]}") from None
