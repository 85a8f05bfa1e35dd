"""Shared pieces: declared counters, and the image surviving record-image round trips."""

from __future__ import annotations

import pytest

from decoders import CODECS
from mdcommon.counters import Counter, CounterSet
from mdcommon.image import Image


def test_counters_are_declared_once_and_dense() -> None:
    cs = CounterSet("feed", [Counter(0, "datagrams", "datagrams received"), Counter(1, "duplicates", "copies")])
    c = cs.new()
    c.values[cs.duplicates] += 2
    assert c.as_dict() == {"datagrams": 0, "duplicates": 2}
    assert c.line() == "duplicates=2"
    with pytest.raises(ValueError):
        CounterSet("x", [Counter(1, "a", "")])
    with pytest.raises(ValueError, match="clashes"):
        CounterSet("x", [Counter(0, "new", "would hide CounterSet.new")])
    with pytest.raises(AttributeError):
        cs.not_declared  # noqa: B018 - a typo must fail, not read as some id


def test_image_round_trips_through_record_images() -> None:
    a = Image()
    for m in [(b"R", 1, 5, "X", -2), (b"Q", 2, 5, 100, 2, 101, 4), (b"T", 3, 5, 100, 1, 66, 1), (b"T", 4, 5, 104, 3, 83, 2),
              (b"F", 5, 5, 99, 2, 7), (b"F", 6, 6, 1, 1, 3)]:
        a.apply(m)
    r = a.records[5].values
    assert (r[7], r[8], r[9], r[10], r[11], r[5]) == (4, 2, 100, 104, 100, 104)  # volume, count, open, high, low, last
    b = Image()
    for m in a.record_messages(9):
        b.apply(CODECS.decode(CODECS.encode(m)))
    assert a == b
    b.apply((b"F", 7, 6, 1, 1, 4))
    assert a != b
