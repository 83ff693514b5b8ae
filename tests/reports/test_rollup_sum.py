"""The aggregate a refresh sums its measures with (``Sql.total``: ``rollup_sum`` on PostgreSQL, migration 0020;
SQLite's SUM): exact over the whole BIGINT range, an integer, NULL for no value, and an error rather than a
wrapped figure past it."""

import pytest
import sqlalchemy as sa

from hub.reports.rollups import Sql
from hub.store.engine import get_engine

ROWS = ("SELECT 1 AS g, CAST(:a AS BIGINT) AS v UNION ALL SELECT 1, CAST(:b AS BIGINT) "
        "UNION ALL SELECT 1, CAST(:c AS INTEGER) UNION ALL SELECT 2, CAST(NULL AS BIGINT)")


def test_the_rollup_sum_is_exact_to_the_last_cent_of_a_bigint_and_never_wraps(database_url):
    engine = get_engine(database_url)
    total = Sql(engine.dialect.name).total
    query = sa.text(f"SELECT g, {total}(v) FROM ({ROWS}) r GROUP BY g ORDER BY g")
    with engine.connect() as conn:
        # 2**62 + (2**62 - 8) + 7 is the largest BIGINT, 2**63 - 1: exact, where a float of 53 bits is not
        rows = conn.execute(query, {"a": 2**62, "b": 2**62 - 8, "c": 7}).all()
        assert rows == [(1, 9223372036854775807), (2, None)]
        assert type(rows[0][1]) is int  # the rollup columns' type, not a Decimal
        with pytest.raises(sa.exc.DBAPIError):
            conn.execute(query, {"a": 2**62, "b": 2**62 - 8, "c": 8}).all()  # one past it
