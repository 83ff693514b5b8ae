"""The onboarding scorecard: is a practice's feed good enough to go live?

Fed message by message (a dry run over sample files, or the messages stored for a
practice), it counts what was read and refused, records by kind, the completeness
of each required field, the share of codes each code map resolves, the unmapped
codes, repeated messages (by the connector's dedup key) and control ids reused with
other content, the dates covered, and providers and locations that are
not on the MSO rosters; then it checks those figures against the go-live
thresholds of the practice's mapping file. It names codes, fields, files and line
numbers, never patient values.

Duplicates and go-live: every message repeating one already read is shown (``duplicates``),
but the ``duplicate share`` check counts only repeats that say something about the feed's
quality. For most connectors that is every repeat (an interface resending a message). For a
connector whose messages are rows of practice-system exports (``export_rows``: CSV), a
practice exports a snapshot again and again, so a row repeated by a later export (unchanged,
or the whole export sent again) is no data-quality problem and is not counted; what counts is
a row whose record (its kind and source id) already came on an earlier row *of the same
export*, unchanged (a repeat within one file) or with other content (a conflicting
duplicate). One export is the rows of one file read in order: a run of rows from the same
file (origin) whose line numbers rise; a row from another file, or one whose line does not
rise (the same file name exported again), starts the next export.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

from hub.connector import Envelope, Tally
from hub.mapping import Mapping
from hub.mapping.schema import npi_is_valid
from hub.store.remittances import find_line

DATE_FIELDS = {"appointment": "start", "encounter": "start", "charge": "service_date", "remittance": "paid_on",
               "slot": "start", "referral": "received_on"}
RELIABLE, PROBABLE = 0.90, 0.50
_CHUNK = re.compile(r"#line=\d+$")  # a streamed export's chunk: path#line=N (the file is the path)


def band(share: float | None) -> str:
    """reliable above 90 %, probable above 50 %, possible below."""
    if share is None:
        return "-"
    return "reliable" if share > RELIABLE else "probable" if share > PROBABLE else "possible"


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _filled(value: Any) -> bool:
    return value not in (None, "", [])


@dataclass
class _Unmapped:
    count: int = 0
    example: str | None = None


class _Line(NamedTuple):
    """A charge line (``source_id``: its own) or a remittance line (``source_id``: the charge it names)."""

    source_id: str
    procedure_code: str | None
    service_date: Any
    amount: Any
    claim_line: int | None
    claim_id: str = ""


def _day(value: Any) -> str | None:
    return None if value in (None, "") else str(value.isoformat() if hasattr(value, "isoformat") else value)[:10]


def _amount(value: Any) -> Decimal | None:
    try:
        return None if value in (None, "") else Decimal(str(value))
    except InvalidOperation:
        return None


def _why_unmatched(remit: _Line, charge_ids: set[str], by_claim: dict[str, list[_Line]]) -> str | None:
    """None when the remittance line finds its charge (by the charge it names, else its claim's line of the
    same procedure, service date and charged amount), else why not, without ids or patient data."""
    if remit.source_id:
        return None if remit.source_id in charge_ids else "the charge it names was not read"
    if not remit.claim_id:
        return "no charge id and no claim id"
    lines = by_claim.get(remit.claim_id)
    if not lines:
        return "no charge of its claim"
    if remit.claim_line is None and not remit.procedure_code:
        return None  # a claim-level remittance: the claim is there
    found = find_line(lines, remit.procedure_code, remit.service_date, remit.amount, remit.claim_line)
    return None if found is not None else "no line of its claim with its procedure, service date and amount"


@dataclass
class ScorecardBuilder:
    practice: str
    mapping: Mapping
    source: str = "files"
    read: int = 0
    refused: int = 0
    duplicates: int = 0
    control_id_reuses: int = 0
    resolved: int = 0  # stored messages in error marked resolved (hub messages resolve): read, not refused
    reasons: Counter[str] = field(default_factory=Counter)
    reason_examples: dict[str, str | None] = field(default_factory=dict)
    kinds: Counter[str] = field(default_factory=Counter)
    filled: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    codes: Counter[str] = field(default_factory=Counter)
    mapped: Counter[str] = field(default_factory=Counter)
    unmapped: dict[str, dict[str, _Unmapped]] = field(default_factory=lambda: defaultdict(dict))
    seen_records: set[tuple[str, str]] = field(default_factory=set)
    repeated_records: int = 0
    first_date: str | None = None
    last_date: str | None = None
    providers: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))  # reason → id
    locations: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    findings: list[str] = field(default_factory=list)
    finding_count: int = 0
    timezone: str | None = None  # the practice's zone, in which times sent without an offset are read
    naive_messages: int = 0
    naive_fields: Counter[str] = field(default_factory=Counter)
    counted_duplicates: int = 0  # of ``duplicates``: those counted for go-live (not re-exported rows)
    export_repeats: int = 0  # rows repeating an earlier row's record of the same export, unchanged
    export_conflicts: int = 0  # ... with other content
    charges: int = 0
    unpriced: int = 0
    not_mapped: Counter[str] = field(default_factory=Counter)  # parts not mapped, by type (the tallies)
    invalid: Counter[str] = field(default_factory=Counter)  # optional elements left out, by element path
    _hashes: set[str] = field(default_factory=set)
    _export: tuple[str | None, int] | None = None  # the export being read: (file, last line)
    _export_rows: dict[tuple[str, str], str] = field(default_factory=dict)  # its records: key → row digest
    _claims: dict[tuple[str | None, str], str] = field(default_factory=dict)  # (sender, control id) → content
    # remittances matched to charges: the charges' ids and lines by claim, and the remittance lines read
    _charge_ids: set[str] = field(default_factory=set)
    _charge_lines: dict[str, list[_Line]] = field(default_factory=dict)
    _remits: list[_Line] = field(default_factory=list)

    # ------------------------------------------------------------------ feeding
    def add_duplicate(self, count: int = 1, *, counted: bool = True) -> None:
        """Arrivals the message store already recorded as repeats of a message; ``counted``: against the
        go-live duplicate share (not for rows of exports, see the module's docstring)."""
        self.read += count
        self.duplicates += count
        self.counted_duplicates += count if counted else 0

    def add(self, envelope: Envelope, records: list[dict[str, Any]], error: Exception | None, *,
            label: str | None, without_offset: dict[str, int] | None = None, key: str | None = None,
            unique_control_ids: bool = False, export_rows: bool = False, origin: str | None = None,
            tally: Tally | None = None) -> bool:
        """One message's outcome; False when it repeats a message already counted.

        ``without_offset`` counts, by field, the date-times the connector found sent without an
        offset (``Normalized.without_offset``). ``key``: the message's dedup key (the connector's, as
        the message store uses it; default: its bytes). ``unique_control_ids``: the connector promises
        unique control ids, so one reused with other content is counted (``add_control_id_reuse``
        counts those the message store flagged). ``export_rows``: the message is a row of an export
        (its control id ``line N``, ``origin`` its file): a repeat of it is not counted for go-live, a
        record repeated within its export is (module docstring). ``tally``: what the message held
        besides its records (parts not mapped, invalid elements left out)."""
        digest = hashlib.sha256(envelope.raw).hexdigest()
        key = key or digest
        self.read += 1
        if key in self._hashes:
            self.duplicates += 1
            self.counted_duplicates += 0 if export_rows else 1
            return False
        self._hashes.add(key)
        if tally is not None:
            self.not_mapped.update(tally.not_mapped)
            self.invalid.update(path for path, _ in tally.invalid)
        claim = (envelope.sender, envelope.control_id) if unique_control_ids and envelope.control_id else None
        if claim is not None and self._claims.setdefault(claim, digest) != digest:
            self.control_id_reuses += 1
        if without_offset:
            self.naive_messages += 1
            self.naive_fields.update(without_offset)
        if error is not None:
            self.refused += 1
            reason = getattr(error, "message", None) or str(error)
            self.reasons[reason] += 1
            self.reason_examples.setdefault(reason, label)
            return True
        for record in records:
            self._record(record, label)
        if export_rows and records:
            self._export_row(envelope, records[-1], origin, digest)
        return True

    def _export_row(self, envelope: Envelope, record: dict[str, Any], origin: str | None, digest: str) -> None:
        """A row of an export: its record (the row's own, which comes last) against the export's earlier rows."""
        control_id = envelope.control_id or ""
        line = int(control_id[5:]) if control_id.startswith("line ") and control_id[5:].isdigit() else 0
        file = _CHUNK.sub("", origin) if origin else origin
        if self._export is None or self._export[0] != file or line <= self._export[1]:
            self._export_rows = {}  # another file, or the same file exported again: the next export
        self._export = (file, line)
        key = (str(record.get("kind")), str(record.get("source_id")))
        earlier = self._export_rows.get(key)
        if earlier is None:
            self._export_rows[key] = digest
        elif earlier == digest:
            self.export_repeats += 1
        else:
            self.export_conflicts += 1

    def add_resolved(self, count: int) -> None:
        """Stored messages whose error was marked resolved (no replay can fix it; superseded by a corrected
        resend, say): read, and neither refused nor counted for their records."""
        self.read += count
        self.resolved += count

    def add_control_id_reuse(self, count: int = 1) -> None:
        """Stored messages the message store flagged as reusing a control id."""
        self.control_id_reuses += count

    def add_findings(self, findings: list[str], *, limit: int = 50) -> None:
        self.finding_count += len(findings)
        room = limit - len(self.findings)
        if room > 0:
            self.findings.extend(findings[:room])

    def _record(self, record: dict[str, Any], label: str | None) -> None:
        kind = record["kind"]
        self.kinds[kind] += 1
        if kind == "charge":
            self.charges += 1
            self.unpriced += bool(record.get("unpriced"))
            self._charge_line(record)
        elif kind == "remittance":
            self._remittance(record)
        key = (kind, str(record.get("source_id")))
        if key in self.seen_records:
            self.repeated_records += 1
        self.seen_records.add(key)
        for name in self.mapping.required_fields.get(kind, ()):
            if _filled(record.get(name)):
                self.filled[kind][name] += 1
        for map_name, source_field, target_field in self.mapping.code_slots(record):
            code = record.get(source_field)
            if not _filled(code):
                continue
            self.codes[map_name] += 1
            payer_id = record.get("payer_id") if map_name == "payer" else None
            if _filled(record.get(target_field)) or self.mapping.lookup(map_name, code, payer_id=payer_id):
                self.mapped[map_name] += 1
            else:
                entry = self.unmapped[map_name].setdefault(str(code), _Unmapped())
                entry.count += 1
                entry.example = entry.example or label
        date_field = DATE_FIELDS.get(kind)
        value = record.get(date_field) if date_field else None
        if value is not None:
            day = value.isoformat()[:10] if hasattr(value, "isoformat") else str(value)[:10]
            self.first_date = min(self.first_date or day, day)
            self.last_date = max(self.last_date or day, day)
        self._roster(record)

    def _charge_line(self, record: dict[str, Any]) -> None:
        """What a remittance needs of a charge to find it (``hub.store.remittances.find_line``)."""
        source_id = record.get("source_id")
        if _filled(source_id):
            self._charge_ids.add(str(source_id))
        if _filled(record.get("claim_id")):
            self._charge_lines.setdefault(str(record["claim_id"]), []).append(_Line(
                str(source_id), record.get("procedure_code"), _day(record.get("service_date")),
                _amount(record.get("amount")), record.get("claim_line")))

    def _remittance(self, record: dict[str, Any]) -> None:
        adjustments = record.get("adjustments") or []
        if not record.get("claim_id") and adjustments and all(a.get("group") == "PLB" for a in adjustments):
            return  # a provider-level adjustment pays no charge
        self._remits.append(_Line(str(record.get("charge_source_id") or ""), record.get("procedure_code"),
                                  _day(record.get("service_date")), _amount(record.get("charged_amount")),
                                  record.get("claim_line"), str(record.get("claim_id") or "")))

    def _remittance_match(self) -> dict[str, Any] | None:
        """The share of remittance lines that find their charge among the charges read (as
        ``hub remit unmatched`` matches them), with the count of each reason the others did not; None
        when no remittance was read."""
        if not self._remits:
            return None
        reasons: Counter[str] = Counter()
        matched = 0
        for remit in self._remits:
            reason = _why_unmatched(remit, self._charge_ids, self._charge_lines)
            if reason is None:
                matched += 1
            else:
                reasons[reason] += 1
        share = _share(matched, len(self._remits))
        return {"remittances": len(self._remits), "matched": matched, "share": share, "band": band(share),
                "unmatched": [{"reason": r, "count": n} for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])]}

    def _roster(self, record: dict[str, Any]) -> None:
        vocabulary = self.mapping.vocabulary
        kind = record["kind"]
        provider_id = record.get("source_id") if kind == "provider" else record.get("provider_source_id")
        if _filled(provider_id):
            npi = record.get("npi") if kind == "provider" else record.get("provider_npi")
            npi = npi or (self.mapping.lookup("provider", provider_id) or {}).get("npi")
            if not npi and (str(provider_id) in vocabulary.codes("providers") or npi_is_valid(str(provider_id))):
                npi = str(provider_id)  # the practice sends the NPI itself (checked against the roster below)
            if not npi:
                self.providers["no NPI mapped"][str(provider_id)] += 1
            elif vocabulary.has("providers") and npi not in vocabulary.codes("providers"):
                self.providers["NPI not on the MSO roster"][str(provider_id)] += 1
        location_id = record.get("source_id") if kind == "location" else record.get("location_source_id")
        if _filled(location_id):
            mso = record.get("mso_location") or (self.mapping.lookup("location", location_id) or {}).get(
                "mso_location")
            if not mso and str(location_id) in vocabulary.codes("locations"):
                mso = str(location_id)  # the practice sends the MSO location code itself
            if not mso:
                self.locations["no MSO location mapped"][str(location_id)] += 1
            elif vocabulary.has("locations") and mso not in vocabulary.codes("locations"):
                self.locations["MSO location not on the roster"][str(location_id)] += 1

    # ------------------------------------------------------------------ result
    def result(self) -> dict[str, Any]:
        completeness: dict[str, dict[str, Any]] = {}
        for kind, total in sorted(self.kinds.items()):
            names = self.mapping.required_fields.get(kind)
            if not names:
                continue
            completeness[kind] = {}
            for name in names:
                share = _share(self.filled[kind][name], total)
                completeness[kind][name] = {"filled": self.filled[kind][name], "total": total, "share": share,
                                            "band": band(share)}
        code_maps = {}
        for map_name in sorted(self.codes):
            share = _share(self.mapped[map_name], self.codes[map_name])
            unmapped = sorted(self.unmapped.get(map_name, {}).items(), key=lambda kv: (-kv[1].count, kv[0]))
            code_maps[map_name] = {"codes_seen": self.codes[map_name], "mapped": self.mapped[map_name],
                                   "share": share, "band": band(share),
                                   "unmapped": [{"code": c, "count": u.count, "example": u.example}
                                                for c, u in unmapped]}
        unrostered = {
            "providers": [{"id": i, "count": n, "reason": reason} for reason, ids in sorted(self.providers.items())
                          for i, n in sorted(ids.items())],
            "locations": [{"id": i, "count": n, "reason": reason} for reason, ids in sorted(self.locations.items())
                          for i, n in sorted(ids.items())],
        }
        card: dict[str, Any] = {
            "practice": self.practice,
            "mapping_version": self.mapping.version,
            "source": self.source,
            "messages": {"read": self.read, "refused": self.refused, "resolved": self.resolved,
                         "duplicates": self.duplicates,
                         "repeats_in_export": {"unchanged": self.export_repeats,
                                               "conflicting": self.export_conflicts},
                         # what the duplicate share checks: repeats that are not re-exported rows
                         "duplicates_counted": self.counted_duplicates + self.export_repeats + self.export_conflicts,
                         "control_id_reuses": self.control_id_reuses,
                         "refusal_reasons": [{"reason": r, "count": n, "example": self.reason_examples.get(r)}
                                             for r, n in self.reasons.most_common(20)]},
            "records": dict(sorted(self.kinds.items())),
            "repeated_records": self.repeated_records,
            "completeness": completeness,
            "code_maps": code_maps,
            "date_range": {"from": self.first_date, "to": self.last_date},
            "unpriced_charges": {"charges": self.charges, "unpriced": self.unpriced,
                                 "share": _share(self.unpriced, self.charges)},
            # what the practice sends that the hub does not read: the messages' tallies summed
            "not_mapped": dict(sorted(self.not_mapped.items(), key=lambda kv: (-kv[1], kv[0]))),
            "invalid_elements": dict(sorted(self.invalid.items(), key=lambda kv: (-kv[1], kv[0]))),
            "unrostered": unrostered,
            # remittance lines that find their charge (None when no remittance was read)
            "remittances_matched": self._remittance_match(),
            "findings": {"count": self.finding_count, "first": list(self.findings)},
            # times sent without an offset are read in the practice's zone: flagged, since a wrong
            # or missing zone moves visits across days and months
            "times_without_offset": {"messages": self.naive_messages, "fields": dict(sorted(self.naive_fields.items())),
                                     "read_in": self.timezone or "UTC (the practice has no time zone)"},
        }
        card["checks"] = self.checks(card)
        card["passed"] = all(c["ok"] for c in card["checks"])
        return card

    def checks(self, card: dict[str, Any]) -> list[dict[str, Any]]:
        limits = self.mapping.go_live
        read = card["messages"]["read"]
        out = [_check("messages read", read, ">=", limits["min_messages"]),
               _check("refused share", _share(self.refused, read) or 0.0, "<=", limits["max_refused_share"]),
               _check("duplicate share", _share(card["messages"]["duplicates_counted"], read) or 0.0, "<=",
                      limits["max_duplicate_share"])]
        for kind, fields in card["completeness"].items():
            for name, figures in fields.items():
                out.append(_check(f"completeness {kind}.{name}", figures["share"], ">=",
                                  limits["min_completeness"]))
        for map_name, figures in card["code_maps"].items():
            out.append(_check(f"mapped {map_name}", figures["share"], ">=", limits["min_mapped_share"]))
        unrostered = len({p["id"] for p in card["unrostered"]["providers"]}) + len(
            {loc["id"] for loc in card["unrostered"]["locations"]})
        out.append(_check("providers and locations not on the roster", unrostered, "<=", limits["max_unrostered"]))
        return out


def _check(name: str, value: float | int, op: str, threshold: float | int) -> dict[str, Any]:
    ok = value >= threshold if op == ">=" else value <= threshold
    return {"name": name, "value": value, "op": op, "threshold": threshold, "ok": bool(ok)}


# ------------------------------------------------------------------ text rendering
def _pct(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.1f} %"


def render_text(card: dict[str, Any]) -> str:
    m = card["messages"]
    lines = [f"Onboarding scorecard: {card['practice']} (mapping version {card['mapping_version']}, "
             f"from {card['source']})", "",
             f"messages   read {m['read']}   refused {m['refused']}   duplicates {m['duplicates']}"
             + (f"   resolved {m['resolved']}" if m.get("resolved") else "")
             + (f"   control ids reused {m['control_id_reuses']}" if m.get("control_id_reuses") else "")]
    repeats = m["repeats_in_export"]
    in_export = repeats["unchanged"] + repeats["conflicting"]
    reexported = m["duplicates"] - (m["duplicates_counted"] - in_export)  # repeats of rows of another export
    if reexported or in_export:
        lines.append(f"  duplicates counted for go-live {m['duplicates_counted']} (rows repeating a record of the "
                     f"same export: {repeats['unchanged']} unchanged, {repeats['conflicting']} conflicting; "
                     f"re-exported rows not counted: {reexported})")
    for reason in m["refusal_reasons"][:10]:
        lines.append(f"  refused x{reason['count']}: {reason['reason']} (e.g. {reason['example'] or '-'})")
    records = "   ".join(f"{k} {n}" for k, n in card["records"].items()) or "none"
    lines += [f"records    {records}   (repeated source ids: {card['repeated_records']})",
              f"dates      {card['date_range']['from'] or '-'} to {card['date_range']['to'] or '-'}", "",
              "completeness of required fields"]
    for kind, fields in card["completeness"].items():
        for name, f in fields.items():
            lines.append(f"  {kind + '.' + name:<36} {f['filled']:>7}/{f['total']:<7} {_pct(f['share']):>8}  "
                         f"{f['band']}")
    lines += ["", "codes mapped"]
    for name, f in card["code_maps"].items():
        lines.append(f"  {name:<36} {f['mapped']:>7}/{f['codes_seen']:<7} {_pct(f['share']):>8}  {f['band']}")
        for u in f["unmapped"][:15]:
            lines.append(f"      unmapped {u['code']!r} x{u['count']} (e.g. {u['example'] or '-'})")
    unpriced = card["unpriced_charges"]
    if unpriced["unpriced"]:
        lines += ["", f"charges without an amount (unpriced) {unpriced['unpriced']}/{unpriced['charges']} "
                      f"{_pct(unpriced['share'])}"]
    if card["not_mapped"] or card["invalid_elements"]:
        lines += ["", "sent but not read by the hub (parts not mapped, by type)"]
        lines += [f"  {what:<36} {n:>7}" for what, n in list(card["not_mapped"].items())[:20]] or ["  none"]
        if card["invalid_elements"]:
            lines.append("  optional elements left out as invalid, by element:")
            lines += [f"    {path:<34} {n:>7}" for path, n in list(card["invalid_elements"].items())[:20]]
    matched = card.get("remittances_matched")
    if matched:
        lines += ["", f"remittances matched to a charge {matched['matched']}/{matched['remittances']} "
                      f"{_pct(matched['share'])}  {matched['band']}"]
        lines += [f"  unmatched x{u['count']}: {u['reason']}" for u in matched["unmatched"]]
    naive = card["times_without_offset"]
    if naive["messages"]:
        fields = ", ".join(f"{name} x{n}" for name, n in naive["fields"].items())
        lines += ["", f"times sent without an offset: {naive['messages']} message(s) ({fields}), "
                      f"read in {naive['read_in']}"]
    lines += ["", "not on the MSO rosters"]
    rows = sorted([("provider", p) for p in card["unrostered"]["providers"]] + [
        ("location", loc) for loc in card["unrostered"]["locations"]], key=lambda r: (r[0], -r[1]["count"]))
    lines += [f"  {what} {row['id']!r} x{row['count']}: {row['reason']}" for what, row in rows[:25]] or ["  none"]
    if len(rows) > 25:
        lines.append(f"  ... and {len(rows) - 25} more (--format json lists all)")
    if card["findings"]["count"]:
        shown = card["findings"]["first"][:20]
        lines += ["", f"connector findings ({len(shown)} of {card['findings']['count']} shown)"]
        lines += [f"  {f}" for f in shown]
    lines += ["", "go-live checks"]
    for c in card["checks"]:
        value = _pct(c["value"]) if isinstance(c["value"], float) else str(c["value"])
        threshold = _pct(c["threshold"]) if isinstance(c["threshold"], float) else str(c["threshold"])
        lines.append(f"  [{'pass' if c['ok'] else 'FAIL'}] {c['name']:<44} {value:>9} {c['op']} {threshold}")
    lines += ["", "PASSED: ready to go live" if card["passed"] else "FAILED: not ready to go live"]
    return "\n".join(lines)
