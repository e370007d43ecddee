"""The Kubernetes client every router and action uses: API clients from the cncf provider's
``KubernetesHook``, reads and patches with an explicit content type, a re-read-and-retry of
objects that changed underneath (through ``clients.retrying``), and API errors turned into
messages that say what to fix.

Content types. The sync ``kubernetes`` client picks a patch's Content-Type from the body unless
``_content_type`` is given, and its choice differs per API: custom objects get merge-patch even
for a JSON-patch list (which the server then refuses), and built-in kinds get JSON-patch, which
the client's REST layer silently turns into strategic-merge-patch for a dict body. So every patch
here names its content type: ``MERGE_PATCH`` for fields we own as a whole (annotations, Argo's
status fields), ``JSON_PATCH`` with ``test`` ops for single elements of lists we do not own (one
destination's weight in a VirtualService route), ``STRATEGIC_MERGE_PATCH`` only for built-in
kinds (a Deployment's container by name). A JSON-patch dict body would be sent as a strategic
merge patch by the client, which custom objects refuse with 415, so ``patch`` refuses it first.

Concurrency. ``update`` reads, builds a patch from what it read, and sends it guarded by the
resourceVersion it read (a ``test`` op in a JSON patch, ``metadata.resourceVersion`` in a merge
patch). If the object changed in between, the server answers 409 for a merge patch. For a
JSON patch whose ``test`` op failed it answers 422, reason ``Invalid``, with only the generic
message "the server rejected our request due to an error in our request" and empty ``details``
(``NewGenericServerResponse`` in the apiserver's ``endpoints/handlers/patch.go``), exactly as for
a path into a missing member. So ``update`` reads the object again: a new resourceVersion means
it lost a race and rebuilds, up to ``attempts`` times with a short backoff; the same one means the
patch does not fit the object, which is an error at once.

Errors, per failed call (each a ``RouterError`` for routers, ``HookError`` for actions; the ones
retrying cannot fix, 404, 403, 401 and refused patches, as ``RouterRefused``/``HookRefused``):

- 404: the object (or its API, when the CRD is not installed) does not exist, named;
- 403: the connection's identity lacks a verb on a resource: the verb, resource and namespace,
  which is the RBAC rule to add (docs/kubernetes.md has the whole Role);
- 401: the credentials were refused; 415/400/422: the server refused the patch, with its message;
- connection errors and 5xx: the API server is unreachable or failing.

The kubernetes client and the provider are imported inside functions: this module is imported
whenever a DAG file is parsed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field

from canary_operators.clients.retrying import retrying
from canary_operators.exceptions import CanaryError, RouterError, RouterRefused

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"

# RFC 1123 names as Kubernetes takes them.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"


class KubernetesSettings(BaseModel):
    """Settings every Kubernetes router has: where, and how this client calls."""

    model_config = ConfigDict(extra="forbid")
    namespace: str = Field(pattern=DNS_LABEL)
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)  # per API call
    conflict_attempts: int = Field(default=5, ge=1, le=20)  # reads and patches when the object keeps changing


@dataclass(frozen=True)
class Resource:
    """One object's API coordinates."""

    group: str
    version: str
    plural: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    @property
    def custom(self) -> bool:
        return (self.group, self.plural) not in _BUILT_IN

    def rbac(self, subresource: str | None = None) -> str:
        resource = self.plural + (f"/{subresource}" if subresource else "")
        return f'{resource} in API group "{self.group}"'


def virtual_service(namespace: str, name: str) -> Resource:
    return Resource("networking.istio.io", "v1", "virtualservices", "VirtualService", namespace, name)


def http_route(namespace: str, name: str) -> Resource:
    return Resource("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute", namespace, name)


def argo_rollout(namespace: str, name: str) -> Resource:
    return Resource("argoproj.io", "v1alpha1", "rollouts", "Rollout", namespace, name)


def ingress(namespace: str, name: str) -> Resource:
    return Resource("networking.k8s.io", "v1", "ingresses", "Ingress", namespace, name)


def deployment(namespace: str, name: str) -> Resource:
    return Resource("apps", "v1", "deployments", "Deployment", namespace, name)


# Built-in kinds: (API class of the kubernetes client, the method name's noun).
_BUILT_IN = {("networking.k8s.io", "ingresses"): ("NetworkingV1Api", "ingress"), ("apps", "deployments"): ("AppsV1Api", "deployment")}


class Conflict(CanaryError):
    """The object changed since it was read (HTTP 409, or a JSON-patch ``test`` op failed)."""


# What the kube-apiserver answers (HTTP 422, reason Invalid, empty details) when a JSON patch does
# not apply: a failed ``test`` op, or a path into a missing member (handlers/patch.go).
PATCH_NOT_APPLIED_MESSAGE = "the server rejected our request due to an error in our request"


class PatchNotApplied(Conflict):
    """A JSON patch did not apply (HTTP 422 with the generic message): the object changed since it
    was read (a ``test`` op failed) or the patch does not fit it. Only a re-read tells which."""


# Seconds before the first re-read after a conflict; doubled each time, at most 1 s.
CONFLICT_FIRST_WAIT = 0.05


def _resource_version(obj: dict) -> str | None:
    return (obj.get("metadata") or {}).get("resourceVersion")


class KubernetesApi:
    """The Kubernetes API as one connection reaches it, with errors raised as ``error``, or as
    ``refused`` (a subclass) when retrying cannot help: 401, 403, 404, a refused or misfit patch.

    ``label`` starts every error message (``istio``, ``k8s_deploy``).
    """

    def __init__(self, conn_id: str | None, *, label: str, error: type[CanaryError] = RouterError,
                 refused: type[CanaryError] = RouterRefused, timeout: float = 10.0):
        self.conn_id = conn_id or "kubernetes_default"
        self.label = label
        self.error = error  # what a retry may fix: unreachable, 5xx, conflicts
        self.refused = refused  # what it cannot: denied, not found, invalid (the operator fails without retries)
        self.timeout = timeout

    @cached_property
    def _hook(self):
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        return KubernetesHook(conn_id=self.conn_id)

    @cached_property
    def api_client(self):
        try:
            return self._hook.api_client
        except Exception as e:  # unknown connection, unreadable kubeconfig, no in-cluster config
            raise self.error(f"{self.label}: cannot build a Kubernetes client from connection {self.conn_id!r}: "
                             f"{type(e).__name__}: {e}") from e

    def _api(self, name: str):
        from kubernetes import client

        return getattr(client, name)(api_client=self.api_client)

    # -- calls ----------------------------------------------------------------------------------

    def get(self, res: Resource, subresource: str | None = None) -> dict:
        """The object as the server has it now (a plain dict: unknown fields are kept)."""
        opts = {"_preload_content": False, "_request_timeout": self.timeout}
        if res.custom:
            api = self._api("CustomObjectsApi")
            call = api.get_namespaced_custom_object_status if subresource == "status" else api.get_namespaced_custom_object
            return self._call("get", res, subresource, call, res.group, res.version, res.namespace, res.plural, res.name, **opts)
        cls, noun = _BUILT_IN[(res.group, res.plural)]
        method = f"read_namespaced_{noun}" + (f"_{subresource}" if subresource else "")
        return self._call("get", res, subresource, getattr(self._api(cls), method), res.name, res.namespace, **opts)

    def patch(self, res: Resource, body: Any, content_type: str, subresource: str | None = None) -> dict:
        """Send ``body`` as a patch of ``content_type``; returns the object after the patch."""
        try:
            return self.patch_or_conflict(res, body, content_type, subresource)
        except PatchNotApplied as e:
            raise self.error(f"{self.label}: the API server could not apply the JSON patch to {res} (HTTP 422 Invalid: "
                             f"{e}): it changed since it was read, or a path in the patch does not exist") from None
        except Conflict as e:
            raise self.error(f"{self.label}: {res} changed while we wrote it (HTTP 409): {e}") from None

    def patch_or_conflict(self, res: Resource, body: Any, content_type: str, subresource: str | None = None) -> dict:
        """As ``patch``, but a conflict raises ``Conflict`` for the caller to handle."""
        if content_type == JSON_PATCH and not isinstance(body, list):
            # the client would send it as a strategic merge patch instead
            raise self.refused(f"{self.label}: a JSON patch must be a list of operations (bug)")
        if content_type == STRATEGIC_MERGE_PATCH and res.custom:
            raise self.refused(f"{self.label}: {res} is a custom resource: no strategic merge patch (bug)")
        opts = {"_preload_content": False, "_request_timeout": self.timeout, "_content_type": content_type}
        if res.custom:
            api = self._api("CustomObjectsApi")
            call = api.patch_namespaced_custom_object_status if subresource == "status" else api.patch_namespaced_custom_object
            return self._call("patch", res, subresource, call, res.group, res.version, res.namespace, res.plural, res.name, body, **opts)
        cls, noun = _BUILT_IN[(res.group, res.plural)]
        method = f"patch_namespaced_{noun}" + (f"_{subresource}" if subresource else "")
        return self._call("patch", res, subresource, getattr(self._api(cls), method), res.name, res.namespace, body, **opts)

    def update(self, res: Resource, build: Callable[[dict], "tuple[Any, str] | None"], *, attempts: int = 5,
               subresource: str | None = None) -> dict:
        """Read ``res``, let ``build(obj)`` return ``(patch, content_type)`` (None: nothing to do),
        and send it. On a conflict, read again and rebuild, up to ``attempts`` times in all."""
        attempt = 0

        def read_build_patch() -> dict:
            nonlocal attempt
            attempt += 1
            obj = self.get(res)
            change = build(obj)
            if change is None:
                return obj
            body, content_type = change
            try:
                return self.patch_or_conflict(res, body, content_type, subresource)
            except PatchNotApplied as e:
                # A lost race and a wrong patch get the same answer: the object itself tells.
                now = self.get(res)
                if _resource_version(now) == _resource_version(obj):
                    raise self.refused(
                        f"{self.label}: the API server could not apply our JSON patch to {res} (HTTP 422 Invalid: {e}), "
                        f"and {res} has not changed since we read it (resourceVersion {_resource_version(obj)}): the "
                        f"patch does not fit the object, e.g. a path that does not exist: {json.dumps(body)[:500]}") from None
                log.warning("%s: %s changed while we wrote it (a JSON-patch test failed, resourceVersion %s -> %s); "
                            "building the patch again (attempt %d of %d)", self.label, res, _resource_version(obj),
                            _resource_version(now), attempt, attempts)
                raise
            except Conflict as e:
                log.warning("%s: %s changed while we wrote it (%s); reading it again (attempt %d of %d)",
                            self.label, res, e, attempt, attempts)
                raise

        try:
            return retrying(retry_on=Conflict, attempts=attempts, first_wait=CONFLICT_FIRST_WAIT, max_wait=1.0)(read_build_patch)
        except Conflict as last:
            raise self.error(f"{self.label}: {res} kept changing underneath us: {attempts} writes in a row hit a conflict "
                             f"({last}); someone else is writing it") from None

    # -- errors ---------------------------------------------------------------------------------

    def _call(self, verb: str, res: Resource, subresource: str | None, fn: Callable, *args, **kwargs) -> dict:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            response = fn(*args, **kwargs)
        except ApiException as e:
            raise self._api_error(e, verb, res, subresource) from None
        except (HTTPError, OSError) as e:
            host = getattr(self.api_client.configuration, "host", "?")
            raise self.error(f"{self.label}: Kubernetes API server {host} unreachable ({verb} {res}): {type(e).__name__}") from None
        try:
            return json.loads(response.data)
        except (ValueError, AttributeError):
            raise self.error(f"{self.label}: {verb} {res}: the API server answered without JSON") from None

    def _api_error(self, e, verb: str, res: Resource, subresource: str | None) -> CanaryError:
        status = getattr(e, "status", 0) or 0
        try:
            body = json.loads(e.body) if e.body else {}
        except (ValueError, TypeError):
            body = {}
        message = body.get("message") or (e.reason or "").strip() or "no message"
        where = f"{res}" + (f" ({subresource})" if subresource else "")
        if status == 409:
            return Conflict(message)
        if (status == 422 and body.get("reason") == "Invalid" and message == PATCH_NOT_APPLIED_MESSAGE
                and not (body.get("details") or {}).get("causes")):
            return PatchNotApplied(message)
        if status == 404:
            if body.get("details", {}).get("name") == res.name or f'"{res.name}" not found' in message:
                return self.refused(f"{self.label}: {where} not found (HTTP 404): {message}")
            return self.refused(f"{self.label}: {where} not found: the API server does not serve {res.plural}.{res.group}/"
                              f"{res.version} (is the CRD installed?) (HTTP 404: {message})")
        if status == 403:
            return self.refused(f"{self.label}: forbidden to {verb} {where}: the connection's identity needs RBAC verb "
                              f'"{verb}" on {res.rbac(subresource)} in namespace {res.namespace} (HTTP 403: {message})')
        if status == 401:
            return self.refused(f"{self.label}: the Kubernetes API server refused the credentials of connection "
                              f"{self.conn_id!r} (HTTP 401)")
        if status in (400, 415, 422):
            return self.refused(f"{self.label}: the API server refused to {verb} {where} (HTTP {status}): {message}")
        if status == 0:
            return self.error(f"{self.label}: {verb} {where} failed before reaching the API server: {e.reason}")
        return self.error(f"{self.label}: {verb} {where} failed (HTTP {status}): {message}")


def unchanged(path: str, value: Any) -> dict:
    """A JSON-patch ``test`` op: the patch fails (422, ``PatchNotApplied``) unless ``path`` still holds ``value``."""
    return {"op": "test", "path": path, "value": value}


def resource_version_guard(obj: dict) -> dict:
    """A JSON-patch op that makes the patch fail (422) if the object changed since ``obj`` was read."""
    return unchanged("/metadata/resourceVersion", obj["metadata"]["resourceVersion"])
