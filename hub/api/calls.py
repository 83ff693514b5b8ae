"""What the API areas that touch patient-level data share: the audit row of a call, and the
answers every guarded route may give besides its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import current_app, g
from flask_smorest import Blueprint

from hub.security.audit import AuditEntry, record
from hub.security.auth import client_address
from hub.store.engine import writer

DENIED = {401: "no or unknown key", 403: "a key of another role", 429: "too many requests (Retry-After)"}


def audit(action: str, target: str | None, practice: str | None, outcome: str) -> None:
    """The call's audit row, under its key; the app's refusal hook then writes none of its own."""
    runtime = current_app.extensions["hub"]
    with writer(runtime.engine).begin() as conn:
        record(conn, [AuditEntry(g.api_key.key_id, action, target, practice, client_address(), outcome)])
    g.audited = True


def guarded(blp: Blueprint, operation_id: str, answers: dict[int, str] | None = None) -> Callable[[Any], Any]:
    """The OpenAPI document of a keyed route: its operation id, 401, 403, 429, and its own ``answers``
    (``{404: "no such pair"}``)."""
    def decorate(view: Any) -> Any:
        for status, description in sorted({**DENIED, **(answers or {})}.items(), reverse=True):
            view = blp.alt_response(status, description=description)(view)
        return blp.doc(operationId=operation_id)(view)
    return decorate
