"""Notifications through Airflow's notifier interface: one target type per file, an explicit registry.

``send(targets, message)`` tells every target of a spec's ``notify:`` list that wants the message's
event. Each type builds an Airflow ``BaseNotifier`` (``slack``: the Slack provider's
``SlackWebhookNotifier``; ``email``: the SMTP provider's ``SmtpNotifier``; ``webhook``: ours, on
``clients.http``) and ``notify()`` is called on it directly: the message quotes error texts, which
must not go through Jinja. A failing notifier is logged and never raises: a notification must not
fail a gate or an undo.

``ReleaseNotifier`` is the same as an Airflow notifier object, for the places Airflow calls
notifiers itself (the approval task's ``notifiers``).
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from canary_operators.exceptions import SpecError

log = logging.getLogger(__name__)

# type name -> module with ``build(target, message) -> BaseNotifier``
NOTIFIERS: dict[str, str] = {
    "slack": "canary_operators.notify.slack",
    "email": "canary_operators.notify.email",
    "webhook": "canary_operators.notify.webhook",
}
REPORT_PATH = "/canary-releases/runs/{dag_id}/{run_id}"


@dataclass(frozen=True)
class Message:
    """What every target says: the event, the one-line outcome (or what happened), and links."""

    event: str
    release: str
    line: str
    dag_id: str
    run_id: str
    report_url: str
    # approval_needed: {"asked": ..., "deadline": ISO time, "approval_url": ...}
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return f"[{self.release}] {self.event.replace('_', ' ')}: {self.line}"[:200]

    def text(self) -> str:
        lines = [f"{self.release}: {self.line}"]
        if self.event == "approval_needed":
            lines += [f"Asked: {self.details.get('asked', '?')}", f"Answer by: {self.details.get('deadline', '?')}",
                      f"Approve or roll back: {self.details.get('approval_url', '?')}"]
        lines.append(f"Report: {self.report_url}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"event": self.event, "release": self.release, "line": self.line, "dag_id": self.dag_id,
                "run_id": self.run_id, "report_url": self.report_url, **self.details}


def base_url() -> str:
    """Airflow's ``[api] base_url``: where people open the UI."""
    try:
        from airflow.configuration import conf
    except ImportError:  # pragma: no cover - a task without the core package
        from airflow.sdk.configuration import conf  # type: ignore[no-redef]
    return (conf.get("api", "base_url", fallback="") or "http://localhost:8080").rstrip("/")


def report_url(dag_id: str, run_id: str, base: str | None = None) -> str:
    from urllib.parse import quote

    return (base or base_url()) + REPORT_PATH.format(dag_id=quote(dag_id, safe=""), run_id=quote(run_id, safe=""))


def notifier_module(type_name: str):
    """The module for a target type; an unknown type is an error listing the valid ones."""
    if type_name not in NOTIFIERS:
        raise SpecError(f"unknown notification target type {type_name!r}; valid types: {', '.join(sorted(NOTIFIERS))}")
    return importlib.import_module(NOTIFIERS[type_name])


def build_notifier(target, message: Message):
    return notifier_module(target.type).build(target, message)


def send(targets: Sequence, message: Message, logger=None) -> list[dict]:
    """Tell every target that wants ``message.event``. Never raises; returns what happened per target."""
    logger = logger or log
    sent = []
    for target in targets:
        if message.event not in target.events:
            continue
        outcome = {"type": target.type, "conn_id": target.conn_id, "event": message.event}
        try:
            build_notifier(target, message).notify({})
            outcome["ok"] = True
        except Exception as e:  # noqa: BLE001 - a notification must never fail the release's own work
            from canary_operators.secrets import scrub_error

            outcome.update(ok=False, error=scrub_error(e))
            logger.warning("could not send the %s notification of %s to %s %s: %s", message.event, message.release,
                           target.type, target.conn_id, outcome["error"])
        sent.append(outcome)
    return sent


# -- where the events come from -----------------------------------------------------------------

def _spec_of_run(dag_id: str):
    """The release spec of a DAG, from the releases folder (None when none loads)."""
    import os
    from pathlib import Path

    from canary_operators.dag_factory import RELEASES_DIR_ENV, default_releases_dir
    from canary_operators.spec import load_spec

    folder = Path(os.environ.get(RELEASES_DIR_ENV) or default_releases_dir())
    for path in sorted(folder.glob("*.y*ml")):
        try:
            spec = load_spec(path)
        except Exception:  # noqa: BLE001 - that file's own problem, reported by its DAG
            continue
        if spec.dag_id == dag_id:
            return spec
    return None


def event_of_outcome(line: str) -> str | None:
    """Which event a run's one-line outcome is: ``promoted`` or ``rollback`` (None: neither)."""
    if line.startswith("PROMOTED"):
        return "promoted"
    if line.startswith(("ROLLED BACK", "ABORTED", "REFUSED", "STOPPED", "FAILED")) or ": ROLLED BACK" in line:
        return "rollback"
    return None


def send_run_outcome(dag_id: str, run_id: str, line: str, spec=None, in_background: bool = True) -> None:
    """At the end of a run (the listener, in the scheduler): tell the spec's targets that want
    ``promoted`` or ``rollback``. In a thread, so a slow receiver never holds up the scheduler."""
    event = event_of_outcome(line)
    if event is not None:
        _dispatch(lambda: _send_for_dag(event, dag_id, run_id, line, spec), in_background)


def send_run_started(dag_id: str, run_id: str, line: str, spec=None, in_background: bool = True) -> None:
    _dispatch(lambda: _send_for_dag("started", dag_id, run_id, line, spec), in_background)


def _spec_from_status(dag_id: str):
    """The spec the release's last run released with, from its status record, read from Airflow's
    database (the scheduler has it; a DAG file may name a releases folder this process cannot know)."""
    import json

    from sqlalchemy import select

    from airflow.models.variable import Variable as VariableRow
    from airflow.utils.session import create_session

    from canary_operators.spec import ReleaseSpec
    from canary_operators.status import status_variable

    with create_session() as session:
        row = session.scalar(select(VariableRow).where(VariableRow.key == status_variable(dag_id.removeprefix("canary_"))))
        raw = json.loads(row.val) if row is not None and row.val else {}
    return ReleaseSpec.model_validate(raw["spec"]) if raw.get("spec") else None


def _send_for_dag(event: str, dag_id: str, run_id: str, line: str, spec=None) -> list[dict]:
    if spec is None:
        try:
            spec = _spec_from_status(dag_id) or _spec_of_run(dag_id)
        except Exception as e:  # noqa: BLE001 - no notification then, and say why
            log.warning("could not find the release spec of %s for its %s notification: %s", dag_id, event, e)
            return []
    if spec is None or not spec.notify:
        return []
    return send(spec.notify, Message(event, spec.name, line, dag_id, run_id, report_url(dag_id, run_id)))


def _dispatch(work: Callable[[], Any], in_background: bool) -> None:
    if not in_background:
        work()
        return
    import threading

    threading.Thread(target=work, name="canary-notify", daemon=True).start()


def notify_traffic_not_restored(release: str, message: str) -> None:
    """``safety.FAILURE_HOOKS``: the undo gave up. The spec comes from the release's status record
    (the one the owning run released with), so it is known even when the file is broken."""
    from canary_operators.spec import ReleaseSpec
    from canary_operators.status import read_status

    status = read_status(release)
    if not status.spec:
        return
    spec = ReleaseSpec.model_validate(status.spec)
    dag_id, run_id = status.dag_id or spec.dag_id, status.run_id or ""
    send(spec.notify, Message("traffic_not_restored", spec.name, message, dag_id, run_id, report_url(dag_id, run_id)))


def _release_notifier_base():
    from airflow.sdk import BaseNotifier

    return BaseNotifier


class ReleaseNotifier(_release_notifier_base()):
    """An Airflow notifier for one event of a release, for places Airflow calls notifiers itself.

    For ``approval_needed`` (the approval task's ``notifiers``) the message says what is asked, by
    when, and links to the approval page. Nothing is rendered with Jinja."""

    template_fields = ()

    def __init__(self, *, release, event: str):
        super().__init__()
        self.release = release
        self.event = event

    def notify(self, context) -> None:
        ti, dag_run = context["ti"], context["dag_run"]
        details: dict[str, Any] = {}
        line = f"{self.event.replace('_', ' ')} ({ti.task_id})"
        if self.event == "step":
            line = f"canary at {getattr(context['task'], 'weight', '?')}% ({ti.task_id})"
        if self.event == "approval_needed":
            details = approval_details(context)
            line = f"waiting for approval: {details['asked']}"
        send(self.release.notify, Message(self.event, self.release.name, line, ti.dag_id, dag_run.run_id,
                                          report_url(ti.dag_id, dag_run.run_id), details))


def approval_details(context) -> dict:
    """What an approval asks, by when, and the link to Airflow's page where it is answered."""
    task = context["task"]
    deadline = (getattr(task, "hitl_summary_extra", None) or {}).get("timeout_datetime")
    if not deadline and getattr(task, "response_timeout", None):
        from datetime import datetime, timezone

        deadline = (datetime.now(timezone.utc) + task.response_timeout).isoformat(timespec="seconds")
    try:
        url = task.generate_link_to_ui_from_context(context=context, base_url=base_url())
    except Exception:  # noqa: BLE001 - the link is a convenience
        url = base_url()
    return {"asked": getattr(task, "subject", "approve the next step"), "deadline": deadline, "approval_url": url}


def step_notifiers(release) -> list:
    """A shift task's ``on_success_callback``: one notifier when any target wants ``step``."""
    if any("step" in t.events for t in release.notify):
        return [ReleaseNotifier(release=release, event="step")]
    return []


def approval_notifiers(release) -> list:
    """The approval task's notifiers: one when any target wants ``approval_needed``."""
    if any("approval_needed" in t.events for t in release.notify):
        return [ReleaseNotifier(release=release, event="approval_needed")]
    return []
