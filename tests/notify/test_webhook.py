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
