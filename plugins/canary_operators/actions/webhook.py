"""POST the release as JSON to an Airflow HTTP connection (Flagger-style webhook).

Through ``clients.http``: the connection's login is basic auth, a password alone a bearer token;
HTTP 429 is retried briefly; any other answer outside 2xx, and an unreachable receiver, is a
``HookError`` that names the phase, the URL and the answer (scrubbed, cut to 200 characters):
``HookRefused`` for refused credentials (401/403) and rejected requests (400/422), which the
operator fails at once rather than retrying.
"""

from __future__ import annotations

from canary_operators.clients.http import HttpClient, HttpError, Refused, Rejected
from canary_operators.exceptions import HookError, HookRefused
from canary_operators.spec import WebhookHook


def post_webhook(action: WebhookHook, fields: dict, endpoint_for) -> str:
    endpoint = endpoint_for(action.conn_id)
    with HttpClient(endpoint, name="webhook", timeout=action.timeout) as http:
        url = http.scrub(http.base + action.endpoint)
        try:
            response = http.request("POST", action.endpoint, json=fields)
        except HttpError as e:
            # The body is scrubbed whole (by the client), then cut: a cut first could leave half a secret.
            answer = f": {e.body[:200]}" if e.status is not None else ""
            # Refused credentials and rejected requests do not get better with retries.
            error = HookRefused if isinstance(e, (Refused, Rejected)) else HookError
            raise error(f"{fields['phase']} webhook {url} {e.reason}{answer}") from None
        return f"POST {url} → {response.status_code}"
