"""The schema of a practice mapping file, checked at load, by ``hub mapping validate`` and in the tests.

Every problem names the line and the key (``line 14, code_maps.visit_type.NP.service_line``)
and what is wrong; all problems of a file are found in one pass. Values named in a
problem are the mapping's own codes, never patient data.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import yaml

from hub.mapping.transforms import TRANSFORMS, transform_names
from hub.mapping.vocabulary import Vocabulary
from hub.model.kinds import FINANCIAL_CLASS, KINDS
from hub.settings import current

Path = tuple[str | int, ...]

# code map → (source field, MSO target fields it may give, vocabulary each target is checked against)
CODE_MAP_TARGETS: dict[str, dict[str, str | None]] = {
    "visit_type": {"service_line": "service_lines", "visit_category": "visit_categories"},
    "location": {"mso_location": "locations"},
    "provider": {"npi": None},
    "payer": {"payer": "payers", "financial_class": None},
    "cancel_reason": {"cancel_category": "cancel_categories"},
}
VOCABULARY_LABELS = {"service_lines": "service line", "visit_categories": "visit category", "payers": "payer",
                     "cancel_categories": "cancellation category",
                     "locations": "location (mappings/mso/locations.yaml)"}
# a code map whose entries may be written as a bare value: `PT: patient`
SHORTHAND = {"location": "mso_location", "provider": "npi", "payer": "payer", "cancel_reason": "cancel_category"}

# Wire-format overrides the HL7 v2 connector honours (connectors.hl7v2.overrides): name → (default, meaning).
# Part of the mapping language (``hub mapping names`` lists them); the connector's schema checks them
# with ``check_hl7v2_overrides`` and applies them with ``iter_overrides``.
HL7V2_OVERRIDES: dict[str, tuple[str, str]] = {
    "patient_id": ("PID.3.1", "where the patient's MRN is (patient.source_id and every patient_source_id)"),
    "appointment_id": ("SCH.2.1", "the appointment's source_id"),
    "visit_type": ("SCH.8.1", "the appointment or visit type (appointment/encounter visit_type)"),
    "provider_id": ("AIP.3.1", "the provider id of an appointment (provider_source_id)"),
    "location_id": ("AIL.3.1", "the location code of an appointment (location_source_id)"),
    "cancel_reason": ("SCH.6.1", "the cancellation reason (appointment cancel_reason)"),
    "payer_name": ("IN1.4.1", "the payer's name (coverage payer_name)"),
}
HL7_PATH = re.compile(r"^[A-Z][A-Z0-9]{2}\.\d{1,3}(\.\d{1,3}){0,2}$")

TOP_KEYS = {"version", "practice", "name", "description", "timezone", "acceptance", "connectors", "code_maps",
            "payer_patterns", "defaults", "go_live", "alerts"}
# ``acceptance``: lenient keeps what maps and records what does not (the default); strict refuses the whole
# message when any element fails validation
ACCEPTANCE = ("lenient", "strict")
GO_LIVE_KEYS = {"min_messages": int, "max_refused_share": float, "min_completeness": float,
                "min_mapped_share": float, "max_duplicate_share": float, "max_unrostered": int}
SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_NPI = re.compile(r"^\d{10}$")


@dataclass(frozen=True)
class Problem:
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = ", ".join(p for p in (f"line {self.line}" if self.line else "", self.key) if p)
        return f"{where}: {self.message}" if where else self.message


def npi_is_valid(npi: str) -> bool:
    """Ten digits with the Luhn check digit over the 80840 prefix (the CMS NPI rule)."""
    if not _NPI.match(npi):
        return False
    digits = [int(d) for d in "80840" + npi[:9]]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return (10 - total % 10) % 10 == int(npi[9])


def _dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# values of a mapping file with its aliases (``*name``) expanded: far beyond any real file, and a bound on
# the work an alias bomb (aliases of aliases of aliases) makes
MAX_VALUES = 200_000


# levels of flow nesting (``[ ]``, ``{ }``): the YAML reader's time grows with the square of it (PyYAML
# rescans every open level at each token), so a line of brackets would keep it busy for seconds
MAX_FLOW_DEPTH = 50
_FLOW = re.compile(r"[\[\]{}]")


def flow_depth(text: str) -> int:
    """The deepest flow nesting, counting every bracket (also those in quotes or comments: a bound, not a parse)."""
    depth = deepest = 0
    for bracket in _FLOW.finditer(text):
        if bracket.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif depth:
            depth -= 1
    return deepest


class Unreadable(yaml.YAMLError):
    """A mapping file that parses as YAML but cannot be a mapping file (an alias inside itself, too large);
    a ``YAMLError``, so that every reader of ``LineIndex`` refuses it as it refuses unreadable YAML."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class LineIndex:
    """Key path → line number, read from the YAML node tree (which also reveals repeated keys)."""

    def __init__(self, text: str) -> None:
        self.lines: dict[Path, int] = {}
        self.repeated: list[tuple[Path, int]] = []
        self.values = 0
        if flow_depth(text) > MAX_FLOW_DEPTH:
            raise Unreadable(Problem(None, "", f"more than {MAX_FLOW_DEPTH} levels of [ ] or {{ }} inside each other: "
                                               "nested too deeply for a mapping file"))
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            self._walk(node, (), set())

    def _walk(self, node: yaml.Node, path: Path, open_nodes: set[int]) -> None:
        self.values += 1
        if self.values > MAX_VALUES:
            raise Unreadable(Problem(None, "", f"more than {MAX_VALUES:,} values once its aliases are expanded: "
                                               "too large for a mapping file"))
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            if id(node) in open_nodes:  # `a: &x [*x]`: a value that contains itself never ends
                raise Unreadable(Problem(node.start_mark.line + 1, _dotted(path),
                                         "an alias refers to a value it is in"))
            open_nodes.add(id(node))  # the values being walked, from the top down to this one
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                child = (*path, key)
                if key in seen:
                    self.repeated.append((child, key_node.start_mark.line + 1))
                seen.add(key)
                self.lines[child] = key_node.start_mark.line + 1
                self._walk(value_node, child, open_nodes)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, (*path, i), open_nodes)
        open_nodes.discard(id(node))

    def line(self, path: Path) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())


class Checker:
    def __init__(self, index: LineIndex, vocabulary: Vocabulary) -> None:
        self.index = index
        self.vocabulary = vocabulary
        self.problems: list[Problem] = []

    def add(self, path: Path, message: str) -> None:
        self.problems.append(Problem(self.index.line(path), _dotted(path), message))

    def mapping(self, value: Any, path: Path, what: str) -> bool:
        if not isinstance(value, dict):
            self.add(path, f"{what} must be a mapping (key: value)")
            return False
        return True

    def keys(self, value: dict[str, Any], path: Path, allowed: set[str] | dict[str, Any]) -> None:
        for key in value:
            if key not in allowed:
                self.add((*path, key), f"unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")

    def text(self, value: Any, path: Path, what: str) -> bool:
        if not isinstance(value, str | int) or isinstance(value, bool) or str(value) == "":
            self.add(path, f"{what} must be a non-empty text")
            return False
        return True

    def share(self, value: Any, path: Path) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            self.add(path, "must be a share between 0 and 1 (0.95 is 95 %)")

    def in_vocabulary(self, vocabulary: str, code: Any, path: Path, what: str) -> None:
        if self.vocabulary.has(vocabulary) and str(code) not in self.vocabulary.codes(vocabulary):
            known = ", ".join(sorted(self.vocabulary.codes(vocabulary)))
            self.add(path, f"{code!r} is not an MSO {what} (known: {known})")


def installed_connectors() -> Mapping[str, Any]:
    """The connector classes the environment's plugin selection loads now, by name (loaded once per
    selection: HUB_PLUGINS, HUB_PLUGINS_ALLOW, HUB_PLUGINS_BLOCK)."""
    settings = current()
    return _installed(settings.plugins, settings.plugins_allow, settings.plugins_block)


@lru_cache(maxsize=8)
def _installed(*selection: tuple[str, ...]) -> Mapping[str, Any]:
    # imported here, not at the top: connectors import this module's helpers, and must not import
    # the plugin manager (which loads them)
    from hub.plugins import load_plugins

    return MappingProxyType({cls.name: cls for cls in load_plugins().connectors.classes()})


def check_text(text: str, vocabulary: Vocabulary,
               connectors: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], list[Problem]]:
    """Parse and check a mapping file; the data (when it parsed) and every problem found. Each
    connector section is checked by that connector's ``config_schema``: ``connectors`` (name →
    connector class), by default the installed ones (``installed_connectors``)."""
    try:
        index = LineIndex(text)
        data = yaml.safe_load(text)
    except Unreadable as exc:
        return {}, [exc.problem]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return {}, [Problem(mark.line + 1 if mark else None, "", f"not valid YAML: {getattr(exc, 'problem', exc)}")]
    except RecursionError:  # the YAML reader recurses once per level of nesting
        return {}, [Problem(None, "", "nested too deeply to be a mapping file")]
    except ValueError as exc:  # a plain value that looks like a date but is none (2025-00-01): the reader's own
        return {}, [Problem(None, "", f"not valid YAML: a value written as a date is not one ({exc})")]
    c = Checker(index, vocabulary)
    for path, line in index.repeated:
        c.problems.append(Problem(line, _dotted(path), "this key appears twice (the later one would win)"))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return {}, [Problem(1, "", "a mapping file is a YAML mapping (key: value) at the top")]
    c.keys(data, (), TOP_KEYS)
    version = data.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
        c.add(("version",), "version must be a whole number from 1")
    if "practice" in data and not (isinstance(data["practice"], str) and SLUG.match(data["practice"])):
        c.add(("practice",), "practice must be a slug (lower-case letters, digits, '-' or '_')")
    if "timezone" in data:
        _zone(c, data["timezone"], ("timezone",))
    if "acceptance" in data and data["acceptance"] not in ACCEPTANCE:
        c.add(("acceptance",), f"acceptance must be one of {', '.join(ACCEPTANCE)}")
    _connectors(c, data.get("connectors"), connectors)
    _code_maps(c, data.get("code_maps"))
    _payer_patterns(c, data.get("payer_patterns"))
    _defaults(c, data.get("defaults"))
    _go_live(c, data.get("go_live"))
    check_alerts(c, data.get("alerts"), ("alerts",))
    c.problems.sort(key=lambda p: (p.line or 0, p.key))
    return data, c.problems


def _zone(c: Checker, value: Any, path: Path) -> None:
    try:
        zoneinfo.ZoneInfo(str(value))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder ("America")
        c.add(path, f"{value!r} is not an IANA time zone (for example America/Chicago)")


def _code_maps(c: Checker, maps: Any) -> None:
    if maps is None or not c.mapping(maps, ("code_maps",), "code_maps"):
        return
    c.keys(maps, ("code_maps",), CODE_MAP_TARGETS)
    for name, table in maps.items():
        if name not in CODE_MAP_TARGETS:
            continue
        path: Path = ("code_maps", name)
        if table is None:
            continue
        if not c.mapping(table, path, f"code map {name}"):
            continue
        for code, target in table.items():
            _target(c, name, target, (*path, str(code)))


def _target(c: Checker, name: str, target: Any, path: Path) -> None:
    allowed = CODE_MAP_TARGETS[name]
    shorthand = not isinstance(target, dict)
    if shorthand:
        if name in SHORTHAND and isinstance(target, str | int) and not isinstance(target, bool):
            target = {SHORTHAND[name]: str(target)}
        else:
            c.add(path, f"maps to a mapping of {' and/or '.join(allowed)}")
            return
    if not target:
        c.add(path, f"maps to nothing: give {' and/or '.join(allowed)}")
    c.keys(target, path, allowed)
    for key, value in target.items():
        if key not in allowed:
            continue
        tpath = path if shorthand else (*path, key)
        if not c.text(value, tpath, key):
            continue
        vocabulary = allowed[key]
        if vocabulary:
            c.in_vocabulary(vocabulary, value, tpath, VOCABULARY_LABELS[vocabulary])
        if key == "financial_class" and value not in FINANCIAL_CLASS:
            c.add(tpath, f"financial_class must be one of {', '.join(FINANCIAL_CLASS)}")
        if key == "npi" and not npi_is_valid(str(value)):
            c.add(tpath, "not a valid NPI (ten digits with a correct check digit)")


def _payer_patterns(c: Checker, patterns: Any) -> None:
    if patterns is None:
        return
    if not isinstance(patterns, list):
        c.add(("payer_patterns",), "payer_patterns is a list of {match, payer, financial_class}")
        return
    for i, item in enumerate(patterns):
        path: Path = ("payer_patterns", i)
        if not c.mapping(item, path, "a payer pattern"):
            continue
        c.keys(item, path, {"match", "payer", "financial_class"})
        if c.text(item.get("match"), (*path, "match"), "match (a pattern such as 'BLUE CROSS*')"):
            pass
        if c.text(item.get("payer"), (*path, "payer"), "payer"):
            c.in_vocabulary("payers", item["payer"], (*path, "payer"), "payer")
        if "financial_class" in item and item["financial_class"] not in FINANCIAL_CLASS:
            c.add((*path, "financial_class"), f"financial_class must be one of {', '.join(FINANCIAL_CLASS)}")


def _defaults(c: Checker, defaults: Any) -> None:
    if defaults is None or not c.mapping(defaults, ("defaults",), "defaults"):
        return
    for kind, values in defaults.items():
        path: Path = ("defaults", kind)
        if kind not in KINDS:
            c.add(path, f"unknown record kind {kind!r} (known: {', '.join(sorted(KINDS))})")
            continue
        if not c.mapping(values, path, f"defaults of {kind}"):
            continue
        fields = {f.name for f in KINDS[kind]}
        for name, value in values.items():
            if name not in fields:
                c.add((*path, name), f"{kind} has no field {name!r}")
            elif isinstance(value, dict | list):
                c.add((*path, name), "a default is a single value")


def _go_live(c: Checker, go_live: Any) -> None:
    if go_live is None or not c.mapping(go_live, ("go_live",), "go_live"):
        return
    c.keys(go_live, ("go_live",), {*GO_LIVE_KEYS, "required_fields"})
    for key, kind in GO_LIVE_KEYS.items():
        if key not in go_live:
            continue
        path: Path = ("go_live", key)
        value = go_live[key]
        if kind is float:
            c.share(value, path)
        elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
            c.add(path, "must be a whole number from 0")
    required = go_live.get("required_fields")
    if required is None or not c.mapping(required, ("go_live", "required_fields"), "required_fields"):
        return
    for kind, names in required.items():
        path = ("go_live", "required_fields", kind)
        if kind not in KINDS:
            c.add(path, f"unknown record kind {kind!r}")
            continue
        if not isinstance(names, list):
            c.add(path, "a list of field names")
            continue
        fields = {f.name for f in KINDS[kind]} | {"source_id"}
        for i, name in enumerate(names):
            if not isinstance(name, str) or name not in fields:  # a mapping or a list in the list: no field
                c.add((*path, i), f"{kind} has no field {name!r}")


# ------------------------------------------------------------------ alert rules (hub.operations, docs/operations.md)
# rule → its keys: (kind, smallest value); ``share`` is a percentage from 0 to 100
ALERT_RULES: dict[str, dict[str, tuple[type, float]]] = {
    "silence": {"minutes": (int, 1)},
    "error_share": {"percent": (float, 0), "last": (int, 1)},
    "queue_age": {"minutes": (int, 1)},
    "daily_volume": {"percent": (float, 0), "days": (int, 2)},
}
ALERT_REQUIRED = {"silence": ("minutes",), "error_share": ("percent", "last"), "queue_age": ("minutes",),
                  "daily_volume": ("percent", "days")}
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"^([01]?\d|2[0-4]):([0-5]\d)$")


def clock_minutes(value: Any) -> int | None:
    """``"08:30"`` → 510, minutes from midnight (``"24:00"``: 1440); None when it is not a time of day.
    An unquoted ``18:00`` reaches here as 1080: YAML 1.1 reads it as a base-60 number, the same minutes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 0 <= value <= 1440 else None
    match = _CLOCK.match(str(value)) if isinstance(value, str) else None
    if not match:
        return None
    minutes = int(match[1]) * 60 + int(match[2])
    return minutes if minutes <= 1440 else None


def weekdays(value: Any) -> list[int] | None:
    """``mon-fri`` or ``[mon, wed, fri]`` → weekday numbers (Monday 0); None when not understood."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        return None
    out: list[int] = []
    for item in items:
        first, _, last = str(item).strip().lower().partition("-")
        if first not in WEEKDAYS or (last and last not in WEEKDAYS):
            return None
        start, end = WEEKDAYS.index(first), WEEKDAYS.index(last or first)
        out.extend(range(start, end + 1) if start <= end else [*range(start, 7), *range(0, end + 1)])
    return sorted(set(out))


def check_alerts(c: Any, alerts: Any, path: Path) -> None:
    """The ``alerts`` block: business hours, the repeat interval and the four rules. ``c``: a ``Checker``
    (a mapping file) or anything with its ``add``, ``mapping`` and ``keys`` (the HUB_ALERT_RULES file)."""
    if alerts is None or not c.mapping(alerts, path, "alerts"):
        return
    c.keys(alerts, path, {"business_hours", "repeat_minutes", *ALERT_RULES})
    repeat = alerts.get("repeat_minutes")
    if repeat is not None and (isinstance(repeat, bool) or not isinstance(repeat, int | float) or repeat < 1):
        c.add((*path, "repeat_minutes"), "must be a number of minutes from 1")
    hours = alerts.get("business_hours")
    if hours is not None and c.mapping(hours, (*path, "business_hours"), "business_hours"):
        hpath = (*path, "business_hours")
        c.keys(hours, hpath, {"days", "start", "end"})
        if "days" in hours and weekdays(hours["days"]) is None:
            c.add((*hpath, "days"), "days are week days such as mon-fri or [mon, tue, thu]")
        for key in ("start", "end"):
            if key not in hours:
                c.add(hpath, f"business_hours needs {key} (a time of day such as \"08:00\")")
            elif clock_minutes(hours[key]) is None:
                c.add((*hpath, key), "must be a time of day such as \"08:00\" (quoted)")
        start, end = clock_minutes(hours.get("start")), clock_minutes(hours.get("end"))
        if start is not None and end is not None and start >= end:
            c.add((*hpath, "end"), "must be later in the day than start")
    for rule, keys in ALERT_RULES.items():
        if rule not in alerts or alerts[rule] is None:
            continue
        rpath = (*path, rule)
        spec = alerts[rule]
        if not c.mapping(spec, rpath, f"the {rule} rule"):
            continue
        c.keys(spec, rpath, {*keys, "connector"} if rule == "silence" else keys)
        for key in ALERT_REQUIRED[rule]:
            if key not in spec:
                c.add(rpath, f"the {rule} rule needs {key}")
        for key, (kind, least) in keys.items():
            value = spec.get(key)
            if value is None:
                continue
            whole = kind is int
            if isinstance(value, bool) or not isinstance(value, int if whole else int | float) or value < least:
                c.add((*rpath, key), f"must be a {'whole ' if whole else ''}number from {least:g}")
            elif key == "percent" and value > 100:
                c.add((*rpath, key), "must be a percentage from 0 to 100")
        if "connector" in spec and not (isinstance(spec["connector"], str) and spec["connector"]):
            c.add((*rpath, "connector"), "must be a connector name")


# ------------------------------------------------------------------ connector sections
# Each connector checks its own section: its ``config_schema`` (a marshmallow schema) is run on it
# here, and every error it reports becomes a problem with the line and key. The core checks only
# what it applies itself: that a section is a mapping, and a feed's ``timezone``.
def _connectors(c: Checker, connectors: Any, classes: Mapping[str, Any] | None) -> None:
    if connectors is None or not c.mapping(connectors, ("connectors",), "connectors"):
        return
    if classes is None and connectors:
        classes = installed_connectors()
    for name, section in connectors.items():
        path: Path = ("connectors", name)
        if section is None:
            continue
        if not c.mapping(section, path, f"the {name} connector's settings"):
            continue
        if "timezone" in section:
            _zone(c, section["timezone"], (*path, "timezone"))
        schema = getattr((classes or {}).get(str(name)), "config_schema", None)
        if schema is not None:
            for where, message in schema_problems(schema, section):
                c.add((*path, *where), message)


def schema_problems(schema: Any, section: Mapping[str, Any]) -> list[tuple[Path, str]]:
    """(key path within the section, message) of each error a connector's ``config_schema`` finds.
    marshmallow's "Unknown field." becomes "unknown key 'x' (allowed: ...)". Messages name keys,
    never values (a section may hold secrets)."""
    instance = schema() if isinstance(schema, type) else schema
    return list(_flatten(instance.validate(dict(section)), (), instance))


def _allowed(schema: Any) -> list[str]:
    return sorted(f.data_key or name for name, f in schema.fields.items()) if schema is not None else []


def _inner_schema(schema: Any, key: str | int) -> Any:
    """The schema a nested key's errors belong to (a Nested field, or the items of a List of one)."""
    if schema is None or not isinstance(key, str):
        return None
    for name, f in schema.fields.items():
        if (f.data_key or name) == key:
            inner = getattr(f, "inner", None) or f  # List(Nested(...)): its items
            nested = getattr(inner, "schema", None)
            return nested if nested is not None and hasattr(nested, "fields") else None
    return None


def _flatten(errors: Any, path: Path, schema: Any) -> Iterator[tuple[Path, str]]:
    if isinstance(errors, dict):
        for key, value in errors.items():
            if key == "_schema":
                yield from _flatten(value, path, schema)
            elif isinstance(key, int):  # an item of a list: same schema (its items')
                yield from _flatten(value, (*path, key), schema)
            elif value == ["Unknown field."]:
                yield (*path, key), f"unknown key {key!r} (allowed: {', '.join(_allowed(schema))})"
            else:
                yield from _flatten(value, (*path, key), _inner_schema(schema, key) or schema)
    elif isinstance(errors, list):
        for item in errors:
            yield from _flatten(item, path, schema)
    else:
        yield path, str(errors)


class SectionErrors:
    """Errors of a connector's section gathered by key path, as marshmallow reports them: raise
    ``marshmallow.ValidationError(errors.tree)`` from a schema validator when ``errors.tree``."""

    def __init__(self) -> None:
        self.tree: dict[Any, Any] = {}

    def add(self, path: Path, message: str) -> None:
        node = self.tree
        for key in path[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {"_schema": child} if child else {}
            node = child
        key = path[-1] if path else "_schema"
        if isinstance(node.get(key), dict):
            node[key].setdefault("_schema", []).append(message)
        else:
            node.setdefault(key, []).append(message)

    def text(self, value: Any, path: Path, what: str) -> bool:
        """A non-empty text (a column header, a code): True when it is one."""
        if not isinstance(value, str | int) or isinstance(value, bool) or str(value) == "":
            self.add(path, f"{what} must be a non-empty text")
            return False
        return True

    def mapping(self, value: Any, path: Path, what: str) -> bool:
        if not isinstance(value, dict):
            self.add(path, f"{what} must be a mapping (key: value)")
            return False
        return True

    def keys(self, value: Mapping[str, Any], path: Path, allowed: Iterable[str]) -> None:
        allowed = set(allowed)
        for key in value:
            if key not in allowed:
                self.add((*path, key), f"unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")

    def transforms(self, value: Any, path: Path) -> None:
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            self.add(path, "transform is a name or a list of names")
            return
        for name in names:
            if name not in TRANSFORMS:
                self.add(path, f"unknown transform {name!r} (known: {', '.join(TRANSFORMS)})")


def check_hl7v2_overrides(overrides: Any) -> SectionErrors:
    """The ``overrides`` of an hl7v2 section (names and defaults: ``HL7V2_OVERRIDES``), for the
    connector's schema; paths are within ``overrides``."""
    errors = SectionErrors()
    if not errors.mapping(overrides, (), "overrides"):
        return errors
    errors.keys(overrides, (), HL7V2_OVERRIDES)
    for name, spec in overrides.items():
        if name not in HL7V2_OVERRIDES:
            continue
        npath: Path = (name,)
        if isinstance(spec, str):
            spec = {"from": spec}
        if not errors.mapping(spec, npath, f"override {name}"):
            continue
        errors.keys(spec, npath, {"from", "transform"})
        if "from" not in spec and "transform" not in spec:
            errors.add(npath, "give from (an HL7 path such as PID.2.1) and/or transform")
        if "from" in spec and not (isinstance(spec["from"], str) and HL7_PATH.match(spec["from"])):
            errors.add((*npath, "from"), "an HL7 path is SEGMENT.field[.component[.subcomponent]], 1-based: PID.2.1")
        if "transform" in spec:
            errors.transforms(spec["transform"], (*npath, "transform"))
    return errors


def parse_hl7_path(path: str) -> tuple[str, int, int | None, int | None]:
    """``PID.2.1`` → ("PID", 2, 1, None): segment, field, component, subcomponent (1-based)."""
    if not HL7_PATH.match(path):
        raise ValueError(f"not an HL7 path: {path!r}")
    segment, *numbers = path.split(".")
    parts = [int(n) for n in numbers] + [0, 0]
    return segment, parts[0], parts[1] or None, parts[2] or None


def iter_overrides(section: dict[str, Any]) -> Iterator[tuple[str, str, list[str]]]:
    """(name, HL7 path, transforms) of each override in an hl7v2 section, defaults filled in."""
    for name, spec in (section.get("overrides") or {}).items():
        spec = {"from": spec} if isinstance(spec, str) else dict(spec)
        yield name, spec.get("from") or HL7V2_OVERRIDES[name][0], transform_names(spec.get("transform"))
