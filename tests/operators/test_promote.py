"""Promote in Flagger's order, and never once the guard took the release over.

Each test drives ``Promote.run_step`` with the fake router and actions of ``tests/operators/release_world.py``.
"""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from canary_operators.exceptions import HookError
from canary_operators.status import read_status
from tests.fakes import NativeRouter, outage
from tests.operators.release_world import RUN, owned_by, promote
from tests.operators.release_world import world  # noqa: F401  (world is a fixture)


def test_promote_runs_in_flaggers_order_and_never_puts_100_on_the_canary_slot(world):
    from airflow.sdk import Variable

    world.router.weight = 50
    owned_by(RUN, "gating", 50)

    result = promote()

    assert world.journal == [
        ("promote", "v2", 50),  # 1. the stable slot gets v2 while the canary keeps its last weight
        ("set", 0),  # 2. all traffic to the stable slot
        ("after_promote", "v2", 0),  # 3. then the canary is scaled down
    ]
    assert 100 not in world.router.sets()
    assert result["canary_weight"] == 0
    done = read_status("web")
    assert (done.phase, done.weight, done.run_id) == ("promoted", 0, RUN)
    assert done.promote_done == ("after_promote", "routed", "stable_slot")
    assert Variable.get("canary_stable_version__web") == "v2"


def test_a_router_that_promotes_natively_is_asked_to_and_gets_no_100(world):
    world.router = NativeRouter(weight=50, journal=world.journal)
    owned_by(RUN, "gating", 50)

    result = promote()

    assert world.journal == [("router.promote",), ("after_promote", "v2", 0)]
    assert world.router.sets() == []  # no apply(100), no apply(0): the router did it
    assert result["router"] == "alias points at the new version"
    assert read_status("web").phase == "promoted"


def test_a_retry_after_a_failed_after_promote_only_reruns_after_promote(world):
    world.router.weight = 50
    owned_by(RUN, "gating", 50)
    world.failing_actions = {"after_promote"}
    with pytest.raises(HookError):
        promote()
    assert read_status("web").phase == "promoted"  # traffic is on the new stable: that is a promotion
    assert read_status("web").promote_done == ("routed", "stable_slot")

    world.journal.clear()
    world.failing_actions = set()
    promote()  # the task's retry

    assert world.journal == [("after_promote", "v2", 0)]  # no second deploy, no traffic moved
    assert read_status("web").promote_done == ("after_promote", "routed", "stable_slot")


def test_a_retry_after_the_router_failed_routes_without_deploying_again(world):
    world.router.weight = 50
    world.router.handler = outage(failing_sets=1)
    owned_by(RUN, "gating", 50)
    with pytest.raises(Exception, match="unreachable"):
        promote()
    assert read_status("web").promote_done == ("stable_slot",)

    world.journal.clear()
    promote()

    assert world.journal == [("set", 0), ("after_promote", "v2", 0)]
    assert read_status("web").phase == "promoted"


def test_promote_moves_nothing_after_the_guard_took_the_release_over(world):
    world.router.weight = 0
    owned_by(RUN, "rolled_back", 0, decision="guard: canary at 50% and its run has made no progress for 900s")
    with pytest.raises(AirflowFailException, match="web: not moving traffic: the release was rolled back while this run waited"):
        promote()
    assert world.journal == []
