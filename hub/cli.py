"""The ``hub`` command. Thin: it parses arguments and calls the modules that do the work.

User errors (a bad file, an unknown practice, a wrong mapping) print one line on
stderr naming what is wrong and exit 1; usage errors exit 2. No tracebacks.

Quick to start: importing this module (``hub --version``, ``hub --help``) loads click
and this module's command definitions only. The feature groups' commands (``hub/commands/``)
are named in ``FEATURE_COMMANDS`` with their short help and imported when one of them runs;
a command imports the store, the pipeline and their libraries when it runs
(tests/cli/test_startup.py keeps it so).
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from hub.commands.base import HubGroup, LazyGroup, State, cli_user, dumps, pass_state
from hub.errors import ConfigError
from hub.settings import current

if TYPE_CHECKING:
    from hub.connector import Tally
    from hub.pipeline.intake import Receipt

__all__ = ["State", "cli", "dumps", "main", "pass_state"]  # State, pass_state and dumps: for plugins' commands

# The feature groups' commands: name → ("module:attribute", short help). ``hub --help`` lists them from here
# without importing them (a test checks each short help against the command's own: change both together).
FEATURE_COMMANDS: dict[str, tuple[str, str]] = {
    "alerts": ("hub.commands.alerts:alerts_group",
               "Feed health alerts: silence, error share, queue age, daily volume (docs/operations.md)."),
    "audit": ("hub.commands.audit:audit", "The audit log: who touched patient-level data, when, from where."),
    "costs": ("hub.commands.reports:costs", "Costs the MSO supplies (for margin by service line)."),
    "demo": ("hub.commands.demo:demo",
             "Build a demo MSO (several practices, each on its own feed) and write its dashboard and XLSX."),
    "identity": ("hub.commands.identity:identity_group",
                 "The master patient index: one enterprise id per person across the practices (docs/identity.md)."),
    "mapping": ("hub.commands.mapping:mapping_group", "Practice mapping files: validate them, find unmapped codes."),
    "mllp": ("hub.commands.mllp:mllp",
             "The MLLP listener: stores each message, then answers it (ACK) on the same connection."),
    "onboard": ("hub.commands.onboarding:onboard",
                "Onboard an acquired practice: dry-run scorecard and history backfill."),
    "remit": ("hub.commands.billing:remit", "Remittances and the charges they pay."),
    "report": ("hub.commands.reports:report", "Consolidated reports."),
    "roster": ("hub.commands.roster:roster_group",
               "The MSO rosters (mappings/mso/providers.yaml and locations.yaml, or HUB_MSO_VOCABULARIES)."),
    "rvu": ("hub.commands.rvus:rvu_group", "Work RVUs by procedure code (the CMS Physician Fee Schedule's, or the "
            "MSO's own): docs/reports.md."),
    "schedule": ("hub.commands.schedule:schedule_group",
                 "Reports on a schedule (needs HUB_REDIS_URL; hub worker runs them)."),
    "serve": ("hub.commands.serve:serve", "Run the web API and dashboard (gunicorn, threaded workers)."),
    "settings": ("hub.commands.settings:settings_command",
                 "Every HUB_ setting with its effective value (secrets as ***, URLs without their password), "
                 "whether the environment sets it, and what it does; then the connectors' settings, and with "
                 "--practice the connector sections of that practice's mapping."),
    "status": ("hub.commands.status:status",
               "One line per practice and connector: status, last message received and processed, the last "
               "hour's and day's arrivals (received/processed/duplicate/error), queue depth and silence "
               "(docs/operations.md)."),
    "watch": ("hub.commands.billing:watch", "A drop folder: each new file is taken once, stored, and moved to "
              "done/ or failed/ with its report."),
}
# ``hub practice go-live`` lives with the onboarding commands
PRACTICE_COMMANDS: dict[str, tuple[str, str]] = {
    "go-live": ("hub.commands.onboarding:go_live",
                "Move a practice from onboarding to live; refused while its scorecard fails."),
}


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        import hub

        click.echo(f"hub, version {hub.__version__}")
        ctx.exit()


def _build_cli() -> click.Group:
    @click.group(cls=HubGroup, lazy=FEATURE_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
    @click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
                  help="Show the version and exit.")
    @click.pass_context
    def cli(ctx: click.Context) -> None:
        """MSO Hub: practice feeds in, consolidated MSO KPIs out."""
        ctx.ensure_object(State)

    for command in (normalize, ingest, practice, key, plugins_group, db, worker, messages_group):
        cli.add_command(command)
    return cli


# ------------------------------------------------------------------ normalize / ingest
def say_tally(origin: str, tally: Tally, records: int, read: bool) -> None:
    """On stderr, what a file held besides its records, and that it yielded none (never silent)."""
    line = tally.summary()
    if read and records == 0:
        click.echo(f"hub: {origin}: no record{' (' + line + ')' if line else ''}", err=True)
    elif line:
        click.echo(f"hub: {origin}: {records} record(s); {line}", err=True)


@click.command()
@click.option("--practice", required=True, help="The practice slug the records belong to.")
@click.option("--connector", help="Connector name; found from the content when not given.")
@click.option("--mapping", "mapping_file", type=click.Path(exists=True, dir_okay=False),
              help="A practice mapping file to apply.")
@click.option("--timezone", help="The practice's IANA zone: times sent without an offset are read in it "
                                 "(default: UTC), and every date-time is shown in it.")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@pass_state
def normalize(state: State, practice: str, connector: str | None, mapping_file: str | None,
              timezone: str | None, files: tuple[str, ...]) -> None:
    """Dry run: print each file's canonical records as JSON lines. Stores nothing."""
    from hub.connector import Tally
    from hub.files import iter_files
    from hub.mapping import EMPTY, load_mapping
    from hub.model.kinds import check_timezone
    from hub.model.schemas import to_json_ready
    from hub.pipeline.normalize import normalize_payload

    check_timezone(timezone)
    mapping = load_mapping(Path(mapping_file).read_text(), source=mapping_file) if mapping_file else EMPTY
    failed = 0
    for path in iter_files(files):
        results = normalize_payload(state.plugins, path.read_bytes(), practice=practice, connector=connector,
                                    mapping=mapping, origin=str(path), timezone=mapping.practice_zone(timezone))
        tally, records = Tally(), 0
        for result in results:
            if result.error is not None:
                failed += 1
                click.echo(f"hub: error: {result.error}", err=True)
                continue
            tally.add(result.tally.as_dict())
            records += len(result.records)
            for record in result.records:
                click.echo(dumps(to_json_ready(record)))
        say_tally(str(path), tally, records, any(r.error is None for r in results))
    if failed:
        sys.exit(1)


@click.command()
@click.option("--practice", required=True, help="The registered practice the files belong to.")
@click.option("--connector", help="Connector name; found from the content when not given.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes that normalize and store while the files are read (inline processing "
                   "only; with rq, hub worker processes do it).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, writable=True),
              help="Write the acceptance report of each file (JSON) to this file: what every message of it "
                   "became (accepted, duplicate, refused) and why, as the API answers the same payload "
                   "(X12: per interchange, group and transaction, in the spirit of a 999).")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@pass_state
def ingest(state: State, practice: str, connector: str | None, jobs: int, report_path: str | None,
           paths: tuple[str, ...]) -> None:
    """Store files or folders through the full pipeline; print accepted / duplicate / error counts."""
    import orjson

    from hub.pipeline.ingest import acceptance_report, ingest_paths

    if report_path and not Path(report_path).resolve().parent.is_dir():  # refused before anything is stored
        raise ConfigError(f"--report {report_path}: no folder {str(Path(report_path).parent)!r} to write it in")
    tallies: dict[str, tuple[Tally, int]] = {}
    receipts: dict[str, list[Receipt]] | None = {} if report_path else None
    counts = ingest_paths(state.runtime, practice, paths, connector=connector, jobs=jobs, tallies=tallies,
                          receipts=receipts)
    for origin, (tally, records) in tallies.items():
        say_tally(origin, tally, records, True)
    if report_path and receipts is not None:
        report = acceptance_report(state.runtime, receipts)
        try:
            Path(report_path).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
        except OSError as exc:
            click.echo(f"hub: cannot write the acceptance report {report_path}: {exc.strerror}", err=True)
            sys.exit(1)
    click.echo(f"accepted {counts['accepted']}  duplicate {counts['duplicate']}  error {counts['error']}")
    if counts["accepted"]:
        from hub.commands.identity import link_after_ingest
        from hub.commands.reports import refresh_after_ingest

        link_after_ingest(state.runtime)
        refresh_after_ingest(state.runtime)  # after the links: a relinked patient moves cells too
    if counts["error"]:
        click.echo(f"hub: {counts['error']} message(s) in error: see hub messages list --practice {practice} "
                   "--status error", err=True)
        sys.exit(1)


# ------------------------------------------------------------------ practices
@click.group(cls=LazyGroup, lazy=PRACTICE_COMMANDS)
def practice() -> None:
    """Register and list practices."""


@practice.command("add")
@click.argument("slug")
@click.option("--name", required=True)
@click.option("--mapping", "mapping_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--acquired-on", type=click.DateTime(formats=["%Y-%m-%d"]))
@click.option("--timezone", help="The practice's IANA zone (America/Chicago): times sent without an offset are "
                                 "read in it, and every KPI's day, week and month is its local date. "
                                 "Needed to go live.")
@pass_state
def practice_add(state: State, slug: str, name: str, mapping_file: str | None, acquired_on: dt.datetime | None,
                 timezone: str | None) -> None:
    """Register a practice (status: onboarding)."""
    from hub.mapping import load_mapping
    from hub.store.engine import writer
    from hub.store.practices import add_practice

    text = Path(mapping_file).read_text() if mapping_file else None
    if text:
        # refuse a bad mapping before storing anything; its top-level zone is the practice's unless given
        timezone = load_mapping(text, source=mapping_file or "mapping").practice_zone(timezone)
    with writer(state.runtime.engine).begin() as conn:
        add_practice(conn, slug, name, mapping=text, acquired_on=acquired_on.date() if acquired_on else None,
                     timezone=timezone)
    click.echo(f"practice {slug} registered (onboarding)")


@practice.command("set")
@click.argument("slug")
@click.option("--timezone", required=True, help="The practice's IANA zone, such as America/Chicago.")
@pass_state
def practice_set(state: State, slug: str, timezone: str) -> None:
    """Change a practice's time zone: its stored messages are read again in the new zone and its
    report months recomputed by the next report (or hub report refresh)."""
    from hub.pipeline.replay import reread_practice
    from hub.store.engine import writer
    from hub.store.practices import set_timezone

    with writer(state.runtime.engine).begin() as conn:
        previous = set_timezone(conn, slug, timezone)
    if previous == timezone:
        click.echo(f"practice {slug} is already in {timezone}")
        return
    counts = reread_practice(state.runtime, slug)
    click.echo(f"practice {slug}: time zone {timezone} (was {previous or 'none'}); "
               f"{counts['submitted']} stored message(s) read again: {counts['processed']} processed, "
               f"{counts['error']} error" + (", queued for the workers" if counts["queued"] else ""))


@practice.command("list")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_state
def practice_list(state: State, fmt: str) -> None:
    """List registered practices."""
    from hub.store.practices import list_practices

    with state.runtime.engine.connect() as conn:
        rows = list_practices(conn)
    for row in rows:
        row.pop("mapping", None)
        if fmt == "json":
            click.echo(dumps(row))
        else:
            click.echo(f"{row['slug']:<20} {row['status']:<11} {row['name']}")


@practice.command("mapping")
@click.argument("slug")
@click.argument("mapping_file", type=click.Path(exists=True, dir_okay=False))
@pass_state
def practice_mapping(state: State, slug: str, mapping_file: str) -> None:
    """Replace a practice's mapping file (then: hub messages reprocess --practice SLUG)."""
    from hub.mapping import load_mapping
    from hub.store.engine import writer
    from hub.store.practices import set_mapping

    text = Path(mapping_file).read_text()
    load_mapping(text, source=mapping_file)
    with writer(state.runtime.engine).begin() as conn:
        set_mapping(conn, slug, text)
    click.echo(f"mapping of {slug} updated")


# ------------------------------------------------------------------ keys
@click.group()
def key() -> None:
    """API keys."""


@key.command("create")
@click.option("--role", type=click.Choice(["feed", "analyst", "admin"]), required=True)
@click.option("--practice", help="The practice a feed key belongs to.")
@click.option("--label")
@click.option("--expires-in-days", type=click.IntRange(min=1))
@pass_state
def key_create(state: State, role: str, practice: str | None, label: str | None,
               expires_in_days: int | None) -> None:
    """Issue an API key. The secret is printed once; only its hash is stored."""
    from hub.security.audit import AuditEntry
    from hub.security.audit import record as audit_record
    from hub.security.keys import create_key
    from hub.store.engine import writer

    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=expires_in_days) if expires_in_days else None
    with writer(state.runtime.engine).begin() as conn:
        secret = create_key(conn, role, practice, label=label, expires_at=expires)
        # who issued which key is an access-control record (an emergency admin key included)
        audit_record(conn, [AuditEntry(None, "keys.create", secret.split("_")[1], practice, f"cli:{cli_user()}",
                                       f"role={role}" + (f" expires in {expires_in_days} d" if expires else ""))])
    click.echo(f"{role} key created; store it now, it is not shown again:", err=True)
    click.echo(secret)


@key.command("revoke")
@click.argument("key_id")
@pass_state
def key_revoke(state: State, key_id: str) -> None:
    """Revoke a key by its id (the part after hub_)."""
    from hub.security.audit import AuditEntry
    from hub.security.audit import record as audit_record
    from hub.security.keys import revoke_key
    from hub.store.engine import writer

    with writer(state.runtime.engine).begin() as conn:
        revoke_key(conn, key_id)
        audit_record(conn, [AuditEntry(None, "keys.revoke", key_id, None, f"cli:{cli_user()}", "revoked")])
    click.echo(f"key {key_id} revoked")


@key.command("list")
@pass_state
def key_list(state: State) -> None:
    """List keys (ids, roles, practices; never secrets)."""
    from hub.security.keys import list_keys

    with state.runtime.engine.connect() as conn:
        for row in list_keys(conn):
            click.echo(dumps(row))


# ------------------------------------------------------------------ plugins, db, worker
@click.group("plugins")
def plugins_group() -> None:
    """Installed connectors and plugins."""


@plugins_group.command("list")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_state
def plugins_list(state: State, fmt: str) -> None:
    """The connectors and plugins found, with their versions; essential ones are always loaded."""
    loaded = state.plugins
    if fmt == "json":
        click.echo(dumps({"plugins": [vars(p) for p in loaded.info],
                          "connectors": [c.describe() for c in loaded.connectors.classes()],
                          "kpis": [k.id for k in loaded.kpis], "exporters": loaded.exporters.formats()}))
        return
    click.echo("plugins:")
    for p in loaded.info:
        essential = "  essential" if p.essential else ""
        click.echo(f"  {p.name:<22} {p.distribution or '-'} {p.version or ''}  ({p.module}){essential}")
    click.echo("connectors:")
    for c in loaded.connectors.classes():
        click.echo(f"  {c.name:<22} {c.version:<10} {', '.join(c.media_types)}")
        if c.cannot_carry:
            click.echo(f"  {'':<22} cannot carry: {', '.join(sorted(c.cannot_carry))}")
    if len(loaded.kpis):
        click.echo(f"kpis: {len(loaded.kpis)}")
    if loaded.exporters.formats():
        click.echo(f"report formats: {', '.join(loaded.exporters.formats())}")


@click.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Upgrade the database to the newest schema."""
    from hub.store.engine import create_engine, current_revision, database_url, upgrade_schema

    engine = create_engine(database_url())
    upgrade_schema(engine)
    click.echo(f"database at revision {current_revision(engine)}")


@click.command()
@click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
@click.option("--fork", is_flag=True, help="Fork a process per job (isolation at ~4x the cost per job).")
@click.option("--requeue-after", type=int, default=lambda: current().requeue_after,
              help="Re-enqueue messages left 'received' longer than this many seconds (lost jobs).")
@pass_state
def worker(state: State, burst: bool, fork: bool, requeue_after: int) -> None:
    """Run an rq worker (needs HUB_REDIS_URL)."""
    from hub.identity.background import IdentityTicker
    from hub.operations.alerts import AlertTicker
    from hub.pipeline.worker import run_worker
    from hub.reports.background import ReportRefresher

    if not current().redis_url:
        raise ConfigError("hub worker needs HUB_REDIS_URL (for example redis://127.0.0.1:6379/0)")
    ticker = IdentityTicker(state.runtime)  # patients linked in batches (hub.identity.background)
    refresher = ReportRefresher(state.runtime)  # report rollups after each batch (hub.reports.background)
    if not burst:
        ticker.start()
        refresher.start()
        AlertTicker(state.runtime).start()  # the alert rules on a schedule (hub.operations.alerts)
    run_worker(state.runtime, burst=burst, fork=fork, requeue_after=requeue_after)
    if burst:  # the queue is empty: link what it brought, then recompute the report cells it moved
        ticker.tick()
        refresher.tick()


# ------------------------------------------------------------------ message store
@click.group("messages")
def messages_group() -> None:
    """The message store: what arrived, its status, and replay after a fix."""


_WHEN = click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"])


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return value.replace(tzinfo=dt.UTC) if value else None


@messages_group.command("list")
@click.option("--practice")
@click.option("--status", type=click.Choice(["received", "processed", "error", "duplicate", "resolved"]))
@click.option("--since", type=_WHEN, help="Received at or after this UTC date or date-time.")
@click.option("--until", type=_WHEN, help="Received before this UTC date or date-time.")
@click.option("--type", "message_type", help="Message type, such as SIU^S12 (SIU* for every SIU).")
@click.option("--control-id", help="The sender's control id (HL7 v2 MSH-10).")
@click.option("--mrn", help="The messages that yielded this patient (MRN); audited with the MRN.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_state
def messages_list(state: State, practice: str | None, status: str | None, since: dt.datetime | None,
                  until: dt.datetime | None, message_type: str | None, control_id: str | None, mrn: str | None,
                  limit: int, fmt: str) -> None:
    """List messages, newest first. Audited (a read of the message store), as the API's list is; a search
    by MRN reads patient-level data and its audit row names the patient."""
    from hub.connector import Tally
    from hub.security.audit import AuditEntry
    from hub.security.audit import record as audit_record
    from hub.store.engine import writer
    from hub.store.messages import list_messages

    if since and until and until <= since:
        raise ConfigError(f"--until {until:%Y-%m-%dT%H:%M:%S} is not after --since {since:%Y-%m-%dT%H:%M:%S}")
    with writer(state.runtime.engine).begin() as conn:
        rows = list_messages(conn, practice=practice, status=status, limit=limit, since=_utc(since),
                             until=_utc(until), message_type=message_type, control_id=control_id, mrn=mrn)
        target = f"patient {practice + '/' if practice else ''}{mrn}" if mrn else status
        audit_record(conn, [AuditEntry(None, "messages.list", target, practice, f"cli:{cli_user()}",
                                       f"{len(rows)} listed")])
    if fmt == "json":
        click.echo(dumps(rows))
        return
    if not rows:
        searched = any((practice, status, since, until, message_type, control_id, mrn))
        click.echo("no message matches" if searched else "no message stored yet")
        return
    # columns as wide as their longest value, so a long practice slug or control id keeps the rest aligned
    wide = {name: max([len(header)] + [len(str(r[name] or "-")) for r in rows])
            for name, header in (("practice", "PRACTICE"), ("connector", "CONNECTOR"),
                                 ("message_type", "TYPE"), ("control_id", "CONTROL ID"))}
    click.echo(f"{'ID':>8} {'RECEIVED':<20} {'PROCESSED':<20} {'PRACTICE':<{wide['practice']}} "
               f"{'CONNECTOR':<{wide['connector']}} {'STATUS':<10} {'TYPE':<{wide['message_type']}} "
               f"{'CONTROL ID':<{wide['control_id']}} ORIGIN  NOTE")
    for r in rows:
        flag = f"[{r['flag']}] " if r.get("flag") else ""
        tally = Tally()
        tally.add(r.get("tally") or {})
        note = r["error"] or tally.summary()
        processed = f"{r['processed_at']:%Y-%m-%dT%H:%M:%SZ}" if r.get("processed_at") else "-"
        click.echo(f"{r['id']:>8} {r['received_at']:%Y-%m-%dT%H:%M:%SZ} {processed:<20} "
                   f"{r['practice']:<{wide['practice']}} {r['connector']:<{wide['connector']}} {r['status']:<10} "
                   f"{r['message_type'] or '-':<{wide['message_type']}} {r['control_id'] or '-':<{wide['control_id']}} "
                   f"{r['origin'] or '-'}  {flag}{note or ''}".rstrip())


@messages_group.command("reprocess")
@click.option("--practice")
@click.option("--status", type=click.Choice(["received", "processed", "error"]))
@click.argument("ids", nargs=-1, type=int)
@pass_state
def messages_reprocess(state: State, practice: str | None, status: str | None, ids: tuple[int, ...]) -> None:
    """Replay messages (given ids, a status, or all of a practice) through the current mapping.

    Exit status 1 when a replayed message fails again."""
    from hub.pipeline.replay import reprocess

    count = reprocess(state.runtime, practice=practice, status=status, ids=ids)
    click.echo(f"reprocessing {count['submitted']} message(s): processed {count['processed']}, "
               f"error {count['error']}" + (" (queued)" if count["queued"] else ""))
    if count["error"]:
        where = f" --practice {practice}" if practice else ""
        click.echo(f"hub: {count['error']} message(s) still in error: see hub messages list{where} --status error",
                   err=True)
        sys.exit(1)


@messages_group.command("resolve")
@click.option("--reason", required=True, help="Why no replay can fix them (kept in the audit log; no patient data).")
@click.argument("ids", nargs=-1, type=int, required=True)
@pass_state
def messages_resolve(state: State, reason: str, ids: tuple[int, ...]) -> None:
    """Mark messages in error resolved (superseded, or fixed at the source): reprocessing leaves them.

    The audit log keeps who (the system user) and why. Exit status 1 when a given id is not in error."""
    from hub.pipeline.replay import resolve

    if not reason.strip():
        raise ConfigError("--reason must say why the messages are resolved")
    done = resolve(state.runtime, ids, reason=reason.strip(), who=f"cli:{cli_user()}")
    click.echo(f"resolved {len(done)} message(s)")
    left = sorted(set(ids) - set(done))
    if left:
        click.echo(f"hub: not in error, left as they are: {', '.join(map(str, left))}", err=True)
        sys.exit(1)


cli = _build_cli()


def main() -> None:
    try:
        log_level = current().log_level  # the settings are checked here, before any command runs
    except ConfigError as exc:
        click.echo(f"hub: error: {exc}", err=True)
        sys.exit(1)
    from hub.logging import configure_logging, install_redaction

    install_redaction()  # every line any library logs, from here on and in forked workers (hub.logging)
    if log_level:
        configure_logging()
    cli(prog_name="hub")


if __name__ == "__main__":
    main()
