"""The AWS client layer: the client factory (region, retries, timeouts from one place), the error
classifier, and the retried call. botocore's Stubber is the fake seam: it answers from the real
service models, so every request and error shape here is one AWS could send.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from botocore.exceptions import EndpointConnectionError, NoCredentialsError, ParamValidationError, UnStubbedResponseError
from botocore.stub import Stubber

from canary_operators.clients import retrying as retrying_module
from canary_operators.clients.aws import AwsApi, AwsCallFailed, aws_client, call, classify, iam_action
from canary_operators.exceptions import RouterError, RouterRefused
from tests.conftest import free_port, set_connection

LISTENER = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2"


@pytest.fixture
def connection(monkeypatch):
    """An AWS connection whose endpoint nothing listens on: building clients needs no network."""
    set_connection(monkeypatch, "aws_unit", conn_type="aws", login="testing", password="testing",
                   extra={"region_name": "eu-west-1", "endpoint_url": f"http://127.0.0.1:{free_port()}",
                          "config_kwargs": {"retries": {"mode": "legacy", "total_max_attempts": 7}}})
    return "aws_unit"


@pytest.fixture
def slept(monkeypatch):
    """The waits between retries, recorded and not slept."""
    waits: list[float] = []
    monkeypatch.setattr(retrying_module, "SLEEP", waits.append)
    return waits


@pytest.fixture
def elbv2(connection):
    client = aws_client(connection, "elbv2")
    calls: list[str] = []
    client.meta.events.register("before-parameter-build.*.*", lambda model, **_: calls.append(model.name))
    with Stubber(client) as stub:
        yield SimpleNamespace(client=client, stub=stub, calls=calls)
        stub.assert_no_pending_responses()


def failure_of(stub, client, operation: str, code: str, message: str = "", status: int = 400, **params):
    stub.add_client_error(operation, code, message, http_status_code=status)
    try:
        getattr(client, operation)(**params)
    except Exception as e:
        return classify(e, iam_action(client, operation))
    raise AssertionError("no error")


# -- the factory ----------------------------------------------------------------------------------


def test_the_client_takes_its_region_from_the_connection_and_retries_once_whatever_the_connection_says(connection):
    client = aws_client(connection, "elbv2")
    assert client.meta.region_name == "eu-west-1"
    assert client.meta.config.retries["total_max_attempts"] == 1


def test_botocore_retries_when_asked_and_the_connection_may_override_them(connection, monkeypatch):
    client = aws_client(connection, "cloudwatch", attempts=3, timeout=4)
    assert client.meta.config.retries == {"mode": "legacy", "total_max_attempts": 7}  # the connection's
    assert (client.meta.config.connect_timeout, client.meta.config.read_timeout) == (4, 4)

    set_connection(monkeypatch, "aws_plain", conn_type="aws", login="testing", password="testing",
                   extra={"region_name": "us-east-2"})
    plain = aws_client("aws_plain", "cloudwatch", attempts=3)
    assert plain.meta.config.retries == {"mode": "standard", "total_max_attempts": 3}
    assert plain.meta.region_name == "us-east-2"


def test_iam_actions_use_the_iam_prefix_not_the_client_name(connection):
    assert iam_action(aws_client(connection, "elbv2"), "describe_listeners") == "elasticloadbalancing:DescribeListeners"
    assert iam_action(aws_client(connection, "cloudwatch"), "get_metric_data") == "cloudwatch:GetMetricData"
    assert iam_action(aws_client(connection, "ecs"), "update_service") == "ecs:UpdateService"


# -- the classifier -------------------------------------------------------------------------------


@pytest.mark.parametrize("code, status, kind", [
    ("Throttling", 400, "throttled"),
    ("TooManyRequestsException", 429, "throttled"),
    ("AnythingAt429", 429, "throttled"),
    ("InternalFailure", 500, "transient"),
    ("SomethingNew", 503, "transient"),
    ("ResourceConflictException", 409, "transient"),
    ("AccessDenied", 403, "denied"),
    ("UnrecognizedClientException", 400, "denied"),
    ("ListenerNotFound", 400, "not_found"),
    ("ResourceNotFoundException", 404, "not_found"),
    ("ValidationError", 400, "invalid"),
    ("PreconditionFailedException", 412, "invalid"),
])
def test_each_aws_answer_has_one_class(elbv2, code, status, kind):
    failure = failure_of(elbv2.stub, elbv2.client, "describe_listeners", code, "msg", status, ListenerArns=[LISTENER])
    assert (failure.kind, failure.code, failure.status, failure.message) == (kind, code, status, "msg")
    assert failure.retryable == (kind in ("throttled", "transient"))


def test_denied_names_the_action_aws_names_else_the_calls(elbv2):
    named = failure_of(elbv2.stub, elbv2.client, "describe_listeners", "ClientException",
                       "User: arn:aws:sts::123456789012:assumed-role/airflow/x is not authorized to perform: "
                       "iam:PassRole on resource: arn:aws:iam::123456789012:role/web", ListenerArns=[LISTENER])
    assert (named.kind, named.needs, named.action) == ("denied", "iam:PassRole", "elasticloadbalancing:DescribeListeners")
    plain = failure_of(elbv2.stub, elbv2.client, "describe_listeners", "AccessDenied", "no", 403, ListenerArns=[LISTENER])
    assert plain.needs == "elasticloadbalancing:DescribeListeners"


def test_errors_before_aws_answers_are_classified_too():
    unreachable = classify(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), "ecs:DescribeServices")
    assert unreachable.kind == "transient" and unreachable.unreachable and "127.0.0.1:1" in unreachable.message
    assert classify(NoCredentialsError()).kind == "denied"
    assert classify(ParamValidationError(report="Missing required parameter")).kind == "invalid"


def test_errors_that_are_not_aws_are_not_classified():
    assert classify(AssertionError("a Stubber's complaint")) is None
    assert classify(ValueError("a bug")) is None


# -- the retried call -----------------------------------------------------------------------------


def test_throttling_and_5xx_are_retried_with_growing_waits_until_the_call_succeeds(elbv2, slept):
    elbv2.stub.add_client_error("describe_listeners", "Throttling", "Rate exceeded", http_status_code=400)
    elbv2.stub.add_client_error("describe_listeners", "InternalFailure", http_status_code=500)
    elbv2.stub.add_response("describe_listeners", {"Listeners": []}, {"ListenerArns": [LISTENER]})
    assert call(elbv2.client, "describe_listeners", attempts=3, first_wait=1, ListenerArns=[LISTENER]) == {"Listeners": []}
    assert elbv2.calls == ["DescribeListeners"] * 3
    assert len(slept) == 2 and 1 <= slept[0] <= 2 and 2 <= slept[1] <= 3  # 1 s, then 2 s, each with up to 1 s jitter


def test_a_call_still_failing_after_its_attempts_gives_the_last_failure(elbv2, slept):
    for _ in range(2):
        elbv2.stub.add_client_error("describe_listeners", "RequestLimitExceeded", "slow down", http_status_code=400)
    with pytest.raises(AwsCallFailed) as raised:
        call(elbv2.client, "describe_listeners", attempts=2, first_wait=0, ListenerArns=[LISTENER])
    failure = raised.value.failure
    assert (failure.kind, failure.code, failure.attempts) == ("throttled", "RequestLimitExceeded", 2)
    assert elbv2.calls == ["DescribeListeners"] * 2


def test_what_retrying_cannot_fix_is_called_once(elbv2, slept):
    elbv2.stub.add_client_error("describe_listeners", "AccessDenied", "no", http_status_code=403)
    with pytest.raises(AwsCallFailed) as raised:
        call(elbv2.client, "describe_listeners", attempts=5, ListenerArns=[LISTENER])
    assert raised.value.failure.kind == "denied" and elbv2.calls == ["DescribeListeners"] and slept == []


def test_an_unexpected_call_in_a_test_is_not_hidden(elbv2):
    with pytest.raises(UnStubbedResponseError):  # nothing queued: the Stubber's complaint comes through as it is
        call(elbv2.client, "describe_listeners", attempts=3, ListenerArns=[LISTENER])


# -- AwsApi: the routers' wording and exception classes -------------------------------------------


@pytest.fixture
def api(elbv2):
    a = AwsApi("aws_unit", "elbv2", label="alb", max_attempts=2, retry_wait_seconds=0, error=RouterError,
               refused=RouterRefused)
    a.client = elbv2.client
    return a


@pytest.mark.parametrize("code, status, raised, message", [
    ("AccessDenied", 403, RouterRefused,
     "alb: access denied: the connection's IAM identity needs elasticloadbalancing:DescribeListeners (AccessDenied: m)"),
    ("ListenerNotFound", 400, RouterRefused, f"alb: listener {LISTENER} not found (ListenerNotFound: m)"),
    ("ValidationError", 400, RouterRefused, "alb: elasticloadbalancing:DescribeListeners rejected: ValidationError: m"),
    ("Throttling", 400, RouterError,
     "alb: elasticloadbalancing:DescribeListeners still failing after 2 attempts: Throttling: m"),
])
def test_the_routers_api_raises_refused_for_what_retrying_cannot_fix(api, elbv2, slept, code, status, raised, message):
    for _ in range(2 if raised is RouterError else 1):
        elbv2.stub.add_client_error("describe_listeners", code, "m", http_status_code=status)
    with pytest.raises(RouterError) as error:
        api.call("describe_listeners", not_found={"ListenerNotFound": f"listener {LISTENER}"}, ListenerArns=[LISTENER])
    assert type(error.value) is raised and str(error.value) == message
    assert error.value.__cause__.response["Error"]["Code"] == code  # the botocore error, for callers that look
