"""A test plugin (HUB_PLUGINS=tests.security.phi_plugin) whose store hook fails the way a database does
when it refuses a row: the error quotes the row's values (names, MRN) in its DETAIL and parameters."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from hub import hookimpl


@hookimpl
def hub_records_storing(conn: sa.Connection, batch: Any) -> None:
    patients = [record for record, _ in batch.items if record.get("kind") == "patient"]
    if not patients:
        return
    first = patients[0]
    detail = (f"duplicate key value violates unique constraint \"patients_name\"\nDETAIL:  Key (family_name, "
              f"given_name, source_id)=({first.get('family_name')}, {first.get('given_name')}, "
              f"{first.get('source_id')}) already exists.")
    raise sa.exc.IntegrityError("INSERT INTO patients (family_name, given_name, source_id) VALUES (?, ?, ?)",
                                [(p.get("family_name"), p.get("given_name"), p.get("source_id")) for p in patients],
                                Exception(detail))


def explode(patient: dict[str, str]) -> None:
    """An rq job that fails with patient data in its exception text (a bug anywhere in a job would)."""
    raise ValueError(f"cannot file {patient['family']}, {patient['given']} born {patient['dob']} ({patient['mrn']})")
