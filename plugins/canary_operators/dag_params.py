"""A release DAG's params: the trigger form, with the evidence planner's static plan in its help.

The API refuses conf that breaks these schemas with HTTP 400; ``resolve_run_conf`` checks the
conf again against the spec at run time.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
from pathlib import Path

from airflow.sdk import Param

from canary_operators.planner import form_text
from canary_operators.spec import VERSION_SCHEMA_PATTERN, ReleaseSpec

log = logging.getLogger(__name__)

# What the evidence planner reads of a spec: specs that agree on these share one static plan.
_PLAN_FIELDS = {"steps", "bake_time", "gate_timeout", "settle_time", "evidence_at", "plan", "plan_max_gate_timeout", "checks"}


PLAN_CACHE_ENV = "CANARY_PLAN_CACHE_DIR"


def plan_cache_dir() -> Path:
    """Where static plans are kept between parses: ``$CANARY_PLAN_CACHE_DIR``, else
    ``$AIRFLOW_HOME/cache/canary_form_plans``."""
    if os.environ.get(PLAN_CACHE_ENV):
        return Path(os.environ[PLAN_CACHE_ENV])
    return Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow") / "cache" / "canary_form_plans"


@functools.lru_cache(maxsize=1)
def _code_fingerprint() -> str:
    """A hash of this package's source: any change to the planner, the judge or the spec models
    plans again."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(path.relative_to(Path(__file__).parent).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1024)
def _static_plan(fields_json: str) -> str:
    # Planning takes about 5 ms a spec, and the DAG processor parses in a fresh process each
    # time: 1,000 distinct specs would add 5 s to every parse. So plans are also kept on disk,
    # keyed by what they are planned from and by the code that plans them.
    key = hashlib.sha256(f"{_code_fingerprint()}\0{fields_json}".encode()).hexdigest()
    cached = plan_cache_dir() / f"{key}.txt"
    try:
        return cached.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        pass  # not planned yet, or unreadable: plan again
    spec = ReleaseSpec.model_validate({**json.loads(fields_json), "name": "plan", "router": {"type": "-"},
                                       "metrics": {"type": "-"}})
    text = form_text(spec)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = cached.with_name(f".{key}.{os.getpid()}.tmp")
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, cached)  # readers see the whole text or none
    except OSError as e:
        log.debug("static plan not cached in %s: %s", cached.parent, e)
    return text


def static_plan(spec: ReleaseSpec) -> str:
    """The evidence planner's short plan at a few traffic levels, from the spec alone (the trigger
    form); empty with plan: off. Cached in the process and on disk (``plan_cache_dir``): parsing
    many specs plans each distinct setting once."""
    if spec.plan == "off":
        return ""
    try:
        return _static_plan(spec.model_dump_json(include=_PLAN_FIELDS))
    except Exception:  # noqa: BLE001 - advice only; never a reason for a spec's DAG not to load
        log.exception("evidence planner: no static plan for %s", spec.name)
        return ""


def trigger_form(spec: ReleaseSpec) -> dict:
    """The trigger form. The API refuses conf that breaks these schemas with HTTP 400."""
    needs_version = spec.default_version is None and spec.candidate_variable is None
    version_schema = dict(type=["null", "string"], pattern=VERSION_SCHEMA_PATTERN)
    params = {
        "version": Param(
            spec.default_version, title="Version to release", section="Release",
            description="The canary's version, as it appears in the metrics' version label."
            + (" Required." if needs_version else " Empty: the candidate Variable or the spec's default."),
            **(dict(version_schema, type="string") if needs_version else version_schema),
        ),
        "stable_version": Param(
            None, title="Stable version", section="Release",
            description="The baseline's version. Empty: the last promoted version, else the spec's stable_version.",
            **version_schema,
        ),
        "steps": Param(
            None, title="Steps (override)", section="Rollout",
            description=f"Canary weights in %, a subset of the spec's {spec.steps}, ending at 100. Empty: all of them. "
                        + static_plan(spec),
            type=["null", "array"], items={"type": "integer", "enum": spec.steps}, uniqueItems=True, minItems=2,
            allOf=[{"contains": {"const": 100}}, {"contains": {"maximum": 99}}],
        ),
        "bake_time": Param(
            None, title="Bake time in seconds (override)", section="Rollout",
            description=f"Minimum time at each step before its gate may pass; only longer than the spec's "
                        f"{spec.bake_time:g}s. Empty: the spec's.",
            type=["null", "integer"], minimum=math.ceil(spec.bake_time), maximum=math.ceil(spec.gate_timeout) - 1,
        ),
        "dry_run": Param(
            False, type="boolean", title="Dry run", section="Safety",
            description="Decide and report, but move no traffic and run no deploy, promote or rollback action.",
        ),
    }
    points = ", ".join(f"{s}%" for s in spec.approval_points)
    required = spec.approval is not None and spec.approval.required
    params["approval"] = Param(
        required, title="Ask for approval", section="Safety",
        description=f"Ask a person before {points}, with the gates' evidence." + (" The spec requires it." if required else ""),
        **(dict(type="boolean", enum=[True]) if required else dict(type="boolean")),
    )
    params["force_reset"] = Param(
        False, type="boolean", title="Force reset", section="Safety",
        description="If another run left the canary above 0%, put it back to 0% first instead of refusing to start.",
    )
    return params
