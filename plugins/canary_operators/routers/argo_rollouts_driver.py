"""The Rollout driver: what a controller that owns the split and only moves forward can be asked
(``RolloutDriver``), and its Argo Rollouts implementation over the Kubernetes API
(``ArgoRolloutDriver``), which patches the Rollout's ``/status`` as ``kubectl argo rollouts`` does.

Every call is idempotent: asking for where the Rollout already is writes nothing. Each waits (up
to ``step_timeout_seconds``) until the controller has done what was asked.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, TypeVar

from canary_operators.clients.kubernetes import MERGE_PATCH, Conflict, KubernetesApi, Resource
from canary_operators.clients.retrying import WaitTimedOut, wait_until
from canary_operators.exceptions import RouterError, RouterRefused
from canary_operators.routers.argo_rollouts_state import RolloutState
from canary_operators.routers.base import Weights

T = TypeVar("T")


class RolloutDriver(ABC):
    """A progressive-delivery controller's own canary: steps it walks forward, an abort, a finish."""

    @abstractmethod
    def weights(self) -> Weights:
        """The split between the update's revisions as the controller reports it now."""

    @abstractmethod
    def advance_to(self, step_weight: int) -> Weights:
        """Go on to the ``setWeight: step_weight`` step and wait until the controller is paused
        there; 100 without such a step runs to the end of the steps, where the new revision
        becomes stable with all traffic (returned as canary 100). Never goes back: a weight below
        the current step's is an error. Returns the split reached."""

    @abstractmethod
    def abort(self) -> None:
        """Stop the update: the controller puts all traffic back on the stable revision."""

    @abstractmethod
    def finish(self) -> str:
        """Skip the steps left: the new revision becomes stable with all traffic. Says what it did."""

    def verify(self, step_weight: int) -> bool | None:
        """Does the controller report ``step_weight`` as set on its traffic router? None: it cannot tell."""
        return None


class ArgoRolloutDriver(RolloutDriver):
    def __init__(self, api: KubernetesApi, resource: Resource, *, timeout: float, poll: float, conflict_attempts: int):
        self.api, self.resource = api, resource
        self.timeout, self.poll, self.conflict_attempts = timeout, poll, conflict_attempts

    def state(self) -> RolloutState:
        return RolloutState(self.api.get(self.resource))

    def weights(self) -> Weights:
        return self.state().weights()

    def verify(self, step_weight: int) -> bool | None:
        return self.state().verify(step_weight)

    def _wait(self, look: Callable[[RolloutState, bool], T | None], what: str, timed_out: Callable[[RolloutState], str]) -> T:
        """Read the Rollout every ``poll`` seconds and pass it to ``look(state, waiting)`` (``waiting``:
        not the first read) until that returns a value; after ``timeout``, a RouterError with
        ``timed_out(last state read)``."""
        seen: list[RolloutState] = []

        def probe() -> T | None:
            state = self.state()
            waiting = bool(seen)
            seen[:] = [state]
            return look(state, waiting)

        try:
            return wait_until(probe, timeout=self.timeout, interval=self.poll, what=what)
        except WaitTimedOut:
            raise RouterError(timed_out(seen[-1])) from None

    def _aborted(self, state: RolloutState, waiting: bool, doing: str) -> RouterRefused:
        what = state.status.get("message") or "status.abort is true"
        name = f"rollout {self.resource.namespace}/{self.resource.name}"
        if waiting:
            return RouterRefused(f"argo_rollouts: {name} was aborted by someone else while {doing} ({what}); "
                                 "Argo has put all traffic back on stable")
        return RouterRefused(f"argo_rollouts: {name} is aborted ({what}): it was aborted by someone else or by an "
                             f"earlier rollback, so it cannot be {doing}; deploy a new revision or run "
                             f"`kubectl argo rollouts retry rollout {self.resource.name}`")

    def _check_health(self, state: RolloutState, waiting: bool, doing: str) -> None:
        if state.aborted:
            raise self._aborted(state, waiting, doing)
        if state.status.get("phase") == "Degraded":
            raise RouterError(f"argo_rollouts: {self.resource} is Degraded ({state.describe()})")

    @staticmethod
    def _reached(state: RolloutState, percent: int) -> bool:
        if state.set_weight() != percent:
            return False
        if state.status_weight is not None and state.status_weight != percent:
            return False  # the controller has not moved the traffic yet
        return state.paused

    def advance_to(self, step_weight: int) -> Weights:
        percent, doing = step_weight, f"moving to {step_weight}%"

        def look(state: RolloutState, waiting: bool) -> Weights | None:
            self._check_health(state, waiting, doing)
            if not state.updating:
                if percent == 100:  # the last step is done (now or before a retry): the new revision is stable
                    return Weights(stable=0, canary=100)
                raise RouterError(f"argo_rollouts: {self.resource} has no update in progress (stableRS == currentPodHash): "
                                  "deploy the new version first (a new pod template starts the canary)")
            targets = [i for i, s in enumerate(state.steps) if s.get("setWeight") == percent]
            if not targets and percent != 100:
                weights = [s["setWeight"] for s in state.steps if "setWeight" in s]
                raise RouterError(f"argo_rollouts: {self.resource} has no setWeight: {percent} step (its setWeights: {weights})")
            if self._reached(state, percent):
                return state.weights()
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

        return self._wait(look, f"{self.resource} at setWeight {percent}%, paused", lambda state: (
            f"argo_rollouts: {self.resource} did not reach setWeight {percent}% paused within "
            f"{self.timeout:g}s ({state.describe()}); is setWeight: {percent} followed by pause: {{}}?"))

    def _resume(self, state: RolloutState) -> None:
        """Clear the pause the Rollout is in, but only if it is still the one we read."""
        body = {"metadata": {"resourceVersion": state.obj["metadata"]["resourceVersion"]}, "status": {"pauseConditions": None}}
        try:
            self.api.patch_or_conflict(self.resource, body, MERGE_PATCH, subresource="status")
        except Conflict:
            pass  # someone (maybe the controller) changed it: the loop reads it again

    def abort(self) -> None:
        def build(obj: dict):
            state = RolloutState(obj)
            if state.aborted or not state.updating:
                return None  # aborted already, or no update in progress: traffic is all on stable
            return {"status": {"abort": True}}, MERGE_PATCH

        self.api.update(self.resource, build, attempts=self.conflict_attempts, subresource="status")
        self._wait(lambda state, _: True if state.status_weight in (None, 0) else None,
                   f"{self.resource}'s canary weight to drop to 0 after the abort", lambda state: (
                       f"argo_rollouts: {self.resource} was aborted but its canary still takes "
                       f"{state.status_weight}% after {self.timeout:g}s"))

    def finish(self) -> str:
        name = f"rollout {self.resource.namespace}/{self.resource.name}"
        state = self.state()
        self._check_health(state, False, "promoted")
        if not state.updating:
            return f"{name} finished its steps: revision {state.status.get('stableRS')} is stable"

        def build(obj: dict):
            return None if not RolloutState(obj).updating else ({"status": {"promoteFull": True}}, MERGE_PATCH)

        self.api.update(self.resource, build, attempts=self.conflict_attempts, subresource="status")

        def look(state: RolloutState, _: bool) -> str | None:
            self._check_health(state, True, "being promoted")
            if state.updating:
                return None
            return f"{name} fully promoted (status.promoteFull): revision {state.status.get('stableRS')} is stable"

        return self._wait(look, f"{self.resource}'s full promotion", lambda state: (
            f"argo_rollouts: {self.resource} did not finish its full promotion within {self.timeout:g}s ({state.describe()})"))
