"""What the AWS routers share: a client through the amazon provider's hook, one retry policy, and
AWS errors turned into ``RouterError`` messages that say what to fix.

The error policy, per failed call:

- ``AccessDenied`` / ``AccessDeniedException`` / ``UnauthorizedOperation``: a ``RouterError``
  naming the IAM action that is missing (``elasticloadbalancing:ModifyListener``), at once.
  Retrying cannot fix a policy.
- throttling (``Throttling``, ``ThrottlingException``, ``RequestLimitExceeded``,
  ``TooManyRequestsException``), any 5xx, ``ResourceConflictException`` (Lambda: an update is in
  progress) and connection errors: retried with exponential backoff and jitter, up to
  ``max_attempts`` calls in all, then a ``RouterError``.
- "not found" codes: a ``RouterError`` naming the resource the router was configured with.
- anything else (``ValidationError``, ``InvalidParameterValueException`` …): a ``RouterError``
  with AWS's code and message, not retried.

botocore's own retries are turned off on these clients (``total_max_attempts: 1``), so
``max_attempts`` is the number of HTTP calls, and botocore's ``Stubber`` (which bypasses
botocore's retry handler) sees every attempt. The rest of the connection's ``config_kwargs``
is kept.

Heavy imports (botocore, boto3, the amazon provider, tenacity) happen inside functions: this
module is imported whenever a DAG file is parsed.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import Any, Callable, Mapping

from pydantic import BaseModel, ConfigDict, Field

from canary_operators.exceptions import RouterError

log = logging.getLogger(__name__)

ACCESS_DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})
RETRYABLE_CODES = frozenset({
    "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
    "RequestThrottled", "SlowDown", "ServiceUnavailable", "InternalFailure", "InternalError",
    "ServiceException", "ResourceConflictException",
})
MAX_WAIT_SECONDS = 20.0

# What a "not found" message says: a fixed text, or one built from AWS's message.
NotFound = Mapping[str, "str | Callable[[str], str]"]


class AwsRetrySettings(BaseModel):
    """Settings every AWS router has: how often to call before giving up, and the first wait."""

    model_config = ConfigDict(extra="forbid")
    max_attempts: int = Field(default=5, ge=1, le=20)
    retry_wait_seconds: float = Field(default=1.0, ge=0, le=60)  # doubles per retry, up to 20 s


def aws_client(conn_id: str | None, client_type: str):
    """A boto3 client built by ``AwsBaseHook`` from the Airflow connection, botocore retries off."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
    from botocore.config import Config

    hook = AwsBaseHook(aws_conn_id=conn_id, client_type=client_type)
    config = hook.config.merge(Config(retries={"total_max_attempts": 1}))
    return hook.get_client_type(region_name=hook.region_name, config=config)


class AwsApi:
    """One AWS service as a router uses it: ``call(operation, **params)`` with the policy above.

    ``label`` starts every error message (``alb``, ``lambda_alias``); ``iam_prefix`` is the IAM
    service prefix (``elasticloadbalancing``, ``lambda``). The client is created on first use and
    can be replaced (tests put a ``Stubber`` on it).
    """

    def __init__(self, conn_id: str | None, client_type: str, *, label: str, iam_prefix: str,
                 max_attempts: int, retry_wait_seconds: float):
        self.conn_id = conn_id
        self.client_type = client_type
        self.label = label
        self.iam_prefix = iam_prefix
        self.max_attempts = max_attempts
        self.retry_wait_seconds = retry_wait_seconds

    @cached_property
    def client(self):
        try:
            return aws_client(self.conn_id, self.client_type)
        except Exception as e:  # a bad connection (unknown region, bad extra) fails here
            raise RouterError(f"{self.label}: cannot create an AWS {self.client_type} client from connection "
                              f"{self.conn_id!r}: {e}") from e

    def iam_action(self, operation: str) -> str:
        """``describe_listeners`` → ``elasticloadbalancing:DescribeListeners``."""
        return f"{self.iam_prefix}:{self.client.meta.method_to_api_mapping.get(operation, operation)}"

    def call(self, operation: str, *, not_found: NotFound | None = None, **params: Any) -> dict:
        """Call ``operation`` (boto3's method name) with retries; RouterError on failure."""
        from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

        method = getattr(self.client, operation)
        action = self.iam_action(operation)

        def before_sleep(state) -> None:
            log.warning("%s: %s failed (%s), attempt %d of %d; retrying in %.1fs", self.label, action,
                        describe_error(state.outcome.exception()), state.attempt_number, self.max_attempts,
                        state.next_action.sleep)

        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_exponential_jitter(multiplier=self.retry_wait_seconds, max=MAX_WAIT_SECONDS,
                                         jitter=self.retry_wait_seconds),
            retry=retry_if_exception(is_retryable),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(method, **params)
        except Exception as e:
            error = self.router_error(e, action, not_found or {})
            if error is None:
                raise
            raise error from e

    def router_error(self, e: Exception, action: str, not_found: NotFound) -> RouterError | None:
        """The RouterError for a failed call, or None for errors that are not AWS's (test asserts)."""
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(e, AssertionError):  # botocore's Stubber complaining: a test failure, keep it
            return None
        if isinstance(e, ClientError):
            code = error_code(e)
            message = e.response.get("Error", {}).get("Message") or ""
            if code in ACCESS_DENIED_CODES:
                return RouterError(f"{self.label}: access denied: the connection's IAM identity needs {action} "
                                   f"({code}: {message})")
            if code in not_found:
                what = not_found[code]
                what = what(message) if callable(what) else what
                return RouterError(f"{self.label}: {what} not found ({code}: {message})")
            if is_retryable(e):
                return RouterError(f"{self.label}: {action} still failing after {self.max_attempts} attempts: "
                                   f"{code}: {message}")
            return RouterError(f"{self.label}: {action} rejected: {code}: {message}")
        if isinstance(e, BotoCoreError):
            if is_retryable(e):
                return RouterError(f"{self.label}: AWS unreachable for {action} after {self.max_attempts} attempts: {e}")
            return RouterError(f"{self.label}: {action} failed: {e}")
        return None


def error_code(e: Exception) -> str:
    response = getattr(e, "response", None) or {}
    return str(response.get("Error", {}).get("Code") or "")


def http_status(e: Exception) -> int:
    response = getattr(e, "response", None) or {}
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def is_retryable(e: BaseException) -> bool:
    """Throttling, 5xx, an update in progress, or the endpoint unreachable: worth another call."""
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(e, ClientError):
        code = error_code(e)
        if code in ACCESS_DENIED_CODES:
            return False
        return code in RETRYABLE_CODES or http_status(e) >= 500
    # connection refused or closed, connect and read timeouts
    return isinstance(e, (HTTPClientError, BotoConnectionError))


def describe_error(e: BaseException | None) -> str:
    code = error_code(e) if e is not None else ""
    return code or type(e).__name__
