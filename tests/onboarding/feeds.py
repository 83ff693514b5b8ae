"""A synthetic practice's CSV history, with the counts the scorecard should find computed here, by hand."""

from __future__ import annotations

import csv
import datetime as dt
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

APPT_HEADER = ["Appt ID", "MRN", "Provider", "Location", "Appt Date/Time", "Minutes", "Appt Type", "Status",
               "Cancel Reason", "Created", "Cancelled On"]
CHARGE_HEADER = ["Charge ID", "Visit ID", "MRN", "Rendering Provider", "Location", "DOS", "Post Date", "CPT",
                 "Modifiers", "Units", "Charge Amount", "ICD-10", "Primary Insurance"]
PAY_HEADER = ["Payment ID", "Charge ID", "Payer", "Paid", "Adjustment", "Deposit Date", "Denied"]
STATUS = {"Completed": "fulfilled", "No Show": "noshow", "Cancelled": "cancelled", "Scheduled": "booked"}


@dataclass
class Expected:
    messages: int = 0
    refused: int = 0
    duplicates: int = 0
    records: dict[str, int] = field(default_factory=lambda: {"appointment": 0, "charge": 0, "remittance": 0})
    blank_mrn: int = 0
    visit_types: list[str] = field(default_factory=list)
    providers: list[str] = field(default_factory=list)
    payers: list[str] = field(default_factory=list)
    cancel_reasons: list[str] = field(default_factory=list)
    dates: list[str] = field(default_factory=list)
    bad_lines: list[tuple[str, int]] = field(default_factory=list)


def write(path: Path, header: list[str], rows: list[list[str]], encoding: str = "utf-8-sig") -> None:
    with path.open("w", encoding=encoding, newline="") as fh:
        writer = csv.writer(fh, lineterminator="\r\n")
        writer.writerow(header)
        writer.writerows(rows)


def build(folder: Path, *, seed: int = 11, appt_files: int = 4, per_file: int = 45) -> Expected:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    exp = Expected()
    visit_types = ["NP", "EST", "FU", "MOHS", "BOTOX", "LASER"]  # LASER is not in the mapping yet
    providers = ["DRALV", "DRBRE", "PACHE", "DRNEW"]  # DRNEW is not in the mapping yet
    day0 = dt.datetime(2025, 1, 6, 8, 0)
    n = 0
    for f in range(appt_files):
        rows = []
        for i in range(per_file):
            n += 1
            start = day0 + dt.timedelta(days=rng.randrange(0, 80), minutes=15 * rng.randrange(0, 36))
            status = rng.choice(list(STATUS))
            reason = rng.choice(["PT CANCEL", "SNOW", "RESCHED"]) if status == "Cancelled" else ""
            vt = rng.choice(visit_types)
            prov = rng.choice(providers)
            mrn = "" if n % 29 == 0 else f"M{rng.randrange(1, 400):04d}"
            when = start.strftime("%m/%d/%Y %I:%M %p") if i % 2 else start.strftime("%Y-%m-%d %H:%M")
            bad = f == 1 and i in (5, 17)
            if bad:
                when = "next Tuesday"
            rows.append([f"A{n:05d}", mrn, prov, rng.choice(["LP", "OB"]), when, str(rng.choice([15, 30, 60])),
                         vt, status, reason, "", ""])
            exp.messages += 1
            if bad:
                exp.refused += 1
                exp.bad_lines.append((f"appointments_{f}.csv", i + 2))
                continue
            exp.records["appointment"] += 1
            exp.blank_mrn += mrn == ""
            exp.visit_types.append(vt)
            exp.providers.append(prov)
            exp.dates.append(start.date().isoformat())
            if reason:
                exp.cancel_reasons.append(reason)
        write(folder / f"appointments_{f}.csv", APPT_HEADER, rows)
    charges = []
    for i in range(60):
        dos = day0 + dt.timedelta(days=rng.randrange(0, 80))
        payer = rng.choice(["AETNA PPO", "MEDICARE PART B", "BLUE CROSS OF ILLINOIS", "ACME HEALTH"])
        prov = rng.choice(providers[:3])
        amount = f"{rng.randrange(80, 3000)}.{rng.randrange(0, 100):02d}"
        charges.append([f"C{i:05d}", f"V{i:05d}", f"M{rng.randrange(1, 400):04d}", prov, "LP",
                        dos.strftime("%m/%d/%Y"), dos.strftime("%m/%d/%Y"), "99213", "", "1",
                        f"${int(float(amount)):,}.{amount.split('.')[1]}", "L57.0", payer])
        exp.messages += 1
        exp.records["charge"] += 1
        exp.payers.append(payer)
        exp.providers.append(prov)
        exp.dates.append(dos.date().isoformat())
    write(folder / "charges.csv", CHARGE_HEADER, charges, encoding="cp1252")
    payments = []
    for i in range(12):
        paid = day0 + dt.timedelta(days=90 + i)
        payer = rng.choice(["AETNA PPO", "MEDICARE PART B"])
        payments.append([f"P{i:05d}", f"C{i:05d}", payer, "100.00", "20.00", paid.strftime("%m/%d/%Y"), "N"])
        exp.messages += 1
        exp.records["remittance"] += 1
        exp.payers.append(payer)
        exp.dates.append(paid.date().isoformat())
    write(folder / "payments.csv", PAY_HEADER, payments, encoding="utf-8")
    # the same export delivered twice: every row of the copy is a duplicate
    shutil.copy(folder / "payments.csv", folder / "payments_resent.csv")
    exp.messages += len(payments)
    exp.duplicates += len(payments)
    return exp
