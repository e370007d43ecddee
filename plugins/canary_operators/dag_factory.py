"""Spec files → validated ReleaseSpecs → one DAG each. One bad spec never stops the others.

For steps [1, 5, 25, 50, 100]::

    preflight → (deploy_canary) → shift_to_1 → gate_1 → … → gate_50 → (approve_100) → promote → complete_rollout
    rollback (one_failed) ← every deploy, shift, gate, approve and promote task

The leaves are ``complete_rollout`` and ``rollback``, so a rolled-back run ends failed.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.sdk import DAG, Param, TriggerRule, chain

from canary_operators.exceptions import SpecError
from canary_operators.operators import ApproveStep, CompleteRollout, DeployCanary, MetricGate, Preflight, Promote, Rollback, ShiftTraffic
from canary_operators.operators.common import PREFLIGHT_TASK
from canary_operators.spec import VERSION_PATTERN, ReleaseSpec, load_spec

log = logging.getLogger(__name__)
RELEASES_DIR_ENV = "CANARY_RELEASES_DIR"
START_DATE = datetime(2024, 1, 1, tzinfo=timezone.utc)


class InvalidReleaseSpecs(DAG):
    """Carries spec errors into Airflow's import errors: it refuses to be bagged, with the message.

    Airflow records the error against the factory file and still loads the file's other DAGs.
    """

    def __init__(self, errors: list[str]):
        super().__init__(dag_id="canary_invalid_release_specs", schedule=None, start_date=START_DATE)
        self.spec_errors = errors

    def validate(self):
        raise SpecError("\n".join(self.spec_errors))


def _params(spec: ReleaseSpec) -> dict:
    """The trigger form. The API refuses conf that breaks these schemas with HTTP 400."""
    needs_version = spec.default_version is None and spec.candidate_variable is None
    version_schema = dict(type=["null", "string"], pattern=VERSION_PATTERN.pattern)
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
            description=f"Canary weights in %, a subset of the spec's {spec.steps}, ending at 100. Empty: all of them.",
            type=["null", "array"], items={"type": "integer", "enum": spec.steps}, uniqueItems=True, minItems=1,
            contains={"const": 100},
        ),
        "bake_time": Param(
            None, title="Bake time in seconds (override)", section="Rollout",
            description=f"Minimum time at each step before its gate may pass. Empty: the spec's {spec.bake_time:g}s.",
            type=["null", "integer"], minimum=int(spec.settle_time) + 1, maximum=int(spec.gate_timeout) - 1,
        ),
        "dry_run": Param(
            False, type="boolean", title="Dry run", section="Safety",
            description="Decide and report, but move no traffic and run no deploy, promote or rollback action.",
        ),
    }
    if spec.approval is not None:
        params["approval"] = Param(
            True, type="boolean", title="Ask for approval", section="Safety",
            description=f"Ask a person before {', '.join(f'{s}%' for s in spec.approval.before)}, with the gates' evidence.",
        )
    return params


def build_dag(spec: ReleaseSpec, source: str = "") -> DAG:
    """The canary DAG for one validated spec."""
    doc = (
        f"Canary release of **{spec.name}** ({source}).\n\n{spec.description}\n\n"
        f"Steps: {' → '.join(f'{s}%' for s in spec.steps)}; bake {spec.bake_time:g}s, gate timeout {spec.gate_timeout:g}s; "
        f"router `{spec.router.type}`, metrics `{spec.metrics.type}`; checks: {', '.join(c.name for c in spec.checks)}."
    )
    with DAG(
        dag_id=spec.dag_id,
        description=(spec.description or f"Canary release of {spec.name}")[:200],
        doc_md=doc,
        schedule=spec.schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,  # one release at a time per service
        tags=["canary", *spec.tags],
        params=_params(spec),
        default_args={"owner": spec.owner, "retries": spec.retries, "retry_delay": timedelta(seconds=spec.retry_delay)},
    ) as dag:
        path = [Preflight(task_id=PREFLIGHT_TASK, release=spec)]
        if spec.deploy is not None:
            path.append(DeployCanary(task_id="deploy_canary", release=spec))
        approve_before = set(spec.approval.before) if spec.approval else set()
        gate_ids: list[str] = []
        for weight in spec.steps:
            if weight in approve_before:
                path.append(ApproveStep(task_id=f"approve_{weight}", release=spec, weight=weight, gate_task_ids=list(gate_ids)))
            if weight == 100:
                break
            shift = ShiftTraffic(task_id=f"shift_to_{weight}", release=spec, weight=weight)
            gate = MetricGate(task_id=f"gate_{weight}", release=spec, weight=weight, shift_task_id=shift.task_id)
            path += [shift, gate]
            gate_ids.append(gate.task_id)
        promote = Promote(task_id="promote", release=spec)
        path.append(promote)
        watched = path[1:]
        path.append(CompleteRollout(task_id="complete_rollout", release=spec, promote_task_id=promote.task_id, gate_task_ids=gate_ids))
        chain(*path)
        rollback = Rollback(
            task_id="rollback",
            release=spec,
            watched_task_ids=[t.task_id for t in watched],
            trigger_rule=TriggerRule.ONE_FAILED,
            retries=max(spec.retries, 3),
            retry_delay=timedelta(seconds=2),
        )
        watched >> rollback
    return dag


def spec_files(releases_dir: Path) -> list[Path]:
    return sorted(p for p in releases_dir.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))


def build_dags(releases_dir: Path | str | None = None, only_dag_id: str | None = None) -> dict[str, DAG]:
    """Every spec's DAG by dag_id; invalid specs are gathered into one ``InvalidReleaseSpecs``."""
    releases_dir = Path(releases_dir or os.environ.get(RELEASES_DIR_ENV) or default_releases_dir())
    dags: dict[str, DAG] = {}
    errors: list[str] = []
    for path in spec_files(releases_dir):
        if only_dag_id and only_dag_id != f"canary_{path.stem}":
            continue  # a task run needs only its own DAG
        try:
            spec = load_spec(path)
            dags[spec.dag_id] = build_dag(spec, source=path.name)
        except SpecError as e:
            log.error("skipping release spec: %s", e)
            errors.append(str(e))
    if errors:
        dags["canary_invalid_release_specs"] = InvalidReleaseSpecs(errors)
    return dags


def default_releases_dir() -> Path:
    """``include/releases`` of the project (Astronomer layout: beside ``dags/`` and ``plugins/``)."""
    return Path(__file__).resolve().parents[2] / "include" / "releases"
