"""``POST /api/v1/practices/{slug}/messages``: a practice pushes one feed payload.

The ``Content-Type`` picks the connector (415 when none reads it). The payload is
committed to the message store (grouped with the requests arriving at the same
moment) before the answer is sent; the answer is the connector's own (the HL7
ACKs, a FHIR response Bundle) or, for a connector without one, a JSON summary.
Every message of the payload is stored: an unreadable payload is kept as
``error`` with its reason and answered 400 (with the connector's rejection when it
has one); otherwise 200, each message's fate in the answer, except where the
connector's format says otherwise (``answer_parts``: a refused FHIR transaction or
resource is 422, with its OperationOutcome).

``IntakeFastPath`` serves the common case of this call (a valid key, within its
rate, a known media type, a body within the size limit) as plain WSGI, without
Flask's request and response machinery, which costs as much CPU as the store
itself; every other request, and every refusal, goes through the Flask view, which
answers and audits it as documented.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

import marshmallow as ma
from flask import Flask, Response, current_app, g, request
from flask_smorest import Blueprint, abort
from sqlalchemy import exc as sa_exc

from hub.api.headers import HARDENING
from hub.api.problems import MEDIA_TYPE as PROBLEM_TYPE
from hub.api.problems import problem_bytes
from hub.errors import NotFound
from hub.pipeline.group_commit import GroupCommitter, Pending
from hub.pipeline.intake import Arrival, Receipt
from hub.security.audit import AuditEntry
from hub.security.auth import (
    auth_state,
    authorize,
    bearer_token,
    client_address,
    hand_to_view,
    key_for_token,
    require_roles,
)
from hub.store.engine import save_failure_reason

DRAIN_LIMIT = 64 * 1024 * 1024  # read (and drop) an oversized body up to this, so the client sees the 413

blp = Blueprint("intake", __name__, description="Practice feeds pushed to the hub")
INTAKE_ROLES = ("feed", "admin")  # a feed key of the practice named in the URL, or an admin key

_ERROR_RESPONSES = {
    "400": "the payload cannot be read at all (stored as error; the reason is in the answer)",
    "422": "FHIR: the resource or transaction was read but refused (stored as error; an OperationOutcome "
           "names the element)",
    "401": "no key, or an unknown, expired or revoked key",
    "403": "a key of another role, or the feed key of another practice",
    "404": "no such practice",
    "413": "the payload is larger than the server accepts (HUB_MAX_PAYLOAD)",
    "415": "no installed connector reads this Content-Type",
    "429": "too many requests for this key (see Retry-After)",
    "503": "the message store cannot take the payload now (see Retry-After); nothing was stored",
}


class MessageReceiptSchema(ma.Schema):
    id = ma.fields.Integer(metadata={"description": "the message id in the message store"})
    status = ma.fields.String(metadata={"description": "accepted, duplicate or error"})
    error = ma.fields.String(metadata={"description": "why the message is in error (no patient data)"})


class IntakeSummarySchema(ma.Schema):
    messages = ma.fields.List(ma.fields.Nested(MessageReceiptSchema))
    code = ma.fields.Integer()
    status = ma.fields.String()
    message = ma.fields.String()


def committer(app: Flask | None = None) -> GroupCommitter:
    ext = (app or current_app).extensions
    if "hub_committer" not in ext:
        ext.setdefault("hub_committer", GroupCommitter(ext["hub"]))
    return ext["hub_committer"]


def store_unavailable(exc: Exception) -> str:
    return f"the message store cannot take the payload now: {save_failure_reason(exc)}; nothing was stored, retry"


@blp.route("/practices/<string:slug>/messages", methods=["POST"])
@blp.doc(operationId="pushMessages", summary="Push one feed payload (HL7 v2, FHIR, CSV, X12, ...)",
         responses={
             # the connector's own answer (HL7 ACK text, a FHIR response Bundle or OperationOutcome, ...)
             "200": {"content": {"*/*": {"schema": {}}}},
             **{code: {"description": text, "content": {
                 PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}},
                 **({"*/*": {"schema": {}}} if code in ("400", "422") else {})}}
                for code, text in _ERROR_RESPONSES.items()},
         })
@blp.alt_response(200, schema=IntakeSummarySchema, content_type="application/json",
                  description="stored; the body is the connector's answer (ACKs, response Bundle) "
                              "or a JSON summary of each message")
@require_roles(*INTAKE_ROLES, practice_arg="slug")
def push_messages(slug: str) -> Any:
    runtime = current_app.extensions["hub"]
    media_type = (request.mimetype or "").lower()
    connector = runtime.plugins.connectors.for_media_type(media_type) if media_type else None
    if connector is None:
        known = sorted({m for c in runtime.plugins.connectors.classes() for m in c.media_types})
        abort(415, message=f"Content-Type {media_type or '(none)'!r} is not read by any installed connector; "
                           f"use one of: {', '.join(known)}")
    assert connector is not None
    data = _body()
    if not data:
        abort(400, message="the request body is empty: send one feed payload")
    key = g.api_key
    entry = AuditEntry(key_id=key.key_id, action="intake", target=slug, practice=slug, address=client_address())
    origin = f"http {key.key_id}"
    try:
        receipts = committer().submit(Pending(slug, media_type, Arrival(data, origin), entry),
                                     runtime.settings.commit_timeout)
    except NotFound as exc:
        abort(404, message=exc.message)
    except Exception as exc:  # the store is down or too slow: the sender retries, nothing was answered
        g.audited = True  # the committer wrote the audit row, or could not
        abort(503, message=store_unavailable(exc), headers={"Retry-After": "5"})
    g.audited = True
    return answer(connector, receipts)


def _body() -> bytes:
    """The request body. One sent without a Content-Length (``Transfer-Encoding: chunked``) is read up to
    the limit and refused whole (413, nothing stored) when it goes on past it: never cut and taken."""
    limit = request.max_content_length
    if request.content_length is not None or limit is None:
        return request.get_data(cache=False)  # Werkzeug refuses a declared length over the limit
    stream = request.environ["wsgi.input"]
    parts: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = stream.read(min(1 << 20, limit + 1 - size))
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)
        size += len(chunk)
    drained = size
    while drained < DRAIN_LIMIT:  # a client still sending would never read an early answer
        chunk = stream.read(1 << 20)
        if not chunk:
            break
        drained += len(chunk)
    headers = {"Connection": "close"} if drained >= DRAIN_LIMIT else None
    abort(413, message=f"the payload is more than {limit} bytes (sent chunked); this server takes at most {limit}",
          headers=headers)
    raise AssertionError("abort returns no more")


def answer(connector: Any, receipts: list[Receipt]) -> Response:
    status, body, media_type, ids = answer_parts(connector, receipts)
    response = Response(body, status=status, content_type=media_type)
    response.headers["X-Hub-Message-Ids"] = ids
    return response


def answer_parts(connector: Any, receipts: list[Receipt]) -> tuple[int, bytes, str, str]:
    """The answer as (status, body, content type, ``X-Hub-Message-Ids``): the connector's own,
    or a JSON summary of each message's fate. The status is 400 when every message was refused
    unread, else 200; a connector whose format has its own HTTP rules says it by an
    ``answer_status(results)`` method (FHIR: a refused transaction or resource is 400 or 422)."""
    rejected = bool(receipts) and all(r.outcome.rejected for r in receipts)
    status = 400 if rejected else 200
    ids = ",".join(str(r.outcome.message_id) for r in receipts)
    results = [(r.envelope, r.outcome) for r in receipts]
    body = connector.answer(results)
    own_status = connector.answer_status(results) if body is not None else None
    if own_status is not None:
        status = own_status
    if body is not None:
        content, media_type = body
        return status, content, media_type, ids
    summary: dict[str, Any] = {"messages": [{"id": r.outcome.message_id, "status": r.status,
                               **({"error": r.outcome.error} if r.outcome.error else {})} for r in receipts]}
    if rejected:  # the API's error shape, with each message's fate under "errors"
        return status, problem_bytes(400, receipts[0].outcome.error or "the payload cannot be read",
                                     errors=summary), PROBLEM_TYPE, ids
    return status, json.dumps(summary).encode(), "application/json", ids


_INTAKE_PATH = re.compile(r"/api/v1/practices/([^/]+)/messages")
_ROUTE = "/api/v1/practices/<string:slug>/messages"  # what the request log names, as the Flask view does
_http_log = logging.getLogger("hub.http")
_log = logging.getLogger("hub.app")

StartResponse = Callable[..., Any]


class IntakeFastPath:
    """WSGI middleware: the push call's common case without Flask (see the module's docstring).

    It stores exactly as the view does (the same committer, audit entry and answer); it only
    skips the framework. A request it does not take is passed on untouched, body unread."""

    def __init__(self, wsgi_app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]], app: Flask) -> None:
        self.wsgi_app = wsgi_app
        self.app = app
        self.runtime = app.extensions["hub"]
        self.max_payload = app.config.get("MAX_CONTENT_LENGTH")
        self.commit_timeout = self.runtime.settings.commit_timeout

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            taken = self._take(environ) if environ.get("REQUEST_METHOD") == "POST" else None
        except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:  # the key look-up found the store down
            _log.error("the database is unavailable (%s)", type(exc).__name__)
            body = problem_bytes(503, "the store is unavailable; retry later")
            start_response("503 Service Unavailable", [("Content-Type", PROBLEM_TYPE), ("Retry-After", "5"),
                                                       ("Content-Length", str(len(body))), *HARDENING])
            return [body]
        if taken is None:
            return self.wsgi_app(environ, start_response)
        started = time.perf_counter()
        slug, key, connector, media_type, length = taken
        data = environ["wsgi.input"].read(length)
        address = environ.get("REMOTE_ADDR")
        entry = AuditEntry(key_id=key.key_id, action="intake", target=slug, practice=slug, address=address)
        headers: list[tuple[str, str]] = []
        try:
            if len(data) != length:  # the client went away mid-body: nothing to store
                raise _Refusal(400, "the request body ended before its Content-Length")
            item = Pending(slug, media_type, Arrival(data, f"http {key.key_id}"), entry)
            try:
                receipts = committer(self.app).submit(item, self.commit_timeout)
            except NotFound as exc:
                raise _Refusal(404, exc.message) from None
            except Exception as exc:  # the store is down or too slow: the sender retries
                headers.append(("Retry-After", "5"))
                raise _Refusal(503, store_unavailable(exc)) from None
            status, body, content_type, ids = answer_parts(connector, receipts)
            headers += [("Content-Type", content_type), ("X-Hub-Message-Ids", ids)]
        except _Refusal as refusal:  # the answers the Flask view gives, in the API's error shape
            status = refusal.status
            body = problem_bytes(status, refusal.message)
            headers.append(("Content-Type", PROBLEM_TYPE))
        headers += [("Content-Length", str(len(body))), *HARDENING]
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        if _http_log.isEnabledFor(logging.INFO):
            _http_log.info("POST %s %s", _ROUTE, status, extra={
                "key_id": key.key_id, "status": status, "address": address,
                "duration_ms": round((time.perf_counter() - started) * 1e3, 2)})
        return [body]

    def _take(self, environ: dict[str, Any]) -> tuple[str, Any, Any, str, int] | None:
        """What the fast path needs, or None when the Flask view is to answer the request."""
        match = _INTAKE_PATH.fullmatch(environ.get("PATH_INFO", ""))
        if match is None:
            return None
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return None
        if length <= 0 or (self.max_payload is not None and length > self.max_payload):
            return None
        slug = match.group(1)
        if slug not in self.runtime.known_practices:
            return None  # the view finds out whether it exists (404) the first time
        media_type = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
        connector = self.runtime.plugins.connectors.for_media_type(media_type) if media_type else None
        if connector is None:
            return None
        token = bearer_token(environ.get("HTTP_AUTHORIZATION", ""))
        key = key_for_token(self.app, token) if token else None
        decision = authorize(key, roles=INTAKE_ROLES, practice=slug, limiter=auth_state(self.app)["limiter"])
        if not decision.allowed:  # the view answers (and audits) the refusal, without checking again
            hand_to_view(environ, key, INTAKE_ROLES, slug, decision)
            return None
        return slug, key, connector, media_type, length


class _Refusal(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message
