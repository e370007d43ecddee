"""Argo Rollouts: move a canary Rollout through its own steps, in step with the DAG.

The Rollout owns the traffic split (through its own traffic router, or replica counts) and only
moves forward, so it does not fit ``TrafficRouter`` as a set-any-weight backend. It has its own
small contract, ``RolloutDriver`` (``argo_rollouts_driver``): ``advance_to(step_weight)``,
``abort()``, ``finish()``, ``weights()``, ``verify()``. This router adapts it, and each
``TrafficRouter`` call means, for a Rollout:

- ``set_canary_weight(p)``, ``0 < p``: ``advance_to(p)``: go on to the ``setWeight: p`` step.
  While the Rollout is paused at an earlier step it clears ``status.pauseConditions`` (the
  plugin's promote, guarded by the resourceVersion read, so it never skips a step someone else
  already resumed), then waits until the controller is paused again after ``setWeight: p``, and,
  when the Rollout reports ``status.canary.weights``, until the canary's weight is ``p``. Asking
  for a lower weight than the current step's is an error. ``100`` without a ``setWeight: 100``
  step means the end of the steps: the controller then makes the canary the stable revision, and
  ``apply(100)`` reads that back as the canary taking 100%.
- ``set_canary_weight(0)`` and ``finalize()``: ``abort()`` (``{"status": {"abort": true}}``);
  Argo puts all traffic back on the stable ReplicaSet. After the update has completed an abort
  can no longer undo it (use ``kubectl argo rollouts undo``).
- ``promote()``: ``finish()``, a full promotion (``{"status": {"promoteFull": true}}``), skipping
  what is left.
- ``get_weights()``: the status: the canary's ``status.canary.weights.canary.weight`` when Argo
  reports it, else the ``setWeight`` of the current step (Argo's own ``GetCurrentSetWeight``);
  stable's reported weight, else the rest; ``additional`` destinations (experiments) as
  elsewhere. A Rollout with no update in progress (``status.stableRS == status.currentPodHash``)
  has no canary: stable 100%.
- ``verify(p)``: the controller's own report: with ``trafficRouting`` and
  ``status.canary.weights``, True when the canary's weight there is ``p`` (False when its
  ``verified`` says the traffic router did not take it, as Argo checks on AWS ALB); None without
  traffic routing (the replicas split) or when no weights are reported.

The share of requests the canary should serve (``expected_share``, for the gate's sample-ratio
check) depends on how the Rollout splits traffic. With ``spec.strategy.canary.trafficRouting`` it
is the weight the controller set on the traffic router (``status.canary.weights.canary.weight``,
else the weight asked about). Without it the split is by replicas: the share is the canary's
ready pods over all ready pods, which is not ``setWeight``, and is only known between bounds when
some pods are not ready (see ``argo_rollouts_state.replica_share``); when no pod is ready the
status cannot tell, and the weight is used (logged).

Each gate step's ``setWeight`` must be followed by ``pause: {}`` (no duration), or Argo would move
on without waiting for the DAG's gate: ``check_online`` checks that for the run's steps, and
``check_release_steps(steps)`` checks that the Rollout's setWeights are exactly the release's.
A Rollout aborted by someone else (``status.abort``, phase ``Degraded``) while this router waits
is a RouterRefused that says so.

The deploy (a new pod template, e.g. a new image) is not done here: it is what starts the
Rollout's update, from your CD system or a ``command`` action.

RBAC: ``get`` on ``rollouts`` and ``patch`` on ``rollouts/status`` in API group ``argoproj.io``.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import ClassVar

from pydantic import Field

from canary_operators.clients.kubernetes import DNS_SUBDOMAIN, KubernetesApi, KubernetesSettings, argo_rollout
from canary_operators.exceptions import RouterError, WeightNotApplied
from canary_operators.routers.argo_rollouts_driver import ArgoRolloutDriver
from canary_operators.routers.argo_rollouts_state import RolloutState, replica_share, step_problems
from canary_operators.routers.base import Applied, TrafficRouter, Weights

log = logging.getLogger(__name__)


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

    @cached_property
    def driver(self) -> ArgoRolloutDriver:
        s = self.settings
        return ArgoRolloutDriver(self.api, self.resource, timeout=s.step_timeout_seconds, poll=s.poll_seconds,
                                 conflict_attempts=s.conflict_attempts)

    def _state(self) -> RolloutState:
        return self.driver.state()

    # -- TrafficRouter, on the driver ----------------------------------------------------------

    def set_canary_weight(self, percent: int) -> None:
        if percent == 0:
            self.driver.abort()
        else:
            self.driver.advance_to(percent)

    def get_weights(self) -> Weights:
        return self.driver.weights()

    def verify(self, percent: int) -> bool | None:
        return self.driver.verify(percent)

    def finalize(self) -> None:
        self.driver.abort()

    def promote(self) -> str | None:
        return self.driver.finish()

    def apply_verified(self, percent: int) -> Applied:
        """As ``TrafficRouter.apply_verified``, except that 100 also reads back as "the update
        completed": Argo ends an update by making the canary the stable revision."""
        if percent != 100:
            return super().apply_verified(percent)
        weights = self.driver.advance_to(100)
        if not weights.is_split(100):
            raise WeightNotApplied(f"argo_rollouts: set canary weight 100% but {self.resource} reads back {weights} "
                                   f"({self._state().describe()})")
        verified = self.driver.verify(100)
        if verified is False:
            raise WeightNotApplied(f"argo_rollouts: {self.resource} reads back {weights}, but the controller reports "
                                   "its traffic router does not route 100% to the canary")
        return Applied(weights, verified)

    # -- Argo's own checks ---------------------------------------------------------------------

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
