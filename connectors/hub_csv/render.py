"""Common-model records written as a practice-management system's monthly CSV exports
(``CsvConnector.render``): samples, never ingest.

Four exports, one file per month each (``2025-03/appointments_2025-03.csv``, ``charges``,
``payments``, ``referrals``), comma-separated with CR LF line ends and a header row, in the
columns below; a practice mapping that reads them names these columns (see
``mappings/examples/fishers-pt.yaml``). Dates of visits and bookings are US-style
(``03/04/2025 09:30 AM``, local wall-clock time, no offset); ``Modified`` is the row's last change
(local ``YYYY-MM-DD HH:MM``): when an appointment took its final status (its ``_final_at``), a
charge's posting (18:00), a payment (12:00), a referral's
receipt (09:00).

Records read: ``patient``, ``appointment`` (with ``booked_at``, ``cancelled_at`` and the hint
``_final_at``, when it took its final status), ``charge``
(with ``location_source_id``, ``payer_name``, ``visit_type``), ``remittance`` (with ``claim_id``,
``payer_name``), ``referral``. No settings; ``shuffled`` is not supported.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from hub.connector import Rendered, RenderOptions

Record = Mapping[str, Any]

APPOINTMENT_COLUMNS = ("Appt ID", "MRN", "Patient Name", "DOB", "Provider", "Location", "Appt Date/Time",
                       "Minutes", "Appt Type", "Status", "Cancel Reason", "Created", "Cancelled On", "Referral ID",
                       "New Patient", "Modified")
CHARGE_COLUMNS = ("Charge ID", "Visit ID", "MRN", "Provider", "Location", "DOS", "Post Date", "CPT", "Modifiers",
                  "Units", "Charge Amount", "Dx", "Payer", "Appt Type", "Modified")
PAYMENT_COLUMNS = ("Payment ID", "Charge ID", "Claim ID", "Payer", "Paid", "Adjustment", "Adj Codes", "Denied",
                   "Paid Date", "Modified")
REFERRAL_COLUMNS = ("Referral ID", "MRN", "Referring Provider", "Received", "Referral Status", "Modified")
COLUMNS = {"appointments": APPOINTMENT_COLUMNS, "charges": CHARGE_COLUMNS, "payments": PAYMENT_COLUMNS,
           "referrals": REFERRAL_COLUMNS}
STATUS = {"fulfilled": "Completed", "noshow": "No Show", "cancelled": "Cancelled", "booked": "Scheduled"}
REFERRAL_STATUS = {"active": "Open", "completed": "Closed"}


def _when(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def _us_time(value: str | None) -> str:
    return _when(value).strftime("%m/%d/%Y %I:%M %p") if value else ""


def _modified(moment: dt.datetime) -> str:
    """The row's last change (the mapping's event_time_column): local wall-clock time, as exports write it."""
    return moment.strftime("%Y-%m-%d %H:%M")


def _csv_text(columns: tuple[str, ...], rows: list[list[Any]]) -> bytes:
    buffer = io.StringIO()
    out = csv.writer(buffer, lineterminator="\r\n")
    out.writerow(columns)
    out.writerows(rows)
    return buffer.getvalue().encode()


def render_files(records: Sequence[Record], options: RenderOptions) -> list[Rendered]:
    if options.shuffled:
        raise NotImplementedError("the csv connector renders monthly exports, never a shuffled backfill")
    tz = ZoneInfo(options.timezone)

    def at(day: str, hour: int) -> dt.datetime:
        return dt.datetime.combine(dt.date.fromisoformat(day[:10]), dt.time(hour), tzinfo=tz)

    patients = {r["source_id"]: r for r in records if r["kind"] == "patient"}
    months: dict[tuple[str, str], list[list[Any]]] = defaultdict(list)
    for r in records:
        if r["kind"] == "appointment":
            p = patients[r["patient_source_id"]]
            months[("appointments", r["start"][:7])].append([
                r["source_id"], r["patient_source_id"], f"{p['family_name']}, {p['given_name']}",
                dt.date.fromisoformat(p["birth_date"]).strftime("%m/%d/%Y"), r["provider_source_id"],
                r["location_source_id"], _us_time(r["start"]), r["duration_min"], r["visit_type"],
                STATUS[r["status"]], r["cancel_reason"] or "", _us_time(r["booked_at"]),
                _us_time(r["cancelled_at"]), r["referral_source_id"] or "", "Y" if r["new_patient"] else "N",
                _modified(_when(r["_final_at"]))])
        elif r["kind"] == "charge":
            months[("charges", r["posted_on"][:7])].append([
                r["source_id"], r["encounter_source_id"], r["patient_source_id"], r["provider_source_id"],
                r["location_source_id"], r["service_date"], r["posted_on"], r["procedure_code"],
                " ".join(r["modifiers"]), r["units"], r["amount"], ";".join(r["diagnosis_codes"]), r["payer_name"],
                r["visit_type"], _modified(at(r["posted_on"], 18))])
        elif r["kind"] == "referral":
            months[("referrals", r["received_on"][:7])].append([
                r["source_id"], r["patient_source_id"], r["referring_provider"], r["received_on"],
                REFERRAL_STATUS[r["status"]], _modified(at(r["received_on"], 9))])
        elif r["kind"] == "remittance":
            months[("payments", r["paid_on"][:7])].append([
                r["source_id"], r["charge_source_id"], r["claim_id"], r["payer_name"], r["paid_amount"],
                r["adjustment_amount"], ";".join(f"{a['group']}-{a['reason']}" for a in r["adjustments"]),
                "Y" if r["denied"] else "N", r["paid_on"], _modified(at(r["paid_on"], 12))])
    return [Rendered(f"{month}/{export}_{month}.csv", _csv_text(COLUMNS[export], rows))
            for (export, month), rows in sorted(months.items())]
