"""Consolidated KPIs: the catalog, the rollups kept as data lands, the engine and its outputs.

``compute_report(engine, by=("site", "month"), date_from=, date_to=, kpis=, plugins=)``
returns a ``Report``; ``Report.to_dict()`` is the JSON contract (docs/reports.md).
"""

from hub.reports.catalog import Kpi
from hub.reports.engine import Report, compute_report

__all__ = ["Kpi", "Report", "compute_report"]
