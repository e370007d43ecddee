"""Which targets move together and which a failure rolls back: table tests of the pure plan."""

from __future__ import annotations

import pytest

from canary_operators.status import ReleaseStatus
from canary_operators.targets.plan import abort_scope, group_abort_action, wave_order

RUN = "ci__v2__1"


@pytest.mark.parametrize("strategy, waves, expected", [
    ("lockstep", None, [["eu", "us", "ap"]]),
    ("waves", None, [["eu"], ["us"], ["ap"]]),
    ("waves", [["eu", "us"], ["ap"]], [["eu", "us"], ["ap"]]),
])
def test_wave_order(strategy, waves, expected):
    assert wave_order(["eu", "us", "ap"], strategy, waves) == expected


WAVES = [["eu"], ["us", "ap"], ["sa"]]


@pytest.mark.parametrize("failed, abort, expected", [
    (0, "wave", ["eu"]),
    (1, "wave", ["us", "ap"]),  # the earlier wave stays promoted
    (1, "all", ["eu", "us", "ap"]),  # and here it is undone too; later waves never started
    (2, "all", ["eu", "us", "ap", "sa"]),
    (0, "all", ["eu"]),
])
def test_abort_scope(failed, abort, expected):
    assert abort_scope(WAVES, failed, abort) == expected


def test_abort_scope_of_a_wave_that_does_not_exist_is_an_error():
    with pytest.raises(ValueError, match="no wave 3"):
        abort_scope(WAVES, 3, "all")


@pytest.mark.parametrize("phase, owner, expected", [
    ("gating", RUN, "stop"),
    ("shifting", RUN, "stop"),
    ("awaiting_approval", RUN, "stop"),
    ("idle", RUN, "stop"),  # after preflight: it may deploy next, so it is stopped too
    ("promoting", RUN, "stop"),  # a partial promote: the undo restores the stable slot
    ("rolling_back", RUN, "stop"),
    ("promoted", RUN, "unpromote"),
    ("rolled_back", RUN, "none"),  # its own gate already rolled it back
    ("unsafe", RUN, "none"),  # its undo is failing loudly already
    ("gating", "another-run", "none"),  # this run never took it: hands off
    ("promoted", "another-run", "none"),
    ("idle", None, "none"),
])
def test_group_abort_action(phase, owner, expected):
    status = ReleaseStatus(release="shop__eu", phase=phase, run_id=owner, version="v2", stable_version="v1")
    assert group_abort_action(status, RUN) == expected
