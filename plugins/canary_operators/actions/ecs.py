"""ECS actions: deploy a version to a service (a new task definition revision), or scale a service.

Both go through ``clients.aws``: the client from the connection, and every call retried while AWS
throttles or fails with 5xx (``ATTEMPTS`` calls in all). They raise ``HookRefused`` (not retried) when
retrying cannot help: the cluster, service, task definition or container that is missing, the IAM
action that was denied, a request ECS rejects. They raise ``HookError`` for a service that did not
become stable in time, a FAILED rollout, or AWS still failing after every attempt.

Both are idempotent. ``run_ecs_deploy`` registers a revision only when no revision of the family
already runs exactly that definition, so a retried deploy does not register again.

Waiting polls ``DescribeServices`` through ``clients.retrying.wait_until`` rather than botocore's
``services_stable`` waiter. It succeeds on the waiter's own condition (one deployment, ``runningCount ==
desiredCount``) once the service points at the task definition just set, and it also stops
at once when ECS marks the deployment FAILED (the circuit breaker rolled it back), where the
waiter would sleep until its last attempt.
"""

from __future__ import annotations

from typing import Any

from canary_operators.clients.aws import AwsCallFailed, aws_client, call
from canary_operators.clients.retrying import WaitTimedOut, wait_until
from canary_operators.exceptions import HookError, HookRefused
from canary_operators.spec import EcsDeployHook, EcsScaleHook

# Seconds between DescribeServices polls while waiting (botocore's services_stable waiter uses 15).
# Never more than a tenth of the action's timeout. Tests shorten it.
POLL_SECONDS = 15.0
# ECS calls per operation while AWS throttles or fails with 5xx, and the first wait between them
ATTEMPTS = 5
FIRST_WAIT_SECONDS = 1.0

_PLACEHOLDERS = ("release", "version", "stable_version")


def run_ecs_deploy(action: EcsDeployHook, fields: dict, endpoint_for=None) -> str:
    """Point ``action.service`` at a revision whose ``action.container`` runs ``action.image``."""
    phase = fields["phase"]
    image = _fill(action.image, fields, phase)
    ecs = _client(action.conn_id, phase)

    service = _describe_service(ecs, action.cluster, action.service, phase)
    current_arn = service["taskDefinition"]
    current = _call(ecs, "describe_task_definition", phase, taskDefinition=current_arn)["taskDefinition"]
    names = [c["name"] for c in current["containerDefinitions"]]
    if action.container not in names:
        raise HookRefused(f"{phase}: task definition {_short(current_arn)} of service {action.service} has no container "
                        f"{action.container!r}; its containers: {', '.join(names)}")

    wanted = _registrable(ecs, current)
    for container in wanted["containerDefinitions"]:
        if container["name"] == action.container:
            container["image"] = image

    if _registrable(ecs, current) == wanted:
        arn, note = current_arn, ", already running"
    else:
        latest = _call(ecs, "describe_task_definition", phase, taskDefinition=current["family"])["taskDefinition"]
        if _registrable(ecs, latest) == wanted:  # a retry after a register that was not followed by the update
            arn, note = latest["taskDefinitionArn"], ", already registered"
        else:
            arn = _call(ecs, "register_task_definition", phase, roles=_roles(wanted), **wanted)["taskDefinition"]["taskDefinitionArn"]
            note = ""

    update: dict[str, Any] = {"cluster": action.cluster, "service": action.service, "taskDefinition": arn}
    if action.desired_count is not None:
        update["desiredCount"] = action.desired_count
    _call(ecs, "update_service", phase, **update)
    done = f"{action.service} → {_short(arn)} (image {image}{note})"
    if action.desired_count is not None:
        done += f", desired {action.desired_count}"
    return done + _wait_if_asked(ecs, action, phase, arn)


def run_ecs_scale(action: EcsScaleHook, fields: dict, endpoint_for=None) -> str:
    """Set ``action.service``'s desired count (0 scales it down) and wait until it is stable."""
    phase = fields["phase"]
    ecs = _client(action.conn_id, phase)
    _describe_service(ecs, action.cluster, action.service, phase)
    _call(ecs, "update_service", phase, cluster=action.cluster, service=action.service, desiredCount=action.desired_count)
    return f"{action.service} scaled to {action.desired_count}" + _wait_if_asked(ecs, action, phase, None)


# ---------------------------------------------------------------------------------------------
# Waiting


def _wait_if_asked(ecs, action, phase: str, task_definition: str | None) -> str:
    if not action.wait:
        return ", not waited for"
    wait_until_stable(ecs, action.cluster, action.service, action.timeout, phase, task_definition)
    return ", stable"


def wait_until_stable(ecs, cluster: str, service: str, timeout: float, phase: str = "ecs",
                      task_definition: str | None = None) -> dict:
    """Poll until the service has one deployment and runs its desired count (of ``task_definition``
    when given). Returns the last description. HookError on FAILED rollout, a missing service, or
    ``timeout`` seconds."""
    interval = max(0.01, min(POLL_SECONDS, timeout / 10))
    last: list[tuple[dict, dict | None]] = []

    def stable() -> dict | None:
        svc = _describe_service(ecs, cluster, service, phase)
        primary = next((d for d in svc.get("deployments", []) if d.get("status") == "PRIMARY"), None)
        last[:] = [(svc, primary)]
        if primary is not None and primary.get("rolloutState") == "FAILED":
            raise HookError(f"{phase}: service {service} deployment FAILED: {primary.get('rolloutStateReason', 'no reason given')}")
        on_target = task_definition is None or svc.get("taskDefinition") == task_definition
        if on_target and len(svc.get("deployments", [])) == 1 and svc["runningCount"] == svc["desiredCount"]:
            return svc
        return None

    try:
        return wait_until(stable, timeout=timeout, interval=interval, what=f"ECS service {service} to become stable")
    except WaitTimedOut:
        raise HookError(f"{phase}: service {service} did not become stable within {timeout:g}s ({_progress(*last[0])})") from None


def _progress(svc: dict, primary: dict | None) -> str:
    counts = f"running {svc.get('runningCount')} of {svc.get('desiredCount')}, {len(svc.get('deployments', []))} deployment(s)"
    if primary and primary.get("rolloutState"):
        reason = primary.get("rolloutStateReason")
        return f"last deployment {primary['rolloutState']}" + (f": {reason}" if reason else "") + f"; {counts}"
    return counts


# ---------------------------------------------------------------------------------------------
# Calls and their errors


def _client(conn_id: str, phase: str):
    try:
        return aws_client(conn_id, "ecs")
    except Exception as e:  # a missing connection, no region, bad credentials config
        raise HookError(f"{phase}: cannot build an ECS client from connection {conn_id!r}: {type(e).__name__}: {e}") from None


def _call(ecs, method: str, phase: str, roles: tuple[str, ...] = (), **kwargs) -> dict:
    """One ECS call, retried while AWS throttles or fails; its failure becomes a message that says what to fix."""
    try:
        return call(ecs, method, attempts=ATTEMPTS, first_wait=FIRST_WAIT_SECONDS, label=phase, **kwargs)
    except AwsCallFailed as e:
        raise _failed(e.failure, phase, kwargs, roles) from None


def _failed(failure, phase: str, kwargs: dict, roles: tuple[str, ...]) -> HookError:
    code, message, cluster, service = failure.code, failure.message, kwargs.get("cluster"), kwargs.get("service")
    operation = failure.action.split(":", 1)[1]
    if code == "ClusterNotFoundException":
        return HookRefused(f"{phase}: ECS cluster {cluster!r} not found")
    if code in ("ServiceNotFoundException", "ServiceNotActiveException"):
        return HookRefused(f"{phase}: ECS service {service!r} not found or not active in cluster {cluster!r}")
    if operation == "DescribeTaskDefinition" and code == "ClientException" and "describe task definition" in message.lower():
        return HookRefused(f"{phase}: task definition {kwargs.get('taskDefinition')!r} not found")
    if failure.kind == "denied" and code:
        needed = failure.needs
        if needed == failure.action and roles:
            needed += f" (and iam:PassRole on {', '.join(roles)}, which the task definition uses)"
        elif needed == "iam:PassRole" and roles:
            needed += f" on {', '.join(roles)}"
        return HookRefused(f"{phase}: access denied: the connection's identity needs {needed} ({code}: {message})")
    if not code:  # unreachable endpoint, no credentials, timeouts
        return HookError(f"{phase}: ECS {operation} failed: {message}")
    error = HookError if failure.retryable else HookRefused
    return error(f"{phase}: ECS {operation} failed: {code}: {message}")


def _describe_service(ecs, cluster: str, service: str, phase: str) -> dict:
    found = _call(ecs, "describe_services", phase, cluster=cluster, services=[service])
    services = [s for s in found.get("services", []) if s.get("status") == "ACTIVE"]
    if not services:
        reasons = {f.get("reason") for f in found.get("failures", [])} or {s.get("status") for s in found.get("services", [])}
        raise HookRefused(f"{phase}: ECS service {service!r} not found in cluster {cluster!r} ({', '.join(sorted(map(str, reasons)))})")
    svc = services[0]
    controller = svc.get("deploymentController", {}).get("type", "ECS")
    if controller != "ECS":
        raise HookRefused(f"{phase}: ECS service {service!r} uses the {controller} deployment controller; "
                        "these actions drive ECS rolling updates only")
    return svc


# ---------------------------------------------------------------------------------------------
# Task definitions


def _registrable(ecs, described: dict) -> dict:
    """The parts of a described task definition that RegisterTaskDefinition accepts.

    Read-only fields (taskDefinitionArn, revision, status, requiresAttributes, compatibilities,
    registeredAt/By, deregisteredAt, ...) are dropped by asking the service model which fields
    the call takes, so fields AWS adds later are handled too.
    """
    import copy

    accepted = ecs.meta.service_model.operation_model("RegisterTaskDefinition").input_shape.members
    return copy.deepcopy({k: v for k, v in described.items() if k in accepted and v is not None})


def _roles(definition: dict) -> tuple[str, ...]:
    return tuple(definition[k] for k in ("taskRoleArn", "executionRoleArn") if definition.get(k))


def _fill(template: str, fields: dict, phase: str) -> str:
    try:
        return template.format(**{k: fields[k] for k in _PLACEHOLDERS})
    except (KeyError, IndexError, ValueError) as e:
        raise HookRefused(f"{phase}: image {template!r} has a bad placeholder ({e}); use "
                        + ", ".join("{" + p + "}" for p in _PLACEHOLDERS)) from None


def _short(task_definition_arn: str) -> str:
    """``arn:aws:ecs:...:task-definition/web:42`` → ``web:42``."""
    return task_definition_arn.rsplit("/", 1)[-1]
