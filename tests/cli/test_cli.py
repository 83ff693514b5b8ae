"""The `hub` command as a user runs it: a real subprocess, exit codes, one-line errors."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.support.feeds import pipe_file


def hub(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "hub", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd or ROOT, timeout=120)


def assert_one_clear_line(result, *words):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "no error message"
    for word in words:
        assert word in result.stderr, result.stderr


def test_normalize_prints_json_lines_and_needs_no_database(tmp_path, example_connector):
    feed = pipe_file(tmp_path, 2)
    result = hub("normalize", "--practice", "derm", feed, env={"HUB_DATABASE_URL": "postgresql://nowhere:1/x"})
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["kind"] for r in records] == ["patient", "appointment"] * 2
    assert all(r["practice"] == "derm" for r in records)


def test_ingest_counts_and_duplicates(tmp_path, example_connector):
    (tmp_path / "feed").mkdir()
    feed = pipe_file(tmp_path / "feed", 2)
    assert hub("practice", "add", "derm", "--name", "Derm East").returncode == 0
    first = hub("ingest", "--practice", "derm", feed)
    again = hub("ingest", "--practice", "derm", tmp_path / "feed")
    assert first.stdout.split() == ["accepted", "1", "duplicate", "0", "error", "0"], first.stderr
    assert again.stdout.split() == ["accepted", "0", "duplicate", "1", "error", "0"], again.stderr
    listed = json.loads(hub("messages", "list", "--practice", "derm", "--format", "json").stdout)
    assert sorted(m["status"] for m in listed) == ["duplicate", "processed"]
    assert "raw" not in listed[0]


@pytest.mark.parametrize(("args", "words"), [
    (["ingest", "--practice", "ghost", "{feed}"], ["ghost", "is registered"]),
    (["ingest", "--practice", "derm", "{tmp}/missing.hl7"], ["missing.hl7", "no such file"]),
    (["ingest", "--practice", "derm", "{tmp}/garbage.bin"], ["1 message(s) in error"]),
    (["normalize", "--practice", "derm", "{tmp}/garbage.bin"], ["garbage.bin", "no installed connector"]),
    (["normalize", "--practice", "derm", "--connector", "nosuch", "{feed}"], ["nosuch", "no connector named"]),
    (["normalize", "--practice", "derm", "{tmp}/bad.pipe"], ["bad.pipe", "line 2"]),
    (["practice", "add", "Bad Slug", "--name", "x"], ["slug"]),
    (["key", "create", "--role", "feed"], ["--practice"]),
    (["key", "create", "--role", "feed", "--practice", "ghost"], ["ghost"]),
    (["key", "revoke", "nosuchkey"], ["nosuchkey"]),
    (["practice", "add", "derm", "--name", "x", "--mapping", "{tmp}/bad.yaml"], ["bad.yaml", "line"]),
    (["worker"], ["HUB_REDIS_URL"]),
])
def test_bad_input_gets_one_clear_line(tmp_path, example_connector, args, words):
    feed = pipe_file(tmp_path, 1)
    (tmp_path / "garbage.bin").write_bytes(b"\x00\x01 not a feed")
    (tmp_path / "bad.pipe").write_text("#HUBPIPE v1\nAPPT|x\n")
    (tmp_path / "bad.yaml").write_text("code_maps:\n  visit_type: [unclosed\n")
    hub("practice", "add", "derm", "--name", "Derm")
    filled = [a.format(feed=feed, tmp=tmp_path) for a in args]
    assert_one_clear_line(hub(*filled), *words)


def test_reprocess_exits_non_zero_when_a_replayed_message_fails_again(tmp_path, example_connector):
    (tmp_path / "garbage.bin").write_bytes(b"\x00\x01 not a feed")
    hub("practice", "add", "derm", "--name", "Derm")
    hub("ingest", "--practice", "derm", pipe_file(tmp_path, 1))
    assert hub("ingest", "--practice", "derm", tmp_path / "garbage.bin").returncode == 1
    again = hub("messages", "reprocess", "--practice", "derm")  # one good message, one that fails again
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert again.stdout.strip() == "reprocessing 2 message(s): processed 1, error 1"
    assert "1 message(s) still in error: see hub messages list --practice derm --status error" in again.stderr
    good = hub("messages", "reprocess", "--status", "processed")
    assert good.returncode == 0 and good.stdout.strip() == "reprocessing 1 message(s): processed 1, error 0"


def test_a_resolved_message_is_left_by_reprocess_and_audited(tmp_path, example_connector):
    (tmp_path / "garbage.bin").write_bytes(b"\x00\x01 not a feed")
    hub("practice", "add", "derm", "--name", "Derm")
    hub("ingest", "--practice", "derm", pipe_file(tmp_path, 1))
    hub("ingest", "--practice", "derm", tmp_path / "garbage.bin")
    listed = json.loads(hub("messages", "list", "--practice", "derm", "--format", "json").stdout)
    failed = [m["id"] for m in listed if m["status"] == "error"]
    good = [m["id"] for m in listed if m["status"] == "processed"]
    assert len(failed) == 1 and len(good) == 1
    assert hub("messages", "resolve", failed[0]).returncode != 0  # --reason is required
    done = hub("messages", "resolve", failed[0], "--reason", "resent by the sender as a new file")
    assert done.returncode == 0 and done.stdout.strip() == "resolved 1 message(s)", done.stderr
    resolved = json.loads(hub("messages", "list", "--status", "resolved", "--format", "json").stdout)
    assert [m["id"] for m in resolved] == failed and resolved[0]["error"]  # the error it had stays readable
    again = hub("messages", "reprocess", "--practice", "derm")
    assert again.returncode == 0 and again.stdout.strip() == "reprocessing 1 message(s): processed 1, error 0"
    named = hub("messages", "reprocess", failed[0])  # named, it is still left as it is
    assert named.returncode == 0 and named.stdout.strip() == "reprocessing 0 message(s): processed 0, error 0"
    audit = json.loads(hub("audit", "list", "--action", "messages.resolve", "--format", "json").stdout)
    assert [(a["target"], a["practice"], a["outcome"]) for a in audit] == [
        (str(failed[0]), "derm", "resent by the sender as a new file")]
    assert audit[0]["address"].startswith("cli:")
    twice = hub("messages", "resolve", failed[0], good[0], "--reason", "again")
    assert twice.returncode == 1 and twice.stdout.strip() == "resolved 0 message(s)"
    assert f"not in error, left as they are: {min(failed[0], good[0])}, {max(failed[0], good[0])}" in twice.stderr


def test_bad_database_url_is_a_clear_error(tmp_path):
    result = hub("practice", "list", env={"HUB_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"})
    assert_one_clear_line(result, "database")


def test_keys_are_shown_once_and_stored_hashed(tmp_path):
    hub("practice", "add", "derm", "--name", "Derm")
    result = hub("key", "create", "--role", "feed", "--practice", "derm")
    secret = result.stdout.strip()
    assert result.returncode == 0 and secret.startswith("hub_") and len(secret.split("_", 2)[2]) >= 43
    db = os.environ["HUB_DATABASE_URL"].removeprefix("sqlite:///")
    with open(db, "rb") as stored:
        assert secret.split("_", 2)[2].encode() not in stored.read()
    listed = hub("key", "list").stdout
    assert secret.split("_", 2)[2] not in listed and "feed" in listed


def test_plugins_list_shows_connectors_with_versions(example_connector):
    result = hub("plugins", "list")
    assert result.returncode == 0
    assert "example-pipe" in result.stdout and "1.0.0" in result.stdout


def test_db_upgrade(tmp_path):
    result = hub("db", "upgrade")
    assert result.returncode == 0 and "revision" in result.stdout


def test_an_unexpected_error_says_where_but_not_what(monkeypatch, tmp_path):
    """A bug's message or traceback may quote patient data: the command names the error type and place only."""
    from click.testing import CliRunner

    from hub.cli import _build_cli

    def broken(*args: object, **kwargs: object) -> object:
        raise KeyError("SMITH^JOHN 1970-01-01")

    monkeypatch.setenv("HUB_DATABASE_URL", f"sqlite:///{tmp_path / 'hub.db'}")
    monkeypatch.setattr("hub.store.practices.list_practices", broken)
    done = CliRunner().invoke(_build_cli(), ["practice", "list"])
    assert done.exit_code == 2
    assert "unexpected KeyError at" in done.stderr and "SMITH" not in done.output and "Traceback" not in done.output
