"""Property-based, per fuzz target (tests/support/fuzz_targets.py): the in-tree samples changed with the
format's own delimiters and keywords, and random bytes, are read or refused with a user error, never
crash and never take long. A few hundred inputs each, so the suite keeps guarding what
``benchmarks/fuzz.py`` runs a million times. (HL7 v2 by single bytes: tests/hl7v2/test_hl7v2_properties.py.)"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.errors import HubError
from tests.support.fuzz_targets import TARGETS, Target, refused

# one input is milliseconds; the deadline catches an input that makes a reader quadratic or worse
PROPERTY = settings(max_examples=200, deadline=dt.timedelta(seconds=2), derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def run(target: Target, data: bytes) -> None:
    try:
        target.check(data)
    except HubError as exc:
        refused(exc)


@st.composite
def changed(draw: st.DrawFn, target: Target) -> bytes:
    """A sample with a few edits: a token inserted (once or many times over), a range deleted or repeated,
    a byte replaced, the tail cut, or a piece of another sample spliced in."""
    seeds = target.seeds(corpus=None)  # in-tree only: the same inputs on every machine
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["token", "tokens", "delete", "repeat", "byte", "truncate", "splice"]))
        if op == "token":
            data[at:at] = draw(st.sampled_from(target.tokens))
        elif op == "tokens":
            data[at:at] = draw(st.sampled_from(target.tokens)) * draw(st.sampled_from([2, 16, 300]))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 40))]
        elif op == "repeat":
            data[at:at] = data[max(0, at - 40):at] * draw(st.integers(1, 4))
        elif op == "byte" and data:
            data[min(at, len(data) - 1)] = draw(st.integers(0, 255))
        elif op == "truncate":
            del data[at:]
        elif op == "splice":
            other = draw(st.sampled_from(seeds))
            data[at:] = other[draw(st.integers(0, len(other))):]
    return bytes(data)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_target_has_in_tree_seeds_that_read_cleanly(name: str) -> None:
    target = TARGETS[name]
    seeds = target.seeds(corpus=None)
    assert seeds, f"{name}: no in-tree samples to start from"
    for data in seeds:
        target.check(data)  # the samples themselves: not even a user error may escape the check


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_changed_samples_are_read_or_refused(name: str) -> None:
    target = TARGETS[name]

    @PROPERTY
    @given(changed(target))
    def prop(data: bytes) -> None:
        run(target, data)

    prop()


@pytest.mark.parametrize("name", sorted(n for n in TARGETS if n != "er7"))
def test_random_bytes_are_read_or_refused(name: str) -> None:
    target = TARGETS[name]

    @settings(PROPERTY, max_examples=100)
    @given(st.binary(max_size=600))
    def prop(data: bytes) -> None:
        run(target, data)

    prop()
