"""Email: the SMTP provider's ``SmtpNotifier`` on an SMTP connection."""

from __future__ import annotations

from html import escape


def build(target, message):
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    rows = [f"<p><b>{escape(message.release)}</b>: {escape(message.line)}</p>"]
    if message.event == "approval_needed":
        d = message.details
        rows.append(f"<p>Asked: {escape(str(d.get('asked')))}<br>Answer by: {escape(str(d.get('deadline')))}<br>"
                    f"<a href=\"{escape(str(d.get('approval_url')))}\">Approve or roll back</a></p>")
    rows.append(f"<p><a href=\"{escape(message.report_url)}\">Canary report</a> ({escape(message.run_id)})</p>")
    return SmtpNotifier(to=list(target.to), from_email=target.from_email, smtp_conn_id=target.conn_id,
                        subject=message.title, html_content="\n".join(rows))
