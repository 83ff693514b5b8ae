"""The health of each practice's feeds: what ``hub status`` prints, one line per practice and connector.

Per line: the practice's status (onboarding, live), the last message received and processed, the
arrivals of the last hour and day by what became of them (received counts every arrival; processed,
duplicate, error), the queue (messages stored and not processed yet) and the silence: the time
since the last arrival, beside the practice's expected rhythm (its silence rule) and whether that
rule would fire now (inside business hours and past its minutes).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from hub.operations.rules import Rules, practice_rules, practice_zone
from hub.store.messages import feed_activity
from hub.store.practices import list_practices


def feed_status(conn: sa.Connection, *, now: dt.datetime, defaults: Rules | None = None,
                practice: str | None = None) -> list[dict[str, Any]]:
    """One item per practice and connector (a registered practice with no message yet: one item with
    connector None), ``now`` the clock (aware). Times are aware UTC; minutes are floats."""
    registered = {p["slug"]: p for p in list_practices(conn) if practice in (None, p["slug"])}
    activity = [a for a in feed_activity(conn, now=now) if practice in (None, a["practice"])]
    seen = {a["practice"] for a in activity}
    out: list[dict[str, Any]] = []
    for item in activity:
        out.append(_line(registered.get(item["practice"]), item, now, defaults))
    for slug in sorted(set(registered) - seen):
        out.append(_line(registered[slug], {"practice": slug, "connector": None}, now, defaults))
    out.sort(key=lambda line: (line["practice"], line["connector"] or ""))
    return out


def _line(practice: dict[str, Any] | None, item: dict[str, Any], now: dt.datetime,
          defaults: Rules | None) -> dict[str, Any]:
    rules = practice_rules(practice, defaults)[0] if practice else None
    last = item.get("last_received")
    line: dict[str, Any] = {
        "practice": item["practice"], "connector": item["connector"],
        "status": practice["status"] if practice else "unregistered",
        "last_received": last, "last_processed": item.get("last_processed"),
        "last_hour": {k: item.get(f"hour_{k}", 0) for k in ("received", "processed", "duplicate", "error")},
        "last_day": {k: item.get(f"day_{k}", 0) for k in ("received", "processed", "duplicate", "error")},
        "queue": item.get("queue", 0),
        "oldest_waiting": item.get("oldest_waiting"),
        "silence_minutes": round((now - last).total_seconds() / 60, 1) if last else None,
        "expected_minutes": None, "business_hours": None, "silent": False,
    }
    watched = rules is not None and rules.silence_minutes is not None and \
        rules.silence_connector in (None, item["connector"])
    if rules is not None and watched and practice is not None:
        zone = practice_zone(practice)
        line["expected_minutes"] = rules.silence_minutes
        line["business_hours"] = rules.hours.open_at(now.astimezone(zone))
        if last is not None and line["business_hours"]:
            line["silent"] = rules.hours.minutes_between(last, now, zone) >= (rules.silence_minutes or 0)
    return line
