"""The match model's training on records it cannot learn from: the run goes on with the priors.

Placeholder or load-test patients (one name and one birth date on every record) make splink refuse
to estimate the match rate; the index must still run, and say why the priors stay."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from hub.identity import matcher
from hub.identity.mpi import run_identity
from hub.settings import Settings
from hub.store.engine import get_engine, writer
from hub.store.practices import add_practice
from tests.identity.test_index import _links, _write, patient


def test_placeholder_patients_keep_the_priors_instead_of_failing_the_run(
        database_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(matcher, "TRAIN_MIN", 30)  # training starts at 30 records, not 2,000
    engine = get_engine(database_url)
    with writer(engine).begin() as conn:
        add_practice(conn, "north", "North")
    # forty records of one placeholder person: nothing but a name and a birth date, all alike
    _write(engine, [patient("north", f"P{i}", "Test", "Patient", dt.date(2000, 1, 1), sex="unknown")
                    for i in range(40)])
    with caplog.at_level(logging.WARNING, logger="hub.identity"):
        summary = run_identity(engine, settings=Settings.from_env({}))
    assert summary.patients == 40
    # every two of them are compared (C(40, 2) pairs); with no address, phone or e-mail in common
    # none links by weight, so each keeps an enterprise id of its own and the pairs await review
    assert summary.pairs == 40 * 39 // 2
    assert summary.review == 40 * 39 // 2
    assert len({eid for eid, _method in _links(engine).values()}) == 40
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("cannot learn from these 40 patients" in m for m in warnings)
    assert not any("Test" in m or "Patient" in m for m in warnings)  # counts, never the records' values


def test_strangers_with_nothing_in_common_train_without_failing_the_run(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(matcher, "TRAIN_MIN", 30)
    engine = get_engine(database_url)
    with writer(engine).begin() as conn:
        add_practice(conn, "north", "North")
    # forty people: no two share a name, a birth date, a phone or an e-mail, so no pair is a match
    # to learn the match rate from (splink's estimate would be 0) and no training block has a pair
    given = ["Ada", "Bea", "Cy", "Dov", "Eli", "Fay", "Gus", "Hal", "Ivo", "Jo"]
    family = ["Quill", "Rook", "Sable", "Thorn"]
    born = [dt.date(1950, 1, 1) + dt.timedelta(days=400 * i) for i in range(40)]
    _write(engine, [patient("north", f"P{i}", given[i % 10], family[i // 10], born[i], phone=f"41455501{i:02d}")
                    for i in range(40)])
    summary = run_identity(engine, settings=Settings.from_env({}))
    assert (summary.patients, summary.pairs) == (40, 0)
    assert len({eid for eid, _method in _links(engine).values()}) == 40
