"""A small, fast ER7 (pipe-and-hat) tokenizer: the HL7 v2 hot path.

hl7apy builds a full object tree and validates as it goes (about 70 messages a
second per core here); ingest needs tens of thousands. This module does only what
mapping needs: separators from MSH-1/MSH-2, segments, fields, repetitions,
components, sub-components and escape sequences, decoded lazily on access.

Tolerance (real feeds bend the standard):

- segments end in CR, LF or CRLF; blank lines, a UTF-8 byte-order mark and
  whitespace before ``MSH`` are ignored;
- encoding characters are read from MSH-2 whatever they are; a doubled escape
  character (``^~\\\\&`` from a badly escaped export) is read once, a fifth one (the
  v2.7 truncation character) is ignored, a missing sub-component separator
  defaults to ``&``; any other character given two roles (``^^\\&``) is refused;
- the text is decoded as UTF-8 when it is valid UTF-8, otherwise by MSH-18
  (ISO 8859 parts, ASCII), falling back to Windows-1252, which reads any byte;
- Z-segments, unknown segments, missing optional segments and trailing empty
  fields are simply there or not there;
- a line that does not start with a segment id is the continuation of the segment
  before it (a newline inside a text field), joined with a line feed;
- ``""`` (the HL7 null) reads as empty.

Strict only where meaning depends on it: the message starts with ``MSH`` and a
readable separator set, and MSH-9 (message type) and MSH-10 (control id) are
present; a message whose segments are run together on one line with spaces
(``MSH|...| PID|...``) is refused as such. Errors name the segment and field,
never a value.

Field numbering follows the standard: ``seg[n]`` is field n, and for MSH
``seg[1]`` is the field separator itself and ``seg[2]`` the encoding characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from hub.errors import ParseError

_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}\Z")
_LINE_BREAKS = re.compile(r"\r\n|\n|\r")


@lru_cache(maxsize=1024)
def _segment_id(name: str) -> bool:
    return _SEGMENT_ID.match(name) is not None
_CHARSETS = {
    "UNICODE UTF-8": "utf-8", "UTF-8": "utf-8", "ASCII": "ascii",
    "8859/1": "iso8859-1", "8859/2": "iso8859-2", "8859/3": "iso8859-3", "8859/4": "iso8859-4",
    "8859/5": "iso8859-5", "8859/6": "iso8859-6", "8859/7": "iso8859-7", "8859/8": "iso8859-8",
    "8859/9": "iso8859-9", "8859/15": "iso8859-15",
}
BATCH_SEGMENTS = frozenset({"FHS", "BHS", "BTS", "FTS"})
RUN_TOGETHER = ("the segments are run together on one line, separated by spaces: each segment must end "
                "in a segment terminator (CR, LF or CRLF)")


def run_together(line: str, field: str) -> bool:
    """True when one line holds several segments separated by whitespace (``MSH|...| PID|...``)."""
    return re.search(r"\s[A-Z][A-Z0-9]{2}" + re.escape(field), line) is not None


@dataclass(frozen=True, slots=True)
class Separators:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @property
    def encoding_characters(self) -> str:
        return self.component + self.repetition + self.escape + self.subcomponent


DEFAULT_SEPARATORS = Separators()


def read_separators(header: str, *, where: str = "MSH") -> Separators:
    """The separators of a message whose text starts with ``MSH``."""
    if len(header) < 4:
        return _separators_of("", where)  # raises: cut short
    end = header.find(header[3], 4)
    return _separators_of(header[3:end] if end >= 0 else header[3:], where)  # one answer per dialect


@lru_cache(maxsize=64)
def _separators_of(head: str, where: str) -> Separators:
    """``head``: MSH-1 and MSH-2 as sent (the field separator, then the encoding characters)."""
    header = "MSH" + head
    if len(header) < 4:
        raise ParseError("the message header is cut short: no field separator after MSH", location=f"{where}-1")
    field = header[3]
    if field.isalnum() or field.isspace():
        raise ParseError("MSH-1 (field separator) is missing or is a letter, digit or space", location=f"{where}-1")
    end = header.find(field, 4)
    raw = header[4:end if end >= 0 else len(header)]
    chars: list[str] = []
    for i, ch in enumerate(raw):
        if ch.isalnum() or ch.isspace():
            break
        if ch in chars:
            if ch == raw[i - 1] == "\\":  # "^~\\&": an escape character doubled by a badly escaped export
                continue
            # one character in two roles: every field would be read wrongly
            raise ParseError(f"MSH-2 (encoding characters) uses the character {ch!r} for two roles (encoding "
                             "characters must differ from each other and from the field separator)",
                             location=f"{where}-2")
        chars.append(ch)
    if len(chars) < 3:
        raise ParseError("MSH-2 (encoding characters) needs at least component, repetition and escape "
                         "characters", location=f"{where}-2")
    found = Separators(field, chars[0], chars[1], chars[2], chars[3] if len(chars) > 3 else "&")
    return DEFAULT_SEPARATORS if found == DEFAULT_SEPARATORS else found  # the usual set: one object (``Message``)


def decode_bytes(data: bytes) -> str:
    """Bytes → text: UTF-8 when valid, else the MSH-18 character set, else Windows-1252."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    codec = _charset_of(data)
    if codec and codec not in ("utf-8", "ascii"):
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            pass
    return data.decode("cp1252", errors="replace")


def _charset_of(data: bytes) -> str | None:
    """MSH-18 read straight from the bytes (the header itself is ASCII)."""
    start = data.find(b"MSH")
    if start < 0 or len(data) < start + 4:
        return None
    line = _LINE_BREAKS.split(data[start:start + 4096].decode("latin-1"), maxsplit=1)[0]
    if len(line) < 4:  # "MSH" and a line break: no field separator to split on
        return None
    parts = line.split(line[3])
    if len(parts) <= 17:
        return None
    value = parts[17].split("~")[0].split("^")[0].strip().upper()
    return _CHARSETS.get(value)


class Message:
    """One HL7 v2 message, split into segments and fields; the rest is split on access."""

    __slots__ = ("segments", "sep", "_index", "_chars", "_usual", "kind")

    def __init__(self, segments: list[list[str]], sep: Separators) -> None:
        self.segments = segments
        self.sep = sep
        self._chars = (sep.repetition, sep.component, sep.subcomponent, sep.escape)
        self._index: dict[str, list[list[str]]] | None = None
        self._usual = sep is DEFAULT_SEPARATORS or sep == DEFAULT_SEPARATORS  # ``shared_components``' cache
        # ``shared_components(msh, 9)`` as ``parse`` read it (the mapping reads MSH-9 again); None: not read
        self.kind: tuple[str | None, ...] | None = None

    # -- segments -----------------------------------------------------------------
    @property
    def msh(self) -> list[str]:
        return self.segments[0]

    def all(self, name: str) -> list[list[str]]:
        index = self._index
        if index is None:
            index = self.by_id()
        return index.get(name, [])

    def by_id(self) -> dict[str, list[list[str]]]:
        """The segments by segment id, in message order (built once, on first use)."""
        if self._index is None:
            index: dict[str, list[list[str]]] = {}
            for seg in self.segments:  # not setdefault: its empty list would be made for every segment
                name = seg[0]
                if name in index:  # ``in``, not ``get``: no method call, and most ids come once
                    index[name].append(seg)
                else:
                    index[name] = [seg]
            self._index = index
        return self._index

    def first(self, name: str) -> list[str] | None:
        index = self._index
        if index is None:
            index = self.by_id()
        found = index.get(name)
        return found[0] if found else None

    # -- values -------------------------------------------------------------------
    def get(self, seg: list[str] | None, field: int, component: int = 1, sub: int = 1, rep: int = 0) -> str | None:
        """The decoded value at ``seg``-field.component.sub (1-based) of repetition ``rep``, or None."""
        if seg is None or field >= len(seg):
            return None
        value = seg[field]
        if not value:
            return None
        if value.isalnum():  # the usual id, code or name: no separator, escape, space or HL7 null in it
            return value if component == 1 and sub == 1 and not rep else None
        if field <= 2 and seg[0] == "MSH":
            return value
        rs, cs, ss, es = self._chars
        # ``in``, then partition, rather than split: most reads want the first repetition, component or
        # piece, and most fields have one repetition (``in`` is cheaper than ``find``, which parses its arguments)
        if rep:
            reps = value.split(rs)
            if rep >= len(reps):
                return None
            value = reps[rep]
        elif rs in value:
            value = value.partition(rs)[0]
        if cs in value:
            if component == 1:
                value = value.partition(cs)[0]
            else:
                parts = value.split(cs)
                if component > len(parts):
                    return None
                value = parts[component - 1]
        elif component > 1:
            return None
        if ss in value:
            parts = value.split(ss)
            if sub > len(parts):
                return None
            value = parts[sub - 1]
        elif sub > 1:
            return None
        if es in value:
            value = unescape(value, self.sep)
        value = value.strip()
        return value if value and value != '""' else None

    def components(self, seg: list[str] | None, field: int, *, shared: bool = False) -> tuple[str | None, ...]:
        """The decoded components of ``seg``-field's first repetition (``text`` of each): its c-th
        (1-based) is ``get(seg, field, c)``, and there is none beyond the last; () when the field is
        empty. One split for a field read in several components (not MSH-1 or MSH-2). ``shared``: kept
        per distinct text for the usual separators (``shared_components``)."""
        if seg is None or field >= len(seg):
            return ()
        value = seg[field]
        if not value:
            return ()
        if value.isalnum():
            return (value,)
        if shared and self._usual and len(value) <= SHARED_MAX:
            return _usual_components(value)
        return _components(value, self.sep)

    def shared_components(self, seg: list[str] | None, field: int) -> tuple[str | None, ...]:
        """``components``, kept per distinct text for the usual separators: for values a feed sends
        again and again (message types, codes, places, amounts), never a patient's own."""
        return self.components(seg, field, shared=True)

    def first_components(self, seg: list[str] | None, field: int) -> list[str]:
        """The first component of each repetition (``text``; codes of a CWE list), empty ones dropped: a
        new list, made once per distinct text for the usual separators (a feed's codes repeat)."""
        if seg is None or field >= len(seg) or not seg[field]:
            return []
        value = seg[field]
        if self._usual and len(value) <= SHARED_MAX:
            return list(_usual_first_components(value))
        return list(_first_components(value, self.sep))

    def repetitions(self, seg: list[str] | None, field: int) -> list[str]:
        """The raw repetitions of a field (still with components), empty ones dropped."""
        if seg is None or field >= len(seg) or not seg[field]:
            return []
        return [r for r in seg[field].split(self.sep.repetition) if r]

    def parts(self, raw: str) -> list[str]:
        """Components of one raw repetition (not yet unescaped)."""
        return raw.split(self.sep.component)

    def text(self, raw: str | None, sub: int = 1) -> str | None:
        """One raw component → decoded text (the ``sub``-th sub-component)."""
        if not raw:
            return None
        if raw.isalnum():  # as in ``get``: nothing to split, unescape or strip
            return raw if sub == 1 else None
        if self.sep.subcomponent in raw:
            pieces = raw.split(self.sep.subcomponent)
            raw = pieces[sub - 1] if sub <= len(pieces) else ""
        elif sub > 1:
            return None
        if self.sep.escape in raw:
            raw = unescape(raw, self.sep)
        raw = raw.strip()
        return raw if raw and raw != '""' else None

    # -- the header ---------------------------------------------------------------
    @property
    def message_type(self) -> tuple[str, str, str]:
        """(MSH-9.1 code, MSH-9.2 trigger, MSH-9.3 structure), empty strings when absent."""
        msh = self.msh
        return (self.get(msh, 9, 1) or "", self.get(msh, 9, 2) or "", self.get(msh, 9, 3) or "")

    @property
    def control_id(self) -> str:
        return self.get(self.msh, 10) or ""

    @property
    def version(self) -> str:
        return self.get(self.msh, 12) or ""


def _components(value: str, sep: Separators) -> tuple[str | None, ...]:
    """``Message.components`` of a field's text (not empty)."""
    if sep.repetition in value:
        value = value.partition(sep.repetition)[0]
    ss, es = sep.subcomponent, sep.escape
    out: list[str | None] = []
    for raw in value.split(sep.component):  # each as ``Message.text`` reads it
        if raw.isalnum():
            out.append(raw)
            continue
        if ss in raw:
            raw = raw.partition(ss)[0]
        if es in raw:
            raw = unescape(raw, sep)
        raw = raw.strip()
        out.append(raw if raw and raw != '""' else None)
    return tuple(out)


SHARED_MAX = 256  # characters of a field text kept by ``shared_components``: codes and names, not notes


@lru_cache(maxsize=4096)
def _usual_components(value: str) -> tuple[str | None, ...]:
    return _components(value, DEFAULT_SEPARATORS)


def _first_components(value: str, sep: Separators) -> tuple[str, ...]:
    """``Message.first_components`` of a field's text (not empty)."""
    cs = sep.component
    found = []
    for raw in value.split(sep.repetition):
        first = raw.partition(cs)[0] if cs in raw else raw
        if first.isalnum():
            found.append(first)
            continue
        text = _components(first, sep)[0] if first else None  # ``text`` of it: no component separator left
        if text:
            found.append(text)
    return tuple(found)


@lru_cache(maxsize=4096)
def _usual_first_components(value: str) -> tuple[str, ...]:
    return _first_components(value, DEFAULT_SEPARATORS)


def parse(text: str) -> Message:
    """Text of one message → ``Message``. Raises ``ParseError`` naming the segment and field."""
    if text.startswith("\ufeff"):
        text = text[1:]
    text = text.lstrip()
    if not text.startswith("MSH"):
        raise ParseError("the message does not start with an MSH segment", location="MSH")
    sep = read_separators(text)
    fs = sep.field
    lines = text.split("\r") if "\n" not in text else _LINE_BREAKS.split(text)  # CR alone: the usual case
    segments = _well_formed(lines, fs)
    if segments is None:
        segments = _segments(lines, fs)
    if len(segments) == 1 and run_together(text, fs):  # one segment: "MSH|...| PID|..." with no terminators
        raise ParseError(RUN_TOGETHER, location="MSH")
    message = Message(segments, sep)
    msh = message.msh
    message.kind = kind = message.shared_components(msh, 9)  # ``get(msh, 9, 1)``, kept: mapping reads MSH-9 again
    if not kind or not kind[0]:
        raise ParseError("MSH-9 (message type) is missing", location="MSH-9")
    if not message.get(msh, 10):
        raise ParseError("MSH-10 (message control id) is missing", location="MSH-10")
    return message


_SEEN_IDS: set[str] = set()  # segment ids met before, all well-formed (``_well_formed``)


def _well_formed(lines: list[str], fs: str) -> list[list[str]] | None:
    """The segments of the usual message, split in one pass: every non-empty line a segment whose
    id is a well-formed one met before, and MSH only first. None for anything else (a new segment
    id, a blank or continued line, a second MSH), which ``_segments`` reads line by line."""
    segments = [line.split(fs) for line in lines if line]
    ids = {seg[0] for seg in segments[1:]}
    if "MSH" in ids or not ids <= _SEEN_IDS:
        if "MSH" in ids or len(_SEEN_IDS) > 4096 or not all(_segment_id(name) for name in ids):
            return None
        _SEEN_IDS.update(ids)
    segments[0].insert(1, fs)  # the text starts with MSH and its field separator (read_separators)
    return segments


def _segments(lines: list[str], fs: str) -> list[list[str]]:
    """The segments of ``lines`` one by one: blank lines skipped, a line that starts with no segment
    id joined to the segment before it, a second MSH or text before MSH refused."""
    segments: list[list[str]] = []
    for number, line in enumerate(lines, start=1):
        if not line or line.isspace():
            continue
        name = line[:3]
        if (len(line) == 3 or (len(line) > 3 and line[3] == fs)) and _segment_id(name):
            fields = line.split(fs)
            if name == "MSH":
                if segments:
                    raise ParseError("a second MSH segment inside one message (split the batch first)",
                                     location=f"MSH, line {number}")
                fields.insert(1, fs)
            segments.append(fields)
        elif segments:
            # a line break inside a field: the line continues the segment before it
            tail = line.split(fs)
            last = segments[-1]
            last[-1] = last[-1] + "\n" + tail[0]
            last.extend(tail[1:])
        else:
            raise ParseError("text before the MSH segment", location=f"line {number}")
    return segments


def parse_bytes(data: bytes) -> Message:
    return parse(decode_bytes(data))


_HEX = re.compile(r"[0-9A-Fa-f]+\Z")


def unescape(value: str, sep: Separators) -> str:
    """Resolve HL7 escape sequences: \\F\\ \\S\\ \\T\\ \\R\\ \\E\\, \\Xhh..\\, \\.br\\; formatting ones are dropped."""
    esc = sep.escape
    out: list[str] = []
    i, n = 0, len(value)
    while i < n:
        ch = value[i]
        if ch != esc:
            j = value.find(esc, i)
            if j < 0:
                out.append(value[i:])
                break
            out.append(value[i:j])
            i = j
            continue
        end = value.find(esc, i + 1)
        if end < 0:  # a lone escape character: keep it as text
            out.append(value[i:])
            break
        code = value[i + 1:end]
        if code == "F":
            out.append(sep.field)
        elif code == "S":
            out.append(sep.component)
        elif code == "T":
            out.append(sep.subcomponent)
        elif code == "R":
            out.append(sep.repetition)
        elif code == "E":
            out.append(esc)
        elif code.startswith("X") and len(code) > 1 and len(code) % 2 == 1 and _HEX.match(code[1:]):
            raw = bytes.fromhex(code[1:])
            try:
                out.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                out.append(raw.decode("cp1252", errors="replace"))
        elif code in (".br", ".sp"):
            out.append("\n")
        elif code in ("H", "N") or code.startswith((".in", ".ti", ".sk", ".ce", ".fi", ".nf", "C", "M", "Z")):
            pass  # formatting and character-set switches carry no data
        else:
            out.append(value[i:end + 1])  # unknown sequence: keep it as sent
        i = end + 1
    return "".join(out)


def escape(value: str, sep: Separators = DEFAULT_SEPARATORS) -> str:
    """Text → ER7 field content (for the acknowledgement's error text)."""
    esc = sep.escape
    table = {esc: f"{esc}E{esc}", sep.field: f"{esc}F{esc}", sep.component: f"{esc}S{esc}",
             sep.subcomponent: f"{esc}T{esc}", sep.repetition: f"{esc}R{esc}"}
    text = "".join(table.get(ch, ch) for ch in value)
    return text.replace("\r", " ").replace("\n", " ")
