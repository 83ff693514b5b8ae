"""High-water marks for connectors that pull from a practice's system (``hub fhir pull``).

A mark is the newest ``lastUpdated`` (as the source wrote it) among the records already
stored durably, per practice, source and resource type; a rerun asks only for what
changed since. Connectors never touch the database: they call these functions.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from hub.model.tables import pull_state
from hub.store.engine import writer


def get_watermark(engine: sa.Engine, practice: str, source: str, resource_type: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(sa.select(pull_state.c.high_water).where(
            pull_state.c.practice == practice, pull_state.c.source == source[:255],
            pull_state.c.resource_type == resource_type)).scalar_one_or_none()


def set_watermark(engine: sa.Engine, practice: str, source: str, resource_type: str, high_water: str) -> None:
    key = {"practice": practice, "source": source[:255], "resource_type": resource_type}
    now = dt.datetime.now(dt.UTC)
    with writer(engine).begin() as conn:
        done = conn.execute(sa.update(pull_state).where(
            *(pull_state.c[k] == v for k, v in key.items())).values(high_water=high_water, updated_at=now))
        if done.rowcount == 0:
            conn.execute(sa.insert(pull_state).values(**key, high_water=high_water, updated_at=now))


def list_watermarks(engine: sa.Engine, practice: str | None = None) -> list[dict[str, object]]:
    query = sa.select(pull_state).order_by(pull_state.c.practice, pull_state.c.source, pull_state.c.resource_type)
    if practice:
        query = query.where(pull_state.c.practice == practice)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def connector_config(engine: sa.Engine, practice: str, connector: str) -> dict[str, object]:
    """The ``connectors: {<connector>: ...}`` section of a registered practice's mapping
    (``NotFound`` for an unknown practice)."""
    from hub.mapping import load_mapping
    from hub.store.practices import get_practice

    with engine.connect() as conn:
        row = get_practice(conn, practice)
    return load_mapping(row["mapping"], source=f"mapping of practice {practice}").connector_config(connector)
