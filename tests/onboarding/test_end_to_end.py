"""A practice onboarded from raw CSV files to live; the scorecard's figures checked against counts made here."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from hub.cli import cli
from hub.model.tables import messages, onboarding_files
from hub.onboarding.backfill import Backfill
from hub.reports.tables import report_dirty

from .feeds import Expected, build

ROOT = Path(__file__).resolve().parents[2]
SLUG = "lakeview"


def mapping_v1(tmp_path: Path) -> Path:
    text = (ROOT / "mappings" / "example-practice.yaml").read_text().replace("practice: example-practice",
                                                                             f"practice: {SLUG}")
    path = tmp_path / "lakeview-v1.yaml"
    path.write_text(text)
    return path


def mapping_v2(tmp_path: Path) -> Path:
    text = mapping_v1(tmp_path).read_text().replace("version: 1 ", "version: 2 ")
    text = text.replace("    COSCON: {service_line: cosmetic_aesthetics, visit_category: consult}\n",
                        "    COSCON: {service_line: cosmetic_aesthetics, visit_category: consult}\n"
                        "    LASER: {service_line: cosmetic_aesthetics, visit_category: procedure}\n")
    text = text.replace('    PACHE: "1131860912"\n', '    PACHE: "1131860912"\n    DRNEW: "1518190933"\n')
    text = text.replace('  - {match: "BCBS*", payer: bcbs}\n',
                        '  - {match: "BCBS*", payer: bcbs}\n  - {match: "ACME*", payer: other_commercial}\n')
    path = tmp_path / "lakeview-v2.yaml"
    path.write_text(text)
    return path


def run(*args: str, code: int | None = 0) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert code is None or result.exit_code == code, result.output
    return result.output


def json_of(output: str) -> dict:
    return json.loads(output[output.index("{"):output.rindex("}") + 1])


def check_figures(card: dict, exp: Expected) -> None:
    assert card["messages"]["read"] == exp.messages
    assert card["messages"]["refused"] == exp.refused
    assert card["messages"]["duplicates"] == exp.duplicates
    assert card["records"] == exp.records
    mrn = card["completeness"]["appointment"]["patient_source_id"]
    n = exp.records["appointment"]
    assert (mrn["filled"], mrn["total"]) == (n - exp.blank_mrn, n)
    assert mrn["share"] == round((n - exp.blank_mrn) / n, 4)
    assert card["date_range"] == {"from": min(exp.dates), "to": max(exp.dates)}
    visits = card["code_maps"]["visit_type"]
    assert visits["codes_seen"] == len(exp.visit_types)
    assert card["code_maps"]["cancel_reason"]["codes_seen"] == len(exp.cancel_reasons)
    assert card["code_maps"]["payer"]["codes_seen"] == len(exp.payers)


def test_practice_onboarded_from_raw_files_to_live(runtime, tmp_path: Path) -> None:
    feed = tmp_path / "history"
    exp = build(feed)
    v1, v2 = mapping_v1(tmp_path), mapping_v2(tmp_path)
    run("mapping", "validate", str(v1), str(v2))
    run("practice", "add", SLUG, "--name", "Lakeview Dermatology", "--mapping", str(v1))

    # 1. dry run of the sample: nothing stored, figures as counted here, below the thresholds
    card = json_of(run("onboard", "check", "--practice", SLUG, "--format", "json", str(feed), code=1))
    check_figures(card, exp)
    visits = card["code_maps"]["visit_type"]
    assert visits["mapped"] == len(exp.visit_types) - exp.visit_types.count("LASER")
    assert visits["unmapped"][0]["code"] == "LASER" and visits["unmapped"][0]["count"] == exp.visit_types.count(
        "LASER")
    payers = {u["code"]: u["count"] for u in card["code_maps"]["payer"]["unmapped"]}
    assert payers == {"ACME HEALTH": exp.payers.count("ACME HEALTH")}
    unrostered = {p["id"]: p["count"] for p in card["unrostered"]["providers"]}
    assert unrostered == {"DRNEW": exp.providers.count("DRNEW")}
    assert not card["passed"]
    failed = {c["name"] for c in card["checks"] if not c["ok"]}
    assert {"mapped visit_type", "mapped provider", "mapped payer"} <= failed
    with runtime.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(messages)).scalar_one() == 0
    text = run("onboard", "check", "--practice", SLUG, str(feed), code=1)
    assert "FAILED: not ready to go live" in text and "unmapped 'LASER'" in text

    # 2. backfill, interrupted after the first batch, then rerun: everything once
    class Interrupted(Exception):
        pass

    calls = []

    def stop_after_first_batch(n: int) -> None:
        calls.append(n)
        if len(calls) == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        Backfill(runtime, SLUG, batch=2, progress=stop_after_first_batch).run([str(feed)])
    with runtime.engine.connect() as conn:
        done_first = conn.execute(sa.select(sa.func.count()).select_from(onboarding_files)).scalar_one()
    assert done_first == 2
    out = run("onboard", "backfill", "--practice", SLUG, "--batch", "2", str(feed), code=None)
    assert "already done 2" in out
    assert "report rollups refreshed (" in out  # processed inline: the first report pays no catch-up
    with runtime.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(report_dirty)).scalar_one() == 0
    with runtime.engine.connect() as conn:
        stored = Counter(dict(conn.execute(sa.select(messages.c.status, sa.func.count())
                                           .group_by(messages.c.status)).all()))
        errors = [r.error for r in conn.execute(sa.select(messages.c.error).where(messages.c.status == "error"))]
    assert stored["processed"] == exp.messages - exp.refused - exp.duplicates
    assert stored["error"] == exp.refused and stored["duplicate"] == exp.duplicates
    assert sorted(errors) == sorted(f"{feed / name}, line {line}: column 'Appt Date/Time' (appointment.start) is "
                                    "not a date-time in the export's date_formats" for name, line in exp.bad_lines)
    rerun = run("onboard", "backfill", "--practice", SLUG, str(feed))
    assert f"already done {len(list(feed.iterdir()))}" in rerun

    # 3. the stored data: unmapped codes with counts; go-live refused
    unmapped = json.loads(run("mapping", "unmapped", "--practice", SLUG, "--format", "json"))
    by_code = {(u["code_map"], u["code"]): u for u in unmapped}
    assert by_code[("visit_type", "LASER")]["count"] == exp.visit_types.count("LASER")
    assert by_code[("provider", "DRNEW")]["count"] == sum(1 for p, v in zip(exp.providers, exp.visit_types,
                                                                            strict=False) if p == "DRNEW")
    assert by_code[("payer", "ACME HEALTH")]["count"] == exp.payers.count("ACME HEALTH")
    assert all(u["example_message_id"] for u in unmapped)
    refused = CliRunner().invoke(cli, ["practice", "go-live", SLUG])
    assert refused.exit_code == 1 and "stays onboarding" in refused.output and "mapped visit_type" in refused.output
    assert "no time zone" not in refused.output  # the mapping's zone became the practice's at registration
    as_json = CliRunner().invoke(cli, ["practice", "go-live", SLUG, "--format", "json"])
    assert as_json.exit_code == 1 and "stays onboarding" in as_json.stderr
    card = json.loads(as_json.stdout)  # the scorecard, printed with the refusal
    assert card["passed"] is False and card["live"] is False and "mapped visit_type" in card["refused"]
    failed = [c["name"] for c in card["checks"] if not c["ok"]]
    assert failed and all(name in refused.output for name in failed)

    # 4. fix the mapping, reprocess, go live
    run("practice", "mapping", SLUG, str(v2))
    # the rows with a bad date fail again: counted, and the exit status says so
    replayed = run("messages", "reprocess", "--practice", SLUG, code=1 if exp.refused else 0)
    assert f"processed {exp.messages - exp.refused - exp.duplicates}, error {exp.refused}" in replayed
    assert exp.refused == 0 or f"{exp.refused} message(s) still in error" in replayed
    assert "every code of lakeview is mapped" in run("mapping", "unmapped", "--practice", SLUG)
    live = run("practice", "go-live", SLUG)
    assert "PASSED" in live and f"practice {SLUG} is live" in live
    practices = [json.loads(line) for line in run("practice", "list", "--format", "json").splitlines()]
    assert practices[0]["status"] == "live"
    run("practice", "go-live", SLUG, code=1)  # already live


def test_stored_scorecard_matches_the_dry_run(runtime, tmp_path: Path) -> None:
    feed = tmp_path / "history"
    exp = build(feed, appt_files=2, per_file=30)
    run("practice", "add", SLUG, "--name", "Lakeview", "--mapping", str(mapping_v1(tmp_path)))
    run("onboard", "backfill", "--practice", SLUG, "--quiet", str(feed), code=1)
    from hub.onboarding.sources import check_stored

    card = check_stored(runtime, SLUG)
    check_figures(card, exp)
    dry = json_of(run("onboard", "check", "--practice", SLUG, "--format", "json", "--no-findings", str(feed),
                      code=1))
    for key in ("messages", "records", "completeness", "code_maps", "date_range", "unrostered"):
        if key == "messages":
            assert {k: v for k, v in card[key].items() if k != "refusal_reasons"} == {
                k: v for k, v in dry[key].items() if k != "refusal_reasons"}
        elif key == "code_maps":
            assert {m: {k: v for k, v in f.items() if k != "unmapped"} for m, f in card[key].items()} == {
                m: {k: v for k, v in f.items() if k != "unmapped"} for m, f in dry[key].items()}
        else:
            assert card[key] == dry[key], key


def test_backfill_stopped_between_saving_and_checkpointing_sends_nothing_twice(runtime, tmp_path: Path,
                                                                                monkeypatch) -> None:
    import hub.onboarding.backfill as backfill_module

    feed = tmp_path / "history"
    exp = build(feed, appt_files=3, per_file=10)
    run("practice", "add", SLUG, "--name", "Lakeview", "--mapping", str(mapping_v1(tmp_path)))
    real = backfill_module.receive_many
    calls = []

    def save_then_die(*args, **kwargs):  # type: ignore[no-untyped-def]
        result = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the messages are saved, the checkpoint is not
        return result

    monkeypatch.setattr(backfill_module, "receive_many", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        Backfill(runtime, SLUG, batch=2).run([str(feed)])
    monkeypatch.setattr(backfill_module, "receive_many", real)
    run("onboard", "backfill", "--practice", SLUG, "--batch", "2", str(feed), code=None)
    with runtime.engine.connect() as conn:
        stored = Counter(dict(conn.execute(sa.select(messages.c.status, sa.func.count())
                                           .group_by(messages.c.status)).all()))
        files = conn.execute(sa.select(sa.func.count()).select_from(onboarding_files)
                             .where(onboarding_files.c.done)).scalar_one()
    assert stored["processed"] + stored["error"] == exp.messages - exp.duplicates
    assert stored["duplicate"] == exp.duplicates  # the resent export only, not the interrupted batch
    assert files == len(list(feed.iterdir()))


def test_mapping_update_shows_changes_insists_on_a_new_version_and_reprocesses(runtime, tmp_path: Path) -> None:
    feed = tmp_path / "history"
    build(feed, appt_files=1, per_file=20)
    v1, v2 = mapping_v1(tmp_path), mapping_v2(tmp_path)
    run("practice", "add", SLUG, "--name", "Lakeview", "--mapping", str(v1))
    run("onboard", "backfill", "--practice", SLUG, "--quiet", str(feed), code=None)
    same_version = tmp_path / "same.yaml"
    same_version.write_text(v2.read_text().replace("version: 2 ", "version: 1 "))
    refused = run("mapping", "update", SLUG, str(same_version), code=1)
    assert "version did not rise (stored: 1)" in refused
    out = run("mapping", "update", SLUG, str(v2), "--reprocess")
    assert "updated (version 1 → version 2)" in out
    assert "visit_type: added 'LASER'" in out and "provider: added 'DRNEW'" in out and "payer_patterns: changed" in out
    assert "reprocessing" in out
    assert "every code of lakeview is mapped" in run("mapping", "unmapped", "--practice", SLUG)


def test_hub_ingest_takes_a_csv_export_row_by_row(runtime, tmp_path: Path) -> None:
    feed = tmp_path / "history"
    exp = build(feed, appt_files=2, per_file=20)
    run("practice", "add", SLUG, "--name", "Lakeview", "--mapping", str(mapping_v1(tmp_path)))
    out = run("ingest", "--practice", SLUG, str(feed / "appointments_1.csv"), code=1)  # found by its header
    assert "accepted 18  duplicate 0  error 2" in out
    listed = run("messages", "list", "--practice", SLUG, "--status", "error")
    for name, line in exp.bad_lines:
        assert f"{feed / name}, line {line}: column 'Appt Date/Time'" in listed
