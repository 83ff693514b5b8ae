"""A charge's remittance lines and the charge itself share a fine rollup row: the charge's figures count once
however many lines pay it, the remittances' once per line (its amount adjudicated per line, denied per denied
line), and a charge nobody paid adds no remittance figure."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from hub.pipeline.intake import receive
from hub.plugins import load_plugins
from hub.reports.rollups import refresh_dirty
from hub.runtime import Runtime
from hub.store.engine import writer
from hub.store.practices import add_practice
from tests.support.json_records import plugin


def _charge(source_id: str, amount: str) -> dict[str, Any]:
    return {"kind": "charge", "source_id": source_id, "patient_source_id": "M-1", "service_date": "2025-05-06",
            "procedure_code": "99213", "amount": amount, "provider_source_id": "DR1",
            "service_line": "dermatology", "financial_class": "commercial"}


def _line(source_id: str, charge: str, paid: str, denied: bool) -> dict[str, Any]:
    return {"kind": "remittance", "source_id": source_id, "charge_source_id": charge, "paid_amount": paid,
            "adjustment_amount": "5.00", "denied": denied, "paid_on": "2025-05-20",
            "adjustments": [{"group": "CO", "reason": "45", "amount": "5.00"}]}


def test_a_charge_paid_in_two_lines_counts_once_and_its_lines_twice(database_url: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    runtime = Runtime.create(database_url=database_url, plugins=load_plugins(extra=[plugin]), dispatcher="inline")
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "north", "North", timezone="America/Chicago")
    # C1 ($100) paid in two lines, one of them denied; C2 ($50) not paid at all; both in one fine cell
    records = [_charge("C1", "100.00"), _charge("C2", "50.00"), _line("R1", "C1", "60.00", False),
               _line("R2", "C1", "0.00", True)]
    receipts = receive(runtime, "north", json.dumps(records).encode(), connector="json-records")
    assert all(r.outcome.accepted for r in receipts), [r.outcome.error for r in receipts]
    refresh_dirty(runtime.engine)
    names = ("charge_lines", "charges_cents", "charges_commercial_cents", "remit_lines", "denied_lines",
             "payments_cents", "adjustments_cents", "contractual_cents", "adjudicated_cents", "denied_cents")
    with runtime.engine.connect() as conn:
        fine = conn.execute(sa.text(f"SELECT COUNT(*), {', '.join(f'SUM({n})' for n in names)} FROM "
                                    "report_fine_cells WHERE practice = 'north'")).one()
        site = conn.execute(sa.text(f"SELECT {', '.join(f'SUM({n})' for n in names)} FROM report_cells "
                                    "WHERE practice = 'north' AND grain = 'site'")).one()
    want = (2, 15000, 15000, 2, 1, 6000, 1000, 1000, 20000, 10000)  # C1's 10000 per line, 10000 for the denied
    assert tuple(fine[1:]) == want and tuple(site) == want
    assert fine[0] == 1  # one row: the two charges and the lines share their keys
