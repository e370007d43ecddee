"""Email through the SMTP provider's SmtpNotifier, against a local SMTP server (aiosmtpd)."""

from __future__ import annotations

from canary_operators.notify import Message, send
from canary_operators.spec.notify import EmailTarget
from tests.conftest import free_port, set_connection
from tests.notify.receivers import smtp_receiver

PROMOTED = Message("promoted", "checkout", "PROMOTED v11 in 6m12s, approved by alice", "canary_checkout",
                   "manual__v11", "http://airflow.test/canary-releases/runs/canary_checkout/manual__v11")


def _smtp(monkeypatch, conn_id: str, port: int) -> None:
    set_connection(monkeypatch, conn_id, conn_type="smtp", host="127.0.0.1", port=port,
                   extra={"disable_ssl": True, "disable_tls": True, "from_email": "canary@airflow.test", "timeout": 5})


def test_a_promotion_mail_carries_the_outcome_and_the_report_link(monkeypatch):
    with smtp_receiver() as (port, messages):
        _smtp(monkeypatch, "smtp_test", port)
        sent = send([EmailTarget(type="email", conn_id="smtp_test", to=["ops@airflow.test", "dev@airflow.test"],
                                 events=["promoted"])], PROMOTED)
    assert sent == [{"type": "email", "conn_id": "smtp_test", "event": "promoted", "ok": True}]
    assert len(messages) == 1
    mail = messages[0]
    assert mail["Subject"] == "[checkout] promoted: PROMOTED v11 in 6m12s, approved by alice"
    assert mail["From"] == "canary@airflow.test"
    assert mail["X-Envelope-To"] == "ops@airflow.test, dev@airflow.test"
    html = next(p for p in mail.walk() if p.get_content_type() == "text/html").get_payload(decode=True).decode()
    assert "<b>checkout</b>: PROMOTED v11 in 6m12s, approved by alice" in html
    assert f'<a href="{PROMOTED.report_url}">Canary report</a> (manual__v11)' in html


def test_an_smtp_server_that_is_down_is_logged_and_never_raises(monkeypatch):
    _smtp(monkeypatch, "smtp_down", free_port())
    sent = send([EmailTarget(type="email", conn_id="smtp_down", to=["ops@airflow.test"], events=["promoted"])], PROMOTED)
    assert sent[0]["ok"] is False and sent[0]["error"]
