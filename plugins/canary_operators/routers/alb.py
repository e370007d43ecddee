"""An AWS Application Load Balancer: the weights of two target groups in a ``forward`` action.

The action is a listener's default action, or a listener rule's (``rule_arn``). Setting a weight
is read-modify-write: read the actions (``DescribeListeners`` or ``DescribeRules``), change the
weights of the stable and canary target groups in the forward action whose ``ForwardConfig``
holds both, and write all actions back (``ModifyListener(DefaultActions=…)`` or
``ModifyRule(Actions=…)``). Other target groups in that ForwardConfig, other actions, their order
and the rule's conditions are left as they were; so is stickiness, unless ``stickiness_seconds``
is set. ALB offers no conditional write, so a change made by someone else between the read and
the write is lost.

Percent ``p`` becomes canary weight ``p`` and stable weight ``100 - p`` (ALB takes 0..999).

- ``get_weights``: every target group of that ForwardConfig as a share of their total weight, each
  rounded on its own (a non-zero weight never shows as 0%); target groups other than stable and
  canary show as "elsewhere", and all weights 0 shows as 0/0.
- ``verify(p)``: describe the forward action again, then ``DescribeTargetHealth`` of each target
  group that must take traffic. A group without a ``healthy`` target does not serve its weight
  (with no registered target the ALB answers 503; with only unhealthy ones it fails open to
  them): False. None (cannot tell) when a group's targets are still ``initial``, when its health
  checks are off (``Target.HealthCheckDisabled``, the default for Lambda targets), when the
  connection may not call ``DescribeTargetHealth``, and when the endpoint is not AWS's: moto
  reports every registered target ``healthy`` without checking anything (and an empty group as
  no targets), so its answers say nothing about a data plane.

Before writing, actions are made writable: the action-level ``TargetGroupArn`` is dropped from
a forward action whose ForwardConfig has more than one target group (the API rejects both
together unless they name the same single group), and an ``authenticate-oidc`` action read back
without its ``ClientSecret`` (AWS never returns it) gets ``UseExistingClientSecret: true``.
A ``rule_arn`` that is the listener's default rule is written through ``ModifyListener``, as
``ModifyRule`` cannot change the default rule.

IAM: ``elasticloadbalancing:DescribeListeners`` (or ``DescribeRules`` with ``rule_arn``),
``ModifyListener`` (or ``ModifyRule``), ``DescribeTargetGroups`` for ``check_online`` and
``DescribeTargetHealth`` for ``verify``.
"""

from __future__ import annotations

import copy
import logging
from functools import cached_property
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator

from canary_operators.clients.aws import AwsApi, AwsRetrySettings, classify
from canary_operators.clients.aws_names import alb_arn
from canary_operators.exceptions import RouterError, RouterRefused
from canary_operators.routers.base import TrafficRouter, Weights

log = logging.getLogger(__name__)
MAX_WEIGHT = 999  # ALB target group weights are 0..999


class ALBSettings(AwsRetrySettings):
    listener_arn: str
    rule_arn: str | None = None  # a rule of listener_arn; without it, the listener's default action
    stable_target_group_arn: str
    canary_target_group_arn: str
    # Target group stickiness for the forward action, in seconds; None leaves it as it is.
    stickiness_seconds: int | None = Field(default=None, ge=1, le=604800)

    @field_validator("listener_arn")
    @classmethod
    def _listener(cls, value: str) -> str:
        return alb_arn("listener", value)

    @field_validator("rule_arn")
    @classmethod
    def _rule(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        alb_arn("listener rule", value)
        listener = info.data.get("listener_arn")
        if listener and not value.replace(":listener-rule/", ":listener/", 1).startswith(listener + "/"):
            raise ValueError("must be a rule of listener_arn")
        return value

    @field_validator("stable_target_group_arn", "canary_target_group_arn")
    @classmethod
    def _target_group(cls, value: str, info: ValidationInfo) -> str:
        alb_arn("target group", value)
        if info.field_name == "canary_target_group_arn" and value == info.data.get("stable_target_group_arn"):
            raise ValueError("must differ from stable_target_group_arn")
        return value


class ALBRouter(TrafficRouter):
    """Weights of two target groups in an ALB forward action. Idempotent (absolute weights)."""

    type_name: ClassVar[str] = "alb"
    settings_model = ALBSettings

    @cached_property
    def api(self) -> AwsApi:
        s = self.settings
        return AwsApi(self.conn_id, "elbv2", label="alb", max_attempts=s.max_attempts,
                      retry_wait_seconds=s.retry_wait_seconds, error=RouterError, refused=RouterRefused)

    # -- reading and writing the actions ------------------------------------------------------

    def _not_found(self) -> dict[str, str]:
        s = self.settings
        return {
            "ListenerNotFound": f"listener {s.listener_arn}",
            "RuleNotFound": f"listener rule {s.rule_arn}",
            "TargetGroupNotFound": f"target group {s.stable_target_group_arn} or {s.canary_target_group_arn}",
            "LoadBalancerNotFound": f"the load balancer of listener {s.listener_arn}",
        }

    def _read(self) -> tuple[str, str | None, list[dict]]:
        """Where the actions live (``"listener …"`` or ``"rule …"``), the rule to modify (None:
        the listener's default actions) and a copy of the actions."""
        s = self.settings
        if s.rule_arn:
            rules = self.api.call("describe_rules", not_found=self._not_found(), RuleArns=[s.rule_arn])["Rules"]
            rule = next((r for r in rules if r.get("RuleArn") == s.rule_arn), None)
            if rule is None:
                raise RouterError(f"alb: listener rule {s.rule_arn} not found")
            if not rule.get("IsDefault"):
                return f"rule {s.rule_arn}", s.rule_arn, copy.deepcopy(rule.get("Actions") or [])
        listeners = self.api.call("describe_listeners", not_found=self._not_found(),
                                  ListenerArns=[s.listener_arn])["Listeners"]
        listener = next((x for x in listeners if x.get("ListenerArn") == s.listener_arn), None)
        if listener is None:
            raise RouterError(f"alb: listener {s.listener_arn} not found")
        return f"listener {s.listener_arn}", None, copy.deepcopy(listener.get("DefaultActions") or [])

    def _write(self, rule_arn: str | None, actions: list[dict]) -> None:
        writable = [_writable(action) for action in actions]
        if rule_arn:
            self.api.call("modify_rule", not_found=self._not_found(), RuleArn=rule_arn, Actions=writable)
        else:
            self.api.call("modify_listener", not_found=self._not_found(),
                          ListenerArn=self.settings.listener_arn, DefaultActions=writable)

    def _forward(self, where: str, actions: list[dict]) -> tuple[dict, dict[str, dict]]:
        """The forward action whose ForwardConfig holds both groups, and its groups by ARN."""
        wanted = {self.settings.stable_target_group_arn, self.settings.canary_target_group_arn}
        for action in actions:
            if action.get("Type") != "forward":
                continue
            groups = (action.get("ForwardConfig") or {}).get("TargetGroups") or []
            by_arn = {g.get("TargetGroupArn"): g for g in groups}
            if wanted <= by_arn.keys():
                return action, by_arn
        raise RouterError(
            f"alb: {where} has no forward action with target groups {self.settings.stable_target_group_arn} "
            f"and {self.settings.canary_target_group_arn} (its actions: {_summary(actions)})"
        )

    # -- the router contract ------------------------------------------------------------------

    def set_canary_weight(self, percent: int) -> None:
        s = self.settings
        canary, stable = percent, 100 - percent
        for name, weight in (("canary", canary), ("stable", stable)):
            if not isinstance(weight, int) or not 0 <= weight <= MAX_WEIGHT:
                raise RouterError(f"alb: canary weight {percent}% gives {name} target group weight {weight}; "
                                  f"ALB weights are integers 0..{MAX_WEIGHT}")
        where, rule_arn, actions = self._read()
        action, groups = self._forward(where, actions)
        groups[s.canary_target_group_arn]["Weight"] = canary
        groups[s.stable_target_group_arn]["Weight"] = stable
        if s.stickiness_seconds is not None:
            action["ForwardConfig"]["TargetGroupStickinessConfig"] = {"Enabled": True,
                                                                      "DurationSeconds": s.stickiness_seconds}
        self._write(rule_arn, actions)

    def get_weights(self) -> Weights:
        where, _, actions = self._read()
        return self._split(self._forward(where, actions)[1])

    def _split(self, groups: dict[str, dict]) -> Weights:
        s = self.settings
        weight = {arn: int(group.get("Weight") or 0) for arn, group in groups.items()}
        total = sum(weight.values())
        if total == 0:
            return Weights(stable=0, canary=0)  # nothing takes traffic: shown, never rounded to a split
        stable, canary = weight.pop(s.stable_target_group_arn), weight.pop(s.canary_target_group_arn)
        return Weights(*(_percent(w, total) for w in (stable, canary, sum(weight.values()))))

    def verify(self, percent: int) -> bool | None:
        """The forward action described again, and a healthy target in each group that must take
        traffic (see the module's docstring). Reads only."""
        endpoint = self.api.client.meta.endpoint_url
        if not _is_aws(endpoint):
            log.info("alb: cannot verify the data plane: %s is not AWS's endpoint, and an emulator's target "
                     "health (moto's) was never checked", endpoint)
            return None
        s = self.settings
        weights = self.get_weights()
        if not weights.is_split(percent):
            log.warning("alb: the forward action reads %s, not %s%% to the canary", weights, percent)
            return False
        answers = [self._serves(arn) for arn, share in ((s.stable_target_group_arn, 100 - percent),
                                                        (s.canary_target_group_arn, percent)) if share > 0]
        return False if False in answers else None if None in answers else True

    def _serves(self, arn: str) -> bool | None:
        """Does target group ``arn`` serve requests: True, False, or None when the ALB cannot tell."""
        try:
            found = self.api.call("describe_target_health", not_found={"TargetGroupNotFound": f"target group {arn}"},
                                  TargetGroupArn=arn)["TargetHealthDescriptions"]
        except RouterRefused as e:
            failure = classify(e.__cause__) if e.__cause__ is not None else None
            if failure is None or failure.kind != "denied":
                raise
            log.warning("alb: cannot verify the data plane: %s", e)
            return None
        health = [d.get("TargetHealth") or {} for d in found]
        states = sorted({h.get("State") for h in health})
        if "healthy" in states:
            return True
        unknown = [h for h in health if h.get("State") == "initial" or h.get("Reason") == "Target.HealthCheckDisabled"]
        if unknown:
            log.info("alb: cannot verify target group %s: no healthy target yet, and its targets are %s", arn,
                     unknown[0].get("Reason") or unknown[0].get("State"))
            return None
        log.warning("alb: target group %s has no healthy target (%s), so it does not serve its weight",
                    arn, ", ".join(map(str, states)) or "no registered targets")
        return False

    def check_online(self) -> None:
        """The listener (or rule) exists, has the forward action, and both target groups exist."""
        where, _, actions = self._read()
        self._forward(where, actions)
        for arn in (self.settings.stable_target_group_arn, self.settings.canary_target_group_arn):
            found = self.api.call("describe_target_groups", not_found={"TargetGroupNotFound": f"target group {arn}"},
                                  TargetGroupArns=[arn])["TargetGroups"]
            if not any(g.get("TargetGroupArn") == arn for g in found):
                raise RouterError(f"alb: target group {arn} not found")


def _percent(weight: int, total: int) -> int:
    """``weight``'s share of ``total`` in percent; a non-zero weight never shows as 0."""
    return max(1, round(weight * 100 / total)) if weight else 0


def _is_aws(endpoint_url: str | None) -> bool:
    """An AWS endpoint (also FIPS, China and VPC endpoints), not an emulator's."""
    host = urlsplit(endpoint_url or "").hostname or ""
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn", ".api.aws"))


def _writable(action: dict[str, Any]) -> dict[str, Any]:
    """An action as read back, made acceptable to ModifyListener/ModifyRule."""
    action = copy.deepcopy(action)
    groups = (action.get("ForwardConfig") or {}).get("TargetGroups")
    if groups and "TargetGroupArn" in action:
        # Both are allowed only when the ForwardConfig has exactly that one target group.
        if len(groups) != 1 or groups[0].get("TargetGroupArn") != action["TargetGroupArn"]:
            del action["TargetGroupArn"]
    oidc = action.get("AuthenticateOidcConfig")
    if oidc is not None and not oidc.get("ClientSecret"):
        oidc.pop("ClientSecret", None)
        oidc["UseExistingClientSecret"] = True
    return action


def _summary(actions: list[dict]) -> str:
    parts = []
    for action in actions:
        kind = action.get("Type", "?")
        if kind == "forward":
            groups = [g.get("TargetGroupArn") for g in (action.get("ForwardConfig") or {}).get("TargetGroups") or []]
            groups = groups or [action.get("TargetGroupArn")]
            kind += " to " + ", ".join(str(g) for g in groups)
        parts.append(kind)
    return "; ".join(parts) or "none"
