"""POST the release as JSON to an Airflow HTTP connection (Flagger-style webhook)."""

from __future__ import annotations

from canary_operators.exceptions import HookError
from canary_operators.spec import WebhookHook


def post_webhook(action: WebhookHook, fields: dict, endpoint_for) -> str:
    endpoint = endpoint_for(action.conn_id)
    import requests

    from canary_operators.secrets import scrub, secrets_of

    url = endpoint.base_url() + action.endpoint
    headers = {"Content-Type": "application/json"}
    auth = None
    if endpoint.login:
        auth = (endpoint.login, endpoint.password or "")
    elif endpoint.password:
        headers["Authorization"] = f"Bearer {endpoint.password}"
    try:
        response = requests.post(url, json=fields, headers=headers, auth=auth, timeout=action.timeout)
    except requests.RequestException as e:
        raise HookError(scrub(f"{fields['phase']} webhook {url} unreachable: {type(e).__name__}", secrets_of(endpoint))) from None
    if response.status_code >= 300:
        # The body is scrubbed whole, then cut: a cut first could leave half a secret unmatched.
        raise HookError(scrub(f"{fields['phase']} webhook {url} answered HTTP {response.status_code}: ", secrets_of(endpoint))
                        + scrub(response.text, secrets_of(endpoint))[:200])
    return scrub(f"POST {url} → {response.status_code}", secrets_of(endpoint))
