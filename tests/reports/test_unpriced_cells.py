"""A cell whose charge lines all come without an amount (a claim line with no price: Synthea's claims, say)
sums to 0 charges, and the refresh stores it: its sums were NULL, which the rollups' columns refuse."""

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


def _line(source_id: str, amount: str | None, provider: str) -> dict[str, Any]:
    return {"kind": "charge", "source_id": source_id, "patient_source_id": f"M-{source_id}",
            "service_date": "2025-05-06", "procedure_code": "99213", "amount": amount,
            "provider_source_id": provider}  # no service line, no financial class


def test_a_cell_of_unpriced_lines_only_is_stored_with_zero_charges(database_url: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    runtime = Runtime.create(database_url=database_url, plugins=load_plugins(extra=[plugin]), dispatcher="inline")
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "north", "North", timezone="America/Chicago")
    # DR2's cell holds only unpriced lines; DR1's a priced one beside an unpriced one
    records = [_line("C1", "80.00", "DR1"), _line("C2", None, "DR1"), _line("C3", None, "DR2"),
               _line("C4", None, "DR2")]
    receipts = receive(runtime, "north", json.dumps(records).encode(), connector="json-records")
    assert all(r.outcome.accepted for r in receipts), [r.outcome.error for r in receipts]
    refresh_dirty(runtime.engine)
    with runtime.engine.connect() as conn:
        cells = dict(conn.execute(sa.text(
            "SELECT provider, charges_cents + charges_unknown_cents FROM report_fine_cells "  # the charges' rows
            "WHERE practice = 'north' AND month = '2025-05' AND charge_lines IS NOT NULL")).all())
        lines = conn.execute(sa.text("SELECT SUM(charge_lines) FROM report_fine_cells WHERE practice = 'north' "
                                     "AND month = '2025-05'")).scalar()
    assert lines == 4
    assert sorted(cells.values()) == [0, 16000]  # DR2: 0 + 0; DR1: 8000 + 8000 (unknown financial class)
