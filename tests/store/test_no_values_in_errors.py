"""A failing statement's message never quotes the values it was given (they are patient data)."""

import pytest
import sqlalchemy as sa

from hub.store.engine import create_engine


def test_a_store_error_names_no_bound_value(database_url: str) -> None:
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE phi_probe (id INTEGER PRIMARY KEY, name VARCHAR(40))"))
    try:
        with pytest.raises(sa.exc.IntegrityError) as caught, engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO phi_probe (id, name) VALUES (:id, :name)"),
                         [{"id": 1, "name": "SMITH^JOHN 1970-01-01"}, {"id": 1, "name": "SMITH^JOHN 1970-01-01"}])
        assert "SMITH" not in str(caught.value) and "1970-01-01" not in str(caught.value)
        assert "parameters hidden" in str(caught.value)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE phi_probe"))
        engine.dispose()
