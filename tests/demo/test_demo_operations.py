"""What the demo leaves for the people who keep the feeds running: messages dated as their files would
have arrived, one feed silent past its rule with its alert open, and a few messages in error."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from hub.demo.build import DemoResult
from hub.model.tables import messages
from hub.operations.alerts import open_alerts, silence_measurable
from hub.operations.health import feed_status
from hub.runtime import Runtime
from tests.demo.conftest import END


def test_the_demo_leaves_a_silent_feed_with_its_alert_and_three_errors(small_demo: DemoResult) -> None:
    # a feed is silent only inside its business hours: looked at, as the demo checks its alerts, at the last minute
    # of them when the clock is past them (an evening, a weekend), so the test holds at any hour
    runtime = Runtime.create(database_url=small_demo.database_url, dispatcher="inline")
    moment = silence_measurable(runtime)
    assert moment <= dt.datetime.now(dt.UTC)
    engine = sa.create_engine(small_demo.database_url)
    try:
        with engine.connect() as conn:
            failed = conn.execute(sa.select(messages.c.practice, messages.c.origin, messages.c.error,
                                            messages.c.received_at).where(messages.c.status == "error")).all()
            newest = conn.execute(sa.select(sa.func.max(messages.c.received_at))).scalar_one()
            alerts = open_alerts(conn)
            lines = feed_status(conn, now=moment)
    finally:
        engine.dispose()
    assert len(failed) == 3 and {f.practice for f in failed} == {"carmel-aesthetics"}
    assert all(f.origin.endswith("-resent.json") and f.error for f in failed)
    indianapolis = ZoneInfo("America/Indiana/Indianapolis")
    for f in failed:  # dated the evening of the bundle it repeats, 20:00 there
        day = dt.date.fromisoformat(f.origin.rsplit("/", 1)[1][:10])
        received = f.received_at if f.received_at.tzinfo else f.received_at.replace(tzinfo=dt.UTC)
        assert received == dt.datetime.combine(day, dt.time(20), indianapolis)
    # the last files (June's exports and batches) arrive early on July 1st, where the history ends
    newest = newest if newest.tzinfo else newest.replace(tzinfo=dt.UTC)
    assert dt.datetime.combine(END, dt.time(6), ZoneInfo("America/Chicago")) >= newest
    assert newest >= dt.datetime.combine(END, dt.time(6), indianapolis)
    assert [(a["practice"], a["rule"]) for a in alerts] == [("carmel-aesthetics", "silence")]
    silent = {(line["practice"], line["connector"]) for line in lines if line["silent"]}
    assert silent == {("carmel-aesthetics", "fhir")}  # the only practice with a silence rule
