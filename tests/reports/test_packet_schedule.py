"""``hub schedule packet``: the schedule kept in the real Redis, its run taken by a real ``hub worker --burst``,
the packet delivered to a folder and to a real SMTP server (aiosmtpd), the next month's run scheduled."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from hub.cli import cli
from tests.conftest import ROOT, need_weasyprint
from tests.operations.receivers import mailbox  # noqa: F401 (fixture)

pytestmark = pytest.mark.redis


def hub(*args: str, code: int = 0) -> str:
    done = CliRunner().invoke(cli, list(args))
    assert done.exit_code == code, done.output
    return done.output


@pytest.fixture
def schedules(redis_url: str) -> Iterator[str]:
    """This test's queue; afterwards its schedules and their pending runs are removed from Redis."""
    yield redis_url
    from redis import Redis
    from rq import Queue
    from rq.registry import ScheduledJobRegistry

    redis = Redis.from_url(redis_url)
    queue = Queue(os.environ["HUB_QUEUE"], connection=redis)
    for job_id in ScheduledJobRegistry(queue=queue).get_job_ids():
        job = queue.fetch_job(job_id)
        if job is not None:
            job.delete()
    redis.delete(f"hub:schedules:{queue.name}", f"hub:schedules:{queue.name}:next-id")


def test_a_scheduled_packet_runs_in_the_worker_and_reaches_a_folder_and_a_mailbox(
        schedules: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mailbox) -> None:  # noqa: F811
    redis_url = schedules
    need_weasyprint()
    from redis import Redis
    from rq import Queue
    from rq.registry import ScheduledJobRegistry

    from hub.runtime import Runtime
    from hub.store import writer
    from hub.store.practices import add_practice

    database_url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    monkeypatch.setenv("HUB_REDIS_URL", redis_url)
    # the packet's own server and sender; the alerts' server is one that answers nothing
    monkeypatch.setenv("HUB_PACKET_SMTP_URL", os.environ["HUB_ALERT_SMTP_URL"])
    monkeypatch.setenv("HUB_ALERT_SMTP_URL", "smtp://127.0.0.1:9")
    monkeypatch.setenv("HUB_PACKET_EMAIL_FROM", "packet@example.org")
    runtime = Runtime.create(database_url=database_url)
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "north-derm", "North Dermatology")  # onboarding, nothing received yet

    folder = tmp_path / "packets"
    before = dt.datetime.now(dt.UTC)
    assert "schedule packet-1: the packet on day 5" in hub("schedule", "packet", "--day", "5", "--folder", str(folder))
    assert "schedule packet-2:" in hub("schedule", "packet", "--day", "5", "--at", "07:30",
                                       "--to", "finance@example.org", "--to", "cfo@example.org")
    listed = {s["id"]: s for s in json.loads(hub("schedule", "list", "--format", "json"))}
    assert set(listed) == {"packet-1", "packet-2"}
    first = dt.datetime.fromisoformat(listed["packet-1"]["next_run"])
    # the next 5th of a month at 06:00 UTC: after now, at most a month and a few days away
    assert (first.day, first.hour, first.minute) == (5, 6, 0) and before < first < before + dt.timedelta(days=32)
    # the next 5th at 07:30 UTC: on the 5th between 06:00 and 07:30 that is today, a month before packet-1's
    at_half_past_seven = before.replace(day=5, hour=7, minute=30, second=0, microsecond=0)
    if at_half_past_seven <= before:
        at_half_past_seven = (at_half_past_seven.replace(day=1) + dt.timedelta(days=32)).replace(day=5)
    assert dt.datetime.fromisoformat(listed["packet-2"]["next_run"]) == at_half_past_seven
    assert listed["packet-2"]["to"] == ["finance@example.org", "cfo@example.org"]

    redis = Redis.from_url(redis_url)
    queue = Queue(os.environ["HUB_QUEUE"], connection=redis)
    registry = ScheduledJobRegistry(queue=queue)
    assert set(registry.get_job_ids()) == {listed["packet-1"]["job_id"], listed["packet-2"]["job_id"]}
    # the clock reaches the 5th: both runs fall due (rq's registry, as its scheduler reads it)
    for job_id in registry.get_job_ids():
        registry.schedule(queue.fetch_job(job_id), dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run([sys.executable, "-m", "hub", "worker", "--burst"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]

    # the packet of the month before the run's date, in the folder ...
    month = f"{first.year - (first.month == 1)}-{(first.month - 2) % 12 + 1:02d}"
    files = sorted(p.name for p in folder.iterdir())
    assert files == [f"mso-packet-{month}.pdf", f"mso-packet-{month}.xlsx"]
    assert (folder / f"mso-packet-{month}.pdf").read_bytes().startswith(b"%PDF-")
    # ... and in one e-mail to both addresses, from the packet's sender, through the packet's server: packet-2's
    # own run date names its month (a month earlier than packet-1's on the 5th between 06:00 and 07:30)
    month = f"{at_half_past_seven.year - (at_half_past_seven.month == 1)}-{(at_half_past_seven.month - 2) % 12 + 1:02d}"
    assert len(mailbox.messages) == 1
    mail = mailbox.messages[0]
    label = dt.date(int(month[:4]), int(month[5:]), 1).strftime("%B %Y")
    assert mail["Subject"] == f"MSO leadership packet, {label}"
    assert mail["From"] == "packet@example.org"
    assert mail["X-Rcpt"] == "finance@example.org, cfo@example.org"
    attached = {part.get_filename(): part.get_content_type() for part in mail.walk() if part.get_filename()}
    assert attached == {f"mso-packet-{month}.pdf": "application/pdf",
                        f"mso-packet-{month}.xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
    pdf = next(p for p in mail.walk() if p.get_filename() == f"mso-packet-{month}.pdf")
    assert pdf.get_payload(decode=True).startswith(b"%PDF-")

    # each schedule has its next run: the 5th of the month after
    listed = {s["id"]: s for s in json.loads(hub("schedule", "list", "--format", "json"))}
    after = dt.datetime.fromisoformat(listed["packet-1"]["next_run"])
    assert (after.year * 12 + after.month) - (first.year * 12 + first.month) == 1
    assert (after.day, after.hour) == (5, 6)
    assert set(registry.get_job_ids()) == {listed["packet-1"]["job_id"], listed["packet-2"]["job_id"]}

    # cancelled: the definition and its next run are gone
    assert hub("schedule", "cancel", "packet-2").strip() == "schedule packet-2 cancelled"
    assert [s["id"] for s in json.loads(hub("schedule", "list", "--format", "json"))] == ["packet-1"]
    assert registry.get_job_ids() == [listed["packet-1"]["job_id"]]
    assert "no schedule 'packet-2'" in hub("schedule", "cancel", "packet-2", code=1)


def test_schedule_refuses_bad_requests_with_one_line(schedules: str, monkeypatch: pytest.MonkeyPatch) -> None:
    redis_url = schedules
    monkeypatch.delenv("HUB_REDIS_URL", raising=False)
    assert "hub schedule needs HUB_REDIS_URL" in hub("schedule", "packet", "--day", "5", "--folder", "x", code=1)
    monkeypatch.setenv("HUB_REDIS_URL", redis_url)
    monkeypatch.delenv("HUB_PACKET_SMTP_URL", raising=False)
    monkeypatch.delenv("HUB_ALERT_SMTP_URL", raising=False)
    assert "--day: the day must be 1 to 28" in hub("schedule", "packet", "--day", "31", "--folder", "x", code=1)
    assert "--at: not a time of day" in hub("schedule", "packet", "--day", "5", "--at", "25:00", "--folder", "x",
                                            code=1)
    assert "either --to ADDRESS" in hub("schedule", "packet", "--day", "5", code=1)
    assert "either --to ADDRESS" in hub("schedule", "packet", "--day", "5", "--folder", "x", "--to", "a@b.org",
                                        code=1)
    assert "--to: not an e-mail address" in hub("schedule", "packet", "--day", "5", "--to", "finance", code=1)
    assert "needs HUB_PACKET_SMTP_URL" in hub("schedule", "packet", "--day", "5", "--to", "a@b.org", code=1)
    monkeypatch.setenv("HUB_PACKET_SMTP_URL", "http://mail.example.org")
    assert "HUB_PACKET_SMTP_URL must be smtp://" in hub("schedule", "packet", "--day", "5", "--to", "a@b.org",
                                                        code=1)
    assert hub("schedule", "list").strip() == "no schedule"  # nothing refused was kept
