"""Error rendering and the checks that need the whole spec: every issue reads ``field[i].name=value: message``.

``spec_issues(spec)`` lists what pydantic cannot see (step order, timing, duplicate names, backend
settings, a router that cannot promote); ``pydantic_issues(err)`` renders a ``ValidationError`` the
same way, without the tags pydantic puts into a tagged union's locations.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, get_args, get_origin

from pydantic import ValidationError

from canary_operators.exceptions import SpecError
from canary_operators.spec.checks import BusinessCheck
from canary_operators.spec.fields import STEPS_RULE, VERSION_PATTERN
from canary_operators.spec.release import BackendSpec, ReleaseSpec


def _loc(parts: tuple) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _issue(loc: str, value: Any, message: str, show_value: bool = True) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    shown = f"={value}" if show_value and isinstance(value, (int, float, str)) and not isinstance(value, bool) else ""
    return f"{loc}{shown}: {message}"


def pydantic_issues(err: ValidationError) -> list[str]:
    issues = []
    for e in err.errors():
        loc = _without_union_tags(e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        issues.append(_issue(_loc(loc) or "(top level)", e.get("input"), msg, e["type"] != "extra_forbidden"))
    return issues


def union_tags(annotation: Any) -> frozenset[str]:
    """The tags of every tagged union in a field's annotation (also inside ``Optional`` or ``list``),
    read from the members' discriminator fields, so a new check kind or action type is covered."""
    if get_origin(annotation) is Annotated:
        inner, *meta = get_args(annotation)
        key = next((m.discriminator for m in meta if isinstance(getattr(m, "discriminator", None), str)), None)
        if key is not None:
            return frozenset(tag for member in get_args(inner) for tag in get_args(member.model_fields[key].annotation))
        return union_tags(inner)
    return frozenset().union(*(union_tags(arg) for arg in get_args(annotation)))


# Per top-level field holding a tagged union (checks, deploy, promote, ...), the tags pydantic may
# put into its error locations.
UNION_TAGS: dict[str, frozenset[str]] = {
    name: tags for name, field in ReleaseSpec.model_fields.items() if (tags := union_tags(field.annotation))
}


def _without_union_tags(loc: tuple) -> tuple:
    """Drop the tag pydantic adds after a tagged union (checks[0].latency.quantile → checks[0].quantile),
    also inside a target (targets[0].deploy.webhook.conn_id → targets[0].deploy.conn_id)."""
    parts = list(loc)
    if len(parts) > 2 and parts[0] == "targets" and isinstance(parts[1], int):  # a target's fields are the spec's
        return (*parts[:2], *_without_union_tags(tuple(parts[2:])))
    tags = UNION_TAGS.get(parts[0], frozenset()) if parts else frozenset()
    at = 2 if len(parts) > 1 and isinstance(parts[1], int) else 1  # after the list index, if any
    if len(parts) > at and parts[at] in tags:
        del parts[at]
    return tuple(parts)


    return tuple(parts)


def spec_issues(spec: ReleaseSpec) -> list[str]:
    from canary_operators.metrics import provider_class
    from canary_operators.routers import router_class

    issues = []
    previous = 0
    for i, step in enumerate(spec.steps):
        if not (0 < step <= 100) or step <= previous or (i == len(spec.steps) - 1 and step != 100):
            issues.append(_issue(f"steps[{i}]", step, STEPS_RULE))
            break
        previous = step
    if not spec.steps:
        issues.append(_issue("steps", "[]", STEPS_RULE, show_value=False))
    elif not spec.gate_steps:
        issues.append(_issue("steps", str(spec.steps), "needs at least one step below 100: with no gate before "
                             "promotion, the new version would get all traffic unjudged", show_value=False))
    if spec.settle_time >= spec.bake_time:
        issues.append(_issue("settle_time", spec.settle_time, f"must be shorter than bake_time ({spec.bake_time:g}s)"))
    if spec.gate_timeout <= spec.bake_time:
        issues.append(_issue("gate_timeout", spec.gate_timeout, f"must be longer than bake_time ({spec.bake_time:g}s)"))
    if spec.poke_interval <= 0:
        issues.append(_issue("poke_interval", spec.poke_interval, "must be more than 0"))
    if spec.stale_after is not None and spec.stale_after <= 2 * spec.poke_interval:
        issues.append(_issue("stale_after", spec.stale_after, f"must be longer than two gate looks "
                             f"(2 × poke_interval = {2 * spec.poke_interval:g}s), or the guard resets live gates"))
    seen: set[str] = set()
    for i, check in enumerate(spec.checks):
        if check.name in seen:
            issues.append(_issue(f"checks[{i}].name", check.name, "duplicate check name"))
        seen.add(check.name)
        if isinstance(check, BusinessCheck):
            if check.min_ratio is None and check.max_ratio is None:
                issues.append(_issue(f"checks[{i}]", None, "a business check needs min_ratio or max_ratio"))
            if check.metric is None and check.query is None:
                issues.append(_issue(f"checks[{i}]", None, "a business check needs metric or query"))
    if spec.approval is not None:
        for i, step in enumerate(spec.approval.before):
            if step not in spec.steps:
                issues.append(_issue(f"approval.before[{i}]", step, f"must be one of the steps {spec.steps}"))
    for version_field in ("default_version", "stable_version"):
        value = getattr(spec, version_field)
        if value is not None and not VERSION_PATTERN.fullmatch(value):
            issues.append(_issue(version_field, value, f"must match {VERSION_PATTERN.pattern}"))
    if spec.schedule is not None:
        issues.extend(_schedule_issues(spec.schedule))
    for field, lookup in (("router", router_class), ("metrics", provider_class)):
        backend: BackendSpec | None = getattr(spec, field)
        if backend is None:
            if not spec.targets:  # with targets, each target's own (or this default) is checked per target
                issues.append(_issue(field, None, "Field required"))
            continue
        try:
            cls = lookup(backend.type)
        except SpecError as e:
            issues.append(_issue(f"{field}.type", backend.type, str(e)))
            continue
        issues.extend(_issue(f"{field}.settings{loc}", value, "must be a finite number")
                      for loc, value in _non_finite(backend.settings))
        try:
            cls.settings_model.model_validate(backend.settings, strict=True)
        except ValidationError as e:
            issues.extend(f"{field}.settings.{i}" for i in pydantic_issues(e))
        if cls.needs_connection and not backend.conn_id:
            issues.append(_issue(f"{field}.conn_id", None, f"required by {backend.type}"))
        if field == "router" and spec.promote is None and not spec.targets and not getattr(cls, "promotes_natively", False):
            issues.append(_issue("promote", None, f"required: router {backend.type} cannot promote by itself, and "
                                 "without a promote action the new version would serve all traffic from the canary "
                                 "slot; give the action that puts the version into the stable slot"))
    if spec.targets or spec.target_of or spec.waves is not None or spec.abort or spec.strategy != "lockstep":
        from canary_operators.spec.targets import targets_issues

        issues.extend(targets_issues(spec, issues))
    return issues


def _non_finite(data: Any, loc: str = ""):
    """Every NaN or infinite number in free-form ``settings``, with where it is."""
    if isinstance(data, float) and not math.isfinite(data):
        yield loc, str(data)
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from _non_finite(value, f"{loc}.{key}")
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _non_finite(value, f"{loc}[{i}]")


def _schedule_issues(schedule: str) -> list[str]:
    if schedule.startswith("@"):
        known = {"@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly", "@annually"}
        return [] if schedule in known else [_issue("schedule", schedule, f"unknown preset; use one of {sorted(known)}")]
    from croniter import croniter

    return [] if croniter.is_valid(schedule) else [_issue("schedule", schedule, "not a valid cron expression")]

