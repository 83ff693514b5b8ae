"""The csv connector's settings: the ``connectors: {csv: {...}}`` section of a practice mapping.

``CsvSettings`` is the connector's ``config_schema``; the hub runs it on the section whenever a
mapping is loaded (and in ``hub mapping validate``) and reports each problem with its line and
key. The checks are made on the section as written (``validate``), in one pass.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from marshmallow import Schema, ValidationError, fields, validates_schema

from hub.mapping.schema import SectionErrors
from hub.model.kinds import KINDS

CSV_KINDS = ("appointment", "charge", "remittance", "encounter", "coverage", "patient", "provider", "location",
             "referral")
CSV_RELATED = ("patient", "provider", "location", "coverage")  # kinds a row may carry beside its own
ON_BAD_ROW = ("skip", "refuse")
Path = tuple[str | int, ...]


def _event_time(errors: SectionErrors, section: dict[str, Any], path: Path) -> None:
    """Where a row's event time comes from: a column, or the export's date."""
    if "event_time_column" in section:
        errors.text(section["event_time_column"], (*path, "event_time_column"), "event_time_column (a column header)")
    if "export_date" in section:
        value = section["export_date"]
        try:  # YAML reads 2025-03-01 as a date; a quoted one is text
            ok = isinstance(value, dt.date) or bool(dt.date.fromisoformat(str(value)))
        except ValueError:
            ok = False
        if not ok:
            errors.add((*path, "export_date"), "export_date is a date, YYYY-MM-DD")


class CsvExportSchema(Schema):
    """One export layout of the practice's system."""

    error_messages = {"type": "an export must be a mapping (key: value)"}

    kind = fields.Raw(metadata={"doc": f"the record kind of a row: {', '.join(CSV_KINDS)}"})
    name = fields.Raw(metadata={"doc": "a name for the export, for messages"})
    columns = fields.Raw(metadata={"doc": "model field → column header, or {column, transform}, or {columns: [...], "
                                          "separator, format} to combine cells; related records as "
                                          "patient.family_name"})
    date_formats = fields.Raw(metadata={"doc": "strptime formats of the export's dates and times"})
    values = fields.Raw(metadata={"doc": "field → {source value: model value}"})
    event_time_column = fields.Raw(metadata={"doc": "the column holding a row's last change"})
    export_date = fields.Raw(metadata={"doc": "the date the export was taken (YYYY-MM-DD)"})

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _check(self, data: Any, original: Any, **kwargs: Any) -> None:
        if not isinstance(original, dict):
            return  # said once, by the "type" message
        errors = check_export(original)
        if errors.tree:
            raise ValidationError(errors.tree)


def check_export(export: Any) -> SectionErrors:
    errors = SectionErrors()
    if not errors.mapping(export, (), "an export"):
        return errors
    _event_time(errors, export, ())
    kind = export.get("kind")
    if kind not in CSV_KINDS:
        errors.add(("kind",), f"kind is one of {', '.join(CSV_KINDS)}")
        return errors
    columns = export.get("columns")
    if not errors.mapping(columns, ("columns",), "columns (model field: column header)"):
        return errors
    if "source_id" not in columns:
        errors.add(("columns",), "columns needs source_id (the row's own id)")
    for key, spec in columns.items():
        kpath: Path = ("columns", key)
        if not isinstance(key, str):  # YAML reads `~:`, `1:` or `yes:` as no text at all
            errors.add(kpath, "a model field name (text) such as start or patient.family_name")
            continue
        target_kind, _, field = key.rpartition(".")
        target_kind = target_kind or kind
        if target_kind != kind and target_kind not in CSV_RELATED:
            errors.add(kpath, f"a related record is one of {', '.join(CSV_RELATED)} (patient.family_name)")
            continue
        if field not in {f.name for f in KINDS[target_kind]} | {"source_id"}:
            errors.add(kpath, f"{target_kind} has no field {field!r}")
        if isinstance(spec, dict):
            _check_spec(errors, spec, kpath)
            types = {f.name: f.type for f in KINDS[target_kind]}
            if "format" in spec and types.get(field) not in ("date", "datetime"):
                errors.add((*kpath, "format"), f"format is for date and date-time fields; {key} is not one")
        else:
            errors.text(spec, kpath, "a column header")
    formats = export.get("date_formats")
    if formats is not None and not (isinstance(formats, list) and all(isinstance(f, str) and "%" in f
                                                                       for f in formats)):
        errors.add(("date_formats",), "date_formats is a list of strptime formats such as '%m/%d/%Y %I:%M %p'")
    values = export.get("values")
    if values is not None and errors.mapping(values, ("values",), "values (field: {source value: model value})"):
        for field, table in values.items():
            errors.mapping(table, ("values", field), f"values of {field}")
    return errors


def _check_spec(errors: SectionErrors, spec: dict[str, Any], path: Path) -> None:
    """``{column, transform}``, or ``{columns: [...], separator, format, transform}`` (cells combined)."""
    errors.keys(spec, path, {"column", "columns", "separator", "format", "transform"})
    if ("column" in spec) == ("columns" in spec):
        errors.add(path, "a column spec names either column (one header) or columns (a list of headers to combine)")
    elif "column" in spec:
        errors.text(spec.get("column"), (*path, "column"), "column")
        for key in ("separator", "format"):
            if key in spec:
                errors.add((*path, key), f"{key} goes with columns (a list of headers to combine)")
    else:
        columns = spec.get("columns")
        if not (isinstance(columns, list) and len(columns) >= 2):
            errors.add((*path, "columns"), "columns is a list of at least two column headers, combined in order")
        else:
            for i, column in enumerate(columns):
                errors.text(column, (*path, "columns", i), "a column header")
        if "separator" in spec and not isinstance(spec["separator"], str):
            errors.add((*path, "separator"), "separator is a text put between the cells (default: one space)")
        formats = spec.get("format")
        if formats is not None and not all(isinstance(f, str) and "%" in f for f in
                                           (formats if isinstance(formats, list) and formats else [formats])):
            errors.add((*path, "format"), "format is a strptime format of the combined text (or a list of them), "
                                          "such as '%m/%d/%Y %I:%M %p'")
    if "transform" in spec:
        errors.transforms(spec["transform"], (*path, "transform"))


class CsvSettings(Schema):
    """The ``connectors: {csv: ...}`` section of a practice mapping."""

    exports = fields.List(fields.Nested(CsvExportSchema), error_messages={"invalid": "exports is a non-empty list"},
                          metadata={"doc": "the practice's export layouts: a list of {kind, columns, date_formats, "
                                           "values}"})
    timezone = fields.Raw(metadata={"doc": "IANA zone of the export's times; overrides the practice's zone"})
    on_bad_row = fields.Raw(metadata={"doc": "skip (default) or refuse a file with a row that cannot be read"})
    delimiter = fields.Raw(metadata={"doc": "the column separator, one character (default ,)"})
    encoding = fields.Raw(metadata={"doc": "the files' text encoding (default: UTF-8, else cp1252)"})
    event_time_column = fields.Raw(metadata={"doc": "the column holding a row's last change (every export)"})
    export_date = fields.Raw(metadata={"doc": "the date the exports were taken, YYYY-MM-DD (every export)"})

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _check(self, data: Any, original: Any, **kwargs: Any) -> None:
        errors = SectionErrors()
        _event_time(errors, original, ())
        if original.get("on_bad_row", "skip") not in ON_BAD_ROW:
            errors.add(("on_bad_row",), f"on_bad_row is one of {', '.join(ON_BAD_ROW)}")
        delimiter = original.get("delimiter", ",")
        if not (isinstance(delimiter, str) and len(delimiter) == 1):
            errors.add(("delimiter",), "delimiter is one character")
        exports = original.get("exports")
        if exports is None:
            errors.add((), "exports is required: a list of {kind, columns, date_formats, values}")
        elif exports == []:  # not a list at all: the field says so; each export: CsvExportSchema
            errors.add(("exports",), "exports is a non-empty list")
        if errors.tree:
            raise ValidationError(errors.tree)
