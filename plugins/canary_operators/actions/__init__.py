"""Deploy, promote and rollback actions from a spec, one kind per file, behind a registry.

Every action is told the release, the version and the stable version. Versions are validated
before they get here (``spec.VERSION_PATTERN``).
"""

from __future__ import annotations

from typing import Callable

from canary_operators.endpoint import Endpoint
from canary_operators.exceptions import SpecError
from canary_operators.spec import RunConf


def _runners() -> dict[str, Callable]:
    from canary_operators.actions.command import run_command
    from canary_operators.actions.ecs import run_ecs_deploy, run_ecs_scale
    from canary_operators.actions.kubernetes import run_k8s_deploy, run_k8s_scale
    from canary_operators.actions.webhook import post_webhook

    return {"command": run_command, "webhook": post_webhook, "ecs_deploy": run_ecs_deploy, "ecs_scale": run_ecs_scale,
            "k8s_deploy": run_k8s_deploy, "k8s_scale": run_k8s_scale}


def run_action(action, phase: str, run: RunConf, endpoint_for: Callable[[str], Endpoint]) -> str:
    """Run one action and return a short description of what it did. Raise HookError on failure."""
    runners = _runners()
    if action.type not in runners:
        raise SpecError(f"unknown action type {action.type!r}; valid: {', '.join(sorted(runners))}")
    from canary_operators.secrets import scrub, scrub_in_place

    fields = {"release": run.release, "version": run.version, "stable_version": run.stable_version, "phase": phase}
    try:
        return scrub(runners[action.type](action, fields, endpoint_for))
    except Exception as e:  # an action's error may quote what its backend answered
        scrub_in_place(e)
        raise
