"""A refresh split across many short transactions leaves exactly the rollups one transaction would."""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa

from hub.reports import rollups, visits
from hub.reports.tables import (
    report_cells,
    report_costs,
    report_credits,
    report_dirty,
    report_fine_cells,
    report_fine_credits,
    report_fine_hist,
    report_hist,
    report_medians,
    report_retention,
    report_visits,
)
from hub.store import canonical
from hub.store.engine import get_engine, writer
from hub.store.practices import add_practice
from tests.reports import synthetic

ROLLUPS = (report_cells, report_hist, report_credits, report_fine_cells, report_fine_hist, report_fine_credits,
           report_retention, report_visits, report_medians)


def _load(url: str) -> sa.Engine:
    """The synthetic MSO in batches as the pipeline writes them: cells marked, nothing recomputed yet."""
    engine = get_engine(url)
    records = synthetic.build_records()
    random.Random(5).shuffle(records)  # older visits after newer ones: flags and retention move back and forth
    batches = [records[i:i + 300] for i in range(0, len(records), 300)]
    batches.append(synthetic.changes(records))
    with writer(engine).begin() as conn:
        for slug in synthetic.SITES:
            add_practice(conn, slug, slug.title())
    for batch in batches:
        items = [(r, None) for r in batch]
        with writer(engine).begin() as conn, rollups.tracking(conn, items):
            canonical.upsert_records(conn, items)
    # imported costs: the one kind of row in no week (the monthly grain takes them apart from the weekly)
    costs = [{"practice": slug, "service_line": line, "month": month, "cost_cents": 100_000 + 7 * i}
             for i, (slug, line, month) in enumerate((s, line, m) for s in synthetic.SITES
                                                     for line in ("dermatology", "cosmetic_aesthetics")
                                                     for m in ("2024-02", "2024-05"))]
    with writer(engine).begin() as conn:
        conn.execute(sa.insert(report_costs), costs)
        rollups.mark_dirty(conn, {(c["practice"], c["month"]) for c in costs})
    return engine


def _rollups(engine: sa.Engine) -> dict[str, Counter[tuple[Any, ...]]]:
    """Every rollup row, without generated ids (they count insertions, not figures)."""
    out = {}
    with engine.connect() as conn:
        for table in ROLLUPS:
            columns = [c for c in table.c if c.name != "id"]
            out[table.name] = Counter(tuple(row) for row in conn.execute(sa.select(*columns)))
    return out


def _rebuild_in_one_transaction(engine: sa.Engine) -> int:
    """From empty rollups, every cell the records sit in, recomputed in a single transaction."""
    with writer(engine).begin() as conn:
        for table in (*ROLLUPS, report_dirty):
            conn.execute(sa.delete(table))
        cells = rollups.stored_cells(conn)
        rollups.refresh(conn, cells)
    return len(cells)


@pytest.mark.parametrize("budget", [0.0, 60.0], ids=["one-cell-each", "growing-batches"])
def test_a_refresh_split_across_transactions_equals_one_transaction(database_url: str, budget: float) -> None:
    engine = _load(database_url)
    with engine.connect() as conn:
        marked = len(rollups.dirty_cells(conn))
    commits: list[int] = []
    assert rollups.refresh_dirty(engine, budget=budget, on_commit=lambda cells, _s: commits.append(cells)) == marked
    assert sum(commits) == marked
    if budget == 0.0:
        assert commits == [1] * marked  # no time to spare: each cell commits on its own
    elif engine.dialect.name == "postgresql":  # so many cells wait that the first transaction takes all their visits
        assert marked >= rollups._SIZED_FIRST and commits == [marked]
    else:
        assert commits[0] == 1 and max(commits) > 1 and len(commits) < marked  # one cell first, then more at once
    split = _rollups(engine)
    assert sum(len(rows) for rows in split.values()) > 0
    with engine.connect() as conn:  # the twelve imported costs, 100,000 cents + 7 × their number, by month only
        costs = dict(conn.execute(sa.text("SELECT grain, SUM(costs_cents) FROM report_cells GROUP BY grain")).all())
    assert costs["site"] == 12 * 100_000 + 7 * sum(range(12)) and costs[rollups.SITE_WEEK_GRAIN] == 0

    assert _rebuild_in_one_transaction(engine) == marked  # the marks covered every cell with records
    assert _rollups(engine) == split


def _by_cell(engine: sa.Engine) -> dict[tuple[str, str], Counter[tuple[Any, ...]]]:
    """The cell-keyed rollup rows (cells, histograms, credits), by the (practice, month) cell they belong to."""
    out: dict[tuple[str, str], Counter[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for table in (report_cells, report_hist, report_credits, report_fine_cells, report_fine_hist,
                      report_fine_credits):
            for row in conn.execute(sa.select(*table.c)):
                out.setdefault((row.practice, row.month), Counter())[(table.name, *row)] += 1
    return out


def test_a_batch_of_cells_of_several_practices_recomputes_exactly_those_cells(database_url: str) -> None:
    """A transaction's cells need not be whole months of whole practices: each practice's own months, no more."""
    engine = _load(database_url)
    assert rollups.refresh_dirty(engine, budget=0.0) > 0  # every cell on its own: the figures to match
    before = _by_cell(engine)
    east, west, spa = synthetic.SITES
    chosen = {(east, "2024-02"), (west, "2024-03"), (spa, "2024-02"), (spa, "2024-04")}
    assert chosen <= set(before)  # each has records
    assert {(east, "2024-03"), (west, "2024-02"), (spa, "2024-03")} <= set(before)  # and so do the cells between
    with writer(engine).begin() as conn:
        for table in (report_cells, report_hist, report_credits, report_fine_cells, report_fine_hist,
                      report_fine_credits):
            conn.execute(sa.delete(table))
        rollups.refresh(conn, chosen)
    after = _by_cell(engine)
    assert set(after) == chosen
    assert after == {cell: before[cell] for cell in chosen}


def test_a_refresh_of_more_cells_than_a_batch_holds_goes_batch_by_batch(database_url: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _load(database_url)
    cells = _rebuild_in_one_transaction(engine)
    whole = _rollups(engine)
    monkeypatch.setattr(rollups, "_MOST_CELLS", 2)  # every cell in batches of two, in one transaction
    assert cells > 4 and _rebuild_in_one_transaction(engine) == cells
    assert _rollups(engine) == whole


def test_a_postgresql_catch_up_holds_about_so_many_visits_a_transaction_and_the_same_figures(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its transactions may run long (no ingest waits for them); what bounds them is the visits they hold."""
    engine = _load(pg_url)
    with engine.connect() as conn:
        marked = len(rollups.dirty_cells(conn))
    monkeypatch.setattr(rollups, "_CATCH_UP_VISITS", 1)  # a cell's visits already pass it: a cell a transaction
    commits: list[int] = []
    assert rollups.refresh_dirty(engine, budget=600.0, on_commit=lambda cells, _s: commits.append(cells)) == marked
    # one cell each, but after a cell with no visits (which says nothing of the next), up to eight
    assert len(commits) > marked // 2 and max(commits) <= 8
    split = _rollups(engine)
    assert _rebuild_in_one_transaction(engine) == marked
    assert _rollups(engine) == split


def test_a_postgresql_catch_up_first_takes_the_cells_whose_visits_fit(pg_url: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The first transaction of a catch-up takes, in order, the cells whose visits together stay within
    ``_CATCH_UP_VISITS`` (the visits each cell holds: its rows of ``report_visits`` once recomputed)."""
    engine = _load(pg_url)
    with engine.connect() as conn:
        order = rollups.dirty_cells(conn)
    _rebuild_in_one_transaction(engine)
    whole = _rollups(engine)
    with engine.connect() as conn:
        held = Counter({(p, m): n for p, m, n in conn.execute(sa.text(
            "SELECT practice, month, COUNT(*) FROM report_visits GROUP BY practice, month"))})
    prefix = [sum(held[cell] for cell in order[:i]) for i in range(len(order) + 1)]
    cap = prefix[len(order) // 2]  # about half the cells' visits
    expected = max(i for i, total in enumerate(prefix) if total <= cap)  # and the empty cells after them
    assert 1 < expected < len(order) and held[order[expected]] > 0
    with writer(engine).begin() as conn:
        rollups.mark_dirty(conn, set(order))
    monkeypatch.setattr(rollups, "_CATCH_UP_VISITS", cap)
    monkeypatch.setattr(rollups, "_SIZED_FIRST", len(order))  # as many cells as after a backfill
    commits: list[int] = []
    assert rollups.refresh_dirty(engine, on_commit=lambda cells, _s: commits.append(cells)) == len(order)
    assert commits[0] == expected and sum(commits) == len(order)
    assert _rollups(engine) == whole
    with writer(engine).begin() as conn:
        rollups.mark_dirty(conn, set(order))
    monkeypatch.setattr(rollups, "_SIZED_FIRST", len(order) + 1)  # fewer cells wait: one cell first, as ever
    commits.clear()
    assert rollups.refresh_dirty(engine, on_commit=lambda cells, _s: commits.append(cells)) == len(order)
    assert commits[0] == 1 and _rollups(engine) == whole


@pytest.mark.parametrize("late", ["_charges_aside", "_read_visits"])
def test_a_postgresql_catch_up_writes_the_same_whichever_side_session_is_done_first(
        pg_url: str, monkeypatch: pytest.MonkeyPatch, late: str) -> None:
    """The charges' rows worked out aside and the visits read aside are written in the order they are ready: either
    order leaves the rollups one transaction over every cell leaves."""
    engine = _load(pg_url)
    slow = getattr(rollups, late)

    def later(*args: Any) -> Any:
        time.sleep(0.5)
        return slow(*args)

    monkeypatch.setattr(rollups, late, later)
    marked = rollups.refresh_dirty(engine)
    split = _rollups(engine)
    assert _rebuild_in_one_transaction(engine) == marked
    assert _rollups(engine) == split


def _counting_broken(monkeypatch: pytest.MonkeyPatch) -> str:
    """The retention counts, worked out on a thread, fail."""
    def broken(delta: Any) -> list[dict[str, object]]:
        raise RuntimeError("counting failed")

    monkeypatch.setattr(visits, "_retention_rows", broken)
    return "counting failed"


def _charges_broken(monkeypatch: pytest.MonkeyPatch) -> str:
    """A statement of the session that works out the charges' and credits' fine rows fails."""
    credits_sql = rollups._credits_sql
    monkeypatch.setattr(rollups, "_credits_sql",
                        lambda sql: credits_sql(sql).replace("SELECT", "SELECT no_column, ", 1))
    return "no_column"


@pytest.mark.parametrize("breaks", [_counting_broken, _charges_broken], ids=["retention-counts", "charges-session"])
def test_a_failure_of_the_work_done_aside_leaves_nothing_half_written(
        pg_url: str, monkeypatch: pytest.MonkeyPatch, breaks: Any) -> None:
    """On PostgreSQL a catch-up works out the retention counts on a thread, and the charges' and credits' fine rows
    on a session of its own (taken in by COPY), while the server computes the other rollups: what fails there
    fails the transaction, and its cells wait again, their rollups as they were."""
    engine = _load(pg_url)
    with engine.connect() as conn:
        marked = set(rollups.dirty_cells(conn))
    before = _rollups(engine)
    with pytest.raises(Exception, match=breaks(monkeypatch)):
        rollups.refresh_dirty(engine)
    with engine.connect() as conn:
        assert set(rollups.dirty_cells(conn)) == marked
        assert conn.execute(sa.select(sa.func.count()).select_from(rollups.report_refreshing)).scalar_one() == 0
    assert _rollups(engine) == before
    monkeypatch.undo()
    assert rollups.refresh_dirty(engine) == len(marked)
    split = _rollups(engine)
    assert _rebuild_in_one_transaction(engine) == len(marked)
    assert _rollups(engine) == split


def test_a_large_postgresql_catch_up_leaves_the_rollups_counted_for_the_reports_planner(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A catch-up transaction of many cells has the planner count the rollups the reports read before it commits
    (autovacuum would too, a minute or more later; here it is off): their row counts are in the catalog."""
    engine = _load(pg_url)
    counted = (report_cells, report_hist, report_credits, report_medians, report_retention)
    with engine.begin() as conn:
        for table in counted:
            conn.execute(sa.text(f"ALTER TABLE {table.name} SET (autovacuum_enabled = false)"))
    monkeypatch.setattr(rollups, "_WHOLE_BATCH_CELLS", 1)  # every transaction counts as a large one
    assert rollups.refresh_dirty(engine) > 0
    with engine.connect() as conn:
        for table in counted:
            rows = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            estimate = conn.execute(sa.text("SELECT reltuples FROM pg_class WHERE relname = :name"),
                                    {"name": table.name}).scalar_one()
            assert rows > 0 and estimate == rows, table.name
