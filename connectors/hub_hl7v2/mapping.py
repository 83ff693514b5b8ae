"""HL7 v2 message → common-model records, one function per message family.

What is read from where is listed in docs/hl7v2.md; the choices the standard
leaves open are written down beside the code that makes them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from hub.errors import ParseError
from hub.mapping.schema import npi_is_valid

from .er7 import Message
from .values import (
    MBI_AUTHORITIES,
    MBI_SYSTEM,
    NPI_SYSTEMS,
    SSN_SYSTEM,
    email_address,
    is_mbi,
    is_phone,
    ssn_digits,
    to_date,
    to_datetime,
    to_int,
    to_money,
    to_sex,
)

if TYPE_CHECKING:
    from hub.connector import Tally

Record = dict[str, Any]
_npi_check = lru_cache(maxsize=4096)(npi_is_valid)  # a feed names the same few providers again and again

ADT_EVENTS = frozenset({"A01", "A02", "A03", "A04", "A05", "A06", "A07", "A08", "A11", "A12", "A13", "A28",
                        "A31"})
MERGE_EVENTS = frozenset({"A34", "A39", "A40", "A47"})
SIU_EVENTS = frozenset({"S12", "S13", "S14", "S15", "S17", "S26"})
# encounter status by ADT trigger (None: the trigger says nothing about the visit's state)
ENCOUNTER_STATUS = {"A01": "in-progress", "A02": "in-progress", "A03": "finished", "A04": "arrived",
                    "A05": "planned", "A06": "in-progress", "A07": "in-progress", "A11": "cancelled",
                    "A12": "in-progress", "A13": "in-progress"}
# PV1-2 patient class (HL7 table 0004) → HL7 v3 ActEncounterCode, as the HL7 v2-to-FHIR concept map has
# it for E, I, O, P; R (recurring patient) is an outpatient seen again: ambulatory. B (obstetrics), C
# (commercial account), N (not applicable) and U (unknown) say nothing of the setting (an obstetrics
# patient may be an inpatient or an outpatient): no class.
ENCOUNTER_CLASS = {"O": "AMB", "R": "AMB", "I": "IMP", "E": "EMER", "P": "PRENC"}
# SCH-25 filler status codes (HL7 table 0278) → FHIR Appointment.status
FILLER_STATUS = {"BOOKED": "booked", "CONFIRMED": "booked", "PENDING": "pending", "WAITLIST": "waitlist",
                 "CANCELLED": "cancelled", "DELETED": "entered-in-error", "NOSHOW": "noshow",
                 "COMPLETE": "fulfilled", "STARTED": "arrived", "DC": "cancelled", "BLOCKED": "booked",
                 "OVERBOOK": "booked", "ARRIVED": "arrived", "CHECKED-IN": "checked-in", "CHECKEDIN": "checked-in"}
TRIGGER_STATUS = {"S15": "cancelled", "S26": "noshow", "S17": "entered-in-error"}
DURATION_UNITS = {"MIN": 1, "M": 1, "MINUTES": 1, "MINUTE": 1, "S": 1 / 60, "SEC": 1 / 60, "H": 60, "HR": 60,
                  "HOUR": 60, "HOURS": 60, "D": 1440, "DAY": 1440}
# FT1-6 transaction types that are money in, not charges (HL7 table 0017 and common local codes)
PAYMENT_TYPES = frozenset({"PY", "PA", "PAY", "PMT", "CP"})
ADJUSTMENT_TYPES = frozenset({"AJ", "ADJ", "CR", "WO"})


class Reader:
    """A parsed message plus what mapping needs around it (time zone, who sent it, what is left out).

    ``tz`` is the connector's ``timezone`` override; None leaves times sent without an offset
    naive, for the hub to read in the practice's zone. ``tally`` (the message's, when the core
    gives one) records optional values left out as unreadable; ``used`` the segments a family read
    only on occasion (DG1 as a charge's fallback diagnoses)."""

    def __init__(self, msg: Message, tz: dt.tzinfo | None, tally: Tally | None = None, strict: bool = False) -> None:
        self.msg = msg
        self.tz = tz
        self.get = msg.get
        self.tally = tally
        self.strict = strict  # the practice's mapping says ``acceptance: strict``
        self.used: set[str] = set()
        # XCN text → its provider record: a message names its provider in PV1, SCH, AIP and every FT1
        self.providers: dict[str, Record] = {}
        self._recorded_at: str | None = None
        self._recorded_read = False

    def drop(self, path: str, reason: str) -> None:
        """An optional value sent but unreadable is left out, on the record (path only, never the value)."""
        if self.tally is not None:
            self.tally.drop(path, reason)

    def date(self, seg: list[str] | None, field: int, path: str) -> str | None:
        """An optional HL7 date: None when empty; left out (and recorded) when sent but not a whole date."""
        value = self.get(seg, field, 1)
        if not value:
            return None
        day = to_date(value)
        if day is None:
            self.drop(path, "not a date")
        return day

    def moment(self, seg: list[str] | None, field: int, path: str) -> str | None:
        """An optional HL7 date-time, as ``date``."""
        value = self.get(seg, field, 1)
        if not value:
            return None
        moment = to_datetime(value, self.tz)
        if moment is None:
            self.drop(path, "not a date-time")
        return moment

    def dtm(self, seg: list[str] | None, field: int, component: int = 1) -> str | None:
        value = self.get(seg, field, component)
        return to_datetime(value, self.tz) if value else None  # most fields tried are empty: no cache look-up

    @property
    def recorded_at(self) -> str | None:
        """When the sending system recorded the event: EVN-2, else MSH-7 (merged_at, booked_at,
        cancelled_at keep this meaning); read once per message."""
        if not self._recorded_read:
            self._recorded_at = self.dtm(self.msg.first("EVN"), 2) or self.dtm(self.msg.msh, 7)
            self._recorded_read = True
        return self._recorded_at

    @property
    def event_time(self) -> str | None:
        """The time of the event the message reports, given to every record it yields: EVN-6
        (event occurred), else EVN-2 (recorded), else MSH-7 (message created)."""
        evn = self.msg.first("EVN")
        return (self.dtm(evn, 6) if evn is not None and len(evn) > 6 else None) or self.recorded_at


# ------------------------------------------------------------------ shared pieces
def patient_from_pid(r: Reader, pid: list[str] | None) -> Record | None:
    """PID → patient. The MRN is the PID-3 identifier of type MR (else the first; v2.3 feeds: PID-2, PID-4).
    ``identifiers`` keeps every PID-3 repetition, then PID-2 (external id) and PID-4 (alternate id), then
    the SSN of PID-19 when no identifier of type SS carries it already."""
    if pid is None:
        return None
    msg = r.msg
    text, cs, rs = msg.text, msg.sep.component, msg.sep.repetition
    identifiers: list[dict[str, str | None]] = []
    mrn = None
    for field in (3, 2, 4):
        if field >= len(pid) or not pid[field]:
            continue  # PID-2 and PID-4 are mostly empty
        for raw in pid[field].split(rs):  # ``msg.repetitions``, without its call and its list
            if not raw:
                continue
            parts = raw.split(cs)
            value = parts[0] if parts[0].isalnum() else text(parts[0])  # an id of letters and digits: its own text
            if not value:
                continue
            id_type = None
            if len(parts) > 4:
                id_type = parts[4]
                if not id_type.isalnum():
                    id_type = text(id_type)
            if field != 3 and any(i["value"] == value for i in identifiers):
                continue  # v2.3 feeds copy the MRN into PID-2 or PID-4: one identifier, sent twice
            authority = parts[3] if len(parts) > 3 else ""
            # a namespace of letters and digits and an id too short for an MBI: the namespace (``_system``)
            system = authority if authority.isalnum() and len(value) < 11 and value.isascii() else \
                _system(msg, parts, value, id_type)
            identifiers.append({"system": system, "value": value, "type": id_type})
            if field == 3 and mrn is None and id_type == "MR":
                mrn = value
    if mrn is None:
        mrn = next((i["value"] for i in identifiers), None)
    if not mrn:
        return None
    if len(pid) > 19 and pid[19]:
        _ssn_of_pid19(r, pid, identifiers)
    street, postal = _home_address(r, pid)
    name = msg.components(pid, 5)
    birth_date = r.date(pid, 7, "PID-7")
    sex = to_sex(r.get(pid, 8))
    phone = _phone(r, pid)
    xtn = pid[13] if len(pid) > 13 else ""
    email = _email(r, pid) if xtn and ("@" in xtn or "NET" in xtn.upper()) else None  # mostly phones only
    # as ``_compact`` leaves it, written out (every message has its patient): the keys in this order, those
    # without a value left out (the texts here are None or not empty)
    record: Record = {"kind": "patient", "source_id": mrn, "identifiers": identifiers}
    if name:
        if name[0]:
            record["family_name"] = name[0]
        if len(name) > 1 and name[1]:
            record["given_name"] = name[1]
    if birth_date:
        record["birth_date"] = birth_date
    if sex:
        record["sex"] = sex
    if postal:
        record["postal_code"] = postal
    if street:
        record["address_line"] = street
    if phone:
        record["phone"] = phone
    if email:
        record["email"] = email
    return record


def _system(msg: Message, parts: list[str], value: str, id_type: str | None) -> str | None:
    """A CX's system: its assigning authority (CX-4), else its identifier type (CX-5). A social security
    number (type SS) without an authority is named by the FHIR SSN system; a Medicare number (type MC,
    or assigned by CMS) shaped like an MBI by the FHIR MBI system."""
    authority = parts[3] if len(parts) > 3 else None
    if authority is not None and not authority.isalnum():  # a namespace of letters and digits: as it is
        authority = _authority(msg, parts, 3)
    if id_type == "SS" and authority is None:
        return SSN_SYSTEM
    # the shape first: most identifiers are no MBI, and the authority's two names cost more to read
    if is_mbi(value) and (id_type == "MC" or (authority is not None and _authority_is(msg, parts, MBI_AUTHORITIES))):
        return MBI_SYSTEM
    return authority or id_type


def _authority_is(msg: Message, parts: list[str], names: frozenset[str]) -> bool:
    """Whether the CX-4 namespace or universal id is one of ``names`` (upper case)."""
    return any((msg.text(parts[3], sub) or "").upper() in names for sub in (1, 2))


def _ssn_of_pid19(r: Reader, pid: list[str], identifiers: list[dict[str, str | None]]) -> None:
    """PID-19 (SSN) → an identifier of the SSN system (its nine digits), unless an identifier of type SS
    or of that system carries the same number; a value that is no SSN is left out, on the record."""
    raw = r.get(pid, 19, 1)
    if not raw:
        return
    digits = ssn_digits(raw)
    if digits is None:
        r.drop("PID-19", "not a social security number")
        return
    for ident in identifiers:
        if (ident["type"] == "SS" or ident["system"] == SSN_SYSTEM) and \
                "".join(ch for ch in ident["value"] or "" if ch.isdigit()) == digits:
            return
    identifiers.append({"system": SSN_SYSTEM, "value": digits, "type": "SS"})


# XAD-7 address types (HL7 table 0190) of a place that is not where the patient lives: business, office,
# bad address, birth place, country of origin, shipping, tube, vacation
NOT_HOME = frozenset({"B", "O", "BA", "BDL", "BR", "N", "F", "SH", "TM", "V"})


def _home_address(r: Reader, pid: list[str]) -> tuple[str | None, str | None]:
    """(street line, postal code) of the home address in PID-11: the repetition of type H (XAD-7; HOME
    as some feeds write it), else the first not of a type that names another place. Without such an
    address the postal code is PID-11.5 of the first repetition, as before."""
    msg = r.msg
    chosen: list[str] | None = None
    addresses = pid[11] if len(pid) > 11 else ""
    for raw in addresses.split(msg.sep.repetition) if addresses else ():  # ``msg.repetitions``, written out
        if not raw:
            continue
        parts = raw.split(msg.sep.component)
        kind = (msg.text(parts[6]) or "").upper() if len(parts) > 6 else ""
        if kind in ("H", "HOME"):
            chosen = parts
            break
        if chosen is None and kind not in NOT_HOME:
            chosen = parts
    if chosen is None:
        return None, r.get(pid, 11, 5)
    sad, postal = chosen[0], chosen[4] if len(chosen) > 4 else ""
    # a street without sub-components is ``text`` of it (``_street``); a postal code of letters and digits
    # its own text: without the calls
    street = msg.text(sad) if msg.sep.subcomponent not in sad else _street(msg, sad)
    return street, postal if postal.isalnum() else msg.text(postal)


def _street(msg: Message, sad: str) -> str | None:
    """XAD-1 (SAD) → one street line: SAD-1 (street or mailing address); the dwelling number and street
    name (SAD-3, SAD-2) when SAD-1 is empty, and SAD-2 after a SAD-1 that is only a house number
    (``1000&Hospital Lane``)."""
    line = msg.text(sad, 1)
    if msg.sep.subcomponent not in sad:
        return line
    name = msg.text(sad, 2)
    if line is None:
        return " ".join(p for p in (msg.text(sad, 3), name) if p) or None
    if name and line.isdigit():
        return f"{line} {name}"
    return line


def _authority(msg: Message, parts: list[str], index: int) -> str | None:
    """An HD component (namespace & universal id) → one system name."""
    if index >= len(parts) or not parts[index]:
        return None
    return msg.text(parts[index], 1) or msg.text(parts[index], 2)


def _is_email_xtn(msg: Message, parts: list[str]) -> bool:
    """An XTN that is an e-mail address: use code NET (XTN-2) or equipment type Internet (XTN-3)."""
    return (len(parts) > 1 and (msg.text(parts[1]) or "").upper() == "NET") or \
        (len(parts) > 2 and (msg.text(parts[2]) or "").upper() == "INTERNET")


def _phone(r: Reader, pid: list[str]) -> str | None:
    """PID-13.1, else area code and local number (13.6, 13.7), of the first repetition that is not an
    e-mail address (use NET, type Internet); a value that is no phone number (too few digits, letters:
    an e-mail address in the wrong field) is left out, on the record."""
    msg = r.msg
    rep = 0
    if len(pid) > 13 and pid[13] and "NET" in pid[13].upper():  # NET, or Internet: an e-mail address sent
        reps = pid[13].split(msg.sep.repetition)
        found = next((i for i, raw in enumerate(reps) if raw and not _is_email_xtn(msg, msg.parts(raw))), None)
        if found is None:
            return None
        rep = found
    if rep:
        number = msg.get(pid, 13, 1, rep=rep)
        if not number:
            area, local = msg.get(pid, 13, 6, rep=rep), msg.get(pid, 13, 7, rep=rep)
            number = f"{area or ''}{local}" if local else None
    else:  # the usual: the first repetition split once, and only the components read made text
        field = pid[13] if len(pid) > 13 else ""
        xtn = field.split(msg.sep.repetition, 1)[0].split(msg.sep.component) if field else []
        # as ``get(pid, 13, 1)`` reads it; digits only are their own text, without the call
        number = (xtn[0] if xtn[0].isalnum() else msg.text(xtn[0])) if xtn else None
        if not number:
            local = (xtn[6] if xtn[6].isalnum() else msg.text(xtn[6])) if len(xtn) > 6 else None
            if local:  # after its area code
                number = f"{xtn[5] if xtn[5].isalnum() else msg.text(xtn[5]) or ''}{local}"
    if number and not is_phone(number):
        r.drop("PID-13", "not a phone number")
        return None
    return number


def _email(r: Reader, pid: list[str]) -> str | None:
    """The first e-mail address of PID-13: XTN-4 (communication address) when it holds one; in a
    repetition of use NET or type Internet also XTN-1, where older feeds put it; and a bare XTN-1 (no
    other component) that is plainly an address. A NET or Internet value that is no address is left
    out, on the record."""
    if len(pid) <= 13 or not pid[13] or ("@" not in pid[13] and "NET" not in pid[13].upper()):
        return None  # the usual PID-13: phone numbers only
    msg = r.msg
    for raw in msg.repetitions(pid, 13):
        parts = msg.parts(raw)
        if _is_email_xtn(msg, parts):
            value = (msg.text(parts[3]) if len(parts) > 3 else None) or msg.text(parts[0])
            if not value:
                continue
            address = email_address(value)
            if address is None:
                r.drop("PID-13", "not an e-mail address")
                continue
            return address
        if "@" not in raw:
            continue
        value = msg.text(parts[3]) if len(parts) > 3 else msg.text(parts[0]) if len(parts) == 1 else None
        if value and (address := email_address(value)):
            return address
    return None


def providers_from(r: Reader, seg: list[str] | None, field: int) -> list[Record]:
    """XCN repetitions → providers. NPI when XCN-13 (identifier type) or XCN-9 (authority) says NPI, or,
    when neither is sent, when the id is ten digits with a valid NPI check digit (Luhn over 80840)."""
    if seg is None or field >= len(seg) or not seg[field]:
        return []  # most fields tried are empty (PV1-8, 9 and 17): no repetitions to look at
    msg = r.msg
    text, cs = msg.text, msg.sep.component
    found = []
    for raw in seg[field].split(msg.sep.repetition):  # ``msg.repetitions``, without its call and its list
        if not raw:
            continue
        known = r.providers.get(raw)
        if known is not None:
            found.append(known)  # the same record again: ``to_records`` keeps one of each (``_deduplicated``)
            continue
        parts = raw.split(cs)
        source_id = parts[0] if parts[0].isalnum() else text(parts[0])  # letters and digits: its own text
        if not source_id:
            continue
        id_type = None
        if len(parts) > 12:
            id_type = parts[12]
            if not id_type.isalnum():
                id_type = text(id_type)
        authority = []
        if len(parts) > 8:  # HD: namespace & universal id (a plain namespace has no second part)
            hd = parts[8]
            authority = [hd, None] if hd.isalnum() else [text(hd, 1), text(hd, 2)]
        is_npi = id_type == "NPI" or any(a and (a.upper() in NPI_SYSTEMS or "NPI" in a.upper()) for a in authority)
        if is_npi or (not id_type and not any(authority)):  # a bare id: an NPI when its check digit says so
            is_npi = len(source_id) == 10 and source_id.isdigit() and (is_npi or _npi_check(source_id))
        # as ``_compact`` leaves it: the keys in this order, those without a value left out (``text`` gives
        # None or text that is not empty)
        provider = {"kind": "provider", "source_id": source_id}
        if is_npi:
            provider["npi"] = source_id
        # a name of letters only is its own text, without the call
        if len(parts) > 1 and (family := parts[1] if parts[1].isalnum() else text(parts[1])):
            provider["family_name"] = family
        if len(parts) > 2 and (given := parts[2] if parts[2].isalnum() else text(parts[2])):
            provider["given_name"] = given
        r.providers[raw] = provider
        found.append(provider)
    return found


def location_from(r: Reader, seg: list[str] | None, field: int) -> Record | None:
    """PL → location: the point of care (PL-1), else the facility (PL-4); name from facility or description."""
    pl = r.msg.shared_components(seg, field)  # a practice's few places: read once each
    source_id = _place_id(pl)
    if not source_id:
        return None
    # nothing for ``_compact`` to leave out: the id is there, and the name falls back to the facility, then to it
    return {"kind": "location", "source_id": source_id,
            "name": (pl[8] if len(pl) > 8 else None) or (pl[3] if len(pl) > 3 else None) or source_id}


def coverages(r: Reader, patient_id: str) -> Iterator[Record]:
    """IN1 → coverage, ranked by IN1-1 (set id; order of appearance when absent)."""
    for order, in1 in enumerate(r.msg.all("IN1"), start=1):
        rank = to_int(r.get(in1, 1)) or order
        plan = r.get(in1, 3, 1) or r.get(in1, 2, 1) or r.get(in1, 4, 1) or str(rank)
        # as ``_compact`` leaves it: the keys in this order, those without a value left out (the texts
        # here are None or not empty, the rank a number from 1)
        coverage: Record = {"kind": "coverage", "source_id": f"{patient_id}:coverage:{plan}"}
        if patient_id:
            coverage["patient_source_id"] = patient_id
        if payer := _payer_name(r, in1):
            coverage["payer_name"] = payer
        if member := r.get(in1, 36, 1) or r.get(in1, 49, 1):
            coverage["member_id"] = member
        coverage["rank"] = rank
        yield coverage


def _payer_name(r: Reader, in1: list[str] | None) -> str | None:
    """IN1-4 (insurance company name), else IN1-2's text, else its code: a feed's few payers, read once each."""
    return _first(r.msg.shared_components(in1, 4)) or r.get(in1, 2, 2) or r.get(in1, 2, 1)


def encounter_from_pv1(r: Reader, patient_id: str | None, event: str) -> Record | None:
    """PV1/PV2 → encounter, keyed by PV1-19 (visit number)."""
    pv1 = r.msg.first("PV1")
    visit = r.get(pv1, 19, 1)
    if pv1 is None or not visit:
        return None
    status = ENCOUNTER_STATUS.get(event)
    end = r.moment(pv1, 45, "PV1-45")
    if end and status in (None, "in-progress", "arrived"):
        status = "finished"
    provider = r.get(pv1, 7, 1)
    location = _place_id(r.msg.shared_components(pv1, 3))
    start = r.moment(pv1, 44, "PV1-44") or r.dtm(r.msg.first("PV2"), 8)
    encounter_class = ENCOUNTER_CLASS.get((r.get(pv1, 2, 1) or "").upper())
    visit_type = r.get(pv1, 10, 1) or r.get(pv1, 18, 1) or r.get(pv1, 4, 1)
    # as ``_compact`` leaves it: the keys in this order, those without a value left out (the texts here
    # are None or not empty)
    encounter: Record = {"kind": "encounter", "source_id": visit}
    if patient_id:
        encounter["patient_source_id"] = patient_id
    if provider:
        encounter["provider_source_id"] = provider
    if location:
        encounter["location_source_id"] = location
    if start:
        encounter["start"] = start
    if end:
        encounter["end"] = end
    if status:
        encounter["status"] = status
    if encounter_class:
        encounter["encounter_class"] = encounter_class
    if visit_type:
        encounter["visit_type"] = visit_type
    return encounter


def _place_id(pl: tuple[str | None, ...]) -> str | None:
    """PL-1 (point of care), else PL-4 (facility), of a PL's components."""
    return (pl[0] if pl else None) or (pl[3] if len(pl) > 3 else None)


def pv1_providers_and_location(r: Reader) -> Iterator[Record]:
    pv1 = r.msg.first("PV1")
    if pv1 is None:
        return
    for field in (7, 8, 9, 17):  # attending, referring, consulting, admitting
        if field < len(pv1) and pv1[field]:  # most are empty: no call for them
            yield from providers_from(r, pv1, field)
    location = location_from(r, pv1, 3)
    if location:
        yield location


def _compact(record: Record) -> Record:
    """The record (a new dict each caller made) without its None and "" values, in place: the other keys
    keep their order. ``not v``: a value that is there (the most of them) is kept without the comparisons."""
    for key in [k for k, v in record.items() if not v and (v is None or v == "")]:
        del record[key]
    return record


def _patient_required(r: Reader) -> Record:
    patient = patient_from_pid(r, r.msg.first("PID"))
    if patient is None:
        where = "PID" if r.msg.first("PID") is None else "PID-3"
        raise ParseError("the message names no patient (no PID segment or no PID-3 identifier)", location=where)
    return patient


# ------------------------------------------------------------------ families
def map_adt(r: Reader, event: str) -> Iterator[Record]:
    patient = _patient_required(r)
    yield patient
    yield from coverages(r, patient["source_id"])
    if event in ("A28", "A31"):  # person information only: any PV1 there is a placeholder
        return
    yield from pv1_providers_and_location(r)
    encounter = encounter_from_pv1(r, patient["source_id"], event)
    if encounter:
        yield encounter


def map_merge(r: Reader, event: str) -> Iterator[Record]:
    """A40 (and A34, A39, A47): each PID/MRG pair merges MRG-1's patient into PID's; the merge is kept."""
    msg = r.msg
    merged_at = r.recorded_at
    pairs = 0
    current: Record | None = None
    for seg in msg.segments:
        if seg[0] == "PID":
            current = patient_from_pid(r, seg)
            if current is not None:
                yield current
        elif seg[0] == "MRG" and current is not None:
            prior = _prior_id(r, seg)
            if prior and prior != current["source_id"]:
                pairs += 1
                yield _compact({"kind": "patient_merge", "source_id": f"{prior}>{current['source_id']}",
                                "prior_source_id": prior, "surviving_source_id": current["source_id"],
                                "merged_at": merged_at})
    if current is None:
        _patient_required(r)
    if not pairs and not msg.all("MRG"):
        raise ParseError(f"ADT^{event} carries no MRG segment naming the prior patient", location="MRG")


def _prior_id(r: Reader, mrg: list[str]) -> str | None:
    msg = r.msg
    first = None
    for raw in msg.repetitions(mrg, 1):
        parts = msg.parts(raw)
        value = msg.text(parts[0])
        if value and len(parts) > 4 and msg.text(parts[4]) == "MR":
            return value
        first = first or value
    return first or r.get(mrg, 2, 1) or r.get(mrg, 3, 1)


def map_siu(r: Reader, event: str) -> Iterator[Record]:
    msg = r.msg
    sch = msg.first("SCH")
    ais, aip, ail = msg.first("AIS"), msg.first("AIP"), msg.first("AIL")
    if sch is not None:
        appointment_id = r.get(sch, 2, 1) or r.get(sch, 1, 1)
        if not appointment_id:
            raise ParseError("the appointment has no id (SCH-2 filler or SCH-1 placer appointment id)",
                             location="SCH-2")
    else:
        appointment_id = _appointment_without_sch(r, event, ais or aip or ail)
    patient = patient_from_pid(r, msg.first("PID"))
    if patient:
        yield patient
        yield from coverages(r, patient["source_id"])
    # AIS-4 is the booked service's own start; SCH-11 (TQ) is deprecated since v2.6 in favour of TQ1
    start = (r.dtm(ais, 4) or r.dtm(sch, 11, 4) or r.dtm(msg.first("TQ1"), 7) or r.dtm(aip, 6) or r.dtm(ail, 6))
    if not start:
        raise ParseError("the appointment has no readable start time (AIS-4, SCH-11.4 or TQ1-7)",
                         location="SCH-11" if sch is not None else "AIS-4")
    providers = providers_from(r, aip, 3) if aip else []
    if not providers:
        providers = _aig_providers(r, msg.all("AIG"))
    if not providers:  # no AIP or AIG person: the visit's attending, else referring, consulting, admitting
        pv1 = msg.first("PV1")
        for field in (7, 8, 9, 17):
            providers = providers_from(r, pv1, field)
            if providers:
                break
    providers += providers_from(r, sch, 16) + providers_from(r, sch, 12)  # filler contact, placer contact
    yield from providers
    provider = providers[0] if providers else None
    location = location_from(r, ail, 3) if ail else None
    if location is None:
        location = location_from(r, msg.first("PV1"), 3)
    if location:
        yield location
    status = TRIGGER_STATUS.get(event) or FILLER_STATUS.get((r.get(sch, 25, 1) or "").upper()) or "booked"
    # as ``_compact`` leaves it: the keys in this order, those without a value left out (the texts here are
    # None or not empty, a duration a number from 1)
    appointment: Record = {"kind": "appointment", "source_id": appointment_id}
    if patient:
        appointment["patient_source_id"] = patient["source_id"]
    if provider:
        appointment["provider_source_id"] = provider["source_id"]
        if npi := provider.get("npi"):
            appointment["provider_npi"] = npi
    if location:
        appointment["location_source_id"] = location["source_id"]
    appointment["start"] = start
    if duration := _duration(r, sch, ais):
        appointment["duration_min"] = duration
    if visit_type := _first(msg.shared_components(sch, 7)) or r.get(sch, 8, 1) or r.get(ais, 3, 1):
        appointment["visit_type"] = visit_type
    appointment["status"] = status
    if status in ("cancelled", "noshow") and (reason := r.get(sch, 6, 1)):
        appointment["cancel_reason"] = reason
    if event == "S15" and (recorded := r.recorded_at):
        appointment["cancelled_at"] = recorded
    if event == "S12" and (recorded := r.recorded_at):
        appointment["booked_at"] = recorded
    # SCH-26 placer order number: the order (here the referral, RF1-6 of its REF message) the visit fulfils
    if referral := r.get(sch, 26, 1):
        appointment["referral_source_id"] = referral
    yield appointment


def _appointment_without_sch(r: Reader, event: str, resource: list[str] | None) -> str:
    """The id of an appointment sent without SCH (some feeds send only the resources, AIS/AIL/AIP): the
    visit number (PV1-19), else the message control id (such an appointment cannot be updated later by
    its id). Without SCH and without any resource segment there is no appointment to read: refused."""
    if resource is None:
        raise ParseError(f"SIU^{event} has no SCH segment and no AIS, AIL or AIP resource segment: no appointment "
                         "to read", location="SCH")
    visit = r.get(r.msg.first("PV1"), 19, 1)
    if r.tally is not None:
        r.tally.notes.append("no SCH segment: the appointment is read from its resource segments (AIS, AIL, AIP), "
                             f"keyed by {'PV1-19 (visit number)' if visit else 'MSH-10 (message control id)'}")
    return visit or r.msg.control_id


PERSON_RESOURCE_TYPES = frozenset({"P", "PROV", "PROVIDER", "PHYSICIAN", "MD", "DO", "DR", "NP", "PA", "STAFF"})


def _aig_providers(r: Reader, aigs: list[list[str]]) -> list[Record]:
    """AIG resources that are people (AIG-4 resource type) stand in for AIP in some feeds."""
    found = []
    for aig in aigs:
        kind = (r.get(aig, 4, 1) or "").upper()
        if kind in PERSON_RESOURCE_TYPES and (source_id := r.get(aig, 3, 1)):
            found.append(_compact({"kind": "provider", "source_id": source_id, "family_name": r.get(aig, 3, 2)}))
    return found


def _duration(r: Reader, sch: list[str] | None, ais: list[str] | None) -> int | None:
    """AIS-7/AIS-8 (the service's duration and units), else SCH-9/SCH-10; minutes when the unit is missing."""
    for seg, amount_field, unit_field in ((ais, 7, 8), (sch, 9, 10)):
        amount = to_money(r.get(seg, amount_field))
        if amount is None:
            continue
        unit = (r.get(seg, unit_field, 1) or "MIN").upper()
        factor = DURATION_UNITS.get(unit, 1)
        minutes = round(float(amount) * factor)
        if 0 < minutes < 100_000:
            return minutes
    return None


def map_dft(r: Reader, event: str) -> Iterator[Record]:
    msg = r.msg
    patient = _patient_required(r)
    yield patient
    yield from coverages(r, patient["source_id"])
    yield from pv1_providers_and_location(r)
    pv1 = msg.first("PV1")
    visit = r.get(pv1, 19, 1)
    fallback_dx = [code for dg1 in msg.all("DG1") if (code := _first(msg.shared_components(dg1, 3)))]
    in1 = msg.first("IN1")
    payer_name = _payer_name(r, in1)
    ft1s = msg.all("FT1")
    if not ft1s:
        raise ParseError(f"DFT^{event} has no FT1 segment", location="FT1")
    control = msg.control_id
    for number, ft1 in enumerate(ft1s, start=1):
        yield from _financial_transaction(r, ft1, number, control, patient["source_id"], visit, fallback_dx,
                                          payer_name)


def _financial_transaction(r: Reader, ft1: list[str], number: int, control: str, patient_id: str,
                           visit: str | None, fallback_dx: list[str], payer_name: str | None) -> Iterator[Record]:
    msg = r.msg
    # FT1-2 (transaction id) identifies the line when sent; otherwise message control id + FT1-1 or position
    get = r.get
    # FT1-4, 5, 6 and 10 as ``get`` reads them, without its call when a field is letters and digits only
    size = len(ft1)
    source_id = get(ft1, 2, 1) or f"{control}:{get(ft1, 1) or number}"
    value = ft1[5] if size > 5 else ""
    posted_on = to_date(value if value.isalnum() else get(ft1, 5, 1))
    value = ft1[4] if size > 4 else ""
    service_date = to_date(value if value.isalnum() else get(ft1, 4, 1)) or posted_on
    value = ft1[6] if size > 6 else ""
    tx_type = (value if value.isalnum() else get(ft1, 6, 1) or "CG").upper()
    price = msg.shared_components(ft1, 11)  # CP: the amount's text & its currency, of a fee schedule
    amount = to_money(price[0] if price else None)
    if tx_type in PAYMENT_TYPES or tx_type in ADJUSTMENT_TYPES:
        amount = amount or to_money(r.get(ft1, 12, 1))
        if amount is None:
            raise ParseError("the payment or adjustment has no readable amount (FT1-11)",
                             location=f"FT1 #{number}-11")
        paid, adjusted = (amount, None) if tx_type in PAYMENT_TYPES else (None, amount)
        yield _compact({"kind": "remittance", "source_id": source_id, "claim_id": r.get(ft1, 3, 1) or visit,
                        "charge_source_id": r.get(ft1, 23, 1), "payer_name": payer_name,
                        "paid_amount": _positive(paid), "adjustment_amount": _positive(adjusted),
                        "paid_on": posted_on or service_date})
        return
    if service_date is None:
        raise ParseError("the charge has no readable service date (FT1-4)", location=f"FT1 #{number}-4")
    value = ft1[10] if size > 10 else ""
    units = to_int(value if value.isalnum() else get(ft1, 10, 1))
    if units is None and r.get(ft1, 10, 1):
        r.drop(f"FT1 #{number}-10", "not a whole number of units")
    unpriced = None
    if amount is None:
        # FT1-11 is the extended amount; FT1-12 the unit amount, times FT1-10 (quantity, 1 when empty)
        unit_amount = to_money(r.get(ft1, 12, 1))
        if unit_amount is not None:
            amount = str(Decimal(unit_amount) * (units or 1))
        elif r.strict:  # all or nothing: a line without a price is refused, as the connector always did
            raise ParseError("the charge has no readable amount (FT1-11 or FT1-12; the practice's mapping is "
                             "strict)", location=f"FT1 #{number}-11")
        else:  # EHR-to-billing feeds send codes and quantities, the billing system prices them
            unpriced = True
    procedure = _first(msg.shared_components(ft1, 25)) or _first(msg.shared_components(ft1, 7))
    modifiers = msg.first_components(ft1, 26)  # the first component of each repetition, empty ones dropped
    diagnoses = msg.first_components(ft1, 19)
    if not diagnoses and fallback_dx:
        r.used.add("DG1")
    performing = providers_from(r, ft1, 20)
    ordering = providers_from(r, ft1, 21) if len(ft1) > 21 and ft1[21] else []  # mostly empty: no call
    yield from performing
    yield from ordering
    provider = performing[0] if performing else ordering[0] if ordering else None
    location = None
    if (len(ft1) > 16 and ft1[16]) or (len(ft1) > 13 and ft1[13]):  # mostly both empty: no call
        location = r.get(ft1, 16, 1) or r.get(ft1, 16, 4) or r.get(ft1, 13, 1)
    # as ``_compact`` leaves it, written out (a message has several charges): the keys in this order, None
    # and "" left out (the texts here are None or not empty; the lists are kept even when empty)
    charge: Record = {"kind": "charge", "source_id": source_id}
    if visit:
        charge["encounter_source_id"] = visit
    if patient_id:
        charge["patient_source_id"] = patient_id
    if provider:
        charge["provider_source_id"] = provider["source_id"]
    if location:
        charge["location_source_id"] = location
    charge["service_date"] = service_date
    if posted_on:
        charge["posted_on"] = posted_on
    if procedure:
        charge["procedure_code"] = procedure
    charge["modifiers"] = modifiers
    charge["units"] = units or 1
    if amount:
        charge["amount"] = amount
    if unpriced:
        charge["unpriced"] = unpriced
    charge["diagnosis_codes"] = diagnoses or list(fallback_dx)
    if payer_name:
        charge["payer_name"] = payer_name
    yield charge


def _first(components: tuple[str | None, ...]) -> str | None:
    return components[0] if components else None


def _positive(amount: str | None) -> str | None:
    return amount.lstrip("-") if amount else None


def map_other(r: Reader, event: str) -> Iterator[Record]:
    """Other message types: the patient, visit, providers and location they carry."""
    patient = patient_from_pid(r, r.msg.first("PID"))
    if patient is None:
        code = r.msg.message_type[0]
        raise ParseError(f"{code}^{event} messages are not read by this connector and this one carries no "
                         "patient (PID-3) to keep", location="MSH-9")
    yield patient
    yield from coverages(r, patient["source_id"])
    yield from pv1_providers_and_location(r)
    encounter = encounter_from_pv1(r, patient["source_id"], "")
    if encounter:
        yield encounter


# RF1-1 referral status (HL7 table 0283) → the model's referral status (FHIR ServiceRequest.status words)
REFERRAL_STATUS = {"A": "active", "P": "draft", "R": "revoked", "E": "revoked"}
REFERRAL_EVENTS = frozenset({"I12", "I13", "I14"})


def map_ref(r: Reader, event: str) -> Iterator[Record]:
    """REF I12 (new referral), I13 (modified), I14 (cancelled): RF1 and the PRD of the referring provider."""
    msg = r.msg
    rf1 = msg.first("RF1")
    if rf1 is None:
        raise ParseError(f"REF^{event} has no RF1 segment", location="RF1")
    referral_id = r.get(rf1, 6, 1) or r.get(rf1, 11, 1)
    if not referral_id:
        raise ParseError("the referral has no id (RF1-6 originating referral identifier, else RF1-11 external "
                         "referral identifier)", location="RF1-6")
    patient = _patient_required(r)
    yield patient
    yield from coverages(r, patient["source_id"])
    yield from pv1_providers_and_location(r)
    encounter = encounter_from_pv1(r, patient["source_id"], "")
    if encounter:
        yield encounter
    prds = msg.all("PRD")
    # PRD-1 role (table 0286): RP referring provider; else the first that is not RT (referred to)
    prd = next((p for p in prds if (r.get(p, 1, 1) or "").upper() == "RP"), None) or \
        next((p for p in prds if (r.get(p, 1, 1) or "").upper() != "RT"), None)
    referring = None
    if prd is not None:
        name = " ".join(v for c in (1, 2, 3, 6) if (v := r.get(prd, 2, c)))
        referring = name or None
        provider_id = r.get(prd, 7, 1)
        if provider_id:
            id_type = (r.get(prd, 7, 2) or "").upper()
            is_npi = len(provider_id) == 10 and provider_id.isdigit() and (
                id_type == "NPI" or (not id_type and _npi_check(provider_id)))
            yield _compact({"kind": "provider", "source_id": provider_id, "npi": provider_id if is_npi else None,
                            "family_name": r.get(prd, 2, 1), "given_name": r.get(prd, 2, 2)})
            referring = referring or provider_id
    code = (r.get(rf1, 1, 1) or "").upper()
    status = "revoked" if event == "I14" else REFERRAL_STATUS.get(code, "unknown" if code else None)
    received = r.date(rf1, 7, "RF1-7") or r.date(rf1, 9, "RF1-9")
    if received is None and (recorded := r.recorded_at):
        received = recorded[:10]
    yield _compact({
        "kind": "referral", "source_id": referral_id, "patient_source_id": patient["source_id"],
        "referring_provider": referring, "specialty": r.get(rf1, 3, 1) or r.get(rf1, 3, 2),
        "received_on": received, "status": status,
    })


# Segments each family reads; the others of a message are counted as not mapped (``Tally.skip``). The
# envelope segments (MSH, SFT, UAC, EVN) are read for every message and never counted.
ENVELOPE_SEGMENTS = frozenset({"MSH", "SFT", "UAC", "EVN"})
SEGMENTS_READ: dict[Callable[[Reader, str], Iterator[Record]], frozenset[str]] = {
    map_adt: frozenset({"PID", "PV1", "PV2", "IN1"}),
    map_merge: frozenset({"PID", "MRG"}),
    map_siu: frozenset({"SCH", "TQ1", "PID", "PV1", "IN1", "RGS", "AIS", "AIG", "AIL", "AIP"}),
    map_dft: frozenset({"PID", "PV1", "FT1", "IN1"}),  # DG1 when a charge takes its diagnoses from it
    map_ref: frozenset({"RF1", "PRD", "PID", "PV1", "PV2", "IN1"}),
    map_other: frozenset({"PID", "PV1", "PV2", "IN1"}),
}


# ... and with the envelope's: the segments a family's message holds that are not counted as not mapped
_READ_OR_ENVELOPE = {family: read | ENVELOPE_SEGMENTS for family, read in SEGMENTS_READ.items()}


def family_of(code: str, event: str) -> Callable[[Reader, str], Iterator[Record]]:
    if code == "ADT" and event in MERGE_EVENTS:
        return map_merge
    if code == "ADT":
        return map_adt
    if code == "SIU" and event in SIU_EVENTS:
        return map_siu
    if code == "DFT" and event in ("P03", "P11"):
        return map_dft
    if code == "REF" and event in REFERRAL_EVENTS:
        return map_ref
    return map_other


def to_records(msg: Message, tz: dt.tzinfo | None = None, tally: Tally | None = None,
               strict: bool = False) -> list[Record]:
    """The records of one message. ``tally`` (the message's): segments not read are counted there, and
    optional values left out as unreadable recorded; ``strict``: the practice's mapping is all or nothing."""
    # MSH-9.1 and 9.2 (``Message.message_type`` without the structure, not read here): a feed's few types;
    # as ``parse`` read them, when it did
    kind = msg.kind
    if kind is None:
        kind = msg.shared_components(msg.msh, 9)
    code = (kind[0] or "").upper() if kind else ""
    event = (kind[1] or "").upper() if len(kind) > 1 else ""
    if not event:
        evn = msg.first("EVN")
        event = (msg.get(evn, 1) or "").upper()
    reader = Reader(msg, tz, tally, strict)
    family = family_of(code, event)
    records = _deduplicated(list(family(reader, event)))
    event_time = reader.event_time
    if event_time:  # none readable (MSH-7 is required, but may be garbled): the hub uses arrival
        for record in records:
            record["event_time"] = event_time
    if tally is not None:  # the segment index is built already: one look at each segment id
        read = _READ_OR_ENVELOPE[family]
        for name, found in msg.by_id().items():
            if name not in read and name not in reader.used:
                tally.skip(name, len(found))
    return records


def _deduplicated(records: list[Record]) -> list[Record]:
    """One record per (kind, source_id): a provider named twice is one provider (fields merged, first wins)."""
    seen: dict[tuple[str, str], Record] = {}
    for record in records:
        first = seen.setdefault((record["kind"], record["source_id"]), record)  # one look-up
        # merged only when it has a key the first lacks: a provider named again is mostly the same record
        if first is not record and not first.keys() >= record.keys():
            for k, v in record.items():
                first.setdefault(k, v)
    return list(seen.values())  # the first of each, in the order met
