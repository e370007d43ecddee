"""AWS, once: a boto3 client built by the amazon provider's ``AwsBaseHook``, one classifier of AWS
errors, and one retried call. Used by the ALB and Lambda routers, the CloudWatch provider and the
ECS actions; each maps a classified failure to its own exception and wording.

The client (``aws_client``): region, role and credentials come from the Airflow connection through
the hook; the rest of the connection's ``config_kwargs`` is kept. Retries are set here:

- ``attempts=1`` (the default): botocore's own retries are off, whatever the connection says, and
  the caller retries with ``call`` (tenacity, through ``clients.retrying``). So ``attempts`` of
  ``call`` is the number of HTTP requests, and botocore's ``Stubber`` (which bypasses botocore's
  retry handler) sees every attempt.
- ``attempts > 1``: botocore's standard mode (exponential backoff with jitter) with that many
  attempts; the connection's ``config_kwargs`` may override it, and the timeouts.

The classifier (``classify``), one ``kind`` per failed call:

- ``throttled``: ``Throttling``, ``TooManyRequestsException``, ``RequestLimitExceeded`` …, HTTP 429.
  Retried.
- ``transient``: any 5xx, ``InternalFailure`` …, ``ResourceConflictException`` (Lambda: an update
  in progress), expired tokens, connection errors and timeouts. Retried.
- ``denied``: ``AccessDenied…``, ``Unauthorized…``, bad or missing credentials, HTTP 401/403, or
  "not authorized to perform". ``needs`` names the IAM action: the one AWS's message names, else
  the call's (``elasticloadbalancing:ModifyListener``). Never retried.
- ``not_found``: ``…NotFound``, ``…NotFoundException``, ``NoSuch…``. Never retried.
- ``invalid``: any other rejection (``ValidationError``, ``InvalidParameterValue``, a bad request
  or region). Never retried.
- ``failed``: another botocore error (a response it cannot parse …). Not retried.

Heavy imports (botocore, the amazon provider, tenacity) happen inside functions: this module is
imported whenever a DAG file is parsed.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

Kind = Literal["throttled", "transient", "denied", "not_found", "invalid", "failed"]
THROTTLED = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded", "TooManyRequestsException",
    "RequestThrottled", "RequestThrottledException", "SlowDown", "LimitExceededException",
})
TRANSIENT = frozenset({
    "InternalFailure", "InternalError", "InternalServiceError", "InternalServiceFault", "ServiceException",
    "ServiceUnavailable", "ServiceUnavailableException", "RequestTimeout", "RequestTimeoutException",
    "ExpiredToken", "ExpiredTokenException", "RequestExpired", "ResourceConflictException",
})
DENIED = frozenset({
    "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException",
    "InvalidClientTokenId", "SignatureDoesNotMatch", "MissingAuthenticationToken", "OptInRequired",
})
MAX_WAIT_SECONDS = 20.0
# IAM service prefixes that differ from boto3's client name
IAM_PREFIX = {"elbv2": "elasticloadbalancing", "elb": "elasticloadbalancing"}
_NAMED_ACTION = re.compile(r"perform: ([a-z0-9-]+:[A-Za-z0-9]+)")

# What a "not found" message says: a fixed text, or one built from AWS's message.
NotFound = Mapping[str, "str | Callable[[str], str]"]


class AwsRetrySettings(BaseModel):
    """Settings every AWS router has: how often to call before giving up, and the first wait."""

    model_config = ConfigDict(extra="forbid")
    max_attempts: int = Field(default=5, ge=1, le=20)
    retry_wait_seconds: float = Field(default=1.0, ge=0, le=60)  # doubles per retry, up to 20 s


def aws_client(conn_id: str | None, client_type: str, *, attempts: int = 1, timeout: float | None = None):
    """A boto3 client built by ``AwsBaseHook`` from the Airflow connection (retries: see above)."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
    from botocore.config import Config

    hook = AwsBaseHook(aws_conn_id=conn_id, client_type=client_type)
    if attempts <= 1:
        config = hook.config.merge(Config(retries={"total_max_attempts": 1}))
    else:
        ours = Config(retries={"mode": "standard", "total_max_attempts": attempts},
                      **({"connect_timeout": timeout, "read_timeout": timeout} if timeout else {}))
        config = ours.merge(hook.config)
    return hook.get_client_type(region_name=hook.region_name, config=config)


def iam_action(client, operation: str) -> str:
    """``describe_listeners`` on an elbv2 client → ``elasticloadbalancing:DescribeListeners``."""
    service = client.meta.service_model.service_name
    return f"{IAM_PREFIX.get(service, service)}:{client.meta.method_to_api_mapping.get(operation, operation)}"


@dataclass(frozen=True)
class AwsFailure:
    """One failed AWS call, classified. ``code`` is empty when AWS did not answer."""

    kind: Kind
    action: str  # the IAM action of the call
    code: str = ""
    message: str = ""  # AWS's message, or botocore's when AWS did not answer
    status: int = 0
    attempts: int = 1

    @property
    def retryable(self) -> bool:
        return self.kind in ("throttled", "transient")

    @property
    def unreachable(self) -> bool:
        """Retryable, and AWS never answered (connection refused, timeouts)."""
        return self.retryable and not self.code

    @property
    def needs(self) -> str:
        """The IAM action a denied call needs: the one AWS names, else the call's."""
        named = _NAMED_ACTION.search(self.message)
        return named.group(1) if named else self.action

    def describe(self, label: str, not_found: NotFound | None = None) -> str:
        """The message every AWS router uses (``not_found``: what each code means, for this caller)."""
        detail = f"{self.code}: {self.message}"
        if self.kind == "denied" and self.code:
            return f"{label}: access denied: the connection's IAM identity needs {self.needs} ({detail})"
        if self.code in (not_found or {}):
            what = not_found[self.code]
            return f"{label}: {what(self.message) if callable(what) else what} not found ({detail})"
        if self.unreachable:
            return f"{label}: AWS unreachable for {self.action} after {self.attempts} attempts: {self.message}"
        if self.retryable:
            return f"{label}: {self.action} still failing after {self.attempts} attempts: {detail}"
        if not self.code:
            return f"{label}: {self.action} failed: {self.message}"
        return f"{label}: {self.action} rejected: {detail}"


def classify(error: BaseException, action: str = "", attempts: int = 1) -> AwsFailure | None:
    """The class of an AWS error (see above), or None for errors that are not AWS's (a Stubber's
    complaint in a test, a bug)."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        HTTPClientError,
        NoCredentialsError,
        NoRegionError,
        ParamValidationError,
        PartialCredentialsError,
        StubResponseError,
    )
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(error, (AssertionError, StubResponseError)) or not isinstance(error, (ClientError, BotoCoreError)):
        return None
    if isinstance(error, ClientError):
        code, message, status = error_code(error), _message(error), http_status(error)
        if code in THROTTLED or status == 429:
            kind = "throttled"
        elif code in DENIED or "AccessDenied" in code or "Unauthorized" in code or status in (401, 403) \
                or "not authorized to perform" in message:
            kind = "denied"
        elif code in TRANSIENT or status >= 500:
            kind = "transient"
        elif code.endswith(("NotFound", "NotFoundException", "NotFoundFault")) or code.startswith("NoSuch"):
            kind = "not_found"
        else:
            kind = "invalid"
        return AwsFailure(kind, action, code, message, status, attempts)
    if isinstance(error, (HTTPClientError, BotoConnectionError)):  # refused or closed, connect and read timeouts
        kind = "transient"
    elif isinstance(error, (NoCredentialsError, PartialCredentialsError)):
        kind = "denied"
    elif isinstance(error, (NoRegionError, ParamValidationError)):
        kind = "invalid"
    else:
        kind = "failed"
    return AwsFailure(kind, action, message=str(error), attempts=attempts)


def is_retryable(error: BaseException) -> bool:
    """Throttling, 5xx, an update in progress, or the endpoint unreachable: worth another call."""
    failure = classify(error)
    return failure is not None and failure.retryable


class AwsCallFailed(Exception):
    """``call`` gave up; ``failure`` says why. Callers turn it into their own exception."""

    def __init__(self, failure: AwsFailure):
        super().__init__(failure.describe("aws"))
        self.failure = failure


def call(client, operation: str, *, attempts: int, first_wait: float = 1.0, label: str = "aws", **params: Any) -> dict:
    """``client.<operation>(**params)``, retried while ``is_retryable`` (``attempts`` calls in all,
    exponential backoff with jitter from ``first_wait``); ``AwsCallFailed`` when it gives up or
    AWS refuses. Errors that are not AWS's are raised as they are."""
    from canary_operators.clients.retrying import retrying

    method, action = getattr(client, operation), iam_action(client, operation)

    def before_sleep(state) -> None:
        error = state.outcome.exception()
        log.warning("%s: %s failed (%s), attempt %d of %d; retrying in %.1fs", label, action,
                    error_code(error) or type(error).__name__, state.attempt_number, attempts, state.next_action.sleep)

    try:
        return retrying(retry_on=is_retryable, attempts=attempts, first_wait=first_wait, max_wait=MAX_WAIT_SECONDS,
                        jitter=first_wait, before_sleep=before_sleep)(method, **params)
    except Exception as e:
        failure = classify(e, action, attempts)
        if failure is None:
            raise
        raise AwsCallFailed(failure) from e


class AwsApi:
    """One AWS service as a router uses it: ``call(operation, **params)`` with the retries above,
    and failures raised as ``refused`` (denied, not found, invalid: retrying cannot fix them) or
    ``error`` (still failing after every attempt), worded by ``AwsFailure.describe``.

    ``label`` starts every message (``alb``, ``lambda_alias``). The client is created on first use
    and can be replaced (tests put a ``Stubber`` on it).
    """

    def __init__(self, conn_id: str | None, client_type: str, *, label: str, max_attempts: int,
                 retry_wait_seconds: float, error: type[Exception], refused: type[Exception]):
        self.conn_id, self.client_type, self.label = conn_id, client_type, label
        self.max_attempts, self.retry_wait_seconds = max_attempts, retry_wait_seconds
        self.error, self.refused = error, refused

    @cached_property
    def client(self):
        try:
            return aws_client(self.conn_id, self.client_type)
        except Exception as e:  # a bad connection (unknown region, bad extra) fails here
            raise self.error(f"{self.label}: cannot create an AWS {self.client_type} client from connection "
                               f"{self.conn_id!r}: {e}") from e

    def call(self, operation: str, *, not_found: NotFound | None = None, **params: Any) -> dict:
        """Call ``operation`` (boto3's method name) with retries; ``error`` or ``refused`` on failure."""
        try:
            return call(self.client, operation, attempts=self.max_attempts, first_wait=self.retry_wait_seconds,
                        label=self.label, **params)
        except AwsCallFailed as e:
            failure = e.failure
            kind = self.error if failure.retryable or failure.kind == "failed" else self.refused
            raise kind(failure.describe(self.label, not_found)) from e.__cause__


def error_code(error: BaseException | None) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code") or "")


def http_status(error: BaseException | None) -> int:
    response = getattr(error, "response", None) or {}
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _message(error: BaseException) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Message") or "")
