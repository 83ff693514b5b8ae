"""Drill-down from a KPI figure to its records, on a small store whose figures are known by hand."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from hub.reports import rollups
from hub.reports.drill import NoDrillDown, drill_down, to_csv
from hub.store import canonical
from hub.store.engine import dispose_engines, get_engine, writer
from hub.store.practices import add_practice
from tests.conftest import PG_ADMIN_URL, need_service

MONTH = "2025-03"
# north, March 2025: 20 scheduled appointments: 3 no-shows (N1, N2 by DR1; N3 by DR2), 2 cancelled
# (C1 two hours before its start: late; C2 three days before), 12 fulfilled, 3 booked. Not scheduled:
# one entered in error. Elsewhere: one no-show in April, two no-shows at south in March.
NOSHOWS = {"N1": "DR1", "N2": "DR1", "N3": "DR2"}


def _appt(site: str, source_id: str, day: int, status: str, provider: str = "DR9", month: str = MONTH,
          **extra: Any) -> dict[str, Any]:
    return {"kind": "appointment", "practice": site, "source_id": source_id, "patient_source_id": f"P-{source_id}",
            "provider_source_id": provider, "location_source_id": "L1", "start": f"{month}-{day:02d}T09:00:00-05:00",
            "duration_min": 30, "service_line": "dermatology", "visit_category": "followup", "status": status,
            **extra}


def _batches() -> list[list[tuple[dict[str, Any], int]]]:
    first: list[tuple[dict[str, Any], int]] = []
    message = iter(range(1001, 2000))
    for n, (sid, provider) in enumerate(sorted(NOSHOWS.items()), start=1):
        # N1 arrives booked first; its no-show comes in a later message (below)
        first.append((_appt("north", sid, n, "booked" if sid == "N1" else "noshow", provider), next(message)))
    first.append((_appt("north", "C1", 10, "cancelled", cancelled_at=f"{MONTH}-10T07:00:00-05:00"), next(message)))
    first.append((_appt("north", "C2", 11, "cancelled", cancelled_at=f"{MONTH}-08T09:00:00-05:00"), next(message)))
    first += [(_appt("north", f"F{i}", 12 + i, "fulfilled"), next(message)) for i in range(12)]
    first += [(_appt("north", f"B{i}", 25 + i, "booked"), next(message)) for i in range(3)]
    first.append((_appt("north", "X1", 5, "entered-in-error"), next(message)))
    first.append((_appt("north", "APR", 3, "noshow", month="2025-04"), next(message)))
    first += [(_appt("south", f"S{i}", 4, "noshow"), next(message)) for i in range(2)]
    # charges of March: 100.00 + 250.50 + 49.50 = 400.00; two paid, with contractual (CO) adjustments
    for sid, cents in (("CH1", 10000), ("CH2", 25050), ("CH3", 4950)):
        first.append(({"kind": "charge", "practice": "north", "source_id": sid, "patient_source_id": f"P-{sid}",
                       "provider_source_id": "DR1", "location_source_id": "L1", "service_date": dt.date(2025, 3, 7),
                       "posted_on": dt.date(2025, 3, 9), "amount": Decimal(cents) / 100,
                       "financial_class": "commercial", "service_line": "dermatology"}, next(message)))
    for sid, charge, paid, co in (("RM1", "CH1", "80.00", "20.00"), ("RM2", "CH2", "200.00", "50.50")):
        first.append(({"kind": "remittance", "practice": "north", "source_id": sid, "charge_source_id": charge,
                       "paid_amount": Decimal(paid), "adjustment_amount": Decimal(co),
                       "adjustments": [{"group": "CO", "reason": "45", "amount": co}], "denied": False,
                       "paid_on": dt.date(2025, 4, 2)}, next(message)))
    later = [(_appt("north", "N1", 1, "noshow", "DR1"), 3001)]
    return [first, later]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One store per database for the whole module: the tests only read it (and add audit rows)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('drill') / 'store.db'}"
        return
    need_service("PostgreSQL", "127.0.0.1", 5432)
    name = f"hub_test_drill_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        dispose_engines()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def store(database_url: str) -> Any:
    engine = get_engine(database_url)
    with writer(engine).begin() as conn:
        add_practice(conn, "north", "North")
        add_practice(conn, "south", "South")
    for batch in _batches():
        with writer(engine).begin() as conn, rollups.tracking(conn, batch):
            canonical.upsert_records(conn, batch)
    rollups.refresh_dirty(engine)
    return engine


def test_no_show_rate_lists_its_numerator_and_denominator_with_their_messages(store: Any) -> None:
    result = drill_down(store, "no_show_rate", site="north", month=MONTH)
    assert result.value == 0.15
    assert sorted(r["source_id"] for r in result.numerator) == ["N1", "N2", "N3"]
    assert result.denominator is not None and len(result.denominator) == 20
    assert "X1" not in {r["source_id"] for r in result.denominator}
    n1 = next(r for r in result.numerator if r["source_id"] == "N1")
    assert n1["messages"] == [1001, 3001]  # booked, then the no-show
    assert (n1["kind"], n1["practice"], n1["status"], n1["provider"]) == ("appointment", "north", "noshow", "DR1")
    assert n1["patient_source_id"] == "P-N1"
    assert not {"family_name", "given_name", "birth_date"} & set(n1)
    assert all(len(r["messages"]) == 1 for r in result.numerator if r["source_id"] != "N1")


def test_the_slice_narrows_by_provider_as_the_report_does(store: Any) -> None:
    result = drill_down(store, "no_show_rate", site="north", month=MONTH, provider="DR1")
    assert sorted(r["source_id"] for r in result.numerator) == ["N1", "N2"]
    assert result.denominator is not None and len(result.denominator) == 2
    assert result.value == 1.0
    assert result.slice == {"site": "north", "month": MONTH, "provider": "DR1"}
    late = drill_down(store, "late_cancellation_rate", site="north", month=MONTH)
    assert [r["source_id"] for r in late.numerator] == ["C1"]


def test_money_kpis_list_the_lines_that_sum_to_the_figure(store: Any) -> None:
    gross = drill_down(store, "gross_charges", site="north", month=MONTH)
    assert gross.value == "400.00" and gross.denominator is None
    assert sorted(r["amount"] for r in gross.numerator) == ["100.00", "250.50", "49.50"]
    net = drill_down(store, "net_collection_rate", site="north", month=MONTH)
    assert sorted((r["source_id"], r["amount"]) for r in net.numerator) == [("RM1", "80.00"), ("RM2", "200.00")]
    # the denominator: the charges less their contractual adjustments, 400.00 - 70.50
    assert net.denominator is not None
    assert sorted((r["source_id"], r["amount"]) for r in net.denominator) == [
        ("CH1", "100.00"), ("CH2", "250.50"), ("CH3", "49.50"), ("RM1", "-20.00"), ("RM2", "-50.50")]
    assert net.value == round(280 / 329.5, 6)
    lines = to_csv(net).splitlines()
    assert lines[0].startswith("part,measure,kind,practice,source_id") and len(lines) == 1 + 2 + 5


def test_a_figure_that_is_no_sum_of_records_is_refused(store: Any) -> None:
    with pytest.raises(NoDrillDown, match=r"KPI lead_time_days has no record-level drill-down \(it is a median"):
        drill_down(store, "lead_time_days", site="north", month=MONTH)
    with pytest.raises(NoDrillDown, match="imported costs"):
        drill_down(store, "margin", site="north", month=MONTH)


def test_cli_prints_the_records_and_audits_the_read(store: Any, database_url: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.cli import cli
    from hub.model.tables import audit_log

    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    runner = CliRunner()
    before = _last_audit(store)
    out = runner.invoke(cli, ["report", "drill", "no_show_rate", "--site", "north", "--month", MONTH])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert (data["kpi"], len(data["numerator"]), len(data["denominator"])) == ("no_show_rate", 3, 20)
    refused = runner.invoke(cli, ["report", "drill", "third_next_available_days", "--site", "north",
                                   "--month", MONTH])
    assert refused.exit_code == 1 and "has no record-level drill-down" in refused.output
    with store.connect() as conn:
        rows = conn.execute(sa.select(audit_log.c.action, audit_log.c.address, audit_log.c.outcome)
                            .where(audit_log.c.action == "reports.drill", audit_log.c.id > before)
                            .order_by(audit_log.c.id)).all()
    assert [r.outcome for r in rows] == ["23 records", "refused: NoDrillDown"]
    assert all(r.address.startswith("cli:") for r in rows)


def test_api_answers_analysts_audited_and_refuses_feed_keys(store: Any, database_url: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.app import create_app
    from hub.model.tables import audit_log
    from hub.runtime import Runtime
    from hub.security.keys import create_key

    monkeypatch.setenv("HUB_KEY_CACHE_SECONDS", "0")
    monkeypatch.setenv("HUB_RATE_LIMIT", "0")
    with writer(store).begin() as conn:
        analyst, feed = create_key(conn, "analyst"), create_key(conn, "feed", "north")
    client = create_app(Runtime.create(database_url=database_url, dispatcher="inline")).test_client()
    before = _last_audit(store)
    url = f"/api/v1/reports/kpis/no_show_rate/records?site=north&month={MONTH}"
    ok = client.get(url, headers={"Authorization": f"Bearer {analyst}"})
    assert ok.status_code == 200, ok.get_data(as_text=True)
    answer = ok.get_json()
    assert (len(answer["numerator"]), len(answer["denominator"]), answer["value"]) == (3, 20, 0.15)
    assert client.get(url, headers={"Authorization": f"Bearer {feed}"}).status_code == 403
    median = client.get(f"/api/v1/reports/kpis/lead_time_days/records?site=north&month={MONTH}",
                        headers={"Authorization": f"Bearer {analyst}"})
    assert median.status_code == 400 and "no record-level drill-down" in median.get_json()["detail"]
    unknown = client.get(f"/api/v1/reports/kpis/no_show_rate/records?site=nowhere&month={MONTH}",
                         headers={"Authorization": f"Bearer {analyst}"})
    assert unknown.status_code == 404
    with store.connect() as conn:
        outcomes = [r.outcome for r in conn.execute(
            sa.select(audit_log.c.outcome).where(audit_log.c.action == "reports.drill", audit_log.c.id > before)
            .order_by(audit_log.c.id))]
    assert outcomes == ["23 records", "refused 403", "refused 400", "refused 404"]


def _last_audit(engine: Any) -> int:
    from hub.model.tables import audit_log

    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.max(audit_log.c.id))).scalar() or 0)
