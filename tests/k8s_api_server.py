"""A small Kubernetes API server for tests, spoken to by the real ``kubernetes`` client.

It serves, on 127.0.0.1, the REST paths the Kubernetes routers and actions use:

- custom objects ``/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}`` (and ``/status``)
  for Istio VirtualServices, Gateway API HTTPRoutes and Argo Rollouts;
- built-in ``networking.k8s.io/v1`` Ingresses and ``apps/v1`` Deployments (and ``/status``).

GET and PATCH, as the client (``canary_operators.clients.kubernetes``) sends them, and PUT.

It behaves like a real API server where the code under test could get it wrong:

- GET; PUT with a stale ``metadata.resourceVersion`` → 409; PATCH as
  ``application/merge-patch+json``, ``application/json-patch+json`` and (built-in kinds only)
  ``application/strategic-merge-patch+json``. A custom object answers a strategic merge patch with
  415; a JSON patch whose body is an object, or a merge patch whose body is a list, gets 400.
  A JSON patch that does not apply (a failed ``test`` op, a path that does not exist) gets what
  the real server sends: 422, reason ``Invalid``, only the generic message and empty ``details``
  (see ``patch_not_applied``). A patch that sets a
  stale ``metadata.resourceVersion`` gets 409. A no-op write changes nothing and keeps the
  resourceVersion.
- ``metadata.resourceVersion`` grows on every write, ``metadata.generation`` on spec changes.
  Writes to the main resource keep the stored status; writes to ``/status`` keep all but status.
- Errors are ``Status`` objects (400, 401, 403, 404, 409, 415, 422).
- Written objects are validated where a real cluster would refuse them: Istio weights are
  integers 0..100 summing to 100 per route, HTTPRoute weights integers, Ingress annotations
  strings, Deployment replicas non-negative integers.
- Optional RBAC: give ``rules`` (a Role's rules) and every request outside them gets 403.

Test hooks: ``put``/``get`` objects, ``fail_next`` (a one-shot error on the next matching
request), ``before_next`` (run a function, such as someone else's write, just before the next
matching request is served), ``mutate`` (a write by someone else), and ``writes`` (every write
attempt with its actor, content type, body and answer). Small controllers react to writes:
``ArgoRolloutsController`` walks a Rollout through its canary steps, and Deployments become
ready (or not, per ``deployment_behaviour``). A gateway controller (``gateway_controller``)
re-reports an HTTPRoute's conditions at each new generation, keeping their verdicts.
"""

from __future__ import annotations

import copy
import http.server
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import yaml

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
TOKEN = "fake-token"
USER = "system:serviceaccount:airflow:canary"


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    plural: str
    kind: str
    custom: bool  # a CRD: no strategic merge patch
    subresources: tuple[str, ...] = ("status",)

    @property
    def resource(self) -> str:
        return f"{self.plural}.{self.group}"


VIRTUAL_SERVICE = Kind("networking.istio.io", "v1", "virtualservices", "VirtualService", custom=True, subresources=())
HTTP_ROUTE = Kind("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute", custom=True)
ROLLOUT = Kind("argoproj.io", "v1alpha1", "rollouts", "Rollout", custom=True)
INGRESS = Kind("networking.k8s.io", "v1", "ingresses", "Ingress", custom=False)
DEPLOYMENT = Kind("apps", "v1", "deployments", "Deployment", custom=False)
KINDS = {(k.group, k.version, k.plural): k for k in (VIRTUAL_SERVICE, HTTP_ROUTE, ROLLOUT, INGRESS, DEPLOYMENT)}
KINDS_BY_NAME = {k.kind: k for k in KINDS.values()}


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> dict:
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}
        if self.details is not None:
            body["details"] = self.details
        return body


def patch_not_applied() -> ApiError:
    """What the kube-apiserver answers when a JSON patch does not apply, whatever the cause: a
    failed ``test`` op, a path into a missing member. ``patchObj.Apply`` fails and the handler
    returns ``NewGenericServerResponse(422, "", GroupResource{}, "", err.Error(), 0, false)``
    (k8s.io/apiserver endpoints/handlers/patch.go): reason Invalid, the generic message, and
    details with no name, kind or causes (the JSON-patch error text is dropped)."""
    return ApiError(422, "Invalid", "the server rejected our request due to an error in our request", details={})


@dataclass
class Write:
    """One write attempt: who, how, what, and the answer."""

    actor: str  # "client", "controller" or "someone-else"
    method: str
    kind: str
    namespace: str
    name: str
    subresource: str | None
    content_type: str | None
    body: Any
    code: int
    object: dict | None = None  # the object after the write (None when refused)

    @property
    def path(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" + (f"/{self.subresource}" if self.subresource else "")


@dataclass
class _Trigger:
    method: str
    path: str
    action: Callable[[], Any] | None = None
    error: ApiError | None = None
    remaining: int = 1


# ---------------------------------------------------------------------------------------------
# Patch mechanics


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


_SMP_KEYS = {"containers": "name", "initContainers": "name", "env": "name", "volumes": "name",
             "volumeMounts": "mountPath", "ports": "containerPort", "imagePullSecrets": "name"}


def strategic_merge_patch(target: Any, patch: Any, key: str | None = None) -> Any:
    """The part of Kubernetes' strategic merge patch that Deployments need: maps merge, lists of
    containers (and env, ports, volumes) merge by their merge key, other lists are replaced."""
    if isinstance(patch, dict) and isinstance(target, dict):
        result = copy.deepcopy(target)
        for k, v in patch.items():
            if v is None:
                result.pop(k, None)
            else:
                result[k] = strategic_merge_patch(result.get(k), v, k)
        return result
    if isinstance(patch, list) and isinstance(target, list) and key in _SMP_KEYS:
        merge_key = _SMP_KEYS[key]
        result = copy.deepcopy(target)
        for item in patch:
            match = next((i for i, t in enumerate(result) if isinstance(item, dict) and t.get(merge_key) == item.get(merge_key)), None)
            if match is None:
                result.append(copy.deepcopy(item))
            else:
                result[match] = strategic_merge_patch(result[match], item)
        return result
    return copy.deepcopy(patch)


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(400, "BadRequest", f"json patch path {path!r} must start with /")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _container(doc: Any, parts: list[str], path: str) -> tuple[Any, str]:
    for part in parts[:-1]:
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            raise patch_not_applied()  # missing path
    return doc, parts[-1]


def _value_at(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        return doc
    parent, last = _container(doc, parts, path)
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent[int(last)]
    raise patch_not_applied()  # missing path


def json_patch(doc: Any, ops: list) -> Any:
    """RFC 6902: add, remove, replace, test (move and copy are not needed here)."""
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise ApiError(400, "BadRequest", f"json patch operation is malformed: {op!r}")
        kind, path = op["op"], op["path"]
        if kind == "test":
            if _value_at(doc, path) != op.get("value"):
                raise patch_not_applied()  # the test failed
            continue
        parts = _pointer(path)
        if not parts:
            raise patch_not_applied()
        parent, last = _container(doc, parts, path)
        if kind == "add":
            if isinstance(parent, dict):
                parent[last] = copy.deepcopy(op.get("value"))
            elif isinstance(parent, list) and (last == "-" or (last.isdigit() and int(last) <= len(parent))):
                parent.insert(len(parent) if last == "-" else int(last), copy.deepcopy(op.get("value")))
            else:
                raise patch_not_applied()  # missing path
        elif kind in ("replace", "remove"):
            _value_at(doc, path)  # must exist
            if isinstance(parent, dict):
                if kind == "replace":
                    parent[last] = copy.deepcopy(op.get("value"))
                else:
                    del parent[last]
            else:
                if kind == "replace":
                    parent[int(last)] = copy.deepcopy(op.get("value"))
                else:
                    del parent[int(last)]
        else:
            raise ApiError(400, "BadRequest", f"json patch op {kind!r} is not supported by this fake")
    return doc


# ---------------------------------------------------------------------------------------------
# Validation, like the CRD schemas and admission webhooks of a real cluster


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate(kind: Kind, obj: dict) -> None:
    name = obj.get("metadata", {}).get("name")
    causes: list[str] = []
    annotations = obj.get("metadata", {}).get("annotations") or {}
    if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
        raise ApiError(400, "BadRequest", "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.annotations of type string")
    if kind is VIRTUAL_SERVICE:
        for i, route in enumerate(obj.get("spec", {}).get("http") or []):
            destinations = route.get("route") or []
            for j, dest in enumerate(destinations):
                if "weight" in dest and not (_is_int(dest["weight"]) and 0 <= dest["weight"] <= 100):
                    causes.append(f"spec.http[{i}].route[{j}].weight: Invalid value: {dest['weight']!r}: must be an integer in 0..100")
            if len(destinations) > 1 and not causes:
                total = sum(d.get("weight", 0) for d in destinations)
                if total != 100:
                    raise ApiError(400, "BadRequest", f'admission webhook "validation.istio.io" denied the request: configuration is invalid: total destination weight {total} != 100')
    elif kind is HTTP_ROUTE:
        for i, rule in enumerate(obj.get("spec", {}).get("rules") or []):
            for j, ref in enumerate(rule.get("backendRefs") or []):
                if "weight" in ref and not (_is_int(ref["weight"]) and 0 <= ref["weight"] <= 1000000):
                    causes.append(f"spec.rules[{i}].backendRefs[{j}].weight: Invalid value: {ref['weight']!r}: must be an integer in 0..1000000")
    elif kind is DEPLOYMENT:
        replicas = obj.get("spec", {}).get("replicas", 1)
        if not (_is_int(replicas) and replicas >= 0):
            causes.append(f"spec.replicas: Invalid value: {replicas!r}: must be greater than or equal to 0")
        for i, c in enumerate(obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []):
            if not isinstance(c.get("name"), str) or not isinstance(c.get("image"), str) or not c["image"]:
                causes.append(f"spec.template.spec.containers[{i}]: Required value: name and image")
    elif kind is ROLLOUT:
        index = obj.get("status", {}).get("currentStepIndex")
        if index is not None and not _is_int(index):
            causes.append(f"status.currentStepIndex: Invalid value: {index!r}: must be an integer")
    if causes:
        raise ApiError(422, "Invalid", f'{kind.kind} "{name}" is invalid: ' + "; ".join(causes),
                       {"name": name, "group": kind.group, "kind": kind.kind, "causes": [{"message": c} for c in causes]})


# ---------------------------------------------------------------------------------------------
# The server


def _gateway_observes(obj: dict) -> None:
    """A gateway controller that keeps its verdicts: every condition it reported is now reported
    for the route's current generation (``status.parents[].conditions[].observedGeneration``)."""
    for parent in (obj.get("status") or {}).get("parents") or []:
        for condition in parent.get("conditions") or []:
            condition["observedGeneration"] = obj["metadata"]["generation"]


class FakeKubeApi:
    """The state and behaviour of the fake API server; ``start()`` serves it over HTTP."""

    def __init__(self, *, rules: list[dict] | None = None, controller_delay: float = 0.0):
        self.objects: dict[tuple[Kind, str, str], dict] = {}
        self.writes: list[Write] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        self.rules = rules  # a Role's rules; None: everything is allowed
        self.controller_delay = controller_delay
        self.deployment_behaviour: dict[str, str] = {}  # name → "ready" (default) | "stuck" | "failed"
        self.gateway_controller = True  # re-report an HTTPRoute's conditions at each new generation
        self._triggers: list[_Trigger] = []
        self._lock = threading.RLock()
        self._rv = 1000
        self._server: http.server.ThreadingHTTPServer | None = None
        self.argo = ArgoRolloutsController(self)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> "FakeKubeApi":
        api = self

        class Handler(_Handler):
            server_api = api

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def write_kubeconfig(self, path: Path, namespace: str = "default", token: str = TOKEN) -> Path:
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "canary", "user": {"token": token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "canary", "namespace": namespace}}],
        }
        Path(path).write_text(yaml.safe_dump(config))
        return Path(path)

    # -- objects --------------------------------------------------------------------------------

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def put(self, obj: dict) -> dict:
        """Create or replace an object as a test fixture (no write is recorded)."""
        kind = KINDS_BY_NAME[obj["kind"]]
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", "default")
        meta["resourceVersion"] = self._next_rv()
        meta.setdefault("generation", 1)
        meta.setdefault("uid", f"uid-{meta['name']}")
        validate(kind, obj)
        with self._lock:
            self.objects[(kind, meta["namespace"], meta["name"])] = obj
        self._after_write(kind, obj, None)
        return copy.deepcopy(obj)

    def get(self, kind_name: str, namespace: str, name: str) -> dict:
        with self._lock:
            return copy.deepcopy(self.objects[(KINDS_BY_NAME[kind_name], namespace, name)])

    def mutate(self, kind_name: str, namespace: str, name: str, change: Callable[[dict], Any], actor: str = "someone-else") -> dict:
        """A write by someone else: ``change`` edits the object in place; versions move on."""
        kind = KINDS_BY_NAME[kind_name]
        with self._lock:
            current = self.objects[(kind, namespace, name)]
            new = copy.deepcopy(current)
            change(new)
            stored = self._store(kind, current, new)
            self.writes.append(Write(actor, "MUTATE", kind.kind, namespace, name, None, None, None, 200, copy.deepcopy(stored)))
        self._after_write(kind, stored, None)
        return copy.deepcopy(stored)

    def path(self, kind_name: str, namespace: str, name: str, subresource: str | None = None) -> str:
        kind = KINDS_BY_NAME[kind_name]
        base = f"/apis/{kind.group}/{kind.version}/namespaces/{namespace}/{kind.plural}/{name}"
        return base + (f"/{subresource}" if subresource else "")

    # -- test hooks -----------------------------------------------------------------------------

    def fail_next(self, method: str, path: str, code: int, message: str = "", times: int = 1) -> None:
        """The next ``times`` requests ``method path`` get HTTP ``code`` (a Status) instead of an answer."""
        reasons = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
                   415: "UnsupportedMediaType", 422: "Invalid", 500: "InternalError", 503: "ServiceUnavailable"}
        if not message and code == 409:
            message = "the object has been modified; please apply your changes to the latest version and try again"
        with self._lock:
            self._triggers.append(_Trigger(method, path, error=ApiError(code, reasons.get(code, "Unknown"), message or reasons.get(code, "error")), remaining=times))

    def before_next(self, method: str, path: str, action: Callable[[], Any], times: int = 1) -> None:
        """Run ``action`` (e.g. someone else's ``mutate``) just before the next ``method path`` is served."""
        with self._lock:
            self._triggers.append(_Trigger(method, path, action=action, remaining=times))

    def client_writes(self, kind_name: str | None = None, *, ok_only: bool = True) -> list[Write]:
        """The writes the client under test made, in order."""
        return [w for w in self.writes if w.actor == "client" and (kind_name is None or w.kind == kind_name)
                and (not ok_only or w.code < 300)]

    def _take_trigger(self, method: str, path: str) -> _Trigger | None:
        with self._lock:
            for trigger in self._triggers:
                if trigger.method == method and trigger.path == path and trigger.remaining > 0:
                    trigger.remaining -= 1
                    if trigger.remaining == 0:
                        self._triggers.remove(trigger)
                    return trigger
        return None

    # -- request handling -----------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, dict]:
        self.requests.append((method, path))
        if headers.get("authorization") != f"Bearer {TOKEN}":
            raise ApiError(401, "Unauthorized", "Unauthorized")
        while (trigger := self._take_trigger(method, path)) is not None:
            if trigger.action:
                trigger.action()
            if trigger.error:
                self._record_refused(method, path, headers, body, trigger.error.code)
                raise trigger.error
        parts = [p for p in path.split("/") if p]
        if len(parts) in (7, 8) and parts[0] == "apis" and parts[3] == "namespaces":
            _, group, version, _, namespace, plural, name, *sub = parts
            kind = KINDS.get((group, version, plural))
            if kind is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            subresource = sub[0] if sub else None
            if subresource is not None and subresource not in kind.subresources:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            verb = {"GET": "get", "PUT": "update", "PATCH": "patch"}.get(method)
            if verb is None:
                raise ApiError(405, "MethodNotAllowed", f"{method} is not supported by this fake")
            self._authorize(verb, kind, namespace, name, subresource)
            if method == "GET":
                return 200, self._read(kind, namespace, name, subresource)
            content_type = (headers.get("content-type") or "").split(";")[0].strip()
            return self._write(method, kind, namespace, name, subresource, content_type, body)
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    def _record_refused(self, method: str, path: str, headers: dict, body: bytes, code: int) -> None:
        """An injected failure of a write is still a write attempt: record it."""
        parts = [p for p in path.split("/") if p]
        if method not in ("PUT", "PATCH") or len(parts) not in (7, 8):
            return
        kind = KINDS.get((parts[1], parts[2], parts[5]))
        try:
            parsed = json.loads(body or b"null")
        except ValueError:
            parsed = None
        content_type = (headers.get("content-type") or "").split(";")[0].strip()
        self.writes.append(Write("client", method, kind.kind if kind else parts[5], parts[4], parts[6],
                                 parts[7] if len(parts) == 8 else None, content_type, parsed, code))

    def _authorize(self, verb: str, kind: Kind, namespace: str, name: str, subresource: str | None) -> None:
        if self.rules is None:
            return
        resource = kind.plural + (f"/{subresource}" if subresource else "")
        for rule in self.rules:
            if (kind.group in rule.get("apiGroups", []) and resource in rule.get("resources", [])
                    and verb in rule.get("verbs", []) and (not rule.get("resourceNames") or name in rule["resourceNames"])):
                return
        raise ApiError(403, "Forbidden",
                       f'{kind.resource} "{name}" is forbidden: User "{USER}" cannot {verb} resource "{resource}" '
                       f'in API group "{kind.group}" in the namespace "{namespace}"',
                       {"name": name, "group": kind.group, "kind": kind.plural})

    def _not_found(self, kind: Kind, name: str) -> ApiError:
        return ApiError(404, "NotFound", f'{kind.resource} "{name}" not found', {"name": name, "group": kind.group, "kind": kind.plural})

    def _read(self, kind: Kind, namespace: str, name: str, subresource: str | None) -> dict:
        with self._lock:
            obj = self.objects.get((kind, namespace, name))
            if obj is None:
                raise self._not_found(kind, name)
            return copy.deepcopy(obj)

    def _write(self, method, kind, namespace, name, subresource, content_type, raw) -> tuple[int, dict]:
        record = Write("client", method, kind.kind, namespace, name, subresource, content_type, None, 0)
        self.writes.append(record)
        try:
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                raise ApiError(400, "BadRequest", "the request body is not valid JSON") from None
            record.body = body
            with self._lock:
                current = self.objects.get((kind, namespace, name))
                if current is None:
                    raise self._not_found(kind, name)
                new = body if method == "PUT" else self._patched(kind, current, content_type, body)
                if not isinstance(new, dict):
                    raise ApiError(400, "BadRequest", "the body of a PUT must be an object")
                if new.get("metadata", {}).get("resourceVersion") != current["metadata"]["resourceVersion"]:
                    raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {kind.resource} "{name}": the object has been '
                                   "modified; please apply your changes to the latest version and try again",
                                   {"name": name, "group": kind.group, "kind": kind.plural})
                if subresource == "status":
                    new = {**copy.deepcopy(current), "status": new.get("status", {})}
                elif "status" in kind.subresources:
                    new = {**new, "status": copy.deepcopy(current.get("status", {}))}
                    if "status" not in current:
                        new.pop("status")
                for immutable in ("name", "namespace", "uid"):
                    if new.get("metadata", {}).get(immutable) != current["metadata"].get(immutable):
                        raise ApiError(422, "Invalid", f'{kind.kind} "{name}" is invalid: metadata.{immutable}: field is immutable')
                validate(kind, new)
                stored = self._store(kind, current, new)
            record.code, record.object = 200, copy.deepcopy(stored)
            self._after_write(kind, stored, subresource)
            return 200, copy.deepcopy(stored)
        except ApiError as e:
            record.code = e.code
            raise

    def _patched(self, kind: Kind, current: dict, content_type: str, body: Any) -> dict:
        if content_type == JSON_PATCH:
            if not isinstance(body, list):
                raise ApiError(400, "BadRequest", "json: cannot unmarshal object into Go value of type jsonpatch.Patch")
            return json_patch(current, body)
        if content_type == MERGE_PATCH:
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "json: cannot unmarshal array into Go value of type map[string]interface {}")
            return merge_patch(current, body)
        if content_type == STRATEGIC_MERGE_PATCH and not kind.custom:
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "json: cannot unmarshal array into Go value of type map[string]interface {}")
            return strategic_merge_patch(current, body)
        accepted = [JSON_PATCH, MERGE_PATCH, APPLY_PATCH] + ([] if kind.custom else [STRATEGIC_MERGE_PATCH])
        raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - accepted media types include: {', '.join(accepted)}")

    def _store(self, kind: Kind, current: dict, new: dict) -> dict:
        """Save ``new`` over ``current``: versions move only when something changed."""
        new = copy.deepcopy(new)
        meta = new.setdefault("metadata", {})
        meta["resourceVersion"] = current["metadata"]["resourceVersion"]
        meta["generation"] = current["metadata"].get("generation", 1)
        if new == current:
            return current  # a no-op write: nothing changes, not even the resourceVersion
        if new.get("spec") != current.get("spec"):
            meta["generation"] += 1
        meta["resourceVersion"] = self._next_rv()
        self.objects[(kind, meta["namespace"], meta["name"])] = new
        return new

    # -- controllers ----------------------------------------------------------------------------

    def _after_write(self, kind: Kind, obj: dict, subresource: str | None) -> None:
        key = (kind, obj["metadata"]["namespace"], obj["metadata"]["name"])
        if kind is ROLLOUT:
            self._later(lambda: self.argo.reconcile(key))
        elif kind is DEPLOYMENT and subresource != "status":
            self._later(lambda: self._reconcile_deployment(key))
        elif kind is HTTP_ROUTE and subresource != "status" and self.gateway_controller:
            self._later(lambda: self.controller_write(key, _gateway_observes))

    def _later(self, fn: Callable[[], None]) -> None:
        if self.controller_delay <= 0:
            fn()
        else:
            timer = threading.Timer(self.controller_delay, fn)
            timer.daemon = True
            timer.start()

    def controller_write(self, key: tuple, change: Callable[[dict], Any]) -> None:
        """A status write by a controller (recorded with actor "controller")."""
        kind, namespace, name = key
        with self._lock:
            current = self.objects.get(key)
            if current is None:
                return
            new = copy.deepcopy(current)
            change(new)
            stored = self._store(kind, current, new)
            if stored is not current:
                self.writes.append(Write("controller", "PATCH", kind.kind, namespace, name, "status", MERGE_PATCH, None, 200, copy.deepcopy(stored)))

    def _reconcile_deployment(self, key: tuple) -> None:
        behaviour = self.deployment_behaviour.get(key[2], "ready")

        def change(obj: dict) -> None:
            spec, status = obj["spec"], obj.setdefault("status", {})
            replicas = spec.get("replicas", 1)
            status["observedGeneration"] = obj["metadata"]["generation"]
            if behaviour == "ready":
                status.update(replicas=replicas, updatedReplicas=replicas, readyReplicas=replicas, availableReplicas=replicas)
                status["conditions"] = [{"type": "Available", "status": "True"},
                                        {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]
            else:
                status.update(replicas=replicas + status.get("readyReplicas", 0), updatedReplicas=replicas)
                reason = "ProgressDeadlineExceeded" if behaviour == "failed" else "ReplicaSetUpdated"
                status["conditions"] = [{"type": "Progressing", "status": "False" if behaviour == "failed" else "True",
                                         "reason": reason, "message": f'ReplicaSet "{key[2]}-new" has timed out progressing.'
                                         if behaviour == "failed" else "updating"}]

        self.controller_write(key, change)


class ArgoRolloutsController:
    """Just enough of the Argo Rollouts controller for a canary with ``setWeight``/``pause`` steps.

    After every write it walks the Rollout: a ``setWeight`` step sets ``status.canary.weights``
    and moves on; a ``pause: {}`` step sets ``pauseConditions`` and ``controllerPause`` and waits;
    once someone clears ``pauseConditions`` it moves past the pause. ``abort`` puts all traffic on
    stable (phase Degraded); ``promoteFull`` or the end of the steps makes the canary the stable
    ReplicaSet (phase Healthy). ``start_update`` is a new revision (a changed pod template).
    """

    def __init__(self, api: FakeKubeApi):
        self.api = api

    def start_update(self, namespace: str, name: str, pod_hash: str) -> None:
        def change(obj):
            status = obj.setdefault("status", {})
            status.update(currentPodHash=pod_hash, currentStepIndex=0, abort=False, controllerPause=False,
                          phase="Progressing", message="more replicas need to be updated")
            status.pop("pauseConditions", None)
            status.pop("abortedAt", None)
        self.api.mutate("Rollout", namespace, name, change, actor="someone-else")

    def reconcile(self, key: tuple) -> None:
        self.api.controller_write(key, self._step)

    @staticmethod
    def _weights(status: dict, canary: int) -> None:
        status["canary"] = {"weights": {
            "canary": {"weight": canary, "podTemplateHash": status.get("currentPodHash")},
            "stable": {"weight": 100 - canary, "podTemplateHash": status.get("stableRS")}}}

    def _step(self, obj: dict) -> None:
        if "canary" not in obj["spec"].get("strategy", {}):
            return
        steps = obj["spec"]["strategy"]["canary"].get("steps") or []
        status = obj.setdefault("status", {})
        if status.get("currentPodHash") == status.get("stableRS"):
            status.update(currentStepIndex=len(steps), phase="Healthy", message="")
            status.pop("pauseConditions", None)
            status["controllerPause"] = False
            self._weights(status, 0)
            return
        if status.get("abort"):
            status.update(phase="Degraded", message=f"RolloutAborted: Rollout aborted update to revision {status.get('currentPodHash')}")
            status.setdefault("abortedAt", "2024-01-01T00:00:00Z")
            status.pop("pauseConditions", None)
            status["controllerPause"] = False
            self._weights(status, 0)
            return
        if status.get("promoteFull"):
            status.update(stableRS=status["currentPodHash"], currentStepIndex=len(steps), promoteFull=False,
                          phase="Healthy", message="", controllerPause=False)
            status.pop("pauseConditions", None)
            self._weights(status, 0)
            return
        if obj["spec"].get("paused"):
            status.update(phase="Paused", message="manually paused")
            return
        index = status.get("currentStepIndex") or 0
        while True:
            if status.get("pauseConditions"):
                status.update(phase="Paused", message="CanaryPauseStep")
                return
            if index >= len(steps):
                status.update(stableRS=status["currentPodHash"], currentStepIndex=len(steps), phase="Healthy",
                              message="", controllerPause=False)
                self._weights(status, 0)
                return
            step = steps[index]
            if "setWeight" in step:
                self._weights(status, step["setWeight"])
                index += 1
            elif "pause" in step:
                if status.get("controllerPause"):  # the pause was cleared: move on
                    status["controllerPause"] = False
                    index += 1
                else:
                    status["pauseConditions"] = [{"reason": "CanaryPauseStep", "startTime": "2024-01-01T00:00:00Z"}]
                    status["controllerPause"] = True
            else:
                index += 1
            status["currentStepIndex"] = index


class _Handler(http.server.BaseHTTPRequestHandler):
    server_api: FakeKubeApi
    protocol_version = "HTTP/1.1"

    def _serve(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        path = urlsplit(self.path).path
        try:
            code, body = self.server_api.handle(self.command, path, headers, raw)
        except ApiError as e:
            code, body = e.code, e.status()
        except Exception as e:  # a bug in the fake: answer like a server would
            code, body = 500, ApiError(500, "InternalError", f"fake server error: {type(e).__name__}: {e}").status()
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_PATCH = do_POST = do_DELETE = _serve

    def log_message(self, *args):
        pass


# ---------------------------------------------------------------------------------------------
# Objects as a cluster would hold them before a release


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


@dataclass
class Cluster:
    """A started fake API server plus the Airflow connection id that points at it."""

    api: FakeKubeApi
    conn_id: str
    kubeconfig: Path
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# pytest fixtures (import them into a test module: ``from tests.k8s_api_server import k8s``)

try:
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

if pytest is not None:

    @pytest.fixture
    def k8s(tmp_path, monkeypatch):
        """A fake API server and the Airflow connection ``t_k8s`` (conn_type kubernetes) whose
        ``kube_config_path`` points at it, the way KubernetesHook reads it."""
        from tests.conftest import set_connection

        with FakeKubeApi() as api:
            kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig.yaml")
            extra = {"kube_config_path": str(kubeconfig)}
            set_connection(monkeypatch, "t_k8s", conn_type="kubernetes", extra=extra)
            yield Cluster(api=api, conn_id="t_k8s", kubeconfig=kubeconfig, extra=extra)
