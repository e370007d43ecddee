"""Full DAG runs of an ALB + CloudWatch + ECS release against moto's server.

Two releases run at the same time, each against its own ALB, target groups and ECS cluster in
moto: a healthy canary that is promoted, and a clearly bad one (30% 5xx against 1%) that is
rolled back. What the tests assert comes from moto: the listener's weights, recorded by a
background poller as the DAG moves them, and the ECS services afterwards. A feeder thread
publishes the ALB's CloudWatch metrics (``RequestCount`` and ``HTTPCode_Target_5XX_Count`` per
target group, timestamped now) and splits the requests by the weights the listener has at that
moment, so the gate's sample-ratio check sees real routing.

Why the runs are ``airflow dags test`` subprocesses, side by side: a CloudWatch gate cannot
pass before one whole 60-second period after its shift has been published (``period`` is at
least 60, and the provider never judges a partial period), so every gate takes 60 to 120
seconds. Run one after the other, the two releases would take about four minutes. Each
subprocess gets its own copy of the test database, so the two never contend for SQLite.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pytest
import yaml

from canary_operators.spec import parse_spec
from tests.airflow_subprocess_runs import finish_run, start_run
from tests.conftest import point_aws_at_moto

CONN_ID = "aws_test"
IMAGE = "registry.example/web:{version}"
ERROR_RATES = {"promoted": (0.01, 0.01), "rolled_back": (0.01, 0.30)}  # (stable, canary)
# Each CloudWatch gate takes one to two minutes (see above), so the promoted release judges one
# step; the rolled-back one starts at 10%.
STEPS = {"promoted": [50, 100], "rolled_back": [10, 50, 100]}
REQUESTS_PER_TICK = 400  # split between the target groups by the listener's weights
TICK_SECONDS = 0.5
RUN_TIMEOUT = 300


@dataclass
class World:
    """One release's resources in moto."""

    release: str  # a key of ERROR_RATES
    name: str
    load_balancer_arn: str
    listener_arn: str
    stable_tg: str
    canary_tg: str
    cluster: str
    v1_task_definition: str
    weights: list[tuple[int, int]] = field(default_factory=list)  # (canary, stable), each change once

    @property
    def current(self) -> tuple[int, int]:
        return self.weights[-1]


def clients():
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    return {kind: AwsBaseHook(aws_conn_id=CONN_ID, client_type=kind).conn for kind in ("ec2", "elbv2", "ecs", "cloudwatch")}


def build_world(aws: dict, release: str, name: str, subnets: list[str], vpc: str) -> World:
    elb, ecs = aws["elbv2"], aws["ecs"]
    lb = elb.create_load_balancer(Name=name, Subnets=subnets, Type="application", Scheme="internal")["LoadBalancers"][0]
    stable_tg, canary_tg = (
        elb.create_target_group(Name=f"{name}-{slot}", Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
        for slot in ("stable", "canary")
    )
    listener = elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=80, DefaultActions=[{
        "Type": "forward",
        "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": stable_tg, "Weight": 100}, {"TargetGroupArn": canary_tg, "Weight": 0}]},
    }])["Listeners"][0]["ListenerArn"]
    ecs.create_cluster(clusterName=name)
    td = ecs.register_task_definition(
        family=name, networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
        executionRoleArn="arn:aws:iam::123456789012:role/ecs-task-execution",
        containerDefinitions=[{"name": "web", "image": IMAGE.format(version="v1"), "portMappings": [{"containerPort": 8080}]},
                              {"name": "envoy", "image": "envoyproxy/envoy:v1.29", "essential": False}],
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(cluster=name, serviceName="web-stable", taskDefinition=td, desiredCount=2)
    ecs.update_service(cluster=name, service="web-stable", desiredCount=2)  # moto: the tasks "start"
    ecs.create_service(cluster=name, serviceName="web-canary", taskDefinition=td, desiredCount=0)  # idle between releases
    return World(release, name, lb["LoadBalancerArn"], listener, stable_tg, canary_tg, name, td, [(0, 100)])


def spec_for(name: str, world: World) -> dict:
    ecs = {"conn_id": CONN_ID, "cluster": world.cluster, "timeout": "30s"}
    data = {
        "name": name,
        "stable_version": "v1",
        "router": {"type": "alb", "conn_id": CONN_ID, "settings": {
            "listener_arn": world.listener_arn, "stable_target_group_arn": world.stable_tg,
            "canary_target_group_arn": world.canary_tg, "retry_wait_seconds": 0.2}},
        "metrics": {"type": "cloudwatch", "conn_id": CONN_ID, "settings": {
            "source": "alb", "load_balancer": world.load_balancer_arn, "stable_target_group": world.stable_tg,
            "canary_target_group": world.canary_tg, "lag_seconds": 0, "period": 60}},
        "steps": STEPS[name.removeprefix("aws_")],
        "bake_time": "5s",
        "settle_time": "1s",
        "gate_timeout": "150s",  # one whole minute after the shift, whenever in the minute it happens
        "poke_interval": "5s",  # a gate waits for a whole published minute anyway; each look costs moto CPU
        "retries": 0,
        "checks": [{"name": "errors", "kind": "error_rate", "max_increase_pp": 5, "min_requests": 500}],
        "deploy": {"type": "ecs_deploy", **ecs, "service": "web-canary", "container": "web", "image": IMAGE, "desired_count": 2},
        "promote": {"type": "ecs_deploy", **ecs, "service": "web-stable", "container": "web", "image": IMAGE},
        "after_promote": {"type": "ecs_scale", **ecs, "service": "web-canary", "desired_count": 0},
        "rollback": {"type": "ecs_scale", **ecs, "service": "web-canary", "desired_count": 0},
    }
    parse_spec(data, f"{name}.yaml")  # fail here, readably, if the test's spec is wrong
    return data


# ---------------------------------------------------------------------------------------------
# Background threads: the weights as moto has them, and the ALB's metrics


def weights_of(elb, listener_arn: str) -> tuple[int, int]:
    """(canary, stable) as moto's listener has them; the canary target group is named ``*-canary``."""
    action = elb.describe_listeners(ListenerArns=[listener_arn])["Listeners"][0]["DefaultActions"][0]
    groups = {g["TargetGroupArn"].split("/")[1].rsplit("-", 1)[1]: g["Weight"] for g in action["ForwardConfig"]["TargetGroups"]}
    return groups["canary"], groups["stable"]


def record_weights(worlds: list[World], stop: threading.Event, errors: list) -> None:
    elb = clients()["elbv2"]
    while not stop.is_set():
        try:
            for world in worlds:
                now = weights_of(elb, world.listener_arn)
                if now != world.current:
                    world.weights.append(now)
        except Exception as e:  # noqa: BLE001  reported by the fixture
            errors.append(f"weights poller: {e!r}")
        time.sleep(0.25)  # each state lasts seconds (a bake, a gate); moto answers cost CPU


def feed_metrics(worlds: list[World], stop: threading.Event, errors: list) -> None:
    cloudwatch = clients()["cloudwatch"]
    while not stop.is_set():
        try:
            now = datetime.now(timezone.utc)
            for world in worlds:
                canary_weight, stable_weight = world.current
                rates = dict(zip(("stable", "canary"), ERROR_RATES[world.release]))
                requests = {"canary": round(REQUESTS_PER_TICK * canary_weight / (canary_weight + stable_weight))}
                requests["stable"] = REQUESTS_PER_TICK - requests["canary"]
                data = []
                for slot, tg in (("stable", world.stable_tg), ("canary", world.canary_tg)):
                    dims = [{"Name": "LoadBalancer", "Value": world.load_balancer_arn.split(":loadbalancer/")[1]},
                            {"Name": "TargetGroup", "Value": "targetgroup/" + tg.split(":targetgroup/")[1]}]
                    data += [{"MetricName": "RequestCount", "Dimensions": dims, "Timestamp": now, "Value": requests[slot], "Unit": "Count"},
                             {"MetricName": "HTTPCode_Target_5XX_Count", "Dimensions": dims, "Timestamp": now,
                              "Value": round(requests[slot] * rates[slot]), "Unit": "Count"}]
                cloudwatch.put_metric_data(Namespace="AWS/ApplicationELB", MetricData=data)
        except Exception as e:  # noqa: BLE001  reported by the fixture
            errors.append(f"metrics feeder: {e!r}")
        time.sleep(TICK_SECONDS)


# ---------------------------------------------------------------------------------------------
# Runs: `airflow dags test` subprocesses (tests/airflow_subprocess_runs.py)


@pytest.fixture(scope="module")
def runs(moto_server, airflow_db, tmp_path_factory):
    """Both releases, run side by side: {"promoted": (world, result, clients), "rolled_back": ...}."""
    workdir = tmp_path_factory.mktemp("aws-runs")
    releases = workdir / "releases"
    releases.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        point_aws_at_moto(mp, moto_server, CONN_ID)
        mp.setenv("CANARY_RELEASES_DIR", str(releases))

        aws = clients()
        vpc = aws["ec2"].create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
        subnets = [aws["ec2"].create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=f"eu-west-1{az}")["Subnet"]["SubnetId"]
                   for i, az in ((1, "a"), (2, "b"))]
        worlds = {name: build_world(aws, name, f"aws-{name.replace('_', '-')}", subnets, vpc) for name in ERROR_RATES}
        for name, world in worlds.items():
            (releases / f"aws_{name}.yaml").write_text(yaml.safe_dump(spec_for(f"aws_{name}", world)))

        stop, errors = threading.Event(), []
        threads = [threading.Thread(target=fn, args=(list(worlds.values()), stop, errors), daemon=True)
                   for fn in (record_weights, feed_metrics)]
        for t in threads:
            t.start()
        try:
            started = {name: start_run(f"canary_aws_{name}", {"version": "v2"}, workdir, airflow_db / "airflow.db")
                       for name in worlds}
            deadline = time.monotonic() + RUN_TIMEOUT
            results = {name: finish_run(proc, result, deadline) for name, (proc, result) in started.items()}
            time.sleep(0.3)  # one more look at the weights
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        assert not errors, errors[:5]
        yield {name: (worlds[name], results[name], aws) for name in worlds}


def service(aws, world: World, name: str) -> dict:
    return aws["ecs"].describe_services(cluster=world.cluster, services=[name])["services"][0]


def image_of(aws, task_definition: str, container: str = "web") -> str:
    td = aws["ecs"].describe_task_definition(taskDefinition=task_definition)["taskDefinition"]
    return next(c["image"] for c in td["containerDefinitions"] if c["name"] == container)


def test_healthy_canary_is_promoted_and_the_stable_service_runs_it(runs):
    world, run, aws = runs["promoted"]
    assert run.state == "success" and run.returncode == 0, (run.states, run.tail())
    gates = [w for w in STEPS["promoted"] if w < 100]
    steps = [t for w in gates for t in (f"shift_to_{w}", f"gate_{w}")]
    for task in ("preflight", "deploy_canary", *steps, "approve_100", "promote", "rollback", "complete_rollout"):
        assert run.states[task] == "success", (task, run.states)
    assert run.xcom("rollback")["traffic_changed"] is False  # the undo ran, as a teardown, and left the promotion alone

    # moto's listener went through each step, then straight back to the stable target group (which
    # the promote action had moved to v2 first): the canary target group never took 100%
    assert world.weights == [(0, 100), *[(w, 100 - w) for w in gates], (0, 100)]
    status = json.loads(run.variable("canary_status__aws_promoted"))
    assert status["phase"] == "promoted" and status["weight"] == 0 and status["version"] == "v2"
    assert {"stable_slot", "routed", "after_promote"} <= set(status["promote_done"])
    for w in gates:
        gate = run.xcom(f"gate_{w}")
        assert gate["outcome"] == "advance"
        errors = next(c for c in gate["checks"] if c["check"] == "errors")
        assert errors["verdict"] == "pass" and errors["canary_requests"] >= 500
        srm = next(c for c in gate["checks"] if c["check"] == "sample_ratio")
        assert srm["verdict"] == "pass" and abs(srm["canary_value"] - w / 100) < 0.01  # the canary target group took w%

    stable, canary = service(aws, world, "web-stable"), service(aws, world, "web-canary")
    assert stable["taskDefinition"] != world.v1_task_definition
    assert stable["taskDefinition"].endswith(f"task-definition/{world.cluster}:2")
    assert image_of(aws, stable["taskDefinition"]) == "registry.example/web:v2"
    assert image_of(aws, stable["taskDefinition"], "envoy") == "envoyproxy/envoy:v1.29"
    assert stable["desiredCount"] == 2
    assert canary["taskDefinition"] == stable["taskDefinition"]  # the deploy registered :2; promote reused it
    assert canary["desiredCount"] == 0  # after_promote scaled the canary down

    promote = run.xcom("promote")
    assert promote["canary_weight"] == 0
    assert promote["action"].startswith(f"web-stable → {world.cluster}:2 (image registry.example/web:v2, already registered)")
    assert promote["after_promote"] == "web-canary scaled to 0, stable"
    assert run.xcom("deploy_canary")["action"] == f"web-canary → {world.cluster}:2 (image registry.example/web:v2), desired 2, stable"


def test_bad_canary_is_rolled_back_at_the_first_gate_and_scaled_down(runs):
    world, run, aws = runs["rolled_back"]
    assert run.state == "failed" and run.returncode != 0, (run.states, run.tail())
    assert run.states["gate_10"] == "failed"
    assert run.states["rollback"] == "success"
    assert run.states["shift_to_50"] == "upstream_failed" and run.states["promote"] == "upstream_failed"

    assert world.weights == [(0, 100), (10, 90), (0, 100)]
    evidence = run.xcom("gate_10", "evidence")
    assert evidence["outcome"] == "rollback"
    errors = next(c for c in evidence["checks"] if c["check"] == "errors")
    assert errors["verdict"] == "fail" and errors["canary_value"] > 0.2 and errors["baseline_value"] < 0.02
    assert run.xcom("gate_10", "fast_rollback")["weight_after"] == 0

    rollback = run.xcom("rollback")
    assert rollback["canary_weight"] == 0
    assert "gate_10" in rollback["reason"] and "error rate" in rollback["reason"]
    assert rollback["action"] == "web-canary scaled to 0, stable"

    stable, canary = service(aws, world, "web-stable"), service(aws, world, "web-canary")
    assert canary["desiredCount"] == 0
    assert stable["taskDefinition"] == world.v1_task_definition and stable["desiredCount"] == 2  # untouched
    assert image_of(aws, canary["taskDefinition"]) == "registry.example/web:v2"  # the canary had been deployed
