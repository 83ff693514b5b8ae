"""Interchanges: the separators an ISA declares, segments, and the ISA/GS/ST envelopes around them.

This is the ingest path (hundreds of thousands of segments a second), so it is plain string work;
the deep check against the implementation guides (pyx12) is in ``validate.py``, for onboarding.

Positions are the segment's ordinal in the file, counting from 1 at the ISA: every error names the
segment (``SE``), its element where one is wrong (``SE-01``) and that position, never a value that
could be patient data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hub.errors import ParseError

ISA_ELEMENTS = 16
ISA_LENGTH = 106  # the ISA is fixed-width: 106 characters with its terminator
VERSIONS = ("00401", "00501")


@dataclass(frozen=True)
class Separators:
    """What the ISA declares: element (ISA byte 4), repetition (ISA-11 from 00501 on), component
    (ISA-16) and segment terminator (the character after ISA-16)."""

    element: str
    component: str
    segment: str
    repetition: str | None = None


@dataclass
class Transaction:
    """One ST/SE transaction with the headers of its interchange and group.

    ``segments`` are split into elements (``seg[0]`` is the segment id); ``first`` is the position
    of the ST in its file. ``error`` says why the envelope refuses it (a missing SE, wrong counts)."""

    separators: Separators
    isa: list[str]
    gs: list[str]
    segments: list[list[str]]
    first: int
    index: int = 1
    error: ParseError | None = None
    texts: list[str] = field(default_factory=list)  # the segments as sent, for the stored message

    @property
    def set_id(self) -> str:
        return _el(self.segments[0], 1)

    @property
    def control(self) -> str:
        return _el(self.segments[0], 2)

    @property
    def version(self) -> str:
        """The implementation guide: ST-03, else GS-08 (``005010X221A1``)."""
        return _el(self.segments[0], 3) or _el(self.gs, 8)


def digits(text: str) -> bool:
    """ASCII digits only, at most 18 of them: ``str.isdigit`` also takes superscripts and other scripts'
    digits ('³'), which ``int`` and dates refuse, and ``int`` refuses more than 4,300 digits (no X12 count,
    number or date has more than 10)."""
    return len(text) <= 18 and text.isascii() and text.isdigit()


def _el(segment: list[str], n: int) -> str:
    return segment[n] if len(segment) > n else ""


def looks_like_isa(data: bytes) -> bool:
    """The first non-blank bytes are ``ISA`` followed by a separator that is no letter, digit or space."""
    head = data[:128].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head[:3] == b"ISA" and len(head) > 3 and not head[3:4].isalnum() and head[3:4] not in b" \r\n"


def separators(text: str, origin: str | None = None) -> Separators:
    """The separators the ISA at the start of ``text`` declares. The ISA is fixed-width, but senders
    that pad it wrongly are common: the elements are counted instead of character positions."""
    if not text.startswith("ISA") or len(text) < 4:
        raise ParseError("the file does not start with an ISA segment: this is not an X12 interchange",
                         source=origin, location="ISA, segment 1")
    element = text[3]
    if element.isalnum() or element.isspace():
        raise ParseError("ISA: the element separator (the character after ISA) is a letter, digit or space",
                         source=origin, location="ISA, segment 1")
    at = 3
    for _ in range(ISA_ELEMENTS - 1):
        at = text.find(element, at + 1)
        if at < 0:
            break
    if at < 0 or len(text) < at + 3:
        raise ParseError(f"ISA: fewer than {ISA_ELEMENTS} elements", source=origin, location="ISA, segment 1")
    component, segment = text[at + 1], text[at + 2]
    if segment == "\r" and text[at + 3:at + 4] == "\n":
        segment = "\n"  # a CRLF after ISA-16 with no other terminator: the line is the segment
    elements = text[:at + 2].split(element)
    version, repetition = elements[12], elements[11]
    if version not in VERSIONS:
        raise ParseError(f"ISA-12: interchange version {version[:8]!r} is not one the hub reads "
                         f"({', '.join(VERSIONS)})", source=origin, location="ISA-12, segment 1")
    if len({element, component, segment}) < 3 or component.isalnum() or segment.isalnum():
        raise ParseError("ISA: the element, component and segment separators must be distinct and not letters "
                         "or digits", source=origin, location="ISA-16, segment 1")
    rep = repetition if version >= "00501" and repetition and not repetition.isalnum() else None
    return Separators(element, component, segment, rep)


def segment_texts(text: str, sep: Separators) -> list[str]:
    """The segments of ``text`` as sent, line breaks and blank space between them removed."""
    return [s for s in (part.strip("\r\n\t ") for part in text.split(sep.segment)) if s]


def decode(data: bytes) -> str:
    """X12 is ASCII (the extended character set is ISO 8859-1 in practice): latin-1 reads any byte."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return data.decode("latin-1").lstrip(" \t\r\n")


def read(data: bytes, origin: str | None = None) -> tuple[Separators, list[Transaction]]:
    """Every transaction of an interchange file, each with its own error (if any).

    An error of the interchange (no ISA, IEA missing or not matching, wrong group count) refuses the
    whole file: a ``ParseError`` naming the segment and position. An error of a group (GE missing,
    its control number or transaction count wrong) refuses each of that group's transactions; an
    error of a transaction (SE missing, SE-01 or SE-02 wrong) refuses that transaction alone."""
    text = decode(data)
    sep = separators(text, origin)
    texts = segment_texts(text, sep)
    element = sep.element
    out: list[Transaction] = []
    isa: list[str] | None = None
    gs: list[str] | None = None
    group: list[Transaction] = []
    current: Transaction | None = None
    groups = 0
    index = 0

    def fail(message: str, where: str, pos: int) -> ParseError:
        return ParseError(message, source=origin, location=f"{where}, segment {pos}")

    for pos, seg_text in enumerate(texts, start=1):
        seg = seg_text.split(element)
        sid = seg[0]
        if current is not None and sid not in ("SE", "ST", "GE", "IEA", "GS", "ISA"):
            current.segments.append(seg)
            current.texts.append(seg_text)
            continue
        if sid == "ISA":
            if isa is not None:
                raise fail("ISA inside an interchange (the IEA of the one before is missing)", "IEA", pos)
            if len(seg) != ISA_ELEMENTS + 1:
                raise fail(f"ISA has {len(seg) - 1} elements instead of {ISA_ELEMENTS}", "ISA", pos)
            isa, groups = seg, 0
            continue
        if isa is None:
            raise fail(f"{sid[:3]} outside an interchange (before an ISA or after its IEA)", sid[:3], pos)
        if sid == "GS":
            if gs is not None:
                raise fail("GS inside a functional group (the GE of the one before is missing)", "GE", pos)
            gs, group, groups = seg, [], groups + 1
        elif sid == "ST":
            if gs is None:
                raise fail("ST outside a functional group (no GS before it)", "ST", pos)
            if current is not None:  # the SE of the one before is missing: it is refused, this one goes on
                current.error = fail(f"transaction {current.control[:9]!r}: SE missing before the next ST",
                                     "SE", pos)
            index += 1
            current = Transaction(sep, isa, gs, [seg], pos, index, texts=[seg_text])
            group.append(current)
            out.append(current)
        elif sid == "SE":
            if current is None:
                raise fail("SE without its ST", "SE", pos)
            current.segments.append(seg)
            current.texts.append(seg_text)
            count, control = _el(seg, 1), _el(seg, 2)
            if control != current.control:
                current.error = fail(f"SE-02 control number {control[:9]!r} does not match ST-02 "
                                     f"{current.control[:9]!r}", "SE-02", pos)
            elif not digits(count) or int(count) != len(current.segments):
                current.error = fail(f"SE-01 says {count[:9]!r} segments, the transaction has "
                                     f"{len(current.segments)} (ST to SE)", "SE-01", pos)
            current = None
        elif sid == "GE":
            if gs is None:
                raise fail("GE without its GS", "GE", pos)
            if current is not None:
                current.error = fail(f"transaction {current.control[:9]!r}: SE missing before the GE", "SE", pos)
                current = None
            problem = None
            if _el(seg, 2) != _el(gs, 6):
                problem = fail(f"GE-02 control number {_el(seg, 2)[:9]!r} does not match GS-06 "
                               f"{_el(gs, 6)[:9]!r}", "GE-02", pos)
            elif not digits(_el(seg, 1)) or int(_el(seg, 1)) != len(group):
                problem = fail(f"GE-01 says {_el(seg, 1)[:9]!r} transactions, the group has {len(group)}",
                               "GE-01", pos)
            if problem is not None:
                for transaction in group:
                    transaction.error = transaction.error or problem
            gs = None
        elif sid == "IEA":
            if current is not None or gs is not None:
                raise fail("IEA before the group's GE (or the transaction's SE)", "GE", pos)
            if _el(seg, 2) != _el(isa, 13):
                raise fail(f"IEA-02 control number {_el(seg, 2)[:9]!r} does not match ISA-13 {_el(isa, 13)[:9]!r}",
                           "IEA-02", pos)
            if not digits(_el(seg, 1)) or int(_el(seg, 1)) != groups:
                raise fail(f"IEA-01 says {_el(seg, 1)[:9]!r} functional groups, the interchange has {groups}",
                           "IEA-01", pos)
            isa = None
        elif sid in ("TA1",):
            continue  # an interchange acknowledgment beside the groups: nothing of the hub's
        else:
            raise fail(f"segment {sid[:3]!r} outside a transaction (between the envelopes)", sid[:3] or "?", pos)
    end = len(texts)
    if current is not None:
        current.error = fail(f"transaction {current.control[:9]!r}: SE missing at the end of the file", "SE", end)
    if gs is not None:
        raise fail("the file ends inside a functional group: GE missing", "GE", end)
    if isa is not None:
        raise fail("the file ends inside the interchange: IEA missing", "IEA", end)
    if not out:
        raise fail("the interchange holds no transaction (no ST segment)", "ST", end)
    return sep, out


def stored_text(transaction: Transaction) -> str:
    """One transaction as an interchange of its own (its ISA and GS, then GE and IEA counting one),
    with the separators as sent: the message the store keeps and ``parse`` reads again."""
    sep = transaction.separators
    e = sep.element
    term = sep.segment + ("" if sep.segment == "\n" else "\n")
    parts = [e.join(transaction.isa), e.join(transaction.gs), *transaction.texts,
             f"GE{e}1{e}{_el(transaction.gs, 6)}", f"IEA{e}1{e}{_el(transaction.isa, 13)}"]
    return term.join(parts) + term
