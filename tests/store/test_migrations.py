"""The migrations build exactly the tables the model declares, each revision in its own shape."""

import datetime as dt

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import hub.reports.tables  # noqa: F401  (the report rollups live on the same metadata)
from hub.model.tables import metadata
from hub.store.engine import alembic_config, create_engine, current_revision, get_engine, head_revision


def test_store_upgrades_itself_to_head_and_matches_the_model(database_url):
    engine = get_engine(database_url)
    assert current_revision(engine) == head_revision(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), metadata)
    assert diff == [], f"the migrations and hub/model/tables.py disagree: {diff}"


def test_upgrade_is_idempotent(database_url):
    from hub.store.engine import upgrade_schema

    engine = create_engine(database_url)
    upgrade_schema(engine)
    upgrade_schema(engine)
    assert current_revision(engine) == head_revision(engine)
    engine.dispose()


# ------------------------------------------------------------------ every revision, one at a time, with data
NOW = dt.datetime(2025, 7, 1, 12, 0)
# rows written at each revision, in that revision's own shape (plain SQL, no model)
ROWS: dict[str, list[tuple[str, dict[str, object]]]] = {
    "0001": [
        ("INSERT INTO practices (slug, name, status, created_at) VALUES (:slug, :name, 'live', :at)",
         {"slug": "p1", "name": "Practice One", "at": NOW}),
        ("INSERT INTO appointments (practice, source_id, start, status, service_line, updated_at) "
         "VALUES ('p1', 'a1', '2025-03-04T09:00:00-05:00', 'booked', 'derm', :at)", {"at": NOW}),
        ("INSERT INTO charges (practice, source_id, service_date, amount, service_line, updated_at) "
         "VALUES ('p1', 'c1', :d, 12345, 'derm', :at)", {"d": dt.date(2025, 2, 10), "at": NOW}),
        ("INSERT INTO slots (practice, source_id, start, duration_min, status, updated_at) "
         "VALUES ('p1', 's1', '2025-06-02T09:00:00-05:00', 15, 'free', :at)", {"at": NOW}),
        ("INSERT INTO messages (practice, connector, received_at, content_hash, status, attempts) "
         "VALUES ('p1', 'csv', :at, 'h1', 'processed', 1)", {"at": NOW}),
    ],
    "0003": [("INSERT INTO onboarding_files (practice, file_key, path, size, updated_at) "
              "VALUES ('p1', 'k1', '/in/a.csv', 10, :at)", {"at": NOW})],
    "0004": [("INSERT INTO report_costs (practice, service_line, month, cost_cents) "
              "VALUES ('p1', 'derm', '2025-01', 5000)", {})],
    "0005": [("INSERT INTO pull_state (practice, source, resource_type, high_water, updated_at) "
              "VALUES ('p1', 'fhir', 'Appointment', '2025-06-30', :at)", {"at": NOW})],
    "0008": [("INSERT INTO encounters (practice, source_id, start, status, event_time, stamp, start__stamp, "
              "updated_at) VALUES ('p1', 'e1', '2025-04-07T10:00:00-05:00', 'finished', "
              "'2025-04-07T11:00:00-05:00', 'st1', 'st1', :at)", {"at": NOW})],
    "0009": [("INSERT INTO messages (practice, connector, received_at, content_hash, status, attempts, flag) "
              "VALUES ('p1', 'hl7', :at, 'h2', 'processed', 1, 'control id reused')", {"at": NOW})],
    "0010": [("INSERT INTO messages (practice, connector, received_at, content_hash, status, attempts, tally) "
              "VALUES ('p1', 'fhir', :at, 'h3', 'processed', 1, '{\"mapped\": 1}')", {"at": NOW})],
    "0016": [("INSERT INTO report_rvus (year, code, modifier, work_milli, source) "
              "VALUES (2025, '99213', '', 1300, 'r.csv')", {})],
    # a cell a catch-up had taken when it stopped
    "0018": [("INSERT INTO report_refreshing (practice, month, marked_at) "
              "VALUES ('p1', '2025-08', '2025-07-01T12:00:00.000000Z')", {})],
}


def _upgrade(engine: sa.Engine, target: str, *, down: bool = False) -> None:
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, target)


def _columns(engine: sa.Engine, table: str) -> set[str]:
    with engine.connect() as conn:
        return {c["name"] for c in sa.inspect(conn).get_columns(table)}


def _dirty(engine: sa.Engine) -> set[tuple[str, str]]:
    with engine.connect() as conn:
        return {(p, m) for p, m in conn.execute(sa.text("SELECT practice, month FROM report_dirty"))}


def _survivors(engine: sa.Engine) -> dict[str, object]:
    with engine.connect() as conn:
        one = lambda sql: conn.execute(sa.text(sql)).all()  # noqa: E731
        return {
            "practices": one("SELECT slug, name FROM practices"),
            "appointments": one("SELECT source_id, start FROM appointments"),
            "charges": one("SELECT source_id, amount FROM charges"),
            "slots": one("SELECT source_id FROM slots"),
            "messages": one("SELECT content_hash, flag, tally FROM messages ORDER BY content_hash")
            if "tally" in _columns(engine, "messages")
            else [(*row, None) for row in one("SELECT content_hash, flag FROM messages ORDER BY content_hash")],
            "onboarding": one("SELECT file_key, size FROM onboarding_files"),
            "costs": one("SELECT month, cost_cents FROM report_costs"),
            "pull_state": one("SELECT resource_type, high_water FROM pull_state"),
            "encounters": one("SELECT source_id, event_time, stamp FROM encounters"),
            "rvus": one("SELECT year, code, work_milli FROM report_rvus")
            if "report_rvus" in sa.inspect(conn).get_table_names() else [],
        }


def test_every_revision_in_turn_keeps_the_data_and_its_own_shape(database_url):
    engine = create_engine(database_url)
    script = ScriptDirectory.from_config(alembic_config(engine))
    revisions = [r.revision for r in reversed(list(script.walk_revisions()))]
    assert revisions[0] == "0001" and revisions[-1] == head_revision(engine)
    # the appointment (March), the charge (February) and the slot (June, and the three months before it,
    # whose "third next available" looks ahead to it)
    cells_0001 = {("p1", "2025-03"), ("p1", "2025-02"), ("p1", "2025-06"), ("p1", "2025-05"), ("p1", "2025-04")}
    for rev in revisions:
        _upgrade(engine, rev)
        assert current_revision(engine) == rev
        if rev == "0004":
            # 0004's own shape, not the model's: weeks come with 0007
            assert "week" not in _columns(engine, "report_cells")
            assert "month" in _columns(engine, "report_retention")
            assert "period_kind" not in _columns(engine, "report_retention")
            assert "event_time" not in _columns(engine, "appointments")  # 0008
            # the rollups are not built by the migration: every cell with records is marked for the next report
            assert _dirty(engine) == cells_0001
            with engine.connect() as conn:
                assert conn.execute(sa.text("SELECT COUNT(*) FROM report_cells")).scalar() == 0
        if rev == "0007":
            assert {"week"} <= _columns(engine, "report_cells")
            assert {"period_kind", "period"} <= _columns(engine, "report_retention")
            assert _dirty(engine) == cells_0001 | {("p1", "2025-01")}  # the cost imported after 0004
        if rev == "0017":  # every cell with records marked, though none was before it
            assert _dirty(engine) >= cells_0001
            with engine.connect() as conn:
                indexes = {i["name"] for t in ("charges", "encounters") for i in sa.inspect(conn).get_indexes(t)}
            assert {"ix_charges_practice_encounter", "ix_encounters_practice_appointment"} <= indexes
        with engine.begin() as conn:
            if rev == "0016":
                conn.execute(sa.text("DELETE FROM report_dirty"))
            for sql, params in ROWS.get(rev, []):
                conn.execute(sa.text(sql), params)

    expected = {
        "practices": [("p1", "Practice One")],
        "appointments": [("a1", "2025-03-04T09:00:00-05:00")],
        "charges": [("c1", 12345)],
        "slots": [("s1",)],
        "messages": [("h1", None, None), ("h2", "control id reused", None), ("h3", None, '{"mapped": 1}')],
        "onboarding": [("k1", 10)],
        "costs": [("2025-01", 5000)],
        "pull_state": [("Appointment", "2025-06-30")],
        "encounters": [("e1", "2025-04-07T11:00:00-05:00", "st1")],
        "rvus": [(2025, "99213", 1300)],
    }
    assert _survivors(engine) == expected
    _assert_matches_model(engine)

    # down to 0009, one revision at a time, and up again: the data stays, the schema is the model's again
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM report_dirty"))
    _upgrade(engine, "0017", down=True)
    with engine.connect() as conn:
        assert "report_refreshing" not in sa.inspect(conn).get_table_names()
    assert _dirty(engine) == {("p1", "2025-08")}  # the cell a catch-up had taken waits for the next refresh
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM report_dirty"))
    _upgrade(engine, "0016", down=True)
    with engine.connect() as conn:
        indexes = {i["name"] for t in ("charges", "encounters") for i in sa.inspect(conn).get_indexes(t)}
    assert not {"ix_charges_practice_encounter", "ix_encounters_practice_appointment"} & indexes
    # the attribution changes every charge's line: 0017 (either way) marks every cell with records for the refresh
    assert _dirty(engine) >= cells_0001
    _upgrade(engine, "0015", down=True)
    with engine.connect() as conn:
        assert "report_rvus" not in sa.inspect(conn).get_table_names()
    assert not {"work_rvu_milli", "rvu_lines"} & _columns(engine, "report_cells")
    _upgrade(engine, "0014", down=True)
    with engine.connect() as conn:
        assert "alerts" not in sa.inspect(conn).get_table_names()
    _upgrade(engine, "0013", down=True)
    assert "marked_at" not in _columns(engine, "report_dirty")
    _upgrade(engine, "0012", down=True)
    assert not {"address_line", "email"} & _columns(engine, "patients")
    with engine.connect() as conn:
        assert not {"identity_links", "identity_pairs", "identity_runs"} & set(sa.inspect(conn).get_table_names())
    _upgrade(engine, "0011", down=True)
    assert "claim_line" not in _columns(engine, "charges") | _columns(engine, "remittances")
    _upgrade(engine, "0010", down=True)
    assert not {"payer_claim_id", "remark_codes", "charged_amount__stamp"} & _columns(engine, "remittances")
    assert not {"claim_id", "rendering_npi"} & _columns(engine, "charges")
    _upgrade(engine, "0009", down=True)
    assert current_revision(engine) == "0009"
    assert "tally" not in _columns(engine, "messages")
    assert "encounter_class" not in _columns(engine, "encounters")
    _upgrade(engine, "head")
    assert current_revision(engine) == revisions[-1]
    _assert_matches_model(engine)
    # the tally went with 0010's downgrade
    assert _survivors(engine) == {**expected, "messages": [("h1", None, None), ("h2", "control id reused", None),
                                                           ("h3", None, None)], "rvus": []}  # gone with 0016's

    # the rollups are rebuilt after the upgrade, from the records, by the report's own refresh
    from hub.reports.rollups import refresh_dirty

    refresh_dirty(engine)
    with engine.connect() as conn:
        site = dict(conn.execute(sa.text(
            "SELECT month, SUM(charges_cents) + SUM(costs_cents) FROM report_cells "
            "WHERE grain = 'site' AND practice = 'p1' GROUP BY month")).all())
    assert site["2025-02"] == 12345 and site["2025-01"] == 5000
    engine.dispose()


def _assert_matches_model(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), metadata)
    assert diff == [], f"the migrations and hub/model/tables.py disagree: {diff}"


def _synthetic_store(database_url: str, *, seed: int) -> sa.Engine:
    """A store of the synthetic MSO's records, written in batches as the pipeline writes them (cells marked)."""
    import random

    from hub.reports import rollups
    from hub.store import canonical
    from hub.store.engine import writer
    from hub.store.practices import add_practice
    from tests.reports import synthetic

    engine = get_engine(database_url)
    records = synthetic.build_records()
    random.Random(seed).shuffle(records)
    with writer(engine).begin() as conn:
        for slug in synthetic.SITES:
            add_practice(conn, slug, slug)
    for i in range(0, len(records), 400):
        items = [(r, None) for r in records[i:i + 400]]
        with writer(engine).begin() as conn, rollups.tracking(conn, items):
            canonical.upsert_records(conn, items)
    return engine


def test_reports_after_an_upgrade_from_before_the_rollups_equal_a_fresh_stores(database_url):
    from hub.reports import compute_report, rollups

    engine = _synthetic_store(database_url, seed=3)

    def reports() -> list[dict[str, object]]:
        rollups.refresh_dirty(engine)  # a report only reads: the marked cells are recomputed first
        return [compute_report(engine, by=by, date_from="2024-01-01", date_to="2024-06-30").to_dict()["rows"]
                for by in ("site,month", "site,week", "site,service_line,quarter", "provider,month")]

    fresh = reports()
    assert any(row["values"]["visit_volume"] for row in fresh[0])  # not a report of nothing

    # back to before the report tables, then up again: the base tables keep the records
    _upgrade(engine, "0003", down=True)
    assert "report_cells" not in sa.inspect(engine).get_table_names()
    _upgrade(engine, "head")
    with engine.connect() as conn:
        # the migrations leave the rollups to the next refresh
        assert conn.execute(sa.text("SELECT COUNT(*) FROM report_cells")).scalar() == 0
        assert conn.execute(sa.text("SELECT COUNT(*) FROM report_dirty")).scalar() > 0
    assert reports() == fresh


def test_migration_0019_moves_the_fine_rollups_both_ways_and_the_reports_stay_the_same(database_url):
    from hub.reports import compute_report, rollups

    engine = _synthetic_store(database_url, seed=5)
    rollups.refresh_dirty(engine)
    slicings = ("provider,month", "location,week", "financial_class,service_line,quarter", "provider,site,year")

    def reports() -> list[object]:
        return [compute_report(engine, by=by, date_from="2024-01-01", date_to="2024-12-31").to_dict()["rows"]
                for by in slicings]

    def fine_sums(table: str, where: str = "") -> tuple[object, ...]:
        with engine.connect() as conn:
            return tuple(conn.execute(sa.text(
                f"SELECT SUM(visits), SUM(appts_scheduled), SUM(charges_cents), SUM(payments_cents) FROM {table} "
                f"{where}")).one())

    before = reports()
    assert any(row["values"]["visit_volume"] for row in before[0])
    fine = fine_sums("report_fine_cells")
    with engine.connect() as conn:
        credits = conn.execute(sa.text("SELECT SUM(credits_cents) FROM report_fine_credits")).scalar()
        lead = conn.execute(sa.text("SELECT SUM(n) FROM report_fine_hist WHERE metric = 'lead_days'")).scalar()
    assert all(fine) and credits and lead

    _upgrade(engine, "0018", down=True)  # the fine rows go back under the rollup tables' key, one row per key
    with engine.connect() as conn:
        assert "report_fine_cells" not in sa.inspect(conn).get_table_names()
        rows, keys = conn.execute(sa.text(
            "SELECT COUNT(*), COUNT(DISTINCT practice || '|' || location || '|' || provider || '|' || service_line "
            "|| '|' || financial_class || '|' || month || '|' || week) FROM report_cells WHERE grain = 'fine'")).one()
        assert rows == keys > 0
        assert conn.execute(sa.text("SELECT SUM(credits_cents) FROM report_credits WHERE grain = 'fine'")).scalar() \
            == credits
        assert conn.execute(sa.text("SELECT SUM(n) FROM report_hist WHERE grain = 'fine' AND metric = 'lead_days'")
                            ).scalar() == lead
    assert fine_sums("report_cells", "WHERE grain = 'fine'") == fine

    _upgrade(engine, "head")  # and over again: moved, not recomputed (no cell waits)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM report_dirty")).scalar() == 0
        assert conn.execute(sa.text("SELECT COUNT(*) FROM report_cells WHERE grain = 'fine'")).scalar() == 0
    assert fine_sums("report_fine_cells") == fine
    assert reports() == before
    engine.dispose()
