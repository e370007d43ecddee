"""Specs with targets: each target becomes a spec of its own, and every mistake names targets[i]."""

from __future__ import annotations

import pytest

from canary_operators.exceptions import SpecError
from canary_operators.spec import parse_spec
from canary_operators.spec.targets import abort_policy, release_names, router_claims, target_releases


def haproxy(backend: str) -> dict:
    return {"type": "haproxy", "conn_id": "h", "settings": {"backend": backend}}


def prometheus(job: str) -> dict:
    return {"type": "prometheus", "conn_id": "p", "settings": {"labels": {"job": job}}}


BASE = {
    "name": "shop",
    "stable_version": "v1",
    "steps": [5, 50, 100],
    "promote": {"type": "command", "command": ["deploy-stable", "{version}"]},
    "targets": [
        {"name": "eu", "router": haproxy("eu"), "metrics": prometheus("eu")},
        {"name": "us", "router": haproxy("us"), "metrics": prometheus("us"), "stable_version": "v0"},
    ],
}


def spec(**changes):
    data = {**BASE, **changes}
    return parse_spec({k: v for k, v in data.items() if v is not ...}, "shop.yaml")


def test_each_target_is_the_spec_with_its_own_fields():
    eu, us = target_releases(spec()).values()
    assert (eu.name, us.name) == ("shop__eu", "shop__us")  # their status records and stable-version Variables
    assert eu.dag_id == us.dag_id == "canary_shop"  # one DAG for the release
    assert eu.router.settings == {"backend": "eu"} and us.metrics.settings == {"labels": {"job": "us"}}
    assert (eu.stable_version, us.stable_version) == ("v1", "v0")  # a target's own value wins
    assert eu.steps == us.steps == [5, 50, 100] and eu.promote == us.promote  # the rest is inherited
    assert eu.targets == [] and eu.target_of == "shop"
    assert release_names(spec()) == ["shop__eu", "shop__us"]
    assert len(set(router_claims(spec()))) == 2


def test_a_target_inherits_the_spec_router_and_may_drop_an_action():
    s = spec(router=haproxy("eu"), metrics=prometheus("all"),
             targets=[{"name": "eu"}, {"name": "us", "router": haproxy("us"), "deploy": None}],
             deploy={"type": "command", "command": ["deploy", "{version}"]})
    eu, us = target_releases(s).values()
    assert eu.router.settings["backend"] == "eu" and eu.metrics.settings["labels"] == {"job": "all"}
    assert eu.deploy is not None and us.deploy is None  # an explicit null replaces the spec's default


def test_a_derived_target_spec_round_trips_as_the_trigger_and_the_guard_rebuild_it():
    from canary_operators.spec import ReleaseSpec

    eu = target_releases(spec())["eu"]
    assert ReleaseSpec.model_validate(eu.model_dump(mode="json")) == eu


def test_a_spec_without_targets_is_unchanged():
    from tests.spec.minimal import spec_with

    plain = parse_spec(spec_with(), "web.yaml")
    assert plain.targets == [] and plain.dag_id == "canary_web" and release_names(plain) == ["web"]
    assert abort_policy(plain) == "all"


@pytest.mark.parametrize("changes, message", [
    (dict(targets=[{"name": "eu", "router": haproxy("eu")}]), "targets[0].metrics: Field required"),
    (dict(targets=[{"name": "eu", "metrics": prometheus("eu")}]), "targets[0].router: Field required"),
    (dict(targets=[{"name": "eu", "router": haproxy("x"), "metrics": prometheus("eu")},
                   {"name": "eu", "router": haproxy("y"), "metrics": prometheus("eu")}]), "targets[1].name=eu: duplicate target name"),
    (dict(targets=[{"name": "eu", "router": haproxy("x"), "metrics": prometheus("eu")},
                   {"name": "us", "router": haproxy("x"), "metrics": prometheus("us")}]),
     "targets[1].router: the same traffic target as targets[0]"),
    (dict(targets=[{"name": "EU", "router": haproxy("x"), "metrics": prometheus("eu")}]), "targets[0].name=EU: String should match"),
    (dict(targets=[{"name": "eu", "router": {"type": "haproxy", "conn_id": "h", "settings": {}}, "metrics": prometheus("eu")}]),
     "targets[0].router.settings.backend: Field required"),
    (dict(targets=[{"name": "eu", "router": {"type": "nginx"}, "metrics": prometheus("eu")}]),
     "targets[0].router.type=nginx: unknown router type"),
    (dict(promote=..., targets=[{"name": "eu", "router": haproxy("x"), "metrics": prometheus("eu")}]), "targets[0].promote: required"),
    (dict(targets=[{"name": "eu", "router": haproxy("x"), "metrics": prometheus("eu"), "steps": [10, 100]}]),
     "targets[0].steps: lockstep moves every target to the same weight"),
    (dict(abort="wave"), "abort=wave: lockstep moves every target together"),
    (dict(waves=[["eu"], ["us"]]), "waves: only with strategy: waves"),
    (dict(strategy="waves", waves=[["eu"]]), "waves: every target goes in one wave; missing ['us']"),
    (dict(strategy="waves", waves=[["eu", "us"], ["us"]]), "waves[1][0]=us: in more than one wave"),
    (dict(strategy="waves", waves=[["eu"], ["mars", "us"]]), "waves[1][0]=mars: not a target"),
    (dict(strategy="waves", waves=[["eu", "us"], []]), "waves[1]: an empty wave"),
    (dict(strategy="sideways"), "strategy=sideways: Input should be 'lockstep' or 'waves'"),
    (dict(targets=..., router=haproxy("x"), metrics=prometheus("x"), strategy="waves"), "strategy: only with targets"),
    (dict(targets=..., router=haproxy("x"), metrics=prometheus("x"), target_of="other"), "target_of: unknown field"),
    (dict(targets=..., router=...), "router: Field required"),
    (dict(targets=[{"name": "eu", "router": haproxy("x"), "metrics": prometheus("eu"), "deploy": {"type": "webhook"}}]),
     "targets[0].deploy.conn_id: Field required"),  # no union tag (deploy.webhook.conn_id) in the location
    (dict(targets=[{"name": "eu", "router": haproxy("x"), "metrics": prometheus("eu"),
                    "checks": [{"name": "p", "kind": "latency", "quantile": 0.3}]}]), "targets[0].checks[0].quantile=0.3: "),
], ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None)
def test_a_wrong_target_is_an_error_naming_it(changes, message):
    with pytest.raises(SpecError) as e:
        spec(**changes)
    assert message in str(e.value) and str(e.value).startswith("shop.yaml: "), str(e.value)


def test_waves_may_give_a_later_wave_fewer_steps_and_default_to_one_target_per_wave():
    s = spec(strategy="waves", targets=[{"name": "eu", "router": haproxy("eu"), "metrics": prometheus("eu")},
                                        {"name": "us", "router": haproxy("us"), "metrics": prometheus("us"), "steps": [50, 100]}])
    assert target_releases(s)["us"].steps == [50, 100] and target_releases(s)["eu"].steps == [5, 50, 100]
    assert abort_policy(s) == "wave" and abort_policy(spec()) == "all"
