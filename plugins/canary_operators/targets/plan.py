"""Which targets move together, and which a failure rolls back. Pure: no Airflow import.

- ``wave_order``: lockstep is one wave of every target; waves are the spec's ``waves``, or one
  target per wave in the spec's order.
- ``abort_scope``: the targets a failure in wave ``i`` rolls back: that wave (``abort: wave``),
  or that wave and every earlier one (``abort: all``; later waves never started).
- ``group_abort_action``: what the group abort does to one target in scope, from its status
  record: stop it (it is mid-way), undo its promotion (it was promoted by this run), or nothing.
"""

from __future__ import annotations

from typing import Literal

from canary_operators.status import ReleaseStatus

Action = Literal["stop", "unpromote", "none"]


def wave_order(target_names: list[str], strategy: str, waves: list[list[str]] | None) -> list[list[str]]:
    if strategy == "lockstep":
        return [list(target_names)]
    if waves:
        return [list(w) for w in waves]
    return [[name] for name in target_names]


def abort_scope(waves: list[list[str]], failed_wave: int, abort: str) -> list[str]:
    """Targets to roll back when wave ``failed_wave`` (0-based) fails."""
    if not 0 <= failed_wave < len(waves):
        raise ValueError(f"no wave {failed_wave}; there are {len(waves)}")
    chosen = waves[failed_wave:failed_wave + 1] if abort == "wave" else waves[:failed_wave + 1]
    return [name for wave in chosen for name in wave]


def group_abort_action(status: ReleaseStatus, run_id: str) -> Action:
    """A target this run never took (preflight did not run or refused) is left alone: this run
    moved nothing there. One already rolled back (its own gate failed) needs nothing more."""
    if not status.owned_by(run_id):
        return "none"
    if status.phase == "promoted":
        return "unpromote"
    if status.phase in ("rolled_back", "unsafe"):
        return "none"
    return "stop"  # idle after preflight, or mid-way: it may have moved, so it goes back
