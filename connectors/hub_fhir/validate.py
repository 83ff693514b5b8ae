"""FHIR R4 validation with fhir.resources (R4B models, which read R4 JSON), once per resource.

Each top-level resource is validated by its own model class (faster than validating
the Bundle model, and the error names the entry). The models are used only to check:
records are mapped from the JSON that was checked, never dumped back from the models,
which would cost three times as much.

One leniency at intake: a ``dateTime`` or ``instant`` with a full time but no offset
(``2025-03-01T09:30:00``) is invalid in strict FHIR but sent by real systems, and its
meaning is clear once the practice's zone is known (the hub reads it there). At intake
such a value alone does not refuse the resource; any other problem still does. The
onboarding check (``findings``, ``strict=True``) still reports it, so the practice can
be asked to send offsets.
"""

from __future__ import annotations

import copy
import re
from functools import cache
from typing import Any

from hub.errors import ValidationError

# fhir.resources and pydantic (a third of a second) are imported by the first validation, not with the
# connector: every command imports the connector, and an HL7 file never needs them


@cache
def model_class(resource_type: str) -> Any:
    from fhir.resources.R4B import get_fhir_model_class

    try:
        return get_fhir_model_class(resource_type)
    except (ValueError, KeyError, AttributeError, ImportError):
        return None


@cache
def checker(resource_type: str) -> Any:
    """The model's pydantic validator, called directly: ``model_validate`` with its defaults, less a
    wrapper per resource."""
    cls = model_class(resource_type)
    return None if cls is None else cls.__pydantic_validator__.validate_python


def is_fhir_type(resource_type: str) -> bool:
    return model_class(resource_type) is not None


def element_path(loc: tuple[Any, ...]) -> str:
    """pydantic's error location → a FHIRPath-like element path (``participant[0].actor``)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part != "root" and part.replace("_", "").isalnum():
            out += f".{part}" if out else part
        # other parts name pydantic's internal validators, not elements
    return out


_NAIVE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?\Z")
_PATTERN_ERROR = "value string does not match spec regex"


def _lacks_only_offset(resource: dict[str, Any], error: Any) -> bool:
    """True when the error is a date-time with a full time and no offset (the value is looked up
    in the resource; pydantic's error carries no value here)."""
    loc = tuple(error.get("loc") or ())
    if _PATTERN_ERROR not in str(error.get("msg")) or not loc:
        return False
    value: Any = resource
    for part in loc:
        found = (isinstance(part, int) and isinstance(value, list) and part < len(value)) or \
            (isinstance(part, str) and isinstance(value, dict) and part in value)
        if not found:
            return False
        value = value[part]
    return isinstance(value, str) and bool(_NAIVE_TIME.match(value))


def _with_utc_offsets(resource: dict[str, Any], locations: list[tuple[Any, ...]]) -> dict[str, Any]:
    """A copy with ``Z`` after each naive time, to check everything else (the mapping reads the original)."""
    patched = copy.deepcopy(resource)
    for loc in locations:
        holder: Any = patched
        for part in loc[:-1]:
            holder = holder[part]
        holder[loc[-1]] += "Z"
    return patched


# what a model-level check raises outside pydantic's own errors; fhir_core raises KeyError for a resource
# inside another (``contained``, ``Bundle.entry.resource``) whose resourceType is no R4 type
_MODEL_FAILURES = (TypeError, ValueError, KeyError)


def _problems(check: Any, resource: dict[str, Any], strict: bool) -> list[Any]:
    """pydantic's errors for the resource ([] when valid). Not ``strict`` (intake): date-times that
    lack only their offset are forgiven (see above). A check that fails outside pydantic's own
    errors raises ``TypeError`` or ``ValueError``."""
    from pydantic import ValidationError as PydanticError

    try:
        check(resource)
        return []
    except PydanticError as exc:
        errors = exc.errors(include_url=False, include_input=False)
    if strict:
        return errors
    lacking = [_lacks_only_offset(resource, e) for e in errors]
    naive = [e for e, flag in zip(errors, lacking, strict=True) if flag]
    others = [e for e, flag in zip(errors, lacking, strict=True) if not flag]
    if naive and not others:
        try:  # the times made whole, nothing else may be wrong
            check(_with_utc_offsets(resource, [tuple(e["loc"]) for e in naive]))
            return []
        except PydanticError as exc:
            return exc.errors(include_url=False, include_input=False) or errors
        except _MODEL_FAILURES:
            return errors
    return others or errors  # name a problem that refuses the resource


def _refusal(rtype: str, path: str, errors: list[Any]) -> ValidationError:
    first = errors[0] if errors else {"loc": (), "msg": "invalid"}
    element = element_path(tuple(first.get("loc") or ()))
    where = f"{path}.{element}" if element else path
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    # pydantic's message names the rule broken, not the value (which may be patient data)
    return ValidationError(f"{rtype} is not valid FHIR R4: {element or rtype}: {_rule(first)}{more}",
                           location=where)


def _rule(error: Any) -> str:
    return str(error.get("msg"))[:160]


def _checked(resource: dict[str, Any], path: str, strict: bool) -> tuple[Any, list[Any]]:
    rtype = resource["resourceType"]
    check = checker(rtype)
    if check is None:
        raise ValidationError(f"{rtype[:60]!r} is not a FHIR R4 resource type", location=f"{path}.resourceType")
    try:
        return check, _problems(check, resource, strict)
    except _MODEL_FAILURES as exc:  # a model-level check outside pydantic's own errors
        what = "a resource inside it has no R4 resourceType" if isinstance(exc, KeyError) else type(exc).__name__
        raise ValidationError(f"{rtype} is not valid FHIR R4 ({what})", location=path) from None


def validate_resource(resource: dict[str, Any], path: str, *, strict: bool = False) -> None:
    """Raise ``ValidationError`` naming the resource and the element path of the first problem.

    Not ``strict`` (intake): date-times that lack only their offset are let through (see above)."""
    _, errors = _checked(resource, path, strict)
    if errors:
        raise _refusal(resource["resourceType"], path, errors)


# Leaving out what fails (lenient intake, ``validate_lenient``)
MAX_ROUNDS = 8  # validations of one resource while leaving out its invalid elements
MAX_DROPS = 64  # elements left out of one resource before it is taken as invalid whole
# top-level elements the hub cannot do without: when one fails, the resource is left out whole
NEEDED = frozenset({"id", "resourceType"})
_GONE = object()  # a list item left out, until its list is compacted
Loc = tuple[str | int, ...]


def _element_loc(error: Any) -> Loc:
    """The error's location as element names and list indexes (pydantic's validator names left out)."""
    return tuple(p for p in error.get("loc") or ()
                 if isinstance(p, int) or (isinstance(p, str) and p != "root" and p.replace("_", "").isalnum()))


def _nodes(resource: Any, loc: Loc) -> list[Any] | None:
    """The containers along ``loc`` (the resource, then each element down to the parent of the last
    part), when the element at ``loc`` exists; else None."""
    nodes = [resource]
    value = resource
    for part in loc:
        item = isinstance(part, int) and isinstance(value, list) and 0 <= part < len(value) \
            and value[part] is not _GONE
        if not (item or (isinstance(part, str) and isinstance(value, dict) and part in value)):
            return None
        value = value[part]
        nodes.append(value)
    return nodes[:-1]


def _original(loc: Loc, kept: dict[Loc, list[int]]) -> Loc:
    """A location in the copy being cleaned → the same element's location in the resource as sent
    (list items left out in earlier rounds shift the indexes after them)."""
    out: list[str | int] = []
    for part in loc:
        if isinstance(part, int):
            indexes = kept.get(tuple(out))
            if indexes is not None and part < len(indexes):
                part = indexes[part]
        out.append(part)
    return tuple(out)


def validate_lenient(resource: dict[str, Any], path: str, needed: frozenset[str] = NEEDED,
                     ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The resource made valid by leaving out the elements that fail R4 validation, and each element
    left out as (element path, reason): ``Patient.address[0].period`` with the rule broken, never
    the value. A valid resource comes back as it is; otherwise a copy (the payload is not changed).

    An element that fails is left out where FHIR lets it be absent: the element itself, else (when it
    is required, or a required element inside it is missing) the nearest element holding it that may
    be absent (a list item: ``Claim.item[0]``). When that would be the resource itself, or be in a
    top-level element the hub needs (``needed``: ``id``, an appointment's ``start``), or removing does
    not make it valid, raise the ``ValidationError`` ``validate_resource`` would: the resource is
    invalid as a whole."""
    check, errors = _checked(resource, path, False)
    if not errors:
        return resource, []
    rtype = resource["resourceType"]
    refusal = _refusal(rtype, path, errors)
    patched = copy.deepcopy(resource)
    dropped: dict[Loc, tuple[Loc, str]] = {}  # element left out (as sent) → the failing element and rule
    kept: dict[Loc, list[int]] = {}  # a list shortened (as sent) → the indexes (as sent) of the items left
    for _ in range(MAX_ROUNDS):
        lists: dict[int, tuple[list[Any], Loc, Any, str | int]] = {}
        removed = 0
        for error in sorted(errors, key=lambda e: len(_element_loc(e)), reverse=True):
            loc = _element_loc(error)
            missing = "missing" in str(error.get("type"))
            target = loc[:-1] if missing else loc  # a required element missing: its holder fails
            if any(_original(target, kept)[:len(d)] == d for d in dropped):
                continue  # inside what this round already leaves out
            while target and _nodes(patched, target) is None:
                target = target[:-1]  # a location naming more than elements: the nearest element
            if not target or target[0] in needed:
                raise refusal
            nodes = _nodes(patched, target)
            assert nodes is not None
            cause = _original(loc, kept)
            where = _original(target, kept)
            inside = [d for d in dropped if d[:len(where)] == where]  # left out before: now with ``where``
            # a required element missing because an earlier round left it out: the reason is that one's
            origin = next((dropped[d] for d in inside if d[:len(cause)] == cause), None) if missing else None
            for done in inside:
                del dropped[done]
            dropped[where] = origin or (cause, _rule(error))
            depth = len(target)
            while True:  # an object left empty (no element of its own) goes with its last element
                parent, key = nodes[depth - 1], target[depth - 1]
                if isinstance(parent, list) and isinstance(key, int):
                    parent[key] = _GONE
                    lists[id(parent)] = (parent, _original(target[:depth - 1], kept), nodes[depth - 2],
                                         target[depth - 2])
                    break
                del parent[key]
                if parent or depth == 1:
                    break
                depth -= 1
            removed += 1
        if not removed:
            raise refusal
        for items, where, holder, key in lists.values():
            before = kept.get(where, list(range(len(items))))
            kept[where] = [before[i] for i, item in enumerate(items) if item is not _GONE]
            items[:] = [item for item in items if item is not _GONE]
            if not items and isinstance(holder, dict) and holder.get(key) is items:
                del holder[key]  # an empty list is not valid FHIR: the element goes with its last item
        if len(dropped) > MAX_DROPS:
            raise refusal
        try:
            errors = _problems(check, patched, False)
        except _MODEL_FAILURES:
            raise refusal from None
        if not errors:
            return patched, [(_joined(path, where), _reason(where, cause, rule))
                             for where, (cause, rule) in dropped.items()]
    raise refusal


def _joined(path: str, loc: Loc) -> str:
    element = element_path(loc)
    return f"{path}.{element}" if element else path


def _reason(where: Loc, cause: Loc, rule: str) -> str:
    """Why ``where`` was left out: the rule broken, with the failing element inside it when deeper."""
    inner = element_path(cause[len(where):]) if cause[:len(where)] == where else ""
    return f"{inner.lstrip('.')}: {rule}" if inner else rule
