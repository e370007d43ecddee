"""The ALB router against moto's server (real HTTP, through the Airflow connection and the amazon
provider's hook), and against botocore's Stubber where moto is too lenient: Stubber validates
every request against the real service model, and can answer with throttling or AccessDenied."""

from __future__ import annotations

import copy
import itertools
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import boto3
import pytest
from botocore.stub import Stubber

from canary_operators.exceptions import RouterError, SpecError, WeightNotApplied
from canary_operators.routers import router_class
from canary_operators.routers.alb import ALBRouter
from canary_operators.routers.base import Weights
from canary_operators.spec import parse_spec
from tests.conftest import free_port, set_connection

REGION = "eu-west-1"
_ports = itertools.count(10000)


def aws(moto_server, service):
    return boto3.client(service, endpoint_url=moto_server, region_name=REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture(scope="module")
def elbv2(moto_server):
    return aws(moto_server, "elbv2")


@pytest.fixture(scope="module")
def lb(moto_server, elbv2):
    """A VPC, two subnets, a load balancer and three target groups in moto."""
    ec2 = aws(moto_server, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{i}.0/24", AvailabilityZone=f"{REGION}{az}")["Subnet"]["SubnetId"]
               for i, az in ((1, "a"), (2, "b"))]
    tag = uuid.uuid4().hex[:8]
    arn = elbv2.create_load_balancer(Name=f"alb-{tag}", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
    groups = {name: elbv2.create_target_group(Name=f"{name}-{tag}", Protocol="HTTP", Port=80, VpcId=vpc)
              ["TargetGroups"][0]["TargetGroupArn"] for name in ("stable", "canary", "third")}
    return SimpleNamespace(arn=arn, **groups)


def forward(*weighted, order=None):
    action = {"Type": "forward", "ForwardConfig": {"TargetGroups": [
        {"TargetGroupArn": arn, "Weight": weight} for arn, weight in weighted]}}
    if order is not None:
        action["Order"] = order
    return action


def listener(elbv2, lb, *actions):
    return elbv2.create_listener(LoadBalancerArn=lb.arn, Protocol="HTTP", Port=next(_ports),
                                 DefaultActions=list(actions))["Listeners"][0]["ListenerArn"]


def default_actions(elbv2, listener_arn):
    return elbv2.describe_listeners(ListenerArns=[listener_arn])["Listeners"][0]["DefaultActions"]


def weights(actions):
    """{target group ARN: weight} of the (first) forward action."""
    action = next(a for a in actions if a["Type"] == "forward")
    return {g["TargetGroupArn"]: g["Weight"] for g in action["ForwardConfig"]["TargetGroups"]}


_clients: dict[str, object] = {}


def alb(lb, listener_arn, conn_id="aws_test", **settings):
    r = router_class("alb")({"listener_arn": listener_arn, "stable_target_group_arn": lb.stable,
                             "canary_target_group_arn": lb.canary, "retry_wait_seconds": 0.01, **settings},
                            None, conn_id=conn_id)
    if conn_id == "aws_test":  # one client from the hook for the module: each costs about 0.2 s to build
        if conn_id not in _clients:
            _clients[conn_id] = r.api.client
        r.api.client = _clients[conn_id]
    return r


# -- against moto's server ----------------------------------------------------------------------


def test_apply_sets_both_weights_as_the_load_balancer_reports_them(aws_connection, elbv2, lb):
    arn = listener(elbv2, lb, forward((lb.stable, 100), (lb.canary, 0)))
    r = alb(lb, arn)
    r.check_online()
    for percent in (1, 5, 25, 50, 100, 0):
        assert r.apply(percent) == percent
        assert weights(default_actions(elbv2, arn)) == {lb.stable: 100 - percent, lb.canary: percent}


def test_a_rule_chosen_by_arn_changes_and_the_default_action_does_not(aws_connection, elbv2, lb):
    arn = listener(elbv2, lb, forward((lb.stable, 100), (lb.canary, 0)))
    conditions = [{"Field": "path-pattern", "Values": ["/api/*"]},
                  {"Field": "host-header", "HostHeaderConfig": {"Values": ["shop.example.com"]}}]
    rule_arn = elbv2.create_rule(ListenerArn=arn, Priority=10, Conditions=conditions,
                                 Actions=[forward((lb.stable, 100), (lb.canary, 0), (lb.third, 10))])["Rules"][0]["RuleArn"]
    before = default_actions(elbv2, arn)

    alb(lb, arn, rule_arn=rule_arn).set_canary_weight(25)

    rule = elbv2.describe_rules(RuleArns=[rule_arn])["Rules"][0]
    assert weights(rule["Actions"]) == {lb.stable: 75, lb.canary: 25, lb.third: 10}
    assert rule["Conditions"] == conditions and rule["Priority"] == "10"
    assert default_actions(elbv2, arn) == before


def test_the_default_rule_by_arn_goes_through_the_listener(aws_connection, elbv2, lb):
    arn = listener(elbv2, lb, forward((lb.stable, 100), (lb.canary, 0)))
    default_rule = next(r["RuleArn"] for r in elbv2.describe_rules(ListenerArn=arn)["Rules"] if r["IsDefault"])
    assert alb(lb, arn, rule_arn=default_rule).apply(5) == 5
    assert weights(default_actions(elbv2, arn)) == {lb.stable: 95, lb.canary: 5}


def test_other_target_groups_other_actions_and_their_order_stay(aws_connection, elbv2, lb):
    oidc = {"Type": "authenticate-oidc", "Order": 1, "AuthenticateOidcConfig": {
        "Issuer": "https://idp.example.com", "AuthorizationEndpoint": "https://idp.example.com/auth",
        "TokenEndpoint": "https://idp.example.com/token", "UserInfoEndpoint": "https://idp.example.com/user",
        "ClientId": "web", "ClientSecret": "s3cret"}}
    arn = listener(elbv2, lb, oidc, forward((lb.third, 7), (lb.stable, 100), (lb.canary, 0), order=2))
    before = default_actions(elbv2, arn)

    alb(lb, arn).set_canary_weight(50)

    expected = copy.deepcopy(before)
    expected[1]["ForwardConfig"]["TargetGroups"] = [
        {"TargetGroupArn": lb.third, "Weight": 7}, {"TargetGroupArn": lb.stable, "Weight": 50},
        {"TargetGroupArn": lb.canary, "Weight": 50}]
    assert default_actions(elbv2, arn) == expected


def test_stickiness_is_set_with_its_duration_and_otherwise_left_alone(aws_connection, elbv2, lb):
    arn = listener(elbv2, lb, forward((lb.stable, 100), (lb.canary, 0)))
    assert default_actions(elbv2, arn)[0]["ForwardConfig"]["TargetGroupStickinessConfig"] == {"Enabled": False}

    alb(lb, arn, stickiness_seconds=3600).apply(5)
    sticky = {"Enabled": True, "DurationSeconds": 3600}
    assert default_actions(elbv2, arn)[0]["ForwardConfig"]["TargetGroupStickinessConfig"] == sticky

    alb(lb, arn).apply(25)  # no stickiness setting: keep what is there
    actions = default_actions(elbv2, arn)
    assert actions[0]["ForwardConfig"]["TargetGroupStickinessConfig"] == sticky
    assert weights(actions) == {lb.stable: 75, lb.canary: 25}


def test_a_listener_without_a_forward_action_is_a_clear_error(aws_connection, elbv2, lb):
    arn = listener(elbv2, lb, {"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "503"}})
    expected = (f"alb: listener {arn} has no forward action with target groups {lb.stable} and {lb.canary} "
                f"(its actions: fixed-response)")
    for call in (lambda r: r.apply(10), lambda r: r.check_online(), lambda r: r.get_canary_weight()):
        with pytest.raises(RouterError) as err:
            call(alb(lb, arn))
        assert str(err.value) == expected


def test_a_forward_action_without_the_canary_group_is_a_clear_error(aws_connection, elbv2, lb):
    arn = listener(elbv2, lb, forward((lb.stable, 1), (lb.third, 1)))
    with pytest.raises(RouterError, match=f"no forward action with target groups .*its actions: forward to {lb.stable}, {lb.third}"):
        alb(lb, arn).apply(10)
    assert weights(default_actions(elbv2, arn)) == {lb.stable: 1, lb.third: 1}


def test_unknown_listener_and_rule_arns_are_named(aws_connection, elbv2, lb):
    missing = lb.arn.replace(":loadbalancer/", ":listener/") + "/0123456789abcdef"
    with pytest.raises(RouterError, match=f"alb: listener {missing} not found \\(ListenerNotFound: "):
        alb(lb, missing).apply(10)
    arn = listener(elbv2, lb, forward((lb.stable, 100), (lb.canary, 0)))
    missing_rule = arn.replace(":listener/", ":listener-rule/") + "/0123456789abcdef"
    with pytest.raises(RouterError, match=f"alb: listener rule {missing_rule} not found \\(RuleNotFound: "):
        alb(lb, arn, rule_arn=missing_rule).check_online()


def test_check_online_finds_a_target_group_that_does_not_exist(aws_connection, elbv2, lb):
    # moto's ModifyListener takes a target group that does not exist; AWS's would not.
    ghost = lb.canary.rsplit("/", 2)[0] + "/ghost/0123456789abcdef"
    arn = listener(elbv2, lb, forward((lb.stable, 100), (lb.canary, 0)))
    elbv2.modify_listener(ListenerArn=arn, DefaultActions=[forward((lb.stable, 100), (ghost, 0))])
    r = router_class("alb")({"listener_arn": arn, "stable_target_group_arn": lb.stable,
                             "canary_target_group_arn": ghost}, None, conn_id="aws_test")
    assert r.get_canary_weight() == 0
    with pytest.raises(RouterError, match=f"alb: target group {ghost} not found \\(TargetGroupNotFound: "):
        r.check_online()


def test_a_third_target_group_shows_as_elsewhere_and_fails_the_read_back(aws_connection, elbv2, lb):
    arn = listener(elbv2, lb, forward((lb.stable, 100), (lb.canary, 0), (lb.third, 10)))
    r = alb(lb, arn)
    assert r.get_weights() == Weights(stable=91, canary=0, other=9)
    with pytest.raises(WeightNotApplied) as err:
        r.apply(25)
    assert str(err.value) == "alb: set canary weight 25% but it reads back stable 68%, canary 23%, elsewhere 9%"
    assert weights(default_actions(elbv2, arn)) == {lb.stable: 75, lb.canary: 25, lb.third: 10}
    with pytest.raises(WeightNotApplied, match="put all traffic back on stable but it reads back stable 91%, "
                                               "canary 0%, elsewhere 9%"):
        r.restore()


def test_both_weights_zero_shows_as_zero(aws_connection, elbv2, lb):
    arn = listener(elbv2, lb, forward((lb.stable, 0), (lb.canary, 0)))
    assert alb(lb, arn).get_weights() == Weights(stable=0, canary=0, other=0)
    assert alb(lb, arn).get_canary_weight() == 0
    elbv2.modify_listener(ListenerArn=arn, DefaultActions=[forward((lb.stable, 0), (lb.canary, 0), (lb.third, 1))])
    assert alb(lb, arn).get_weights() == Weights(stable=0, canary=0, other=100)
    with pytest.raises(WeightNotApplied, match="reads back stable 99%, canary 0%, elsewhere 1%"):
        alb(lb, arn).restore()  # the release never sets the third group: it keeps its weight
class _NoCalls:
    """A client that fails the test if the router calls AWS at all."""

    def __getattr__(self, name):
        raise AssertionError(f"unexpected AWS call: {name}")


@pytest.mark.parametrize("percent, message", [
    (1000, "canary weight 1000% gives canary target group weight 1000; ALB weights are integers 0..999"),
    (101, "canary weight 101% gives stable target group weight -1; ALB weights are integers 0..999"),
    (-1, "canary weight -1% gives canary target group weight -1; ALB weights are integers 0..999"),
    (12.5, "canary weight 12.5% gives canary target group weight 12.5; ALB weights are integers 0..999"),
])
def test_weights_outside_what_alb_takes_fail_before_any_call(lb, percent, message):
    r = alb(lb, lb.arn.replace(":loadbalancer/", ":listener/") + "/1", conn_id="unused")
    r.api.client = _NoCalls()
    with pytest.raises(RouterError) as err:
        r.set_canary_weight(percent)
    assert str(err.value) == "alb: " + message
    with pytest.raises(RouterError, match="not a percentage"):
        r.apply(101)


# -- requests as the real service model takes them, and failures moto cannot produce --------------

LISTENER = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2"
RULE = LISTENER.replace(":listener/", ":listener-rule/") + "/9683b2d02a6cabee"
LB = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/web/50dc6c495c0c9188"
STABLE = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web-stable/73e2d6bc24d8a067"
CANARY = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web-canary/2453ed029918f21f"
OIDC = {"Issuer": "https://idp.example.com", "AuthorizationEndpoint": "https://idp.example.com/auth",
        "TokenEndpoint": "https://idp.example.com/token", "UserInfoEndpoint": "https://idp.example.com/user",
        "ClientId": "web", "SessionCookieName": "AWSELBAuthSessionCookie", "Scope": "openid",
        "SessionTimeout": 604800, "OnUnauthenticatedRequest": "authenticate"}


def as_aws_returns_it(stable_weight=100, canary_weight=0):
    """Default actions the way DescribeListeners returns them: the OIDC client secret left out,
    and (as AWS does for a forward action) a TargetGroupArn beside the ForwardConfig."""
    return [
        {"Type": "authenticate-oidc", "Order": 1, "AuthenticateOidcConfig": dict(OIDC)},
        {"Type": "forward", "Order": 2, "TargetGroupArn": STABLE, "ForwardConfig": {
            "TargetGroups": [{"TargetGroupArn": STABLE, "Weight": stable_weight},
                             {"TargetGroupArn": CANARY, "Weight": canary_weight}],
            "TargetGroupStickinessConfig": {"Enabled": False}}},
    ]


def described(actions=None):
    return {"Listeners": [{"ListenerArn": LISTENER, "LoadBalancerArn": LB, "Port": 443, "Protocol": "HTTPS",
                           "DefaultActions": actions or as_aws_returns_it()}]}


@pytest.fixture
def stubbed(aws_connection):
    """A router whose hook-built client answers from a Stubber; ``calls`` counts calls per operation."""
    r = router_class("alb")({"listener_arn": LISTENER, "stable_target_group_arn": STABLE,
                             "canary_target_group_arn": CANARY, "max_attempts": 3, "retry_wait_seconds": 0.01},
                            None, conn_id=aws_connection)
    calls: dict[str, int] = {}
    r.api.client.meta.events.register(
        "before-parameter-build.*.*", lambda model, **_: calls.__setitem__(model.name, calls.get(model.name, 0) + 1))
    with Stubber(r.api.client) as stub:
        yield SimpleNamespace(router=r, stub=stub, calls=calls)


def test_modify_listener_request_is_valid_for_the_real_service_model(stubbed):
    stubbed.stub.add_response("describe_listeners", described(), {"ListenerArns": [LISTENER]})
    expected_actions = [
        {"Type": "authenticate-oidc", "Order": 1, "AuthenticateOidcConfig": {**OIDC, "UseExistingClientSecret": True}},
        {"Type": "forward", "Order": 2, "ForwardConfig": {
            "TargetGroups": [{"TargetGroupArn": STABLE, "Weight": 95}, {"TargetGroupArn": CANARY, "Weight": 5}],
            "TargetGroupStickinessConfig": {"Enabled": False}}},
    ]
    stubbed.stub.add_response("modify_listener", {"Listeners": []},
                              {"ListenerArn": LISTENER, "DefaultActions": expected_actions})
    stubbed.router.set_canary_weight(5)
    stubbed.stub.assert_no_pending_responses()


def test_modify_rule_request_is_valid_for_the_real_service_model(aws_connection):
    r = router_class("alb")({"listener_arn": LISTENER, "rule_arn": RULE, "stable_target_group_arn": STABLE,
                             "canary_target_group_arn": CANARY, "stickiness_seconds": 600}, None, conn_id=aws_connection)
    rule = {"RuleArn": RULE, "Priority": "10", "IsDefault": False,
            "Conditions": [{"Field": "path-pattern", "Values": ["/api/*"], "PathPatternConfig": {"Values": ["/api/*"]}}],
            "Actions": [as_aws_returns_it()[1]]}
    with Stubber(r.api.client) as stub:
        stub.add_response("describe_rules", {"Rules": [rule]}, {"RuleArns": [RULE]})
        stub.add_response("modify_rule", {"Rules": []}, {"RuleArn": RULE, "Actions": [
            {"Type": "forward", "Order": 2, "ForwardConfig": {
                "TargetGroups": [{"TargetGroupArn": STABLE, "Weight": 50}, {"TargetGroupArn": CANARY, "Weight": 50}],
                "TargetGroupStickinessConfig": {"Enabled": True, "DurationSeconds": 600}}}]})
        r.set_canary_weight(50)
        stub.assert_no_pending_responses()


def test_access_denied_names_the_iam_action_and_is_not_retried(stubbed):
    stubbed.stub.add_response("describe_listeners", described())
    stubbed.stub.add_client_error("modify_listener", "AccessDenied", http_status_code=403,
                                  service_message="User: arn:aws:sts::123456789012:assumed-role/airflow/x is not "
                                                  "authorized to perform: elasticloadbalancing:ModifyListener")
    with pytest.raises(RouterError, match="alb: access denied: the connection's IAM identity needs "
                                          "elasticloadbalancing:ModifyListener \\(AccessDenied: "):
        stubbed.router.set_canary_weight(5)
    assert stubbed.calls == {"DescribeListeners": 1, "ModifyListener": 1}


def test_access_denied_on_reading_names_the_describe_action(stubbed):
    stubbed.stub.add_client_error("describe_listeners", "AccessDenied", http_status_code=403)
    with pytest.raises(RouterError, match="needs elasticloadbalancing:DescribeListeners"):
        stubbed.router.get_canary_weight()
    assert stubbed.calls == {"DescribeListeners": 1}


def test_throttling_and_5xx_are_retried_until_the_call_succeeds(stubbed):
    stubbed.stub.add_client_error("describe_listeners", "Throttling", "Rate exceeded", http_status_code=400)
    stubbed.stub.add_client_error("describe_listeners", "Throttling", "Rate exceeded", http_status_code=400)
    stubbed.stub.add_response("describe_listeners", described())
    stubbed.stub.add_client_error("modify_listener", "InternalFailure", http_status_code=500)
    stubbed.stub.add_response("modify_listener", {"Listeners": []})
    stubbed.router.set_canary_weight(25)
    stubbed.stub.assert_no_pending_responses()
    assert stubbed.calls == {"DescribeListeners": 3, "ModifyListener": 2}


def test_throttling_beyond_max_attempts_is_a_router_error(stubbed):
    for _ in range(3):
        stubbed.stub.add_client_error("describe_listeners", "RequestLimitExceeded", "slow down", http_status_code=400)
    with pytest.raises(RouterError, match="alb: elasticloadbalancing:DescribeListeners still failing after 3 attempts: "
                                          "RequestLimitExceeded: slow down"):
        stubbed.router.get_canary_weight()
    assert stubbed.calls == {"DescribeListeners": 3}


def test_other_rejections_are_not_retried(stubbed):
    stubbed.stub.add_response("describe_listeners", described())
    stubbed.stub.add_client_error("modify_listener", "ValidationError", "bad action", http_status_code=400)
    with pytest.raises(RouterError, match="alb: elasticloadbalancing:ModifyListener rejected: ValidationError: bad action"):
        stubbed.router.set_canary_weight(5)
    assert stubbed.calls == {"DescribeListeners": 1, "ModifyListener": 1}


# -- verify: the forward action described again, and a healthy target where traffic must go -------


def test_verify_against_moto_cannot_tell(aws_connection, moto_server, elbv2, lb):
    vpc = elbv2.describe_target_groups(TargetGroupArns=[lb.stable])["TargetGroups"][0]["VpcId"]
    canary = elbv2.create_target_group(Name=f"ip-{uuid.uuid4().hex[:8]}", Protocol="HTTP", Port=80, VpcId=vpc,
                                       TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
    # moto calls a registered target healthy without checking it: nothing listens at 10.9.1.77.
    elbv2.register_targets(TargetGroupArn=canary, Targets=[{"Id": "10.9.1.77", "Port": 8080}])
    health = elbv2.describe_target_health(TargetGroupArn=canary)["TargetHealthDescriptions"]
    assert [h["TargetHealth"]["State"] for h in health] == ["healthy"]
    arn = listener(elbv2, lb, forward((lb.stable, 100), (canary, 0)))
    r = router_class("alb")({"listener_arn": arn, "stable_target_group_arn": lb.stable,
                             "canary_target_group_arn": canary}, None, conn_id="aws_test")
    applied = r.apply_verified(25)
    assert applied.weights == Weights(stable=75, canary=25) and applied.verified is None
    assert r.restore().verified is None


@pytest.fixture
def on_aws(aws_connection):
    """A router whose client has AWS's endpoint (not moto's) and answers from a Stubber."""
    r = router_class("alb")({"listener_arn": LISTENER, "stable_target_group_arn": STABLE,
                             "canary_target_group_arn": CANARY, "max_attempts": 1}, None, conn_id=aws_connection)
    r.api.client = boto3.client("elbv2", region_name=REGION, aws_access_key_id="testing",
                                aws_secret_access_key="testing")
    assert r.api.client.meta.endpoint_url == f"https://elasticloadbalancing.{REGION}.amazonaws.com"
    with Stubber(r.api.client) as stub:
        yield SimpleNamespace(router=r, stub=stub)


def health(*states):
    """DescribeTargetHealth's answer: one target per state, ``"healthy"`` or ``("unhealthy", reason)``."""
    targets = []
    for i, state in enumerate(states):
        state, reason = (state, None) if isinstance(state, str) else state
        targets.append({"Target": {"Id": f"10.0.0.{i + 1}", "Port": 8080}, "HealthCheckPort": "8080",
                        "TargetHealth": {"State": state, **({"Reason": reason} if reason else {})}})
    return {"TargetHealthDescriptions": targets}


HEALTHY = ("healthy",)
UNHEALTHY = (("unhealthy", "Target.FailedHealthChecks"),)
INITIAL = (("initial", "Elb.RegistrationInProgress"),)
UNCHECKED = (("unavailable", "Target.HealthCheckDisabled"),)


@pytest.mark.parametrize("percent, stable, canary, verified", [
    (25, HEALTHY, HEALTHY, True),
    (25, HEALTHY, UNHEALTHY + HEALTHY, True),  # one healthy target is enough
    (25, HEALTHY, (), False),  # no registered target: the ALB answers 503
    (25, HEALTHY, UNHEALTHY, False),  # all unhealthy: the ALB fails open to them
    (25, HEALTHY, (("draining", "Target.DeregistrationInProgress"),), False),
    (25, HEALTHY, INITIAL, None),  # not checked yet
    (25, HEALTHY, UNCHECKED, None),  # health checks off (a Lambda target group's default)
    (25, UNHEALTHY, INITIAL, False),  # stable does not serve, whatever the canary becomes
    (0, HEALTHY, None, True),  # a group that takes no traffic is not asked
    (100, None, HEALTHY, True),
    (100, None, (), False),
])
def test_verify_asks_for_the_health_of_each_group_that_takes_traffic(on_aws, percent, stable, canary, verified):
    on_aws.stub.add_response("describe_listeners", described(as_aws_returns_it(100 - percent, percent)),
                             {"ListenerArns": [LISTENER]})
    for arn, states in ((STABLE, stable), (CANARY, canary)):
        if states is not None:
            on_aws.stub.add_response("describe_target_health", health(*states), {"TargetGroupArn": arn})
    assert on_aws.router.verify(percent) is verified
    on_aws.stub.assert_no_pending_responses()


def test_verify_is_false_when_the_forward_action_says_otherwise(on_aws):
    on_aws.stub.add_response("describe_listeners", described(as_aws_returns_it(100, 0)))
    assert on_aws.router.verify(25) is False  # no target health asked


def test_verify_cannot_tell_without_describe_target_health(on_aws, caplog):
    on_aws.stub.add_response("describe_listeners", described(as_aws_returns_it(75, 25)))
    for _ in (STABLE, CANARY):
        on_aws.stub.add_client_error("describe_target_health", "AccessDenied", http_status_code=403)
    assert on_aws.router.verify(25) is None
    assert "needs elasticloadbalancing:DescribeTargetHealth" in caplog.text


def test_apply_fails_when_the_canary_group_has_no_healthy_target(on_aws):
    stub = on_aws.stub
    stub.add_response("describe_listeners", described())
    stub.add_response("modify_listener", {"Listeners": []})
    for _ in range(2):  # the read-back, then verify
        stub.add_response("describe_listeners", described(as_aws_returns_it(75, 25)))
    stub.add_response("describe_target_health", health("healthy"), {"TargetGroupArn": STABLE})
    stub.add_response("describe_target_health", health(), {"TargetGroupArn": CANARY})
    with pytest.raises(WeightNotApplied) as err:
        on_aws.router.apply(25)
    assert str(err.value) == ("alb: the route reads back stable 75%, canary 25%, but the data plane does not route "
                              "25% to the canary")


# -- botocore's own retries are off: max_attempts is the number of HTTP requests ------------------


class _Throttled(BaseHTTPRequestHandler):
    requests = 0

    def do_POST(self):
        type(self).requests += 1
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = (b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message>"
                b"</Error><RequestId>1</RequestId></ErrorResponse>")
        self.send_response(400)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_through_the_hook_each_attempt_is_one_http_request(monkeypatch, lb):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Throttled)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        set_connection(monkeypatch, "aws_throttled", conn_type="aws", login="testing", password="testing",
                       extra={"region_name": REGION, "endpoint_url": f"http://127.0.0.1:{server.server_port}"})
        with pytest.raises(RouterError, match="DescribeListeners still failing after 3 attempts: Throttling"):
            alb(lb, LISTENER, conn_id="aws_throttled", max_attempts=3).get_canary_weight()
        assert _Throttled.requests == 3
    finally:
        server.shutdown()
        server.server_close()


def test_an_unreachable_endpoint_is_retried_then_a_router_error(monkeypatch, lb):
    set_connection(monkeypatch, "aws_down", conn_type="aws", login="testing", password="testing",
                   extra={"region_name": REGION, "endpoint_url": f"http://127.0.0.1:{free_port()}"})
    with pytest.raises(RouterError, match="alb: AWS unreachable for elasticloadbalancing:DescribeListeners after 2 attempts"):
        alb(lb, LISTENER, conn_id="aws_down", max_attempts=2).check_online()


# -- settings, registry and spec ------------------------------------------------------------------


@pytest.mark.parametrize("change, message", [
    ({"listener_arn": "web-listener"}, "must be an Application Load Balancer listener ARN"),
    ({"stable_target_group_arn": "web-stable"}, "must be an Application Load Balancer target group ARN"),
    ({"canary_target_group_arn": STABLE}, "must differ from stable_target_group_arn"),
    ({"rule_arn": RULE.replace("f2f7dc8efc522ab2", "0000000000000000")}, "must be a rule of listener_arn"),
    ({"stickiness_seconds": 604801}, "less than or equal to 604800"),
    ({"max_attempts": 0}, "greater than or equal to 1"),
    ({"weight": 5}, "Extra inputs are not permitted"),
])
def test_bad_settings_are_rejected(change, message):
    settings = {"listener_arn": LISTENER, "stable_target_group_arn": STABLE, "canary_target_group_arn": CANARY, **change}
    with pytest.raises(ValueError, match=message):
        ALBRouter(settings, None, conn_id="aws_test")


def spec(**settings):
    return {"name": "web", "metrics": {"type": "prometheus", "conn_id": "p"},
            "router": {"type": "alb", "conn_id": "aws_test", "settings": {
                "listener_arn": LISTENER, "rule_arn": RULE, "stable_target_group_arn": STABLE,
                "canary_target_group_arn": CANARY, **settings}},
            # an ALB cannot promote by itself: the new version reaches the stable target group by an action
            "promote": {"type": "ecs_deploy", "conn_id": "aws_test", "cluster": "web", "service": "web-stable",
                        "container": "web", "image": "registry.example/web:{version}"}}


def test_registry_and_spec_know_the_alb_router():
    assert router_class("alb") is ALBRouter
    release = parse_spec(spec(stickiness_seconds=300), "web.yaml")
    assert release.router.type == "alb" and release.router.settings["stickiness_seconds"] == 300
    with pytest.raises(SpecError, match="web.yaml: router.settings.stickiness_seconds=0: Input should be greater than or equal to 1"):
        parse_spec(spec(stickiness_seconds=0), "web.yaml")
    with pytest.raises(SpecError, match="router.settings.listener_arn=nope: must be an Application Load Balancer listener ARN"):
        parse_spec(spec(listener_arn="nope"), "web.yaml")
    with pytest.raises(SpecError, match="promote: required: router alb cannot promote by itself"):
        parse_spec({k: v for k, v in spec().items() if k != "promote"}, "web.yaml")
