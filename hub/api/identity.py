"""``/api/v1/identity/...`` (``admin``): the master patient index, as ``hub identity`` offers it.

Every call leaves an audit row (action ``identity.*``, the key, the address, the outcome; a call
refused before the view answers, as ``refused <status>``, by ``hub.app``): the links are patient-level data. Pairs
show which fields agreed and how, never the values.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import Response, current_app, g, stream_with_context
from flask.views import MethodView
from flask_smorest import Blueprint, abort

from hub.api.calls import audit, guarded
from hub.errors import HubError, NotFound
from hub.identity import review as index
from hub.identity.mpi import run_identity
from hub.security.auth import require_roles

blp = Blueprint("identity", __name__, description="The master patient index: links, review queue, decisions")

_ID = ma.validate.Length(min=1, max=255)
MAX_ID = 2**63 - 1


class RunArgs(ma.Schema):
    full = ma.fields.Boolean(load_default=False, metadata={"description": "compare every patient, train again"})


class PageArgs(ma.Schema):
    limit = ma.fields.Integer(load_default=50, validate=ma.validate.Range(min=1, max=10_000))
    offset = ma.fields.Integer(load_default=0, validate=ma.validate.Range(min=0, max=2**31 - 1))


class DecisionArgs(ma.Schema):
    decision = ma.fields.String(required=True, validate=ma.validate.OneOf(["accept", "reject"]))


class RecordRef(ma.Schema):
    practice = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=64))
    source_id = ma.fields.String(required=True, validate=_ID)


class LinkArgs(ma.Schema):
    a = ma.fields.Nested(RecordRef, required=True)
    b = ma.fields.Nested(RecordRef, required=True)


class ExportArgs(ma.Schema):
    format = ma.fields.String(load_default="json", validate=ma.validate.OneOf(["json", "csv"]))


def _known(*keys: tuple[str, str]) -> None:
    """A key no store keeps (a NUL, longer than the columns) names no record: not found, unasked."""
    if any("\x00" in p + s or len(p) > 64 or len(s) > 255 for p, s in keys):
        raise NotFound("no such patient record")


def _who() -> str:
    return f"key:{g.api_key.key_id}"


def _answer(action: str, target: str | None, practice: str | None, work: Any) -> Any:
    """Run ``work``; audit its outcome; unknown pairs or patients are 404, refused decisions 422."""
    try:
        out = work()
    except NotFound as exc:
        audit(action, target, practice, "404")
        abort(404, message=str(exc))
    except HubError as exc:
        audit(action, target, practice, "422")
        abort(422, message=str(exc))
    audit(action, target, practice, "200")
    return out


@blp.route("/identity/run")
class Run(MethodView):
    @require_roles("admin")
    @guarded(blp, "runIdentity", {409: "another run is in progress"})
    @blp.arguments(RunArgs, location="query")
    @blp.response(200)
    def post(self, args: dict[str, Any]) -> Any:
        """Run the index now (incremental unless ``full``); answers the run's counts.

        409 when another run is in progress."""
        runtime = current_app.extensions["hub"]
        summary = run_identity(runtime.engine, full=args["full"], settings=runtime.settings, plugins=runtime.plugins)
        audit("identity.run", "full" if args["full"] else "incremental", None,
               "409" if summary.skipped else "200")
        if summary.skipped:
            abort(409, message=summary.skipped)
        return summary.to_dict()


@blp.route("/identity/review")
class Review(MethodView):
    @require_roles("admin")
    @guarded(blp, "listIdentityReview")
    @blp.arguments(PageArgs, location="query")
    @blp.response(200)
    def get(self, args: dict[str, Any]) -> Any:
        """The review queue, most likely pairs first: record ids, the fields that agreed, the weight."""
        runtime = current_app.extensions["hub"]
        with runtime.engine.connect() as conn:
            total, pairs = index.review_queue(conn, limit=args["limit"], offset=args["offset"])
        audit("identity.review", None, None, "200")
        return {"total": total, "pairs": pairs}


@blp.route("/identity/review/<int:pair_id>")
class Decide(MethodView):
    @require_roles("admin")
    @guarded(blp, "decideIdentityPair", {404: "no pair with this id"})
    @blp.arguments(DecisionArgs)
    @blp.response(200)
    def post(self, args: dict[str, Any], pair_id: int) -> Any:
        """Accept (link) or reject (keep apart) a pair; no later run overrides the decision."""
        runtime = current_app.extensions["hub"]
        accept = args["decision"] == "accept"

        def decide() -> Any:
            if pair_id > MAX_ID:  # ids are 64-bit: a larger number names no pair (and no store takes it)
                raise NotFound(f"no identity pair {pair_id}: see hub identity review")
            return index.decide(runtime.engine, pair_id, accept=accept, by=_who(), plugins=runtime.plugins)

        return _answer("identity.accept" if accept else "identity.reject", str(pair_id), None, decide)


@blp.route("/identity/link")
class Link(MethodView):
    @require_roles("admin")
    @guarded(blp, "linkPatients", {404: "no such patient record"})
    @blp.arguments(LinkArgs)
    @blp.response(200)
    def post(self, args: dict[str, Any]) -> Any:
        """Link two patient records as one person (a manual link)."""
        runtime = current_app.extensions["hub"]
        a, b = (args["a"]["practice"], args["a"]["source_id"]), (args["b"]["practice"], args["b"]["source_id"])

        def link() -> Any:
            _known(a, b)
            return index.link(runtime.engine, a, b, by=_who(), plugins=runtime.plugins)

        return _answer("identity.link", f"{a[0]}/{a[1]}~{b[0]}/{b[1]}", a[0], link)


@blp.route("/identity/patients/<practice>/<path:source_id>")
class Patient(MethodView):
    @require_roles("admin")
    @guarded(blp, "explainPatient", {404: "no such patient record"})
    @blp.response(200)
    def get(self, practice: str, source_id: str) -> Any:
        """How one patient record is linked: enterprise id, method, the records under it, its pairs."""
        runtime = current_app.extensions["hub"]

        def explain() -> Any:
            _known((practice, source_id))
            with runtime.engine.connect() as conn:
                return index.explain(conn, (practice, source_id))

        return _answer("identity.explain", f"{practice}/{source_id}", practice, explain)


@blp.route("/identity/patients/<practice>/<path:source_id>/split")
class Split(MethodView):
    @require_roles("admin")
    @guarded(blp, "splitPatient", {404: "no such patient record", 422: "the record is not linked yet"})
    @blp.response(200)
    def post(self, practice: str, source_id: str) -> Any:
        """Take the record out of its enterprise id; it stays apart until an operator links it."""
        runtime = current_app.extensions["hub"]

        def split() -> Any:
            _known((practice, source_id))
            return index.split(runtime.engine, (practice, source_id), by=_who(), plugins=runtime.plugins)

        return _answer("identity.split", f"{practice}/{source_id}", practice, split)


@blp.route("/identity/export")
class Export(MethodView):
    @require_roles("admin")
    @guarded(blp, "exportIdentity")
    @blp.arguments(ExportArgs, location="query")
    @blp.response(200)
    def get(self, args: dict[str, Any]) -> Any:
        """Every patient record: practice, source id, enterprise id, how it was linked (JSON or CSV)."""
        runtime = current_app.extensions["hub"]
        fmt = args["format"]
        audit("identity.export", fmt, None, "200")

        def lines() -> Any:  # streamed: a million patients are not held in memory
            with runtime.engine.connect() as conn:
                yield from index.export_lines(conn, fmt)

        return Response(stream_with_context(lines()), mimetype="text/csv" if fmt == "csv" else "application/json")
