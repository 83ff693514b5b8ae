"""Intake: a payload arrives (file, HTTP, MLLP) → stored durably → dispatched → answered.

The order is the hub's promise: the payload is committed to the message store
before anything is acknowledged, so an acknowledged message is never lost. A
payload that cannot even be split into messages is stored too, as ``error`` with
the reason, and answered with a rejection; nothing is silently dropped.

``hub ingest`` with the inline dispatcher answers nobody: its messages are saved and processed in
one transaction per batch (``_saved_and_processed``), the files staying the durable source until
it commits.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from hub.connector import Connector, Envelope, Outcome, frozen_init
from hub.errors import HubError, ParseError
from hub.gc_pause import gc_paused
from hub.hookspecs import MessageFailure
from hub.pipeline.dispatch import InlineDispatcher
from hub.pipeline.normalize import choose_connector
from hub.pipeline.process import (
    UNKNOWN,
    BatchResult,
    announce_failures,
    announce_processed,
    process_in_transaction,
    write_turn,
)
from hub.store import messages as message_store
from hub.store.engine import writer
from hub.store.practices import get_practice

if TYPE_CHECKING:
    from hub.runtime import Runtime

log = logging.getLogger("hub.pipeline")


# what the message store keeps of a message's header (its columns' sizes): a longer value is kept cut,
# and the message refused with the reason, so that one bad message never blocks the feed behind it
SENDER_MAX, CONTROL_ID_MAX, MESSAGE_TYPE_MAX = 255, 255, 64


def _clip(value: str | None, limit: int) -> str | None:
    return value[:limit] if value is not None and len(value) > limit else value


def _oversized(envelope: Envelope) -> HubError | None:
    """The refusal of a message whose sender, control id or type is too long to keep (no values shown)."""
    sender, control_id, message_type = envelope.sender, envelope.control_id, envelope.message_type
    if (sender is None or len(sender) <= SENDER_MAX) and (control_id is None or len(control_id) <= CONTROL_ID_MAX) \
            and (message_type is None or len(message_type) <= MESSAGE_TYPE_MAX):
        return None  # the usual message, checked without the loop below
    for name, value, limit in (("sender", envelope.sender, SENDER_MAX),
                               ("control id", envelope.control_id, CONTROL_ID_MAX),
                               ("message type", envelope.message_type, MESSAGE_TYPE_MAX)):
        if value is not None and len(value) > limit:
            return ParseError(f"the message's {name} is {len(value)} characters long, more than the {limit} "
                              "the hub keeps: refused (stored with it cut)", location=name)
    return None


@dataclass(frozen=True)
class Receipt:
    envelope: Envelope
    outcome: Outcome
    connector: Connector | None = field(default=None, repr=False)

    def __init__(self, envelope: Envelope, outcome: Outcome, connector: Connector | None = None) -> None:
        # one per message: the fields set in one step (``frozen_init``), as for ``Envelope`` and ``Outcome``
        frozen_init(self, {"envelope": envelope, "outcome": outcome, "connector": connector})

    @functools.cached_property
    def ack(self) -> bytes | None:
        """The connector's answer to this message, built when asked for (servers answer a whole
        payload with ``connector.answer`` instead)."""
        return self.connector.acknowledge(self.envelope, self.outcome) if self.connector else None

    @property
    def status(self) -> str:
        if self.outcome.duplicate:
            return "duplicate"
        return "accepted" if self.outcome.accepted else "error"

    def describe(self) -> dict[str, Any]:
        """The message's line in a file's report (``hub watch``, ``hub ingest --report``): no patient data."""
        entry: dict[str, Any] = {"id": self.outcome.message_id, "status": self.status,
                                 "control_id": self.envelope.control_id, "message_type": self.envelope.message_type}
        if self.outcome.error:
            entry["error"] = self.outcome.error
        if self.outcome.error_location:
            entry["location"] = self.outcome.error_location
        return entry


@dataclass(frozen=True)
class Arrival:
    """One payload to take in."""

    data: bytes
    origin: str | None = None


def receive(runtime: Runtime, practice: str, data: bytes, *, connector: str | None = None,
            media_type: str | None = None, origin: str | None = None) -> list[Receipt]:
    return receive_many(runtime, practice, [Arrival(data, origin)], connector=connector,
                        media_type=media_type)[0]


def _save(runtime: Runtime, conn: sa.Connection, practice: str,
          plan: list[tuple[Connector | None, list[Envelope], HubError | None, str | None]],
          new: list[message_store.NewMessage], refused: dict[int, str],
          now: dt.datetime | None = None) -> list[message_store.SavedMessage]:
    """Save the messages in the caller's transaction; ``refused`` gets the reason of each refused one."""
    if practice not in runtime.known_practices:  # practices are never removed: one look-up suffices
        get_practice(conn, practice)  # unknown practice: NotFound, nothing stored
        runtime.known_practices.add(practice)
    saved = message_store.save_messages(conn, new, now=now)
    i = 0
    for _, envelopes, error, _ in plan:
        for env in envelopes:
            # the payload, else this one message (split refused it, or a header too long to keep whole)
            why = error if error is not None else env.error or _oversized(env)
            if why is not None and not saved[i].duplicate:
                refused[saved[i].id] = str(why)
            i += 1
    message_store.mark_error(conn, refused)
    return saved


def _saved_alone(runtime: Runtime, practice: str,
                 plan: list[tuple[Connector | None, list[Envelope], HubError | None, str | None]],
                 new: list[message_store.NewMessage],
                 connection: sa.Connection | None) -> list[message_store.SavedMessage] | None:
    """One new message with nothing else to write (not refused, its practice known), as one MLLP
    connection sends, stored and committed without a SQLAlchemy transaction around it: on PostgreSQL by
    one statement in one round trip (``message_store.save_alone``); on SQLite on the group committer's
    connection (``connection``: its write turn is taken) by the insert of ``save_messages`` between a
    BEGIN IMMEDIATE and a COMMIT of the driver's. None when this is no such
    case, or the message is a repeat (nothing written): the transaction of ``receive_many`` then does
    the work."""
    dialect = runtime.engine.dialect.name
    if len(new) != 1 or practice not in runtime.known_practices or dialect not in ("postgresql", "sqlite") \
            or (dialect == "sqlite" and connection is None):
        return None
    ((error, env),) = [(error, env) for _, envelopes, error, _ in plan for env in envelopes]
    if error is not None or env.error is not None or _oversized(env) is not None:
        return None
    if connection is not None:
        one = message_store.save_alone(connection, new[0])
    else:
        with writer(runtime.engine).connect() as conn:
            one = message_store.save_alone(conn, new[0])
    return None if one is None else [one]


Plan = list[tuple[Connector | None, list[Envelope], HubError | None, str | None]]
Stored = tuple[list[message_store.SavedMessage], dict[int, str], BatchResult | None]


def _saved_then_dispatched(runtime: Runtime, practice: str, plan: Plan, new: list[message_store.NewMessage],
                           in_transaction: Callable[[sa.Connection, list[list[str]]], None] | None,
                           connection: sa.Connection | None) -> Stored:
    """The messages saved and committed, then handed to the dispatcher: (saved, refused, the outcome
    when the dispatcher knows it now)."""
    # one message alone, nothing else to write: committed by its own statement (no transaction below)
    saved = None if in_transaction is not None else _saved_alone(runtime, practice, plan, new, connection)
    refused: dict[int, str] = {}  # message id → why it is refused
    if saved is None:
        with contextlib.ExitStack() as stack:
            if connection is None:
                # a pool's turn (``hub ingest --jobs``: its workers write to the same SQLite store)
                stack.enter_context(write_turn(getattr(runtime.dispatcher, "write_lock", None)))
                conn = stack.enter_context(writer(runtime.engine).begin())
            else:
                conn = connection
                stack.enter_context(connection.begin())
            saved = _save(runtime, conn, practice, plan, new, refused)
            if in_transaction is not None:
                fates, i = [], 0
                for _, envelopes, _, _ in plan:
                    fates.append(["duplicate" if saved[j].duplicate else "refused" if saved[j].id in refused
                                  else "stored" for j in range(i, i + len(envelopes))])
                    i += len(envelopes)
                in_transaction(conn, fates)

    if refused:  # committed: the plugins hear of them (alerting); new[i] is the message saved[i]
        announce_failures(runtime.plugins, [MessageFailure(s.id, practice, n.connector, refused[s.id], "intake")
                                            for s, n in zip(saved, new, strict=True)
                                            if s.id in refused and not s.duplicate])
    to_process = [s.id for s in saved if not s.duplicate and s.id not in refused]
    outcome_now = runtime.dispatcher.submit(to_process) if to_process else None
    return saved, refused, outcome_now


def _saved_and_processed(runtime: Runtime, practice: str, plan: Plan, new: list[message_store.NewMessage],
                         batch: int) -> Stored:
    """``hub ingest`` with the inline dispatcher: the payloads' messages in groups of its ``batch``,
    each group saved and processed in ONE transaction (one commit, one disk sync, and no second write of
    each message's row after a commit), instead of a commit of the save and another of the processing.

    Why this keeps the hub's promise: nobody waits for an answer (no sender, no queue), and the files
    are the durable source until the commit; the commit then holds every message of the group with its
    final status, a message that failed processing in ``error`` with its reason, as processing
    leaves it. Killed before the commit, nothing of the group is stored and a second run takes it whole;
    after it, a second run finds every message a duplicate. When the combined transaction fails (a
    store failure, a plugin's), it is rolled back and the group goes the usual way, saved and
    committed first, then processed, so a failure of processing leaves the messages stored in error.
    HTTP, MLLP and the rq and pool dispatchers always save and commit before processing."""
    saved: list[message_store.SavedMessage] = []
    refused: dict[int, str] = {}
    outcome = BatchResult()
    for part in _in_groups(plan, batch):  # a commit's disk sync shared by as many as before
        part_new = new[len(saved):len(saved) + sum(len(envelopes) for _, envelopes, _, _ in part)]
        with gc_paused():  # a group's records and rows, freed by their counts: no collector passes over them
            done = _together(runtime, practice, part, part_new)
        if done is None:
            done = _saved_then_dispatched(runtime, practice, part, part_new, None, None)
        saved += done[0]
        refused.update(done[1])
        if done[2] is not None:
            outcome.merge(done[2])
    return saved, refused, outcome


def _in_groups(plan: Plan, size: int) -> list[Plan]:
    """The plan's messages in order, in groups of ``size`` (a payload of many messages over several groups)."""
    groups: list[Plan] = [[]]
    room = size
    for chosen, envelopes, error, origin in plan:
        start = 0
        while start < len(envelopes):
            if room == 0:
                groups.append([])
                room = size
            taken = envelopes[start:start + room]
            groups[-1].append((chosen, taken, error, origin))
            room -= len(taken)
            start += len(taken)
    return [group for group in groups if group]


class _NotTogether(Exception):
    """Processing inside the combined transaction failed: it rolls back, the usual path takes over."""


def _together(runtime: Runtime, practice: str, plan: Plan, new: list[message_store.NewMessage]) -> Stored | None:
    """One group of ``_saved_and_processed`` in one transaction; None, with nothing stored, when it failed."""
    now = message_store.utcnow()
    refused: dict[int, str] = {}
    try:
        with writer(runtime.engine).begin() as conn:
            saved = _save(runtime, conn, practice, plan, new, refused, now=now)  # unknown practice: raised
            # the rows as processing would read them back: origin cut as stored, arrival as recorded
            rows = [message_store.Loaded(s.id, n.practice, n.connector, n.raw, n.sender, n.control_id,
                                         n.message_type, (n.origin or "")[:255] or None, 0, now)
                    for s, n in zip(saved, new, strict=True) if not s.duplicate and s.id not in refused]
            try:
                result, practices = process_in_transaction(runtime, conn, rows)
            except Exception as exc:
                raise _NotTogether(type(exc).__name__) from exc
    except (_NotTogether, sa.exc.SQLAlchemyError) as exc:
        log.warning("%d message(s) not saved and processed in one transaction (%s): saved first, then processed",
                    len(new), exc if isinstance(exc, _NotTogether) else type(exc).__name__)
        return None
    if refused:  # committed: the plugins hear of them (alerting)
        announce_failures(runtime.plugins, [MessageFailure(s.id, practice, n.connector, refused[s.id], "intake")
                                            for s, n in zip(saved, new, strict=True)
                                            if s.id in refused and not s.duplicate])
    announce_processed(runtime, rows, result, practices)
    return saved, refused, result


def receive_many(runtime: Runtime, practice: str, arrivals: Sequence[Arrival], *, connector: str | None = None,
                 media_type: str | None = None,
                 in_transaction: Callable[[sa.Connection, list[list[str]]], None] | None = None,
                 connection: sa.Connection | None = None, together: bool = False) -> list[list[Receipt]]:
    """Take in several payloads with one commit (group commit); a receipt list per payload.

    ``in_transaction(conn, fates)``, when given, runs inside the same transaction once the
    payloads are saved (``fates``: per payload, ``stored``, ``duplicate`` or ``refused`` per
    message), so that, for example, the audit rows commit atomically with the messages.
    ``connection``: an open connection (not in a transaction) to commit on, instead of one
    from the pool (the group committer keeps its own).
    ``together`` (``hub ingest`` alone): with the inline dispatcher, save and process the messages
    in one transaction per batch (``_saved_and_processed``); anything else ignores it."""
    plan: list[tuple[Connector | None, list[Envelope], HubError | None, str | None]] = []
    for arrival in arrivals:
        try:
            chosen: Connector | None = choose_connector(runtime.plugins, arrival.data, name=connector,
                                                        media_type=media_type, origin=arrival.origin)
        except ParseError as exc:  # no connector reads it: kept as an error, like any unreadable payload
            plan.append((None, [Envelope(raw=arrival.data)], exc, arrival.origin))
            continue
        assert chosen is not None
        try:
            envelopes, error = chosen.split(arrival.data, origin=arrival.origin), None
        except HubError as exc:
            envelopes, error = [Envelope(raw=arrival.data)], exc
        except Exception as exc:  # a connector bug: the payload is kept and refused, not lost
            envelopes = [Envelope(raw=arrival.data)]
            error = ParseError(f"{chosen.name} connector could not split the payload ({type(exc).__name__})")
        if error is not None and error.source is None:
            error.source = arrival.origin
        plan.append((chosen, envelopes, error, arrival.origin))

    # the connector's dedup key (content for a payload no connector reads); a payload split refused is
    # keyed by the connector too, from an envelope of its raw bytes only (content, for the built-ins)
    # by position, one per message (NewMessage's fields in order): a NamedTuple's keyword arguments cost
    # twice its positional ones
    new = [message_store.NewMessage(practice, chosen.name if chosen else UNKNOWN, env.raw,
                                    _clip(env.sender, SENDER_MAX), _clip(env.control_id, CONTROL_ID_MAX),
                                    _clip(env.message_type, MESSAGE_TYPE_MAX), origin,
                                    chosen.store_key(env) if chosen else None,
                                    bool(chosen and chosen.unique_control_ids))
           for chosen, envelopes, _, origin in plan for env in envelopes]
    inline = runtime.dispatcher
    if together and in_transaction is None and connection is None and isinstance(inline, InlineDispatcher):
        saved, refused, outcome_now = _saved_and_processed(runtime, practice, plan, new, inline.batch)
    else:
        saved, refused, outcome_now = _saved_then_dispatched(runtime, practice, plan, new, in_transaction,
                                                             connection)

    receipts: list[list[Receipt]] = []
    i = 0
    for chosen, envelopes, error, _ in plan:
        batch = []
        for env in envelopes:
            s = saved[i]
            i += 1
            if s.duplicate and s.original_error is not None:  # resent, and the first copy failed: say so again
                # as it was said: a payload unreadable now was refused unread then too (400 + AR, not 200 + AE)
                unread = error if error is not None else env.error or _oversized(env)
                outcome = Outcome(accepted=False, duplicate=True, error=s.original_error, message_id=s.id,
                                  rejected=unread is not None, error_location=unread.location if unread else None)
            elif s.duplicate:
                outcome = Outcome(accepted=True, duplicate=True, message_id=s.id)
            elif s.id in refused:
                why = error if error is not None else env.error or _oversized(env)
                outcome = Outcome(accepted=False, rejected=True, error=why.message if why else None,
                                  error_location=why.location if why else None, message_id=s.id)
            elif outcome_now is not None and s.id in outcome_now.errors:
                outcome = Outcome(accepted=False, error=outcome_now.errors[s.id], message_id=s.id)
            else:  # the usual message, by position: accepted, no duplicate, error or its place, not rejected, its id
                outcome = Outcome(True, False, None, None, False, s.id)
            batch.append(Receipt(env, outcome, chosen))
        receipts.append(batch)
    return receipts
