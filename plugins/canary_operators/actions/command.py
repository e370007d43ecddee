"""Run a command without a shell; ``{version}``, ``{stable_version}``, ``{release}`` are filled in."""

from __future__ import annotations

import os
import subprocess

from canary_operators.exceptions import HookError
from canary_operators.secrets import scrub
from canary_operators.spec import CommandHook


def run_command(action: CommandHook, fields: dict, endpoint_for=None) -> str:
    argv = [arg.format(**fields) for arg in action.command]
    env_extra = {f"CANARY_{k.upper()}": v for k, v in fields.items()}
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=action.timeout, env={**os.environ, **env_extra}
        )
    except FileNotFoundError:
        raise HookError(f"{fields['phase']} command not found: {argv[0]}") from None
    except subprocess.TimeoutExpired:
        raise HookError(f"{fields['phase']} command timed out after {action.timeout:g}s: {argv[0]}") from None
    if done.returncode != 0:
        tail = scrub(done.stderr or done.stdout).strip().splitlines()[-5:]
        raise HookError(f"{fields['phase']} command {argv[0]} exited {done.returncode}: {' / '.join(tail)}")
    return scrub(f"ran {' '.join(argv)}")
