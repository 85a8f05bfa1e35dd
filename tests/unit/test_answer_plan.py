"""A retransmission copies the journal's framed messages in runs (`Journal.pieces`, `RequestServer._plan`): the
datagrams, their bytes and where the budget stops them are exactly those of packing the same messages one at a time,
which is what the server did before. The one-at-a-time packer is kept here as the oracle."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from decoders import SCHEMA_FINGERPRINT, make_session
from decoders.moldudp64 import HEADER_SIZE, encode_datagram
from decoders.schema.framing import MAX_MESSAGES_PER_PACKET
from retransmit.journal import Journal
from retransmit.server import RequestServer, ServerLimits

S = make_session(SCHEMA_FINGERPRINT, 5)


def one_at_a_time(blocks: list[bytes], max_bytes: int, budget: float) -> tuple[list[list[bytes]], int]:
    """Greedy packing message by message: a message joins the open datagram if its length prefix and bytes fit
    `max_bytes` and the message limit, opens the next one otherwise (alone if it is bigger than `max_bytes`), and
    packing stops before the first message whose bytes (with a header if it opens a datagram) exceed `budget`."""
    groups: list[list[bytes]] = []
    group: list[bytes] = []
    size = total = 0
    for block in blocks:
        add = 2 + len(block)
        if group and size + add <= max_bytes and len(group) < MAX_MESSAGES_PER_PACKET:
            if total + size + add > budget:
                break
            group.append(block)
            size += add
            continue
        if total + size + HEADER_SIZE + add > budget:
            break
        if group:
            groups.append(group)
            total += size
        group, size = [block], HEADER_SIZE + add
    if group:
        groups.append(group)
        total += size
    return groups, total


def _datagram(blocks: list[bytes]) -> tuple[bytes, list[int], int]:
    data, starts = bytearray(20), []
    for b in blocks:
        starts.append(len(data))
        data += len(b).to_bytes(2, "big") + b
    return bytes(data), starts, len(data)


block = st.one_of(st.binary(min_size=1, max_size=60), st.binary(min_size=200, max_size=700))
segment = st.tuples(st.sampled_from(["list", "datagram"]), st.lists(block, min_size=1, max_size=40))


@settings(max_examples=300, deadline=None)
@given(segments=st.lists(segment, min_size=1, max_size=12), max_bytes=st.integers(150, 1400), trim=st.integers(0, 30),
       start=st.integers(0, 500), count=st.integers(1, 600),
       budget=st.one_of(st.just(math.inf), st.integers(0, 5000), st.floats(0, 20000),
                        st.integers(1, 5000).map(lambda n: math.nextafter(n, 0))))  # a bucket's float just under n
def test_runs_pack_exactly_as_one_message_at_a_time(segments, max_bytes, trim, start, count, budget) -> None:
    j = Journal()
    seq = 1
    for way, blocks in segments:
        if way == "list":  # the server's mirror
            j.extend(seq, blocks, 0)
        else:  # the plant's own datagrams
            j.extend_datagram(seq, *_datagram(blocks), 0)
        seq += len(blocks)
    j.max_messages = max(1, seq - 1 - trim)  # a trimmed head: the first segment held in part
    j.expire(0)
    first = j.first_sequence + start % len(j)
    srv = RequestServer(j, ServerLimits(max_datagram_bytes=max_bytes))
    srv.session = S
    groups, total = srv._plan(j.pieces(first, count), budget)
    want, want_total = one_at_a_time(j.get(first, count), max_bytes, budget)
    assert total == want_total and [len(g) for g in groups] == [len(g) for g in want]
    out = srv._encode(S, first, groups)
    at = first
    expected = []
    for g in want:
        expected.append(encode_datagram(S, at, g))
        at += len(g)
    assert out == expected and sum(map(len, out)) == total


def test_a_request_spanning_many_segments_fills_each_datagram() -> None:
    """Nine-message datagrams, as the plant's 400-byte ones: an answer's datagrams are filled across them."""
    j = Journal()
    for s in range(1, 2000, 9):
        j.extend_datagram(s, *_datagram([bytes([s % 256]) * 38] * 9), 0)
    srv = RequestServer(j, ServerLimits(max_datagram_bytes=1400))
    srv.session = S
    groups, total = srv._plan(j.pieces(5, 1000), math.inf)
    assert [len(g) for g in groups] == [34] * 29 + [14] and total == 29 * (HEADER_SIZE + 34 * 40) + HEADER_SIZE + 14 * 40


def test_list_segments_framed_past_64_kib() -> None:
    j = Journal()
    blocks = [bytes([i]) * 60000 for i in range(3)]
    j.extend(1, blocks, 0)
    (data, off, k, stop), = j.pieces(3, 1)
    assert bytes(data[off[k] : off[stop]]) == (60000).to_bytes(2, "big") + blocks[2]
    assert j.get(1, 3) == blocks and j.get(2, 1) == [blocks[1]] and j.nbytes == 180000


def test_a_float_budget_just_under_a_message_is_not_rounded_up() -> None:
    """Found by review: 30 messages of 38 bytes in one datagram, an answer from the 26th, a budget a hair under
    100 bytes. `off[k] + room` in floats rounded up to 100 and planned a second message the budget does not hold."""
    j = Journal()
    j.extend_datagram(1, *_datagram([bytes(38)] * 30), 0)
    srv = RequestServer(j, ServerLimits(max_datagram_bytes=1400))
    budget = math.nextafter(100, 0)
    groups, total = srv._plan(j.pieces(26, 5), budget)
    assert ([len(g) for g in groups], total) == ([1], 60) == ([len(g) for g in one_at_a_time(j.get(26, 5), 1400, budget)[0]], 60)


def test_blocks_that_cannot_be_framed_are_refused() -> None:
    for bad in ([b"x", b""], [b"x" * 65536]):
        j = Journal()
        j.extend(1, bad, 0)
        try:
            j.pieces(1, 2)
        except ValueError as exc:
            assert "cannot be framed" in str(exc)
        else:
            raise AssertionError(f"{[len(b) for b in bad]} framed")
