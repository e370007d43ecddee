"""The Lambda alias router against moto's server (real HTTP, through the Airflow connection and
the amazon provider's hook), and against botocore's Stubber for request shapes and for failures
moto cannot produce (AccessDenied, throttling, a concurrent change)."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from types import SimpleNamespace

import boto3
import pytest
from botocore.stub import ANY, Stubber

from canary_operators.exceptions import RouterError, SpecError, WeightNotApplied
from canary_operators.routers import router_class
from canary_operators.routers.base import Weights
from canary_operators.routers.lambda_alias import LambdaAliasRouter
from canary_operators.spec import RunConf, parse_spec

REGION = "eu-west-1"


def aws(moto_server, service):
    return boto3.client(service, endpoint_url=moto_server, region_name=REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def zipped(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("handler.py", source)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def lambdas(moto_server):
    return aws(moto_server, "lambda")


@pytest.fixture(scope="module")
def role(moto_server):
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    return aws(moto_server, "iam").create_role(RoleName=f"canary-{uuid.uuid4().hex[:8]}",
                                               AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]


@pytest.fixture
def function(lambdas, role):
    """A function with published versions 1 and 2, and alias ``live`` → 1."""
    name = f"web-{uuid.uuid4().hex[:8]}"
    lambdas.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="handler.main",
                            Code={"ZipFile": zipped("def main(event, context):\n    return 1\n")})
    assert lambdas.publish_version(FunctionName=name)["Version"] == "1"
    lambdas.update_function_code(FunctionName=name, ZipFile=zipped("def main(event, context):\n    return 2\n"))
    assert lambdas.publish_version(FunctionName=name)["Version"] == "2"
    lambdas.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    return name


def run(version="2", stable_version="1"):
    return RunConf(release="web", version=version, stable_version=stable_version)


_clients: dict[str, object] = {}


def router(function_name, alias="live", run_conf=..., shared_client=True, **settings):
    r = router_class("lambda_alias")({"function_name": function_name, "alias": alias, "retry_wait_seconds": 0.01,
                                      **settings}, None, conn_id="aws_test", run=run() if run_conf is ... else run_conf)
    if shared_client:  # one client from the hook for the module: each costs about 0.2 s to build
        if "aws_test" not in _clients:
            _clients["aws_test"] = r.api.client
        r.api.client = _clients["aws_test"]
    return r


def alias_state(lambdas, name):
    alias = lambdas.get_alias(FunctionName=name, Name="live")
    return alias["FunctionVersion"], (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights", {})


# -- against moto's server ----------------------------------------------------------------------


def test_apply_sets_the_extra_weight_of_the_canary_version(aws_connection, lambdas, function):
    r = router(function)
    r.check_online()
    assert r.get_canary_weight() == 0
    for percent in (1, 5, 10, 25, 50):
        assert r.apply(percent) == percent
        assert alias_state(lambdas, function) == ("1", {"2": percent / 100})
    assert r.apply(0) == 0
    assert alias_state(lambdas, function) == ("1", {})


def test_100_points_the_alias_at_the_canary_and_0_brings_it_back(aws_connection, lambdas, function):
    r = router(function)
    r.apply(10)
    assert r.apply(100) == 100
    assert alias_state(lambdas, function) == ("2", {})
    assert r.apply(25) == 25  # the stable version is now the run's stable_version
    assert alias_state(lambdas, function) == ("1", {"2": 0.25})
    r.apply(100)
    assert r.apply(0) == 0
    assert alias_state(lambdas, function) == ("1", {})


def test_promote_as_the_promote_operator_calls_it(aws_connection, lambdas, function):
    r = router(function)
    r.apply(50)
    assert r.apply(100) == 100
    assert r.promote() == f"lambda alias {function}:live → version 2 (already)"
    assert r.get_canary_weight() == 100
    assert alias_state(lambdas, function) == ("2", {})


def test_promote_from_a_partial_weight_and_rollback_after_it(aws_connection, lambdas, function):
    r = router(function)
    r.apply(5)
    assert r.promote() == f"lambda alias {function}:live → version 2 (was 1)"
    assert alias_state(lambdas, function) == ("2", {})
    assert r.apply(0) == 0  # the rollback operator, should a later task fail
    assert alias_state(lambdas, function) == ("1", {})


def test_missing_function_and_alias_are_named(aws_connection, lambdas, function):
    with pytest.raises(RouterError, match="lambda_alias: function 'nope' not found \\(ResourceNotFoundException: "):
        router("nope").apply(10)
    with pytest.raises(RouterError, match=f"lambda_alias: alias 'canary' of function '{function}' not found "
                                          "\\(ResourceNotFoundException: "):
        router(function, alias="canary").check_online()


def test_a_canary_version_that_does_not_exist_is_named(aws_connection, lambdas, function):
    # moto takes a missing version in AdditionalVersionWeights; the alias itself must exist though.
    with pytest.raises(RouterError, match=f"lambda_alias: version 9 of function '{function}' not found"):
        router(function, run_conf=run(version="9")).promote()


def test_without_a_run_there_is_no_canary_version(aws_connection, lambdas, function):
    r = router(function, run_conf=None)
    r.check_online()  # the function and alias exist: fine
    for call in (lambda: r.set_canary_weight(10), r.get_canary_weight, r.promote):
        with pytest.raises(RouterError, match=f"lambda_alias: the canary is the run's version \\(a Lambda version "
                                              f"number\\), but no run was given to the router of alias 'live' of "
                                              f"function '{function}'"):
            call()
    assert alias_state(lambdas, function) == ("1", {})


@pytest.mark.parametrize("version", ["v2", "$LATEST", "2.1"])
def test_the_run_version_must_be_a_lambda_version_number(aws_connection, lambdas, function, version):
    r = router(function, run_conf=run(version=version))
    with pytest.raises(RouterError, match=f"the run's version '{version.replace('$', '[$]')}' is not a published "
                                          "Lambda version number"):
        r.check_online()
    with pytest.raises(RouterError, match="not a published Lambda version number"):
        r.apply(10)


def test_once_on_the_canary_a_partial_weight_needs_another_stable_version(aws_connection, lambdas, function):
    router(function).apply(100)
    with pytest.raises(RouterError, match=f"alias 'live' of function '{function}' points at the canary version 2, "
                                          "and the run's stable_version 'v1' is not another Lambda version number"):
        router(function, run_conf=run(stable_version="v1")).apply(0)
    assert alias_state(lambdas, function) == ("2", {})


def test_get_weights_shows_both_sides_and_any_other_version(aws_connection, lambdas, function):
    r = router(function)
    assert r.get_weights() == Weights(stable=100, canary=0)
    r.apply(25)
    assert r.get_weights() == Weights(stable=75, canary=25)
    # someone routes to a version the release never sets (moto takes a version that does not exist)
    lambdas.update_alias(FunctionName=function, Name="live", FunctionVersion="1",
                         RoutingConfig={"AdditionalVersionWeights": {"3": 0.1}})
    assert r.get_weights() == Weights(stable=90, canary=0, other=10)
    lambdas.update_alias(FunctionName=function, Name="live", FunctionVersion="2",
                         RoutingConfig={"AdditionalVersionWeights": {"3": 0.5}})
    assert r.get_weights() == Weights(stable=0, canary=50, other=50)  # stable (the run's "1") shows at 0


def test_verify_cannot_tell_and_says_so(aws_connection, lambdas, function):
    applied = router(function).apply_verified(10)
    assert applied.weights == Weights(stable=90, canary=10) and applied.verified is None
    assert "this router cannot verify what the data plane does" in applied.describe()


def test_finalize_puts_every_request_on_stable(aws_connection, lambdas, function):
    r = router(function)
    r.apply(25)
    r.finalize()
    assert alias_state(lambdas, function) == ("1", {})
    r.finalize()  # idempotent
    assert alias_state(lambdas, function) == ("1", {})
    r.promote()
    restored = r.restore()  # after a promotion: back on the run's stable version
    assert alias_state(lambdas, function) == ("1", {})
    assert restored.weights == Weights(stable=100, canary=0) and restored.verified is None


# -- requests as the real service model takes them, and failures moto cannot produce --------------

ALIAS = {"AliasArn": "arn:aws:lambda:eu-west-1:123456789012:function:web:live", "Name": "live",
         "FunctionVersion": "1", "Description": "", "RevisionId": "1f3c2a64-7a53-4c7e-9d4b-0b5f1c8a9e21"}


@pytest.fixture
def stubbed(aws_connection):
    r = router("web", max_attempts=3, shared_client=False)
    calls: dict[str, int] = {}
    r.api.client.meta.events.register(
        "before-parameter-build.*.*", lambda model, **_: calls.__setitem__(model.name, calls.get(model.name, 0) + 1))
    with Stubber(r.api.client) as stub:
        yield SimpleNamespace(router=r, stub=stub, calls=calls)


def test_update_alias_requests_are_valid_for_the_real_service_model(stubbed):
    stub, revision = stubbed.stub, ALIAS["RevisionId"]
    for percent, version, weights in ((25, "1", {"2": 0.25}), (0, "1", {}), (100, "2", {})):
        stub.add_response("get_alias", ALIAS, {"FunctionName": "web", "Name": "live"})
        stub.add_response("update_alias", ALIAS, {
            "FunctionName": "web", "Name": "live", "FunctionVersion": version,
            "RoutingConfig": {"AdditionalVersionWeights": weights}, "RevisionId": revision})
        stubbed.router.set_canary_weight(percent)
    stub.assert_no_pending_responses()


def test_access_denied_names_the_iam_action_and_is_not_retried(stubbed):
    stubbed.stub.add_response("get_alias", ALIAS)
    stubbed.stub.add_client_error("update_alias", "AccessDeniedException", http_status_code=403,
                                  service_message="User: arn:aws:sts::123456789012:assumed-role/airflow/x is not "
                                                  "authorized to perform: lambda:UpdateAlias")
    with pytest.raises(RouterError, match="lambda_alias: access denied: the connection's IAM identity needs "
                                          "lambda:UpdateAlias \\(AccessDeniedException: "):
        stubbed.router.apply(10)
    assert stubbed.calls == {"GetAlias": 1, "UpdateAlias": 1}


def test_access_denied_on_reading_names_get_alias(stubbed):
    stubbed.stub.add_client_error("get_alias", "AccessDeniedException", http_status_code=403)
    with pytest.raises(RouterError, match="needs lambda:GetAlias"):
        stubbed.router.check_online()
    assert stubbed.calls == {"GetAlias": 1}


def test_throttling_is_retried_until_the_call_succeeds(stubbed):
    stubbed.stub.add_client_error("get_alias", "TooManyRequestsException", "Rate exceeded", http_status_code=429)
    stubbed.stub.add_client_error("get_alias", "TooManyRequestsException", "Rate exceeded", http_status_code=429)
    stubbed.stub.add_response("get_alias", ALIAS)
    stubbed.stub.add_client_error("update_alias", "ServiceException", http_status_code=500)
    stubbed.stub.add_response("update_alias", ALIAS, {"FunctionName": "web", "Name": "live", "FunctionVersion": "1",
                                                      "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.05}},
                                                      "RevisionId": ANY})
    stubbed.router.set_canary_weight(5)
    stubbed.stub.assert_no_pending_responses()
    assert stubbed.calls == {"GetAlias": 3, "UpdateAlias": 2}


def test_a_concurrent_change_of_the_alias_is_a_clear_error(stubbed):
    stubbed.stub.add_response("get_alias", ALIAS)
    stubbed.stub.add_client_error("update_alias", "PreconditionFailedException", "The Revision Id provided does not "
                                  "match the latest Revision Id.", http_status_code=412)
    with pytest.raises(RouterError, match="alias 'live' of function 'web' was changed by someone else while being updated"):
        stubbed.router.set_canary_weight(5)
    assert stubbed.calls == {"GetAlias": 1, "UpdateAlias": 1}



def test_another_version_read_back_fails_apply(stubbed):
    stubbed.stub.add_response("get_alias", ALIAS)
    stubbed.stub.add_response("update_alias", ALIAS)
    # someone else's change lands between the write and the read-back
    stubbed.stub.add_response("get_alias", {**ALIAS, "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.1, "3": 0.05}}})
    with pytest.raises(WeightNotApplied) as err:
        stubbed.router.apply(10)
    assert str(err.value) == ("lambda_alias: set canary weight 10% but it reads back stable 85%, canary 10%, "
                              "elsewhere 5%")


@pytest.mark.parametrize("message, named", [
    ("Function not found: arn:aws:lambda:eu-west-1:123456789012:function:alias-web", "function 'alias-web'"),
    ("Alias not found: arn:aws:lambda:eu-west-1:123456789012:function:alias-web:live",
     "alias 'live' of function 'alias-web'"),
    ("Function not found: arn:aws:lambda:eu-west-1:123456789012:function:alias-web:9", "version 9 of function 'alias-web'"),
])
def test_lambdas_not_found_messages_name_what_is_missing(aws_connection, message, named):
    r = router("alias-web", shared_client=False)
    with Stubber(r.api.client) as stub:
        stub.add_client_error("get_alias", "ResourceNotFoundException", message, http_status_code=404)
        with pytest.raises(RouterError) as err:
            r.get_canary_weight()
    assert str(err.value) == f"lambda_alias: {named} not found (ResourceNotFoundException: {message})"

# -- settings, registry and spec ------------------------------------------------------------------


@pytest.mark.parametrize("change, message", [
    ({"function_name": "my function"}, "function_name\n.*String should match pattern"),
    ({"alias": "7"}, "alias\n.*is a version number, not an alias name"),
    ({"alias": "live:1"}, "alias\n.*String should match pattern"),
    ({"retry_wait_seconds": -1}, "greater than or equal to 0"),
    ({"version": "2"}, "Extra inputs are not permitted"),
])
def test_bad_settings_are_rejected(change, message):
    with pytest.raises(ValueError, match=message):
        LambdaAliasRouter({"function_name": "web", "alias": "live", **change}, None, conn_id="aws_test")


def test_function_arns_are_accepted():
    arn = "arn:aws:lambda:eu-west-1:123456789012:function:web"
    assert LambdaAliasRouter({"function_name": arn, "alias": "live"}, None).settings.function_name == arn


def spec(**settings):
    return {"name": "web", "metrics": {"type": "prometheus", "conn_id": "p"},
            "router": {"type": "lambda_alias", "conn_id": "aws_test",
                       "settings": {"function_name": "web", "alias": "live", **settings}}}


def test_registry_and_spec_know_the_lambda_alias_router():
    assert router_class("lambda_alias") is LambdaAliasRouter
    assert parse_spec(spec(max_attempts=3), "web.yaml").router.settings == {
        "function_name": "web", "alias": "live", "max_attempts": 3}
    with pytest.raises(SpecError, match="web.yaml: router.settings.alias=7: is a version number, not an alias name"):
        parse_spec(spec(alias="7"), "web.yaml")
