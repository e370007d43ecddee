"""ECS actions: deploy a version to a service (a new task definition revision), or scale a service.

Both go through ``AwsBaseHook(aws_conn_id=action.conn_id, client_type="ecs").conn`` and raise
``HookError`` with a message that names what is wrong: the cluster, service or container that is
missing, the IAM action that was denied, or the service that did not become stable in time.

Both are idempotent. ``run_ecs_deploy`` registers a revision only when no revision of the family
already runs exactly that definition, so a retried deploy does not register again.

Waiting is a small loop over ``DescribeServices`` rather than botocore's ``services_stable``
waiter. It succeeds on the waiter's own condition (one deployment, ``runningCount ==
desiredCount``) once the service points at the task definition just set, and it also stops
at once when ECS marks the deployment FAILED (the circuit breaker rolled it back), where the
waiter would sleep until its last attempt.
"""

from __future__ import annotations

import re
import time
from typing import Any

from canary_operators.exceptions import HookError
from canary_operators.spec import EcsDeployHook, EcsScaleHook

# Seconds between DescribeServices polls while waiting (botocore's services_stable waiter uses 15).
# Never more than a tenth of the action's timeout. Tests shorten it.
POLL_SECONDS = 15.0

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
        raise HookError(f"{phase}: task definition {_short(current_arn)} of service {action.service} has no container "
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
    deadline = time.monotonic() + timeout
    while True:
        svc = _describe_service(ecs, cluster, service, phase)
        primary = next((d for d in svc.get("deployments", []) if d.get("status") == "PRIMARY"), None)
        if primary is not None and primary.get("rolloutState") == "FAILED":
            raise HookError(f"{phase}: service {service} deployment FAILED: {primary.get('rolloutStateReason', 'no reason given')}")
        on_target = task_definition is None or svc.get("taskDefinition") == task_definition
        if on_target and len(svc.get("deployments", [])) == 1 and svc["runningCount"] == svc["desiredCount"]:
            return svc
        if time.monotonic() + interval > deadline:
            raise HookError(f"{phase}: service {service} did not become stable within {timeout:g}s ({_progress(svc, primary)})")
        time.sleep(interval)


def _progress(svc: dict, primary: dict | None) -> str:
    counts = f"running {svc.get('runningCount')} of {svc.get('desiredCount')}, {len(svc.get('deployments', []))} deployment(s)"
    if primary and primary.get("rolloutState"):
        reason = primary.get("rolloutStateReason")
        return f"last deployment {primary['rolloutState']}" + (f": {reason}" if reason else "") + f"; {counts}"
    return counts


# ---------------------------------------------------------------------------------------------
# Calls and their errors


def _client(conn_id: str, phase: str):
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    try:
        return AwsBaseHook(aws_conn_id=conn_id, client_type="ecs").conn
    except Exception as e:  # a missing connection, no region, bad credentials config
        raise HookError(f"{phase}: cannot build an ECS client from connection {conn_id!r}: {type(e).__name__}: {e}") from None


def _call(ecs, method: str, phase: str, roles: tuple[str, ...] = (), **kwargs) -> dict:
    """One ECS call; every AWS error becomes a HookError that says what to fix."""
    from botocore.exceptions import BotoCoreError, ClientError

    operation = ecs.meta.method_to_api_mapping.get(method, method)
    try:
        return getattr(ecs, method)(**kwargs)
    except ClientError as e:
        raise _client_error(e, operation, phase, kwargs, roles) from None
    except BotoCoreError as e:  # unreachable endpoint, no credentials, timeouts
        raise HookError(f"{phase}: ECS {operation} failed: {e}") from None


def _client_error(e, operation: str, phase: str, kwargs: dict, roles: tuple[str, ...]) -> HookError:
    code = e.response.get("Error", {}).get("Code", "")
    message = e.response.get("Error", {}).get("Message", "")
    cluster, service = kwargs.get("cluster"), kwargs.get("service")
    if code == "ClusterNotFoundException":
        return HookError(f"{phase}: ECS cluster {cluster!r} not found")
    if code in ("ServiceNotFoundException", "ServiceNotActiveException"):
        return HookError(f"{phase}: ECS service {service!r} not found or not active in cluster {cluster!r}")
    if operation == "DescribeTaskDefinition" and code == "ClientException" and "describe task definition" in message.lower():
        return HookError(f"{phase}: task definition {kwargs.get('taskDefinition')!r} not found")
    if "AccessDenied" in code or "Unauthorized" in code or "not authorized to perform" in message:
        denied = re.search(r"perform: ([a-z0-9-]+:[A-Za-z0-9]+)", message)
        needed = denied.group(1) if denied else f"ecs:{operation}"
        if needed == f"ecs:{operation}" and roles:
            needed += f" (and iam:PassRole on {', '.join(roles)}, which the task definition uses)"
        elif needed == "iam:PassRole" and roles:
            needed += f" on {', '.join(roles)}"
        return HookError(f"{phase}: access denied: the connection's identity needs {needed} ({code}: {message})")
    return HookError(f"{phase}: ECS {operation} failed: {code}: {message}")


def _describe_service(ecs, cluster: str, service: str, phase: str) -> dict:
    found = _call(ecs, "describe_services", phase, cluster=cluster, services=[service])
    services = [s for s in found.get("services", []) if s.get("status") == "ACTIVE"]
    if not services:
        reasons = {f.get("reason") for f in found.get("failures", [])} or {s.get("status") for s in found.get("services", [])}
        raise HookError(f"{phase}: ECS service {service!r} not found in cluster {cluster!r} ({', '.join(sorted(map(str, reasons)))})")
    svc = services[0]
    controller = svc.get("deploymentController", {}).get("type", "ECS")
    if controller != "ECS":
        raise HookError(f"{phase}: ECS service {service!r} uses the {controller} deployment controller; "
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
        raise HookError(f"{phase}: image {template!r} has a bad placeholder ({e}); use "
                        + ", ".join("{" + p + "}" for p in _PLACEHOLDERS)) from None


def _short(task_definition_arn: str) -> str:
    """``arn:aws:ecs:...:task-definition/web:42`` → ``web:42``."""
    return task_definition_arn.rsplit("/", 1)[-1]
