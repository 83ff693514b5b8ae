"""Validation of records against the common model, built from ``kinds.py``.

``validate_record`` is the one gate every record passes before it is stored: it
returns the record with Python values (``date``, ``Decimal``, ...) or raises
``ValidationError`` carrying marshmallow's field-level messages.

The marshmallow schemas (``schema_for``, ``practice_schema``, the ``Money`` field, ...) are in
``marshmallow_schemas.py``, imported when first used: a record in canonical form takes the fast
path without them, so ``hub normalize`` of a small file never pays marshmallow's import. They
are still importable from here.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

from hub import names_from
from hub.errors import ValidationError
from hub.model.kinds import COMMON_FIELDS, KINDS, STR_MAX, Field, datetime_fields
from hub.model.money import MONEY_LIMIT, round_money

if TYPE_CHECKING:  # the names this module gives on (see __getattr__)
    from hub.model.marshmallow_schemas import AdjustmentSchema as AdjustmentSchema
    from hub.model.marshmallow_schemas import IdentifierSchema as IdentifierSchema
    from hub.model.marshmallow_schemas import Money as Money
    from hub.model.marshmallow_schemas import OffsetDateTime as OffsetDateTime
    from hub.model.marshmallow_schemas import practice_schema as practice_schema
    from hub.model.marshmallow_schemas import schema_for as schema_for

# the marshmallow schemas' names, imported from ``marshmallow_schemas`` when first asked for
__getattr__ = names_from("hub.model.marshmallow_schemas", ("AdjustmentSchema", "IdentifierSchema", "Money",
                                                            "OffsetDateTime", "practice_schema", "schema_for"),
                         globals())

def validate_record(record: dict[str, Any], zone: dt.tzinfo | None = None) -> dict[str, Any]:
    """Check one record against the common model; return it with Python values.

    Date-times come back aware and in ``zone``, the practice's time zone (see ``localize``).

    Records in the model's canonical form (what connectors emit) take a compiled fast
    path, about five times quicker than marshmallow; anything else — a value to coerce,
    or an error to explain — goes through the marshmallow schema, which stays the one
    definition of what is valid and of the messages a person reads."""
    kind: Any = record.get("kind")
    # the check written for this set of fields when there is one (``_fast_validator``'s ``check``, a call less)
    shapes = SHAPE_CHECKS.get(kind)  # only known kinds have checks
    if shapes is None and kind not in KINDS:
        raise ValidationError(f"unknown record kind {kind!r}", errors={"kind": ["Unknown kind."]})
    shaped = shapes.get(tuple(record)) if shapes is not None else None
    fast = shaped(record, zone) if shaped is not None else _fast_validator(kind)(record, zone)  # in ``zone`` already
    if fast is not None:
        return fast
    from marshmallow import ValidationError as MarshmallowError

    from hub.model.marshmallow_schemas import schema_for

    try:
        return localize(schema_for(kind).load(record), zone)
    except MarshmallowError as exc:
        messages = exc.normalized_messages()
        fields_named = ", ".join(f"{kind}.{name}" for name in sorted(messages))
        # Field names and marshmallow's wording only: never the offending values (they may be PHI).
        raise ValidationError(f"record does not fit the common model: {fields_named}: "
                              + "; ".join(f"{k}: {_flat(v)}" for k, v in sorted(messages.items())),
                              errors=messages) from None


def localize(record: dict[str, Any], zone: dt.tzinfo | None) -> dict[str, Any]:
    """Every date-time of a validated record as an aware time in the practice's zone.

    A time sent without an offset is a wall-clock time where the practice is, so it is read in
    ``zone`` (UTC for a practice that has none yet: the onboarding scorecard flags such times).
    A time sent with an offset is an instant and stays that instant, shown in ``zone``: the
    stored text then starts with the practice-local date, which every KPI's day, week and month
    is. A wall-clock time that does not exist (the hour skipped when DST starts) or that happens
    twice (when it ends) is read with the offset in force before the change (PEP 495 ``fold=0``)."""
    for name in datetime_fields(record["kind"]):
        value = record.get(name)
        if value is not None:
            record[name] = _in_zone(value, zone)
    return record


def _in_zone(value: dt.datetime, zone: dt.tzinfo | None) -> dt.datetime:
    """One date-time as ``localize`` gives it."""
    if value.tzinfo is None:
        return value.replace(tzinfo=zone or dt.UTC)
    return value.astimezone(zone) if zone is not None else value


def sent_without_offset(record: dict[str, Any]) -> list[str]:
    """The date-time fields of a record as a connector made it (strings) that carry no offset."""
    if record.get("kind") not in KINDS:
        return []
    found = []
    for name in datetime_fields(record["kind"]):
        value = record.get(name)
        # an offset ends the text (Z or ±HH:MM): a cheap test first, the pattern only for what may be naive
        if type(value) is str and not (value[-1:] == "Z" or value[-6:-5] in ("+", "-")) \
                and _NAIVE_DATETIME.match(value):
            found.append(name)
    return found


def _flat(messages: Any) -> str:
    if isinstance(messages, dict):
        return " ".join(f"[{k}] {_flat(v)}" for k, v in messages.items())
    if isinstance(messages, list):
        return " ".join(_flat(m) for m in messages)
    return str(messages)


def to_json_ready(value: Any) -> Any:
    """Dates, date-times and Decimals as the ISO / decimal strings the model's JSON uses."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list):
        return [to_json_ready(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json_ready(v) for k, v in value.items()}
    return value


# ---------------------------------------------------------------- fast path
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?$")
_NAIVE_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?$")
_MONEY = re.compile(r"^-?\d{1,12}(\.\d{1,4})?$")
_NOT_FAST = object()
_AS_SENT = object()  # ``_fast_validator``'s check without a zone: date-times as sent


def _converter(f: Field) -> Any:
    """For one field: canonical-form value → Python value, or _NOT_FAST to let marshmallow decide.

    Made once per field (a check per value, not a look-up of the field's type per value)."""
    if f.type == "str":
        return lambda v: v if type(v) is str and v and len(v) <= STR_MAX else _NOT_FAST
    if f.type == "text":
        return lambda v: v if type(v) is str and v else _NOT_FAST
    if f.type == "enum":
        choices = frozenset(f.choices)
        return lambda v: v if type(v) is str and v in choices else _NOT_FAST
    if f.type == "date":
        return lambda v: _date(v) if type(v) is str and len(v) == 10 else _NOT_FAST  # YYYY-MM-DD, or no date
    if f.type == "datetime":
        return lambda v: _datetime(v) if type(v) is str else _NOT_FAST
    if f.type == "int":
        return lambda v: v if type(v) is int else _NOT_FAST
    if f.type == "money":
        return _money
    if f.type == "bool":
        return lambda v: v if type(v) is bool else _NOT_FAST
    if f.type == "list":
        return _str_list
    if f.type == "json":
        return _fast_identifiers if f.name == "identifiers" else lambda v: _fast_nested(f.name, v)
    return lambda v: _NOT_FAST


@lru_cache(maxsize=16384)
def _date(value: str) -> Any:
    # a feed repeats its service, posting and birth dates: parsed once each
    return _parsed(dt.date.fromisoformat, value) if _DATE.match(value) else _NOT_FAST


@lru_cache(maxsize=16384)
def _datetime(value: str) -> Any:
    # a message's records share its event time, and a feed repeats its slot times: parsed once each
    return _parsed(dt.datetime.fromisoformat, value) if _DATETIME.match(value) else _NOT_FAST


@lru_cache(maxsize=16384)
def _datetime_in(value: str, zone: dt.tzinfo | None) -> Any:
    # ``_datetime`` read in the practice's zone (``localize``), once per text and zone: a message's records
    # then share one event time, and the store's stamp of it is made once (``canonical.upsert_records``)
    parsed = _datetime(value)
    return parsed if parsed is _NOT_FAST else _in_zone(parsed, zone)


def _parsed(parse: Any, value: str) -> Any:
    try:
        return parse(value)
    except ValueError:  # shaped like a date but none ("0000-00-00", "2025-02-30"): marshmallow names the error
        return _NOT_FAST


def _money(value: Any) -> Any:
    if type(value) is Decimal:
        return round_money(value) if value.is_finite() and abs(value) < MONEY_LIMIT else _NOT_FAST
    if type(value) is not str:
        return _NOT_FAST
    return _money_text(value) if len(value) <= 24 else _NOT_FAST  # longer: more digits than _MONEY takes


@lru_cache(maxsize=16384)
def _money_text(value: str) -> Any:
    # a feed repeats its fees and copays: each text read once (a Decimal is immutable, so one is shared)
    return round_money(Decimal(value)) if _MONEY.match(value) else _NOT_FAST


def _str_list(value: Any) -> Any:
    """A list of text (codes, modifiers) → a copy of it; anything else _NOT_FAST."""
    if type(value) is not list:
        return _NOT_FAST
    for item in value:
        if type(item) is not str:
            return _NOT_FAST
    return list(value)


_NESTED_KEYS = {"identifiers": ({"system", "value", "type"}, {"value"}, ()),
                "adjustments": ({"group", "reason", "amount"}, {"amount"}, ("amount",))}


def _fast_identifiers(value: Any) -> Any:
    """``_fast_nested("identifiers", value)``, its usual case first: each item a dict of exactly system,
    value and type (value text, not empty; the others text or None), copied. Anything else: the loop."""
    if type(value) is list:
        out = []
        for item in value:
            # three keys, system and type among them, and a value that is text: exactly system, value and type
            if type(item) is not dict or len(item) != 3 or "system" not in item or "type" not in item:
                break
            text, system, id_type = item.get("value"), item["system"], item["type"]
            if type(text) is not str or not text or (system is not None and type(system) is not str) or \
                    (id_type is not None and type(id_type) is not str):
                break
            out.append(dict(item))
        else:
            return out
    return _fast_nested("identifiers", value)


def _fast_nested(name: str, value: Any) -> Any:
    allowed, required, money = _NESTED_KEYS.get(name, (set(), set(), ()))
    if type(value) is not list or not allowed:
        return _NOT_FAST
    out = []
    for item in value:
        if type(item) is not dict or not item.keys() <= allowed or not required <= item.keys():
            return _NOT_FAST
        if not money:  # text only (identifiers): each value None or text, a required one not empty
            for key, v in item.items():
                if v is None:
                    if key in required:
                        return _NOT_FAST
                elif type(v) is not str or (not v and key in required):
                    return _NOT_FAST
            out.append(dict(item))
            continue
        entry = {}
        for key, v in item.items():
            if key in money:
                v = _money(v)
            elif v is not None and (type(v) is not str or (key in required and not v)):
                return _NOT_FAST
            if v is _NOT_FAST or (v is None and key in required):
                return _NOT_FAST
            entry[key] = v
        out.append(entry)
    return out


SHAPES_PER_KIND = 512  # key sets (in their order) of one kind given a check of their own; more take the loop


@cache
def _fast_validator(kind: str) -> Any:
    declared = {f.name: f for f in (*COMMON_FIELDS, *KINDS[kind])}
    required = [f.name for f in declared.values() if f.required]
    converters = {name: _converter(f) for name, f in declared.items()}
    # plain text fields, the most of a record's values, checked here rather than by a call each
    plain = frozenset(name for name, f in declared.items() if f.type == "str")

    def check_any(record: dict[str, Any]) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        for name, value in record.items():
            if value is None:
                if name not in converters:
                    return None
                out[name] = None
                continue
            if name in plain:
                if type(value) is not str or not value or len(value) > STR_MAX:
                    return None
                out[name] = value
                continue
            convert = converters.get(name)
            if convert is None:
                return None
            converted = convert(value)
            if converted is _NOT_FAST:
                return None
            out[name] = converted
        for name in required:
            if out.get(name) is None:
                return None
        return out if out["kind"] == kind else None

    # A connector emits a few sets of fields per kind, in one order each: each such shape gets a check
    # written out for its fields (``_shape_check``), which reads the values in one pass instead of
    # looking up each field's rule by name; ``check_any`` answers the same for any record.
    shapes: dict[tuple[str, ...], Any] = {}

    def check(record: dict[str, Any], zone: Any = _AS_SENT) -> dict[str, Any] | None:
        """The record with Python values, or None; given a ``zone`` (None: UTC), its date-times
        come read in it, as ``localize`` reads them."""
        shape = tuple(record)
        shaped = shapes.get(shape)
        if shaped is None:
            if len(shapes) >= SHAPES_PER_KIND:
                out = check_any(record)
                return out if out is None or zone is _AS_SENT else localize(out, zone)
            shaped = shapes[shape] = _shape_check(kind, shape, declared, converters, required)
        return shaped(record, zone)

    check.check_any = check_any  # type: ignore[attr-defined]  # the tests compare the two
    SHAPE_CHECKS[kind] = shapes  # ``validate_record`` looks a record's shape up there itself
    return check


# kind → its ``_fast_validator``'s checks by shape (filled as each validator is made); ``validate_record`` and
# ingest's loop (``hub.pipeline.normalize``) look a record's shape up there themselves
SHAPE_CHECKS: dict[str, dict[tuple[str, ...], Any]] = {}


# ``_converter``'s test of a value that is kept as it is, written out for ``_shape_check`` ({v}: the value);
# the other types are converted by their ``_converter``
_KEPT_IF = {"str": "type({v}) is str and {v} and len({v}) <= STR_MAX", "text": "type({v}) is str and {v}",
            "int": "type({v}) is int", "bool": "type({v}) is bool"}
# ... and a conversion written out: the value, or _NOT_FAST
_CONVERTED = {"date": "_date({v}) if type({v}) is str and len({v}) == 10 else _NOT_FAST",
              "datetime": "(_datetime({v}) if zone is _AS_SENT else _datetime_in({v}, zone)) if type({v}) is str "
                          "else _NOT_FAST"}


def _shape_check(kind: str, shape: tuple[str, ...], fields: dict[str, Field], converters: dict[str, Any],
                 required: list[str]) -> Any:
    """``check_any`` of ``_fast_validator`` written out for records whose keys are ``shape``, in that
    order: the same answer, with each field's rule fixed in the code (the text is made here from the
    model's own field names and types)."""
    if any(name not in converters for name in shape) or any(name not in shape for name in required):
        return lambda record, zone=None: None  # an unknown field, or a required one missing: marshmallow says which
    scope: dict[str, Any] = {"_NOT_FAST": _NOT_FAST, "STR_MAX": STR_MAX, "_date": _date, "_datetime": _datetime,
                             "_datetime_in": _datetime_in, "_AS_SENT": _AS_SENT}
    lines = ["def check(record, zone=_AS_SENT):",
             f"    {', '.join(f'v{i}' for i in range(len(shape)))}, = record.values()"]
    # a required field's test refuses None too where it asks for a type (no test of None first, none after)
    also_none = set()
    replaced = []  # the values the check converts (the others are the record's own)
    for i, name in enumerate(shape):
        f, v = fields[name], f"v{i}"
        if name == "kind":  # the one text it may be: present, text, not empty, not too long
            lines += [f"    if type({v}) is not str or {v} != {kind!r}:", "        return None"]
            also_none.add(name)
        elif f.type in _KEPT_IF or f.type == "enum":
            if f.type == "enum":
                scope[f"choices{i}"] = frozenset(f.choices)
            kept = _KEPT_IF.get(f.type, "type({v}) is str and {v} in choices{i}")
            if name in required:
                lines += [f"    if not ({kept.format(v=v, i=i)}):", "        return None"]
                also_none.add(name)
            else:
                lines += [f"    if {v} is not None and not ({kept.format(v=v, i=i)}):", "        return None"]
        elif f.type in _CONVERTED and name in required:  # None is not text: _NOT_FAST
            lines += [f"    {v} = {_CONVERTED[f.type].format(v=v)}", f"    if {v} is _NOT_FAST:", "        return None"]
            also_none.add(name)
            replaced.append(i)
        else:
            scope[f"c{i}"] = converters[name]
            converted = _CONVERTED[f.type].format(v=v) if f.type in _CONVERTED else f"c{i}({v})"
            lines += [f"    if {v} is not None:", f"        {v} = {converted}",
                      f"        if {v} is _NOT_FAST:", "            return None"]
            replaced.append(i)
    for name in required:
        if name not in also_none:
            lines += [f"    if v{shape.index(name)} is None:", "        return None"]
    # a copy of the record (its keys copied in one step, quicker than a dict made key by key) with the
    # converted values put in their places: the same keys in the same order
    lines.append("    out = dict(record)")
    lines += [f"    out[{shape[i]!r}] = v{i}" for i in replaced]
    lines.append("    return out")
    exec("\n".join(lines), scope)
    return scope["check"]
