"""The engine's figures against the same KPIs computed independently, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest
import sqlalchemy as sa

from hub.reports import compute_report, rollups
from hub.store import canonical
from hub.store.engine import get_engine, writer
from hub.store.practices import add_practice
from tests.reports import synthetic

CHECKED = ("visit_volume", "new_patient_visits", "new_patient_share", "no_show_rate", "cancellation_rate",
           "late_cancellation_rate", "schedule_utilization", "lead_time_days", "referrals_received",
           "referral_scheduled_rate", "referral_attended_rate", "cosmetic_consult_conversion", "gross_charges",
           "payments", "adjustments", "net_collection_rate", "denial_rate", "denial_rate_usd", "charge_lag_days",
           "payer_mix_medicare", "payer_mix_unknown", "charges_per_visit")


def _load(url: str) -> tuple[Any, list[list[dict[str, Any]]]]:
    engine = get_engine(url)
    records = synthetic.build_records()
    rnd = random.Random(3)
    rnd.shuffle(records)  # older visits arrive after newer ones, remittances before their charges
    batches = [records[i:i + 400] for i in range(0, len(records), 400)]
    batches.append(synthetic.changes(records))
    with writer(engine).begin() as conn:
        for slug in synthetic.SITES:
            add_practice(conn, slug, slug.replace("-", " ").title())
    for batch in batches:
        items = [(r, None) for r in batch]
        with writer(engine).begin() as conn, rollups.tracking(conn, items):
            canonical.upsert_records(conn, items)
    rollups.refresh_dirty(engine)  # ingest only marks cells; a report reads what a refresh committed
    return engine, batches


@pytest.fixture
def loaded(database_url: str) -> tuple[Any, dict[Any, dict[str, Any]]]:
    engine, batches = _load(database_url)
    return engine, synthetic.final_state(batches)


def test_every_kpi_by_site_and_month_matches_plain_python(loaded: Any) -> None:
    engine, state = loaded
    want = synthetic.expected(state)
    report = compute_report(engine, by="site,month", date_from="2024-01-01", date_to="2024-05-31")
    got = {(r["slice"]["site"], r["slice"]["month"]): r["values"] for r in report.to_dict()["rows"]}
    checked = 0
    for key, values in want.items():
        if not "2024-01" <= key[1] <= "2024-05":
            continue
        for kpi in CHECKED:
            assert got[key][kpi] == values[kpi], (key, kpi)
            checked += 1
    assert checked > 300


def test_mso_total_and_site_median(loaded: Any) -> None:
    engine, state = loaded
    want = synthetic.expected(state)
    report = compute_report(engine, by="site,month", date_from="2024-02-01", date_to="2024-03-31").to_dict()
    totals = {r["slice"]["month"]: r["values"] for r in report["total"]}
    for month in ("2024-02", "2024-03"):
        assert totals[month]["visit_volume"] == sum(want[(s, month)]["visit_volume"] for s in synthetic.SITES)
        cents = sum(int(want[(s, month)]["gross_charges"].replace(".", "")) for s in synthetic.SITES)
        assert totals[month]["gross_charges"] == f"{cents / 100:.2f}"
    medians = {r["slice"]["month"]: r["values"] for r in report["site_median"]}
    volumes = sorted(want[(s, "2024-02")]["visit_volume"] for s in synthetic.SITES)
    assert medians["2024-02"]["visit_volume"] == volumes[1]
    assert [s["slug"] for s in report["sites"]] == list(synthetic.SITES)


def test_retention_is_exact_for_sites_and_the_mso(loaded: Any) -> None:
    engine, state = loaded
    report = compute_report(engine, by="site,month", date_from="2024-02-01", date_to="2024-05-31").to_dict()
    for row in report["rows"]:
        site, month = row["slice"]["site"], row["slice"]["month"]
        assert row["values"]["patient_retention"] == synthetic.expected_retention(state, site, month), (site, month)
    for row in report["total"]:
        month = row["slice"]["month"]
        assert row["values"]["patient_retention"] == synthetic.expected_retention(state, None, month), month


PERIOD_RANGES = {"week": ("2024-01-03", "2024-05-29"), "quarter": ("2024-01-01", "2024-06-30"),
                 "year": ("2024-01-01", "2024-12-31")}


@pytest.mark.parametrize("kind", list(PERIOD_RANGES))
def test_every_kpi_by_site_and_week_quarter_year_matches_plain_python(loaded: Any, kind: str) -> None:
    engine, state = loaded
    want = synthetic.expected(state, kind)
    first, last = PERIOD_RANGES[kind]
    report = compute_report(engine, by=f"site,{kind}", date_from=first, date_to=last).to_dict()
    got = {(r["slice"]["site"], r["slice"][kind]): r["values"] for r in report["rows"]}
    lo, hi = (synthetic.period_of(dt.date.fromisoformat(day), kind) for day in (first, last))
    wanted = {key: values for key, values in want.items() if lo <= key[1] <= hi}
    assert set(got) == set(wanted)  # whole weeks: the one of Wednesday 3 January to the one of 29 May
    checked = 0
    for key, values in wanted.items():
        for kpi in CHECKED:
            assert got[key][kpi] == values[kpi], (key, kpi)
            checked += 1
        assert got[key]["patient_retention"] == synthetic.expected_retention(state, key[0], key[1], kind), key
    assert checked > {"week": 1000, "quarter": 100, "year": 50}[kind]
    for row in report["total"]:
        period = row["slice"][kind]
        assert row["values"]["patient_retention"] == synthetic.expected_retention(state, None, period, kind)
    if kind == "week":
        assert report["from"] == "2024-01-01" and report["to"] == "2024-06-02"
        extras = synthetic.expected_week_extras(state)
        for key, values in got.items():
            for kpi, figure in extras[key].items():
                assert values[kpi] == figure, (key, kpi)


def test_weeks_add_up_to_months_and_a_straddling_week_takes_both_months(loaded: Any) -> None:
    engine, state = loaded
    straddling = compute_report(engine, by="site,week", date_from="2024-01-29", date_to="2024-02-04").to_dict()
    assert {r["slice"]["week"] for r in straddling["rows"]} == {"2024-W05"}  # Monday 29 January to Sunday 4 February
    want = synthetic.expected(state, "week")
    for row in straddling["rows"]:
        assert row["values"]["visit_volume"] == want[(row["slice"]["site"], "2024-W05")]["visit_volume"]
    weeks = compute_report(engine, by="week").to_dict()
    months = compute_report(engine, by="month").to_dict()
    for kpi in ("visit_volume", "referrals_received"):
        assert sum(r["values"][kpi] for r in weeks["rows"]) == sum(r["values"][kpi] for r in months["rows"])
    cents = [sum(int(r["values"]["gross_charges"].replace(".", "")) for r in doc["rows"]) for doc in (weeks, months)]
    assert cents[0] == cents[1]


def test_fine_slicing_adds_up_to_the_site(loaded: Any) -> None:
    engine, _ = loaded
    fine = compute_report(engine, by="site,provider,location,month", date_from="2024-03-01", date_to="2024-03-31")
    coarse = compute_report(engine, by="site,month", date_from="2024-03-01", date_to="2024-03-31")
    for row in coarse.rows:
        site = row["slice"]["site"]
        parts = [r["values"] for r in fine.rows if r["slice"]["site"] == site]
        assert sum(p["visit_volume"] for p in parts) == row["values"]["visit_volume"]
        assert f"{sum(float(p['gross_charges']) for p in parts):.2f}" == row["values"]["gross_charges"]
        assert row["values"]["patient_retention"] is not None
    assert all(r["values"]["patient_retention"] is None for r in fine.rows)  # distinct patients: site level only


def test_quarter_folds_months_and_rebuild_gives_the_same(loaded: Any) -> None:
    engine, _ = loaded
    by_month = compute_report(engine, by="month", date_from="2024-01-01", date_to="2024-03-31")
    by_quarter = compute_report(engine, by="quarter", date_from="2024-01-01", date_to="2024-03-31")
    assert by_quarter.rows[0]["slice"] == {"quarter": "2024-Q1"}
    assert by_quarter.rows[0]["values"]["visit_volume"] == sum(r["values"]["visit_volume"] for r in by_month.rows)
    before = compute_report(engine, by="site,month").to_dict()
    with writer(engine).begin() as conn:
        for table in ("report_cells", "report_hist", "report_credits", "report_fine_cells", "report_fine_hist",
                      "report_fine_credits", "report_retention", "report_visits"):
            conn.exec_driver_sql(f"DELETE FROM {table}")
        rollups.rebuild_all(conn)
    after = compute_report(engine, by="site,month").to_dict()
    assert before["rows"] == after["rows"] and before["total"] == after["total"]


def test_kept_medians_equal_medians_from_the_fine_histograms(loaded: Any) -> None:
    from hub.reports.medians import medians
    from hub.reports.tables import WEEKLY_THIRD_AVAILABLE

    engine, _ = loaded
    rollups.refresh_dirty(engine)  # ingest only marks cells; a report (or this) recomputes them
    monthly, weekly = "third_available_days", WEEKLY_THIRD_AVAILABLE
    with engine.connect() as conn:
        fine = medians(conn, ["practice", "month"], "metric <> :skip", {"skip": weekly}, table="report_fine_hist")
        fine_weeks = medians(conn, ["practice", "week"], "metric <> :skip", {"skip": monthly},
                             table="report_fine_hist")
        kept = {(r.practice, r.month or r.week, r.metric): r.median
                for r in conn.exec_driver_sql("SELECT practice, month, week, metric, median FROM report_medians "
                                              "WHERE grain = 'pm'")}
    want = {(p, m, metric): v for (p, m), values in fine.items() for metric, v in values.items()}
    want.update({(p, w, monthly if metric == weekly else metric): v
                 for (p, w), values in fine_weeks.items() for metric, v in values.items()})
    assert kept and any(len(k[1]) == 10 for k in kept) and want == kept


def test_migration_0007_reshapes_and_refills_the_rollups_of_a_store_with_records(database_url: str) -> None:
    from alembic import command

    from hub.store.engine import alembic_config, current_revision, head_revision

    engine, _ = _load(database_url)
    before = compute_report(engine, by="site,week").to_dict()
    by_month = compute_report(engine, by="site,month").to_dict()
    for target, command_ in (("0006", command.downgrade), ("head", command.upgrade)):
        cfg = alembic_config(engine)
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command_(cfg, target)
        if target == "0006":  # the 0004 shape: no week columns, retention by month
            with engine.connect() as conn:
                columns = {c["name"] for c in sa.inspect(conn).get_columns("report_cells")}
            assert "week" not in columns and "month" in columns
    assert current_revision(engine) == head_revision(engine)
    rollups.refresh_dirty(engine)  # the upgrade marks every cell; a report only reads
    after = compute_report(engine, by="site,week").to_dict()
    assert before["rows"] and before["rows"] == after["rows"] and before["total"] == after["total"]
    assert by_month["rows"] == compute_report(engine, by="site,month").to_dict()["rows"]
