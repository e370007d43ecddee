"""AWS's naming rules, checked before any call so a typo fails naming its field instead of silently
matching nothing: CloudWatch namespaces, metric and dimension names and values, Application Load
Balancer ARNs (full, for the ALB router; or their suffixes, which CloudWatch uses as dimension
values), Lambda function and alias names.

Each rule returns the value (an ARN shortened where CloudWatch wants a suffix or a name) or raises
``ValueError`` saying what the value must be; pydantic validators call them as they are.
"""

from __future__ import annotations

import re
from typing import Any

NAMESPACE_PATTERN = re.compile(r"^[A-Za-z0-9.\-_/#: ]{1,255}$")
LOAD_BALANCER_PATTERN = re.compile(r"^app/[A-Za-z0-9-]{1,32}/[0-9a-f]{1,64}$")
TARGET_GROUP_PATTERN = re.compile(r"^targetgroup/[A-Za-z0-9-]{1,32}/[0-9a-f]{1,64}$")
FUNCTION_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ALIAS_PATTERN = re.compile(r"^(?!\d+$)[A-Za-z0-9_-]{1,128}$")
MAX_DIMENSIONS = 30

_ALB_ARN = r"^arn:aws[a-zA-Z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}:"
ALB_ARNS = {
    "listener": re.compile(_ALB_ARN + r"listener/app/[^/]+/[^/]+/[^/]+$"),
    "listener rule": re.compile(_ALB_ARN + r"listener-rule/app/[^/]+/[^/]+/[^/]+/[^/]+$"),
    "target group": re.compile(_ALB_ARN + r"targetgroup/[^/]+/[^/]+$"),
}
_ALB_EXAMPLES = {"listener": "listener/app/NAME/ID/ID", "listener rule": "listener-rule/app/NAME/ID/ID/ID",
                 "target group": "targetgroup/NAME/ID"}


# -- CloudWatch -------------------------------------------------------------------------------


def _printable_ascii(value: Any, what: str, max_len: int) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= max_len:
        raise ValueError(f"{what} must be 1 to {max_len} characters")
    if any(not " " <= ch <= "~" for ch in value) or not value.strip():
        raise ValueError(f"{what} must be printable ASCII (no control characters) and not blank")
    return value


def dimension_value(value: Any) -> str:
    """A valid CloudWatch dimension value; ValueError otherwise."""
    return _printable_ascii(value, "a dimension value", 1024)


def dimension_name(value: Any) -> str:
    """A valid CloudWatch dimension name; ValueError otherwise."""
    _printable_ascii(value, "a dimension name", 255)
    if value.startswith(":"):
        raise ValueError("a dimension name cannot start with ':'")
    return value


def metric_name(value: Any) -> str:
    """A valid CloudWatch metric name; ValueError otherwise."""
    return _printable_ascii(value, "a metric name", 255)


def namespace(value: Any) -> str:
    """A valid CloudWatch namespace; ValueError otherwise."""
    if not isinstance(value, str) or not NAMESPACE_PATTERN.fullmatch(value) or value.startswith(":") or not value.strip():
        raise ValueError("a namespace must be 1 to 255 of A-Z a-z 0-9 . - _ / # : and space, not starting with ':'")
    return value


def dimensions(value: dict) -> dict:
    """Fixed dimensions next to the version's: valid names and values, and room for the version's."""
    for k, v in value.items():
        dimension_name(k)
        try:
            dimension_value(v)
        except ValueError as e:
            raise ValueError(f"{k}: {e}") from None
    if len(value) >= MAX_DIMENSIONS:
        raise ValueError(f"at most {MAX_DIMENSIONS - 1} fixed dimensions (CloudWatch allows {MAX_DIMENSIONS} with the version's)")
    return value


# -- Application Load Balancers ---------------------------------------------------------------


def alb_arn(kind: str, value: str) -> str:
    """A full ARN of an ALB ``listener``, ``listener rule`` or ``target group``; ValueError otherwise."""
    if not isinstance(value, str) or not ALB_ARNS[kind].fullmatch(value):
        raise ValueError(f"must be an Application Load Balancer {kind} ARN "
                         f"(arn:aws:elasticloadbalancing:REGION:ACCOUNT:{_ALB_EXAMPLES[kind]})")
    return value


def load_balancer_suffix(value: str) -> str:
    """The ALB's ARN suffix ``app/<name>/<id>`` (CloudWatch's ``LoadBalancer``), from it or the ARN."""
    if isinstance(value, str) and value.startswith("arn:") and ":loadbalancer/" in value:
        value = value.split(":loadbalancer/", 1)[1]
    if not LOAD_BALANCER_PATTERN.fullmatch(dimension_value(value)):
        raise ValueError("must be the ALB's ARN suffix app/<name>/<id> (or its ARN)")
    return value


def target_group_suffix(value: str) -> str:
    """The target group's ARN suffix ``targetgroup/<name>/<id>`` (CloudWatch's ``TargetGroup``)."""
    if isinstance(value, str) and value.startswith("arn:") and ":targetgroup/" in value:
        value = "targetgroup/" + value.split(":targetgroup/", 1)[1]
    if not TARGET_GROUP_PATTERN.fullmatch(dimension_value(value)):
        raise ValueError("must be the target group's ARN suffix targetgroup/<name>/<id> (or its ARN)")
    return value


# -- Lambda -----------------------------------------------------------------------------------


def function_name(value: str) -> str:
    """A Lambda function name, from it or the function's ARN (CloudWatch's ``FunctionName``)."""
    if isinstance(value, str) and value.startswith("arn:") and ":function:" in value:
        value = value.split(":function:", 1)[1].split(":", 1)[0]
    if not isinstance(value, str) or not FUNCTION_NAME_PATTERN.fullmatch(value):
        raise ValueError("must be a Lambda function name (1 to 64 of A-Z a-z 0-9 _ -) or its ARN")
    return value


def alias_name(value: str) -> str:
    """A Lambda alias name (not a version number)."""
    if not isinstance(value, str) or not ALIAS_PATTERN.fullmatch(value):
        raise ValueError("must be a Lambda alias name (1 to 128 of A-Z a-z 0-9 _ -, not only digits)")
    return value
