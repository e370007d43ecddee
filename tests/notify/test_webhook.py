"""Our webhook notifier (on clients.http), against a local receiver: the message as JSON, the
connection's credentials sent and never echoed in an error."""

from __future__ import annotations

from canary_operators.notify import Message, send
from canary_operators.spec.notify import WebhookTarget
from tests.conftest import set_connection
from tests.notify.receivers import http_receiver

UNSAFE = Message("traffic_not_restored", "checkout", "TRAFFIC NOT RESTORED: checkout: the canary is still at 5% of traffic",
                 "canary_checkout", "r7", "http://airflow.test/canary-releases/runs/canary_checkout/r7")


def test_the_webhook_gets_every_field_of_the_message(monkeypatch):
    with http_receiver() as (port, received):
        set_connection(monkeypatch, "hook_test", conn_type="http", host="127.0.0.1", port=port, password="s3cret-token")
        sent = send([WebhookTarget(type="webhook", conn_id="hook_test", endpoint="/pager", events=["traffic_not_restored"])],
                    UNSAFE)
    assert sent[0]["ok"] is True
    assert received[0]["path"] == "/pager"
    assert received[0]["headers"]["Authorization"] == "Bearer s3cret-token"
    assert received[0]["json"] == {
        "text": "[checkout] traffic not restored: TRAFFIC NOT RESTORED: checkout: the canary is still at 5% of traffic",
        "event": "traffic_not_restored", "release": "checkout", "line": UNSAFE.line, "dag_id": "canary_checkout",
        "run_id": "r7", "report_url": "http://airflow.test/canary-releases/runs/canary_checkout/r7"}


def test_a_refusing_webhook_is_reported_without_its_credentials(monkeypatch):
    with http_receiver(status=401, body=b"bad token s3cret-token") as (port, _):
        set_connection(monkeypatch, "hook_test", conn_type="http", host="127.0.0.1", port=port, password="s3cret-token")
        sent = send([WebhookTarget(type="webhook", conn_id="hook_test", events=["traffic_not_restored"])], UNSAFE)
    assert sent[0]["ok"] is False and "401" in sent[0]["error"] and "s3cret-token" not in sent[0]["error"]


def test_a_runs_outcome_reaches_the_targets_of_the_spec_in_its_status_record(monkeypatch, airflow_db):
    """As the listener sends it at the end of a run (in the scheduler): the spec comes from the
    release's status record in Airflow's database."""
    import json

    from airflow.models import Variable
    from airflow.utils.session import create_session

    from canary_operators.notify import send_run_outcome
    from canary_operators.spec import parse_spec

    spec = parse_spec({"name": "notified", "router": {"type": "haproxy", "conn_id": "c", "settings": {"backend": "w"}},
                       "metrics": {"type": "prometheus", "conn_id": "p"}, "promote": {"type": "command", "command": ["true"]},
                       "notify": [{"type": "webhook", "conn_id": "hook_outcome", "events": ["rollback"]}]}, "notified.yaml")
    with create_session() as session:
        session.query(Variable).filter(Variable.key == "canary_status__notified").delete()
        session.add(Variable(key="canary_status__notified", val=json.dumps({"phase": "rolled_back",
                                                                            "spec": spec.model_dump(mode="json")})))
    with http_receiver() as (port, received):
        set_connection(monkeypatch, "hook_outcome", conn_type="http", host="127.0.0.1", port=port)
        send_run_outcome("canary_notified", "r9", "ROLLED BACK v3 at 5% after 35 s: errors …", in_background=False)
        send_run_outcome("canary_notified", "r10", "PROMOTED v4 in 3m00s", in_background=False)  # not wanted
    assert [r["json"]["event"] for r in received] == ["rollback"]
    assert received[0]["json"]["line"] == "ROLLED BACK v3 at 5% after 35 s: errors …"
    assert received[0]["json"]["report_url"].endswith("/canary-releases/runs/canary_notified/r9")
