"""The alert rules, evaluated: an alert opens once, repeats at most every ``repeat_minutes``, and
closes with a recovery notice when its rule holds again.

``check`` is one evaluation (``hub alerts check``, and the ``AlertTicker`` of ``hub worker``): each
practice's rules (``hub.operations.rules``) are measured against the message store with a read
connection, then the alerts' state (table ``alerts``) is changed in one short write transaction, and
only after its commit is each notice handed to the ``hub_alert`` hook (the built-in ``alerts``
plugin posts and mails it). Two evaluators at once cannot open the same alert twice: the open row's
``open_key`` is unique, and the evaluator that loses sends nothing.

A rule that cannot be measured now (outside business hours for the silence rule, a practice that
never sent a message, no trailing history for daily volume) leaves its alert as it is: no notice,
no close. The clock is a parameter (``now``) so every rule can be checked at any moment.
"""

from __future__ import annotations

import datetime as dt
import logging
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from hub.hookspecs import Alert
from hub.model.tables import alerts
from hub.operations.notify import check_settings
from hub.operations.rules import Rules, load_rules_file, practice_rules, practice_zone
from hub.pipeline.sweeper import Ticker
from hub.store import messages as store
from hub.store.engine import writer
from hub.store.practices import list_practices

log = logging.getLogger("hub.alerts")

@dataclass(frozen=True)
class Finding:
    """A rule measured now: whether it fires, and the figures in words (no patient data)."""

    practice: str
    rule: str
    firing: bool
    summary: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class CheckResult:
    """What one evaluation did: the notices sent (open, repeat, closed) and the problems met."""

    notices: list[Alert] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def of(self, state: str) -> list[Alert]:
        return [n for n in self.notices if n.state == state]


def _minutes(value: float) -> str:
    minutes = int(value)
    if minutes < 120:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest:02d} min" if hours < 48 else f"{hours // 24} days"


# ------------------------------------------------------------------ the rules, measured
def measure(conn: sa.Connection, practice: dict[str, Any], rules: Rules, now: dt.datetime) -> list[Finding]:
    zone = practice_zone(practice)
    slug = practice["slug"]
    found: list[Finding | None] = []
    if rules.silence_minutes is not None:
        found.append(_silence(conn, slug, rules, zone, now))
    if rules.error_percent is not None:
        found.append(_error_share(conn, slug, rules, now))
    if rules.queue_minutes is not None:
        found.append(_queue_age(conn, slug, rules, now))
    if rules.volume_percent is not None:
        found.append(_daily_volume(conn, slug, rules, zone, now))
    return [f for f in found if f is not None]


def _silence(conn: sa.Connection, slug: str, rules: Rules, zone: ZoneInfo, now: dt.datetime) -> Finding | None:
    """No message for ``minutes`` of business hours; measured only inside business hours."""
    if not rules.hours.open_at(now.astimezone(zone)):
        return None
    last = store.last_arrival(conn, slug, until=now, connector=rules.silence_connector)
    if last is None:
        return None  # a feed that never sent anything is onboarding, not silent
    quiet = rules.hours.minutes_between(last, now, zone)
    feed = f" ({rules.silence_connector})" if rules.silence_connector else ""
    local = last.astimezone(zone).strftime("%a %Y-%m-%d %H:%M %Z")
    minutes = rules.silence_minutes or 0
    firing = quiet >= minutes
    summary = (f"{slug}{feed}: no message for {_minutes(quiet)} of business hours (rule: {minutes} min); "
               f"the last arrived {local}" if firing else
               f"{slug}{feed}: messages arrive again; the last arrived {local}")
    return Finding(slug, "silence", firing, summary,
                   {"last_received": last.isoformat(), "business_minutes": round(quiet, 1), "minutes": minutes,
                    "connector": rules.silence_connector})


def _error_share(conn: sa.Connection, slug: str, rules: Rules, now: dt.datetime) -> Finding | None:
    """More than ``percent`` % of the last ``last`` processed messages in error."""
    outcomes = store.recent_outcomes(conn, slug, rules.error_last, until=now)
    if not outcomes:
        return None
    errors = outcomes.count("error")
    share = 100 * errors / len(outcomes)
    limit = rules.error_percent or 0
    firing = share > limit
    summary = (f"{slug}: {errors} of the last {len(outcomes)} messages in error ({share:.0f} %, rule: above "
               f"{limit:g} %); see hub messages list --practice {slug} --status error" if firing else
               f"{slug}: {errors} of the last {len(outcomes)} messages in error ({share:.0f} %, rule: above "
               f"{limit:g} %)")
    return Finding(slug, "error_share", firing, summary,
                   {"errors": errors, "messages": len(outcomes), "percent": round(share, 1), "limit": limit})


def _queue_age(conn: sa.Connection, slug: str, rules: Rules, now: dt.datetime) -> Finding:
    """A message waiting (stored, not processed) for longer than ``minutes``."""
    count, oldest = store.waiting(conn, slug)
    age = (now - oldest).total_seconds() / 60 if oldest else 0.0
    limit = rules.queue_minutes or 0
    firing = oldest is not None and age > limit
    summary = (f"{slug}: {count} message(s) waiting, the oldest for {_minutes(age)} (rule: {limit} min); is a "
               "hub worker running?" if firing else
               f"{slug}: the queue moves ({count} message(s) waiting" +
               (f", the oldest for {_minutes(age)})" if oldest else ")"))
    return Finding(slug, "queue_age", firing, summary,
                   {"waiting": count, "oldest_minutes": round(age, 1), "minutes": limit})


def _daily_volume(conn: sa.Connection, slug: str, rules: Rules, zone: ZoneInfo, now: dt.datetime) -> Finding | None:
    """The last complete business day's arrivals below ``percent`` % of the median of the ``days``
    business days before it (local days; every day when no business hours are set). Not measured
    until the practice has that much history."""
    hours = rules.hours
    day = now.astimezone(zone).date() - dt.timedelta(days=1)
    for _ in range(7):
        if hours.is_business_day(day):
            break
        day -= dt.timedelta(days=1)
    trailing: list[dt.date] = []
    probe = day - dt.timedelta(days=1)
    while len(trailing) < rules.volume_days:
        if hours.is_business_day(probe):
            trailing.append(probe)
        probe -= dt.timedelta(days=1)
    first = store.first_arrival(conn, slug)
    if first is None or first >= _midnight(trailing[-1] + dt.timedelta(days=1), zone):
        return None  # the practice was not sending yet on the first day compared

    # every calendar day from the first compared to the judged one, in one scan; the days that are not
    # business days (a weekend) are counted too and left out of the comparison
    span = [trailing[-1] + dt.timedelta(days=i) for i in range((day - trailing[-1]).days + 1)]
    bounds = [_midnight(d, zone) for d in span] + [_midnight(day + dt.timedelta(days=1), zone)]
    volumes = dict(zip(span, store.arrivals_by_period(conn, slug, bounds), strict=True))
    count = volumes[day]
    median = statistics.median(volumes[d] for d in trailing)
    limit = rules.volume_percent or 0
    share = 100 * count / median if median else 100.0
    firing = bool(median) and share < limit
    summary = (f"{slug}: {count} message(s) on {day:%a %Y-%m-%d}, {share:.0f} % of the median of the "
               f"{len(trailing)} business days before it ({median:g}; rule: below {limit:g} %)")
    return Finding(slug, "daily_volume", firing, summary,
                   {"day": day.isoformat(), "messages": count, "median": median, "percent": round(share, 1),
                    "limit": limit, "days": len(trailing)})


def _midnight(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), zone).astimezone(dt.UTC)


# ------------------------------------------------------------------ state: open, repeat, close
def open_alerts(conn: sa.Connection, practice: str | None = None) -> list[dict[str, Any]]:
    q = sa.select(alerts).where(alerts.c.open_key.is_not(None)).order_by(alerts.c.opened_at, alerts.c.id)
    if practice:
        q = q.where(alerts.c.practice == practice)
    return [dict(r._mapping) for r in conn.execute(q)]


def default_rules(settings: Any) -> Rules | None:
    return load_rules_file(settings.alert_rules) if settings.alert_rules else None


def silence_measurable(runtime: Any, now: dt.datetime | None = None) -> dt.datetime:
    """``now`` (default: the clock), or when it falls outside the business hours of some practice's silence
    rule, the last minute before it inside all of those practices' hours that it finds (a rule is measured
    only inside them): when a check shows every silence rule's state. ``hub demo`` checks then, so it
    leaves the same alerts at any hour of the day."""
    now = now or dt.datetime.now(dt.UTC)
    moment = now
    defaults = default_rules(runtime.settings)
    with runtime.engine.connect() as conn:
        for practice in list_practices(conn):
            rules, _ = practice_rules(practice, defaults)
            if rules is None or rules.silence_minutes is None:
                continue
            opened = rules.hours.last_open(moment, practice_zone(practice))
            if opened is not None:
                moment = min(moment, opened)
    return moment


def check(runtime: Any, *, now: dt.datetime | None = None) -> CheckResult:
    """One evaluation of every practice's rules at ``now`` (default: the clock); the notices are
    delivered through ``hub_alert`` after the state is committed."""
    now = now or dt.datetime.now(dt.UTC)
    settings = runtime.settings
    check_settings(settings)  # a bad delivery setting stops here, before any alert changes
    defaults = default_rules(settings)
    result = CheckResult()
    findings: list[Finding] = []
    repeat: dict[str, float] = {}
    watched: set[tuple[str, str]] = set()  # the (practice, rule) pairs configured now
    with runtime.engine.connect() as conn:
        for practice in list_practices(conn):
            rules, problem = practice_rules(practice, defaults)
            if problem:
                result.problems.append(f"{practice['slug']}: alert rules left out: {problem}")
            if rules is None:
                continue
            repeat[practice["slug"]] = float(rules.repeat_minutes or settings.alert_repeat_minutes)
            watched.update((practice["slug"], rule) for rule in rules.configured())
            findings.extend(measure(conn, practice, rules, now))
    measured = {(f.practice, f.rule) for f in findings}
    try:
        with writer(runtime.engine).begin() as conn:
            result.notices = _apply(conn, findings, measured, watched, repeat, now)
    except sa.exc.IntegrityError:  # another evaluator opened one of these alerts at the same moment
        log.info("another evaluator changed the alerts at the same moment; this evaluation sends nothing")
        return result
    deliver(runtime.plugins, result.notices)
    return result


def _apply(conn: sa.Connection, findings: Iterable[Finding], measured: set[tuple[str, str]],
           watched: set[tuple[str, str]], repeat: dict[str, float], now: dt.datetime) -> list[Alert]:
    current = {(row["practice"], row["rule"]): row for row in open_alerts(conn)}
    notices: list[Alert] = []
    for f in findings:
        row = current.get((f.practice, f.rule))
        if f.firing and row is None:
            new_id = conn.execute(sa.insert(alerts).values(
                practice=f.practice, rule=f.rule, open_key=f"{f.practice}:{f.rule}", summary=f.summary,
                detail=f.detail, opened_at=now, last_sent_at=now, sent_count=1).returning(alerts.c.id)).scalar_one()
            notices.append(Alert(int(new_id), f.practice, f.rule, "open", f.summary, now, now, f.detail))
        elif f.firing and row is not None:
            if now - row["last_sent_at"] >= dt.timedelta(minutes=repeat[f.practice]):
                conn.execute(sa.update(alerts).where(alerts.c.id == row["id"]).values(
                    summary=f.summary, detail=f.detail, last_sent_at=now, sent_count=alerts.c.sent_count + 1))
                notices.append(Alert(row["id"], f.practice, f.rule, "repeat", f.summary, now, row["opened_at"],
                                     f.detail))
        elif row is not None:
            notices.append(_close(conn, row, f.summary, f.detail, now))
    for key, row in current.items():
        if key not in watched and key not in measured:  # the rule was removed, or the practice offboarded
            notices.append(_close(conn, row, f"{row['practice']}: the {row['rule']} rule no longer applies",
                                  {}, now))
    return notices


def _close(conn: sa.Connection, row: dict[str, Any], summary: str, detail: dict[str, Any],
           now: dt.datetime) -> Alert:
    conn.execute(sa.update(alerts).where(alerts.c.id == row["id"]).values(open_key=None, closed_at=now))
    return Alert(row["id"], row["practice"], row["rule"], "closed", summary, now, row["opened_at"], detail)


def deliver(plugins: Any, notices: Iterable[Alert]) -> None:
    """Each notice to every ``hub_alert`` implementation; one that raises is logged and the others run."""
    impls = plugins.hook.hub_alert.get_hookimpls()
    for notice in notices:
        for impl in reversed(impls):
            try:
                impl.function(*[{"alert": notice}[name] for name in impl.argnames])
            except Exception as exc:
                log.warning("alert delivery by %s failed (%s) for %s:%s", impl.plugin_name, type(exc).__name__,
                            notice.practice, notice.rule)


class AlertTicker(Ticker):
    """Evaluates the alert rules every ``interval`` seconds (``HUB_ALERT_INTERVAL``) in ``hub worker``."""

    name = "hub-alerts"
    log = log

    def __init__(self, runtime: Any, *, interval: float | None = None) -> None:
        super().__init__(interval if interval is not None else runtime.settings.alert_interval)
        self.runtime = runtime

    def tick(self) -> None:
        result = check(self.runtime)
        for problem in result.problems:
            log.warning("%s", problem)
