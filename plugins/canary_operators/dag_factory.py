"""Spec files → validated ReleaseSpecs → one DAG each. One bad spec never stops the others.

For steps [1, 5, 25, 50, 100]::

    preflight → (deploy_canary) → shift_to_1 → gate_1 → … → gate_50 → approve_100 → promote
    rollback:         a teardown after every task above, so Airflow runs it however the run ends
    complete_rollout: a teardown after rollback; the only task that decides the run's state

``rollback`` decides from the status record and the router, and undoes nothing after a promotion.
``complete_rollout`` fails unless this run promoted the release (or had nothing to release, or was
a dry run that went through): a rolled-back run ends failed, also one marked failed or success by
hand, and only a promoted run succeeds. Teardowns run even when a user marks the run (Airflow
3.3 leaves them to finish and sets the run's state after them). ``approve_N`` asks only when the spec or the run's
conf wants approval. ``canary_guard`` sweeps every release for canaries no live run owns.

A spec that cannot be loaded (any error, not only a ``SpecError``) becomes a placeholder DAG of
its own, ``canary_<file name>``, that runs nothing: its description, doc and tags carry the error,
which names the file and field, and its one task fails with it. The factory file itself never
raises, because a real DAG processor marks every DAG of a file that raises as stale.

The trigger form (the DAG's params) is built in ``dag_params``.
"""

from __future__ import annotations

import logging
import os
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.sdk import DAG, BaseOperator, chain

from canary_operators.dag_params import static_plan, trigger_form
from canary_operators.exceptions import SpecError
from canary_operators.operators import ApproveStep, CompleteRollout, DeployCanary, MetricGate, Preflight, Promote, Rollback, ShiftTraffic
from canary_operators.operators.common import PREFLIGHT_TASK
from canary_operators.operators.rollback import ROLLBACK_POOL, ROLLBACK_PRIORITY
from canary_operators.spec import ReleaseSpec, display_path, load_spec
from canary_operators.spec.targets import router_claims

log = logging.getLogger(__name__)
RELEASES_DIR_ENV = "CANARY_RELEASES_DIR"
START_DATE = datetime(2024, 1, 1, tzinfo=timezone.utc)


INVALID_TAG = "invalid-spec"
FOLDER_ERRORS_DAG_ID = "canary_invalid_release_specs"  # errors of the folder, not of one file


class SpecErrorTask(BaseOperator):
    """The one task of a broken spec's placeholder DAG: it fails with the spec's error."""

    def __init__(self, *, error: str, **kwargs):
        super().__init__(**kwargs)
        self.error = error

    def execute(self, context):
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"this release spec is invalid; nothing was released:\n{self.error}")


def build_invalid_dag(dag_id: str, error: str) -> DAG:
    """A visible DAG for a spec that did not load: it runs nothing, and shows the error (file and
    field) as its description, its doc and in its one failing task."""
    first = error.splitlines()[0] if error else "invalid release spec"
    with DAG(
        dag_id=dag_id,
        description=f"INVALID RELEASE SPEC: {first}"[:1000],
        doc_md="**This release spec is invalid; the DAG runs nothing until it is fixed.**\n\n```\n" + error + "\n```",
        schedule=None,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        tags=["canary", INVALID_TAG],
        default_args={"owner": "airflow", "retries": 0},
    ) as dag:
        SpecErrorTask(task_id="spec_error", error=error)
    return dag


def invalid_dag_id(stem: str) -> str:
    """``canary_<stem>``: the id the spec's DAG would have, so the broken release shows in place."""
    return "canary_" + re.sub(r"[^A-Za-z0-9_.-]", "_", stem)[:200]


def release_dag(spec: ReleaseSpec, doc: str, plan_note: str, description: str, extra_tags: tuple = ()) -> DAG:
    """The DAG object every release gets (single or several targets): schedule, one run at a
    time, owner and retries from the spec, and the static plan appended to its docs."""
    plan = static_plan(spec)
    return DAG(
        dag_id=spec.dag_id,
        description=(spec.description or description)[:200],
        doc_md=f"{doc}\n\n{plan} {plan_note}" if plan else doc,
        schedule=spec.schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,  # one release at a time per service
        tags=["canary", *extra_tags, *spec.tags],
        default_args={"owner": spec.owner, "retries": spec.retries, "retry_delay": timedelta(seconds=spec.retry_delay)},
    )


def build_dag(spec: ReleaseSpec, source: str = "") -> DAG:
    """The canary DAG for one validated spec."""
    if spec.targets:  # several regions or clusters: one task group per target
        from canary_operators.targets.dag import build_targets_dag

        return build_targets_dag(spec, source)
    doc = (
        f"Canary release of **{spec.name}** ({source}).\n\n{spec.description}\n\n"
        f"Steps: {' → '.join(f'{s}%' for s in spec.steps)}; bake {spec.bake_time:g}s, gate timeout {spec.gate_timeout:g}s; "
        f"router `{spec.router.type}`, metrics `{spec.metrics.type}`; checks: {', '.join(c.name for c in spec.checks)}."
    )
    with release_dag(spec, doc, "Each run plans again at the live traffic, in preflight's log.",
                     description=f"Canary release of {spec.name}") as dag:
        # Infrastructure blips (the API server away for a minute) are retried with backoff; a
        # failing verdict raises AirflowFailException and is never retried.
        ride_out = dict(retries=max(spec.retries, 5), retry_delay=timedelta(seconds=max(spec.retry_delay, 5.0)),
                        retry_exponential_backoff=2.0, max_retry_delay=timedelta(seconds=60))
        path = [Preflight(task_id=PREFLIGHT_TASK, release=spec)]
        if spec.deploy is not None:
            path.append(DeployCanary(task_id="deploy_canary", release=spec))
        approve_before = set(spec.approval_points)
        gate_ids: list[str] = []
        for weight in spec.steps:
            if weight in approve_before:
                path.append(ApproveStep(task_id=f"approve_{weight}", release=spec, weight=weight, gate_task_ids=list(gate_ids)))
            if weight == 100:
                break
            shift = ShiftTraffic(task_id=f"shift_to_{weight}", release=spec, weight=weight, **ride_out)
            gate = MetricGate(task_id=f"gate_{weight}", release=spec, weight=weight, shift_task_id=shift.task_id, **ride_out)
            path += [shift, gate]
            gate_ids.append(gate.task_id)
        promote = Promote(task_id="promote", release=spec)
        path.append(promote)
        chain(*path)
        rollback = Rollback(
            task_id="rollback",
            release=spec,
            watched_task_ids=[t.task_id for t in path[1:]],
            pool=ROLLBACK_POOL,
            priority_weight=ROLLBACK_PRIORITY,
            weight_rule="absolute",
            retries=max(spec.retries, 3),
            retry_delay=timedelta(seconds=2),
            retry_exponential_backoff=2.0,
            max_retry_delay=timedelta(seconds=30),
            execution_timeout=timedelta(seconds=spec.rollback_deadline + 300),
        ).as_teardown()
        # The run's state is complete_rollout's alone: a teardown too, so it runs after the undo
        # however the run ended (even marked failed or success by hand), and it fails unless this
        # run promoted the release.
        complete = CompleteRollout(
            task_id="complete_rollout", release=spec, promote_task_id=promote.task_id, gate_task_ids=gate_ids,
        ).as_teardown(on_failure_fail_dagrun=True)
        path >> rollback >> complete
        promote >> complete
    # The trigger form goes on the DAG after its tasks: a task made inside the DAG keeps a copy of the
    # DAG's params, and Airflow's serializer re-validates each copy's JSON schemas (93% of the parse
    # time for many specs). A task reads the DAG's params anyway (process_params merges them first).
    dag.params = trigger_form(spec)
    return dag


GUARD_DAG_ID = "canary_guard"
GUARD_SCHEDULE_ENV = "CANARY_GUARD_SCHEDULE"


def guard_schedule(value: str | None) -> str | timedelta:
    """A cron expression or preset, or a duration such as ``30s`` (default: every minute)."""
    from canary_operators.durations import parse_duration

    value = (value or "").strip() or "* * * * *"
    try:
        return timedelta(seconds=parse_duration(value))
    except ValueError:
        return value


def build_guard_dag(specs: dict[str, Path]) -> DAG:
    """``canary_guard``: one mapped task per release spec, every minute by default."""
    from canary_operators.operators.guard_release import GuardRelease

    with DAG(
        dag_id=GUARD_DAG_ID,
        description="Puts canaries that no live run owns (paused, deleted, stuck runs) back on stable.",
        doc_md=__import__("canary_operators.guard", fromlist=["guard"]).__doc__,
        schedule=guard_schedule(os.environ.get(GUARD_SCHEDULE_ENV)),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        is_paused_upon_creation=False,  # a guard that starts paused guards nothing
        dagrun_timeout=timedelta(minutes=5),
        tags=["canary", "guard"],
        default_args={"owner": "airflow", "retries": 0, "execution_timeout": timedelta(minutes=2)},
    ) as dag:
        GuardRelease.partial(task_id="reconcile", map_index_template="{{ task.release_name }}").expand_kwargs(
            [{"release_name": name, "spec_path": str(path)} for name, path in sorted(specs.items())]
        )
    return dag


def guarded_names(path: Path) -> list[str]:
    """The release names ``canary_guard`` maps over for one spec file, from its text alone (not
    validated): ``<stem>__<target>`` per target when it lists targets by name, else ``<stem>``.

    The full parse and the guard's own task run both list them this way, so they agree on the
    mapped tasks, and a guard task run reads no spec in full (each task loads its own)."""
    from canary_operators.spec.loading import read_spec_text
    from canary_operators.spec.targets import target_release_name

    try:
        text = read_spec_text(path, display_path(path))
        if "targets" in text:  # else no YAML parse: most specs have one target
            import yaml

            from canary_operators.spec.loading import _refuse_many_aliases, _UniqueKeyLoader

            _refuse_many_aliases(text)
            targets = (yaml.load(text, Loader=_UniqueKeyLoader) or {}).get("targets")  # noqa: S506 (a safe loader)
            names = [t.get("name") for t in targets] if isinstance(targets, list) and all(isinstance(t, dict) for t in targets) else []
            if names and all(isinstance(n, str) and n for n in names) and len(set(names)) == len(names):
                return [target_release_name(path.stem, n) for n in names]
    except Exception as e:  # noqa: BLE001 - a file that cannot be listed is guarded by its name
        log.debug("canary_guard: %s listed by its name: %s", path, e)
    return [path.stem]


SPEC_SUFFIXES = (".yaml", ".yml")


def spec_files(releases_dir: Path) -> tuple[list[Path], dict[str, str]]:
    """The spec files, and an error per file stem that cannot be a spec: ``.yml``/``.yaml`` twins
    of one name, or a suffix in the wrong case (``.YAML`` would otherwise be silently ignored)."""
    by_stem: dict[str, list[Path]] = {}
    errors: dict[str, str] = {}
    for path in sorted(releases_dir.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in SPEC_SUFFIXES:
            continue
        if path.suffix not in SPEC_SUFFIXES:
            errors[path.stem] = (f"{display_path(path)}: (file name): suffix {path.suffix} is not read; "
                                 f"rename it to {path.stem}.yaml")
            continue
        by_stem.setdefault(path.stem, []).append(path)
    files = []
    for stem, paths in sorted(by_stem.items()):
        if len(paths) > 1:
            errors[stem] = (f"{display_path(paths[0])}: (file name): {' and '.join(p.name for p in paths)} "
                            "both define the release; keep one")
        elif stem not in errors:
            files.append(paths[0])
    return files, errors


def build_dags(releases_dir: Path | str | None = None, only_dag_id: str | None = None) -> dict[str, DAG]:
    """Every spec's DAG by dag_id. Each file stands alone: a spec that fails to load, for any
    reason, becomes its own placeholder DAG (``build_invalid_dag``), and the others and
    ``canary_guard`` are built as usual. Never raises for a spec's sake."""
    releases_dir = Path(releases_dir or os.environ.get(RELEASES_DIR_ENV) or default_releases_dir())
    dags: dict[str, DAG] = {}
    broken: dict[str, str] = {}  # placeholder dag_id → error
    guarded: dict[str, Path] = {}
    targets: dict[str, str] = {}  # router target → the spec file that claimed it
    want_guard = only_dag_id in (None, GUARD_DAG_ID)
    if not releases_dir.is_dir():
        message = (f"{releases_dir}: (folder): the releases folder does not exist or is not a folder; "
                   f"set {RELEASES_DIR_ENV} or create it")
        log.error("no release specs: %s", message)
        if only_dag_id in (None, FOLDER_ERRORS_DAG_ID):
            dags[FOLDER_ERRORS_DAG_ID] = build_invalid_dag(FOLDER_ERRORS_DAG_ID, message)
        return dags
    files, file_errors = spec_files(releases_dir)
    for stem, message in file_errors.items():
        broken[invalid_dag_id(stem)] = message
        guarded.setdefault(stem, releases_dir / f"{stem}.yaml")  # guarded by its recorded spec
    for path in files:
        if want_guard:
            guarded.update(dict.fromkeys(guarded_names(path), path))
        if only_dag_id and only_dag_id != invalid_dag_id(path.stem):
            continue  # a task run needs only its own DAG (the guard's: none, it lists the files)
        try:
            spec = load_spec(path)
            claims = router_claims(spec)  # one per target when the spec has targets
            for target in claims:
                if target in targets:
                    raise SpecError(f"{display_path(path)}: router: the same traffic target as {targets[target]}; one release "
                                    "per target, since the safe start and canary_guard judge a target by its one status record")
            targets.update(dict.fromkeys(claims, path.name))
            if only_dag_id in (None, spec.dag_id):
                dags[spec.dag_id] = build_dag(spec, source=path.name)
        except SpecError as e:
            log.error("invalid release spec: %s", e)
            broken[invalid_dag_id(path.stem)] = str(e)
        except Exception as e:  # noqa: BLE001 - any failure of one file is that file's error
            log.exception("release spec %s failed to load", path)
            broken[invalid_dag_id(path.stem)] = f"{display_path(path)}: (file): {type(e).__name__}: {e}"
    if want_guard and guarded:
        dags[GUARD_DAG_ID] = build_guard_dag(guarded)
    for dag_id, message in broken.items():
        if only_dag_id not in (None, dag_id):
            continue
        while dag_id in dags:  # a file name that sanitises to a valid spec's id
            dag_id += "_invalid"
        dags[dag_id] = build_invalid_dag(dag_id, message)
    return dags


def default_releases_dir() -> Path:
    """``include/releases`` of the project (Astronomer layout: beside ``dags/`` and ``plugins/``)."""
    return Path(__file__).resolve().parents[2] / "include" / "releases"
