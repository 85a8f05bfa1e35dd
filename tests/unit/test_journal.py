"""The journal stays contiguous and within its bounds of count, bytes and age."""

from __future__ import annotations

import pytest

from retransmit.journal import Journal, JournalGap


def test_bounds_by_count_bytes_and_age() -> None:
    j = Journal(max_messages=3, max_bytes=100)
    for s in range(1, 6):
        j.append(s, bytes(10), now_ns=s)
    assert (j.first_sequence, j.next_sequence, len(j), j.trimmed) == (3, 6, 3, 2)
    j = Journal(max_messages=100, max_bytes=25)
    for s in range(1, 6):
        j.append(s, bytes(10), now_ns=s)
    assert (j.first_sequence, j.nbytes) == (4, 20)
    j = Journal(max_age_ns=10)
    for s in range(1, 6):
        j.append(s, bytes([s]), now_ns=s * 5)
    j.expire(now_ns=40)
    assert j.first_sequence == 5 and j.get(1, 10) == [bytes([5])]


def test_get_clips_to_what_is_held() -> None:
    j = Journal()
    j.extend(10, [b"a", b"b", b"c"], now_ns=0)
    assert j.get(9, 3) == [b"a", b"b"]
    assert j.get(12, 5) == [b"c"]
    assert j.get(13, 1) == [] and j.get(1, 5) == []


def test_a_hole_is_refused() -> None:
    j = Journal()
    j.append(1, b"x", 0)
    with pytest.raises(JournalGap):
        j.append(3, b"y", 0)
