"""``hub schedule packet|list|cancel``: leadership's monthly packet on day N of each month, run by ``hub worker``.

The schedules live in the queue's Redis (``hub.reports.schedule``): these commands need ``HUB_REDIS_URL``,
and a worker (``hub worker``, whose scheduler thread runs what is due) to do anything at all.
"""

from __future__ import annotations

import click

from hub.commands.base import dumps
from hub.settings import current


@click.group("schedule")
def schedule_group() -> None:
    """Reports on a schedule (needs HUB_REDIS_URL; hub worker runs them)."""


@schedule_group.command("packet")
@click.option("--day", required=True, type=int, help="The day of the month (1 to 28) the packet of the month "
              "before is built and sent.")
@click.option("--at", "at", default="06:00", show_default=True, help="The time of day, UTC (HH:MM).")
@click.option("--to", "to", multiple=True, metavar="ADDRESS", help="Mail it to this address (repeatable), "
              "through HUB_PACKET_SMTP_URL (or HUB_ALERT_SMTP_URL).")
@click.option("--folder", type=click.Path(file_okay=False), help="Or write it into this folder (on the worker's "
              "machine).")
def schedule_packet(day: int, at: str, to: tuple[str, ...], folder: str | None) -> None:
    """Build and deliver the monthly packet on day N of each month (the month before's figures)."""
    from hub.reports.schedule import add_packet_schedule

    schedule = add_packet_schedule(current(), day=day, at=at, to=list(to), folder=folder)
    click.echo(f"schedule {schedule.id}: the packet on day {schedule.day} of each month at {schedule.at} UTC, "
               f"{schedule.delivery}; first run {schedule.next_run}")


@schedule_group.command("list")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def schedule_list(fmt: str) -> None:
    """The schedules and their next runs."""
    from hub.reports.schedule import list_schedules

    found = list_schedules(current())
    if fmt == "json":
        click.echo(dumps([s.as_json() for s in found]))
        return
    for s in found:
        click.echo(f"{s.id:<12} {s.kind:<7} day {s.day:>2} at {s.at} UTC  next {s.next_run}  {s.delivery}")
    if not found:
        click.echo("no schedule")


@schedule_group.command("cancel")
@click.argument("schedule_id")
def schedule_cancel(schedule_id: str) -> None:
    """Remove a schedule and its next run."""
    from hub.reports.schedule import cancel_schedule

    schedule = cancel_schedule(current(), schedule_id)
    click.echo(f"schedule {schedule.id} cancelled")
