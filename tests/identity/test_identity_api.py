"""``/api/v1/identity/...`` on a real ``hub serve`` over loopback, on SQLite and PostgreSQL: a run, the
review queue, accept and reject, a manual link, a split, explain and export, each decision surviving a
full rerun; admins only, every call audited, and no demographics in any answer.

The expectations are facts about the synthetic people written here: who is the same person, which
fields agree between their records."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa

from hub.reports import rollups
from hub.security.keys import create_key
from hub.store import canonical
from hub.store.engine import get_engine, writer
from hub.store.practices import add_practice
from tests.intake.conftest import Server, start_server, stop

API = "/api/v1/identity"


def _patient(practice: str, source_id: str, given: str, family: str, born: dt.date, sex: str, street: str,
             phone: str, postal: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "patient", "practice": practice, "source_id": source_id, "given_name": given,
            "family_name": family, "birth_date": born, "sex": sex, "address_line": street, "phone": phone,
            "postal_code": postal, **extra}


PEOPLE = [
    # one man at both practices: a nickname at one, his street written short and his phone formatted otherwise
    _patient("north", "N1", "Robert", "Kowalski", dt.date(1972, 3, 9), "male", "114 Elm Street", "(414) 555-0143",
             "53202"),
    _patient("south", "S1", "Bob", "Kowalski", dt.date(1972, 3, 9), "male", "114 Elm St", "414-555-0143", "53202"),
    # the same names, sex and birth date, but address and phone both different: maybe one woman who moved,
    # maybe two; for an operator to decide
    _patient("north", "N2", "Dana", "Whitlock", dt.date(1985, 5, 17), "female", "27 Juniper Way", "(608) 555-0172",
             "53703"),
    _patient("south", "S2", "Dana", "Whitlock", dt.date(1985, 5, 17), "female", "910 Harbor Blvd", "(920) 555-0188",
             "54301"),
    # another such pair
    _patient("north", "N3", "Omar", "Haddad", dt.date(1979, 11, 23), "male", "45 Quarry Road", "(262) 555-0134",
             "53186"),
    _patient("south", "S3", "Omar", "Haddad", dt.date(1979, 11, 23), "male", "6 Meadowlark Ct", "(715) 555-0165",
             "54701"),
    # two strangers: nothing in common
    _patient("north", "N4", "Greta", "Lindqvist", dt.date(1990, 1, 15), "female", "300 Birchwood Ave",
             "(414) 555-0107", "53211", email="greta.l@example.org"),
    _patient("south", "S4", "Tomasz", "Nowicki", dt.date(1955, 8, 30), "male", "18 Cobblestone Ln", "(608) 555-0121",
             "53715"),
]
KEYS = [(p["practice"], p["source_id"]) for p in PEOPLE]


def _demographics() -> list[re.Pattern[str]]:
    """Every demographic value written above, as it was sent and as the matcher normalises it."""
    texts: set[str] = set()
    for p in PEOPLE:
        born: dt.date = p["birth_date"]
        texts |= {p["given_name"], p["family_name"], p["address_line"], p["phone"], born.isoformat(),
                  born.strftime("%Y%m%d"), born.strftime("%m/%d/%Y"), "".join(c for c in p["phone"] if c.isdigit())}
        if p.get("email"):
            texts.add(p["email"])
    patterns = [re.compile(re.escape(t), re.IGNORECASE) for t in texts]
    # postal codes are five digits: only standing alone (not inside a time stamp or a probability)
    patterns += [re.compile(rf"(?<!\d){p['postal_code']}(?!\d)") for p in PEOPLE]
    return patterns


@dataclass
class Hub:
    server: Server
    engine: sa.Engine
    admin: str
    others: dict[str, str]
    bodies: list[str] = field(default_factory=list)  # every answer, to look for demographics in
    calls: int = 0  # every call made, each of which leaves an audit row

    def call(self, method: str, path: str, body: Any = None, key: str | None = "admin") -> tuple[int, Any]:
        token = self.admin if key == "admin" else (self.others[key] if key else None)
        data = json.dumps(body).encode() if body is not None else None
        status, raw, headers = self.server.call(method, API + path, token, data,
                                                "application/json" if data is not None else None)
        text = raw.decode()
        self.bodies.append(text)
        self.calls += 1
        if headers.get("Content-Type", "").startswith("application/json"):
            return status, json.loads(text) if text else None
        return status, text

    def explain(self, key: tuple[str, str]) -> dict[str, Any]:
        status, body = self.call("GET", f"/patients/{key[0]}/{key[1]}")
        assert status == 200, body
        return body

    def ids(self) -> dict[tuple[str, str], str]:
        return {key: self.explain(key)["enterprise_id"] for key in KEYS}

    def audit(self) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.text("SELECT key_id, action, target, practice, outcome FROM audit_log "
                                             "WHERE action LIKE 'identity.%' ORDER BY id")))


@pytest.fixture
def hub_api(database_url: str, tmp_path: Any) -> Iterator[Hub]:
    engine = get_engine(database_url)  # the store prepared here (quicker than a hub command each), served there
    items = [(dict(p), None) for p in PEOPLE]
    with writer(engine).begin() as conn:
        for slug in ("north", "south"):
            add_practice(conn, slug, slug.title())
        admin = create_key(conn, "admin")
        others = {"analyst": create_key(conn, "analyst"), "feed": create_key(conn, "feed", "north")}
    with writer(engine).begin() as conn, rollups.tracking(conn, items):
        canonical.upsert_records(conn, items)
    # the background index off (the test runs it), the thresholds as documented
    server = start_server(tmp_path, {"HUB_DATABASE_URL": database_url, "HUB_REDIS_URL": "", "HUB_RATE_LIMIT": "0",
                                     "HUB_IDENTITY_INTERVAL": "0", "HUB_IDENTITY_LINK": "0.99",
                                     "HUB_IDENTITY_REVIEW": "0.5", "HUB_IDENTITY_SHARED_SYSTEMS": ""}, practices=())
    try:
        yield Hub(server, engine, admin, others)
    finally:
        stop(server)


def _pair(pairs: list[dict[str, Any]], a: str, b: str) -> dict[str, Any]:
    (found,) = [p for p in pairs if {p["a"]["source_id"], p["b"]["source_id"]} == {a, b}]
    return found


def _no_demographics(hub: Hub) -> None:
    leaks = [(p.pattern, i) for i, body in enumerate(hub.bodies) for p in _demographics() if p.search(body)]
    assert not leaks, f"demographic values in answers (pattern, answer number): {leaks}"


def test_the_index_through_the_api(hub_api: Hub) -> None:
    hub = hub_api
    status, summary = hub.call("POST", "/run")
    assert status == 200, summary
    # eight records; Robert and Bob linked; the two Danas and the two Omars to review; nothing else alike
    assert {k: summary[k] for k in ("full", "patients", "compared", "linked", "enterprises", "review")} == {
        "full": True, "patients": 8, "compared": 8, "linked": 2, "enterprises": 7, "review": 2}

    status, queue = hub.call("GET", "/review")
    assert status == 200 and queue["total"] == 2
    dana, omar = _pair(queue["pairs"], "N2", "S2"), _pair(queue["pairs"], "N3", "S3")
    for pair in (dana, omar):
        assert pair["status"] == "review" and 0.5 <= pair["probability"] < 0.99
        assert {pair["a"]["practice"], pair["b"]["practice"]} == {"north", "south"}
        assert {k: pair["agreement"][k] for k in ("given", "family", "birth_date", "sex", "address", "phone")} == {
            "given": "exact", "family": "exact", "birth_date": "exact", "sex": "exact", "address": "different",
            "phone": "different"}
        assert pair["agreement"]["email"] == "missing"
    status, page = hub.call("GET", "/review?limit=1&offset=1")
    assert status == 200 and page["total"] == 2 and len(page["pairs"]) == 1
    assert page["pairs"][0]["id"] in {dana["id"], omar["id"]}

    robert = hub.explain(("north", "N1"))
    assert robert["method"] == "match" and robert["split"] is False
    assert {(m["practice"], m["source_id"]) for m in robert["cluster"]} == {("north", "N1"), ("south", "S1")}
    assert hub.explain(("south", "S1"))["enterprise_id"] == robert["enterprise_id"]
    (robert_pair,) = robert["pairs"]
    assert robert_pair["status"] == "link" and robert_pair["agreement"]["given"] == "nickname"

    # the operator says the Danas are one woman: one enterprise id, linked by hand
    status, done = hub.call("POST", f"/review/{dana['id']}", {"decision": "accept"})
    assert status == 200 and done["status"] == "accepted", done
    n2, s2 = hub.explain(("north", "N2")), hub.explain(("south", "S2"))
    assert n2["enterprise_id"] == s2["enterprise_id"] and n2["method"] == s2["method"] == "manual"
    assert _pair(n2["pairs"], "N2", "S2")["status"] == "accepted"

    # ... and the Omars two men, even after a full run that trains and compares everything again
    status, done = hub.call("POST", f"/review/{omar['id']}", {"decision": "reject"})
    assert status == 200 and done["status"] == "rejected", done
    status, summary = hub.call("POST", "/run?full=true")
    assert status == 200 and summary["full"] is True and summary["review"] == 0, summary
    ids = hub.ids()
    assert ids[("north", "N3")] != ids[("south", "S3")]
    assert ids[("north", "N2")] == ids[("south", "S2")]
    assert hub.call("GET", "/review")[1]["total"] == 0

    # two strangers linked by hand stay linked through a full run
    status, done = hub.call("POST", "/link", {"a": {"practice": "north", "source_id": "N4"},
                                              "b": {"practice": "south", "source_id": "S4"}})
    assert status == 200, done
    assert hub.explain(("north", "N4"))["enterprise_id"] == hub.explain(("south", "S4"))["enterprise_id"]
    status, summary = hub.call("POST", "/run?full=true")
    assert status == 200 and summary["linked"] == 6 and summary["enterprises"] == 5, summary
    n4 = hub.explain(("north", "N4"))
    assert n4["method"] == "manual" and n4["enterprise_id"] == hub.explain(("south", "S4"))["enterprise_id"]

    # Bob split off from Robert: alone, and still alone after a full run
    status, done = hub.call("POST", "/patients/south/S1/split")
    assert status == 200, done
    status, summary = hub.call("POST", "/run?full=true")
    assert status == 200 and summary["linked"] == 4 and summary["enterprises"] == 6, summary
    bob = hub.explain(("south", "S1"))
    assert bob["split"] is True and bob["method"] == "split"
    assert [(m["practice"], m["source_id"]) for m in bob["cluster"]] == [("south", "S1")]
    robert = hub.explain(("north", "N1"))
    assert robert["enterprise_id"] != bob["enterprise_id"] and robert["method"] == "alone"

    # the export: every record, its enterprise id and how it got it, in JSON and in CSV
    expected = {("north", "N1"): "alone", ("south", "S1"): "split", ("north", "N2"): "manual",
                ("south", "S2"): "manual", ("north", "N3"): "alone", ("south", "S3"): "alone",
                ("north", "N4"): "manual", ("south", "S4"): "manual"}
    people = [{("north", "N1")}, {("south", "S1")}, {("north", "N2"), ("south", "S2")}, {("north", "N3")},
              {("south", "S3")}, {("north", "N4"), ("south", "S4")}]
    status, rows = hub.call("GET", "/export?format=json")
    assert status == 200 and isinstance(rows, list)
    status, text = hub.call("GET", "/export?format=csv")
    assert status == 200 and isinstance(text, str)
    table = list(csv.DictReader(io.StringIO(text)))
    for exported in (rows, table):
        assert {(r["practice"], r["source_id"]): r["method"] for r in exported} == expected
        assert len(exported) == len(PEOPLE) and all(r["enterprise_id"] for r in exported)
        by_id: dict[str, set[tuple[str, str]]] = {}
        for r in exported:
            by_id.setdefault(r["enterprise_id"], set()).add((r["practice"], r["source_id"]))
        assert sorted(map(sorted, by_id.values())) == sorted(map(sorted, people))
    assert {(r["practice"], r["source_id"]): r["enterprise_id"] for r in table} == {
        (r["practice"], r["source_id"]): r["enterprise_id"] for r in rows}

    _no_demographics(hub)
    # one audit row per call, under the admin's key, each action among those the API names
    audit = hub.audit()
    key_id = hub.admin.split("_")[1]
    assert len(audit) == hub.calls and {r.key_id for r in audit} == {key_id}
    assert {r.action for r in audit} == {"identity.run", "identity.review", "identity.explain", "identity.accept",
                                         "identity.reject", "identity.link", "identity.split", "identity.export"}
    assert [(r.target, r.outcome) for r in audit if r.action in ("identity.accept", "identity.reject")] == [
        (str(dana["id"]), "200"), (str(omar["id"]), "200")]
    assert [(r.target, r.practice) for r in audit if r.action == "identity.split"] == [("south/S1", "south")]


def test_unknowns_bad_values_and_other_callers(hub_api: Hub) -> None:
    hub = hub_api
    assert hub.call("POST", "/run")[0] == 200
    assert hub.call("POST", "/review/999999", {"decision": "accept"})[0] == 404
    assert hub.call("POST", "/review/999999", {"decision": "reject"})[0] == 404
    assert hub.call("POST", f"/review/{2**64}", {"decision": "accept"})[0] == 404  # beyond any 64-bit id
    assert hub.call("GET", "/patients/north/N%001")[0] == 404  # a NUL no store keeps
    assert hub.call("POST", "/patients/north/N%001/split")[0] == 404
    assert hub.call("GET", f"/patients/{'p' * 65}/N1")[0] == 404  # longer than any stored key
    assert hub.call("GET", f"/patients/north/{'N' * 256}")[0] == 404
    assert hub.call("POST", "/link", {"a": {"practice": "north", "source_id": "N\u00001"},
                                      "b": {"practice": "south", "source_id": "S1"}})[0] == 404
    assert hub.call("GET", "/patients/north/NOBODY")[0] == 404
    assert hub.call("GET", "/patients/nowhere/N1")[0] == 404
    assert hub.call("POST", "/patients/north/NOBODY/split")[0] == 404
    assert hub.call("POST", "/link", {"a": {"practice": "north", "source_id": "N1"},
                                      "b": {"practice": "south", "source_id": "NOBODY"}})[0] == 404
    # a record linked to itself: refused
    assert hub.call("POST", "/link", {"a": {"practice": "north", "source_id": "N1"},
                                      "b": {"practice": "north", "source_id": "N1"}})[0] == 422
    _, queue = hub.call("GET", "/review")
    pair_id = queue["pairs"][0]["id"]
    for bad in ({"decision": "maybe"}, {"decision": ""}, {}, {"decision": "accept", "extra": 1}):
        assert hub.call("POST", f"/review/{pair_id}", bad)[0] == 422, bad
    assert hub.call("GET", "/export?format=xml")[0] == 422
    assert hub.call("GET", "/review?limit=0")[0] == 422
    # nothing was decided by the refused calls
    assert hub.call("GET", "/review")[1]["total"] == 2

    routes = [("POST", "/run", None), ("GET", "/review", None), ("POST", f"/review/{pair_id}", {"decision": "accept"}),
              ("POST", "/link", {"a": {"practice": "north", "source_id": "N3"},
                                 "b": {"practice": "south", "source_id": "S3"}}),
              ("GET", "/patients/north/N1", None), ("POST", "/patients/south/S1/split", None),
              ("GET", "/export?format=json", None), ("GET", "/export?format=csv", None)]
    before = len(hub.audit())
    for caller, expected in (("analyst", 403), ("feed", 403), (None, 401)):
        for method, path, body in routes:
            assert hub.call(method, path, body, key=caller)[0] == expected, (caller, method, path)
    assert hub.call("GET", "/review")[1]["total"] == 2  # nothing changed
    assert hub.explain(("south", "S1"))["split"] is False

    _no_demographics(hub)
    audit = hub.audit()
    assert len(audit) == hub.calls
    # the refused callers are on record too, under their own keys (none without one)
    refused = [(r.key_id, r.action, r.target, r.outcome) for r in audit[before:before + 3 * len(routes)]]
    analyst, feed = (hub.others[k].split("_")[1] for k in ("analyst", "feed"))
    actions = ["identity.run", "identity.review", "identity.decide", "identity.link", "identity.explain",
               "identity.split", "identity.export", "identity.export"]
    targets = [None, None, str(pair_id), None, "north/N1", "south/S1", None, None]
    assert refused == [(key, action, target, f"refused {status}")
                       for key, status in ((analyst, 403), (feed, 403), (None, 401))
                       for action, target in zip(actions, targets, strict=True)]
    misses = [(r.action, r.target, r.outcome) for r in audit[:before] if r.outcome != "200"]
    assert misses == [("identity.accept", "999999", "404"), ("identity.reject", "999999", "404"),
                      ("identity.accept", str(2**64), "404"), ("identity.explain", "north/N\ufffd1", "404"),
                      ("identity.split", "north/N\ufffd1", "404"), ("identity.explain", f"{'p' * 65}/N1", "404"),
                      ("identity.explain", f"north/{'N' * 249}", "404"),
                      ("identity.link", "north/N\ufffd1~south/S1", "404"), ("identity.explain", "north/NOBODY", "404"),
                      ("identity.explain", "nowhere/N1", "404"),
                      ("identity.split", "north/NOBODY", "404"), ("identity.link", "north/N1~south/NOBODY", "404"),
                      ("identity.link", "north/N1~north/N1", "422"),
                      *[("identity.decide", str(pair_id), "refused 422")] * 4,
                      ("identity.export", None, "refused 422"), ("identity.review", None, "refused 422")]
