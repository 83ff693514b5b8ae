"""Mail through an SMTP server named by a URL: the one sending path of alert notices and the monthly packet.

The URL: ``smtp://host[:25]`` (plain), ``smtp+starttls://user:password@host[:587]`` (STARTTLS) or
``smtps://user:password@host[:465]`` (TLS), the login percent-encoded. A bad URL is one ``ConfigError``
naming the setting it came from.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from email.message import EmailMessage

from hub.errors import ConfigError

# smtplib and ssl are imported by send: the alert plugin, loaded by every command, imports this module

TIMEOUT = 10.0  # seconds for one SMTP conversation
SMTP_SCHEMES = {"smtp": (25, "NONE"), "smtp+starttls": (587, "STARTTLS"), "smtps": (465, "TLS")}


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    security: str  # NONE, STARTTLS or TLS
    user: str | None
    password: str | None


def smtp_server(url: str, setting: str = "HUB_ALERT_SMTP_URL") -> SmtpServer:
    """The server a URL names; ``setting``: the variable it came from, for the error message."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise ConfigError(f"{setting} is not a URL (smtp://host:25)") from None
    if parts.scheme not in SMTP_SCHEMES or not parts.hostname:
        raise ConfigError(f"{setting} must be smtp://host[:port], smtp+starttls://... or smtps://... "
                          f"(got the scheme {parts.scheme or 'none'!r})")
    default_port, security = SMTP_SCHEMES[parts.scheme]
    unquote = urllib.parse.unquote
    return SmtpServer(parts.hostname, port or default_port, security,
                      unquote(parts.username) if parts.username else None,
                      unquote(parts.password) if parts.password is not None else None)


def send(server: SmtpServer, message: EmailMessage, *, timeout: float = TIMEOUT) -> None:
    """One message through ``server``; raises ``smtplib.SMTPException`` or ``OSError`` (callers log the
    server and the error's type, never the server's answer, which may quote the login)."""
    import smtplib
    import ssl

    smtp: smtplib.SMTP
    if server.security == "TLS":
        smtp = smtplib.SMTP_SSL(server.host, server.port, timeout=timeout, context=ssl.create_default_context())
    else:
        smtp = smtplib.SMTP(server.host, server.port, timeout=timeout)
    with smtp:
        if server.security == "STARTTLS":
            smtp.starttls(context=ssl.create_default_context())
        if server.user:
            smtp.login(server.user, server.password or "")
        smtp.send_message(message)
