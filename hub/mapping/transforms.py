"""The closed set of named transforms a mapping file may name.

A mapping never carries an expression language: where a practice sends a value in
a shape of its own (leading zeros on an MRN, lower-case visit types, a phone-style
provider id), the mapping names one or more of these transforms, applied in order.
Connectors apply them to the values they read (``apply_transforms``); the mapping
schema refuses any other name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

_SPACES = re.compile(r"\s+")


def _strip_leading_zeros(value: str) -> str:
    stripped = value.lstrip("0")
    return stripped or ("0" if value else value)


TRANSFORMS: dict[str, tuple[Callable[[str], str], str]] = {
    "strip": (str.strip, "remove spaces at both ends"),
    "upper": (str.upper, "upper-case"),
    "lower": (str.lower, "lower-case"),
    "collapse_spaces": (lambda v: _SPACES.sub(" ", v).strip(), "runs of white space become one space"),
    "strip_leading_zeros": (_strip_leading_zeros, "00123 becomes 123"),
    "digits_only": (lambda v: "".join(ch for ch in v if ch.isdigit()), "keep the digits only"),
    "first_component": (lambda v: v.split("^", 1)[0], "the text before the first ^ (HL7 component)"),
    "before_space": (lambda v: v.strip().split(" ", 1)[0], "the first word"),
}


def apply_transforms(value: str | None, names: Sequence[str]) -> str | None:
    """Apply the named transforms in order; an empty result becomes None."""
    if value is None:
        return None
    for name in names:
        value = TRANSFORMS[name][0](value)
    return value or None


def transform_names(spec: str | Sequence[str] | None) -> list[str]:
    """A mapping names one transform as a string or several as a list."""
    if spec is None:
        return []
    return [spec] if isinstance(spec, str) else list(spec)
