"""High-water marks of pulls (table ``pull_state``): how far each practice's source has been read.

A mark is the cursor a poller gave with the newest page already stored durably (for FHIR the
newest ``meta.lastUpdated``, as the server wrote it), per practice, source and resource type;
a rerun asks only for what changed since. The core's pull (``hub.pipeline.pull``) reads and
moves them; connectors never do.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from hub.model.tables import pull_state
from hub.store.engine import writer

SOURCE_MAX = 255  # characters of a source kept in the key (the column's width)


def get_watermark(engine: sa.Engine, practice: str, source: str, resource_type: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(sa.select(pull_state.c.high_water).where(
            pull_state.c.practice == practice, pull_state.c.source == source[:SOURCE_MAX],
            pull_state.c.resource_type == resource_type)).scalar_one_or_none()


def set_watermark(engine: sa.Engine, practice: str, source: str, resource_type: str, high_water: str) -> None:
    key = {"practice": practice, "source": source[:SOURCE_MAX], "resource_type": resource_type}
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
