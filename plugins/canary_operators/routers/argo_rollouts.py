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
(see ``argo_rollouts_state.replica_share``); when no pod is ready the status cannot tell, and the weight is used
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
from functools import cached_property
from typing import Callable, ClassVar, TypeVar

from pydantic import Field

from canary_operators.clients.kubernetes import (
    DNS_SUBDOMAIN,
    MERGE_PATCH,
    Conflict,
    KubernetesApi,
    KubernetesSettings,
    argo_rollout,
)
from canary_operators.clients.retrying import WaitTimedOut, wait_until
from canary_operators.exceptions import RouterError, RouterRefused, WeightNotApplied
from canary_operators.routers.argo_rollouts_state import RolloutState, replica_share, step_problems
from canary_operators.routers.base import TrafficRouter

log = logging.getLogger(__name__)
T = TypeVar("T")


class ArgoRolloutsSettings(KubernetesSettings):
    rollout: str = Field(pattern=DNS_SUBDOMAIN)
    # How long the controller may take to reach a step (or abort, or promote) before it is an error.
    step_timeout_seconds: float = Field(default=300.0, gt=0)
    poll_seconds: float = Field(default=1.0, gt=0, le=60)


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
        share, note = replica_share(state, percent)
        if share is None:
            log.info("argo_rollouts: %s splits traffic by replicas but %s; expecting the canary to serve "
                     "its weight, %d%%", self.resource, note, percent)
            return percent / 100
        if note:
            log.info("argo_rollouts: %s: %s", self.resource, note)
        return share

    def check_online(self) -> None:
        state = self._state()
        self._check_canary(state)
        steps = list(getattr(self.run, "steps", None) or []) if self.run is not None else []
        problems = step_problems(state, steps, strict=False) if steps else []
        if problems:
            raise RouterError(f"argo_rollouts: the steps of {self.resource} do not fit this run: " + "; ".join(problems))

    def check_release_steps(self, steps: list[int]) -> None:
        """Raise RouterError unless the Rollout's canary steps fit the release's ``steps``: the same
        ``setWeight`` values below 100, in the same order, each followed by ``pause: {}`` (no
        duration) before the next ``setWeight``, so Argo waits for every gate. Read-only."""
        state = self._state()
        self._check_canary(state)
        problems = step_problems(state, list(steps), strict=True)
        if problems:
            raise RouterError(f"argo_rollouts: the steps of {self.resource} do not match the release: " + "; ".join(problems))

    def _check_canary(self, state: RolloutState) -> None:
        if "canary" not in (state.spec.get("strategy") or {}):
            raise RouterError(f"argo_rollouts: {self.resource} does not use the canary strategy")
        if not any("setWeight" in s for s in state.steps):
            raise RouterError(f"argo_rollouts: {self.resource} has no setWeight steps")

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

    def _wait(self, look: Callable[[RolloutState, bool], T | None], what: str, timed_out: Callable[[RolloutState], str]) -> T:
        """Read the Rollout every ``poll_seconds`` and pass it to ``look(state, waiting)`` (``waiting``:
        not the first read) until that returns a value; after ``step_timeout_seconds``, a RouterError
        with ``timed_out(last state read)``."""
        seen: list[RolloutState] = []

        def probe() -> T | None:
            state = self._state()
            waiting = bool(seen)
            seen[:] = [state]
            return look(state, waiting)

        try:
            return wait_until(probe, timeout=self.settings.step_timeout_seconds, interval=self.settings.poll_seconds, what=what)
        except WaitTimedOut:
            raise RouterError(timed_out(seen[-1])) from None

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

        def look(state: RolloutState, waiting: bool) -> bool | None:
            self._check_health(state, waiting, doing)
            if not state.updating:
                if percent == 100:
                    return True  # the last step is done (now or before a retry): the canary revision is the stable one
                raise RouterError(f"argo_rollouts: {self.resource} has no update in progress (stableRS == currentPodHash): "
                                  "deploy the new version first (a new pod template starts the canary)")
            targets = [i for i, s in enumerate(state.steps) if s.get("setWeight") == percent]
            if not targets and percent != 100:
                weights = [s["setWeight"] for s in state.steps if "setWeight" in s]
                raise RouterError(f"argo_rollouts: {self.resource} has no setWeight: {percent} step (its setWeights: {weights})")
            if self._reached(state, percent):
                return True
            current = state.set_weight()
            if current > percent:
                raise RouterError(f"argo_rollouts: {self.resource} is already past setWeight {percent}% ({state.describe()}); "
                                  "Argo Rollouts only moves forward (0% aborts)")
            if state.paused and current < percent:
                self._resume(state)
            elif state.spec.get("paused"):
                raise RouterError(f"argo_rollouts: {self.resource} was paused by hand (spec.paused); "
                                  f"resume it with `kubectl argo rollouts promote {self.resource.name}`")
            return None

        self._wait(look, f"{self.resource} at setWeight {percent}%, paused", lambda state: (
            f"argo_rollouts: {self.resource} did not reach setWeight {percent}% paused within "
            f"{self.settings.step_timeout_seconds:g}s ({state.describe()}); is setWeight: {percent} followed by pause: {{}}?"))

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
        self._wait(lambda state, _: True if state.status_weight in (None, 0) else None,
                   f"{self.resource}'s canary weight to drop to 0 after the abort", lambda state: (
                       f"argo_rollouts: {self.resource} was aborted but its canary still takes "
                       f"{state.status_weight}% after {self.settings.step_timeout_seconds:g}s"))

    def promote(self) -> str | None:
        name = f"rollout {self.resource.namespace}/{self.resource.name}"
        state = self._state()
        self._check_health(state, False, "promoted")
        if not state.updating:
            return f"{name} finished its steps: revision {state.status.get('stableRS')} is stable"

        def build(obj: dict):
            return None if not RolloutState(obj).updating else ({"status": {"promoteFull": True}}, MERGE_PATCH)

        self.api.update(self.resource, build, attempts=self.settings.conflict_attempts, subresource="status")

        def look(state: RolloutState, _: bool) -> str | None:
            self._check_health(state, True, "being promoted")
            if state.updating:
                return None
            return f"{name} fully promoted (status.promoteFull): revision {state.status.get('stableRS')} is stable"

        return self._wait(look, f"{self.resource}'s full promotion", lambda state: (
            f"argo_rollouts: {self.resource} did not finish its full promotion within "
            f"{self.settings.step_timeout_seconds:g}s ({state.describe()})"))
