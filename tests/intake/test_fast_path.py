"""The push call's WSGI fast path answers, stores and audits as the Flask view does.

The first push for a practice goes through the view (it checks that the practice exists);
later ones take the fast path. Both are compared here on PostgreSQL, whose message store
and audit log are written by the array statements of hub.store.messages / hub.security.audit.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from .conftest import FEEDLINE, feedline, start_server, stop


def test_fast_path_matches_the_view(tmp_path: Path, pg_url: str) -> None:
    server = start_server(tmp_path, {"HUB_DATABASE_URL": pg_url, "HUB_REDIS_URL": "", "HUB_RATE_LIMIT": "0",
                                     "HUB_KEY_CACHE_SECONDS": "5"})
    try:
        feed = server.key("feed", "alpha")
        answers = [server.call("POST", "/api/v1/practices/alpha/messages", feed,
                               feedline((f"FP{i}", "Family", "Given", "F")), FEEDLINE) for i in range(4)]
        view = answers[0]  # the view answered the first; the fast path the others
        for status, body, headers in answers:
            assert status == 200 and b"ACK|AA|" in body
            assert headers["Content-Type"] == view[2]["Content-Type"]
            assert headers["X-Hub-Message-Ids"] in body.decode()
            # an ACK quotes the message: no cache may keep it, no browser guess its type (view and fast path)
            assert headers["Cache-Control"] == "no-store" and headers["X-Content-Type-Options"] == "nosniff"
        ids = [int(a[2]["X-Hub-Message-Ids"]) for a in answers]
        assert ids == sorted(ids) and len(set(ids)) == 4  # ids follow the order of arrival
        repeat = server.call("POST", "/api/v1/practices/alpha/messages", feed,
                             feedline(("FP1", "Family", "Given", "F")), FEEDLINE)
        assert repeat[0] == 200 and repeat[2]["X-Hub-Message-Ids"] == str(ids[1])  # a duplicate, same answer
        # refusals still come from the view, after the fast path has warmed up
        assert server.call("POST", "/api/v1/practices/alpha/messages", feed, b"x", "text/x-unknown")[0] == 415
        assert server.call("POST", "/api/v1/practices/beta/messages", feed,
                           feedline(("FP9", "F", "G", "F")), FEEDLINE)[0] == 403
        empty = server.call("POST", "/api/v1/practices/alpha/messages", feed, b"", FEEDLINE)
        assert empty[0] == 400 and empty[2]["Cache-Control"] == "no-store"
        assert server.call("POST", "/api/v1/practices/alpha/messages", "hub_nokey_nosecret",
                           feedline(("FP8", "F", "G", "F")), FEEDLINE)[0] == 401
        engine = sa.create_engine(pg_url)
        with engine.connect() as conn:
            audit = conn.execute(sa.text("SELECT key_id, action, target, address, outcome, at FROM audit_log "
                                         "WHERE action = 'intake' ORDER BY id")).all()
            counts = dict(conn.execute(sa.text("SELECT status, count(*) FROM messages GROUP BY status")).all())
        engine.dispose()
        outcomes = [row.outcome for row in audit]
        assert outcomes[:5] == ["stored=1"] * 4 + ["duplicate=1"]
        assert {"refused 415", "refused 403", "refused 400", "refused 401"} <= set(outcomes[5:])
        key_id = feed.split("_")[1]
        assert all(row.key_id == key_id and row.target == "alpha" and row.address == "127.0.0.1"
                   and row.at is not None for row in audit[:5])
        assert counts.get("duplicate") == 1 and sum(counts.values()) == 5
        assert "FP" not in server.log() and "Family" not in server.log()  # no patient data in the logs
    finally:
        stop(server)
