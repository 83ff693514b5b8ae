"""The common model's marshmallow schemas, built from ``kinds.py``: what is valid, and the messages a
person reads when a record is not.

Imported when first used (``hub.model.schemas`` names them lazily): a record in canonical form
passes ``validate_record``'s fast path without marshmallow.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, fields, validate

from hub.model.kinds import COMMON_FIELDS, KINDS, PRACTICE_FIELDS, STR_MAX, Field
from hub.model.money import MONEY_LIMIT, round_money


class Money(fields.Field):
    """A decimal amount, rounded half-up to the cent (``round_money``). Floats are refused: binary
    fractions do not add up to cents. Negative amounts (reversals, credits) are allowed."""

    default_error_messages = {"invalid": "Not a valid amount (a decimal string such as '125.00').",
                              "float": "Money must be a decimal string or Decimal, not a float.",
                              "range": "Amount out of range (at most 12 digits before the decimal point)."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Decimal:
        if isinstance(value, float):
            raise self.make_error("float")
        try:
            amount = Decimal(str(value).replace(",", "").strip())
        except (InvalidOperation, ValueError):
            raise self.make_error("invalid") from None
        if not amount.is_finite():
            raise self.make_error("invalid")
        # far above any real amount: cents, and sums of them, stay inside BIGINT (copy_abs, not abs: abs()
        # rounds to the context and overflows on an exponent such as 1E+999999999)
        if amount.copy_abs() >= MONEY_LIMIT:
            raise self.make_error("range")
        return round_money(amount)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else str(value)


class OffsetDateTime(fields.DateTime):
    """An ISO 8601 date-time. One sent without an offset is a wall-clock time of the practice:
    ``validate_record`` reads it in the practice's zone (see ``localize``)."""


class IdentifierSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    system = fields.String(allow_none=True)
    value = fields.String(required=True)
    type = fields.String(allow_none=True)


class AdjustmentSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    group = fields.String(allow_none=True)
    reason = fields.String(allow_none=True)
    amount = Money(required=True)


_NESTED = {"identifiers": IdentifierSchema, "adjustments": AdjustmentSchema}


def _marshmallow_field(f: Field) -> fields.Field:
    kw: dict[str, Any] = {"required": f.required, "allow_none": not f.required}
    if f.type == "str":  # a column of STR_MAX characters: a longer value is the message's own error
        return fields.String(**kw, validate=validate.Length(min=1 if f.required else 0, max=STR_MAX))
    if f.type == "text":
        return fields.String(**kw, validate=validate.Length(min=1) if f.required else None)
    if f.type == "enum":
        return fields.String(**kw, validate=validate.OneOf(f.choices))
    if f.type == "date":
        return fields.Date(**kw)
    if f.type == "datetime":
        return OffsetDateTime(**kw)
    if f.type == "int":
        return fields.Integer(strict=False, **kw)
    if f.type == "money":
        return Money(**kw)
    if f.type == "bool":
        return fields.Boolean(**kw)
    if f.type == "list":
        return fields.List(fields.String(), **kw)
    if f.type == "json":
        nested = _NESTED.get(f.name)
        return fields.List(fields.Nested(nested), **kw) if nested else fields.Raw(**kw)
    raise AssertionError(f"field type {f.type!r} has no schema field")


@cache
def schema_for(kind: str) -> Schema:
    """The schema of one kind (cached: schemas are immutable once built)."""
    declared = {f.name: _marshmallow_field(f) for f in (*COMMON_FIELDS, *KINDS[kind])}
    declared["kind"] = fields.String(required=True, validate=validate.Equal(kind))
    cls = Schema.from_dict(declared, name=f"{kind.title().replace('_', '')}Schema")
    return cls(unknown=RAISE)


@cache
def practice_schema() -> Schema:
    declared = {f.name: _marshmallow_field(f) for f in PRACTICE_FIELDS}
    declared["slug"] = fields.String(required=True, validate=validate.Regexp(
        r"^[a-z0-9][a-z0-9_-]{0,62}$", error="A practice slug is lower-case letters, digits, '-' or '_'."))
    return Schema.from_dict(declared, name="PracticeSchema")(unknown=RAISE)
