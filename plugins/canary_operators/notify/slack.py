"""Slack: the Slack provider's ``SlackWebhookNotifier`` on an incoming-webhook connection."""

from __future__ import annotations


def build(target, message):
    from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{_escape(message.release)}*: {_escape(message.line)}"}},
    ]
    if message.event == "approval_needed":
        d = message.details
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": (
            f"*Asked:* {_escape(str(d.get('asked')))}\n*Answer by:* {_escape(str(d.get('deadline')))}\n"
            f"<{d.get('approval_url')}|Approve or roll back>")}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{message.report_url}|Canary report>"
                                                    f" · {_escape(message.event)} · {_escape(message.run_id)}"}]})
    return SlackWebhookNotifier(slack_webhook_conn_id=target.conn_id, text=message.title, blocks=blocks, timeout=10)


def _escape(text: str) -> str:
    """Slack's three control characters (its mrkdwn has no other escaping)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
