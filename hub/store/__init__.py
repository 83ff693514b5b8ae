"""Database engine, migrations, message store, canonical upserts and lineage."""

from hub.store.engine import dispose_engines, get_engine, upgrade_schema, writer

__all__ = ["dispose_engines", "get_engine", "upgrade_schema", "writer"]
