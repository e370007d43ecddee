"""Release spec validation: good specs load, every bad spec names its file and field."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
import yaml

from canary_operators.exceptions import SpecError
from canary_operators.metrics import PROVIDERS
from canary_operators.routers import ROUTERS
from canary_operators.spec import (
    DEFAULT_STEPS,
    Check,
    ErrorRateCheck,
    Hook,
    LatencyCheck,
    load_spec,
    parse_spec,
    resolve_run_conf,
)

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = {
    "name": "web",
    "router": {"type": "haproxy", "conn_id": "h", "settings": {"backend": "app"}},
    "metrics": {"type": "prometheus", "conn_id": "p"},
    # haproxy cannot promote by itself: the new version must reach the stable slot through an action.
    "promote": {"type": "command", "command": ["deploy-stable", "{version}"]},
}


def spec_with(**changes):
    data = {**MINIMAL, **changes}
    return {k: v for k, v in data.items() if v is not ...}


def test_minimal_spec_gets_the_documented_defaults():
    spec = parse_spec(MINIMAL, "web.yaml")
    assert spec.steps == DEFAULT_STEPS == [1, 5, 25, 50, 100]
    assert spec.gate_steps == [1, 5, 25, 50]
    assert spec.dag_id == "canary_web"
    error_rate, latency = spec.checks
    assert isinstance(error_rate, ErrorRateCheck) and error_rate.max_increase_pp == 0.5
    assert isinstance(latency, LatencyCheck) and latency.quantile == 0.99 and latency.max_ratio == 1.10
    assert spec.bake_time == 300 and spec.gate_timeout == 900


def test_durations_accept_units():
    spec = parse_spec(spec_with(bake_time="1m30s", gate_timeout="1h", poke_interval=5), "web.yaml")
    assert (spec.bake_time, spec.gate_timeout, spec.poke_interval) == (90, 3600, 5)


@pytest.mark.parametrize("path", sorted((ROOT / "include" / "releases").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_spec_is_valid(path):
    assert load_spec(path).name == path.stem


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


def test_load_spec_names_the_file_relative_to_the_project(tmp_path):
    releases = tmp_path / "include" / "releases"
    releases.mkdir(parents=True)
    (tmp_path / "dags").mkdir()
    path = releases / "web.yaml"
    path.write_text(yaml.safe_dump(spec_with(steps=[1, 5, 120, 50, 100])))
    with pytest.raises(SpecError, match=r"^include/releases/web.yaml: steps\[2\]=120: must be a percentage"):
        load_spec(path)


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "web.yaml"
    path.write_text("name: web\nsteps: [1, 5\nrouter: x\n")
    with pytest.raises(SpecError, match=r"web.yaml: line \d+: not valid YAML"):
        load_spec(path)


def test_name_must_match_file_name(tmp_path):
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(MINIMAL))
    with pytest.raises(SpecError, match=r"name=web: must match the file name \(other\)"):
        load_spec(path)


# -- run conf -------------------------------------------------------------------------------

def test_conf_version_wins_then_last_promoted_then_spec():
    spec = parse_spec(spec_with(default_version="v9", stable_version="v1"), "web.yaml")
    assert resolve_run_conf(spec, {"version": "v2"}).version == "v2"
    assert resolve_run_conf(spec, {}).version == "v9"
    assert resolve_run_conf(spec, {}, last_promoted="v5").stable_version == "v5"
    assert resolve_run_conf(spec, {}).stable_version == "v1"
    assert resolve_run_conf(spec, {"stable_version": "v3"}, last_promoted="v5").stable_version == "v3"


@pytest.mark.parametrize(
    "conf, expected",
    [
        ({}, "conf.version: required"),
        ({"version": 'v2",job="x'}, "conf.version="),
        ({"version": 42}, "conf.version=42: must match"),
        ({"version": "v2", "colour": "red"}, "conf.colour: unknown key"),
    ],
)
def test_bad_conf_names_the_key(conf, expected):
    spec = parse_spec(spec_with(stable_version="v1"), "web.yaml")
    with pytest.raises(SpecError, match="^" + expected.replace("(", r"\(").replace(")", r"\)")):
        resolve_run_conf(spec, conf)


def test_stable_version_is_required_somewhere():
    spec = parse_spec(MINIMAL, "web.yaml")
    with pytest.raises(SpecError, match="conf.stable_version: required"):
        resolve_run_conf(spec, {"version": "v2"})


def test_conf_overrides_steps_bake_dry_run_and_approval():
    spec = parse_spec(spec_with(stable_version="v1"), "web.yaml")
    run = resolve_run_conf(spec, {"version": "v2", "steps": [25, 100], "bake_time": 600, "dry_run": True, "approval": True})
    assert run.steps == [25, 100] and run.bake_time == 600 and run.dry_run and run.approval
    assert run.takes_step(25) and not run.takes_step(5)
    assert resolve_run_conf(spec, {"version": "v2"}).steps == [1, 5, 25, 50, 100]


def test_conf_may_only_make_a_release_safer():
    plain = parse_spec(spec_with(stable_version="v1"), "web.yaml")
    approved = parse_spec(spec_with(stable_version="v1", approval={"before": [100]}), "web.yaml")
    # Approval: off by default without a spec approval, on when the spec asks or conf adds it.
    assert not resolve_run_conf(plain, {"version": "v2"}).approval
    assert resolve_run_conf(plain, {"version": "v2", "approval": True}).approval
    assert resolve_run_conf(approved, {"version": "v2"}).approval
    assert resolve_run_conf(approved, {"version": "v2", "approval": True}).approval
    with pytest.raises(SpecError, match=r"^conf.approval=false: the spec requires approval"):
        resolve_run_conf(approved, {"version": "v2", "approval": False})
    # An approval the spec offers but does not require: runs opt in through conf.
    optional = parse_spec(spec_with(stable_version="v1", approval={"before": [100], "required": False}), "web.yaml")
    assert not resolve_run_conf(optional, {"version": "v2"}).approval
    assert not resolve_run_conf(optional, {"version": "v2", "approval": False}).approval
    assert resolve_run_conf(optional, {"version": "v2", "approval": True}).approval
    # Bake time: the spec's or longer, never shorter.
    assert resolve_run_conf(plain, {"version": "v2", "bake_time": plain.bake_time}).bake_time == plain.bake_time
    with pytest.raises(SpecError, match=r"^conf.bake_time=299: must be seconds from the spec's bake_time \(300"):
        resolve_run_conf(plain, {"version": "v2", "bake_time": 299})
    # Steps: a gate must remain before 100%.
    with pytest.raises(SpecError, match=r"^conf.steps=\[100\]: must keep at least one step below 100"):
        resolve_run_conf(plain, {"version": "v2", "steps": [100]})
    # force_reset is a boolean, off by default.
    assert not resolve_run_conf(plain, {"version": "v2"}).force_reset
    assert resolve_run_conf(plain, {"version": "v2", "force_reset": True}).force_reset
    with pytest.raises(SpecError, match=r"^conf.force_reset='yes': must be true or false"):
        resolve_run_conf(plain, {"version": "v2", "force_reset": "yes"})


@pytest.mark.parametrize(
    "conf, expected",
    [
        ({"steps": [5, 30, 100]}, "conf.steps=[5, 30, 100]: must be strictly increasing, end at 100, and use only the spec's steps"),
        ({"steps": [25, 5, 100]}, "conf.steps="),
        ({"steps": [5, 25]}, "conf.steps="),
        ({"steps": [100]}, "conf.steps=[100]: must keep at least one step below 100"),
        ({"bake_time": 5000}, "conf.bake_time=5000: must be seconds from the spec's bake_time (300"),
        ({"bake_time": 60}, "conf.bake_time=60: must be seconds from the spec's bake_time (300"),
        ({"bake_time": "1m"}, "conf.bake_time='1m'"),
        ({"dry_run": "yes"}, "conf.dry_run='yes': must be true or false"),
    ],
)
def test_bad_overrides_name_the_key(conf, expected):
    spec = parse_spec(spec_with(stable_version="v1"), "web.yaml")
    with pytest.raises(SpecError) as err:
        resolve_run_conf(spec, {"version": "v2", **conf})
    assert str(err.value).startswith(expected)


def test_scheduled_runs_take_the_candidate_version():
    spec = parse_spec(spec_with(stable_version="v1", default_version="v0", candidate_variable="web_candidate"), "web.yaml")
    assert resolve_run_conf(spec, {}, candidate="v7").version == "v7"
    assert resolve_run_conf(spec, {"version": "v8"}, candidate="v7").version == "v8"
    assert resolve_run_conf(spec, {}).version == "v0"


def test_a_router_that_promotes_natively_needs_no_promote_action():
    lambda_router = {"type": "lambda_alias", "conn_id": "aws_default", "settings": {"function_name": "api", "alias": "live"}}
    spec = parse_spec(spec_with(router=lambda_router, promote=...), "web.yaml")
    assert spec.promote is None


def test_safety_defaults_and_derived_timeouts():
    spec = parse_spec(MINIMAL, "web.yaml")
    assert spec.rollback_deadline == 900
    assert parse_spec(spec_with(rollback_deadline="5m"), "web.yaml").rollback_deadline == 300
    # Without approval a run may still ask before 100% (conf adds it); with approval, at the spec's points.
    assert spec.approval_points == [100]
    assert parse_spec(spec_with(approval={"before": [25, 100]}), "web.yaml").approval_points == [25, 100]
    # A gate waits at most gate_timeout, or twice that when a check may hold; with plan: adapt (the
    # default), the longest timeout the evidence planner may give it.
    never_holds = [{"name": "e", "kind": "error_rate", "on_no_data": "rollback", "on_error": "rollback",
                    "on_inconclusive": "rollback"}]
    assert parse_spec(spec_with(checks=never_holds, plan="off"), "web.yaml").gate_task_timeout == spec.gate_timeout
    holds = [{**never_holds[0], "on_no_data": "hold"}]
    assert parse_spec(spec_with(checks=holds, plan="off"), "web.yaml").gate_task_timeout == 2 * spec.gate_timeout
    assert parse_spec(spec_with(checks=holds), "web.yaml").gate_task_timeout == 2 * spec.plan_max_gate_timeout


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
