"""HL7 v2 data types → common-model values (dates, date-times, money, names, providers).

Decisions where the standard leaves room:

- a DTM without an offset is a wall-clock time of the practice: it is emitted without an
  offset (``2025-03-01T09:30:00``) and the hub reads it in the practice's time zone. The
  ``timezone`` setting of the connector section (an IANA name), when set, overrides that
  zone for this feed: the time is then emitted with that zone's offset;
- a DTM with an offset is an instant and keeps its offset as sent;
- a DTM with only a date becomes midnight; a date with only year or month is no
  date (the model wants whole dates), and an impossible date is no date;
- money (MO, CP, or a bare number) keeps its decimal text, never a float.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hub.errors import ConfigError

_DTM = re.compile(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.\d{1,4})?\s*([+-]\d{4})?\Z")
# the usual date (DT, or a DTM's first 8 characters): a day every month has (the 1st to the 28th) of a year
# not 0000, in ASCII digits (the feed's birth dates are too many to be kept by ``to_date``'s cache)
_USUAL_DATE = re.compile(r"(?!0000)(\d{4})(0[1-9]|1[0-2])(0[1-9]|1\d|2[0-8])", re.ASCII)
# the time of the usual DTM (after its 8 digits of date): to the second with an offset, each part in its range
# (hours to 23, minutes and seconds to 59, an offset to 14:59 and not -0000), in ASCII digits
_USUAL_TIME = re.compile(r"([01]\d|2[0-3])([0-5]\d)([0-5]\d)([+-])(?!0000)(0\d|1[0-4])([0-5]\d)\Z", re.ASCII)
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)\Z")
_NONZERO = frozenset("123456789")


@lru_cache(maxsize=64)
def zone(name: str | None) -> dt.tzinfo | None:
    """The connector's own ``timezone`` setting; None when unset (times stay naive for the hub)."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder ("America")
        raise ConfigError(f"hl7v2 setting timezone: unknown time zone {name!r}") from None


@lru_cache(maxsize=4096)
def to_date(value: str | None) -> str | None:
    """HL7 DT/DTM → ``YYYY-MM-DD`` (None when partial or impossible)."""
    if not value:
        return None
    usual = _USUAL_DATE.match(value)
    if usual is not None:  # ``date``'s own text (%04d-%02d-%02d) without making it: a fifth of the cost
        year, month, day = usual.groups()
        return f"{year}-{month}-{day}"
    return calendar_date(value)


def calendar_date(value: str) -> str | None:
    """The date of a value's first eight digits, made by ``datetime``: the general reading of ``to_date``."""
    if len(value) < 8 or not value[:8].isdigit():
        return None
    try:
        return dt.date(int(value[:4]), int(value[4:6]), int(value[6:8])).isoformat()
    except ValueError:
        return None


@lru_cache(maxsize=4096)
def _usual_time(text: str) -> str | None:
    """``THH:MM:SS+ZZ:ZZ`` of the time part of the usual DTM (``HHMMSS+ZZZZ``), else None."""
    found = _USUAL_TIME.match(text)
    if found is None:
        return None
    hour, minute, second, sign, offset_hours, offset_minutes = found.groups()
    return f"T{hour}:{minute}:{second}{sign}{offset_hours}:{offset_minutes}"


@lru_cache(maxsize=4096)
def to_datetime(value: str | None, tz: dt.tzinfo | None = None) -> str | None:
    """HL7 DTM → ISO 8601 (None when unreadable or without a day): with the offset sent, else in
    ``tz`` when given, else naive (``YYYY-MM-DDTHH:MM:SS``, a wall-clock time of the practice)."""
    if not value:
        return None
    if len(value) == 19 and value.isascii():
        # the usual DTM, to the second with an offset (YYYYMMDDHHMMSS+ZZZZ): its day and its time of day read
        # apart, each kept (a feed's times share their days, and their times of day and offsets repeat); a
        # slice costs about as much as a look-up. Anything else, or a day that is no date: read by the pattern
        time = _usual_time(value[8:])
        if time is not None:
            day = to_date(value[:8])
            if day is not None:
                return day + time
    m = _DTM.match(value.strip())
    if not m or m.group(3) is None:
        return None
    year, month, day, hour, minute, second, offset = m.groups()
    try:
        moment = dt.datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
    except ValueError:
        return None
    if offset:
        sign = 1 if offset[0] == "+" else -1
        hours, minutes = int(offset[1:3]), int(offset[3:5])
        if hours > 14 or minutes > 59:
            return None
        moment = moment.replace(tzinfo=dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes)))
    elif tz is not None:
        moment = moment.replace(tzinfo=tz)
    return moment.isoformat()


@lru_cache(maxsize=4096)  # a feed's fees, copays and durations repeat
def to_money(value: str | None) -> str | None:
    """MO/CP first component, or a bare number → decimal string."""
    if not value:
        return None
    if value[0] in _NONZERO and value.isascii() and value.replace(".", "", 1).isdigit() and value[-1] != ".":
        return value  # "125.00", "40": the decimal's own text already
    value = value.strip().replace(",", "").lstrip("$")
    if not _NUMBER.match(value):
        return None
    try:
        return str(Decimal(value))
    except InvalidOperation:
        return None


def to_int(value: str | None) -> int | None:
    if not value:
        return None
    if len(value) < 10 and value.isascii() and value.isdigit():  # the usual "1": below 2**31
        return int(value)
    try:
        number = Decimal(value.strip())
    except InvalidOperation:
        return None
    if not number.is_finite() or number != number.to_integral_value() or abs(number) > 2**31:
        return None
    return int(number)


SEX = {"F": "female", "M": "male", "O": "other", "A": "other", "N": "other", "X": "other", "U": "unknown"}


def to_sex(value: str | None) -> str | None:
    if not value:
        return None
    found = SEX.get(value)  # the usual one-letter code, already in upper case and trimmed
    if found is not None:
        return found
    return SEX.get(value.strip()[:1].upper(), "unknown")


NPI_SYSTEMS = ("NPI", "2.16.840.1.113883.4.6")
SSN_SYSTEM = "http://hl7.org/fhir/sid/us-ssn"
MBI_SYSTEM = "http://hl7.org/fhir/sid/us-mbi"
# assigning authorities of a Medicare number: CMS by name, or the MBI's OID
MBI_AUTHORITIES = frozenset({"CMS", "2.16.840.1.113883.4.927"})
# CMS's Medicare Beneficiary Identifier: 11 characters, letters without S, L, O, I, B, Z; an old HICN
# (nine digits and a letter or two) does not fit
_L, _A = "[AC-HJKMNP-RT-Y]", "[AC-HJKMNP-RT-Y0-9]"  # a letter; a letter or a digit
_MBI = re.compile(rf"[1-9]{_L}{_A}\d{_L}{_A}\d{_L}{_L}\d\d\Z")
_SSN = re.compile(r"\d{3}([- ]?)\d{2}\1\d{4}\Z")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+\Z")


_PHONE = re.compile(r"(\+?[\d\s().\-/]{7,24}?)\s*(?:(?:x|ext\.?)\s*\d{1,6})?\Z", re.I)


def is_phone(value: str) -> bool:
    """A telephone number as sent in XTN-1 or XTN-6/7: 7 to 15 digits with the usual punctuation
    (``(217) 555-0100``, ``+1 217 555 0100``, ``2175550100 x12``); an e-mail address or a word is not."""
    if value.isdigit():  # the usual case: digits only (XTN-6 + XTN-7, or a bare XTN-1)
        return 7 <= len(value) <= 15
    found = _PHONE.match(value)
    return found is not None and 7 <= sum(map(str.isdigit, found.group(1))) <= 15


def is_mbi(value: str) -> bool:
    """A Medicare Beneficiary Identifier, as printed (``1EG4-TE5-MK73``) or not."""
    if len(value) < 11 and value.isascii():  # eleven characters, dashes and spaces aside: an MRN is shorter
        return False  # (ASCII: no letter that upper case writes as two, ``ﬀ``)
    return _MBI.match(value.replace("-", "").replace(" ", "").upper()) is not None


def ssn_digits(value: str) -> str | None:
    """The nine digits of a social security number (``123-45-6789``, ``123456789``), else None."""
    text = value.strip()
    return text.replace("-", "").replace(" ", "") if _SSN.match(text) else None


def email_address(value: str) -> str | None:
    """An e-mail address as sent (a ``mailto:`` prefix dropped), else None."""
    text = value.strip()
    if text[:7].lower() == "mailto:":
        text = text[7:].strip()
    return text if _EMAIL.match(text) else None
