"""The DAG of a release with ``targets``: one task group per target, moved in lockstep or in waves.

Each target's tasks are the single-target DAG's tasks in a task group named after it
(``eu.preflight``, ``eu.shift_to_25``, ``eu.gate_25``, ``eu.promote``, ``eu.rollback``,
``eu.complete_rollout``), each built from the target's own spec (``spec.targets``), so every
operator, status record and undo works per target unchanged.

- ``lockstep``: a barrier between stages: no target goes to the next step (or deploys, or
  promotes) before every target's gate at this step passed. ``abort_all`` (``one_failed``) runs
  as soon as any task fails and stops every target.
- ``waves``: each target through its own steps; a wave starts when every target of the wave
  before it is promoted. ``abort_wave_N`` stops that wave, or with ``abort: all`` also undoes the
  promotion of the earlier waves.

Each target's ``rollback`` is a teardown after every task of the DAG (its reason names the task
that failed, in any target), and its ``complete_rollout`` fails the run unless the target was
promoted: only a run that promoted every target ends green.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, TaskGroup, TriggerRule, chain

from canary_operators.operators import ApproveStep, CompleteRollout, DeployCanary, MetricGate, Promote, Rollback, ShiftTraffic
from canary_operators.operators.common import PREFLIGHT_TASK
from canary_operators.operators.group_abort import GroupAbort
from canary_operators.operators.rollback import ROLLBACK_POOL, ROLLBACK_PRIORITY
from canary_operators.operators.target_preflight import TargetPreflight
from canary_operators.spec import ReleaseSpec
from canary_operators.spec.targets import abort_policy, target_releases
from canary_operators.targets.plan import abort_scope, wave_order


def _ride_out(spec: ReleaseSpec) -> dict:
    # As in the single-target DAG: infrastructure blips are retried with backoff; a failing
    # verdict raises AirflowFailException and is never retried.
    return dict(retries=max(spec.retries, 5), retry_delay=timedelta(seconds=max(spec.retry_delay, 5.0)),
                retry_exponential_backoff=2.0, max_retry_delay=timedelta(seconds=60))


def _target_stages(release: ReleaseSpec, target_names: list[str]) -> dict[str, list]:
    """The target's tasks by stage, in order: preflight, deploy, one stage per step, promote."""
    stages: dict[str, list] = {"preflight": [TargetPreflight(task_id=PREFLIGHT_TASK, release=release, target_names=target_names)]}
    if release.deploy is not None:
        stages["deploy"] = [DeployCanary(task_id="deploy_canary", release=release)]
    approve_before = set(release.approval_points)
    gate_ids: list[str] = []
    for weight in release.steps:
        if weight in approve_before:  # a stage of its own: in lockstep, every target is approved before any moves on
            stages[f"approve_{weight}"] = [ApproveStep(task_id=f"approve_{weight}", release=release, weight=weight,
                                                       gate_task_ids=list(gate_ids))]
        if weight == 100:
            stages["promote"] = [Promote(task_id="promote", release=release)]
            break
        shift = ShiftTraffic(task_id=f"shift_to_{weight}", release=release, weight=weight, **_ride_out(release))
        gate = MetricGate(task_id=f"gate_{weight}", release=release, weight=weight, shift_task_id=shift.task_id,
                          **_ride_out(release))
        stages[f"step_{weight}"] = [shift, gate]
        gate_ids.append(gate.task_id)
    for tasks in stages.values():
        chain(*tasks)
    keys = list(stages)
    for before, after in zip(keys, keys[1:]):
        stages[before][-1] >> stages[after][0]
    return stages


def _target_undo(release: ReleaseSpec, stages: dict[str, list]) -> tuple:
    """The target's teardowns: its undo, then its verdict (wired after every group exists)."""
    rollback = Rollback(
        task_id="rollback", release=release, watched_task_ids=[],
        pool=ROLLBACK_POOL, priority_weight=ROLLBACK_PRIORITY, weight_rule="absolute",
        retries=max(release.retries, 3), retry_delay=timedelta(seconds=2),
        retry_exponential_backoff=2.0, max_retry_delay=timedelta(seconds=30),
        execution_timeout=timedelta(seconds=release.rollback_deadline + 300),
    ).as_teardown()
    complete = CompleteRollout(
        task_id="complete_rollout", release=release, promote_task_id=stages["promote"][-1].task_id,
        gate_task_ids=[t.task_id for tasks in stages.values() for t in tasks if isinstance(t, MetricGate)],
    ).as_teardown(on_failure_fail_dagrun=True)
    return rollback, complete


def _barrier(stages_by_target: dict[str, dict[str, list]]) -> None:
    """Lockstep: every target's next stage waits for every target's current one."""
    order: list[str] = []
    for stages in stages_by_target.values():
        order += [k for k in stages if k not in order]
    for before, after in zip(order, order[1:]):
        ends = [s[before][-1] for s in stages_by_target.values() if before in s]
        starts = [s[after][0] for s in stages_by_target.values() if after in s]
        for end in ends:
            end >> starts


def build_targets_dag(spec: ReleaseSpec, source: str = "") -> DAG:
    from canary_operators.dag_factory import release_dag
    from canary_operators.dag_params import trigger_form

    releases = target_releases(spec)
    waves = wave_order(list(releases), spec.strategy, spec.waves)
    abort = abort_policy(spec)
    shape = ("lockstep: every step moves all targets together" if spec.strategy == "lockstep"
             else "waves: " + " → ".join("+".join(w) for w in waves))
    doc = (f"Canary release of **{spec.name}** ({source}) to {len(releases)} targets, {shape}; abort: {abort}.\n\n"
           f"{spec.description}\n\n"
           + "\n".join(f"- `{name}`: router `{r.router.type}`, metrics `{r.metrics.type}`, steps "
                       f"{' → '.join(f'{s}%' for s in r.steps)}" for name, r in releases.items()))
    with release_dag(spec, doc, "Each run plans again at each target's live traffic, in its preflight's log.",
                     description=f"Canary release of {spec.name} to {', '.join(releases)}", extra_tags=("targets",)) as dag:
        stages: dict[str, dict[str, list]] = {}
        undo: dict[str, tuple] = {}
        for name, release in releases.items():
            with TaskGroup(group_id=name, tooltip=f"{name}: {release.router.type} {release.router.conn_id or ''}"):
                stages[name] = _target_stages(release, list(releases))
                undo[name] = _target_undo(release, stages[name])
        if spec.strategy == "lockstep":
            _barrier(stages)
        else:
            for earlier, later in zip(waves, waves[1:]):
                for a in earlier:
                    stages[a]["promote"][-1] >> [stages[b]["preflight"][0] for b in later]
        work = [t for name in releases for tasks in stages[name].values() for t in tasks]
        aborts = []
        for i, wave in enumerate(waves):
            watched = [t for name in wave for tasks in stages[name].values() for t in tasks]
            group_abort = GroupAbort(
                task_id="abort_all" if spec.strategy == "lockstep" else f"abort_wave_{i + 1}",
                release=spec, scope={name: releases[name] for name in abort_scope(waves, i, abort)},
                watched_task_ids=[t.task_id for t in watched], trigger_rule=TriggerRule.ONE_FAILED,
                pool=ROLLBACK_POOL, priority_weight=ROLLBACK_PRIORITY, weight_rule="absolute",
                retries=2, retry_delay=timedelta(seconds=2),
            )
            watched >> group_abort
            aborts.append(group_abort)
        for name, (rollback, complete) in undo.items():
            # The undo's reason names the task that failed, in whichever target it was.
            rollback.watched_task_ids = [t.task_id for t in work]
            [*work, *aborts] >> rollback >> complete
            stages[name]["promote"][-1] >> complete
    dag.params = trigger_form(spec)  # after the tasks, as in dag_factory (parse time)
    return dag

