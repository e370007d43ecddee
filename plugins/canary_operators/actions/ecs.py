"""ECS actions: deploy a version to a service (new task definition revision), or scale a service.

Placeholder until the AWS work lands: both raise HookError so a spec that names them fails loudly.
"""

from __future__ import annotations

from canary_operators.exceptions import HookError


def run_ecs_deploy(action, fields: dict, endpoint_for) -> str:
    raise HookError("ecs_deploy is not implemented yet")


def run_ecs_scale(action, fields: dict, endpoint_for) -> str:
    raise HookError("ecs_scale is not implemented yet")
