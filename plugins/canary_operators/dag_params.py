"""A release DAG's params: the trigger form, with the evidence planner's static plan in its help.

The API refuses conf that breaks these schemas with HTTP 400; ``resolve_run_conf`` checks the
conf again against the spec at run time.
"""

from __future__ import annotations

import functools
import json
import logging
import math

from airflow.sdk import Param

from canary_operators.planner import form_text
from canary_operators.spec import VERSION_SCHEMA_PATTERN, ReleaseSpec

log = logging.getLogger(__name__)

# What the evidence planner reads of a spec: specs that agree on these share one static plan.
_PLAN_FIELDS = {"steps", "bake_time", "gate_timeout", "settle_time", "evidence_at", "plan", "plan_max_gate_timeout", "checks"}


@functools.lru_cache(maxsize=1024)
def _static_plan(fields_json: str) -> str:
    spec = ReleaseSpec.model_validate({**json.loads(fields_json), "name": "plan", "router": {"type": "-"},
                                       "metrics": {"type": "-"}})
    return form_text(spec)


def static_plan(spec: ReleaseSpec) -> str:
    """The evidence planner's short plan at a few traffic levels, from the spec alone (the trigger
    form); empty with plan: off. Cached: parsing many specs plans each distinct setting once."""
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
