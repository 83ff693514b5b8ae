"""The monthly packet on a schedule: rq's scheduler runs it on day N of each month, in ``hub worker``.

A schedule lives in the queue's Redis (``HUB_REDIS_URL``, ``HUB_QUEUE``), in two parts, so it needs no table
and no migration:

- its definition, a JSON value in the hash ``hub:schedules:<queue>`` under its id (``packet-1``): the day of
  the month, the time (UTC), and where the packet goes, e-mail addresses or a folder;
- its next run, an rq job in the queue's scheduled-job registry (``Queue.enqueue_at``), which the worker's
  scheduler thread (``hub.pipeline.worker.Scheduling``) moves onto the queue when its time comes.

The job builds the packet of the month before its due date, then sends it; before that it schedules its
own next run, day N of the following month, so a month whose packet fails (an SMTP server away) does not
end the schedule, and the failed job stays in rq's failed registry with the reason. ``cancel`` removes
both parts; a job already running when its schedule is cancelled finds it gone and schedules nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import mimetypes
import re
import smtplib
import tempfile
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from hub.errors import ConfigError, HubError, NotFound, ValidationError
from hub.mail import SmtpServer, send, smtp_server
from hub.reports.packet import Packet, build_packet, month_before, month_label

if TYPE_CHECKING:
    from redis import Redis

    from hub.settings import Settings

log = logging.getLogger("hub.reports.schedule")

JOB = "hub.reports.schedule.run_scheduled_packet"  # the dotted path queued jobs name: it stays
DAYS = (1, 28)  # every month has these days
JOB_TIMEOUT = 1800  # seconds one packet may take
KEEP_RESULT = 40 * 24 * 3600  # a run's result and a failure stay in rq's registries about a month
ADDRESS = re.compile(r"^[^@\s,<>]+@[^@\s,<>]+\.[^@\s,<>]+$")
TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


@dataclass
class Schedule:
    id: str
    day: int
    at: str  # HH:MM, UTC
    to: list[str] = field(default_factory=list)
    folder: str | None = None
    kind: str = "packet"
    created_at: str = ""
    next_run: str = ""  # ISO, UTC
    job_id: str = ""

    @property
    def delivery(self) -> str:
        return f"mail to {', '.join(self.to)}" if self.to else f"folder {self.folder}"

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "delivery": self.delivery}


def _key(queue: str) -> str:
    return f"hub:schedules:{queue}"


def connect(settings: Settings) -> Redis:
    from redis import Redis

    if not settings.redis_url:
        raise ConfigError("hub schedule needs HUB_REDIS_URL: the schedule is kept in Redis and run by hub worker")
    return Redis.from_url(settings.redis_url, socket_connect_timeout=5)


def packet_server(settings: Settings) -> SmtpServer:
    """The SMTP server the packet is mailed through: ``HUB_PACKET_SMTP_URL``, else the alerts' server."""
    if settings.packet_smtp_url:
        return smtp_server(settings.packet_smtp_url, "HUB_PACKET_SMTP_URL")
    if settings.alert_smtp_url:
        return smtp_server(settings.alert_smtp_url, "HUB_ALERT_SMTP_URL")
    raise ConfigError("mailing the packet needs HUB_PACKET_SMTP_URL (or HUB_ALERT_SMTP_URL): smtp://host:25, "
                      "smtp+starttls://user:password@host:587 or smtps://...; or use --folder")


def next_run(day: int, at: str, after: dt.datetime) -> dt.datetime:
    """The first day ``day`` of a month at ``at`` (UTC) strictly after ``after``."""
    hour, minute = (int(p) for p in at.split(":"))
    after = after.astimezone(dt.UTC)
    year, month = after.year, after.month
    while True:
        when = dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC)
        if when > after:
            return when
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def _queue(redis: Redis, settings: Settings) -> Any:
    from rq import Queue

    return Queue(settings.queue, connection=redis)


def _enqueue(redis: Redis, settings: Settings, schedule: Schedule, when: dt.datetime) -> None:
    """The schedule's run at ``when`` into rq's scheduled-job registry; the definition notes it."""
    due = when.isoformat()
    schedule.job_id = f"hub-schedule-{schedule.id}-{when:%Y%m%d%H%M}"  # the same run, queued twice, is one job
    schedule.next_run = due
    _queue(redis, settings).enqueue_at(when, JOB, schedule.id, due, job_id=schedule.job_id, job_timeout=JOB_TIMEOUT,
                                       result_ttl=KEEP_RESULT, failure_ttl=KEEP_RESULT,
                                       description=f"packet schedule {schedule.id}")
    if not redis.hexists(_key(settings.queue), schedule.id):  # cancelled meanwhile: no run left behind
        _drop_job(redis, schedule.job_id)
        return
    redis.hset(_key(settings.queue), schedule.id, orjson.dumps(asdict(schedule)))


def _drop_job(redis: Redis, job_id: str) -> None:
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    with contextlib.suppress(NoSuchJobError):
        Job.fetch(job_id, connection=redis).delete()


def add_packet_schedule(settings: Settings, *, day: int, at: str = "06:00", to: list[str] | tuple[str, ...] = (),
                        folder: str | Path | None = None, now: dt.datetime | None = None) -> Schedule:
    """A new schedule of the packet, its first run the next day ``day`` at ``at`` (UTC)."""
    if not DAYS[0] <= day <= DAYS[1]:
        raise ValidationError(f"the day must be {DAYS[0]} to {DAYS[1]} (every month has it), not {day}",
                              location="--day")
    if not TIME.match(at):
        raise ValidationError(f"not a time of day (HH:MM, UTC): {at[:20]!r}", location="--at")
    if bool(to) == (folder is not None):
        raise ValidationError("give either --to ADDRESS (repeatable) or --folder DIR")
    for address in to:
        if not ADDRESS.match(address):
            raise ValidationError(f"not an e-mail address: {address[:80]!r}", location="--to")
    if to:
        packet_server(settings)  # refused now, not at the first run a month from now
    redis = connect(settings)
    number = int(redis.incr(_key(settings.queue) + ":next-id"))
    now = now or dt.datetime.now(dt.UTC)
    schedule = Schedule(id=f"packet-{number}", day=day, at=at, to=list(to),
                        folder=str(Path(folder).resolve()) if folder is not None else None,
                        created_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"))
    redis.hset(_key(settings.queue), schedule.id, orjson.dumps(asdict(schedule)))
    _enqueue(redis, settings, schedule, next_run(day, at, now))
    return schedule


def _load(raw: bytes | str) -> Schedule:
    return Schedule(**orjson.loads(raw))


def list_schedules(settings: Settings) -> list[Schedule]:
    redis = connect(settings)
    found = [_load(raw) for raw in redis.hvals(_key(settings.queue))]
    return sorted(found, key=lambda s: (len(s.id), s.id))


def get_schedule(redis: Redis, settings: Settings, schedule_id: str) -> Schedule | None:
    raw = redis.hget(_key(settings.queue), schedule_id)
    return _load(raw) if raw is not None else None


def cancel_schedule(settings: Settings, schedule_id: str) -> Schedule:
    redis = connect(settings)
    schedule = get_schedule(redis, settings, schedule_id)
    if schedule is None:
        raise NotFound(f"no schedule {schedule_id[:40]!r} (hub schedule list shows them)")
    redis.hdel(_key(settings.queue), schedule_id)
    if schedule.job_id:
        _drop_job(redis, schedule.job_id)
    return schedule


# ------------------------------------------------------------------ the job and the delivery
def packet_mail(settings: Settings, packet: Packet, to: list[str]) -> EmailMessage:
    mail = EmailMessage()
    label = month_label(packet.month)
    mail["Subject"] = f"MSO leadership packet, {label}"
    mail["From"] = settings.packet_email_from
    mail["To"] = ", ".join(to)
    mail.set_content(f"The MSO leadership packet of {label} is attached: the PDF (headline KPIs, trends, sites, "
                     "onboarding) and the workbook of the figures.\n")
    for path in packet.files:
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        main, sub = kind.split("/", 1)
        mail.add_attachment(path.read_bytes(), maintype=main, subtype=sub, filename=path.name)
    return mail


def mail_packet(settings: Settings, packet: Packet, to: list[str]) -> None:
    server = packet_server(settings)
    try:
        send(server, packet_mail(settings, packet, to))
    except (smtplib.SMTPException, OSError) as exc:
        # the server's answer is not quoted: it may repeat the login
        raise HubError(f"the packet of {packet.month} could not be mailed through {server.host}:{server.port} "
                       f"({type(exc).__name__})") from None


def run_scheduled_packet(schedule_id: str, due: str) -> dict[str, Any]:
    """The rq job: schedules the next month's run, then builds and delivers the packet of the month before ``due``."""
    from hub.pipeline.jobs import job_runtime

    runtime = job_runtime()
    settings = runtime.settings
    redis = connect(settings)
    schedule = get_schedule(redis, settings, schedule_id)
    if schedule is None:
        log.info("schedule %s was cancelled: nothing to do", schedule_id)
        return {"schedule": schedule_id, "cancelled": True}
    due_at = dt.datetime.fromisoformat(due)
    _enqueue(redis, settings, schedule, next_run(schedule.day, schedule.at, due_at))
    month = month_before(due_at.astimezone(dt.UTC).date())
    if schedule.folder:
        packet = build_packet(runtime, month, Path(schedule.folder))
    else:
        with tempfile.TemporaryDirectory(prefix="hub-packet-") as tmp:
            packet = build_packet(runtime, month, Path(tmp))
            mail_packet(settings, packet, schedule.to)
    log.info("packet of %s delivered (schedule %s, %s)", month, schedule.id, "folder" if schedule.folder else "mail")
    return {"schedule": schedule.id, "month": month, "next_run": schedule.next_run,
            "files": [p.name for p in packet.files]}
