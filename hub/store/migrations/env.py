"""Alembic environment: the revisions, on the connection the hub hands over.

The revisions declare their own shapes, so nothing of the live code is imported here. Whoever
autogenerates a revision hands the model's metadata over as ``target_metadata``.
"""

from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config
connection = config.attributes.get("connection")
metadata = config.attributes.get("target_metadata")


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
