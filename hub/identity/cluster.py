"""From pairs to people: edges joined strongest first, under the operators' constraints; stable ids.

Edges join in order of strength: an operator's link, then a merge the source system made, then a
deterministic rule, then matches by falling weight. An edge is skipped when it would put two
records an operator rejected as one person in one cluster, or when it touches a record an operator
split off (only an operator's link joins those). Each cluster keeps the enterprise id most of its
records had (so ids survive reruns); a cluster that lost that id to a larger one, or that is new,
gets a new random id.
"""

from __future__ import annotations

import secrets
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

Key = tuple[str, str]  # (practice, source id)
STRENGTH = {"manual": 4, "merge": 3, "rule": 2, "match": 1}


@dataclass(frozen=True)
class Edge:
    a: Key
    b: Key
    method: str  # manual | merge | rule:<name> | match
    weight: float | None = None

    @property
    def strength(self) -> int:
        return STRENGTH[self.method.split(":", 1)[0]]


class _Clusters:
    def __init__(self) -> None:
        self.parent: dict[Key, Key] = {}
        self.members: dict[Key, set[Key]] = {}

    def find(self, x: Key) -> Key:
        parent = self.parent
        if x not in parent:
            parent[x] = x
            self.members[x] = {x}
            return x
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root


def cluster(keys: Iterable[Key], edges: Iterable[Edge], *, rejected: Iterable[tuple[Key, Key]] = (),
            split: Iterable[Key] = ()) -> tuple[dict[Key, Key], dict[Key, Edge]]:
    """The cluster (root) of every key, and for each key the edge that brought it into its cluster."""
    c = _Clusters()
    for key in keys:
        c.find(key)
    never: dict[Key, set[Key]] = defaultdict(set)
    for a, b in rejected:
        never[a].add(b)
        never[b].add(a)
    alone = set(split)
    by_edge: dict[Key, Edge] = {}
    for edge in sorted(edges, key=lambda e: (-e.strength, -(e.weight or 0.0), e.a, e.b)):
        if edge.strength < STRENGTH["manual"] and (edge.a in alone or edge.b in alone):
            continue
        ra, rb = c.find(edge.a), c.find(edge.b)
        if ra == rb:
            continue
        small, large = (ra, rb) if len(c.members[ra]) <= len(c.members[rb]) else (rb, ra)
        if any(never[k] & c.members[large] for k in c.members[small] if k in never):
            continue
        c.parent[small] = large
        c.members[large] |= c.members.pop(small)
        for key, other in ((edge.a, edge.b), (edge.b, edge.a)):
            by_edge.setdefault(key, edge)
            by_edge.setdefault(other, edge)
    return {key: c.find(key) for key in list(c.parent)}, by_edge


def assign_ids(roots: dict[Key, Key], current: dict[Key, str]) -> dict[Key, str]:
    """Enterprise id per key: each cluster keeps the id most of its records hold now, the larger
    cluster first when two claim one; the others get new random ids."""
    groups: dict[Key, list[Key]] = defaultdict(list)
    for key, root in roots.items():
        groups[root].append(key)
    claims = []
    for root, members in groups.items():
        held = Counter(current[k] for k in members if k in current)
        for eid, n in held.most_common():
            claims.append((-n, -len(members), eid, root))
    taken: dict[str, Key] = {}
    chosen: dict[Key, str] = {}
    for _, _, eid, root in sorted(claims, key=lambda c: (c[0], c[1], c[2], str(c[3]))):
        if root in chosen or eid in taken:
            continue
        taken[eid] = root
        chosen[root] = eid
    out: dict[Key, str] = {}
    for root, members in groups.items():
        eid = chosen.get(root) or new_id()
        for key in members:
            out[key] = eid
    return out


def new_id() -> str:
    """An opaque enterprise id: random, derived from nothing about the patient."""
    return "E" + secrets.token_hex(12)
