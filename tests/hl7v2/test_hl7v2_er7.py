"""The ER7 tokenizer: separators, numbering, repetitions, escapes, line endings, character sets."""

from __future__ import annotations

import pytest
from hub_hl7v2 import er7
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.errors import ParseError

BASIC = "MSH|^~\\&|APP|FAC|HUB|MSO|20250101120000||ADT^A01^ADT_A01|C1|P|2.5.1\rPID|1||A1^^^X^MR~B2^^^Y^SS||Doe&Van^Jo\r"


def test_msh_field_numbering_follows_the_standard() -> None:
    msg = er7.parse(BASIC)
    assert msg.get(msg.msh, 1) == "|"
    assert msg.get(msg.msh, 2) == "^~\\&"
    assert msg.get(msg.msh, 3) == "APP"
    assert msg.message_type == ("ADT", "A01", "ADT_A01")
    assert msg.control_id == "C1"
    assert msg.version == "2.5.1"


def test_repetitions_components_and_subcomponents() -> None:
    msg = er7.parse(BASIC)
    pid = msg.first("PID")
    assert msg.get(pid, 3, 1) == "A1"
    assert msg.get(pid, 3, 1, rep=1) == "B2"
    assert msg.get(pid, 3, 5, rep=1) == "SS"
    assert msg.get(pid, 3, 1, rep=2) is None
    assert msg.get(pid, 5, 1) == "Doe"
    assert msg.get(pid, 5, 1, 2) == "Van"
    assert msg.get(pid, 5, 2) == "Jo"
    assert msg.get(pid, 5, 9) is None
    assert msg.get(pid, 40) is None


@pytest.mark.parametrize("newline", ["\r", "\n", "\r\n"])
def test_any_segment_separator(newline: str) -> None:
    msg = er7.parse(BASIC.replace("\r", newline) + newline + newline)
    assert [s[0] for s in msg.segments] == ["MSH", "PID"]


def test_escape_sequences() -> None:
    sep = er7.DEFAULT_SEPARATORS
    assert er7.unescape(r"a\F\b\S\c\T\d\R\e\E\f", sep) == "a|b^c&d~e\\f"
    assert er7.unescape(r"caf\XC3A9\ ok", sep) == "café ok"
    assert er7.unescape(r"line\.br\two", sep) == "line\ntwo"
    assert er7.unescape(r"\H\bold\N\ ", sep) == "bold "
    assert er7.unescape("lone \\ backslash", sep) == "lone \\ backslash"
    assert er7.unescape(r"\Q\ kept", sep) == r"\Q\ kept"
    assert er7.escape("a|b^c&d~e\\f") == r"a\F\b\S\c\T\d\R\e\E\f"


def test_custom_encoding_characters() -> None:
    msg = er7.parse("MSH!@%$*!A!B!C!D!2025!!ADT@A08!X9!P!2.3\nPID!1!!ID1@@@AUTH@MR%ID2!!Sm$F$ith@Al")
    pid = msg.first("PID")
    assert msg.get(pid, 3, 4) == "AUTH"
    assert msg.get(pid, 3, 1, rep=1) == "ID2"
    assert msg.get(pid, 5, 1) == "Sm!ith"
    assert msg.message_type[:2] == ("ADT", "A08")


def test_doubled_escape_character_in_msh2_is_tolerated() -> None:
    msg = er7.parse("MSH|^~\\\\&|A|B|C|D|2025||ADT^A01|X|P|2.6\rPID|1||Z1&sub^^^AA^MR")
    assert msg.sep.subcomponent == "&"
    assert msg.get(msg.first("PID"), 3, 1, 2) == "sub"


def test_null_and_trailing_empty_fields() -> None:
    msg = er7.parse('MSH|^~\\&|A|B|C|D|2025||ADT^A01|X|P|2.5\rPID|1||""|||||||||||\r')
    pid = msg.first("PID")
    assert msg.get(pid, 3) is None
    assert msg.get(pid, 12) is None


def test_text_is_decoded_by_msh18_when_not_utf8() -> None:
    raw = "MSH|^~\\&|A|B|C|D|2025||ADT^A01|X|P|2.5|||||| 8859/1\rPID|1||1^^^A^MR||Müller".encode("latin-1")
    msg = er7.parse_bytes(raw)
    assert msg.get(msg.first("PID"), 5) == "Müller"
    utf8 = "MSH|^~\\&|A|B|C|D|2025||ADT^A01|X|P|2.5\rPID|1||1^^^A^MR||Zoë".encode()
    assert er7.parse_bytes(b"\xef\xbb\xbf" + utf8).get(er7.parse_bytes(utf8).first("PID"), 5) == "Zoë"


def test_a_line_break_inside_a_field_continues_the_segment() -> None:
    msg = er7.parse("MSH|^~\\&|A|B|C|D|2025||ORU^R01|X|P|2.5\rOBX|1|TX|note||first line\nsecond line|F")
    obx = msg.first("OBX")
    assert msg.get(obx, 5) == "first line\nsecond line"
    assert msg.get(obx, 6) == "F"


@pytest.mark.parametrize(("text", "location"), [
    ("PID|1", "MSH"),
    ("MSH", "MSH-1"),
    ("MSHA^~\\&|", "MSH-1"),
    ("MSH|abc|A", "MSH-2"),
    ("MSH|^~\\&|A|B|C|D|2025||", "MSH-9"),
    ("MSH|^~\\&|A|B|C|D|2025||ADT^A01||P|2.5", "MSH-10"),
    ("junk\rMSH|^~\\&|A|B|C|D|2025||ADT^A01|1|P|2.5", "MSH"),
])
def test_unreadable_messages_name_the_segment_and_field(text: str, location: str) -> None:
    with pytest.raises(ParseError) as caught:
        er7.parse(text)
    assert caught.value.location == location


def test_blank_lines_continuations_and_new_segment_ids_read_alike_the_first_time_and_after() -> None:
    """A message of segments seen before is split in one pass; blank or white lines, a line that
    continues a field and a segment id not seen before are read line by line: the same message
    reads the same whichever way, the first time and the second."""
    text = ("MSH|^~\\&|A|B|C|D|2025||ORU^R01|X|P|2.5\r\r  \rPID|1||M9^^^X^MR\r"
            "ZQ7|1|local value\rOBX|1|TX|note||first line\rsecond line|F\r")
    for _ in range(2):
        msg = er7.parse(text)
        assert [seg[0] for seg in msg.segments] == ["MSH", "PID", "ZQ7", "OBX"]
        assert msg.get(msg.first("PID"), 3) == "M9"
        assert msg.get(msg.first("ZQ7"), 2) == "local value"
        assert msg.get(msg.first("OBX"), 5) == "first line\nsecond line"
        assert msg.get(msg.first("OBX"), 6) == "F"
    plain = er7.parse("MSH|^~\\&|A|B|C|D|2025||ORU^R01|X|P|2.5\rPID|1||M9^^^X^MR\rZQ7|1|two\r")
    assert [seg[0] for seg in plain.segments] == ["MSH", "PID", "ZQ7"]
    assert plain.get(plain.msh, 1) == "|" and plain.get(plain.msh, 10) == "X"
    assert plain.get(plain.first("ZQ7"), 2) == "two"


def test_a_second_msh_inside_one_message_is_refused_each_time() -> None:
    text = "MSH|^~\\&|A|B|C|D|2025||ADT^A01|1|P|2.5\rPID|1||M1\rMSH|^~\\&|A|B|C|D|2025||ADT^A01|2|P|2.5\r"
    for _ in range(2):
        with pytest.raises(ParseError) as caught:
            er7.parse(text)
        assert caught.value.location == "MSH, line 3"


def test_a_lower_case_line_continues_the_segment_before_it() -> None:
    msg = er7.parse("MSH|^~\\&|A|B|C|D|2025||ADT^A01|1|P|2.5\rPID|1||M1||Doe\rpid|2\r")
    assert [seg[0] for seg in msg.segments] == ["MSH", "PID"]
    assert msg.get(msg.first("PID"), 5) == "Doe\npid"
    assert msg.get(msg.first("PID"), 6) == "2"


def test_the_components_of_a_field_read_in_one_split() -> None:
    msg = er7.parse(BASIC + "ZZZ|a\\S\\b^ c ^\"\"^^x&y~z^w||plain\r")
    pid, zzz = msg.first("PID"), msg.first("ZZZ")
    assert msg.components(pid, 5) == ("Doe", "Jo")  # sub-component 1 of each component
    assert msg.components(pid, 3) == ("A1", None, None, "X", "MR")  # the first repetition only
    assert msg.components(zzz, 1) == ("a^b", "c", None, None, "x")  # unescaped, trimmed, "" read as empty
    assert msg.components(zzz, 2) == () and msg.components(zzz, 9) == () and msg.components(None, 1) == ()
    assert msg.components(zzz, 3) == ("plain",)
    assert msg.shared_components(zzz, 1) == msg.components(zzz, 1)
    long = er7.parse(BASIC + "ZZZ|" + "w" * 300 + " ^x~" + "y" * 300 + "\\T\\^z\r")  # past SHARED_MAX: not kept
    assert long.shared_components(long.first("ZZZ"), 1) == ("w" * 300, "x")
    assert long.first_components(long.first("ZZZ"), 1) == ["w" * 300, "y" * 300 + "&"]
    assert msg.first_components(pid, 3) == ["A1", "B2"]
    assert msg.first_components(zzz, 1) == ["a^b", "z"]
    assert msg.first_components(zzz, 2) == [] and msg.first_components(None, 2) == []
    custom = er7.parse("MSH!@%$*!A!B!C!D!2025!!ADT@A08!X9!P!2.3\nPID!1!!ID1@@@AUTH@MR%ID2!!Sm$F$ith@Al")
    assert custom.components(custom.first("PID"), 5) == ("Sm!ith", "Al")
    assert custom.shared_components(custom.first("PID"), 3) == ("ID1", None, None, "AUTH", "MR")
    assert custom.first_components(custom.first("PID"), 3) == ["ID1", "ID2"]


_PIECES = st.sampled_from(["A", "b7", "x y", " ", "^", "~", "&", "\\", "\\S\\", "\\T\\", "\\R\\", "\\E\\", "\\F\\",
                           "\\X41\\", "\\.br\\", "\\H\\", "\\Q\\", '""', "-", ".", "é", "\t"])


@settings(max_examples=600, deadline=None)
@given(pieces=st.lists(_PIECES, max_size=14), custom=st.booleans())
def test_components_read_what_get_reads_component_by_component(pieces: list[str], custom: bool) -> None:
    """``components``, ``shared_components`` and ``first_components`` answer as ``get`` does, for any
    field text: separators, escapes, spaces, HL7 nulls, with the usual separators and others."""
    value = "".join(pieces)
    if custom:  # the same text written with ! @ % $ * for | ^ ~ \\ &
        value = value.translate(str.maketrans("^~\\&", "@%$*"))
        msg = er7.parse(f"MSH!@%$*!A!B!C!D!2025!!ADT@A08!X9!P!2.3\rZZZ!1!{value.replace('!', '')}")
    else:
        msg = er7.parse(f"{BASIC}ZZZ|1|{value.replace('|', '')}\r")
    seg = msg.first("ZZZ")
    comps = msg.components(seg, 2)
    assert msg.shared_components(seg, 2) == comps
    for c in range(1, 10):
        assert msg.get(seg, 2, c) == (comps[c - 1] if c <= len(comps) else None)
    reps = seg[2].split(msg.sep.repetition) if len(seg) > 2 else []
    assert msg.first_components(seg, 2) == [v for i in range(len(reps)) if (v := msg.get(seg, 2, 1, rep=i))]
