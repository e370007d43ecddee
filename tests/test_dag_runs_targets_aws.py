"""One release to two regions, end to end: an ALB, target groups and an ECS cluster in eu-west-1
and in us-east-1 on moto's server, CloudWatch metrics per region, and a spec with
``targets: [eu, us]`` in lockstep. Two releases run side by side (``airflow dags test``
subprocesses, as in tests/test_dag_runs_aws.py, whose world builder this reuses): one healthy in
both regions, promoted; one faulty in us-east-1 only (30% 5xx against 1%), rolled back in both.

This module has its own moto server, so its feeders never slow the other AWS runs down.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
import yaml

from canary_operators.spec import parse_spec
from tests.airflow_subprocess_runs import finish_run, start_run
from tests.conftest import free_port, set_connection, wait_until
from tests.test_dag_runs_aws import IMAGE, build_world, image_of, service, weights_of

REGIONS = {"eu": ("eu-west-1", "aws_tg_eu"), "us": ("us-east-1", "aws_tg_us")}  # target: (region, connection)
STEPS = {"regions_promoted": [50, 100], "regions_rolled_back": [10, 50, 100]}
# (stable, canary) error rates per release and target: the fault is in us-east-1 only
ERROR_RATES = {("regions_promoted", "eu"): (0.01, 0.01), ("regions_promoted", "us"): (0.01, 0.01),
               ("regions_rolled_back", "eu"): (0.01, 0.01), ("regions_rolled_back", "us"): (0.01, 0.30)}
REQUESTS_PER_TICK = 400
TICK_SECONDS = 0.5
RUN_TIMEOUT = 300


def clients(region: str) -> dict:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    conn_id = next(c for r, c in REGIONS.values() if r == region)
    return {kind: AwsBaseHook(aws_conn_id=conn_id, client_type=kind, region_name=region).conn
            for kind in ("ec2", "elbv2", "ecs", "cloudwatch")}


def target_for(name: str, world, conn_id: str) -> dict:
    ecs = {"conn_id": conn_id, "cluster": world.cluster, "timeout": "30s"}
    return {
        "name": name,
        "router": {"type": "alb", "conn_id": conn_id, "settings": {
            "listener_arn": world.listener_arn, "stable_target_group_arn": world.stable_tg,
            "canary_target_group_arn": world.canary_tg, "retry_wait_seconds": 0.2}},
        "metrics": {"type": "cloudwatch", "conn_id": conn_id, "settings": {
            "source": "alb", "load_balancer": world.load_balancer_arn, "stable_target_group": world.stable_tg,
            "canary_target_group": world.canary_tg, "lag_seconds": 0, "period": 60}},
        "deploy": {"type": "ecs_deploy", **ecs, "service": "web-canary", "container": "web", "image": IMAGE, "desired_count": 2},
        "promote": {"type": "ecs_deploy", **ecs, "service": "web-stable", "container": "web", "image": IMAGE},
        "rollback": {"type": "ecs_scale", **ecs, "service": "web-canary", "desired_count": 0},
    }


def spec_for(release: str, worlds: dict) -> dict:
    data = {
        "name": f"aws_{release}",
        "stable_version": "v1",
        "strategy": "lockstep",
        "steps": STEPS[release],
        "bake_time": "5s",
        "settle_time": "1s",
        "gate_timeout": "150s",  # one whole CloudWatch minute after the shift, whenever in the minute it happens
        "poke_interval": "5s",  # a gate waits for a whole published minute anyway; each look costs moto CPU
        "retries": 0,
        "checks": [{"name": "errors", "kind": "error_rate", "max_increase_pp": 5, "min_requests": 500}],
        "targets": [target_for(t, worlds[t], REGIONS[t][1]) for t in REGIONS],
    }
    parse_spec(data, f"aws_{release}.yaml")  # fail here, readably, if the test's spec is wrong
    return data


def watch(worlds: dict, stop: threading.Event, errors: list) -> None:
    """Records each listener's weights as the runs move them, and publishes each target group's
    CloudWatch metrics (requests split by those weights) in its own region."""
    aws = {region: clients(region) for region, _ in REGIONS.values()}
    last_feed = 0.0
    while not stop.is_set():
        try:
            for (release, target), world in worlds.items():
                elb = aws[REGIONS[target][0]]["elbv2"]
                now = weights_of(elb, world.listener_arn)
                if now != world.current:
                    world.weights.append(now)
            if time.monotonic() - last_feed >= TICK_SECONDS:
                last_feed = time.monotonic()
                stamp = datetime.now(timezone.utc)
                for (release, target), world in worlds.items():
                    canary_weight, stable_weight = world.current
                    rates = dict(zip(("stable", "canary"), ERROR_RATES[(release, target)]))
                    counts = {"canary": round(REQUESTS_PER_TICK * canary_weight / (canary_weight + stable_weight))}
                    counts["stable"] = REQUESTS_PER_TICK - counts["canary"]
                    data = []
                    for slot, tg in (("stable", world.stable_tg), ("canary", world.canary_tg)):
                        dims = [{"Name": "LoadBalancer", "Value": world.load_balancer_arn.split(":loadbalancer/")[1]},
                                {"Name": "TargetGroup", "Value": "targetgroup/" + tg.split(":targetgroup/")[1]}]
                        data += [{"MetricName": "RequestCount", "Dimensions": dims, "Timestamp": stamp, "Value": counts[slot], "Unit": "Count"},
                                 {"MetricName": "HTTPCode_Target_5XX_Count", "Dimensions": dims, "Timestamp": stamp,
                                  "Value": round(counts[slot] * rates[slot]), "Unit": "Count"}]
                    aws[REGIONS[target][0]]["cloudwatch"].put_metric_data(Namespace="AWS/ApplicationELB", MetricData=data)
        except Exception as e:  # noqa: BLE001  reported by the fixture
            errors.append(repr(e))
        time.sleep(0.25)  # each state lasts seconds (a bake, a gate); moto answers cost CPU


@pytest.fixture(scope="module")
def moto():
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(url + "/moto-api/", timeout=1).status_code < 500, 20, "moto_server")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def runs(moto, airflow_db, tmp_path_factory):
    """{release: (worlds by target, RunResult)}, both releases run side by side."""
    workdir = tmp_path_factory.mktemp("aws-regions")
    releases = workdir / "releases"
    releases.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("CANARY_RELEASES_DIR", str(releases))
        for region, conn_id in REGIONS.values():
            set_connection(mp, conn_id, conn_type="aws", login="testing", password="testing",
                           extra={"region_name": region, "endpoint_url": moto})
        worlds: dict[tuple[str, str], object] = {}
        for target, (region, _) in REGIONS.items():
            aws = clients(region)
            vpc = aws["ec2"].create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
            subnets = [aws["ec2"].create_subnet(VpcId=vpc, CidrBlock=f"10.30.{i}.0/24", AvailabilityZone=f"{region}{az}")["Subnet"]["SubnetId"]
                       for i, az in ((1, "a"), (2, "b"))]
            for release in STEPS:
                short = "ok" if release == "regions_promoted" else "bad"
                worlds[(release, target)] = build_world(aws, release, f"aws-reg-{short}-{target}", subnets, vpc)
        for release in STEPS:
            by_target = {t: worlds[(release, t)] for t in REGIONS}
            (releases / f"aws_{release}.yaml").write_text(yaml.safe_dump(spec_for(release, by_target)))

        stop, errors = threading.Event(), []
        thread = threading.Thread(target=watch, args=(worlds, stop, errors), daemon=True)
        thread.start()
        try:
            started = {release: start_run(f"canary_aws_{release}", {"version": "v2"}, workdir, airflow_db / "airflow.db")
                       for release in STEPS}
            deadline = time.monotonic() + RUN_TIMEOUT
            results = {release: finish_run(proc, result, deadline) for release, (proc, result) in started.items()}
            time.sleep(0.3)  # one more look at the weights
        finally:
            stop.set()
            thread.join(10)
        assert not errors, errors[:5]
        yield {release: ({t: worlds[(release, t)] for t in REGIONS}, results[release]) for release in STEPS}


def test_two_regions_in_lockstep_are_promoted_each_on_its_own_alb(runs):
    worlds, run = runs["regions_promoted"]
    assert run.state == "success" and run.returncode == 0, (run.states, run.tail())
    assert run.states["abort_all"] == "skipped"
    for target, world in worlds.items():
        for task in ("preflight", "deploy_canary", "shift_to_50", "gate_50", "promote", "rollback", "complete_rollout"):
            assert run.states[f"{target}.{task}"] == "success", (target, task, run.states)
        assert world.weights == [(0, 100), (50, 50), (0, 100)], (target, world.weights)  # that region's listener
        status = json.loads(run.variable(f"canary_status__aws_regions_promoted__{target}"))
        assert status["phase"] == "promoted" and status["weight"] == 0 and status["version"] == "v2"
        gate = run.xcom(f"{target}.gate_50")
        srm = next(c for c in gate["checks"] if c["check"] == "sample_ratio")
        assert gate["outcome"] == "advance" and abs(srm["canary_value"] - 0.5) < 0.01
        aws = clients(REGIONS[target][0])
        assert image_of(aws, service(aws, world, "web-stable")["taskDefinition"]) == "registry.example/web:v2"


def test_two_regions_in_lockstep_a_fault_in_one_rolls_both_back(runs):
    worlds, run = runs["regions_rolled_back"]
    assert run.state == "failed" and run.returncode != 0, (run.states, run.tail())
    assert run.states["us.gate_10"] == "failed" and run.states["abort_all"] == "success"
    assert "us.gate_10" in run.xcom("abort_all")["reason"]
    for target, world in worlds.items():
        assert world.weights == [(0, 100), (10, 90), (0, 100)], (target, world.weights)
        assert run.states[f"{target}.shift_to_50"] == "upstream_failed" and run.states[f"{target}.rollback"] == "success"
        status = json.loads(run.variable(f"canary_status__aws_regions_rolled_back__{target}"))
        assert status["phase"] == "rolled_back" and status["weight"] == 0, status
        assert "us.gate_10" in run.xcom(f"{target}.rollback")["reason"]
        aws = clients(REGIONS[target][0])
        assert service(aws, world, "web-canary")["desiredCount"] == 0  # the rollback action, in that region
        assert service(aws, world, "web-stable")["taskDefinition"] == world.v1_task_definition
