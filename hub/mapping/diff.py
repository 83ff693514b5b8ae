"""What changed between two versions of a practice mapping, in lines a person reads."""

from __future__ import annotations

from hub.mapping import Mapping


def describe_changes(old: Mapping | None, new: Mapping) -> list[str]:
    """Codes added, changed and removed per code map, and other sections that differ."""
    if old is None:
        return [f"{name}: {len(table)} code(s)" for name, table in sorted(new.code_maps.items())]
    out = []
    for name in sorted(set(old.code_maps) | set(new.code_maps)):
        before, after = old.code_maps.get(name, {}), new.code_maps.get(name, {})
        added = sorted(set(after) - set(before))
        removed = sorted(set(before) - set(after))
        changed = sorted(code for code in set(before) & set(after) if before[code] != after[code])
        parts = [f"{label} {', '.join(map(repr, codes[:10]))}{' ...' if len(codes) > 10 else ''}"
                 for label, codes in (("added", added), ("changed", changed), ("removed", removed)) if codes]
        if parts:
            out.append(f"{name}: " + "; ".join(parts))
    for section in ("payer_patterns", "defaults", "connectors", "go_live", "timezone"):
        if old.raw.get(section) != new.raw.get(section):
            out.append(f"{section}: changed")
    return out or ["no change to codes or settings"]
