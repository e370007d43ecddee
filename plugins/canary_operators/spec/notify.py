"""A spec's ``notify:`` list: where to tell people about a release, and which events they want."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from canary_operators.spec.fields import _Strict

# started: a run began; step: traffic moved to a new weight; rollback / promoted: how it ended;
# approval_needed: a person must answer; traffic_not_restored: the undo gave up (someone must act).
NotifyEvent = Literal["started", "step", "rollback", "promoted", "approval_needed", "traffic_not_restored"]
NOTIFY_EVENTS: tuple[str, ...] = NotifyEvent.__args__
_DEFAULT_EVENTS = ["rollback", "promoted", "approval_needed", "traffic_not_restored"]
_CONN_ID = Field(min_length=1, max_length=250, pattern=r"^[A-Za-z0-9_.-]+$")


class _Target(_Strict):
    conn_id: Annotated[str, _CONN_ID]
    events: list[NotifyEvent] = Field(default_factory=lambda: list(_DEFAULT_EVENTS), min_length=1)


class SlackTarget(_Target):
    """An Airflow Slack incoming-webhook connection (conn type ``slackwebhook``)."""

    type: Literal["slack"]


class EmailTarget(_Target):
    """An Airflow SMTP connection; ``to``: the recipients."""

    type: Literal["email"]
    to: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]] = Field(min_length=1)
    from_email: str | None = None  # None: the connection's from_email


class WebhookTarget(_Target):
    """POST the message as JSON to an Airflow HTTP connection."""

    type: Literal["webhook"]
    endpoint: str = Field(default="/", pattern=r"^/")
    timeout: float = Field(default=10.0, gt=0, le=120)


NotifyTarget = Annotated[Union[SlackTarget, EmailTarget, WebhookTarget], Field(discriminator="type")]
