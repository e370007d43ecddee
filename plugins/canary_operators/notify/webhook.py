"""Webhook: POST the message as JSON to an Airflow HTTP connection, through ``clients.http``
(the connection's auth, a timeout, 429 retried, errors scrubbed)."""

from __future__ import annotations

from typing import Any


def _base():
    from airflow.sdk import BaseNotifier

    return BaseNotifier


class WebhookNotifier(_base()):
    """An Airflow notifier that POSTs ``payload`` to ``conn_id`` + ``endpoint``. Not templated."""

    template_fields = ()

    def __init__(self, *, conn_id: str, endpoint: str, payload: dict[str, Any], timeout: float = 10.0):
        super().__init__()
        self.conn_id, self.endpoint, self.payload, self.timeout = conn_id, endpoint, payload, timeout

    def notify(self, context) -> None:
        from canary_operators.clients.http import HttpClient
        from canary_operators.operators.common import endpoint_for

        with HttpClient(endpoint_for(self.conn_id), name="notification webhook", timeout=self.timeout) as http:
            http.request("POST", self.endpoint, json=self.payload)


def build(target, message):
    return WebhookNotifier(conn_id=target.conn_id, endpoint=target.endpoint, timeout=target.timeout,
                           payload={"text": message.title, **message.to_dict()})
