"""The Feeds page: ``hub status``'s lines (``hub.operations.health``), the open alerts, and each feed's
arrivals over the last 7 days drawn as a sparkline (inline SVG: no script, no image request)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hub.operations.alerts import default_rules, open_alerts
from hub.operations.health import feed_status
from hub.store.messages import daily_arrivals

DAYS = 7


def feed_rows(runtime: Any, now: dt.datetime | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    now = now or dt.datetime.now(dt.UTC)
    first = (now - dt.timedelta(days=DAYS - 1)).date()
    days = [(first + dt.timedelta(days=i)).isoformat() for i in range(DAYS)]
    with runtime.engine.connect() as conn:
        lines = feed_status(conn, now=now, defaults=default_rules(runtime.settings))
        alerts = open_alerts(conn)
        arrivals = daily_arrivals(conn, dt.datetime.combine(first, dt.time(), dt.UTC))
    by_practice: dict[str, list[dict[str, Any]]] = {}
    for alert in alerts:
        by_practice.setdefault(alert["practice"], []).append(alert)
    for line in lines:
        counts = [arrivals.get((line["practice"], line["connector"] or ""), {}).get(day, 0) for day in days]
        line["week"] = counts
        line["spark"] = sparkline(counts)
        line["alerts"] = by_practice.get(line["practice"], [])
    return lines, alerts


def sparkline(counts: list[int], width: int = 112, height: int = 24) -> str:
    """An SVG polyline of ``counts`` (its points only: the template draws the element)."""
    top = max(counts) or 1
    step = width / max(len(counts) - 1, 1)
    return " ".join(f"{i * step:.1f},{height - 2 - (n / top) * (height - 4):.1f}" for i, n in enumerate(counts))
