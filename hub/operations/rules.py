"""The alert rules of a practice: its mapping file's ``alerts`` block, or ``HUB_ALERT_RULES`` for a live
practice whose mapping has none. Checked by ``hub.mapping.schema.check_alerts`` (the mapping's own
check, or ``load_rules_file`` for the settings' file); read here into plain values.

Business hours are the practice's local time (its registered zone, else its mapping's ``timezone``,
else UTC): the silence rule counts only minutes inside them, and daily volume compares business days
with business days.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from hub.errors import ConfigError, HubError
from hub.mapping import load_mapping
from hub.mapping.schema import LineIndex, Problem, check_alerts, clock_minutes, weekdays

ALL_DAYS = tuple(range(7))
SEARCH_DAYS = 62  # the longest stretch business minutes are counted over (far past any silence rule)


@dataclass(frozen=True)
class BusinessHours:
    """Week days (Monday 0) and the local minutes of the day from ``start`` up to ``end``; the default
    is every minute of every day."""

    days: tuple[int, ...] = ALL_DAYS
    start: int = 0
    end: int = 24 * 60

    def open_at(self, local: dt.datetime) -> bool:
        minute = local.hour * 60 + local.minute
        return local.weekday() in self.days and self.start <= minute < self.end

    def is_business_day(self, day: dt.date) -> bool:
        return day.weekday() in self.days

    def last_open(self, moment: dt.datetime, zone: ZoneInfo) -> dt.datetime | None:
        """``moment`` (aware) when it is inside business hours, else the last minute of them before it
        (None when none falls in the week before)."""
        local = moment.astimezone(zone)
        if self.open_at(local):
            return moment
        for back in range(8):
            day = local.date() - dt.timedelta(days=back)
            if not self.is_business_day(day) or self.end <= self.start:
                continue
            closes = _at(dt.datetime.combine(day, dt.time(), zone), self.end, zone)
            if closes <= local:
                return (closes - dt.timedelta(minutes=1)).astimezone(moment.tzinfo)
        return None

    def minutes_between(self, since: dt.datetime, until: dt.datetime, zone: ZoneInfo) -> float:
        """Business minutes from ``since`` to ``until`` (aware), day by day in ``zone``: a night or a
        weekend adds nothing. Counted over at most ``SEARCH_DAYS`` days back from ``until``."""
        if until <= since:
            return 0.0
        since = max(since, until - dt.timedelta(days=SEARCH_DAYS))
        first, last = since.astimezone(zone).date(), until.astimezone(zone).date()
        total = 0.0
        day = first
        while day <= last:
            if self.is_business_day(day):
                midnight = dt.datetime.combine(day, dt.time(), zone)
                # wall-clock minutes of the day, so a daylight saving change day keeps its opening hours
                opens = _at(midnight, self.start, zone)
                closes = _at(midnight, self.end, zone)
                begin, finish = max(opens, since), min(closes, until)
                if finish > begin:
                    total += (finish - begin).total_seconds() / 60
            day += dt.timedelta(days=1)
        return total


def _at(midnight: dt.datetime, minutes: int, zone: ZoneInfo) -> dt.datetime:
    if minutes >= 24 * 60:
        return dt.datetime.combine(midnight.date() + dt.timedelta(days=1), dt.time(), zone)
    return midnight.replace(hour=minutes // 60, minute=minutes % 60)


@dataclass(frozen=True)
class Rules:
    """A practice's rules; a rule left out (None) is not evaluated."""

    hours: BusinessHours = field(default_factory=BusinessHours)
    repeat_minutes: float | None = None  # None: HUB_ALERT_REPEAT_MINUTES
    silence_minutes: int | None = None
    silence_connector: str | None = None
    error_percent: float | None = None
    error_last: int = 0
    queue_minutes: int | None = None
    volume_percent: float | None = None
    volume_days: int = 0
    source: str = "mapping"  # where they came from: mapping or the HUB_ALERT_RULES file

    def configured(self) -> list[str]:
        """The rules set: silence, error_share, queue_age, daily_volume."""
        values = {"silence": self.silence_minutes, "error_share": self.error_percent,
                  "queue_age": self.queue_minutes, "daily_volume": self.volume_percent}
        return [rule for rule, value in values.items() if value is not None]


def rules_from(block: dict[str, Any] | None, *, source: str = "mapping") -> Rules | None:
    """The rules of a checked ``alerts`` block; None when there is none."""
    if not block:
        return None
    hours = block.get("business_hours") or {}
    days = weekdays(hours["days"]) if "days" in hours else list(ALL_DAYS)
    business = BusinessHours(tuple(days or ALL_DAYS), clock_minutes(hours.get("start", 0)) or 0,
                             clock_minutes(hours.get("end", 1440)) or 1440) if hours else BusinessHours()
    silence, errors = block.get("silence") or {}, block.get("error_share") or {}
    queue, volume = block.get("queue_age") or {}, block.get("daily_volume") or {}
    return Rules(hours=business, repeat_minutes=block.get("repeat_minutes"),
                 silence_minutes=silence.get("minutes"), silence_connector=silence.get("connector"),
                 error_percent=errors.get("percent"), error_last=int(errors.get("last") or 0),
                 queue_minutes=queue.get("minutes"), volume_percent=volume.get("percent"),
                 volume_days=int(volume.get("days") or 0), source=source)


class _FileChecker:
    """What ``check_alerts`` needs of a checker, for the HUB_ALERT_RULES file."""

    def __init__(self, index: LineIndex) -> None:
        self.index = index
        self.problems: list[Problem] = []

    def add(self, path: tuple[str | int, ...], message: str) -> None:
        self.problems.append(Problem(self.index.line(path), ".".join(map(str, path)), message))

    def mapping(self, value: Any, path: tuple[str | int, ...], what: str) -> bool:
        if not isinstance(value, dict):
            self.add(path, f"{what} must be a mapping (key: value)")
            return False
        return True

    def keys(self, value: dict[str, Any], path: tuple[str | int, ...], allowed: Any) -> None:
        for key in value:
            if key not in allowed:
                self.add((*path, key), f"unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")


def load_rules_file(path: str) -> Rules | None:
    """The rules of the HUB_ALERT_RULES file (a YAML file with an ``alerts:`` block); a ``ConfigError``
    names the file, line and key of the first problem."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"HUB_ALERT_RULES {path}: {exc.strerror}") from None
    try:
        index, data = LineIndex(text), yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"HUB_ALERT_RULES {path}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict) or set(data) != {"alerts"}:
        raise ConfigError(f"HUB_ALERT_RULES {path}: the file holds one key, alerts: (as in a mapping file)")
    checker = _FileChecker(index)
    check_alerts(checker, data["alerts"], ("alerts",))
    if checker.problems:
        raise ConfigError(f"HUB_ALERT_RULES {path}: {checker.problems[0]}")
    return rules_from(data["alerts"], source="settings")


def practice_rules(practice: dict[str, Any], defaults: Rules | None) -> tuple[Rules | None, str | None]:
    """A registered practice's rules (its mapping's, else ``defaults`` when it is live) and, when its
    stored mapping no longer loads, why (its rules are then left out, not guessed)."""
    if practice.get("status") == "offboarded":
        return None, None
    text = practice.get("mapping")
    if text:
        try:
            block = load_mapping(text, source=f"the mapping of {practice['slug']}").raw.get("alerts")
        except HubError as exc:
            return None, str(exc)
        if block:
            return rules_from(block), None
    return (defaults if practice.get("status") == "live" else None), None


def practice_zone(practice: dict[str, Any]) -> ZoneInfo:
    """The practice's zone: registered, else its mapping's top-level ``timezone``, else UTC."""
    name = practice.get("timezone")
    if not name and practice.get("mapping"):
        try:
            name = load_mapping(practice["mapping"], source=practice["slug"]).timezone
        except HubError:
            name = None
    return ZoneInfo(name or "UTC")
