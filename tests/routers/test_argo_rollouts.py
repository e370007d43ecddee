"""The Argo Rollouts router against the fake API server and its small Argo controller, through
the real kubernetes client."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from canary_operators.clients.kubernetes import MERGE_PATCH
from canary_operators.exceptions import RouterError, RouterRefused, WeightNotApplied
from canary_operators.routers import router_class
from canary_operators.routers.argo_rollouts_driver import ArgoRolloutDriver, RolloutDriver
from canary_operators.routers.base import Weights
from tests.k8s import k8s, rollout  # noqa: F401  (k8s is a fixture)

SETTINGS = {"namespace": "shop", "rollout": "web", "poll_seconds": 0.02, "step_timeout_seconds": 5}
RULES = [{"apiGroups": ["argoproj.io"], "resources": ["rollouts"], "verbs": ["get"]},
         {"apiGroups": ["argoproj.io"], "resources": ["rollouts/status"], "verbs": ["patch"]}]


def router(k8s, run=None, **changes):
    return router_class("argo_rollouts")({**SETTINGS, **changes}, None, conn_id=k8s.conn_id, run=run)


def status(k8s) -> dict:
    return k8s.api.get("Rollout", "shop", "web")["status"]


@pytest.fixture
def updating(k8s):
    """A Rollout with steps 10 → pause → 50 → pause whose new revision has started: at 10%, paused."""
    k8s.api.put(rollout(steps=(10, 50)))
    k8s.api.rules = RULES  # the documented RBAC is enough
    k8s.api.argo.start_update("shop", "web", "def456")
    assert status(k8s)["currentStepIndex"] == 1 and status(k8s)["pauseConditions"]
    k8s.api.controller_delay = 0.05  # from now on the controller answers a little later, as a real one does
    return k8s


def test_steps_through_the_rollout_and_completes_it(updating):
    k8s = updating
    r = router(k8s)
    assert r.get_canary_weight() == 10
    assert r.apply(10) == 10  # already there: nothing written
    assert k8s.api.client_writes() == []
    assert r.apply(50) == 50
    assert status(k8s)["currentStepIndex"] == 3 and status(k8s)["canary"]["weights"]["canary"]["weight"] == 50
    assert r.apply(100) == 100  # the end of the steps: the canary revision is now stable
    assert status(k8s)["stableRS"] == "def456" and status(k8s)["phase"] == "Healthy"
    assert r.promote() == "rollout shop/web finished its steps: revision def456 is stable"
    assert r.get_canary_weight() == 0  # no canary left
    writes = k8s.api.client_writes("Rollout")
    assert [(w.subresource, w.content_type) for w in writes] == [("status", MERGE_PATCH)] * 2
    assert all(w.body["status"] == {"pauseConditions": None} and "resourceVersion" in w.body["metadata"] for w in writes)


def test_the_router_drives_the_rollout_through_the_driver_contract(updating):
    r = router(updating)
    assert isinstance(r.driver, ArgoRolloutDriver) and isinstance(r.driver, RolloutDriver)
    assert r.driver.weights() == r.get_weights() == Weights(stable=90, canary=10)
    assert r.driver.advance_to(50) == Weights(stable=50, canary=50)
    applied = r.apply_verified(100)  # the end of the steps: the new revision takes everything
    assert applied.weights == Weights(stable=0, canary=100) and applied.verified is True
    assert r.get_weights() == Weights(stable=100, canary=0)  # and is now the stable one: no canary


def test_weights_show_other_destinations_and_both_at_zero(updating, monkeypatch):
    k8s = updating
    r = router(k8s)
    monkeypatch.setattr(k8s.api.argo, "reconcile", lambda key: None)  # the status stays as set here

    def experiment(obj):  # an experiment step's ReplicaSet takes 5% (status.canary.weights.additional)
        obj["status"]["canary"]["weights"]["stable"]["weight"] = 85
        obj["status"]["canary"]["weights"]["additional"] = [{"weight": 5, "podTemplateHash": "exp1"}]
    k8s.api.mutate("Rollout", "shop", "web", experiment)
    assert r.get_weights() == Weights(stable=85, canary=10, other=5)
    with pytest.raises(WeightNotApplied, match=r"set canary weight 10% but it reads back stable 85%, canary 10%, elsewhere 5%"):
        r.apply(10)

    def nothing_anywhere(obj):
        weights = obj["status"]["canary"]["weights"]
        weights.pop("additional")
        weights["stable"]["weight"] = weights["canary"]["weight"] = 0
    k8s.api.mutate("Rollout", "shop", "web", nothing_anywhere)
    assert r.get_weights() == Weights(stable=0, canary=0)


def test_verify_is_the_controllers_report_of_its_traffic_router(updating, monkeypatch):
    k8s = updating
    r = router(k8s)
    assert r.verify(10) is True and r.verify(50) is False
    assert r.apply_verified(50).verified is True
    monkeypatch.setattr(k8s.api.argo, "reconcile", lambda key: None)
    k8s.api.mutate("Rollout", "shop", "web", lambda o: o["status"]["canary"]["weights"].update(verified=False))
    assert r.verify(50) is False  # the controller checked its traffic router (Argo does on AWS ALB): not in effect
    with pytest.raises(WeightNotApplied, match="but the data plane does not route 50% to the canary"):
        r.apply_verified(50)
    k8s.api.mutate("Rollout", "shop", "web", lambda o: o["status"].pop("canary"))
    assert r.verify(50) is None  # no weights reported: cannot tell
    assert r.apply_verified(50).verified is None


def test_finalize_aborts_and_restore_reads_all_on_stable(updating):
    k8s = updating
    r = router(k8s)
    r.apply(50)
    r.finalize()
    assert status(k8s)["abort"] is True
    applied = r.restore()  # finalize again: aborted already, nothing more written
    assert applied.weights == Weights(stable=100, canary=0) and applied.verified is True
    assert [w.body for w in k8s.api.client_writes("Rollout")][-1] == {"status": {"abort": True}}
    assert sum(w.body == {"status": {"abort": True}} for w in k8s.api.client_writes("Rollout")) == 1


def test_promote_is_a_full_promotion_when_steps_are_left(k8s):
    k8s.api.put(rollout(steps=(10, 50, 100)))  # ends with setWeight 100 + pause
    k8s.api.argo.start_update("shop", "web", "def456")
    r = router(k8s)
    assert r.apply(50) == 50
    assert r.apply(100) == 100
    assert status(k8s)["currentStepIndex"] == 5 and status(k8s)["stableRS"] == "abc123"  # paused at 100%
    assert r.promote() == "rollout shop/web fully promoted (status.promoteFull): revision def456 is stable"
    assert k8s.api.client_writes("Rollout")[-1].body == {"status": {"promoteFull": True}}
    assert r.get_canary_weight() == 0


def test_rollback_aborts_once_and_is_idempotent(updating):
    k8s = updating
    r = router(k8s)
    assert r.apply(0) == 0
    assert status(k8s)["abort"] is True and status(k8s)["phase"] == "Degraded"
    assert r.apply(0) == 0
    assert [w.body for w in k8s.api.client_writes("Rollout")] == [{"status": {"abort": True}}]


def test_aborted_by_someone_else_while_we_wait(updating):
    k8s = updating
    k8s.api.controller_delay = 0.3

    def abort_soon():
        threading.Timer(0.05, lambda: k8s.api.mutate("Rollout", "shop", "web", lambda o: o["status"].update(abort=True))).start()

    k8s.api.before_next("PATCH", k8s.api.path("Rollout", "shop", "web", "status"), abort_soon)
    with pytest.raises(RouterRefused, match=r"rollout shop/web was aborted by someone else while moving to 50%"):
        router(k8s).apply(50)
    assert router(k8s).apply(0) == 0  # the rollback finds it aborted already and writes nothing more
    assert len(k8s.api.client_writes("Rollout")) == 1


def test_aborted_before_the_step_says_who_may_have_done_it(updating):
    k8s = updating
    k8s.api.mutate("Rollout", "shop", "web", lambda o: o["status"].update(abort=True))
    with pytest.raises(RouterRefused, match=r"rollout shop/web is aborted .*by someone else or by an earlier rollback"):
        router(k8s).apply(50)


def test_a_resume_by_someone_else_in_between_never_skips_a_step(updating):
    k8s = updating
    k8s.api.controller_delay = 0

    def someone_promotes():  # kubectl argo rollouts promote, just before our own patch
        k8s.api.mutate("Rollout", "shop", "web", lambda o: o["status"].pop("pauseConditions"))

    k8s.api.before_next("PATCH", k8s.api.path("Rollout", "shop", "web", "status"), someone_promotes)
    assert router(k8s).apply(50) == 50
    assert [w.code for w in k8s.api.writes if w.actor == "client"] == [409]  # our stale resume was refused
    assert status(k8s)["currentStepIndex"] == 3  # paused after setWeight 50, not past it


def test_only_forward_and_only_its_own_weights(updating):
    k8s = updating
    r = router(k8s)
    with pytest.raises(RouterError, match=r"has no setWeight: 25 step \(its setWeights: \[10, 50\]\)"):
        r.apply(25)
    r.apply(50)
    with pytest.raises(RouterError, match="is already past setWeight 10%.*Argo Rollouts only moves forward"):
        r.apply(10)


def test_no_update_in_progress(k8s):
    k8s.api.put(rollout())
    r = router(k8s)
    assert r.get_canary_weight() == 0
    assert r.apply(0) == 0 and k8s.api.client_writes() == []  # nothing to abort
    with pytest.raises(RouterError, match=r"has no update in progress \(stableRS == currentPodHash\): deploy the new version first"):
        r.apply(10)


def test_a_controller_that_does_not_get_there_times_out_clearly(updating):
    k8s = updating
    k8s.api.controller_delay = 5
    with pytest.raises(RouterError, match=r"did not reach setWeight 50% paused within 0.3s \(step 1/4, setWeight 10%"):
        router(k8s, step_timeout_seconds=0.3).apply(50)


def test_missing_rollout_and_missing_rbac(k8s):
    with pytest.raises(RouterError, match=r"argo_rollouts: Rollout shop/web not found \(HTTP 404\)"):
        router(k8s).check_online()
    k8s.api.put(rollout())
    k8s.api.argo.start_update("shop", "web", "def456")
    k8s.api.rules = RULES[:1]
    with pytest.raises(RouterError, match=r'forbidden to patch Rollout shop/web \(status\): .*verb "patch" on rollouts/status in API group "argoproj.io"'):
        router(k8s).apply(50)


def test_check_release_steps_compares_the_rollout_with_the_release(k8s):
    k8s.api.put(rollout(steps=(10, 50)))
    r = router(k8s)
    r.check_release_steps([10, 50, 100])
    with pytest.raises(RouterError, match=r"setWeight steps \[10, 50\] are not the release's steps below 100 \[5, 10, 50\]: "
                                          r"the Rollout has no setWeight for \[5\]"):
        r.check_release_steps([5, 10, 50, 100])
    with pytest.raises(RouterError, match=r"the Rollout also sets \[50\] \(no gate would judge them\)"):
        r.check_release_steps([10, 100])


def test_steps_without_an_indefinite_pause_are_refused(k8s):
    obj = rollout()
    obj["spec"]["strategy"]["canary"]["steps"] = [{"setWeight": 10}, {"pause": {"duration": "10m"}}, {"setWeight": 50},
                                                  {"analysis": {"templates": [{"templateName": "x"}]}}]
    k8s.api.put(obj)
    with pytest.raises(RouterError) as err:
        router(k8s).check_release_steps([10, 50, 100])
    assert "the pause after setWeight: 10 (step 0) has a duration" in str(err.value)
    assert "setWeight: 50 (step 2) is not followed by a pause" in str(err.value)


def test_check_online_checks_the_runs_steps(k8s):
    k8s.api.put(rollout(steps=(10, 50)))
    router(k8s, run=SimpleNamespace(steps=[10, 50, 100])).check_online()
    router(k8s, run=SimpleNamespace(steps=[50, 100])).check_online()  # a run may skip a step: Argo passes it
    with pytest.raises(RouterError, match=r"do not fit this run: it has no setWeight: 30 step"):
        router(k8s, run=SimpleNamespace(steps=[30, 100])).check_online()
    obj = rollout()
    obj["spec"]["strategy"] = {"blueGreen": {"activeService": "web"}}
    k8s.api.put(obj)
    with pytest.raises(RouterError, match="does not use the canary strategy"):
        router(k8s).check_online()


# -- the share of requests the canary should serve (the gate's sample-ratio check) ----------------

def pods(k8s, replicas: int, updated: int, ready: int) -> None:
    """Set the pod counts the Argo controller reports (the fake controller does not scale pods);
    like the real status, a count of 0 is left out."""
    counts = {"replicas": replicas, "updatedReplicas": updated, "readyReplicas": ready, "availableReplicas": ready}

    def change(obj):
        for field, value in counts.items():
            obj["status"].pop(field, None)
            if value:
                obj["status"][field] = value
    k8s.api.mutate("Rollout", "shop", "web", change)


def test_expected_share_of_a_traffic_routed_rollout_is_the_weight_it_reports(updating, monkeypatch):
    k8s = updating
    r = router(k8s)
    pods(k8s, replicas=8, updated=4, ready=8)  # stable left at full scale: pods say nothing about traffic
    assert r.expected_share(10) == pytest.approx(0.10)
    assert r.expected_share(50) == pytest.approx(0.10)  # what the status reports, not what was asked
    assert k8s.api.client_writes() == []  # reading only: the documented RBAC is enough
    r.apply(50)
    assert r.expected_share(50) == pytest.approx(0.50)
    monkeypatch.setattr(k8s.api.argo, "reconcile", lambda key: None)  # a controller that reports no weights
    k8s.api.mutate("Rollout", "shop", "web", lambda o: o["status"].pop("canary"))
    assert r.expected_share(50) == pytest.approx(0.50)  # then the weight the gate asked for


@pytest.fixture
def replica_weighted(k8s):
    """A Rollout without trafficRouting (steps 20 → pause → 50 → pause), paused at 20%."""
    obj = rollout(steps=(20, 50))
    del obj["spec"]["strategy"]["canary"]["trafficRouting"]
    k8s.api.put(obj)
    k8s.api.rules = RULES
    k8s.api.argo.start_update("shop", "web", "def456")
    assert status(k8s)["currentStepIndex"] == 1 and status(k8s)["pauseConditions"]
    # The fake controller reports status.canary.weights even here; the real one sets them only with
    # trafficRouting. They must not be used: the replicas split the traffic.
    assert status(k8s)["canary"]["weights"]["canary"]["weight"] == 20
    return k8s


def test_expected_share_of_a_replica_weighted_rollout_is_its_share_of_ready_pods(replica_weighted, caplog):
    k8s = replica_weighted
    r = router(k8s)
    pods(k8s, replicas=4, updated=1, ready=4)  # setWeight 20 of 4 replicas, maxSurge 0: 1 canary pod of 4
    assert r.expected_share(20) == pytest.approx(0.25)
    pods(k8s, replicas=5, updated=1, ready=5)  # with surge Argo runs 1 canary + 4 stable pods
    assert r.expected_share(20) == pytest.approx(0.20)
    pods(k8s, replicas=4, updated=2, ready=4)
    assert r.expected_share(20) == pytest.approx(0.50)
    assert k8s.api.client_writes() == []

    # Some pods not ready: the status does not say whose, so the weight is held within what the pods allow.
    pods(k8s, replicas=10, updated=1, ready=9)  # the canary has 0 or 1 of the 9 ready pods
    with caplog.at_level("INFO", logger="canary_operators.routers.argo_rollouts"):
        assert r.expected_share(50) == pytest.approx(1 / 9)
        assert r.expected_share(5) == pytest.approx(0.05)
    assert "9 of 10 pods are ready (1 canary) and the status does not say whose" in caplog.text
    assert "between 0.0% and 11.1%" in caplog.text
    pods(k8s, replicas=4, updated=1, ready=3)
    assert r.expected_share(20) == pytest.approx(0.20)  # within [0, 1/3]

    # No pod ready: the status cannot tell; the weight, said in the log.
    caplog.clear()
    pods(k8s, replicas=4, updated=1, ready=0)
    with caplog.at_level("INFO", logger="canary_operators.routers.argo_rollouts"):
        assert r.expected_share(20) == pytest.approx(0.20)
    assert "splits traffic by replicas but its status reports no ready pods (readyReplicas 0 of 4 replicas); " \
           "expecting the canary to serve its weight, 20%" in caplog.text


def test_a_replica_weighted_rollout_cannot_be_verified(replica_weighted):
    r = router(replica_weighted)
    assert r.verify(20) is None  # the replicas split the traffic: no traffic router to report on
    assert r.apply_verified(20).verified is None


def test_an_aborted_replica_weighted_rollout_has_no_canary_share(replica_weighted):
    k8s = replica_weighted
    r = router(k8s)
    assert r.apply(0) == 0
    pods(k8s, replicas=4, updated=0, ready=4)  # Argo scales the canary ReplicaSet down
    assert r.expected_share(0) == 0.0
