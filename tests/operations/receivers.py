"""Real receivers on loopback ports for alert notices: a webhook (http.server in a thread) and an SMTP
server (aiosmtpd). They keep what arrived, to be read by the tests."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


class Webhook:
    """Answers each POST with the next of ``answers`` (then 200) and keeps the JSON bodies it accepted."""

    def __init__(self, answers: list[int] | None = None) -> None:
        self.answers = list(answers or [])
        self.accepted: list[dict[str, Any]] = []
        self.attempts = 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.attempts += 1
                code = hook.answers.pop(0) if hook.answers else 200
                if code == 200:
                    assert self.headers["Content-Type"] == "application/json"
                    hook.accepted.append(json.loads(body))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def states(self) -> list[tuple[str, str, str]]:
        return [(n["practice"], n["rule"], n["state"]) for n in self.accepted]


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Webhook]:
    hook = Webhook()
    hook.thread.start()
    monkeypatch.setenv("HUB_ALERT_WEBHOOK_URL", hook.url)
    monkeypatch.setenv("HUB_ALERT_WEBHOOK_BACKOFF", "0.01")
    try:
        yield hook
    finally:
        hook.server.shutdown()
        hook.server.server_close()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content)
        message["X-Rcpt"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 OK"

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.messages]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def mailbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Mailbox]:
    from aiosmtpd.controller import Controller

    box = Mailbox()
    port = _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("HUB_ALERT_SMTP_URL", f"smtp://127.0.0.1:{port}")
    monkeypatch.setenv("HUB_ALERT_EMAIL_TO", "ops@example.org,oncall@example.org")
    monkeypatch.setenv("HUB_ALERT_EMAIL_FROM", "hub@example.org")
    try:
        yield box
    finally:
        controller.stop()
