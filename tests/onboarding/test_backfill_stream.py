"""A large export is streamed in chunks of rows and resumes at the next chunk; refuse mode stores nothing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from hub.cli import cli
from hub.model.tables import messages, onboarding_files
from hub.onboarding.backfill import Backfill

from .feeds import APPT_HEADER, write
from .test_end_to_end import SLUG, mapping_v1


def rows(n: int, bad: tuple[int, ...] = ()) -> list[list[str]]:
    out = []
    for i in range(n):
        when = "soon" if i in bad else f"2025-02-{1 + i % 28:02d} 09:{i % 60:02d}"
        note_type = "NP" if i % 5 else "N\nP"  # a quoted line break now and then
        out.append([f"A{i:05d}", f"M{i:04d}", "DRALV", "LP", when, "15", note_type, "Completed", "", "", ""])
    return out


def statuses(runtime) -> Counter:  # type: ignore[no-untyped-def]
    with runtime.engine.connect() as conn:
        return Counter(dict(conn.execute(sa.select(messages.c.status, sa.func.count())
                                         .group_by(messages.c.status)).all()))


def test_large_export_streamed_in_chunks_resumes_where_it_stopped(runtime, tmp_path: Path, monkeypatch) -> None:
    import hub.onboarding.backfill as backfill_module

    big = tmp_path / "appointments_all.csv"
    write(big, APPT_HEADER, rows(100, bad=(42,)))
    CliRunner().invoke(cli, ["practice", "add", SLUG, "--name", "L", "--mapping", str(mapping_v1(tmp_path))])
    real = backfill_module.receive_many
    calls = []

    def die_on_fourth_chunk(*args, **kwargs):  # type: ignore[no-untyped-def]
        result = real(*args, **kwargs)
        calls.append(args[2][0].origin)
        if len(calls) == 4:
            raise KeyboardInterrupt  # chunk 4 saved, its checkpoint not written
        return result

    monkeypatch.setattr(backfill_module, "receive_many", die_on_fourth_chunk)
    with pytest.raises(KeyboardInterrupt):
        Backfill(runtime, SLUG, chunk_rows=15, stream_above=0).run([str(big)])
    assert calls[:2] == [f"{big}#line=2", f"{big}#line=20"]  # rows 0, 5 and 10 span two lines
    with runtime.engine.connect() as conn:
        assert conn.execute(sa.select(onboarding_files.c.chunks_done)).scalar_one() == 3
    monkeypatch.setattr(backfill_module, "receive_many", real)
    result = Backfill(runtime, SLUG, chunk_rows=15, stream_above=0).run([str(big)])
    assert result.counts["duplicate"] == 0
    assert statuses(runtime) == Counter({"processed": 99, "error": 1})
    with runtime.engine.connect() as conn:
        error = conn.execute(sa.select(messages.c.error).where(messages.c.status == "error")).scalar_one()
        row = conn.execute(sa.select(onboarding_files)).one()
    # row 42 is data row 43; rows 0, 5, ..., 40 each span two lines: 9 extra lines before it
    assert error.startswith(f"{big}, line 53: column 'Appt Date/Time'")
    assert row.done and row.chunks_done == 7
    again = Backfill(runtime, SLUG, chunk_rows=15, stream_above=0).run([str(big)])
    assert again.skipped == 1 and statuses(runtime) == Counter({"processed": 99, "error": 1})


def test_refuse_mode_stores_nothing_of_a_file_with_a_bad_row(runtime, tmp_path: Path) -> None:
    mapping = tmp_path / "refuse.yaml"
    mapping.write_text(mapping_v1(tmp_path).read_text().replace("on_bad_row: skip", "on_bad_row: refuse"))
    feed = tmp_path / "feed"
    feed.mkdir()
    write(feed / "bad.csv", APPT_HEADER, rows(10, bad=(3,)))
    write(feed / "good.csv", APPT_HEADER, rows(5))
    CliRunner().invoke(cli, ["practice", "add", SLUG, "--name", "L", "--mapping", str(mapping)])
    result = CliRunner().invoke(cli, ["onboard", "backfill", "--practice", SLUG, str(feed)])
    assert result.exit_code == 1
    assert "refused 1" in result.output and f"{feed / 'bad.csv'}: refused whole" in result.output
    assert statuses(runtime) == Counter({"processed": 5})
    with runtime.engine.connect() as conn:
        assert [r.path for r in conn.execute(sa.select(onboarding_files.c.path).where(onboarding_files.c.done))] == [
            str(feed / "good.csv")]


def test_check_streams_a_large_export_and_counts_the_same(tmp_path: Path) -> None:
    from hub.mapping import load_mapping
    from hub.onboarding.sources import check_files
    from hub.plugins import load_plugins

    big = tmp_path / "appointments_all.csv"
    write(big, APPT_HEADER, rows(40, bad=(7,)))
    mapping = load_mapping(mapping_v1(tmp_path).read_text())
    plugins = load_plugins()
    whole = check_files(plugins, SLUG, mapping, [str(big)])
    streamed = check_files(plugins, SLUG, mapping, [str(big)], stream_above=0)
    assert whole == streamed
    assert whole["messages"]["read"] == 40 and whole["messages"]["refused"] == 1
    assert whole["messages"]["refusal_reasons"][0]["example"] == f"{big} line 11"  # rows 0 and 5 span two lines
