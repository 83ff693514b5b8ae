"""``GET /api/v1/reports/kpis``: the consolidated KPIs as JSON, for analyst and admin keys; and
``GET /api/v1/reports/kpis/{kpi}/records``, the records behind one figure.

The KPIs are aggregates only: the response is the report contract (docs/reports.md), never patient-level
data. The records call answers patient-level data (record and patient ids, dates): every call is audited.
A request only reads the committed rollups: it never recomputes them (``as_of`` says how current they
are; the background refresh of ``hub serve`` and ``hub worker`` keeps them so, hub.reports.background).
"""

from __future__ import annotations

import io
from typing import Any

from flask import Response, current_app
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import Schema, fields, validate

from hub.api.calls import audit
from hub.errors import HubError, NotFound
from hub.reports.drill import drill_down
from hub.reports.engine import compute_report, parse_by
from hub.security.auth import require_roles

blp = Blueprint("reports", __name__, description="Consolidated KPIs (aggregates only)")

# ``format`` → the answer's media type; json is the documented schema, the others are the exporters' files
MEDIA_TYPES = {"json": "application/json", "csv": "text/csv; charset=utf-8",
               "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
               "html": "text/html; charset=utf-8"}


class KpiQuerySchema(Schema):
    by = fields.String(load_default="site,month",
                       metadata={"description": "site, location, provider, service_line, financial_class, "
                                                "and one of month, quarter, year, week (ISO); comma-separated"})
    from_ = fields.Date(data_key="from", load_default=None,
                        metadata={"description": "first day (whole months; whole ISO weeks by week)"})
    to = fields.Date(load_default=None, metadata={"description": "last day (whole months; whole ISO weeks by week)"})
    kpi = fields.List(fields.String(), load_default=None, metadata={"description": "only these KPI ids"})
    format = fields.String(load_default="json", validate=validate.OneOf(tuple(MEDIA_TYPES)),
                           metadata={"description": "json (default), csv, xlsx (a sheet per slice plus the "
                                                    "definitions) or html (the dashboard page, self-contained)"})


class DefinitionSchema(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    unit = fields.String(required=True, metadata={"description": "count, ratio, usd, days or minutes"})
    numerator = fields.String(required=True)
    denominator = fields.String(allow_none=True)
    formula = fields.String(required=True)
    source_kinds = fields.List(fields.String())
    source = fields.String(allow_none=True, metadata={"description": "published definition, where one exists"})
    higher_is_better = fields.Boolean(allow_none=True)
    note = fields.String(allow_none=True)
    source_fields = fields.List(fields.String(), metadata={
        "description": "kind.field inputs beyond the source kinds (remittance.denied): a site none of whose "
                       "records carries one has no figure (left_out)"})


class SliceRowSchema(Schema):
    slice = fields.Dict(keys=fields.String(), values=fields.String(allow_none=True),
                        metadata={"description": "dimension → value (null: the records carry none)"})
    values = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True),
                         metadata={"description": "KPI id → value; money as decimal strings, ratios 0..1"})
    complete = fields.Boolean(metadata={"description": "false: the row's period is still in progress (or ahead); "
                                                       "present when a period is asked"})


class SiteSchema(Schema):
    slug = fields.String()
    name = fields.String()
    status = fields.String()


class KpiReportSchema(Schema):
    generated_at = fields.String()
    as_of = fields.String(metadata={"description": "every change stored before this UTC time is in the figures"})
    pending_cells = fields.Integer(metadata={"description": "practice-months changed since, waiting for the "
                                                            "background refresh (0: the figures are current)"})
    from_ = fields.String(data_key="from")
    to = fields.String()
    by = fields.List(fields.String())
    definitions = fields.List(fields.Nested(DefinitionSchema))
    rows = fields.List(fields.Nested(SliceRowSchema))
    total = fields.List(fields.Nested(SliceRowSchema), metadata={"description": "MSO total"})
    site_median = fields.List(fields.Nested(SliceRowSchema), metadata={"description": "median across sites"})
    sites = fields.List(fields.Nested(SiteSchema))
    today = fields.String(metadata={"description": "the date at the sites completeness is judged by"})
    periods = fields.List(fields.Dict(), metadata={
        "description": "per period: period, first_day, last_day, complete, state (complete, in_progress, future), "
                       "through, comparison {comparable, basis, reason}, maturing (KPI ids whose inputs lag)"})
    default_period = fields.String(allow_none=True, metadata={"description": "the last complete period"})
    providers = fields.List(fields.Dict(), metadata={
        "description": "present when slicing by provider: each provider key shown (an NPI, else practice/local id) "
                       "with npi, name, specialty and name_from (roster, feed or null)"})
    left_out = fields.Dict(keys=fields.String(), values=fields.Dict(), metadata={
        "description": "KPI id → {site: reason}: sites whose feeds do not carry the KPI's inputs; their figure is "
                       "null and the MSO total and site median leave them out"})


def document_formats(api: Any) -> None:
    """The KPI call's other formats beside its JSON schema, in the OpenAPI document."""
    get = api.spec._paths.get("/api/v1/reports/kpis", {}).get("get")
    if get is not None:
        content = get["responses"]["200"].setdefault("content", {})
        content.update({t.partition(";")[0]: {"schema": {"type": "string", "format": "binary"}}
                        for f, t in MEDIA_TYPES.items() if f != "json"})


@blp.route("/reports/kpis")  # the app mounts every area under /api/v1
class Kpis(MethodView):
    decorators = [require_roles("analyst", "admin")]

    @blp.arguments(KpiQuerySchema, location="query")
    @blp.response(200, KpiReportSchema)
    @blp.doc(responses={"400": {"description": "a query parameter the report cannot use (a `by` dimension, a date "
                                               "span, a KPI id, a format whose exporter is not installed)"}})
    def get(self, args: dict[str, Any]) -> Any:
        """The consolidated KPIs by the requested slicing, with the MSO total and the site median."""
        runtime = current_app.extensions["hub"]
        fmt = args["format"]
        try:
            exporter = runtime.plugins.exporters.get(fmt) if fmt != "json" else None
            if getattr(exporter, "check_by", None) is not None:  # a format that draws only some slicings
                exporter.check_by(parse_by(args["by"]))  # type: ignore[union-attr]
            report = compute_report(runtime.engine, by=args["by"], date_from=args["from_"], date_to=args["to"],
                                    kpis=args["kpi"], plugins=runtime.plugins)
        except HubError as exc:
            if exc.location is None and fmt != "json" and "exporter" in exc.message:
                exc.location = "format"
            if exc.location:  # the engine names the parameter it could not use
                abort(400, message=f"query parameter {exc.location}: {exc.message}",
                      errors={"query": {exc.location: [exc.message]}})
            abort(400, message=exc.message)
        if exporter is not None:
            out = io.BytesIO()
            exporter(report, out)
            response = Response(out.getvalue(), content_type=MEDIA_TYPES[fmt])
            if fmt == "xlsx":
                response.headers["Content-Disposition"] = 'attachment; filename="kpis.xlsx"'
            return response
        data = report.to_dict()
        data["from_"] = data.pop("from")
        return data


class DrillQuerySchema(Schema):
    site = fields.String(required=True, validate=validate.Length(min=1, max=64),
                         metadata={"description": "the site (practice slug), as the report's site dimension"})
    month = fields.String(required=True, validate=validate.Regexp(r"^\d{4}-(0[1-9]|1[0-2])$", error="YYYY-MM"),
                          metadata={"description": "the month, YYYY-MM"})
    provider = fields.String(load_default=None, validate=validate.Length(min=1, max=255),
                             metadata={"description": "only this provider (the report's provider value)"})
    service_line = fields.String(load_default=None, validate=validate.Length(min=1, max=255),
                                 metadata={"description": "only this service line (the report's value)"})


class DrillDownSchema(Schema):
    kpi = fields.String(required=True)
    slice = fields.Dict(keys=fields.String(), values=fields.String(allow_none=True))
    value = fields.Raw(allow_none=True, metadata={"description": "the figure, as the report computes it"})
    numerator = fields.List(fields.Dict(), metadata={
        "description": "the numerator's records (or the figure's, for a count or a sum): kind, practice, source_id, "
                       "the fields the formula reads, measure, amount (money), minutes or days, messages"})
    denominator = fields.List(fields.Dict(), allow_none=True,
                              metadata={"description": "the denominator's records; null for a count or a sum"})


@blp.route("/reports/kpis/<string:kpi>/records")
class KpiRecords(MethodView):
    decorators = [require_roles("analyst", "admin")]

    @blp.arguments(DrillQuerySchema, location="query")
    @blp.response(200, DrillDownSchema)
    @blp.doc(operationId="kpiRecords", summary="The records behind one KPI figure (patient-level data, audited)",
             responses={"400": {"description": "a KPI whose figure is no count, ratio or sum of records"},
                        "404": {"description": "no such KPI or site"}})
    def get(self, args: dict[str, Any], kpi: str) -> Any:
        """The numerator and denominator records of one KPI for one site and month, each with the ids of its
        stored source messages (as ``hub report drill``)."""
        runtime = current_app.extensions["hub"]
        target = f"{kpi[:60]} {args['site']} {args['month']}"
        try:
            result = drill_down(runtime.engine, kpi, site=args["site"], month=args["month"],
                                provider=args["provider"], service_line=args["service_line"],
                                plugins=runtime.plugins)
        except HubError as exc:
            status = 404 if isinstance(exc, NotFound) else 400
            audit("reports.drill", target, args["site"], f"refused {status}")
            abort(status, message=f"query parameter {exc.location}: {exc.message}" if exc.location else exc.message)
        audit("reports.drill", target, args["site"], f"{result.record_count} records")
        return result.to_dict()
