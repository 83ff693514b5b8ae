"""CSV exports of practice-management systems: appointments, charges and payments.

The column map lives in the practice's mapping file (``connectors: {csv: ...}``,
see docs/mappings.md); a CSV file alone cannot say which column is what, so
``detect`` never claims a file: choose this connector with ``--connector csv``, the
media type ``text/csv`` or the ``.csv`` extension (onboarding commands).

Each data row is its own message: ``split`` cuts a file into rows (the header row
travels with each, so a row can be read, stored, deduplicated and reprocessed on
its own) and names each by its line number in the file (``control_id`` =
``line N``). A bad row is therefore a message in ``error`` whose reason names its
line, and the rest of the file loads. ``on_bad_row: refuse`` refuses the whole
file instead, for the onboarding commands, which read the file dry before storing
anything (``refuse_reason``). A file whose quoting is broken cannot be cut into
rows and is refused whole, naming the line.

Duplicates (``dedup_key``): a row is the same message as another when it comes
from the same export file (the sha256 of the file's bytes, whatever its name) at
the same line. The same file sent twice is therefore all duplicates, while a later
export repeating a row byte for byte (booked, cancelled, booked again) is a new
message. An export identical byte for byte to an earlier one is taken for a
resend. A large export streamed in chunks (``iter_chunks``, backfill) is keyed by
each chunk's bytes and the absolute line numbers, so a rerun with the same chunk
size finds the same keys.

Columns: a model field reads one column (``field: header`` or ``{column, transform}``) or
combines several (``{columns: [...], separator, format, transform}``: the cells joined in order,
a date and a time column making one date-time, say); a bad combination names the one cell that
does not fit, else every column of it. A charge row without an amount is kept, ``unpriced``.

Times: a date-time without an offset (what exports hold) is emitted without one
(``2025-03-01T09:30:00``) and the hub reads it in the practice's zone; the
``timezone`` setting of the csv section, when set, overrides that zone for this
feed. Every record of a row carries ``event_time``: the row's ``event_time_column``
when the map names one and the cell is filled, else the export's date
(``export_date`` in the map, else a date in the file name such as
``appointments_2025-03-01.csv`` or ``20250301``; midnight of that day), else none
(the hub uses the arrival time).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hub import hookimpl, lazy_attributes

if TYPE_CHECKING:
    from .connector import CsvConnector as CsvConnector

__version__ = "1.0.0"

# The plugin module, imported by every command (the plugins are loaded to list their commands): the
# hooks only. The connector (``connector.py``: its parser, its mapping, marshmallow for its settings)
# is imported when the hub first asks for the connectors.


@hookimpl
def hub_register_connectors(registry: Any) -> None:
    from .connector import CsvConnector

    registry.add(CsvConnector)


# the names of the connector module and of its settings (marshmallow), imported when first asked for
__getattr__ = lazy_attributes(__name__, "connector", "settings")
