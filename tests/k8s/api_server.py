"""A Kubernetes API server for tests, on 127.0.0.1, spoken to by the real ``kubernetes`` client.

It serves what ``canary_operators.clients.kubernetes`` sends: GET and PATCH (and ``/status``) of
Istio VirtualServices, Gateway API HTTPRoutes and Argo Rollouts (custom objects under
``/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}``), Ingresses and Deployments. It
behaves like a real API server where the code under test could get it wrong, and its errors are
the real server's bodies (``recorded/``, whose README says when each is sent and where from):

- PATCH as merge patch, JSON patch (applied by the ``jsonpatch`` library) and, built-in kinds
  only, strategic merge patch (415 for a custom object); 400 for a body that does not decode as
  its type; 422 ``Invalid`` with the generic message and empty ``details`` for a JSON patch that
  does not apply; 409 for a patch that sets a stale ``metadata.resourceVersion``.
- ``metadata.resourceVersion`` moves on every write that changes something (a no-op write keeps
  it), ``metadata.generation`` on spec changes. For a kind with ``/status``, writes to the main
  resource keep the stored status and writes to ``/status`` keep all but status.
- Written objects are validated where a real cluster would refuse them (``kinds.validate``), and
  ``metadata.uid`` is immutable.
- 401 without the kubeconfig's token; 403 outside ``rules`` (a Role's rules; None: all allowed);
  404 for a missing object, and ``404 page not found`` for a kind not in ``served`` (no CRD).

Test hooks: ``put``/``get`` objects, ``mutate`` (a write by someone else), ``fail_next`` (the real
server's error for the next matching request), ``before_next`` (run a function, such as someone
else's write, just before the next matching request is served), and ``writes`` (every write with
its actor, content type, body and answer). Controllers (``controllers.py``) react to writes,
``controller_delay`` seconds later: Argo Rollouts (``argo``), Deployments (per
``deployment_behaviour``) and a gateway (``gateway_controller``).
"""

from __future__ import annotations

import copy
import http.server
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import yaml

from tests.k8s.answers import ApiError, bad_request, invalid, not_served, recorded, status
from tests.k8s.controllers import ArgoRolloutsController, deployment_rolls_out, gateway_observes
from tests.k8s.kinds import DEPLOYMENT, HTTP_ROUTE, KINDS, KINDS_BY_NAME, ROLLOUT, Kind, validate
from tests.k8s.patches import (
    JSON_PATCH,
    JSON_PATCH_FAILED,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)

TOKEN = "fake-token"
USER = "system:serviceaccount:airflow:canary"


@dataclass
class Write:
    """One write attempt: who, what, and the answer."""

    actor: str  # "client", "controller" or "someone-else"
    kind: str
    namespace: str
    name: str
    subresource: str | None
    content_type: str | None
    body: Any
    code: int
    object: dict | None = None  # the object after the write (None when refused)


@dataclass
class _Trigger:
    method: str
    path: str
    action: Callable[[], Any] | None = None
    code: int = 0
    message: str = ""
    remaining: int = 1


class FakeKubeApi:
    """The state and behaviour of the fake API server; ``start()`` serves it over HTTP."""

    def __init__(self):
        self.objects: dict[tuple[Kind, str, str], dict] = {}
        self.writes: list[Write] = []
        self.rules: list[dict] | None = None  # a Role's rules; None: everything is allowed
        self.served = set(KINDS_BY_NAME)  # the kinds whose API is served (installed CRDs)
        self.controller_delay = 0.0
        self.deployment_behaviour: dict[str, str] = {}  # name → "ready" (default) | "stuck" | "failed"
        self.gateway_controller = True  # re-report an HTTPRoute's conditions at each new generation
        self.argo = ArgoRolloutsController(self)
        self._triggers: list[_Trigger] = []
        self._lock = threading.RLock()
        self._rv = 1000
        self._server: http.server.ThreadingHTTPServer | None = None

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

    def write_kubeconfig(self, path: Path) -> Path:
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "canary", "user": {"token": TOKEN}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "canary", "namespace": "default"}}],
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

    def mutate(self, kind_name: str, namespace: str, name: str, change: Callable[[dict], Any]) -> dict:
        """A write by someone else: ``change`` edits the object in place; versions move on."""
        kind = KINDS_BY_NAME[kind_name]
        with self._lock:
            current = self.objects[(kind, namespace, name)]
            new = copy.deepcopy(current)
            change(new)
            stored = self._store(kind, current, new)
            self.writes.append(Write("someone-else", kind.kind, namespace, name, None, None, None, 200, copy.deepcopy(stored)))
        self._after_write(kind, stored, None)
        return copy.deepcopy(stored)

    def path(self, kind_name: str, namespace: str, name: str, subresource: str | None = None) -> str:
        kind = KINDS_BY_NAME[kind_name]
        base = f"/apis/{kind.group}/{kind.version}/namespaces/{namespace}/{kind.plural}/{name}"
        return base + (f"/{subresource}" if subresource else "")

    # -- test hooks -----------------------------------------------------------------------------

    def fail_next(self, method: str, path: str, code: int, message: str = "", times: int = 1) -> None:
        """The next ``times`` requests ``method path`` get the real server's HTTP ``code`` answer
        there (401, 403, 404, 409: recorded/); for other codes a Status with ``message``."""
        with self._lock:
            self._triggers.append(_Trigger(method, path, code=code, message=message, remaining=times))

    def before_next(self, method: str, path: str, action: Callable[[], Any]) -> None:
        """Run ``action`` (e.g. someone else's ``mutate``) just before the next ``method path`` is served."""
        with self._lock:
            self._triggers.append(_Trigger(method, path, action=action))

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

    def handle(self, method: str, path: str, headers: dict, raw: bytes) -> dict:
        """The answer to one GET or PATCH; an error is raised as ``ApiError``."""
        if headers.get("authorization") != f"Bearer {TOKEN}":
            raise recorded("unauthorized")
        parts = [p for p in path.split("/") if p]
        if len(parts) not in (7, 8) or parts[0] != "apis" or parts[3] != "namespaces":
            raise not_served()
        _, group, version, _, namespace, plural, name, *sub = parts
        kind = KINDS.get((group, version, plural))
        if kind is None or kind.kind not in self.served:
            raise not_served()
        subresource = sub[0] if sub else None
        fields = {"resource": kind.resource, "group": kind.group, "plural": kind.plural, "name": name, "namespace": namespace,
                  "user": USER, "verb": method.lower(), "resource_path": kind.plural + (f"/{subresource}" if subresource else "")}
        content_type = (headers.get("content-type") or "").split(";")[0].strip()
        while (trigger := self._take_trigger(method, path)) is not None:
            if trigger.action:
                trigger.action()
            if trigger.code:
                error = self._failure(trigger, fields)
                if method == "PATCH":  # still a write attempt
                    self.writes.append(Write("client", kind.kind, namespace, name, subresource, content_type, json.loads(raw or b"null"), error.code))
                raise error
        if self.rules is not None and not any(
                kind.group in rule.get("apiGroups", []) and fields["resource_path"] in rule.get("resources", [])
                and fields["verb"] in rule.get("verbs", []) and (not rule.get("resourceNames") or name in rule["resourceNames"])
                for rule in self.rules):
            raise recorded("forbidden", **fields)
        if subresource not in ((None, "status") if kind.status else (None,)):
            raise recorded("not_found", **fields)
        if method == "GET":
            with self._lock:
                if (kind, namespace, name) not in self.objects:
                    raise recorded("not_found", **fields)
                return copy.deepcopy(self.objects[(kind, namespace, name)])
        return self._write(kind, subresource, content_type, raw, fields)

    @staticmethod
    def _failure(trigger: _Trigger, fields: dict) -> ApiError:
        name = {401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict"}.get(trigger.code)
        if name:
            return recorded(name, **fields)
        if trigger.code == 400:
            return bad_request(trigger.message)
        reason = {500: "InternalError", 503: "ServiceUnavailable"}.get(trigger.code, "Unknown")
        return status(trigger.code, reason, trigger.message or reason)

    def _write(self, kind: Kind, subresource: str | None, content_type: str, raw: bytes, fields: dict) -> dict:
        namespace, name = fields["namespace"], fields["name"]
        record = Write("client", kind.kind, namespace, name, subresource, content_type, None, 0)
        self.writes.append(record)
        try:
            try:
                record.body = body = json.loads(raw or b"null")
            except ValueError as e:
                raise bad_request(f"error decoding patch: {e}") from None
            with self._lock:
                current = self.objects.get((kind, namespace, name))
                if current is None:
                    raise recorded("not_found", **fields)
                new = self._patched(kind, current, content_type, body)
                meta = new.get("metadata", {})
                if meta.get("resourceVersion") != current["metadata"]["resourceVersion"]:
                    raise recorded("conflict", **fields)
                if meta.get("uid") != current["metadata"]["uid"]:
                    raise invalid(kind, name, [("metadata.uid", meta.get("uid"), "field is immutable")])
                if subresource == "status":
                    new = {**copy.deepcopy(current), "status": new.get("status", {})}
                elif kind.status:
                    new = {**new, "status": copy.deepcopy(current.get("status", {}))}
                    if "status" not in current:
                        new.pop("status")
                validate(kind, new)
                stored = self._store(kind, current, new)
            record.code, record.object = 200, copy.deepcopy(stored)
            self._after_write(kind, stored, subresource)
            return copy.deepcopy(stored)
        except ApiError as e:
            record.code = e.code
            raise

    @staticmethod
    def _patched(kind: Kind, current: dict, content_type: str, body: Any) -> dict:
        if content_type == JSON_PATCH:
            if not isinstance(body, list):
                raise bad_request("error decoding patch: json: cannot unmarshal object into Go value of type []handlers.jsonPatchOp")
            try:
                return json_patch(current, body)
            except JSON_PATCH_FAILED:
                raise recorded("patch_not_applied") from None
        if content_type == MERGE_PATCH or (content_type == STRATEGIC_MERGE_PATCH and not kind.custom):
            if not isinstance(body, dict):
                prefix = "error decoding patch: " if content_type == MERGE_PATCH else ""
                raise bad_request(f"{prefix}json: cannot unmarshal array into Go value of type map[string]interface {{}}")
            return (merge_patch if content_type == MERGE_PATCH else strategic_merge_patch)(current, body)
        raise recorded("unsupported_media_type", accepted=kind.accepted)

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
        self.objects[(kind, current["metadata"]["namespace"], current["metadata"]["name"])] = new
        return new

    # -- controllers ----------------------------------------------------------------------------

    def _after_write(self, kind: Kind, obj: dict, subresource: str | None) -> None:
        key = (kind, obj["metadata"]["namespace"], obj["metadata"]["name"])
        if kind is ROLLOUT:
            self._later(lambda: self.argo.reconcile(key))
        elif kind is DEPLOYMENT and subresource != "status":
            self._later(lambda: self.controller_write(key, deployment_rolls_out(self.deployment_behaviour.get(key[2], "ready"))))
        elif kind is HTTP_ROUTE and subresource != "status" and self.gateway_controller:
            self._later(lambda: self.controller_write(key, gateway_observes))

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
                self.writes.append(Write("controller", kind.kind, namespace, name, "status", MERGE_PATCH, None, 200, copy.deepcopy(stored)))


class _Handler(http.server.BaseHTTPRequestHandler):
    server_api: FakeKubeApi
    protocol_version = "HTTP/1.1"

    def _serve(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            code, body = 200, self.server_api.handle(self.command, urlsplit(self.path).path, headers, raw)
        except ApiError as e:
            code, body = e.code, e.body
        except Exception as e:  # a bug in the fake: answer like a server would
            code, body = 500, status(500, "InternalError", f"fake server error: {type(e).__name__}: {e}").body
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8" if isinstance(body, str) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PATCH = _serve

    def log_message(self, *args):
        pass
