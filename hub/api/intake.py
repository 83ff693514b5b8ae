"""``POST /api/v1/practices/{slug}/messages``: a practice pushes one feed payload.

The ``Content-Type`` picks the connector (415 when none reads it). The payload is
committed to the message store (grouped with the requests arriving at the same
moment) before the answer is sent; the answer is the connector's own (the HL7
ACKs, a FHIR response Bundle) or, for a connector without one, a JSON summary.
Every message of the payload is stored: an unreadable payload is kept as
``error`` with its reason and answered 400 (with the connector's rejection when it
has one); otherwise 200, each message's fate in the answer.
"""

from __future__ import annotations

import json
import os
from typing import Any

import marshmallow as ma
from flask import Response, current_app, g, request
from flask_smorest import Blueprint, abort

from hub.errors import NotFound
from hub.pipeline.group_commit import GroupCommitter, Pending
from hub.pipeline.intake import Arrival, Receipt
from hub.security.audit import AuditEntry
from hub.security.auth import client_address, require_roles

blp = Blueprint("intake", __name__, description="Practice feeds pushed to the hub")

_ERROR_RESPONSES = {
    "400": "the payload cannot be read at all (stored as error; the reason is in the answer)",
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


def committer() -> GroupCommitter:
    ext = current_app.extensions
    if "hub_committer" not in ext:
        ext["hub_committer"] = GroupCommitter(ext["hub"])
    return ext["hub_committer"]


@blp.route("/practices/<string:slug>/messages", methods=["POST"])
@blp.doc(operationId="pushMessages", summary="Push one feed payload (HL7 v2, FHIR, CSV, X12, ...)",
         responses={
             # the connector's own answer (HL7 ACK text, a FHIR response Bundle or OperationOutcome, ...)
             "200": {"content": {"*/*": {"schema": {}}}},
             **{code: {"description": text, "content": {
                 "application/json": {"schema": {"$ref": "#/components/schemas/Error"}},
                 **({"*/*": {"schema": {}}} if code == "400" else {})}}
                for code, text in _ERROR_RESPONSES.items()},
         })
@blp.alt_response(200, schema=IntakeSummarySchema, content_type="application/json",
                  description="stored; the body is the connector's answer (ACKs, response Bundle) "
                              "or a JSON summary of each message")
@require_roles("feed", "admin", practice_arg="slug")
def push_messages(slug: str) -> Any:
    runtime = current_app.extensions["hub"]
    media_type = (request.mimetype or "").lower()
    connector = runtime.plugins.connectors.for_media_type(media_type) if media_type else None
    if connector is None:
        known = sorted({m for c in runtime.plugins.connectors.classes() for m in c.media_types})
        abort(415, message=f"Content-Type {media_type or '(none)'!r} is not read by any installed connector; "
                           f"use one of: {', '.join(known)}")
    assert connector is not None
    data = request.get_data(cache=False)
    if not data:
        abort(400, message="the request body is empty: send one feed payload")
    key = g.api_key
    entry = AuditEntry(key_id=key.key_id, action="intake", target=slug, practice=slug, address=client_address())
    origin = f"http {key.key_id}"
    timeout = float(os.environ.get("HUB_COMMIT_TIMEOUT", "30"))
    try:
        receipts = committer().submit(Pending(slug, media_type, Arrival(data, origin), entry), timeout)
    except NotFound as exc:
        abort(404, message=exc.message)
    except Exception as exc:  # the store is down or too slow: the sender retries, nothing was answered
        g.audited = True  # the committer wrote the audit row, or could not
        abort(503, message=f"the message store cannot take the payload now ({type(exc).__name__}); retry",
              headers={"Retry-After": "5"})
    g.audited = True
    return answer(connector, receipts)


def answer(connector: Any, receipts: list[Receipt]) -> Response:
    rejected = bool(receipts) and all(r.outcome.rejected for r in receipts)
    status = 400 if rejected else 200
    body = connector.answer([(r.envelope, r.outcome) for r in receipts])
    if body is None:
        summary: dict[str, Any] = {"messages": [{"id": r.outcome.message_id, "status": r.status,
                                 **({"error": r.outcome.error} if r.outcome.error else {})} for r in receipts]}
        if rejected:  # the API's error shape, with each message's fate under "errors"
            summary = {"code": 400, "status": "Bad Request",
                       "message": receipts[0].outcome.error or "the payload cannot be read", "errors": summary}
        response = Response(json.dumps(summary), status=status, mimetype="application/json")
    else:
        content, media_type = body
        response = Response(content, status=status, content_type=media_type)
    response.headers["X-Hub-Message-Ids"] = ",".join(str(r.outcome.message_id) for r in receipts)
    return response
