"""A run's conf: what one DAG run releases and how, checked against its spec (conf may only add safety)."""

from __future__ import annotations

from pydantic import Field

from canary_operators.exceptions import SpecError
from canary_operators.spec.fields import VERSION_PATTERN, _Strict
from canary_operators.spec.release import ReleaseSpec


class RunConf(_Strict):
    """What one DAG run releases and how, resolved from conf, the last promotion and the spec."""

    release: str
    version: str
    stable_version: str
    steps: list[int] = Field(default_factory=list)  # the weights this run moves through
    bake_time: float | None = None  # overrides the spec's minimum bake for this run
    dry_run: bool = False  # decide and report, move no traffic, run no action
    approval: bool = False  # ask a person at the approval points (the spec's, or before 100%)
    force_reset: bool = False  # preflight may put a canary left by another run back to 0% first

    def takes_step(self, weight: int) -> bool:
        return not self.steps or weight in self.steps


CONF_KEYS = {"version", "stable_version", "steps", "bake_time", "dry_run", "approval", "force_reset"}


def resolve_run_conf(
    spec: ReleaseSpec, conf: dict | None, last_promoted: str | None = None, candidate: str | None = None
) -> RunConf:
    """Version: conf > candidate (scheduled runs) > spec.default_version.
    Stable: conf > last promoted > spec.stable_version. Raises SpecError naming the conf key."""
    conf = {k: v for k, v in (conf or {}).items() if v is not None}
    unknown = sorted(set(conf) - CONF_KEYS)
    if unknown:
        raise SpecError(f"conf.{unknown[0]}: unknown key; allowed: {sorted(CONF_KEYS)}")
    version = conf.get("version") or candidate or spec.default_version
    stable = conf.get("stable_version") or last_promoted or spec.stable_version
    for key, value in (("version", version), ("stable_version", stable)):
        if value is None:
            raise SpecError(f"conf.{key}: required (the spec sets no default)")
        if not isinstance(value, str) or not VERSION_PATTERN.fullmatch(value):
            raise SpecError(f"conf.{key}={value!r}: must match {VERSION_PATTERN.pattern}")
    # Conf may only make a release safer: skip steps while a gate remains, lengthen the bake,
    # add approval. It may not remove the spec's gates, approval or bake time.
    steps = conf.get("steps") or list(spec.steps)
    if (not isinstance(steps, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in steps)
            or steps != sorted(set(steps)) or steps[-1] != 100 or not set(steps) <= set(spec.steps)):
        raise SpecError(f"conf.steps={steps!r}: must be strictly increasing, end at 100, and use only the spec's steps {spec.steps}")
    if len(steps) < 2:
        raise SpecError(f"conf.steps={steps!r}: must keep at least one step below 100, so a gate judges the "
                        "canary before it gets all traffic")
    bake_time = conf.get("bake_time")
    if bake_time is not None:
        if (isinstance(bake_time, bool) or not isinstance(bake_time, (int, float)) or bake_time != bake_time
                or not spec.bake_time <= bake_time < spec.gate_timeout):
            raise SpecError(f"conf.bake_time={bake_time!r}: must be seconds from the spec's bake_time ({spec.bake_time:g}; "
                            f"conf may only lengthen it) up to below gate_timeout ({spec.gate_timeout:g})")
    for key in ("dry_run", "approval", "force_reset"):
        if key in conf and not isinstance(conf[key], bool):
            raise SpecError(f"conf.{key}={conf[key]!r}: must be true or false")
    required = spec.approval is not None and spec.approval.required
    if required and conf.get("approval") is False:
        raise SpecError("conf.approval=false: the spec requires approval, and conf may only add safety, not remove it")
    approval = required or conf.get("approval", False)
    return RunConf(release=spec.name, version=version, stable_version=stable, steps=steps,
                   bake_time=None if bake_time is None else float(bake_time),
                   dry_run=conf.get("dry_run", False), approval=approval, force_reset=conf.get("force_reset", False))
