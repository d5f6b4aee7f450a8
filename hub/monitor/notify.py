"""Notifiers of new alerts (hub/monitor/alerts.py): e-mail through SMTP, and a webhook.

    EmailNotifier     one plain-text e-mail per evaluation for all the alerts not yet told, in French then
                      Arabic (the console's catalogues, hub/monitor/locale), each alert with its key facts,
                      the time it was raised in Africa/Casablanca time, and the link to the console's page:
                      HUB_ALERT_SMTP_URL (smtp://, smtp+starttls://, smtps://; a user in the URL signs in with
                      HUB_ALERT_SMTP_PASSWORD), HUB_ALERT_SMTP_FROM, HUB_ALERT_EMAIL_TO
    WebhookNotifier   one JSON POST per evaluation, {"alerts": [...]}, each alert as /api/v1/monitor/alerts
                      shows it: HUB_ALERT_WEBHOOK_URL, HUB_ALERT_WEBHOOK_TOKEN (a bearer token); any answer
                      but 2xx is a failure

`send(alerts)` raises NotificationFailed on any failure (the evaluation logs it and tries again at the next
one); no error, log line or repr holds the SMTP password or the webhook token.
"""
from __future__ import annotations

import datetime as dt
import json
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

import httpx

from hub.errors import NotificationFailed, first_line
from hub.monitor.alerts import describe
from hub.monitor.i18n import DEFAULT_ZONE, Formats, translations

EMAIL_LANGUAGES = ("fr", "ar")
EMAIL_LIST_LIMIT = 50   # alerts told in full in one e-mail; the others are counted (the webhook gets them all)
ALERTS_PATH = "/monitor/alerts"


def console_link(settings) -> str | None:
    return f"{settings.alert_console_url}{ALERTS_PATH}" if settings.alert_console_url else None


def _when(value: str | None, formats: Formats) -> str:
    return formats.when(dt.datetime.fromisoformat(value)) if value else "—"


def email_text(alerts: list[dict], link: str | None, languages=EMAIL_LANGUAGES) -> tuple[str, str]:
    """(subject, body) of the e-mail telling `alerts` (dicts as alerts.as_dict makes them)."""
    blocks = []
    subject = ""
    for lang in languages:
        _ = translations(lang).gettext
        formats = Formats(lang, ZoneInfo(DEFAULT_ZONE))
        if not subject:
            first, _text = describe(alerts[0], _, formats)
            more = len(alerts) - 1
            subject = _("Consular hub alert: %(title)s") % {"title": first}
            if more:
                subject += f" (+{more})"
        lines = [_("Alerts raised by the consular exchange hub: %(n)s") % {"n": len(alerts)}, ""]
        for alert in alerts[:EMAIL_LIST_LIMIT]:
            title, text = describe(alert, _, formats)
            lines += [f"* {title}", f"  {text}",
                      f"  {_('Raised')}: {_when(alert.get('raised_at'), formats)}",
                      f"  {_('Key')}: {alert['key']}", ""]
        if len(alerts) > EMAIL_LIST_LIMIT:
            lines += [_("And %(n)s more, listed in the console.") % {"n": len(alerts) - EMAIL_LIST_LIMIT}, ""]
        if link:
            lines.append(_("All the alerts: %(link)s") % {"link": link})
        blocks.append("\n".join(lines).rstrip())
    return subject, "\n\n----\n\n".join(blocks) + "\n"


class EmailNotifier:
    channel = "email"

    def __init__(self, url: str, *, sender: str, recipients: list[str], password: str | None = None,
                 timeout: float = 10, link: str | None = None):
        parts = urlsplit(url)
        self.scheme, self.host = parts.scheme, parts.hostname
        self.port = parts.port or {"smtp": 25, "smtp+starttls": 587, "smtps": 465}[parts.scheme]
        self.user = unquote(parts.username) if parts.username else None
        self._password = password
        self.sender, self.recipients, self.timeout, self.link = sender, recipients, timeout, link

    def __repr__(self) -> str:
        return f"EmailNotifier({self.scheme}://{self.host}:{self.port} to {', '.join(self.recipients)})"

    def message(self, alerts: list[dict]) -> EmailMessage:
        subject, body = email_text(alerts, self.link)
        message = EmailMessage()
        message["Subject"] = " ".join(subject.split())[:250]  # one line, whatever an app's reference holds
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or "localhost")
        message.set_content(body, charset="utf-8")
        return message

    def send(self, alerts: list[dict]) -> None:
        message = self.message(alerts)
        where = f"{self.host}:{self.port}"
        try:
            if self.scheme == "smtps":
                client = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                          context=ssl.create_default_context())
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with client:
                if self.scheme == "smtp+starttls":
                    client.starttls(context=ssl.create_default_context())
                if self.user:
                    client.login(self.user, self._password or "")
                refused = client.send_message(message)
        except smtplib.SMTPAuthenticationError as exc:  # the server's words only, never the password
            raise NotificationFailed(f"e-mail to {where}: sign-in as {self.user} refused ({exc.smtp_code})") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise NotificationFailed(f"e-mail to {where}: {type(exc).__name__}: {first_line(exc)}") from None
        if refused:
            raise NotificationFailed(f"e-mail to {where}: recipients refused: {', '.join(sorted(refused))}")


class WebhookNotifier:
    channel = "webhook"

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 10, link: str | None = None):
        self.url, self._token, self.timeout, self.link = url, token, timeout, link

    def __repr__(self) -> str:
        return f"WebhookNotifier({self.url})"

    def payload(self, alerts: list[dict]) -> dict:
        return {"source": "consular-exchange-hub", "console": self.link, "alerts": alerts}

    def send(self, alerts: list[dict]) -> None:
        headers = {"Content-Type": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        body = json.dumps(self.payload(alerts), ensure_ascii=False).encode("utf-8")
        try:
            response = httpx.post(self.url, content=body, headers=headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise NotificationFailed(f"webhook {self.url}: {type(exc).__name__}: {first_line(exc)}") from None
        if not 200 <= response.status_code < 300:
            raise NotificationFailed(f"webhook {self.url}: answered {response.status_code}")


def configured_notifiers(settings) -> list:
    """The notifiers the settings ask for (none when neither e-mail nor webhook is set)."""
    link = console_link(settings)
    found: list = []
    if settings.alert_smtp_url and settings.alert_email_to:
        password = settings.alert_smtp_password.get_secret_value() if settings.alert_smtp_password else None
        found.append(EmailNotifier(settings.alert_smtp_url, sender=settings.alert_smtp_from,
                                   recipients=[a.strip() for a in settings.alert_email_to.split(",")],
                                   password=password, timeout=settings.alert_notify_timeout_seconds, link=link))
    if settings.alert_webhook_url:
        token = settings.alert_webhook_token.get_secret_value() if settings.alert_webhook_token else None
        found.append(WebhookNotifier(settings.alert_webhook_url, token=token,
                                     timeout=settings.alert_notify_timeout_seconds, link=link))
    return found
