"""Database engine: SQLite (embedded default) or PostgreSQL, and schema upgrades.

``HUB_DATABASE_URL`` picks the database; unset, it is ``hub.db`` in the working
folder. SQLite runs in WAL mode with ``synchronous=FULL`` so an acknowledged
message survives a power cut, not only a crash (``HUB_SQLITE_SYNCHRONOUS=NORMAL``
trades that for speed). Both stores upgrade themselves to the newest schema on
first use; PostgreSQL under an advisory lock so that many processes starting at
once migrate only once.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from hub.errors import ConfigError, StoreError
from hub.settings import Settings, current, redact_url

MIGRATIONS = Path(__file__).parent / "migrations"
_engines: dict[str, sa.Engine] = {}
_lock = threading.Lock()


def database_url(url: str | None = None) -> str:
    url = url or current().database_url
    # psycopg 3 is the driver the hub ships with; plain postgresql:// would ask for psycopg2
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix):]
    return url


def _sqlite_connect(synchronous: str) -> Any:
    """The connect listener of a SQLite engine; ``synchronous`` is HUB_SQLITE_SYNCHRONOUS, checked by the settings."""

    def connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy's begin event below issues BEGIN itself
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA cache_size=-65536")  # 64 MiB: a batch's index pages stay cached between batches
        # checkpoint the WAL every ~40 MB rather than SQLite's 4 MB: each checkpoint writes pages back and
        # syncs the database file, and a busy ingest hit one every few batches (HL7 ingest +15 % by wall clock)
        cur.execute("PRAGMA wal_autocheckpoint=10000")
        # statement journals in memory: a multi-row upsert (hub.store.canonical) keeps one, and on disk it spilled
        # past 64 KB into a temporary file (HL7 ingest wrote 51 KB a message instead of 13 KB, +10 % by wall clock)
        cur.execute("PRAGMA temp_store=MEMORY")
        cur.close()

    return connect


def _sqlite_begin(conn: sa.Connection) -> None:
    # A deferred transaction that reads and then writes can fail at once with SQLITE_BUSY
    # instead of waiting; write paths (``writer(engine)``) take the write lock up front.
    immediate = conn.get_execution_options().get("hub_write")
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def writer(engine: sa.Engine) -> sa.Engine:
    """The engine for a transaction that will write (SQLite: BEGIN IMMEDIATE)."""
    return engine.execution_options(hub_write=True)


def get_engine(url: str | None = None, *, upgrade: bool = True, settings: Settings | None = None) -> sa.Engine:
    """One engine per URL per process, upgraded to the newest schema on first use; a new engine takes
    its settings (HUB_SQLITE_SYNCHRONOUS) from ``settings``, else from the environment now."""
    url = database_url(url)
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = create_engine(url, settings=settings)
            if upgrade:
                upgrade_schema(engine)
            _engines[url] = engine
    return engine


def store_fingerprint(database_url: str) -> str:
    """What names a store where its URL must not go (a queued job: the URL may carry a password)."""
    return hashlib.sha256(database_url.encode("utf-8")).hexdigest()[:16]


def save_failure_reason(exc: BaseException) -> str:
    """What a sender is told of a failed save: the kind of fault, never the statement, its values or the
    URL. A full disk (SQLite's "database or disk is full", PostgreSQL's "could not extend file" or "No
    space left on device") is named as such, so that an operator sees at once what to free."""
    text = str(getattr(exc, "orig", None) or exc).lower()
    if any(sign in text for sign in ("disk is full", "no space left", "could not extend file", "disk full")):
        return "the database is full (no space left)"
    if isinstance(exc, TimeoutError) or "timeout" in text or "timed out" in text:
        return "the database did not answer in time"
    if any(sign in text for sign in ("connection", "refused", "shutting down", "terminat", "server closed",
                                     "not accepting", "starting up", "recovery mode")):
        return "the database is unreachable"
    return f"the database failed ({type(exc).__name__})"


def create_engine(url: str, *, settings: Settings | None = None) -> sa.Engine:
    try:
        if url.startswith("sqlite"):
            # hide_parameters: a failing statement's message (logged, shown) never quotes its values (patient data)
            engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                                      hide_parameters=True)
            synchronous = (settings or current()).sqlite_synchronous
            sa.event.listen(engine, "connect", _sqlite_connect(synchronous))
            sa.event.listen(engine, "begin", _sqlite_begin)
        else:
            engine = sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, hide_parameters=True)
    except (sa.exc.ArgumentError, ImportError, ValueError) as exc:
        # the message may quote the URL: never its password
        raise ConfigError(f"HUB_DATABASE_URL is not a usable database URL: {str(exc).replace(url, redact_url(url))}"
                          ) from None
    return engine


def dispose_engines() -> None:
    """Forget pooled connections (after a fork, or between tests)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def forget_engines_after_fork() -> None:
    """In a forked child: drop the parent's engines without closing the connections the parent still uses."""
    for engine in _engines.values():
        engine.dispose(close=False)
    _engines.clear()


KEYS_PER_IN_LIST = 500  # SQLite: ids per IN list, well under its limit of bound parameters


def fetch_by_keys(conn: sa.Connection, sql: str, keys: Iterable[Any], **params: Any) -> list[Any]:
    """The rows of ``sql``, a text query with `` IN :keys``, for however many keys.

    On PostgreSQL: one statement with one array parameter, run unprepared. psycopg
    prepares a statement after a few runs, and PostgreSQL then plans it once,
    generically, for any parameters; for a look-up by an array of keys that plan scans
    the table where a plan for the actual keys probes an index (rollup upkeep -31 % at
    300k appointments; the refresh's visit-history look-up 60 s to under 1 s at 200k).
    On SQLite: the keys as one JSON array (``keys_as_json``): the statement's text is the same
    for any number of keys, so the driver prepares it once per connection rather than once a
    call (an IN list of a batch's keys is a new statement each time, and preparing it cost
    more than running it). Elsewhere: IN lists of ``KEYS_PER_IN_LIST``. A driver error is
    raised as SQLAlchemy raises it, so callers handle store failures as usual."""
    ordered = sorted(keys)
    if conn.dialect.name == "sqlite":
        return list(conn.exec_driver_sql(keys_as_json(sql), {**params, "keys": orjson.dumps(ordered).decode()}))
    if conn.dialect.name != "postgresql":
        stmt = _expanding_keys(sql)
        return [row for i in range(0, len(ordered), KEYS_PER_IN_LIST)
                for row in conn.execute(stmt, {**params, "keys": ordered[i:i + KEYS_PER_IN_LIST]})]
    driver_sql, values = _driver_sql(sql, conn.dialect), {**params, "keys": ordered}
    driver_error = conn.dialect.loaded_dbapi.Error
    try:
        with conn.connection.driver_connection.cursor() as cur:  # type: ignore[union-attr]
            cur.execute(driver_sql, values, prepare=False)
            return cur.fetchall()
    except driver_error as exc:
        raise sa.exc.DBAPIError.instance(driver_sql, values, exc, driver_error) from exc


@functools.lru_cache(maxsize=64)
def keys_as_json(sql: str) -> str:
    """SQLite: ``sql`` with its `` IN :keys`` reading ``:keys`` as one JSON array."""
    return sql.replace(" IN :keys", " IN (SELECT value FROM json_each(:keys))")


@functools.lru_cache(maxsize=64)
def _expanding_keys(sql: str) -> sa.TextClause:
    return sa.text(sql).bindparams(sa.bindparam("keys", expanding=True))


@functools.lru_cache(maxsize=64)
def _driver_sql(sql: str, dialect: sa.Dialect) -> str:
    """The query in the driver's own placeholders, with the key list as one array."""
    return str(sa.text(sql.replace(" IN :keys", " = ANY(:keys)")).compile(dialect=dialect))


def alembic_config(engine: sa.Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return cfg


def head_revision(engine: sa.Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade_schema(engine: sa.Engine) -> None:
    """Bring the schema to the newest revision (no-op when it is already there)."""
    try:
        if current_revision(engine) == head_revision(engine):
            return
        cfg = alembic_config(engine)
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7305531)"))  # one migrator at a time
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except sa.exc.OperationalError as exc:
        raise StoreError(f"cannot open the database {engine.url.render_as_string()}: {exc.orig}") from None
