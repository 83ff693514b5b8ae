"""Statements that return no rows, sent to PostgreSQL in one round trip.

A refresh transaction recomputes its cells in some thirty statements, most of them
small; on a busy machine each round trip to the server costs milliseconds whatever the statement
does. ``round_trip(conn)`` puts the enclosed statements in psycopg's pipeline mode: they are sent
at once and their results (none) read at the end of the block, where an error is raised as
usual. Only for statements whose rows nobody reads (inserts, updates, deletes): a result read
inside the block is not there yet. Elsewhere (SQLite, in process) it changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa


@contextmanager
def round_trip(conn: sa.Connection) -> Iterator[None]:
    if conn.dialect.name != "postgresql":
        yield
        return
    with conn.connection.driver_connection.pipeline():  # type: ignore[union-attr]
        yield


def _array_type(column: sa.Column[Any]) -> str:
    kind = column.type
    if isinstance(kind, sa.Boolean):
        return "boolean"
    if isinstance(kind, sa.Integer):
        return "bigint"
    if isinstance(kind, sa.Float):
        return "float8"
    return "text"


def insert_rows(conn: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts of the same columns). On PostgreSQL in one statement, each column sent as one
    array (``unnest``): an executemany sends a statement per row, and a refresh writes thousands of rows (its
    visits, medians and histograms). Elsewhere an executemany, which SQLite runs in process."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(sa.insert(table), list(rows))
        return
    columns = list(rows[0])
    arrays = ", ".join(f"CAST(:c{i} AS {_array_type(table.c[c])}[])" for i, c in enumerate(columns))
    conn.execute(sa.text(f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays})"),
                 {f"c{i}": [r[c] for r in rows] for i, c in enumerate(columns)})


def copy_rows(conn: sa.Connection, table: sa.Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
    """``insert_rows`` for the largest writes (a catch-up's visits, a million rows after a backfill), each row a tuple
    of ``columns``' values: on PostgreSQL by COPY, which takes rows several times faster than an INSERT of arrays,
    each tuple passed as it is. Not inside ``round_trip``: COPY has no pipeline mode."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        insert_rows(conn, table, [dict(zip(columns, row, strict=True)) for row in rows])
        return
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
