"""The built-in ``alerts`` plugin: delivers each alert notice (``hub_alert``) by webhook and by e-mail.

- Webhook (``HUB_ALERT_WEBHOOK_URL``): the notice as JSON (``Alert.as_json``) in a POST. A refused
  connection, a timeout or a 5xx answer is tried again ``HUB_ALERT_WEBHOOK_RETRIES`` times, after
  ``HUB_ALERT_WEBHOOK_BACKOFF`` seconds, doubled at each next try; a 4xx answer is not (the same
  request would be refused again).
- E-mail (``HUB_ALERT_SMTP_URL``, ``HUB_ALERT_EMAIL_TO``): one message per notice through SMTP,
  plain (``smtp://``), STARTTLS (``smtp+starttls://``) or TLS (``smtps://``), with the URL's login.

A default plugin: ``HUB_PLUGINS_BLOCK=alerts`` leaves notices to other ``hub_alert`` plugins. Failures
are logged with the rule and practice, never the URLs' secrets or the server's answer; a bad
``HUB_ALERT_SMTP_URL`` is refused by ``check_settings`` before anything is evaluated.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import Callable
from email.message import EmailMessage

import orjson

from hub import hookimpl
from hub.errors import ConfigError
from hub.hookspecs import Alert
from hub.mail import SmtpServer as SmtpServer  # the names the alert tests and plugins know
from hub.mail import send, smtp_server
from hub.settings import Settings, current

# smtplib and urllib.request are imported where a notice is sent: every command registers this plugin

log = logging.getLogger("hub.alerts")
TIMEOUT = 10.0  # seconds for one POST or one SMTP conversation
STATE_WORDS = {"open": "ALERT", "repeat": "STILL", "closed": "RECOVERED"}


@hookimpl
def hub_alert(alert: Alert) -> None:
    settings = current()
    if settings.alert_webhook_url:
        post(settings, alert)
    if settings.alert_smtp_url and settings.alert_email_to:
        mail(settings, alert)


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).hostname or "?"


def post(settings: Settings, alert: Alert, *, sleep: Callable[[float], None] = time.sleep) -> bool:
    """POST the notice; True once an answer 2xx came back. Retried with backoff on a transient failure."""
    import urllib.error
    import urllib.request

    url = settings.alert_webhook_url or ""
    body = orjson.dumps(alert.as_json())
    delay = settings.alert_webhook_backoff
    for attempt in range(settings.alert_webhook_retries + 1):
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/json", "User-Agent": "mso-hub"})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
                answer.read()
            return True
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                log.warning("alert webhook at %s refused %s:%s with HTTP %s; not retried", _host(url),
                            alert.practice, alert.rule, exc.code)
                return False
            reason = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            reason = type(getattr(exc, "reason", exc)).__name__
        if attempt < settings.alert_webhook_retries:
            log.info("alert webhook at %s failed (%s); retry in %ss", _host(url), reason, delay)
            sleep(delay)
            delay *= 2
    log.warning("alert webhook at %s failed for %s:%s after %d tries (%s)", _host(url), alert.practice,
                alert.rule, settings.alert_webhook_retries + 1, reason)
    return False


def message(settings: Settings, alert: Alert) -> EmailMessage:
    mail_ = EmailMessage()
    mail_["Subject"] = f"[hub] {STATE_WORDS.get(alert.state, alert.state)} {alert.rule}: {alert.practice}"
    mail_["From"] = settings.alert_email_from
    mail_["To"] = ", ".join(settings.alert_email_to)
    lines = [alert.summary, "", f"practice: {alert.practice}", f"rule: {alert.rule}", f"state: {alert.state}",
             f"opened: {alert.opened_at.isoformat()}", f"at: {alert.at.isoformat()}", "",
             "details (JSON):", orjson.dumps(alert.detail, option=orjson.OPT_INDENT_2).decode()]
    mail_.set_content("\n".join(lines) + "\n")
    return mail_


def mail(settings: Settings, alert: Alert) -> bool:
    import smtplib

    server = smtp_server(settings.alert_smtp_url or "")
    try:
        send(server, message(settings, alert), timeout=TIMEOUT)
        return True
    except (smtplib.SMTPException, OSError) as exc:
        log.warning("alert e-mail through %s:%s failed for %s:%s (%s)", server.host, server.port, alert.practice,
                    alert.rule, type(exc).__name__)
        return False


def check_settings(settings: Settings) -> None:
    """Refuse a bad delivery setting at once (one ``ConfigError`` naming it), not at the first notice."""
    if settings.alert_smtp_url:
        smtp_server(settings.alert_smtp_url)
    if settings.alert_webhook_url and urllib.parse.urlsplit(settings.alert_webhook_url).scheme not in ("http",
                                                                                                        "https"):
        raise ConfigError("HUB_ALERT_WEBHOOK_URL must be an http:// or https:// URL")
