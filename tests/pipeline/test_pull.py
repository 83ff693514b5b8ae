"""The core schedules a poll connector: a tiny poller plugin (not FHIR), defined here, reads a fake
source of patient rows in pages; the core stores each page through intake and only then keeps its
cursor, so a failure mid-way leaves the mark at the last stored page. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import click
import pytest
from click.testing import CliRunner

from hub import hookimpl
from hub.connector import Page, Poller, PullService
from hub.errors import ConfigError, HubError, PluginError, StoreError
from hub.pipeline import pull as core_pull
from hub.plugins import load_plugins
from hub.runtime import Runtime
from hub.store.canonical import count_records
from hub.store.engine import writer
from hub.store.messages import list_messages
from hub.store.practices import add_practice
from hub.store.pull_state import get_watermark, list_watermarks
from tests.support.json_records import JsonRecords
from tests.test_layout import offenders

PRACTICE = "north"
SOURCE = "tiny://north-pm"
MAPPING = "version: 1\npractice: north\nconnectors:\n  tiny-poll: {page_size: 2, source: 'tiny://north-pm'}\n"


def row(n: int) -> tuple[str, dict[str, Any]]:
    """The source's n-th change: a sequence number (the cursor) and a synthetic patient."""
    return f"{n:04d}", {"kind": "patient", "source_id": f"P{n}", "family_name": f"Synthetic{n}", "sex": "unknown"}


class FakeSource:
    """The practice's system: patient rows in change order. ``probe`` runs before each page is read
    (the test looks at the store there); ``fail_on`` makes the read of that page number fail."""

    def __init__(self, count: int) -> None:
        self.rows = [row(n) for n in range(1, count + 1)]
        self.probe: Callable[[str | None], None] = lambda cursor: None
        self.fail_on: int | None = None
        self.failure: Exception = HubError("the tiny source is not answering")
        self.reads: list[str | None] = []


SOURCE_DATA = FakeSource(0)  # replaced by each test (the plugin reads it, as it would a server)


class TinyPoller(Poller):
    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.source = str(settings["source"])
        self.page_size = int(settings["page_size"])

    def resource_types(self) -> Sequence[str]:
        return ("patients",)

    def poll(self, resource_type: str, cursor: str | None) -> Iterator[Page]:
        pending = [(seq, rec) for seq, rec in SOURCE_DATA.rows if cursor is None or seq > cursor]
        for number, start in enumerate(range(0, len(pending), self.page_size), 1):
            SOURCE_DATA.probe(cursor)
            SOURCE_DATA.reads.append(cursor)
            if number == SOURCE_DATA.fail_on:
                raise SOURCE_DATA.failure
            page = pending[start:start + self.page_size]
            cursor = page[-1][0]
            yield Page(payloads=(json.dumps([rec for _, rec in page]).encode(),), cursor=cursor, resources=len(page))


class TinyConnector(JsonRecords):
    """A feed of JSON lists of common-model records, pulled from the fake source."""

    name = "tiny-poll"
    media_types = ()

    @classmethod
    def detect(cls, data: bytes) -> bool:
        return False

    def poller(self, settings: Mapping[str, Any]) -> Poller:
        return TinyPoller(settings)


def tiny_command(pull: PullService) -> click.Command:
    @click.command("tiny-pull")
    @click.option("--practice", required=True)
    def command(practice: str) -> None:
        for r in pull(practice, "tiny-poll"):
            click.echo(f"{r.resource_type}: {r.pages} page(s), {r.resources} resource(s), high-water {r.high_water}")

    return command


plugin = types.ModuleType("tiny_poll_plugin")
plugin.hub_register_connectors = hookimpl(lambda registry: registry.add(TinyConnector))  # type: ignore[attr-defined]
plugin.hub_cli_commands = hookimpl(lambda cli, pull: cli.add_command(tiny_command(pull)))  # type: ignore[attr-defined]


@pytest.fixture
def hub(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    runtime = Runtime.create(database_url=database_url, plugins=load_plugins(extra=[plugin]), dispatcher="inline")
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, PRACTICE, "North Synthetic Clinic", mapping=MAPPING)
    return runtime


@pytest.fixture
def source(monkeypatch: pytest.MonkeyPatch) -> FakeSource:
    fake = FakeSource(5)  # pages of two: P1-P2, P3-P4, P5
    monkeypatch.setattr(f"{__name__}.SOURCE_DATA", fake)
    return fake


def patients(runtime: Runtime) -> int:
    with runtime.engine.connect() as conn:
        return count_records(conn, PRACTICE)["patient"]


def test_pages_are_stored_and_the_cursor_moves_after_each(hub: Runtime, source: FakeSource) -> None:
    seen: list[tuple[str | None, int]] = []
    source.probe = lambda cursor: seen.append((get_watermark(hub.engine, PRACTICE, SOURCE, "patients"),
                                               patients(hub)))
    (report,) = core_pull.pull(hub, PRACTICE, "tiny-poll")
    # before each page is read, the one before is stored and its cursor kept: never ahead, never behind
    assert seen == [(None, 0), ("0002", 2), ("0004", 4)]
    assert (report.resource_type, report.pages, report.resources) == ("patients", 3, 5)
    assert (report.accepted, report.duplicate, report.error, report.high_water) == (3, 0, 0, "0005")
    assert patients(hub) == 5
    with hub.engine.connect() as conn:
        origins = sorted(m["origin"] for m in list_messages(conn, practice=PRACTICE))
    assert origins == [f"tiny-poll pull patients page {n}" for n in (1, 2, 3)]

    # a rerun starts at the mark: nothing new, nothing read; then one new row, one page
    (again,) = core_pull.pull(hub, PRACTICE, "tiny-poll")
    assert (again.pages, again.resources, again.high_water) == (0, 0, "0005")
    source.rows.append(row(6))
    (later,) = core_pull.pull(hub, PRACTICE, "tiny-poll")
    assert source.reads[-1] == "0005"
    assert (later.pages, later.resources, later.accepted, later.high_water) == (1, 1, 1, "0006")
    assert patients(hub) == 6


def test_settings_are_the_practice_s_with_the_command_s_options_over_them(hub: Runtime, source: FakeSource) -> None:
    (report,) = core_pull.pull(hub, PRACTICE, "tiny-poll", options={"page_size": 5})
    assert report.pages == 1 and report.resources == 5
    (other,) = core_pull.pull(hub, PRACTICE, "tiny-poll", options={"source": "tiny://elsewhere"})
    assert other.pages == 3  # another source keeps marks of its own: read from the start
    assert [(m["source"], m["high_water"]) for m in list_watermarks(hub.engine, PRACTICE)] == [
        ("tiny://elsewhere", "0005"), (SOURCE, "0005")]
    (since,) = core_pull.pull(hub, PRACTICE, "tiny-poll", since="0003")
    assert source.reads[-1] == "0003" and since.resources == 2


@pytest.mark.parametrize("failure, raised", [(HubError("the tiny source is not answering"), HubError),
                                             (KeyError("cursor"), PluginError)])
def test_a_failure_mid_way_leaves_the_cursor_at_the_last_stored_page(
        hub: Runtime, source: FakeSource, failure: Exception, raised: type[Exception]) -> None:
    source.fail_on, source.failure = 3, failure
    got: list[Any] = []
    with pytest.raises(raised) as caught:
        core_pull.pull(hub, PRACTICE, "tiny-poll", on_report=got.append)
    # the type the failure stopped is still reported, as far as it got, and marked as stopped
    assert [(r.pages, r.resources, r.accepted, r.high_water, r.finished) for r in got] == [(2, 4, 2, "0004", False)]
    if raised is PluginError:  # a connector bug is named as such, by type, without data
        assert str(caught.value) == "the tiny-poll connector failed while pulling patients (KeyError)"
    assert get_watermark(hub.engine, PRACTICE, SOURCE, "patients") == "0004"
    assert patients(hub) == 4
    source.fail_on = None
    (report,) = core_pull.pull(hub, PRACTICE, "tiny-poll")
    assert source.reads[-1] == "0004"  # the rerun resumes after the last stored page
    assert (report.pages, report.resources, report.high_water) == (1, 1, "0005")
    assert patients(hub) == 5


def test_each_type_is_reported_when_done_so_a_later_failure_does_not_lose_it(
        hub: Runtime, source: FakeSource) -> None:
    got: list[Any] = []
    reports = core_pull.pull(hub, PRACTICE, "tiny-poll", on_report=got.append)
    assert got == reports and (got[0].pages, got[0].resources) == (3, 5)
    # the second type's first read fails (the first type took reads 1 to 3): the first is still reported
    got.clear()
    source.probe = lambda cursor: setattr(source, "fail_on", 1) if len(source.reads) == 6 else None
    with pytest.raises(HubError, match="not answering"):
        core_pull.pull(hub, PRACTICE, "tiny-poll", resource_types=["patients", "more-patients"],
                       since="0000", on_report=got.append)
    assert [(r.resource_type, r.pages, r.resources, r.duplicate) for r in got] == [("patients", 3, 5, 3)]


def test_a_page_the_store_cannot_take_does_not_move_the_cursor(
        hub: Runtime, source: FakeSource, monkeypatch: pytest.MonkeyPatch) -> None:
    real = core_pull.receive_many
    calls = []

    def failing_second_save(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise StoreError("the database refused the page")
        return real(*args, **kwargs)

    monkeypatch.setattr(core_pull, "receive_many", failing_second_save)
    with pytest.raises(StoreError):
        core_pull.pull(hub, PRACTICE, "tiny-poll")
    assert get_watermark(hub.engine, PRACTICE, SOURCE, "patients") == "0002"
    assert patients(hub) == 2
    monkeypatch.setattr(core_pull, "receive_many", real)
    (report,) = core_pull.pull(hub, PRACTICE, "tiny-poll")
    assert (report.pages, report.resources, report.high_water) == (2, 3, "0005")
    assert patients(hub) == 5


def test_a_cursor_the_store_cannot_keep_is_refused_before_it_is_kept(hub: Runtime, source: FakeSource) -> None:
    source.rows = [("9" * 41, row(1)[1])]
    with pytest.raises(PluginError, match="cursor that is not a str of 1 to 40 characters"):
        core_pull.pull(hub, PRACTICE, "tiny-poll")
    assert list_watermarks(hub.engine, PRACTICE) == []


def test_a_connector_that_does_not_poll_and_an_unkeepable_type_are_refused(hub: Runtime, source: FakeSource) -> None:
    with pytest.raises(ConfigError, match="the csv connector does not pull"):
        core_pull.pull(hub, PRACTICE, "csv")
    with pytest.raises(ConfigError, match="a resource type must be a str of 1 to 64 characters"):
        core_pull.pull(hub, PRACTICE, "tiny-poll", resource_types=["patients", "p" * 65])
    assert source.reads == [] and list_watermarks(hub.engine, PRACTICE) == []


def test_a_plugin_command_gets_the_core_s_pull_through_the_hook(
        hub: Runtime, source: FakeSource, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.cli import _build_cli

    installed = load_plugins
    # as if installed
    monkeypatch.setattr("hub.commands.base.load_plugins", lambda **kw: installed(extra=[plugin], **kw))
    result = CliRunner().invoke(_build_cli(), ["tiny-pull", "--practice", PRACTICE])
    assert result.exit_code == 0, result.output
    assert result.output == "patients: 3 page(s), 5 resource(s), high-water 0005\n"
    assert get_watermark(hub.engine, PRACTICE, SOURCE, "patients") == "0005"


def test_no_connector_imports_the_store_the_pipeline_or_the_runtime() -> None:
    assert offenders("connectors", {"hub.store", "hub.pipeline", "hub.runtime", "hub.pull"}) == []
