"""Slack through the Slack provider's SlackWebhookNotifier, against a local receiver that records
the webhook's payloads."""

from __future__ import annotations

from canary_operators.notify import Message, send
from canary_operators.spec.notify import SlackTarget
from tests.conftest import set_connection
from tests.notify.receivers import http_receiver

ROLLED_BACK = Message("rollback", "checkout", "ROLLED BACK v3 at 5% after 35 s: errors 3.23% vs 0.24% (+2.99 pp > 0.5 pp)",
                      "canary_checkout", "manual__v3", "http://airflow.test/canary-releases/runs/canary_checkout/manual__v3")


def test_a_rollback_reaches_the_slack_webhook_with_the_outcome_and_the_report_link(monkeypatch):
    with http_receiver() as (port, received):
        set_connection(monkeypatch, "slack_test", conn_type="slackwebhook", host=f"http://127.0.0.1:{port}",
                       password="services/T000/B000/XXXX")
        sent = send([SlackTarget(type="slack", conn_id="slack_test", events=["rollback"])], ROLLED_BACK)
    assert sent == [{"type": "slack", "conn_id": "slack_test", "event": "rollback", "ok": True}]
    assert len(received) == 1
    post = received[0]
    assert post["path"] == "/services/T000/B000/XXXX"
    payload = post["json"]
    assert payload["text"] == f"[checkout] rollback: {ROLLED_BACK.line}"
    section, context = payload["blocks"][0], payload["blocks"][-1]
    escaped = ROLLED_BACK.line.replace(">", "&gt;")  # Slack's mrkdwn escaping
    assert section["text"] == {"type": "mrkdwn", "text": f"*checkout*: {escaped}"}
    assert context["elements"][0]["text"] == f"<{ROLLED_BACK.report_url}|Canary report> · rollback · manual__v3"


def test_an_approval_says_what_is_asked_by_when_and_links_the_approval_page(monkeypatch):
    asking = Message("approval_needed", "checkout", "waiting for approval: checkout: approve the step to 100%?",
                     "canary_checkout", "r1", "http://airflow.test/canary-releases/runs/canary_checkout/r1",
                     {"asked": "checkout: approve the step to 100%?", "deadline": "2026-11-30T20:00:00+00:00",
                      "approval_url": "http://airflow.test/dags/canary_checkout/runs/r1/tasks/approve_100/required_actions"})
    with http_receiver() as (port, received):
        set_connection(monkeypatch, "slack_test", conn_type="slackwebhook", host=f"http://127.0.0.1:{port}", password="x")
        send([SlackTarget(type="slack", conn_id="slack_test", events=["approval_needed"])], asking)
    ask = received[0]["json"]["blocks"][1]["text"]["text"]
    assert ask == ("*Asked:* checkout: approve the step to 100%?\n*Answer by:* 2026-11-30T20:00:00+00:00\n"
                   "<http://airflow.test/dags/canary_checkout/runs/r1/tasks/approve_100/required_actions|Approve or roll back>")


def test_a_target_gets_only_the_events_it_asked_for(monkeypatch):
    with http_receiver() as (port, received):
        set_connection(monkeypatch, "slack_test", conn_type="slackwebhook", host=f"http://127.0.0.1:{port}", password="x")
        assert send([SlackTarget(type="slack", conn_id="slack_test", events=["promoted"])], ROLLED_BACK) == []
    assert received == []


def test_a_receiver_that_is_down_or_refuses_is_logged_and_never_raises(monkeypatch, caplog):
    from tests.conftest import free_port

    set_connection(monkeypatch, "slack_down", conn_type="slackwebhook", host=f"http://127.0.0.1:{free_port()}", password="x")
    with http_receiver(status=403, body=b"invalid_token") as (port, _):
        set_connection(monkeypatch, "slack_refuses", conn_type="slackwebhook", host=f"http://127.0.0.1:{port}", password="x")
        sent = send([SlackTarget(type="slack", conn_id=c, events=["rollback"]) for c in ("slack_down", "slack_refuses")],
                    ROLLED_BACK)
    assert [s["ok"] for s in sent] == [False, False]
    assert "invalid_token" in sent[1]["error"] or "403" in sent[1]["error"]
    assert "could not send the rollback notification of checkout to slack slack_down" in caplog.text


def test_an_unknown_conn_id_is_an_error_naming_it_not_a_crash():
    sent = send([SlackTarget(type="slack", conn_id="no_such_conn", events=["rollback"])], ROLLED_BACK)
    assert sent[0]["ok"] is False and "no_such_conn" in sent[0]["error"]


def test_the_approval_task_asks_through_airflows_notifier_interface(monkeypatch):
    """ApproveStep gets the spec's notifier (HITLOperator calls its ``notifiers`` when it asks);
    the message says what is asked, by when, and links Airflow's required-actions page."""
    from types import SimpleNamespace

    from canary_operators.operators.approve import ApproveStep
    from canary_operators.spec import parse_spec

    spec = parse_spec({"name": "checkout", "router": {"type": "haproxy", "conn_id": "c", "settings": {"backend": "w"}},
                       "metrics": {"type": "prometheus", "conn_id": "p"}, "promote": {"type": "command", "command": ["true"]},
                       "approval": {"before": [100], "timeout": "1h"},
                       "notify": [{"type": "slack", "conn_id": "slack_test", "events": ["approval_needed"]}]}, "checkout.yaml")
    step = ApproveStep(task_id="approve_100", release=spec, weight=100, gate_task_ids=["gate_50"])
    [notifier] = step.notifiers
    step.hitl_summary_extra = {"timeout_datetime": "2026-11-30T20:00:00+00:00"}
    ti = SimpleNamespace(dag_id="canary_checkout", run_id="r1", task_id="approve_100", map_index=-1)
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow.test")
    with http_receiver() as (port, received):
        set_connection(monkeypatch, "slack_test", conn_type="slackwebhook", host=f"http://127.0.0.1:{port}", password="x")
        notifier({"ti": ti, "task_instance": ti, "task": step, "dag_run": SimpleNamespace(run_id="r1")})
    payload = received[0]["json"]
    assert payload["text"] == "[checkout] approval needed: waiting for approval: checkout: approve the step to 100%?"
    assert payload["blocks"][1]["text"]["text"] == (
        "*Asked:* checkout: approve the step to 100%?\n*Answer by:* 2026-11-30T20:00:00+00:00\n"
        "<http://airflow.test/dags/canary_checkout/runs/r1/tasks/approve_100/required_actions?map_index=-1"
        "|Approve or roll back>")
    assert "http://airflow.test/canary-releases/runs/canary_checkout/r1|Canary report" in payload["blocks"][2]["elements"][0]["text"]
