"""``hub status``: the health of every practice's feeds, one line per practice and connector."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from hub.commands.base import State, dumps, pass_state


def _when(value: dt.datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%MZ}" if value else "-"


def _counts(counts: dict[str, int]) -> str:
    return "/".join(str(counts[k]) for k in ("received", "processed", "duplicate", "error"))


def _silence(line: dict[str, Any]) -> str:
    minutes = line["silence_minutes"]
    if minutes is None:
        return "no message yet"
    text = f"{int(minutes)}m"
    if line["expected_minutes"] is not None:
        text += f" (rule {line['expected_minutes']}m" + ("" if line["business_hours"] else ", closed now") + ")"
    return text + ("  SILENT" if line["silent"] else "")


def _header(wide: int) -> str:
    return (f"{'PRACTICE':<{wide}} {'CONNECTOR':<10} {'STATUS':<11} {'LAST RECEIVED':<18} {'LAST PROCESSED':<18} "
            f"{'HOUR r/p/d/e':<14} {'DAY r/p/d/e':<16} {'QUEUE':>5}  SILENCE")


@click.command()
@click.option("--practice", help="Only this practice.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_state
def status(state: State, practice: str | None, fmt: str) -> None:
    """One line per practice and connector: status, last message received and processed, the last hour's
    and day's arrivals (received/processed/duplicate/error), queue depth and silence (docs/operations.md)."""
    from hub.operations.alerts import default_rules
    from hub.operations.health import feed_status

    runtime = state.runtime
    now = dt.datetime.now(dt.UTC)
    with runtime.engine.connect() as conn:
        lines = feed_status(conn, now=now, defaults=default_rules(runtime.settings), practice=practice)
    if fmt == "json":
        click.echo(dumps({"at": now, "feeds": lines}))
        return
    if not lines:
        click.echo(f"no practice {practice!r} is registered" if practice else
                   "no practice is registered (hub practice add SLUG --name NAME)")
        return
    wide = max(18, *(len(line["practice"]) for line in lines))  # a long slug keeps the columns aligned
    click.echo(_header(wide))
    for line in lines:
        click.echo(f"{line['practice']:<{wide}} {line['connector'] or '-':<10} {line['status']:<11} "
                   f"{_when(line['last_received']):<18} {_when(line['last_processed']):<18} "
                   f"{_counts(line['last_hour']):<14} {_counts(line['last_day']):<16} {line['queue']:>5}  "
                   f"{_silence(line)}")
