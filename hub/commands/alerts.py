"""``hub alerts check|list``: the feed health rules evaluated once (for cron), and the alerts open now."""

from __future__ import annotations

import click

from hub.commands.base import State, dumps, pass_state


@click.group("alerts")
def alerts_group() -> None:
    """Feed health alerts: silence, error share, queue age, daily volume (docs/operations.md)."""


@alerts_group.command("check")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_state
def check_command(state: State, fmt: str) -> None:
    """Evaluate every practice's alert rules once and send the notices; print what opened, repeated and
    closed. Exits 0 whatever it found (for cron; hub worker also evaluates on a schedule)."""
    from hub.operations.alerts import check

    result = check(state.runtime)
    for problem in result.problems:
        click.echo(f"hub: warning: {problem}", err=True)
    if fmt == "json":
        click.echo(dumps([n.as_json() for n in result.notices]))
        return
    words = {"open": "opened", "repeat": "still open", "closed": "closed"}
    for notice in result.notices:
        click.echo(f"{words[notice.state]:<10} {notice.rule:<12} {notice.summary}")
    if not result.notices:
        click.echo("no alert opened or closed")


@alerts_group.command("list")
@click.option("--practice", help="Only this practice.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_state
def list_command(state: State, practice: str | None, fmt: str) -> None:
    """The alerts open now, oldest first."""
    from hub.operations.alerts import open_alerts

    with state.runtime.engine.connect() as conn:
        rows = open_alerts(conn, practice)
    if fmt == "json":
        click.echo(dumps([{k: v for k, v in row.items() if k != "open_key"} for row in rows]))
        return
    if not rows:
        click.echo("no open alert")
        return
    click.echo(f"{'OPENED':<18} {'PRACTICE':<18} {'RULE':<13} {'SENT':>4}  SUMMARY")
    for row in rows:
        opened = f"{row['opened_at']:%Y-%m-%d %H:%MZ}"
        click.echo(f"{opened:<18} {row['practice']:<18} {row['rule']:<13} "
                   f"{row['sent_count']:>4}  {row['summary']}")
