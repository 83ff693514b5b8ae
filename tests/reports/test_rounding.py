"""One rounding rule for money: the same records give the same report, cell for cell, on SQLite and
PostgreSQL, and its money figures are the input amounts rounded half up to the cent, then summed
as integers (an oracle of its own, by integer arithmetic on the amounts' digits).

Amounts are random, with exact half cents (0.285, 1.005, 2.675, ...) and negative ones (reversals,
a half cent of which goes away from zero) among them, sent in every form validation reads: the
canonical decimal string, a ``Decimal``, and text only marshmallow reads (padded, thousands
separators). The records are also stored *unvalidated*, as rows written before the rule: the
store's cents and the reports' sums of ``adjustments`` JSON must round them half up alike.
"""

from __future__ import annotations

import calendar
import datetime as dt
import random
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hub.model import validate_record
from hub.reports import compute_report, rollups
from hub.reports.costs import import_costs, parse_costs
from hub.reports.rollups import Sql
from hub.store import canonical
from hub.store.engine import get_engine, writer
from hub.store.practices import add_practice
from tests.support.money import half_up_cents

SITES = ("north", "south", "spa")
LINES = ("dermatology", "cosmetic")
MONTHS = ("2024-01", "2024-02", "2024-03", "2024-04")
FCS = ("commercial", "medicare", "medicaid", "self_pay", "other", None)
HALVES = ("0.285", "1.005", "2.675", "0.125", "10.115", "0.005", "-0.285", "-1.005", "-0.005", "1234.565")
MONEY_KPIS = ("gross_charges", "payments", "adjustments", "net_collection_rate", "denial_rate_usd",
              "charges_per_visit", "payments_per_visit", "costs", "margin", "margin_rate", "days_in_ar",
              "ar_over_90_share", *(f"payer_mix_{fc or 'unknown'}" for fc in FCS))


def _amount(rnd: random.Random, top: int, *, negative: float = 0.0) -> str:
    """A decimal string: often an exact half cent, else up to three places (a tenth of them half cents)."""
    if rnd.random() < 0.25:
        text = rnd.choice(HALVES)
        return text if negative or not text.startswith("-") else text[1:]
    mills = rnd.randrange(0, top * 1000) * (-1 if rnd.random() < negative else 1)
    places = rnd.choice((0, 1, 2, 3, 3, 3))
    units = mills // 10 ** (3 - places)
    digits = str(abs(units)).rjust(places + 1, "0")
    body = f"{digits[:-places]}.{digits[-places:]}" if places else digits
    return ("-" if units < 0 else "") + body


def _sent(rnd: random.Random, text: str) -> Any:
    """The amount in one of the forms a record may carry it."""
    form = rnd.randrange(4)
    if form == 1:
        return Decimal(text)
    if form == 2:
        return f" {text} "  # read by marshmallow, not the fast path
    if form == 3 and "." in text and abs(Decimal(text)) >= 1000:
        whole, _, frac = text.lstrip("-").partition(".")
        return ("-" if text.startswith("-") else "") + f"{int(whole):,}.{frac}"
    return text


def _day(rnd: random.Random) -> dt.date:
    return dt.date(2024, 1, 1) + dt.timedelta(days=rnd.randrange(0, 121))  # January to April


def build(seed: int) -> tuple[list[dict[str, Any]], str]:
    """Records (amounts as sent) and a costs CSV; each money value is a plain decimal string in
    ``record["_raw"]`` too, for the oracle."""
    rnd = random.Random(seed)
    records: list[dict[str, Any]] = []
    costs = ["practice,service_line,month,cost"]
    for site in SITES:
        for n in range(40):
            day = _day(rnd)
            records.append({"kind": "appointment", "practice": site, "source_id": f"A{n}",
                            "patient_source_id": f"P{n % 15}", "start": f"{day.isoformat()}T10:00:00-05:00",
                            "status": rnd.choice(("fulfilled", "fulfilled", "fulfilled", "noshow")),
                            "service_line": rnd.choice(LINES)})
        for n in range(70):
            day = _day(rnd)
            amount = _amount(rnd, 2500, negative=0.05)  # a reversed charge line now and then
            records.append({"kind": "charge", "practice": site, "source_id": f"C{n}", "service_date": day.isoformat(),
                            "amount": _sent(rnd, amount), "financial_class": rnd.choice(FCS),
                            "service_line": rnd.choice(LINES), "_raw": {"amount": amount}})
            if rnd.random() < 0.8:
                paid, adjusted = _amount(rnd, 500), _amount(rnd, 300, negative=0.1)
                parts = [("CO", _amount(rnd, 300, negative=0.15)) for _ in range(rnd.randrange(0, 3))]
                parts.append(("PR", _amount(rnd, 50)))
                records.append({
                    "kind": "remittance", "practice": site, "source_id": f"R{n}", "charge_source_id": f"C{n}",
                    "paid_amount": _sent(rnd, paid), "adjustment_amount": _sent(rnd, adjusted),
                    "adjustments": [{"group": g, "reason": "45", "amount": _sent(rnd, a)} for g, a in parts],
                    "denied": rnd.random() < 0.15,
                    "paid_on": (day + dt.timedelta(days=rnd.randrange(0, 100))).isoformat(),
                    "_raw": {"paid_amount": paid, "adjustment_amount": adjusted, "adjustments": parts}})
        for line in LINES:
            for month in MONTHS:
                if rnd.random() < 0.8:
                    costs.append(f"{site},{line},{month},{_amount(rnd, 20000)}")
    rnd.shuffle(records)  # remittances before their charges, and so on
    return records, "\n".join(costs) + "\n"


def _stored_form(record: dict[str, Any], validated: bool) -> dict[str, Any]:
    """The record as the store gets it: validated (the rule applied), or as a row of before the rule
    (Python values, amounts exact as sent)."""
    raw = record.get("_raw", {})
    out = validate_record({k: v for k, v in record.items() if k != "_raw"})
    if not validated:
        for name in ("amount", "paid_amount", "adjustment_amount"):
            if name in raw:
                out[name] = Decimal(raw[name])
        if "adjustments" in raw:
            out["adjustments"] = [{"group": g, "reason": "45", "amount": str(Decimal(a))}
                                  for g, a in raw["adjustments"]]
    return out


def load(url: str, records: list[dict[str, Any]], costs_csv: str, validated: bool) -> sa.Engine:
    engine = get_engine(url)
    with writer(engine).begin() as conn:
        for slug in SITES:
            add_practice(conn, slug, slug.title())
    stored = [_stored_form(r, validated) for r in records]
    for i in range(0, len(stored), 150):
        items = [(r, None) for r in stored[i:i + 150]]
        with writer(engine).begin() as conn, rollups.tracking(conn, items):
            canonical.upsert_records(conn, items)
    with writer(engine).begin() as conn:
        import_costs(conn, parse_costs(costs_csv, source="costs.csv"), source="costs.csv")
    rollups.refresh_dirty(engine)  # ingest only marks cells; a report reads what a refresh committed
    return engine


# ------------------------------------------------------------------ the oracle
def _usd(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def _per(cents: int, n: int) -> str:
    """cents / n, half a cent away from zero, by integer arithmetic."""
    sign = -1 if cents < 0 else 1
    return _usd(sign * ((2 * abs(cents) + n) // (2 * n)))


def _ratio(a: int, b: int) -> float | None:
    return None if b == 0 else round(a / b, 6)


def _shift(month: str, delta: int) -> str:
    i = int(month[:4]) * 12 + int(month[5:7]) - 1 + delta
    return f"{i // 12:04d}-{i % 12 + 1:02d}"


def oracle(records: list[dict[str, Any]], costs_csv: str) -> dict[tuple[str, str], dict[str, Any]]:
    """The money KPIs by (site, month): each amount half up to the cent, then integer sums."""
    cell: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    charges = {(r["practice"], r["source_id"]): r for r in records if r["kind"] == "charge"}
    credits: list[tuple[str, str, str, int]] = []  # (site, service month, paid month, cents)
    for r in records:
        if r["kind"] == "appointment" and r["status"] == "fulfilled":
            cell[(r["practice"], r["start"][:7])]["visits"] += 1
        elif r["kind"] == "charge":
            c = cell[(r["practice"], r["service_date"][:7])]
            cents = half_up_cents(r["_raw"]["amount"])
            c["charges"] += cents
            c[f"fc_{r['financial_class'] or 'unknown'}"] += cents
        elif r["kind"] == "remittance":
            charge = charges[(r["practice"], r["charge_source_id"])]
            month, raw = charge["service_date"][:7], r["_raw"]
            c = cell[(r["practice"], month)]
            paid, adjusted = half_up_cents(raw["paid_amount"]), half_up_cents(raw["adjustment_amount"])
            c["payments"] += paid
            c[f"paid_{charge['service_line']}"] += paid
            c["adjustments"] += adjusted
            c["contractual"] += sum(half_up_cents(a) for g, a in raw["adjustments"] if g == "CO")
            c["adjudicated"] += half_up_cents(charge["_raw"]["amount"])
            c["denied"] += half_up_cents(charge["_raw"]["amount"]) if r["denied"] else 0
            credits.append((r["practice"], month, r["paid_on"][:7], paid + adjusted))
    for line in costs_csv.splitlines()[1:]:
        site, service_line, month, cost = line.split(",")
        cell[(site, month)]["costs"] += half_up_cents(cost)
        cell[(site, month)]["cost_rows"] += 1
        cell[(site, month)][f"costed_{service_line}"] = 1
    out = {}
    for site in SITES:
        for month in MONTHS:
            c = cell[(site, month)]
            recent_from = _shift(month, -2)
            served = [(m, v["charges"]) for (s, m), v in cell.items() if s == site and m <= month]
            paid_by = [(m, cents) for s, m, p, cents in credits if s == site and m <= month and p <= month]
            balance = sum(cents for _, cents in served) - sum(cents for _, cents in paid_by)
            aged = (sum(cents for m, cents in served if m < recent_from)
                    - sum(cents for m, cents in paid_by if m < recent_from))
            recent = sum(cents for m, cents in served if m >= recent_from)
            days = sum(calendar.monthrange(int(m[:4]), int(m[5:]))[1] for m in (_shift(month, -k) for k in range(3)))
            pay, cost = c["payments"], c["costs"]
            # margin sets costs against the payments of the service lines whose costs were imported
            costed = sum(c[f"paid_{line}"] for line in LINES if c[f"costed_{line}"])
            out[(site, month)] = {
                "gross_charges": _usd(c["charges"]), "payments": _usd(pay), "adjustments": _usd(c["adjustments"]),
                "net_collection_rate": None if c["charges"] - c["contractual"] <= 0
                else round(pay / (c["charges"] - c["contractual"]), 6),
                "denial_rate_usd": _ratio(c["denied"], c["adjudicated"]),
                "charges_per_visit": _per(c["charges"], c["visits"]) if c["visits"] else None,
                "payments_per_visit": _per(pay, c["visits"]) if c["visits"] else None,
                "costs": _usd(cost) if c["cost_rows"] else None,
                "margin": _usd(costed - cost) if c["cost_rows"] else None,
                "margin_rate": round((costed - cost) / costed, 6) if c["cost_rows"] and costed else None,
                "days_in_ar": round(balance / (recent / days), 2) if recent > 0 else None,
                "ar_over_90_share": round(aged / balance, 6) if balance > 0 else None,
                **{f"payer_mix_{fc or 'unknown'}": _ratio(c[f"fc_{fc or 'unknown'}"], c["charges"]) for fc in FCS},
            }
    return out


# ------------------------------------------------------------------ the tests
SLICINGS = ("site,month", "site,financial_class,month", "site,service_line,month", "month", "site,quarter")


@pytest.mark.parametrize("validated", [True, False], ids=["validated", "stored-before-the-rule"])
def test_sqlite_and_postgresql_agree_cell_by_cell_and_with_the_oracle(tmp_path: Path, pg_url: str,
                                                                      validated: bool) -> None:
    records, costs_csv = build(seed=285)
    stores = {"sqlite": load(f"sqlite:///{tmp_path / 'rounding.db'}", records, costs_csv, validated),
              "postgresql": load(pg_url, records, costs_csv, validated)}
    compared = 0
    for by in SLICINGS:
        docs = {name: compute_report(engine, by=by, date_from="2024-01-01", date_to="2024-04-30").to_dict()
                for name, engine in stores.items()}
        lite, pg = docs["sqlite"], docs["postgresql"]
        for section in ("rows", "total", "site_median"):
            assert [r["slice"] for r in lite[section]] == [r["slice"] for r in pg[section]], (by, section)
            for a, b in zip(lite[section], pg[section], strict=True):
                assert a["values"].keys() == b["values"].keys()
                for kpi, value in a["values"].items():
                    assert value == b["values"][kpi], (by, section, a["slice"], kpi)
                    compared += 1
    assert compared > 2000

    want = oracle(records, costs_csv)
    checked = 0
    for name, engine in stores.items():
        doc = compute_report(engine, by="site,month", date_from="2024-01-01", date_to="2024-04-30").to_dict()
        got = {(r["slice"]["site"], r["slice"]["month"]): r["values"] for r in doc["rows"]}
        assert set(got) == set(want)
        for key, values in want.items():
            for kpi in MONEY_KPIS:
                assert got[key][kpi] == values[kpi], (name, key, kpi)
                checked += 1
    assert checked == 2 * len(SITES) * len(MONTHS) * len(MONEY_KPIS)


def test_the_oracle_sees_half_cents_and_negatives() -> None:
    """The data exercises the rule: many exact half cents, of both signs, in columns and in adjustments."""
    records, _ = build(seed=285)
    raws = [r["_raw"]["amount"] for r in records if r["kind"] == "charge"]
    adjustments = [a for r in records if r["kind"] == "remittance" for _, a in r["_raw"]["adjustments"]]
    for amounts in (raws, adjustments):
        halves = [a for a in amounts if "." in a and len(a.split(".")[1]) == 3 and a.endswith("5")]
        assert len(halves) > 20
        assert any(a.startswith("-") for a in halves)
    assert any(not isinstance(r.get("amount", ""), str) for r in records)  # Decimals
    assert any(str(r.get("amount", "")).startswith(" ") for r in records)  # marshmallow's path
    assert any("," in str(r.get("amount", "")) for r in records)


def test_contractual_cents_in_sql_is_exact_half_up_on_both_stores(database_url: str) -> None:
    """The SQL that sums ``adjustments`` amounts, fed amounts that are not whole cents (rows stored before
    the rule), gives the oracle's integer on either store (a REAL would make 0.285 * 100 = 28.4999...)."""
    rnd = random.Random(5)
    amounts = [*HALVES, "12", "-12", "0.5", ".5", "5.", "0.004", "0.0049999", "999999999999.995"]
    amounts += [_amount(rnd, 10000, negative=0.3) for _ in range(300)]
    engine = sa.create_engine(database_url)
    sql = Sql(engine.dialect.name).contractual_cents("t.adjustments")
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE rounding_probe (i INTEGER, adjustments JSON)"))
            conn.execute(sa.text("INSERT INTO rounding_probe VALUES (:i, :a)"), [
                {"i": i, "a": f'[{{"group": "CO", "amount": "{a}"}}, {{"group": "PR", "amount": "7.005"}}, '
                             f'{{"group": "CO", "amount": null}}]'} for i, a in enumerate(amounts)])
            conn.execute(sa.text("INSERT INTO rounding_probe VALUES (-1, NULL), (-2, '{}')"))
            got = dict(conn.execute(sa.text(f"SELECT t.i, {sql} FROM rounding_probe t")).all())
    finally:
        engine.dispose()
    assert {i: int(v) for i, v in got.items() if i >= 0} == {i: half_up_cents(a) for i, a in enumerate(amounts)}
    assert got[-1] == got[-2] == 0
