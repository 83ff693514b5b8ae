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

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError as PydanticError

from hub.errors import ValidationError


@cache
def model_class(resource_type: str) -> Any:
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


def validate_resource(resource: dict[str, Any], path: str, *, strict: bool = False) -> None:
    """Raise ``ValidationError`` naming the resource and the element path of the first problem.

    Not ``strict`` (intake): date-times that lack only their offset are let through (see above)."""
    rtype = resource["resourceType"]
    check = checker(rtype)
    if check is None:
        raise ValidationError(f"{rtype[:60]!r} is not a FHIR R4 resource type", location=f"{path}.resourceType")
    try:
        check(resource)
    except PydanticError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if not strict:
            lacking = [_lacks_only_offset(resource, e) for e in errors]
            naive = [e for e, flag in zip(errors, lacking, strict=True) if flag]
            others = [e for e, flag in zip(errors, lacking, strict=True) if not flag]
            if naive and not others:
                try:  # the times made whole, nothing else may be wrong
                    check(_with_utc_offsets(resource, [tuple(e["loc"]) for e in naive]))
                    return
                except (PydanticError, TypeError, ValueError):
                    pass
            elif others:
                errors = others  # name a problem that refuses the resource
        first = errors[0] if errors else {"loc": (), "msg": "invalid"}
        element = element_path(tuple(first.get("loc") or ()))
        where = f"{path}.{element}" if element else path
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        # pydantic's message names the rule broken, not the value (which may be patient data)
        rule = str(first.get("msg"))[:160]
        raise ValidationError(f"{rtype} is not valid FHIR R4: {element or rtype}: {rule}{more}",
                              location=where) from None
    except (TypeError, ValueError) as exc:  # a model-level check outside pydantic's own errors
        raise ValidationError(f"{rtype} is not valid FHIR R4 ({type(exc).__name__})", location=path) from None
