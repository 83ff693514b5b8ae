"""Reports off the request path: a request only reads committed rollups and says how current they are;
refreshes run cell by cell, after ingest and in the background."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from hub.cli import cli
from hub.pipeline.intake import receive
from hub.plugins import load_plugins
from hub.reports import compute_report, rollups
from hub.reports.background import ReportRefresher
from hub.reports.tables import report_cells, report_dirty
from hub.runtime import Runtime
from hub.store import canonical
from hub.store.engine import get_engine, writer
from hub.store.practices import add_practice
from tests.reports.test_outputs import _get
from tests.support.json_records import plugin
from tests.support.services import free_port


def _appt(practice: str, source_id: str, start: str, status: str = "fulfilled") -> dict[str, Any]:
    return {"kind": "appointment", "practice": practice, "source_id": source_id, "patient_source_id": "P1",
            "provider_source_id": "DR1", "start": start, "duration_min": 30, "status": status,
            "service_line": "dermatology"}


def _write(engine: sa.Engine, records: list[dict[str, Any]]) -> None:
    """One batch as the pipeline writes it: the upsert, its cells marked in the same transaction."""
    items = [(r, None) for r in records]
    with writer(engine).begin() as conn, rollups.tracking(conn, items):
        canonical.upsert_records(conn, items)


def _dirty(engine: sa.Engine) -> dict[tuple[str, str], str | None]:
    with engine.connect() as conn:
        d = report_dirty.c
        return {(p, m): at for p, m, at in conn.execute(sa.select(d.practice, d.month, d.marked_at))}


def _waiting(engine: sa.Engine) -> set[tuple[str, str]]:
    """The cells waiting for a refresh: marked, or taken by a refresh that has not committed."""
    with engine.connect() as conn:
        return {(p, m) for p, m in conn.execute(sa.text(
            "SELECT practice, month FROM report_dirty UNION SELECT practice, month FROM report_refreshing"))}


def _rollup_rows(engine: sa.Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(report_cells).order_by(*report_cells.primary_key))]


def _visits(report: dict[str, Any], site: str, month: str) -> int | None:
    return next((r["values"]["visit_volume"] for r in report["rows"]
                 if r["slice"] == {"site": site, "month": month}), None)


def test_as_of_is_the_oldest_change_waiting_else_the_moment_of_reading(database_url: str) -> None:
    engine = get_engine(database_url)
    with writer(engine).begin() as conn:
        add_practice(conn, "east", "East")
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with engine.connect() as conn:
        fresh = rollups.freshness(conn)
    assert fresh.pending_cells == 0
    assert before <= dt.datetime.fromisoformat(fresh.as_of) <= dt.datetime.now(dt.UTC)

    _write(engine, [_appt("east", "A1", "2025-01-10T09:00:00-05:00")])
    first = _dirty(engine)[("east", "2025-01")]
    time.sleep(1.1)  # as_of has whole seconds
    _write(engine, [_appt("east", "A2", "2025-02-10T09:00:00-05:00"),
                    _appt("east", "A3", "2025-01-11T09:00:00-05:00")])  # January again: keeps its first time
    marks = _dirty(engine)
    assert marks[("east", "2025-01")] == first and marks[("east", "2025-02")] > first  # type: ignore[operator]
    with engine.connect() as conn:
        fresh = rollups.freshness(conn)
    assert fresh.pending_cells == 2 and fresh.as_of == f"{first[:19]}Z"  # type: ignore[index]

    assert rollups.refresh_dirty(engine) == 2
    report = compute_report(engine, by="site,month").to_dict()
    assert report["pending_cells"] == 0 and report["as_of"] >= f"{first[:19]}Z"  # type: ignore[index]
    assert _visits(report, "east", "2025-01") == 2 and _visits(report, "east", "2025-02") == 1


def test_a_refresh_commits_each_practice_month_on_its_own(database_url: str, monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """While the second cell is recomputed, another connection already sees the first one committed, and
    (PostgreSQL) a writer that marks the first cell again, or the very cell being recomputed, is not held up by
    the refresh, and its marks wait for the next refresh."""
    engine = get_engine(database_url)
    with writer(engine).begin() as conn:
        add_practice(conn, "east", "East")
    _write(engine, [_appt("east", "A1", "2025-01-10T09:00:00-05:00"),
                    _appt("east", "A2", "2025-02-10T09:00:00-05:00")])
    real_refresh = rollups.refresh
    seen: list[tuple[set[Any], dict[Any, Any], int | None, float | None]] = []

    def observed(conn: sa.Connection, cells: set[Any], **options: Any) -> int:
        visits = real_refresh(conn, cells, **options)
        if cells != {("east", "2025-02")}:
            return visits
        # the refresh's transaction for February is open: look from outside it
        with engine.connect() as other:
            january = other.execute(sa.select(sa.func.sum(report_cells.c.visits)).where(
                report_cells.c.grain == "site", report_cells.c.month == "2025-01")).scalar()
        waited = None
        if engine.dialect.name == "postgresql":
            started = time.perf_counter()
            with writer(engine).connect() as writer_conn, writer_conn.begin():
                writer_conn.execute(sa.text("SET LOCAL lock_timeout = '5s'"))
                rollups.mark_dirty(writer_conn, {("east", "2025-01"), ("east", "2025-02")})
            waited = time.perf_counter() - started
        seen.append((set(cells), _waiting(engine), january, waited))
        return visits

    monkeypatch.setattr(rollups, "refresh", observed)
    assert rollups.refresh_dirty(engine, passes=1) == 2
    (cells, marks_seen, january, waited), = seen
    assert cells == {("east", "2025-02")}
    assert ("east", "2025-01") not in marks_seen or engine.dialect.name == "postgresql"  # the writer re-marked it
    assert ("east", "2025-02") in marks_seen  # February still waits while it is recomputed
    assert january == 1  # January's figures are committed already
    if waited is not None:
        assert waited < 2.0  # not held until the whole refresh ends
        # kept for the next refresh: February's new mark too, made after its recompute had begun
        assert set(_dirty(engine)) == {("east", "2025-01"), ("east", "2025-02")}
        assert _waiting(engine) == {("east", "2025-01"), ("east", "2025-02")}


def test_a_report_request_never_writes_the_rollups(database_url: str) -> None:
    from hub.security.keys import create_key

    engine = get_engine(database_url)
    with writer(engine).begin() as conn:
        add_practice(conn, "east", "East")
        analyst = create_key(conn, "analyst")
    _write(engine, [_appt("east", "A1", "2025-01-10T09:00:00-05:00")])
    rollups.refresh_dirty(engine)
    _write(engine, [_appt("east", "A2", "2025-01-12T09:00:00-05:00")])  # a change the rollups do not have yet
    marks, rows = _dirty(engine), _rollup_rows(engine)
    assert list(marks) == [("east", "2025-01")]

    port = free_port()
    code = ("from werkzeug.serving import make_server; from hub.app import create_app; "
            f"make_server('127.0.0.1', {port}, create_app()).serve_forever()")
    server = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "HUB_DATABASE_URL": database_url},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            status, body = -1, {}
            try:
                status, body = _get(f"http://127.0.0.1:{port}/api/v1/reports/kpis?by=site,month", analyst)
                break
            except OSError:
                time.sleep(0.1)
        assert status == 200, body
    finally:
        server.terminate()
        server.communicate(timeout=10)
    assert _visits(body, "east", "2025-01") == 1  # the committed figure, not recomputed for the request
    assert body["pending_cells"] == 1 and body["as_of"] == f"{marks[('east', '2025-01')][:19]}Z"  # type: ignore[index]
    assert _dirty(engine) == marks and _rollup_rows(engine) == rows  # nothing written


def test_inline_processing_wakes_the_background_refresh_after_the_batch_commits(database_url: str) -> None:
    runtime = Runtime.create(database_url=database_url, plugins=load_plugins(extra=[plugin]), dispatcher="inline")
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "east", "East")
    refresher = ReportRefresher(runtime, interval=3600, settle=0.05).start()  # the timer never fires here
    try:
        receipts = receive(runtime, "east", json.dumps([_appt("east", "A1", "2025-03-04T09:00:00-05:00"),
                                                        _appt("east", "A2", "2025-03-05T09:00:00-05:00")]).encode(),
                           connector="json-records")
        assert all(r.outcome.accepted for r in receipts)
        deadline = time.monotonic() + 20
        report = compute_report(runtime.engine, by="site,month", plugins=runtime.plugins).to_dict()
        while report["pending_cells"] and time.monotonic() < deadline:
            time.sleep(0.05)
            report = compute_report(runtime.engine, by="site,month", plugins=runtime.plugins).to_dict()
    finally:
        refresher.stop()
    assert report["pending_cells"] == 0
    assert _visits(report, "east", "2025-03") == 2


def test_a_refresher_stops_between_cells(database_url: str) -> None:
    engine = get_engine(database_url)
    with writer(engine).begin() as conn:
        add_practice(conn, "east", "East")
    _write(engine, [_appt("east", f"A{m}", f"2025-{m:02d}-10T09:00:00-05:00") for m in range(1, 4)])
    asked = threading.Event()

    def stop_after_one() -> bool:
        if asked.is_set():
            return True
        asked.set()
        return False

    assert rollups.refresh_dirty(engine, should_stop=stop_after_one) == 1
    assert set(_dirty(engine)) == {("east", "2025-02"), ("east", "2025-03")}


def test_hub_ingest_leaves_current_figures_and_every_format_says_as_of(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_PLUGINS", plugin.__name__)
    runner = CliRunner()
    assert runner.invoke(cli, ["practice", "add", "east", "--name", "East"]).exit_code == 0
    feed = tmp_path / "visits.json"
    feed.write_text(json.dumps([_appt("east", "A1", "2025-03-04T09:00:00-05:00"),
                                _appt("east", "A2", "2025-04-05T09:00:00-04:00", "noshow")]))
    done = runner.invoke(cli, ["ingest", "--practice", "east", "--connector", "json-records", str(feed)])
    assert done.exit_code == 0, done.output
    assert "report rollups refreshed (2 practice-month cells" in done.stderr
    assert _dirty(get_engine(os.environ["HUB_DATABASE_URL"])) == {}

    data = json.loads(runner.invoke(cli, ["report", "kpis"]).stdout)
    assert data["pending_cells"] == 0 and data["as_of"].endswith("Z")
    assert _visits(data, "east", "2025-03") == 1 and _visits(data, "east", "2025-04") == 0
    lines = list(csv.DictReader(io.StringIO(runner.invoke(cli, ["report", "kpis", "--format", "csv"]).stdout)))
    assert lines and all(line["as_of"][:4] == data["as_of"][:4] and line["as_of"].endswith("Z") for line in lines)
    page = tmp_path / "dashboard.html"
    assert runner.invoke(cli, ["report", "kpis", "--format", "html", "--out", str(page)]).exit_code == 0
    html = page.read_text()
    assert '"as_of":"' in html and '"pending_cells":0' in html and 'id="freshness"' in html


def test_cells_a_failed_or_dead_refresh_had_taken_wait_again_and_the_next_refresh_recomputes_them(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL takes a transaction's cells out of report_dirty before recomputing them. A recompute that fails
    puts them back; a process that dies leaves them in report_refreshing, where reports still count them as
    waiting (as of their first mark) and the next refresh takes them first."""
    engine = get_engine(pg_url)
    with writer(engine).begin() as conn:
        add_practice(conn, "east", "East")
    _write(engine, [_appt("east", "A1", "2025-01-10T09:00:00-05:00")])
    (marked_at,) = _dirty(engine).values()

    def broken(conn: sa.Connection, cells: set[Any], **options: Any) -> int:
        raise RuntimeError("the store went away mid-recompute")

    monkeypatch.setattr(rollups, "refresh", broken)
    with pytest.raises(RuntimeError):
        rollups.refresh_dirty(engine)
    assert _dirty(engine) == {("east", "2025-01"): marked_at}  # back, with its first time
    assert _waiting(engine) == {("east", "2025-01")}
    monkeypatch.undo()

    # a refresh that died after taking the cell: the move committed, the recompute never did
    with writer(engine).begin() as conn:
        conn.execute(sa.text("INSERT INTO report_refreshing (practice, month, marked_at) "
                             "SELECT practice, month, marked_at FROM report_dirty"))
        conn.execute(sa.delete(report_dirty))
    with engine.connect() as conn:
        fresh = rollups.freshness(conn)
    assert fresh.pending_cells == 1 and fresh.as_of == f"{marked_at[:19]}Z"
    assert _waiting(engine) == {("east", "2025-01")} and not _dirty(engine)
    assert rollups.refresh_dirty(engine) == 1
    assert _waiting(engine) == set()
    with engine.connect() as conn:
        visits = conn.execute(sa.select(sa.func.sum(report_cells.c.visits)).where(
            report_cells.c.grain == "site", report_cells.c.month == "2025-01")).scalar()
    assert visits == 1
