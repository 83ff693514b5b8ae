"""``GET /api/v1/practices/<slug>/scorecard``: the onboarding scorecard as JSON, for admins."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint, abort

from hub.errors import HubError, NotFound
from hub.onboarding.sources import check_stored
from hub.security.auth import require_roles

blp = Blueprint("onboarding", __name__, description="Onboarding scorecard of a practice")


@blp.route("/practices/<slug>/scorecard")
class Scorecard(MethodView):
    @require_roles("admin")
    @blp.response(200)
    def get(self, slug: str) -> Any:
        """The scorecard of the messages stored for a practice, read through its current mapping.

        Aggregates, codes and file names only; no patient data."""
        try:
            return check_stored(current_app.extensions["hub"], slug)
        except NotFound as exc:
            abort(404, message=str(exc))
        except HubError as exc:
            abort(422, message=str(exc))
