"""What promote, the undo and a safe start share: a fake router and fake actions writing into one journal.

Each test drives one operator's ``run_step`` with a fake router and fake actions that write into
one journal (so the order of what happened shows), a real status record in an Airflow Variable,
and the few parts of a task's context the operators read.
"""

from __future__ import annotations

import pytest

from canary_operators import safety
from canary_operators.exceptions import HookError
from canary_operators.operators import preflight as preflight_module
from canary_operators.operators import promote as promote_module
from canary_operators.operators import rollback as rollback_module
from canary_operators.operators import shift_traffic as shift_module
from canary_operators.operators.preflight import Preflight
from canary_operators.operators.promote import Promote
from canary_operators.operators.rollback import Rollback
from canary_operators.spec import RunConf, parse_spec
from canary_operators.status import ReleaseStatus, write_status
from tests.fakes import FakeRouter, FakeTI, fake_context

RUN = "ci__v2__2026-11-30"
OTHER_RUN = "ci__v1b__2026-11-29"
SPEC = parse_spec({
    "name": "web",
    "stable_version": "v1",
    "router": {"type": "haproxy", "conn_id": "haproxy_web", "settings": {"backend": "web"}},
    "metrics": {"type": "prometheus", "conn_id": "prometheus_default", "settings": {"labels": {"job": "web"}}},
    "steps": [10, 50, 100],
    "promote": {"type": "command", "command": ["deploy", "web-stable", "{version}"]},
    "after_promote": {"type": "command", "command": ["scale", "web-canary", "0"]},
    "rollback": {"type": "command", "command": ["scale", "web-canary", "0"]},
    "rollback_deadline": "0.3s",  # only the test whose router stays down waits it out
}, "web.yaml")
V2 = RunConf(release="web", version="v2", stable_version="v1", steps=[10, 50, 100])


class World:
    """The fake router and the fake actions, writing into one journal."""

    def __init__(self):
        self.journal: list[tuple] = []
        self.router = FakeRouter(weight=0, journal=self.journal)
        self.failing_actions: set[str] = set()

    def run_action(self, action, phase: str, run: RunConf, endpoint_for) -> str:
        if phase in self.failing_actions:
            raise HookError(f"{phase} command 'scale web-canary 0' exited 1: deployment not found")
        self.journal.append((phase, run.version, self.router.weight))  # what ran, for which version, at what weight
        return f"ran {phase} for {run.version}"

    def build_router(self, release, run=None):
        return self.router


@pytest.fixture
def world(in_task, monkeypatch):
    world = World()
    for module in (promote_module, rollback_module, preflight_module, shift_module):
        monkeypatch.setattr(module, "build_router", world.build_router)
    for module in (promote_module, rollback_module):
        monkeypatch.setattr(module, "run_action", world.run_action)
    monkeypatch.setattr(preflight_module, "build_provider", lambda release, run=None: type(
        "Prometheus", (), {"check_online": lambda self: None})())
    monkeypatch.setattr(safety, "FAILURE_HOOKS", [lambda release, message: world.journal.append(("failure hook", message))])
    return world


def owned_by(run_id: str, phase: str, weight: int, **changes) -> ReleaseStatus:
    return write_status(ReleaseStatus(release="web", phase=phase, run_id=run_id, dag_id="canary_web", version="v2",
                                      stable_version="v1", weight=weight, **changes))


def context(run_id: str = RUN, failures=None, runs=None, preflight=V2, conf=None):
    ti = FakeTI(preflight=preflight.model_dump() if preflight else None, failures=failures, runs=runs or {run_id: "running"})
    return fake_context(run_id, ti, conf)


def promote(ctx=None):
    return Promote(task_id="promote", release=SPEC).run_step(ctx or context())


def undo(ctx=None):
    return Rollback(task_id="rollback", release=SPEC, watched_task_ids=["shift_to_10", "gate_10", "shift_to_50", "gate_50",
                                                                       "promote"]).run_step(ctx or context())


GATE_FAILED = [{"task": "gate_10", "error": "AirflowFailException: gate_10: rollback: error rate +29.6pp (limit 5pp)"}]


# -- a safe start --------------------------------------------------------------------------------


def start(run_id: str = RUN, **conf):
    return Preflight(task_id="preflight", release=SPEC).run_step(context(run_id, preflight=None, conf={"version": "v2", **conf}))
