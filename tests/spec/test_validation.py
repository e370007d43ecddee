"""Release spec validation: every bad spec names its file and field."""

from __future__ import annotations

import typing

import pytest

from canary_operators.exceptions import SpecError
from canary_operators.metrics import PROVIDERS
from canary_operators.routers import ROUTERS
from canary_operators.spec import Check, Hook, parse_spec
from tests.spec.minimal import spec_with


# Each bad spec and the exact field its error must name.
BAD_SPECS = [
    (spec_with(steps=[1, 5, 120, 50, 100]), "web.yaml: steps[2]=120: must be a percentage, strictly increasing, ending at 100"),
    (spec_with(steps=[5, 5, 100]), "steps[1]=5: must be a percentage, strictly increasing"),
    (spec_with(steps=[10, 50]), "steps[1]=50: must be a percentage, strictly increasing, ending at 100"),
    (spec_with(steps=[0, 100]), "steps[0]=0: must be a percentage"),
    (spec_with(steps=[]), "steps: must be a percentage"),
    (spec_with(steps=[100]), "steps: needs at least one step below 100"),
    (spec_with(promote=...), "promote: required: router haproxy cannot promote by itself"),
    (spec_with(steps=[1, "x", 100]), "steps[1]=x: Input should be a valid integer"),
    (spec_with(name="Bad Name"), "name=Bad Name: String should match pattern"),
    (spec_with(name=...), "name: Field required"),
    (spec_with(router=...), "router: Field required"),
    (spec_with(colour="blue"), "colour: unknown field"),
    (spec_with(bake_time="soon"), "bake_time=soon: 'soon' is not a duration"),
    (spec_with(bake_time="10m", gate_timeout="5m"), "gate_timeout=300: must be longer than bake_time (600s)"),
    (spec_with(router={"type": "traefik", "conn_id": "x"}), "router.type=traefik: unknown router type 'traefik'; valid: " + ", ".join(sorted(ROUTERS))),
    (spec_with(metrics={"type": "graphite", "conn_id": "x"}), "metrics.type=graphite: unknown metrics provider type 'graphite'; valid: " + ", ".join(sorted(PROVIDERS))),
    (spec_with(router={"type": "haproxy", "conn_id": "h", "settings": {}}), "router.settings.backend: Field required"),
    (spec_with(router={"type": "haproxy", "conn_id": "h", "settings": {"backend": "a b"}}), "router.settings.backend=a b: String should match pattern"),
    (spec_with(router={"type": "haproxy", "settings": {"backend": "app"}}), "router.conn_id: required by haproxy"),
    (spec_with(metrics={"type": "prometheus", "conn_id": "p", "settings": {"version_label": "ver-sion"}}), "metrics.settings.version_label=ver-sion"),
    (spec_with(metrics={"type": "prometheus", "conn_id": "p", "settings": {"labels": {"bad-name": "x"}}}), "metrics.settings.labels: label name 'bad-name'"),
    (spec_with(checks=[]), "checks: List should have at least 1 item"),
    (spec_with(checks=[{"name": "e", "kind": "errors"}]), "checks[0]: Input tag 'errors' found using 'kind' does not match"),
    (spec_with(checks=[{"name": "l", "kind": "latency", "quantile": 0.9}]), "checks[0].quantile=0.9: Input should be 0.5, 0.95 or 0.99"),
    (spec_with(checks=[{"name": "l", "kind": "latency", "max_ratio": -1}]), "checks[0].max_ratio=-1: Input should be greater than 0"),
    (spec_with(checks=[{"name": "e", "kind": "error_rate"}, {"name": "e", "kind": "error_rate"}]), "checks[1].name=e: duplicate check name"),
    (spec_with(checks=[{"name": "b", "kind": "business", "metric": "checkouts_total"}]), "checks[0]: a business check needs min_ratio or max_ratio"),
    (spec_with(checks=[{"name": "b", "kind": "business", "metric": 'x"}', "min_ratio": 1}]), "checks[0].metric=x\"}: String should match pattern"),
    (spec_with(checks=[{"name": "r", "kind": "resource", "resource": "disk"}]), "checks[0].resource=disk: Input should be 'cpu' or 'memory'"),
    (spec_with(schedule="every night"), "schedule=every night: not a valid cron expression"),
    (spec_with(schedule="@nightly"), "schedule=@nightly: unknown preset"),
    (spec_with(stable_version='v1"}'), "stable_version=v1\"}: must match"),
    (spec_with(deploy={"type": "ssh"}), "deploy: Input tag 'ssh' found using 'type' does not match"),
    (spec_with(deploy={"type": "webhook"}), "deploy.conn_id: Field required"),
    (spec_with(deploy={"type": "command", "command": []}), "deploy.command: List should have at least 1 item"),
    ([1, 2], "web.yaml: (top level): must be a mapping of fields, got list"),
]


@pytest.mark.parametrize("data, expected", BAD_SPECS, ids=[e for _, e in BAD_SPECS])
def test_bad_spec_names_file_and_field(data, expected):
    with pytest.raises(SpecError) as err:
        parse_spec(data, "web.yaml")
    message = str(err.value)
    assert expected in message
    assert all(line.startswith("web.yaml: ") for line in message.splitlines())


def test_a_router_that_promotes_natively_needs_no_promote_action():
    lambda_router = {"type": "lambda_alias", "conn_id": "aws_default", "settings": {"function_name": "api", "alias": "live"}}
    spec = parse_spec(spec_with(router=lambda_router, promote=...), "web.yaml")
    assert spec.promote is None


def test_approval_points_must_be_steps():
    with pytest.raises(SpecError, match=r"approval.before\[0\]=30: must be one of the steps"):
        parse_spec(spec_with(approval={"before": [30]}), "web.yaml")


def _union_members(union) -> list:
    """The models of a tagged union such as ``Check`` or ``Hook`` (Annotated[Union[...], Field])."""
    return list(typing.get_args(typing.get_args(union)[0]))


@pytest.mark.parametrize("field, member", [
    *(("checks", m) for m in _union_members(Check)),
    *((field, m) for field in ("deploy", "promote", "after_promote", "rollback") for m in _union_members(Hook)),
])
def test_every_union_member_has_clean_error_locations(field, member):
    # An error inside any check kind or action type names the field as the user wrote it:
    # checks[0].bogus, never checks[0].<kind>.bogus. A member whose tag is not stripped fails here.
    key = "kind" if field == "checks" else "type"
    (tag,) = typing.get_args(member.model_fields[key].annotation)
    item = {key: tag, "name": "x", "bogus": 1}
    data = spec_with(checks=[item]) if field == "checks" else spec_with(**{field: item})
    where = "checks[0]" if field == "checks" else field
    with pytest.raises(SpecError) as raised:
        parse_spec(data, "web.yaml")
    assert f"web.yaml: {where}.bogus: unknown field" in str(raised.value).splitlines()
    assert f".{tag}." not in str(raised.value)
