"""An AWS Lambda alias with weighted routing between two published versions.

The canary is the run's ``version``: a published Lambda version number such as ``"7"``. The
stable version is the one the alias points at (``FunctionVersion``). ``set_canary_weight(p)``:

- ``0 < p < 100``: the alias stays on stable, and ``RoutingConfig.AdditionalVersionWeights``
  becomes ``{canary: p / 100}`` (any other extra version is dropped);
- ``0``: the alias on stable, no extra weights (this is the rollback);
- ``100``: the alias points at the canary version, no extra weights. Lambda takes extra weights
  below 1 only, so "all traffic to the canary" means moving the alias; it is the same state
  ``promote()`` leaves.

Once the alias points at the canary (after 100 or ``promote``), a lower weight needs another
stable version: the run's ``stable_version``, which must then be a Lambda version number too.
So a rollback after a promotion puts the alias back on the run's stable version.

``get_weights``: the alias' version gets what the extra weights leave, each extra version its
weight. Stable is the alias' version (or, while the alias points at the canary, the run's
``stable_version``), canary the run's version, and any other version shows as "elsewhere".
``finalize`` is ``set_canary_weight(0)``. ``verify`` answers None: see ``LambdaAliasRouter.verify``.

Every write passes the ``RevisionId`` just read, so Lambda refuses it when someone else changed
the alias in between (``PreconditionFailedException``, a RouterError; the task's retry rereads).

IAM: ``lambda:GetAlias`` and ``lambda:UpdateAlias`` on the function and its alias.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import ClassVar

from pydantic import Field, field_validator

from canary_operators.clients.aws import AwsApi, AwsRetrySettings, error_code
from canary_operators.exceptions import RouterError, RouterRefused
from canary_operators.routers.base import TrafficRouter, Weights

VERSION_NUMBER = re.compile(r"^[0-9]+$")
# A function name, a partial ARN (123456789012:function:NAME) or a full ARN, as Lambda takes it.
FUNCTION_NAME = (r"^(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?"
                 r"(\d{12}:)?(function:)?([a-zA-Z0-9-_]+)$")


class LambdaAliasSettings(AwsRetrySettings):
    function_name: str = Field(min_length=1, max_length=140, pattern=FUNCTION_NAME)
    alias: str = Field(min_length=1, max_length=128, pattern=r"^[a-zA-Z0-9_-]+$")

    @field_validator("alias")
    @classmethod
    def _not_a_version(cls, value: str) -> str:
        if VERSION_NUMBER.fullmatch(value):
            raise ValueError("is a version number, not an alias name")
        return value


class LambdaAliasRouter(TrafficRouter):
    """Weighted routing of a Lambda alias between stable and the run's version. Idempotent."""

    type_name: ClassVar[str] = "lambda_alias"
    promotes_natively: ClassVar[bool] = True
    settings_model = LambdaAliasSettings

    @cached_property
    def api(self) -> AwsApi:
        s = self.settings
        return AwsApi(self.conn_id, "lambda", label="lambda_alias", max_attempts=s.max_attempts,
                      retry_wait_seconds=s.retry_wait_seconds, error=RouterError, refused=RouterRefused)

    @property
    def _name(self) -> str:
        return f"alias {self.settings.alias!r} of function {self.settings.function_name!r}"

    def _not_found(self, message: str) -> str:
        """What is missing, from Lambda's message ("Function not found: arn:…:function:NAME[:QUALIFIER]",
        "Alias not found: …")."""
        s = self.settings
        head = message.split("arn:", 1)[0].lower()  # the words before the ARN; the ARN may say anything
        version = re.search(r":function:[A-Za-z0-9_-]+:([0-9]+)\b", message)
        if "alias" in head:
            return self._name
        if version:
            return f"version {version.group(1)} of function {s.function_name!r}"
        if "function" in head:
            return f"function {s.function_name!r}"
        return f"function {s.function_name!r} or its alias {s.alias!r}"

    def _canary(self) -> str:
        if self.run is None:
            raise RouterError(f"lambda_alias: the canary is the run's version (a Lambda version number), but no run "
                              f"was given to the router of {self._name}")
        version = self.run.version
        if not VERSION_NUMBER.fullmatch(version):
            raise RouterError(f"lambda_alias: the run's version {version!r} is not a published Lambda version number "
                              f"(publish a version and release its number, e.g. '7')")
        return version

    def _get(self) -> dict:
        s = self.settings
        return self.api.call("get_alias", not_found={"ResourceNotFoundException": self._not_found},
                             FunctionName=s.function_name, Name=s.alias)

    def _update(self, alias: dict, version: str, weights: dict[str, float]) -> None:
        s = self.settings
        params = {"FunctionName": s.function_name, "Name": s.alias, "FunctionVersion": version,
                  "RoutingConfig": {"AdditionalVersionWeights": weights}}
        if alias.get("RevisionId"):
            params["RevisionId"] = alias["RevisionId"]
        try:
            self.api.call("update_alias", not_found={"ResourceNotFoundException": self._not_found}, **params)
        except RouterError as e:
            if error_code(e.__cause__) == "PreconditionFailedException":
                raise RouterError(f"lambda_alias: {self._name} was changed by someone else while being updated; "
                                  f"read it again and retry ({e})") from e
            raise

    def _stable(self, alias: dict, canary: str) -> str:
        current = alias.get("FunctionVersion")
        if current != canary:
            return current
        stable = self.run.stable_version
        if not VERSION_NUMBER.fullmatch(stable) or stable == canary:
            raise RouterError(f"lambda_alias: {self._name} points at the canary version {canary}, and the run's "
                              f"stable_version {stable!r} is not another Lambda version number to send the rest "
                              f"of the traffic to")
        return stable

    def set_canary_weight(self, percent: int) -> None:
        canary = self._canary()
        if not 0 <= percent <= 100:
            raise RouterError(f"lambda_alias: canary weight {percent} is not a percentage")
        alias = self._get()
        if percent == 100:
            self._update(alias, canary, {})
        elif percent == 0:
            self._update(alias, self._stable(alias, canary), {})
        else:
            self._update(alias, self._stable(alias, canary), {canary: percent / 100})

    def get_weights(self) -> Weights:
        canary = self._canary()
        alias = self._get()
        extra = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        shares = {version: float(weight) for version, weight in extra.items()}
        current = alias.get("FunctionVersion")
        shares[current] = shares.get(current, 0.0) + max(0.0, 1 - sum(extra.values()))
        stable = current if current != canary else self.run.stable_version
        # each rounded on its own; a share Lambda routes (weights go down to 0.00001) never shows as 0
        percent = {version: max(1, round(share * 100)) if share > 1e-9 else 0 for version, share in shares.items()}
        stable_pct, canary_pct = percent.pop(stable, 0), percent.pop(canary, 0)
        return Weights(stable=stable_pct, canary=canary_pct, other=sum(percent.values()))

    def verify(self, percent: int) -> None:
        """None: this router cannot tell. Lambda picks the version per invocation inside the
        service, and no API reports what it does; ``GetAlias`` returns only the object just written.
        Which version served shows afterwards, in ``ExecutedVersion`` and the metrics the gate reads."""
        return None

    def finalize(self) -> None:
        """All traffic on stable: no extra weights, and the alias on the stable version (after a
        promotion, back on the run's ``stable_version``). ``set_canary_weight(0)``; idempotent."""
        self.set_canary_weight(0)

    def check_online(self) -> None:
        """The function and its alias exist, and the run's version (if known) is a version number."""
        self._get()
        if self.run is not None:
            self._canary()

    def promote(self) -> str:
        """Point the alias at the canary version with no extra weights. Idempotent."""
        canary = self._canary()
        alias = self._get()
        previous = alias.get("FunctionVersion")
        self._update(alias, canary, {})
        was = "already" if previous == canary else f"was {previous}"
        return f"lambda alias {self.settings.function_name}:{self.settings.alias} → version {canary} ({was})"
