"""What the Argo Rollouts router reads from a Rollout: its steps and status (``RolloutState``), the
split and the controller's verification of it (``RolloutState.weights``, ``RolloutState.verify``), the
canary's share of the ready pods when replicas split the traffic (``replica_share``), and how
the Rollout's steps fit a release's (``step_problems``). Pure functions of the object read."""

from __future__ import annotations

from dataclasses import dataclass

from canary_operators.routers.base import Weights


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

    @property
    def reported(self) -> dict:
        """``status.canary.weights`` (canary, stable, additional, verified), or {} when not reported."""
        return (self.status.get("canary") or {}).get("weights") or {}

    def weights(self) -> Weights:
        """The split between the update's revisions as the controller reports it: the canary's
        ``status.canary.weights`` (else the current step's ``setWeight``), stable's reported weight
        (else the rest) and the ``additional`` destinations (experiments) as elsewhere. With no
        update in progress there is no canary: all on stable."""
        if not self.updating and not self.aborted:
            return Weights(stable=100, canary=0)
        reported = self.reported
        other = sum(int(d.get("weight") or 0) for d in reported.get("additional") or [])
        canary = self.status_weight if self.status_weight is not None else self.set_weight()
        stable = (reported.get("stable") or {}).get("weight")
        return Weights(stable=100 - canary - other if stable is None else int(stable), canary=canary, other=other)

    def verify(self, step_weight: int) -> bool | None:
        """Has the controller set ``step_weight`` on its traffic router? From its own report
        (``status.canary.weights``, and ``verified`` where its traffic router checks, as on AWS ALB).
        None without trafficRouting (replicas split the traffic) or when it reports no weights.
        After an abort or a finished update the canary ReplicaSet takes nothing."""
        reported = self.reported
        if not self.traffic_routed or self.status_weight is None:
            return None
        if reported.get("verified") is False:
            return False
        if self.aborted:
            return step_weight == 0 and self.status_weight == 0
        if not self.updating:  # finished (the new revision is stable) or never started
            return step_weight in (0, 100) and self.status_weight == 0
        return self.status_weight == step_weight

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


def replica_share(state: RolloutState, percent: int) -> tuple[float | None, str]:
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


def step_problems(state: RolloutState, steps: list[int], *, strict: bool) -> list[str]:
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
