"""TargetPreflight: one target's preflight also records the release's target names (for the guard)."""

from __future__ import annotations

from canary_operators.operators.target_preflight import TargetPreflight, recorded_targets
from canary_operators.spec import parse_spec
from canary_operators.spec.targets import target_releases
from canary_operators.status import read_status
from tests.operators.release_world import RUN, context, world  # noqa: F401 - the fixture

SHOP = parse_spec({
    "name": "shop",
    "stable_version": "v1",
    "steps": [10, 100],
    "promote": {"type": "command", "command": ["deploy-stable", "{version}"]},
    "targets": [{"name": t, "router": {"type": "haproxy", "conn_id": "h", "settings": {"backend": t}},
                 "metrics": {"type": "prometheus", "conn_id": "p"}} for t in ("eu", "us")],
}, "shop.yaml")


def test_a_targets_preflight_records_the_targets_and_takes_only_its_own_record(world):  # noqa: F811
    eu = target_releases(SHOP)["eu"]
    assert recorded_targets("shop") == []

    resolved = TargetPreflight(task_id="eu.preflight", release=eu, target_names=["eu", "us"]).run_step(
        context(preflight=None, conf={"version": "v2"}))

    assert recorded_targets("shop") == ["eu", "us"]
    assert resolved["release"] == "shop__eu" and resolved["version"] == "v2"
    record = read_status("shop__eu")
    assert record.run_id == RUN and record.dag_id == "canary_shop" and record.spec["target_of"] == "shop"
    assert read_status("shop__us").run_id is None  # the other target's preflight takes its own
