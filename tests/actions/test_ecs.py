"""ECS actions against moto's server through the Airflow connection ``aws_test``.

What moto does and does not do (moto 5.2.5), and how these tests live with it:
- A new service reports ``runningCount`` 0 (``MOTO_ECS_SERVICE_RUNNING``, unset), so it never looks
  stable; ``UpdateService`` with ``desiredCount`` sets ``runningCount`` to it at once. The fixture
  scales each service once after creating it, as if its tasks had started.
- The one deployment moto creates is never updated (its taskDefinition, counts and IN_PROGRESS
  rollout state stay as they were at creation), so waiting reads the service-level fields.
- moto checks no IAM at all: access-denied and FAILED-rollout answers come from botocore's
  Stubber, which validates every request and response against the real ECS model.
"""

from __future__ import annotations

import time
import uuid

import pytest

from canary_operators.actions import ecs as ecs_actions
from canary_operators.actions import run_action
from canary_operators.exceptions import HookError
from canary_operators.spec import EcsDeployHook, EcsScaleHook, RunConf

RUN = RunConf(release="web", version="v2", stable_version="v1")
ACCOUNT = "123456789012"
TASK_ROLE = f"arn:aws:iam::{ACCOUNT}:role/web-task"
EXECUTION_ROLE = f"arn:aws:iam::{ACCOUNT}:role/ecs-task-execution"


def ecs_client(conn_id: str):
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    return AwsBaseHook(aws_conn_id=conn_id, client_type="ecs").conn


@pytest.fixture
def world(aws_connection, monkeypatch):
    """A fresh cluster with family ``web-<id>`` (containers web and envoy) and two running services."""
    monkeypatch.setattr(ecs_actions, "POLL_SECONDS", 0.05)
    ecs = ecs_client(aws_connection)
    suffix = uuid.uuid4().hex[:8]
    cluster, family = f"apps-{suffix}", f"web-{suffix}"
    ecs.create_cluster(clusterName=cluster)
    td = ecs.register_task_definition(
        family=family, taskRoleArn=TASK_ROLE, executionRoleArn=EXECUTION_ROLE, networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
        containerDefinitions=[
            {"name": "web", "image": "registry.example/web:v1", "essential": True,
             "portMappings": [{"containerPort": 8080}], "environment": [{"name": "MODE", "value": "prod"}]},
            {"name": "envoy", "image": "envoyproxy/envoy:v1.29", "essential": False},
        ],
    )["taskDefinition"]
    for service in ("web-canary", "web-stable"):
        ecs.create_service(cluster=cluster, serviceName=service, taskDefinition=td["taskDefinitionArn"], desiredCount=2)
        ecs.update_service(cluster=cluster, service=service, desiredCount=2)  # moto: tasks "start"
    return {"ecs": ecs, "conn_id": aws_connection, "cluster": cluster, "family": family, "v1": td}


def deploy_action(world, **changes) -> EcsDeployHook:
    fields = dict(type="ecs_deploy", conn_id=world["conn_id"], cluster=world["cluster"], service="web-canary",
                  container="web", image="registry.example/web:{version}", desired_count=3, timeout=5)
    fields.update(changes)
    return EcsDeployHook(**fields)


def service(world, name: str) -> dict:
    return world["ecs"].describe_services(cluster=world["cluster"], services=[name])["services"][0]


def task_definition(world, arn: str) -> dict:
    return world["ecs"].describe_task_definition(taskDefinition=arn)["taskDefinition"]


def revisions(world) -> list[str]:
    return world["ecs"].list_task_definitions(familyPrefix=world["family"])["taskDefinitionArns"]


def containers(td: dict) -> dict:
    return {c["name"]: c for c in td["containerDefinitions"]}


def test_deploy_registers_a_revision_with_only_the_named_container_changed(world):
    done = run_action(deploy_action(world), "deploy", RUN, lambda _: None)

    canary = service(world, "web-canary")
    new = task_definition(world, canary["taskDefinition"])
    assert new["family"] == world["family"] and new["revision"] == 2
    assert done == f"web-canary → {world['family']}:2 (image registry.example/web:v2), desired 3, stable"
    old, now = containers(world["v1"]), containers(new)
    assert now["web"]["image"] == "registry.example/web:v2"
    assert now["envoy"] == old["envoy"]  # the sidecar is untouched
    assert {k: v for k, v in now["web"].items() if k != "image"} == {k: v for k, v in old["web"].items() if k != "image"}
    for kept in ("taskRoleArn", "executionRoleArn", "networkMode", "requiresCompatibilities", "cpu", "memory"):
        assert new[kept] == world["v1"][kept], kept
    assert canary["desiredCount"] == 3
    assert service(world, "web-stable")["taskDefinition"] == world["v1"]["taskDefinitionArn"]  # untouched


def test_a_repeated_deploy_registers_nothing_new(world):
    run_action(deploy_action(world), "deploy", RUN, lambda _: None)
    assert len(revisions(world)) == 2
    again = run_action(deploy_action(world), "deploy", RUN, lambda _: None)
    assert len(revisions(world)) == 2
    assert again == f"web-canary → {world['family']}:2 (image registry.example/web:v2, already running), desired 3, stable"


def test_a_retry_after_register_reuses_the_registered_revision(world):
    # The first attempt registered v2 and died before UpdateService: the family's latest is v2.
    first = run_action(deploy_action(world, service="web-stable", desired_count=None), "promote", RUN, lambda _: None)
    assert first.startswith(f"web-stable → {world['family']}:2 ")
    retry = run_action(deploy_action(world), "deploy", RUN, lambda _: None)  # web-canary is still on :1
    assert len(revisions(world)) == 2
    assert f"→ {world['family']}:2 (image registry.example/web:v2, already registered)" in retry
    assert service(world, "web-canary")["taskDefinition"].endswith(f"{world['family']}:2")


def test_deploy_fills_the_stable_version_and_release_and_keeps_the_count_when_not_set(world):
    action = deploy_action(world, image="registry.example/{release}:{stable_version}", desired_count=None)
    done = run_action(action, "rollback", RUN, lambda _: None)
    canary = service(world, "web-canary")
    assert containers(task_definition(world, canary["taskDefinition"]))["web"]["image"] == "registry.example/web:v1"
    assert canary["desiredCount"] == 2 and "desired" not in done


def test_scale_to_zero(world):
    done = run_action(EcsScaleHook(type="ecs_scale", conn_id=world["conn_id"], cluster=world["cluster"], service="web-canary",
                                   desired_count=0, timeout=5), "after_promote", RUN, lambda _: None)
    assert done == "web-canary scaled to 0, stable"
    assert service(world, "web-canary")["desiredCount"] == 0
    assert service(world, "web-stable")["desiredCount"] == 2


def test_unknown_cluster_service_or_container_is_named(world):
    with pytest.raises(HookError, match="deploy: ECS service 'web-nope' not found in cluster 'apps-.*' \\(MISSING\\)"):
        run_action(deploy_action(world, service="web-nope"), "deploy", RUN, lambda _: None)
    with pytest.raises(HookError, match="rollback: ECS cluster 'no-such-cluster' not found"):
        run_action(EcsScaleHook(type="ecs_scale", conn_id=world["conn_id"], cluster="no-such-cluster", service="web-canary"),
                   "rollback", RUN, lambda _: None)
    with pytest.raises(HookError, match="rollback: ECS service 'ghost' not found"):
        run_action(EcsScaleHook(type="ecs_scale", conn_id=world["conn_id"], cluster=world["cluster"], service="ghost"),
                   "rollback", RUN, lambda _: None)
    with pytest.raises(HookError, match=f"task definition {world['family']}:1 of service web-canary has no container 'app'; "
                                        "its containers: web, envoy"):
        run_action(deploy_action(world, container="app"), "deploy", RUN, lambda _: None)
    assert len(revisions(world)) == 1  # nothing was registered on the way


def test_a_bad_placeholder_in_the_image_is_named(world):
    with pytest.raises(HookError, match="image 'registry.example/web:{tag}' has a bad placeholder"):
        run_action(deploy_action(world, image="registry.example/web:{tag}"), "deploy", RUN, lambda _: None)


def test_a_wait_that_cannot_succeed_times_out_naming_the_service_and_rollout(world):
    # A new service in moto runs 0 of its 2 tasks until its count is updated; this one never is.
    world["ecs"].create_service(cluster=world["cluster"], serviceName="web-stuck",
                                taskDefinition=world["v1"]["taskDefinitionArn"], desiredCount=2)
    started = time.monotonic()
    with pytest.raises(HookError) as err:
        run_action(deploy_action(world, service="web-stuck", desired_count=None, timeout=0.5), "deploy", RUN, lambda _: None)
    assert time.monotonic() - started < 3
    assert str(err.value).startswith("deploy: service web-stuck did not become stable within 0.5s (last deployment IN_PROGRESS")
    assert "running 0 of 2" in str(err.value)
    # the update itself was made: the service points at the new revision
    assert service(world, "web-stuck")["taskDefinition"].endswith(f"{world['family']}:2")


def test_no_wait_returns_at_once(world):
    world["ecs"].create_service(cluster=world["cluster"], serviceName="web-stuck",
                                taskDefinition=world["v1"]["taskDefinitionArn"], desiredCount=2)
    done = run_action(deploy_action(world, service="web-stuck", desired_count=None, wait=False), "deploy", RUN, lambda _: None)
    assert done.endswith(", not waited for")


def test_a_service_on_another_deployment_controller_is_refused(world):
    world["ecs"].create_service(cluster=world["cluster"], serviceName="web-bluegreen", desiredCount=1,
                                taskDefinition=world["v1"]["taskDefinitionArn"], deploymentController={"type": "CODE_DEPLOY"})
    with pytest.raises(HookError, match="'web-bluegreen' uses the CODE_DEPLOY deployment controller"):
        run_action(deploy_action(world, service="web-bluegreen"), "deploy", RUN, lambda _: None)


# ---------------------------------------------------------------------------------------------
# What moto cannot answer: IAM denials and a circuit-breaker rollback, from botocore's Stubber.

SERVICE_ARN = f"arn:aws:ecs:eu-west-1:{ACCOUNT}:service/apps/web-canary"
TD_ARN = f"arn:aws:ecs:eu-west-1:{ACCOUNT}:task-definition/web:7"


def described_service(**deployment) -> dict:
    primary = {"id": "ecs-svc/1", "status": "PRIMARY", "taskDefinition": TD_ARN, "desiredCount": 2, "runningCount": 0,
               "rolloutState": "IN_PROGRESS", **deployment}
    return {"services": [{"serviceArn": SERVICE_ARN, "serviceName": "web-canary", "status": "ACTIVE", "desiredCount": 2,
                          "runningCount": 0, "taskDefinition": TD_ARN, "deployments": [primary],
                          "deploymentController": {"type": "ECS"}}], "failures": []}


DESCRIBED_TD = {"taskDefinition": {
    "taskDefinitionArn": TD_ARN, "family": "web", "revision": 7, "status": "ACTIVE", "taskRoleArn": TASK_ROLE,
    "executionRoleArn": EXECUTION_ROLE, "containerDefinitions": [{"name": "web", "image": "registry.example/web:v1"}],
    "requiresAttributes": [{"name": "com.amazonaws.ecs.capability.task-iam-role"}], "compatibilities": ["EC2", "FARGATE"],
    "registeredBy": f"arn:aws:iam::{ACCOUNT}:user/ci"}}


@pytest.fixture
def stubbed(monkeypatch):
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("ecs", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    stubber = Stubber(client)
    monkeypatch.setattr(ecs_actions, "_client", lambda conn_id, phase: client)
    monkeypatch.setattr(ecs_actions, "POLL_SECONDS", 0.01)
    with stubber:
        yield stubber
    stubber.assert_no_pending_responses()


STUB_DEPLOY = EcsDeployHook(type="ecs_deploy", cluster="apps", service="web-canary", container="web",
                            image="registry.example/web:{version}", timeout=5)


def test_access_denied_names_the_iam_action(stubbed):
    stubbed.add_client_error("describe_services", "AccessDeniedException",
                             f"User: arn:aws:sts::{ACCOUNT}:assumed-role/airflow/x is not authorized to perform: "
                             "ecs:DescribeServices on resource: " + SERVICE_ARN)
    with pytest.raises(HookError, match=r"^deploy: access denied: the connection's identity needs ecs:DescribeServices \("):
        run_action(STUB_DEPLOY, "deploy", RUN, lambda _: None)


def test_access_denied_on_register_names_pass_role_for_the_task_roles(stubbed):
    stubbed.add_response("describe_services", described_service())
    stubbed.add_response("describe_task_definition", DESCRIBED_TD)
    stubbed.add_response("describe_task_definition", DESCRIBED_TD)
    expected = {"family": "web", "taskRoleArn": TASK_ROLE, "executionRoleArn": EXECUTION_ROLE,
                "containerDefinitions": [{"name": "web", "image": "registry.example/web:v2"}]}
    stubbed.add_client_error("register_task_definition", "AccessDeniedException", "denied", expected_params=expected)
    with pytest.raises(HookError) as err:
        run_action(STUB_DEPLOY, "deploy", RUN, lambda _: None)
    assert str(err.value).startswith(f"deploy: access denied: the connection's identity needs ecs:RegisterTaskDefinition "
                                     f"(and iam:PassRole on {TASK_ROLE}, {EXECUTION_ROLE}, which the task definition uses)")

    stubbed.add_response("describe_services", described_service())
    stubbed.add_response("describe_task_definition", DESCRIBED_TD)
    stubbed.add_response("describe_task_definition", DESCRIBED_TD)
    stubbed.add_client_error("register_task_definition", "ClientException",
                             f"User: arn:aws:sts::{ACCOUNT}:assumed-role/airflow/x is not authorized to perform: iam:PassRole "
                             f"on resource: {TASK_ROLE}")
    with pytest.raises(HookError, match=r"needs iam:PassRole on arn:aws:iam::123456789012:role/web-task, "):
        run_action(STUB_DEPLOY, "deploy", RUN, lambda _: None)


def test_access_denied_on_update_service(stubbed):
    stubbed.add_response("describe_services", described_service())
    stubbed.add_client_error("update_service", "AccessDeniedException", "no", expected_params={
        "cluster": "apps", "service": "web-canary", "desiredCount": 0})
    with pytest.raises(HookError, match="needs ecs:UpdateService "):
        run_action(EcsScaleHook(type="ecs_scale", cluster="apps", service="web-canary"), "rollback", RUN, lambda _: None)


def test_a_failed_rollout_stops_the_wait_at_once(stubbed):
    stubbed.add_response("describe_services", described_service())
    stubbed.add_response("update_service", {})
    stubbed.add_response("describe_services", described_service(desiredCount=0))
    stubbed.add_response("describe_services", described_service(
        rolloutState="FAILED", rolloutStateReason="ECS deployment circuit breaker: tasks failed to start."))
    with pytest.raises(HookError, match="service web-canary deployment FAILED: ECS deployment circuit breaker: tasks failed to start"):
        run_action(EcsScaleHook(type="ecs_scale", cluster="apps", service="web-canary", timeout=60), "rollback", RUN, lambda _: None)
