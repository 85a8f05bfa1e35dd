"""The journal stays contiguous and within its bounds of count, bytes and age."""

from __future__ import annotations

from array import array

import pytest

from decoders.moldudp64 import frame_blocks
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


def test_contents_match_a_plain_list_through_trims_and_compactions() -> None:
    """Trimming by count, bytes and age, many times over, never loses or reorders a block, whether blocks
    were appended as lists or as whole datagrams; `pieces` frames exactly what `get` returns."""
    import random

    rng = random.Random(7)
    j = Journal(max_messages=300, max_bytes=2500, max_age_ns=5000)
    model: list[tuple[int, bytes, int]] = []  # (sequence, block, appended at)
    seq, now = 1, 0
    for step in range(4000):
        now += rng.randrange(0, 40)
        blocks = [bytes([seq % 251 + k % 3]) * rng.randrange(1, 20) for k in range(rng.randrange(1, 12))]
        way = rng.random()
        if way < 0.4:  # as the server's mirror journals
            j.extend(seq, blocks, now)
        elif way < 0.7:  # as the plant journals: the datagram itself, with where each block starts
            datagram, starts = _datagram(blocks)
            j.extend_datagram(seq, bytes(datagram), starts, len(datagram), now)
        else:  # as the native packer hands them over: several datagrams at once, offsets as uint16 bytes
            cuts = sorted({0, len(blocks), *(rng.randrange(len(blocks)) for _ in range(2))})
            parts = [blocks[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]
            made = [_datagram(p) for p in parts]
            firsts = [seq + a for a in cuts[:-1]]
            j.extend_datagrams(firsts, [bytes(d) for d, _ in made], [array("H", [*st, len(d)]).tobytes() for d, st in made],
                               [len(p) for p in parts], [sum(map(len, p)) for p in parts], now)
        model += [(seq + k, b, now) for k, b in enumerate(blocks)]
        seq += len(blocks)
        if step % 97 == 0:
            now += 6000  # everything but the newest is too old
            j.expire(now)
        # the model trims like the journal: count and bytes, then age (never the last one)
        while len(model) > 300 or sum(len(b) for _, b, _ in model) > 2500:
            model.pop(0)
        while len(model) > 1 and model[0][2] < now - 5000:
            model.pop(0)
        assert (j.first_sequence, j.next_sequence, len(j)) == (model[0][0], seq, len(model))
        assert j.nbytes == sum(len(b) for _, b, _ in model)
        lo = rng.randrange(model[0][0] - 5, seq + 5)
        n = rng.randrange(0, 400)
        expected = [b for s, b, _ in model if lo <= s < lo + n]
        assert j.get(lo, n) == expected
        pieces = j.pieces(lo, n)
        assert b"".join(bytes(d[off[k] : off[stop]]) for d, off, k, stop in pieces) == frame_blocks(expected)[0]
        assert sum(stop - k for _, _, k, stop in pieces) == len(expected)


def _datagram(blocks: list[bytes]) -> tuple[bytearray, list[int]]:
    datagram, starts = bytearray(20), []
    for b in blocks:
        starts.append(len(datagram))
        datagram += len(b).to_bytes(2, "big") + b
    return datagram, starts


def test_a_read_from_the_middle_costs_its_count_not_the_journal_size() -> None:
    """2,000 messages from the middle of a 2 M-message journal: a deque took ~136 ms, a list slice well under 1 ms."""
    import time

    j = Journal(max_messages=3_000_000, max_bytes=1 << 40)
    block = bytes(45)
    for start in range(1, 2_000_001, 100_000):
        j.extend(start, [block] * 100_000, 0)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        got = j.get(1_000_000, 2000)
        best = min(best, time.perf_counter() - t0)
    assert len(got) == 2000
    assert best < 0.01  # generous for a loaded 2-core machine; the O(n) deque needs ten times that


def test_pieces_frames_consecutive_list_segments_in_one_run_and_copies_datagrams_as_held() -> None:
    j = Journal()
    j.extend(1, [b"a", b"bb"], 0)
    j.extend(3, [b"ccc"], 0)
    datagram, starts = _datagram([b"dd", b"e"])
    j.extend_datagram(4, bytes(datagram), starts, len(datagram), 0)
    j.extend(6, [b"f"], 0)
    runs = j.pieces(2, 10)
    assert [(k, stop) for _, _, k, stop in runs] == [(0, 2), (0, 2), (0, 1)]
    assert runs[1][0] is j._data[2]  # the datagram itself, not a copy
    assert [bytes(d[o[k] : o[stop]]) for d, o, k, stop in runs] == [b"\x00\x02bb\x00\x03ccc", b"\x00\x02dd\x00\x01e", b"\x00\x01f"]
    assert j._offsets[0] is None and j.get(1, 6) == [b"a", b"bb", b"ccc", b"dd", b"e", b"f"]  # nothing held changed

