"""The controllers of the fake cluster: they react to writes with status writes of their own.

Each is a function that edits an object in place; the API server runs it through
``FakeKubeApi.controller_write`` after a write (``controller_delay`` later), which records it with
actor "controller".
"""

from __future__ import annotations

from typing import Callable


def gateway_observes(obj: dict) -> None:
    """A gateway controller that keeps its verdicts: every condition it reported is now reported
    for the route's current generation (``status.parents[].conditions[].observedGeneration``)."""
    for parent in (obj.get("status") or {}).get("parents") or []:
        for condition in parent.get("conditions") or []:
            condition["observedGeneration"] = obj["metadata"]["generation"]


def deployment_rolls_out(behaviour: str) -> Callable[[dict], None]:
    """The Deployment controller: ``behaviour`` "ready" brings every replica up to date and ready;
    "stuck" leaves the old ones running and the new ones not ready; "failed" also reports
    ``ProgressDeadlineExceeded``."""

    def change(obj: dict) -> None:
        spec, status = obj["spec"], obj.setdefault("status", {})
        replicas = spec.get("replicas", 1)
        status["observedGeneration"] = obj["metadata"]["generation"]
        if behaviour == "ready":
            status.update(replicas=replicas, updatedReplicas=replicas, readyReplicas=replicas, availableReplicas=replicas)
            status["conditions"] = [{"type": "Available", "status": "True"},
                                    {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]
            return
        status.update(replicas=replicas + status.get("readyReplicas", 0), updatedReplicas=replicas)
        if behaviour == "failed":
            status["conditions"] = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                                     "message": f'ReplicaSet "{obj["metadata"]["name"]}-new" has timed out progressing.'}]
        else:
            status["conditions"] = [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated", "message": "updating"}]

    return change


class ArgoRolloutsController:
    """Just enough of the Argo Rollouts controller for a canary with ``setWeight``/``pause`` steps.

    After every write it walks the Rollout: a ``setWeight`` step sets ``status.canary.weights``
    and moves on; a ``pause: {}`` step sets ``pauseConditions`` and ``controllerPause`` and waits;
    once someone clears ``pauseConditions`` it moves past the pause. ``abort`` puts all traffic on
    stable (phase Degraded); ``promoteFull`` or the end of the steps makes the canary the stable
    ReplicaSet (phase Healthy). ``start_update`` is a new revision (a changed pod template).
    """

    def __init__(self, api):
        self.api = api

    def start_update(self, namespace: str, name: str, pod_hash: str) -> None:
        def change(obj):
            status = obj.setdefault("status", {})
            status.update(currentPodHash=pod_hash, currentStepIndex=0, abort=False, controllerPause=False,
                          phase="Progressing", message="more replicas need to be updated")
            status.pop("pauseConditions", None)
            status.pop("abortedAt", None)
        self.api.mutate("Rollout", namespace, name, change)

    def reconcile(self, key: tuple) -> None:
        self.api.controller_write(key, self._step)

    @staticmethod
    def _weights(status: dict, canary: int) -> None:
        status["canary"] = {"weights": {
            "canary": {"weight": canary, "podTemplateHash": status.get("currentPodHash")},
            "stable": {"weight": 100 - canary, "podTemplateHash": status.get("stableRS")}}}

    def _step(self, obj: dict) -> None:
        if "canary" not in obj["spec"].get("strategy", {}):
            return
        steps = obj["spec"]["strategy"]["canary"].get("steps") or []
        status = obj.setdefault("status", {})
        if status.get("currentPodHash") == status.get("stableRS"):
            status.update(currentStepIndex=len(steps), phase="Healthy", message="")
            status.pop("pauseConditions", None)
            status["controllerPause"] = False
            self._weights(status, 0)
            return
        if status.get("abort"):
            status.update(phase="Degraded", message=f"RolloutAborted: Rollout aborted update to revision {status.get('currentPodHash')}")
            status.setdefault("abortedAt", "2024-01-01T00:00:00Z")
            status.pop("pauseConditions", None)
            status["controllerPause"] = False
            self._weights(status, 0)
            return
        if status.get("promoteFull"):
            status.update(stableRS=status["currentPodHash"], currentStepIndex=len(steps), promoteFull=False,
                          phase="Healthy", message="", controllerPause=False)
            status.pop("pauseConditions", None)
            self._weights(status, 0)
            return
        if obj["spec"].get("paused"):
            status.update(phase="Paused", message="manually paused")
            return
        index = status.get("currentStepIndex") or 0
        while True:
            if status.get("pauseConditions"):
                status.update(phase="Paused", message="CanaryPauseStep")
                return
            if index >= len(steps):
                status.update(stableRS=status["currentPodHash"], currentStepIndex=len(steps), phase="Healthy",
                              message="", controllerPause=False)
                self._weights(status, 0)
                return
            step = steps[index]
            if "setWeight" in step:
                self._weights(status, step["setWeight"])
                index += 1
            elif "pause" in step:
                if status.get("controllerPause"):  # the pause was cleared: move on
                    status["controllerPause"] = False
                    index += 1
                else:
                    status["pauseConditions"] = [{"reason": "CanaryPauseStep", "startTime": "2024-01-01T00:00:00Z"}]
                    status["controllerPause"] = True
            else:
                index += 1
            status["currentStepIndex"] = index
