"""X12 connector: 835 remittance advice and 837P professional claims (ASC X12 005010).

The ingest path reads interchanges with the small reader in ``interchange.py`` (the separators the
ISA declares, the ISA/GS/ST envelopes and their counts); pyx12, which knows the 5010 implementation
guides, checks a practice's sample against them for onboarding (``findings``, see ``validate.py``).

- **835** (005010X221A1) → ``remittance`` records, one per service line (``remit.py``);
- **837P** (005010X222A1) → ``charge`` records, one per SV1 line, with the claim's patient and
  rendering providers (``claims.py``);
- other transaction sets (270, 276, 837I, 999, ...) are refused, naming ST-01 and the guide.

Decisions where the standard is silent:

- each ST/SE transaction is one message in the store, kept as an interchange of its own (its ISA
  and GS, then a GE and IEA counting one), so it is atomic on its own and can be reprocessed alone;
- envelope errors: an error of the interchange (no or unreadable ISA, IEA missing, IEA-02 not
  ISA-13, IEA-01 not the number of groups) refuses the whole file; an error of a functional group
  (GE missing, GE-02 not GS-06, GE-01 not the number of transactions) refuses each of its
  transactions; a transaction without its SE, or whose SE-01 (segments) or SE-02 (control number)
  is wrong, is refused alone and the others are kept. Each reason names the segment, the element and
  the position (the segment's ordinal in the file, ISA = 1);
- duplicates (``dedup_key``): the sender (ISA-06, GS-02) and the transaction's segments, whatever
  the interchange and group control numbers: a payer's resend of the same 835 in a new interchange
  is one message;
- ``answer``: an acceptance report of the file, in the spirit of a 999: per transaction its set,
  control number and group, accepted / duplicate / rejected, and the reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hub import hookimpl, lazy_attributes

if TYPE_CHECKING:
    from .connector import X12Connector as X12Connector

__version__ = "1.0.0"

# The plugin module, imported by every command (the plugins are loaded to list their commands): the
# hooks only. The connector (``connector.py``: its reader of interchanges and its 835 and 837 mappings)
# is imported when the hub first asks for the connectors.


@hookimpl
def hub_register_connectors(registry: Any) -> None:
    from .connector import X12Connector

    registry.add(X12Connector)


__getattr__ = lazy_attributes(__name__)  # the connector module's names, imported when first asked for
