"""The hub's settings: one typed, frozen object read from the ``HUB_*`` environment variables.

Every setting is a field of ``Settings`` with its type, default, one-line description and a
``secret`` flag (field metadata, see ``setting``); ``Settings.from_env`` parses and checks
them all at once, so a bad value (``HUB_BATCH_SIZE=abc``) is one ``ConfigError`` naming the
variable, at start, instead of a traceback later. ``docs/settings.md`` is generated from
these fields (``hub settings --markdown``).

When settings are read (the rule):

- ``Runtime.create`` takes ``current()`` (or the settings it is given) and holds them as
  ``runtime.settings``: code that has a runtime reads ``runtime.settings.x``;
- code that runs before or without a runtime (logging setup, the database URL's default,
  plugin loading, the gunicorn options, mapping validation) calls ``current()``: the
  settings of the environment *as it is now*. The parsed object is cached and rebuilt only
  when a ``HUB_`` variable changed since (one pass over the environment, some microseconds),
  so a new runtime, app or command always sees the environment of its moment, tests that
  ``monkeypatch.setenv`` included;
- never per message: a path that runs per message takes its values once (per runtime,
  connector instance, batch or connection) and keeps them.

Connector settings belong to their connector: a field of its ``config_schema`` (the
practice's section of the mapping file) may name the variable that stands in for it for
every practice (``metadata={"env": "HUB_FHIR_TOKEN"}``) and say it is secret
(``metadata={"secret": True}``). ``connector_env`` reads and checks those variables;
``redact`` and ``shown`` are what every listing and log uses, so a secret prints as ``***``.
"""

from __future__ import annotations

import math
import os
import threading
import typing
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from hub.errors import ConfigError

PREFIX = "HUB_"
SECRET = "***"  # what a secret value prints as, everywhere
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SQLITE_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


def setting(env: str, default: Any, doc: str, *, secret: bool = False, group: str = "core",
            shown: str | None = None, minimum: float | None = None, choices: tuple[str, ...] = (),
            url: bool = False) -> Any:
    """A field of ``Settings``: its variable, default, description and checks.

    ``shown``: the default as the docs name it (when the value alone says too little);
    ``secret``: never printed (``***``); ``url``: a URL whose password is never printed;
    ``group``: the table of docs/settings.md it is listed in."""
    return field(default=default, repr=False, metadata={
        "env": env, "doc": doc, "secret": secret, "group": group, "shown": shown, "minimum": minimum,
        "choices": choices, "url": url})


@dataclass(frozen=True)
class Settings:
    """Every ``HUB_*`` setting the hub reads, parsed and checked (``from_env``)."""

    # -- the store, the queue, plugins ------------------------------------------------------------
    database_url: str = setting(
        "HUB_DATABASE_URL", "sqlite:///hub.db", "the store: a SQLAlchemy URL; `postgresql://user@host/db` uses "
        "psycopg 3", shown="`sqlite:///hub.db` (in the working folder)", url=True)
    sqlite_synchronous: str = setting(
        "HUB_SQLITE_SYNCHRONOUS", "FULL", "SQLite's `synchronous` pragma. FULL: an acknowledged message survives "
        "a power cut; NORMAL: survives a crash of the process only, faster", choices=SQLITE_SYNCHRONOUS)
    redis_url: str | None = setting(
        "HUB_REDIS_URL", None, "Redis for the rq queue; when set, intake enqueues batches for `hub worker` "
        "processes", shown="unset: inline processing", url=True)
    dispatcher: str | None = setting(
        "HUB_DISPATCHER", None, "`inline`, `rq`, or the dotted path of a class of one's own",
        shown="`rq` when `HUB_REDIS_URL` is set, else `inline`")
    queue: str = setting("HUB_QUEUE", "hub", "the rq queue name (deployments sharing one Redis set their own)")
    batch_size: int = setting(
        "HUB_BATCH_SIZE", 100, "messages per processing batch (one transaction, one rq job); inline processing "
        "uses batches of at least 2000", minimum=1)
    requeue_after: int = setting(
        "HUB_REQUEUE_AFTER", 60, "seconds after which the sweeper of `hub serve`, `hub mllp` and `hub worker` "
        "dispatches again a message still `received` (its process or job died); not while the queue holds a "
        "backlog", minimum=0)
    sweep_interval: float = setting(
        "HUB_SWEEP_INTERVAL", 10.0, "seconds between two sweeps for messages left `received` (a failed hand-off "
        "to the queue is retried at the next one); 0 turns the sweeper off", minimum=0)
    worker_lease: float = setting(
        "HUB_WORKER_LEASE", 30.0, "seconds a running queue job stays claimed without its worker's heartbeat (sent "
        "every third of it); after that the worker counts as dead and the next sweep dispatches the job's "
        "messages again", minimum=1)
    report_refresh_interval: float = setting(
        "HUB_REPORT_REFRESH_INTERVAL", 30.0, "seconds between two background refreshes of the report rollups in "
        "`hub serve`, `hub mllp`, `hub watch` and `hub worker` (each also refreshes soon after it processes a batch); "
        "0 turns them off", minimum=0)
    plugins: tuple[str, ...] = setting("HUB_PLUGINS", (), "extra plugin modules by dotted path, comma-separated",
                                       shown="unset")
    plugins_allow: tuple[str, ...] = setting(
        "HUB_PLUGINS_ALLOW", (), "only these default and entry-point plugins are loaded (the essential ones "
        "always are), comma-separated", shown="unset: all")
    plugins_block: tuple[str, ...] = setting(
        "HUB_PLUGINS_BLOCK", (), "these default and entry-point plugins are never loaded, comma-separated",
        shown="unset")
    identity_link: float = setting(
        "HUB_IDENTITY_LINK", 0.99, "match probability at and above which the patient index links two records",
        group="identity", minimum=0)
    identity_review: float = setting(
        "HUB_IDENTITY_REVIEW", 0.5, "match probability at and above which a pair below the link threshold goes to "
        "the review queue (`hub identity review`)", group="identity", minimum=0)
    identity_shared_systems: tuple[str, ...] = setting(
        "HUB_IDENTITY_SHARED_SYSTEMS", (), "identifier systems (assigning authorities) that name one person across "
        "practices, e.g. an enterprise id or the MRNs of a shared EHR instance; comma-separated", group="identity",
        shown="unset")
    identity_interval: float = setting(
        "HUB_IDENTITY_INTERVAL", 60.0, "seconds between two incremental patient index runs in `hub serve`, "
        "`hub watch`, `hub mllp` and `hub worker` when patients changed; 0 turns them off", group="identity",
        minimum=0)
    mso_vocabularies: str | None = setting(
        "HUB_MSO_VOCABULARIES", None, "the folder of the MSO vocabularies mapping files are checked against",
        shown="`mappings/mso`")
    log_level: str | None = setting(
        "HUB_LOG_LEVEL", None, "turns on structured JSON logs at this level (`INFO`, `DEBUG`, ...)",
        shown="unset (warnings)", choices=LOG_LEVELS)

    # -- the web service ----------------------------------------------------------------------------
    host: str = setting("HUB_HOST", "127.0.0.1", "the address `hub serve` listens on by default", group="web")
    port: int = setting("HUB_PORT", 8000, "the port `hub serve` listens on by default", group="web", minimum=1)
    web_workers: int = setting("HUB_WEB_WORKERS", 2, "gunicorn processes", group="web", minimum=1)
    web_threads: int = setting("HUB_WEB_THREADS", 16, "threads per gunicorn process", group="web", minimum=1)
    request_timeout: int = setting("HUB_REQUEST_TIMEOUT", 60, "seconds before gunicorn restarts a stuck worker",
                                   group="web", minimum=1)
    header_timeout: float = setting("HUB_HEADER_TIMEOUT", 10.0, "seconds a client has to send a request's head "
                                    "(from its first byte, or from connecting); later: 408, closed", group="web",
                                    minimum=0.1)
    body_timeout: float = setting("HUB_BODY_TIMEOUT", 30.0, "seconds a client has to send a request's body after "
                                  "its head (later: 408, closed), and to take each write of the answer",
                                  group="web", minimum=0.1)
    mllp_tls_cert: str | None = setting("HUB_MLLP_TLS_CERT", None, "`hub mllp`: a PEM certificate (chain) file; "
                                        "set, the listener speaks MLLP over TLS", group="web",
                                        shown="unset (plain TCP)")
    mllp_tls_key: str | None = setting("HUB_MLLP_TLS_KEY", None, "`hub mllp`: the PEM private key of "
                                       "`HUB_MLLP_TLS_CERT`", group="web", shown="unset (in the certificate file)")
    commit_timeout: float = setting("HUB_COMMIT_TIMEOUT", 30.0, "seconds a request waits for its commit before "
                                    "answering 503", group="web", minimum=0)
    group_window_ms: float = setting("HUB_GROUP_WINDOW_MS", 2.0, "group commit: how long to gather once several "
                                     "requests wait", group="web", minimum=0)
    group_max: int = setting("HUB_GROUP_MAX", 200, "group commit: the most requests per group", group="web",
                             minimum=1)
    dispatch_delay_ms: float = setting(
        "HUB_DISPATCH_DELAY_MS", 200.0, "longest wait before stored ids are enqueued, so that jobs carry full "
        "batches (0: a job per group commit)", group="web", minimum=0)
    max_payload: int = setting("HUB_MAX_PAYLOAD", 5 * 1024 * 1024, "largest payload in bytes (413 above)",
                               group="web", minimum=1)
    rate_limit: float = setting("HUB_RATE_LIMIT", 200.0, "requests per second per key and per server process "
                                "(0: off)", group="web", minimum=0)
    rate_burst: float | None = setting("HUB_RATE_BURST", None, "the burst a key may send at once", group="web",
                                       shown="2 × rate", minimum=0)
    key_cache_seconds: float = setting(
        "HUB_KEY_CACHE_SECONDS", 5.0, "how long a process trusts a key lookup (a revoked key stops within this)",
        group="web", minimum=0)
    console_idle_minutes: float = setting(
        "HUB_CONSOLE_IDLE_MINUTES", 30.0, "minutes without a request after which a console sign-in ends "
        "(it ends after 12 hours in any case)", group="web", minimum=1)
    trusted_proxies: int = setting(
        "HUB_TRUSTED_PROXIES", 0, "number of proxies whose `X-Forwarded-For` is trusted for the client address",
        group="web", minimum=0)

    # -- feed health alerts ---------------------------------------------------------------------------
    alert_interval: float = setting(
        "HUB_ALERT_INTERVAL", 60.0, "seconds between two evaluations of the alert rules in `hub worker`; 0 turns "
        "them off there (`hub alerts check` from cron still evaluates)", group="alerts", minimum=0)
    alert_rules: str | None = setting(
        "HUB_ALERT_RULES", None, "a YAML file with an `alerts:` block (the syntax of a mapping file's) for every "
        "live practice whose mapping has none", group="alerts", shown="unset: only the mappings' rules")
    alert_repeat_minutes: float = setting(
        "HUB_ALERT_REPEAT_MINUTES", 60.0, "minutes between two notices of an alert still open, unless the rules "
        "say `repeat_minutes`", group="alerts", minimum=1)
    alert_webhook_url: str | None = setting(
        "HUB_ALERT_WEBHOOK_URL", None, "each alert notice is POSTed here as JSON", group="alerts", shown="unset",
        url=True)
    alert_webhook_retries: int = setting(
        "HUB_ALERT_WEBHOOK_RETRIES", 3, "further tries of a webhook POST that failed (connection refused, 5xx), "
        "with backoff", group="alerts", minimum=0)
    alert_webhook_backoff: float = setting(
        "HUB_ALERT_WEBHOOK_BACKOFF", 2.0, "seconds before the first retry of a webhook POST, doubled at each next",
        group="alerts", minimum=0)
    alert_smtp_url: str | None = setting(
        "HUB_ALERT_SMTP_URL", None, "the SMTP server alert notices are mailed through: `smtp://host:25`, "
        "`smtp+starttls://user:password@host:587` or `smtps://user:password@host:465`", group="alerts",
        shown="unset: no e-mail", url=True)
    alert_email_from: str = setting("HUB_ALERT_EMAIL_FROM", "hub@localhost", "the sender of alert e-mails",
                                    group="alerts")
    alert_email_to: tuple[str, ...] = setting(
        "HUB_ALERT_EMAIL_TO", (), "the recipients of alert e-mails, comma-separated", group="alerts",
        shown="unset: no e-mail")

    # -- the monthly leadership packet -------------------------------------------------------------
    packet_smtp_url: str | None = setting(
        "HUB_PACKET_SMTP_URL", None, "the SMTP server the scheduled packet is mailed through (the forms of "
        "`HUB_ALERT_SMTP_URL`)", group="reports", shown="unset: `HUB_ALERT_SMTP_URL`", url=True)
    packet_email_from: str = setting("HUB_PACKET_EMAIL_FROM", "hub@localhost", "the sender of the packet's e-mail",
                                     group="reports")

    # every HUB_ variable as it was read (connector settings are read from here: ``connector_env``)
    environ: tuple[tuple[str, str], ...] = field(default=(), repr=False, metadata={"internal": True})

    # -- building -----------------------------------------------------------------------------------
    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Parse and check every setting of ``environ``; an empty variable counts as unset.
        A bad value raises ``ConfigError`` naming the variable (all bad ones at once)."""
        hub_vars = _hub_items(environ)
        given = dict(hub_vars)
        values: dict[str, Any] = {}
        problems = []
        hints = typing.get_type_hints(cls)
        for f in _setting_fields():
            raw = given.get(f.metadata["env"], "").strip()
            if not raw:
                continue
            try:
                values[f.name] = _parse(raw, hints[f.name], f.metadata)
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise ConfigError("; ".join(problems))
        return cls(**values, environ=hub_vars)

    def with_defaults(self, **values: Any) -> Settings:
        """These settings with other defaults: a value given here applies unless its variable is set
        (``hub demo`` builds with NORMAL sync and large batches unless told otherwise)."""
        given = dict(self.environ)
        by_name = {f.name: f for f in _setting_fields()}
        keep = {name: value for name, value in values.items() if not given.get(by_name[name].metadata["env"])}
        return replace(self, **keep)

    def env(self, name: str) -> str | None:
        """A ``HUB_`` variable as it was read (empty: None)."""
        return dict(self.environ).get(name) or None

    def is_set(self, name: str) -> bool:
        """True when the field's variable was set (not left to its default)."""
        return self.env(_field(name).metadata["env"]) is not None

    # -- showing ------------------------------------------------------------------------------------
    def shown(self, name: str) -> str:
        """The value of a field as it may be printed: secrets as ``***``, a URL without its password."""
        f = _field(name)
        return show_value(getattr(self, name), secret=f.metadata["secret"], url=f.metadata["url"])

    def listing(self) -> list[dict[str, Any]]:
        """Every setting with its effective value (redacted), whether it was set, and its meaning."""
        return [{"setting": f.metadata["env"], "value": self.shown(f.name), "set": self.is_set(f.name),
                 "secret": f.metadata["secret"], "description": f.metadata["doc"]} for f in _setting_fields()]

    def __repr__(self) -> str:  # a repr lands in logs and tracebacks: secrets redacted
        inner = ", ".join(f"{f.name}={self._repr_value(f)!r}" for f in _setting_fields())
        return f"Settings({inner})"


    def _repr_value(self, f: Any) -> Any:
        value = getattr(self, f.name)
        if value is None or value == "" or not (f.metadata["secret"] or f.metadata["url"]):
            return value
        return self.shown(f.name)


def _hub_items(environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in environ.items() if k.startswith(PREFIX)))


def _setting_fields() -> tuple[Any, ...]:
    return _FIELDS


def _field(name: str) -> Any:
    for f in _FIELDS:
        if f.name == name:
            return f
    raise KeyError(name)


def _parse(raw: str, kind: Any, meta: Mapping[str, Any]) -> Any:
    env = meta["env"]
    quoted = "" if meta["secret"] else f" (got {raw!r})"
    args = typing.get_args(kind)
    if type(None) in args:  # X | None: the X
        kind = next(a for a in args if a is not type(None))
    if typing.get_origin(kind) is tuple:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if kind is int or kind is float:
        try:
            value: Any = int(raw) if kind is int else float(raw)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise ValueError(f"{env} must be {what}{quoted}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{env} must be a finite number{quoted}")
        if meta["minimum"] is not None and value < meta["minimum"]:
            raise ValueError(f"{env} must be at least {meta['minimum']:g}{quoted}")
        return value
    if meta["choices"]:
        value = raw.upper()
        if value not in meta["choices"]:
            raise ValueError(f"{env} must be one of {', '.join(meta['choices'])}{quoted}")
        return value
    return raw


def show_value(value: Any, *, secret: bool = False, url: bool = False) -> str:
    """A value as listings print it: a secret as ``***`` (when it has one), a URL's password as ``***``."""
    if value is None or value == "" or value == ():
        return ""
    if secret:
        return SECRET
    if isinstance(value, tuple):
        return ",".join(value)
    text = str(value)
    return redact_url(text) if url else text


def redact_url(url: str) -> str:
    """``postgresql://hub:pw@db/hub`` → ``postgresql://hub:***@db/hub`` (a URL without a password as it is)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return SECRET
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:{SECRET}@{host}"))


_FIELDS = tuple(f for f in fields(Settings) if not f.metadata.get("internal"))

# ------------------------------------------------------------------ the settings of now
_cache: tuple[dict[Any, Any], Settings] | None = None
_cache_lock = threading.Lock()


def _environ_now() -> Mapping[Any, Any]:
    # os.environ keeps its variables in ``_data`` (CPython, every platform): comparing that dict with
    # the copy the cache was built from costs well under a microsecond; elsewhere, the mapping itself
    data = getattr(os.environ, "_data", None)
    return data if isinstance(data, dict) else os.environ


def current() -> Settings:
    """The settings of the process environment as it is now (see the module's rule). Cached: parsed
    again only when the environment changed since (one comparison of it with the copy the cache
    was built from). Call it once per command, runtime, connection or batch, never per record."""
    global _cache
    cached = _cache
    if cached is not None and cached[0] == _environ_now():
        return cached[1]
    with _cache_lock:
        copy = dict(_environ_now())
        built = Settings.from_env(os.environ)
        _cache = (copy, built)
    return built


# ------------------------------------------------------------------ connector settings
def _schema_fields(schema: Any) -> list[tuple[str, Any]]:
    """(key in the mapping file, marshmallow field) of a connector's ``config_schema``."""
    if schema is None:
        return []
    instance = schema() if isinstance(schema, type) else schema
    return [(f.data_key or name, f) for name, f in instance.fields.items()]


def env_fields(schema: Any) -> list[tuple[str, str, Any]]:
    """(key, variable, field) of each field of a ``config_schema`` a variable stands in for."""
    return [(key, f.metadata["env"], f) for key, f in _schema_fields(schema) if f.metadata.get("env")]


def connector_env(schema: Any, settings: Settings | None = None) -> dict[str, Any]:
    """The values the environment gives a connector's settings, by key, read through the fields
    (``HUB_FHIR_VALIDATE=0`` → ``{"validate": False}``). A bad value raises ``ConfigError``."""
    from marshmallow import ValidationError  # the schema's library, loaded already (not by `hub --version`)

    settings = settings or current()
    out: dict[str, Any] = {}
    for key, env, f in env_fields(schema):
        raw = settings.env(env)
        if raw is None or not raw.strip():
            continue
        try:
            out[key] = f.deserialize(raw.strip())
        except ValidationError as exc:
            quoted = "" if is_secret(f) else f" (got {raw!r})"
            raise ConfigError(f"{env}: {' '.join(map(str, exc.messages))}{quoted}") from None
    return out


def is_secret(f: Any) -> bool:
    meta = getattr(f, "metadata", None) or {}
    return bool(meta.get("secret") or meta.get("phi"))


def secret_keys(schema: Any) -> frozenset[str]:
    """The keys of a ``config_schema`` whose values are never shown (``secret`` or ``phi`` metadata)."""
    return frozenset(key for key, f in _schema_fields(schema) if is_secret(f))


def redact(config: Mapping[str, Any] | None, schema: Any) -> dict[str, Any]:
    """A connector section to show: the value of every secret key replaced by ``***``."""
    hidden = secret_keys(schema)
    return {k: (SECRET if k in hidden and v not in (None, "") else v) for k, v in (config or {}).items()}


def connector_listing(connectors: Iterable[Any], settings: Settings | None = None) -> list[dict[str, Any]]:
    """The variables the connectors declare, with their values as they may be shown."""
    settings = settings or current()
    rows = []
    for cls in connectors:
        for key, env, f in env_fields(getattr(cls, "config_schema", None)):
            raw = settings.env(env)
            rows.append({"setting": env, "connector": cls.name, "key": key,
                         "value": show_value(raw, secret=is_secret(f)), "set": raw is not None,
                         "secret": is_secret(f), "description": f.metadata.get("env_doc") or f.metadata.get("doc", "")})
    return sorted(rows, key=lambda r: r["connector"])  # each connector's in its schema's order


# ------------------------------------------------------------------ docs/settings.md
INTRO = """# Settings

Settings come from the environment. Per-practice settings (code maps, connector
options) live in the practice's mapping file instead.

Every value is checked when a command, server or worker starts: a bad one (say
`HUB_BATCH_SIZE=abc`) stops it with one line naming the variable. An empty variable
counts as unset. A process reads the settings when it starts (each command, each
web server process, each `hub worker`); a changed variable takes effect at the next
start. `hub settings` lists the effective values, secrets as `***` (and a
URL's password too), as every listing, log line and error message does.

This page is generated from the settings object (`hub.settings.Settings` and the
connectors' `config_schema`): `hub settings --markdown > docs/settings.md`.
"""
IDENTITY = """## The patient index

The master patient index (`hub identity`, docs/identity.md) links records above the link
threshold, queues those between the two thresholds for review, and leaves the rest apart.
"""

WEB = """## The web service

Details in [deployment.md](deployment.md).
"""
ALERTS = """## Feed health alerts

The alert rules (silence in business hours, error share, queue age, daily volume) and how
notices are delivered, by webhook and by e-mail: [operations.md](operations.md).
"""
PACKET = """## The monthly packet

Where `hub schedule packet --to` mails leadership's packet: [reports.md](reports.md#monthly-packet).
"""
CONNECTORS = """## Connector settings

A connector declares its settings in its `config_schema` (the practice's section of
the mapping file, see the connector's own page); these variables stand in for a
setting for every practice. `HUB_FHIR_VALIDATE=0` turns validation off whatever
the mapping says; the pull credentials are used where a practice's mapping sets none.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _default_cell(f: Any) -> str:
    if f.metadata["shown"]:
        return str(f.metadata["shown"])
    value = f.default
    return f"`{value:g}`" if isinstance(value, float) else f"`{value}`"


def markdown(connectors: Iterable[Any] = ()) -> str:
    """docs/settings.md: the tables of every setting, from the fields (and the connectors' declarations)."""
    out = [INTRO]
    for group, prose in (("core", None), ("identity", IDENTITY), ("web", WEB), ("alerts", ALERTS),
                         ("reports", PACKET)):
        if prose:
            out.append(prose)
        out.append("| setting | default | what it does |\n|---|---|---|")
        for f in _FIELDS:
            if f.metadata["group"] == group:
                doc = f.metadata["doc"] + (" (secret)" if f.metadata["secret"] else "")
                out.append(f"| `{f.metadata['env']}` | {_cell(_default_cell(f))} | {_cell(doc)} |")
        out.append("")
    out.append(CONNECTORS)
    out.append("| setting | connector | what it does |\n|---|---|---|")
    rows = [(env, cls.name, f) for cls in connectors
            for _, env, f in env_fields(getattr(cls, "config_schema", None))]
    for env, name, f in sorted(rows, key=lambda r: r[1]):
        doc = (f.metadata.get("env_doc") or f.metadata.get("doc", "")) + (" (secret)" if is_secret(f) else "")
        out.append(f"| `{env}` | {name} | {_cell(doc)} |")
    return "\n".join(out) + "\n"
