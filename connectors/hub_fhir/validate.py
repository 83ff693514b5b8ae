"""FHIR R4 validation with fhir.resources (R4B models, which read R4 JSON), once per resource.

Each top-level resource is validated by its own model class (faster than validating
the Bundle model, and the error names the entry). The models are used only to check:
records are mapped from the JSON that was checked, never dumped back from the models,
which would cost three times as much.
"""

from __future__ import annotations

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


def validate_resource(resource: dict[str, Any], path: str) -> None:
    """Raise ``ValidationError`` naming the resource and the element path of the first problem."""
    rtype = resource["resourceType"]
    check = checker(rtype)
    if check is None:
        raise ValidationError(f"{rtype[:60]!r} is not a FHIR R4 resource type", location=f"{path}.resourceType")
    try:
        check(resource)
    except PydanticError as exc:
        errors = exc.errors(include_url=False, include_input=False)
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
