"""Alembic environment: the hub's tables, on the connection the hub hands over."""

from alembic import context
from sqlalchemy import engine_from_config, pool

import hub.reports.tables  # noqa: F401  (the report rollups live on the same metadata)
from hub.model.tables import metadata

config = context.config
connection = config.attributes.get("connection")


def run(conn):
    context.configure(connection=conn, target_metadata=metadata, render_as_batch=True,
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    run(connection)
else:
    engine = engine_from_config(config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.",
                                poolclass=pool.NullPool)
    with engine.begin() as conn:
        run(conn)
