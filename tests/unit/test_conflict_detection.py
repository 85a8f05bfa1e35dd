"""The handler core on a fake clock: a later copy of a sequence number with different bytes is a
SequenceConflict (counted, first copy kept), whatever the packing of either copy."""

from __future__ import annotations

from decoders import CODECS
from decoders.moldudp64 import encode_datagram, split_blocks
from linehandler.events import SequenceConflict, SessionStarted
from linehandler.session import RecoveryPolicy
from tests.unit.handler_harness import MS, SESSION, Published, Recorder, make_core, open_stream
from tickerplant.sequencer import Sequencer


def altered(n: int, changed: set[int]) -> Published:
    """The same stream as Published(n) but messages at `changed` (1-based) carry other prices."""
    pub = Published(n)
    for i in changed:
        m = pub.messages[i - 1]
        pub.messages[i - 1] = (*m[:3], m[3] + 1, *m[4:])
    other = Published(0)
    seq = Sequencer(SESSION, CODECS, max_datagram_bytes=20 + 3 * 47)
    other.messages = pub.messages
    other.datagrams = seq.publish_many(pub.messages, 0) + seq.flush(0)
    return other


def repack(datagrams: list[bytes], per: int) -> list[bytes]:
    """The same messages, packed `per` to a datagram (another publisher's batching)."""
    first = int.from_bytes(datagrams[0][10:18], "big")
    blocks = [b for d in datagrams for b in split_blocks(d)[3]]
    return [encode_datagram(SESSION, first + i, blocks[i : i + per]) for i in range(0, len(blocks), per)]


def test_identical_copies_are_plain_duplicates(clock) -> None:
    pub, rec = Published(30), Recorder()
    core = make_core(rec)
    for d in pub.datagrams:
        core.on_datagram("A", d, clock.now_ns)
        core.on_datagram("B", memoryview(bytearray(d)), clock.advance(1000))  # as the shell passes them: a view
    for d in repack(pub.datagrams, 7):  # a second publisher packing the same messages differently
        core.on_datagram("A", d, clock.advance(1000))
    assert rec.events() == [SessionStarted(SESSION, 1)]
    assert core.counters["conflicts"] == 0 and core.counters["duplicates_unchecked"] == 0
    assert rec.delivered == list(enumerate(pub.messages, 1))


def test_a_different_copy_of_a_delivered_datagram_is_a_conflict_and_the_first_is_kept(clock) -> None:
    pub, rec = Published(12), Recorder()
    bad = altered(12, {5})
    core = make_core(rec)
    for d in pub.datagrams:
        core.on_datagram("A", d, clock.now_ns)
    for d in bad.datagrams:
        core.on_datagram("B", d, clock.advance(1000))
    assert rec.events(SequenceConflict) == [SequenceConflict("B", SESSION, 5, 5, 1)]
    assert rec.delivered == list(enumerate(pub.messages, 1))  # the first copy stays delivered
    assert core.counters["conflicts"] == 1 and core.feed_counters[1]["conflicts"] == 1


def test_conflict_found_when_the_other_publisher_packs_differently(clock) -> None:
    pub, rec = Published(30), Recorder()
    bad = altered(30, {4, 11, 12})
    core = make_core(rec)
    for d in pub.datagrams:
        core.on_datagram("A", d, clock.now_ns)
    for d in repack(bad.datagrams, 10):
        core.on_datagram("B", d, clock.advance(1000))
    assert rec.events(SequenceConflict) == [SequenceConflict("B", SESSION, 4, 4, 1), SequenceConflict("B", SESSION, 11, 12, 2)]
    assert rec.delivered == list(enumerate(pub.messages, 1))


def test_conflict_on_a_partly_new_datagram_still_delivers_the_new_part(clock) -> None:
    pub, rec = Published(12), Recorder()
    bad = altered(12, {2})
    core = make_core(rec)
    open_stream(core, pub, clock.now_ns)  # 1..3
    both = repack(bad.datagrams, 6)  # 1..6 with 2 altered: 1..3 delivered already, 4..6 new
    core.on_datagram("B", both[0], clock.advance(1000))
    assert rec.events(SequenceConflict) == [SequenceConflict("B", SESSION, 2, 2, 1)]
    assert [s for s, _ in rec.delivered] == [1, 2, 3, 4, 5, 6]
    assert rec.delivered[1] == (2, pub.messages[1])


def test_conflict_with_a_buffered_message(clock) -> None:
    pub, rec = Published(12), Recorder()
    bad = altered(12, {8})
    core = make_core(rec)
    open_stream(core, pub, clock.now_ns)  # 1..3
    core.on_datagram("A", pub.datagrams[2], clock.advance(1000))  # 7..9 buffered behind the gap 4..6
    core.on_datagram("B", bad.datagrams[2], clock.advance(1000))  # 7..9, 8 differs
    core.on_datagram("B", pub.datagrams[1], clock.advance(1000))  # fills the gap
    assert rec.events(SequenceConflict) == [SequenceConflict("B", SESSION, 8, 8, 1)]
    assert [s for s, _ in rec.delivered] == list(range(1, 10)) and rec.delivered[7] == (8, pub.messages[7])


def test_a_copy_older_than_the_ring_is_counted_unchecked(clock) -> None:
    pub, rec = Published(60), Recorder()
    core = make_core(rec, policy=RecoveryPolicy(stale_after_ns=10_000 * MS, conflict_ring_datagrams=4))
    for d in pub.datagrams:
        core.on_datagram("A", d, clock.now_ns)
    bad = altered(60, {1})
    core.on_datagram("B", bad.datagrams[0], clock.advance(1000))
    assert rec.events(SequenceConflict) == []
    assert core.counters["duplicates_unchecked"] == 3 and len(core.recent) == 4


def test_a_retransmission_that_differs_is_a_conflict(clock) -> None:
    pub, rec = Published(9), Recorder()
    bad = altered(9, {3})
    core = make_core(rec, nack_servers=1)
    for d in pub.datagrams:
        core.on_datagram("A", d, clock.now_ns)
    core.on_unicast(repack(bad.datagrams, 9)[0], 0, clock.advance(1000))
    assert rec.events(SequenceConflict) == [SequenceConflict("R", SESSION, 3, 3, 1)]
