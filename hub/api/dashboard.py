"""The dashboard page at ``/``, served without figures (see ``hub.reports.dashboard``)."""

from __future__ import annotations

from flask import Blueprint, Response

from hub.reports.dashboard import render_html

bp = Blueprint("dashboard", __name__)


@bp.get("/")
def dashboard() -> Response:
    response = Response(render_html(None), mimetype="text/html")
    # the page's own script and style only; the report comes from this origin's API
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'")
    response.headers["Cache-Control"] = "no-store"
    return response
