"""HL7 v2 connector: ADT, SIU, DFT and REF (and what other messages carry) from any practice's EHR.

The ingest path uses the small ER7 tokenizer in ``er7.py`` (tens of thousands of
messages a second); hl7apy is used only off that path, for the deep structural
check of a practice's sample feed (``findings``, see ``structure.py``).

Settings (the ``connectors: {hl7v2: {...}}`` section of a practice mapping):

- ``timezone``: IANA time zone of date-times sent without an offset, for a feed whose clock
  differs from the practice's own zone: it wins over the practice's zone. Unset (the usual
  case), such times are emitted without an offset and the hub reads them in the practice's
  zone;
- ``facilities``: sending facility ids (MSH-4) that belong to this practice, for an
  MLLP listener without ``--practice``.

Decisions where the standard is silent:

- ``split`` keeps every readable message of a payload of several (a file, a FHS/BHS
  batch, an MLLP frame): one with an unreadable MSH, without MSH-9 or MSH-10, or with
  its segments run together on one line, gets an ``Envelope.error`` naming it by
  index (``message 7, MSH-10``) and is stored and refused alone; a payload of one
  such message is refused whole (``ParseError``). FHS/BHS/BTS/FTS batch envelopes
  are dropped, the messages inside are kept one by one. Text before the first MSH
  (a comment, a vendor prefix such as ``[SOM]``) is skipped with a warning that
  counts it;
- an envelope's raw bytes are the message as sent with surrounding whitespace
  removed;
- duplicates (``dedup_key``): the sending application and facility (MSH-3, MSH-4),
  MSH-10 and the content, read with any segment terminator (CR, LF or CRLF) and no
  empty lines, so the same message resent by file, HTTP or MLLP is a duplicate. The
  same control id with other content is a new message, stored, processed and
  flagged ``control-id-reused`` (``unique_control_ids``). A message without MSH-10
  (refused anyway) is keyed by its bytes;
- message types other than ADT, SIU, DFT and REF yield the patient, visit, providers
  and location they carry; one without a patient is refused naming MSH-9;
- partial acceptance: the segments a message type's mapping does not read are
  counted in the message's tally (``Tally.skip``, by segment id), optional values
  sent but unreadable are left out and named there (``Tally.drop``: PID-7, PID-13,
  PV1-44, ...), and text skipped before the first MSH is noted there. A DFT charge
  without a price (FT1-11 and FT1-12 empty) is kept ``unpriced``; with ``acceptance:
  strict`` it is refused, as before. An SIU without SCH is read from its AIS, AIL
  or AIP when it has one (keyed by PV1-19, else MSH-10), else refused (``SCH``);
- every record of a message carries the message's ``event_time``: EVN-6 (event
  occurred), else EVN-2 (recorded), else MSH-7.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hub import hookimpl, lazy_attributes

if TYPE_CHECKING:
    from .connector import HL7v2Connector as HL7v2Connector

__version__ = "1.0.0"

# The plugin module, imported by every command (the plugins are loaded to list their commands): the
# hooks only. The connector (``connector.py``: its parser, its mapping, marshmallow for its settings)
# is imported when the hub first asks for the connectors.


@hookimpl
def hub_register_connectors(registry: Any) -> None:
    from .connector import HL7v2Connector

    registry.add(HL7v2Connector)


# the names of the connector module and of its settings (marshmallow), imported when first asked for
__getattr__ = lazy_attributes(__name__, "connector", "settings")
