"""The message store over HTTP (``admin``): what arrived, its status and error reason, and replay.

Reading the store and reprocessing touch patient-level data, so every call is
audited. The listing never includes a message's content.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
import sqlalchemy as sa
from flask import current_app
from flask_smorest import Blueprint, abort

from hub.api.calls import DENIED, audit
from hub.errors import IntegrityError
from hub.model.tables import audit_log
from hub.pipeline.replay import reprocess
from hub.security.auth import require_roles
from hub.store import messages as message_store

blp = Blueprint("messages", __name__, description="The message store: errors, reasons, reprocessing")

MAX_ID = 2**63 - 1  # ids are 64-bit: a larger number names no message
STATUSES = ("received", "processed", "error", "duplicate", "resolved")
ALTERED = "a message's stored content no longer matches its hash: nothing was replayed"
RESOLVE_ACTION = "messages.resolve"  # the audit entry ``hub messages resolve`` writes per message


class MessageQuerySchema(ma.Schema):
    status = ma.fields.String(validate=ma.validate.OneOf(STATUSES))
    practice = ma.fields.String(validate=ma.validate.Length(min=1, max=64))
    limit = ma.fields.Integer(load_default=100, validate=ma.validate.Range(min=1, max=10_000))
    offset = ma.fields.Integer(load_default=0, validate=ma.validate.Range(min=0, max=2**31 - 1))


class ResolutionSchema(ma.Schema):
    by = ma.fields.String(allow_none=True, metadata={"description": "who marked it: cli: and the system user"})
    reason = ma.fields.String(allow_none=True, metadata={"description": "why (its first 64 characters)"})
    at = ma.fields.DateTime(allow_none=True, metadata={"description": "when it was marked resolved"})


class MessageSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    practice = ma.fields.String(required=True)
    connector = ma.fields.String(required=True)
    status = ma.fields.String(required=True)
    error = ma.fields.String(allow_none=True, metadata={"description": "the reason a person can act on"})
    received_at = ma.fields.DateTime(required=True)
    processed_at = ma.fields.DateTime(allow_none=True)
    queued_at = ma.fields.DateTime(allow_none=True)
    message_type = ma.fields.String(allow_none=True)
    control_id = ma.fields.String(allow_none=True)
    sender = ma.fields.String(allow_none=True)
    origin = ma.fields.String(allow_none=True)
    attempts = ma.fields.Integer()
    record_count = ma.fields.Integer(allow_none=True)
    duplicate_of = ma.fields.Integer(allow_none=True)
    content_hash = ma.fields.String()
    flag = ma.fields.String(allow_none=True, metadata={
        "description": "a note on the message: control-id-reused (the sender reused a stored message's control "
                       "id for other content; the message is stored and processed)"})
    tally = ma.fields.Dict(allow_none=True, metadata={
        "description": "what the message held besides its records: mapped (records), not_mapped (parts by "
                       "type), invalid ([{path, reason}] optional elements left out), notes; null when nothing"})
    resolution = ma.fields.Nested(ResolutionSchema, allow_none=True, metadata={
        "description": "a resolved message (an error no replay can fix, hub messages resolve): who marked it, "
                       "why and when, from the audit log; null for other statuses"})


class ReprocessResultSchema(ma.Schema):
    submitted = ma.fields.Integer(required=True)
    processed = ma.fields.Integer(required=True, metadata={"description": "processed now (inline processing)"})
    error = ma.fields.Integer(required=True, metadata={"description": "in error now (inline processing)"})
    queued = ma.fields.Boolean(required=True, metadata={"description": "handed to the workers"})


class ReprocessQuerySchema(ma.Schema):
    status = ma.fields.String(validate=ma.validate.OneOf(("received", "processed", "error")))
    practice = ma.fields.String(validate=ma.validate.Length(min=1, max=64))


@blp.route("/messages", methods=["GET"])
@blp.arguments(MessageQuerySchema, location="query")
@blp.response(200, MessageSchema(many=True))
@blp.doc(operationId="listMessages", summary="List stored messages, newest first (never their content)")
@blp.alt_response(401, description=DENIED[401])
@blp.alt_response(403, description=DENIED[403])
@blp.alt_response(429, description=DENIED[429])
@require_roles("admin")
def list_messages(query: dict[str, Any]) -> Any:
    runtime = current_app.extensions["hub"]
    with runtime.engine.connect() as conn:
        rows = message_store.list_messages(conn, practice=query.get("practice"), status=query.get("status"),
                                           limit=query["limit"], offset=query["offset"])
        _resolutions(conn, rows)
    audit("messages.list", query.get("status"), query.get("practice"), f"{len(rows)} listed")
    return rows


@blp.route("/messages/<int:message_id>/reprocess", methods=["POST"])
@blp.response(200, ReprocessResultSchema)
@blp.doc(operationId="reprocessMessage", summary="Replay one message through the current mapping")
@blp.alt_response(401, description=DENIED[401])
@blp.alt_response(403, description=DENIED[403])
@blp.alt_response(404, description="no message with this id holds content to replay")
@blp.alt_response(409, description=ALTERED)
@blp.alt_response(429, description=DENIED[429])
@require_roles("admin")
def reprocess_message(message_id: int) -> Any:
    runtime = current_app.extensions["hub"]
    result = _replay(runtime, str(message_id), None, ids=[message_id]) if message_id <= MAX_ID \
        else {"submitted": 0}
    if not result["submitted"]:
        audit("messages.reprocess", str(message_id), None, "not found")
        abort(404, message=f"no message {message_id} with content to replay")
    audit("messages.reprocess", str(message_id), None, _outcome(result))
    return {**result, "queued": bool(result["queued"])}


@blp.route("/messages/reprocess", methods=["POST"])
@blp.arguments(ReprocessQuerySchema, location="query")
@blp.response(200, ReprocessResultSchema)
@blp.doc(operationId="reprocessMessages",
         summary="Replay every message of a status (default: error) and/or practice, after a mapping fix")
@blp.alt_response(401, description=DENIED[401])
@blp.alt_response(403, description=DENIED[403])
@blp.alt_response(409, description=ALTERED)
@blp.alt_response(429, description=DENIED[429])
@require_roles("admin")
def reprocess_messages(query: dict[str, Any]) -> Any:
    runtime = current_app.extensions["hub"]
    status = query.get("status") or "error"
    result = _replay(runtime, f"status={status}", query.get("practice"), practice=query.get("practice"),
                     status=status)
    audit("messages.reprocess", f"status={status}", query.get("practice"), _outcome(result))
    return {**result, "queued": bool(result["queued"])}


def _replay(runtime: Any, target: str, slug: str | None, **chosen: Any) -> dict[str, int]:
    """``reprocess``; a message whose bytes no longer match their hash refuses the whole call (409), audited."""
    try:
        return reprocess(runtime, **chosen)
    except IntegrityError as exc:
        audit("messages.reprocess", target, slug, "refused: content altered")
        abort(409, message=exc.message, errors={"messages": exc.ids})
    raise AssertionError("abort returns no more")


def _resolutions(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Each resolved message's ``resolution`` (who, why, when), from its latest ``messages.resolve`` entry."""
    resolved = {str(row["id"]): row for row in rows if row["status"] == "resolved"}
    for row in rows:
        row["resolution"] = None
    if not resolved:
        return
    entries = conn.execute(sa.select(audit_log.c.target, audit_log.c.address, audit_log.c.outcome, audit_log.c.at)
                           .where(audit_log.c.action == RESOLVE_ACTION, audit_log.c.target.in_(list(resolved)))
                           .order_by(audit_log.c.id))
    for entry in entries:  # the latest entry of a message wins
        resolved[entry.target]["resolution"] = {"by": entry.address, "reason": entry.outcome, "at": entry.at}


def _outcome(result: dict[str, int]) -> str:
    return (f"submitted={result['submitted']} queued" if result["queued"]
            else f"submitted={result['submitted']} processed={result['processed']} error={result['error']}")
