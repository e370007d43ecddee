"""The safety invariant on real Airflow services (api-server, scheduler with LocalExecutor,
dag-processor, triggerer), real HAProxy and real Prometheus: whatever happens to a run, the canary
ends at 0% unless the run promoted it. Each case prints its measured time to safe.

The scenarios live in ``tests/safety_scenarios.py``; ``bench/safety.py`` runs these and the
minute-long outages (traffic API 60 s, api-server 40 s) and the poke-mode SIGKILL, which do not
fit the test suite's time budget.
"""

from __future__ import annotations

import pytest

from tests import safety_scenarios as scenarios
from tests.conftest import load_module


@pytest.fixture(scope="module")
def lab(demo_stack, tmp_path_factory):
    lab = scenarios.SafetyLab.start(demo_stack, tmp_path_factory.mktemp("airflow-home"), tmp_path_factory.mktemp("releases"))
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture
def fresh(lab):
    lab.reset()
    return lab


@pytest.fixture
def unguarded(lab):
    """No guard sweeps: what puts traffic back is the run's own undo, and nothing else."""
    lab.reset(guard=False)
    return lab


@pytest.fixture(scope="module")
def client():
    return load_module("include/ci/trigger_release.py", "trigger_release_safety")


def report(measured: scenarios.Measured) -> None:
    print(measured.line())
    assert measured.seconds_to_safe <= measured.bound


def test_run_marked_failed_mid_gate_puts_traffic_back(unguarded):
    report(scenarios.marked_failed(unguarded))


def test_run_marked_success_mid_gate_puts_traffic_back_and_is_no_promotion(unguarded, client):
    report(scenarios.marked_success(unguarded, client))


def test_paused_dag_mid_gate_is_reset_by_the_guard(fresh):
    report(scenarios.paused(fresh))


def test_deleted_run_mid_gate_leaves_no_canary(fresh):
    report(scenarios.deleted(fresh))


def test_triggerer_stopped_for_good_bounds_the_exposure(fresh):
    report(scenarios.triggerer_stopped(fresh))


def test_rolled_back_run_cleared_and_run_again_ends_at_zero(unguarded):
    report(scenarios.cleared_and_rerun(unguarded))


def test_second_release_refused_while_a_canary_serves_then_guard_and_force_reset(fresh, client):
    report(scenarios.second_release_refused(fresh, client))
