"""Consolidated KPIs: the catalog, the rollups kept as data lands, the engine and its outputs.

``compute_report(engine, by=("site", "month"), date_from=, date_to=, kpis=, plugins=)``
returns a ``Report``; ``Report.to_dict()`` is the JSON contract (docs/reports.md).

The names below are imported when first used: the report plugins (``hub.reports.catalog``,
``hub.reports.upkeep``, ...) are registered by every command, ``hub --help`` included, and
importing this package must not bring the engine and SQLAlchemy with them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.reports.catalog import Kpi
    from hub.reports.engine import Report, compute_report

__all__ = ["Kpi", "Report", "compute_report"]

_HOME = {"Kpi": "hub.reports.catalog", "Report": "hub.reports.engine", "compute_report": "hub.reports.engine"}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'hub.reports' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value
    return value
