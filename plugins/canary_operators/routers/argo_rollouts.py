"""Argo Rollouts: move a canary Rollout through its own steps, in step with the DAG.

The Rollout owns the traffic split (through its own traffic router, or replica counts); this
router only tells the Argo Rollouts controller when to go on, the way ``kubectl argo rollouts``
does, by patching the Rollout's ``/status`` subresource:

- ``set_canary_weight(p)``, ``0 < p``: go on to the ``setWeight: p`` step. While the Rollout is
  paused at an earlier step it clears ``status.pauseConditions`` (the plugin's promote, guarded by
  the resourceVersion read, so it never skips a step someone else already resumed), then waits
  until the controller is paused again after ``setWeight: p``, and, when the Rollout reports
  ``status.canary.weights``, until the canary's weight is ``p``. Argo only moves forward: asking
  for a lower weight than the current step's is an error. ``100`` without a ``setWeight: 100``
  step means the end of the steps: the controller then makes the canary the stable revision.
- ``set_canary_weight(0)``: abort (``{"status": {"abort": true}}``); Argo puts all traffic back on
  the stable ReplicaSet.
- ``promote()``: full promotion (``{"status": {"promoteFull": true}}``), skipping what is left.

The canary's weight is read from status: ``status.canary.weights.canary.weight`` when Argo
reports it, else the ``setWeight`` of the current step (Argo's own ``GetCurrentSetWeight``). A
Rollout with no update in progress (``status.stableRS == status.currentPodHash``) has no canary:
0%. Because a finished update leaves no canary, ``apply(100)`` accepts "the update completed" as
the canary taking 100%.

The share of requests the canary should serve (``expected_share``, for the gate's sample-ratio
check) depends on how the Rollout splits traffic. With ``spec.strategy.canary.trafficRouting`` it
is the weight the controller set on the traffic router (``status.canary.weights.canary.weight``,
else the weight asked about). Without it the split is by replicas: the Service sends requests to
the ready pods of both ReplicaSets, so the share is the canary's ready pods over all ready pods,
which is not ``setWeight`` (at 20% of 4 replicas Argo runs 1 canary pod of 4, or, with maxSurge,
1 canary and 4 stable). The Rollout's status counts pods over all its ReplicaSets (``replicas``,
``readyReplicas``) and the canary's pods (``updatedReplicas``, the new ReplicaSet's pods) but not
the canary's ready pods, so when some pods are not ready the share is only known between bounds
(see ``_replica_share``); when no pod is ready the status cannot tell, and the weight is used
(logged).

Each gate step's ``setWeight`` must be followed by ``pause: {}`` (no duration), or Argo would move
on without waiting for the DAG's gate: ``check_online`` checks that for the run's steps, and
``check_release_steps(steps)`` checks that the Rollout's setWeights are exactly the release's.

A Rollout aborted by someone else (``status.abort``, phase ``Degraded``) while this router waits
is a RouterError that says so. After the update has completed, an abort can no longer undo it
(use ``kubectl argo rollouts undo``).

The deploy (a new pod template, e.g. a new image) is not done here: it is what starts the
Rollout's update, from your CD system or a ``command`` action.

RBAC: ``get`` on ``rollouts`` and ``patch`` on ``rollouts/status`` in API group ``argoproj.io``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

from pydantic import Field

from canary_operators.exceptions import RouterError, RouterRefused, WeightNotApplied
from canary_operators.routers.base import TrafficRouter
from canary_operators.routers.kubernetes import (
    DNS_SUBDOMAIN,
    MERGE_PATCH,
    Conflict,
    KubernetesApi,
    KubernetesSettings,
    argo_rollout,
)

log = logging.getLogger(__name__)


class ArgoRolloutsSettings(KubernetesSettings):
    rollout: str = Field(pattern=DNS_SUBDOMAIN)
    # How long the controller may take to reach a step (or abort, or promote) before it is an error.
    step_timeout_seconds: float = Field(default=300.0, gt=0)
    poll_seconds: float = Field(default=1.0, gt=0, le=60)


@dataclass(frozen=True)
class RolloutState:
    """What the router needs from a Rollout, read once."""

    obj: dict

    @property
    def spec(self) -> dict:
        return self.obj.get("spec") or {}

    @property
    def status(self) -> dict:
        return self.obj.get("status") or {}

    @property
    def canary(self) -> dict:
        return (self.spec.get("strategy") or {}).get("canary") or {}

    @property
    def steps(self) -> list[dict]:
        return self.canary.get("steps") or []

    @property
    def traffic_routed(self) -> bool:
        """True when a traffic router splits the requests; False when the replica counts do."""
        return bool(self.canary.get("trafficRouting"))

    @property
    def index(self) -> int:
        return int(self.status.get("currentStepIndex") or 0)

    @property
    def paused(self) -> bool:
        return bool(self.status.get("pauseConditions"))

    @property
    def aborted(self) -> bool:
        return bool(self.status.get("abort"))

    @property
    def updating(self) -> bool:
        current, stable = self.status.get("currentPodHash"), self.status.get("stableRS")
        return bool(current) and current != stable

    @property
    def status_weight(self) -> int | None:
        weight = ((((self.status.get("canary") or {}).get("weights") or {}).get("canary")) or {}).get("weight")
        return None if weight is None else int(weight)

    def set_weight(self) -> int:
        """Argo's ``GetCurrentSetWeight``: 0 when aborted, 100 after the last step, else the
        ``setWeight`` of the current step or the last one before it."""
        if self.aborted:
            return 0
        if self.index >= len(self.steps):
            return 100
        for step in reversed(self.steps[: self.index + 1]):
            if "setWeight" in step:
                return int(step["setWeight"])
        return 0

    def describe(self) -> str:
        phase = self.status.get("phase") or "unknown"
        message = self.status.get("message")
        return (f"step {self.index}/{len(self.steps)}, setWeight {self.set_weight()}%, phase {phase}"
                + (f": {message}" if message else ""))


class ArgoRolloutsRouter(TrafficRouter):
    type_name: ClassVar[str] = "argo_rollouts"
    promotes_natively: ClassVar[bool] = True
    settings_model = ArgoRolloutsSettings

    @cached_property
    def api(self) -> KubernetesApi:
        return KubernetesApi(self.conn_id, label="argo_rollouts", timeout=self.settings.timeout_seconds)

    @property
    def resource(self):
        return argo_rollout(self.settings.namespace, self.settings.rollout)

    def _state(self) -> RolloutState:
        return RolloutState(self.api.get(self.resource))

    # -- reading ----------------------------------------------------------------------------

    def get_canary_weight(self) -> int:
        state = self._state()
        if not state.updating and not state.aborted:
            return 0  # no update in progress: no canary
        if state.status_weight is not None:
            return state.status_weight
        return state.set_weight()

    def expected_share(self, percent: int) -> float:
        """The share of requests the canary should serve now: the traffic router's weight as the
        status reports it, or, for a replica-weighted canary, its share of the ready pods."""
        state = self._state()
        if state.traffic_routed:
            weight = state.status_weight
            return (percent if weight is None else weight) / 100
        share, note = self._replica_share(state, percent)
        if share is None:
            log.info("argo_rollouts: %s splits traffic by replicas but %s; expecting the canary to serve "
                     "its weight, %d%%", self.resource, note, percent)
            return percent / 100
        if note:
            log.info("argo_rollouts: %s: %s", self.resource, note)
        return share

    @staticmethod
    def _replica_share(state: RolloutState, percent: int) -> tuple[float | None, str]:
        """The canary's share of the ready pods of a Rollout without traffic routing, from its status:
        ``replicas`` (non-terminated pods of all its ReplicaSets), ``updatedReplicas`` (those of the
        canary's, the new, ReplicaSet) and ``readyReplicas`` (ready pods of all its ReplicaSets; the
        Service's endpoints are the ready pods). When all pods are ready the share is exact. When some
        are not, the status does not say whose they are: the canary has between
        ``ready - stable pods`` and ``min(canary pods, ready)`` of the ready ones, and the share is the
        weight held within those bounds, with a note. Returns ``(None, why)`` when the status cannot
        tell at all."""
        status = state.status
        if not state.updating:
            return None, "no update is in progress, so there is no canary ReplicaSet to count"
        total = int(status.get("replicas") or 0)  # the fields are omitted when 0
        ready = min(int(status.get("readyReplicas") or 0), total)
        if ready == 0:
            return None, f"its status reports no ready pods (readyReplicas 0 of {total} replicas)"
        canary = min(int(status.get("updatedReplicas") or 0), total)
        low, high = max(0, ready - (total - canary)), min(canary, ready)
        if low == high:
            return low / ready, ""
        share = min(max(percent / 100, low / ready), high / ready)
        return share, (f"{ready} of {total} pods are ready ({canary} canary) and the status does not say whose, so the "
                       f"canary serves between {low / ready:.1%} and {high / ready:.1%}; expecting {share:.1%}")

    def check_online(self) -> None:
        state = self._state()
        self._check_canary(state)
        steps = list(getattr(self.run, "steps", None) or []) if self.run is not None else []
        problems = self._step_problems(state, steps, strict=False) if steps else []
        if problems:
            raise RouterError(f"argo_rollouts: the steps of {self.resource} do not fit this run: " + "; ".join(problems))

    def check_release_steps(self, steps: list[int]) -> None:
        """Raise RouterError unless the Rollout's canary steps fit the release's ``steps``: the same
        ``setWeight`` values below 100, in the same order, each followed by ``pause: {}`` (no
        duration) before the next ``setWeight``, so Argo waits for every gate. Read-only."""
        state = self._state()
        self._check_canary(state)
        problems = self._step_problems(state, list(steps), strict=True)
        if problems:
            raise RouterError(f"argo_rollouts: the steps of {self.resource} do not match the release: " + "; ".join(problems))

    def _check_canary(self, state: RolloutState) -> None:
        if "canary" not in (state.spec.get("strategy") or {}):
            raise RouterError(f"argo_rollouts: {self.resource} does not use the canary strategy")
        if not any("setWeight" in s for s in state.steps):
            raise RouterError(f"argo_rollouts: {self.resource} has no setWeight steps")

    @staticmethod
    def _step_problems(state: RolloutState, steps: list[int], *, strict: bool) -> list[str]:
        rollout_steps = state.steps
        set_weights = [(i, int(s["setWeight"])) for i, s in enumerate(rollout_steps) if "setWeight" in s]
        gates = [s for s in steps if s < 100]
        theirs = [w for _, w in set_weights if w < 100]
        problems = []
        if strict and theirs != gates:
            extra = [w for w in theirs if w not in gates]
            missing = [w for w in gates if w not in theirs]
            detail = ", ".join(filter(None, [
                f"the Rollout also sets {extra} (no gate would judge them)" if extra else "",
                f"the Rollout has no setWeight for {missing}" if missing else "",
                "the order differs" if not extra and not missing else "",
            ]))
            problems.append(f"its setWeight steps {theirs} are not the release's steps below 100 {gates}: {detail}")
        for weight in gates:
            at = [i for i, w in set_weights if w == weight]
            if not at:
                if not strict:
                    problems.append(f"it has no setWeight: {weight} step (its setWeights: {[w for _, w in set_weights]})")
                continue
            if len(at) > 1:
                problems.append(f"setWeight: {weight} appears {len(at)} times")
                continue
            after = at[0] + 1
            following = [i for i, _ in set_weights if i > at[0]]
            until = following[0] if following else len(rollout_steps)
            pauses = [s["pause"] or {} for s in rollout_steps[after:until] if "pause" in s]
            if not pauses:
                problems.append(f"setWeight: {weight} (step {at[0]}) is not followed by a pause, so Argo would go on "
                                "without waiting for the gate; add pause: {}")
            elif all(p.get("duration") not in (None, "", 0, "0") for p in pauses):
                problems.append(f"the pause after setWeight: {weight} (step {at[0]}) has a duration, so Argo would go on "
                                "when it ends, whatever the gate says; use pause: {}")
        return problems

    # -- writing ----------------------------------------------------------------------------

    def set_canary_weight(self, percent: int) -> None:
        if percent == 0:
            self._abort()
        else:
            self._advance(percent)

    def apply(self, percent: int) -> int:
        """As ``TrafficRouter.apply``, except that 100 also reads back as "the update completed":
        Argo ends an update by making the canary the stable revision, which leaves no canary."""
        if percent != 100:
            return super().apply(percent)
        self.set_canary_weight(100)
        state = self._state()
        if not state.updating and not state.aborted:
            return 100
        actual = self.get_canary_weight()
        if actual != 100:
            raise WeightNotApplied(f"argo_rollouts: set canary weight 100% but {self.resource} reads back {actual}% "
                                   f"({state.describe()})")
        return 100

    def _deadline(self) -> float:
        return time.monotonic() + self.settings.step_timeout_seconds

    def _aborted(self, state: RolloutState, waiting: bool, doing: str) -> RouterRefused:
        what = state.status.get("message") or "status.abort is true"
        if waiting:
            return RouterRefused(f"argo_rollouts: rollout {self.resource.namespace}/{self.resource.name} was aborted by "
                                 f"someone else while {doing} ({what}); Argo has put all traffic back on stable")
        return RouterRefused(f"argo_rollouts: rollout {self.resource.namespace}/{self.resource.name} is aborted ({what}): "
                             f"it was aborted by someone else or by an earlier rollback, so it cannot be {doing}; "
                             f"deploy a new revision or run `kubectl argo rollouts retry rollout {self.resource.name}`")

    def _check_health(self, state: RolloutState, waiting: bool, doing: str) -> None:
        if state.aborted:
            raise self._aborted(state, waiting, doing)
        if state.status.get("phase") == "Degraded":
            raise RouterError(f"argo_rollouts: {self.resource} is Degraded ({state.describe()})")

    def _reached(self, state: RolloutState, percent: int) -> bool:
        if state.set_weight() != percent:
            return False
        if state.status_weight is not None and state.status_weight != percent:
            return False  # the controller has not moved the traffic yet
        return state.paused

    def _advance(self, percent: int) -> None:
        doing = f"moving to {percent}%"
        deadline = self._deadline()
        waiting = False
        while True:
            state = self._state()
            self._check_health(state, waiting, doing)
            if not state.updating:
                if percent == 100:
                    return  # the last step is done (now or before a retry): the canary revision is the stable one
                raise RouterError(f"argo_rollouts: {self.resource} has no update in progress (stableRS == currentPodHash): "
                                  "deploy the new version first (a new pod template starts the canary)")
            targets = [i for i, s in enumerate(state.steps) if s.get("setWeight") == percent]
            if not targets and percent != 100:
                weights = [s["setWeight"] for s in state.steps if "setWeight" in s]
                raise RouterError(f"argo_rollouts: {self.resource} has no setWeight: {percent} step (its setWeights: {weights})")
            if self._reached(state, percent):
                return
            current = state.set_weight()
            if current > percent:
                raise RouterError(f"argo_rollouts: {self.resource} is already past setWeight {percent}% ({state.describe()}); "
                                  "Argo Rollouts only moves forward (0% aborts)")
            if state.paused and current < percent:
                self._resume(state)
            elif state.spec.get("paused"):
                raise RouterError(f"argo_rollouts: {self.resource} was paused by hand (spec.paused); "
                                  f"resume it with `kubectl argo rollouts promote {self.resource.name}`")
            if time.monotonic() > deadline:
                raise RouterError(f"argo_rollouts: {self.resource} did not reach setWeight {percent}% paused within "
                                  f"{self.settings.step_timeout_seconds:g}s ({state.describe()}); is setWeight: {percent} "
                                  "followed by pause: {}?")
            waiting = True
            time.sleep(self.settings.poll_seconds)

    def _resume(self, state: RolloutState) -> None:
        """Clear the pause the Rollout is in, but only if it is still the one we read."""
        body = {"metadata": {"resourceVersion": state.obj["metadata"]["resourceVersion"]}, "status": {"pauseConditions": None}}
        try:
            self.api.patch_or_conflict(self.resource, body, MERGE_PATCH, subresource="status")
        except Conflict:
            pass  # someone (maybe the controller) changed it: the loop reads it again

    def _abort(self) -> None:
        def build(obj: dict):
            state = RolloutState(obj)
            if state.aborted or not state.updating:
                return None  # aborted already, or no update in progress: traffic is all on stable
            return {"status": {"abort": True}}, MERGE_PATCH

        self.api.update(self.resource, build, attempts=self.settings.conflict_attempts, subresource="status")
        deadline = self._deadline()
        while (state := self._state()).status_weight not in (None, 0):
            if time.monotonic() > deadline:
                raise RouterError(f"argo_rollouts: {self.resource} was aborted but its canary still takes "
                                  f"{state.status_weight}% after {self.settings.step_timeout_seconds:g}s")
            time.sleep(self.settings.poll_seconds)

    def promote(self) -> str | None:
        name = f"rollout {self.resource.namespace}/{self.resource.name}"
        state = self._state()
        self._check_health(state, False, "promoted")
        if not state.updating:
            return f"{name} finished its steps: revision {state.status.get('stableRS')} is stable"

        def build(obj: dict):
            return None if not RolloutState(obj).updating else ({"status": {"promoteFull": True}}, MERGE_PATCH)

        self.api.update(self.resource, build, attempts=self.settings.conflict_attempts, subresource="status")
        deadline = self._deadline()
        while True:
            state = self._state()
            self._check_health(state, True, "being promoted")
            if not state.updating:
                return f"{name} fully promoted (status.promoteFull): revision {state.status.get('stableRS')} is stable"
            if time.monotonic() > deadline:
                raise RouterError(f"argo_rollouts: {self.resource} did not finish its full promotion within "
                                  f"{self.settings.step_timeout_seconds:g}s ({state.describe()})")
            time.sleep(self.settings.poll_seconds)
