"""``GET /api/v1/audit`` (``admin``): read the audit log."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import current_app
from flask_smorest import Blueprint

from hub.security.audit import list_entries
from hub.security.auth import require_roles

blp = Blueprint("audit", __name__, description="Who touched patient-level data, when, from where")


class AuditQuerySchema(ma.Schema):
    key_id = ma.fields.String(validate=ma.validate.Length(min=1, max=32))
    action = ma.fields.String(validate=ma.validate.Length(min=1, max=64))
    practice = ma.fields.String(validate=ma.validate.Length(min=1, max=64))
    since = ma.fields.AwareDateTime(metadata={"description": "ISO 8601 with offset"})
    limit = ma.fields.Integer(load_default=100, validate=ma.validate.Range(min=1, max=10_000))
    offset = ma.fields.Integer(load_default=0, validate=ma.validate.Range(min=0, max=2**31 - 1))


class AuditEntrySchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    at = ma.fields.DateTime(required=True)
    key_id = ma.fields.String(allow_none=True, metadata={"description": "the public id of the key"})
    action = ma.fields.String(required=True, metadata={"description": "intake, messages.list, messages.reprocess"})
    target = ma.fields.String(allow_none=True)
    practice = ma.fields.String(allow_none=True)
    address = ma.fields.String(allow_none=True, metadata={"description": "the client's address"})
    outcome = ma.fields.String(allow_none=True)


@blp.route("/audit", methods=["GET"])
@blp.arguments(AuditQuerySchema, location="query")
@blp.response(200, AuditEntrySchema(many=True))
@blp.doc(operationId="listAudit", summary="Audit log entries, newest first")
@blp.alt_response(401, description="no or unknown key")
@blp.alt_response(403, description="a key of another role")
@blp.alt_response(429, description="too many requests (Retry-After)")
@require_roles("admin")
def list_audit(query: dict[str, Any]) -> Any:
    runtime = current_app.extensions["hub"]
    with runtime.engine.connect() as conn:
        return list_entries(conn, **query)
