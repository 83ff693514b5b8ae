"""The practice registry: each affiliate, its status and its mapping file."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from marshmallow import ValidationError as MarshmallowError

from hub.errors import HubError, NotFound, ValidationError
from hub.model.kinds import PRACTICE_STATUS, check_timezone  # check_timezone: in the model, for hub normalize
from hub.model.schemas import practice_schema
from hub.model.tables import practices


def add_practice(conn: sa.Connection, slug: str, name: str, *, mapping: str | None = None,
                 acquired_on: dt.date | None = None, timezone: str | None = None) -> None:
    try:
        practice_schema().load({"slug": slug, "name": name})
    except MarshmallowError as exc:
        raise ValidationError(f"practice {slug!r}: " + "; ".join(
            f"{k}: {' '.join(v)}" for k, v in exc.normalized_messages().items())) from None
    check_timezone(timezone)
    if conn.execute(sa.select(practices.c.slug).where(practices.c.slug == slug)).first():
        raise HubError(f"practice {slug!r} is already registered")
    conn.execute(sa.insert(practices).values(slug=slug, name=name, mapping=mapping, acquired_on=acquired_on,
                                             timezone=timezone, status="onboarding",
                                             created_at=dt.datetime.now(dt.UTC)))


def set_timezone(conn: sa.Connection, slug: str, timezone: str) -> str | None:
    """Set the practice's zone; returns the zone it had."""
    check_timezone(timezone)
    previous = get_practice(conn, slug)["timezone"]
    conn.execute(sa.update(practices).where(practices.c.slug == slug).values(timezone=timezone))
    return previous


def get_practice(conn: sa.Connection, slug: str) -> dict[str, Any]:
    row = conn.execute(sa.select(practices).where(practices.c.slug == slug)).first()
    if row is None:
        raise NotFound(f"no practice {slug!r} is registered (hub practice add {slug} --name ...)")
    return dict(row._mapping)


def list_practices(conn: sa.Connection) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(sa.select(practices).order_by(practices.c.slug))]


def set_status(conn: sa.Connection, slug: str, status: str) -> None:
    if status not in PRACTICE_STATUS:
        raise HubError(f"practice status must be one of {', '.join(PRACTICE_STATUS)}")
    get_practice(conn, slug)
    values: dict[str, Any] = {"status": status}
    if status == "live":
        values["go_live_on"] = dt.date.today()
    conn.execute(sa.update(practices).where(practices.c.slug == slug).values(**values))


def set_mapping(conn: sa.Connection, slug: str, mapping: str) -> None:
    get_practice(conn, slug)
    conn.execute(sa.update(practices).where(practices.c.slug == slug).values(mapping=mapping))
