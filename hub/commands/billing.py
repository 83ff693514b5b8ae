"""``hub watch`` (a drop folder) and ``hub remit`` (remittances and the charges they pay)."""

from __future__ import annotations

import signal
import sys
from typing import TYPE_CHECKING, Any

import click

from hub.commands.base import State, dumps, pass_state

if TYPE_CHECKING:
    from hub.pipeline.watch import Taken
from hub.commands.identity import link_after_ingest
from hub.commands.reports import refresh_after_ingest


@click.command()
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--practice", required=True, help="Every file of the folder belongs to this practice.")
@click.option("--connector", help="The connector to read the files with (default: found from each file's content).")
@click.option("--interval", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="Seconds between two scans of the folder.")
@click.option("--settle", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="Seconds a file must be left unchanged before it is taken (an upload still in progress waits).")
@click.option("--once", is_flag=True, help="Take the files there now, then exit (for cron).")
@pass_state
def watch(state: State, folder: str, practice: str, connector: str | None, interval: float, settle: float,
          once: bool) -> None:
    """A drop folder: each new file is taken once, stored, and moved to done/ or failed/ with its report."""
    from hub.identity.background import IdentityTicker
    from hub.logging import configure_logging
    from hub.pipeline.watch import DropFolder
    from hub.reports.background import ReportRefresher
    from hub.store.practices import get_practice

    configure_logging()
    runtime = state.runtime
    with runtime.engine.connect() as conn:
        get_practice(conn, practice)  # an unknown practice is a start-up error, not a folder of failures
    if connector:
        runtime.plugins.connectors.get(connector)
    drop = DropFolder(runtime, folder, practice, connector=connector, settle=settle)
    failed = []
    stopping: list[bool] = []

    def on_taken(taken: Taken) -> None:
        where = taken.moved_to.parent.name if taken.moved_to else "?"
        click.echo(f"{taken.name}: accepted {taken.accepted}  duplicate {taken.duplicate}  error {taken.error}"
                   f"  -> {where}/")
        if taken.failed:
            failed.append(taken.name)

    def stop(*_: Any) -> None:
        stopping.append(True)

    if not once:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, stop)
        click.echo(f"watching {folder} for practice {practice} (every {interval:g} s; Ctrl-C stops)", err=True)
    ticker = IdentityTicker(runtime)  # patients linked in batches (hub.identity.background)
    refresher = ReportRefresher(runtime)  # report rollups after each batch (hub.reports.background)
    if not once:
        ticker.start()
        refresher.start()
    drop.run(interval, on_taken, once=once, stop=lambda: bool(stopping))
    ticker.stop()
    refresher.stop()
    if once:
        link_after_ingest(runtime)
        refresh_after_ingest(runtime)
    if once and failed:
        click.echo(f"hub: {len(failed)} file(s) moved to failed/: see their .report.json and "
                   f"hub messages list --practice {practice} --status error", err=True)
        sys.exit(1)


@click.group()
def remit() -> None:
    """Remittances and the charges they pay."""


@remit.command("unmatched")
@click.option("--practice", required=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@pass_state
def remit_unmatched(state: State, practice: str, fmt: str) -> None:
    """The remittances that matched no charge, and why."""
    from hub.store.practices import get_practice
    from hub.store.remittances import match_report

    with state.runtime.engine.connect() as conn:
        get_practice(conn, practice)
        report = match_report(conn, practice)
    if fmt == "json":
        click.echo(dumps({"practice": practice, "remittances": report.remittances, "matched": report.matched,
                          "unmatched": [u.as_dict() for u in report.unmatched]}))
        return
    for u in report.unmatched:
        click.echo(f"{u.source_id}  claim {u.claim_id or '-'}  {u.procedure_code or '-'}  {u.service_date or '-'}  "
                   f"{u.charged_amount if u.charged_amount is not None else '-'}  {u.reason}")
    share = f" ({report.share:.1%})" if report.share is not None else ""
    click.echo(f"{report.matched} of {report.remittances} remittance(s) matched a charge{share}; "
               f"{len(report.unmatched)} unmatched")
