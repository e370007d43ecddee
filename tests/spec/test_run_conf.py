"""A run's conf, resolved against its spec: conf may only make a release safer."""

from __future__ import annotations

import pytest

from canary_operators.exceptions import SpecError
from canary_operators.spec import parse_spec, resolve_run_conf
from tests.spec.minimal import MINIMAL, spec_with


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
