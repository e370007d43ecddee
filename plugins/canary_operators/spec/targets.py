"""One release across several targets: each target becomes a ``ReleaseSpec`` of its own.

A spec with ``targets:`` (regions, clusters, load balancers) is one release of one version. Each
target gets the spec's fields, overridden by what the target sets, under the name
``<release>__<target>`` and with ``target_of`` naming the release (so its DAG is the release's).
Every operator, the status record, the undo and the guard then work per target as they work for
a single release. A spec without ``targets`` is one release, as before.

No Airflow import here.
"""

from __future__ import annotations

import json

from canary_operators.spec.release import ReleaseSpec

TARGET_SEPARATOR = "__"


def target_release_name(release: str, target: str) -> str:
    """``web`` + ``eu`` → ``web__eu``: the target's status record and stable-version Variable."""
    return f"{release}{TARGET_SEPARATOR}{target}"


def target_releases(spec: ReleaseSpec) -> dict[str, ReleaseSpec]:
    """Per target name, the spec that target is released with (in the spec's order). Fields the
    target sets (even to null) replace the spec's."""
    derived = {}
    for target in spec.targets:
        changes = {field: getattr(target, field) for field in target.model_fields_set if field != "name"}
        derived[target.name] = spec.model_copy(update={
            **changes, "name": target_release_name(spec.name, target.name), "target_of": spec.name,
            "targets": [], "strategy": "lockstep", "waves": None, "abort": None,
        })
    return derived


def release_names(spec: ReleaseSpec) -> list[str]:
    """The status records a spec writes: its own, or one per target."""
    return [target_release_name(spec.name, t.name) for t in spec.targets] or [spec.name]


def router_key(router) -> str:
    """What makes two routers the same traffic target."""
    return json.dumps([router.type, router.conn_id, router.settings], sort_keys=True, default=str)


def router_claims(spec: ReleaseSpec) -> list[str]:
    """Every traffic target the spec moves (one per target)."""
    if spec.targets:
        return [router_key(t.router) for t in target_releases(spec).values() if t.router is not None]
    return [router_key(spec.router)] if spec.router is not None else []


def abort_policy(spec: ReleaseSpec) -> str:
    """``all`` or ``wave``: lockstep always aborts every target; waves default to the failing wave."""
    return spec.abort or ("wave" if spec.strategy == "waves" else "all")


def targets_issues(spec: ReleaseSpec, top_issues: list[str]) -> list[str]:
    """What is wrong with the targets, each issue naming ``targets[i]`` or the field. Issues of a
    derived target that the spec itself already has (a bad step list) are not repeated."""
    from canary_operators.spec.validation import spec_issues

    issues = []
    if spec.target_of is not None:
        issues.append("target_of: unknown field")
    if not spec.targets:
        for field, value in (("strategy", spec.strategy if spec.strategy != "lockstep" else None),
                             ("abort", spec.abort), ("waves", spec.waves)):
            if value is not None:
                issues.append(f"{field}: only with targets")
        return issues
    names = [t.name for t in spec.targets]
    for i, name in enumerate(names):
        if name in names[:i]:
            issues.append(f"targets[{i}].name={name}: duplicate target name")
    derived = target_releases(spec)
    seen_routers: dict[str, int] = {}
    for i, target in enumerate(spec.targets):
        release = derived[target.name]
        own = spec_issues(release.model_copy(update={"target_of": None}))
        issues.extend(f"targets[{i}].{issue}" for issue in own if issue not in top_issues)
        if release.router is not None:
            first = seen_routers.setdefault(router_key(release.router), i)
            if first != i:
                issues.append(f"targets[{i}].router: the same traffic target as targets[{first}] "
                              "(each target moves its own traffic)")
        if spec.strategy == "lockstep" and "steps" in target.model_fields_set:
            issues.append(f"targets[{i}].steps: lockstep moves every target to the same weight; set steps once "
                          "for the spec, or use strategy: waves")
    if spec.strategy == "lockstep":
        if spec.waves is not None:
            issues.append("waves: only with strategy: waves")
        if spec.abort == "wave":
            issues.append("abort=wave: lockstep moves every target together, so a failure aborts all")
    elif spec.waves is not None:
        listed = [name for wave in spec.waves for name in wave]
        for w, wave in enumerate(spec.waves):
            if not wave:
                issues.append(f"waves[{w}]: an empty wave")
            for j, name in enumerate(wave):
                if name not in names:
                    issues.append(f"waves[{w}][{j}]={name}: not a target; targets are {names}")
                elif listed.count(name) > 1:
                    issues.append(f"waves[{w}][{j}]={name}: in more than one wave")
        missing = [n for n in names if n not in listed]
        if missing:
            issues.append(f"waves: every target goes in one wave; missing {missing}")
    return issues
