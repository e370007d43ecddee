"""A shift moves no traffic once the guard took the release over."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from canary_operators.operators.shift_traffic import ShiftTraffic
from tests.operators.release_world import RUN, SPEC, context, owned_by
from tests.operators.release_world import world  # noqa: F401  (world is a fixture)


def test_a_shift_moves_nothing_after_the_guard_took_the_release_over(world):
    owned_by(RUN, "rolled_back", 0, decision="guard: canary at 10% and its run has made no progress for 900s")
    with pytest.raises(AirflowFailException, match="not moving traffic"):
        ShiftTraffic(task_id="shift_to_50", release=SPEC, weight=50).run_step(context())
    assert world.journal == [] and world.router.weight == 0
