"""The migrations build exactly the tables the model declares."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from hub.model.tables import metadata
from hub.store.engine import current_revision, get_engine, head_revision


def test_store_upgrades_itself_to_head_and_matches_the_model(database_url):
    engine = get_engine(database_url)
    assert current_revision(engine) == head_revision(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), metadata)
    assert diff == [], f"the migrations and hub/model/tables.py disagree: {diff}"


def test_upgrade_is_idempotent(database_url):
    from hub.store.engine import create_engine, upgrade_schema

    engine = create_engine(database_url)
    upgrade_schema(engine)
    upgrade_schema(engine)
    assert current_revision(engine) == head_revision(engine)
    engine.dispose()
