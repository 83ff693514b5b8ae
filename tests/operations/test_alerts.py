"""Feed health alerts, end to end: rules in the practice's mapping, measured at a given clock, state in
the store, notices delivered to a real webhook receiver and a real SMTP server on loopback ports.

Times are chosen by hand: the practice is in America/Chicago, open Monday to Friday 08:00-18:00.
2026-03-04 is a Wednesday in CST (UTC-6); 2026-03-08 is the start of daylight saving time (CDT, UTC-5)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from hub.cli import _build_cli
from hub.operations.alerts import check
from hub.operations.rules import BusinessHours
from tests.operations.receivers import mailbox, webhook  # noqa: F401 (fixtures)
from tests.operations.store_rows import arrive, practice

CHICAGO = ZoneInfo("America/Chicago")
RULES = """\
practice: derm
timezone: America/Chicago
alerts:
  business_hours: {days: mon-fri, start: "08:00", end: "18:00"}
  repeat_minutes: 60
  silence: {minutes: 30}
"""


@pytest.fixture
def store(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """A runtime on SQLite only, for the rules whose SQL is the same on both stores (the silence and daily
    volume tests run on PostgreSQL too: they lean on time-zone arithmetic and aggregates)."""
    from hub.runtime import Runtime

    url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("HUB_DATABASE_URL", url)
    return Runtime.create(database_url=url, dispatcher="inline")


def local(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=CHICAGO)


def test_a_silent_feed_opens_one_alert_repeats_nothing_inside_the_window_and_closes_on_a_message(
        runtime, webhook, mailbox):  # noqa: F811
    practice(runtime, "derm", mapping=RULES, timezone="America/Chicago")
    arrive(runtime, "derm", local("2026-03-04T09:00"))

    first = check(runtime, now=local("2026-03-04T10:00"))  # 60 business minutes of silence, rule 30
    assert [(n.practice, n.rule, n.state) for n in first.notices] == [("derm", "silence", "open")]
    assert webhook.states() == [("derm", "silence", "open")]
    assert webhook.accepted[0]["detail"]["business_minutes"] == 60.0
    assert mailbox.subjects() == ["[hub] ALERT silence: derm"]
    assert mailbox.messages[0]["X-Rcpt"] == "ops@example.org, oncall@example.org"

    again = check(runtime, now=local("2026-03-04T10:20"))  # still silent, 20 min after the notice: within 60
    assert again.notices == []
    assert len(webhook.accepted) == 1 and len(mailbox.messages) == 1

    arrive(runtime, "derm", local("2026-03-04T10:25"))
    recovered = check(runtime, now=local("2026-03-04T10:30"))
    assert [(n.rule, n.state) for n in recovered.notices] == [("silence", "closed")]
    assert webhook.states() == [("derm", "silence", "open"), ("derm", "silence", "closed")]
    assert webhook.accepted[1]["opened_at"] == local("2026-03-04T10:00").astimezone(dt.UTC).isoformat()
    assert mailbox.subjects()[-1] == "[hub] RECOVERED silence: derm"
    assert check(runtime, now=local("2026-03-04T10:40")).notices == []  # closed stays closed


def test_an_open_alert_repeats_once_the_window_passed(store, webhook):  # noqa: F811
    practice(store, "derm", mapping=RULES, timezone="America/Chicago")
    arrive(store, "derm", local("2026-03-04T09:00"))
    check(store, now=local("2026-03-04T10:00"))
    repeat = check(store, now=local("2026-03-04T11:01"))
    assert [n.state for n in repeat.notices] == ["repeat"]
    assert check(store, now=local("2026-03-04T11:30")).notices == []
    assert webhook.states() == [("derm", "silence", "open"), ("derm", "silence", "repeat")]
    result = CliRunner().invoke(_build_cli(), ["alerts", "list", "--format", "json"],
                                env={"HUB_DATABASE_URL": str(store.engine.url)})
    assert result.exit_code == 0, result.output
    assert [(a["practice"], a["rule"], a["sent_count"]) for a in __import__("json").loads(result.output)] == \
        [("derm", "silence", 2)]


def test_outside_business_hours_a_silent_feed_raises_nothing(store, webhook):  # noqa: F811
    practice(store, "derm", mapping=RULES, timezone="America/Chicago")
    arrive(store, "derm", local("2026-03-06T17:50"))  # a Friday, ten minutes before closing
    assert check(store, now=local("2026-03-06T20:00")).notices == []  # Friday evening
    assert check(store, now=local("2026-03-07T12:00")).notices == []  # Saturday noon: closed all day
    # Monday 08:10: 10 minutes on Friday + 10 on Monday = 20 business minutes, under 30 (the weekend counts nothing)
    assert check(store, now=local("2026-03-09T08:10")).notices == []
    opened = check(store, now=local("2026-03-09T08:25")).notices  # 10 + 25 = 35 minutes
    assert [(n.rule, n.state) for n in opened] == [("silence", "open")]
    assert opened[0].detail["business_minutes"] == 35.0
    assert webhook.states() == [("derm", "silence", "open")]


def test_the_error_share_rule_fires_above_its_percentage_and_closes_when_messages_go_through(
        store, webhook):  # noqa: F811
    rules = "alerts:\n  error_share: {percent: 20, last: 10}\n"
    practice(store, "ent", mapping=rules)
    now = dt.datetime(2026, 3, 4, 15, 0, tzinfo=dt.UTC)
    arrive(store, "ent", now - dt.timedelta(minutes=50), n=8)
    arrive(store, "ent", now - dt.timedelta(minutes=40), status="error", n=2)  # 2 of 10: 20 %, not above
    arrive(store, "ent", now - dt.timedelta(minutes=39), status="duplicate", n=5)  # repeats are no outcome
    assert check(store, now=now).notices == []
    arrive(store, "ent", now - dt.timedelta(minutes=30), status="error")  # the last 10: 3 errors, 30 %
    opened = check(store, now=now).notices
    assert [(n.rule, n.state) for n in opened] == [("error_share", "open")]
    assert (opened[0].detail["errors"], opened[0].detail["messages"]) == (3, 10)
    arrive(store, "ent", now - dt.timedelta(minutes=20), n=9)  # the last 10: 1 error, 10 %
    closed = check(store, now=now).notices
    assert [(n.rule, n.state) for n in closed] == [("error_share", "closed")]
    assert webhook.states() == [("ent", "error_share", "open"), ("ent", "error_share", "closed")]


def test_the_daily_volume_rule_compares_the_last_business_day_with_the_median_before_it(runtime, webhook):  # noqa: F811
    rules = ('timezone: America/Chicago\nalerts:\n  business_hours: {days: [mon, tue, wed, thu, fri], '
             'start: "07:00", end: "19:00"}\n  daily_volume: {percent: 50, days: 5}\n')
    practice(runtime, "ortho", mapping=rules, timezone="America/Chicago")
    # the five business days before Wednesday 2026-03-11 (Wed 4, Thu 5, Fri 6, Mon 9, Tue 10) carry 11, 10, 8,
    # 12 and 10 messages: median 10; the weekend's one message a day is on no business day and is left out
    for day, count in (("03-04", 11), ("03-05", 10), ("03-06", 8), ("03-09", 12), ("03-10", 10)):
        arrive(runtime, "ortho", local(f"2026-{day}T12:00"), n=count)
    arrive(runtime, "ortho", local("2026-03-07T12:00"))
    arrive(runtime, "ortho", local("2026-03-08T12:00"))
    # Wednesday: 3 at 23:30 local (after midnight UTC: still Wednesday in Chicago) and 1 repeat (not counted)
    arrive(runtime, "ortho", local("2026-03-11T23:30"), n=3)
    arrive(runtime, "ortho", local("2026-03-11T10:00"), status="duplicate")
    arrive(runtime, "ortho", local("2026-03-12T00:30"), n=40)  # Thursday, the day in progress: not judged
    opened = check(runtime, now=local("2026-03-12T09:00")).notices
    assert [(n.rule, n.state) for n in opened] == [("daily_volume", "open")]
    assert {k: opened[0].detail[k] for k in ("day", "messages", "median", "percent")} == \
        {"day": "2026-03-11", "messages": 3, "median": 10, "percent": 30.0}
    assert webhook.states() == [("ortho", "daily_volume", "open")]


def test_daily_volume_at_or_above_its_share_or_without_history_raises_nothing(store, webhook):  # noqa: F811
    rules = "alerts:\n  daily_volume: {percent: 50, days: 3}\n"
    practice(store, "fresh", mapping=rules)
    practice(store, "steady", mapping=rules)
    today = dt.datetime(2026, 3, 12, 9, 0, tzinfo=dt.UTC)
    for back, count in ((1, 5), (2, 10), (3, 10), (4, 10), (5, 1)):  # yesterday 5 of a median 10: 50 %, not below
        arrive(store, "steady", today - dt.timedelta(days=back), n=count)
    arrive(store, "fresh", today - dt.timedelta(days=1))  # one day of history: nothing to compare with
    assert check(store, now=today).notices == []
    assert webhook.accepted == []


def test_a_queue_waiting_too_long_opens_an_alert_and_a_removed_rule_closes_it(store, webhook):  # noqa: F811
    from hub.store.engine import writer
    from hub.store.practices import set_mapping

    practice(store, "derm", mapping="alerts:\n  queue_age: {minutes: 15}\n")
    now = dt.datetime(2026, 3, 4, 15, 0, tzinfo=dt.UTC)
    arrive(store, "derm", now - dt.timedelta(minutes=10), status="received")
    assert check(store, now=now).notices == []  # 10 minutes: not yet
    opened = check(store, now=now + dt.timedelta(minutes=6)).notices
    assert [(n.rule, n.state, n.detail["waiting"]) for n in opened] == [("queue_age", "open", 1)]
    with writer(store.engine).begin() as conn:
        set_mapping(conn, "derm", "alerts:\n  silence: {minutes: 30}\n")
    closed = check(store, now=now + dt.timedelta(minutes=7)).notices
    assert [(n.rule, n.state) for n in closed] == [("queue_age", "closed")]


def test_a_webhook_that_fails_is_retried_with_backoff(store, webhook):  # noqa: F811
    webhook.answers = [503, 503]  # then 200
    practice(store, "derm", mapping="alerts:\n  queue_age: {minutes: 1}\n")
    now = dt.datetime(2026, 3, 4, 15, 0, tzinfo=dt.UTC)
    arrive(store, "derm", now - dt.timedelta(minutes=5), status="received")
    assert len(check(store, now=now).notices) == 1
    assert webhook.attempts == 3 and webhook.states() == [("derm", "queue_age", "open")]


def test_rules_from_the_settings_apply_to_live_practices_without_rules_of_their_own(
        webhook, tmp_path, monkeypatch):  # noqa: F811
    from hub.runtime import Runtime

    rules = tmp_path / "rules.yaml"
    rules.write_text("alerts:\n  queue_age: {minutes: 5}\n")
    monkeypatch.setenv("HUB_ALERT_RULES", str(rules))
    runtime = Runtime.create(dispatcher="inline")  # after the setting: a runtime reads its settings once
    practice(runtime, "live-one")
    practice(runtime, "new-one", status="onboarding")
    practice(runtime, "own-rules", mapping="alerts:\n  silence: {minutes: 600}\n")
    now = dt.datetime(2026, 3, 4, 15, 0, tzinfo=dt.UTC)
    for slug in ("live-one", "new-one", "own-rules"):
        arrive(runtime, slug, now - dt.timedelta(minutes=30), status="received")
    assert [(n.practice, n.rule) for n in check(runtime, now=now).notices] == [("live-one", "queue_age")]


def test_business_minutes_keep_wall_clock_hours_across_daylight_saving():
    hours = BusinessHours((0, 1, 2, 3, 4), 8 * 60, 18 * 60)
    # Friday 17:00 CST to Monday 09:00 CDT (the clocks moved on Sunday): 60 + 60 minutes
    assert hours.minutes_between(local("2026-03-06T17:00"), local("2026-03-09T09:00"), CHICAGO) == 120.0
    assert not hours.open_at(local("2026-03-09T07:59")) and hours.open_at(local("2026-03-09T08:00"))


def test_hub_alerts_check_prints_what_opened_and_exits_0(webhook, monkeypatch):  # noqa: F811
    from hub.runtime import Runtime

    runtime = Runtime.create(dispatcher="inline")
    practice(runtime, "derm", mapping="alerts:\n  queue_age: {minutes: 1}\n")
    arrive(runtime, "derm", dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5), status="received")
    first = CliRunner().invoke(_build_cli(), ["alerts", "check"])
    assert first.exit_code == 0, first.output
    assert first.output.startswith("opened     queue_age    derm: 1 message(s) waiting, the oldest for 5 min")
    second = CliRunner().invoke(_build_cli(), ["alerts", "check"])
    assert (second.exit_code, second.output) == (0, "no alert opened or closed\n")
    listed = CliRunner().invoke(_build_cli(), ["alerts", "list"])
    assert "derm" in listed.output and "queue_age" in listed.output


@pytest.mark.parametrize(("block", "words"), [
    ("alerts:\n  silence: {minutes: 0}\n", ["alerts.silence.minutes", "from 1"]),
    ("alerts:\n  error_share: {percent: 120, last: 10}\n", ["alerts.error_share.percent", "0 to 100"]),
    ("alerts:\n  error_share: {percent: 10}\n", ["the error_share rule needs last"]),
    ("alerts:\n  business_hours: {days: mon-fri, start: '18:00', end: '08:00'}\n", ["later in the day"]),
    ("alerts:\n  business_hours: {days: weekdays, start: '08:00', end: '18:00'}\n", ["alerts.business_hours.days"]),
    ("alerts:\n  volume: {percent: 50}\n", ["unknown key 'volume'"]),
])
def test_bad_rules_are_refused_naming_the_line_and_key(block, words):
    from hub.errors import MappingError
    from hub.mapping import load_mapping

    with pytest.raises(MappingError) as refused:
        load_mapping("practice: derm\n" + block, source="derm.yaml")
    for word in words:
        assert word in str(refused.value)
    assert "line" in str(refused.value)


def test_the_smtp_url_names_server_security_and_login():
    from hub.operations.notify import SmtpServer, smtp_server

    assert smtp_server("smtp://mail.internal") == SmtpServer("mail.internal", 25, "NONE", None, None)
    assert smtp_server("smtp+starttls://alerts:s%40cret@mail.example.org:2587") == \
        SmtpServer("mail.example.org", 2587, "STARTTLS", "alerts", "s@cret")
    assert smtp_server("smtps://a:b@mail.example.org").port == 465


def test_a_bad_delivery_setting_stops_hub_alerts_check_with_one_line(monkeypatch):
    monkeypatch.setenv("HUB_ALERT_SMTP_URL", "http://mail.example.org")
    result = CliRunner().invoke(_build_cli(), ["alerts", "check"])
    assert result.exit_code == 1
    assert result.output.strip() == ("hub: error: HUB_ALERT_SMTP_URL must be smtp://host[:port], "
                                     "smtp+starttls://... or smtps://... (got the scheme 'http')")


def test_the_worker_s_alert_ticker_evaluates_the_rules(store, webhook):  # noqa: F811
    from hub.operations.alerts import AlertTicker

    practice(store, "derm", mapping="alerts:\n  queue_age: {minutes: 15}\n")
    arrive(store, "derm", dt.datetime.now(dt.UTC) - dt.timedelta(hours=1), status="received")
    ticker = AlertTicker(store, interval=0)  # 0: never starts a thread; the test ticks it
    ticker.tick()
    ticker.tick()
    assert webhook.states() == [("derm", "queue_age", "open")]


def test_a_bad_rules_file_in_the_settings_is_named_with_its_line_and_key(tmp_path, monkeypatch):
    rules = tmp_path / "rules.yaml"
    rules.write_text("alerts:\n  repeat_minutes: 30\n  queue_age: {minutes: -5}\n")
    monkeypatch.setenv("HUB_ALERT_RULES", str(rules))
    result = CliRunner().invoke(_build_cli(), ["alerts", "check"])
    assert result.exit_code == 1
    assert result.output.strip() == (f"hub: error: HUB_ALERT_RULES {rules}: line 3, alerts.queue_age.minutes: "
                                     "must be a whole number from 1")


def test_the_last_minute_of_business_hours_at_or_before_a_moment() -> None:
    hours = BusinessHours(days=(0, 1, 2, 3, 4), start=8 * 60, end=17 * 60)  # Monday to Friday, 08:00 to 17:00
    zone = ZoneInfo("America/Indiana/Indianapolis")

    def local(text: str) -> dt.datetime:
        return dt.datetime.fromisoformat(text).replace(tzinfo=zone)

    inside = local("2026-12-03T10:15")  # a Thursday morning: itself
    assert hours.last_open(inside, zone) == inside
    # that Thursday evening, as UTC (23:41 there is 18:41 here): 16:59 the same day, in the moment's own zone
    evening = local("2026-12-03T18:41").astimezone(dt.UTC)
    assert hours.last_open(evening, zone) == local("2026-12-03T16:59")
    assert hours.last_open(evening, zone).tzinfo == dt.UTC
    assert hours.last_open(local("2026-12-05T12:00"), zone) == local("2026-12-04T16:59")  # Saturday: Friday
    assert hours.last_open(local("2026-12-07T07:30"), zone) == local("2026-12-04T16:59")  # Monday before 8
    assert BusinessHours(days=()).last_open(inside, zone) is None  # never open
    assert BusinessHours().last_open(evening, zone) == evening  # every minute of every day
