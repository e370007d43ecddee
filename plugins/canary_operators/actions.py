"""Deploy, promote and rollback actions from a spec: run a command, or POST to a webhook.

Both are told the release, the version and the stable version. Versions are validated before
they get here (``spec.VERSION_PATTERN``), and commands run without a shell.
"""

from __future__ import annotations

import subprocess
from typing import Callable

from canary_operators.endpoint import Endpoint
from canary_operators.exceptions import HookError
from canary_operators.spec import CommandHook, RunConf, WebhookHook


def run_action(
    action: CommandHook | WebhookHook,
    phase: str,
    run: RunConf,
    endpoint_for: Callable[[str], Endpoint],
) -> str:
    """Run one action and return a short description of what it did. Raise HookError on failure."""
    fields = {"release": run.release, "version": run.version, "stable_version": run.stable_version, "phase": phase}
    if isinstance(action, CommandHook):
        return _run_command(action, fields)
    return _post_webhook(action, fields, endpoint_for(action.conn_id))


def _run_command(action: CommandHook, fields: dict) -> str:
    argv = [arg.format(**fields) for arg in action.command]
    env_extra = {f"CANARY_{k.upper()}": v for k, v in fields.items()}
    import os

    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=action.timeout, env={**os.environ, **env_extra}
        )
    except FileNotFoundError:
        raise HookError(f"{fields['phase']} command not found: {argv[0]}") from None
    except subprocess.TimeoutExpired:
        raise HookError(f"{fields['phase']} command timed out after {action.timeout:g}s: {argv[0]}") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise HookError(f"{fields['phase']} command {argv[0]} exited {done.returncode}: {' / '.join(tail)}")
    return f"ran {' '.join(argv)}"


def _post_webhook(action: WebhookHook, fields: dict, endpoint: Endpoint) -> str:
    import requests

    url = endpoint.base_url() + action.endpoint
    headers = {"Content-Type": "application/json"}
    auth = None
    if endpoint.login:
        auth = (endpoint.login, endpoint.password or "")
    elif endpoint.password:
        headers["Authorization"] = f"Bearer {endpoint.password}"
    try:
        response = requests.post(url, json=fields, headers=headers, auth=auth, timeout=action.timeout)
    except requests.RequestException as e:
        raise HookError(f"{fields['phase']} webhook {url} unreachable: {type(e).__name__}") from None
    if response.status_code >= 300:
        raise HookError(f"{fields['phase']} webhook {url} answered HTTP {response.status_code}: {response.text[:200]}")
    return f"POST {url} → {response.status_code}"
