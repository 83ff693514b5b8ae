"""``hub demo``: build the synthetic MSO end to end, through the same parts a real one uses.

1. generate the facts (``generator``) and write each practice's feed files, as the connector
   of its feed renders them (``feeds``), under ``OUT/feeds/<practice>/<month>/``;
2. register the practices with their mapping files from ``mappings/examples/``;
3. ingest every file through ``hub.pipeline.intake.receive_many`` (what ``hub ingest``
   does), into a SQLite store of its own, ``OUT/hub-demo.db``, and import the MSO's costs
   (``OUT/costs.csv``, as ``hub costs import`` does);
4. compute the consolidated KPIs and write the dashboard (HTML), the XLSX, the JSON and
   the onboarding scorecard beside it.

A re-run starts over: the demo store and feed folder in ``OUT`` are replaced.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from hub.demo.feeds import costs_csv, feed_files
from hub.demo.generator import Truth, generate
from hub.errors import ConfigError
from hub.identity.mpi import run_identity
from hub.mapping import load_mapping
from hub.model.tables import messages
from hub.onboarding.scorecard import render_text
from hub.onboarding.sources import check_files
from hub.operations.alerts import check as check_alerts
from hub.operations.alerts import silence_measurable
from hub.pipeline.ingest import ingest_paths
from hub.reports import compute_report  # type: ignore[attr-defined,unused-ignore]
from hub.reports.costs import import_costs, parse_costs
from hub.reports.rollups import refresh_dirty
from hub.reports.rvus import import_file as import_rvu_file
from hub.reports.same_days import keep as keep_same_days
from hub.runtime import Runtime
from hub.security.keys import create_key
from hub.settings import current
from hub.store.engine import dispose_engines, writer
from hub.store.practices import add_practice, set_status

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_MAPPINGS = REPO_ROOT / "mappings" / "examples"
SAMPLE_RVUS = REPO_ROOT / "examples" / "rvus" / "work-rvus-sample.csv"  # the work RVU table, as hub rvu import takes it
STORE_NAME = "hub-demo.db"


@dataclass
class DemoResult:
    out: Path
    database_url: str
    truth: Truth
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    outputs: dict[str, Path] = field(default_factory=dict)
    analyst_key: str | None = None
    notes: list[str] = field(default_factory=list)
    report: dict[str, Any] | None = None  # the consolidated KPIs, as the report JSON
    summaries: list[str] = field(default_factory=list)  # one line per onboarding practice
    seconds: float = 0.0


def mapping_file(slug: str, folder: Path = EXAMPLE_MAPPINGS) -> Path:
    path = folder / f"{slug}.yaml"
    if not path.is_file():
        raise ConfigError(f"the demo mapping {path} is missing (run hub demo from a source checkout)")
    return path


def build_demo(out: Path, *, seed: int = 7, months: int = 13, scale: float = 1.0, end: dt.date | None = None,
               plugins: Any = None, say: Callable[[str], None] = lambda _: None,
               database_url: str | None = None) -> DemoResult:
    """Build the demo into ``out``; its store is ``out/hub-demo.db`` unless ``database_url`` names an empty one."""
    began = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    store = out / STORE_NAME
    for stale in (store, out / f"{STORE_NAME}-wal", out / f"{STORE_NAME}-shm"):
        stale.unlink(missing_ok=True)
    shutil.rmtree(out / "feeds", ignore_errors=True)
    url = database_url or f"sqlite:///{store.resolve()}"
    truth = generate(seed=seed, months=months, scale=scale, end=end)
    say(f"generated {len(truth.practices)} practices, {truth.start:%Y-%m} to "
        f"{truth.end - dt.timedelta(days=1):%Y-%m}")
    result = DemoResult(out=out, database_url=url, truth=truth)
    settings = current().with_defaults(**DEMO_DEFAULTS)
    runtime = Runtime.create(database_url=url, plugins=plugins, dispatcher="inline", settings=settings)
    try:
        _register(runtime, truth)
        # before the feeds: the import recomputes its months at once, cheap while they hold no records
        _import_costs(runtime, truth, out / "costs.csv")
        import_rvu_file(runtime.engine, SAMPLE_RVUS)
        for spec in truth.practices:
            folder = out / "feeds" / spec.slug
            for feed_file in feed_files(truth, spec, runtime.plugins.connectors):
                path = out / "feeds" / feed_file.name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(feed_file.data)
            began_practice = time.perf_counter()
            result.counts[spec.slug] = _ingest(runtime, spec.slug, folder, spec.feed, spec.remittance_feed)
            c = result.counts[spec.slug]
            say(f"{spec.slug:<18} {spec.feed:<6} accepted {c['accepted']:>6}  duplicate {c['duplicate']}  "
                f"error {c['error']}  ({time.perf_counter() - began_practice:.1f} s)")
        _resent_truncated(runtime, out, truth, result, say)
        _dated_arrivals(runtime, out, truth)
        linked = run_identity(runtime.engine, full=True, settings=runtime.settings, plugins=runtime.plugins)
        say(linked.describe())
        began_refresh = time.perf_counter()
        cells = refresh_dirty(runtime.engine)  # reports only read: the cells the feeds and the links moved, now
        keep_same_days(runtime.engine)  # the month in progress against the same days of the one before
        say(f"report rollups refreshed ({cells} practice-month cells, {time.perf_counter() - began_refresh:.1f} s)")
        # at the last minute of business hours when the clock is past them (an evening, a weekend): the silence rule
        # is measured only inside them, and the demo leaves what a live hub's checks of that day would have
        alerts = check_alerts(runtime, now=silence_measurable(runtime)).of("open")
        say(f"feed health: {len(alerts)} alert(s) open" + "".join(f"; {a.practice}: {a.rule}" for a in alerts)
            + " (hub status, hub alerts list, /console/)")
        result.analyst_key = _analyst_key(runtime)
        began_outputs = time.perf_counter()
        write_outputs(runtime, result)
        say(f"reports and scorecard written ({time.perf_counter() - began_outputs:.1f} s)")
        for line in no_data(result.report or {}):
            say(line)
    finally:
        runtime.engine.dispose()
        dispose_engines()
    result.seconds = time.perf_counter() - began
    return result


# Demo data can be rebuilt in seconds: no fsync on every group commit. And it is a bulk load, like a
# backfill: bigger processing batches mean fewer refreshes of the report rollups. Settings set in the
# environment win (``Settings.with_defaults``).
DEMO_DEFAULTS: dict[str, Any] = {"sqlite_synchronous": "NORMAL", "batch_size": 1000}


def _register(runtime: Any, truth: Truth) -> None:
    with writer(runtime.engine).begin() as conn:
        for spec in truth.practices:
            acquired = truth.start if spec.status == "live" else _month_before(truth.end)
            add_practice(conn, spec.slug, spec.name, mapping=mapping_file(spec.slug).read_text(),
                         acquired_on=acquired, timezone=spec.timezone)
            if spec.status == "live":
                set_status(conn, spec.slug, "live")


def _import_costs(runtime: Any, truth: Truth, path: Path) -> None:
    """The MSO's costs by practice, service line and month, as ``hub costs import FILE`` takes them."""
    path.write_text(costs_csv(truth))
    rows = parse_costs(path.read_text(), source=str(path))
    with writer(runtime.engine).begin() as conn:
        import_costs(conn, rows, source=str(path))


def _month_before(day: dt.date) -> dt.date:
    return (day.replace(day=1) - dt.timedelta(days=1)).replace(day=1)


def _ingest(runtime: Any, slug: str, folder: Path, feed: str, remittance_feed: str = "") -> dict[str, int]:
    connector = feed if feed in runtime.plugins.connectors.names() else None
    if not remittance_feed:
        return ingest_paths(runtime, slug, (str(folder),), connector=connector)
    # the payments (835s) by their own connector, the rest by the practice's feed
    owner = runtime.plugins.connectors.get(remittance_feed)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    theirs = [p for p in files if p.suffix in owner.file_extensions]
    counts = ingest_paths(runtime, slug, [p for p in files if p not in theirs], connector=connector)
    for fate, n in ingest_paths(runtime, slug, theirs, connector=remittance_feed).items():
        counts[fate] = counts.get(fate, 0) + n
    return counts


RESENT = 3  # the aesthetics practice's last bundles sent again, cut short in transit: the console's errors


def _resent_truncated(runtime: Any, out: Path, truth: Truth, result: DemoResult, say: Callable[[str], None]) -> None:
    """The FHIR practice's last few daily bundles arrive a second time cut short (a connection dropped
    mid-file): each is stored in error with its reason, for ``hub messages list`` and the console's error
    queue. The whole bundles came before, so no figure changes."""
    spec = next(s for s in truth.practices if s.feed == "fhir")
    days = sorted((out / "feeds" / spec.slug).rglob("*.json"))[-RESENT:]
    copies = []
    for day in days:
        copy = day.with_name(f"{day.stem}-resent.json")
        copy.write_bytes(day.read_bytes()[: day.stat().st_size // 2])
        copies.append(str(copy))
    counts = ingest_paths(runtime, spec.slug, copies, connector=spec.feed)
    for fate, n in counts.items():
        result.counts[spec.slug][fate] = result.counts[spec.slug].get(fate, 0) + n
    say(f"{spec.slug:<18} resent {len(copies)} bundles cut short in transit: error {counts.get('error', 0)}")


def _dated_arrivals(runtime: Any, out: Path, truth: Truth) -> None:
    """Each message dated as its file would have arrived, had the feeds run for the year rather than
    been loaded in a minute: a daily file that evening, a monthly export or batch early on the 1st of the
    next month, a backfill when the history ends (all in the practice's time zone). Feed health (``hub
    status``, the console, the alert rules) then reads as it would on a live hub."""
    feeds = (out / "feeds").resolve()
    zones = {spec.slug: ZoneInfo(spec.timezone) for spec in truth.practices}
    with writer(runtime.engine).begin() as conn:
        rows = conn.execute(sa.select(messages.c.id, messages.c.practice, messages.c.origin)).all()
        dated = []
        for row in rows:
            origin = Path(row.origin or "").resolve()  # as ingest named the file: relative to here, or not
            if not origin.is_relative_to(feeds):
                continue
            at = _arrival(origin.relative_to(feeds), zones[row.practice], truth.end)
            dated.append({"message_id": row.id, "at": at})
        if dated:
            conn.execute(sa.update(messages).where(messages.c.id == sa.bindparam("message_id"))
                         .values(received_at=sa.bindparam("at"), processed_at=sa.bindparam("at")), dated)


def _arrival(relative: Path, zone: ZoneInfo, end: dt.date) -> dt.datetime:
    folder, name = relative.parts[1], relative.name
    try:
        day, hour = dt.date.fromisoformat(name[:10]), 19 + ("-resent" in name)
    except ValueError:
        day = end if folder == "backfill" else (dt.date.fromisoformat(folder + "-01") + dt.timedelta(days=31)).replace(
            day=1)
        hour = 6
    return dt.datetime.combine(day, dt.time(hour), zone).astimezone(dt.UTC)


def _analyst_key(runtime: Any) -> str:
    with writer(runtime.engine).begin() as conn:
        return create_key(conn, "analyst", label="demo dashboard")


def write_outputs(runtime: Any, result: DemoResult) -> None:
    """The dashboard, the XLSX, the JSON and the onboarding scorecard, each a file in ``result.out``."""
    truth = result.truth
    report = compute_report(runtime.engine, by=["site", "month"], date_from=truth.start,
                            date_to=truth.end - dt.timedelta(days=1), plugins=runtime.plugins)
    result.report = report.to_dict()
    for fmt, name in (("html", "dashboard.html"), ("xlsx", "kpis.xlsx"), ("json", "kpis.json")):
        try:
            exporter = runtime.plugins.exporters.get(fmt)
        except ConfigError as exc:
            result.notes.append(str(exc))
            continue
        path = result.out / name
        with path.open("wb") as handle:
            exporter(report, handle)
        result.outputs[fmt] = path
    scorecard = _scorecard(runtime, result)
    if scorecard is not None:
        result.outputs["scorecard"] = scorecard


def no_data(report: dict[str, Any]) -> list[str]:
    """One line per reason a site has no figure for some KPIs (its feeds do not carry their inputs): which
    KPIs, at which sites. The dashboard shows the same as "no data" with the reason."""
    names = {d["id"]: d["name"] for d in report.get("definitions", [])}
    by_reason: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    grouped: dict[tuple[str, str], list[str]] = {}
    for kpi, sites in report.get("left_out", {}).items():
        for site, why in sites.items():
            grouped.setdefault((why, kpi), []).append(site)
    for (why, kpi), sites in grouped.items():
        by_reason.setdefault((why, tuple(sorted(sites))), []).append(names.get(kpi, kpi))
    return [f"no data ({why}): {', '.join(kpis)} at {', '.join(sites)}"
            for (why, sites), kpis in sorted(by_reason.items())]


def _scorecard(runtime: Any, result: DemoResult) -> Path | None:
    """The onboarding scorecard of the practices still onboarding: ``hub onboard check`` on their feed files."""

    path = result.out / "onboarding-scorecard.txt"
    parts = []
    for spec in result.truth.practices:
        if spec.status == "onboarding":
            source = mapping_file(spec.slug)
            mapping = load_mapping(source.read_text(), source=str(source))
            # without the connectors' deep structural validation (--no-findings): seconds, not a minute
            card = check_files(runtime.plugins, spec.slug, mapping, [str(result.out / "feeds" / spec.slug)],
                               findings=False, timezone=spec.timezone)
            parts.append(render_text(card))
            unmapped = [f"{u['code']} ({name})" for name, m in card.get("code_maps", {}).items()
                        for u in m.get("unmapped", [])]
            result.summaries.append(
                f"{spec.slug} is onboarding: {'ready' if card.get('passed') else 'not ready'} to go live"
                + (f"; unmapped codes: {', '.join(unmapped)}" if unmapped else ""))
    path.write_text("\n\n".join(parts))
    return path
