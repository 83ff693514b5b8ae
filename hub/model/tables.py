"""Database tables: one per record kind (built from ``kinds.py``) plus the hub's own.

Storage decisions, the same on SQLite and PostgreSQL so reports agree to the cent:
- money is stored as whole cents in a BIGINT (``MoneyCents``): exact sums in SQL on both;
- date-times of the model are ISO 8601 text with the offset as sent, so the local
  month of an appointment is ``substr(start, 1, 7)`` on either database;
- the hub's own timestamps (received, processed) are UTC (``UTCDateTime``).
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

from hub.model.kinds import KINDS, STR_MAX, Field

metadata = sa.MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
})

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER only


# whole cents below this are returned as they are by ``MoneyCents.cents`` (the rounding there would give the
# same number: fewer digits than the decimal context's precision, 28)
_EXACT_CENTS = 10 ** 26


class MoneyCents(TypeDecorator[Decimal]):
    """Decimal dollars in Python, whole cents in the database."""

    impl = sa.BigInteger
    cache_ok = True

    @staticmethod
    def cents(value: Any) -> int:
        """Whole cents, half-up like validation (``round_money``): never Decimal's default half-even."""
        if type(value) is Decimal:  # the usual amount, validated: whole cents already, nothing to round
            scaled = value * 100
            if scaled.is_finite():
                whole = int(scaled)
                if whole == scaled and -_EXACT_CENTS < whole < _EXACT_CENTS:  # as the rounding below gives it
                    return whole
        return int((Decimal(value) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> int | None:
        if value is None:
            return None
        return self.cents(value)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Decimal | None:
        return None if value is None else Decimal(int(value)) / 100


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC date-times on both databases (SQLite keeps no offset of its own)."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


def _column_type(f: Field) -> Any:
    return {
        "str": sa.String(STR_MAX),
        "text": sa.Text(),
        "enum": sa.String(32),
        "date": sa.Date(),
        "datetime": sa.String(40),
        "int": sa.Integer(),
        "money": MoneyCents(),
        "bool": sa.Boolean(),
        "list": sa.JSON(),
        "json": sa.JSON(),
    }[f.type]


TABLE_NAMES = {
    "location": "locations",
    "provider": "providers",
    "patient": "patients",
    "coverage": "coverages",
    "appointment": "appointments",
    "encounter": "encounters",
    "referral": "referrals",
    "charge": "charges",
    "remittance": "remittances",
    "slot": "slots",
    "patient_merge": "patient_merges",
}


STAMP_SUFFIX = "__stamp"
STAMP_LENGTH = 32  # 20 digits of UTC event time (to the microsecond) + 12 of message id


def stamp_column(field: str) -> str:
    """The column holding the stamp of the event that gave ``field`` its value."""
    return field + STAMP_SUFFIX


def _record_table(kind: str) -> sa.Table:
    columns: list[Any] = [
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("practice", sa.String(64), nullable=False),
        sa.Column("source_id", sa.String(255), nullable=False),
    ]
    columns += [sa.Column(f.name, _column_type(f), nullable=True, index=f.indexed) for f in KINDS[kind]]
    columns += [
        # the latest event the record has seen, and the message that reported it
        sa.Column("event_time", sa.String(40), nullable=True),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        # stamps (see hub.store.canonical): the row's latest, then one per field, NULL while unset
        sa.Column("stamp", sa.String(STAMP_LENGTH), nullable=True),
    ]
    columns += [sa.Column(stamp_column(f.name), sa.String(STAMP_LENGTH), nullable=True) for f in KINDS[kind]]
    return sa.Table(TABLE_NAMES[kind], metadata, *columns, sa.UniqueConstraint("practice", "source_id"))


RECORD_TABLES: dict[str, sa.Table] = {kind: _record_table(kind) for kind in KINDS}

# Indexes on the record tables by practice and date, or by practice and a reference: the reports
# recompute one (practice, month) from a range scan, and find the rows a batch's records hang on
# (a remittance's charge, an appointment's referral) by look-up. Created by migration 0004.
_t = RECORD_TABLES
BASE_INDEXES = (
    sa.Index("ix_appointments_practice_start", _t["appointment"].c.practice, _t["appointment"].c.start),
    sa.Index("ix_appointments_practice_referral", _t["appointment"].c.practice,
             _t["appointment"].c.referral_source_id),
    sa.Index("ix_encounters_practice_start", _t["encounter"].c.practice, _t["encounter"].c.start),
    sa.Index("ix_charges_practice_service_date", _t["charge"].c.practice, _t["charge"].c.service_date),
    sa.Index("ix_remittances_practice_charge", _t["remittance"].c.practice, _t["remittance"].c.charge_source_id),
    sa.Index("ix_slots_practice_start", _t["slot"].c.practice, _t["slot"].c.start),
    sa.Index("ix_referrals_practice_received", _t["referral"].c.practice, _t["referral"].c.received_on),
)

# A patient's visits by the patient (a patient record or merge marks its visits' months): a look-up,
# not a scan of the practice's appointments. Created by migration 0006.
PATIENT_VISIT_INDEXES = (
    sa.Index("ix_appointments_practice_patient", _t["appointment"].c.practice, _t["appointment"].c.patient_source_id),
    sa.Index("ix_encounters_practice_patient", _t["encounter"].c.practice, _t["encounter"].c.patient_source_id),
)

# A charge's service line comes from its encounter or appointment (hub.reports.attribution): a batch of
# encounters or appointments marks the months of the charges that hang on them, found by these look-ups.
# Created by migration 0017.
ATTRIBUTION_INDEXES = (
    sa.Index("ix_charges_practice_encounter", _t["charge"].c.practice, _t["charge"].c.encounter_source_id),
    sa.Index("ix_encounters_practice_appointment", _t["encounter"].c.practice,
             _t["encounter"].c.appointment_source_id),
)

# The patient index asks whether any patient changed since its last run (hub.identity.background):
# one probe of this index. Created by migration 0013.
PATIENT_UPDATED_INDEX = sa.Index("ix_patients_updated_at", _t["patient"].c.updated_at)

practices = sa.Table(
    "practices", metadata,
    sa.Column("slug", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("acquired_on", sa.Date()),
    sa.Column("go_live_on", sa.Date()),
    sa.Column("status", sa.String(16), nullable=False, server_default="onboarding"),
    sa.Column("timezone", sa.String(64)),
    sa.Column("mapping", sa.Text(), doc="the practice's mapping file (YAML), kept so every worker sees it"),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

messages = sa.Table(
    "messages", metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("practice", sa.String(64), nullable=False),
    sa.Column("connector", sa.String(64), nullable=False),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    # practice:connector's dedup key, unique while the row holds the content; NULL on rows that
    # record a repeat arrival
    sa.Column("dedup_key", sa.String(140), unique=True),
    sa.Column("sender", sa.String(255)),
    sa.Column("control_id", sa.String(255)),
    sa.Column("message_type", sa.String(64)),
    sa.Column("origin", sa.String(255), doc="file name, or transport and peer"),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error", sa.Text()),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("record_count", sa.Integer()),
    sa.Column("duplicate_of", sa.BigInteger()),
    sa.Column("queued_at", UTCDateTime()),
    sa.Column("processed_at", UTCDateTime()),
    sa.Column("raw", sa.LargeBinary()),
    # a note on a stored message, e.g. "control-id-reused" (see hub.store.messages)
    sa.Column("flag", sa.String(64)),
    sa.Column("tally", sa.Text(), doc="JSON: what the message held besides its records (parts not mapped, "
                                      "invalid elements left out); null when nothing"),
    sa.Index("ix_messages_status_practice", "status", "practice"),
    sa.Index("ix_messages_practice_received", "practice", "received_at"),
    sa.Index("ix_messages_practice_control", "practice", "control_id"),  # control id reuse look-up
)

lineage = sa.Table(
    "lineage", metadata,
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("practice", sa.String(64), nullable=False),
    sa.Column("source_id", sa.String(255), nullable=False),
    sa.Column("message_id", sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint("kind", "practice", "source_id", "message_id", name="pk_lineage"),
    sa.Index("ix_lineage_message", "message_id"),
)

api_keys = sa.Table(
    "api_keys", metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("practice", sa.String(64)),
    sa.Column("label", sa.String(255)),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime()),
    sa.Column("revoked_at", UTCDateTime()),
)

audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("key_id", sa.String(32)),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(255)),
    sa.Column("practice", sa.String(64)),
    sa.Column("address", sa.String(64)),
    sa.Column("outcome", sa.String(64)),
    sa.Index("ix_audit_log_at", "at"),
)

# high-water marks of pulling connectors (``hub.store.pull_state``): how far each practice's source has been read
pull_state = sa.Table(
    "pull_state", metadata,
    sa.Column("practice", sa.String(64), nullable=False),
    sa.Column("source", sa.String(255), nullable=False, doc="the server pulled from (its base URL)"),
    sa.Column("resource_type", sa.String(64), nullable=False),
    sa.Column("high_water", sa.String(40), nullable=False, doc="the newest lastUpdated stored, as sent"),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("practice", "source", "resource_type", name="pk_pull_state"),
)

# onboarding backfill checkpoint: one row per file taken in, so a rerun continues where it stopped
onboarding_files = sa.Table(
    "onboarding_files", metadata,
    sa.Column("practice", sa.String(64), nullable=False),
    sa.Column("file_key", sa.String(64), nullable=False, doc="sha256 of the absolute path, size and mtime"),
    sa.Column("path", sa.Text(), nullable=False),
    sa.Column("size", sa.BigInteger(), nullable=False),
    sa.Column("chunks_done", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("messages", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("done", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("practice", "file_key", name="pk_onboarding_files"),
)

# The master patient index (``hub.identity``). A link puts one patient record (practice, source id)
# under an enterprise id, opaque and random; ``method`` says what made it. Pairs are the scored
# comparisons and the decisions on them: the review queue, an operator's accept (a manual link) or
# reject (never link), a deterministic rule. Runs record what each ``hub identity run`` did, and the
# high-water mark of patients compared. Created by migration 0013.
identity_links = sa.Table(
    "identity_links", metadata,
    sa.Column("practice", sa.String(64), nullable=False),
    sa.Column("source_id", sa.String(255), nullable=False),
    sa.Column("enterprise_id", sa.String(32), nullable=False, index=True),
    sa.Column("method", sa.String(64), nullable=False,
              doc="alone | rule:<name> | merge | match | manual | split: the strongest edge into the cluster"),
    sa.Column("weight", sa.Float(), doc="the match weight of that edge, when it was a match"),
    sa.Column("split", sa.Boolean(), nullable=False, server_default=sa.false(),
              doc="an operator split the record off: only manual links join it to others"),
    sa.Column("linked_at", UTCDateTime(), nullable=False),
    sa.Column("compared_at", UTCDateTime(), doc="the patient row's updated_at when a run last compared it: a "
                                                "patient whose row differs since is compared again"),
    sa.PrimaryKeyConstraint("practice", "source_id", name="pk_identity_links"),
)

identity_pairs = sa.Table(
    "identity_pairs", metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("practice_a", sa.String(64), nullable=False),
    sa.Column("source_a", sa.String(255), nullable=False),
    sa.Column("practice_b", sa.String(64), nullable=False),
    sa.Column("source_b", sa.String(255), nullable=False),
    sa.Column("rule", sa.String(64), doc="the deterministic rule that paired them, or match"),
    sa.Column("weight", sa.Float()),
    sa.Column("probability", sa.Float()),
    sa.Column("agreement", sa.JSON(), doc="{field: level} of the comparison, no values"),
    sa.Column("status", sa.String(16), nullable=False, doc="link | review | accepted | rejected"),
    sa.Column("decided_by", sa.String(64)),
    sa.Column("decided_at", UTCDateTime()),
    sa.Column("scored_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("practice_a", "source_a", "practice_b", "source_b"),
    sa.Index("ix_identity_pairs_b", "practice_b", "source_b"),
    sa.Index("ix_identity_pairs_status", "status"),
)

identity_runs = sa.Table(
    "identity_runs", metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("finished_at", UTCDateTime()),
    sa.Column("full", sa.Boolean(), nullable=False),
    sa.Column("watermark", UTCDateTime(), doc="patients updated up to here were compared"),
    sa.Column("summary", sa.JSON(), doc="counts: compared, pairs, linked, review, moved; no patient data"),
    sa.Column("model", sa.JSON(), doc="the match model (splink settings with trained m and u) the run used"),
)

# The alerts of the feed health rules (``hub.operations.alerts``): one row per time a rule fired for a
# practice, open until the rule holds again. ``open_key`` (practice:rule) is set while the alert is open
# and cleared when it closes: unique, so two evaluators never open the same alert twice. Created by
# migration 0015.
alerts = sa.Table(
    "alerts", metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("practice", sa.String(64), nullable=False),
    sa.Column("rule", sa.String(32), nullable=False, doc="silence | error_share | queue_age | daily_volume"),
    sa.Column("open_key", sa.String(100), unique=True, doc="practice:rule while open, null once closed"),
    sa.Column("summary", sa.Text(), nullable=False, doc="what fired, in words: counts and times, no patient data"),
    sa.Column("detail", sa.JSON(), doc="the figures the rule compared"),
    sa.Column("opened_at", UTCDateTime(), nullable=False),
    sa.Column("last_sent_at", UTCDateTime(), nullable=False),
    sa.Column("sent_count", sa.Integer(), nullable=False, server_default="1"),
    sa.Column("closed_at", UTCDateTime()),
    sa.Index("ix_alerts_practice_opened", "practice", "opened_at"),
)
