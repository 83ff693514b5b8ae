"""``GET /api/v1/reports/kpis``: the consolidated KPIs as JSON, for analyst and admin keys.

Aggregates only: the response is the report contract (docs/reports.md), never patient-level data.
"""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import Schema, fields

from hub.errors import HubError
from hub.reports.engine import compute_report
from hub.security.auth import require_roles

blp = Blueprint("reports", __name__, description="Consolidated KPIs (aggregates only)")


class KpiQuerySchema(Schema):
    by = fields.String(load_default="site,month",
                       metadata={"description": "site, location, provider, service_line, financial_class, "
                                                "and one of month, quarter, year, week (ISO); comma-separated"})
    from_ = fields.Date(data_key="from", load_default=None,
                        metadata={"description": "first day (whole months; whole ISO weeks by week)"})
    to = fields.Date(load_default=None, metadata={"description": "last day (whole months; whole ISO weeks by week)"})
    kpi = fields.List(fields.String(), load_default=None, metadata={"description": "only these KPI ids"})


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


class SliceRowSchema(Schema):
    slice = fields.Dict(keys=fields.String(), values=fields.String(allow_none=True),
                        metadata={"description": "dimension → value (null: the records carry none)"})
    values = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True),
                         metadata={"description": "KPI id → value; money as decimal strings, ratios 0..1"})


class SiteSchema(Schema):
    slug = fields.String()
    name = fields.String()
    status = fields.String()


class KpiReportSchema(Schema):
    generated_at = fields.String()
    from_ = fields.String(data_key="from")
    to = fields.String()
    by = fields.List(fields.String())
    definitions = fields.List(fields.Nested(DefinitionSchema))
    rows = fields.List(fields.Nested(SliceRowSchema))
    total = fields.List(fields.Nested(SliceRowSchema), metadata={"description": "MSO total"})
    site_median = fields.List(fields.Nested(SliceRowSchema), metadata={"description": "median across sites"})
    sites = fields.List(fields.Nested(SiteSchema))


@blp.route("/reports/kpis")  # the app mounts every area under /api/v1
class Kpis(MethodView):
    decorators = [require_roles("analyst", "admin")]

    @blp.arguments(KpiQuerySchema, location="query")
    @blp.response(200, KpiReportSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """The consolidated KPIs by the requested slicing, with the MSO total and the site median."""
        runtime = current_app.extensions["hub"]
        try:
            report = compute_report(runtime.engine, by=args["by"], date_from=args["from_"], date_to=args["to"],
                                    kpis=args["kpi"], plugins=runtime.plugins)
        except HubError as exc:
            abort(400, message=str(exc))
        data = report.to_dict()
        data["from_"] = data.pop("from")
        return data
