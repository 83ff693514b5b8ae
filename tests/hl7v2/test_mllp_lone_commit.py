"""One MLLP connection: each message stored and committed at once, by one statement on PostgreSQL
(on SQLite by its insert between a BEGIN IMMEDIATE and a COMMIT of the driver's), before its answer;
what that leaves out (a repeat, a refusal, a failure) is still done whole.

The listener runs in this process (its asyncio loop on the main thread) on a loopback port; the
client is a thread speaking a real socket, and a second connection to the store sees only what
was committed.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from hub.mllp.framing import frame, read_answer
from hub.store import messages as message_store

from .test_hl7v2_mllp import message, msa
from .test_mllp_group_commit import serve_while, store  # noqa: F401 (store: the fixture, practice northderm)

Script = Callable[[socket.socket], None]


def converse(runtime: Any, script: Script) -> None:
    """Run the listener (``--practice northderm``) while ``script`` speaks to it on one connection."""
    from hub_hl7v2 import HL7v2Connector

    from hub.mllp.server import MllpServer
    from tests.support.services import free_port

    port = free_port()
    server = MllpServer(runtime, HL7v2Connector(), practice="northderm", host="127.0.0.1", port=port)
    failures: list[BaseException] = []

    def client() -> None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                script(sock)
        except BaseException as exc:  # raised again in the test's thread
            failures.append(exc)

    asyncio.run(serve_while(server, port, [threading.Thread(target=client)]))
    if failures:
        raise failures[0]


def ask(sock: socket.socket, data: bytes) -> str:
    sock.sendall(frame(data))
    return msa(read_answer(sock))


def rows(observer: sa.Engine, control_id: str) -> list[Any]:
    with observer.connect() as conn:
        return list(conn.execute(sa.text("SELECT id, status, flag, duplicate_of FROM messages "
                                         "WHERE control_id = :c ORDER BY id"), {"c": control_id}))


def test_one_connection_stores_new_reused_and_repeated_messages_each_committed_before_its_answer(
        store: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    alone: list[bool] = []  # per call of the lone save (either store's): did it store the message

    def spy(real: Callable[[sa.Connection, message_store.NewMessage], Any]) -> Any:
        def spying(conn: sa.Connection, item: message_store.NewMessage) -> Any:
            saved = real(conn, item)
            alone.append(saved is not None)
            return saved

        return spying

    monkeypatch.setattr(message_store, "save_alone", spy(message_store.save_alone))
    observer = sa.create_engine(store.database_url)  # as a second process sees the store: committed rows only
    first, reused = message("LC-1"), message("LC-1", extra="NTE|1||other content\r")
    seen: dict[str, Any] = {}

    def script(sock: socket.socket) -> None:
        seen["first"] = (ask(sock, first), rows(observer, "LC-1"))
        seen["reused"] = (ask(sock, reused), rows(observer, "LC-1"))
        seen["repeat"] = (ask(sock, first), rows(observer, "LC-1"))
        seen["other"] = (ask(sock, message("LC-2")), rows(observer, "LC-2"))

    try:
        converse(store, script)
    finally:
        observer.dispose()

    answer, found = seen["first"]
    assert answer == "AA" and len(found) == 1 and found[0].flag is None and found[0].duplicate_of is None
    original = found[0].id
    answer, found = seen["reused"]  # the same control id with other content: a new message, flagged
    assert answer == "AA" and len(found) == 2
    assert found[1].flag == message_store.CONTROL_ID_REUSED and found[1].duplicate_of is None
    answer, found = seen["repeat"]  # the same message again: a duplicate row of the first, nothing else
    assert answer == "AA" and len(found) == 3
    assert found[2].status == "duplicate" and found[2].duplicate_of == original
    answer, found = seen["other"]
    assert answer == "AA" and len(found) == 1 and found[0].flag is None
    # the first message is saved by the transaction (it looks its practice up, once); the reused one and
    # the other by the lone save; the repeat found its key stored there, wrote nothing, and was saved by
    # the transaction
    assert alone == [True, False, True]


def test_sqlite_a_failed_lone_save_is_answered_ae_stores_nothing_and_the_next_commits(tmp_path: Any) -> None:
    from hub.runtime import Runtime
    from hub.store.engine import writer
    from hub.store.practices import add_practice

    runtime = Runtime.create(database_url=f"sqlite:///{tmp_path / 'store.db'}", dispatcher="inline")
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "northderm", "North Derm")
        # the store refuses to insert a message with control id FAIL-*
        conn.execute(sa.text("CREATE TRIGGER refuse_insert BEFORE INSERT ON messages "
                             "WHEN NEW.control_id LIKE 'FAIL-%' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"))
    observer = sa.create_engine(runtime.database_url)
    seen: dict[str, Any] = {}

    def script(sock: socket.socket) -> None:
        seen["first"] = ask(sock, message("OK-1"))  # the practice looked up: by the transaction
        seen["failed"] = ask(sock, message("FAIL-1"))  # the lone save fails: rolled back, answered AE
        seen["next"] = ask(sock, message("OK-2"))  # the same connection goes on: no transaction left open
        seen["next rows"] = rows(observer, "OK-2")

    try:
        converse(runtime, script)
        assert seen["first"] == "AA" and seen["failed"] == "AE" and seen["next"] == "AA"
        assert len(seen["next rows"]) == 1  # committed before its answer
        assert rows(observer, "FAIL-1") == []
        with observer.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM messages")).scalar() == 2
    finally:
        observer.dispose()


def test_a_failed_save_is_answered_ae_stores_nothing_and_leaves_later_transactions_whole(pg_url: str) -> None:
    from hub.runtime import Runtime
    from hub.store.engine import writer
    from hub.store.practices import add_practice

    runtime = Runtime.create(database_url=pg_url, dispatcher="inline")
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "northderm", "North Derm")
        # the store refuses to insert a message with control id FAIL-*, and to mark a LONG-* one in error
        conn.execute(sa.text(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'refused by the test'; END $$"))
        conn.execute(sa.text("CREATE TRIGGER refuse_insert BEFORE INSERT ON messages FOR EACH ROW "
                             "WHEN (NEW.control_id LIKE 'FAIL-%') EXECUTE FUNCTION refuse()"))
        conn.execute(sa.text("CREATE TRIGGER refuse_error BEFORE UPDATE ON messages FOR EACH ROW "
                             "WHEN (NEW.control_id LIKE 'LONG-%' AND NEW.status = 'error') EXECUTE FUNCTION refuse()"))
    observer = sa.create_engine(runtime.database_url)
    long_id = "LONG-" + "9" * 300  # longer than the 255 characters kept: stored cut, in error, refused (AR)
    seen: dict[str, Any] = {}

    def script(sock: socket.socket) -> None:
        seen["failed"] = ask(sock, message("FAIL-1"))
        seen["next"] = ask(sock, message("OK-1"))
        # one frame, two messages: a new one and one refused for its control id; marking that one in error
        # fails, so neither is stored (the insert of both does not commit on its own)
        seen["pair"] = ask(sock, message("OK-2") + message(long_id))
        seen["after"] = ask(sock, message("OK-3"))

    try:
        converse(runtime, script)
        assert seen == {"failed": "AE", "next": "AA", "pair": "AE", "after": "AA"}
        assert rows(observer, "FAIL-1") == []
        assert len(rows(observer, "OK-1")) == 1 and len(rows(observer, "OK-3")) == 1
        assert rows(observer, "OK-2") == []
        with observer.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM messages WHERE control_id LIKE 'LONG-%'")).scalar() == 0
            assert conn.execute(sa.text("SELECT count(*) FROM messages")).scalar() == 2
    finally:
        observer.dispose()
