"""Statements that return no rows, sent to PostgreSQL in one round trip.

A refresh recomputes one practice-month per transaction in some thirty statements, most of them
small; on a busy machine each round trip to the server costs milliseconds whatever the statement
does. ``round_trip(conn)`` puts the enclosed statements in psycopg's pipeline mode: they are sent
at once and their results (none) read at the end of the block, where an error is raised as
usual. Only for statements whose rows nobody reads (inserts, updates, deletes): a result read
inside the block is not there yet. Elsewhere (SQLite, in process) it changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa


@contextmanager
def round_trip(conn: sa.Connection) -> Iterator[None]:
    if conn.dialect.name != "postgresql":
        yield
        return
    with conn.connection.driver_connection.pipeline():  # type: ignore[union-attr]
        yield
