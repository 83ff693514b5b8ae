"""The CSV connector (the package's docstring says what it reads and how).

Apart from the plugin module (``hub_csv/__init__.py``), which every command imports to list the plugins'
commands: this module, its parser and its mapping are imported by ``hub_register_connectors``, when
the hub first needs the connectors."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
import zoneinfo
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import IO, Any

from hub.connector import Connector, Context, Envelope, ImportedOnRead, Rendered, RenderOptions, digest_key
from hub.errors import ConfigError, ParseError
from hub.mapping.transforms import apply_transforms, transform_names
from hub.model.kinds import KINDS

from . import __version__

DEFAULT_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d",
                        "%m/%d/%Y %I:%M %p", "%m/%d/%Y %H:%M", "%m/%d/%Y")
RELATED_KEY = {"patient": "patient_source_id", "provider": "provider_source_id",
               "location": "location_source_id"}
TRUE = {"y", "yes", "true", "t", "1", "x"}
FALSE = {"n", "no", "false", "f", "0"}
_LINE_SUFFIX = re.compile(r"#line=(\d+)$")
# a date in a file name: 2025-03-01, 2025_03_01 or 20250301, not inside a longer run of digits
_NAME_DATE = re.compile(r"(?<!\d)((?:19|20)\d\d)([-_]?)(\d\d)\2(\d\d)(?!\d)")
_HEADER_LABEL = re.compile(r"^[A-Za-z][\w .#/()&%?'-]{0,79}$")
_FIELD_TYPES = {kind: {f.name: f.type for f in fields} for kind, fields in KINDS.items()}


def decode(data: bytes, encoding: str | None = None, *, source: str | None = None) -> str:
    """UTF-8 with or without a byte-order mark, else Windows-1252 (what Excel writes on Windows).
    Bytes that are not the configured encoding, or not UTF-8 after a UTF-8 byte-order mark, are a
    ``ParseError`` naming the byte."""
    if encoding:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError as exc:
            raise ParseError(f"the CSV is not {encoding} (connectors.csv.encoding)", source=source,
                             location=f"byte {exc.start + 1}") from None
        except LookupError:
            raise ConfigError(f"connectors.csv.encoding {str(encoding)[:40]!r} is not a text encoding",
                              source=source) from None
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            return data[3:].decode("utf-8")
        except UnicodeDecodeError as exc:  # the mark promises UTF-8: a damaged file, not another encoding
            raise ParseError("the CSV starts with a UTF-8 byte-order mark but is not UTF-8", source=source,
                             location=f"byte {exc.start + 4}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def first_line(origin: str | None) -> int:
    """Line number of a payload's first data row (a backfill chunk's origin ends with #line=N)."""
    found = _LINE_SUFFIX.search(origin or "")
    return int(found.group(1)) if found else 2


def file_of(origin: str | None) -> str | None:
    """The file name of an origin, without a backfill chunk's #line=N."""
    return _LINE_SUFFIX.sub("", origin) if origin else origin


def date_in_name(origin: str | None) -> dt.date | None:
    """The export date a file name carries (the last valid one, as in ``from_to`` names), or None."""
    name = re.split(r"[\\/]", file_of(origin) or "")[-1]
    found = None
    for match in _NAME_DATE.finditer(name):
        try:
            found = dt.date(int(match.group(1)), int(match.group(3)), int(match.group(4)))
        except ValueError:
            continue
    return found


def _row_text(header: list[str], row: list[str], delimiter: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerow(row)
    return out.getvalue().encode("utf-8")


def iter_rows(text: str, delimiter: str = ",", *, source: str | None = None
              ) -> Iterator[tuple[int, list[str]]]:
    """(line number where the row starts, fields) of every non-empty row, header included."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    start = 1
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                yield start, row
            start = reader.line_num + 1
    except csv.Error as exc:
        raise ParseError(f"the CSV cannot be read past this point ({exc})", source=source,
                         location=f"line {reader.line_num}") from None


class CsvConnector(Connector):
    name = "csv"
    version = __version__
    media_types = ("text/csv",)
    file_extensions = (".csv",)
    config_schema = ImportedOnRead("hub_csv.settings:CsvSettings")  # checked by the hub whenever a mapping is loaded
    description = "CSV exports of practice-management systems (appointments, charges, payments)"
    # each message is a row of an export, a snapshot a practice takes again and again: the onboarding
    # scorecard does not count a row repeated by a later export against the go-live duplicate share
    export_rows = True
    # cannot_carry: nothing of its own: a field is carried when the practice mapping names its column (a
    # payments export mapped without a "denied" column yields remittances without it: no denial data)

    @classmethod
    def detect(cls, data: bytes) -> bool:
        """A header row of at least two labels (and no other format's opening). Which export it is,
        only the practice's column map can say; content that is not plainly CSV needs --connector csv."""
        head = data[:4096].lstrip(b"\xef\xbb\xbf").lstrip()
        if not head or head[:1] in (b"{", b"<", b"[") or head[:3] in (b"MSH", b"FHS", b"BHS", b"ISA"):
            return False
        line = head.splitlines()[0] if head.splitlines() else b""
        try:
            labels = next(csv.reader([line.decode("utf-8", errors="strict")]))
        except (UnicodeDecodeError, csv.Error, StopIteration):
            return False
        return len(labels) >= 2 and all(_HEADER_LABEL.match(label.strip()) for label in labels)

    # ------------------------------------------------------------------ split
    def split(self, data: bytes, *, origin: str | None = None) -> list[Envelope]:
        envelopes = list(self.iter_envelopes(decode(data, source=file_of(origin)), origin=origin,
                                             file_sha256=hashlib.sha256(data).hexdigest()))
        if not envelopes:
            # an empty export is refused with its reason rather than taken in as nothing at all
            raise ParseError("the CSV has no data rows (a header row and at least one row are needed)",
                             source=file_of(origin))
        return envelopes

    def iter_envelopes(self, text: str, *, origin: str | None = None, delimiter: str = ",",
                       file_sha256: str | None = None) -> Iterator[Envelope]:
        offset = first_line(origin) - 2
        header: list[str] | None = None
        for line, row in iter_rows(text, delimiter, source=file_of(origin)):
            if header is None:
                header = row
                continue
            number = line + offset
            yield Envelope(raw=_row_text(header, row, delimiter), control_id=f"line {number}",
                           message_type="CSV", meta={"line": number, "file_sha256": file_sha256})

    def iter_chunks(self, stream: IO[bytes], *, rows: int = 5000, encoding: str | None = None
                    ) -> Iterator[tuple[bytes, int]]:
        """Stream a large export as (payload of header + up to ``rows`` rows, its first row's line)."""
        sample = stream.read(1 << 20)
        stream.seek(0)
        if encoding is None:
            encoding = "utf-8-sig"
            try:
                sample.decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                if exc.start < len(sample) - 4:  # not merely a character cut at the sample's end
                    encoding = "cp1252"
        text = io.TextIOWrapper(stream, encoding=encoding, errors="replace", newline="")
        reader = csv.reader(text, strict=True)
        header: list[str] | None = None
        chunk: list[list[str]] = []
        chunk_start = start = 2
        try:
            for row in reader:
                line = start
                start = reader.line_num + 1
                if not any(cell.strip() for cell in row):
                    continue
                if header is None:
                    header = row
                    chunk_start = start
                    continue
                if not chunk:
                    chunk_start = line
                chunk.append(row)
                if len(chunk) >= rows:
                    yield self._chunk(header, chunk), chunk_start
                    chunk = []
        except csv.Error as exc:
            raise ParseError(f"the CSV cannot be read past this point ({exc})",
                             location=f"line {reader.line_num}") from None
        finally:
            text.detach()
        if header is not None and chunk:
            yield self._chunk(header, chunk), chunk_start

    @staticmethod
    def _chunk(header: list[str], rows: list[list[str]]) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(header)
        writer.writerows(rows)
        return out.getvalue().encode("utf-8")

    def dedup_key(self, envelope: Envelope) -> str:
        """The export file and the row's line in it; a row without them (not cut by ``split``): its bytes."""
        file_sha256, line = envelope.meta.get("file_sha256"), envelope.meta.get("line")
        if not file_sha256 or not line:
            return super().dedup_key(envelope)
        return digest_key(self.name, str(file_sha256), str(line))

    # ------------------------------------------------------------------ parse
    def parse(self, envelope: Envelope, context: Context) -> Any:
        config = context.config
        origin = file_of(context.origin)
        exports = config.get("exports") if config else None
        if not exports:
            raise ConfigError("the csv connector needs the column map: connectors.csv.exports in the "
                              "practice's mapping file (see docs/mappings.md)", source=origin)
        delimiter = config.get("delimiter", ",")
        line = envelope.meta.get("line") or _line_of(envelope.control_id)
        text = decode(envelope.raw, config.get("encoding"), source=origin)
        rows = list(iter_rows(text, delimiter, source=origin))
        if len(rows) < 2:
            raise ParseError("a CSV row message holds the header row and one data row", source=origin,
                             location=f"line {line}" if line else None)
        header = [h.strip() for h in rows[0][1]]
        row = rows[1][1]
        where = f"line {line}" if line else "data row"
        if len(row) != len(header):
            raise ParseError(f"{len(row)} fields where the header has {len(header)}", source=origin,
                             location=where)
        export = choose_export(exports, header, source=origin)
        return {"export": export, "row": dict(zip(header, row, strict=True)), "where": where}

    def to_canonical(self, parsed: Any, context: Context) -> Iterable[dict[str, Any]]:
        return RowReader(parsed["export"], context).records(parsed["row"], parsed["where"])

    def findings(self, envelope: Envelope, context: Context) -> list[str]:
        """Columns the export map does not use, and values the ``values`` tables do not know."""
        try:
            parsed = self.parse(envelope, context)
        except Exception:
            return []  # the normal path reports unreadable rows
        export, row, where = parsed["export"], parsed["row"], parsed["where"]
        used = {column for spec in export["columns"].values() for column in _columns(spec)}
        out = [f"{where}: column {col!r} is not in the column map (ignored)" for col in row if col not in used]
        for field, table in (export.get("values") or {}).items():
            spec = export["columns"].get(field)
            column = _column(spec) if spec is not None and len(_columns(spec)) == 1 else None
            value = (row.get(column) or "").strip() if column else ""
            if value and value not in table and value.lower() not in (str(v).lower() for v in table.values()):
                out.append(f"{where}: column {column!r} has a value the values table of {field} does not know")
        return out

    def render(self, records: Sequence[Mapping[str, Any]], *, options: RenderOptions) -> list[Rendered]:
        """Sample monthly exports (appointments, charges, payments, referrals): see ``hub_csv.render``."""
        from .render import render_files  # the demo's and the tests' samples: not every command's import

        return render_files(records, options)


def _line_of(control_id: str | None) -> int | None:
    if control_id and control_id.startswith("line "):
        return int(control_id[5:])
    return None


def _columns(spec: Any) -> list[str]:
    """The headers a column spec reads: one, or the ``columns`` it combines."""
    if isinstance(spec, str):
        return [spec]
    if "columns" in spec:
        return [str(c) for c in spec["columns"]]
    return [str(spec["column"])]


def _column(spec: Any) -> str:
    """The spec's header(s) as messages name them: 'Appt Date' + 'Appt Time' for combined cells."""
    return " + ".join(_columns(spec))


def _formats(spec: Any) -> list[str]:
    """A column spec's own strptime formats (``format``: one or a list), tried before the export's."""
    found = spec.get("format") if isinstance(spec, dict) else None
    return [found] if isinstance(found, str) else list(found or ())


def _named(spec: Any) -> str:
    """The spec's column(s) for an error message: column 'X', or columns 'X' + 'Y'."""
    columns = _columns(spec)
    return f"column {columns[0]!r}" if len(columns) == 1 else "columns " + " + ".join(map(repr, columns))


def choose_export(exports: list[dict[str, Any]], header: list[str], *, source: str | None = None
                  ) -> dict[str, Any]:
    """The first export spec whose column names all appear in the header row."""
    present = set(header)
    best: tuple[int, list[str], str] | None = None
    for export in exports:
        missing = [c for spec in export["columns"].values() for c in _columns(spec) if c not in present]
        if not missing:
            return export
        if best is None or len(missing) < best[0]:
            best = (len(missing), missing, str(export.get("kind")))
    assert best is not None
    raise ParseError(f"the header row fits no export of the column map (closest: {best[2]}, "
                     f"missing column(s) {', '.join(map(repr, best[1]))})", source=source, location="line 1")


class RowReader:
    """One export spec applied to a row: typed values, value tables, related records."""

    def __init__(self, export: dict[str, Any], context: Context) -> None:
        self.export = export
        self.kind = export["kind"]
        self.formats = list(export.get("date_formats") or ()) + [f for f in DEFAULT_DATE_FORMATS
                                                                  if f not in (export.get("date_formats") or ())]
        zone = context.config.get("timezone")
        try:
            self.zone = zoneinfo.ZoneInfo(zone) if zone else None
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder ("America")
            raise ConfigError(f"connectors.csv.timezone {zone!r} is not an IANA time zone",
                              source=file_of(context.origin)) from None
        self.values = {field: {str(k): v for k, v in table.items()}
                       for field, table in (export.get("values") or {}).items()}
        self.origin = file_of(context.origin)
        config = context.config or {}
        self.event_column = export.get("event_time_column") or config.get("event_time_column")
        self.export_date = self._export_date(export.get("export_date") or config.get("export_date"),
                                             context.origin)

    def _export_date(self, configured: Any, origin: str | None) -> str | None:
        """Midnight of the export's day (the map's export_date, else the file name's date), as a time
        without offset: the export holds the state of that day at the latest."""
        day = None
        if isinstance(configured, dt.datetime):
            day = configured.date()
        elif isinstance(configured, dt.date):  # YAML reads 2025-03-01 as a date
            day = configured
        elif configured:
            try:
                day = dt.date.fromisoformat(str(configured).strip())
            except ValueError:
                raise ConfigError("connectors.csv.export_date is not a date (YYYY-MM-DD)", source=self.origin
                                  ) from None
        day = day or date_in_name(origin)
        if day is None:
            return None
        midnight = dt.datetime.combine(day, dt.time())
        return (midnight.replace(tzinfo=self.zone) if self.zone else midnight).isoformat()

    def event_time(self, row: dict[str, str], where: str) -> str | None:
        if self.event_column:
            raw = (row.get(self.event_column) or "").strip()
            if raw:
                try:
                    return str(self.datetime(raw))
                except ValueError:
                    raise ParseError(f"column {self.event_column!r} (event_time) is not a date-time in the "
                                     "export's date_formats", source=self.origin, location=where) from None
        return self.export_date

    def records(self, row: dict[str, str], where: str) -> list[dict[str, Any]]:
        by_kind: dict[str, dict[str, Any]] = {self.kind: {"kind": self.kind}}
        for key, spec in self.export["columns"].items():
            kind, _, field = key.rpartition(".")
            kind = kind or self.kind
            cells: list[tuple[str, str]] = []
            if isinstance(spec, dict) and "columns" in spec:
                cell, cells = self.combine(spec, row, f"{kind}.{field}", where)
            else:
                cell = row.get(_column(spec))
            raw = apply_transforms(cell, transform_names(None if isinstance(spec, str) else spec.get("transform")))
            value = self.convert(kind, field, raw.strip() if raw else None, spec, where, cells)
            by_kind.setdefault(kind, {"kind": kind})[field] = value
        main = by_kind[self.kind]
        if self.kind == "charge" and main.get("amount") is None and "unpriced" not in self.export["columns"]:
            main["unpriced"] = True  # a line exported without an amount: kept, flagged, counted at zero
        if not main.get("source_id"):
            raise ParseError(f"{_named(self.export['columns']['source_id'])} (source_id) is empty",
                             source=self.origin, location=where)
        when = self.event_time(row, where)
        if when is not None:
            for record in by_kind.values():
                record["event_time"] = when
        out = []
        for kind, record in by_kind.items():
            if kind == self.kind:
                continue
            if kind == "coverage":
                record.setdefault("patient_source_id", main.get("patient_source_id"))
                if not record.get("source_id") and record.get("patient_source_id") and record.get("payer_name"):
                    record["source_id"] = f"{record['patient_source_id']}:{record['payer_name']}"
            elif not record.get("source_id"):
                record["source_id"] = main.get(RELATED_KEY[kind])
            if record.get("source_id") and any(v not in (None, "") for k, v in record.items()
                                               if k not in ("kind", "source_id", "event_time")):
                out.append(record)
        return [*out, main]  # the row's own record last (the onboarding scorecard keys the row by it)

    def combine(self, spec: dict[str, Any], row: dict[str, str], what: str, where: str
                ) -> tuple[str | None, list[tuple[str, str]]]:
        """The cells of ``columns``, in order, joined by ``separator`` (one space by default); None when
        every cell is empty. A date or date-time made of cells (a date column and a time column) needs
        every cell: an empty one is an error naming its column."""
        cells = [(column, (row.get(column) or "").strip()) for column in _columns(spec)]
        if not any(value for _, value in cells):
            return None, cells
        kind, _, field = what.rpartition(".")
        if _FIELD_TYPES[kind].get(field) in ("date", "datetime"):
            empty = [column for column, value in cells if not value]
            if empty:
                raise ParseError(f"column {empty[0]!r} is empty, and {what} is read from {_named(spec)} together",
                                 source=self.origin, location=where)
        separator = spec.get("separator")
        return (" " if separator is None else str(separator)).join(value for _, value in cells if value), cells

    def convert(self, kind: str, field: str, value: str | None, spec: Any, where: str,
                cells: Sequence[tuple[str, str]] = ()) -> Any:
        if value is None or value == "":
            return None
        table = self.values.get(field if kind == self.kind else f"{kind}.{field}")
        if table is not None and value in table:
            return table[value]
        kind_type = "str" if field == "source_id" else _FIELD_TYPES[kind].get(field, "str")
        formats = _formats(spec) if kind_type in ("date", "datetime") else []
        try:
            if kind_type == "datetime":
                return self.datetime(value, formats=formats)
            if kind_type == "date":
                return self.datetime(value, date_only=True, formats=formats)
            if kind_type == "money":
                return money(value)
            if kind_type == "int":
                return int(Decimal(value.replace(",", "")))
            if kind_type == "bool":
                if value.lower() in TRUE:
                    return True
                if value.lower() in FALSE:
                    return False
                raise ValueError("not yes/no")
            if kind_type == "list":
                return [part.strip() for part in re.split(r"[;|,]", value) if part.strip()]
            if kind_type == "enum":
                return value.lower()
        except (ValueError, InvalidOperation):
            what = {"datetime": "a date-time in the export's date_formats", "date": "a date in the export's "
                    "date_formats", "money": "an amount", "int": "a whole number", "bool": "yes or no"}
            if formats and kind_type in ("date", "datetime"):
                noun = "a date-time" if kind_type == "datetime" else "a date"
                what[kind_type] = f"{noun} in the format {' or '.join(map(repr, formats))} or the export's date_formats"
            bad = self.bad_cell(spec, cells, formats) if cells and kind_type in ("date", "datetime") else None
            if bad is not None:
                raise ParseError(f"column {bad!r} does not fit: {_named(spec)} ({kind}.{field}) together are not "
                                 f"{what[kind_type]}", source=self.origin, location=where) from None
            # the value itself is not quoted: it may be patient data
            raise ParseError(f"{_named(spec)} ({kind}.{field}) {'is' if len(_columns(spec)) == 1 else 'are'} not "
                             f"{what.get(kind_type, 'readable')}", source=self.origin, location=where) from None
        return value

    def bad_cell(self, spec: dict[str, Any], cells: Sequence[tuple[str, str]], formats: Sequence[str]
                 ) -> str | None:
        """Which cell of a combined date or date-time does not fit: each format is cut where the cells
        were joined (a cell holding the separator itself, '09:30 AM', takes as many pieces), each cell
        tried with its piece; the column when exactly one cell fails under the format that fits the
        others best (else None: the message names every column)."""
        separator = " " if spec.get("separator") is None else str(spec["separator"])
        if not separator:
            return None
        best: list[str] | None = None
        for fmt in [*formats, *self.formats]:
            pieces = fmt.split(separator)
            if len(pieces) != sum(cell.count(separator) + 1 for _, cell in cells):
                continue
            failing, at = [], 0
            for column, cell in cells:
                size = cell.count(separator) + 1
                try:
                    dt.datetime.strptime(cell, separator.join(pieces[at:at + size]))
                except ValueError:
                    failing.append(column)
                at += size
            if failing and (best is None or len(failing) < len(best)):
                best = failing
        return best[0] if best is not None and len(best) == 1 else None

    def datetime(self, value: str, *, date_only: bool = False, formats: Sequence[str] = ()) -> Any:
        """A date (``date_only``) or a date-time: with its offset when it has one, else in the
        ``timezone`` override when set, else without offset (the hub reads it in the practice's zone).
        ``formats``: a column spec's own, tried before the export's."""
        for fmt in [*formats, *self.formats] if formats else self.formats:
            try:
                parsed = dt.datetime.strptime(value, fmt)
            except ValueError:
                continue
            break
        else:
            try:  # ISO 8601, with or without an offset
                parsed = dt.datetime.fromisoformat(value)
            except ValueError:
                raise ValueError(value) from None
        if date_only:
            return parsed.date().isoformat()
        if parsed.tzinfo is None and self.zone is not None:
            parsed = parsed.replace(tzinfo=self.zone)
        return parsed.isoformat()


def money(value: str) -> str:
    """'$1,234.50', '1 234.50', '(12.00)' and '-12' as decimal strings; never a float."""
    text = value.strip().replace("$", "").replace(",", "").replace(" ", "").replace("\u00a0", "")
    negative = text.startswith("(") and text.endswith(")")
    text = text.strip("()")
    amount = Decimal(text)
    if not amount.is_finite():
        raise InvalidOperation(value)
    return str(-amount if negative else amount)


