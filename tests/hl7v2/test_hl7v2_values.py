"""HL7 v2 values: date-times, money and counts, hand-checked, the usual shapes and their edges alike."""

from __future__ import annotations

import datetime as dt

import pytest
from hub_hl7v2.values import is_mbi, to_datetime, to_int, to_money


@pytest.mark.parametrize(("sent", "read"), [
    ("20250312143000-0500", "2025-03-12T14:30:00-05:00"),
    ("20250312143000+0000", "2025-03-12T14:30:00+00:00"),
    ("20250312143000-0000", "2025-03-12T14:30:00+00:00"),  # no offset either way: written +00:00
    ("20240229235959+1400", "2024-02-29T23:59:59+14:00"),
    ("20250312143000+0559", "2025-03-12T14:30:00+05:59"),
    ("202503121430-0500", "2025-03-12T14:30:00-05:00"),
    ("20250312143000", "2025-03-12T14:30:00"),
    ("20250312", "2025-03-12T00:00:00"),
    ("20250230143000-0500", None),  # 30 February
    ("20251312143000-0500", None),  # month 13
    ("20250312246000-0500", None),  # hour 24
    ("20250312143000+1500", None),  # no such offset
    ("20250312143000+0560", None),
    ("00000101000000+0100", None),  # year 0
    ("202503", None),  # no day
])
def test_date_times(sent: str, read: str | None) -> None:
    assert to_datetime(sent) == read


def test_an_offset_sent_wins_over_the_feed_zone() -> None:
    chicago = dt.timezone(dt.timedelta(hours=-6))
    assert to_datetime("20250312143000+0100", chicago) == "2025-03-12T14:30:00+01:00"
    assert to_datetime("20250312143000", chicago) == "2025-03-12T14:30:00-06:00"


@pytest.mark.parametrize(("sent", "read"), [
    ("125.00", "125.00"), ("40", "40"), ("1.5", "1.5"), ("007", "7"), ("5.", "5"), (".5", "0.5"),
    ("$1,200.50", "1200.50"), ("-12.30", "-12.30"), ("+3", "3"), ("1.2.3", None), ("12a", None), ("", None),
])
def test_money(sent: str, read: str | None) -> None:
    assert to_money(sent) == read


@pytest.mark.parametrize(("sent", "read"), [
    ("1", 1), ("0012", 12), ("999999999", 999999999), ("2147483648", 2**31), ("2147483649", None),
    ("2.0", 2), ("2.5", None), (" 3 ", 3), ("x", None), ("", None),
])
def test_counts(sent: str, read: int | None) -> None:
    assert to_int(sent) == read


@pytest.mark.parametrize(("sent", "mbi"), [
    ("1EG4TE5MK73", True),  # CMS's example MBI
    ("1EG4-TE5-MK73", True),  # as printed
    ("1eg4 te5 mk73", True),
    ("1EG4TE5MK7", False),  # ten characters
    ("MRN109886", False),
    ("123456789A", False),  # an old HICN
    ("1EG4TE5\ufb0073", True),  # "ﬀ": ten characters that upper case writes as eleven, FF
    ("1SG4TE5MK73", False),  # S is no MBI letter
])
def test_a_medicare_number_is_read_by_its_shape(sent, mbi):
    assert is_mbi(sent) is mbi


def test_the_usual_date_time_is_read_as_the_pattern_reads_it() -> None:
    """YYYYMMDDHHMMSS±ZZZZ, read without the pattern, checks each part as ``datetime`` does: every day of
    the edge months (leap years and not), hours, minutes and seconds at and past their ends, years 0, 1 and
    9999. A trailing space sends the same text down the pattern's path: both readings agree."""
    days = [(y, m, d) for y in (0, 1, 1900, 2000, 2023, 2024, 9999) for m in (0, 1, 2, 4, 12, 13)
            for d in (0, 1, 28, 29, 30, 31, 32)]
    times = [(0, 0, 0), (23, 59, 59), (24, 0, 0), (12, 60, 0), (12, 0, 60), (99, 99, 99)]
    for (y, m, d) in days:
        for (hh, mm, ss) in times:
            for offset in ("-0500", "+0000", "+1400", "+1459", "+1500", "-0560"):
                sent = f"{y:04d}{m:02d}{d:02d}{hh:02d}{mm:02d}{ss:02d}{offset}"
                try:
                    dt.datetime(y, m, d, hh, mm, ss)
                    exists = offset not in ("+1500", "-0560")  # hours past 14, minutes past 59: no offset
                except ValueError:
                    exists = False
                read = f"{y:04d}-{m:02d}-{d:02d}T{hh:02d}:{mm:02d}:{ss:02d}{offset[:3]}:{offset[3:]}"
                assert to_datetime(sent) == (read if exists else None), sent
                assert to_datetime(sent + " ") == to_datetime(sent), sent
