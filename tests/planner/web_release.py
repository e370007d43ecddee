"""The release the planner's tests plan for: the spec's defaults unless a test changes them."""

from __future__ import annotations

from canary_operators.spec import RunConf, parse_spec

RUN = RunConf(release="web", version="v2", stable_version="v1")


def spec_with(**changes):
    data = {"name": "web", "router": {"type": "haproxy", "conn_id": "h", "settings": {"backend": "web"}},
            "metrics": {"type": "prometheus", "conn_id": "p"}, "promote": {"type": "command", "command": ["true"]}}
    data.update(changes)
    return parse_spec(data, "web.yaml")


def timeouts(plan) -> dict[int, float]:
    return {g.weight: g.gate_timeout for g in plan.gates}


ERRORS = {"name": "errors", "kind": "error_rate"}
CHECKOUTS = {"name": "checkouts", "kind": "business", "metric": "checkouts", "min_ratio": 0.9}
REVENUE = {"name": "revenue", "kind": "business", "metric": "revenue", "unit": "amount", "min_ratio": 0.9}
