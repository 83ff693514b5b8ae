"""``GET /api/v1/practices/<slug>/scorecard``: the onboarding scorecard as JSON, for admins."""

from __future__ import annotations

from typing import Any

from flask import current_app, g
from flask.views import MethodView
from flask_smorest import Blueprint, abort

from hub.errors import HubError, NotFound
from hub.onboarding.sources import check_stored
from hub.security.audit import AuditEntry, record
from hub.security.auth import client_address, require_roles
from hub.store.engine import writer

blp = Blueprint("onboarding", __name__, description="Onboarding scorecard of a practice")


@blp.route("/practices/<slug>/scorecard")
class Scorecard(MethodView):
    @require_roles("admin")
    @blp.response(200)
    def get(self, slug: str) -> Any:
        """The scorecard of the messages stored for a practice, read through its current mapping.

        Aggregates, codes and file names only; no patient data."""
        runtime = current_app.extensions["hub"]
        try:
            card = check_stored(runtime, slug)
        except NotFound as exc:
            _audit(runtime, slug, "404")
            abort(404, message=str(exc))
        except HubError as exc:
            _audit(runtime, slug, "422")
            abort(422, message=str(exc))
        _audit(runtime, slug, "200")  # it reads every stored message of the practice
        return card


def _audit(runtime: Any, slug: str, outcome: str) -> None:
    with writer(runtime.engine).begin() as conn:
        record(conn, [AuditEntry(g.api_key.key_id, "scorecard.read", slug, slug, client_address(), outcome)])
